//! Lookup speed on every ClassBench family's trace: the production classifier, its predecessor
//! and the oracle side by side.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::classify::classbench::{read_rules, read_trace, TraceEntry};
use weir::classify::{Classifier, Linear, PackedTuples, Rule, TupleSpace};

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
    for set in ["acl1_100", "acl1_1K", "acl1_10K", "fw1_1K", "ipc1_1K"] {
        let Some((rules, trace)) = load(set) else {
            continue;
        };
        let packed = PackedTuples::build(&rules);
        let tuple = TupleSpace::build(&rules);
        let oracle = Linear::build(&rules);
        let mut group = c.benchmark_group(format!("classify/{set}"));
        group.throughput(Throughput::Elements(trace.len() as u64));
        group.bench_function("packed_tuples", |b| b.iter(|| run_trace(&packed, &trace)));
        group.bench_function("tuple_space", |b| b.iter(|| run_trace(&tuple, &trace)));
        group.sample_size(10);
        group.bench_function("linear", |b| b.iter(|| run_trace(&oracle, &trace)));
        group.finish();
    }
}

/// Building a whole set, and one rule's removal and re-insertion into a built set.
fn update(c: &mut Criterion) {
    let Some((rules, _)) = load("acl1_10K") else {
        return;
    };
    let mut group = c.benchmark_group("classify_update/acl1_10K");
    group.sample_size(10);
    group.bench_function("build", |b| {
        b.iter(|| PackedTuples::build(black_box(&rules)))
    });
    let mut packed = PackedTuples::build(&rules);
    let mut i = 0u32;
    group.bench_function("remove_insert", |b| {
        b.iter(|| {
            i = (i + 7919) % rules.len() as u32;
            let r = packed.remove(i);
            black_box(&r);
            let _ = packed.insert(i, rules[i as usize]);
        })
    });
    group.finish();
}

criterion_group!(benches, classify, update);
criterion_main!(benches);
