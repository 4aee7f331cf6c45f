//! Measures the classifiers on a ClassBench rule set and trace, side by side in one run, and
//! checks every answer against the trace's expected column.
//!
//! `cargo run --release --example classbench -- RULES TRACE [ROUNDS]`
//!
//! Each round times every classifier once over the warm trace (repeated until the measurement
//! has run for at least half a second), so load from other processes hits them alike; the figures
//! are medians over the rounds, with the spread. Lookups are timed in the thread's CPU time, not
//! the wall clock: on a shared machine the wall clock also counts the time other processes held
//! the core. Then it times building, and removing and
//! re-inserting every rule of the packed tuple space in random order.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use weir::classify::classbench::{read_rules, read_trace, TraceEntry};
use weir::classify::{Classifier, Linear, PackedTuples, Rule, TupleSpace};
use weir::io::sys::thread_cpu_time;

/// Repeat the trace until a measurement has run this long, so timer noise stays small.
const MIN_RUN: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rules_path, trace_path, rounds) = match args.as_slice() {
        [r, t] => (r, t, 3),
        [r, t, n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => (r, t, n),
            _ => {
                eprintln!("error: ROUNDS must be a positive number, found '{n}'");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: classbench RULES TRACE [ROUNDS]");
            return ExitCode::from(2);
        }
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

    let packed: PackedTuples = build("packed tuples", &rules);
    let tuple: TupleSpace = build("tuple space", &rules);
    let oracle: Linear = build("linear", &rules);
    let (v4, wide) = packed.table_counts();
    let probes: usize = trace.iter().map(|e| packed.probes(&e.key).0).sum();
    println!(
        "packed tuples: {v4} IPv4 tables, {wide} wide tables, {:.2} tables probed per lookup",
        probes as f64 / trace.len() as f64
    );

    let mut times: [Vec<f64>; 3] = Default::default();
    for round in 1..=rounds {
        let ns = [
            measure(&packed, &trace),
            measure(&tuple, &trace),
            measure(&oracle, &trace),
        ];
        println!(
            "round {round}: packed tuples {:.1} ns, tuple space {:.1} ns, linear {:.1} ns per lookup",
            ns[0], ns[1], ns[2]
        );
        for (t, n) in times.iter_mut().zip(ns) {
            t.push(n);
        }
    }
    let names = ["packed tuples", "tuple space", "linear"];
    for (name, t) in names.iter().zip(&times) {
        let (lo, med, hi) = spread(t);
        println!(
            "{name}: median {med:.1} ns/lookup ({:.1} M lookups/s), range {lo:.1}..{hi:.1}",
            1e3 / med
        );
    }
    let ratios = |a: usize, b: usize| -> Vec<f64> {
        times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect()
    };
    let (lo, med, hi) = spread(&ratios(0, 1));
    println!("packed tuples / tuple space: {med:.2} (per round {lo:.2}..{hi:.2})");
    let (lo, med, hi) = spread(&ratios(2, 0));
    println!("linear / packed tuples: {med:.1}x (per round {lo:.1}..{hi:.1})");

    println!("mismatches: {}", mismatches(&packed, &trace));
    println!("tuple space mismatches: {}", mismatches(&tuple, &trace));
    println!("oracle mismatches: {}", mismatches(&oracle, &trace));

    let updated = updates(&rules, rounds);
    let after = mismatches(&updated, &trace);
    println!("mismatches after removing and re-inserting every rule: {after}");
    ExitCode::SUCCESS
}

fn build<C: Classifier>(name: &str, rules: &[Rule]) -> C {
    // The median of a few builds: one build of a small set takes well under a millisecond.
    let mut ms = Vec::new();
    let mut built = None;
    for _ in 0..5 {
        let start = Instant::now();
        let c = C::build(rules);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        built = Some(c);
    }
    let (lo, med, hi) = spread(&ms);
    println!("{name}: built in {med:.3} ms (range {lo:.3}..{hi:.3})");
    built.unwrap_or_else(|| C::build(rules))
}

/// Returns nanoseconds of the thread's CPU time per lookup.
fn measure(c: &impl Classifier, trace: &[TraceEntry]) -> f64 {
    // Reading the thread's CPU clock is a system call (about a microsecond here), so it is read
    // once per 100 000 lookups or so, where its cost is below 1 %.
    let passes = (100_000 / trace.len()).max(1);
    let start = thread_cpu_time();
    let mut lookups: u64 = 0;
    while thread_cpu_time() - start < MIN_RUN {
        for _ in 0..passes {
            for entry in trace {
                black_box(c.classify(black_box(&entry.key)));
            }
        }
        lookups += (passes * trace.len()) as u64;
    }
    (thread_cpu_time() - start).as_secs_f64() * 1e9 / lookups as f64
}

fn mismatches(c: &impl Classifier, trace: &[TraceEntry]) -> usize {
    trace
        .iter()
        .filter(|e| c.classify(&e.key) != Some(e.expected - 1))
        .count()
}

/// Times removing every rule in random order and inserting them back in another; returns the
/// rebuilt structure so its answers can be checked.
fn updates(rules: &[Rule], rounds: usize) -> PackedTuples {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut shuffled = |n: usize| {
        let mut v: Vec<u32> = (0..n as u32).collect();
        for i in (1..v.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            v.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        v
    };
    let mut c = PackedTuples::build(rules);
    let (mut removes, mut inserts) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let order = shuffled(rules.len());
        let start = Instant::now();
        for &i in &order {
            black_box(c.remove(i));
        }
        removes.push(rules.len() as f64 / start.elapsed().as_secs_f64());
        let order = shuffled(rules.len());
        let start = Instant::now();
        for &i in &order {
            // Each priority was removed just before, so none is present.
            let _ = black_box(c.insert(i, rules[i as usize]));
        }
        inserts.push(rules.len() as f64 / start.elapsed().as_secs_f64());
    }
    let (lo, med, hi) = spread(&removes);
    println!(
        "packed tuples: {:.2} M removes/s (range {:.2}..{:.2})",
        med / 1e6,
        lo / 1e6,
        hi / 1e6
    );
    let (lo, med, hi) = spread(&inserts);
    println!(
        "packed tuples: {:.2} M inserts/s (range {:.2}..{:.2}), {} tables after re-inserting",
        med / 1e6,
        lo / 1e6,
        hi / 1e6,
        c.table_counts().0 + c.table_counts().1
    );
    c
}

/// (lowest, median, highest).
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(&lo), Some(&med), Some(&hi)) => (lo, med, hi),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}
