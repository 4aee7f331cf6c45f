//! Bridge mode (bump in the wire): each worker receives on both legs from its fanout member
//! rings and sends what the engine forwards out of the other leg, unchanged.
//!
//! With `offloads = "keep"` every frame comes with its `virtio_net_hdr`: an aggregate (GSO/GRO)
//! goes through the engine once, with its segment size, and out with its header, so the kernel
//! segments it where the next device cannot (or hands it on whole) and fills in a checksum the
//! sender left partial. Frames Weir builds (injected, or held and released) are complete and go
//! out with a plain header.

use super::report::{IoCounters, WorkerReport};
use super::worker::Worker;
use crate::engine::{Engine, Output, Port, Toward, Verdict};
use crate::io::afpacket::{RxMeta, RxRing, Transmitter, TxError, VnetHdr};
use crate::io::sys;
use crate::time::Timestamp;
use crate::wire::{finish_partial_checksum, Partial};

/// After a stop request, at most this many more rounds run to empty the rings.
const DRAIN_ROUNDS: usize = 64;

pub struct BridgeWorker {
    pub worker: Worker,
    pub ue_rx: RxRing,
    pub ue_tx: Transmitter,
    pub inet_rx: RxRing,
    pub inet_tx: Transmitter,
    pub batch: usize,
}

impl BridgeWorker {
    pub fn run(mut self) -> WorkerReport {
        let mut scratch = Vec::with_capacity(self.ue_tx.capacity());
        let mut idle = false;
        let mut draining = 0;
        loop {
            let stopping = sys::stop_requested();
            if idle && !stopping {
                self.worker.wait([self.ue_rx.fd(), self.inet_rx.fd()]);
            }
            let now = self.worker.now();
            if self.worker.between_batches(now) {
                self.read_ring_statistics();
            }
            let Worker {
                engine, out, io, ..
            } = &mut self.worker;
            // Frames held for subscribers whose session just arrived go out first, in order,
            // ahead of anything newer of theirs.
            if engine.has_held_ready() {
                let (ue_tx, inet_tx) = (&mut self.ue_tx, &mut self.inet_tx);
                engine.release_held(now, out, |port, frame, verdict, out| {
                    let (same, other) = match port {
                        Port::Internet => (&mut *inet_tx, &mut *ue_tx),
                        Port::Ue | Port::Any => (&mut *ue_tx, &mut *inet_tx),
                    };
                    transmit(port, frame, &VnetHdr::PLAIN, verdict, out, same, other, io);
                });
            }
            let mut batch = Batch {
                engine,
                out,
                io,
                scratch: &mut scratch,
                now,
                max: self.batch,
            };
            let from_ue = Leg {
                rx: &mut self.ue_rx,
                port: Port::Ue,
                same: &mut self.ue_tx,
                other: &mut self.inet_tx,
            };
            let n = leg(from_ue, &mut batch);
            let from_internet = Leg {
                rx: &mut self.inet_rx,
                port: Port::Internet,
                same: &mut self.inet_tx,
                other: &mut self.ue_tx,
            };
            let n = n + leg(from_internet, &mut batch);
            for tx in [&mut self.ue_tx, &mut self.inet_tx] {
                if let Err(u) = tx.flush() {
                    io.tx_ring_full += u.full as u64;
                    io.tx_errors += u.refused as u64;
                    tracing::trace!(
                        full = u.full,
                        refused = u.refused,
                        errno = u.errno,
                        "transmit flush failed"
                    );
                }
            }
            if n > 0 {
                io.batches += 1;
            }
            idle = n == 0;
            if stopping {
                draining += 1;
                if idle || draining > DRAIN_ROUNDS {
                    break;
                }
            }
        }
        self.read_ring_statistics();
        self.worker.finish()
    }

    fn read_ring_statistics(&mut self) {
        for rx in [&self.ue_rx, &self.inet_rx] {
            if let Ok((_, drops)) = rx.take_statistics() {
                self.worker.io.ring_drops += u64::from(drops);
            }
        }
    }
}

