//! What every stage of the data path shares: the flow a packet belongs to (in subscriber
//! orientation), the parsed frame, what becomes of it ([`Verdict`]), the caller's buffer for the
//! frames a stage answers with ([`Output`]), and the events raised for the control plane.
//!
//! A leaf below the engine and every stage (`redirect`, and what joins it): it imports only
//! `wire`, `classify` and `policy` types, so a stage never needs the engine that ties the stages
//! together, and the engine never needs a stage's internals to speak to the caller.

pub use crate::classify::ip_key;
use crate::classify::Key;
use crate::policy::{SessionId, SubscriberId};
use crate::time::Timestamp;
use crate::wire::{
    BuildError, Direction, EthernetHeader, FiveTuple, LinkHeader, LinkType, Packet, WireError,
};
use std::net::IpAddr;
use std::sync::Arc;

/// Where a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The leg facing the UEs.
    Ue,
    /// The leg facing the internet.
    Internet,
    /// No leg: a replayed capture, or a TUN device that carries both directions. Direction
    /// comes from the UE pools alone.
    Any,
}

/// What should happen to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on, unchanged, out of the other leg.
    Forward,
    Drop(DropReason),
    /// The engine answered the frame itself: the frames in [`Output`] go out, the original does
    /// not.
    Inject,
    /// Kept by the engine (a subscriber whose session is on its way, `pending.action = "hold"`):
    /// nothing goes out now; the frame comes back through [`crate::engine::Engine::release_held`]
    /// once the session is in force, or is dropped when it does not come in time.
    Held,
}

/// Why a frame was dropped. Small and `Copy`: it is a counter index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame could not be parsed (and `malformed = "drop"`).
    Malformed(WireError),
    /// The matching PCC rule's Flow-Status closes the gate for this direction.
    GateClosed,
    /// No PCC rule matched and the session's default rule drops.
    DefaultRule,
    /// An address of a UE pool without a session (and `unknown_subscriber = "drop"`).
    UnknownSubscriber,
    /// Neither end in a UE pool (and `non_subscriber = "drop"`).
    NonSubscriber,
    /// The session is under redirect and the packet is outside the walled garden (the redirect
    /// counters say why).
    WalledGarden,
    /// A subscriber address on the wrong leg: a UE-pool source arriving from the internet, or
    /// traffic to a UE pool arriving from the UE side.
    WrongLeg,
    /// A pool address without a session while its session is being fetched, and
    /// `pending.action = "drop"`.
    PendingSession,
    /// Held for a pending session, but its queue (`pending.queue` frames) is full.
    PendingQueueFull,
    /// A pool address without a session, but this worker already waits for `pending.subscribers`
    /// sessions: no room to remember it, so no session is asked for either.
    PendingTableFull,
    /// An online rating group whose last grant is used up with Final-Unit-Action TERMINATE.
    CreditTerminated,
    /// An online rating group under Final-Unit-Action RESTRICT_ACCESS, outside its
    /// Restriction-Filter-Rules and Filter-Ids.
    CreditRestricted,
    /// An online rating group without credit while it is asked for, and the pending action
    /// drops.
    CreditPending,
    /// Held while its rating group's credit is asked for, but the group's queue is full (or
    /// this worker holds for as many groups as it may).
    CreditQueueFull,
}

