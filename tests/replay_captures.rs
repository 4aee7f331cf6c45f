//! Replays every real capture in ../shared/data/pcap through `weir replay` and checks the
//! per-session × rating-group usage against an independent count made by tshark.
//!
//! The independent side: tshark lists each frame's protocol stack, addresses, IP length and
//! ports; this test applies the same three rules the generated config holds (DNS → rating group
//! 1, TCP to remote port 80/8080 → 10, anything else → 99), with the same orientation: a packet
//! whose source is a client address is uplink, one whose destination is a client is downlink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcap")
}

fn captures() -> Vec<PathBuf> {
    let dir = data_dir();
    assert!(
        dir.is_dir(),
        "test data missing: ../shared/data/pcap (expected beside the repository)"
    );
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read data dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 10,
        "expected the real captures in ../shared/data/pcap, found {}",
        out.len()
    );
    out
}

/// One IP frame as tshark sees it (outermost IP header only).
struct Frame {
    src: String,
    dst: String,
    ip_len: u64,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    syn_only: bool,
}

fn tshark_frames(pcap: &Path) -> Vec<Frame> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-o",
            "tcp.desegment_tcp_streams:FALSE",
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-E",
            "separator=|",
            "-e",
            "frame.protocols",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.len",
            "-e",
            "ip.proto",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "ipv6.plen",
            "-e",
            "ipv6.nxt",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "tcp.flags",
        ])
        .output()
        .expect(
            "tshark is required for the independent count (scripts/install-deps.sh installs it)",
        );
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        let protos = f[0];
        // Only IP carried directly in the link layer (Ethernet, optionally VLAN-tagged, or BSD
        // loopback): what the gateway meters. IP inside MPLS or tunnels is not a subscriber's.
        let stack: Vec<&str> = protos
            .split(':')
            .filter(|p| *p != "ethertype" && *p != "vlan")
            .collect();
        let is_v4 = stack.get(1) == Some(&"ip");
        let is_v6 = stack.get(1) == Some(&"ipv6");
        if !matches!(stack.first(), Some(&"eth") | Some(&"null")) || !(is_v4 || is_v6) {
            continue;
        }
        let (src, dst, ip_len, protocol) = if is_v4 {
            (
                f[1],
                f[2],
                f[3].parse::<u64>().expect("ip.len"),
                f[4].parse::<u8>().expect("ip.proto"),
            )
        } else {
            (
                f[5],
                f[6],
                40 + f[7].parse::<u64>().expect("ipv6.plen"),
                f[8].parse::<u8>().expect("ipv6.nxt"),
            )
        };
        let port = |s: &str| s.parse::<u16>().unwrap_or(0);
        let (src_port, dst_port) = match protocol {
            6 => (port(f[9]), port(f[10])),
            17 => (port(f[11]), port(f[12])),
            _ => (0, 0),
        };
        let flags = u16::from_str_radix(f[13].trim_start_matches("0x"), 16).unwrap_or(0);
        frames.push(Frame {
            src: src.to_string(),
            dst: dst.to_string(),
            ip_len,
            protocol,
            src_port,
            dst_port,
            syn_only: protocol == 6 && flags & 0x12 == 0x02,
        });
    }
    frames
}

/// Clients: senders of TCP SYNs and DNS queries; failing those, the first sender.
fn clients(frames: &[Frame]) -> Vec<String> {
    let mut c: Vec<String> = frames
        .iter()
        .filter(|f| f.syn_only || (f.protocol == 17 && f.dst_port == 53))
        .map(|f| f.src.clone())
        .collect();
    if c.is_empty() {
        c.extend(frames.first().map(|f| f.src.clone()));
    }
    c.sort();
    c.dedup();
    c
}

