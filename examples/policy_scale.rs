//! Memory per session and the time to build a policy of many sessions, and to change some of
//! them: `cargo run --release --example policy_scale [N ...]` (default 100000 1000000).
//!
//! Each session has an IPv4 address and three predefined rules (shared, never copied); the
//! second figure adds one dynamic rule of its own. Memory is the growth of the process's
//! resident set over the build, with the session configurations already in memory, so it is
//! what the compiled snapshot holds (its sessions, rules, classifiers and indexes).

use std::net::Ipv4Addr;
use std::time::Instant;
use weir::policy::{Config, PolicySnapshot, SessionConfig, SessionId, SubscriberId};

const POLICY: &str = r#"
[gateway]
ue_pools = ["10.0.0.0/8"]

[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{ description = "permit out 17 from any 53 to assigned" }]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
monitoring_key = "mk-web"
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]

[[predefined_rule]]
name = "video"
precedence = 50
rating_group = 20
flow = [{ description = "permit out 6 from 203.0.113.0/24 to assigned", direction = "DOWNLINK" }]

[[session]]
subscriber = "imsi-001010000000000"
ipv4 = "10.0.0.1"
predefined = ["dns", "web", "video"]
default_rule = { action = "forward", rating_group = 0 }

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.0.0.2"
predefined = ["dns", "web", "video"]
default_rule = { action = "forward", rating_group = 0 }

[[session.rule]]
name = "voice"
precedence = 5
rating_group = 30
flow = [{ description = "permit out 17 from 198.51.100.0/24 5060 to assigned" }]
"#;

/// `n` sessions cloned from template `which` of the policy, each with its own id and address.
fn sessions(config: &Config, which: usize, n: u32) -> Vec<(SessionId, SessionConfig)> {
    (0..n)
        .map(|i| {
            let mut s = config.sessions[which].clone();
            s.subscriber = SubscriberId::parse(&format!("imsi-00101{i:010}")).expect("an IMSI");
            s.ipv4 = Some(Ipv4Addr::from(0x0a00_0000 + i + 1));
            (SessionId(i), s)
        })
        .collect()
}

/// Resident set size in bytes, from /proc.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = status
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Builds `n` sessions of template `which` and prints one line.
fn measure(config: &Config, n: u32, which: usize) {
    let rules = ["3 predefined", "3 + 1 dynamic"][which];
    let owned = sessions(config, which, n);
    let refs: Vec<(SessionId, &SessionConfig)> = owned.iter().map(|(id, s)| (*id, s)).collect();
    let before = rss();
    let start = Instant::now();
    let snap = PolicySnapshot::build_from(&config.gateway, &config.predefined, &refs, 1);
    let build = start.elapsed();
    let bytes = rss().saturating_sub(before);
    // A batch of 1,000 replaced sessions, spread over the whole snapshot.
    let step = (n / 1000).max(1) as usize;
    let changes: Vec<(SessionId, Option<&SessionConfig>)> = owned
        .iter()
        .step_by(step)
        .take(1000)
        .map(|(id, s)| (*id, Some(s)))
        .collect();
    let start = Instant::now();
    let next = snap.with_changes(2, &changes);
    let change = start.elapsed();
    assert_eq!(next.session_count(), n as usize);
    println!(
        "{n:>9}   {rules:<14}  {:>6.2} s  {:>8}         {:>7.2} ms",
        build.as_secs_f64(),
        bytes / u64::from(n.max(1)),
        change.as_secs_f64() * 1e3
    );
}

fn main() {
    let config = Config::from_toml_str(POLICY, "policy_scale").expect("the policy parses");
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--one N WHICH`: one measurement, in a process of its own, so memory freed by an earlier
    // one cannot hide the growth of the next.
    if args.first().map(String::as_str) == Some("--one") {
        let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
        let which = args
            .get(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0usize)
            .min(1);
        measure(&config, n, which);
        return;
    }
    let counts: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        counts
    };
    println!("sessions   rules/session   build     bytes/session   with_changes(1000)");
    let me = std::env::current_exe().expect("the example's own path");
    for n in counts {
        for which in 0..2 {
            let status = std::process::Command::new(&me)
                .args(["--one", &n.to_string(), &which.to_string()])
                .status()
                .expect("the measurement runs");
            assert!(status.success());
        }
    }
}
