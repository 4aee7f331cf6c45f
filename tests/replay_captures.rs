//! Replays every real capture in ../shared/data/pcap through `weir replay` and checks the
//! per-session × rating-group usage against an independent count made by tshark.
//!
//! The independent side: tshark lists each frame's protocol stack, addresses, IP length and
//! ports; this test applies the same three rules the generated config holds (DNS → rating group
//! 1, TCP to remote port 80/8080 → 10, anything else → 99), with the same orientation: a packet
//! whose source is a client address is uplink, one whose destination is a client is downlink.

mod tshark;

use std::collections::BTreeMap;
use std::process::Command;
use tshark::{captures, clients, config_for, Frame};

type Usage = BTreeMap<(String, u32), [u64; 4]>;

fn independent_usage(frames: &[Frame], clients: &[String]) -> Usage {
    let subscriber: BTreeMap<&String, String> = clients
        .iter()
        .enumerate()
        .map(|(i, a)| (a, tshark::subscriber(i)))
        .collect();
    let mut usage = Usage::new();
    for f in frames.iter().filter(|f| !f.neighbor_discovery) {
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
        let frames = tshark::frames(&pcap);
        let clients = clients(&frames);
        let config = tmp.join("weir.toml");
        std::fs::write(&config, config_for(&clients, "")).expect("write config");
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
        let written = tshark::count(&out_pcap);
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
