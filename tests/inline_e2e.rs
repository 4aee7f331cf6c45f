//! End to end through a live gateway, with real clients, in network namespaces built by
//! `scripts/lab.sh` (uniquely named per test, torn down by a guard even when a test fails).
//!
//! Needs root. Without it each test says it was skipped and why; under CI (`CI=true`) a skip is a
//! failure, because CI runs as root and these tests are the proof that `weir run` forwards.
//!
//! The independent count of usage: tcpdump on the client's own interface records every frame the
//! client sent to or received from the gateway; tshark reads each IP header's total length (for
//! IPv6, 40 + payload length), which is exactly what the gateway meters per rating group. Link
//! headers, ARP and neighbour discovery are not metered; the metering test pins the neighbour
//! entries so no neighbour discovery with a subscriber address happens at all.

mod common;

use common::{netns, ok, repo, root_or_skip, run, wait_for, Lab};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INET4: &str = "198.51.100.10";
const INET6: &str = "2001:db8:100::10";
const UE4: &str = "10.45.0.2";
const UE6: &str = "2001:db8:45:1::2";

fn sha256(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path), Duration::from_secs(10));
    out.split_whitespace().next().unwrap().to_string()
}

/// Downloads the lab's test file through the gateway and checks its digest.
fn download_and_verify(lab: &Lab, ue: &str, url_host: &str) {
    let dst = lab.state.join("download.bin");
    ok(
        &mut netns(
            ue,
            &[
                "curl",
                "-sS",
                "-g",
                "--max-time",
                "20",
                "-o",
                dst.to_str().unwrap(),
                &format!("http://{url_host}/file.bin"),
            ],
        ),
        Duration::from_secs(25),
    );
    let want = std::fs::read_to_string(lab.state.join("www/file.bin.sha256")).unwrap();
    assert_eq!(sha256(&dst), want.split_whitespace().next().unwrap());
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 4 << 20);
}

