//! Thin, checked wrappers over the few Linux calls the data path needs beyond sockets: interface
//! lookups and ioctls, offload switches, CPU affinity, signals, poll and mmap. Each returns an
//! `io::Error` (errno) for the caller to turn into a message a user can act on.
//!
//! Every safe function here is sound whatever safe code hands it: the raw helpers — taking
//! ownership of a descriptor, `getsockopt` into any type, an `ifreq` ioctl of any request — are
//! private behind typed wrappers ([`socket`], [`packet_statistics`], [`interface_mtu`],
//! [`TunFile::attach`], ...), and [`setsockopt`], whose value may carry pointers the kernel
//! follows, is `unsafe` with its contract.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Turns a syscall's `-1` into the thread's errno.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps a freshly returned descriptor so it is closed exactly once.
///
/// # Safety
/// `ret` must be the return value of a syscall that creates a descriptor (`socket`, `open`,
/// `eventfd`, ...), called just before, so that a non-negative value is a descriptor nothing
/// else owns or will close.
unsafe fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: the caller guarantees `fd` is fresh and unowned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new socket, owned at once (close-on-exec).
pub fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; what it returns is a fresh descriptor (or -1).
    unsafe { owned(libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol)) }
}

/// `setsockopt` with a plain-data option value.
///
/// # Safety
/// Option `name` of `level` must take a value laid out as `T` (the kernel only reads it, during
/// the call). A pointer inside `value` (a `sock_fprog`'s program, say) must point to live memory
/// of the size the option expects for the duration of the call, and the option must not make
/// the kernel keep a pointer into this process's memory past the call (as AF_XDP's UMEM
/// registration does).
pub unsafe fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel only reads it, and
    // what it points to is the caller's promise.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(ret).map(|_| ())
}

/// `getsockopt` into a plain-data value.
///
/// # Safety
/// Every bit pattern the kernel may write for this option into `size_of::<T>()` bytes must be a
/// valid `T` (plain integers, not `bool`s, enums or references).
pub(in crate::io) unsafe fn getsockopt<T: Copy + Default>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable `T` and `len` its size; the kernel writes at most
    // `len` bytes, and the caller promises any bytes it writes form a valid `T`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    cvt(ret).map(|_| value)
}

/// A packet socket's receive statistics since the last read (the kernel resets them on read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStatistics {
    /// Frames received.
    pub packets: u32,
    /// Frames dropped because the ring was full.
    pub drops: u32,
}

/// Reads (and resets) PACKET_STATISTICS of a packet socket.
pub fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<PacketStatistics> {
    // SAFETY: the kernel writes a `tpacket_stats` (two u32) or, for TPACKET_V3, a
    // `tpacket_stats_v3` (three u32), cut to the length given; any bytes are valid u32s.
    let s: [u32; 3] = unsafe { getsockopt(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS)? };
    Ok(PacketStatistics {
        packets: s[0],
        drops: s[1],
    })
}

/// The index of a network interface, `None` if there is no such interface here.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// `struct ifreq`: the interface name and a 24-byte union the request interprets.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface names are 1 to 15 bytes",
            ));
        }
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
}

/// Runs an interface ioctl whose argument is an `ifreq`.
///
/// # Safety
/// `request` must be an ioctl that, on `fd`, reads and writes only within a `struct ifreq`, or
/// through a pointer the caller placed in `req`, which must then point to live, writable memory
/// of the size and layout the request expects for the duration of the call.
unsafe fn ifreq_ioctl(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    req: &mut IfReq,
) -> io::Result<()> {
    // SAFETY: `req` is a valid, writable `struct ifreq`; the rest is the caller's promise.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut IfReq) }).map(|_| ())
}

/// A descriptor of /dev/net/tun, not yet attached to a device.
pub struct TunFile(OwnedFd);

impl TunFile {
    /// Opens /dev/net/tun, non-blocking.
    pub fn open() -> io::Result<TunFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        Ok(TunFile(f.into()))
    }

    /// Attaches to (or creates) TUN device `name` with `flags` (IFF_TUN, IFF_NO_PI,
    /// IFF_MULTI_QUEUE, ...); the descriptor is then one queue of the device.
    pub fn attach(self, name: &str, flags: libc::c_short) -> io::Result<OwnedFd> {
        use std::os::fd::AsFd;
        let mut req = IfReq::new(name)?;
        req.data[..2].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: the descriptor is /dev/net/tun's, where TUNSETIFF reads and writes only the
        // `ifreq` (the name, and the flags in the first bytes of its union).
        unsafe { ifreq_ioctl(self.0.as_fd(), libc::TUNSETIFF as libc::c_ulong, &mut req)? };
        Ok(self.0)
    }
}

