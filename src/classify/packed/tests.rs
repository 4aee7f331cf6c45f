use proptest::prelude::*;

use super::*;
use crate::classify::testing::{key_near, raw_key, rule};
use crate::classify::{map_v4, Linear, Ports};

fn key(src: u128, dst: u128, src_port: u16, dst_port: u16, protocol: u8) -> Key {
    Key {
        src,
        dst,
        src_port,
        dst_port,
        protocol,
    }
}

fn any_rule() -> Rule {
    Rule {
        src: Prefix::ANY,
        dst: Prefix::ANY,
        src_ports: Ports::ANY,
        dst_ports: Ports::ANY,
        protocol: None,
    }
}

#[test]
fn first_match_wins_across_widths() {
    let specific = Rule {
        src: Prefix::v4(0x0a00_0001, 32),
        dst: Prefix::v4(0x0b00_0000, 8),
        src_ports: Ports::ANY,
        dst_ports: Ports { lo: 80, hi: 80 },
        protocol: Some(6),
    };
    let v4_any = Rule {
        src: Prefix::v4(0, 0),
        dst: Prefix::v4(0, 0),
        ..any_rule()
    };
    let c = PackedTuples::build(&[any_rule(), specific]);
    let k = key(map_v4(0x0a00_0001), map_v4(0x0b01_0203), 1234, 80, 6);
    assert_eq!(c.classify(&k), Some(0));
    assert_eq!(c.classify_from(&k, 1), Some(1));
    assert_eq!(c.classify_from(&k, 2), None);

    let c = PackedTuples::build(&[specific, v4_any, any_rule()]);
    assert_eq!(c.classify(&k), Some(0));
    assert_eq!(c.classify(&key(map_v4(1), map_v4(2), 3, 4, 17)), Some(1));
    // An IPv6 key, and a key with one IPv4 and one IPv6 address, pass the IPv4-only rules.
    assert_eq!(c.classify(&key(1, 2, 3, 4, 17)), Some(2));
    assert_eq!(c.classify(&key(map_v4(1), 2, 3, 4, 17)), Some(2));
    // Only the catch-all is kept in both widths; the IPv4 rules only in 32-bit form.
    assert_eq!(c.table_counts().1, 1);
    assert_eq!(PackedTuples::build(&[]).classify(&k), None);
}

#[test]
fn many_rules_with_equal_fields_overflow_one_bucket() {
    let rules: Vec<Rule> = (0..40u16)
        .map(|p| Rule {
            src: Prefix::v4(0x0a00_0001, 32),
            dst: Prefix::v4(0x0a00_0002, 32),
            src_ports: Ports::ANY,
            dst_ports: Ports { lo: p, hi: 100 },
            protocol: Some(6),
        })
        .collect();
    let c = PackedTuples::build(&rules);
    for p in 0..102u16 {
        let k = key(map_v4(0x0a00_0001), map_v4(0x0a00_0002), 9, p, 6);
        assert_eq!(c.classify(&k), (p <= 100).then_some(0), "port {p}");
        // Rule i covers ports i..=100: from 20 on, rule 20 is the first to cover 20..=100.
        let want = (20..=100).contains(&p).then_some(20);
        assert_eq!(c.classify_from(&k, 20), want, "port {p}");
    }
}

#[test]
fn insert_and_remove_change_the_answer() {
    let web = Rule {
        src: Prefix::v4(0x0a00_0000, 8),
        dst: Prefix::ANY,
        src_ports: Ports::ANY,
        dst_ports: Ports { lo: 80, hi: 80 },
        protocol: Some(6),
    };
    let mut c = PackedTuples::build(&[any_rule()]);
    let k = key(map_v4(0x0a01_0203), map_v4(0x0808_0808), 40000, 80, 6);
    assert_eq!(c.classify(&k), Some(0));
    c.insert(7, web).unwrap();
    assert_eq!(c.classify(&k), Some(0));
    assert_eq!(c.remove(0), Some(any_rule()));
    assert_eq!(c.classify(&k), Some(7));
    assert_eq!(c.classify(&key(map_v4(1), map_v4(2), 1, 80, 6)), None);
    assert_eq!(
        c.insert(7, any_rule()),
        Err(InsertError::DuplicatePriority(7))
    );
    assert_eq!(c.remove(0), None);
    assert_eq!(c.remove(7), Some(web));
    assert!(c.is_empty());
    assert_eq!(c.table_counts(), (0, 0));
    assert_eq!(c.classify(&k), None);
}

