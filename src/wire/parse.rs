//! The parser: link layer, IP, L4, in one pass over the frame.
//!
//! Header slicing is etherparse's zero-copy slices; this file decides what the gateway needs from
//! them and how their errors become the five [`WireError`]s. It never checksums: the kernel or
//! the NIC already dropped corrupt frames, and the engine only needs the 5-tuple and lengths.
//!
//! Choices worth knowing:
//! - A frame longer than 65535 bytes is [`WireError::MalformedIp`]: `Packet` offsets are `u16`,
//!   and no IP packet a gateway forwards is that large, so it is refused rather than described
//!   with truncated offsets.
//! - VLAN tags (TPID 0x8100, 0x88a8 or 0x9100) are read outer first; the first two ids are kept
//!   and any deeper tags are skipped, so a triple-tagged frame is still classified (and not waved
//!   through as non-IP).
//! - A first fragment whose L4 header does not fit in it is [`WireError::MalformedL4`]: such tiny
//!   fragments exist only to slip past filters (RFC 1858).
//! - An IPv6 fragment header with offset 0 and no more fragments (an atomic fragment, RFC 6946)
//!   is not a fragment.

use super::{proto, FiveTuple, Fragment, LinkType, Packet, Parsed, WireError};
use etherparse::err::{ipv4, ipv6, Layer};
use etherparse::{
    Ethernet2HeaderSlice, Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, LenSource,
    SingleVlanHeaderSlice, TcpSlice, UdpSlice,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const TPID_QINQ_LEGACY: u16 = 0x9100;
const IPV6_HEADER_LEN: usize = 40;
/// Every ICMP and ICMPv6 message type carries at least type, code, checksum and 4 more bytes.
const ICMP_MIN_LEN: usize = 8;

/// VLAN ids read from the link layer, outer first.
#[derive(Clone, Copy, Default)]
struct Vlans {
    ids: [u16; 2],
    count: u8,
}

/// Parses one frame. Never panics, never allocates.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<Parsed, WireError> {
    if frame.len() > usize::from(u16::MAX) {
        return Err(WireError::MalformedIp);
    }
    match link {
        LinkType::Ethernet => parse_ethernet(frame),
        LinkType::RawIp => parse_raw_ip(frame, 0),
        // The address family's byte order depends on the capturing host; the IP version nibble
        // says the same thing without guessing.
        LinkType::Loopback if frame.len() < LOOPBACK_HEADER => Err(WireError::TruncatedLink),
        LinkType::Loopback => parse_raw_ip(frame, LOOPBACK_HEADER),
    }
}

const LOOPBACK_HEADER: usize = 4;

fn parse_raw_ip(frame: &[u8], offset: usize) -> Result<Parsed, WireError> {
    let first = frame.get(offset).ok_or(WireError::TruncatedIp)?;
    match first >> 4 {
        4 => parse_ipv4(frame, offset, Vlans::default()),
        6 => parse_ipv6(frame, offset, Vlans::default()),
        _ => Err(WireError::MalformedIp),
    }
}

fn parse_ethernet(frame: &[u8]) -> Result<Parsed, WireError> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| WireError::TruncatedLink)?;
    let mut ether_type = eth.ether_type().0;
    let mut offset = eth.slice().len();
    let mut vlans = Vlans::default();
    while matches!(ether_type, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY) {
        let rest = frame.get(offset..).ok_or(WireError::TruncatedLink)?;
        let tag = SingleVlanHeaderSlice::from_slice(rest).map_err(|_| WireError::TruncatedLink)?;
        if let Some(slot) = vlans.ids.get_mut(usize::from(vlans.count)) {
            *slot = tag.vlan_identifier().value();
            vlans.count += 1;
        }
        ether_type = tag.ether_type().0;
        offset += tag.slice().len();
    }
    match ether_type {
        ETHERTYPE_IPV4 => parse_ipv4(frame, offset, vlans),
        ETHERTYPE_IPV6 => parse_ipv6(frame, offset, vlans),
        other => Ok(Parsed::NonIp { ether_type: other }),
    }
}

