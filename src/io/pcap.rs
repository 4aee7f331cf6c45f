//! Reading pcap and pcapng captures and writing pcap captures.
//!
//! Owns the capture file formats and nothing else: frames come out as bytes plus a timestamp and
//! link type, and are never parsed here. Malformed input becomes a [`PcapError`] naming the byte
//! offset; nothing in this module panics on any input.

mod ng;

use crate::time::Timestamp;
use crate::wire::LinkType;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Largest captured frame accepted, the snaplen libpcap and Wireshark use by default. Bounding it
/// keeps a corrupt length field from turning into a huge allocation.
pub const MAX_FRAME_LEN: u32 = 262_144;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;

/// A capture could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("capture I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot open capture {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    #[error("capture is malformed at byte {offset}: {message}")]
    Malformed { offset: u64, message: String },
    #[error("link type {0} is not supported (Ethernet and raw IP are)")]
    UnsupportedLinkType(u32),
}

fn malformed(offset: u64, message: impl Into<String>) -> PcapError {
    PcapError::Malformed {
        offset,
        message: message.into(),
    }
}

/// Maps a pcap/pcapng link-type number to the framing the data path understands.
fn link_from_number(n: u32) -> Result<LinkType, PcapError> {
    match n {
        LINKTYPE_ETHERNET => Ok(LinkType::Ethernet),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Ok(LinkType::RawIp),
        other => Err(PcapError::UnsupportedLinkType(other)),
    }
}

fn link_to_number(link: LinkType) -> u32 {
    match link {
        LinkType::Ethernet => LINKTYPE_ETHERNET,
        LinkType::RawIp => LINKTYPE_RAW,
    }
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub timestamp: Timestamp,
    pub link: LinkType,
    /// Length on the wire; `data` may be shorter if the capture was truncated (snaplen).
    pub original_len: u32,
    pub data: Vec<u8>,
}

/// Everything about a frame except its bytes, which [`CaptureReader::next_into`] puts in a
/// buffer the caller owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub timestamp: Timestamp,
    pub link: LinkType,
    /// Length on the wire; the frame in the buffer may be shorter (snaplen).
    pub original_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
}

/// The byte source plus how far into it we are, so every error can name an offset.
struct Input<R: Read> {
    inner: BufReader<R>,
    offset: u64,
}

impl<R: Read> Input<R> {
    /// Reads until `buf` is full or the source ends; returns how much was read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, PcapError> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// A fixed-size header that may legitimately be absent: `None` only when the source ends
    /// exactly here, so a capture cut inside a header is reported rather than taken as its end.
    fn header<const N: usize>(&mut self, what: &str) -> Result<Option<[u8; N]>, PcapError> {
        let start = self.offset;
        let mut b = [0u8; N];
        match self.fill(&mut b)? {
            0 => Ok(None),
            n if n == N => Ok(Some(b)),
            n => Err(truncated(start, what, N as u64, n as u64)),
        }
    }

    /// A fixed-size field of something already started; the end of the source is an error.
    fn exact<const N: usize>(&mut self, start: u64, what: &str) -> Result<[u8; N], PcapError> {
        let mut b = [0u8; N];
        let n = self.fill(&mut b)?;
        if n < N {
            let have = self.offset - start;
            return Err(truncated(start, what, have - n as u64 + N as u64, have));
        }
        Ok(b)
    }

    /// Replaces `buf`'s contents with the next `len` bytes, reusing its allocation.
    fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        len: usize,
        start: u64,
        what: &str,
    ) -> Result<(), PcapError> {
        buf.clear();
        buf.resize(len, 0);
        let n = self.fill(buf)?;
        if n < len {
            let have = self.offset - start;
            return Err(truncated(start, what, have - n as u64 + len as u64, have));
        }
        Ok(())
    }

    fn skip(&mut self, len: u64, start: u64, what: &str) -> Result<(), PcapError> {
        let n = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())?;
        self.offset += n;
        if n < len {
            let have = self.offset - start;
            return Err(truncated(start, what, have - n + len, have));
        }
        Ok(())
    }
}

fn truncated(start: u64, what: &str, needed: u64, have: u64) -> PcapError {
    malformed(
        start,
        format!("{what} is truncated: needs {needed} bytes, the capture ends after {have}"),
    )
}

/// Classic pcap state, fixed by the file header.
struct Classic {
    endian: Endian,
    nanos: bool,
    link: LinkType,
}

enum Format {
    Classic(Classic),
    Ng(ng::Ng),
}

/// Reads pcap (both byte orders, micro- and nanosecond) and pcapng (SHB/IDB/EPB/SPB/OPB,
/// several interfaces and sections, both byte orders, `if_tsresol`, `if_tsoffset`).
///
/// The source is wrapped in a [`BufReader`], so pass a plain [`File`] (or use [`Self::open`]).
/// For pcapng, an interface whose link type is neither Ethernet nor raw IP is only an error
/// ([`PcapError::UnsupportedLinkType`]) once one of its packets is read.
pub struct CaptureReader<R: Read> {
    input: Input<R>,
    format: Format,
    /// Iteration stops after the first error; a reader that lost its place must not go on.
    failed: bool,
}

