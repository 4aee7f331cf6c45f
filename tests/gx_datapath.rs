//! The data path's side of Gx, replayed through the engine with a virtual clock: the recharge
//! success reported and the redirect kept for the policy engine to lift, subscribers without a
//! session held (or forwarded, or dropped) until their session arrives, and usage monitoring
//! thresholds crossed by exactly the packet that reaches them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use weir::engine::{DropReason, Engine, Output, Port, Verdict};
use weir::packet::{Event, Octets, SuccessToken};
use weir::policy::{
    Config, MonitoringGrant, PendingAction, PendingSettings, PolicySnapshot, SessionId,
    SubscriberId,
};
use weir::time::Timestamp;
use weir::token::TokenKey;
use weir::wire::{self, tcp_flags, Checksum, LinkHeader, LinkType, TcpSegment};

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const T0: u64 = 1_800_000_000;
const UE1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
const UE2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
/// In the pool, without a session until the policy engine answers.
const NEW: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 9));
const NEW2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 10));
const SITE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const PORTAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

/// The gateway's file; `extra` adds sessions, `redirect` puts the second subscriber under
/// the recharge redirect.
fn config(success_action: &str, redirect: bool, extra: &str) -> Config {
    let redirect_rule = if redirect {
        ", \"recharge-redirect\""
    } else {
        ""
    };
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]

[redirect]
success_url = "http://portal.example/recharge/success"
token_key = "{KEY_HEX}"
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]
success_action = "local"

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
monitoring_key = "mk-web"
flow = [{{ description = "permit out ip from any to assigned" }}]

[[predefined_rule]]
name = "recharge-redirect"
precedence = 1
rating_group = 99
redirect = {{ address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
predefined = ["web"]

[[session]]
subscriber = "imsi-001010000000003"
ipv4 = "10.45.0.3"
predefined = ["web"{redirect_rule}]
{extra}
"#
    );
    let mut config = Config::from_toml_str(&text, "gx").unwrap_or_else(|e| panic!("{:#?}", e.0));
    // "report" needs [control] policy_engine in a file, which would also turn on the pending
    // path; these tests set what they exercise directly.
    config.gateway.redirect.success_action = match success_action {
        "report" => weir::policy::SuccessAction::Report,
        _ => weir::policy::SuccessAction::Local,
    };
    config
}

const NEW_SESSION: &str = r#"
[[session]]
subscriber = "imsi-001010000000009"
ipv4 = "10.45.0.9"
ipv6 = "2001:db8:45:9::/64"
predefined = ["web"]
"#;

fn pending(action: PendingAction, queue: usize, subscribers: usize) -> Option<PendingSettings> {
    Some(PendingSettings {
        action,
        queue,
        subscribers,
        timeout: Duration::from_secs(5),
    })
}

fn engine_for(config: &Config, version: u64) -> Engine {
    Engine::new(
        Arc::new(PolicySnapshot::build(config, version)),
        LinkType::RawIp,
    )
}

/// A UDP datagram, raw IP, of `ip_len` IP bytes.
fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, ip_len: usize, fill: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let header = if src.is_ipv4() { 20 } else { 40 };
    let payload = vec![fill; ip_len - header - 8];
    let udp_len = 8 + payload.len();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let c = wire::ipv4_checksum(&out[..20]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(udp_len as u16).to_be_bytes());
            out.extend_from_slice(&[17, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    let l4 = out.len();
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&payload);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, 17, udp_len as u32)
        .add(&out[l4..])
        .finish();
    out[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
    out
}

fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: LinkHeader::RawIp,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        seq: 1_000_001,
        ack: 1,
        flags,
        window: 64240,
        mss: None,
        payload,
    }
    .write(&mut out)
    .unwrap();
    out
}

fn send(engine: &mut Engine, now: Timestamp, frame: &[u8]) -> Verdict {
    let mut out = Output::default();
    engine.handle_frame(now, Port::Any, frame, &mut out)
}

fn events(engine: &mut Engine) -> Vec<Event> {
    engine.drain_events().collect()
}

// --- success_action = "report" ---------------------------------------------------------------

fn key() -> TokenKey {
    TokenKey::new(&weir::token::parse_hex_key(KEY_HEX).unwrap()).unwrap()
}