fn parse_ipv4(frame: &[u8], l3: usize, vlans: Vlans) -> Result<Parsed, WireError> {
    let rest = frame.get(l3..).ok_or(WireError::TruncatedIp)?;
    let ip = Ipv4Slice::from_slice(rest).map_err(ipv4_error)?;
    let header = ip.header();
    let ip_len = header.total_len();
    let fragment = if header.is_fragmenting_payload() {
        let id = u32::from(header.identification());
        if header.fragments_offset().value() == 0 {
            Fragment::First { id }
        } else {
            Fragment::Subsequent { id }
        }
    } else {
        Fragment::None
    };
    let payload = ip.payload();
    let ip_part = IpPart {
        src: IpAddr::V4(Ipv4Addr::from(header.source())),
        dst: IpAddr::V4(Ipv4Addr::from(header.destination())),
        protocol: payload.ip_number.0,
        ip_len,
        l3,
        // The payload ends where the total length says, so its start is the end minus its length.
        l4: l3 + usize::from(ip_len) - payload.payload.len(),
        fragment,
        vlans,
    };
    finish(ip_part, payload.payload)
}

fn ipv4_error(err: ipv4::SliceError) -> WireError {
    match err {
        ipv4::SliceError::Len(len) if len.len_source == LenSource::Slice => WireError::TruncatedIp,
        // The total length is smaller than the header (or an AH header) it must contain.
        ipv4::SliceError::Len(_) => WireError::MalformedIp,
        ipv4::SliceError::Header(_) | ipv4::SliceError::Exts(_) => WireError::MalformedIp,
    }
}

fn parse_ipv6(frame: &[u8], l3: usize, vlans: Vlans) -> Result<Parsed, WireError> {
    let rest = frame.get(l3..).ok_or(WireError::TruncatedIp)?;
    let payload_len = match rest.get(4..6) {
        Some(&[hi, lo]) if rest.len() >= IPV6_HEADER_LEN => u16::from_be_bytes([hi, lo]),
        _ => return Err(WireError::TruncatedIp),
    };
    let end = IPV6_HEADER_LEN + usize::from(payload_len);
    // Cutting at the payload length first keeps Ethernet padding out, and makes etherparse treat
    // a zero payload length as an empty payload rather than "the rest of the frame" (a jumbogram
    // cannot fit in a 64 KiB frame anyway).
    let packet = rest.get(..end).ok_or(WireError::TruncatedIp)?;
    let ip = Ipv6Slice::from_slice(packet).map_err(ipv6_error)?;
    let ip_len = u16::try_from(end).map_err(|_| WireError::MalformedIp)?;
    let fragment = if ip.is_payload_fragmented() {
        ipv6_fragment(&ip)
    } else {
        Fragment::None
    };
    let header = ip.header();
    let payload = ip.payload();
    let ip_part = IpPart {
        src: IpAddr::V6(Ipv6Addr::from(header.source())),
        dst: IpAddr::V6(Ipv6Addr::from(header.destination())),
        protocol: payload.ip_number.0,
        ip_len,
        l3,
        l4: l3 + end - payload.payload.len(),
        fragment,
        vlans,
    };
    finish(ip_part, payload.payload)
}

fn ipv6_fragment(ip: &Ipv6Slice<'_>) -> Fragment {
    for ext in ip.extensions().clone() {
        if let Ipv6ExtensionSlice::Fragment(frag) = ext {
            if frag.is_fragmenting_payload() {
                let id = frag.identification();
                return if frag.fragment_offset().value() == 0 {
                    Fragment::First { id }
                } else {
                    Fragment::Subsequent { id }
                };
            }
        }
    }
    Fragment::None
}

fn ipv6_error(err: ipv6::SliceError) -> WireError {
    match err {
        ipv6::SliceError::Len(len) => match len.layer {
            Layer::Ipv6Header | Layer::Ipv6Packet => WireError::TruncatedIp,
            // The packet was already cut at its payload length, so an extension header that runs
            // past the end contradicts that length.
            _ => WireError::MalformedIpv6Extension,
        },
        ipv6::SliceError::Header(_) => WireError::MalformedIp,
        ipv6::SliceError::Exts(_) => WireError::MalformedIpv6Extension,
    }
}

