//! One AF_XDP socket bound to one queue of one interface, with a UMEM of its own: half of the
//! chunks receive (they cycle between the fill ring, the rx ring and the caller), half transmit
//! (between a free list, the tx ring and the completion ring). Rings are driven in batches: one
//! index store per batch on each ring, and one `sendto` kick per transmitted batch.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::umem::{mmap_offsets, Desc, Ring, Umem};
use super::{XdpError, XdpMode};
use crate::io::sys;

/// At most this many `sendto` kicks per flush (a ring of 16384 frames, 32 at a time, takes 512).
const TX_KICKS: u32 = 512;

/// Ring and frame geometry of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Entries of each ring, a power of two; the UMEM has twice as many chunks (half for
    /// receiving, half for transmitting).
    pub ring_size: u32,
    /// Bytes per chunk: 2048 or 4096 (a power of two no larger than a page). A received frame
    /// can be up to `frame_size - 256` bytes: the kernel keeps XDP_PACKET_HEADROOM in front.
    pub frame_size: u32,
    pub mode: XdpMode,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ring_size: 2048,
            frame_size: 2048,
            mode: XdpMode::Auto,
        }
    }
}

/// Why a frame was not queued for transmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskTxError {
    /// Every transmit chunk is waiting for the kernel.
    RingFull,
    /// Larger than a chunk.
    TooLarge,
}

/// The socket's counters (`struct xdp_statistics`), cumulative since it was bound.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than an empty fill ring or a full rx ring.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket with its UMEM and rings.
pub struct XskSocket {
    // Declared first so it is closed first: the kernel stops using the rings and the UMEM
    // before they are unmapped.
    fd: OwnedFd,
    rx: Ring<Desc>,
    tx: Ring<Desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    umem: Umem,
    /// Transmit chunks not on the tx ring.
    free_tx: Vec<u64>,
    /// Descriptors written to the tx ring but not yet published.
    tx_queued: u32,
    /// Published transmit chunks the kernel has not completed yet.
    tx_in_flight: u32,
    zero_copy: bool,
    interface: String,
    queue: u32,
}

