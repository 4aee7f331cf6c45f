//! Usage from a running gateway: workers publish their raw counters now and then (and promptly
//! when someone asks) into a slot of their own, and a small HTTP endpoint on a local address
//! builds the report from the slots and serves it as JSON at `GET /report`, and the same
//! numbers as Prometheus metrics at `GET /metrics` (see [`super::metrics`]).
//!
//! A worker only copies numbers into its slot, about once a second, and never waits for it: when
//! the report thread is reading the slot, the worker tries again after its next batch. Names,
//! sorting and merging happen on the report thread.

use crate::engine::{Report, Tally, VerdictTotals};
use crate::policy::PolicySnapshot;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Per-worker I/O counters (the engine's own counters hold drops by reason).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IoCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames the receive ring had no room for (the kernel's count): ring overruns.
    pub ring_drops: u64,
    /// Forwarded frames not sent because the transmit ring (or, with `tx_mode = "copy"`, the
    /// socket's send buffer) was full.
    pub tx_ring_full: u64,
    /// Frames larger than a ring slot (an offload merged them, or the MTU outgrew the ring).
    pub oversize: u64,
    /// Frames whose checksum was left to hardware by the sender (checksum offload on the peer).
    pub csum_not_ready: u64,
    /// TCP and UDP checksums a sender left to offload that Weir finished before handling the
    /// frame (AF_PACKET with offloads off says which frames; on AF_XDP the field is read).
    pub csum_finished: u64,
    /// With `offloads = "keep"`: frames received as aggregates of several segments (the
    /// sender's GSO or the leg's GRO), each handled once and metered as its segments.
    pub aggregates: u64,
    /// Failed transmit-ring flushes, and copied frames the kernel refused.
    pub tx_errors: u64,
    /// Routed mode: packets handed to the worker owning their subscriber, received from other
    /// workers, dropped because the owner's queue was full, and dropped because every handoff
    /// buffer of this worker was on its way (`handoff_queue` of them).
    pub handoff_sent: u64,
    pub handoff_received: u64,
    pub handoff_full: u64,
    pub handoff_no_buffer: u64,
    pub batches: u64,
}

impl IoCounters {
    pub fn add(&mut self, o: &IoCounters) {
        self.rx_frames += o.rx_frames;
        self.tx_frames += o.tx_frames;
        self.ring_drops += o.ring_drops;
        self.tx_ring_full += o.tx_ring_full;
        self.oversize += o.oversize;
        self.csum_not_ready += o.csum_not_ready;
        self.csum_finished += o.csum_finished;
        self.aggregates += o.aggregates;
        self.tx_errors += o.tx_errors;
        self.handoff_sent += o.handoff_sent;
        self.handoff_received += o.handoff_received;
        self.handoff_full += o.handoff_full;
        self.handoff_no_buffer += o.handoff_no_buffer;
        self.batches += o.batches;
    }
}

/// One worker's published state: its I/O counters and its engine's raw counters.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub worker: usize,
    pub core: usize,
    pub io: IoCounters,
    pub tally: Tally,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkerSummary {
    pub worker: usize,
    pub core: usize,
    pub io: IoCounters,
    pub frames: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub drop_reasons: std::collections::BTreeMap<&'static str, u64>,
    /// Flows in its table now (each flow lives on the worker that owns its subscriber).
    pub flows: u64,
    /// Its events for the control plane: sent, waiting, coalesced, dropped by kind.
    pub events: crate::engine::EventCounters,
}

/// The report of a running (or just stopped) gateway: the usage report `weir replay` prints,
/// summed over workers, plus each worker's counters.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayReport {
    pub mode: &'static str,
    pub io: IoCounters,
    pub workers: Vec<WorkerSummary>,
    #[serde(flatten)]
    pub report: Report,
}

