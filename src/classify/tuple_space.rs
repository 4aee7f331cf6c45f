//! Tuple space search with priority pruning (in the spirit of TupleMerge).
//!
//! Owns the fast first-match lookup structure behind [`Classifier`]. Its answers must always
//! equal [`Linear`](super::Linear)'s; it never allocates on lookup.
//!
//! Rules are grouped into tables keyed by a pair of prefix lengths `(src, dst)`. A rule may sit
//! in a table whose lengths are shorter than its own ("relaxed"): that keeps the number of tables,
//! and so the number of hash probes per lookup, small. Inside a table the key's addresses, masked
//! to the table's lengths, select a bucket; the bucket holds its rules in priority order and each
//! is checked in full (its longer prefixes, ports, protocol). A bucket is allowed only a few rules
//! before a new table is opened, which bounds the linear part. Tables are searched in order of the
//! best rule they hold, and the search stops once no remaining table can beat the match in hand.

use rustc_hash::FxHashMap;

use super::{mask, Classifier, Key, Rule};

/// Rules a bucket may hold before a rule looks for (or opens) another table. Rules that share
/// both prefixes exactly can exceed it: no table can separate them.
const BUCKET_LIMIT: usize = 8;

/// New tables round prefix lengths down to a multiple of this, so rules with nearby lengths
/// share a table. Divides 96, so IPv4-mapped lengths round on IPv4 octet boundaries too.
const LENGTH_STEP: u8 = 8;

#[derive(Clone, Copy, Debug)]
struct Entry {
    index: u32,
    rule: Rule,
}

#[derive(Debug)]
struct Table {
    src_mask: u128,
    dst_mask: u128,
    /// Lowest and highest rule index held: the first prunes the search, the second lets
    /// `classify_from` skip tables that only hold rules before `from`.
    min_index: u32,
    max_index: u32,
    /// Masked (src, dst) to a range of `TupleSpace::entries`, sorted by rule index.
    buckets: FxHashMap<(u128, u128), (u32, u32)>,
}

/// Fast first-match classifier; see the module documentation.
#[derive(Debug)]
pub struct TupleSpace {
    tables: Vec<Table>,
    entries: Vec<Entry>,
}

impl TupleSpace {
    /// How many tables a lookup may probe: the figure that decides its speed.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }
}

/// A table while it is being filled: buckets still growing independently.
struct Staging {
    src_len: u8,
    dst_len: u8,
    buckets: FxHashMap<(u128, u128), Vec<u32>>,
}

impl Staging {
    fn new(src_len: u8, dst_len: u8) -> Self {
        Staging {
            src_len,
            dst_len,
            buckets: FxHashMap::default(),
        }
    }

    fn covers(&self, rule: &Rule) -> bool {
        self.src_len <= rule.src.len && self.dst_len <= rule.dst.len
    }

    fn bucket_key(&self, rule: &Rule) -> (u128, u128) {
        (
            rule.src.addr & mask(self.src_len),
            rule.dst.addr & mask(self.dst_len),
        )
    }

    fn bucket_len(&self, rule: &Rule) -> usize {
        self.buckets.get(&self.bucket_key(rule)).map_or(0, Vec::len)
    }

    fn insert(&mut self, rule: &Rule, index: u32) {
        let key = self.bucket_key(rule);
        self.buckets.entry(key).or_default().push(index);
    }
}

fn relax(len: u8) -> u8 {
    len - len % LENGTH_STEP
}

/// Picks the table for `rule`, opening one if needed, and returns its position.
fn place(tables: &mut Vec<Staging>, rule: &Rule) -> usize {
    // The most specific table with room spreads rules over the most buckets.
    let roomy = tables
        .iter()
        .enumerate()
        .filter(|(_, t)| t.covers(rule) && t.bucket_len(rule) < BUCKET_LIMIT)
        .max_by_key(|(_, t)| u16::from(t.src_len) + u16::from(t.dst_len))
        .map(|(i, _)| i);
    if let Some(i) = roomy {
        return i;
    }
    let find = |tables: &[Staging], s: u8, d: u8| {
        tables.iter().position(|t| t.src_len == s && t.dst_len == d)
    };
    let relaxed = (relax(rule.src.len), relax(rule.dst.len));
    let exact = (rule.src.len, rule.dst.len);
    for (s, d) in [relaxed, exact] {
        if find(tables, s, d).is_none() {
            tables.push(Staging::new(s, d));
            return tables.len() - 1;
        }
    }
    // Both tables exist and the rule's bucket is full even in the exact one: every rule there
    // shares this rule's prefixes, so only a linear scan can tell them apart.
    find(tables, exact.0, exact.1).unwrap_or_else(|| {
        tables.push(Staging::new(exact.0, exact.1));
        tables.len() - 1
    })
}

