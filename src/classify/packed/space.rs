//! Tuple space over one address width: which table each rule goes to, and the search across
//! tables in priority order.
//!
//! A tuple is the pair of prefix lengths a table hashes on. A rule may sit in any table whose
//! tuple it covers (its prefixes at least as long), so
//! rules of nearby shapes share a table and a lookup probes few tables. Each bucket may hold
//! only a few rules before a rule looks for (or opens) a more specific table, which bounds the
//! scan after the hash.

use std::fmt::Debug;
use std::ops::BitAnd;

use rustc_hash::FxHashMap;

use super::table::Table;

/// Rules a bucket may hold before a rule looks for (or opens) another table. Rules that agree
/// on every hashed field can exceed it: no table can separate them.
const BUCKET_LIMIT: usize = 8;

/// An address width: IPv4 (`u32`, the common case, half the memory per rule) or the full
/// 128-bit space.
pub(super) trait Addr:
    Copy + Eq + std::hash::Hash + Default + Debug + BitAnd<Output = Self> + Send + Sync + 'static
{
    fn mask(len: u8) -> Self;
    /// Both addresses folded into the 64 bits the hash mixes.
    fn pair(src: Self, dst: Self) -> u64;
}

impl Addr for u32 {
    #[inline]
    fn mask(len: u8) -> Self {
        u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0)
    }
    #[inline]
    fn pair(src: Self, dst: Self) -> u64 {
        (u64::from(src) << 32) | u64::from(dst)
    }
}

impl Addr for u128 {
    #[inline]
    fn mask(len: u8) -> Self {
        super::super::mask(len)
    }
    #[inline]
    fn pair(src: Self, dst: Self) -> u64 {
        let fold = |a: u128| (a as u64) ^ ((a >> 64) as u64).rotate_left(29);
        fold(src) ^ fold(dst).wrapping_mul(0x94d0_49bb_1331_11eb)
    }
}

/// The prefix lengths a table hashes on. Ports and protocol are only checked after the hash:
/// hashing them too (where exact) was measured to open more tables than it saves in scanning,
/// on every ClassBench family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tuple {
    pub src_len: u8,
    pub dst_len: u8,
}

impl Tuple {
    /// Whether a rule of tuple `rule` may sit in a table of this tuple.
    fn covers(&self, rule: &Tuple) -> bool {
        self.src_len <= rule.src_len && self.dst_len <= rule.dst_len
    }

    /// How finely the tuple splits rules: more specific tables make smaller buckets.
    fn specificity(&self) -> u32 {
        u32::from(self.src_len) + u32::from(self.dst_len)
    }

    /// Lengths rounded down to a multiple of `step`, so rules with nearby lengths share a table.
    fn relaxed(&self, step: u8) -> Tuple {
        let round = |l: u8| l - l % step;
        Tuple {
            src_len: round(self.src_len),
            dst_len: round(self.dst_len),
        }
    }
}

/// A rule packed for the check after the hash: masked compares and two range tests.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry<A> {
    pub src: A,
    pub src_mask: A,
    pub dst: A,
    pub dst_mask: A,
    pub src_port_lo: u16,
    /// `hi - lo`: one wrapping compare tests the range.
    pub src_port_span: u16,
    pub dst_port_lo: u16,
    pub dst_port_span: u16,
    pub protocol: u8,
    pub protocol_mask: u8,
    /// The rule's priority (lower wins).
    pub index: u32,
}

impl<A: Addr> Entry<A> {
    #[inline]
    pub fn matches(&self, p: &Probe<A>) -> bool {
        (p.src & self.src_mask == self.src)
            & (p.dst & self.dst_mask == self.dst)
            & (p.src_port.wrapping_sub(self.src_port_lo) <= self.src_port_span)
            & (p.dst_port.wrapping_sub(self.dst_port_lo) <= self.dst_port_span)
            & (p.protocol & self.protocol_mask == self.protocol)
    }
}

/// A key in the space's width, packed once per lookup.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe<A> {
    pub src: A,
    pub dst: A,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

impl<A: Addr> Probe<A> {
    #[inline]
    pub fn new(src: A, dst: A, src_port: u16, dst_port: u16, protocol: u8) -> Self {
        Probe {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        }
    }
}

/// All tables of one width, searched in order of the best rule each holds.
#[derive(Debug)]
pub(super) struct Space<A> {
    tables: Vec<Table<A>>,
    /// Priority -> id of the table holding the rule.
    homes: FxHashMap<u32, u32>,
    next_id: u32,
}

impl<A: Addr> Default for Space<A> {
    fn default() -> Self {
        Space {
            tables: Vec::new(),
            homes: FxHashMap::default(),
            next_id: 0,
        }
    }
}

impl<A: Addr> Space<A> {
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    pub fn contains(&self, index: u32) -> bool {
        self.homes.contains_key(&index)
    }

    /// Adds a rule whose prefixes have lengths `src_len` and `dst_len` (already in `A`'s width).
    /// The priority must not be present.
    pub fn insert(&mut self, e: Entry<A>, src_len: u8, dst_len: u8) {
        let t = self.place(&e, Tuple { src_len, dst_len });
        self.tables[t].insert(e);
        self.homes.insert(e.index, self.tables[t].id);
        self.order();
    }

