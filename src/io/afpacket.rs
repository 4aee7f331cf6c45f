//! AF_PACKET sockets with PACKET_MMAP rings: a receive ring (TPACKET_V2 frames or TPACKET_V3
//! blocks) that joins a fanout group, and a transmit path (`tx`: a TPACKET_V2 ring, or copies
//! sent with `sendmmsg`).
//!
//! The two directions use separate sockets on purpose: the transmit socket is bound with
//! protocol 0, so it never receives anything, and the receive socket joins its fanout group with
//! PACKET_FANOUT_FLAG_IGNORE_OUTGOING; frames this process sends can never come back to it.
//! Transmission bypasses the qdisc (PACKET_QDISC_BYPASS): an inline gateway forwards what it was
//! given and has no use for local queueing disciplines (except with aggregates: see `tx`).
//!
//! Slot ownership follows the kernel's status word: a slot (or V3 block) belongs to user space
//! while its status has TP_STATUS_USER (receive) or TP_STATUS_AVAILABLE (transmit), and is
//! handed back with a release store.
#![allow(unsafe_code)]

mod tx;
pub mod vnet;

pub use tx::{Transmitter, TxCopy, TxError, TxMode, TxRing, Unsent};
pub use vnet::{VnetHdr, VNET_HDR_LEN};

use super::bpf::{self, Leg};
use super::sys::{self, Mmap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const PACKET_OUTGOING: u8 = 4;

/// `sizeof(struct tpacket2_hdr)` and `sizeof(struct tpacket3_hdr)`, both already 16-aligned.
const TPACKET2_HDR: usize = 32;
const TPACKET3_HDR: usize = 48;
/// Where `sll_pkttype` sits in the `sockaddr_ll` that follows each header.
const SLL_PKTTYPE: usize = 10;

/// Which receive ring layout to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum TpacketVersion {
    /// One frame per slot, handed over one by one: lowest latency.
    #[serde(rename = "v2")]
    V2,
    /// Variable-size frames packed in blocks handed over when full or when the block timeout
    /// expires: fewer wake-ups, but the timeout adds latency at low rates.
    #[serde(rename = "v3")]
    V3,
}

/// Receive ring geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxConfig {
    pub version: TpacketVersion,
    /// V2: slot size (header + frame); must hold the largest frame plus 64 bytes of header.
    pub frame_size: u32,
    /// V2: number of slots.
    pub frames: u32,
    /// V3: block size (a multiple of the page size) and count.
    pub block_size: u32,
    pub blocks: u32,
    /// V3: a partly filled block is handed over after this many milliseconds.
    pub block_timeout_ms: u32,
    /// PACKET_VNET_HDR: every frame comes with its `virtio_net_hdr` (aggregates are received
    /// whole, with their segment size, instead of cut at the slot's end).
    pub vnet: bool,
}

/// The largest frame a GSO or GRO aggregate makes: an IP packet of 65,535 bytes behind an
/// Ethernet header and two VLAN tags.
pub const AGGREGATE_MAX: usize = 65_535 + 14 + 8;

/// A V2 slot big enough for [`AGGREGATE_MAX`] behind the ring header, the address, the
/// `virtio_net_hdr` and the kernel's alignment (`tpacket_rcv` puts the MAC header at 76).
pub const AGGREGATE_SLOT: u32 = (AGGREGATE_MAX + 128).next_multiple_of(16) as u32;

/// Blocks of slots this large hold several slots each, so a ring of aggregates does not waste
/// half of every power-of-two block the kernel allocates.
const LARGE_SLOT: usize = 16 * 1024;
const LARGE_BLOCK: usize = 1 << 20;

/// At most this many aggregate-sized V2 slots (about 69 MB of ring).
const MAX_AGGREGATE_SLOTS: usize = 1024;

