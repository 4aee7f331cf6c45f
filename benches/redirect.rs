//! The 302 responder's rate on one core, sans-IO: each connection is a SYN (answered with a
//! SYN-ACK cookie) and a request segment (answered with the 302 and FIN), through
//! `Engine::handle_frame` with the example policy's redirected subscriber.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, PolicySnapshot};
use weir::time::Timestamp;
use weir::wire::{self, tcp_flags, LinkHeader, LinkType, Parsed, TcpSegment};

const CONNECTIONS: u16 = 1024;
const REQUEST: &[u8] = b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 14)\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip\r\n\r\n";

fn segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: LinkHeader::RawIp,
        src,
        dst,
        src_port: sport,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 64240,
        mss: (flags & tcp_flags::SYN != 0).then_some(1460),
        payload,
    }
    .write(&mut out)
    .expect("a small segment");
    out
}

fn bench(c: &mut Criterion) {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/examples/weir.toml")).expect("example");
    let config = Config::from_toml_str(&text, "examples/weir.toml").expect("valid example");
    let snapshot = Arc::new(PolicySnapshot::build(&config, 1));
    let mut group = c.benchmark_group("redirect");
    for (name, ue, site) in [
        (
            "ipv6",
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 3, 0, 0, 0, 0x10)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 7)),
        ),
        (
            "ipv4",
            IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        ),
    ] {
        // The example redirects its IPv6 subscriber; for IPv4 give that session an address too.
        let snapshot = if ue.is_ipv4() {
            let mut config = config.clone();
            config.sessions[2].ipv4 = Some(Ipv4Addr::new(10, 45, 0, 3));
            Arc::new(PolicySnapshot::build(&config, 1))
        } else {
            snapshot.clone()
        };
        let now = Timestamp::from_secs(1_800_000_000);
        let mut engine = Engine::new(snapshot, LinkType::RawIp);
        let mut out = Output::default();
        // Each connection's SYN and, with the cookie its SYN-ACK carried, its request.
        let mut pairs = Vec::new();
        for i in 0..CONNECTIONS {
            let sport = 10_000 + i;
            let syn = segment(ue, site, sport, 7, 0, tcp_flags::SYN, &[]);
            out.clear();
            engine.handle_frame(now, Port::Ue, &syn, &mut out);
            let (_, synack) = out.frames().next().expect("a SYN-ACK");
            let Ok(Parsed::Ip(p)) = wire::parse(LinkType::RawIp, synack) else {
                panic!("SYN-ACK does not parse")
            };
            let request = segment(
                ue,
                site,
                sport,
                8,
                p.tcp_seq.wrapping_add(1),
                tcp_flags::ACK | tcp_flags::PSH,
                REQUEST,
            );
            pairs.push((syn, request));
        }
        group.throughput(Throughput::Elements(u64::from(CONNECTIONS)));
        group.bench_function(format!("syn_and_request_to_302/{name}"), |b| {
            b.iter(|| {
                for (syn, request) in &pairs {
                    out.clear();
                    engine.handle_frame(now, Port::Ue, syn, &mut out);
                    out.clear();
                    let v = engine.handle_frame(now, Port::Ue, request, &mut out);
                    debug_assert_eq!(v, Verdict::Inject);
                    std::hint::black_box(out.bytes.len());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