    /// Removes the rule with `e`'s fields and priority; false if it is not here.
    pub fn remove(&mut self, e: &Entry<A>) -> bool {
        let Some(id) = self.homes.remove(&e.index) else {
            return false;
        };
        let Some(t) = self.tables.iter().position(|t| t.id == id) else {
            return false;
        };
        let removed = self.tables[t].remove(e);
        if self.tables[t].is_empty() {
            self.tables.remove(t);
        }
        self.order();
        removed
    }

    /// After a bulk build: folds small tables into coarser ones, then tightens every table's
    /// layout.
    pub fn compact(&mut self) {
        self.merge_tables();
        for t in &mut self.tables {
            t.compact();
        }
    }

    /// Moves each table's rules into a coarser table that covers its tuple, when none of that
    /// table's buckets would pass `BUCKET_LIMIT`: rules placed one by one in priority order
    /// open tables a whole rule set does not need (a coarse table opened later could have
    /// taken them), and every table is one more probe for the lookups that reach it.
    /// Smallest tables first; a table that took another may then move in turn.
    fn merge_tables(&mut self) {
        loop {
            let mut by_size: Vec<usize> = (0..self.tables.len()).collect();
            by_size.sort_by_key(|&i| self.tables[i].rule_count());
            let Some((from, into)) = by_size
                .iter()
                .find_map(|&i| self.merge_target(i).map(|j| (i, j)))
            else {
                break;
            };
            let moved: Vec<Entry<A>> = self.tables[from].entries().copied().collect();
            let id = self.tables[into].id;
            for e in moved {
                self.tables[into].insert(e);
                self.homes.insert(e.index, id);
            }
            self.tables.remove(from);
            self.order();
        }
    }

    /// The most specific other table that can take all of table `i`'s rules.
    fn merge_target(&self, i: usize) -> Option<usize> {
        let own = self.tables[i].tuple;
        let mut candidates: Vec<usize> = (0..self.tables.len())
            .filter(|&j| j != i && self.tables[j].tuple.covers(&own))
            .collect();
        candidates.sort_by_key(|&j| std::cmp::Reverse(self.tables[j].tuple.specificity()));
        candidates.into_iter().find(|&j| {
            let target = &self.tables[j];
            let mut added: FxHashMap<(A, A), usize> = FxHashMap::default();
            self.tables[i].entries().all(|e| {
                let n = added.entry(target.bucket_key(e)).or_default();
                *n += 1;
                target.bucket_len(e) + *n <= BUCKET_LIMIT
            })
        })
    }

    /// Keeps tables sorted by their best rule, which the search's early stop relies on.
    fn order(&mut self) {
        if !self.tables.is_sorted_by_key(|t| t.min_index) {
            self.tables.sort_by_key(|t| t.min_index);
        }
    }

    /// Picks the table for a rule of tuple `own`, opening one if needed; returns its position.
    fn place(&mut self, e: &Entry<A>, own: Tuple) -> usize {
        // The most specific table with room spreads rules over the most buckets.
        let roomy = self
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.tuple.covers(&own) && t.bucket_len(e) < BUCKET_LIMIT)
            .max_by_key(|(_, t)| t.tuple.specificity())
            .map(|(i, _)| i);
        if let Some(i) = roomy {
            return i;
        }
        // Open the coarsest table not there yet: coarse tables take many shapes of rule, so a
        // lookup probes few tables; finer ones only when the coarse bucket is full.
        for tuple in [own.relaxed(16), own.relaxed(8), own] {
            if !self.tables.iter().any(|t| t.tuple == tuple) {
                self.tables.push(Table::new(tuple, self.next_id));
                self.next_id += 1;
                return self.tables.len() - 1;
            }
        }
        // Every such table exists and the rule's bucket is full even in its own tuple's table: every
        // rule there agrees with it on every hashed field, so only the scan can tell them apart.
        match self.tables.iter().position(|t| t.tuple == own) {
            Some(i) => i,
            None => {
                self.tables.push(Table::new(own, self.next_id));
                self.next_id += 1;
                self.tables.len() - 1
            }
        }
    }

    #[inline]
    pub fn classify_from(&self, p: &Probe<A>, from: u32) -> Option<u32> {
        // u64 so that "nothing found yet" sits above every possible u32 priority.
        let mut best = u64::MAX;
        for table in &self.tables {
            if u64::from(table.min_index) >= best {
                // Tables are sorted by their best rule: none further on can win.
                break;
            }
            if table.max_index < from {
                continue;
            }
            best = table.lookup(p, from, best);
        }
        u32::try_from(best).ok()
    }

    /// How many tables a lookup of `p` probes: what its time is made of.
    pub fn probes(&self, p: &Probe<A>) -> (usize, usize) {
        let mut best = u64::MAX;
        let mut tables = 0;
        let mut scanned = 0;
        for table in &self.tables {
            if u64::from(table.min_index) >= best {
                break;
            }
            tables += 1;
            scanned += table.bucket_len_of(p);
            best = table.lookup(p, 0, best);
        }
        (tables, scanned)
    }
}
