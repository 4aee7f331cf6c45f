//! Routed mode: the kernel routes subscriber traffic into a multi-queue TUN device; each worker
//! reads one queue, and writes what the engine forwards back to the device for the kernel to
//! route on. The kernel spreads packets over queues by flow, not by subscriber, so a packet whose
//! subscriber another worker owns is handed to that worker on its bounded queue: ownership holds
//! and counters stay lock-free.
//!
//! A handed-off packet travels in one of its sender's buffers, made when the worker starts; the
//! owner sends the buffer back once the packet is through. A worker whose buffers are all on
//! their way drops what it would hand off and counts it (`handoff_no_buffer`), so the packet path
//! never allocates and the memory is bounded.

use super::report::{IoCounters, WorkerReport};
use super::worker::Worker;
use crate::classify::ip_key;
use crate::engine::{Engine, Output, Port, Verdict};
use crate::io::bpf::ue_hash;
use crate::io::sys::{self, EventFd};
use crate::io::tun::TunQueue;
use crate::policy::PolicySnapshot;
use crate::time::Timestamp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

const DRAIN_ROUNDS: usize = 64;
const MAX_PACKET: usize = 65536;

/// A packet on its way to the worker that owns its subscriber, in a buffer of worker `home`.
pub struct Handoff {
    buf: Box<[u8]>,
    len: usize,
    home: usize,
}

/// How to reach another worker: its queue, its wake-up, and the way its buffers go home.
#[derive(Clone)]
pub struct Peer {
    pub queue: SyncSender<Handoff>,
    pub wake: Arc<EventFd>,
    pub returns: SyncSender<Box<[u8]>>,
}

/// A worker's handoff buffers: a fixed number, made at start, each either free here or on its
/// way (queued at an owner, or coming back).
pub struct BufferPool {
    free: Vec<Box<[u8]>>,
    returns: Receiver<Box<[u8]>>,
    size: usize,
}

impl BufferPool {
    /// `count` buffers of `size` bytes, and the sender other workers return them with. The
    /// return queue has room for every buffer, so giving one back never fails or waits.
    pub fn new(count: usize, size: usize) -> (BufferPool, SyncSender<Box<[u8]>>) {
        let (back, returns) = std::sync::mpsc::sync_channel(count);
        let pool = BufferPool {
            free: (0..count)
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
            returns,
            size,
        };
        (pool, back)
    }

    /// Largest packet a buffer holds.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// A free buffer, taking back the ones returned so far when none is left; `None` when
    /// every buffer is on its way.
    pub fn take(&mut self) -> Option<Box<[u8]>> {
        if self.free.is_empty() {
            // Capacity for every buffer was reserved at start: these pushes never allocate.
            while let Ok(b) = self.returns.try_recv() {
                self.free.push(b);
            }
        }
        self.free.pop()
    }

    /// A buffer that never left (its handoff failed).
    pub fn put_back(&mut self, buf: Box<[u8]>) {
        self.free.push(buf);
    }
}

pub struct RoutedWorker {
    pub worker: Worker,
    pub queue: TunQueue,
    pub wake: Arc<EventFd>,
    pub inbox: Receiver<Handoff>,
    pub peers: Vec<Peer>,
    pub pool: BufferPool,
    pub batch: usize,
}

/// Hands `packet` to peer `to` in one of `pool`'s buffers; counts what happened. True when
/// the peer has it (and should be woken).
fn hand_off(
    pool: &mut BufferPool,
    here: usize,
    to: &Peer,
    packet: &[u8],
    io: &mut IoCounters,
) -> bool {
    if packet.len() > pool.buffer_size() {
        io.oversize += 1;
        return false;
    }
    let Some(mut buf) = pool.take() else {
        io.handoff_no_buffer += 1;
        return false;
    };
    buf[..packet.len()].copy_from_slice(packet);
    let h = Handoff {
        buf,
        len: packet.len(),
        home: here,
    };
    match to.queue.try_send(h) {
        Ok(()) => {
            io.handoff_sent += 1;
            true
        }
        Err(TrySendError::Full(h)) | Err(TrySendError::Disconnected(h)) => {
            io.handoff_full += 1;
            pool.put_back(h.buf);
            false
        }
    }
}

/// Sends a handed-off packet's buffer back to the worker it belongs to.
fn give_back(peers: &[Peer], h: Handoff) {
    if let Some(p) = peers.get(h.home) {
        // Room for every buffer of that worker: only a worker that has stopped refuses, and
        // then the buffer is freed here.
        let _ = p.returns.try_send(h.buf);
    }
}

