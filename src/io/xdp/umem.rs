//! The UMEM (the frame memory an AF_XDP socket shares with the kernel) and the four
//! single-producer, single-consumer rings that pass frame addresses over it: fill (we give the
//! kernel empty frames to receive into), rx (it hands back filled ones), tx (we hand frames to
//! send) and completion (it gives sent frames back).
//!
//! Ordering, as Documentation/networking/af_xdp.rst and the kernel's xsk_queue.h describe: the
//! producer writes its entries, then publishes the new producer index with release; the consumer
//! reads the producer index with acquire before reading entries, and publishes its consumer
//! index with release once it has finished with them, so the producer may reuse the slots.
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use crate::io::sys::{self, Mmap};

/// One ring's layout inside its mapping (`struct xdp_ring_offset`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`, as XDP_MMAP_OFFSETS returns it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

/// `struct xdp_desc`: a frame on the rx or tx ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// The offsets of the rings in the socket's mapping space, after the socket has its rings.
pub fn mmap_offsets(fd: BorrowedFd<'_>) -> io::Result<MmapOffsets> {
    // SAFETY: the kernel writes a `struct xdp_mmap_offsets`, sixteen u64s; any bytes are valid.
    unsafe { sys::getsockopt(fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS) }
}

/// Entries a ring holds: fill and completion rings carry frame addresses, rx and tx rings
/// [`Desc`]s. Sealed to those two, whose every bit pattern is valid.
pub trait Entry: Copy + private::Sealed {}
impl Entry for u64 {}
impl Entry for Desc {}
mod private {
    pub trait Sealed {}
    impl Sealed for u64 {}
    impl Sealed for super::Desc {}
}

/// One mapped ring. `cached_prod` and `cached_cons` are this side's view; the shared indexes are
/// read only when the cached view says the ring is full (producer) or empty (consumer).
pub struct Ring<T: Entry> {
    // Kept for its Drop: the pointers below point into it.
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
    _entries: PhantomData<T>,
}

// SAFETY: the raw pointers point into `map`, which this value owns and which moves with it; the
// other side of the ring is the kernel, which synchronises through the atomic indexes.
unsafe impl<T: Entry> Send for Ring<T> {}

