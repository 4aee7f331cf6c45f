//! Frame parsing and building: Ethernet II, 802.1Q/QinQ, raw IP, IPv4/IPv6 (options, extension
//! headers, fragments), TCP, UDP, ICMP/ICMPv6; the [`FiveTuple`]; checksums; the address
//! records of DNS answers ([`dns`]).
//!
//! Lengths are checked once, in [`parse`]; a [`Packet`] is trusted afterwards. Nothing here
//! allocates or panics on any input: bad bytes become a [`WireError`], which the engine counts as
//! a drop reason.

use std::net::IpAddr;

mod build;
pub mod dns;
mod fragment;
mod offload;
mod parse;

pub use build::{
    internet_checksum, ipv4_checksum, BuildError, Checksum, EthernetHeader, LinkHeader,
    PortUnreachable, TcpSegment,
};
pub use fragment::{FragmentKey, FragmentOutcome, FragmentTable, FragmentTableConfig};
pub use offload::{finish_partial_checksum, Partial};
pub use parse::parse;

/// How a frame starts: with an Ethernet header (AF_PACKET, most captures), with the IP header
/// (TUN, raw-IP captures), or with the 4-byte address-family header of BSD loopback captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    RawIp,
    /// DLT_NULL / DLT_LOOP: a 4-byte address family (in either byte order), then IP.
    Loopback,
}

/// IP protocol numbers the data path cares about.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// The classic 5-tuple of a packet, as it appears on the wire (not yet oriented to the UE).
/// Ports are zero for protocols without ports; for ICMP they stay zero too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

/// Where a packet goes relative to the subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the UE towards the network.
    Uplink,
    /// From the network towards the UE.
    Downlink,
}

/// Fragmentation state of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not a fragment.
    None,
    /// Offset zero, more fragments follow: carries the L4 header.
    First { id: u32 },
    /// Offset > 0: no L4 header; ports must come from the first fragment.
    Subsequent { id: u32 },
}

/// Why a frame could not be parsed. Small and `Copy`: it becomes a drop reason and a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The frame ends inside a link-layer header (Ethernet or VLAN tag).
    TruncatedLink,
    /// The frame ends inside the IP header, or before the IP total/payload length says.
    TruncatedIp,
    /// IP version is neither 4 nor 6, or an IPv4 header length/total length is impossible.
    MalformedIp,
    /// An IPv6 extension header is truncated or malformed.
    MalformedIpv6Extension,
    /// A TCP/UDP/ICMP header is truncated or its length field is impossible.
    MalformedL4,
}

impl WireError {
    pub const ALL: [WireError; 5] = [
        WireError::TruncatedLink,
        WireError::TruncatedIp,
        WireError::MalformedIp,
        WireError::MalformedIpv6Extension,
        WireError::MalformedL4,
    ];

    /// Stable snake_case name used in counters and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WireError::TruncatedLink => "truncated_link",
            WireError::TruncatedIp => "truncated_ip",
            WireError::MalformedIp => "malformed_ip",
            WireError::MalformedIpv6Extension => "malformed_ipv6_extension",
            WireError::MalformedL4 => "malformed_l4",
        }
    }
}

/// A frame that parsed: either IP, with everything the engine needs, or something else that the
/// engine passes through (ARP, LLDP, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Ip(Packet),
    /// Not IPv4/IPv6 (after any VLAN tags). `ether_type` is the inner EtherType.
    NonIp {
        ether_type: u16,
    },
}

/// A parsed IP packet. Offsets index into the frame that was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub tuple: FiveTuple,
    /// IPv4 total length, or 40 + IPv6 payload length: the bytes that are metered.
    pub ip_len: u16,
    /// Offset of the IP header in the frame.
    pub l3_offset: u16,
    /// Offset of the L4 header (0 for subsequent fragments).
    pub l4_offset: u16,
    /// Offset and length of the L4 payload (TCP/UDP data), 0/0 where there is none.
    pub payload_offset: u16,
    pub payload_len: u16,
    /// Up to two VLAN ids (outer first); `vlan_count` says how many are valid.
    pub vlans: [u16; 2],
    pub vlan_count: u8,
    pub fragment: Fragment,
    /// TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10), 0 for non-TCP.
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgement numbers, 0 for non-TCP.
    pub tcp_seq: u32,
    pub tcp_ack: u32,
}

/// ICMPv6 Router/Neighbor Solicitation and Advertisement and Redirect (types 133-137) with the
/// hop limit 255 that RFC 4861 requires: a message that crossed a router is not neighbour
/// discovery, and receivers drop it anyway.
pub fn is_neighbor_discovery(p: &Packet, frame: &[u8]) -> bool {
    const ROUTER_SOLICITATION: u8 = 133;
    const REDIRECT: u8 = 137;
    let hop_limit = frame.get(usize::from(p.l3_offset) + 7);
    let icmp_type = frame.get(usize::from(p.l4_offset));
    p.tuple.src.is_ipv6()
        && p.l4_offset != 0
        && hop_limit == Some(&255)
        && icmp_type.is_some_and(|t| (ROUTER_SOLICITATION..=REDIRECT).contains(t))
}

pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Bytes from a hex dump (whitespace ignored), for tests that embed real frames.
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}
