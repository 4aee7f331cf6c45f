//! Measures the classifiers on a ClassBench rule set and trace, and checks every answer against
//! the trace's expected column.
//!
//! `cargo run --release --example classbench -- RULES TRACE`

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use weir::classify::classbench::{read_rules, read_trace, TraceEntry};
use weir::classify::{Classifier, Linear, Rule, TupleSpace};

/// Repeat the trace until a measurement lasts at least this long, so timer noise stays small.
const MIN_RUN: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rules_path, trace_path] = args.as_slice() else {
        eprintln!("usage: classbench RULES TRACE");
        return ExitCode::from(2);
    };
    let rules = match read_rules(rules_path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trace = match read_trace(trace_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if trace.is_empty() {
        eprintln!("error: {trace_path}: trace is empty");
        return ExitCode::FAILURE;
    }
    println!("{} rules, {} trace packets", rules.len(), trace.len());

    let fast: TupleSpace = build("tuple space", &rules);
    let oracle: Linear = build("linear", &rules);

    let fast_ns = measure("tuple space", &fast, &trace);
    let oracle_ns = measure("linear", &oracle, &trace);
    println!("speed-up: {:.1}x", oracle_ns / fast_ns);

    println!("mismatches: {}", mismatches(&fast, &trace));
    println!("oracle mismatches: {}", mismatches(&oracle, &trace));
    ExitCode::SUCCESS
}

fn build<C: Classifier>(name: &str, rules: &[Rule]) -> C {
    let start = Instant::now();
    let c = C::build(rules);
    println!(
        "{name}: built in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    c
}

/// Returns nanoseconds per lookup.
fn measure(name: &str, c: &impl Classifier, trace: &[TraceEntry]) -> f64 {
    let start = Instant::now();
    let mut lookups: u64 = 0;
    while start.elapsed() < MIN_RUN {
        for entry in trace {
            black_box(c.classify(black_box(&entry.key)));
        }
        lookups += trace.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let ns = secs * 1e9 / lookups as f64;
    println!(
        "{name}: {lookups} lookups in {secs:.3} s: {:.0} lookups/s, {ns:.1} ns/lookup",
        lookups as f64 / secs
    );
    ns
}

fn mismatches(c: &impl Classifier, trace: &[TraceEntry]) -> usize {
    trace
        .iter()
        .filter(|e| c.classify(&e.key) != Some(e.expected - 1))
        .count()
}
