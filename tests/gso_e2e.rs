//! TCP through `weir run` with the segmentation offloads left on (`offloads = "keep"`), in network
//! namespaces built by `scripts/lab.sh` (uniquely named, torn down by a guard).
//!
//! The topology is the one a gateway between two NICs sees. The client's veth keeps every
//! offload, so its TCP leaves as 64 KiB TSO aggregates and arrives that way too. On the server
//! side the "wire" carries frames of one MTU, as a cable does: the server segments in software
//! (TSO off), the gateway's leg merges what arrives (GRO on) and has no TSO, so the aggregates
//! Weir sends that way are cut into segments by the kernel before they reach the cable. A
//! capture on the server's interface therefore sees the wire's frames, and the usage Weir meters
//! per rating group must equal, byte for byte and packet for packet, the IP bytes in it.
//!
//! Needs root; without it each test says it was skipped (under CI, a skip is a failure).

mod common;

use common::{netns, ok, repo, root_or_skip, run, Lab};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INET4: &str = "198.51.100.10";
const UE4: &str = "10.45.0.2";

/// Rating group → [uplink bytes, uplink packets, downlink bytes, downlink packets].
type Usage = BTreeMap<u32, [u64; 4]>;

fn ethtool(ns: &str, dev: &str, settings: &[&str]) {
    let mut args = vec!["ethtool", "-K", dev];
    args.extend_from_slice(settings);
    // ethtool exits non-zero when one of several features is fixed; what matters is checked
    // by the aggregate counts below.
    run(&mut netns(ns, &args), Duration::from_secs(5));
}

/// The capture's usage under the lab's rules: TCP to or from port 80 is rating group 10,
/// anything else with the subscriber's address 99 (no blocked ports are used here).
fn capture_usage(pcap: &Path) -> Usage {
    let out = ok(
        Command::new("tshark").args(["-n", "-r"]).arg(pcap).args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=f",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.len",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ]),
        Duration::from_secs(60),
    );
    let mut usage = Usage::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 5 || f[0].is_empty() {
            continue;
        }
        let uplink = match (f[0] == UE4, f[1] == UE4) {
            (true, _) => true,
            (_, true) => false,
            _ => continue,
        };
        let remote = if uplink { f[4] } else { f[3] };
        let rg = if remote == "80" { 10 } else { 99 };
        let e = usage.entry(rg).or_default();
        let i = if uplink { 0 } else { 2 };
        e[i] += f[2].parse::<u64>().unwrap();
        e[i + 1] += 1;
    }
    usage
}

fn live_report(gw: &str) -> serde_json::Value {
    serde_json::from_str(&ok(
        &mut netns(
            gw,
            &[
                "curl",
                "-s",
                "--max-time",
                "5",
                "http://127.0.0.1:9464/report",
            ],
        ),
        Duration::from_secs(10),
    ))
    .unwrap()
}

fn sha256(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path), Duration::from_secs(10));
    out.split_whitespace().next().unwrap().to_string()
}

