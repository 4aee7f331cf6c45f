//! Bounded table that lets non-first IP fragments follow the flow of their first fragment.

use super::{Fragment, Packet};
use crate::time::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct FragmentTableConfig {
    /// Most datagrams remembered at once; the oldest is evicted beyond this.
    pub capacity: usize,
    /// How long a first fragment's ports are remembered.
    pub timeout: Duration,
}

impl Default for FragmentTableConfig {
    fn default() -> Self {
        FragmentTableConfig {
            capacity: 4096,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub id: u32,
}

/// What the table did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragmentOutcome {
    NotFragment,
    /// A first fragment: its ports were recorded.
    First,
    /// A later fragment whose first fragment was seen: its ports were filled in.
    Resolved,
    /// A later fragment whose first fragment is unknown (not yet seen, expired or evicted): its
    /// ports stay zero.
    Orphan,
}

/// What is remembered of a first fragment.
#[derive(Clone, Copy, Debug)]
struct Entry {
    src_port: u16,
    dst_port: u16,
    seen: Timestamp,
}

/// Remembers the ports of first fragments so later fragments of the same datagram classify like
/// it. Memory is allocated once, in [`FragmentTable::new`]; `resolve` never allocates.
pub struct FragmentTable {
    config: FragmentTableConfig,
    /// Keyed on what any sender chooses: a randomly keyed hash, fresh per table.
    entries: HashMap<FragmentKey, Entry, ahash::RandomState>,
    /// Keys in the order they were first recorded, each exactly once, oldest at the front: the
    /// eviction order. It always holds exactly the keys of `entries`.
    order: VecDeque<FragmentKey>,
}

impl FragmentTable {
    pub fn new(config: FragmentTableConfig) -> Self {
        // Twice the room: the hash map then always rehashes in place when deletions leave
        // tombstones, instead of growing, so steady-state churn never allocates.
        let room = config.capacity.saturating_mul(2);
        FragmentTable {
            config,
            entries: HashMap::with_capacity_and_hasher(room, ahash::RandomState::new()),
            order: VecDeque::with_capacity(config.capacity),
        }
    }

    /// Records first fragments and fills in the ports of later ones.
    pub fn resolve(&mut self, now: Timestamp, packet: &mut Packet) -> FragmentOutcome {
        match packet.fragment {
            Fragment::None => FragmentOutcome::NotFragment,
            Fragment::First { id } => {
                self.record(now, key(packet, id), packet);
                FragmentOutcome::First
            }
            Fragment::Subsequent { id } => match self.entries.get(&key(packet, id)) {
                Some(entry) if !self.expired(now, entry) => {
                    packet.tuple.src_port = entry.src_port;
                    packet.tuple.dst_port = entry.dst_port;
                    FragmentOutcome::Resolved
                }
                _ => FragmentOutcome::Orphan,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry that has timed out; `resolve` does this lazily, a caller with idle time
    /// can do it eagerly.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(oldest) = self.order.front() {
            match self.entries.get(oldest) {
                Some(entry) if !self.expired(now, entry) => break,
                _ => self.evict_oldest(),
            }
        }
    }

    fn record(&mut self, now: Timestamp, key: FragmentKey, packet: &Packet) {
        let entry = Entry {
            src_port: packet.tuple.src_port,
            dst_port: packet.tuple.dst_port,
            seen: now,
        };
        // A repeated first fragment (a retransmission) refreshes its entry but keeps its place in
        // the eviction order, so `order` never holds a key twice.
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = entry;
            return;
        }
        if self.config.capacity == 0 {
            return;
        }
        self.expire(now);
        while self.entries.len() >= self.config.capacity {
            self.evict_oldest();
        }
        self.entries.insert(key, entry);
        self.order.push_back(key);
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self.order.pop_front() {
            self.entries.remove(&oldest);
        }
    }

