//! Usage metering: uplink and downlink bytes and packets, first and last seen, per session ×
//! rating group and per session × monitoring key; the usage-monitoring thresholds beside them
//! (`monitoring`); online charging's credit, consumed beside them (`credit`).
//!
//! Counters live in slots owned by one worker: the packet path resolves a slot once per flow and
//! then only adds to it, so counting costs no hashing and no allocation per packet. Bytes are IP
//! bytes (IPv4 total length, or 40 + IPv6 payload length), as a gateway meters them.

mod credit;
mod monitoring;

pub use credit::{Admit, Change, Credit, CreditState};
pub use monitoring::Monitoring;

use crate::policy::SessionId;
use crate::time::Timestamp;
use crate::wire::Direction;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::sync::Arc;

/// Counters of one metered quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub uplink_bytes: u64,
    pub uplink_packets: u64,
    pub downlink_bytes: u64,
    pub downlink_packets: u64,
    /// Capture or wall-clock time of the first and last packet counted.
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
}

impl Usage {
    #[inline]
    pub fn add(&mut self, direction: Direction, bytes: u16, now: Timestamp) {
        self.add_packets(direction, u64::from(bytes), 1, now);
    }

    /// `packets` packets of `bytes` in all: the segments an aggregate frame stands for.
    #[inline]
    pub fn add_packets(&mut self, direction: Direction, bytes: u64, packets: u64, now: Timestamp) {
        match direction {
            Direction::Uplink => {
                self.uplink_bytes += bytes;
                self.uplink_packets += packets;
            }
            Direction::Downlink => {
                self.downlink_bytes += bytes;
                self.downlink_packets += packets;
            }
        }
        if self.first_seen.is_none() {
            self.first_seen = Some(now);
        }
        self.last_seen = Some(now);
    }

    pub fn total_bytes(&self) -> u64 {
        self.uplink_bytes + self.downlink_bytes
    }
}

/// Handle of a counter slot in a [`Meter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot(u32);

impl Slot {
    /// Its position among the meter's slots (in the order first seen), for state kept beside
    /// them.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a slot counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Metered {
    RatingGroup(SessionId, u32),
    MonitoringKey(SessionId, Arc<str>),
}

/// One worker's usage counters.
#[derive(Default)]
pub struct Meter {
    slots: Vec<(Metered, Usage)>,
    index: FxHashMap<Metered, Slot>,
}

impl Meter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot for a quantity, created on first use (once per flow, not per packet).
    pub fn slot(&mut self, what: Metered) -> Slot {
        if let Some(slot) = self.index.get(&what) {
            return *slot;
        }
        let slot = Slot(self.slots.len() as u32);
        self.slots.push((what.clone(), Usage::default()));
        self.index.insert(what, slot);
        slot
    }

    #[inline]
    pub fn add(&mut self, slot: Slot, direction: Direction, bytes: u16, now: Timestamp) {
        self.add_packets(slot, direction, u64::from(bytes), 1, now);
    }

    /// See [`Usage::add_packets`].
    #[inline]
    pub fn add_packets(
        &mut self,
        slot: Slot,
        direction: Direction,
        bytes: u64,
        packets: u64,
        now: Timestamp,
    ) {
        // Slots are only made by `slot`, so the index is in range.
        if let Some((_, usage)) = self.slots.get_mut(slot.0 as usize) {
            usage.add_packets(direction, bytes, packets, now);
        }
    }

    pub fn usage(&self, what: &Metered) -> Option<&Usage> {
        self.index.get(what).map(|s| &self.slots[s.0 as usize].1)
    }

    /// Every quantity with its usage, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&Metered, &Usage)> {
        self.slots.iter().map(|(m, u)| (m, u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_counts_are_exact() {
        let mut m = Meter::new();
        let a = m.slot(Metered::RatingGroup(SessionId(1), 10));
        let b = m.slot(Metered::MonitoringKey(SessionId(1), Arc::from("mk")));
        assert_eq!(a, m.slot(Metered::RatingGroup(SessionId(1), 10)));
        assert_ne!(a, b);
        m.add(a, Direction::Uplink, 60, Timestamp(5));
        m.add(a, Direction::Downlink, 1500, Timestamp(7));
        m.add(a, Direction::Downlink, 40, Timestamp(9));
        let u = m
            .usage(&Metered::RatingGroup(SessionId(1), 10))
            .copied()
            .unwrap();
        assert_eq!(
            u,
            Usage {
                uplink_bytes: 60,
                uplink_packets: 1,
                downlink_bytes: 1540,
                downlink_packets: 2,
                first_seen: Some(Timestamp(5)),
                last_seen: Some(Timestamp(9)),
            }
        );
        assert_eq!(
            m.usage(&Metered::MonitoringKey(SessionId(1), Arc::from("mk")))
                .unwrap()
                .total_bytes(),
            0
        );
    }
}