fn aggregates_are_forwarded_whole_and_metered_as_the_wire_carries_them(test: &str, tx_mode: &str) {
    if !root_or_skip(test) {
        return;
    }
    let config = std::env::temp_dir().join(format!("weir-{test}-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(repo().join("examples/lab.toml")).unwrap();
    let text = text.replace(
        "[dataplane]\n",
        &format!("[dataplane]\noffloads = \"keep\"\ntx_mode = \"{tx_mode}\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up(
        test,
        &[
            ("WEIR_LAB_CLIENTS", "ue"),
            ("WEIR_LAB_PORTAL", "0"),
            ("WEIR_LAB_PCRF", "0"),
            ("WEIR_LAB_CONFIG", config.to_str().unwrap()),
        ],
    );
    let _ = std::fs::remove_file(&config);
    let (ue, gw, inet) = (lab.ns("ue"), lab.ns("gw"), lab.ns("inet"));
    // The lab turns the endpoints' offloads off; this test wants the client's back, and the
    // server side as a cable with GRO on the gateway's leg (see the top of the file).
    ethtool(&ue, "eth0", &["tx", "on", "tso", "on", "gso", "on"]);
    ethtool(&inet, "eth0", &["tx", "on", "tso", "off", "gso", "off"]);
    ethtool(&gw, "gw-inet", &["gro", "on", "tso", "off"]);
    // Nothing but the subscriber's own traffic: pinned neighbours, no router solicitations.
    for ns in [&ue, &inet] {
        ok(
            &mut netns(
                ns,
                &[
                    "sh",
                    "-c",
                    "for f in /proc/sys/net/ipv6/conf/*/router_solicitations; do echo 0 > $f; done",
                ],
            ),
            Duration::from_secs(5),
        );
    }
    let mac = |ns: &str| {
        ok(
            &mut netns(ns, &["cat", "/sys/class/net/eth0/address"]),
            Duration::from_secs(5),
        )
        .trim()
        .to_string()
    };
    let (ue_mac, inet_mac) = (mac(&ue), mac(&inet));
    for (ns, addr, lladdr) in [(&ue, INET4, &inet_mac), (&inet, UE4, &ue_mac)] {
        ok(
            Command::new("ip").args([
                "-n",
                ns,
                "neigh",
                "replace",
                addr,
                "lladdr",
                lladdr,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]),
            Duration::from_secs(5),
        );
    }
    let before = live_report(&gw);
    assert_eq!(
        before["rating_groups"].as_array().map(Vec::len),
        Some(0),
        "{before}"
    );

    // Immediate mode: every frame is written as it comes, none left in a half-full block when
    // the capture stops.
    let pcap = lab.state.join("inet.pcap");
    let mut dump = netns(
        &inet,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "--immediate-mode",
            "-s",
            "128",
            "-B",
            "65536",
            "-w",
            pcap.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = dump.stderr.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("listening on") && Instant::now() < deadline {
        let mut b = [0u8; 256];
        match err.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&b[..n]),
        }
    }
    let mut iperf = netns(&inet, &["iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Down: GRO aggregates from the server's segments, sent on whole to the client.
    let dst = lab.state.join("download.bin");
    ok(
        &mut netns(
            &ue,
            &[
                "curl",
                "-sS",
                "--max-time",
                "30",
                "-o",
                dst.to_str().unwrap(),
                &format!("http://{INET4}/file.bin"),
            ],
        ),
        Duration::from_secs(35),
    );
    let want = std::fs::read_to_string(lab.state.join("www/file.bin.sha256")).unwrap();
    assert_eq!(sha256(&dst), want.split_whitespace().next().unwrap());
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 4 << 20);
    // Up: the client's TSO aggregates, segmented by the kernel on the way out of gw-inet.
    let mut up = None;
    for _ in 0..50 {
        let out = run(
            &mut netns(&ue, &["iperf3", "-c", INET4, "-n", "4M", "-J"]),
            Duration::from_secs(30),
        );
        if out.status.success() {
            up = Some(out);
            break;
        }
        // The server was not listening yet.
        std::thread::sleep(Duration::from_millis(100));
    }
    let up: serde_json::Value = serde_json::from_slice(&up.expect("iperf3 upload").stdout).unwrap();
    // `-n` counts whole writes of iperf3's 128 KiB block, so the last one may overshoot.
    let sent = up["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    assert!((4 << 20..=(4 << 20) + (128 << 10)).contains(&sent), "{up}");
    let _ = common::wait_for(&mut iperf, Duration::from_secs(10));

    // Let the last frames reach the capture, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    let report = live_report(&gw);
    ok(
        Command::new("kill").args(["-INT", &dump.id().to_string()]),
        Duration::from_secs(5),
    );
    common::wait_for(&mut dump, Duration::from_secs(10)).expect("tcpdump stops");

    let mut got = Usage::new();
    for u in report["rating_groups"].as_array().unwrap() {
        let n = |k: &str| u[k].as_u64().unwrap();
        got.insert(
            n("rating_group") as u32,
            [
                n("uplink_bytes"),
                n("uplink_packets"),
                n("downlink_bytes"),
                n("downlink_packets"),
            ],
        );
    }
    let want = capture_usage(&pcap);
    assert_eq!(got, want, "gateway usage vs the server-side capture");
    assert!(want[&10][2] > 4 << 20, "the download is metered as web");
    // iperf3 stops its server when the client has written its last byte, so not all of the
    // 4 MiB need arrive; what did arrive is on the capture and metered.
    assert!(
        want[&99][0] > 2 << 20,
        "the upload is metered as the default: {want:?}"
    );

    // Aggregates crossed, both ways, and were counted as their segments: far fewer frames went
    // through the engine than the wire carried.
    let io = &report["io"];
    let frames = io["rx_frames"].as_u64().unwrap();
    let aggregates = io["aggregates"].as_u64().unwrap();
    let segments: u64 = want.values().map(|u| u[1] + u[3]).sum();
    assert!(aggregates >= 20, "{io}");
    assert!(
        frames * 2 < segments,
        "{frames} frames received for {segments} on the wire: {io}"
    );
    assert_eq!(io["oversize"].as_u64(), Some(0), "{io}");
    assert_eq!(io["tx_errors"].as_u64(), Some(0), "{io}");
    assert_eq!(io["ring_drops"].as_u64(), Some(0), "{io}");
}

#[test]
fn gso_aggregates_cross_whole_and_are_metered_exactly_copy() {
    aggregates_are_forwarded_whole_and_metered_as_the_wire_carries_them("gsoc", "copy");
}

#[test]
fn gso_aggregates_cross_whole_and_are_metered_exactly_ring() {
    aggregates_are_forwarded_whole_and_metered_as_the_wire_carries_them("gsor", "ring");
}
