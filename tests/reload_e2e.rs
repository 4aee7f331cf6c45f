//! `weir run` re-reads its policy on SIGHUP: usage stays with the subscriber it belongs to even
//! when the file's sessions are reordered, since counters are kept per session id.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const UE1: &str = "imsi-001010000000001";
const UE2: &str = "imsi-001010000000002";

/// The document with its `[[session]]` blocks in reverse order (what precedes them unchanged).
fn reverse_sessions(text: &str) -> String {
    let first = text.find("[[session]]").expect("sessions");
    let mut blocks: Vec<&str> = text[first..]
        .split("[[session]]")
        .filter(|b| !b.trim().is_empty())
        .collect();
    assert_eq!(blocks.len(), 2, "the lab has two sessions");
    blocks.reverse();
    let mut out = text[..first].to_string();
    for b in blocks {
        out.push_str("[[session]]");
        out.push_str(b.trim_end());
        out.push_str("\n\n");
    }
    out
}

fn rg10(report: &serde_json::Value) -> Vec<(String, u64, u64)> {
    report["rating_groups"]
        .as_array()
        .expect("rating_groups")
        .iter()
        .filter(|u| u["rating_group"] == 10)
        .map(|u| {
            (
                u["subscriber"].as_str().unwrap().to_string(),
                u["session_id"].as_u64().unwrap(),
                u["downlink_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_reload_with_reordered_sessions_keeps_usage_with_its_subscriber() {
    if !root_or_skip("a_reload_with_reordered_sessions_keeps_usage_with_its_subscriber") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lab.toml");
    let original = std::fs::read_to_string(repo().join("examples/lab.toml")).unwrap();
    std::fs::write(&config, &original).unwrap();
    let lab = Lab::up("rl", &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    let ue = lab.ns("ue");
    let gw = lab.ns("gw");
    let live = || -> serde_json::Value {
        let text = ok(
            &mut netns(
                &gw,
                &["curl", "-s", "-m", "5", "http://127.0.0.1:9464/report"],
            ),
            Duration::from_secs(10),
        );
        serde_json::from_str(&text).expect("report JSON")
    };

    let download = || {
        ok(
            &mut netns(
                &ue,
                &[
                    "curl",
                    "-s",
                    "-m",
                    "10",
                    "-o",
                    "/dev/null",
                    "http://198.51.100.10/file.bin",
                ],
            ),
            Duration::from_secs(20),
        )
    };
    download();
    let before = rg10(&live());
    assert_eq!(before.len(), 1, "{before:?}");
    let (name, id, bytes) = before[0].clone();
    assert_eq!(name, UE1);
    assert!(bytes > 4 << 20, "the 4 MiB download: {bytes}");

    std::fs::write(&config, reverse_sessions(&original)).unwrap();
    let pid = std::fs::read_to_string(lab.state.join("weir.pid")).unwrap();
    ok(
        Command::new("kill").args(["-HUP", pid.trim()]),
        Duration::from_secs(5),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lab.log().contains("policy reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload; log:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    download();
    let after = rg10(&live());
    // One row still: the same subscriber, the same session id, both downloads.
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!((after[0].0.as_str(), after[0].1), (UE1, id));
    assert!(after[0].2 > 2 * (4 << 20), "both downloads: {}", after[0].2);
    assert!(!after.iter().any(|r| r.0 == UE2));
    drop(lab);
    std::fs::remove_dir_all(&dir).ok();
}
