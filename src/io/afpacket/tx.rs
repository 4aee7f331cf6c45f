//! Transmission out of one interface: a TPACKET_V2 ring the kernel reads the frames from
//! (zero-copy), or a plain socket the frames are copied into with `sendmmsg`. Both are bound with
//! protocol 0, so they never receive, and bypass the qdisc unless they send aggregates (see
//! `transmit_socket`).
//!
//! Why two: ring frames reach the kernel as pages of the ring, and a veth that carries them into
//! another network namespace must first copy those pages (`skb_copy_ubufs`); a copied frame is an
//! ordinary linear buffer that crosses as it is. Which is cheaper depends on the link.
#![allow(unsafe_code)]

use super::vnet::{VnetHdr, VNET_HDR_LEN};
use super::{
    bind, block_for, raw_socket, set_vnet_hdr, status, AfPacketError, TpacketReq, AGGREGATE_MAX,
    AGGREGATE_SLOT, TPACKET2_HDR,
};
use crate::io::sys::{self, Mmap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;

/// How frames leave: the `tx_mode` key of `[dataplane]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxMode {
    /// A PACKET_TX_RING the kernel sends from without copying in user space.
    Ring,
    /// Frames copied into a per-worker buffer and handed over with one `sendmmsg` per batch.
    /// The default: over veth it forwarded TCP faster at the same packet rate (BENCHMARKS.md).
    #[default]
    Copy,
}

/// Why a frame was not queued for transmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Every slot is still waiting for the kernel.
    RingFull,
    /// Larger than a slot.
    TooLarge,
}

/// A TPACKET_V2 transmit ring on one interface.
pub struct TxRing {
    map: Mmap,
    fd: OwnedFd,
    frame_size: usize,
    frames_per_block: usize,
    block_size: usize,
    count: usize,
    next: usize,
    pending: usize,
    /// Each frame starts with its `virtio_net_hdr` (PACKET_VNET_HDR).
    vnet: bool,
}

/// How often a push waits for a slot to come back before counting the ring as full.
const TX_RETRIES: u32 = 8;

/// Frame data starts this far into a transmit slot: `TPACKET2_HDRLEN - sizeof(sockaddr_ll)`.
const TX_DATA: usize = TPACKET2_HDR;