/// The interface's MTU (payload bytes, without the Ethernet header).
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let sock = control_socket()?;
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFMTU on an inet socket writes an int into the `ifreq`'s union.
    unsafe { ifreq_ioctl(sock.as_fd(), libc::SIOCGIFMTU, &mut req)? };
    let mtu = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    Ok(mtu.max(0) as u32)
}

/// Sets IFF_UP on an interface (a TUN device starts down).
pub fn set_interface_up(name: &str) -> io::Result<()> {
    let sock = control_socket()?;
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFFLAGS on an inet socket writes a short into the `ifreq`'s union.
    unsafe { ifreq_ioctl(sock.as_fd(), libc::SIOCGIFFLAGS, &mut req)? };
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: SIOCSIFFLAGS on an inet socket reads a short from the `ifreq`'s union.
    unsafe { ifreq_ioctl(sock.as_fd(), libc::SIOCSIFFLAGS, &mut req) }
}

/// Offloads that merge or defer frames, each with its legacy ethtool get/set commands. An inline
/// leg must see the frames that are on the wire: merged super-frames cannot be sent out of the
/// other leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    Gro,
    Lro,
    Gso,
    Tso,
}

impl Offload {
    pub const ALL: [Offload; 4] = [Offload::Gro, Offload::Lro, Offload::Gso, Offload::Tso];

    pub fn as_str(self) -> &'static str {
        match self {
            Offload::Gro => "gro",
            Offload::Lro => "lro",
            Offload::Gso => "gso",
            Offload::Tso => "tso",
        }
    }
}

const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// One legacy ethtool get or set of a value (`struct ethtool_value`).
fn ethtool(fd: BorrowedFd<'_>, name: &str, value: &mut EthtoolValue) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    let ptr = value as *mut EthtoolValue as usize;
    req.data[..std::mem::size_of::<usize>()].copy_from_slice(&ptr.to_ne_bytes());
    // SAFETY: SIOCETHTOOL follows the pointer in the union to a command; every command used
    // here (the GTSO/STSO, GGSO/SGSO, GFLAGS/SFLAGS, GGRO/SGRO pairs) reads or writes exactly a
    // `struct ethtool_value`, which `value` is, live and writable across the call.
    unsafe { ifreq_ioctl(fd, libc::SIOCETHTOOL, &mut req) }
}

/// Turns `offload` off if it is on; returns whether it was on. `Ok(false)` also when the driver
/// does not support it at all (then it cannot be on).
pub fn disable_offload(name: &str, offload: Offload) -> io::Result<bool> {
    let sock = control_socket()?;
    let fd = sock.as_fd();
    let (get, set) = match offload {
        Offload::Gro => (ETHTOOL_GGRO, ETHTOOL_SGRO),
        Offload::Gso => (ETHTOOL_GGSO, ETHTOOL_SGSO),
        Offload::Tso => (ETHTOOL_GTSO, ETHTOOL_STSO),
        Offload::Lro => (ETHTOOL_GFLAGS, ETHTOOL_SFLAGS),
    };
    let mut v = EthtoolValue { cmd: get, data: 0 };
    match ethtool(fd, name, &mut v) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(false),
        Err(e) => return Err(e),
    }
    let on = match offload {
        Offload::Lro => v.data & ETH_FLAG_LRO != 0,
        _ => v.data != 0,
    };
    if !on {
        return Ok(false);
    }
    let data = match offload {
        Offload::Lro => v.data & !ETH_FLAG_LRO,
        _ => 0,
    };
    let mut s = EthtoolValue { cmd: set, data };
    ethtool(fd, name, &mut s)?;
    Ok(true)
}

