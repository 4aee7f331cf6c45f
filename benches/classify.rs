//! Lookup speed on the ClassBench acl1 traces, fast classifier and oracle side by side.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::classify::classbench::{read_rules, read_trace, TraceEntry};
use weir::classify::{Classifier, Linear, Rule, TupleSpace};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/classbench")
        .join(name)
}

fn load(set: &str) -> Option<(Vec<Rule>, Vec<TraceEntry>)> {
    let rules_path = data(set);
    let trace_path = data(&format!("{set}_trace"));
    let loaded = read_rules(&rules_path).and_then(|r| Ok((r, read_trace(&trace_path)?)));
    match loaded {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipping {set} benches: {e}");
            None
        }
    }
}

fn run_trace(c: &impl Classifier, trace: &[TraceEntry]) {
    for entry in trace {
        black_box(c.classify(black_box(&entry.key)));
    }
}

fn classify(c: &mut Criterion) {
    for set in ["acl1_1K", "acl1_10K"] {
        let Some((rules, trace)) = load(set) else {
            continue;
        };
        let fast = TupleSpace::build(&rules);
        let oracle = Linear::build(&rules);
        let mut group = c.benchmark_group(format!("classify/{set}"));
        group.throughput(Throughput::Elements(trace.len() as u64));
        group.bench_function("tuple_space", |b| b.iter(|| run_trace(&fast, &trace)));
        group.sample_size(10);
        group.bench_function("linear", |b| b.iter(|| run_trace(&oracle, &trace)));
        group.finish();
    }
}

criterion_group!(benches, classify);
criterion_main!(benches);