/// The worker owning a raw IP packet's subscriber: the hash of whichever end is in a UE pool.
/// Packets with no subscriber end stay where they are (`here`).
pub fn owner(packet: &[u8], snapshot: &PolicySnapshot, workers: usize, here: usize) -> usize {
    let (src, dst) = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let a = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    packet[o],
                    packet[o + 1],
                    packet[o + 2],
                    packet[o + 3],
                ))
            };
            (a(12), a(16))
        }
        Some(6) if packet.len() >= 40 => {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&packet[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (a(8), a(24))
        }
        _ => return here,
    };
    let ue = if snapshot.in_ue_pool(ip_key(src)) {
        src
    } else if snapshot.in_ue_pool(ip_key(dst)) {
        dst
    } else {
        return here;
    };
    (ue_hash(ue) as usize) % workers.max(1)
}

impl RoutedWorker {
    pub fn run(mut self) -> WorkerReport {
        let mut buf = vec![0u8; MAX_PACKET].into_boxed_slice();
        let mut woken = vec![false; self.peers.len()];
        let workers = self.peers.len();
        let here = self.worker.index;
        let mut idle = false;
        let mut draining = 0;
        loop {
            let stopping = sys::stop_requested();
            if idle && !stopping {
                self.worker.wait([self.queue.fd(), self.wake.fd()]);
            }
            self.wake.reset();
            let now = self.worker.now();
            self.worker.between_batches(now);
            let Worker {
                engine, out, io, ..
            } = &mut self.worker;
            // Frames held for subscribers whose session just arrived go out first, in order.
            if engine.has_held_ready() {
                let queue = &self.queue;
                engine.release_held(now, out, |_, packet, verdict, out| {
                    transmit(queue, packet, verdict, out, io)
                });
            }
            let mut n = 0;
            while n < self.batch {
                let len = match self.queue.recv(&mut buf) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        io.tx_errors += 1;
                        tracing::trace!(error = %e, "TUN read failed");
                        break;
                    }
                };
                n += 1;
                io.rx_frames += 1;
                let packet = &buf[..len];
                let to = owner(packet, engine.snapshot(), workers, here);
                if to == here {
                    process(engine, out, io, &self.queue, packet, now);
                    continue;
                }
                if hand_off(&mut self.pool, here, &self.peers[to], packet, io) {
                    woken[to] = true;
                }
            }
            for (i, w) in woken.iter_mut().enumerate() {
                if std::mem::take(w) {
                    self.peers[i].wake.wake();
                }
            }
            let mut m = 0;
            while m < self.batch {
                let Ok(h) = self.inbox.try_recv() else {
                    break;
                };
                m += 1;
                io.handoff_received += 1;
                process(engine, out, io, &self.queue, &h.buf[..h.len], now);
                give_back(&self.peers, h);
            }
            if n + m > 0 {
                io.batches += 1;
            }
            idle = n + m == 0;
            if stopping {
                draining += 1;
                if idle || draining > DRAIN_ROUNDS {
                    break;
                }
            }
        }
        self.worker.finish()
    }
}

fn process(
    engine: &mut Engine,
    out: &mut Output,
    io: &mut IoCounters,
    queue: &TunQueue,
    packet: &[u8],
    now: Timestamp,
) {
    // A routed gateway has one device for both directions: the UE pools alone tell them apart.
    let verdict = engine.handle_frame(now, Port::Any, packet, out);
    transmit(queue, packet, verdict, out, io);
    out.clear();
}

/// Does what the verdict says with a packet: back to the device for the kernel to route on,
/// with any injected answers.
fn transmit(queue: &TunQueue, packet: &[u8], verdict: Verdict, out: &Output, io: &mut IoCounters) {
    match verdict {
        Verdict::Forward => write(queue, packet, io),
        Verdict::Drop(_) | Verdict::Held => {}
        Verdict::Inject => {
            for (_, f) in out.frames() {
                write(queue, f, io);
            }
        }
    }
}

