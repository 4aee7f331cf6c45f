//! How long the engine takes from quota exhaustion to the Final-Unit-Action applied: the engine
//! time of the packet that uses a grant up (forwarded, the last one, raising the FINAL report)
//! and of the first packet after it (dropped under TERMINATE; under REDIRECT the next packet of
//! the flow is dropped and a new connection is answered by the redirect stage), against the
//! same packet under a grant in force, each timed alone in a precise loop.
//!
//! ```sh
//! cargo run --release --example final_unit_latency -- --cycles 200000
//! ```
//!
//! One cycle: a new grant of exactly the octets of the next three segments arrives (a new
//! snapshot, as the session manager publishes one), two 1 400-byte segments toward the UE
//! warm the flow (the cache-hit path), then the third, which uses the grant up, and the
//! packets after it, each timed by itself with the clock read around the one `handle_frame`.
//! The "grant in force" rows time the same packets under a grant that never runs out, so the
//! clock's own cost (the empty row) is in every row alike.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;
use weir::engine::{DropReason, Engine, Output, Port, Verdict};
use weir::policy::{
    Config, CreditGrant, FinalUnitAction, FinalUnitIndication, GrantedServiceUnit, PolicySnapshot,
    RedirectAddressType, RedirectInformation,
};
use weir::time::Timestamp;
use weir::wire::{tcp_flags, LinkHeader, LinkType, TcpSegment};

const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
const SITE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn config() -> Config {
    let text = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[redirect]
http_ports = [80]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
online = true
flow = [{ description = "permit out 6 from any 80 to assigned" }]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
predefined = ["web"]
"#;
    Config::from_toml_str(text, "final_unit_latency").expect("a valid configuration")
}

fn segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: LinkHeader::RawIp,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        seq,
        ack: 1,
        flags,
        window: 64240,
        mss: (flags & tcp_flags::SYN != 0).then_some(1460),
        payload,
    }
    .write(&mut out)
    .expect("a segment");
    out
}

/// Toward the UE on the established flow, the `i`th segment.
fn down(i: u32) -> Vec<u8> {
    segment(
        SITE,
        UE,
        80,
        40000,
        tcp_flags::ACK,
        1 + i * 1400,
        &[0u8; 1400],
    )
}

fn grant(number: u64, octets: u64, action: Option<FinalUnitAction>) -> CreditGrant {
    CreditGrant {
        rating_group: 10,
        service_identifier: None,
        grant: number,
        granted: GrantedServiceUnit {
            total: Some(octets),
            ..Default::default()
        },
        volume_threshold: None,
        time_threshold: None,
        validity_time: None,
        quota_holding_time: None,
        final_unit: action.map(|action| FinalUnitIndication {
            action,
            restriction_filters: Vec::new(),
            filter_ids: Vec::new(),
        }),
    }
}

/// Nanoseconds per packet of one row: median, 99th percentile.
fn summary(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)];
    (at(0.5), at(0.99))
}

fn timed(engine: &mut Engine, out: &mut Output, now: Timestamp, frame: &[u8]) -> (Verdict, u64) {
    out.clear();
    let t = Instant::now();
    let v = engine.handle_frame(now, Port::Any, black_box(frame), out);
    let ns = t.elapsed().as_nanos() as u64;
    (v, ns)
}

#[derive(Default)]
struct Rows {
    exhausting: Vec<u64>,
    next_of_flow: Vec<u64>,
    new_syn: Vec<u64>,
}

/// `cycles` cycles under `action` (`None`: a grant that never runs out).
fn cycles(cycles: u32, action: Option<FinalUnitAction>) -> Rows {
    let mut config = config();
    let now = Timestamp::from_secs(1_800_000_000);
    let frames: Vec<Vec<u8>> = (0..4).map(down).collect();
    let syn = segment(UE, SITE, 41000, 80, tcp_flags::SYN, 1_000_000, &[]);
    let exact = frames[..3].iter().map(|f| f.len() as u64).sum::<u64>();
    let octets = if action.is_some() {
        exact
    } else {
        u64::MAX / 2
    };
    let mut engine = Engine::new(Arc::new(PolicySnapshot::build(&config, 1)), LinkType::RawIp);
    let mut out = Output::default();
    let mut rows = Rows::default();
    for c in 0..u64::from(cycles) {
        // A new grant: the session manager's next snapshot.
        config.sessions[0].credits = vec![grant(c + 1, octets, action.clone())];
        engine.set_snapshot(Arc::new(PolicySnapshot::build(&config, c + 2)));
        for f in &frames[..2] {
            out.clear();
            assert_eq!(
                engine.handle_frame(now, Port::Any, f, &mut out),
                Verdict::Forward
            );
        }
        let (v, ns) = timed(&mut engine, &mut out, now, &frames[2]);
        assert_eq!(v, Verdict::Forward, "the exhausting packet is forwarded");
        rows.exhausting.push(ns);
        let (v, ns) = timed(&mut engine, &mut out, now, &frames[3]);
        match &action {
            None => assert_eq!(v, Verdict::Forward),
            Some(FinalUnitAction::Terminate) => {
                assert_eq!(v, Verdict::Drop(DropReason::CreditTerminated))
            }
            Some(_) => assert!(matches!(v, Verdict::Drop(_) | Verdict::Inject), "{v:?}"),
        }
        rows.next_of_flow.push(ns);
        let (v, ns) = timed(&mut engine, &mut out, now, &syn);
        match &action {
            Some(FinalUnitAction::Redirect(_)) => assert_eq!(v, Verdict::Inject, "a SYN-ACK"),
            Some(FinalUnitAction::Terminate) => {
                assert_eq!(v, Verdict::Drop(DropReason::CreditTerminated))
            }
            _ => assert_eq!(v, Verdict::Forward),
        }
        rows.new_syn.push(ns);
        engine.drain_events().for_each(drop);
    }
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args
        .iter()
        .position(|a| a == "--cycles")
        .and_then(|i| args.get(i + 1))
        .map_or(200_000, |v| v.parse().expect("--cycles takes a number"));
    let clock = {
        let mut ns = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = Instant::now();
            ns.push(black_box(t).elapsed().as_nanos() as u64);
        }
        summary(ns)
    };
    let redirect = FinalUnitAction::Redirect(
        RedirectInformation::new(
            true,
            RedirectAddressType::Url,
            "http://portal.example/topup",
        )
        .expect("a redirect address"),
    );
    let started = Instant::now();
    let runs = [
        ("grant in force", cycles(n, None)),
        ("TERMINATE", cycles(n, Some(FinalUnitAction::Terminate))),
        ("REDIRECT", cycles(n, Some(redirect))),
    ];
    println!(
        "final_unit_latency: {n} cycles each in {:.1?}; the clock alone reads in {} ns (median), {} ns (p99)",
        started.elapsed(),
        clock.0,
        clock.1
    );
    println!();
    println!("| grant | packet that uses it up (median / p99) | next packet of the flow | a new connection's SYN |");
    println!("|---|---:|---:|---:|");
    for (name, rows) in runs {
        let cell = |ns: Vec<u64>| {
            let (p50, p99) = summary(ns);
            format!("{p50} ns / {p99} ns")
        };
        println!(
            "| {name} | {} | {} | {} |",
            cell(rows.exhausting),
            cell(rows.next_of_flow),
            cell(rows.new_syn)
        );
    }
}