impl DropReason {
    pub const COUNT: usize = WireError::ALL.len() + 13;

    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed(e) => e as usize,
            DropReason::GateClosed => WireError::ALL.len(),
            DropReason::DefaultRule => WireError::ALL.len() + 1,
            DropReason::UnknownSubscriber => WireError::ALL.len() + 2,
            DropReason::NonSubscriber => WireError::ALL.len() + 3,
            DropReason::WalledGarden => WireError::ALL.len() + 4,
            DropReason::WrongLeg => WireError::ALL.len() + 5,
            DropReason::PendingSession => WireError::ALL.len() + 6,
            DropReason::PendingQueueFull => WireError::ALL.len() + 7,
            DropReason::PendingTableFull => WireError::ALL.len() + 8,
            DropReason::CreditTerminated => WireError::ALL.len() + 9,
            DropReason::CreditRestricted => WireError::ALL.len() + 10,
            DropReason::CreditPending => WireError::ALL.len() + 11,
            DropReason::CreditQueueFull => WireError::ALL.len() + 12,
        }
    }

    pub fn all() -> impl Iterator<Item = DropReason> {
        WireError::ALL
            .into_iter()
            .map(DropReason::Malformed)
            .chain([
                DropReason::GateClosed,
                DropReason::DefaultRule,
                DropReason::UnknownSubscriber,
                DropReason::NonSubscriber,
                DropReason::WalledGarden,
                DropReason::WrongLeg,
                DropReason::PendingSession,
                DropReason::PendingQueueFull,
                DropReason::PendingTableFull,
                DropReason::CreditTerminated,
                DropReason::CreditRestricted,
                DropReason::CreditPending,
                DropReason::CreditQueueFull,
            ])
    }

    /// Stable snake_case name used in counters and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed(e) => e.as_str(),
            DropReason::GateClosed => "gate_closed",
            DropReason::DefaultRule => "default_rule",
            DropReason::UnknownSubscriber => "unknown_subscriber",
            DropReason::NonSubscriber => "non_subscriber",
            DropReason::WalledGarden => "walled_garden",
            DropReason::WrongLeg => "wrong_leg",
            DropReason::PendingSession => "pending_session",
            DropReason::PendingQueueFull => "pending_queue_full",
            DropReason::PendingTableFull => "pending_table_full",
            DropReason::CreditTerminated => "credit_terminated",
            DropReason::CreditRestricted => "credit_restricted",
            DropReason::CreditPending => "credit_pending",
            DropReason::CreditQueueFull => "credit_queue_full",
        }
    }
}

/// Which leg an injected frame leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    Ue,
    Internet,
}

/// Caller-owned buffer for frames the engine injects; cleared by the caller between frames.
#[derive(Default)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// (leg, start, length) into `bytes`.
    pub frames: Vec<(Toward, usize, usize)>,
}

impl Output {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }

    pub fn frames(&self) -> impl Iterator<Item = (Toward, &[u8])> {
        self.frames
            .iter()
            .map(|(t, start, len)| (*t, &self.bytes[*start..*start + *len]))
    }

    /// Appends one frame answering `f` toward one leg: `build` writes the IP packet (addresses
    /// swapped by the builder) after a link header mirrored from `f` (MAC addresses swapped,
    /// VLAN tags kept). Returns false, leaving the buffer as it was, when nothing could be built.
    pub fn reply(
        &mut self,
        toward: Toward,
        f: &Frame<'_>,
        build: impl FnOnce(LinkHeader, &mut Vec<u8>) -> Result<usize, BuildError>,
    ) -> bool {
        let start = self.bytes.len();
        let link = match f.link {
            LinkType::Ethernet => {
                let (Some(dst), Some(src)) = (f.bytes.get(6..12), f.bytes.get(0..6)) else {
                    return false;
                };
                let mut eth = EthernetHeader {
                    dst: [0; 6],
                    src: [0; 6],
                    vlans: f.packet.vlans,
                    vlan_count: f.packet.vlan_count,
                };
                eth.dst.copy_from_slice(dst);
                eth.src.copy_from_slice(src);
                LinkHeader::Ethernet(eth)
            }
            LinkType::RawIp => LinkHeader::RawIp,
            LinkType::Loopback => {
                // The capture's own 4-byte family header, in its byte order.
                self.bytes
                    .extend_from_slice(f.bytes.get(..4).unwrap_or(&[0; 4]));
                LinkHeader::RawIp
            }
        };
        match build(link, &mut self.bytes) {
            Ok(_) => {
                self.frames.push((toward, start, self.bytes.len() - start));
                true
            }
            Err(_) => {
                self.bytes.truncate(start);
                false
            }
        }
    }
}

/// A flow in subscriber orientation, so both directions share one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub ue: u128,
    pub remote: u128,
    pub ue_port: u16,
    pub remote_port: u16,
    pub protocol: u8,
}

impl std::hash::Hash for FlowKey {
    /// Three words — the two addresses and the ports with the protocol — rather than five: the
    /// flow table's keyed hasher pays one multiplication a word, on every packet.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.ue);
        state.write_u128(self.remote);
        state.write_u64(
            u64::from(self.ue_port)
                | u64::from(self.remote_port) << 16
                | u64::from(self.protocol) << 32,
        );
    }
}