fn write(queue: &TunQueue, packet: &[u8], io: &mut IoCounters) {
    match queue.send(packet) {
        Ok(()) => io.tx_frames += 1,
        Err(e) => {
            io.tx_errors += 1;
            tracing::trace!(error = %e, "TUN write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Config;

    fn snapshot() -> PolicySnapshot {
        let config = Config::from_toml_str(
            "[gateway]\nue_pools = [\"10.45.0.0/16\", \"2001:db8:45::/48\"]\n",
            "t.toml",
        )
        .unwrap();
        PolicySnapshot::build(&config, 1)
    }

    fn v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend(src);
        p.extend(dst);
        p
    }

    fn peer(queue: usize, returns: SyncSender<Box<[u8]>>) -> (Peer, Receiver<Handoff>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let wake = Arc::new(EventFd::new().unwrap());
        (
            Peer {
                queue: tx,
                wake,
                returns,
            },
            rx,
        )
    }

    #[test]
    fn handoffs_use_a_fixed_set_of_buffers_and_drop_when_all_are_away() {
        let (mut pool, back) = BufferPool::new(4, 1500);
        let made: Vec<*const u8> = pool.free.iter().map(|b| b.as_ptr()).collect();
        let capacity = pool.free.capacity();
        // The owner's queue has room for more than the pool: the pool is what runs out.
        let (owner, inbox) = peer(16, back.clone());
        let mut io = IoCounters::default();
        for i in 0..10u8 {
            hand_off(&mut pool, 0, &owner, &[i; 100], &mut io);
        }
        assert_eq!(
            (io.handoff_sent, io.handoff_no_buffer, io.handoff_full),
            (4, 6, 0)
        );
        let received: Vec<Handoff> = inbox.try_iter().collect();
        assert_eq!(received.len(), 4);
        for (i, h) in received.iter().enumerate() {
            assert_eq!(&h.buf[..h.len], &[i as u8; 100]);
            assert_eq!(h.home, 0);
        }
        // Longer than a buffer: counted, no buffer taken.
        assert!(!hand_off(&mut pool, 0, &owner, &[0; 1501], &mut io));
        assert_eq!(io.oversize, 1);

        // The owner sends them home; the same buffers carry the next packets.
        for h in received {
            give_back(std::slice::from_ref(&owner), h);
        }
        for i in 0..4u8 {
            assert!(hand_off(&mut pool, 0, &owner, &[i; 60], &mut io));
        }
        assert!(!hand_off(&mut pool, 0, &owner, &[9; 60], &mut io));
        assert_eq!((io.handoff_sent, io.handoff_no_buffer), (8, 7));
        let mut used: Vec<*const u8> = inbox.try_iter().map(|h| h.buf.as_ptr()).collect();
        let mut made = made;
        used.sort();
        made.sort();
        assert_eq!(used, made, "no buffer was made after the start");
        assert_eq!(pool.free.capacity(), capacity);
    }

    #[test]
    fn a_full_queue_keeps_the_buffer() {
        let (mut pool, back) = BufferPool::new(4, 1500);
        let (owner, inbox) = peer(1, back);
        let mut io = IoCounters::default();
        assert!(hand_off(&mut pool, 0, &owner, &[1; 40], &mut io));
        assert!(!hand_off(&mut pool, 0, &owner, &[2; 40], &mut io));
        assert!(!hand_off(&mut pool, 0, &owner, &[3; 40], &mut io));
        assert_eq!(
            (io.handoff_sent, io.handoff_full, io.handoff_no_buffer),
            (1, 2, 0)
        );
        assert_eq!(pool.free.len(), 3);
        assert_eq!(inbox.try_iter().count(), 1);
    }

    #[test]
    fn both_directions_go_to_the_subscribers_owner() {
        let s = snapshot();
        let ue = [10, 45, 0, 2];
        let remote = [198, 51, 100, 10];
        let want = (ue_hash(IpAddr::V4(ue.into())) % 4) as usize;
        for here in 0..4 {
            assert_eq!(owner(&v4(ue, remote), &s, 4, here), want);
            assert_eq!(owner(&v4(remote, ue), &s, 4, here), want);
        }
    }

    #[test]
    fn an_ipv6_subscriber_is_owned_by_its_prefix() {
        let s = snapshot();
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        let ue: Ipv6Addr = "2001:db8:45:1::2".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:100::10".parse().unwrap();
        p.extend(remote.octets());
        p.extend(ue.octets());
        let other: Ipv6Addr = "2001:db8:45:1::99".parse().unwrap();
        let want = (ue_hash(IpAddr::V6(other)) % 3) as usize;
        assert_eq!(owner(&p, &s, 3, 0), want);
    }

    #[test]
    fn packets_without_a_subscriber_stay_put() {
        let s = snapshot();
        assert_eq!(owner(&v4([192, 0, 2, 1], [192, 0, 2, 2]), &s, 4, 3), 3);
        assert_eq!(owner(&[0x45, 0, 0], &s, 4, 2), 2);
        assert_eq!(owner(&[], &s, 4, 1), 1);
    }
}
