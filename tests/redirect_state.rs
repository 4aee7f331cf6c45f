//! Scenario tests of the redirect stage's state over time: what a policy reload keeps, how a
//! rating-group Final-Unit REDIRECT is cached and watched, and which clock judges what. Frames
//! go through the engine with a virtual clock, as in redirect_scenarios.rs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weir::charging::Metered;
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, PolicySnapshot, RedirectAddressType, RedirectInformation, SessionId};
use weir::redirect::FinalUnitRedirect;
use weir::time::Timestamp;
use weir::token::TokenKey;
use weir::wire::{self, tcp_flags, LinkHeader, LinkType, Packet, Parsed, TcpSegment};

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const T0: u64 = 1_800_000_000;
const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
const SITE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const PORTAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
const SUBSCRIBER: &str = "imsi-001010000000003";
const UE_RG: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 4));
const SUBSCRIBER_RG: &str = "imsi-001010000000004";

/// The scenario's configuration with `redirect_extra` added to its `[redirect]` table.
fn config(redirect_extra: &str) -> Config {
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[redirect]
http_ports = [80, 8080]
success_url = "http://portal.example/recharge/success"
token_key = "{KEY_HEX}"
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]
dns_resolvers = ["192.0.2.53"]
{redirect_extra}

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
flow = [{{ description = "permit out ip from any to assigned" }}]

[[predefined_rule]]
name = "recharge-redirect"
precedence = 1
rating_group = 99
redirect = {{ address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[predefined_rule]]
name = "alt"
precedence = 50
rating_group = 20
monitoring_key = "mk-alt"
flow = [{{ description = "permit out 6 from any 8080 to assigned" }}]

[[session]]
subscriber = "{SUBSCRIBER}"
ipv4 = "10.45.0.3"
predefined = ["web", "recharge-redirect"]

# In credit, until online charging redirects one of its rating groups.
[[session]]
subscriber = "{SUBSCRIBER_RG}"
ipv4 = "10.45.0.4"
predefined = ["web", "alt"]
"#
    );
    Config::from_toml_str(&text, "scenario").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