impl XskSocket {
    /// Opens a socket on `queue` of `interface`, registers its UMEM, maps its rings, fills the
    /// fill ring and binds. Frames reach it once it is in the XSKMAP of a steering program on
    /// the interface ([`super::XdpSteering::insert`]).
    pub fn open(interface: &str, queue: u32, config: &XskConfig) -> Result<XskSocket, XdpError> {
        let step = |step: String| {
            let interface = interface.to_string();
            move |source| XdpError::Step {
                interface,
                step,
                source,
            }
        };
        let ring = config.ring_size;
        if !ring.is_power_of_two()
            || !config.frame_size.is_power_of_two()
            || !(2048..=4096).contains(&config.frame_size)
        {
            return Err(XdpError::Geometry {
                interface: interface.to_string(),
                ring_size: ring,
                frame_size: config.frame_size,
            });
        }
        let ifindex = sys::interface_index(interface)
            .ok_or_else(|| XdpError::NoInterface(interface.to_string()))?;
        let fd =
            sys::socket(libc::AF_XDP, libc::SOCK_RAW, 0).map_err(step("open the socket".into()))?;
        let umem = Umem::new(ring * 2, config.frame_size)
            .map_err(step(format!("allocate {} UMEM chunks", ring * 2)))?;
        umem.register(fd.as_fd())
            .map_err(step("register the UMEM".into()))?;
        for (name, opt) in [
            ("fill", libc::XDP_UMEM_FILL_RING),
            ("completion", libc::XDP_UMEM_COMPLETION_RING),
            ("rx", libc::XDP_RX_RING),
            ("tx", libc::XDP_TX_RING),
        ] {
            // SAFETY: these options take a u32 ring size, read during the call.
            unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_XDP, opt, &ring) }
                .map_err(step(format!("size the {name} ring")))?;
        }
        let off = mmap_offsets(fd.as_fd()).map_err(step("read the ring offsets".into()))?;
        let map_err = |name: &str| step(format!("map the {name} ring"));
        let rx = Ring::map(fd.as_fd(), &off.rx, ring, libc::XDP_PGOFF_RX_RING as u64)
            .map_err(map_err("rx"))?;
        let tx = Ring::map(fd.as_fd(), &off.tx, ring, libc::XDP_PGOFF_TX_RING as u64)
            .map_err(map_err("tx"))?;
        let fill = Ring::map(fd.as_fd(), &off.fr, ring, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(map_err("fill"))?;
        let completion = Ring::map(
            fd.as_fd(),
            &off.cr,
            ring,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(map_err("completion"))?;
        let free_tx = (ring..ring * 2).map(|i| umem.chunk(i)).collect();
        let mut socket = XskSocket {
            fd,
            rx,
            tx,
            fill,
            completion,
            umem,
            free_tx,
            tx_queued: 0,
            tx_in_flight: 0,
            zero_copy: false,
            interface: interface.to_string(),
            queue,
        };
        // Every receive chunk starts on the fill ring, before the bind lets frames in.
        for i in 0..ring {
            let chunk = socket.umem.chunk(i);
            socket.fill.write(i, chunk);
        }
        socket.fill.submit(ring);
        socket.bind(ifindex, config.mode)?;
        Ok(socket)
    }

    fn bind(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), XdpError> {
        let flags = libc::XDP_USE_NEED_WAKEUP
            | match mode {
                // No flag: the kernel tries zero-copy and falls back to copying.
                XdpMode::Auto => 0,
                XdpMode::Copy => libc::XDP_COPY,
                XdpMode::ZeroCopy => libc::XDP_ZEROCOPY,
            };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: self.queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a live `sockaddr_xdp` of the length passed, read during the call.
        let ret = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        sys::cvt(ret).map_err(|source| XdpError::Step {
            interface: self.interface.clone(),
            step: format!("bind queue {}", self.queue),
            source,
        })?;
        // SAFETY: XDP_OPTIONS writes a `struct xdp_options`, one u32.
        let options: u32 =
            unsafe { sys::getsockopt(self.fd.as_fd(), libc::SOL_XDP, libc::XDP_OPTIONS) }.map_err(
                |source| XdpError::Step {
                    interface: self.interface.clone(),
                    step: "read the socket's options".into(),
                    source,
                },
            )?;
        self.zero_copy = options & libc::XDP_OPTIONS_ZEROCOPY != 0;
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The driver shares the UMEM with the NIC (no copy on receive or transmit).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Hands up to `max` received frames to `f`, then gives their chunks back to the kernel on
    /// the fill ring. Returns how many frames there were.
    /// `f` may change a frame in place.
    pub fn recv_batch(&mut self, max: u32, mut f: impl FnMut(&mut [u8])) -> u32 {
        let n = self.rx.available().min(max);
        if n == 0 {
            return 0;
        }
        for i in 0..n {
            let d = self.rx.read(i);
            f(self.umem.received_mut(d.addr, d.len));
        }
        // Room for all `n`: a receive chunk is on the fill ring, on the rx ring or here, and the
        // fill ring has a slot for every receive chunk.
        let room = self.fill.free(n).min(n);
        for i in 0..room {
            let chunk = self.umem.chunk_of(self.rx.read(i).addr);
            self.fill.write(i, chunk);
        }
        self.rx.release(n);
        self.fill.submit(room);
        if self.fill.needs_wakeup() {
            self.wake_rx();
        }
        n
    }

    /// With need-wakeup, a driver that ran out of fill entries stops until told there are
    /// more; an empty non-blocking `recvfrom` tells it.
    fn wake_rx(&self) {
        // SAFETY: a zero-length receive into no buffer, no address; non-blocking.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Copies `frame` into a transmit chunk and queues it; [`XskSocket::flush`] sends the batch.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), XskTxError> {
        if frame.len() > self.umem.frame_size() as usize {
            return Err(XskTxError::TooLarge);
        }
        if self.free_tx.is_empty() {
            self.reap_completions();
        }
        let want = self.tx_queued + 1;
        if self.tx.free(want) < want {
            return Err(XskTxError::RingFull);
        }
        let Some(chunk) = self.free_tx.pop() else {
            return Err(XskTxError::RingFull);
        };
        let len = frame.len() as u32;
        match self.umem.frame_mut(chunk, len) {
            Some(dst) => dst.copy_from_slice(frame),
            None => {
                self.free_tx.push(chunk);
                return Err(XskTxError::TooLarge);
            }
        }
        let desc = Desc {
            addr: chunk,
            len,
            options: 0,
        };
        self.tx.write(self.tx_queued, desc);
        self.tx_queued += 1;
        Ok(())
    }

    /// Publishes the queued frames and kicks the kernel to send them (copy mode sends only from
    /// inside `sendto`), then takes back the chunks of frames already sent.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tx_queued > 0 {
            self.tx.submit(self.tx_queued);
            self.tx_in_flight += self.tx_queued;
            self.tx_queued = 0;
        }
        // In copy mode each kick sends a bounded number of frames (32 in Linux 6.x) and
        // returns EAGAIN while more are left: kick again until the ring is empty, so none waits
        // for the next wake-up of the worker.
        for _ in 0..TX_KICKS {
            if self.tx_in_flight == 0 || self.tx.unconsumed() == 0 || !self.tx.needs_wakeup() {
                break;
            }
            self.kick_tx()?;
        }
        self.reap_completions();
        Ok(())
    }

    fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send of no buffer to no address; non-blocking.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // The kernel is busy sending or short of buffers: the frames stay on the ring and
            // the next kick sends them.
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
            _ => Err(e),
        }
    }

    /// Moves completed transmit chunks back to the free list; returns how many.
    pub fn reap_completions(&mut self) -> u32 {
        let n = self.completion.available();
        for i in 0..n {
            let chunk = self.umem.chunk_of(self.completion.read(i));
            self.free_tx.push(chunk);
        }
        self.completion.release(n);
        self.tx_in_flight -= n.min(self.tx_in_flight);
        n
    }

    /// Frames handed to the kernel and not yet completed.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx_in_flight
    }

    pub fn statistics(&self) -> io::Result<XskStatistics> {
        // SAFETY: XDP_STATISTICS writes a `struct xdp_statistics`, six u64s; any bytes are valid.
        unsafe { sys::getsockopt(self.fd.as_fd(), libc::SOL_XDP, libc::XDP_STATISTICS) }
    }
}
