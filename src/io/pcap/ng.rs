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
