//! Gy benchmark of the gateway's side: the CCR-U rate the gateway's Gy client sustains end to
//! end with 100 000 online sessions whose grants cross their Volume-Quota-Threshold, against a
//! real `weir policy-engine` (the release binary, its own process and SQLite store) holding an
//! account per session.
//!
//! ```sh
//! cargo build --release --bin weir && cargo run --release --example gy_gateway_bench
//! cargo run --release --example gy_gateway_bench -- --sessions 100000 --rounds 3 --journal on,off
//! ```
//!
//! The gateway's control plane runs in this process as `weir run` starts it
//! (`weir::control::start`: the session manager, the event pump, the Gy client), with
//! `--sessions` sessions (default 100 000) of one online rule of rating group 10. The data path
//! is stood in for by the events a worker sends: first a CreditRequest per session (CCR-I; the
//! charging system grants 1 MB with a Volume-Quota-Threshold of 200 000 octets), then
//! `--rounds` rounds (default 3) in which every session reports a threshold crossing
//! (CreditReport, Reporting-Reason THRESHOLD, 800 000 octets used), which the Gy client sends as
//! CCR-U and whose answer becomes the session's next grant in the session manager. A round ends
//! when every session holds its new grant; CCR-U/s is sessions × rounds over the rounds' time.
//! `--journal on,off` runs it with the credit journal (a file beside the benchmark, fsynced per
//! request) and without, each against a policy engine of its own.
//!
//! A session whose request failed gets CONTINUE's local grant (a size no answer has), so it is
//! counted as a failure, not a success.

#[path = "support/policy_engine.rs"]
mod policy_engine;

use policy_engine::{arg, text_arg, PolicyEngine};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::packet::{Event, Octets, ReportingReason, UsedUnits};
use weir::policy::{Config, PolicySnapshot, SessionId};
use weir::time::Timestamp;

const GRANT: u64 = 1_000_000;
const USED: u64 = 800_000;
/// CONTINUE's local grant: no answer of the charging system grants this.
const LOCAL: u64 = 7_777;

fn subscriber(i: u32) -> String {
    format!("imsi-00101{:010}", i)
}

fn engine_config(sessions: u32) -> String {
    let mut text = String::from(
        r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
origin_host = "ocs.bench"
token_key = "000102030405060708090a0b0c0d0e0f"
predefined_rules = ["web"]

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
flow = [{ description = "permit out ip from any to assigned" }]

[[plan]]
name = "standard"
predefined = ["web"]
rate = [{ rating_group = 10, per_mb = 1 }]

[charging]
grant_octets = 1000000
validity_time = 3600
threshold_percent = 20
"#,
    );
    for i in 0..sessions {
        text.push_str(&format!(
            "\n[[account]]\nsubscriber = \"{}\"\nbalance = 1000000000000\n",
            subscriber(i)
        ));
    }
    text
}