impl<T: Entry> Ring<T> {
    /// Maps the ring of `size` entries (a power of two) that `offset` describes, at page offset
    /// `pgoff` of socket `fd`.
    pub fn map(fd: BorrowedFd<'_>, offset: &RingOffset, size: u32, pgoff: u64) -> io::Result<Self> {
        let len = offset.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::shared_at(fd, len, pgoff)?;
        let in_map = |off: u64, bytes: usize| {
            (off as usize)
                .checked_add(bytes)
                .is_some_and(|end| end <= map.len())
                && off as usize % std::mem::align_of::<u32>() == 0
        };
        if !in_map(offset.producer, 4)
            || !in_map(offset.consumer, 4)
            || !in_map(offset.flags, 4)
            || offset.desc as usize % std::mem::align_of::<T>() != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ring offsets outside the mapping",
            ));
        }
        let base = map.as_ptr();
        // SAFETY: every offset was checked above to lie, aligned, inside the mapping, and the
        // descriptors end at `len`, the mapping's length.
        let (producer, consumer, flags, entries) = unsafe {
            (
                base.add(offset.producer as usize).cast::<AtomicU32>(),
                base.add(offset.consumer as usize).cast::<AtomicU32>(),
                base.add(offset.flags as usize).cast::<AtomicU32>(),
                base.add(offset.desc as usize).cast::<T>(),
            )
        };
        let mut ring = Ring {
            _map: map,
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _entries: PhantomData,
        };
        ring.cached_prod = ring.producer().load(Ordering::Acquire);
        ring.cached_cons = ring.consumer().load(Ordering::Acquire);
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into `self.map`, aligned (checked in `map`), alive as long as `self`.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { &*self.consumer }
    }

    /// The kernel asks to be woken (a `sendto` for tx, a `recvfrom`/`poll` for fill) before it
    /// looks at the ring again. The fence orders our index store before this load, pairing with
    /// the kernel's barrier between setting the flag and rechecking the ring, so no wake-up is
    /// missed.
    pub fn needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        // SAFETY: as `producer`.
        let flags = unsafe { &*self.flags };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: `index & mask` is below `size`, the number of entries mapped after `entries`.
        unsafe { self.entries.add((index & self.mask) as usize) }
    }

    // Producer side (fill, tx).

    /// Slots free for the producer, reading the consumer's index only if fewer than `want` are
    /// free by the cached view.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        // Acquire: the kernel has finished with the slots it has consumed before we overwrite.
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes entry `i` past the producer index; the caller has checked [`Ring::free`].
    pub fn write(&mut self, i: u32, value: T) {
        // SAFETY: the slot lies in the mapping (see `slot`); it is free (the caller checked), so
        // the kernel does not read it until the producer index is published.
        unsafe {
            self.slot(self.cached_prod.wrapping_add(i))
                .write_volatile(value)
        };
    }

    /// Published entries the consumer has not taken yet.
    pub fn unconsumed(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    /// Publishes `n` written entries.
    pub fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the entries are visible before the index that hands them over.
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // Consumer side (rx, completion).

    /// Entries ready for the consumer.
    pub fn available(&mut self) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready > 0 {
            return ready;
        }
        // Acquire: the entries the kernel wrote are visible once their index is.
        self.cached_prod = self.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Entry `i` past the consumer index; the caller has checked [`Ring::available`].
    pub fn read(&self, i: u32) -> T {
        // SAFETY: the slot lies in the mapping; the kernel published it and does not reuse it
        // until the consumer index moves past it.
        unsafe { self.slot(self.cached_cons.wrapping_add(i)).read_volatile() }
    }

    /// Gives `n` consumed entries back to the producer.
    pub fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the entries are done before the kernel may overwrite them.
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

/// The frame memory: `frames` chunks of `frame_size` bytes, page-aligned and resident.
pub struct Umem {
    map: Mmap,
    frame_size: u32,
    frames: u32,
}

impl Umem {
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Umem> {
        let len = frames as usize * frame_size as usize;
        Ok(Umem {
            map: Mmap::anonymous(len)?,
            frame_size,
            frames,
        })
    }

    /// XDP_UMEM_REG on `fd`: from now on the kernel reads and writes this memory for the socket.
    pub fn register(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: self.map.as_ptr() as u64,
            len: self.map.len() as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // SAFETY: the option takes a `struct xdp_umem_reg`. The kernel keeps the memory past the
        // call: it pins the pages, so they stay valid for it even if unmapped, and the socket
        // owning this UMEM is closed before the UMEM is dropped (field order in `XskSocket`).
        unsafe { sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg) }
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The first byte of chunk `i`.
    pub fn chunk(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_size)
    }

    /// The chunk an address falls in (the kernel hands back addresses past the headroom).
    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr - addr % u64::from(self.frame_size)
    }

    /// `len` bytes at `addr`, empty if the range is not inside the UMEM (a descriptor the kernel
    /// never writes; checked so a bad one cannot reach outside).
    pub fn frame(&self, addr: u64, len: u32) -> &[u8] {
        match self.range(addr, len) {
            // SAFETY: the range is inside the mapping. The kernel does not write a frame it has
            // handed us until we give its chunk back on the fill ring, which needs `&mut self`
            // on the socket, so the bytes do not change under this borrow.
            Some(start) => unsafe {
                std::slice::from_raw_parts(self.map.as_ptr().add(start), len as usize)
            },
            None => &[],
        }
    }

    /// A received frame, to change in place before it is handled (a checksum finished).
    pub fn received_mut(&mut self, addr: u64, len: u32) -> &mut [u8] {
        match self.range(addr, len) {
            // SAFETY: the range is inside the mapping. The kernel neither reads nor writes a
            // frame it has handed us until we give its chunk back on the fill ring, which needs
            // `&mut self` on the socket, as this borrow does.
            Some(start) => unsafe {
                std::slice::from_raw_parts_mut(self.map.as_ptr().add(start), len as usize)
            },
            None => &mut [],
        }
    }

    /// The chunk at `addr` to write a frame of `len` bytes into, `None` past the UMEM.
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let start = self.range(addr, len)?;
        // SAFETY: the range is inside the mapping and belongs to a chunk on our free list, which
        // the kernel does not touch until we post it on the tx ring.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(start), len as usize) })
    }

    fn range(&self, addr: u64, len: u32) -> Option<usize> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len as usize)?;
        (end <= self.map.len()).then_some(start)
    }
}
