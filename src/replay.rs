//! `weir replay`: a capture through the engine, with the capture's timestamps as the time.
//!
//! Frames are read in batches and the engine is timed over each batch alone, so the reported
//! throughput excludes file I/O. The capture's clock also drives the engine's housekeeping, as
//! a live worker's clock does: idle flows expire about once a second of capture time, and once
//! more at the last frame, so the report shows the flow table as it stood then.

use crate::engine::{Engine, Output, Port, Report, Verdict};
use crate::io::pcap::{CaptureReader, PcapError, PcapWriter, Record};
use crate::policy::{Config, PolicySnapshot};
use crate::time::Timestamp;
use crate::wire::LinkType;
use serde::Serialize;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod progress;
pub use progress::ProgressBar;

const BATCH: usize = 4096;

/// How far a replay has got, handed to the progress callback once per batch of frames.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes of the capture file read so far.
    pub bytes_read: u64,
    /// The file's size (0 when it cannot be known).
    pub total_bytes: u64,
    /// Frames read so far.
    pub frames: u64,
}

/// How often the engine's housekeeping runs, in capture time: the live worker's interval.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open capture {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create output capture {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("capture {path}: {source}")]
    Capture { path: PathBuf, source: PcapError },
    #[error("capture {path}: frame {frame} has link type {found:?} but the capture started with {first:?}; replay one link type at a time")]
    MixedLinkTypes {
        path: PathBuf,
        frame: u64,
        first: LinkType,
        found: LinkType,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub packets: u64,
    /// Time spent in the engine only.
    pub engine_seconds: f64,
    pub packets_per_second: f64,
    pub ns_per_packet: f64,
}

/// The replay report; its JSON form is documented in the README.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub capture: String,
    pub link_type: &'static str,
    pub first_timestamp: Option<Timestamp>,
    pub last_timestamp: Option<Timestamp>,
    #[serde(flatten)]
    pub report: Report,
    pub throughput: Throughput,
}

/// Replays `input` through an engine built from `config`. `output` receives what the gateway
/// would have sent: each forwarded frame, and each frame the engine injected in answer (302s,
/// SYN-ACKs, resets, ICMP), right after the frame that caused it and with its timestamp.
pub fn replay(
    config: &Config,
    input: &Path,
    output: Option<&Path>,
) -> Result<ReplayReport, ReplayError> {
    replay_with_progress(config, input, output, &mut |_| {})
}

/// [`replay`], calling `progress` after each batch of frames (at most every 4096 frames).
pub fn replay_with_progress(
    config: &Config,
    input: &Path,
    output: Option<&Path>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ReplayReport, ReplayError> {
    let file = File::open(input).map_err(|source| ReplayError::Open {
        path: input.to_path_buf(),
        source,
    })?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let capture_err = |source| ReplayError::Capture {
        path: input.to_path_buf(),
        source,
    };
    let mut reader = CaptureReader::new(BufReader::new(file)).map_err(capture_err)?;
    let snapshot = Arc::new(PolicySnapshot::build(config, 1));

    let mut engine: Option<Engine> = None;
    let mut writer: Option<PcapWriter<BufWriter<File>>> = None;
    let mut link: Option<LinkType> = None;
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    // Per record of the batch: forwarded?, and how many of `out.frames` it injected.
    let mut verdicts: Vec<(bool, usize)> = Vec::with_capacity(BATCH);
    let mut out = Output::default();
    let mut engine_time = std::time::Duration::ZERO;
    let (mut first_ts, mut last_ts) = (None, None);
    let mut frame_no = 0u64;
    // Capture time of the last housekeeping; the clock starts at the first frame.
    let mut housekept: Option<Timestamp> = None;
    loop {
        batch.clear();
        while batch.len() < BATCH {
            match reader.next_record().map_err(capture_err)? {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        progress(&Progress {
            bytes_read: reader.offset(),
            total_bytes,
            frames: frame_no + batch.len() as u64,
        });
        for r in &batch {
            frame_no += 1;
            match link {
                None => link = Some(r.link),
                Some(l) if l != r.link => {
                    return Err(ReplayError::MixedLinkTypes {
                        path: input.to_path_buf(),
                        frame: frame_no,
                        first: l,
                        found: r.link,
                    })
                }
                Some(_) => {}
            }
            first_ts.get_or_insert(r.timestamp);
            last_ts = Some(r.timestamp);
        }
        let engine = engine.get_or_insert_with(|| Engine::new(snapshot.clone(), batch[0].link));
        if writer.is_none() {
            if let Some(path) = output {
                let f = File::create(path).map_err(|source| ReplayError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
                writer = Some(
                    PcapWriter::new(BufWriter::new(f), batch[0].link, 262_144)
                        .map_err(capture_err)?,
                );
            }
        }
        verdicts.clear();
        // The engine appends injected frames; the batch's are written out after timing it.
        out.clear();
        let start = Instant::now();
        // The once-a-second sweep visits the whole flow table, whatever the traffic: it is kept
        // out of the per-packet figure, which measures `handle_frame` alone.
        let mut swept = Duration::ZERO;
        for r in &batch {
            let last = *housekept.get_or_insert(r.timestamp);
            if r.timestamp.saturating_since(last) >= HOUSEKEEPING {
                let sweep = Instant::now();
                engine.handle_timeout(r.timestamp);
                swept += sweep.elapsed();
                housekept = Some(r.timestamp);
            }
            let before = out.frames.len();
            let v = engine.handle_frame(r.timestamp, Port::Any, &r.data, &mut out);
            verdicts.push((v == Verdict::Forward, out.frames.len() - before));
        }
        engine_time += start.elapsed().saturating_sub(swept);
        if let Some(w) = writer.as_mut() {
            let mut injected = out.frames();
            for (r, (forward, n)) in batch.iter().zip(&verdicts) {
                if *forward {
                    w.write(r.timestamp, &r.data).map_err(capture_err)?;
                }
                for (_, frame) in injected.by_ref().take(*n) {
                    w.write(r.timestamp, frame).map_err(capture_err)?;
                }
            }
        }
    }
    if let Some(w) = writer {
        w.finish().map_err(capture_err)?;
    }
    if let (Some(e), Some(last)) = (engine.as_mut(), last_ts) {
        e.handle_timeout(last);
    }
    let report = match &engine {
        Some(e) => e.report(),
        None => Engine::new(snapshot, LinkType::Ethernet).report(),
    };
    let packets = report.totals.frames;
    let secs = engine_time.as_secs_f64();
    Ok(ReplayReport {
        capture: input.display().to_string(),
        link_type: match link {
            Some(LinkType::RawIp) => "raw-ip",
            Some(LinkType::Loopback) => "loopback",
            _ => "ethernet",
        },
        first_timestamp: first_ts,
        last_timestamp: last_ts,
        report,
        throughput: Throughput {
            packets,
            engine_seconds: secs,
            packets_per_second: if secs > 0.0 {
                packets as f64 / secs
            } else {
                0.0
            },
            ns_per_packet: if packets > 0 {
                secs * 1e9 / packets as f64
            } else {
                0.0
            },
        },
    })
}

/// The human-readable form of a report.
pub fn render_text(r: &ReplayReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "capture {} ({})", r.capture, r.link_type);
    let _ = write!(s, "{}", r.report);
    let th = &r.throughput;
    let _ = writeln!(
        s,
        "engine: {} packets in {:.6} s = {:.0} packets/s, {:.1} ns/packet (file I/O and flow sweeps excluded)",
        th.packets, th.engine_seconds, th.packets_per_second, th.ns_per_packet
    );
    s
}