    fn expired(&self, now: Timestamp, entry: &Entry) -> bool {
        now.saturating_since(entry.seen) > self.config.timeout
    }
}

fn key(packet: &Packet, id: u32) -> FragmentKey {
    FragmentKey {
        src: packet.tuple.src,
        dst: packet.tuple.dst,
        protocol: packet.tuple.protocol,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{proto, FiveTuple};
    use std::net::Ipv4Addr;

    fn packet(fragment: Fragment, src_port: u16, dst_port: u16) -> Packet {
        Packet {
            tuple: FiveTuple {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                src_port,
                dst_port,
                protocol: proto::UDP,
            },
            ip_len: 1500,
            l3_offset: 14,
            l4_offset: if src_port == 0 { 0 } else { 34 },
            payload_offset: 0,
            payload_len: 0,
            vlans: [0, 0],
            vlan_count: 0,
            fragment,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
        }
    }

    fn first(id: u32, ports: (u16, u16)) -> Packet {
        packet(Fragment::First { id }, ports.0, ports.1)
    }

    fn later(id: u32) -> Packet {
        packet(Fragment::Subsequent { id }, 0, 0)
    }

    fn table(capacity: usize, timeout_secs: u64) -> FragmentTable {
        FragmentTable::new(FragmentTableConfig {
            capacity,
            timeout: Duration::from_secs(timeout_secs),
        })
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn later_fragment_gets_the_first_fragments_ports() {
        let mut t = table(16, 30);
        let mut p = packet(Fragment::None, 1, 2);
        assert_eq!(t.resolve(at(1), &mut p), FragmentOutcome::NotFragment);
        assert!(t.is_empty());

        let mut f = first(7, (5353, 53));
        assert_eq!(t.resolve(at(1), &mut f), FragmentOutcome::First);
        assert_eq!(t.len(), 1);
        let mut s = later(7);
        assert_eq!(t.resolve(at(2), &mut s), FragmentOutcome::Resolved);
        assert_eq!((s.tuple.src_port, s.tuple.dst_port), (5353, 53));
    }

    #[test]
    fn unknown_datagram_is_orphan() {
        let mut t = table(16, 30);
        let mut f = first(7, (5353, 53));
        t.resolve(at(1), &mut f);
        let mut s = later(8);
        assert_eq!(t.resolve(at(1), &mut s), FragmentOutcome::Orphan);
        assert_eq!((s.tuple.src_port, s.tuple.dst_port), (0, 0));

        // Same id, other protocol: another datagram.
        let mut s = later(7);
        s.tuple.protocol = proto::TCP;
        assert_eq!(t.resolve(at(1), &mut s), FragmentOutcome::Orphan);
    }

    #[test]
    fn entries_expire() {
        let mut t = table(16, 30);
        t.resolve(at(100), &mut first(1, (10, 20)));
        assert_eq!(t.resolve(at(130), &mut later(1)), FragmentOutcome::Resolved);
        let mut s = later(1);
        assert_eq!(t.resolve(at(131), &mut s), FragmentOutcome::Orphan);
        assert_eq!(s.tuple.src_port, 0);
        t.expire(at(131));
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_evicts_expired_then_oldest() {
        let mut t = table(3, 30);
        t.resolve(at(0), &mut first(1, (1, 1)));
        t.resolve(at(20), &mut first(2, (2, 2)));
        t.resolve(at(21), &mut first(3, (3, 3)));
        // Entry 1 has expired at 40: it goes, the others stay.
        t.resolve(at(40), &mut first(4, (4, 4)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.resolve(at(40), &mut later(1)), FragmentOutcome::Orphan);
        assert_eq!(t.resolve(at(40), &mut later(2)), FragmentOutcome::Resolved);
        // Nothing expired: the oldest (2) is evicted.
        t.resolve(at(41), &mut first(5, (5, 5)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.resolve(at(41), &mut later(2)), FragmentOutcome::Orphan);
        for id in [3, 4, 5] {
            assert_eq!(t.resolve(at(41), &mut later(id)), FragmentOutcome::Resolved);
        }
    }

    #[test]
    fn repeated_first_fragment_refreshes_without_duplicating() {
        let mut t = table(2, 30);
        t.resolve(at(0), &mut first(1, (1, 1)));
        t.resolve(at(1), &mut first(1, (9, 9)));
        assert_eq!(t.len(), 1);
        let mut s = later(1);
        t.resolve(at(2), &mut s);
        assert_eq!(s.tuple.src_port, 9);
        t.resolve(at(3), &mut first(2, (2, 2)));
        t.resolve(at(4), &mut first(3, (3, 3)));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut t = table(0, 30);
        assert_eq!(
            t.resolve(at(0), &mut first(1, (1, 1))),
            FragmentOutcome::First
        );
        assert_eq!(t.resolve(at(0), &mut later(1)), FragmentOutcome::Orphan);
        assert!(t.is_empty());
    }

    #[test]
    fn churn_does_not_grow_the_table() {
        let mut t = table(64, 30);
        let map_room = t.entries.capacity();
        let order_room = t.order.capacity();
        for id in 0..100_000u32 {
            t.resolve(at(u64::from(id / 1000)), &mut first(id, (1, 2)));
        }
        assert_eq!(t.len(), 64);
        // Tombstones left by evictions lower what the map reports as room until it rehashes
        // in place, so its capacity may read lower, never higher: it did not grow.
        assert!(t.entries.capacity() <= map_room, "{}", t.entries.capacity());
        assert_eq!(t.order.capacity(), order_room);
    }

    /// Real bytes: both fragments of a datagram split from a captured frame, through `parse`.
    #[test]
    fn resolves_parsed_fragments() {
        use crate::wire::{parse, LinkType, Parsed};
        // tcpreplay-test.pcap #26 (a DNS query), split after 16 bytes of IP payload.
        let whole = "001ff33ce113f81edfe5843a0800450000435b2c0000ff11f24fac100b0cac10\
                     0b01d56f0035002f758413a201000001000000000000046538373201670a616b\
                     616d616965646765036e65740000010001";
        let whole: Vec<u8> = (0..whole.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&whole[i..i + 2], 16).unwrap())
            .collect();
        let mut first_frag = whole[..14 + 20 + 16].to_vec();
        first_frag[16..18].copy_from_slice(&36u16.to_be_bytes());
        first_frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        let mut second = whole[..34].to_vec();
        second.extend_from_slice(&whole[34 + 16..]);
        second[16..18].copy_from_slice(&(20 + 47 - 16u16).to_be_bytes());
        second[20..22].copy_from_slice(&2u16.to_be_bytes());

        let ip = |frame: &[u8]| match parse(LinkType::Ethernet, frame) {
            Ok(Parsed::Ip(p)) => p,
            other => panic!("{other:?}"),
        };
        let mut t = table(16, 30);
        let mut a = ip(&first_frag);
        let mut b = ip(&second);
        assert_eq!(t.resolve(at(0), &mut a), FragmentOutcome::First);
        assert_eq!(t.resolve(at(0), &mut b), FragmentOutcome::Resolved);
        assert_eq!(b.tuple, a.tuple);
        assert_eq!((b.tuple.src_port, b.tuple.dst_port), (54639, 53));
    }
}