impl FlowKey {
    /// The flow of a packet with this tuple going this way.
    #[inline]
    pub fn new(t: &FiveTuple, direction: Direction) -> FlowKey {
        let (ue, remote, ue_port, remote_port) = match direction {
            Direction::Uplink => (t.src, t.dst, t.src_port, t.dst_port),
            Direction::Downlink => (t.dst, t.src, t.dst_port, t.src_port),
        };
        FlowKey {
            ue: ip_key(ue),
            remote: ip_key(remote),
            ue_port,
            remote_port,
            protocol: t.protocol,
        }
    }

    /// The classifier key of the flow in the orientation of a `permit out` filter: source = the
    /// remote end, destination = the UE. Both directions of a flow have the same key.
    #[inline]
    pub fn subscriber_key(&self) -> Key {
        Key {
            src: self.remote,
            dst: self.ue,
            src_port: self.remote_port,
            dst_port: self.ue_port,
            protocol: self.protocol,
        }
    }
}

/// The frame being handled, with its parse. The parse was checked against these bytes, so the
/// accessors only ever cut inside them.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    pub link: LinkType,
    pub bytes: &'a [u8],
    pub packet: &'a Packet,
}

impl<'a> Frame<'a> {
    /// The L4 payload (TCP or UDP data); empty where there is none.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let start = usize::from(self.packet.payload_offset);
        let len = usize::from(self.packet.payload_len);
        self.bytes.get(start..start + len).unwrap_or(&[])
    }

    /// The IP packet: header and everything it covers, without the link header or padding.
    pub fn ip(&self) -> &'a [u8] {
        let start = usize::from(self.packet.l3_offset);
        let len = usize::from(self.packet.ip_len);
        self.bytes.get(start..start + len).unwrap_or(&[])
    }

    /// From the L4 header on; empty for a later fragment, which has none.
    pub fn l4(&self) -> &'a [u8] {
        if self.packet.l4_offset == 0 {
            return &[];
        }
        self.bytes
            .get(usize::from(self.packet.l4_offset)..)
            .unwrap_or(&[])
    }

    /// The UE's end of the packet.
    pub fn ue(&self, direction: Direction) -> IpAddr {
        match direction {
            Direction::Uplink => self.packet.tuple.src,
            Direction::Downlink => self.packet.tuple.dst,
        }
    }
}

/// One packet on its way through the stages: when it arrived, which way it goes, the flow it
/// belongs to and its bytes. Built once per packet, after orientation; every stage reads it.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Monotonic time (a replay: the capture's clock): everything that measures an interval —
    /// idle timeouts, cookie epochs, TTLs, grace windows.
    pub now: Timestamp,
    /// `now` on the wall clock: what is compared with a date (token and nonce expiry, rule
    /// activation) or shown (usage first and last seen, events).
    pub wall: Timestamp,
    pub direction: Direction,
    pub key: FlowKey,
    pub frame: Frame<'a>,
}

/// What the data path reports to the control plane. Raised by the worker that owns the
/// subscriber; queued without blocking (see `dataplane`), so an event is never lost silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A verified recharge-success token was seen for this session. With
    /// `success_action = "report"` the redirect stays until the policy engine removes it; with
    /// `"local"` the worker has already lifted it.
    RechargeSuccess {
        session: SessionId,
        subscriber: SubscriberId,
        ue: IpAddr,
        /// Wall-clock time of the packet that carried it.
        at: Timestamp,
        /// The token as the watch read and verified it, for the policy engine to verify again.
        token: SuccessToken,
    },
    /// A packet from a UE-pool address that has no session, while sessions come from a policy
    /// engine: the control plane sends CCR-I for it. Raised once per address until the session
    /// arrives or the pending entry times out (then again on the next packet).
    SessionRequest {
        ue: IpAddr,
        /// Wall-clock time of the first packet.
        at: Timestamp,
    },
    /// A monitoring key's usage reached the threshold granted for it (Usage-Monitoring-
    /// Information): the control plane reports `used` in CCR-U and installs the next grant.
    /// Raised once per grant, by the packet that crossed it (that packet is counted in `used`).
    UsageThreshold {
        session: SessionId,
        monitoring_key: Arc<str>,
        /// The grant crossed, as [`crate::policy::MonitoringGrant::grant`] numbers it.
        grant: u64,
        /// Octets counted since the previous report of this key, up to and including the packet
        /// that crossed.
        used: Octets,
        at: Timestamp,
    },
    /// An online rating group needs credit (its first packet, no grant in force): the control
    /// plane asks the charging system (Gy CCR-I/U with Requested-Service-Unit). Raised once,
    /// and again only after a grant was used or the request went unanswered for
    /// `credit.retry`.
    CreditRequest {
        session: SessionId,
        rating_group: u32,
        service_identifier: Option<u32>,
        at: Timestamp,
    },
    /// Used-Service-Unit of an online rating group, for CCR-U (or CCR-T): what was used since
    /// the previous report of the group, so that every report of it added up is its meter.
    /// Every reason but `Final` and `QuotaHoldingTime` also asks for more credit.
    CreditReport {
        session: SessionId,
        rating_group: u32,
        service_identifier: Option<u32>,
        /// The grant the units were used under, as [`crate::policy::CreditGrant::grant`]
        /// numbers it (0: used before any grant, under the pending action).
        grant: u64,
        reason: ReportingReason,
        used: UsedUnits,
        at: Timestamp,
    },
    /// Every online rating group of the session that holds credit state is terminated by its
    /// Final-Unit-Action: the control plane ends the session.
    CreditTerminated { session: SessionId, at: Timestamp },
}

