//! The independent side of the capture tests: tshark lists each frame, and these helpers turn
//! that listing into the plain facts the tests count with (addresses, lengths, ports, time), so
//! no figure a test expects comes from the code under test.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcap")
}

/// Every real capture in ../shared/data/pcap, sorted.
pub fn captures() -> Vec<PathBuf> {
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
pub struct Frame {
    /// Capture time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub src: String,
    pub dst: String,
    pub ip_len: u64,
    /// The transport protocol: the last IPv6 next header, not the first.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub syn_only: bool,
    /// ICMPv6 router/neighbour solicitation, advertisement or redirect with hop limit 255: link
    /// plumbing, never a subscriber's flow.
    pub neighbor_discovery: bool,
}

const FIELDS: &[&str] = &[
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.len",
    "ip.proto",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.plen",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.flags",
    "frame.time_epoch",
    "icmpv6.type",
    "ipv6.hlim",
];

/// `1289568957.458867000` → nanoseconds.
fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().expect("frame.time_epoch seconds") * 1_000_000_000
        + frac[..9].parse::<u64>().expect("frame.time_epoch fraction")
}

pub fn frames(pcap: &Path) -> Vec<Frame> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(pcap).args([
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
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect(
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
        assert_eq!(f.len(), FIELDS.len(), "tshark line: {line}");
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
        let (src, dst, ip_len, first_protocol) = if is_v4 {
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
        // The transport is the first layer after IP and its extension headers; a later tcp or
        // udp is the header quoted inside an ICMP error.
        let transport = stack[2..].iter().find(|p| !p.starts_with("ipv6."));
        let protocol = match transport {
            Some(&"tcp") => 6,
            Some(&"udp") => 17,
            Some(&"icmp") => 1,
            Some(&"icmpv6") => 58,
            _ => first_protocol,
        };
        let port = |s: &str| s.parse::<u16>().unwrap_or(0);
        let (src_port, dst_port) = match protocol {
            6 => (port(f[9]), port(f[10])),
            17 => (port(f[11]), port(f[12])),
            _ => (0, 0),
        };
        let flags = u16::from_str_radix(f[13].trim_start_matches("0x"), 16).unwrap_or(0);
        let icmpv6_type = f[15].parse::<u8>().ok();
        frames.push(Frame {
            time_ns: epoch_ns(f[14]),
            src: src.to_string(),
            dst: dst.to_string(),
            ip_len,
            protocol,
            src_port,
            dst_port,
            syn_only: protocol == 6 && flags & 0x12 == 0x02,
            neighbor_discovery: is_v6
                && icmpv6_type.is_some_and(|t| (133..=137).contains(&t))
                && f[16] == "255",
        });
    }
    frames
}

/// Clients: senders of TCP SYNs and DNS queries; failing those, the first sender.
pub fn clients(frames: &[Frame]) -> Vec<String> {
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

/// The subscriber id the generated config gives the `i`-th client.
pub fn subscriber(i: usize) -> String {
    format!("imsi-0010100000{i:05}")
}

/// A config with one session per client and three rules: DNS → rating group 1, TCP to remote
/// port 80/8080 → 10 (monitoring key "web"), anything else → 99. `gateway_extra` is added to
/// the `[gateway]` table.
pub fn config_for(clients: &[String], gateway_extra: &str) -> String {
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
{gateway_extra}

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
            "\n[[session]]\nsubscriber = \"{}\"\n{addr}\npredefined = [\"dns\", \"web\"]\ndefault_rule = {{ action = \"forward\", rating_group = 99 }}\n",
            subscriber(i)
        ));
    }
    s
}

/// How many frames tshark reads from a capture.
pub fn count(pcap: &Path) -> u64 {
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
