//! The pcapng block structure: sections, interfaces and the three packet block kinds.
//!
//! Every block's length is validated before its body is looked at, and every field read from a
//! body is bounds-checked, so a corrupt file yields a [`PcapError::Malformed`] naming the block.

use super::{link_from_number, malformed, Endian, Input, PcapError, RecordMeta, MAX_FRAME_LEN};
use crate::time::Timestamp;
use crate::wire::LinkType;
use std::io::Read;

/// The Section Header Block type reads the same in both byte orders, which is how a reader finds
/// a section before it knows the section's byte order.
pub(super) const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;

/// Blocks we parse are read whole; bigger ones are certainly corrupt, and the bound keeps a bad
/// length from becoming a huge allocation. Blocks we skip are streamed and not bounded.
const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

/// The unit of an interface's timestamps, from `if_tsresol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    /// 10^-n seconds.
    Decimal(u8),
    /// 2^-n seconds.
    Binary(u8),
}

impl Resolution {
    fn from_option(v: u8) -> Self {
        if v & 0x80 == 0 {
            Resolution::Decimal(v)
        } else {
            Resolution::Binary(v & 0x7f)
        }
    }

    fn to_nanos(self, units: u64) -> u128 {
        let units = u128::from(units);
        match self {
            Resolution::Decimal(n) if n <= 9 => units * 10u128.pow(u32::from(9 - n)),
            // Finer than 1 ns; a divisor too large for u128 leaves less than a nanosecond.
            Resolution::Decimal(n) => 10u128
                .checked_pow(u32::from(n - 9))
                .map_or(0, |d| units / d),
            // units < 2^64 and 1e9 < 2^30, so the product fits; n <= 127 keeps the shift valid.
            Resolution::Binary(n) => (units * 1_000_000_000) >> n,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    /// Kept as the raw number when unsupported: that is only an error if a packet uses it.
    link: Result<LinkType, u32>,
    snaplen: u32,
    resolution: Resolution,
    /// `if_tsoffset`: seconds added to every timestamp of this interface.
    offset_secs: i64,
}

impl Interface {
    fn timestamp(&self, units: u64) -> Timestamp {
        let nanos =
            self.resolution.to_nanos(units) as i128 + i128::from(self.offset_secs) * 1_000_000_000;
        Timestamp::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
    }

    fn link(&self) -> Result<LinkType, PcapError> {
        self.link.map_err(PcapError::UnsupportedLinkType)
    }
}

/// Bounds-checked reads from a block body.
struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Fields<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.body.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(self.endian.u16([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(self.endian.u32([b[0], b[1], b[2], b[3]]))
    }

    fn u64_split(&mut self) -> Option<u64> {
        let high = self.u32()?;
        let low = self.u32()?;
        Some(u64::from(high) << 32 | u64::from(low))
    }

    fn remaining(&self) -> usize {
        self.body.len().saturating_sub(self.pos)
    }
}

/// State of a pcapng capture: the current section's byte order and interfaces.
pub(super) struct Ng {
    endian: Endian,
    interfaces: Vec<Interface>,
    /// Simple Packet Blocks carry no timestamp; they get the most recent one seen.
    last_timestamp: Timestamp,
    /// Reused for the body of every block that is parsed.
    scratch: Vec<u8>,
}

impl Ng {
    /// Called after the first Section Header Block's type has been read.
    pub(super) fn start<R: Read>(input: &mut Input<R>) -> Result<Self, PcapError> {
        let mut ng = Ng {
            endian: Endian::Little,
            interfaces: Vec::new(),
            last_timestamp: Timestamp::ZERO,
            scratch: Vec::new(),
        };
        ng.section(input, input.offset - 4)?;
        Ok(ng)
    }

    pub(super) fn first_link(&self) -> Option<LinkType> {
        self.interfaces.first().and_then(|i| i.link.ok())
    }

    /// Reads a Section Header Block after its type: a new byte order and no interfaces yet.
    fn section<R: Read>(&mut self, input: &mut Input<R>, start: u64) -> Result<(), PcapError> {
        let h = input.exact::<8>(start, "section header block")?;
        let bom = [h[4], h[5], h[6], h[7]];
        self.endian = if u32::from_le_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Little
        } else if u32::from_be_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(malformed(
                start + 8,
                format!(
                    "section header byte-order magic is {:#010x}, not 0x1a2b3c4d",
                    u32::from_be_bytes(bom)
                ),
            ));
        };
        let len = self.endian.u32([h[0], h[1], h[2], h[3]]);
        // Type, length, byte-order magic, version and section length come before the options.
        check_len(len, 28, start, "section header block")?;
        self.body(input, len, start, "section header block")?;
        // The byte-order magic was consumed above; the body here starts at the version.
        let mut f = self.fields(0);
        let major = f.u16();
        if major != Some(1) {
            return Err(malformed(
                start + 12,
                format!(
                    "pcapng version {} is not supported (1 is)",
                    major.unwrap_or(0)
                ),
            ));
        }
        self.interfaces.clear();
        Ok(())
    }

    pub(super) fn next_into<R: Read>(
        &mut self,
        input: &mut Input<R>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordMeta>, PcapError> {
        loop {
            let start = input.offset;
            let Some(raw_type) = input.header::<4>("block header")? else {
                return Ok(None);
            };
            if raw_type == SHB_TYPE {
                self.section(input, start)?;
                continue;
            }
            let block_type = self.endian.u32(raw_type);
            let len = self.endian.u32(input.exact::<4>(start, "block header")?);
            check_len(len, 12, start, "block")?;
            match block_type {
                IDB => {
                    self.body(input, len, start, "interface description block")?;
                    self.interface(start)?;
                }
                EPB | OPB | SPB => {
                    self.body(input, len, start, "packet block")?;
                    return self.packet(block_type, start, buf).map(Some);
                }
                _ => {
                    input.skip(u64::from(len) - 12, start, "block")?;
                    self.trailer(input, len, start)?;
                }
            }
        }
    }

    /// Reads the rest of a block whose type and length are consumed into `scratch`, and checks
    /// the trailing length.
    fn body<R: Read>(
        &mut self,
        input: &mut Input<R>,
        len: u32,
        start: u64,
        what: &str,
    ) -> Result<(), PcapError> {
        if len > MAX_BLOCK_LEN {
            return Err(malformed(
                start,
                format!("{what} length {len} exceeds the maximum of {MAX_BLOCK_LEN}"),
            ));
        }
        let consumed = input.offset - start;
        // check_len guaranteed len >= consumed + 4 for every caller.
        let body_len = u64::from(len) - consumed - 4;
        input.read_into(&mut self.scratch, body_len as usize, start, what)?;
        self.trailer(input, len, start)
    }

    fn trailer<R: Read>(
        &self,
        input: &mut Input<R>,
        len: u32,
        start: u64,
    ) -> Result<(), PcapError> {
        let trailing = self.endian.u32(input.exact::<4>(start, "block")?);
        if trailing != len {
            return Err(malformed(
                start,
                format!("block length {len} does not match its trailing length {trailing}"),
            ));
        }
        Ok(())
    }

    fn fields(&self, pos: usize) -> Fields<'_> {
        Fields {
            body: &self.scratch,
            pos,
            endian: self.endian,
        }
    }

    fn interface(&mut self, start: u64) -> Result<(), PcapError> {
        let bad = |what: &str| malformed(start, format!("interface description block: {what}"));
        let mut f = self.fields(0);
        let link = f.u16().ok_or_else(|| bad("too short"))?;
        let _reserved = f.u16();
        let snaplen = f.u32().ok_or_else(|| bad("too short"))?;
        let mut resolution = Resolution::Decimal(6);
        let mut offset_secs = 0;
        while f.remaining() > 0 {
            let code = f
                .u16()
                .ok_or_else(|| bad("option header overruns the block"))?;
            let len = f
                .u16()
                .ok_or_else(|| bad("option header overruns the block"))?;
            if code == OPT_END {
                break;
            }
            let value = f
                .bytes(usize::from(len))
                .ok_or_else(|| bad("option value overruns the block"))?;
            // Option values are padded to 32 bits; the block length already is a multiple of 4,
            // so a missing final pad cannot hide anything.
            let _ = f.bytes((4 - usize::from(len) % 4) % 4);
            match (code, value) {
                (IF_TSRESOL, [v]) => resolution = Resolution::from_option(*v),
                (IF_TSOFFSET, v) if v.len() == 8 => {
                    let b = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                    offset_secs = match self.endian {
                        Endian::Little => i64::from_le_bytes(b),
                        Endian::Big => i64::from_be_bytes(b),
                    };
                }
                _ => {}
            }
        }
        self.interfaces.push(Interface {
            link: link_from_number(u32::from(link)).map_err(|_| u32::from(link)),
            snaplen,
            resolution,
            offset_secs,
        });
        Ok(())
    }

    /// Parses a packet block in `scratch`; copies its frame into `buf`.
    fn packet(
        &mut self,
        block_type: u32,
        start: u64,
        buf: &mut Vec<u8>,
    ) -> Result<RecordMeta, PcapError> {
        let (name, interface_id) = match block_type {
            EPB => ("enhanced packet block", None),
            OPB => ("packet block", None),
            _ => ("simple packet block", Some(0)),
        };
        let bad = |what: &str| malformed(start, format!("{name}: {what}"));
        let mut f = self.fields(0);
        let (interface_id, units, captured, original_len) = match interface_id {
            None => {
                let id = if block_type == EPB {
                    f.u32()
                } else {
                    // Interface id (16 bits) then drop count (16 bits).
                    let id = f.u16();
                    let _drops = f.u16();
                    id.map(u32::from)
                };
                let id = id.ok_or_else(|| bad("too short"))?;
                let units = f.u64_split().ok_or_else(|| bad("too short"))?;
                let captured = f.u32().ok_or_else(|| bad("too short"))?;
                let original = f.u32().ok_or_else(|| bad("too short"))?;
                (id, Some(units), captured, original)
            }
            Some(id) => {
                let original = f.u32().ok_or_else(|| bad("too short"))?;
                // The captured length is implied: the original length, cut to what the block
                // holds and the interface's snaplen.
                let room = u32::try_from(f.remaining()).unwrap_or(u32::MAX);
                (id, None, original.min(room), original)
            }
        };
        let interface = *usize::try_from(interface_id)
            .ok()
            .and_then(|i| self.interfaces.get(i))
            .ok_or_else(|| bad(&format!("interface {interface_id} was not described")))?;
        let captured = match units {
            None if interface.snaplen != 0 => captured.min(interface.snaplen),
            _ => captured,
        };
        if captured > MAX_FRAME_LEN {
            return Err(bad(&format!(
                "captured length {captured} exceeds the maximum of {MAX_FRAME_LEN}"
            )));
        }
        let data = f
            .bytes(captured as usize)
            .ok_or_else(|| bad(&format!("captured length {captured} overruns the block")))?;
        let link = interface.link()?;
        buf.clear();
        buf.extend_from_slice(data);
        if let Some(units) = units {
            self.last_timestamp = interface.timestamp(units);
        }
        Ok(RecordMeta {
            timestamp: self.last_timestamp,
            link,
            original_len,
        })
    }
}

fn check_len(len: u32, min: u32, start: u64, what: &str) -> Result<(), PcapError> {
    if len % 4 != 0 {
        return Err(malformed(
            start,
            format!("{what} length {len} is not a multiple of 4"),
        ));
    }
    if len < min {
        return Err(malformed(
            start,
            format!("{what} length {len} is below the minimum of {min}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::io::pcap::{CaptureReader, PcapError, Record};
    use crate::time::Timestamp;
    use crate::wire::LinkType;
    use std::io::Cursor;

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, PcapError> {
        CaptureReader::new(Cursor::new(bytes))?.collect()
    }

    fn offset_of(err: Result<Vec<Record>, PcapError>) -> u64 {
        match err {
            Err(PcapError::Malformed { offset, .. }) => offset,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// A minimal little-endian capture spelled out byte by byte, independent of the builder below.
    #[rustfmt::skip]
    const LITTLE_ENDIAN: [u8; 88] = [
        // Section Header Block: length 28, byte-order magic, version 1.0, section length -1.
        0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00, 0x4d, 0x3c, 0x2b, 0x1a, 0x01, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1c, 0x00, 0x00, 0x00,
        // Interface Description Block: length 20, Ethernet, snaplen 262144, no options.
        0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x04, 0x00, 0x14, 0x00, 0x00, 0x00,
        // Enhanced Packet Block: length 40, interface 0, 1278472579.466743 in microseconds
        // (0x00048ac3_97f445f7), captured 5, original 60, 5 bytes and 3 of padding.
        0x06, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc3, 0x8a,
        0x04, 0x00, 0xf7, 0x45, 0xf4, 0x97, 0x05, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00,
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn literal_little_endian_capture() {
        let mut reader = CaptureReader::new(Cursor::new(&LITTLE_ENDIAN[..])).unwrap();
        assert_eq!(reader.link_type(), None);
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(reader.link_type(), Some(LinkType::Ethernet));
        assert_eq!(
            record,
            Record {
                timestamp: Timestamp(1_278_472_579_466_743_000),
                link: LinkType::Ethernet,
                original_len: 60,
                data: vec![0xaa, 0xbb, 0xcc, 0xdd, 0xee],
            }
        );
        assert!(reader.next_record().unwrap().is_none());
    }

    /// Assembles pcapng blocks in either byte order.
    struct Builder {
        big: bool,
        out: Vec<u8>,
    }

    impl Builder {
        fn new(big: bool) -> Self {
            Builder {
                big,
                out: Vec::new(),
            }
        }

        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn ts(&self, units: u64) -> Vec<u8> {
            [self.u32((units >> 32) as u32), self.u32(units as u32)].concat()
        }

        fn options(&self, opts: &[(u16, &[u8])]) -> Vec<u8> {
            let mut out = Vec::new();
            for (code, value) in opts {
                out.extend_from_slice(&self.u16(*code));
                out.extend_from_slice(&self.u16(value.len() as u16));
                out.extend_from_slice(value);
                out.resize(out.len().next_multiple_of(4), 0);
            }
            if !opts.is_empty() {
                out.extend_from_slice(&[0; 4]);
            }
            out
        }

        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
            let padded = body.len().next_multiple_of(4);
            let len = self.u32(12 + padded as u32);
            let block_type = self.u32(block_type);
            self.out.extend_from_slice(&block_type);
            self.out.extend_from_slice(&len);
            self.out.extend_from_slice(body);
            self.out.resize(self.out.len() + padded - body.len(), 0);
            self.out.extend_from_slice(&len);
            self
        }

        fn shb(&mut self, big: bool) -> &mut Self {
            self.big = big;
            let mut body = self.u32(0x1a2b_3c4d).to_vec();
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            body.extend(self.options(&[(4, b"weir")]));
            self.block(0x0a0d_0d0a, &body)
        }

        fn idb(&mut self, link: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> &mut Self {
            let mut body = [self.u16(link), self.u16(0)].concat();
            body.extend_from_slice(&self.u32(snaplen));
            body.extend(self.options(opts));
            self.block(1, &body)
        }

        fn epb(&mut self, interface: u32, units: u64, data: &[u8], original: u32) -> &mut Self {
            let mut body = self.u32(interface).to_vec();
            body.extend(self.ts(units));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(original));
            body.extend_from_slice(data);
            body.resize(body.len().next_multiple_of(4), 0);
            // epb_flags: inbound.
            body.extend(self.options(&[(2, &self.u32(1))]));
            self.block(6, &body)
        }

        fn opb(&mut self, interface: u16, units: u64, data: &[u8], original: u32) -> &mut Self {
            let mut body = [self.u16(interface), self.u16(0)].concat();
            body.extend(self.ts(units));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(original));
            body.extend_from_slice(data);
            self.block(2, &body)
        }

        fn spb(&mut self, original: u32, data: &[u8]) -> &mut Self {
            let mut body = self.u32(original).to_vec();
            body.extend_from_slice(data);
            self.block(3, &body)
        }
    }

    fn record(ns: u64, link: LinkType, original_len: u32, data: &[u8]) -> Record {
        Record {
            timestamp: Timestamp(ns),
            link,
            original_len,
            data: data.to_vec(),
        }
    }

    /// Two sections (the second in the other byte order), interfaces with microsecond,
    /// nanosecond and binary resolutions and a time offset, every packet block kind, and blocks
    /// the reader must skip.
    fn mixed_capture(big: bool) -> Vec<u8> {
        mixed_capture_and_first_packet(big).0
    }

    /// The capture and the offset of its first packet block.
    fn mixed_capture_and_first_packet(big: bool) -> (Vec<u8>, usize) {
        // if_tsoffset is a signed 64-bit value in the section's byte order.
        let offset = if big {
            100i64.to_be_bytes()
        } else {
            100i64.to_le_bytes()
        };
        let mut b = Builder::new(big);
        b.shb(big)
            .idb(1, 0, &[])
            .block(0x0000_0bad, &[1, 2, 3, 4, 5, 6, 7, 8])
            .idb(101, 0, &[(2, b"tun0"), (9, &[9])])
            .idb(228, 65_535, &[(9, &[0x8a]), (14, &offset)])
            // Name Resolution Block: one IPv4 record, then end of records.
            .block(4, &[0; 12]);
        let first_packet = b.out.len();
        b.epb(0, 1_500_000_000_123_456, &[0xaa; 5], 60)
            .epb(1, 1_500_000_001_000_000_007, &[0xbb; 8], 8)
            // Interface Statistics Block.
            .block(5, &[0; 12])
            .spb(3, &[0xcc, 0xcd, 0xce])
            .epb(2, 5 * 1024 + 512, &[0x45, 0, 0, 20], 20)
            .opb(0, 7, &[0xdd; 2], 2)
            .shb(!big)
            .idb(229, 0, &[(9, &[3])])
            .epb(0, 1500, &[0x60], 40);
        (b.out, first_packet)
    }

    fn mixed_expected() -> Vec<Record> {
        vec![
            record(
                1_500_000_000_123_456_000,
                LinkType::Ethernet,
                60,
                &[0xaa; 5],
            ),
            record(1_500_000_001_000_000_007, LinkType::RawIp, 8, &[0xbb; 8]),
            // No timestamp of its own: it takes the previous packet's.
            record(
                1_500_000_001_000_000_007,
                LinkType::Ethernet,
                3,
                &[0xcc, 0xcd, 0xce],
            ),
            // 5.5 s in 1/1024 s units, plus the interface's 100 s offset.
            record(105_500_000_000, LinkType::RawIp, 20, &[0x45, 0, 0, 20]),
            record(7_000, LinkType::Ethernet, 2, &[0xdd; 2]),
            // The second section starts its interface numbering afresh, in milliseconds.
            record(1_500_000_000, LinkType::RawIp, 40, &[0x60]),
        ]
    }

    #[test]
    fn mixed_capture_both_byte_orders() {
        for big in [false, true] {
            let bytes = mixed_capture(big);
            assert_eq!(read_all(&bytes).unwrap(), mixed_expected(), "big {big}");
        }
    }

    fn one_interface() -> Builder {
        let mut b = Builder::new(false);
        b.shb(false).idb(1, 0, &[]);
        b
    }

    #[test]
    fn block_lengths_are_validated() {
        for (len, trailing) in [(13u32, 13u32), (8, 8), (16, 20)] {
            let mut b = one_interface();
            let at = b.out.len() as u64;
            b.out.extend_from_slice(&[0xad, 0x0b, 0, 0]);
            b.out.extend_from_slice(&len.to_le_bytes());
            b.out.extend_from_slice(&[0; 4]);
            b.out.extend_from_slice(&trailing.to_le_bytes());
            assert_eq!(offset_of(read_all(&b.out)), at, "length {len}");
        }
        // A parsed block's trailer is checked too.
        let mut b = one_interface();
        let at = b.out.len() as u64;
        b.epb(0, 1, &[1, 2, 3, 4], 4);
        let end = b.out.len();
        b.out[end - 4] ^= 0x04;
        assert_eq!(offset_of(read_all(&b.out)), at);
    }

    #[test]
    fn unknown_interface_is_malformed() {
        let mut b = one_interface();
        b.epb(0, 1, &[1], 1);
        let at = b.out.len() as u64;
        b.epb(1, 2, &[2], 1);
        let mut reader = CaptureReader::new(Cursor::new(&b.out)).unwrap();
        assert!(reader.next_record().unwrap().is_some());
        match reader.next_record() {
            Err(PcapError::Malformed { offset, message }) => {
                assert_eq!(offset, at);
                assert!(message.contains("interface 1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A simple packet block needs interface 0.
        let mut b = Builder::new(true);
        b.shb(true);
        let at = b.out.len() as u64;
        b.spb(1, &[1]);
        assert_eq!(offset_of(read_all(&b.out)), at);
    }

    #[test]
    fn captured_length_overrunning_the_block_is_malformed() {
        let mut b = one_interface();
        let at = b.out.len();
        b.epb(0, 1, &[1, 2, 3, 4], 4);
        // The captured length field follows type, length, interface and timestamp.
        b.out[at + 20..at + 24].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(offset_of(read_all(&b.out)), at as u64);
    }

    #[test]
    fn truncated_pcapng_is_malformed() {
        let (bytes, first_epb) = mixed_capture_and_first_packet(false);
        for cut in [first_epb + 1, first_epb + 8, first_epb + 30] {
            assert_eq!(offset_of(read_all(&bytes[..cut])), first_epb as u64);
        }
        // Cut inside a skipped block.
        let unknown = 60;
        assert_eq!(offset_of(read_all(&bytes[..unknown + 14])), unknown as u64);
        // Cut at a block boundary: a clean end.
        assert_eq!(read_all(&bytes[..first_epb]).unwrap(), []);
    }

    #[test]
    fn unsupported_link_type_fails_only_when_used() {
        let mut b = Builder::new(false);
        b.shb(false)
            .idb(113, 0, &[])
            .idb(1, 0, &[])
            .epb(1, 1, &[7], 1);
        assert_eq!(read_all(&b.out).unwrap().len(), 1);
        b.epb(0, 1, &[7], 1);
        let mut reader = CaptureReader::new(Cursor::new(&b.out)).unwrap();
        assert!(reader.next_record().unwrap().is_some());
        assert!(matches!(
            reader.next_record(),
            Err(PcapError::UnsupportedLinkType(113))
        ));
    }

    #[test]
    fn section_header_is_validated() {
        let mut bad_bom = LITTLE_ENDIAN;
        bad_bom[8] = 0;
        assert!(matches!(
            CaptureReader::new(Cursor::new(&bad_bom[..])),
            Err(PcapError::Malformed { offset: 8, .. })
        ));
        let mut version_2 = LITTLE_ENDIAN;
        version_2[12] = 2;
        assert!(matches!(
            CaptureReader::new(Cursor::new(&version_2[..])),
            Err(PcapError::Malformed { offset: 12, .. })
        ));
        assert!(matches!(
            CaptureReader::new(Cursor::new(&LITTLE_ENDIAN[..20])),
            Err(PcapError::Malformed { offset: 0, .. })
        ));
    }

    #[test]
    fn resolutions() {
        use super::Resolution;
        assert_eq!(Resolution::from_option(6), Resolution::Decimal(6));
        assert_eq!(Resolution::from_option(0x8a), Resolution::Binary(10));
        assert_eq!(Resolution::Decimal(0).to_nanos(3), 3_000_000_000);
        assert_eq!(Resolution::Decimal(9).to_nanos(3), 3);
        assert_eq!(Resolution::Decimal(12).to_nanos(3_000), 3);
        assert_eq!(Resolution::Decimal(127).to_nanos(u64::MAX), 0);
        assert_eq!(Resolution::Binary(0).to_nanos(2), 2_000_000_000);
        assert_eq!(Resolution::Binary(30).to_nanos(1 << 30), 1_000_000_000);
        assert_eq!(Resolution::Binary(127).to_nanos(u64::MAX), 0);
    }
}
