//! The cost of a policy change: `with_changes` of one session and of a batch of 1,000 (three
//! rules each: two predefined, one dynamic), on snapshots of 10,000 and 100,000 sessions,
//! beside a full `build_from` of the same sessions.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::net::Ipv4Addr;
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

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.0.0.2"
predefined = ["dns", "web"]

[[session.rule]]
name = "voice"
precedence = 5
rating_group = 30
flow = [{ description = "permit out 17 from 198.51.100.0/24 5060 to assigned" }]
"#;

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

fn policy_update(c: &mut Criterion) {
    let config = Config::from_toml_str(POLICY, "policy_update").expect("the policy parses");
    let mut g = c.benchmark_group("policy_update");
    g.sample_size(20);
    for n in [10_000u32, 100_000] {
        let base = sessions(&config, 0, n);
        let refs: Vec<(SessionId, &SessionConfig)> = base.iter().map(|(id, s)| (*id, s)).collect();
        let snap = PolicySnapshot::build_from(&config.gateway, &config.predefined, &refs, 1);
        // The changed sessions get a dynamic rule: replacements spread over the snapshot.
        let changed = sessions(&config, 1, n);
        let step = (n / 1000) as usize;
        let one: Vec<(SessionId, Option<&SessionConfig>)> =
            vec![(changed[n as usize / 2].0, Some(&changed[n as usize / 2].1))];
        let batch: Vec<(SessionId, Option<&SessionConfig>)> = changed
            .iter()
            .step_by(step)
            .take(1000)
            .map(|(id, s)| (*id, Some(s)))
            .collect();
        // The old snapshot is dropped outside the timing, as the data path drops it later.
        g.bench_function(format!("with_changes/1/{n}"), |b| {
            b.iter_batched(
                || (),
                |()| snap.with_changes(2, &one),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("with_changes/1000/{n}"), |b| {
            b.iter_batched(
                || (),
                |()| snap.with_changes(2, &batch),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("build_from/{n}"), |b| {
            b.iter_batched(
                || (),
                |()| PolicySnapshot::build_from(&config.gateway, &config.predefined, &refs, 2),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, policy_update);
criterion_main!(benches);
