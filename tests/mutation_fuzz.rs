//! Deterministic mutation fuzzing of the packet path on real frames: every frame of the shipped
//! sample and of the third-party captures, bit-flipped, truncated, extended and with length
//! fields smashed, goes through the whole engine three times: with the capture's clients as
//! metered subscribers, as redirected subscribers (the 302 responder, resets, the walled
//! garden's blocks), and as redirected subscribers whose servers are the portal (the garden and
//! the recharge-success watch). Each round also sends, mutated, a request behind a real SYN
//! cookie and a success URL with a valid token, so the deeper stages see damaged input too.
//!
//! What the engine promises, and what is checked: no panic; one verdict per frame, and the
//! counters agree with the verdicts seen; every injected frame parses. The counters show that
//! the mutated frames reached each path.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use weir::engine::{Engine, Output, Port, Verdict};
use weir::io::pcap::CaptureReader;
use weir::policy::{Config, PolicySnapshot};
use weir::time::Timestamp;
use weir::token::TokenKey;
use weir::wire::{tcp_flags, EthernetHeader, LinkHeader, LinkType, Parsed, TcpSegment};

/// xorshift64*: a fixed seed keeps every run identical, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    match rng.below(6) {
        0 => {
            let i = rng.below(f.len());
            if let Some(b) = f.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => f.truncate(rng.below(f.len())),
        2 => {
            for _ in 0..rng.below(64) {
                f.push(rng.next() as u8);
            }
        }
        3 => {
            // Smash bytes where length, version and header-length fields live.
            for at in [12, 13, 14, 16, 17, 18, 19, 20, 24, 38, 46, 54] {
                if rng.below(3) == 0 {
                    if let Some(b) = f.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
            }
        }
        4 => {
            let i = rng.below(f.len());
            let n = rng.below(16);
            f.splice(i..i, (0..n).map(|_| rng.next() as u8));
        }
        _ => {
            for _ in 0..8 {
                let i = rng.below(f.len());
                if let Some(b) = f.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    f
}

type Frames = Vec<(LinkType, Vec<u8>)>;

fn frames_of(path: &Path) -> Frames {
    let mut reader =
        CaptureReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        out.push((r.link, r.data));
    }
    out
}

/// The capture's clients (senders of a bare SYN or a DNS query) and the servers they talk TCP
/// to, read from the unmutated frames.
fn ends(frames: &Frames) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let packets: Vec<_> = frames
        .iter()
        .filter_map(|(link, f)| match weir::wire::parse(*link, f) {
            Ok(Parsed::Ip(p)) => Some(p),
            _ => None,
        })
        .collect();
    let mut clients: Vec<IpAddr> = packets
        .iter()
        .filter(|p| {
            (p.tuple.protocol == 6
                && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
                || (p.tuple.protocol == 17 && p.tuple.dst_port == 53)
        })
        .map(|p| p.tuple.src)
        .collect();
    clients.sort();
    clients.dedup();
    let mut servers: Vec<IpAddr> = packets
        .iter()
        .filter(|p| p.tuple.protocol == 6 && clients.contains(&p.tuple.src))
        .map(|p| p.tuple.dst)
        .filter(|a| !clients.contains(a))
        .collect();
    servers.sort();
    servers.dedup();
    (clients, servers)
}

const KEY: [u8; 16] = *b"mutation-fuzzkey";
const START: u64 = 1_790_000_000;
const ROUNDS: u64 = 40;

fn subscriber(i: usize) -> String {
    format!("imsi-0010100000{i:05}")
}

fn host(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}/32"),
        IpAddr::V6(_) => format!("{a}/128"),
    }
}