impl Classifier for TupleSpace {
    fn build(rules: &[Rule]) -> Self {
        let mut staging: Vec<Staging> = Vec::new();
        for (index, rule) in (0u32..).zip(rules) {
            let t = place(&mut staging, rule);
            staging[t].insert(rule, index);
        }

        let mut entries = Vec::with_capacity(rules.len());
        let mut tables = Vec::with_capacity(staging.len());
        for st in staging {
            let mut buckets = FxHashMap::default();
            buckets.reserve(st.buckets.len());
            let (mut min_index, mut max_index) = (u32::MAX, 0);
            for (key, indices) in st.buckets {
                let start = entries.len() as u32;
                for index in indices {
                    min_index = min_index.min(index);
                    max_index = max_index.max(index);
                    entries.push(Entry {
                        index,
                        rule: rules[index as usize],
                    });
                }
                buckets.insert(key, (start, entries.len() as u32));
            }
            tables.push(Table {
                src_mask: mask(st.src_len),
                dst_mask: mask(st.dst_len),
                min_index,
                max_index,
                buckets,
            });
        }
        tables.sort_by_key(|t| t.min_index);
        TupleSpace { tables, entries }
    }

    fn classify(&self, key: &Key) -> Option<u32> {
        self.classify_from(key, 0)
    }

    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        // u64 so that "nothing found yet" sits above every possible u32 index.
        let mut best = u64::MAX;
        for table in &self.tables {
            if u64::from(table.min_index) >= best {
                // Tables are sorted by their best rule: none further on can win.
                break;
            }
            if table.max_index < from {
                continue;
            }
            let Some(&(start, end)) = table
                .buckets
                .get(&(key.src & table.src_mask, key.dst & table.dst_mask))
            else {
                continue;
            };
            for entry in &self.entries[start as usize..end as usize] {
                if u64::from(entry.index) >= best {
                    break;
                }
                if entry.index >= from && entry.rule.matches(key) {
                    best = u64::from(entry.index);
                    break;
                }
            }
        }
        u32::try_from(best).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::{key_near, raw_key, rule};
    use crate::classify::{map_v4, Linear, Ports, Prefix};
    use proptest::prelude::*;

    fn key(src: u128, dst: u128, src_port: u16, dst_port: u16, protocol: u8) -> Key {
        Key {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        }
    }

    #[test]
    fn first_match_wins_across_tables() {
        let specific = Rule {
            src: Prefix::v4(0x0a00_0001, 32),
            dst: Prefix::v4(0x0b00_0000, 8),
            src_ports: Ports::ANY,
            dst_ports: Ports { lo: 80, hi: 80 },
            protocol: Some(6),
        };
        let catch_all = Rule {
            src: Prefix::ANY,
            dst: Prefix::ANY,
            src_ports: Ports::ANY,
            dst_ports: Ports::ANY,
            protocol: None,
        };
        let rules = [catch_all, specific];
        let ts = TupleSpace::build(&rules);
        let k = key(map_v4(0x0a00_0001), map_v4(0x0b01_0203), 1234, 80, 6);
        assert_eq!(ts.classify(&k), Some(0));
        assert_eq!(ts.classify_from(&k, 1), Some(1));
        assert_eq!(ts.classify_from(&k, 2), None);
        let ts = TupleSpace::build(&[specific, catch_all]);
        assert_eq!(ts.classify(&k), Some(0));
        assert_eq!(ts.classify(&key(1, 2, 3, 4, 17)), Some(1));
        assert_eq!(TupleSpace::build(&[]).classify(&k), None);
    }

    #[test]
    fn many_rules_with_equal_prefixes_overflow_one_bucket() {
        let rules: Vec<Rule> = (0..40u16)
            .map(|p| Rule {
                src: Prefix::v4(0x0a00_0001, 32),
                dst: Prefix::v4(0x0a00_0002, 32),
                src_ports: Ports::ANY,
                dst_ports: Ports { lo: p, hi: p },
                protocol: Some(6),
            })
            .collect();
        let ts = TupleSpace::build(&rules);
        for p in 0..41u16 {
            let k = key(map_v4(0x0a00_0001), map_v4(0x0a00_0002), 9, p, 6);
            assert_eq!(ts.classify(&k), (p < 40).then_some(u32::from(p)));
        }
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
            let ts = TupleSpace::build(&rules);
            for (pick, noise, raw, from) in probes {
                let k = key_near(&rules, pick, noise, raw);
                prop_assert_eq!(ts.classify(&k), linear.classify(&k), "key {:?}", k);
                let from = from % (rules.len() as u32 + 2);
                prop_assert_eq!(
                    ts.classify_from(&k, from),
                    linear.classify_from(&k, from),
                    "key {:?} from {}", k, from
                );
            }
        }
    }
}