/// The slot size and count of a V2 ring. With [`RxConfig::vnet`] a slot must hold a whole
/// aggregate: the slots grow to [`AGGREGATE_SLOT`] and there are `frames` of them, 64 to 1024.
/// Fewer than about a thousand overflowed under a stream of ACKs in the lab (the sender's ACKs
/// for a TCP upload arrive one per slot, while the upload itself comes as aggregates).
fn v2_geometry(config: &RxConfig) -> (usize, usize) {
    let frame_size = config.frame_size.max(128).next_multiple_of(16) as usize;
    let frames = config.frames as usize;
    if !config.vnet || frame_size >= AGGREGATE_SLOT as usize {
        return (frame_size, frames);
    }
    let slot = AGGREGATE_SLOT as usize;
    (slot, frames.clamp(64, MAX_AGGREGATE_SLOTS))
}

/// The block size for slots of `frame_size` bytes: a power of two of pages (what the kernel
/// allocates anyway), at least 1 MiB for large slots.
fn block_for(frame_size: usize) -> usize {
    let block = frame_size.max(page_size()).next_power_of_two();
    if frame_size > LARGE_SLOT {
        block.max(LARGE_BLOCK)
    } else {
        block
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    #[error("interface {0} not found (`ip link` lists the interfaces of this network namespace)")]
    NoInterface(String),
    #[error("interface {interface}: raw sockets need root or CAP_NET_RAW ({source})")]
    Permission {
        interface: String,
        source: io::Error,
    },
    #[error("interface {interface}: the kernel refused a {bytes}-byte {what} ring ({source}); make the rings in [dataplane] smaller")]
    Ring {
        interface: String,
        what: &'static str,
        bytes: usize,
        source: io::Error,
    },
    #[error("interface {interface}: {step}: {source}")]
    Socket {
        interface: String,
        step: &'static str,
        source: io::Error,
    },
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct PacketMreq {
    ifindex: i32,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SockFprog {
    len: u16,
    filter: *const bpf::Insn,
}

fn page_size() -> usize {
    4096
}

fn raw_socket(interface: &str) -> Result<OwnedFd, AfPacketError> {
    // Protocol 0: the socket receives nothing until it is bound with a protocol, so no frame of
    // another interface can slip into the ring before the bind.
    let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
    fd.map_err(|source| match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AfPacketError::Permission {
            interface: interface.to_string(),
            source,
        },
        _ => AfPacketError::Socket {
            interface: interface.to_string(),
            step: "socket",
            source,
        },
    })
}

/// PACKET_VNET_HDR: frames come (and must be given) with a `virtio_net_hdr` in front. Set before
/// the ring exists; the kernel refuses it afterwards.
fn set_vnet_hdr(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: i32 = 1;
    // SAFETY: PACKET_VNET_HDR reads an int during the call.
    unsafe { sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one) }
}

/// The `virtio_net_hdr` the kernel wrote right before the frame at `base + data`.
///
/// # Safety
/// `base + data - VNET_HDR_LEN .. base + data` must lie inside a live mapping the kernel is not
/// writing (a slot or block user space owns).
unsafe fn vnet_before(base: *const u8, data: usize) -> VnetHdr {
    let mut b = [0u8; VNET_HDR_LEN];
    // SAFETY: guaranteed by the caller; `b` is a distinct local array of the length copied.
    unsafe {
        std::ptr::copy_nonoverlapping(base.add(data - VNET_HDR_LEN), b.as_mut_ptr(), VNET_HDR_LEN)
    };
    VnetHdr::parse(&b)
}

fn bind(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
    let ret = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    sys::cvt(ret).map(|_| ())
}

/// Reads a `u32` (or `u16`) at `base + off` of a ring slot.
///
/// # Safety
/// `base + off .. + size` must lie inside a live mapping.
unsafe fn rd32(base: *const u8, off: usize) -> u32 {
    // SAFETY: guaranteed by the caller.
    unsafe { base.add(off).cast::<u32>().read_unaligned() }
}

/// # Safety
/// As [`rd32`].
unsafe fn rd16(base: *const u8, off: usize) -> u16 {
    // SAFETY: guaranteed by the caller.
    unsafe { base.add(off).cast::<u16>().read_unaligned() }
}

/// The status word at `base + off`, viewed as the atomic it is shared as.
///
/// # Safety
/// `base + off` must be 4-aligned inside a live mapping for the lifetime `'a`.
unsafe fn status<'a>(base: *mut u8, off: usize) -> &'a AtomicU32 {
    // SAFETY: guaranteed by the caller; the kernel accesses the word with its own barriers.
    unsafe { AtomicU32::from_ptr(base.add(off).cast::<u32>()) }
}

/// What the ring says about a received frame besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// A VLAN tag the kernel took out of the frame: (TPID, TCI). Forwarding must put it back.
    pub vlan: Option<(u16, u16)>,
    /// The frame was longer than the slot (an offload merged frames, or the MTU is larger than
    /// the ring was sized for).
    pub truncated: bool,
    /// The checksum was left for hardware to fill in (the sender's checksum offload).
    pub csum_not_ready: bool,
    /// The frame's `virtio_net_hdr`, on a ring opened with [`RxConfig::vnet`].
    pub vnet: Option<VnetHdr>,
}

