//! Building frames to inject: TCP segments (the responder's SYN-ACK, 302, FIN, RST) and ICMP
//! port-unreachable messages, with correct IP, TCP and ICMP checksums.
//!
//! Builders append to a caller-owned `Vec<u8>` and never clear it, so a worker can pack several
//! frames into one buffer (remembering where each starts) and reuse that buffer for every batch;
//! once it has grown to its working size, building does not allocate.

use super::proto;
use std::net::IpAddr;

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(super) const TPID_8021Q: u16 = 0x8100;
pub(super) const TPID_8021AD: u16 = 0x88a8;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;
const TCP_MSS_OPTION_LEN: usize = 4;
const ICMP_HEADER_LEN: usize = 8;
/// TTL / hop limit of everything we send: the usual host default.
const HOP_LIMIT: u8 = 64;
/// RFC 1812 4.3.2.3: an ICMPv4 error should not exceed 576 bytes.
const ICMPV4_ERROR_MAX: usize = 576;
/// RFC 4443 2.4(c): an ICMPv6 error must fit in the minimum IPv6 MTU.
const ICMPV6_ERROR_MAX: usize = 1280;

/// Why a frame could not be built. The engine counts these like drop reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuildError {
    /// Source and destination are not of the same IP version.
    AddressFamilyMismatch,
    /// The packet would not fit in an IPv4 total length or IPv6 payload length.
    TooLong,
}

/// The link layer to put in front of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHeader {
    /// No link header (TUN).
    RawIp,
    Ethernet(EthernetHeader),
}

/// An Ethernet II header with up to two VLAN tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// VLAN ids, outer first; `vlan_count` (0..=2) says how many are used. With two tags the
    /// outer one is written as an 802.1ad S-tag (0x88a8) and the inner as an 802.1Q C-tag, the
    /// standard QinQ encoding; a single tag is 802.1Q.
    pub vlans: [u16; 2],
    pub vlan_count: u8,
}

impl LinkHeader {
    fn write(&self, ether_type: u16, out: &mut Vec<u8>) {
        let LinkHeader::Ethernet(eth) = self else {
            return;
        };
        out.extend_from_slice(&eth.dst);
        out.extend_from_slice(&eth.src);
        let count = usize::from(eth.vlan_count.min(2));
        for (i, id) in eth.vlans.iter().take(count).enumerate() {
            let tpid = if count == 2 && i == 0 {
                TPID_8021AD
            } else {
                TPID_8021Q
            };
            out.extend_from_slice(&tpid.to_be_bytes());
            // Priority and DEI zero: injected frames get default treatment.
            out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&ether_type.to_be_bytes());
    }
}

/// A running internet checksum (RFC 1071) over several pieces.
///
/// Every piece but the last must have an even length: an odd piece's last byte is taken as the
/// high half of a 16-bit word padded with zero, as at the end of the data.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum {
    // 64 bits cannot overflow for any frame size, so folding waits until `finish`.
    sum: u64,
}

impl Checksum {
    pub fn new() -> Self {
        Checksum::default()
    }

    pub fn add(&mut self, data: &[u8]) -> &mut Self {
        // 32 bits at a time: a 32-bit word is its two 16-bit halves added, since 2^16 is 1
        // modulo 2^16 - 1, and the fold in `finish` takes the carries back in.
        let mut quads = data.chunks_exact(4);
        for quad in &mut quads {
            self.sum += u64::from(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]));
        }
        let mut words = quads.remainder().chunks_exact(2);
        for word in &mut words {
            self.sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            self.sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
        self
    }

    pub fn add_u16(&mut self, value: u16) -> &mut Self {
        self.sum += u64::from(value);
        self
    }

    /// Adds the IPv4 or IPv6 pseudo-header of a TCP, UDP or ICMPv6 checksum.
    pub fn add_pseudo_header(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        l4_len: u32,
    ) -> &mut Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.add(&s.octets()).add(&d.octets());
            }
            (s, d) => {
                self.add(&ip_octets(s)).add(&ip_octets(d));
            }
        }
        self.sum += u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
        self.add_u16(u16::from(protocol))
    }

    /// The one's complement of the folded sum: the value to store in a checksum field.
    pub fn finish(&self) -> u16 {
        let mut sum = self.sum;
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // The loop leaves at most 16 bits.
        !(sum as u16)
    }
}

