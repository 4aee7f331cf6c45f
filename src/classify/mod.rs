//! Rule lookup: given a 5-field key, find the first (highest-priority) rule that matches.
//!
//! Every structure implements [`Classifier`]; [`Linear`] is the brute-force first-match oracle
//! the others are tested against. [`PackedTuples`] is the fast one (and takes rule inserts and
//! removals); [`TupleSpace`] is its simpler predecessor, kept as a second reference. Addresses are 128-bit: IPv4 is mapped into `::ffff:0:0/96`, so
//! one structure serves both families and an IPv4 prefix never matches an IPv6 address.

pub mod classbench;
mod linear;
mod packed;
#[cfg(test)]
mod testing;
mod tuple_space;

pub use linear::Linear;
pub use packed::{InsertError, PackedTuples};
pub use tuple_space::TupleSpace;

use std::net::IpAddr;

/// A prefix over the 128-bit address space (IPv4 mapped to `::ffff:a.b.c.d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Host bits are zero.
    pub addr: u128,
    pub len: u8,
}

impl Prefix {
    pub const ANY: Prefix = Prefix { addr: 0, len: 0 };

    pub fn new(addr: u128, len: u8) -> Self {
        let len = len.min(128);
        Prefix {
            addr: addr & mask(len),
            len,
        }
    }

    /// An IPv4 prefix, mapped.
    pub fn v4(addr: u32, len: u8) -> Self {
        Prefix::new(map_v4(addr), 96 + len.min(32))
    }

    pub fn from_ip(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => Prefix::v4(u32::from(a), len),
            IpAddr::V6(a) => Prefix::new(u128::from(a), len),
        }
    }

    #[inline]
    pub fn contains(&self, addr: u128) -> bool {
        addr & mask(self.len) == self.addr
    }
}

#[inline]
pub fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

#[inline]
pub fn map_v4(addr: u32) -> u128 {
    0xffff_0000_0000 | u128::from(addr)
}

#[inline]
pub fn ip_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => map_v4(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl Ports {
    pub const ANY: Ports = Ports {
        lo: 0,
        hi: u16::MAX,
    };

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    pub fn is_any(&self) -> bool {
        *self == Ports::ANY
    }
}

/// One classification rule. Rules are given to a classifier in priority order (first wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub src: Prefix,
    pub dst: Prefix,
    pub src_ports: Ports,
    pub dst_ports: Ports,
    /// `None` matches any protocol.
    pub protocol: Option<u8>,
}

impl Rule {
    #[inline]
    pub fn matches(&self, key: &Key) -> bool {
        self.src.contains(key.src)
            && self.dst.contains(key.dst)
            && self.src_ports.contains(key.src_port)
            && self.dst_ports.contains(key.dst_port)
            && self.protocol.is_none_or(|p| p == key.protocol)
    }
}

/// What is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub src: u128,
    pub dst: u128,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

/// A rule lookup structure, built once from rules in priority order.
pub trait Classifier: Send + Sync {
    /// Builds the structure; `rules[i]` has priority `i` (0 is best).
    fn build(rules: &[Rule]) -> Self
    where
        Self: Sized;

    /// The index of the first rule that matches `key`, if any.
    fn classify(&self, key: &Key) -> Option<u32>;

    /// The index of the first rule that matches `key` among rules whose index is at least
    /// `from`. Lets a caller skip rules it has ruled out (e.g. rules not active now).
    fn classify_from(&self, key: &Key, from: u32) -> Option<u32>;
}