fn config_for(clients: &[String]) -> String {
    let host = |a: &String| {
        if a.contains(':') {
            format!("{a}/128")
        } else {
            format!("{a}/32")
        }
    };
    let pools: Vec<String> = clients.iter().map(|a| format!("\"{}\"", host(a))).collect();
    let mut s = format!(
        r#"[gateway]
ue_pools = [{}]

[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{{ description = "permit out 17 from any 53 to assigned" }}]

[[predefined_rule]]
name = "web"
precedence = 20
rating_group = 10
monitoring_key = "web"
flow = [{{ description = "permit out 6 from any 80,8080 to assigned" }}]
"#,
        pools.join(", ")
    );
    for (i, a) in clients.iter().enumerate() {
        let addr = if a.contains(':') {
            format!("ipv6 = \"{a}/128\"")
        } else {
            format!("ipv4 = \"{a}\"")
        };
        s.push_str(&format!(
            "\n[[session]]\nsubscriber = \"imsi-0010100000{i:05}\"\n{addr}\npredefined = [\"dns\", \"web\"]\ndefault_rule = {{ action = \"forward\", rating_group = 99 }}\n"
        ));
    }
    s
}

type Usage = BTreeMap<(String, u32), [u64; 4]>;

fn independent_usage(frames: &[Frame], clients: &[String]) -> Usage {
    let subscriber: BTreeMap<&String, String> = clients
        .iter()
        .enumerate()
        .map(|(i, a)| (a, format!("imsi-0010100000{i:05}")))
        .collect();
    let mut usage = Usage::new();
    for f in frames {
        let (ue, uplink, remote_port) = if let Some(s) = subscriber.get(&f.src) {
            (s, true, f.dst_port)
        } else if let Some(s) = subscriber.get(&f.dst) {
            (s, false, f.src_port)
        } else {
            continue;
        };
        let rg = match (f.protocol, remote_port) {
            (17, 53) => 1,
            (6, 80) | (6, 8080) => 10,
            _ => 99,
        };
        let e = usage.entry((ue.clone(), rg)).or_default();
        let i = if uplink { 0 } else { 2 };
        e[i] += f.ip_len;
        e[i + 1] += 1;
    }
    usage
}

#[test]
fn replay_usage_matches_an_independent_count_for_every_capture() {
    let tmp = std::env::temp_dir().join(format!("weir-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let mut checked = 0;
    for pcap in captures() {
        let frames = tshark_frames(&pcap);
        let clients = clients(&frames);
        let config = tmp.join("weir.toml");
        std::fs::write(&config, config_for(&clients)).expect("write config");
        let out_pcap = tmp.join("out.pcap");
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["replay", "--json", "--config"])
            .arg(&config)
            .arg("--pcap")
            .arg(&pcap)
            .arg("--out")
            .arg(&out_pcap)
            .output()
            .expect("run weir");
        assert!(
            out.status.success(),
            "weir replay {} failed: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let mut got = Usage::new();
        for u in report["rating_groups"].as_array().expect("rating_groups") {
            let n = |k: &str| u[k].as_u64().expect(k);
            got.insert(
                (
                    u["subscriber"].as_str().expect("subscriber").to_string(),
                    n("rating_group") as u32,
                ),
                [
                    n("uplink_bytes"),
                    n("uplink_packets"),
                    n("downlink_bytes"),
                    n("downlink_packets"),
                ],
            );
        }
        let want = independent_usage(&frames, &clients);
        assert_eq!(got, want, "usage differs for {}", pcap.display());
        assert!(!want.is_empty(), "{} metered nothing", pcap.display());
        // Nothing in these captures is gated: everything that parsed was forwarded, and the
        // output capture holds exactly the forwarded frames.
        let totals = &report["totals"];
        assert_eq!(
            totals["dropped"].as_u64(),
            Some(0),
            "{}: {}",
            pcap.display(),
            totals
        );
        let written = tshark_count(&out_pcap);
        assert_eq!(
            Some(written),
            totals["forwarded"].as_u64(),
            "{}",
            pcap.display()
        );
        checked += 1;
    }
    std::fs::remove_dir_all(&tmp).ok();
    assert!(checked >= 10);
}

fn tshark_count(pcap: &Path) -> u64 {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}