fn snapshot(redirect_extra: &str, version: u64) -> Arc<PolicySnapshot> {
    Arc::new(PolicySnapshot::build(&config(redirect_extra), version))
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

/// One TCP connection as the UE sees it, raw IP.
#[derive(Clone, Copy)]
struct Client {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

const ISN: u32 = 1_000_000;

impl Client {
    fn new(dst: IpAddr, sport: u16, dport: u16) -> Client {
        Client::of(UE, dst, sport, dport)
    }

    fn of(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Client {
        Client {
            src,
            dst,
            sport,
            dport,
        }
    }

    fn seg(&self, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        TcpSegment {
            link: LinkHeader::RawIp,
            src: self.src,
            dst: self.dst,
            src_port: self.sport,
            dst_port: self.dport,
            seq,
            ack,
            flags,
            window: 64240,
            mss: Some(1460),
            payload,
        }
        .write(&mut out)
        .unwrap();
        out
    }

    fn syn(&self) -> Vec<u8> {
        self.seg(ISN, 0, tcp_flags::SYN, &[])
    }

    /// Data `offset` bytes into the stream.
    fn data(&self, offset: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let flags = tcp_flags::ACK | tcp_flags::PSH;
        self.seg(ISN + 1 + offset, ack, flags, payload)
    }
}

struct Run {
    engine: Engine,
    out: Output,
}

impl Run {
    fn new(snapshot: Arc<PolicySnapshot>) -> Run {
        Run {
            engine: Engine::new(snapshot, LinkType::RawIp),
            out: Output::default(),
        }
    }

    /// The verdict and the injected frames, parsed.
    fn send(&mut self, now: Timestamp, frame: &[u8]) -> (Verdict, Vec<(Packet, Vec<u8>)>) {
        self.out.clear();
        let v = self
            .engine
            .handle_frame(now, Port::Any, frame, &mut self.out);
        let frames = self
            .out
            .frames()
            .map(|(_, bytes)| match wire::parse(LinkType::RawIp, bytes) {
                Ok(Parsed::Ip(p)) => (p, bytes.to_vec()),
                other => panic!("injected frame does not parse: {other:?}"),
            })
            .collect();
        (v, frames)
    }
}

fn payload(p: &Packet, bytes: &[u8]) -> String {
    let s = usize::from(p.payload_offset);
    String::from_utf8(bytes[s..s + usize::from(p.payload_len)].to_vec()).unwrap()
}

fn key() -> TokenKey {
    TokenKey::from_hex(KEY_HEX).unwrap()
}

fn success_request(query: &str) -> Vec<u8> {
    format!("GET /recharge/success?{query} HTTP/1.1\r\nHost: portal.example\r\n\r\n").into_bytes()
}

const GET: &[u8] = b"GET /news HTTP/1.1\r\nHost: site.example\r\n\r\n";

/// Whether a new web connection to the site is forwarded (true) or answered (false).
fn browses_freely(run: &mut Run, port: u16, now: Timestamp) -> bool {
    match run.send(now, &Client::new(SITE, port, 80).syn()).0 {
        Verdict::Forward => true,
        Verdict::Inject => false,
        v => panic!("{v:?}"),
    }
}

// ---- A reload keeps the live state ----

/// The live data path sets a random SYN-cookie secret; a reload that changes any `[redirect]`
/// setting must not replace it with one derived from the file, or every handshake in flight
/// gets a reset (and the cookies become predictable from the configuration).
#[test]
fn a_handshake_begun_before_a_reload_completes_after_it() {
    let mut run = Run::new(snapshot("grace = 30", 1));
    run.engine
        .redirect_mut()
        .set_cookie_secret(b"random bytes the worker read at start");
    let c = Client::new(SITE, 41000, 80);
    let (v, frames) = run.send(at(0), &c.syn());
    assert_eq!(v, Verdict::Inject);
    let cookie = frames[0].0.tcp_seq;

    run.engine.set_snapshot(snapshot("grace = 31", 2));

    let (v, frames) = run.send(at(1), &c.seg(ISN + 1, cookie + 1, tcp_flags::ACK, &[]));
    assert_eq!((v, frames.len()), (Verdict::Inject, 0), "the ACK is ours");
    let (v, frames) = run.send(at(1), &c.data(0, cookie + 1, GET));
    assert_eq!(v, Verdict::Inject);
    let (p, bytes) = &frames[0];
    assert!(payload(p, bytes).starts_with("HTTP/1.1 302 Found\r\n"));
    let counters = run.engine.redirect().counters();
    assert_eq!((counters.bad_cookies, counters.resets_sent), (0, 0));
}

/// Portal addresses learned from DNS answers stay in the walled garden across a reload.
#[test]
fn a_learned_portal_address_survives_a_reload() {
    let mut run = Run::new(snapshot("grace = 30", 1));
    let learned = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 80));
    run.engine
        .redirect_mut()
        .learn_portal_address(learned, at(300), at(0));
    assert_eq!(
        run.send(at(0), &Client::new(learned, 41100, 80).syn()).0,
        Verdict::Forward
    );
    run.engine.set_snapshot(snapshot("grace = 31", 2));
    assert_eq!(
        run.send(at(1), &Client::new(learned, 41101, 80).syn()).0,
        Verdict::Forward,
        "the learned address left the garden"
    );
}

/// A success request split over two segments with a reload in between is still read: the
/// watch's reassembly survives.
#[test]
fn the_watch_keeps_its_place_across_a_reload() {
    let mut run = Run::new(snapshot("grace = 30", 1));
    let portal = Client::new(PORTAL, 41200, 80);
    assert_eq!(run.send(at(0), &portal.syn()).0, Verdict::Forward);
    let q = key().sign(SUBSCRIBER, UE, T0 + 300, "reload-1");
    let request = success_request(&q);
    let (a, b) = request.split_at(30);
    assert_eq!(run.send(at(1), &portal.data(0, 1, a)).0, Verdict::Forward);

    run.engine.set_snapshot(snapshot("grace = 31", 2));

    assert_eq!(
        run.send(at(1), &portal.data(a.len() as u32, 1, b)).0,
        Verdict::Forward
    );
    assert_eq!(run.engine.redirect().counters().successes, 1);
    assert_eq!(run.engine.drain_events().count(), 1);
    assert!(browses_freely(&mut run, 41201, at(2)));
}

/// What a reload does change takes effect: a new `location` template is used for the next 302.
#[test]
fn a_reload_applies_the_settings_it_changes() {
    let mut run = Run::new(snapshot("", 1));
    let location = |run: &mut Run, port: u16, now: Timestamp| {
        let c = Client::new(SITE, port, 80);
        let (_, frames) = run.send(now, &c.syn());
        let cookie = frames[0].0.tcp_seq;
        let (_, frames) = run.send(now, &c.data(0, cookie + 1, GET));
        let text = payload(&frames[0].0, &frames[0].1);
        text.lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap()
            .to_string()
    };
    assert!(location(&mut run, 41300, at(0)).contains("?orig="));
    run.engine
        .set_snapshot(snapshot("location = \"{url}{q}from={orig}\"", 2));
    assert_eq!(
        location(&mut run, 41301, at(1)),
        "http://portal.example/recharge?from=http%3A%2F%2Fsite.example%2Fnews"
    );
}

/// Without a live secret (a replay, a test), the configured `cookie_secret` is the secret, and a
/// reload that changes it takes effect: a cookie made under the old one no longer proves a
/// handshake.
#[test]
fn a_changed_configured_cookie_secret_takes_effect() {
    let a = "cookie_secret = \"00112233445566778899aabbccddeeff\"";
    let b = "cookie_secret = \"ffeeddccbbaa99887766554433221100\"";
    let mut run = Run::new(snapshot(a, 1));
    let c = Client::new(SITE, 41400, 80);
    let (_, frames) = run.send(at(0), &c.syn());
    let cookie = frames[0].0.tcp_seq;
    run.engine.set_snapshot(snapshot(b, 2));
    let (v, frames) = run.send(at(1), &c.seg(ISN + 1, cookie + 1, tcp_flags::ACK, &[]));
    assert_eq!(v, Verdict::Inject);
    assert_eq!(frames[0].0.tcp_flags, tcp_flags::RST);
    assert_eq!(run.engine.redirect().counters().bad_cookies, 1);
}

// ---- A rating-group Final-Unit REDIRECT ----

/// Online charging redirects rating group 20 (the `alt` rule, TCP 8080) of the second session.
fn rating_group_redirect() -> FinalUnitRedirect {
    FinalUnitRedirect {
        rating_group: Some(20),
        redirect: RedirectInformation::new(
            true,
            RedirectAddressType::Url,
            "http://portal.example/topup",
        )
        .expect("a valid portal URL"),
        restriction_filters: Vec::new(),
        filter_ids: Vec::new(),
    }
}

fn redirected_run() -> Run {
    let mut run = Run::new(snapshot("", 1));
    run.engine
        .apply_final_unit_redirect(SessionId(1), rating_group_redirect());
    run
}

/// Whether a new 8080 connection of the redirected rating group is forwarded (true) or
/// answered (false).
fn rating_group_free(run: &mut Run, port: u16, now: Timestamp) -> bool {
    match run.send(now, &Client::of(UE_RG, SITE, port, 8080).syn()).0 {
        Verdict::Forward => true,
        Verdict::Inject => false,
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_success_on_a_portal_flow_of_the_redirected_rating_group_lifts_it() {
    let mut run = redirected_run();
    assert!(!rating_group_free(&mut run, 42000, at(0)));
    let portal = Client::of(UE_RG, PORTAL, 42001, 8080);
    assert_eq!(run.send(at(1), &portal.syn()).0, Verdict::Forward);
    let q = key().sign(SUBSCRIBER_RG, UE_RG, T0 + 300, "rg-1");
    assert_eq!(
        run.send(at(2), &portal.data(0, 1, &success_request(&q))).0,
        Verdict::Forward
    );
    let c = run.engine.redirect().counters();
    assert_eq!((c.successes, c.lifts), (1, 1));
    assert_eq!(run.engine.drain_events().count(), 1);
    assert!(rating_group_free(&mut run, 42002, at(3)));
}

/// The portal reached under another rating group (port 80, the `web` rule) is watched too: the
/// subscriber pays wherever the portal is.
#[test]
fn a_success_on_a_portal_flow_of_another_rating_group_lifts_it() {
    let mut run = redirected_run();
    let portal = Client::of(UE_RG, PORTAL, 42100, 80);
    assert_eq!(run.send(at(1), &portal.syn()).0, Verdict::Forward);
    let q = key().sign(SUBSCRIBER_RG, UE_RG, T0 + 300, "rg-2");
    assert_eq!(
        run.send(at(2), &portal.data(0, 1, &success_request(&q))).0,
        Verdict::Forward
    );
    assert_eq!(run.engine.redirect().counters().lifts, 1);
    assert!(rating_group_free(&mut run, 42101, at(3)));
}

/// Garden traffic of the redirected rating group is metered under the redirect's rating group
/// alone: not under the rule's monitoring key, and not as a hit of the rule it no longer follows.
#[test]
fn garden_traffic_of_a_rating_group_redirect_is_metered_under_it_alone() {
    let mut run = redirected_run();
    let portal = Client::of(UE_RG, PORTAL, 42200, 8080);
    let frames = [
        portal.syn(),
        portal.seg(ISN + 1, 1, tcp_flags::ACK, &[]),
        portal.data(0, 1, GET),
    ];
    let mut bytes = 0;
    for f in &frames {
        assert_eq!(run.send(at(1), f).0, Verdict::Forward);
        bytes += f.len() as u64;
    }
    let meter = run.engine.meter();
    let rg = meter
        .usage(&Metered::RatingGroup(SessionId(1), 20))
        .expect("metered under rating group 20");
    assert_eq!((rg.uplink_packets, rg.uplink_bytes), (3, bytes));
    assert!(meter
        .usage(&Metered::MonitoringKey(SessionId(1), "mk-alt".into()))
        .is_none_or(|u| u.total_bytes() == 0));
    let report = run.engine.report();
    assert!(
        report
            .rules
            .iter()
            .all(|r| r.rule != "alt" || r.packets == 0),
        "{:?}",
        report.rules
    );
}

/// The decision is cached like any flow's: `garden_portal` counts the portal flow once, and a
/// redirected connection answered packet by packet is one flow, decided once.
#[test]
fn a_rating_group_redirect_decides_each_flow_once() {
    let mut run = redirected_run();
    let portal = Client::of(UE_RG, PORTAL, 42300, 8080);
    for f in [
        portal.syn(),
        portal.seg(ISN + 1, 1, tcp_flags::ACK, &[]),
        portal.data(0, 1, GET),
    ] {
        assert_eq!(run.send(at(1), &f).0, Verdict::Forward);
    }
    assert_eq!(run.engine.redirect().counters().garden_portal, 1);

    let created = run.engine.flows().created;
    let c = Client::of(UE_RG, SITE, 42301, 8080);
    let (v, frames) = run.send(at(2), &c.syn());
    assert_eq!(v, Verdict::Inject);
    let cookie = frames[0].0.tcp_seq;
    let (v, _) = run.send(at(2), &c.seg(ISN + 1, cookie + 1, tcp_flags::ACK, &[]));
    assert_eq!(v, Verdict::Inject);
    let (v, frames) = run.send(at(2), &c.data(0, cookie + 1, GET));
    assert_eq!(v, Verdict::Inject);
    let text = payload(&frames[0].0, &frames[0].1);
    assert!(
        text.contains("Location: http://portal.example/topup?orig="),
        "{text}"
    );
    assert_eq!(run.engine.flows().created, created + 1);
    assert_eq!(run.engine.counters().answered, 3);

    // Credit granted again: the same flow is decided afresh and forwarded.
    run.engine
        .remove_final_unit_redirect(SessionId(1), Some(20));
    assert_eq!(
        run.send(at(3), &c.data(0, cookie + 1, GET)).0,
        Verdict::Forward
    );
}

// ---- Which clock judges what ----

/// A live run hands the engine monotonic time and tells it the wall clock now and then: a
/// token's expiry is a date, judged on the wall clock; flows still expire by monotonic time, and
/// the event carries the wall-clock time of the success.
#[test]
fn a_token_is_judged_by_wall_time_while_flows_expire_by_monotonic_time() {
    let mono = |secs: u64| Timestamp::from_secs(5_000 + secs);
    let mut run = Run::new(snapshot("", 1));
    run.engine.set_wall_clock(mono(0), at(0));
    let portal = Client::new(PORTAL, 43000, 80);
    assert_eq!(run.send(mono(1), &portal.syn()).0, Verdict::Forward);
    // Valid for five minutes of wall-clock time from T0: far in the future of `mono`, and far
    // past its token_max_age, if it were judged by the monotonic clock.
    let q = key().sign(SUBSCRIBER, UE, T0 + 300, "wall-1");
    assert_eq!(
        run.send(mono(2), &portal.data(0, 1, &success_request(&q)))
            .0,
        Verdict::Forward
    );
    let c = run.engine.redirect().counters();
    assert_eq!((c.successes, c.tokens_expired), (1, 0));
    let events: Vec<_> = run.engine.drain_events().collect();
    assert_eq!(
        events,
        [weir::packet::Event::RechargeSuccess {
            session: SessionId(0),
            subscriber: weir::policy::SubscriberId::parse(SUBSCRIBER).unwrap(),
            ue: UE,
            at: at(2),
            token: weir::packet::SuccessToken {
                subscriber: SUBSCRIBER.into(),
                ue: Some(UE),
                expires: T0 + 300,
                nonce: "wall-1".into(),
                signature: q.rsplit_once("sig=").unwrap().1.to_string(),
                original_url: None,
            },
        }]
    );
    assert!(browses_freely(&mut run, 43001, mono(3)));
    let flows = run.engine.flows().len();
    assert!(flows >= 2);
    // TCP flows idle for 300 s (monotonic) are gone, whatever the wall clock says.
    run.engine.set_wall_clock(mono(10), at(0));
    run.engine.handle_timeout(mono(3 + 301));
    assert_eq!(run.engine.flows().len(), 0);

    // Once the wall clock is past the token's expiry, the same kind of token is refused.
    let mut late = Run::new(snapshot("", 1));
    late.engine.set_wall_clock(mono(0), at(301));
    let q = key().sign(SUBSCRIBER, UE, T0 + 300, "wall-2");
    late.send(mono(1), &portal.syn());
    late.send(mono(2), &portal.data(0, 1, &success_request(&q)));
    let c = late.engine.redirect().counters();
    assert_eq!((c.successes, c.tokens_expired), (0, 1));
}
