//! The `weir` binary as a user runs it: check-config's error listing, replay's report and its
//! output capture, on the shipped example config and capture. The replay's usage, rule hits and
//! flows are compared with the example's rules applied by hand to tshark's listing of the
//! capture.

mod tshark;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run weir")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_accepts_the_example() {
    let out = weir(&["check-config", "examples/weir.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "examples/weir.toml: ok (2 UE pool(s), 5 predefined rule(s), 3 session(s))\n"
    );
}

#[test]
fn check_config_lists_every_error_with_its_location() {
    let dir = std::env::temp_dir().join(format!("weir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        r#"[gateway]
ue_pools = ["10.45.0.0/16"]
[[predefined_rule]]
name = "web"
precedence = 10
flow = [{ description = "permit out 6 frm any to assigned" }]
[[session]]
subscriber = "imsi-00101"
ipv4 = "10.46.0.2"
predefined = ["nope"]
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = weir(&["check-config", path]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let expected = format!(
        "{path}:6:39: predefined_rule[0].flow[0].description: Flow-Description: expected 'from', found 'frm' at column 14\n\
         {path}:9:8: session[0].ipv4: 10.46.0.2 is not inside any ue_pool (10.45.0.0/16)\n\
         {path}:10:15: session[0].predefined[0]: no predefined_rule is named 'nope'\n\
         {path}: 3 error(s)\n"
    );
    assert_eq!(text(&out.stderr), expected);
}

#[test]
fn replay_of_the_sample_reports_exact_usage_and_writes_the_forwarded_frames() {
    let dir = std::env::temp_dir().join(format!("weir-cli-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_pcap = dir.join("forwarded.pcap");
    let out = weir(&[
        "replay",
        "--config",
        "examples/weir.toml",
        "--pcap",
        "examples/sample.pcap",
        "--json",
        "--out",
        out_pcap.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let want = sample_by_hand();
    assert_eq!(r["totals"]["frames"], 126);
    assert_eq!(r["totals"]["forwarded"], 116);
    assert_eq!(r["totals"]["dropped"], 10);
    assert_eq!(r["totals"]["drop_reasons"]["gate_closed"], want.gated);
    assert_eq!(r["totals"]["non_subscriber_forwarded"], want.non_subscriber);
    assert_eq!(want.frames, 126);
    assert_eq!(want.frames - want.gated, 116);
    let rows: BTreeMap<u32, [u64; 4]> = r["rating_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u["subscriber"], "imsi-001010000000001");
            let n = |k: &str| u[k].as_u64().unwrap();
            (
                n("rating_group") as u32,
                [
                    n("uplink_bytes"),
                    n("uplink_packets"),
                    n("downlink_bytes"),
                    n("downlink_packets"),
                ],
            )
        })
        .collect();
    assert_eq!(rows, want.usage);
    assert_eq!(rows.len(), 4, "default, dns, web and video all metered");
    let hits: BTreeMap<String, u64> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["subscriber"], "imsi-001010000000001");
            (
                h["rule"].as_str().unwrap().to_string(),
                h["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hits, want.hits);
    assert_eq!(r["flows"]["created"], want.flows);
    assert!(r["throughput"]["packets_per_second"].as_f64().unwrap() > 0.0);

    // The output capture holds exactly the forwarded frames, byte for byte, in order.
    let mut reader = weir::io::pcap::CaptureReader::open(&out_pcap).unwrap();
    let mut written = Vec::new();
    while let Some(rec) = reader.next_record().unwrap() {
        written.push(rec.data);
    }
    assert_eq!(written.len(), 116);
    let mut original = weir::io::pcap::CaptureReader::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.pcap"),
    )
    .unwrap();
    let mut first = None;
    while let Some(rec) = original.next_record().unwrap() {
        if first.is_none() {
            first = Some(rec.data);
        }
    }
    // The first frame of the sample is an MLD report from a link-local address: forwarded.
    assert_eq!(written.first(), first.as_ref());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_names_a_missing_capture() {
    let out = weir(&[
        "replay",
        "--config",
        "examples/weir.toml",
        "--pcap",
        "no/such.pcap",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no/such.pcap"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn replay_writes_the_frames_the_gateway_injects() {
    use std::net::IpAddr;
    use weir::io::pcap::PcapWriter;
    use weir::time::Timestamp;
    use weir::wire::{tcp_flags, EthernetHeader, LinkHeader, LinkType, TcpSegment};

    // The example's third subscriber is under the recharge redirect: its SYN to a web server is
    // answered by the gateway, and its SYN to port 443 gets a reset.
    let ue: IpAddr = "2001:db8:45:3::2".parse().unwrap();
    let site: IpAddr = "2001:db8:100::10".parse().unwrap();
    let link = LinkHeader::Ethernet(EthernetHeader {
        dst: [2, 0, 0, 0, 0, 1],
        src: [2, 0, 0, 0, 0, 2],
        vlans: [0; 2],
        vlan_count: 0,
    });
    let syn = |dst_port: u16| {
        let mut f = Vec::new();
        TcpSegment {
            link,
            src: ue,
            dst: site,
            src_port: 40000,
            dst_port,
            seq: 7,
            ack: 0,
            flags: tcp_flags::SYN,
            window: 65535,
            mss: Some(1400),
            payload: &[],
        }
        .write(&mut f)
        .unwrap();
        f
    };
    let dir = std::env::temp_dir().join(format!("weir-cli-inject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    let mut w = PcapWriter::create(&input, LinkType::Ethernet, 65535).unwrap();
    w.write(Timestamp::from_secs(1_790_000_000), &syn(80))
        .unwrap();
    w.write(Timestamp::from_secs(1_790_000_001), &syn(443))
        .unwrap();
    w.finish().unwrap();
    let output = dir.join("out.pcap");
    let out = weir(&[
        "replay",
        "--config",
        "examples/weir.toml",
        "--pcap",
        input.to_str().unwrap(),
        "--json",
        "--out",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["totals"]["answered"], 2);
    assert_eq!(r["totals"]["injected_frames"], 2);
    assert_eq!(r["redirect"]["syn_answered"], 1);
    assert_eq!(r["redirect"]["resets_sent"], 1);

    let mut reader = weir::io::pcap::CaptureReader::open(&output).unwrap();
    let mut frames = Vec::new();
    while let Some(rec) = reader.next_record().unwrap() {
        frames.push(rec);
    }
    assert_eq!(frames.len(), 2, "nothing forwarded, two answers");
    let flags: Vec<u8> = frames
        .iter()
        .map(
            |rec| match weir::wire::parse(LinkType::Ethernet, &rec.data).unwrap() {
                weir::wire::Parsed::Ip(p) => {
                    // Answers go back to the subscriber, link addresses mirrored.
                    assert_eq!((p.tuple.src, p.tuple.dst), (site, ue));
                    assert_eq!(&rec.data[0..6], &[2, 0, 0, 0, 0, 2]);
                    p.tcp_flags
                }
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(
        flags,
        [
            tcp_flags::SYN | tcp_flags::ACK,
            tcp_flags::RST | tcp_flags::ACK
        ]
    );
    assert_eq!(frames[0].timestamp, Timestamp::from_secs(1_790_000_000));
    std::fs::remove_dir_all(&dir).ok();
}

/// What examples/weir.toml does to examples/sample.pcap, worked out by hand from tshark's
/// listing: the example's rules written out below as plain conditions, in precedence order.
struct Sample {
    frames: u64,
    gated: u64,
    non_subscriber: u64,
    /// Rating group → [uplink bytes, uplink packets, downlink bytes, downlink packets].
    usage: BTreeMap<u32, [u64; 4]>,
    /// Rule name → packets that matched it, gated ones included.
    hits: BTreeMap<String, u64>,
    /// Distinct 5-tuples of the subscriber (the capture spans less than any idle timeout).
    flows: u64,
}

fn sample_by_hand() -> Sample {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.pcap");
    let frames = tshark::frames(&pcap);
    let ip = |s: &str| s.parse::<IpAddr>().expect("tshark address");
    let in_prefix = |a: IpAddr, net: &str, len: u32| match (a, ip(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) ^ u32::from(n)).leading_zeros() >= len,
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a) ^ u128::from(n)).leading_zeros() >= len,
        _ => false,
    };
    let in_pools = |a: IpAddr| in_prefix(a, "10.45.0.0", 16) || in_prefix(a, "2001:db8:45::", 48);
    // The first session: imsi-001010000000001.
    let first = |a: IpAddr| a == ip("10.45.0.2") || in_prefix(a, "2001:db8:45:1::", 64);
    // The campaign of rule "video": 2026-01-01T00:00:00Z until 2027-01-01T00:00:00Z.
    let video_on = 1_767_225_600_000_000_000..1_798_761_600_000_000_000u64;
    let mut s = Sample {
        frames: tshark::count(&pcap),
        gated: 0,
        non_subscriber: 0,
        usage: BTreeMap::new(),
        hits: BTreeMap::new(),
        flows: 0,
    };
    let mut tuples = BTreeSet::new();
    for f in frames.iter().filter(|f| !f.neighbor_discovery) {
        let (src, dst) = (ip(&f.src), ip(&f.dst));
        let (uplink, ue, remote, ue_port, remote_port) = if in_pools(src) {
            (true, src, dst, f.src_port, f.dst_port)
        } else if in_pools(dst) {
            (false, dst, src, f.dst_port, f.src_port)
        } else {
            s.non_subscriber += 1;
            continue;
        };
        assert!(
            first(ue),
            "the sample holds only the first subscriber's traffic: {ue}"
        );
        tuples.insert((ue, remote, ue_port, remote_port, f.protocol));
        let (tcp, udp) = (f.protocol == 6, f.protocol == 17);
        let p2p = 6881..=6889;
        let (rule, rating_group) = if tcp && (p2p.contains(&remote_port) || p2p.contains(&ue_port))
        {
            ("blocked-p2p", None)
        } else if (udp || tcp) && remote_port == 53 {
            ("dns", Some(1))
        } else if udp
            && remote == ip("203.0.113.10")
            && (remote_port == 5060 || (10000..=20000).contains(&remote_port))
        {
            ("voice", Some(30))
        } else if !uplink
            && video_on.contains(&f.time_ns)
            && (in_prefix(remote, "198.51.100.0", 24) || in_prefix(remote, "2001:db8:cafe::", 48))
        {
            ("video", Some(20))
        } else if (tcp && (remote_port == 80 || remote_port == 443)) || (udp && remote_port == 443)
        {
            ("web", Some(10))
        } else {
            ("", Some(0))
        };
        if !rule.is_empty() {
            *s.hits.entry(rule.to_string()).or_default() += 1;
        }
        let Some(rg) = rating_group else {
            s.gated += 1;
            continue;
        };
        let row = s.usage.entry(rg).or_default();
        let i = if uplink { 0 } else { 2 };
        row[i] += f.ip_len;
        row[i + 1] += 1;
    }
    s.flows = tuples.len() as u64;
    s
}

#[test]
fn version_names_the_git_revision() {
    let out = weir(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let git = Command::new("git")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    if git == "unknown" {
        assert_eq!(
            text(&out.stdout),
            format!("weir {} (unknown)\n", env!("CARGO_PKG_VERSION"))
        );
        return;
    }
    // The commit the binary was built from: HEAD, or an earlier commit when one was made
    // between the build and this run.
    let line = text(&out.stdout);
    let revision = line
        .strip_prefix(&format!("weir {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{line}"));
    let ancestor = Command::new("git")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["merge-base", "--is-ancestor", revision, "HEAD"])
        .status()
        .unwrap();
    assert!(
        revision.len() >= 7 && ancestor.success(),
        "{line} names no commit of HEAD's history ({git})"
    );
}

/// `weir run --dry-run` prints what it would bind, pin and change, and binds nothing: the
/// ports of the file are held by the test while it runs.
#[test]
fn run_dry_run_prints_the_plan_and_opens_nothing() {
    let report = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (rp, gp) = (
        report.local_addr().unwrap().port(),
        grpc.local_addr().unwrap().port(),
    );
    let dir = std::env::temp_dir().join(format!("weir-cli-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bridge = dir.join("bridge.toml");
    std::fs::write(
        &bridge,
        format!(
            r#"[gateway]
ue_pools = ["10.45.0.0/16"]
[control]
listen = "127.0.0.1:{gp}"
policy_engine = "http://192.0.2.1:50051"
[dataplane]
mode = "bridge"
ue_interface = "lo"
internet_interface = "wdry-none0"
cores = [0]
report_listen = "127.0.0.1:{rp}"
"#
        ),
    )
    .unwrap();
    let lo_mtu = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap();
    let out = weir(&["run", "--dry-run", "--config", bridge.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: valid; nothing opened, bound or changed (--dry-run)\n\
             mode           bridge\n\
             ue side        lo (MTU {}): AF_PACKET per worker, TPACKET_V2 receive ring, 4096 slots of 2048 bytes, transmit by sendmmsg, promiscuous while open\n\
             internet side  wdry-none0 (not on this box now): AF_PACKET per worker, TPACKET_V2 receive ring, 4096 slots of 2048 bytes, transmit by sendmmsg, promiscuous while open\n\
             offloads       gro, lro, gso, tso turned off on lo and wdry-none0 where on; turned back on at exit\n\
             workers        1 pinned (worker->core): 0->0\n\
             report         http://127.0.0.1:{rp} (/report, /metrics)\n\
             gateway api    weir.v1.Gateway on 127.0.0.1:{gp} (plaintext)\n\
             policy engine  http://192.0.2.1:50051 (CCR-I on a subscriber's first packet)\n\
             sysctls        none changed\n",
            bridge.display(),
            lo_mtu.trim()
        )
    );

    let routed = dir.join("routed.toml");
    std::fs::write(
        &routed,
        r#"[gateway]
ue_pools = ["10.45.0.0/16"]
[control]
listen = ""
[dataplane]
mode = "routed"
tun = "wdry-tun0"
offloads = "keep"
cores = [0]
report_listen = ""
"#,
    )
    .unwrap();
    let out = weir(&["run", "--dry-run", "--config", routed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: valid; nothing opened, bound or changed (--dry-run)\n\
             mode           routed\n\
             tun            wdry-tun0 (not on this box now): multi-queue TUN, 1 queue; created if absent, gone at exit unless persistent\n\
             offloads       none changed (routed mode)\n\
             workers        1 pinned (worker->core): 0->0\n\
             report         off\n\
             gateway api    off\n\
             policy engine  none (sessions from the file and the operator API)\n\
             sysctls        none changed\n",
            routed.display()
        )
    );
    // Nothing was created: the TUN device does not exist after the dry run either.
    assert!(!std::path::Path::new("/sys/class/net/wdry-tun0").exists());

    // A mistake is reported as `weir run` reports it, with nothing printed on stdout.
    std::fs::write(&routed, "[dataplane]\nmode = \"sideways\"\n").unwrap();
    let out = weir(&["run", "--dry-run", "--config", routed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    drop((report, grpc));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replay's progress bar: nothing on a stderr that is not a terminal; on a terminal (`script`
/// gives the command one) the bar is drawn, reaches 100% and is erased before the report.
#[test]
fn replay_draws_progress_only_on_a_terminal() {
    let args = [
        "replay",
        "--config",
        "examples/weir.toml",
        "--pcap",
        "examples/sample.pcap",
    ];
    let out = weir(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "a pipe gets no progress");
    let report = text(&out.stdout);

    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("replay_draws_progress_only_on_a_terminal: no `script` (util-linux); terminal case skipped");
        return;
    }
    let line = format!("{} {}", env!("CARGO_BIN_EXE_weir"), args.join(" "));
    let tty = Command::new("script")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("script runs");
    assert!(tty.status.success(), "{}", text(&tty.stderr));
    let screen = text(&tty.stdout);
    assert!(screen.starts_with("\rreplay ["), "{screen:?}");
    let erased = screen.rfind("\r\x1b[2K").expect("the bar is erased");
    let bar = &screen[..erased];
    assert!(bar.contains("] 100%"), "{bar:?}");
    assert!(bar.contains(" frames/s\x1b[K"), "{bar:?}");
    // What stays is the report, as a pipe gets it (the terminal writes \r\n for \n), but for
    // the engine's timing on its last line.
    let without_timing = |r: &str| {
        r.lines()
            .filter(|l| !l.starts_with("engine: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let after = screen[erased + "\r\x1b[2K".len()..].replace("\r\n", "\n");
    assert_eq!(without_timing(&after), without_timing(&report));
    assert!(
        after
            .lines()
            .last()
            .unwrap()
            .starts_with("engine: 126 packets in "),
        "{after}"
    );
}
