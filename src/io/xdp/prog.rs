//! The XDP program that steers received frames into AF_XDP sockets, written here as eBPF
//! instructions and loaded with raw `bpf(2)` calls, so neither building nor running Weir needs
//! an eBPF toolchain.
//!
//! The program is `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`: a frame
//! received on queue `q` goes to the socket in slot `q` of the XSKMAP, and to the kernel's stack
//! when that slot is empty. It is attached with a BPF link, not through netlink, so it lives
//! exactly as long as the link's descriptor: closing it (dropping [`XdpLink`], or the process
//! dying) detaches the program and no crash can leave it behind.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`: the destination register
/// in the low nibble of `regs`, the source in the high one (little-endian bitfields).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h), composed as the kernel documents them.
const BPF_LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
const BPF_LD_IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW: a 64-bit immediate in two slots
const BPF_ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
const BPF_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// `src` of a 64-bit load: the immediate is a map's descriptor, which the verifier replaces by
/// the map's address.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `struct xdp_md`: `data`, `data_end`, `data_meta`, `ingress_ifindex`, then this.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;

/// The steering program for the XSKMAP whose descriptor is `map_fd`.
pub fn steering_program(map_fd: i32) -> [Insn; 6] {
    [
        // r2 = ctx->rx_queue_index: the key, the queue the frame arrived on (r1 is the context).
        insn(BPF_LDX_MEM_W, R2, R1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = &xsks (two slots: the low then the high 32 bits of the immediate).
        insn(BPF_LD_IMM_DW, R1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the queue's slot holds no socket (the low bits of the
        // flags argument are the fallback action).
        insn(BPF_ALU64_MOV_K, R3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        insn(BPF_EXIT, 0, 0, 0, 0),
    ]
}

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE; the kernel treats the rest as 0.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

/// `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `T` must be the `bpf_attr` layout of `cmd`, and every pointer in it must point to live memory
/// of the size the attribute says, for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable `T`; its pointers are the caller's promise.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// # Safety
/// As [`bpf`], and `cmd` must be one that returns a new descriptor.
unsafe fn bpf_fd<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: forwarded from the caller.
    let fd = unsafe { bpf(cmd, attr) }?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the command just created this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    // 15 bytes at most: the kernel wants the name NUL-terminated.
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// An XSKMAP: slot `q` holds the socket bound to queue `q`.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    pub fn create(entries: u32) -> io::Result<XskMap> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: name16("weir_xsks"),
            ..MapCreateAttr::default()
        };
        // SAFETY: the attribute is BPF_MAP_CREATE's and holds no pointers.
        let fd = unsafe { bpf_fd(BPF_MAP_CREATE, &mut attr) }?;
        Ok(XskMap { fd })
    }

    /// Puts socket `xsk` in slot `queue`.
    pub fn insert(&self, queue: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapElemAttr::default()
        };
        // SAFETY: key and value point to live u32s, the sizes the map was created with.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
    }

    /// Empties slot `queue`; its frames go to the kernel's stack again.
    pub fn remove(&self, queue: u32) -> io::Result<()> {
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            ..MapElemAttr::default()
        };
        // SAFETY: key points to a live u32, the key size of the map.
        unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(|_| ())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why the program did not load: the kernel's error and what its verifier said.
#[derive(Debug)]
pub struct LoadError {
    pub source: io::Error,
    pub verifier_log: String,
}

/// Verifier log size: the program is six instructions, whose log is a few hundred bytes.
const LOG_SIZE: usize = 64 * 1024;

/// Loads the steering program for `map`.
pub fn load_steering_program(map: &XskMap) -> Result<OwnedFd, LoadError> {
    let insns = steering_program(map.fd.as_raw_fd());
    let license = c"Apache-2.0";
    let mut log = vec![0u8; LOG_SIZE];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16("weir_xsk_steer"),
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    // SAFETY: the instructions, the NUL-terminated license and the log buffer all live across
    // the call, at the counts and sizes given.
    unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) }.map_err(|source| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        LoadError {
            source,
            verifier_log: String::from_utf8_lossy(&log[..end]).trim_end().to_string(),
        }
    })
}

/// The program attached to an interface through a BPF link; dropping it detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex` in the mode the driver offers (native where the driver has
    /// XDP, generic otherwise). `EBUSY` means another program holds the interface: one attached
    /// through netlink (`ip link set dev X xdp ...`), or another link.
    pub fn attach(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<XdpLink> {
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            ..LinkCreateAttr::default()
        };
        // SAFETY: BPF_LINK_CREATE's attribute, no pointers; it returns a new link descriptor.
        let fd = unsafe { bpf_fd(BPF_LINK_CREATE, &mut attr) }?;
        Ok(XdpLink { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_reads_as_the_kernel_encodes_it() {
        let p = steering_program(7);
        // ldxw r2, [r1 + 16]
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 16,
                imm: 0
            }
        );
        // lddw r1, map fd 7 (src = BPF_PSEUDO_MAP_FD)
        assert_eq!(
            p[1],
            Insn {
                code: 0x18,
                regs: 0x11,
                off: 0,
                imm: 7
            }
        );
        assert_eq!(
            p[2],
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        // mov64 r3, 2
        assert_eq!(
            p[3],
            Insn {
                code: 0xb7,
                regs: 0x03,
                off: 0,
                imm: 2
            }
        );
        // call bpf_redirect_map
        assert_eq!(
            p[4],
            Insn {
                code: 0x85,
                regs: 0,
                off: 0,
                imm: 51
            }
        );
        assert_eq!(
            p[5],
            Insn {
                code: 0x95,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn names_are_cut_to_fit_with_their_terminator() {
        let n = name16("a-name-longer-than-sixteen");
        assert_eq!(&n[..15], b"a-name-longer-t");
        assert_eq!(n[15], 0);
    }
}
