//! Bridge mode on AF_XDP (`backend = "af_xdp"`): each leg gets the steering program and one
//! XSK socket on its receive queue; the worker receives from each leg's socket, runs the engine,
//! and copies what it forwards into the other leg's UMEM to send it.
//!
//! One worker, one queue per leg for now: the kernel spreads a NIC's frames over queues by its
//! own hash, not by the UE address, so with several queues and workers a subscriber's two
//! directions could land on different workers. Until the program steers by the UE address the
//! backend refuses more than one worker or a leg with more than one receive queue.

use super::config::{DataplaneConfig, Offloads};
use super::report::{IoCounters, WorkerReport};
use super::worker::Worker;
use super::RunError;
use crate::engine::{Engine, Output, Port, Toward, Verdict};
use crate::io::sys;
use crate::io::xdp::{self, XdpMode, XdpSteering, XskConfig, XskSocket, XskTxError};
use crate::time::Timestamp;
use crate::wire::{finish_partial_checksum, Partial};

/// After a stop request, at most this many more rounds run to empty the rings.
const DRAIN_ROUNDS: usize = 64;

/// In front of every received frame the kernel keeps XDP_PACKET_HEADROOM in its chunk.
const XDP_HEADROOM: u32 = 256;

/// Room a frame needs besides the MTU: the link header and two VLAN tags.
const LINK_OVERHEAD: u32 = 14 + 8;

/// The geometry of each leg's socket: chunks of 2048 bytes unless `frame_size` asks for more,
/// rings of `rx_frames` rounded up to a power of two.
pub fn socket_config(dp: &DataplaneConfig) -> XskConfig {
    XskConfig {
        ring_size: dp.rx_frames.next_power_of_two().clamp(64, 16_384),
        frame_size: if dp.frame_size <= 2048 { 2048 } else { 4096 },
        mode: XdpMode::Auto,
    }
}

/// Checks what the backend cannot do yet, then attaches the program to both legs and opens
/// their sockets.
pub fn open(
    ue: &str,
    inet: &str,
    dp: &DataplaneConfig,
    workers: usize,
    worker: Worker,
) -> Result<XdpBridgeWorker, RunError> {
    if workers != 1 {
        return Err(RunError::XdpWorkers { workers });
    }
    let config = socket_config(dp);
    for leg in [ue, inet] {
        let queues = xdp::rx_queue_count(leg).map_err(|source| RunError::XdpQueues {
            interface: leg.to_string(),
            source,
        })?;
        if queues != 1 {
            return Err(RunError::XdpManyQueues {
                interface: leg.to_string(),
                queues,
            });
        }
        let mtu = sys::interface_mtu(leg).map_err(|source| RunError::Mtu {
            interface: leg.to_string(),
            source,
        })?;
        let needed = mtu + LINK_OVERHEAD + XDP_HEADROOM;
        if config.frame_size < needed {
            return Err(RunError::FrameTooSmall {
                interface: leg.to_string(),
                mtu,
                needed,
                frame_size: dp.frame_size,
            });
        }
    }
    debug_assert_eq!(dp.offloads, Offloads::Off, "the configuration refuses keep");
    let attach = |leg: &str| -> Result<(XdpSteering, XskSocket), RunError> {
        let steering = XdpSteering::attach(leg, 1)?;
        let socket = XskSocket::open(leg, 0, &config)?;
        steering.insert(&socket)?;
        Ok((steering, socket))
    };
    let (ue_steering, ue_socket) = attach(ue)?;
    let (inet_steering, inet_socket) = attach(inet)?;
    Ok(XdpBridgeWorker {
        worker,
        ue: ue_socket,
        inet: inet_socket,
        batch: dp.batch as u32,
        back: [Deferred::default(), Deferred::default()],
        drops_seen: 0,
        _steering: [ue_steering, inet_steering],
    })
}

pub struct XdpBridgeWorker {
    pub worker: Worker,
    ue: XskSocket,
    inet: XskSocket,
    batch: u32,
    /// Injected frames waiting to go back out of the UE leg (0) and the internet leg (1).
    back: [Deferred; 2],
    /// The sockets' drop counters are cumulative; what was already added to `io`.
    drops_seen: u64,
    // Declared after the sockets, so it is dropped after them: the programs leave the legs once
    // nothing is bound any more.
    _steering: [XdpSteering; 2],
}

impl XdpBridgeWorker {
    pub fn interfaces(&self) -> [(&str, bool); 2] {
        [
            (self.ue.interface(), self.ue.is_zero_copy()),
            (self.inet.interface(), self.inet.is_zero_copy()),
        ]
    }