/// The oracle's answer for rules installed under arbitrary priorities.
fn oracle(installed: &std::collections::BTreeMap<u32, Rule>, k: &Key, from: u32) -> Option<u32> {
    installed
        .range(from..)
        .find(|(_, r)| r.matches(k))
        .map(|(&p, _)| p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agrees_with_linear(
        rules in prop::collection::vec(rule(), 0..120),
        probes in prop::collection::vec(
            (any::<usize>(), any::<(u128, u128)>(), raw_key(), any::<u32>()),
            1..64,
        ),
    ) {
        let linear = Linear::build(&rules);
        let c = PackedTuples::build(&rules);
        for (pick, noise, raw, from) in probes {
            let k = key_near(&rules, pick, noise, raw);
            prop_assert_eq!(c.classify(&k), linear.classify(&k), "key {:?}", k);
            let from = from % (rules.len() as u32 + 2);
            prop_assert_eq!(
                c.classify_from(&k, from),
                linear.classify_from(&k, from),
                "key {:?} from {}", k, from
            );
        }
    }

    /// Random inserts and removals under random priorities, checked after every change.
    #[test]
    fn updates_agree_with_linear(
        initial in prop::collection::vec(rule(), 0..60),
        changes in prop::collection::vec((any::<bool>(), 0u32..200, rule()), 1..80),
        probes in prop::collection::vec(
            (any::<usize>(), any::<(u128, u128)>(), raw_key(), 0u32..210),
            1..16,
        ),
    ) {
        let mut c = PackedTuples::build(&initial);
        let mut installed: std::collections::BTreeMap<u32, Rule> =
            (0u32..).zip(initial.iter().copied()).collect();
        for (add, priority, r) in changes {
            if add {
                let fresh = !installed.contains_key(&priority);
                prop_assert_eq!(c.insert(priority, r).is_ok(), fresh);
                installed.entry(priority).or_insert(r);
            } else {
                prop_assert_eq!(c.remove(priority), installed.remove(&priority));
            }
            prop_assert_eq!(c.len(), installed.len());
            let rules: Vec<Rule> = installed.values().copied().collect();
            for &(pick, noise, raw, from) in &probes {
                let k = key_near(&rules, pick, noise, raw);
                prop_assert_eq!(c.classify(&k), oracle(&installed, &k, 0), "key {:?}", k);
                prop_assert_eq!(
                    c.classify_from(&k, from),
                    oracle(&installed, &k, from),
                    "key {:?} from {}", k, from
                );
            }
        }
    }
}

#[test]
fn a_build_folds_tables_that_a_coarser_one_can_take() {
    // In priority order: nine /32 pairs within one /16 pair open a 32/32 table (16/16 could
    // not hold them: nine in one bucket), then a 32/16 rule opens 32/16 (its own tuple, being a
    // multiple of 16; no table that covers it exists yet), then a 16/16 rule opens 16/16. Rule
    // by rule that is three tables; a whole-set build moves the 32/16 rule into 16/16, whose
    // buckets stay small, so one table fewer is probed.
    let v4 = |src: u32, s: u8, dst: u32, d: u8| Rule {
        src: Prefix::v4(src, s),
        dst: Prefix::v4(dst, d),
        ..any_rule()
    };
    let mut rules: Vec<Rule> = (0..9)
        .map(|i| v4(0x0a00_0000 + i, 32, 0x0b00_0001, 32))
        .collect();
    rules.push(v4(0x0e0e_0e0e, 32, 0x0f0f_0000, 16));
    rules.push(v4(0x0c0c_0000, 16, 0x0d0d_0000, 16));
    let mut one_by_one = PackedTuples::default();
    for (i, r) in (0u32..).zip(&rules) {
        one_by_one.insert(i, *r).unwrap();
    }
    assert_eq!(one_by_one.table_counts(), (3, 0));
    let c = PackedTuples::build(&rules);
    assert_eq!(c.table_counts(), (2, 0));
    let linear = Linear::build(&rules);
    for (src, dst) in [
        (0x0a00_0002, 0x0b00_0001),
        (0x0c0c_1234, 0x0d0d_4321),
        (0x0e0e_0e0e, 0x0f0f_9999),
        (0x0e0e_0e0f, 0x0f0f_9999),
    ] {
        let k = key(map_v4(src), map_v4(dst), 1, 2, 6);
        assert_eq!(c.classify(&k), linear.classify(&k), "{src:#x} -> {dst:#x}");
    }
    assert_eq!(
        c.classify(&key(map_v4(0x0e0e_0e0e), map_v4(0x0f0f_0001), 1, 2, 6)),
        Some(9)
    );
}
