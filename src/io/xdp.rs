//! AF_XDP: frames go from the driver straight into memory this process owns (the UMEM), past
//! the kernel's network stack. An interface gets one steering program ([`XdpSteering`]) that
//! redirects each receive queue's frames to the socket bound to that queue; each worker owns
//! one [`XskSocket`] per queue it serves, with its own UMEM and rings.
//!
//! Lifetime: the program is attached through a BPF link whose descriptor the [`XdpSteering`]
//! owns. Dropping it, or the process ending in any way, detaches the program.

pub mod prog;
pub mod socket;
pub mod umem;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use socket::{XskConfig, XskSocket, XskStatistics, XskTxError};

use crate::io::sys;

/// How the socket's frames reach its UMEM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Zero-copy where the driver offers it, copying otherwise.
    #[default]
    Auto,
    /// The kernel copies every frame (XDP_COPY): works on any interface, veth included.
    Copy,
    /// The driver DMAs into the UMEM (XDP_ZEROCOPY); binding fails where it cannot.
    ZeroCopy,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("AF_XDP on {0}: interface not found (`ip link` lists the interfaces of this network namespace)")]
    NoInterface(String),
    #[error("AF_XDP on {interface}: {step}: {source}")]
    Step {
        interface: String,
        step: String,
        source: io::Error,
    },
    #[error("AF_XDP on {interface}: rings of {ring_size} entries and chunks of {frame_size} bytes: the ring size must be a power of two and the chunk 2048 or 4096 bytes")]
    Geometry {
        interface: String,
        ring_size: u32,
        frame_size: u32,
    },
    #[error("AF_XDP on {interface}: load the steering program: {source}; the verifier said:\n{verifier_log}")]
    Load {
        interface: String,
        source: io::Error,
        verifier_log: String,
    },
    #[error("AF_XDP on {interface}: another XDP program is already attached (`ip link show dev {interface}` shows it); if it was attached through netlink, by an earlier tool or an older run, `ip link set dev {interface} xdp off` removes it; a program attached by a running process goes away when that process stops")]
    Busy { interface: String },
}

/// How many receive queues `interface` has (its `queues/rx-N` entries in sysfs).
pub fn rx_queue_count(interface: &str) -> io::Result<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))?;
    let mut n = 0;
    for entry in dir {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}

/// The steering program attached to one interface, and its XSKMAP.
#[derive(Debug)]
pub struct XdpSteering {
    // Declared first so it is dropped first: the program is detached before its map goes.
    link: prog::XdpLink,
    prog: OwnedFd,
    map: prog::XskMap,
    interface: String,
}

impl XdpSteering {
    /// Loads the program with a map of `queues` slots and attaches it to `interface`. Until a
    /// socket is inserted for a queue, that queue's frames go to the kernel's stack as before.
    pub fn attach(interface: &str, queues: u32) -> Result<XdpSteering, XdpError> {
        let ifindex = sys::interface_index(interface)
            .ok_or_else(|| XdpError::NoInterface(interface.to_string()))?;
        let step = |step: &str| {
            let (interface, step) = (interface.to_string(), step.to_string());
            move |source| XdpError::Step {
                interface,
                step,
                source,
            }
        };
        let map = prog::XskMap::create(queues.max(1))
            .map_err(step("create the XSKMAP (needs root or CAP_BPF)"))?;
        let prog = prog::load_steering_program(&map).map_err(|e| XdpError::Load {
            interface: interface.to_string(),
            source: e.source,
            verifier_log: e.verifier_log,
        })?;
        let link = prog::XdpLink::attach(prog.as_fd(), ifindex).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                XdpError::Busy {
                    interface: interface.to_string(),
                }
            } else {
                step("attach the program with a BPF link")(source)
            }
        })?;
        Ok(XdpSteering {
            link,
            prog,
            map,
            interface: interface.to_string(),
        })
    }

    /// Steers the frames of `socket`'s queue to it.
    pub fn insert(&self, socket: &XskSocket) -> Result<(), XdpError> {
        self.map
            .insert(socket.queue(), socket.fd())
            .map_err(|source| XdpError::Step {
                interface: self.interface.clone(),
                step: format!("put the socket of queue {} in the XSKMAP", socket.queue()),
                source,
            })
    }

    /// Sends `queue`'s frames to the kernel's stack again.
    pub fn remove(&self, queue: u32) -> io::Result<()> {
        self.map.remove(queue)
    }

    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.link.fd()
    }

    pub fn program_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}
