//! The per-worker flow table: the classification of each bidirectional flow, cached, with its
//! counters. Bounded; idle flows expire per protocol.

use crate::charging::Slot;
use crate::packet::FlowKey;
use crate::policy::{RuleId, SessionId};
use crate::time::Timestamp;
use crate::wire::{proto, Direction};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

/// What to do with one direction of a flow, decided once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Undecided,
    Decided {
        /// `None` when the session's default rule applied.
        rule: Option<RuleId>,
        forward: bool,
        rating_group: Option<Slot>,
        monitoring_key: Option<Slot>,
        /// The rating group is charged online: each packet consumes its credit.
        online: bool,
        /// Index into the engine's rule-hit counters.
        hits: Option<u32>,
    },
    /// Held by a Final-Unit REDIRECT of this rating group: each packet goes to the redirect
    /// stage, until the redirect is lifted and the flow decided again.
    Redirected {
        rating_group: u32,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct FlowEntry {
    /// The stamp of the session the decisions were made under: they hold, across snapshots,
    /// while the session at `session` has the same stamp (see `PolicySnapshot::is_current`).
    pub stamp: u64,
    /// The session's slot in the snapshot.
    pub session: u32,
    pub session_id: SessionId,
    pub uplink: Decision,
    pub downlink: Decision,
    /// Decisions hold until a rule of the session turns on or off.
    pub valid_until: Timestamp,
    /// The session slot's epoch when the flow was entered: the decisions hold while it is the
    /// table's (see [`FlowTable::invalidate_session`]). Set by [`FlowTable::insert`].
    pub epoch: u32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub packets: u64,
    pub bytes: u64,
    /// Shown to the redirect module's success watch (a portal flow of a redirected session, or
    /// DNS from a resolver it may use).
    pub watch: bool,
}

impl FlowEntry {
    /// The decision for one direction of the flow.
    pub fn decision_mut(&mut self, direction: Direction) -> &mut Decision {
        match direction {
            Direction::Uplink => &mut self.uplink,
            Direction::Downlink => &mut self.downlink,
        }
    }

    pub fn new(
        stamp: u64,
        session: u32,
        session_id: SessionId,
        valid_until: Timestamp,
        now: Timestamp,
    ) -> Self {
        FlowEntry {
            stamp,
            session,
            session_id,
            uplink: Decision::Undecided,
            downlink: Decision::Undecided,
            valid_until,
            epoch: 0,
            first_seen: now,
            last_seen: now,
            packets: 0,
            bytes: 0,
            watch: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct IdleTimeouts {
    pub tcp: Duration,
    pub udp: Duration,
    pub icmp: Duration,
    pub other: Duration,
}

impl IdleTimeouts {
    pub fn for_protocol(&self, protocol: u8) -> Duration {
        match protocol {
            proto::TCP => self.tcp,
            proto::UDP => self.udp,
            proto::ICMP | proto::ICMPV6 => self.icmp,
            _ => self.other,
        }
    }
}

/// How many entries an eviction looks at to find an old one; bounds the cost of a full table.
const EVICTION_SAMPLE: usize = 16;

pub struct FlowTable {
    /// Keyed on 5-tuples anyone on the internet chooses: a randomly keyed hash (a fresh key per
    /// table), so colliding keys cannot be computed in advance.
    map: HashMap<FlowKey, FlowEntry, ahash::RandomState>,
    /// Per session slot, bumped to make every cached decision of the slot's session stale at
    /// once; a slot never invalidated has no entry (epoch 0).
    epochs: Vec<u32>,
    capacity: usize,
    pub timeouts: IdleTimeouts,
    last_sweep: Timestamp,
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
}

impl FlowTable {
    pub fn new(capacity: usize, timeouts: IdleTimeouts) -> Self {
        let capacity = capacity.max(1);
        let mut map = HashMap::with_hasher(ahash::RandomState::new());
        map.reserve(capacity);
        FlowTable {
            map,
            epochs: Vec::new(),
            capacity,
            timeouts,
            last_sweep: Timestamp::ZERO,
            created: 0,
            expired: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut FlowEntry> {
        self.map.get_mut(key)
    }

    /// Whether an entry is past its protocol's idle timeout.
    pub fn is_idle(&self, key: &FlowKey, entry: &FlowEntry, now: Timestamp) -> bool {
        now.saturating_since(entry.last_seen) > self.timeouts.for_protocol(key.protocol)
    }

    /// Inserts (or replaces) a flow, making room first if the table is full. Its decisions are
    /// current for its session slot's epoch as it is now.
    pub fn insert(&mut self, key: FlowKey, mut entry: FlowEntry, now: Timestamp) -> &mut FlowEntry {
        entry.epoch = self.epoch(entry.session);
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.make_room(now);
        }
        self.created += 1;
        let timeout = self.timeouts.for_protocol(key.protocol);
        match self.map.entry(key) {
            Entry::Occupied(mut o) => {
                // A 5-tuple back after its idle timeout, before a sweep removed it: the old flow
                // expired, the same as if the sweep had come first.
                if now.saturating_since(o.get().last_seen) > timeout {
                    self.expired += 1;
                }
                o.insert(entry);
                o.into_mut()
            }
            Entry::Vacant(v) => v.insert(entry),
        }
    }

    fn make_room(&mut self, now: Timestamp) {
        // A full sweep is O(table); under a flood of new flows do it at most once a second and
        // evict by sampling in between.
        if now.saturating_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            self.expire(now);
            if self.map.len() < self.capacity {
                return;
            }
        }
        let oldest = self
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.map.remove(&k);
            self.evicted += 1;
        }
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowEntry> {
        self.map.remove(key)
    }

    /// The epoch of a session slot: a cached decision holds while its entry's is this one.
    #[inline]
    pub fn epoch(&self, slot: u32) -> u32 {
        self.epochs.get(slot as usize).copied().unwrap_or(0)
    }

    /// A flow whose session slot has not been invalidated since it was entered (a stale one
    /// stays until it is entered again or expires).
    #[inline]
    pub fn get_current_mut(&mut self, key: &FlowKey) -> Option<&mut FlowEntry> {
        let e = self.map.get_mut(key)?;
        let epoch = self.epochs.get(e.session as usize).copied().unwrap_or(0);
        (e.epoch == epoch).then_some(e)
    }

    /// Makes every cached decision of the session at `slot` stale, so each of its flows is
    /// decided again on its next packet (after its redirect was applied or lifted). Constant
    /// time, whatever the table holds: the slot's epoch moves on, and the cache hit compares
    /// it. A slot's next session inherits the epoch; its flows are entered under it.
    pub fn invalidate_session(&mut self, slot: u32) {
        let i = slot as usize;
        if i >= self.epochs.len() {
            self.epochs.resize(i + 1, 0);
        }
        self.epochs[i] = self.epochs[i].wrapping_add(1);
    }

    /// Removes idle flows; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let timeouts = self.timeouts;
        let before = self.map.len();
        self.map
            .retain(|k, e| now.saturating_since(e.last_seen) <= timeouts.for_protocol(k.protocol));
        let removed = before - self.map.len();
        self.expired += removed as u64;
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn table() -> FlowTable {
        let t = Duration::from_secs(60);
        FlowTable::new(
            16,
            IdleTimeouts {
                tcp: t,
                udp: Duration::from_secs(30),
                icmp: t,
                other: t,
            },
        )
    }

    fn udp_key() -> FlowKey {
        FlowKey {
            ue: 0x0a2d_0002,
            remote: 0x0808_0808,
            ue_port: 40000,
            remote_port: 53,
            protocol: proto::UDP,
        }
    }

    fn entry(now: Timestamp) -> FlowEntry {
        FlowEntry::new(1, 0, SessionId(1), Timestamp::MAX, now)
    }

    #[test]
    fn a_five_tuple_back_after_its_idle_timeout_counts_as_expired_once() {
        let mut t = table();
        let key = udp_key();
        let start = Timestamp(1000 * SEC);
        t.insert(key, entry(start), start);
        // Back 31 s later (UDP times out after 30 s), before any sweep: a new flow, and the old
        // one expired.
        let back = Timestamp(1031 * SEC);
        t.insert(key, entry(back), back);
        assert_eq!((t.created, t.expired, t.len()), (2, 1, 1));
        // Replaced within its timeout (a decision made again): not an expiry.
        let soon = Timestamp(1040 * SEC);
        t.insert(key, entry(soon), soon);
        assert_eq!((t.created, t.expired, t.len()), (3, 1, 1));
        // The sweep counts the same flow once more only after it idles out again.
        assert_eq!(t.expire(Timestamp(1070 * SEC)), 0);
        assert_eq!(t.expire(Timestamp(1071 * SEC)), 1);
        assert_eq!((t.created, t.expired, t.len()), (3, 2, 0));
    }

    #[test]
    fn invalidating_a_slot_makes_only_its_flows_stale_until_entered_again() {
        let mut t = table();
        let now = Timestamp(1000 * SEC);
        let (a, b) = (
            udp_key(),
            FlowKey {
                ue: 0x0a2d_0003,
                ..udp_key()
            },
        );
        t.insert(
            a,
            FlowEntry::new(1, 7, SessionId(1), Timestamp::MAX, now),
            now,
        );
        t.insert(
            b,
            FlowEntry::new(2, 8, SessionId(2), Timestamp::MAX, now),
            now,
        );
        t.invalidate_session(7);
        assert!(t.get_current_mut(&a).is_none());
        assert!(t.get_current_mut(&b).is_some());
        // Still in the table (counted, expired like any flow) until decided again.
        assert_eq!(t.len(), 2);
        t.insert(
            a,
            FlowEntry::new(1, 7, SessionId(1), Timestamp::MAX, now),
            now,
        );
        assert_eq!(t.get_current_mut(&a).map(|e| e.epoch), Some(1));
        // A slot far beyond any entered leaves the others alone.
        t.invalidate_session(100_000);
        assert!(t.get_current_mut(&a).is_some() && t.get_current_mut(&b).is_some());
    }
}
