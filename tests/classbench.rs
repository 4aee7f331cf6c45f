//! Every packet of every ClassBench family's trace (acl1, fw1, ipc1) must hit the rule the trace
//! names, with the production classifier, its predecessor and the oracle, and again after every
//! rule was removed and re-inserted. The data lives beside the checkout; a missing file fails
//! the test by name rather than letting it pass unchecked.

use std::path::PathBuf;

use weir::classify::classbench::{read_rules, read_trace, TraceEntry};
use weir::classify::{Classifier, Linear, PackedTuples, Rule, TupleSpace};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/classbench")
        .join(name)
}

fn load(set: &str) -> (Vec<Rule>, Vec<TraceEntry>) {
    let rules_path = data(set);
    let trace_path = data(&format!("{set}_trace"));
    for p in [&rules_path, &trace_path] {
        assert!(p.is_file(), "missing ClassBench data file {}", p.display());
    }
    let rules = read_rules(&rules_path).unwrap_or_else(|e| panic!("{e}"));
    let trace = read_trace(&trace_path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!rules.is_empty() && !trace.is_empty(), "{set}: empty data");
    (rules, trace)
}

/// Checks every `step`-th trace packet.
fn check(name: &str, c: &impl Classifier, trace: &[TraceEntry], step: usize) {
    let mut wrong = Vec::new();
    for (line, entry) in trace.iter().enumerate().step_by(step) {
        let got = c.classify(&entry.key);
        if got != Some(entry.expected - 1) {
            wrong.push((line + 1, entry.expected, got.map(|i| i + 1)));
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: {} packets missed their rule; first (trace line, expected, got 1-based): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

fn check_set(set: &str, linear_step: usize) {
    let (rules, trace) = load(set);
    let packed = PackedTuples::build(&rules);
    // Every family needs at most a couple of dozen tables; many more would mean the merging
    // heuristic regressed and every lookup pays for it.
    let (v4, wide) = packed.table_counts();
    assert!(v4 <= 24 && wide == 0, "{set}: {v4} + {wide} tables");
    check(&format!("{set} packed tuples"), &packed, &trace, 1);
    let fast = TupleSpace::build(&rules);
    assert!(
        fast.table_count() <= 32,
        "{set}: {} tables",
        fast.table_count()
    );
    check(&format!("{set} tuple space"), &fast, &trace, 1);
    check(
        &format!("{set} linear"),
        &Linear::build(&rules),
        &trace,
        linear_step,
    );

    // Remove every rule in an order unlike the priority order, then insert them back in
    // another: the answers must not depend on how the structure was reached.
    let mut updated = PackedTuples::build(&rules);
    let n = rules.len() as u32;
    let scatter = |i: u32, a: u32| (i * a + 7) % n;
    let stride = |a: u32| (a..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
    let (a, b) = (stride(7919), stride(104_729));
    for i in 0..n {
        let p = scatter(i, a);
        assert_eq!(
            updated.remove(p),
            Some(rules[p as usize]),
            "{set}: remove {p}"
        );
    }
    assert!(updated.is_empty());
    for i in 0..n {
        let p = scatter(i, b);
        updated
            .insert(p, rules[p as usize])
            .unwrap_or_else(|e| panic!("{set}: {e}"));
    }
    check(
        &format!("{set} packed tuples after updates"),
        &updated,
        &trace,
        1,
    );
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[test]
fn acl1_100() {
    check_set("acl1_100", 1);
}

#[test]
fn acl1_1k() {
    check_set("acl1_1K", 1);
}

/// The oracle scans thousands of rules per packet: every 5th packet keeps debug builds quick
/// (the full trace takes several seconds there).
#[test]
fn acl1_10k() {
    check_set("acl1_10K", 5);
}

#[test]
fn fw1_1k() {
    check_set("fw1_1K", 1);
}

#[test]
fn ipc1_1k() {
    check_set("ipc1_1K", 1);
}
