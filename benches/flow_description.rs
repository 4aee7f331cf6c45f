//! Parsing cost of typical Flow-Descriptions, as a policy engine sends them in a rule install.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use weir::policy::FlowDescription;

const TYPICAL: &[(&str, &str)] = &[
    ("any_to_assigned", "permit out 17 from any to assigned"),
    (
        "web_ports",
        "permit out 6 from any 80,443,8080-8090 to assigned",
    ),
    (
        "ipv4_prefixes",
        "permit out 6 from 10.0.0.0/8 80,443,8000-8080 to 10.45.0.0/16 1024-65535",
    ),
    (
        "ipv6_prefixes",
        "permit in 17 from 2001:db8:45:1::/64 5060-5061 to 2001:db8:cafe::/48 5060",
    ),
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_description_parse");
    for (name, text) in TYPICAL {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(text).parse::<FlowDescription>())
        });
    }
    group.finish();
}

fn display(c: &mut Criterion) {
    let parsed: Vec<FlowDescription> = TYPICAL
        .iter()
        .filter_map(|(_, text)| text.parse().ok())
        .collect();
    c.bench_function("flow_description_display", |b| {
        b.iter(|| {
            for fd in &parsed {
                black_box(fd.to_string());
            }
        })
    });
}

criterion_group!(benches, parse, display);
criterion_main!(benches);