/// The UE asks the portal for the success page on a fresh connection.
fn success_page(engine: &mut Engine, port: u16, now: Timestamp, query: &str) -> Verdict {
    let syn = tcp(UE2, PORTAL, port, 80, tcp_flags::SYN, &[]);
    assert_eq!(send(engine, now, &syn), Verdict::Forward);
    let get = format!(
        "GET /recharge/success?{query} HTTP/1.1\r\nHost: portal.example\r\nAccept: text/html\r\n\r\n"
    );
    let data = tcp(
        UE2,
        PORTAL,
        port,
        80,
        tcp_flags::ACK | tcp_flags::PSH,
        get.as_bytes(),
    );
    send(engine, now, &data)
}

/// Whether a new web connection of the UE to the site is forwarded (true) or answered by the
/// redirect (false).
fn browses_freely(engine: &mut Engine, port: u16, now: Timestamp) -> bool {
    match send(engine, now, &tcp(UE2, SITE, port, 80, tcp_flags::SYN, &[])) {
        Verdict::Forward => true,
        Verdict::Inject => false,
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_reported_success_keeps_the_redirect_until_the_policy_engine_removes_it() {
    let mut e = engine_for(&config("report", true, ""), 1);
    assert!(!browses_freely(&mut e, 30000, at(0)));
    let q = key().sign("imsi-001010000000003", UE2, T0 + 300, "nonce-r1");
    let q = format!("{q}&orig=http%3A%2F%2Fsite.example%2Fnews%3Flang%3Den");
    assert_eq!(success_page(&mut e, 30001, at(5), &q), Verdict::Forward);
    let sig = q.split("sig=").nth(1).unwrap().split('&').next().unwrap();
    assert_eq!(
        events(&mut e),
        [Event::RechargeSuccess {
            session: SessionId(1),
            subscriber: SubscriberId::parse("imsi-001010000000003").unwrap(),
            ue: UE2,
            at: at(5),
            token: SuccessToken {
                subscriber: "imsi-001010000000003".into(),
                ue: Some(UE2),
                expires: T0 + 300,
                nonce: "nonce-r1".into(),
                signature: sig.into(),
                original_url: Some("http://site.example/news?lang=en".into()),
            },
        }]
    );
    // Still redirected: the policy engine lifts it, not the gateway.
    assert!(!browses_freely(&mut e, 30002, at(6)));
    // The success page reloaded while the answer is on its way: a duplicate, no second event.
    assert_eq!(success_page(&mut e, 30003, at(7), &q), Verdict::Forward);
    assert!(events(&mut e).is_empty());
    let c = e.redirect().counters().clone();
    assert_eq!(
        (
            c.successes,
            c.successes_reported,
            c.lifts,
            c.tokens_duplicate,
            c.tokens_replayed
        ),
        (1, 1, 0, 1, 0)
    );
    assert!(!browses_freely(&mut e, 30004, at(8)));

    // The policy engine removes the redirect rule: the next request goes through.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &config("report", false, ""),
        2,
    )));
    assert!(browses_freely(&mut e, 30005, at(9)));

    // Out of credit again later: the old token, shown again, is a replay and lifts nothing.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &config("report", true, ""),
        3,
    )));
    assert!(!browses_freely(&mut e, 30006, at(20)));
    assert_eq!(success_page(&mut e, 30007, at(21), &q), Verdict::Forward);
    assert!(events(&mut e).is_empty());
    assert_eq!(e.redirect().counters().tokens_replayed, 1);
    assert!(!browses_freely(&mut e, 30008, at(22)));
}

#[test]
fn the_local_action_still_lifts_at_once_and_says_where_the_subscriber_was_going() {
    let mut e = engine_for(&config("local", true, ""), 1);
    let q = key().sign("imsi-001010000000003", UE2, T0 + 300, "nonce-l1");
    let q = format!("{q}&orig=http%3A%2F%2Fsite.example%2F");
    assert_eq!(success_page(&mut e, 30101, at(1), &q), Verdict::Forward);
    let ev = events(&mut e);
    assert!(
        matches!(&ev[..], [Event::RechargeSuccess { token, .. }] if token.original_url.as_deref() == Some("http://site.example/")),
        "{ev:?}"
    );
    assert!(browses_freely(&mut e, 30102, at(1)));
    assert_eq!(e.redirect().counters().successes_reported, 0);
}

// --- subscribers without a session -------------------------------------------------------------

fn with_pending(p: Option<PendingSettings>, extra: &str) -> Config {
    let mut c = config("report", false, extra);
    c.gateway.pending = p;
    c
}