fn ping(ns: &str, target: &str, count: u32) -> u32 {
    let out = run(
        &mut netns(
            ns,
            &[
                "ping",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                target,
            ],
        ),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[test]
fn lab_up_serves_the_page_through_weir_and_down_removes_everything() {
    if !root_or_skip("lab_up") {
        return;
    }
    let lab = Lab::up("a", &[]);
    let ue = lab.ns("ue");
    let page = ok(
        &mut netns(
            &ue,
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                &format!("http://{INET4}/"),
            ],
        ),
        Duration::from_secs(15),
    );
    assert!(page.contains("Hello from inet"), "{page}");
    assert!(lab.log().contains("tx=Copy"), "{}", lab.log());
    download_and_verify(&lab, &ue, INET4);
    download_and_verify(&lab, &ue, &format!("[{INET6}]"));
    // Neighbour discovery and ARP are resolved through the gateway: nothing is pinned here.
    assert_eq!(ping(&ue, INET4, 3), 3);
    assert_eq!(ping(&ue, INET6, 3), 3);
    let down = lab.down();
    assert!(down.status.success(), "{down:?}");
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
    let report = lab.report();
    assert_eq!(report["mode"], "bridge");
    assert!(report["totals"]["forwarded"].as_u64().unwrap() > 2 * 2900);
    assert_eq!(report["io"]["oversize"], 0);
}

/// The other labs transmit with the default `tx_mode = "copy"`; this one keeps the ring honest.
#[test]
fn ring_transmit_mode_carries_the_download_intact() {
    if !root_or_skip("tx_ring") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-e2e-txring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ring.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab.toml"))
        .unwrap()
        .replace("[dataplane]\n", "[dataplane]\ntx_mode = \"ring\"\n");
    assert!(text.contains("tx_mode = \"ring\""));
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up("t", &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    let ue = lab.ns("ue");
    download_and_verify(&lab, &ue, INET4);
    download_and_verify(&lab, &ue, &format!("[{INET6}]"));
    assert!(lab.log().contains("tx=Ring"), "{}", lab.log());
    let down = lab.down();
    assert!(down.status.success(), "{down:?}");
    let report = lab.report();
    assert!(report["totals"]["forwarded"].as_u64().unwrap() > 2 * 2900);
    assert_eq!(report["io"]["tx_errors"], 0);
    assert_eq!(report["io"]["oversize"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same lab on `backend = "af_xdp"`: the legs are read and written through AF_XDP sockets
/// fed by the program Weir attaches (seen on both legs while it runs), with one worker.
#[test]
fn af_xdp_backend_carries_the_download_intact() {
    if !root_or_skip("af_xdp_backend") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-e2e-afxdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("af_xdp.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab.toml"))
        .unwrap()
        .replace(
            "[dataplane]\n",
            "[dataplane]\nbackend = \"af_xdp\"\ncores = [0]\n",
        );
    assert!(text.contains("backend = \"af_xdp\""));
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up("x", &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    let (ue, gw) = (lab.ns("ue"), lab.ns("gw"));
    assert!(
        lab.log().contains("bridge mode up on AF_XDP"),
        "{}",
        lab.log()
    );
    for leg in ["gw-ue", "gw-inet"] {
        let shown = ok(
            &mut netns(&gw, &["ip", "-d", "link", "show", "dev", leg]),
            Duration::from_secs(10),
        );
        assert!(shown.contains("prog/xdp"), "{leg}: {shown}");
    }
    download_and_verify(&lab, &ue, INET4);
    download_and_verify(&lab, &ue, &format!("[{INET6}]"));
    assert_eq!(ping(&ue, INET4, 3), 3);
    assert_eq!(ping(&ue, INET6, 3), 3);
    let down = lab.down();
    assert!(down.status.success(), "{down:?}");
    let report = lab.report();
    assert_eq!(report["mode"], "bridge");
    assert!(report["totals"]["forwarded"].as_u64().unwrap() > 2 * 2900);
    assert_eq!(report["io"]["tx_errors"], 0);
    assert_eq!(report["io"]["oversize"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The endpoints checksum in "hardware" again (veth's default, segmentation still off): every
/// TCP frame reaches the gateway with its checksum only begun. Weir finishes each before it
/// sends it on (AF_PACKET is told which; on AF_XDP the field is read), so the download arrives
/// intact, and the report counts them.
fn a_sender_checksum_offload_is_finished_by_weir(prefix: &str, backend: &str) {
    let dir = std::env::temp_dir().join(format!("weir-e2e-csum{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("csum.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab.toml"))
        .unwrap()
        .replace(
            "[dataplane]\n",
            &format!("[dataplane]\nbackend = \"{backend}\"\ncores = [0]\n"),
        );
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up(prefix, &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    let ue = lab.ns("ue");
    for ns in [&ue, &lab.ns("inet")] {
        ok(
            &mut netns(ns, &["ethtool", "-K", "eth0", "tx", "on"]),
            Duration::from_secs(5),
        );
    }
    download_and_verify(&lab, &ue, INET4);
    download_and_verify(&lab, &ue, &format!("[{INET6}]"));
    let down = lab.down();
    assert!(down.status.success(), "{down:?}");
    let io = &lab.report()["io"];
    let finished = io["csum_finished"].as_u64().unwrap();
    // Two 4 MiB downloads: about 5 800 segments from the server, and the client's ACKs.
    assert!(finished > 2 * 2900, "{io}");
    if backend == "af_packet" {
        assert_eq!(io["csum_not_ready"].as_u64(), Some(finished), "{io}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_packet_finishes_the_checksums_a_sender_left_to_offload() {
    if root_or_skip("csum_af_packet") {
        a_sender_checksum_offload_is_finished_by_weir("cp", "af_packet");
    }
}

#[test]
fn af_xdp_finishes_the_checksums_a_sender_left_to_offload() {
    if root_or_skip("csum_af_xdp") {
        a_sender_checksum_offload_is_finished_by_weir("cx", "af_xdp");
    }
}

#[test]
fn lab_down_removes_a_half_built_lab() {
    if !root_or_skip("lab_half_built") {
        return;
    }
    // A configuration naming an interface that does not exist: Weir refuses to start, so `up`
    // fails after the namespaces were made, and must clean up after itself.
    let state = std::env::temp_dir().join(format!("weir-e2e-bad-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let config = state.join("bad.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab.toml"))
        .unwrap()
        .replace("ue_interface = \"gw-ue\"", "ue_interface = \"gw-nope\"");
    std::fs::write(&config, text).unwrap();
    let prefix = format!("w{}h-", std::process::id() % 100_000);
    let mut up = Command::new(repo().join("scripts/lab.sh"));
    up.arg("up")
        .env("WEIR_LAB_PREFIX", &prefix)
        .env("WEIR_LAB_STATE", &state)
        .env("WEIR_LAB_CONFIG", &config)
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"));
    let out = run(&mut up, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("interface gw-nope not found"), "{err}");
    let left = String::from_utf8_lossy(
        &run(
            Command::new("ip").args(["netns", "list"]),
            Duration::from_secs(5),
        )
        .stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&prefix))
    .count();
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(&state);
}

/// Usage per rating group as four numbers: uplink bytes, packets, downlink bytes, packets.
type Usage = BTreeMap<u32, [u64; 4]>;

fn mac(ns: &str) -> String {
    let out = ok(
        &mut netns(ns, &["cat", "/sys/class/net/eth0/address"]),
        Duration::from_secs(5),
    );
    out.trim().to_string()
}

/// Reads the client-side capture and counts what the gateway should have metered under the
/// lab's rules: TCP to or from port 80 is "web" (rating group 10), 6881-6889 are gated shut
/// (never metered), anything else with a subscriber address is the default (99).
/// Stops IPv6 router solicitations in every namespace of the lab: a host keeps soliciting a
/// router that never answers, and each solicitation would cross the gateway.
fn quiet_router_solicitations(lab: &Lab) {
    let list = ok(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(5),
    );
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !ns.starts_with(&lab.prefix) {
            continue;
        }
        ok(
            Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "for f in /proc/sys/net/ipv6/conf/*/router_solicitations; do echo 0 > $f; done",
            ]),
            Duration::from_secs(5),
        );
    }
}

fn independent_usage(pcap: &Path) -> (Usage, u64) {
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
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "ipv6.plen",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ]),
        Duration::from_secs(30),
    );
    let mut usage = Usage::new();
    let mut blocked = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let (src, dst, len) = if !f[0].is_empty() {
            (f[0], f[1], f[2].parse::<u64>().unwrap())
        } else if !f[3].is_empty() {
            (f[3], f[4], 40 + f[5].parse::<u64>().unwrap())
        } else {
            continue;
        };
        let uplink = if src == UE4 || src == UE6 {
            true
        } else if dst == UE4 || dst == UE6 {
            false
        } else {
            continue;
        };
        let ports = (f[6].parse::<u16>().ok(), f[7].parse::<u16>().ok());
        let remote = if uplink { ports.1 } else { ports.0 };
        let rg = match remote {
            Some(6881..=6889) => {
                blocked += 1;
                continue;
            }
            Some(80) => 10,
            _ => 99,
        };
        let e = usage.entry(rg).or_default();
        let i = if uplink { 0 } else { 2 };
        e[i] += len;
        e[i + 1] += 1;
    }
    (usage, blocked)
}

/// `GET /metrics` reads the slots `GET /report` reads: with nothing crossing the gateway, each
/// worker's received, handled and forwarded frames are the same numbers in both. A straggler
/// between the reads (two reports that differ) makes it read again.
fn metrics_match_the_report(gw: &str, report_url: &str) {
    let metrics_url = report_url.replace("/report", "/metrics");
    let get = |url: &str| {
        ok(
            &mut netns(gw, &["curl", "-s", "--max-time", "5", url]),
            Duration::from_secs(10),
        )
    };
    let workers = |text: String| -> Vec<(u64, u64, u64, u64)> {
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        r["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let n = |v: &serde_json::Value| v.as_u64().unwrap();
                (
                    n(&w["worker"]),
                    n(&w["io"]["rx_frames"]),
                    n(&w["frames"]),
                    n(&w["forwarded"]),
                )
            })
            .collect()
    };
    for _ in 0..5 {
        let before = workers(get(report_url));
        let metrics = get(&metrics_url);
        if workers(get(report_url)) != before {
            continue;
        }
        assert!(before.iter().map(|w| w.1).sum::<u64>() > 0, "{before:?}");
        let lines: Vec<&str> = metrics.lines().collect();
        for (worker, rx, frames, forwarded) in before {
            for want in [
                format!("weir_frames_received_total{{worker=\"{worker}\"}} {rx}"),
                format!("weir_frames_handled_total{{worker=\"{worker}\"}} {frames}"),
                format!("weir_frames_forwarded_total{{worker=\"{worker}\"}} {forwarded}"),
            ] {
                assert!(
                    lines.contains(&want.as_str()),
                    "{want} missing in\n{metrics}"
                );
            }
        }
        assert!(lines.contains(&"weir_sessions 2"), "{metrics}");
        return;
    }
    panic!("the report never held still for two reads");
}

#[test]
fn bridge_meters_exactly_what_the_client_saw_and_a_disabled_rule_blocks() {
    if !root_or_skip("bridge_metering") {
        return;
    }
    let lab = Lab::up("b", &[("WEIR_LAB_GATEWAY", "none")]);
    let (ue, gw, inet) = (lab.ns("ue"), lab.ns("gw"), lab.ns("inet"));
    // Pinned neighbours: no ARP or neighbour discovery can happen mid-count. No router
    // solicitations either (the lab has no router), so nothing but the subscriber's traffic
    // crosses the gateway while the workers' counts are compared below.
    quiet_router_solicitations(&lab);
    let (ue_mac, inet_mac) = (mac(&ue), mac(&inet));
    for (ns, addr, lladdr) in [
        (&ue, INET4, &inet_mac),
        (&ue, INET6, &inet_mac),
        (&inet, UE4, &ue_mac),
        (&inet, UE6, &ue_mac),
    ] {
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
    // A listener on a blocked port, so only the gateway can make the connection fail.
    let mut p2p = netns(
        &inet,
        &["python3", "-m", "http.server", "6881", "--bind", "::"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pcap = lab.state.join("ue.pcap");
    let mut dump = netns(
        &ue,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-U",
            "-s",
            "128",
            "-B",
            "16384",
            "-w",
            pcap.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // tcpdump says "listening on" once its socket is open.
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

    let config = lab.state.join("weir.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab.toml")).unwrap();
    // Two workers, so subscriber affinity can be seen (the machines this runs on have two
    // cores).
    let text = text.replace("[dataplane]\n", "[dataplane]\ncores = [0, 1]\n");
    std::fs::write(&config, text).unwrap();
    let mut weir = netns(
        &gw,
        &[
            env!("CARGO_BIN_EXE_weir"),
            "run",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let report_url = "http://127.0.0.1:9464/report";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = run(
            &mut netns(&gw, &["curl", "-s", "--max-time", "2", report_url]),
            Duration::from_secs(5),
        );
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "weir did not come up");
        assert!(weir.try_wait().unwrap().is_none(), "weir exited at startup");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Each worker's frames, fresh, from the live report.
    let worker_frames = || -> Vec<u64> {
        let live: serde_json::Value = serde_json::from_str(&ok(
            &mut netns(&gw, &["curl", "-s", "--max-time", "5", report_url]),
            Duration::from_secs(10),
        ))
        .unwrap();
        live["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["frames"].as_u64().unwrap())
            .collect()
    };
    // Only the subscriber's IPv4 traffic crosses the gateway in this window (neighbours are
    // pinned), so whichever worker owns 10.45.0.2 counts it all and the other counts nothing.
    let before = worker_frames();
    download_and_verify(&lab, &ue, INET4);
    assert_eq!(ping(&ue, INET4, 5), 5);
    let after = worker_frames();
    metrics_match_the_report(&gw, report_url);
    assert_eq!(ping(&ue, INET6, 5), 5);
    let blocked = run(
        &mut netns(
            &ue,
            &[
                "curl",
                "-s",
                "--max-time",
                "2",
                &format!("http://{INET4}:6881/"),
            ],
        ),
        Duration::from_secs(10),
    );
    assert_eq!(
        blocked.status.code(),
        Some(28),
        "port 6881 must time out behind a closed gate"
    );
    // On demand, while running: fresh numbers from every worker.
    let live: serde_json::Value = serde_json::from_str(&ok(
        &mut netns(&gw, &["curl", "-s", "--max-time", "5", report_url]),
        Duration::from_secs(10),
    ))
    .unwrap();
    assert!(
        live["totals"]["drop_reasons"]["gate_closed"]
            .as_u64()
            .unwrap()
            >= 1
    );

    std::thread::sleep(Duration::from_millis(300));
    ok(
        Command::new("kill").args(["-TERM", &weir.id().to_string()]),
        Duration::from_secs(5),
    );
    let status = wait_for(&mut weir, Duration::from_secs(15)).expect("weir stops on SIGTERM");
    assert!(status.success(), "weir exited with {status}");
    let mut stdout = String::new();
    weir.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("final JSON report");
    ok(
        Command::new("kill").args(["-INT", &dump.id().to_string()]),
        Duration::from_secs(5),
    );
    wait_for(&mut dump, Duration::from_secs(10)).expect("tcpdump stops");
    let _ = p2p.kill();
    let _ = p2p.wait();

    let (want, blocked_frames) = independent_usage(&pcap);
    let mut got = Usage::new();
    for u in report["rating_groups"].as_array().unwrap() {
        assert_eq!(u["subscriber"], "imsi-001010000000001");
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
    assert_eq!(got, want, "gateway usage vs the client's capture");
    assert!(want[&10][2] > 4 << 20, "the download is metered as web");
    assert_eq!(want[&99][1], 10, "five IPv4 and five IPv6 echo requests");
    // Every SYN to the blocked port left the client and was dropped at the gate.
    assert!(blocked_frames >= 1);
    assert_eq!(
        report["totals"]["drop_reasons"]["gate_closed"].as_u64(),
        Some(blocked_frames)
    );
    // Subscriber affinity, seen from the counts alone: one worker took every frame of the
    // subscriber's IPv4 window, the other none of them.
    assert_eq!(before.len(), 2, "two workers: {before:?}");
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let web = want[&10][1] + want[&10][3];
    let owner = usize::from(delta[1] > delta[0]);
    assert!(
        delta[owner] >= web + 10,
        "owner {owner} counted {delta:?}, fewer than the {web} web frames and 10 pings"
    );
    assert_eq!(
        delta[1 - owner],
        0,
        "worker {} saw the subscriber's frames: {delta:?}",
        1 - owner
    );
}

#[test]
fn bridge_carries_iperf3_tcp_without_stalling() {
    if !root_or_skip("bridge_iperf3") {
        return;
    }
    iperf3_without_stalling(Lab::up("c", &[]));
}

/// The same on `backend = "af_xdp"`, the lab's policy-engine configuration with one worker.
#[test]
fn af_xdp_backend_carries_iperf3_tcp_without_stalling() {
    if !root_or_skip("af_xdp_iperf3") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-e2e-afxdp-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("af_xdp.toml");
    let text = std::fs::read_to_string(repo().join("examples/lab-pcrf.toml"))
        .unwrap()
        .replace(
            "[dataplane]\n",
            "[dataplane]\nbackend = \"af_xdp\"\ncores = [0]\n",
        );
    assert!(text.contains("backend = \"af_xdp\""));
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up("y", &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    assert!(
        lab.log().contains("bridge mode up on AF_XDP"),
        "{}",
        lab.log()
    );
    iperf3_without_stalling(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three seconds of iperf3 from the UE: at least 10 MiB, progress in every interval, and all of
/// it metered.
fn iperf3_without_stalling(lab: Lab) {
    let (ue, inet) = (lab.ns("ue"), lab.ns("inet"));
    let mut server = netns(&inet, &["iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = ok(
        &mut netns(&ue, &["iperf3", "-J", "-t", "3", "-c", INET4]),
        Duration::from_secs(20),
    );
    let _ = wait_for(&mut server, Duration::from_secs(5));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let received = j["end"]["sum_received"]["bytes"].as_u64().unwrap();
    assert!(received > 10 << 20, "only {received} bytes in 3 s");
    for i in j["intervals"].as_array().unwrap() {
        assert!(
            i["sum"]["bytes"].as_u64().unwrap() > 0,
            "an interval without progress: {i}"
        );
    }
    let down = lab.down();
    assert!(down.status.success());
    let report = lab.report();
    let metered: u64 = report["rating_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["uplink_bytes"].as_u64().unwrap())
        .sum();
    // iperf3 payload is carried in IP packets the gateway meters (under the session's default
    // rule, whose rating group the policy engine chooses).
    assert!(
        metered >= received,
        "metered {metered} < received {received}"
    );
}

#[test]
fn routed_mode_over_tun_forwards_and_keeps_subscriber_ownership() {
    if !root_or_skip("routed_tun") {
        return;
    }
    let lab = Lab::up(
        "d",
        &[
            ("WEIR_LAB_MODE", "routed"),
            (
                "WEIR_LAB_CONFIG",
                repo().join("examples/lab-routed.toml").to_str().unwrap(),
            ),
        ],
    );
    let ue = lab.ns("ue");
    // IPv4 only, but for three IPv6 pings: an IPv6 subscriber is owned by its prefix's worker,
    // which may be another, and the ownership check below counts IPv4 alone.
    download_and_verify(&lab, &ue, INET4);
    assert_eq!(ping(&ue, INET4, 3), 3);
    assert_eq!(ping(&ue, INET6, 3), 3);
    let down = lab.down();
    assert!(down.status.success());
    let report = lab.report();
    assert_eq!(report["mode"], "routed");
    let io = &report["io"];
    assert_eq!(io["handoff_full"], 0);
    assert_eq!(io["handoff_sent"], io["handoff_received"]);
    let web = report["rating_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["rating_group"] == 10)
        .expect("web usage");
    assert!(web["downlink_bytes"].as_u64().unwrap() > 4 << 20);
    assert_eq!(report["totals"]["dropped"], 0);
    // With several workers, the subscriber's packets were all processed by its owner.
    let workers = report["workers"].as_array().unwrap();
    if workers.len() > 1 {
        let owner = weir::io::bpf::ue_hash(UE4.parse().unwrap()) as usize % workers.len();
        for (i, w) in workers.iter().enumerate() {
            if i != owner {
                assert!(
                    w["frames"].as_u64().unwrap() < 20,
                    "worker {i} processed subscriber traffic: {w}"
                );
            }
        }
    }
}