enum RxLayout {
    V2 {
        frame_size: usize,
        frames_per_block: usize,
        block_size: usize,
        count: usize,
        next: usize,
    },
    V3 {
        block_size: usize,
        blocks: usize,
        current: usize,
        /// Packets of the current block already consumed, and the offset of the next one.
        done: u32,
        offset: usize,
    },
}

/// A receive ring on one interface.
pub struct RxRing {
    layout: RxLayout,
    map: Mmap,
    fd: OwnedFd,
    /// Each frame is preceded by its `virtio_net_hdr`.
    vnet: bool,
}

impl RxRing {
    /// Opens a promiscuous receive ring on `interface`. The socket does not receive until
    /// [`RxRing::join_fanout`] or until bound; it is bound here, after the ring exists.
    pub fn open(interface: &str, config: &RxConfig) -> Result<RxRing, AfPacketError> {
        let ifindex = sys::interface_index(interface)
            .ok_or_else(|| AfPacketError::NoInterface(interface.to_string()))?;
        let fd = raw_socket(interface)?;
        let step = |step: &'static str| {
            move |source| AfPacketError::Socket {
                interface: interface.to_string(),
                step,
                source,
            }
        };
        let ring_err = |bytes: usize| {
            move |source| AfPacketError::Ring {
                interface: interface.to_string(),
                what: "receive",
                bytes,
                source,
            }
        };
        let (layout, bytes) = match config.version {
            TpacketVersion::V2 => {
                let (frame_size, frames) = v2_geometry(config);
                let block_size = block_for(frame_size);
                let frames_per_block = block_size / frame_size;
                let blocks = frames.div_ceil(frames_per_block).max(1);
                let count = blocks * frames_per_block;
                let version = libc::tpacket_versions::TPACKET_V2 as i32;
                // SAFETY: PACKET_VERSION reads an int during the call.
                unsafe {
                    sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, &version)
                }
                .map_err(step("PACKET_VERSION"))?;
                if config.vnet {
                    set_vnet_hdr(fd.as_fd()).map_err(step("PACKET_VNET_HDR"))?;
                }
                let req = TpacketReq {
                    block_size: block_size as u32,
                    block_nr: blocks as u32,
                    frame_size: frame_size as u32,
                    frame_nr: count as u32,
                };
                // SAFETY: PACKET_RX_RING reads a `tpacket_req` (no pointers); the ring it makes
                // is kernel memory, reached only through the mapping below.
                unsafe {
                    sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
                }
                .map_err(ring_err(block_size * blocks))?;
                (
                    RxLayout::V2 {
                        frame_size,
                        frames_per_block,
                        block_size,
                        count,
                        next: 0,
                    },
                    block_size * blocks,
                )
            }
            TpacketVersion::V3 => {
                let block_size = (config.block_size as usize)
                    .max(page_size())
                    .next_power_of_two();
                let blocks = config.blocks.max(2) as usize;
                let frame_size = 2048usize.min(block_size);
                let version = libc::tpacket_versions::TPACKET_V3 as i32;
                // SAFETY: PACKET_VERSION reads an int during the call.
                unsafe {
                    sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, &version)
                }
                .map_err(step("PACKET_VERSION"))?;
                if config.vnet {
                    set_vnet_hdr(fd.as_fd()).map_err(step("PACKET_VNET_HDR"))?;
                }
                let req = TpacketReq3 {
                    block_size: block_size as u32,
                    block_nr: blocks as u32,
                    frame_size: frame_size as u32,
                    frame_nr: (block_size / frame_size * blocks) as u32,
                    retire_blk_tov: config.block_timeout_ms.max(1),
                    sizeof_priv: 0,
                    feature_req_word: 0,
                };
                // SAFETY: with TPACKET_V3, PACKET_RX_RING reads a `tpacket_req3` (no pointers);
                // the ring is kernel memory, reached only through the mapping below.
                unsafe {
                    sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
                }
                .map_err(ring_err(block_size * blocks))?;
                (
                    RxLayout::V3 {
                        block_size,
                        blocks,
                        current: 0,
                        done: 0,
                        offset: 0,
                    },
                    block_size * blocks,
                )
            }
        };
        let map = Mmap::shared(fd.as_fd(), bytes).map_err(ring_err(bytes))?;
        bind(fd.as_fd(), ifindex, libc::ETH_P_ALL as u16).map_err(step("bind"))?;
        let mreq = PacketMreq {
            ifindex: ifindex as i32,
            kind: libc::PACKET_MR_PROMISC as u16,
            alen: 0,
            address: [0; 8],
        };
        // SAFETY: PACKET_ADD_MEMBERSHIP reads a `packet_mreq` (no pointers) during the call.
        unsafe {
            sys::setsockopt(
                fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
        }
        .map_err(step("promiscuous mode"))?;
        Ok(RxRing {
            layout,
            map,
            fd,
            vnet: config.vnet,
        })
    }

    /// Joins fanout group `group` of this interface, steered by the subscriber program of
    /// `leg`. Members are numbered in the order they join, which is the worker index.
    pub fn join_fanout(&self, group: u16, leg: Leg) -> io::Result<()> {
        let arg: u32 = u32::from(group)
            | (libc::PACKET_FANOUT_CBPF | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16;
        // SAFETY: PACKET_FANOUT reads an int during the call.
        unsafe { sys::setsockopt(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)? };
        let program = bpf::fanout_program(leg);
        let prog = SockFprog {
            len: program.len() as u16,
            filter: program.as_ptr(),
        };
        // SAFETY: PACKET_FANOUT_DATA reads a `sock_fprog` and copies the `len` instructions it
        // points to during the call; `program` holds exactly those and outlives the call.
        unsafe {
            sys::setsockopt(
                self.fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT_DATA,
                &prog,
            )
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Frames received and frames the kernel dropped because this ring was full, since the last
    /// call (the kernel resets them on read).
    pub fn take_statistics(&self) -> io::Result<(u32, u32)> {
        let s = sys::packet_statistics(self.fd.as_fd())?;
        Ok((s.packets, s.drops))
    }

    /// Hands up to `max` received frames to `f`, each released back to the kernel right after;
    /// returns how many were handed over. Frames this host sent are skipped (not counted).
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&mut [u8], RxMeta)) -> usize {
        let base = self.map.as_ptr();
        let len = self.map.len();
        let vnet = self.vnet;
        let mut n = 0;
        match &mut self.layout {
            RxLayout::V2 {
                frame_size,
                frames_per_block,
                block_size,
                count,
                next,
            } => {
                while n < max {
                    let off = (*next / *frames_per_block) * *block_size
                        + (*next % *frames_per_block) * *frame_size;
                    // SAFETY: `off` is the start of slot `next` < `count`, inside the mapping
                    // and 16-aligned.
                    let st = unsafe { status(base, off) };
                    let s = st.load(Ordering::Acquire);
                    if s & TP_STATUS_USER == 0 {
                        break;
                    }
                    // SAFETY: the slot is ours (TP_STATUS_USER); its header fields lie within
                    // the slot, which lies within the mapping.
                    let (flen, snap, mac, tci, tpid, pkttype) = unsafe {
                        (
                            rd32(base, off + 4),
                            rd32(base, off + 8) as usize,
                            usize::from(rd16(base, off + 12)),
                            rd16(base, off + 24),
                            rd16(base, off + 26),
                            *base.add(off + TPACKET2_HDR + SLL_PKTTYPE),
                        )
                    };
                    let room = if vnet { TPACKET2_HDR + VNET_HDR_LEN } else { 0 };
                    if pkttype != PACKET_OUTGOING
                        && mac + snap <= *frame_size
                        && off + mac + snap <= len
                        && mac >= room
                    {
                        // SAFETY: bounds checked just above; the kernel neither reads nor
                        // writes a slot while it is ours, and the mapping is writable.
                        let data =
                            unsafe { std::slice::from_raw_parts_mut(base.add(off + mac), snap) };
                        let mut m = meta(s, flen, snap, tci, tpid);
                        // SAFETY: `mac >= room` puts the header after the slot's own header,
                        // inside our slot.
                        m.vnet = vnet.then(|| unsafe { vnet_before(base, off + mac) });
                        f(data, m);
                        n += 1;
                    }
                    st.store(TP_STATUS_KERNEL, Ordering::Release);
                    *next = (*next + 1) % *count;
                }
            }
            RxLayout::V3 {
                block_size,
                blocks,
                current,
                done,
                offset,
            } => {
                while n < max {
                    let b = *current * *block_size;
                    // SAFETY: block `current` < `blocks` lies inside the mapping; the block
                    // status (tpacket_hdr_v1.block_status) is at offset 8, 4-aligned.
                    let st = unsafe { status(base, b + 8) };
                    if st.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                        break;
                    }
                    // SAFETY: the block is ours; num_pkts and offset_to_first_pkt are inside it.
                    let (num, first) = unsafe { (rd32(base, b + 12), rd32(base, b + 16)) };
                    if *done == 0 {
                        *offset = first as usize;
                    }
                    while *done < num && n < max && *offset + TPACKET3_HDR <= *block_size {
                        let p = b + *offset;
                        // SAFETY: `p` is a packet header inside our block (checked above).
                        let (next_off, snap, flen, s, mac, tci, tpid, pkttype) = unsafe {
                            (
                                rd32(base, p) as usize,
                                rd32(base, p + 12) as usize,
                                rd32(base, p + 16),
                                rd32(base, p + 20),
                                usize::from(rd16(base, p + 24)),
                                rd32(base, p + 32) as u16,
                                rd16(base, p + 36),
                                *base.add(p + TPACKET3_HDR + SLL_PKTTYPE),
                            )
                        };
                        let room = if vnet { TPACKET3_HDR + VNET_HDR_LEN } else { 0 };
                        if pkttype != PACKET_OUTGOING
                            && *offset + mac + snap <= *block_size
                            && mac >= room
                        {
                            // SAFETY: bounds checked just above, inside our block (which
                            // the kernel does not touch while it is ours; writable mapping).
                            let data =
                                unsafe { std::slice::from_raw_parts_mut(base.add(p + mac), snap) };
                            let mut m = meta(s, flen, snap, tci, tpid);
                            // SAFETY: `mac >= room` puts the header after the packet's own
                            // header, inside our block.
                            m.vnet = vnet.then(|| unsafe { vnet_before(base, p + mac) });
                            f(data, m);
                            n += 1;
                        }
                        *done += 1;
                        if next_off == 0 {
                            *done = num;
                        }
                        *offset += next_off;
                    }
                    if *done >= num || *offset + TPACKET3_HDR > *block_size {
                        st.store(TP_STATUS_KERNEL, Ordering::Release);
                        *done = 0;
                        *current = (*current + 1) % *blocks;
                    }
                }
            }
        }
        n
    }
}

fn meta(status: u32, len: u32, snap: usize, tci: u16, tpid: u16) -> RxMeta {
    let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
            tpid
        } else {
            0x8100
        };
        (tpid, tci)
    });
    RxMeta {
        vlan,
        truncated: (len as usize) > snap,
        csum_not_ready: status & TP_STATUS_CSUMNOTREADY != 0,
        vnet: None,
    }
}