/// Released frames as the caller gets them: the leg, the bytes and the verdict.
fn release(e: &mut Engine, now: Timestamp) -> Vec<(Port, Vec<u8>, Verdict)> {
    let mut out = Output::default();
    let mut sent = Vec::new();
    e.release_held(now, &mut out, |port, frame, verdict, _| {
        sent.push((port, frame.to_vec(), verdict))
    });
    sent
}

#[test]
fn held_frames_are_released_in_order_once_the_session_arrives() {
    let mut e = engine_for(&with_pending(pending(PendingAction::Hold, 3, 16), ""), 1);
    let frames = [
        udp(NEW, SITE, 4000, 53, 60, 1),
        udp(SITE, NEW, 53, 4000, 100, 2),
        udp(NEW, SITE, 4001, 443, 300, 3),
    ];
    for f in &frames {
        assert_eq!(send(&mut e, at(1), f), Verdict::Held);
    }
    // One more than the queue holds.
    let overflow = udp(NEW, SITE, 4002, 443, 80, 4);
    assert_eq!(
        send(&mut e, at(2), &overflow),
        Verdict::Drop(DropReason::PendingQueueFull)
    );
    assert_eq!(
        events(&mut e),
        [Event::SessionRequest { ue: NEW, at: at(1) }]
    );
    assert_eq!(e.pending(), (1, 3));
    // A snapshot without the session changes nothing.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &with_pending(pending(PendingAction::Hold, 3, 16), ""),
        2,
    )));
    assert!(!e.has_held_ready());
    assert!(release(&mut e, at(2)).is_empty());

    // The answer arrives: the held frames come back in order, each enforced and metered.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &with_pending(pending(PendingAction::Hold, 3, 16), NEW_SESSION),
        3,
    )));
    assert!(e.has_held_ready());
    let released = release(&mut e, at(3));
    assert_eq!(
        released,
        frames
            .iter()
            .map(|f| (Port::Any, f.clone(), Verdict::Forward))
            .collect::<Vec<_>>()
    );
    assert!(!e.has_held_ready());
    assert_eq!(e.pending(), (0, 0));
    // From now on the session's packets are enforced as they come.
    assert_eq!(
        send(&mut e, at(4), &udp(NEW, SITE, 4000, 53, 40, 5)),
        Verdict::Forward
    );
    assert!(events(&mut e).is_empty());
    let c = e.counters();
    assert_eq!(
        (
            c.frames,
            c.held,
            c.held_released,
            c.forwarded,
            c.session_requests,
            c.dropped[DropReason::PendingQueueFull.index()]
        ),
        (5, 3, 3, 4, 1, 1)
    );
    let report = e.report();
    let usage = report
        .rating_groups
        .iter()
        .find(|u| u.subscriber == "imsi-001010000000009")
        .unwrap()
        .usage;
    assert_eq!(
        (
            usage.uplink_bytes,
            usage.uplink_packets,
            usage.downlink_bytes,
            usage.downlink_packets
        ),
        (60 + 300 + 40, 3, 100, 1)
    );
    assert_eq!(report.totals.held, 3);
    assert_eq!(report.totals.drop_reasons["pending_queue_full"], 1);
}

#[test]
fn held_frames_are_dropped_when_no_session_comes_in_time_and_the_next_packet_asks_again() {
    let mut e = engine_for(&with_pending(pending(PendingAction::Hold, 4, 16), ""), 1);
    assert_eq!(
        send(&mut e, at(0), &udp(NEW, SITE, 4000, 53, 60, 1)),
        Verdict::Held
    );
    assert_eq!(
        send(&mut e, at(1), &udp(NEW, SITE, 4000, 53, 60, 2)),
        Verdict::Held
    );
    // Housekeeping before the timeout keeps them; at it, drops them.
    e.handle_timeout(at(4));
    assert_eq!(e.pending(), (1, 2));
    e.handle_timeout(at(5));
    assert_eq!(e.pending(), (0, 0));
    assert_eq!(e.counters().held_expired, 2);
    assert_eq!(
        send(&mut e, at(6), &udp(NEW, SITE, 4000, 53, 60, 3)),
        Verdict::Held
    );
    // Without housekeeping in between, the packet after the timeout finds the wait over.
    assert_eq!(
        send(&mut e, at(11), &udp(NEW, SITE, 4000, 53, 60, 4)),
        Verdict::Held
    );
    assert_eq!(
        events(&mut e),
        [
            Event::SessionRequest { ue: NEW, at: at(0) },
            Event::SessionRequest { ue: NEW, at: at(6) },
            Event::SessionRequest {
                ue: NEW,
                at: at(11)
            },
        ]
    );
    assert_eq!(e.counters().held_expired, 3);
    assert_eq!(e.pending(), (1, 1));
    // The session comes: only the frame of the latest wait is released.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &with_pending(pending(PendingAction::Hold, 4, 16), NEW_SESSION),
        2,
    )));
    let released = release(&mut e, at(12));
    assert_eq!(
        released,
        [(Port::Any, udp(NEW, SITE, 4000, 53, 60, 4), Verdict::Forward)]
    );
}