/// The internet checksum of `data`. Over data that includes a correct checksum field it is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    Checksum::new().add(data).finish()
}

/// The checksum of an IPv4 header, computed as if its checksum field (bytes 10..12) were zero,
/// so it serves both to fill the field and to verify it.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum = Checksum::new();
    sum.add(header.get(..10).unwrap_or(header));
    if let Some(rest) = header.get(12..) {
        sum.add(rest);
    }
    sum.finish()
}

fn ip_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Writes link and IP header for `l4_len` bytes of `protocol`; returns where the IP header
/// starts in `out`.
fn write_link_and_ip(
    link: &LinkHeader,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    l4_len: usize,
    out: &mut Vec<u8>,
) -> Result<usize, BuildError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(IPV4_HEADER_LEN + l4_len).map_err(|_| BuildError::TooLong)?;
            link.write(ETHERTYPE_IPV4, out);
            let l3 = out.len();
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            // Identification 0 with DF set: allowed for atomic datagrams (RFC 6864).
            out.extend_from_slice(&[0, 0, 0x40, 0, HOP_LIMIT, protocol, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let checksum = ipv4_checksum(&out[l3..]);
            out[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
            Ok(l3)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let payload_len = u16::try_from(l4_len).map_err(|_| BuildError::TooLong)?;
            link.write(ETHERTYPE_IPV6, out);
            let l3 = out.len();
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&payload_len.to_be_bytes());
            out.extend_from_slice(&[protocol, HOP_LIMIT]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            Ok(l3)
        }
        _ => Err(BuildError::AddressFamilyMismatch),
    }
}

/// A TCP segment to send, IPv4 or IPv6 after the family of `src` and `dst`.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub link: LinkHeader,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flags byte, see [`super::tcp_flags`].
    pub flags: u8,
    pub window: u16,
    /// Maximum segment size option, for SYN and SYN-ACK segments.
    pub mss: Option<u16>,
    pub payload: &'a [u8],
}

impl TcpSegment<'_> {
    /// Appends the complete frame to `out` (see the module doc) and returns its length. On error
    /// `out` is unchanged.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<usize, BuildError> {
        let start = out.len();
        let options = if self.mss.is_some() {
            TCP_MSS_OPTION_LEN
        } else {
            0
        };
        let header_len = TCP_HEADER_LEN + options;
        let tcp_len = header_len + self.payload.len();
        write_link_and_ip(&self.link, self.src, self.dst, proto::TCP, tcp_len, out)?;
        let l4 = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        // header_len is 20 or 24, so the data offset fits its 4 bits.
        out.extend_from_slice(&[((header_len / 4) as u8) << 4, self.flags]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        if let Some(mss) = self.mss {
            out.extend_from_slice(&[2, 4]);
            out.extend_from_slice(&mss.to_be_bytes());
        }
        out.extend_from_slice(self.payload);
        // tcp_len fitted a u16 in write_link_and_ip.
        let checksum = Checksum::new()
            .add_pseudo_header(self.src, self.dst, proto::TCP, tcp_len as u32)
            .add(&out[l4..])
            .finish();
        out[l4 + 16..l4 + 18].copy_from_slice(&checksum.to_be_bytes());
        Ok(out.len() - start)
    }
}

/// An ICMP "port unreachable" (ICMPv4 type 3 code 3, ICMPv6 type 1 code 4) answering an
/// offending packet, which it quotes from its IP header on, cut to the size limit of ICMP errors.
#[derive(Clone, Copy, Debug)]
pub struct PortUnreachable<'a> {
    pub link: LinkHeader,
    /// Who reports: usually the offending packet's destination.
    pub src: IpAddr,
    /// Who is told: the offending packet's source.
    pub dst: IpAddr,
    /// The offending IP packet, from its IP header (e.g. `frame[l3_offset..][..ip_len]`).
    pub offending: &'a [u8],
}

