//! What an aggregate frame costs on the wire. A frame received with GSO or GRO (see
//! `io::afpacket::VnetHdr`) stands for several segments of `segment_size` payload bytes each,
//! every one with the same IP and transport headers; the wire — and so the subscriber's usage —
//! carries each of them with its own headers. Classified once, metered as what it stands for.

use crate::wire::Packet;

/// The IP bytes and packets `packet` stands for when it is an aggregate of segments carrying
/// `segment_size` payload bytes each (0: a single frame). IP bytes as everywhere in metering:
/// per segment its IP header (and extension headers), its transport header and its payload.
#[inline]
pub fn on_the_wire(packet: &Packet, segment_size: u16) -> (u64, u64) {
    let single = (u64::from(packet.ip_len), 1);
    let (size, payload) = (u64::from(segment_size), u64::from(packet.payload_len));
    // A fragment, or a frame no larger than one segment, is what it is.
    if size == 0 || payload <= size || packet.payload_offset <= packet.l3_offset {
        return single;
    }
    let headers = u64::from(packet.payload_offset - packet.l3_offset);
    let segments = payload.div_ceil(size);
    (payload + segments * headers, segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, LinkType, Parsed};

    /// An Ethernet/IPv4/TCP frame with the timestamp option (32-byte TCP header) and `payload`
    /// bytes of data, as a TSO sender hands it to its device.
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (20 + 32 + payload) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[198, 51, 100, 10]);
        f[30..34].copy_from_slice(&[10, 45, 0, 2]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        f[46] = 8 << 4;
        f[47] = 0x10;
        f[54..56].copy_from_slice(&[1, 1]);
        f[56..58].copy_from_slice(&[8, 10]);
        f
    }

    fn tcp6(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20 + payload];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22..38].copy_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        f[38..54].copy_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0x45, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2,
        ]);
        f[54..56].copy_from_slice(&80u16.to_be_bytes());
        f[56..58].copy_from_slice(&40000u16.to_be_bytes());
        f[66] = 5 << 4;
        f[67] = 0x10;
        f
    }

    fn wire(frame: &[u8], segment_size: u16) -> (u64, u64) {
        match wire::parse(LinkType::Ethernet, frame) {
            Ok(Parsed::Ip(p)) => on_the_wire(&p, segment_size),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_aggregate_is_metered_as_its_segments_with_their_headers() {
        // 44 full segments of 1448 and a last one of 1000 (an IP total length under 64 KiB):
        // 45 packets, 52 header bytes each.
        let payload = 44 * 1448 + 1000;
        assert_eq!(wire(&tcp4(payload), 1448), (64_712 + 45 * 52, 45));
        assert_eq!(64_712 + 45 * 52, 67_052);
        // An exact multiple: no short last segment.
        assert_eq!(wire(&tcp4(10 * 1448), 1448), (14_480 + 10 * 52, 10));
        // IPv6 (40 + 20 bytes of headers), segments of 1440.
        assert_eq!(wire(&tcp6(3 * 1440 + 1), 1440), (4_321 + 4 * 60, 4));
    }

    #[test]
    fn a_single_frame_is_its_ip_length() {
        // No segment size, one segment's worth, or a pure ACK: one packet of ip_len.
        assert_eq!(wire(&tcp4(1448), 0), (1_500, 1));
        assert_eq!(wire(&tcp4(1448), 1448), (1_500, 1));
        assert_eq!(wire(&tcp4(0), 1448), (52, 1));
        assert_eq!(wire(&tcp4(1449), 1448), (1_449 + 2 * 52, 2));
    }
}