#[test]
fn forward_and_drop_actions_ask_once_and_count() {
    let mut e = engine_for(&with_pending(pending(PendingAction::Forward, 4, 16), ""), 1);
    for i in 0..3 {
        assert_eq!(
            send(&mut e, at(i), &udp(NEW, SITE, 4000, 53, 60, 1)),
            Verdict::Forward
        );
    }
    assert_eq!(
        events(&mut e),
        [Event::SessionRequest { ue: NEW, at: at(0) }]
    );
    assert_eq!(
        (e.counters().pending_forwarded, e.counters().forwarded),
        (3, 3)
    );
    // Nothing held: the session's arrival has nothing to release.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &with_pending(pending(PendingAction::Forward, 4, 16), NEW_SESSION),
        2,
    )));
    assert!(!e.has_held_ready());

    let mut e = engine_for(&with_pending(pending(PendingAction::Drop, 4, 16), ""), 1);
    for _ in 0..2 {
        assert_eq!(
            send(&mut e, at(0), &udp(SITE, NEW, 53, 4000, 60, 1)),
            Verdict::Drop(DropReason::PendingSession)
        );
    }
    assert_eq!(
        events(&mut e),
        [Event::SessionRequest { ue: NEW, at: at(0) }]
    );
    assert_eq!(e.report().totals.drop_reasons["pending_session"], 2);
}

#[test]
fn a_worker_waits_for_a_bounded_number_of_subscribers() {
    let mut e = engine_for(&with_pending(pending(PendingAction::Hold, 2, 1), ""), 1);
    assert_eq!(
        send(&mut e, at(0), &udp(NEW, SITE, 4000, 53, 60, 1)),
        Verdict::Held
    );
    assert_eq!(
        send(&mut e, at(0), &udp(NEW2, SITE, 4000, 53, 60, 1)),
        Verdict::Drop(DropReason::PendingTableFull)
    );
    assert_eq!(
        events(&mut e),
        [Event::SessionRequest { ue: NEW, at: at(0) }]
    );
    assert_eq!(e.counters().session_requests, 1);
}

#[test]
fn without_a_policy_engine_unknown_subscribers_are_as_configured() {
    let mut e = engine_for(&with_pending(None, ""), 1);
    assert_eq!(
        send(&mut e, at(0), &udp(NEW, SITE, 4000, 53, 60, 1)),
        Verdict::Drop(DropReason::UnknownSubscriber)
    );
    assert!(events(&mut e).is_empty());
    assert_eq!(e.counters().session_requests, 0);
}

#[test]
fn an_ipv6_subscriber_is_pending_by_its_64() {
    let mut e = engine_for(&with_pending(pending(PendingAction::Hold, 4, 16), ""), 1);
    let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 9, 0, 0, 0, 1));
    let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 9, 0xaa, 0, 0, 2));
    let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 10, 0, 0, 0, 1));
    let site = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 7));
    let fa = udp(a, site, 5000, 53, 80, 1);
    let fb = udp(site, b, 53, 5000, 90, 2);
    assert_eq!(send(&mut e, at(0), &fa), Verdict::Held);
    assert_eq!(send(&mut e, at(0), &fb), Verdict::Held);
    assert_eq!(
        send(&mut e, at(0), &udp(other, site, 5000, 53, 80, 3)),
        Verdict::Held
    );
    assert_eq!(
        events(&mut e),
        [
            Event::SessionRequest { ue: a, at: at(0) },
            Event::SessionRequest {
                ue: other,
                at: at(0)
            }
        ]
    );
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &with_pending(pending(PendingAction::Hold, 4, 16), NEW_SESSION),
        2,
    )));
    let released = release(&mut e, at(1));
    assert_eq!(
        released,
        [
            (Port::Any, fa, Verdict::Forward),
            (Port::Any, fb, Verdict::Forward)
        ]
    );
    assert_eq!(e.pending(), (1, 1));
}