impl TxRing {
    /// `frames` slots of `frame_size` bytes; with `vnet`, slots that hold an aggregate, as many as
    /// fit in `frames × frame_size` bytes (at least 8).
    pub fn open(
        interface: &str,
        frames: u32,
        frame_size: u32,
        vnet: bool,
    ) -> Result<TxRing, AfPacketError> {
        let (fd, ifindex) = transmit_socket(interface, vnet)?;
        let step = |step: &'static str| {
            move |source| AfPacketError::Socket {
                interface: interface.to_string(),
                step,
                source,
            }
        };
        let version = libc::tpacket_versions::TPACKET_V2 as i32;
        // SAFETY: PACKET_VERSION reads an int during the call.
        unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, &version) }
            .map_err(step("PACKET_VERSION"))?;
        let one: i32 = 1;
        // A frame the kernel cannot send (too large for the MTU) is discarded instead of
        // stalling the ring.
        // SAFETY: PACKET_LOSS reads an int during the call.
        unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_LOSS, &one) }
            .map_err(step("PACKET_LOSS"))?;
        let mut frame_size = frame_size.max(128).next_multiple_of(16) as usize;
        let mut frames = frames as usize;
        let slot = AGGREGATE_SLOT as usize;
        if vnet && frame_size < slot {
            frames = (frames * frame_size / slot).max(8);
            frame_size = slot;
        }
        let block_size = block_for(frame_size);
        let frames_per_block = block_size / frame_size;
        let blocks = frames.div_ceil(frames_per_block).max(1);
        let count = blocks * frames_per_block;
        let req = TpacketReq {
            block_size: block_size as u32,
            block_nr: blocks as u32,
            frame_size: frame_size as u32,
            frame_nr: count as u32,
        };
        let bytes = block_size * blocks;
        let ring_err = |source| AfPacketError::Ring {
            interface: interface.to_string(),
            what: "transmit",
            bytes,
            source,
        };
        // SAFETY: PACKET_TX_RING reads a `tpacket_req` (no pointers); the ring it makes is
        // kernel memory, reached only through the mapping below.
        unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_TX_RING, &req) }
            .map_err(ring_err)?;
        let map = Mmap::shared(fd.as_fd(), bytes).map_err(ring_err)?;
        // Protocol 0: this socket sends only, it is never handed a received frame.
        bind(fd.as_fd(), ifindex, 0).map_err(step("bind"))?;
        Ok(TxRing {
            map,
            fd,
            frame_size,
            frames_per_block,
            block_size,
            count,
            next: 0,
            pending: 0,
            vnet,
        })
    }

    /// Largest frame a slot holds.
    pub fn capacity(&self) -> usize {
        self.frame_size - TX_DATA - if self.vnet { VNET_HDR_LEN } else { 0 }
    }

    /// Queues one frame made of `head` followed by `tail` (so a VLAN tag can be put back
    /// without an extra copy), with `hdr` in front on a socket that takes one. Sent at the next
    /// [`TxRing::flush`].
    pub fn push(&mut self, hdr: &VnetHdr, head: &[u8], tail: &[u8]) -> Result<(), TxError> {
        let len = head.len() + tail.len();
        if len > self.capacity() {
            return Err(TxError::TooLarge);
        }
        let base = self.map.as_ptr();
        let off = (self.next / self.frames_per_block) * self.block_size
            + (self.next % self.frames_per_block) * self.frame_size;
        // SAFETY: `off` is the start of slot `next` < `count`, inside the mapping, 16-aligned.
        let st = unsafe { status(base, off) };
        let free = |s: u32| s == TP_STATUS_AVAILABLE || s == TP_STATUS_WRONG_FORMAT;
        let mut s = st.load(Ordering::Acquire);
        // A full ring usually means our own queued frames: hand them over (the kernel sends them
        // before `send` returns, which frees their slots) and look again, a bounded few times.
        let mut tries = 0;
        while !free(s) && tries < TX_RETRIES {
            let _ = self.flush();
            std::hint::spin_loop();
            s = st.load(Ordering::Acquire);
            tries += 1;
        }
        if !free(s) {
            return Err(TxError::RingFull);
        }
        let vnet = if self.vnet { VNET_HDR_LEN } else { 0 };
        let h = hdr.to_bytes();
        // SAFETY: the slot is ours (AVAILABLE); `TX_DATA + vnet + len <= frame_size` was checked
        // via `capacity`, so the writes stay inside the slot.
        unsafe {
            let data = base.add(off + TX_DATA);
            std::ptr::copy_nonoverlapping(h.as_ptr(), data, vnet);
            let data = data.add(vnet);
            std::ptr::copy_nonoverlapping(head.as_ptr(), data, head.len());
            std::ptr::copy_nonoverlapping(tail.as_ptr(), data.add(head.len()), tail.len());
            // tp_len counts the header too: the kernel takes it off the front.
            base.add(off + 4)
                .cast::<u32>()
                .write_unaligned((vnet + len) as u32);
        }
        st.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.next = (self.next + 1) % self.count;
        self.pending += 1;
        Ok(())
    }

    /// Asks the kernel to send every queued frame.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending = 0;
        // SAFETY: a zero-length send on our own socket: the kernel walks the TX ring only.
        let ret = unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
            ) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Opens the socket both transmit paths share: bound to `interface` with protocol 0 (it never
/// receives); past the qdisc, or, with `vnet`, through it, and every frame given to it starts
/// with its `virtio_net_hdr`.
///
/// Why not past the qdisc with `vnet`: the bypass (`dev_direct_xmit`) drops any frame the device
/// cannot take as it is, and an aggregate sent to a device without TSO must be segmented in
/// software first, which only the normal path (`dev_queue_xmit`) does. On veth, whose qdisc is
/// `noqueue`, that path costs little more.
fn transmit_socket(interface: &str, vnet: bool) -> Result<(OwnedFd, u32), AfPacketError> {
    let ifindex = sys::interface_index(interface)
        .ok_or_else(|| AfPacketError::NoInterface(interface.to_string()))?;
    let fd = raw_socket(interface)?;
    let one: i32 = 1;
    if !vnet {
        // SAFETY: PACKET_QDISC_BYPASS reads an int during the call.
        unsafe {
            sys::setsockopt(
                fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one,
            )
        }
        .map_err(|source| AfPacketError::Socket {
            interface: interface.to_string(),
            step: "PACKET_QDISC_BYPASS",
            source,
        })?;
    }
    if vnet {
        set_vnet_hdr(fd.as_fd()).map_err(|source| AfPacketError::Socket {
            interface: interface.to_string(),
            step: "PACKET_VNET_HDR",
            source,
        })?;
    }
    Ok((fd, ifindex))
}

/// What a flush could not hand to the kernel. Copied frames that are not sent are gone; ring
/// frames stay queued for the next flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Frames dropped because the socket's send buffer was full (EAGAIN, ENOBUFS).
    pub full: usize,
    /// Frames the kernel refused (e.g. longer than the MTU), or a failed ring flush.
    pub refused: usize,
    /// The errno of the last refusal.
    pub errno: i32,
}