/// What the IP layer found, handed to the L4 step.
struct IpPart {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ip_len: u16,
    l3: usize,
    l4: usize,
    fragment: Fragment,
    vlans: Vlans,
}

/// L4 fields, with the payload start relative to the L4 header.
#[derive(Default)]
struct L4 {
    src_port: u16,
    dst_port: u16,
    payload_start: usize,
    payload_len: usize,
    tcp_flags: u8,
    tcp_seq: u32,
    tcp_ack: u32,
}

fn finish(ip: IpPart, l4_bytes: &[u8]) -> Result<Parsed, WireError> {
    let subsequent = matches!(ip.fragment, Fragment::Subsequent { .. });
    let l4 = if subsequent {
        L4::default()
    } else {
        parse_l4(ip.protocol, l4_bytes, ip.fragment != Fragment::None)?
    };
    let l4_offset = if subsequent { 0 } else { ip.l4 };
    let payload_offset = if l4.payload_len == 0 {
        0
    } else {
        l4_offset + l4.payload_start
    };
    // Every offset and length below is at most frame.len(), which `parse` checked fits in a u16.
    Ok(Parsed::Ip(Packet {
        tuple: FiveTuple {
            src: ip.src,
            dst: ip.dst,
            src_port: l4.src_port,
            dst_port: l4.dst_port,
            protocol: ip.protocol,
        },
        ip_len: ip.ip_len,
        l3_offset: ip.l3 as u16,
        l4_offset: l4_offset as u16,
        payload_offset: payload_offset as u16,
        payload_len: l4.payload_len as u16,
        vlans: ip.vlans.ids,
        vlan_count: ip.vlans.count,
        fragment: ip.fragment,
        tcp_flags: l4.tcp_flags,
        tcp_seq: l4.tcp_seq,
        tcp_ack: l4.tcp_ack,
    }))
}

