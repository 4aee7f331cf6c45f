//! Checksums a sender left to offload. A Linux sender whose device checksums in hardware (veth
//! by default, most NICs) hands a TCP or UDP frame on with its checksum only begun
//! (`CHECKSUM_PARTIAL`): the field holds the folded sum of the pseudo-header alone, and the
//! device is to add the rest. A gateway that receives such a frame on a raw socket and sends
//! it on as bytes must finish the checksum itself, or the far end drops the frame.

use super::build::{Checksum, ETHERTYPE_IPV4, ETHERTYPE_IPV6, TPID_8021AD, TPID_8021Q};
use super::proto;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether the sender is known to have left the checksum to offload (AF_PACKET's
/// `TP_STATUS_CSUMNOTREADY`) or that has to be read from the frame (AF_XDP says nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partial {
    Known,
    /// Finished only when the field holds exactly the pseudo-header's sum. Finishing is exact
    /// for any frame whose checksum was right, so a frame that holds that value by chance with
    /// a correct checksum comes out the same.
    IfBegun,
}

/// Finishes the TCP or UDP checksum of an Ethernet frame (802.1Q and QinQ tags allowed) whose
/// sender left it to offload; returns whether it wrote one. Frames of other protocols, IP
/// fragments, IPv6 with extension headers before the transport header, and frames shorter than
/// their IP length are left as they are: nothing here reads out of bounds or panics. With
/// [`Partial::IfBegun`], `true` means the field changed.
pub fn finish_partial_checksum(frame: &mut [u8], partial: Partial) -> bool {
    let Some(at) = locate(frame) else {
        return false;
    };
    let field = at.l4 + if at.protocol == proto::TCP { 16 } else { 6 };
    let stored = u16::from_be_bytes([frame[field], frame[field + 1]]);
    let mut pseudo = Checksum::new();
    pseudo.add_pseudo_header(at.src, at.dst, at.protocol, at.l4_len as u32);
    // `finish` is the complement of the folded sum; the sender stored the folded sum itself.
    let begun = !pseudo.finish();
    if partial == Partial::IfBegun && !same_in_ones_complement(stored, begun) {
        return false;
    }
    frame[field..field + 2].fill(0);
    let mut sum = pseudo;
    sum.add(&frame[at.l4..at.l4 + at.l4_len]);
    let mut value = sum.finish();
    // UDP sends a computed 0 as all ones: 0 means "no checksum" (RFC 768).
    if at.protocol == proto::UDP && value == 0 {
        value = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    // A suspected frame whose checksum was right all along (its field equal to the
    // pseudo-header sum by chance, about 1 in 65 536) is not counted as finished.
    partial == Partial::Known || value != stored
}

/// 0x0000 and 0xffff are the same number in one's complement.
fn same_in_ones_complement(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

struct Transport {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    /// Where the TCP or UDP header starts, and the length the IP header gives it.
    l4: usize,
    l4_len: usize,
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

fn locate(frame: &[u8]) -> Option<Transport> {
    let mut l3 = 14;
    let mut ether_type = be16(frame, 12)?;
    for _ in 0..2 {
        if ether_type != TPID_8021Q && ether_type != TPID_8021AD {
            break;
        }
        ether_type = be16(frame, l3 + 2)?;
        l3 += 4;
    }
    let t = match ether_type {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            // More fragments, or an offset: a fragment's checksum covers the whole datagram.
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || fragment {
                return None;
            }
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
            Transport {
                src: src.into(),
                dst: dst.into(),
                protocol: ip[9],
                l4: l3 + ihl,
                l4_len: total - ihl,
            }
        }
        ETHERTYPE_IPV6 => {
            let ip = frame.get(l3..l3 + 40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            Transport {
                src: src.into(),
                dst: dst.into(),
                protocol: ip[6],
                l4: l3 + 40,
                l4_len: usize::from(u16::from_be_bytes([ip[4], ip[5]])),
            }
        }
        _ => return None,
    };
    let header = match t.protocol {
        proto::TCP => 20,
        proto::UDP => 8,
        _ => return None,
    };
    if t.l4_len < header || frame.len() < t.l4 + t.l4_len {
        return None;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_hex as hex;
    use crate::wire::{LinkHeader, TcpSegment};

    fn segment(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        TcpSegment {
            link: LinkHeader::Ethernet(crate::wire::EthernetHeader {
                dst: [2, 0, 0, 0, 0, 1],
                src: [2, 0, 0, 0, 0, 2],
                vlans: [0; 2],
                vlan_count: 0,
            }),
            src,
            dst,
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            ack: 9,
            flags: crate::wire::tcp_flags::ACK | crate::wire::tcp_flags::PSH,
            window: 512,
            mss: None,
            payload,
        }
        .write(&mut out)
        .unwrap();
        out
    }

    /// The frame as a Linux sender with checksum offload leaves it: the field holds the folded
    /// pseudo-header sum.
    fn begun(frame: &mut [u8], src: IpAddr, dst: IpAddr, l4: usize) {
        let mut pseudo = Checksum::new();
        pseudo.add_pseudo_header(src, dst, proto::TCP, (frame.len() - l4) as u32);
        let folded = !pseudo.finish();
        frame[l4 + 16..l4 + 18].copy_from_slice(&folded.to_be_bytes());
    }

    #[test]
    fn a_begun_tcp_checksum_is_finished_to_the_bytes_a_full_one_has() {
        for (src, dst, l4) in [
            ("10.45.0.2", "198.51.100.10", 34),
            ("2001:db8::2", "2001:db8:1::10", 54),
        ] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let whole = segment(src, dst, b"GET / HTTP/1.1\r\nHost: site.example\r\n\r\n");
            let mut frame = whole.clone();
            begun(&mut frame, src, dst, l4);
            assert_ne!(frame, whole);
            assert!(finish_partial_checksum(&mut frame, Partial::IfBegun));
            assert_eq!(frame, whole);
            // Correct already: left alone when only suspected, rewritten the same when known.
            assert!(!finish_partial_checksum(&mut frame, Partial::IfBegun));
            assert!(finish_partial_checksum(&mut frame, Partial::Known));
            assert_eq!(frame, whole);
        }
    }

    #[test]
    fn a_udp_checksum_is_finished_and_short_or_other_frames_are_left_alone() {
        // Any UDP datagram: the finished field makes the whole sum verify.
        let mut frame = hex("02000000000102000000000208004500001d0000400040110000\
             0a2d0002c6336405a0000035000900000a");
        assert!(finish_partial_checksum(&mut frame, Partial::Known));
        let mut pseudo = Checksum::new();
        pseudo.add_pseudo_header(
            "10.45.0.2".parse().unwrap(),
            "198.51.100.5".parse().unwrap(),
            proto::UDP,
            9,
        );
        let field = u16::from_be_bytes([frame[40], frame[41]]);
        assert_ne!(field, 0);
        let mut all = pseudo;
        all.add(&frame[34..43]);
        assert_eq!(all.finish(), 0);
        // Cut short of its IP length, ARP, a fragment: nothing written.
        let whole = frame.clone();
        for mut bad in [whole[..40].to_vec(), hex("ffffffffffff0200000000020806"), {
            let mut f = whole.clone();
            f[20] = 0x20; // more fragments
            f
        }] {
            let before = bad.clone();
            assert!(!finish_partial_checksum(&mut bad, Partial::Known));
            assert_eq!(bad, before);
        }
    }
}