/// Reporting-Reason (TS 32.299 §7.2.175), numbered as the AVP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportingReason {
    Threshold = 0,
    QuotaHoldingTime = 1,
    /// The last grant (with a Final-Unit-Indication) is used up; its action is applied.
    Final = 2,
    QuotaExhausted = 3,
    ValidityTime = 4,
}

/// Used-Service-Unit: octets by direction and the time, in whole seconds, from the first to
/// the last packet counted in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsedUnits {
    pub octets: Octets,
    pub time: u64,
}

/// Which kind an [`Event`] is: a counter index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    RechargeSuccess,
    SessionRequest,
    UsageThreshold,
    /// Requests, reports and terminations of online charging.
    Credit,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::RechargeSuccess,
        EventKind::SessionRequest,
        EventKind::UsageThreshold,
        EventKind::Credit,
    ];

    /// Stable snake_case name used in counters and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RechargeSuccess => "recharge_success",
            EventKind::SessionRequest => "session_request",
            EventKind::UsageThreshold => "usage_threshold",
            EventKind::Credit => "credit",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RechargeSuccess { .. } => EventKind::RechargeSuccess,
            Event::SessionRequest { .. } => EventKind::SessionRequest,
            Event::UsageThreshold { .. } => EventKind::UsageThreshold,
            Event::CreditRequest { .. }
            | Event::CreditReport { .. }
            | Event::CreditTerminated { .. } => EventKind::Credit,
        }
    }
}

/// Octets counted for a monitoring key, by direction relative to the UE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Octets {
    pub uplink: u64,
    pub downlink: u64,
}

impl Octets {
    pub fn total(&self) -> u64 {
        self.uplink + self.downlink
    }
}

/// A recharge-success token the watch verified, owned (it leaves the packet path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessToken {
    /// `sub`.
    pub subscriber: String,
    /// `ue`, when the token names one.
    pub ue: Option<IpAddr>,
    /// `exp`, seconds since the Unix epoch.
    pub expires: u64,
    pub nonce: String,
    /// `sig`, hex.
    pub signature: String,
    /// `orig`, when the success URL carried it.
    pub original_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;
    use std::net::Ipv4Addr;

    #[test]
    fn both_directions_of_a_flow_have_one_key_and_one_classifier_key() {
        let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
        let web = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
        let up = FiveTuple {
            src: ue,
            dst: web,
            src_port: 40000,
            dst_port: 80,
            protocol: proto::TCP,
        };
        let down = FiveTuple {
            src: web,
            dst: ue,
            src_port: 80,
            dst_port: 40000,
            protocol: proto::TCP,
        };
        let key = FlowKey::new(&up, Direction::Uplink);
        assert_eq!(key, FlowKey::new(&down, Direction::Downlink));
        assert_eq!(
            key,
            FlowKey {
                ue: 0xffff_0a2d_0002,
                remote: 0xffff_c633_640a,
                ue_port: 40000,
                remote_port: 80,
                protocol: 6,
            }
        );
        assert_eq!(
            key.subscriber_key(),
            Key {
                src: 0xffff_c633_640a,
                dst: 0xffff_0a2d_0002,
                src_port: 80,
                dst_port: 40000,
                protocol: 6,
            }
        );
    }
}
