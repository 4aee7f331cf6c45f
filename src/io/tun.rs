//! Multi-queue TUN: one queue (one descriptor) per worker on a single layer-3 device. Frames are
//! raw IP packets (IFF_NO_PI). Descriptors are non-blocking; workers wait with poll.
#![allow(unsafe_code)]

use super::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("cannot open /dev/net/tun ({0}); load the tun module, and run as root or with CAP_NET_ADMIN")]
    Open(io::Error),
    #[error("cannot create TUN device {name} queue {queue} ({source}); it may exist without IFF_MULTI_QUEUE, or another program holds it")]
    Create {
        name: String,
        queue: usize,
        source: io::Error,
    },
    #[error("cannot bring TUN device {name} up: {source}")]
    Up { name: String, source: io::Error },
}

/// One queue of a multi-queue TUN device.
pub struct TunQueue {
    fd: OwnedFd,
}

impl TunQueue {
    /// Opens `queues` queues of device `name`, creating it if needed, and brings it up.
    pub fn open_all(name: &str, queues: usize) -> Result<Vec<TunQueue>, TunError> {
        let mut out = Vec::with_capacity(queues);
        for queue in 0..queues.max(1) {
            let file = sys::TunFile::open().map_err(TunError::Open)?;
            let flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
            let fd = file
                .attach(name, flags)
                .map_err(|source| TunError::Create {
                    name: name.to_string(),
                    queue,
                    source,
                })?;
            out.push(TunQueue { fd });
        }
        sys::set_interface_up(name).map_err(|source| TunError::Up {
            name: name.to_string(),
            source,
        })?;
        Ok(out)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads one packet; `Ok(None)` when the queue is empty.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is a live, writable buffer of the length passed.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    /// Writes one packet back to the kernel, which routes it on.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: `packet` is a live buffer of the length passed; the kernel only reads it.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