impl Unsent {
    fn is_empty(&self) -> bool {
        self.full == 0 && self.refused == 0
    }
}

/// `sendmmsg` takes at most this many messages per call (the kernel's UIO_MAXIOV).
const MAX_BATCH: usize = 1024;

/// A transmit socket frames are copied into: each frame is copied once into a preallocated
/// buffer here, packed one after the other, and once more into a kernel buffer; one `sendmmsg`
/// hands over every queued frame.
pub struct TxCopy {
    fd: OwnedFd,
    /// The queued frames, back to back: frame `i` is `buf[starts[i]..][..iov[i].iov_len]`.
    buf: Box<[u8]>,
    used: usize,
    starts: Box<[usize]>,
    /// Largest message one push takes (a frame, and its header with `vnet`).
    max_message: usize,
    vnet: bool,
    /// `iov[i]` is frame `i` and `msgs[i]` carries `iov[i]` alone (the socket is bound, so no
    /// address is given). Their pointers are set from `buf` and `iov` right before each
    /// `sendmmsg`, so none outlives the borrow it was taken from.
    iov: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    pending: usize,
    unsent: Unsent,
}

// SAFETY: the raw pointers in `iov` and `msgs` point only into `buf` and `iov`, heap allocations
// owned by this value that move with it, and are set afresh before every use; nothing is shared.
unsafe impl Send for TxCopy {}

