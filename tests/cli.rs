//! The `weir` binary as a user runs it: check-config's error listing, replay's report and its
//! output capture, on the shipped example config and capture.

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
    assert_eq!(r["totals"]["frames"], 126);
    assert_eq!(r["totals"]["forwarded"], 116);
    assert_eq!(r["totals"]["dropped"], 10);
    assert_eq!(r["totals"]["drop_reasons"]["gate_closed"], 10);
    assert_eq!(r["totals"]["non_subscriber_forwarded"], 4);
    // Independently: tshark sums of ip.len / 40 + ipv6.plen per direction and rule.
    let rows: Vec<[u64; 5]> = r["rating_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u["subscriber"], "imsi-001010000000001");
            [
                "rating_group",
                "uplink_bytes",
                "uplink_packets",
                "downlink_bytes",
                "downlink_packets",
            ]
            .map(|k| u[k].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            [0, 252, 3, 0, 0],
            [1, 232, 4, 232, 4],
            [10, 2770, 41, 28872, 23],
            [20, 0, 0, 29543, 37],
        ]
    );
    let hits: Vec<(String, u64)> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["rule"].as_str().unwrap().to_string(),
                h["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        [("blocked-p2p", 10), ("dns", 8), ("video", 37), ("web", 64)]
            .map(|(n, c)| (n.to_string(), c))
    );
    assert_eq!(r["flows"]["created"], 10);
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
