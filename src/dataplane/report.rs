//! Usage from a running gateway: workers publish their report now and then (and promptly when
//! someone asks), and a small HTTP endpoint on a local address serves the merged report as JSON
//! at `GET /report`. The board's lock is taken about once a second per worker, never per packet.

use crate::engine::Report;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Failed transmit-ring flushes, and copied frames the kernel refused.
    pub tx_errors: u64,
    /// Routed mode: packets handed to the worker owning their subscriber, received from other
    /// workers, and dropped because the owner's queue was full.
    pub handoff_sent: u64,
    pub handoff_received: u64,
    pub handoff_full: u64,
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
        self.tx_errors += o.tx_errors;
        self.handoff_sent += o.handoff_sent;
        self.handoff_received += o.handoff_received;
        self.handoff_full += o.handoff_full;
        self.batches += o.batches;
    }
}

/// One worker's published state.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    pub core: usize,
    pub io: IoCounters,
    #[serde(skip)]
    pub report: Report,
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
    pub fn from_workers(mode: &'static str, workers: &[WorkerReport]) -> GatewayReport {
        let mut io = IoCounters::default();
        let mut summaries = Vec::with_capacity(workers.len());
        let mut reports = Vec::with_capacity(workers.len());
        for w in workers {
            io.add(&w.io);
            let t = &w.report.totals;
            summaries.push(WorkerSummary {
                worker: w.worker,
                core: w.core,
                io: w.io.clone(),
                frames: t.frames,
                forwarded: t.forwarded,
                dropped: t.dropped,
                drop_reasons: t.drop_reasons.clone(),
            });
            reports.push(w.report.clone());
        }
        GatewayReport {
            mode,
            io,
            workers: summaries,
            report: Report::merge(&reports),
        }
    }
}

/// Where workers publish.
pub struct Board {
    mode: &'static str,
    slots: Mutex<Vec<Option<WorkerReport>>>,
    /// Bumped by a reader that wants fresh numbers; workers publish when they see it move.
    wanted: AtomicU64,
    answered: Vec<AtomicU64>,
}

impl Board {
    pub fn new(mode: &'static str, workers: usize) -> Arc<Board> {
        Arc::new(Board {
            mode,
            slots: Mutex::new(vec![None; workers]),
            wanted: AtomicU64::new(0),
            answered: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The request generation a worker should answer, if newer than `seen`.
    pub fn wanted_after(&self, seen: u64) -> Option<u64> {
        let w = self.wanted.load(Ordering::Acquire);
        (w > seen).then_some(w)
    }

    pub fn publish(&self, report: WorkerReport, generation: u64) {
        let i = report.worker;
        {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(report);
            }
        }
        if let Some(a) = self.answered.get(i) {
            a.fetch_max(generation, Ordering::AcqRel);
        }
    }

    /// Asks every worker for fresh numbers, waits up to `timeout` for them, and merges what is
    /// there.
    pub fn fresh(&self, timeout: Duration) -> GatewayReport {
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
        self.current()
    }

    pub fn current(&self) -> GatewayReport {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let workers: Vec<WorkerReport> = slots.iter().flatten().cloned().collect();
        GatewayReport::from_workers(self.mode, &workers)
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

/// Serves `GET /report` until `stop()` is true. One request at a time: it is an operator's tool.
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
    let (status, body) = if method == "GET" && (path == "/report" || path == "/report/") {
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
            "{\"error\":\"only GET /report is served here\"}\n".to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
            "worker {} (core {}): rx {}  tx {}  ring drops {}  tx ring full {}  oversize {}  handoff out {} in {} full {}",
            w.worker, w.core, io.rx_frames, io.tx_frames, io.ring_drops, io.tx_ring_full,
            io.oversize, io.handoff_sent, io.handoff_received, io.handoff_full
        );
    }
    let _ = write!(s, "{}", r.report);
    s
}
