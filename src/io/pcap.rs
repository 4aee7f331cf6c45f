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
const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_LOOP: u32 = 108;
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
    #[error("link type {0} is not supported (Ethernet, raw IP and BSD loopback are)")]
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
        LINKTYPE_NULL | LINKTYPE_LOOP => Ok(LinkType::Loopback),
        other => Err(PcapError::UnsupportedLinkType(other)),
    }
}

fn link_to_number(link: LinkType) -> u32 {
    match link {
        LinkType::Ethernet => LINKTYPE_ETHERNET,
        LinkType::RawIp => LINKTYPE_RAW,
        LinkType::Loopback => LINKTYPE_NULL,
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
        // version (4), thiszone (4), sigfigs (4), snaplen (4), link type (4). thiszone is always
        // 0 in practice and tools ignore it, so timestamps are taken as UTC. The snaplen is not
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
        // incl_len is at most frame.len(): it is the smaller of the length (saturated to u32,
        // which only lowers it) and the snaplen, so the slice is in bounds.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::process::Command;

    fn data_path(name: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/pcap")
            .join(name);
        assert!(path.is_file(), "test capture {} is missing", path.display());
        path
    }

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(data_path(name)).unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, PcapError> {
        CaptureReader::new(Cursor::new(bytes))?.collect()
    }

    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Whether `name` can run. Without it the test is skipped, said on the real stderr (past
    /// the harness's capture) so a skip is never silent; under CI (`CI=true`) a missing tool
    /// fails the test instead, since CI installs it.
    fn tool_or_skip(name: &str, test: &str, what: &str) -> bool {
        if Command::new(name).arg("--version").output().is_ok() {
            return true;
        }
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: needs {name} ({what}), and CI must run it: scripts/install-deps.sh installs it");
        }
        use std::io::Write as _;
        let line = format!("{test}: skipped: {name} is not installed, so {what} was not checked\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        false
    }

    /// Rewrites a little-endian microsecond capture as big-endian and/or nanosecond, field by
    /// field, so the other three classic variants are tested against real frames.
    fn convert(le_micros: &[u8], big: bool, nanos: bool) -> Vec<u8> {
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let put32 = |out: &mut Vec<u8>, v: u32| {
            out.extend_from_slice(&if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let put16 = |out: &mut Vec<u8>, v: u16| {
            out.extend_from_slice(&if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let mut out = Vec::new();
        put32(&mut out, if nanos { MAGIC_NANOS } else { MAGIC_MICROS });
        put16(&mut out, 2);
        put16(&mut out, 4);
        for at in [8, 12, 16, 20] {
            put32(&mut out, u32_at(le_micros, at));
        }
        let mut at = 24;
        while at < le_micros.len() {
            let frac = u32_at(le_micros, at + 4);
            let incl = u32_at(le_micros, at + 8) as usize;
            put32(&mut out, u32_at(le_micros, at));
            put32(&mut out, if nanos { frac * 1000 } else { frac });
            put32(&mut out, incl as u32);
            put32(&mut out, u32_at(le_micros, at + 12));
            out.extend_from_slice(&le_micros[at + 16..at + 16 + incl]);
            at += 16 + incl;
        }
        out
    }

    #[test]
    fn reads_tcpreplay_capture() {
        let mut reader = CaptureReader::open(data_path("tcpreplay-test.pcap")).unwrap();
        assert_eq!(reader.link_type(), Some(LinkType::Ethernet));
        let first = reader.next_record().unwrap().unwrap();
        // tcpdump -tt: 1278472579.466743, length 93, 00:1f:f3:3c:e1:13 < f8:1e:df:e5:84:3a, IPv4.
        assert_eq!(first.timestamp, Timestamp(1_278_472_579_466_743_000));
        assert_eq!(first.link, LinkType::Ethernet);
        assert_eq!(first.original_len, 93);
        assert_eq!(first.data.len(), 93);
        assert_eq!(
            first.data[..16],
            [
                0x00, 0x1f, 0xf3, 0x3c, 0xe1, 0x13, 0xf8, 0x1e, 0xdf, 0xe5, 0x84, 0x3a, 0x08, 0x00,
                0x45, 0x00
            ]
        );
        assert_eq!(first.data[92], 0x92);
        let rest: Vec<Record> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(rest.len(), 178);
        let last = rest.last().unwrap();
        assert_eq!(last.timestamp, Timestamp(1_278_472_582_723_492_000));
        assert_eq!(last.data.len(), 144);
        let bytes: usize = rest.iter().map(|r| r.data.len()).sum::<usize>() + 93;
        assert_eq!(bytes, 69_000);
    }

    #[test]
    fn reads_zeek_captures() {
        for (name, count, bytes, first_ts, last_ts) in [
            (
                "zeek-wikipedia.pcap",
                136,
                25_260,
                1_300_475_167_096_535_000,
                1_300_475_173_475_401_000,
            ),
            (
                "zeek-workshop_2011_browse.pcap",
                121,
                17_949,
                1_320_329_757_458_867_000,
                1_320_329_772_933_040_000,
            ),
        ] {
            let records = read_all(&data(name)).unwrap();
            assert_eq!(records.len(), count, "{name}");
            let total: usize = records.iter().map(|r| r.data.len()).sum();
            assert_eq!(total, bytes, "{name}");
            assert_eq!(records[0].timestamp, Timestamp(first_ts), "{name}");
            assert_eq!(records[count - 1].timestamp, Timestamp(last_ts), "{name}");
            assert!(records
                .iter()
                .all(|r| r.original_len as usize == r.data.len()));
        }
    }

    #[test]
    fn all_four_classic_variants_read_the_same() {
        let original = data("tcpreplay-test.pcap");
        let expected = read_all(&original).unwrap();
        for (big, nanos) in [(false, true), (true, false), (true, true), (false, false)] {
            let converted = convert(&original, big, nanos);
            assert_eq!(
                read_all(&converted).unwrap(),
                expected,
                "big {big} nanos {nanos}"
            );
        }
        // A nanosecond fraction is taken as is, not scaled.
        let mut ns = convert(&original, false, true);
        ns[28..32].copy_from_slice(&123_456_789u32.to_le_bytes());
        let first = read_all(&ns).unwrap().remove(0);
        assert_eq!(first.timestamp, Timestamp(1_278_472_579_123_456_789));
    }

    #[test]
    fn next_into_reuses_the_callers_buffer() {
        let bytes = data("tcpreplay-test.pcap");
        let expected = read_all(&bytes).unwrap();
        let mut reader = CaptureReader::new(Cursor::new(&bytes)).unwrap();
        let mut buf = Vec::with_capacity(MAX_FRAME_LEN as usize);
        let ptr = buf.as_ptr();
        let mut n = 0;
        while let Some(meta) = reader.next_into(&mut buf).unwrap() {
            assert_eq!(buf.as_ptr(), ptr, "record {n} reallocated the buffer");
            assert_eq!(meta.timestamp, expected[n].timestamp);
            assert_eq!(meta.original_len, expected[n].original_len);
            assert_eq!(buf, expected[n].data);
            n += 1;
        }
        assert_eq!(n, 179);
        assert_eq!(reader.offset(), bytes.len() as u64);
    }

    #[test]
    fn raw_ip_link_types() {
        let mut bytes = data("tcpreplay-test.pcap")[..24].to_vec();
        for (number, link) in [
            (1, LinkType::Ethernet),
            (101, LinkType::RawIp),
            (228, LinkType::RawIp),
            (229, LinkType::RawIp),
        ] {
            bytes[20..24].copy_from_slice(&u32::to_le_bytes(number));
            let reader = CaptureReader::new(Cursor::new(&bytes)).unwrap();
            assert_eq!(reader.link_type(), Some(link));
        }
        bytes[20..24].copy_from_slice(&113u32.to_le_bytes());
        assert!(matches!(
            CaptureReader::new(Cursor::new(&bytes)),
            Err(PcapError::UnsupportedLinkType(113))
        ));
    }

    #[test]
    fn bad_magic_and_empty_file() {
        let mut bytes = data("tcpreplay-test.pcap");
        bytes[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert!(matches!(
            CaptureReader::new(Cursor::new(&bytes)),
            Err(PcapError::BadMagic(0xdead_beef))
        ));
        assert!(matches!(
            CaptureReader::new(Cursor::new(b"")),
            Err(PcapError::Malformed { offset: 0, .. })
        ));
    }

    #[test]
    fn truncation_is_reported_with_the_record_offset() {
        let bytes = data("tcpreplay-test.pcap");
        // The second record starts after the header (24), first record header (16) and 93 bytes.
        let second = 24 + 16 + 93;
        // Cut at a record boundary: a clean end after one record.
        assert_eq!(read_all(&bytes[..second]).unwrap().len(), 1);
        // Cut inside the second record's data or header: an error at its start.
        for cut in [second + 20, second + 16, second + 3] {
            let mut reader = CaptureReader::new(Cursor::new(&bytes[..cut])).unwrap();
            assert!(reader.next_record().unwrap().is_some());
            match reader.next_record() {
                Err(PcapError::Malformed { offset, .. }) => assert_eq!(offset, second as u64),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Cut inside the file header.
        assert!(matches!(
            CaptureReader::new(Cursor::new(&bytes[..10])),
            Err(PcapError::Malformed { offset: 0, .. })
        ));
        // Cut in the last record: the iterator yields 178 records, then the error, then stops.
        let items: Vec<_> = CaptureReader::new(Cursor::new(&bytes[..bytes.len() - 1]))
            .unwrap()
            .collect();
        assert_eq!(items.len(), 179);
        assert!(matches!(
            items[178],
            Err(PcapError::Malformed { offset: 71_728, .. })
        ));
    }

    #[test]
    fn oversized_record_is_rejected() {
        let mut bytes = data("tcpreplay-test.pcap");
        bytes[32..36].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
        let mut reader = CaptureReader::new(Cursor::new(&bytes)).unwrap();
        assert!(matches!(
            reader.next_record(),
            Err(PcapError::Malformed { offset: 24, .. })
        ));
    }

    #[test]
    fn open_names_a_missing_file() {
        let err = CaptureReader::open("no-such-capture.pcap").err().unwrap();
        assert!(matches!(err, PcapError::Open { .. }));
        assert!(err.to_string().contains("no-such-capture.pcap"), "{err}");
    }

    #[test]
    fn writer_header_and_record_bytes() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::RawIp, 4).unwrap();
        w.write(Timestamp(1_700_000_000_123_456_789), &[1, 2, 3, 4, 5, 6])
            .unwrap();
        let out = w.finish().unwrap();
        let mut expected = vec![
            0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 101, 0, 0, 0,
        ];
        expected.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        expected.extend_from_slice(&123_456_789u32.to_le_bytes());
        expected.extend_from_slice(&[4, 0, 0, 0, 6, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(out, expected);
        let records = read_all(&out).unwrap();
        assert_eq!(
            records,
            [Record {
                timestamp: Timestamp(1_700_000_000_123_456_789),
                link: LinkType::RawIp,
                original_len: 6,
                data: vec![1, 2, 3, 4],
            }]
        );
    }

    #[test]
    fn writer_rejects_timestamps_past_2106() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 0).unwrap();
        assert!(matches!(
            w.write(Timestamp::MAX, &[0; 14]),
            Err(PcapError::Io(_))
        ));
    }

    fn round_trip(records: &[Record]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), records[0].link, 0).unwrap();
        for r in records {
            w.write(r.timestamp, &r.data).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn real_capture_round_trips() {
        for name in ["tcpreplay-test.pcap", "zeek-wikipedia.pcap"] {
            let mut records = read_all(&data(name)).unwrap();
            // Give one record a timestamp only nanosecond resolution can hold.
            records[0].timestamp = Timestamp(records[0].timestamp.0 + 789);
            let written = round_trip(&records);
            assert_eq!(read_all(&written).unwrap(), records, "{name}");
        }
    }

    #[test]
    fn written_capture_opens_in_tshark() {
        if !tool_or_skip(
            "tshark",
            "written_capture_opens_in_tshark",
            "opening the writer's output in another reader",
        ) {
            return;
        }
        let records = read_all(&data("tcpreplay-test.pcap")).unwrap();
        let dir = temp_dir("tshark");
        let path = dir.join("out.pcap");
        std::fs::write(&path, round_trip(&records)).unwrap();
        let out = Command::new("tshark")
            .args(["-r"])
            .arg(&path)
            .args(["-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len"])
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 179);
        let first: Vec<&str> = lines[0].split('\t').collect();
        assert_eq!(first[0], "1278472579.466743000");
        assert_eq!(first[1], "93");
    }

    #[test]
    fn editcap_pcapng_matches_classic() {
        if !tool_or_skip(
            "editcap",
            "editcap_pcapng_matches_classic",
            "reading pcapng made by another writer",
        ) {
            return;
        }
        let dir = temp_dir("editcap");
        for name in ["tcpreplay-test.pcap", "zeek-workshop_2011_browse.pcap"] {
            let out = dir.join("out.pcapng");
            let status = Command::new("editcap")
                .args(["-F", "pcapng"])
                .arg(data_path(name))
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success(), "editcap failed on {name}");
            let ng = std::fs::read(&out).unwrap();
            assert_eq!(ng[..4], [0x0a, 0x0d, 0x0d, 0x0a], "{name}");
            assert_eq!(
                read_all(&ng).unwrap(),
                read_all(&data(name)).unwrap(),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
