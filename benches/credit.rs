//! Online charging's cost per packet: one flow of a rule with `online = true` and a grant too
//! large to run out, against the same flow under the same rule offline, side by side. Both hit
//! the flow cache; the difference is the credit stage.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, CreditGrant, GrantedServiceUnit, PolicySnapshot};
use weir::time::Timestamp;
use weir::wire::{tcp_flags, LinkHeader, LinkType, TcpSegment};

/// Frames per iteration: both directions of one TCP flow.
const FRAMES: usize = 64;

fn engine(online: bool) -> Engine {
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
online = {online}
flow = [{{ description = "permit out 6 from any 80 to assigned" }}]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
predefined = ["web"]
"#
    );
    let mut config = Config::from_toml_str(&text, "bench").expect("valid config");
    config.sessions[0].credits.push(CreditGrant {
        rating_group: 10,
        service_identifier: None,
        grant: 1,
        granted: GrantedServiceUnit {
            total: Some(u64::MAX / 2),
            ..Default::default()
        },
        volume_threshold: Some(1 << 20),
        time_threshold: None,
        validity_time: None,
        quota_holding_time: None,
        final_unit: None,
    });
    Engine::new(Arc::new(PolicySnapshot::build(&config, 1)), LinkType::RawIp)
}

fn frames() -> Vec<Vec<u8>> {
    let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
    let site = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let payload = [0u8; 1400];
    (0..FRAMES)
        .map(|i| {
            let (src, dst, sport, dport, payload): (_, _, _, _, &[u8]) = if i % 4 == 0 {
                (ue, site, 40000, 80, &[])
            } else {
                (site, ue, 80, 40000, &payload)
            };
            let mut out = Vec::new();
            TcpSegment {
                link: LinkHeader::RawIp,
                src,
                dst,
                src_port: sport,
                dst_port: dport,
                seq: 1 + i as u32 * 1400,
                ack: 1,
                flags: tcp_flags::ACK,
                window: 64240,
                mss: None,
                payload,
            }
            .write(&mut out)
            .expect("a segment");
            out
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let now = Timestamp::from_secs(1_800_000_000);
    let mut group = c.benchmark_group("credit");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for (name, online) in [("offline", false), ("online", true)] {
        let mut engine = engine(online);
        let mut out = Output::default();
        for f in &frames {
            assert_eq!(
                engine.handle_frame(now, Port::Any, f, &mut out),
                Verdict::Forward
            );
        }
        group.bench_function(format!("cache_hit/{name}"), |b| {
            b.iter(|| {
                for f in &frames {
                    out.clear();
                    black_box(engine.handle_frame(now, Port::Any, black_box(f), &mut out));
                }
                // The grant never reaches its threshold: nothing to drain, kept for symmetry.
                engine.drain_events().for_each(drop);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
