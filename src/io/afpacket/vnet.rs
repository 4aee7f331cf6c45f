//! The `virtio_net_hdr` a packet socket with PACKET_VNET_HDR puts before every frame: on receive
//! it says whether the frame is an aggregate of several TCP (or UDP) segments (GSO on the sender,
//! GRO on the receiving interface) and whether its transport checksum is still to be filled in;
//! on transmit it asks the kernel to treat the frame the same way (segment it where the next
//! device cannot, finish the checksum).
//!
//! The header is handed over as the kernel wrote it, in host byte order (packet sockets speak
//! little-endian virtio on every architecture Weir builds for, see `vio_le()` in the kernel).

/// Bytes of `struct virtio_net_hdr` (without the `num_buffers` of the mergeable variant).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the transport checksum is partial: the kernel (or the next device) sums from
/// `csum_start` and stores the result at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags` (receive only): the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Or-ed into `gso_type`: the first segment carries CWR.
pub const GSO_ECN: u8 = 0x80;

/// One `virtio_net_hdr`, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers the kernel put in the linear part (a hint, not the header length).
    pub hdr_len: u16,
    /// Payload bytes per segment; meaningful only when `gso_type` is not [`GSO_NONE`].
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The header of a frame Weir built itself: complete, one segment, nothing left to the
    /// kernel.
    pub const PLAIN: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The payload bytes per segment when the frame stands for several segments the kernel knows
    /// how to cut (TCP over IPv4 or IPv6, UDP segmentation); `None` for a single frame.
    pub fn segment_size(&self) -> Option<u16> {
        match self.gso_type & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4 if self.gso_size > 0 => Some(self.gso_size),
            _ => None,
        }
    }

    /// The header for the same frame sent on with `shift` bytes put in before its network header
    /// (a VLAN tag the receiving kernel had taken out): the offsets move with the bytes.
    /// `DATA_VALID` means nothing on transmit and is dropped.
    pub fn for_transmit(self, shift: u16) -> VnetHdr {
        let mut h = self;
        h.flags &= F_NEEDS_CSUM;
        if h.flags & F_NEEDS_CSUM != 0 {
            h.csum_start = h.csum_start.saturating_add(shift);
        }
        if h.hdr_len != 0 {
            h.hdr_len = h.hdr_len.saturating_add(shift);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as the kernel wrote it for a 64 KiB TCP/IPv4 aggregate from a sender with
    /// checksum offload: NEEDS_CSUM from the TCP header (14 + 20) with the checksum 16 bytes in,
    /// 1448-byte segments, 66 bytes of linear headers.
    const TSO_V4: [u8; 10] = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];

    #[test]
    fn parses_what_the_kernel_writes() {
        let h = VnetHdr::parse(&TSO_V4);
        assert_eq!(
            h,
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert_eq!(h.segment_size(), Some(1448));
        assert_eq!(h.to_bytes(), TSO_V4);
    }

    #[test]
    fn single_frames_and_unknown_kinds_are_one_segment() {
        assert_eq!(VnetHdr::PLAIN.to_bytes(), [0; 10]);
        assert_eq!(VnetHdr::parse(&[0; 10]).segment_size(), None);
        // A GRO aggregate of TCP/IPv6 with ECN: verified, segments of 1428.
        let h = VnetHdr::parse(&[0x02, 0x84, 0x56, 0x00, 0x94, 0x05, 0, 0, 0, 0]);
        assert_eq!((h.flags, h.segment_size()), (F_DATA_VALID, Some(1428)));
        // UFO (IP fragments, not segments) and a zero size are not counted as segments.
        let ufo = VnetHdr::parse(&[0x01, GSO_UDP, 0, 0, 0xdc, 0x05, 0x22, 0, 0x06, 0]);
        assert_eq!(ufo.segment_size(), None);
        let zero = VnetHdr::parse(&[0x01, GSO_TCPV4, 0, 0, 0, 0, 0x22, 0, 0x10, 0]);
        assert_eq!(zero.segment_size(), None);
        let uso = VnetHdr::parse(&[0x01, GSO_UDP_L4, 0, 0, 0xb4, 0x05, 0x22, 0, 0x06, 0]);
        assert_eq!(uso.segment_size(), Some(1460));
    }

    #[test]
    fn a_tag_put_back_moves_the_checksum_start_and_the_header_hint() {
        let h = VnetHdr::parse(&TSO_V4).for_transmit(4);
        assert_eq!((h.csum_start, h.csum_offset, h.hdr_len), (38, 16, 70));
        assert_eq!((h.gso_type, h.gso_size), (GSO_TCPV4, 1448));
        // A verified aggregate: nothing to move, and DATA_VALID is not a transmit flag.
        let v = VnetHdr {
            flags: F_DATA_VALID,
            gso_type: GSO_TCPV4,
            hdr_len: 0,
            gso_size: 1448,
            csum_start: 0,
            csum_offset: 0,
        }
        .for_transmit(4);
        assert_eq!((v.flags, v.csum_start, v.hdr_len), (0, 0, 0));
    }
}