fn gateway_config(
    sessions: u32,
    charging_system: &str,
    journal: Option<&std::path::Path>,
) -> Config {
    let mut text = format!(
        r#"
[gateway]
ue_pools = ["10.0.0.0/8"]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
online = true
flow = [{{ description = "permit out 6 from any 80 to assigned" }}]

[control]
listen = ""
charging_system = "http://{charging_system}"

[credit]
failure_handling = "continue"
continue_octets = {LOCAL}
{}
"#,
        journal.map_or(String::new(), |j| format!("journal = \"{}\"", j.display()))
    );
    for i in 0..sessions {
        let n = i + 1;
        text.push_str(&format!(
            "\n[[session]]\nsubscriber = \"{}\"\nipv4 = \"10.{}.{}.{}\"\npredefined = [\"web\"]\n",
            subscriber(i),
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        ));
    }
    Config::from_toml_str(&text, "gateway").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

/// Sessions holding grant `grant` (answered), and sessions holding CONTINUE's local grant.
fn count_grants(c: &weir::control::Control, sessions: u32, grant: u64) -> (u32, u32) {
    let m = c.manager().clone();
    c.block_on(async move {
        m.call(move |s, _| {
            let (mut answered, mut local) = (0, 0);
            for i in 0..sessions {
                let Some(g) = s.get(SessionId(i)).and_then(|e| e.config.credits.first()) else {
                    continue;
                };
                if g.granted.total == Some(LOCAL) {
                    local += 1;
                } else if g.grant >= grant
                    && g.granted.total == Some(GRANT)
                    && g.volume_threshold == Some(GRANT / 5)
                {
                    answered += 1;
                }
            }
            (answered, local)
        })
        .await
        .expect("the session manager runs")
    })
}

/// Waits until the Gy client has `answers` answers in all and every session holds grant
/// `grant`; the time it took. The answers are counted by the client (an atomic, read often);
/// the grants are checked in the session manager only once the answers are in, since walking
/// every session there takes the manager's thread from the work being measured.
fn wait_for(
    c: &weir::control::Control,
    sessions: u32,
    answers: u64,
    grant: u64,
    started: Instant,
) -> Duration {
    let counters = c.gy_counters().expect("a charging system is configured");
    let mut last = (0, Instant::now());
    loop {
        let got = counters.answers.load(Ordering::Relaxed);
        let failed = counters.failures.load(Ordering::Relaxed);
        assert_eq!(
            failed, 0,
            "{failed} requests failed ({got} of {answers} answered)"
        );
        if got >= answers {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "no progress for 60 s: {got} of {answers} answered"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    loop {
        let (answered, local) = count_grants(c, sessions, grant);
        assert_eq!(local, 0, "{local} sessions got CONTINUE's local grant");
        if answered == sessions {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "{answered} of {sessions} hold grant {grant}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Run {
    journal: bool,
    ccr_i: Duration,
    rounds: Vec<Duration>,
}

fn run(sessions: u32, rounds: u32, journal: bool) -> Run {
    let dir = std::env::temp_dir().join(format!(
        "weir-gy-gw-bench-{}-{}",
        std::process::id(),
        if journal { "journal" } else { "memory" }
    ));
    let t = Instant::now();
    let pe = PolicyEngine::start(&dir, &engine_config(sessions));
    eprintln!(
        "gy_gateway_bench: policy engine with {sessions} accounts up in {:.1?}",
        t.elapsed()
    );
    // The journal sits beside the policy engine's store, on the same disk (not tmpfs).
    let journal_path = dir.join("gy.journal");
    let config = gateway_config(
        sessions,
        &pe.addr,
        journal.then_some(journal_path.as_path()),
    );
    let policy = Arc::new(arc_swap::ArcSwap::from_pointee(PolicySnapshot::build(
        &config, 0,
    )));
    let gw = weir::control::start(&config, policy, weir::control::Tallies::default())
        .expect("the control plane starts");
    let events = gw.events();

    let started = Instant::now();
    for i in 0..sessions {
        events
            .send(Event::CreditRequest {
                session: SessionId(i),
                rating_group: 10,
                service_identifier: None,
                at: Timestamp::now(),
            })
            .expect("the event pump runs");
    }
    let ccr_i = wait_for(&gw, sessions, u64::from(sessions), 1, started);
    eprintln!("gy_gateway_bench: {sessions} CCR-I answered in {ccr_i:.1?}");

    let mut times = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        for i in 0..sessions {
            events
                .send(Event::CreditReport {
                    session: SessionId(i),
                    rating_group: 10,
                    service_identifier: None,
                    grant: u64::from(round) + 1,
                    reason: ReportingReason::Threshold,
                    used: UsedUnits {
                        octets: Octets {
                            uplink: USED / 4,
                            downlink: USED - USED / 4,
                        },
                        time: 0,
                    },
                    at: Timestamp::now(),
                })
                .expect("the event pump runs");
        }
        let took = wait_for(
            &gw,
            sessions,
            u64::from(sessions) * (u64::from(round) + 2),
            u64::from(round) + 2,
            started,
        );
        eprintln!(
            "gy_gateway_bench: round {}: {sessions} CCR-U answered in {took:.1?}",
            round + 1
        );
        times.push(took);
    }
    gw.stop(Duration::from_secs(10));
    drop(pe);
    Run {
        journal,
        ccr_i,
        rounds: times,
    }
}

fn main() {
    let sessions = arg("--sessions", 100_000) as u32;
    let rounds = arg("--rounds", 3) as u32;
    let modes: Vec<bool> = text_arg("--journal")
        .unwrap_or_else(|| "on,off".into())
        .split(',')
        .map(|m| match m {
            "on" => true,
            "off" => false,
            other => panic!("--journal takes on and/or off, not {other}"),
        })
        .collect();
    let runs: Vec<Run> = modes.iter().map(|&j| run(sessions, rounds, j)).collect();
    println!();
    println!(
        "| journal | sessions | CCR-I/s | CCR-U rounds | CCR-U | time | CCR-U/s | slowest round |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let total: Duration = r.rounds.iter().sum();
        let slowest = r.rounds.iter().max().copied().unwrap_or_default();
        println!(
            "| {} | {sessions} | {:.0} | {rounds} | {} | {:.1?} | {:.0} | {:.0} /s |",
            if r.journal {
                "on (fsync per request)"
            } else {
                "off"
            },
            f64::from(sessions) / r.ccr_i.as_secs_f64(),
            u64::from(sessions) * u64::from(rounds),
            total,
            f64::from(sessions) * f64::from(rounds) / total.as_secs_f64(),
            f64::from(sessions) / slowest.as_secs_f64(),
        );
    }
}