impl CaptureReader<File> {
    /// Opens a capture file by path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| PcapError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CaptureReader::new(file)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut input = Input {
            inner: BufReader::with_capacity(64 * 1024, inner),
            offset: 0,
        };
        let Some(magic) = input.header::<4>("file header")? else {
            return Err(malformed(0, "the capture is empty"));
        };
        if magic == ng::SHB_TYPE {
            let ng = ng::Ng::start(&mut input)?;
            return Ok(CaptureReader {
                input,
                format: Format::Ng(ng),
                failed: false,
            });
        }
        let (endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (MAGIC_MICROS, _) => (Endian::Little, false),
            (MAGIC_NANOS, _) => (Endian::Little, true),
            (_, MAGIC_MICROS) => (Endian::Big, false),
            (_, MAGIC_NANOS) => (Endian::Big, true),
            _ => return Err(PcapError::BadMagic(u32::from_be_bytes(magic))),
        };
        // version (4), thiszone (4), sigfigs (4), snaplen (4), link type (4). The snaplen is not
        // trusted: some writers put 0 or 65535 there and still store larger frames.
        let h = input.exact::<20>(0, "file header")?;
        let link = link_from_number(endian.u32([h[16], h[17], h[18], h[19]]))?;
        Ok(CaptureReader {
            input,
            format: Format::Classic(Classic {
                endian,
                nanos,
                link,
            }),
            failed: false,
        })
    }

    /// The link type of the whole file (pcap), or of the first interface of the current section
    /// seen so far (pcapng); each record carries its own.
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.format {
            Format::Classic(c) => Some(c.link),
            Format::Ng(n) => n.first_link(),
        }
    }

    /// Bytes of the capture consumed so far.
    pub fn offset(&self) -> u64 {
        self.input.offset
    }

    /// The next frame, `None` at the end of the capture.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        let mut data = Vec::new();
        Ok(self.next_into(&mut data)?.map(|meta| Record {
            timestamp: meta.timestamp,
            link: meta.link,
            original_len: meta.original_len,
            data,
        }))
    }

    /// The next frame with its bytes written into `buf` (replacing its contents), `None` at the
    /// end of the capture. Reusing one buffer means no allocation per frame once it has grown to
    /// the largest frame (at most [`MAX_FRAME_LEN`]).
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordMeta>, PcapError> {
        match &mut self.format {
            Format::Classic(c) => classic_next(c, &mut self.input, buf),
            Format::Ng(n) => n.next_into(&mut self.input, buf),
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Record, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_record().transpose();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

fn classic_next<R: Read>(
    c: &Classic,
    input: &mut Input<R>,
    buf: &mut Vec<u8>,
) -> Result<Option<RecordMeta>, PcapError> {
    let start = input.offset;
    let Some(h) = input.header::<16>("record header")? else {
        return Ok(None);
    };
    let secs = c.endian.u32([h[0], h[1], h[2], h[3]]);
    let frac = c.endian.u32([h[4], h[5], h[6], h[7]]);
    let incl_len = c.endian.u32([h[8], h[9], h[10], h[11]]);
    let original_len = c.endian.u32([h[12], h[13], h[14], h[15]]);
    if incl_len > MAX_FRAME_LEN {
        return Err(malformed(
            start,
            format!("record length {incl_len} exceeds the maximum of {MAX_FRAME_LEN}"),
        ));
    }
    input.read_into(buf, incl_len as usize, start, "record")?;
    // u32 seconds * 1e9 plus a u32 fraction * 1000 stays below 2^63, so this cannot overflow.
    let frac_nanos = if c.nanos {
        u64::from(frac)
    } else {
        u64::from(frac) * 1_000
    };
    Ok(Some(RecordMeta {
        timestamp: Timestamp::from_nanos(u64::from(secs) * 1_000_000_000 + frac_nanos),
        link: c.link,
        original_len,
    }))
}

/// Writes a classic pcap file (nanosecond resolution, little-endian) of one link type.
///
/// Output is buffered internally; call [`Self::finish`] to flush it and get the writer back.
pub struct PcapWriter<W: Write> {
    inner: BufWriter<W>,
    snaplen: u32,
}

impl PcapWriter<File> {
    /// Creates (or truncates) a capture file by path.
    pub fn create(path: impl AsRef<Path>, link: LinkType, snaplen: u32) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| PcapError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        PcapWriter::new(file, link, snaplen)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. Frames longer than `snaplen` are cut to it; a `snaplen` of 0 or
    /// above [`MAX_FRAME_LEN`] means [`MAX_FRAME_LEN`], so that every reader accepts the file.
    pub fn new(inner: W, link: LinkType, snaplen: u32) -> Result<Self, PcapError> {
        let snaplen = if snaplen == 0 {
            MAX_FRAME_LEN
        } else {
            snaplen.min(MAX_FRAME_LEN)
        };
        let mut inner = BufWriter::with_capacity(64 * 1024, inner);
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0, as every current writer does.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link_to_number(link).to_le_bytes());
        inner.write_all(&h)?;
        Ok(PcapWriter { inner, snaplen })
    }

    /// Appends one frame. Fails for timestamps past 2106, which pcap's 32-bit seconds cannot hold.
    pub fn write(&mut self, timestamp: Timestamp, frame: &[u8]) -> Result<(), PcapError> {
        let nanos = timestamp.as_nanos();
        let secs = u32::try_from(nanos / 1_000_000_000).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("timestamp {timestamp} is too late for a pcap file"),
            )
        })?;
        let frac = (nanos % 1_000_000_000) as u32;
        let original_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl_len = original_len.min(self.snaplen);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&incl_len.to_le_bytes());
        h[12..16].copy_from_slice(&original_len.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(&frame[..incl_len as usize])?;
        Ok(())
    }

    /// Flushes buffered frames and returns the underlying writer.
    pub fn finish(self) -> Result<W, PcapError> {
        self.inner
            .into_inner()
            .map_err(|e| PcapError::Io(e.into_error()))
    }
}