/// The leg a batch is received from, with the transmitters back out of it (`same`) and out of
/// the other leg.
struct Leg<'a> {
    rx: &'a mut RxRing,
    port: Port,
    same: &'a mut Transmitter,
    other: &'a mut Transmitter,
}

/// What the batches of both legs share: the engine, its buffers and counters, the time and the
/// most frames to take.
struct Batch<'a> {
    engine: &'a mut Engine,
    out: &'a mut Output,
    io: &'a mut IoCounters,
    scratch: &'a mut Vec<u8>,
    now: Timestamp,
    max: usize,
}

/// One batch from one leg: every frame through the engine, forwarded frames out of the other
/// leg, injected frames out of the leg they are meant for.
fn leg(leg: Leg<'_>, b: &mut Batch<'_>) -> usize {
    let Leg {
        rx,
        port,
        same,
        other,
    } = leg;
    let Batch {
        engine,
        out,
        io,
        scratch,
        now,
        max,
    } = b;
    let (now, max) = (*now, *max);
    rx.recv_batch(max, |data, meta: RxMeta| {
        io.rx_frames += 1;
        if meta.truncated {
            io.oversize += 1;
            return;
        }
        if meta.csum_not_ready {
            io.csum_not_ready += 1;
            // With offloads kept the header says so and the sending leg finishes it; without,
            // the frame goes out as bytes and nobody else would.
            if meta.vnet.is_none() && finish_partial_checksum(data, Partial::Known) {
                io.csum_finished += 1;
            }
        }
        let tagged = meta.vlan.is_some() && data.len() >= 12;
        let frame: &[u8] = match meta.vlan {
            // The kernel took the tag out of the frame; it is part of what must go out again.
            Some((tpid, tci)) if data.len() >= 12 => {
                scratch.clear();
                scratch.extend_from_slice(&data[..12]);
                scratch.extend_from_slice(&tpid.to_be_bytes());
                scratch.extend_from_slice(&tci.to_be_bytes());
                scratch.extend_from_slice(&data[12..]);
                scratch
            }
            _ => data,
        };
        // The tag put back moves the checksum's start with the bytes after it.
        let hdr = match meta.vnet {
            Some(h) => h.for_transmit(if tagged { 4 } else { 0 }),
            None => VnetHdr::PLAIN,
        };
        let segment_size = hdr.segment_size().unwrap_or(0);
        if segment_size != 0 {
            io.aggregates += 1;
        }
        let verdict = engine.handle_aggregate(now, port, frame, segment_size, out);
        transmit(port, frame, &hdr, verdict, out, same, other, io);
        out.clear();
    })
}

/// Does what the verdict says with a frame that came from `port`: forwarded out of the other
/// leg with its header `hdr`, injected frames out of the leg they are meant for (`same` is the
/// one it came from), each complete, with a plain header.
#[allow(clippy::too_many_arguments)]
fn transmit(
    port: Port,
    frame: &[u8],
    hdr: &VnetHdr,
    verdict: Verdict,
    out: &Output,
    same: &mut Transmitter,
    other: &mut Transmitter,
    io: &mut IoCounters,
) {
    match verdict {
        Verdict::Forward => send(other, hdr, frame, io),
        Verdict::Drop(_) | Verdict::Held => {}
        Verdict::Inject => {
            for (toward, f) in out.frames() {
                let back = matches!(
                    (toward, port),
                    (Toward::Ue, Port::Ue) | (Toward::Internet, Port::Internet)
                );
                let tx = if back { &mut *same } else { &mut *other };
                send(tx, &VnetHdr::PLAIN, f, io);
            }
        }
    }
}

fn send(tx: &mut Transmitter, hdr: &VnetHdr, frame: &[u8], io: &mut IoCounters) {
    match tx.push(hdr, frame, &[]) {
        Ok(()) => io.tx_frames += 1,
        Err(TxError::RingFull) => io.tx_ring_full += 1,
        Err(TxError::TooLarge) => io.oversize += 1,
    }
}