    pub fn run(mut self) -> WorkerReport {
        let mut idle = false;
        let mut draining = 0;
        loop {
            let stopping = sys::stop_requested();
            if idle && !stopping {
                self.worker.wait([self.ue.fd(), self.inet.fd()]);
            }
            let now = self.worker.now();
            if self.worker.between_batches(now) {
                self.read_statistics();
            }
            let Worker {
                engine, out, io, ..
            } = &mut self.worker;
            let [back_ue, back_inet] = &mut self.back;
            if engine.has_held_ready() {
                let (ue, inet) = (&mut self.ue, &mut self.inet);
                engine.release_held(now, out, |port, frame, verdict, out| {
                    let (other, back) = match port {
                        Port::Internet => (&mut *ue, &mut *back_inet),
                        Port::Ue | Port::Any => (&mut *inet, &mut *back_ue),
                    };
                    act(port, frame, verdict, out, other, back, io);
                });
                back_ue.send_all(&mut self.ue, io);
                back_inet.send_all(&mut self.inet, io);
            }
            let mut b = Batch {
                engine,
                out,
                io,
                now,
                max: self.batch,
            };
            let n = leg(&mut self.ue, &mut self.inet, Port::Ue, back_ue, &mut b)
                + leg(
                    &mut self.inet,
                    &mut self.ue,
                    Port::Internet,
                    back_inet,
                    &mut b,
                );
            for socket in [&mut self.ue, &mut self.inet] {
                if let Err(e) = socket.flush() {
                    io.tx_errors += 1;
                    tracing::trace!(interface = socket.interface(), error = %e, "transmit kick failed");
                }
            }
            if n > 0 {
                io.batches += 1;
            }
            // Frames still on their way out keep the worker from sleeping on receive.
            idle = n == 0 && self.ue.tx_in_flight() == 0 && self.inet.tx_in_flight() == 0;
            if stopping {
                draining += 1;
                if idle || draining > DRAIN_ROUNDS {
                    break;
                }
            }
        }
        self.read_statistics();
        self.worker.finish()
    }

    fn read_statistics(&mut self) {
        let mut drops = 0;
        for socket in [&self.ue, &self.inet] {
            if let Ok(s) = socket.statistics() {
                drops += s.rx_dropped + s.rx_ring_full;
            }
        }
        self.worker.io.ring_drops += drops.saturating_sub(self.drops_seen);
        self.drops_seen = drops.max(self.drops_seen);
    }
}

/// Frames injected back out of the leg a batch is being received from: they wait here, copied,
/// until the batch has given the socket back.
#[derive(Default)]
struct Deferred {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Deferred {
    fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    fn send_all(&mut self, socket: &mut XskSocket, io: &mut IoCounters) {
        let mut start = 0;
        for &end in &self.ends {
            send(socket, &self.bytes[start..end], io);
            start = end;
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

struct Batch<'a> {
    engine: &'a mut Engine,
    out: &'a mut Output,
    io: &'a mut IoCounters,
    now: Timestamp,
    max: u32,
}

/// One batch from `rx`'s leg: every frame through the engine, forwarded frames out of `other`,
/// frames injected back toward this leg sent once the batch is done.
fn leg(
    rx: &mut XskSocket,
    other: &mut XskSocket,
    port: Port,
    back: &mut Deferred,
    b: &mut Batch<'_>,
) -> usize {
    let Batch {
        engine,
        out,
        io,
        now,
        max,
    } = b;
    let n = rx.recv_batch(*max, |frame| {
        io.rx_frames += 1;
        // XDP hands over a frame's bytes without the kernel's word on its checksum: a sender
        // that left it to offload (veth's default) is recognised by the field itself.
        if finish_partial_checksum(frame, Partial::IfBegun) {
            io.csum_finished += 1;
        }
        let frame = &*frame;
        let verdict = engine.handle_frame(*now, port, frame, out);
        act(port, frame, verdict, out, other, back, io);
        out.clear();
    });
    back.send_all(rx, io);
    n as usize
}

fn is_back(toward: Toward, port: Port) -> bool {
    matches!(
        (toward, port),
        (Toward::Ue, Port::Ue) | (Toward::Internet, Port::Internet)
    )
}

/// Does what the verdict says with a frame from `port`: forwarded and injected frames for the
/// other leg go out of `other` at once, injected frames for the leg it came from wait in `back`.
fn act(
    port: Port,
    frame: &[u8],
    verdict: Verdict,
    out: &Output,
    other: &mut XskSocket,
    back: &mut Deferred,
    io: &mut IoCounters,
) {
    match verdict {
        Verdict::Forward => send(other, frame, io),
        Verdict::Drop(_) | Verdict::Held => {}
        Verdict::Inject => {
            for (toward, f) in out.frames() {
                if is_back(toward, port) {
                    back.push(f);
                } else {
                    send(other, f, io);
                }
            }
        }
    }
}

fn send(socket: &mut XskSocket, frame: &[u8], io: &mut IoCounters) {
    match socket.send(frame) {
        Ok(()) => io.tx_frames += 1,
        Err(XskTxError::RingFull) => io.tx_ring_full += 1,
        Err(XskTxError::TooLarge) => io.oversize += 1,
    }
}
