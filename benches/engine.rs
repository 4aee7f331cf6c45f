//! Engine cost per packet on a real capture replayed from memory: the flow-cache hit path (every
//! flow already classified) and the miss path (a fresh engine, every flow classified anew).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use weir::engine::{Engine, Output, Port};
use weir::io::pcap::CaptureReader;
use weir::policy::{Config, PolicySnapshot};
use weir::wire::{self, Parsed};

fn load() -> (Arc<PolicySnapshot>, Vec<weir::io::pcap::Record>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let text =
        std::fs::read_to_string(format!("{root}/examples/weir.toml")).expect("examples/weir.toml");
    let config = Config::from_toml_str(&text, "examples/weir.toml").expect("valid example config");
    let file = File::open(format!("{root}/examples/sample.pcap")).expect("examples/sample.pcap");
    let mut reader = CaptureReader::new(BufReader::new(file)).expect("capture");
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().expect("record") {
        records.push(r);
    }
    (Arc::new(PolicySnapshot::build(&config, 1)), records)
}

fn bench(c: &mut Criterion) {
    let (snapshot, records) = load();
    let link = records[0].link;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(records.len() as u64));

    let mut engine = Engine::new(snapshot.clone(), link);
    let mut out = Output::default();
    for r in &records {
        engine.handle_frame(r.timestamp, Port::Any, &r.data, &mut out);
    }
    // Replaying with the last timestamp keeps every flow fresh: all lookups hit the cache.
    let now = records.last().map(|r| r.timestamp).unwrap_or_default();
    group.bench_function("sample.pcap/cache_hit", |b| {
        b.iter(|| {
            for r in &records {
                out.clear();
                std::hint::black_box(engine.handle_frame(now, Port::Any, &r.data, &mut out));
            }
        })
    });
    group.bench_function("sample.pcap/cache_miss", |b| {
        b.iter_batched(
            || Engine::new(snapshot.clone(), link),
            |mut e| {
                let mut out = Output::default();
                for r in &records {
                    std::hint::black_box(e.handle_frame(r.timestamp, Port::Any, &r.data, &mut out));
                }
                e
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // Every packet a new flow: each uplink TCP/UDP frame of the sample with its source port
    // rewritten, so each one misses the cache and is classified.
    let mut fresh = Vec::new();
    for r in &records {
        let Ok(Parsed::Ip(p)) = wire::parse(link, &r.data) else {
            continue;
        };
        if p.l4_offset == 0 || !matches!(p.tuple.protocol, 6 | 17) || !p.tuple.src.is_ipv4() {
            continue;
        }
        for i in 0..32u16 {
            let mut f = r.data.clone();
            let at = usize::from(p.l4_offset);
            f[at..at + 2]
                .copy_from_slice(&(10_000 + i * 97 + fresh.len() as u16 % 89).to_be_bytes());
            fresh.push(f);
        }
    }
    let now = records[0].timestamp;
    let mut group = c.benchmark_group("engine_every_packet_new_flow");
    group.throughput(Throughput::Elements(fresh.len() as u64));
    group.bench_function("sample.pcap", |b| {
        b.iter_batched(
            || Engine::new(snapshot.clone(), link),
            |mut e| {
                let mut out = Output::default();
                for f in &fresh {
                    std::hint::black_box(e.handle_frame(now, Port::Any, f, &mut out));
                }
                e
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