/// Metered: DNS → rating group 1, web → 10 with a monitoring key, the rest → 0.
/// Redirected: every session under the recharge redirect, `portal` in the walled garden.
fn config(clients: &[IpAddr], redirected: bool, portal: &[IpAddr]) -> Config {
    let list = |v: Vec<String>| v.join(", ");
    let pools = list(clients.iter().map(|a| format!("\"{}\"", host(a))).collect());
    let portal = list(portal.iter().map(|a| format!("\"{a}\"")).collect());
    let mut text = format!(
        r#"[gateway]
ue_pools = [{pools}]
[redirect]
success_url = "http://portal.example/recharge/success"
token_key = "{}"
portal_addresses = [{portal}]
[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{{ description = "permit out 17 from any 53 to assigned" }}]
[[predefined_rule]]
name = "web"
precedence = 20
rating_group = 10
monitoring_key = "web"
flow = [{{ description = "permit out 6 from any 80,443,8080 to assigned" }}]
[[predefined_rule]]
name = "recharge"
precedence = 1
rating_group = 99
redirect = {{ address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]
"#,
        KEY.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let rules = if redirected {
        r#"["dns", "web", "recharge"]"#
    } else {
        r#"["dns", "web"]"#
    };
    for (i, a) in clients.iter().enumerate() {
        let addr = match a {
            IpAddr::V4(_) => format!("ipv4 = \"{a}\""),
            IpAddr::V6(_) => format!("ipv6 = \"{a}/128\""),
        };
        text.push_str(&format!(
            "[[session]]\nsubscriber = \"{}\"\n{addr}\npredefined = {rules}\n",
            subscriber(i)
        ));
    }
    Config::from_toml_str(&text, "<fuzz>").unwrap_or_else(|e| panic!("{e}: {:?}", e.0))
}

/// One engine and what it was seen to do.
struct Run {
    engine: Engine,
    link: LinkType,
    out: Output,
    forwarded: u64,
    dropped: u64,
    injected: u64,
    injected_frames: u64,
    watched: usize,
}

impl Run {
    fn new(config: &Config, link: LinkType) -> Self {
        Run {
            engine: Engine::new(Arc::new(PolicySnapshot::build(config, 1)), link),
            link,
            out: Output::default(),
            forwarded: 0,
            dropped: 0,
            injected: 0,
            injected_frames: 0,
            watched: 0,
        }
    }

    fn send(&mut self, now: Timestamp, frame: &[u8]) -> Verdict {
        self.out.clear();
        let v = self
            .engine
            .handle_frame(now, Port::Any, frame, &mut self.out);
        match v {
            Verdict::Forward => self.forwarded += 1,
            Verdict::Drop(_) | Verdict::Held => self.dropped += 1,
            Verdict::Inject => self.injected += 1,
        }
        for (_, f) in self.out.frames() {
            self.injected_frames += 1;
            assert!(
                matches!(weir::wire::parse(self.link, f), Ok(Parsed::Ip(_))),
                "an injected frame does not parse: {f:02x?}"
            );
        }
        self.watched = self.watched.max(self.engine.redirect().watched_flows());
        v
    }

    /// The verdicts seen are the ones counted.
    fn check(&self, what: &str) {
        let c = self.engine.counters();
        assert_eq!(
            (
                c.frames,
                c.forwarded,
                c.dropped_total(),
                c.answered,
                c.injected_frames
            ),
            (
                self.forwarded + self.dropped + self.injected,
                self.forwarded,
                self.dropped,
                self.injected,
                self.injected_frames
            ),
            "{what}"
        );
    }
}

fn segment(
    link: LinkType,
    (src, dst): (IpAddr, IpAddr),
    src_port: u16,
    (seq, ack): (u32, u32),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let link = match link {
        LinkType::Ethernet => LinkHeader::Ethernet(EthernetHeader {
            dst: [2, 0, 0, 0, 0, 1],
            src: [2, 0, 0, 0, 0, 2],
            vlans: [0; 2],
            vlan_count: 0,
        }),
        _ => LinkHeader::RawIp,
    };
    let mut f = Vec::new();
    TcpSegment {
        link,
        src,
        dst,
        src_port,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 65535,
        mss: (flags & tcp_flags::SYN != 0).then_some(1400),
        payload,
    }
    .write(&mut f)
    .unwrap();
    f
}

#[test]
fn mutated_frames_reach_every_stage_and_get_exactly_the_verdicts_counted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/pcap");
    let mut captures = vec![root.join("examples/sample.pcap")];
    for name in [
        "tcpreplay-test.pcap",
        "zeek-wikipedia.pcap",
        "suricata-verify/http-ipv6/input.pcap",
    ] {
        let p = data.join(name);
        assert!(p.exists(), "test data missing: ../shared/data/pcap/{name}");
        captures.push(p);
    }
    let key = TokenKey::new(&KEY).unwrap();
    let mut rng = Rng(0x5eed_f0ea);
    let mut total = 0u64;
    let (mut metered, mut web_hits, mut monitored) = (0u64, 0u64, 0u64);
    let mut responder = weir::redirect::Counters::default();
    let mut garden = weir::redirect::Counters::default();
    let mut watched = 0;
    for path in &captures {
        let frames = frames_of(path);
        let link = frames[0].0;
        let (clients, servers) = ends(&frames);
        assert!(!clients.is_empty(), "{}", path.display());
        let mut runs = [
            Run::new(&config(&clients, false, &[]), link),
            Run::new(&config(&clients, true, &[]), link),
            Run::new(&config(&clients, true, &servers), link),
        ];
        // The first client and a server of its address family, for the crafted segments (a
        // capture of one host talking to itself has none).
        let ue = clients[0];
        let server = servers
            .iter()
            .find(|s| s.is_ipv4() == ue.is_ipv4())
            .copied();
        let token = key.sign(&subscriber(0), ue, START + 500, "fuzz");
        let success =
            format!("GET /recharge/success?{token} HTTP/1.1\r\nHost: portal.example\r\n\r\n");
        let request = b"GET /news HTTP/1.1\r\nHost: site.example\r\nAccept: */*\r\n\r\n";
        for round in 0..ROUNDS {
            let now = |i: usize| Timestamp::from_secs(START + round * 10 + i as u64 / 100);
            for (i, (_, frame)) in frames.iter().enumerate() {
                let mutated = mutate(&mut rng, frame);
                for run in &mut runs {
                    run.send(now(i), &mutated);
                }
            }
            let Some(server) = server else { continue };
            // A request behind a SYN cookie the responder issued, mutated.
            let seq = 1000 + round as u32 * 7919;
            let port = 41000 + round as u16;
            let syn = segment(link, (ue, server), port, (seq, 0), tcp_flags::SYN, &[]);
            let r = &mut runs[1];
            if r.send(now(0), &syn) == Verdict::Inject {
                let cookie = r
                    .out
                    .frames()
                    .find_map(|(_, f)| match weir::wire::parse(link, f) {
                        Ok(Parsed::Ip(p)) if p.tcp_flags & tcp_flags::SYN != 0 => Some(p.tcp_seq),
                        _ => None,
                    });
                let ack = cookie.expect("the SYN-ACK").wrapping_add(1);
                let flags = tcp_flags::ACK | tcp_flags::PSH;
                let req = segment(link, (ue, server), port, (seq + 1, ack), flags, request);
                let req = if round % 3 == 0 {
                    req
                } else {
                    mutate(&mut rng, &req)
                };
                r.send(now(0), &req);
            }
            // The success URL on a fresh portal flow, mutated; unmutated in the last round only,
            // since a verified token lifts the redirect and the watch then stops looking.
            let flags = tcp_flags::ACK | tcp_flags::PSH;
            let port = 42000 + round as u16;
            let seg = segment(
                link,
                (ue, server),
                port,
                (seq, 1),
                flags,
                success.as_bytes(),
            );
            let seg = if round == ROUNDS - 1 {
                seg
            } else {
                mutate(&mut rng, &seg)
            };
            runs[2].send(now(0), &seg);
        }
        for (run, what) in runs.iter().zip(["metered", "redirected", "garden"]) {
            run.check(&format!("{} {what}", path.display()));
            total += run.engine.counters().frames;
        }
        let report = runs[0].engine.report();
        metered += report
            .rating_groups
            .iter()
            .map(|u| u.usage.uplink_packets + u.usage.downlink_packets)
            .sum::<u64>();
        web_hits += report
            .rules
            .iter()
            .filter(|h| h.rule == "web")
            .map(|h| h.packets)
            .sum::<u64>();
        monitored += report.monitoring_keys.len() as u64;
        responder.add(runs[1].engine.redirect().counters());
        garden.add(runs[2].engine.redirect().counters());
        watched = watched.max(runs[2].watched);
    }
    assert!(total > 50_000, "only {total} frames fuzzed");
    // The metered path: usage, rule hits and monitoring keys were counted.
    assert!(
        metered > 1000 && web_hits > 100 && monitored > 0,
        "{metered} {web_hits} {monitored}"
    );
    // The redirected session: SYNs answered, 302s sent, resets, blocks.
    let r = &responder;
    assert!(r.syn_answered > 0 && r.redirects_sent > 0, "{r:?}");
    assert!(r.resets_sent > 0 && r.bad_cookies > 0, "{r:?}");
    assert!(
        r.blocked_other + r.blocked_dns + r.blocked_downlink > 0,
        "{r:?}"
    );
    // The garden and the watch: portal flows let through and read, tokens judged.
    let g = &garden;
    assert!(g.garden_portal > 0 && watched > 0, "{g:?}");
    assert!(g.successes > 0, "{g:?}");
    assert!(
        g.tokens_malformed + g.tokens_forged + g.tokens_other_subscriber + g.tokens_duplicate > 0,
        "{g:?}"
    );
}
