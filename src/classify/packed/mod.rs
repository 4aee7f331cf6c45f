//! Packed tuple space: the production first-match classifier, with rule insert and remove.
//!
//! Owns the fastest lookup behind [`Classifier`]. Its answers must always equal
//! [`Linear`](super::Linear)'s; it never allocates on lookup.
//!
//! Tuple space search with merged tuples (in the spirit of TupleMerge), laid out for the cache:
//! each table is one open-addressed array of slots hashed by multiply-shift, and each bucket's
//! rules sit packed side by side in the table's arena, checked with masked compares. Tables are
//! searched in order of the best rule they hold and the search stops once no remaining table
//! can beat the match in hand.
//!
//! Rules are split by address width. A key whose two addresses are IPv4 can only match rules
//! whose prefixes both contain IPv4 addresses; those are kept again in 32-bit form, so an IPv4
//! lookup hashes and compares 32-bit fields only. Every other key searches the rules that can
//! match a non-IPv4 address, in full 128-bit form.

mod space;
mod table;
#[cfg(test)]
mod tests;

use rustc_hash::FxHashMap;

use super::{Classifier, Key, Prefix, Rule};
use space::{Entry, Probe, Space};

/// The IPv4-mapped block `::ffff:0:0/96`.
const V4_BLOCK: u128 = 0xffff_0000_0000;

/// A rule insert that cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("a rule with priority {0} is already installed; remove it first")]
    DuplicatePriority(u32),
}

/// Fast first-match classifier with incremental updates; see the module documentation.
///
/// [`Classifier::build`] gives `rules[i]` priority `i`. [`PackedTuples::insert`] and
/// [`PackedTuples::remove`] change one rule at a time under any priority; lookups answer the
/// lowest priority among matching rules.
#[derive(Debug, Default)]
pub struct PackedTuples {
    v4: Space<u32>,
    wide: Space<u128>,
    rules: FxHashMap<u32, Rule>,
}

/// `p` restricted to IPv4 addresses, as a 32-bit prefix; `None` if it holds none.
fn v4_part(p: &Prefix) -> Option<(u32, u8)> {
    if p.len >= 96 {
        (p.addr >> 32 == 0xffff).then_some((p.addr as u32, p.len - 96))
    } else {
        p.contains(V4_BLOCK).then_some((0, 0))
    }
}

/// Whether `p` holds only IPv4 addresses.
fn v4_only(p: &Prefix) -> bool {
    p.len >= 96 && p.addr >> 32 == 0xffff
}

fn entry<A: space::Addr>(rule: &Rule, index: u32, src: (A, u8), dst: (A, u8)) -> Entry<A> {
    let (protocol, protocol_mask) = rule.protocol.map_or((0, 0), |p| (p, 0xff));
    Entry {
        src: src.0,
        src_mask: A::mask(src.1),
        dst: dst.0,
        dst_mask: A::mask(dst.1),
        src_port_lo: rule.src_ports.lo,
        src_port_span: rule.src_ports.hi.wrapping_sub(rule.src_ports.lo),
        dst_port_lo: rule.dst_ports.lo,
        dst_port_span: rule.dst_ports.hi.wrapping_sub(rule.dst_ports.lo),
        protocol,
        protocol_mask,
        index,
    }
}

impl PackedTuples {
    /// Installs `rule` under `priority` (lower wins).
    pub fn insert(&mut self, priority: u32, rule: Rule) -> Result<(), InsertError> {
        if self.rules.contains_key(&priority) {
            return Err(InsertError::DuplicatePriority(priority));
        }
        self.add(priority, &rule);
        self.rules.insert(priority, rule);
        Ok(())
    }

    /// Removes the rule installed under `priority`, returning it.
    pub fn remove(&mut self, priority: u32) -> Option<Rule> {
        let rule = self.rules.remove(&priority)?;
        if let (Some(s), Some(d)) = (v4_part(&rule.src), v4_part(&rule.dst)) {
            self.v4.remove(&entry(&rule, priority, s, d));
        }
        if self.wide.contains(priority) {
            let e = entry(
                &rule,
                priority,
                (rule.src.addr, rule.src.len),
                (rule.dst.addr, rule.dst.len),
            );
            self.wide.remove(&e);
        }
        Some(rule)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many tables each width has: the figure that decides a lookup's speed.
    pub fn table_counts(&self) -> (usize, usize) {
        (self.v4.table_count(), self.wide.table_count())
    }

    /// How many tables the lookup of `key` probes before it can stop.
    pub fn probes(&self, key: &Key) -> (usize, usize) {
        match v4_key(key) {
            Some(p) => self.v4.probes(&p),
            None => self.wide.probes(&wide_key(key)),
        }
    }

    fn add(&mut self, priority: u32, rule: &Rule) {
        if let (Some(s), Some(d)) = (v4_part(&rule.src), v4_part(&rule.dst)) {
            self.v4.insert(entry(rule, priority, s, d), s.1, d.1);
        }
        if !(v4_only(&rule.src) && v4_only(&rule.dst)) {
            let e = entry(
                rule,
                priority,
                (rule.src.addr, rule.src.len),
                (rule.dst.addr, rule.dst.len),
            );
            self.wide.insert(e, rule.src.len, rule.dst.len);
        }
    }
}

#[inline]
fn v4_key(key: &Key) -> Option<Probe<u32>> {
    (key.src >> 32 == 0xffff && key.dst >> 32 == 0xffff).then(|| {
        Probe::new(
            key.src as u32,
            key.dst as u32,
            key.src_port,
            key.dst_port,
            key.protocol,
        )
    })
}

#[inline]
fn wide_key(key: &Key) -> Probe<u128> {
    Probe::new(key.src, key.dst, key.src_port, key.dst_port, key.protocol)
}

impl Classifier for PackedTuples {
    fn build(rules: &[Rule]) -> Self {
        let mut c = PackedTuples::default();
        c.rules.reserve(rules.len());
        for (index, rule) in (0u32..).zip(rules) {
            c.add(index, rule);
            c.rules.insert(index, *rule);
        }
        c.v4.compact();
        c.wide.compact();
        c
    }

    #[inline]
    fn classify(&self, key: &Key) -> Option<u32> {
        self.classify_from(key, 0)
    }

    #[inline]
    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        match v4_key(key) {
            Some(p) => self.v4.classify_from(&p, from),
            None => self.wide.classify_from(&wide_key(key), from),
        }
    }
}