// --- usage monitoring ----------------------------------------------------------------------

fn monitored(grant: u64, total: Option<u64>, uplink: Option<u64>) -> Config {
    let mut c = config("report", false, "");
    c.sessions[0].monitoring.push(MonitoringGrant {
        monitoring_key: "mk-web".into(),
        total,
        uplink,
        downlink: None,
        grant,
    });
    c
}

fn usage_events(e: &mut Engine) -> Vec<(u64, Octets)> {
    e.drain_events()
        .map(|ev| match ev {
            Event::UsageThreshold {
                session,
                monitoring_key,
                grant,
                used,
                ..
            } => {
                assert_eq!((session, &*monitoring_key), (SessionId(0), "mk-web"));
                (grant, used)
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_packet_that_reaches_the_grant_reports_it_once_and_a_higher_grant_rearms() {
    let mut e = engine_for(&monitored(1, Some(1000), None), 1);
    let up = udp(UE1, SITE, 4000, 443, 400, 1);
    let down = udp(SITE, UE1, 443, 4000, 400, 2);
    assert_eq!(send(&mut e, at(0), &up), Verdict::Forward);
    assert_eq!(send(&mut e, at(1), &down), Verdict::Forward);
    assert!(usage_events(&mut e).is_empty());
    // The third packet of 400 reaches 1000: it is counted in the report.
    assert_eq!(send(&mut e, at(2), &up), Verdict::Forward);
    let ev: Vec<Event> = e.drain_events().collect();
    assert_eq!(
        ev,
        [Event::UsageThreshold {
            session: SessionId(0),
            monitoring_key: "mk-web".into(),
            grant: 1,
            used: Octets {
                uplink: 800,
                downlink: 400
            },
            at: at(2),
        }]
    );
    // Counting goes on from zero; grant 1 never reports again, even in a new snapshot.
    assert_eq!(send(&mut e, at(3), &down), Verdict::Forward);
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &monitored(1, Some(1000), None),
        2,
    )));
    for _ in 0..3 {
        assert_eq!(send(&mut e, at(4), &down), Verdict::Forward);
    }
    assert!(usage_events(&mut e).is_empty());
    let mk = |e: &Engine| {
        let r = e.report();
        let u = r
            .monitoring_keys
            .iter()
            .find(|u| u.monitoring_key == "mk-web" && u.session_id == 0)
            .unwrap()
            .clone();
        (u.unreported, u.usage.total_bytes())
    };
    assert_eq!(
        mk(&e),
        (
            Octets {
                uplink: 0,
                downlink: 1600
            },
            2800
        )
    );
    // Grant 2 of 2000 octets: what was counted since the report counts toward it.
    e.set_snapshot(Arc::new(PolicySnapshot::build(
        &monitored(2, Some(2000), None),
        3,
    )));
    assert_eq!(send(&mut e, at(5), &up), Verdict::Forward);
    assert_eq!(
        usage_events(&mut e),
        [(
            2,
            Octets {
                uplink: 400,
                downlink: 1600
            }
        )]
    );
    assert_eq!(mk(&e), (Octets::default(), 3200));
    assert_eq!(e.counters().usage_thresholds, 2);
}

#[test]
fn an_uplink_grant_is_crossed_by_uplink_octets_only() {
    let mut e = engine_for(&monitored(7, None, Some(1000)), 1);
    let up = udp(UE1, SITE, 4000, 443, 400, 1);
    let down = udp(SITE, UE1, 443, 4000, 1400, 2);
    for _ in 0..4 {
        assert_eq!(send(&mut e, at(0), &down), Verdict::Forward);
    }
    assert_eq!(send(&mut e, at(0), &up), Verdict::Forward);
    assert_eq!(send(&mut e, at(0), &up), Verdict::Forward);
    assert!(usage_events(&mut e).is_empty());
    assert_eq!(send(&mut e, at(0), &up), Verdict::Forward);
    assert_eq!(
        usage_events(&mut e),
        [(
            7,
            Octets {
                uplink: 1200,
                downlink: 5600
            }
        )]
    );
}