impl TxCopy {
    /// Room for `frames` frames (at most 1024, what one `sendmmsg` takes) of `frame_size` bytes,
    /// or, with `vnet`, for aggregates of up to 64 KiB with their `virtio_net_hdr` (the buffer
    /// is then at least two of them: frames are packed, so small ones still fill it).
    pub fn open(
        interface: &str,
        frames: u32,
        frame_size: u32,
        vnet: bool,
    ) -> Result<TxCopy, AfPacketError> {
        let (fd, ifindex) = transmit_socket(interface, vnet)?;
        bind(fd.as_fd(), ifindex, 0).map_err(|source| AfPacketError::Socket {
            interface: interface.to_string(),
            step: "bind",
            source,
        })?;
        let count = (frames as usize).clamp(1, MAX_BATCH);
        let slot = frame_size.max(128) as usize;
        let max_message = if vnet {
            slot.max(AGGREGATE_MAX) + VNET_HDR_LEN
        } else {
            slot
        };
        let buf = vec![0u8; (count * slot).max(2 * max_message)].into_boxed_slice();
        let iov = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            count
        ]
        .into_boxed_slice();
        // SAFETY: msghdr and mmsghdr are plain C structs for which all-zero is valid (null
        // pointers, zero lengths); the pointers are filled in right before each send.
        let zero: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let msgs = vec![zero; count].into_boxed_slice();
        Ok(TxCopy {
            fd,
            buf,
            used: 0,
            starts: vec![0; count].into_boxed_slice(),
            max_message,
            vnet,
            iov,
            msgs,
            pending: 0,
            unsent: Unsent::default(),
        })
    }

    /// Largest frame one push takes.
    pub fn capacity(&self) -> usize {
        self.max_message - if self.vnet { VNET_HDR_LEN } else { 0 }
    }

    /// Copies one frame (`hdr` on a socket that takes one, `head`, then `tail`) in after the
    /// queued ones; sent at the next [`TxCopy::flush`], or now if the buffer is full.
    pub fn push(&mut self, hdr: &VnetHdr, head: &[u8], tail: &[u8]) -> Result<(), TxError> {
        let vnet = if self.vnet { VNET_HDR_LEN } else { 0 };
        let len = vnet + head.len() + tail.len();
        if len > self.max_message {
            return Err(TxError::TooLarge);
        }
        if self.pending == self.iov.len() || self.used + len > self.buf.len() {
            self.send_pending();
        }
        // `used + len <= buf.len()` now: an empty buffer holds `2 × max_message`.
        let start = self.used;
        let dst = &mut self.buf[start..start + len];
        dst[..vnet].copy_from_slice(&hdr.to_bytes()[..vnet]);
        dst[vnet..vnet + head.len()].copy_from_slice(head);
        dst[vnet + head.len()..].copy_from_slice(tail);
        self.starts[self.pending] = start;
        self.iov[self.pending].iov_len = len;
        self.used += len;
        self.pending += 1;
        Ok(())
    }

    /// Sends every queued frame; reports what was lost since the last flush.
    pub fn flush(&mut self) -> Result<(), Unsent> {
        self.send_pending();
        let unsent = std::mem::take(&mut self.unsent);
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(unsent)
        }
    }

    fn send_pending(&mut self) {
        // In bounds below: `i < pending <= count`; frame `i` lies inside `buf` from `starts[i]`,
        // and `iov` has `count` entries. `iov` is written before its pointer is taken.
        let base = self.buf.as_mut_ptr();
        for (v, start) in self.iov[..self.pending].iter_mut().zip(&self.starts[..]) {
            v.iov_base = base.wrapping_add(*start).cast();
        }
        let iov = self.iov.as_mut_ptr();
        for (i, m) in self.msgs[..self.pending].iter_mut().enumerate() {
            m.msg_hdr.msg_iov = iov.wrapping_add(i);
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0;
        let mut interrupted = 0;
        while done < self.pending {
            let left = self.pending - done;
            // SAFETY: `msgs[done..pending]` are initialised headers whose single iovec points at
            // `iov_len` written bytes inside `buf`; all of it is owned by
            // `self`, borrowed mutably for the call, and the kernel only reads it (and writes
            // `msg_len`).
            let ret = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.msgs[done..].as_mut_ptr(),
                    left as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if ret > 0 {
                // A short count means the next frame failed; the next call reports why.
                done += ret as usize;
                continue;
            }
            if ret == 0 {
                self.unsent.full += left;
                break;
            }
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match errno {
                libc::EINTR if interrupted < 4 => interrupted += 1,
                libc::EAGAIN | libc::ENOBUFS => {
                    self.unsent.full += left;
                    break;
                }
                _ => {
                    // This frame alone is at fault (too long, malformed): skip it.
                    self.unsent.refused += 1;
                    self.unsent.errno = errno;
                    done += 1;
                }
            }
        }
        self.pending = 0;
        self.used = 0;
    }
}

/// The transmit path chosen by [`TxMode`].
pub enum Transmitter {
    Ring(TxRing),
    Copy(TxCopy),
}

impl Transmitter {
    /// `frames` slots of `frame_size` bytes (ring slots include a 32-byte header); with `vnet`,
    /// room for aggregates and a `virtio_net_hdr` before every frame (see each mode's `open`).
    pub fn open(
        interface: &str,
        mode: TxMode,
        frames: u32,
        frame_size: u32,
        vnet: bool,
    ) -> Result<Transmitter, AfPacketError> {
        Ok(match mode {
            TxMode::Ring => Transmitter::Ring(TxRing::open(interface, frames, frame_size, vnet)?),
            TxMode::Copy => Transmitter::Copy(TxCopy::open(interface, frames, frame_size, vnet)?),
        })
    }

    /// Largest frame one push takes.
    pub fn capacity(&self) -> usize {
        match self {
            Transmitter::Ring(t) => t.capacity(),
            Transmitter::Copy(t) => t.capacity(),
        }
    }

    /// Queues one frame; `hdr` goes in front of it when the socket takes `virtio_net_hdr`s
    /// ([`VnetHdr::PLAIN`] for a frame that is complete as it is).
    #[inline]
    pub fn push(&mut self, hdr: &VnetHdr, head: &[u8], tail: &[u8]) -> Result<(), TxError> {
        match self {
            Transmitter::Ring(t) => t.push(hdr, head, tail),
            Transmitter::Copy(t) => t.push(hdr, head, tail),
        }
    }

    pub fn flush(&mut self) -> Result<(), Unsent> {
        match self {
            Transmitter::Ring(t) => t.flush().map_err(|e| Unsent {
                full: 0,
                refused: 1,
                errno: e.raw_os_error().unwrap_or(0),
            }),
            Transmitter::Copy(t) => t.flush(),
        }
    }
}
