//! Subscribers whose session is on its way: a pool address with no session, while sessions
//! come from a policy engine (`settings.pending`). The first packet of such an address raises
//! [`Event::SessionRequest`](crate::packet::Event::SessionRequest) once; its packets then follow
//! `pending.action`, and with `hold` they are copied here, in order, until the session arrives
//! (released through the pipeline by [`super::Engine::release_held`]) or `pending.timeout`
//! passes (dropped, counted; the next packet asks again).
//!
//! Bounded: at most `pending.subscribers` addresses and `pending.queue` frames each. An entry's
//! buffers are made when its address first becomes pending and are reused for later addresses,
//! so holding a frame copies it into room that is already there.
//!
//! An IPv6 subscriber is pending by its /64, the prefix a session is given.

use crate::packet::Port;
use crate::policy::{PendingSettings, PolicySnapshot};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

/// Room made per held frame when an entry is made: an Ethernet frame with two VLAN tags.
const FRAME_ROOM: usize = 1536;

/// What a pool address without a session is waited for under.
#[inline]
pub(super) fn key(ue: u128) -> u128 {
    if ue >> 32 == 0xffff {
        ue
    } else {
        ue & crate::classify::mask(64)
    }
}

/// What frames held for an online rating group's credit wait under (in the engine's second
/// [`Pending`], apart from the subscribers'): the group's meter slot.
#[inline]
pub(super) fn credit_key(slot: crate::charging::Slot) -> u128 {
    credit_key_of(slot.index())
}

/// [`credit_key`] of a slot by its index.
#[inline]
pub(super) fn credit_key_of(index: usize) -> u128 {
    index as u128
}

/// No room for one more pending address.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

#[derive(Default)]
struct Entry {
    key: u128,
    /// When its session was asked for (monotonic).
    since: Timestamp,
    bytes: Vec<u8>,
    /// (leg it came from, start, length) into `bytes`, oldest first.
    frames: Vec<(Port, u32, u32)>,
}

/// One worker's pending subscribers.
#[derive(Default)]
pub(super) struct Pending {
    by_key: FxHashMap<u128, u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Entries whose session the snapshot in force has, waiting for their frames' release.
    ready: Vec<u32>,
}

impl Pending {
    /// Addresses waiting for their session.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Frames held, over every entry (also those ready for release).
    pub(super) fn held(&self) -> usize {
        self.entries.iter().map(|e| e.frames.len()).sum()
    }

    /// The entry of `key`, made if there is none. `true` with it: the session must be asked for
    /// (a new entry, or one whose wait timed out — its frames are dropped, their number
    /// added to `expired`).
    pub(super) fn enter(
        &mut self,
        key: u128,
        now: Timestamp,
        p: &PendingSettings,
        expired: &mut u64,
    ) -> Result<(u32, bool), Full> {
        if let Some(&i) = self.by_key.get(&key) {
            let e = &mut self.entries[i as usize];
            if now.saturating_since(e.since) < p.timeout {
                return Ok((i, false));
            }
            *expired += e.frames.len() as u64;
            e.frames.clear();
            e.bytes.clear();
            e.since = now;
            return Ok((i, true));
        }
        if self.by_key.len() >= p.subscribers {
            return Err(Full);
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    bytes: Vec::with_capacity(p.queue * FRAME_ROOM),
                    frames: Vec::with_capacity(p.queue),
                    ..Entry::default()
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[i as usize];
        e.key = key;
        e.since = now;
        // A reused entry may come from a smaller `queue`.
        e.frames.reserve(p.queue);
        e.bytes.reserve(p.queue * FRAME_ROOM);
        self.by_key.insert(key, i);
        Ok((i, true))
    }

    /// Copies a frame into entry `i`; false when its queue is full.
    pub(super) fn hold(&mut self, i: u32, port: Port, frame: &[u8], queue: usize) -> bool {
        let e = &mut self.entries[i as usize];
        if e.frames.len() >= queue {
            return false;
        }
        e.frames
            .push((port, e.bytes.len() as u32, frame.len() as u32));
        e.bytes.extend_from_slice(frame);
        true
    }

    /// Drops the entries that waited `timeout` or longer (their frames counted into the
    /// return value); their next packet asks again.
    pub(super) fn expire(&mut self, now: Timestamp, p: Option<&PendingSettings>) -> u64 {
        if self.by_key.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        let Pending {
            by_key,
            entries,
            free,
            ..
        } = self;
        by_key.retain(|_, i| {
            let e = &mut entries[*i as usize];
            let keep = p.is_some_and(|p| now.saturating_since(e.since) < p.timeout);
            if !keep {
                dropped += e.frames.len() as u64;
                e.frames.clear();
                e.bytes.clear();
                free.push(*i);
            }
            keep
        });
        dropped
    }

    /// A new snapshot: the entries whose session it has become ready for release (and stop
    /// being pending, so the session's own packets are enforced as they come). Without
    /// `pending` in the new settings every entry is dropped; the return value is the number
    /// of frames that dropped.
    pub(super) fn set_snapshot(&mut self, snap: &PolicySnapshot) -> u64 {
        if self.by_key.is_empty() {
            return 0;
        }
        if snap.settings.pending.is_none() {
            return self.expire(Timestamp::MAX, None);
        }
        let Pending {
            by_key,
            entries,
            free,
            ready,
        } = self;
        by_key.retain(|key, i| {
            if snap.session_index(*key).is_none() {
                return true;
            }
            if entries[*i as usize].frames.is_empty() {
                free.push(*i);
            } else {
                ready.push(*i);
            }
            false
        });
        0
    }

    /// The entry of `key` is ready for release (its credit came); false when it holds nothing.
    pub(super) fn release(&mut self, key: u128) -> bool {
        let Some(i) = self.by_key.remove(&key) else {
            return false;
        };
        if self.entries[i as usize].frames.is_empty() {
            self.free.push(i);
            return false;
        }
        self.ready.push(i);
        true
    }

    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes the entries ready for release; hand them back with [`Pending::released`].
    pub(super) fn take_ready(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.ready)
    }

    /// The frames of entry `i`, to run through the pipeline; hand them back with
    /// [`Pending::released`].
    pub(super) fn take_frames(&mut self, i: u32) -> (Vec<u8>, Vec<(Port, u32, u32)>) {
        let e = &mut self.entries[i as usize];
        (std::mem::take(&mut e.bytes), std::mem::take(&mut e.frames))
    }

    /// Entry `i` is released: its buffers, emptied, wait for the next pending address.
    pub(super) fn released(
        &mut self,
        i: u32,
        mut bytes: Vec<u8>,
        mut frames: Vec<(Port, u32, u32)>,
    ) {
        bytes.clear();
        frames.clear();
        let e = &mut self.entries[i as usize];
        e.bytes = bytes;
        e.frames = frames;
        self.free.push(i);
    }

    /// The emptied list of ready entries, for its room to be used again.
    pub(super) fn ready_done(&mut self, mut ready: Vec<u32>) {
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }
}