/// Turns `offload` back on (after [`disable_offload`] turned it off).
pub fn enable_offload(name: &str, offload: Offload) -> io::Result<()> {
    let sock = control_socket()?;
    let fd = sock.as_fd();
    let data = match offload {
        Offload::Lro => {
            let mut v = EthtoolValue {
                cmd: ETHTOOL_GFLAGS,
                data: 0,
            };
            ethtool(fd, name, &mut v)?;
            v.data | ETH_FLAG_LRO
        }
        _ => 1,
    };
    let set = match offload {
        Offload::Gro => ETHTOOL_SGRO,
        Offload::Gso => ETHTOOL_SGSO,
        Offload::Tso => ETHTOOL_STSO,
        Offload::Lro => ETHTOOL_SFLAGS,
    };
    let mut s = EthtoolValue { cmd: set, data };
    ethtool(fd, name, &mut s)
}

/// The cores this process may run on, ascending.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t and the size passed is its size.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the capacity of `set`.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// Pins the calling thread to one core.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` was checked against CPU_SETSIZE above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a live cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(|_| ())
}

/// CPU time the calling thread has run for: unlike the wall clock, it does not advance while
/// other processes hold the core, so a measurement on a shared machine counts its own work.
pub fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a live timespec the call writes; CLOCK_THREAD_CPUTIME_ID always exists on
    // Linux, so the call cannot fail (its result is checked anyway).
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns which are readable.
pub fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout_ms: i32,
    ready: &mut [bool],
) -> io::Result<()> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    let n = fds.len().min(p.len());
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = libc::POLLIN;
    }
    // SAFETY: `p` holds `n` initialised pollfd entries that live across the call.
    let ret = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    match cvt(ret) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => return Err(e),
    }
    for (r, slot) in ready.iter_mut().zip(&p[..n]) {
        *r = slot.revents & (libc::POLLIN | libc::POLLERR) != 0;
    }
    Ok(())
}

/// A shared memory mapping of a socket's ring, unmapped on drop.
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; whoever holds the `Mmap` decides
// who touches which frame, and moving that ownership to another thread is sound.
unsafe impl Send for Mmap {}

impl Mmap {
    pub fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mmap> {
        Mmap::shared_at(fd, len, 0)
    }

    /// A shared mapping of `len` bytes at `offset`: AF_XDP tells its four rings apart by the
    /// offset they are mapped at.
    pub fn shared_at(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<Mmap> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh mapping at an address of the kernel's choosing; nothing aliases it yet.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        Mmap::checked(ptr, len)
    }

    /// Zeroed, page-aligned private memory of `len` bytes (an AF_XDP UMEM), resident at once.
    pub fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Mmap::checked(ptr, len)
    }

    fn checked(ptr: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing uses them after drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Moves the calling thread into the named network namespace (`ip netns add NAME`): sockets it
/// opens afterwards, and interfaces it looks up, are that namespace's.
pub fn enter_network_namespace(name: &str) -> io::Result<()> {
    let ns = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns takes a descriptor that lives across the call and a flag; it changes only
    // the calling thread's namespace.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(|_| ())
}

/// A counter descriptor one thread bumps to wake another that polls it.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd() takes no pointers and returns a fresh descriptor (or -1).
        let fd = unsafe { owned(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)) }?;
        Ok(EventFd { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) already means "awake".
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups.
    pub fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic store.
    if signal == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// Routes SIGINT and SIGTERM to [`stop_requested`] and SIGHUP to [`take_reload_request`].
pub fn install_signal_handlers() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is a valid starting point (empty mask, no flags).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is initialised, the handler only stores to atomics, and the old
        // action is not needed.
        cvt(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Asks every loop that polls [`stop_requested`] to finish (used when startup fails half-way).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn take_reload_request() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_nonsense_is_not() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("weir-no-such0"), None);
        assert!(interface_mtu("lo").unwrap() >= 1500);
        assert!(IfReq::new("a-name-far-too-long-for-linux").is_err());
    }

    #[test]
    fn the_typed_wrappers_refuse_what_they_do_not_fit() {
        // Not a packet socket: the kernel says so, nothing is written anywhere.
        let udp = socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let e = packet_statistics(udp.as_fd()).unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOPROTOOPT)
            ),
            "{e}"
        );
        assert!(interface_mtu("weir-no-such0").is_err());
        assert!(set_interface_up("a-name-far-too-long-for-linux").is_err());
        assert!(disable_offload("weir-no-such0", Offload::Gro).is_err());
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cores = allowed_cores().unwrap();
        assert!(!cores.is_empty());
        assert!(pin_current_thread(usize::MAX).is_err());
    }
}