impl GatewayReport {
    /// The report of the workers' counters, subscribers named from `snapshot`.
    pub fn from_workers(
        mode: &'static str,
        workers: &[WorkerReport],
        snapshot: &PolicySnapshot,
    ) -> GatewayReport {
        let mut io = IoCounters::default();
        let mut summaries = Vec::with_capacity(workers.len());
        for w in workers {
            io.add(&w.io);
            let t = VerdictTotals::from(&w.tally.counters);
            summaries.push(WorkerSummary {
                worker: w.worker,
                core: w.core,
                io: w.io.clone(),
                frames: t.frames,
                forwarded: t.forwarded,
                dropped: t.dropped,
                drop_reasons: t.drop_reasons,
                flows: w.tally.flows.active,
                events: w.tally.events.clone(),
            });
        }
        GatewayReport {
            mode,
            io,
            workers: summaries,
            report: Report::from_tallies(workers.iter().map(|w| &w.tally), Some(snapshot)),
        }
    }
}

/// Where workers publish: one slot each.
pub struct Board {
    mode: &'static str,
    /// The policy in force, for the subscribers' names.
    policy: Arc<ArcSwap<PolicySnapshot>>,
    slots: Vec<Mutex<Option<WorkerReport>>>,
    /// Bumped by a reader that wants fresh numbers; workers publish when they see it move.
    wanted: AtomicU64,
    answered: Vec<AtomicU64>,
    /// The control plane's request metrics, rendered by `/metrics` when handed over.
    control: std::sync::OnceLock<crate::metrics::ControlMetrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked mid-copy leaves numbers, not broken invariants.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Board {
    pub fn new(
        mode: &'static str,
        workers: usize,
        policy: Arc<ArcSwap<PolicySnapshot>>,
    ) -> Arc<Board> {
        Arc::new(Board {
            mode,
            policy,
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
            wanted: AtomicU64::new(0),
            answered: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            control: std::sync::OnceLock::new(),
        })
    }

    /// Hands over the control plane's metrics for `/metrics` to render; the first one given
    /// stays.
    pub fn set_control_metrics(&self, metrics: crate::metrics::ControlMetrics) {
        let _ = self.control.set(metrics);
    }

    /// The request generation a worker should answer, if newer than `seen`.
    pub fn wanted_after(&self, seen: u64) -> Option<u64> {
        let w = self.wanted.load(Ordering::Acquire);
        (w > seen).then_some(w)
    }

    /// Lets worker `worker` write its numbers into its slot with `fill`, answering request
    /// `generation`, unless the report thread is reading the slot right now: then nothing
    /// happens and false comes back. Never waits.
    pub fn try_publish(
        &self,
        worker: usize,
        generation: u64,
        fill: impl FnOnce(&mut WorkerReport),
    ) -> bool {
        let Some(slot) = self.slots.get(worker) else {
            return true;
        };
        let mut slot = match slot.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        fill(slot.get_or_insert_with(WorkerReport::default));
        drop(slot);
        if let Some(a) = self.answered.get(worker) {
            a.fetch_max(generation, Ordering::AcqRel);
        }
        true
    }

    /// Publishes a worker's last numbers, waiting for the slot if need be (the worker is done).
    pub fn publish_last(&self, report: &WorkerReport) {
        if let Some(slot) = self.slots.get(report.worker) {
            *lock(slot) = Some(report.clone());
        }
        if let Some(a) = self.answered.get(report.worker) {
            a.store(u64::MAX, Ordering::Release);
        }
    }

    /// Asks every worker for fresh numbers, waits up to `timeout` for them, and builds the
    /// report from what is there.
    pub fn fresh(&self, timeout: Duration) -> GatewayReport {
        self.wait_fresh(timeout);
        self.current()
    }

    /// The Prometheus exposition of fresh numbers (asked for and waited on as by [`fresh`]).
    ///
    /// [`fresh`]: Board::fresh
    pub fn fresh_metrics(&self, timeout: Duration) -> String {
        self.wait_fresh(timeout);
        super::metrics::render(&self.workers(), &self.policy.load(), self.control.get())
    }

    fn wait_fresh(&self, timeout: Duration) {
        let generation = self.wanted.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline
            && self
                .answered
                .iter()
                .any(|a| a.load(Ordering::Acquire) < generation)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The numbers published so far, by worker. Each slot is held only while it is copied.
    fn workers(&self) -> Vec<WorkerReport> {
        self.slots.iter().filter_map(|s| lock(s).clone()).collect()
    }

    /// The report of the numbers published so far; built after the slots are copied.
    pub fn current(&self) -> GatewayReport {
        GatewayReport::from_workers(self.mode, &self.workers(), &self.policy.load())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for report requests on {address}: {source} (set report_listen in [dataplane], or \"\" to turn it off)")]
pub struct ListenError {
    pub address: String,
    pub source: std::io::Error,
}

/// Binds the report endpoint; serving starts with [`serve`].
pub fn listen(address: &str) -> Result<TcpListener, ListenError> {
    let l = TcpListener::bind(address).map_err(|source| ListenError {
        address: address.to_string(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| ListenError {
        address: address.to_string(),
        source,
    })?;
    Ok(l)
}

/// Serves `GET /report` and `GET /metrics` until `stop()` is true. One request at a time: it is an operator's tool.
pub fn serve(listener: TcpListener, board: Arc<Board>, stop: impl Fn() -> bool) {
    while !stop() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, &board) {
                    tracing::debug!(%peer, error = %e, "report request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "report endpoint accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, board: &Board) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let first = request.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut content_type = "application/json";
    let (status, body) = if method == "GET" && path == "/metrics" {
        content_type = crate::metrics::CONTENT_TYPE;
        ("200 OK", board.fresh_metrics(Duration::from_secs(1)))
    } else if method == "GET" && (path == "/report" || path == "/report/") {
        let report = board.fresh(Duration::from_secs(1));
        match serde_json::to_string_pretty(&report) {
            Ok(s) => ("200 OK", s + "\n"),
            Err(e) => (
                "500 Internal Server Error",
                format!("{{\"error\":\"{e}\"}}\n"),
            ),
        }
    } else {
        (
            "404 Not Found",
            "{\"error\":\"only GET /report and GET /metrics are served here\"}\n".to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The human-readable form printed when `weir run` stops: the mode, each worker's I/O, then the
/// same report `weir replay` prints.
pub fn render_text(r: &GatewayReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{} mode", r.mode);
    for w in &r.workers {
        let io = &w.io;
        let _ = writeln!(
            s,
            "worker {} (core {}): rx {}  tx {}  ring drops {}  tx ring full {}  oversize {}  handoff out {} in {} full {} no buffer {}",
            w.worker, w.core, io.rx_frames, io.tx_frames, io.ring_drops, io.tx_ring_full,
            io.oversize, io.handoff_sent, io.handoff_received, io.handoff_full, io.handoff_no_buffer
        );
    }
    let _ = write!(s, "{}", r.report);
    s
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::{Engine, Output, Port, Verdict};
    use crate::policy::Config;
    use crate::time::Timestamp;
    use crate::wire::LinkType;

    const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]
idle_timeout = { udp = 60 }

[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
monitoring_key = "mk-dns"
flow = [{ description = "permit out 17 from any 53 to assigned" }]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
predefined = ["dns"]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.3"
default_rule = { action = "forward", rating_group = 7 }
"#;

    /// Two subscribers: one with a DNS rule (rating group 1), one metered by its default rule
    /// (rating group 7). UDP idles out after 60 s.
    pub(in crate::dataplane) fn policy() -> Arc<ArcSwap<PolicySnapshot>> {
        let config = Config::from_toml_str(CONFIG, "t.toml").unwrap();
        Arc::new(ArcSwap::from_pointee(PolicySnapshot::build(&config, 1)))
    }

    /// A raw IPv4/UDP packet of `payload` bytes of payload.
    pub(in crate::dataplane) fn udp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: usize,
    ) -> Vec<u8> {
        let total = (28 + payload) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend(src);
        p.extend(dst);
        p.extend(sport.to_be_bytes());
        p.extend(dport.to_be_bytes());
        p.extend((8 + payload as u16).to_be_bytes());
        p.extend([0, 0]);
        p.resize(usize::from(total), 0);
        p
    }

    fn traffic(e: &mut Engine, rounds: u64) {
        let mut out = Output::default();
        for i in 0..rounds {
            let now = Timestamp::from_secs(100 + i);
            for p in [
                udp([10, 45, 0, 2], 5000, [192, 0, 2, 53], 53, 30),
                udp([192, 0, 2, 53], 53, [10, 45, 0, 2], 5000, 100),
                udp([10, 45, 0, 3], 6000, [198, 51, 100, 10], 9000, 200),
            ] {
                assert_eq!(
                    e.handle_frame(now, Port::Any, &p, &mut out),
                    Verdict::Forward
                );
            }
        }
    }

    fn publish(board: &Board, e: &Engine, io: &IoCounters) -> bool {
        board.try_publish(0, 1, |slot| {
            slot.worker = 0;
            slot.core = 3;
            slot.io.clone_from(io);
            slot.tally.copy_from(e);
        })
    }

    #[test]
    fn the_report_is_built_from_published_counters_and_named_by_the_policy() {
        let policy = policy();
        let board = Board::new("routed", 1, Arc::clone(&policy));
        let mut e = Engine::new(policy.load_full(), LinkType::RawIp);
        traffic(&mut e, 3);
        let io = IoCounters {
            rx_frames: 9,
            ..IoCounters::default()
        };
        assert!(publish(&board, &e, &io));
        let r = board.current();
        assert_eq!(r.report, Report::from_engines(std::slice::from_ref(&e)));
        assert_eq!(r.io.rx_frames, 9);
        assert_eq!((r.workers[0].core, r.workers[0].frames), (3, 9));
        let rows: Vec<(&str, u32, u64, u64)> = r
            .report
            .rating_groups
            .iter()
            .map(|u| {
                (
                    u.subscriber.as_str(),
                    u.rating_group,
                    u.usage.uplink_bytes,
                    u.usage.downlink_bytes,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("imsi-001010000000001", 1, 3 * 58, 3 * 128),
                ("imsi-001010000000002", 7, 3 * 228, 0)
            ]
        );
        assert_eq!(r.report.monitoring_keys[0].monitoring_key, "mk-dns");
        assert_eq!(r.report.monitoring_keys[0].usage.uplink_packets, 3);
        let hits: Vec<(&str, &str, u64)> = r
            .report
            .rules
            .iter()
            .map(|h| (h.subscriber.as_str(), h.rule.as_str(), h.packets))
            .collect();
        assert_eq!(hits, [("imsi-001010000000001", "dns", 6)]);
        assert_eq!(r.report.flows.created, 2);
    }

    #[test]
    fn a_worker_never_waits_for_the_report_thread() {
        let policy = policy();
        let board = Board::new("bridge", 1, Arc::clone(&policy));
        let e = Engine::new(policy.load_full(), LinkType::RawIp);
        let held = board.slots[0].lock().unwrap();
        let started = Instant::now();
        assert!(!publish(&board, &e, &IoCounters::default()));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(board.wanted_after(0).is_none());
        assert_eq!(board.answered[0].load(Ordering::Relaxed), 0);
        drop(held);
        assert!(publish(&board, &e, &IoCounters::default()));
        assert_eq!(board.answered[0].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn copying_the_counters_again_reuses_the_storage() {
        let policy = policy();
        let mut e = Engine::new(policy.load_full(), LinkType::RawIp);
        traffic(&mut e, 1);
        let mut tally = Tally::of(&e);
        let (usage, hits) = (tally.usage.as_ptr(), tally.hits.as_ptr());
        traffic(&mut e, 5);
        tally.copy_from(&e);
        assert_eq!((tally.usage.as_ptr(), tally.hits.as_ptr()), (usage, hits));
        assert_eq!(tally.counters.frames, 18);
        assert_eq!(tally.hits[0].2, 12);
        let rg7 = tally
            .usage
            .iter()
            .find(|(m, _)| matches!(m, crate::charging::Metered::RatingGroup(_, 7)))
            .unwrap();
        assert_eq!(rg7.1.uplink_packets, 6);
    }
}