impl PortUnreachable<'_> {
    /// Appends the complete frame to `out` (see the module doc) and returns its length. On error
    /// `out` is unchanged.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<usize, BuildError> {
        let start = out.len();
        let (protocol, kind, code, ip_header_len, limit) = match self.src {
            IpAddr::V4(_) => (proto::ICMP, 3, 3, IPV4_HEADER_LEN, ICMPV4_ERROR_MAX),
            IpAddr::V6(_) => (proto::ICMPV6, 1, 4, IPV6_HEADER_LEN, ICMPV6_ERROR_MAX),
        };
        let room = limit - ip_header_len - ICMP_HEADER_LEN;
        let quoted = &self.offending[..self.offending.len().min(room)];
        let icmp_len = ICMP_HEADER_LEN + quoted.len();
        write_link_and_ip(&self.link, self.src, self.dst, protocol, icmp_len, out)?;
        let l4 = out.len();
        // Type, code, checksum, then 4 unused bytes (no next-hop MTU for this code).
        out.extend_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(quoted);
        let mut sum = Checksum::new();
        if protocol == proto::ICMPV6 {
            // icmp_len is below 1280.
            sum.add_pseudo_header(self.src, self.dst, protocol, icmp_len as u32);
        }
        let checksum = sum.add(&out[l4..]).finish();
        out[l4 + 2..l4 + 4].copy_from_slice(&checksum.to_be_bytes());
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, tcp_flags, Fragment, LinkType, Packet, Parsed};
    use std::net::{Ipv4Addr, Ipv6Addr};

    use crate::wire::test_hex as hex;

    /// Sum of 16-bit words folded to 16 bits, written independently of `Checksum`. Over data
    /// with a correct checksum it is 0xffff.
    fn folded_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = 0;
        for i in (0..bytes.len()).step_by(2) {
            let lo = bytes.get(i + 1).copied().unwrap_or(0);
            sum += u32::from(bytes[i]) << 8 | u32::from(lo);
        }
        while sum > 0xffff {
            sum = (sum >> 16) + (sum & 0xffff);
        }
        sum as u16
    }

    /// Checks the IP header checksum (IPv4) and the L4 checksum with its pseudo-header.
    fn assert_checksums(frame: &[u8], p: &Packet) {
        let l3 = usize::from(p.l3_offset);
        let l4 = usize::from(p.l4_offset);
        let end = l3 + usize::from(p.ip_len);
        let segment = &frame[l4..end];
        let len = segment.len() as u32;
        let pseudo: Vec<u8> = match (p.tuple.src, p.tuple.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert_eq!(
                    folded_sum(&[&frame[l3..l4]]),
                    0xffff,
                    "IPv4 header checksum"
                );
                let mut v = [s.octets(), d.octets()].concat();
                v.extend_from_slice(&[0, p.tuple.protocol]);
                v.extend_from_slice(&(len as u16).to_be_bytes());
                v
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut v = [s.octets(), d.octets()].concat();
                v.extend_from_slice(&len.to_be_bytes());
                v.extend_from_slice(&[0, 0, 0, p.tuple.protocol]);
                v
            }
            _ => panic!("mixed families"),
        };
        if p.tuple.protocol == proto::ICMP {
            assert_eq!(folded_sum(&[segment]), 0xffff, "ICMP checksum");
        } else {
            assert_eq!(folded_sum(&[&pseudo, segment]), 0xffff, "L4 checksum");
        }
    }

    fn parsed(link: LinkType, frame: &[u8]) -> Packet {
        match parse(link, frame) {
            Ok(Parsed::Ip(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    const UE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

    fn ethernet(vlans: &[u16]) -> LinkHeader {
        let mut ids = [0; 2];
        ids[..vlans.len()].copy_from_slice(vlans);
        LinkHeader::Ethernet(EthernetHeader {
            dst: UE_MAC,
            src: GW_MAC,
            vlans: ids,
            vlan_count: vlans.len() as u8,
        })
    }

    fn syn_ack(link: LinkHeader, src: IpAddr, dst: IpAddr) -> TcpSegment<'static> {
        TcpSegment {
            link,
            src,
            dst,
            src_port: 80,
            dst_port: 49282,
            seq: 0x0102_0304,
            ack: 0x36e3_c2be,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: 65535,
            mss: Some(1460),
            payload: &[],
        }
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    /// Checked field by field, and by Wireshark ("checksum good" for IP and TCP).
    #[test]
    fn ipv4_syn_ack_byte_for_byte() {
        let seg = syn_ack(ethernet(&[]), v4([192, 150, 187, 43]), v4([10, 0, 2, 15]));
        let mut out = Vec::new();
        assert_eq!(seg.write(&mut out), Ok(58));
        let expected = hex("020000000001 0200000000fe 0800
             4500 002c 0000 4000 40 06 b2fb c096bb2b 0a00020f
             0050 c082 01020304 36e3c2be 60 12 ffff 51cb 0000 020405b4");
        assert_eq!(out, expected);
    }

    #[test]
    fn ipv4_segment_with_vlan_parses_back() {
        let payload = b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/\r\n\r\n!";
        let seg = TcpSegment {
            flags: tcp_flags::PSH | tcp_flags::ACK | tcp_flags::FIN,
            mss: None,
            payload,
            ..syn_ack(ethernet(&[42]), v4([192, 0, 2, 1]), v4([10, 1, 2, 3]))
        };
        let mut out = Vec::new();
        let len = seg.write(&mut out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 42]);
        let p = parsed(LinkType::Ethernet, &out);
        assert_eq!((p.vlans, p.vlan_count), ([42, 0], 1));
        assert_eq!(p.tuple.src, seg.src);
        assert_eq!(p.tuple.dst, seg.dst);
        assert_eq!((p.tuple.src_port, p.tuple.dst_port), (80, 49282));
        assert_eq!(p.tcp_flags, seg.flags);
        assert_eq!((p.tcp_seq, p.tcp_ack), (seg.seq, seg.ack));
        assert_eq!(p.fragment, Fragment::None);
        let start = usize::from(p.payload_offset);
        assert_eq!(&out[start..start + usize::from(p.payload_len)], payload);
        assert_checksums(&out, &p);
    }

    #[test]
    fn ipv6_segment_with_qinq_parses_back() {
        let src: IpAddr = "2606:4700::6812:69c".parse().unwrap();
        let dst: IpAddr = "2001:4958:15a0:24:c1b3:b766:7fff:d0b3".parse().unwrap();
        let seg = TcpSegment {
            payload: b"odd",
            ..syn_ack(ethernet(&[300, 4094]), src, dst)
        };
        let mut out = Vec::new();
        seg.write(&mut out).unwrap();
        assert_eq!(
            &out[12..22],
            &[0x88, 0xa8, 0x01, 0x2c, 0x81, 0x00, 0x0f, 0xfe, 0x86, 0xdd]
        );
        let p = parsed(LinkType::Ethernet, &out);
        assert_eq!((p.vlans, p.vlan_count), ([300, 4094], 2));
        assert_eq!(p.ip_len, 40 + 24 + 3);
        assert_eq!(p.tuple.src, src);
        assert_eq!(p.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(p.payload_len, 3);
        assert_checksums(&out, &p);
    }

    #[test]
    fn raw_ip_segments_parse_back() {
        for (src, dst) in [
            (v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            ),
        ] {
            let seg = TcpSegment {
                flags: tcp_flags::RST,
                payload: b"x",
                ..syn_ack(LinkHeader::RawIp, src, dst)
            };
            let mut out = Vec::new();
            seg.write(&mut out).unwrap();
            let p = parsed(LinkType::RawIp, &out);
            assert_eq!(p.l3_offset, 0);
            assert_eq!(usize::from(p.ip_len), out.len());
            assert_eq!(p.tcp_flags, tcp_flags::RST);
            assert_checksums(&out, &p);
        }
    }

    #[test]
    fn frames_are_appended() {
        let seg = syn_ack(ethernet(&[]), v4([1, 2, 3, 4]), v4([5, 6, 7, 8]));
        let mut out = vec![0xaa];
        let first = seg.write(&mut out).unwrap();
        let second = seg.write(&mut out).unwrap();
        assert_eq!(out.len(), 1 + first + second);
        assert_eq!(out[1..1 + first], out[1 + first..]);
    }

    #[test]
    fn mixed_families_are_refused() {
        let seg = syn_ack(
            LinkHeader::RawIp,
            v4([1, 2, 3, 4]),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        );
        let mut out = vec![1, 2, 3];
        assert_eq!(seg.write(&mut out), Err(BuildError::AddressFamilyMismatch));
        assert_eq!(out, [1, 2, 3]);
        let big = vec![0; 70_000];
        let seg = TcpSegment {
            payload: &big,
            ..syn_ack(LinkHeader::RawIp, v4([1, 2, 3, 4]), v4([5, 6, 7, 8]))
        };
        assert_eq!(seg.write(&mut out), Err(BuildError::TooLong));
        assert_eq!(out, [1, 2, 3]);
    }

    /// tcpreplay-test.pcap #26, a real DNS query, answered with port unreachable.
    const DNS_QUERY: &str = "001ff33ce113f81edfe5843a0800450000435b2c0000ff11f24fac100b0cac10
        0b01d56f0035002f758413a201000001000000000000046538373201670a616b
        616d616965646765036e65740000010001";

    #[test]
    fn icmpv4_port_unreachable_quotes_the_packet() {
        let query = hex(DNS_QUERY);
        let q = parsed(LinkType::Ethernet, &query);
        let offending = &query[14..14 + usize::from(q.ip_len)];
        let msg = PortUnreachable {
            link: ethernet(&[]),
            src: q.tuple.dst,
            dst: q.tuple.src,
            offending,
        };
        let mut out = Vec::new();
        msg.write(&mut out).unwrap();
        let p = parsed(LinkType::Ethernet, &out);
        assert_eq!(p.tuple.protocol, proto::ICMP);
        assert_eq!((p.tuple.src, p.tuple.dst), (q.tuple.dst, q.tuple.src));
        let l4 = usize::from(p.l4_offset);
        assert_eq!(&out[l4..l4 + 2], &[3, 3]);
        assert_eq!(&out[l4 + 8..], offending);
        assert_checksums(&out, &p);

        // A large packet is cut so the ICMP error stays within 576 bytes.
        let big = [offending, &[0u8; 1400][..]].concat();
        let mut out = Vec::new();
        PortUnreachable {
            offending: &big,
            ..msg
        }
        .write(&mut out)
        .unwrap();
        let p = parsed(LinkType::Ethernet, &out);
        assert_eq!(p.ip_len, 576);
        assert_checksums(&out, &p);
    }

    #[test]
    fn icmpv6_port_unreachable_quotes_the_packet() {
        // zeek-wikipedia.pcap #120, an LLMNR query over IPv6.
        let query = hex(
            "333300010003f04da247ba2586dd6000000000291101fe800000000000003074
            17d52052c324ff020000000000000000000000010003ff5d14eb0029c5e94620
            000000010000000000000f4252574330434233383344314634320000010001",
        );
        let q = parsed(LinkType::Ethernet, &query);
        let offending = &query[14..];
        let mut out = Vec::new();
        PortUnreachable {
            link: LinkHeader::RawIp,
            src: "fe80::1".parse().unwrap(),
            dst: q.tuple.src,
            offending,
        }
        .write(&mut out)
        .unwrap();
        let p = parsed(LinkType::RawIp, &out);
        assert_eq!(p.tuple.protocol, proto::ICMPV6);
        assert_eq!(&out[40..42], &[1, 4]);
        assert_eq!(&out[48..], offending);
        assert_checksums(&out, &p);
    }

    #[test]
    fn checksum_helpers() {
        // RFC 1071's worked example: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        // A real IPv4 header (tcpreplay-test.pcap #26) carries checksum 0xf24f.
        let query = hex(DNS_QUERY);
        assert_eq!(ipv4_checksum(&query[14..34]), 0xf24f);
        assert_eq!(internet_checksum(&query[14..34]), 0);
        // Odd lengths pad with a zero byte.
        assert_eq!(internet_checksum(&[0x12]), !0x1200);
    }
}
