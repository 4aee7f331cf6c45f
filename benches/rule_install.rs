//! What the session manager costs per installed rule, without gRPC: `Sessions::apply` of a
//! RAR's Charging-Rule-Install (1 or 10 dynamic rules for one session, sessions taken
//! round-robin, each RAR replacing the rules the previous one installed) and the snapshot published after every `batch` RARs, on 10,000 and 100,000
//! sessions of two predefined rules each. Throughput is in rules. Time is the thread's CPU
//! time, so other work on a loaded machine does not count against it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::Ipv4Addr;
use std::time::Duration;
use weir::control::{Origin, Sessions, Update};
use weir::policy::{Config, SessionId, SubscriberId};
use weir::proto::v1 as pb;
use weir::time::Timestamp;

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
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]
"#;

fn rule(name: String, port: u16) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        charging_rule_name: name,
        flow_information: vec![pb::FlowInformation {
            flow_description: format!("permit out 17 from 203.0.113.0/24 to assigned {port}"),
            flow_direction: pb::FlowDirection::Bidirectional as i32,
        }],
        precedence: Some(50),
        rating_group: Some(30),
        ..Default::default()
    }
}

fn install(names: Vec<String>) -> Update {
    Update {
        installs: vec![pb::ChargingRuleInstall {
            charging_rule_name: names,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// CPU time of the calling thread (the first field of its schedstat: nanoseconds on a CPU).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("nanoseconds");
    Duration::from_nanos(ns)
}

fn populated(n: u32) -> (Sessions, Vec<SessionId>) {
    let config = Config::from_toml_str(POLICY, "rule_install").expect("the policy parses");
    let now = Timestamp::now();
    let mut s = Sessions::new(&config, now);
    let ids: Vec<SessionId> = (0..n)
        .map(|i| {
            let sub = SubscriberId::parse(&format!("imsi-00101{i:010}")).expect("an IMSI");
            let id = s
                .create(
                    sub,
                    Some(Ipv4Addr::from(0x0a00_0000 + i + 1)),
                    None,
                    Origin::Operator,
                    None,
                    now,
                )
                .expect("a session");
            s.apply(
                id,
                &install(vec!["dns".into(), "web".into()]),
                pb::RedirectLiftCause::PolicyEngine,
                now,
            )
            .expect("installs");
            id
        })
        .collect();
    s.snapshot();
    (s, ids)
}

fn rule_install(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_install");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(2));
    for n in [10_000u32, 100_000] {
        let (mut sessions, ids) = populated(n);
        let mut next = 0u64;
        for per_rar in [1u64, 10] {
            for batch in [1u64, 16] {
                g.throughput(Throughput::Elements(per_rar));
                g.bench_function(format!("{n}/{per_rar}-per-rar/batch-{batch}"), |b| {
                    b.iter_custom(|rars| {
                        let now = Timestamp::now();
                        let t = cpu_time();
                        for r in 0..rars {
                            next += 1;
                            let id = ids[(next % ids.len() as u64) as usize];
                            // Every session holds the same rules whatever the number of
                            // iterations: a RAR replaces the session's dynamic rules of the
                            // same names (a modification is an install, TS 29.212 §4.5.2).
                            let update = Update {
                                installs: vec![pb::ChargingRuleInstall {
                                    charging_rule_definition: (0..per_rar)
                                        .map(|k| rule(format!("d{k}"), (next % 60000) as u16 + 1))
                                        .collect(),
                                    ..Default::default()
                                }],
                                ..Default::default()
                            };
                            let reports = sessions
                                .apply(id, &update, pb::RedirectLiftCause::PolicyEngine, now)
                                .expect("applies");
                            assert!(reports.is_empty(), "{reports:?}");
                            if (r + 1) % batch == 0 {
                                sessions.snapshot();
                            }
                        }
                        sessions.snapshot();
                        cpu_time() - t
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, rule_install);
criterion_main!(benches);