/// `first_fragment`: the bytes end where the fragment ends, not where the L4 length says.
fn parse_l4(protocol: u8, bytes: &[u8], first_fragment: bool) -> Result<L4, WireError> {
    match protocol {
        proto::TCP => {
            let tcp = TcpSlice::from_slice(bytes).map_err(|_| WireError::MalformedL4)?;
            let header = tcp.header_slice();
            Ok(L4 {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                payload_start: header.len(),
                payload_len: tcp.payload().len(),
                tcp_flags: header.get(13).copied().unwrap_or(0),
                tcp_seq: tcp.sequence_number(),
                tcp_ack: tcp.acknowledgment_number(),
            })
        }
        proto::UDP => {
            let udp = if first_fragment {
                UdpSlice::from_slice_lax(bytes)
            } else {
                UdpSlice::from_slice(bytes)
            }
            .map_err(|_| WireError::MalformedL4)?;
            Ok(L4 {
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                payload_start: udp.header_slice().len(),
                payload_len: udp.payload().len(),
                ..L4::default()
            })
        }
        proto::ICMP | proto::ICMPV6 if bytes.len() < ICMP_MIN_LEN => Err(WireError::MalformedL4),
        _ => Ok(L4::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp_flags;
    use proptest::prelude::*;

    use crate::wire::test_hex as hex;

    fn ip(frame: &[u8], link: LinkType) -> Packet {
        match parse(link, frame) {
            Ok(Parsed::Ip(p)) => p,
            other => panic!("expected an IP packet, got {other:?}"),
        }
    }

    // Real frames, from ../shared/data/pcap/ (frame numbers as Wireshark counts them).

    /// tcpreplay-test.pcap #1: IPv4 TCP (TLS record), 27 bytes of data, timestamps option.
    const IPV4_TCP: &str = "001ff33ce113f81edfe5843a08004500004fde534000400647abac100b0c4a7d
        1311fc3501bbc6d914d0c51e2dbf8018ffffcb8c00000101080a1a7d842c37c5
        58b01503010016431a881efa7abc226ee6327a534700a75dcc64ea8e92";
    /// tcpreplay-test.pcap #10: ARP request.
    const ARP: &str = "ffffffffffff001ff33ce11308060001080006040001001ff33ce113ac100b01
        000000000000ac100bc2";
    /// tcpreplay-test.pcap #12: ICMP echo reply.
    const IPV4_ICMP: &str = "003096052838003096e6fc3908004500005400510000fd01a9050a2200010a1f
        00010000c5100f6612a00000000000539ee0abcdabcdabcdabcdabcdabcdabcd
        abcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcd
        abcdabcdabcdabcdabcdabcdabcdabcdabcd";
    /// tcpreplay-test.pcap #26: IPv4 UDP DNS query.
    const IPV4_UDP: &str = "001ff33ce113f81edfe5843a0800450000435b2c0000ff11f24fac100b0cac10
        0b01d56f0035002f758413a201000001000000000000046538373201670a616b
        616d616965646765036e65740000010001";
    /// tcpreplay-test.pcap #32: IPv6 TCP, HTTP GET.
    const IPV6_TCP: &str = "943fc2d352bdac1f6bac27da86dd6000420000a506402001495815a00024c1b3
        b7667fffd0b32606470000000000000000006812069ca8f200506e210cf87d79
        294a501801fb254b0000474554202f20485454502f312e310d0a557365722d41
        67656e743a20576765742f312e32302e3320286c696e75782d676e75290d0a41
        63636570743a202a2f2a0d0a4163636570742d456e636f64696e673a20696465
        6e746974790d0a486f73743a20697076362e6963616e68617a69702e636f6d0d
        0a436f6e6e656374696f6e3a204b6565702d416c6976650d0a0d0a";
    /// zeek-workshop_2011_browse.pcap #8: IPv4 TCP, 2 bytes of data, 4 bytes of Ethernet padding.
    const IPV4_TCP_PADDED: &str = "08002787942452540012350208004500002a39b600004006b947c096bb2b0a00
        020f0050c08236e3c2bd012836965018ffff28be00000d0a00000000";
    /// zeek-wikipedia.pcap #120: IPv6 UDP (LLMNR).
    const IPV6_UDP: &str = "333300010003f04da247ba2586dd6000000000291101fe800000000000003074
        17d52052c324ff020000000000000000000000010003ff5d14eb0029c5e94620
        000000010000000000000f4252574330434233383344314634320000010001";

    fn all_real() -> Vec<Vec<u8>> {
        [
            IPV4_TCP,
            ARP,
            IPV4_ICMP,
            IPV4_UDP,
            IPV6_TCP,
            IPV4_TCP_PADDED,
            IPV6_UDP,
        ]
        .iter()
        .map(|s| hex(s))
        .collect()
    }

    /// Inserts VLAN tags (TPID, VLAN id) after the MAC addresses, outer first.
    fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        for &(tpid, id) in tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(0x2000 | id).to_be_bytes()); // priority 1
        }
        out.extend_from_slice(&frame[12..]);
        out
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn ipv4_tcp_over_ethernet_every_field() {
        let frame = hex(IPV4_TCP);
        assert_eq!(frame.len(), 93);
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(
            p,
            Packet {
                tuple: FiveTuple {
                    src: v4([172, 16, 11, 12]),
                    dst: v4([74, 125, 19, 17]),
                    src_port: 64565,
                    dst_port: 443,
                    protocol: proto::TCP,
                },
                ip_len: 79,
                l3_offset: 14,
                l4_offset: 34,
                payload_offset: 66,
                payload_len: 27,
                vlans: [0, 0],
                vlan_count: 0,
                fragment: Fragment::None,
                tcp_flags: tcp_flags::PSH | tcp_flags::ACK,
                tcp_seq: 0xc6d9_14d0,
                tcp_ack: 0xc51e_2dbf,
            }
        );
    }

    #[test]
    fn ipv6_tcp() {
        let frame = hex(IPV6_TCP);
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(
            p.tuple.src,
            "2001:4958:15a0:24:c1b3:b766:7fff:d0b3"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert_eq!(
            p.tuple.dst,
            "2606:4700::6812:69c".parse::<IpAddr>().unwrap()
        );
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (43250, 80));
        assert_eq!(p.tuple.protocol, proto::TCP);
        assert_eq!(p.ip_len, 40 + 165);
        assert_eq!((p.l3_offset, p.l4_offset), (14, 54));
        assert_eq!((p.payload_offset, p.payload_len), (74, 145));
        assert_eq!(&frame[74..78], b"GET ");
        assert_eq!(p.tcp_flags, tcp_flags::PSH | tcp_flags::ACK);
        assert_eq!((p.tcp_seq, p.tcp_ack), (0x6e21_0cf8, 0x7d79_294a));
        assert_eq!(p.fragment, Fragment::None);
    }

    #[test]
    fn vlan_and_qinq() {
        let plain = ip(&hex(IPV4_TCP), LinkType::Ethernet);
        for tpid in [TPID_8021Q, TPID_8021AD, TPID_QINQ_LEGACY] {
            let p = ip(
                &with_tags(&hex(IPV4_TCP), &[(tpid, 100)]),
                LinkType::Ethernet,
            );
            assert_eq!((p.vlans, p.vlan_count), ([100, 0], 1));
            assert_eq!(p.tuple, plain.tuple);
            assert_eq!(p.l3_offset, 18);
            assert_eq!(p.payload_offset, plain.payload_offset + 4);
        }
        let qinq = with_tags(&hex(IPV6_TCP), &[(TPID_8021AD, 300), (TPID_8021Q, 4094)]);
        let p = ip(&qinq, LinkType::Ethernet);
        assert_eq!((p.vlans, p.vlan_count), ([300, 4094], 2));
        assert_eq!((p.l3_offset, p.l4_offset, p.payload_len), (22, 62, 145));

        // A third tag is skipped; the outer two are kept.
        let triple = with_tags(
            &hex(IPV4_TCP),
            &[(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)],
        );
        let p = ip(&triple, LinkType::Ethernet);
        assert_eq!((p.vlans, p.vlan_count, p.l3_offset), ([1, 2], 2, 26));
        assert_eq!(p.tuple, plain.tuple);

        let arp = with_tags(&hex(ARP), &[(TPID_8021Q, 7)]);
        assert_eq!(
            parse(LinkType::Ethernet, &arp),
            Ok(Parsed::NonIp { ether_type: 0x0806 })
        );
    }

    #[test]
    fn raw_ip() {
        for (text, l3) in [(IPV4_TCP, 14), (IPV6_TCP, 14), (IPV4_UDP, 14)] {
            let frame = hex(text);
            let eth = ip(&frame, LinkType::Ethernet);
            let raw = ip(&frame[l3..], LinkType::RawIp);
            assert_eq!(raw.tuple, eth.tuple);
            assert_eq!(raw.l3_offset, 0);
            assert_eq!(raw.l4_offset, eth.l4_offset - 14);
            assert_eq!(raw.payload_len, eth.payload_len);
        }
        assert_eq!(parse(LinkType::RawIp, &[]), Err(WireError::TruncatedIp));
        assert_eq!(
            parse(LinkType::RawIp, &hex(ARP)),
            Err(WireError::MalformedIp)
        );
    }

    #[test]
    fn ipv4_with_options() {
        // Router Alert (RFC 2113) added to a real frame: IHL 6, total length + 4.
        let mut frame = hex(IPV4_TCP);
        frame.splice(34..34, [0x94, 0x04, 0x00, 0x00]);
        frame[14] = 0x46;
        frame[16..18].copy_from_slice(&(79u16 + 4).to_be_bytes());
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!((p.ip_len, p.l4_offset, p.payload_offset), (83, 38, 70));
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (64565, 443));
        assert_eq!(p.payload_len, 27);
    }

    /// Splits a real IPv4 frame's payload at `first_len` bytes (a multiple of 8) into two
    /// fragments.
    fn ipv4_fragments(frame: &[u8], first_len: usize) -> (Vec<u8>, Vec<u8>) {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let start = 14 + ihl;
        let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let end = 14 + total;
        let mut first = frame[..start + first_len].to_vec();
        first[16..18].copy_from_slice(&((ihl + first_len) as u16).to_be_bytes());
        first[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF
        let mut second = frame[..start].to_vec();
        second.extend_from_slice(&frame[start + first_len..end]);
        second[16..18].copy_from_slice(&((total - first_len) as u16).to_be_bytes());
        second[20..22].copy_from_slice(&((first_len / 8) as u16).to_be_bytes());
        (first, second)
    }

    #[test]
    fn ipv4_first_and_subsequent_fragments() {
        let (first, second) = ipv4_fragments(&hex(IPV4_TCP), 40);
        let p = ip(&first, LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::First { id: 0xde53 });
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (64565, 443));
        assert_eq!((p.ip_len, p.payload_offset, p.payload_len), (60, 66, 8));
        let p = ip(&second, LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::Subsequent { id: 0xde53 });
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (0, 0));
        assert_eq!(p.tuple.protocol, proto::TCP);
        assert_eq!((p.l4_offset, p.payload_offset, p.payload_len), (0, 0, 0));
        assert_eq!(p.ip_len, 20 + 19);

        // A UDP first fragment: the UDP length covers the whole datagram, not this fragment.
        let (first, _) = ipv4_fragments(&hex(IPV4_UDP), 16);
        let p = ip(&first, LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::First { id: 0x5b2c });
        assert_eq!(
            (p.tuple.src_port, p.tuple.dst_port, p.payload_len),
            (54639, 53, 8)
        );

        // A tiny first fragment that cuts the TCP header.
        let (tiny, _) = ipv4_fragments(&hex(IPV4_TCP), 8);
        assert_eq!(
            parse(LinkType::Ethernet, &tiny),
            Err(WireError::MalformedL4)
        );
    }

    /// Inserts IPv6 extension headers (already chained to the frame's next header by the caller)
    /// right after the IPv6 header of a real frame and fixes next header and payload length.
    fn ipv6_with_exts(frame: &[u8], first_next_header: u8, exts: &[u8]) -> Vec<u8> {
        let mut out = frame.to_vec();
        out.splice(54..54, exts.iter().copied());
        out[20] = first_next_header;
        let plen = u16::from_be_bytes([frame[18], frame[19]]) + exts.len() as u16;
        out[18..20].copy_from_slice(&plen.to_be_bytes());
        out
    }

    #[test]
    fn ipv6_hop_by_hop_destination_options_and_fragment() {
        let frame = hex(IPV6_UDP);
        let plain = ip(&frame, LinkType::Ethernet);
        #[rustfmt::skip]
        let exts = [
            60, 0, 1, 4, 0, 0, 0, 0,         // hop-by-hop: PadN, next: destination options
            44, 0, 1, 4, 0, 0, 0, 0,         // destination options: PadN, next: fragment
            17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // fragment: offset 0, M=1, next: UDP
        ];
        let p = ip(&ipv6_with_exts(&frame, 0, &exts), LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::First { id: 0xdead_beef });
        assert_eq!(p.tuple, plain.tuple);
        assert_eq!(p.l4_offset, plain.l4_offset + 24);
        assert_eq!(p.ip_len, plain.ip_len + 24);
        assert_eq!(p.payload_len, plain.payload_len);

        // The same datagram's second fragment, 16 bytes on.
        let mut second = frame[..54].to_vec();
        second.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        second.extend_from_slice(&[17, 0, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef]);
        second.extend_from_slice(&frame[54 + 16..]);
        second[20] = 0;
        let plen = (second.len() - 54) as u16;
        second[18..20].copy_from_slice(&plen.to_be_bytes());
        let p = ip(&second, LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::Subsequent { id: 0xdead_beef });
        assert_eq!(p.tuple.protocol, proto::UDP);
        assert_eq!((p.tuple.src_port, p.tuple.dst_port, p.l4_offset), (0, 0, 0));

        // An atomic fragment (offset 0, M=0) is a whole packet.
        let atomic = [17, 0, 0, 0, 0, 0, 0, 9];
        let p = ip(&ipv6_with_exts(&frame, 44, &atomic), LinkType::Ethernet);
        assert_eq!(p.fragment, Fragment::None);
        assert_eq!(p.tuple, plain.tuple);

        // Hop-by-hop that claims more bytes than the payload length holds.
        let long_hbh = [17, 200, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            parse(LinkType::Ethernet, &ipv6_with_exts(&frame, 0, &long_hbh)),
            Err(WireError::MalformedIpv6Extension)
        );
        // Hop-by-hop anywhere but first.
        let late_hbh = [0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            parse(LinkType::Ethernet, &ipv6_with_exts(&frame, 60, &late_hbh)),
            Err(WireError::MalformedIpv6Extension)
        );
    }

    #[test]
    fn ipv6_routing_and_authentication_headers() {
        let frame = hex(IPV6_UDP);
        let plain = ip(&frame, LinkType::Ethernet);
        #[rustfmt::skip]
        let exts = [
            51, 0, 0, 0, 0, 0, 0, 0,                     // routing, type 0, no segments left
            17, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, // AH, 16 bytes
        ];
        let p = ip(&ipv6_with_exts(&frame, 43, &exts), LinkType::Ethernet);
        assert_eq!(p.tuple, plain.tuple);
        assert_eq!(p.l4_offset, plain.l4_offset + 24);
    }

    #[test]
    fn arp_is_not_ip() {
        assert_eq!(
            parse(LinkType::Ethernet, &hex(ARP)),
            Ok(Parsed::NonIp { ether_type: 0x0806 })
        );
    }

    #[test]
    fn udp() {
        let frame = hex(IPV4_UDP);
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(
            p.tuple,
            FiveTuple {
                src: v4([172, 16, 11, 12]),
                dst: v4([172, 16, 11, 1]),
                src_port: 54639,
                dst_port: 53,
                protocol: proto::UDP,
            }
        );
        assert_eq!((p.l4_offset, p.payload_offset, p.payload_len), (34, 42, 39));
        assert_eq!((p.tcp_flags, p.tcp_seq, p.tcp_ack), (0, 0, 0));
        let p = ip(&hex(IPV6_UDP), LinkType::Ethernet);
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (65373, 5355));
        assert_eq!((p.payload_offset, p.payload_len), (62, 33));
    }

    #[test]
    fn udp_length_beyond_ip_payload_is_malformed() {
        let mut frame = hex(IPV4_UDP);
        frame[38..40].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedL4)
        );
    }

    #[test]
    fn icmp() {
        let p = ip(&hex(IPV4_ICMP), LinkType::Ethernet);
        assert_eq!(
            p.tuple,
            FiveTuple {
                src: v4([10, 34, 0, 1]),
                dst: v4([10, 31, 0, 1]),
                src_port: 0,
                dst_port: 0,
                protocol: proto::ICMP,
            }
        );
        assert_eq!((p.ip_len, p.l4_offset, p.payload_len), (84, 34, 0));
    }

    #[test]
    fn icmpv6() {
        // The IPv6 header of a real frame carrying an echo request with 4 bytes of data.
        let mut frame = hex(IPV6_UDP)[..54].to_vec();
        frame.extend_from_slice(&[128, 0, 0x12, 0x34, 0, 1, 0, 1, b'p', b'i', b'n', b'g']);
        frame[18..20].copy_from_slice(&12u16.to_be_bytes());
        frame[20] = proto::ICMPV6;
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(p.tuple.protocol, proto::ICMPV6);
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (0, 0));
        assert_eq!((p.ip_len, p.l4_offset), (52, 54));

        frame.truncate(54 + 4);
        frame[18..20].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedL4)
        );
    }

    #[test]
    fn unknown_l4_protocol_has_no_ports() {
        let mut frame = hex(IPV4_UDP);
        frame[23] = 47; // GRE
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(p.tuple.protocol, 47);
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (0, 0));
        assert_eq!((p.l4_offset, p.payload_offset, p.payload_len), (34, 0, 0));
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let frame = hex(IPV4_TCP_PADDED);
        assert_eq!(frame.len(), 60);
        let p = ip(&frame, LinkType::Ethernet);
        assert_eq!(p.ip_len, 42);
        assert_eq!((p.payload_offset, p.payload_len), (54, 2));
        assert_eq!(&frame[54..56], b"\r\n");
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (80, 49282));
        assert_eq!(p.tcp_flags, tcp_flags::PSH | tcp_flags::ACK);

        // Padding after an IPv6 packet as well.
        let mut frame = hex(IPV6_UDP);
        let plain = ip(&frame, LinkType::Ethernet);
        frame.extend_from_slice(&[0; 7]);
        assert_eq!(ip(&frame, LinkType::Ethernet), plain);
    }

    #[test]
    fn impossible_ipv4_lengths() {
        let mut frame = hex(IPV4_TCP);
        frame[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedIp)
        );
        let mut frame = hex(IPV4_TCP);
        frame[14] = 0x44;
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedIp)
        );
        let mut frame = hex(IPV4_TCP);
        frame[16..18].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::TruncatedIp)
        );
        let mut frame = hex(IPV4_TCP);
        frame[46] = 0x40; // TCP data offset 4
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedL4)
        );
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut frame = hex(IPV4_TCP);
        frame.resize(70_000, 0);
        assert_eq!(
            parse(LinkType::Ethernet, &frame),
            Err(WireError::MalformedIp)
        );
    }

    /// Every prefix of every real frame (and of tagged variants) parses to an error or to a
    /// packet that fits inside the prefix; once the whole IP packet is present the result is the
    /// full frame's.
    #[test]
    fn every_truncation_of_real_frames() {
        let mut frames = all_real();
        frames.push(with_tags(
            &hex(IPV4_TCP),
            &[(TPID_8021AD, 5), (TPID_8021Q, 6)],
        ));
        for frame in &frames {
            let full = parse(LinkType::Ethernet, frame).unwrap();
            for n in 0..frame.len() {
                let prefix = &frame[..n];
                match parse(LinkType::Ethernet, prefix) {
                    Err(_) => {}
                    Ok(Parsed::NonIp { .. }) => {
                        assert_eq!(parse(LinkType::Ethernet, prefix), Ok(full))
                    }
                    Ok(Parsed::Ip(p)) => {
                        let end = usize::from(p.l3_offset) + usize::from(p.ip_len);
                        assert!(end <= n, "prefix {n}: packet ends at {end}");
                        assert!(usize::from(p.payload_offset + p.payload_len) <= n);
                        assert_eq!(Parsed::Ip(p), full, "prefix {n}");
                    }
                }
                if n < 14 {
                    assert_eq!(
                        parse(LinkType::Ethernet, prefix),
                        Err(WireError::TruncatedLink)
                    );
                }
                if let Parsed::Ip(p) = full {
                    let l3 = usize::from(p.l3_offset);
                    if n >= l3 {
                        let raw = parse(LinkType::RawIp, &frame[l3..n]);
                        if n < l3 + usize::from(p.ip_len) {
                            assert_eq!(raw, Err(WireError::TruncatedIp), "raw prefix {n}");
                        } else {
                            assert!(raw.is_ok());
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(LinkType::Ethernet, &bytes);
            let _ = parse(LinkType::RawIp, &bytes);
        }

        /// Random bytes after a real header stack reach the deeper layers.
        #[test]
        fn random_tails_never_panic(
            which in 0usize..7,
            cut in 0usize..100,
            tail in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let frame = &all_real()[which];
            let mut bytes = frame[..cut.min(frame.len())].to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok(Parsed::Ip(p)) = parse(LinkType::Ethernet, &bytes) {
                prop_assert!(usize::from(p.payload_offset + p.payload_len) <= bytes.len());
                prop_assert!(usize::from(p.l3_offset) + usize::from(p.ip_len) <= bytes.len());
            }
            let _ = parse(LinkType::RawIp, bytes.get(14..).unwrap_or(&[]));
        }
    }
}
