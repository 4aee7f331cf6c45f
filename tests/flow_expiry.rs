//! `weir replay` expires idle flows on the capture's clock, as a live run does, and counts each
//! flow it creates, expires and still holds exactly.
//!
//! The independent side: tshark's per-frame timestamps and 5-tuples, oriented the way the
//! generated config orients them (a client address is the subscriber's end), and the configured
//! idle timeouts. A flow starts with its first frame, and starts again (one expired, one
//! created) with a frame that comes more than its protocol's timeout after the flow's previous
//! one; at the capture's last frame, a flow idle longer than its timeout has expired and any
//! other is active.

mod tshark;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Idle timeouts in seconds: (tcp, udp, icmp, other).
type Timeouts = (u64, u64, u64, u64);

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Flows {
    created: u64,
    expired: u64,
    active: u64,
}

fn last_frame_time(pcap: &Path) -> u64 {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("tshark");
    assert!(out.status.success(), "tshark failed on {}", pcap.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().expect("a capture with frames");
    let (secs, frac) = last.split_once('.').unwrap_or((last, ""));
    secs.parse::<u64>().expect("seconds") * 1_000_000_000
        + format!("{frac:0<9}")[..9].parse::<u64>().expect("fraction")
}

/// The counts, and how many frames started a flow again on a 5-tuple seen before.
fn independent_flows(
    frames: &[tshark::Frame],
    clients: &[String],
    t: Timeouts,
    end: u64,
) -> (Flows, u64) {
    let timeout_ns = |protocol: u8| {
        1_000_000_000
            * match protocol {
                6 => t.0,
                17 => t.1,
                1 | 58 => t.2,
                _ => t.3,
            }
    };
    let mut last_seen: BTreeMap<(&str, &str, u16, u16, u8), u64> = BTreeMap::new();
    let mut n = Flows::default();
    let mut returned = 0;
    for f in frames.iter().filter(|f| !f.neighbor_discovery) {
        let key = if clients.contains(&f.src) {
            (
                f.src.as_str(),
                f.dst.as_str(),
                f.src_port,
                f.dst_port,
                f.protocol,
            )
        } else if clients.contains(&f.dst) {
            (
                f.dst.as_str(),
                f.src.as_str(),
                f.dst_port,
                f.src_port,
                f.protocol,
            )
        } else {
            continue;
        };
        match last_seen.insert(key, f.time_ns) {
            None => n.created += 1,
            Some(prev) if f.time_ns.saturating_sub(prev) > timeout_ns(f.protocol) => {
                n.expired += 1;
                n.created += 1;
                returned += 1;
            }
            Some(_) => {}
        }
    }
    for (key, last) in &last_seen {
        if end.saturating_sub(*last) > timeout_ns(key.4) {
            n.expired += 1;
        } else {
            n.active += 1;
        }
    }
    (n, returned)
}

fn replay_flows(pcap: &Path, config: &Path) -> (Flows, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["replay", "--json", "--config"])
        .arg(config)
        .arg("--pcap")
        .arg(pcap)
        .output()
        .expect("run weir");
    assert!(
        out.status.success(),
        "weir replay {} failed: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let n = |k: &str| r["flows"][k].as_u64().expect(k);
    (
        Flows {
            created: n("created"),
            expired: n("expired"),
            active: n("active"),
        },
        n("evicted"),
    )
}

#[test]
fn replay_expires_idle_flows_exactly_as_an_independent_count_says() {
    let tmp = std::env::temp_dir().join(format!("weir-flow-expiry-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let config = tmp.join("weir.toml");
    let mut returned = 0;
    let mut mostly_idle = Vec::new();
    for pcap in tshark::captures() {
        let frames = tshark::frames(&pcap);
        let clients = tshark::clients(&frames);
        let end = last_frame_time(&pcap);
        // The shortest timeouts the config allows, mixed ones, and the defaults.
        for timeouts in [(1, 1, 1, 1), (5, 2, 1, 3), (300, 60, 30, 60)] {
            let (tcp, udp, icmp, other) = timeouts;
            let extra = format!(
                "idle_timeout = {{ tcp = {tcp}, udp = {udp}, icmp = {icmp}, other = {other} }}"
            );
            std::fs::write(&config, tshark::config_for(&clients, &extra)).expect("write config");
            let (want, again) = independent_flows(&frames, &clients, timeouts, end);
            let (got, evicted) = replay_flows(&pcap, &config);
            assert_eq!(
                got,
                want,
                "{} with idle timeouts {timeouts:?}",
                pcap.display()
            );
            assert_eq!(evicted, 0, "{}", pcap.display());
            returned += again;
            if want.expired > 2 * want.active {
                mostly_idle.push(pcap.clone());
            }
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    // The counts above are not all trivial: some 5-tuples return after idling out, and in some
    // captures most flows have idled out by the end.
    assert!(returned > 0, "no 5-tuple returned after its idle timeout");
    let long = tshark::data_dir().join("zeek-wikipedia.pcap");
    assert!(
        mostly_idle.contains(&long),
        "zeek-wikipedia.pcap should end with most flows expired: {mostly_idle:?}"
    );
}
