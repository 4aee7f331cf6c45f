//! Scenario tests: frames through the engine with a virtual clock, asserting verdicts, counters
//! and usage to the byte.

use super::*;
use crate::charging::Metered;
use crate::policy::{Config, PolicySnapshot, SessionId};
use crate::time::Timestamp;
use crate::wire::tcp_flags::{ACK, PSH, SYN};
use crate::wire::LinkType;
use crate::wire::{EthernetHeader, LinkHeader, TcpSegment};
use std::net::IpAddr;

const UE: &str = "10.45.0.2";
const UE6: &str = "2001:db8:45:1::2";
const WEB: &str = "198.51.100.10";
const SEC: u64 = 1_000_000_000;
/// 2026-06-01T00:00:00Z, inside the "video" campaign window below.
const JUNE_2026: u64 = 1_780_272_000;

const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]
flow_table_capacity = 4
idle_timeout = { tcp = 300, udp = 60, icmp = 30, other = 60 }

[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{ description = "permit out 17 from any 53 to assigned" }]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
monitoring_key = "mk-web"
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]

[[predefined_rule]]
name = "p2p"
precedence = 5
flow_status = "DISABLED"
flow = [{ description = "permit out 6 from any 6881-6889 to assigned" }]

[[predefined_rule]]
name = "upload-only"
precedence = 6
flow_status = "ENABLED-UPLINK"
rating_group = 40
flow = [{ description = "permit out 6 from any 21 to assigned" }]

[[predefined_rule]]
name = "video"
precedence = 50
rating_group = 20
activation = 2026-01-01T00:00:00Z
deactivation = 2027-01-01T00:00:00Z
flow = [{ description = "permit out 6 from 203.0.113.0/24 80 to assigned", direction = "DOWNLINK" }]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
ipv6 = "2001:db8:45:1::/64"
predefined = ["dns", "web", "p2p", "upload-only", "video"]
default_rule = { action = "forward", rating_group = 0 }

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.3"
predefined = ["web"]
default_rule = { action = "drop" }
"#;

fn config(text: &str) -> Config {
    match Config::from_toml_str(text, "test.toml") {
        Ok(c) => c,
        Err(e) => panic!("{:#?}", e.0),
    }
}

fn engine_with(text: &str) -> Engine {
    Engine::new(
        Arc::new(PolicySnapshot::build(&config(text), 1)),
        LinkType::Ethernet,
    )
}

fn engine() -> Engine {
    engine_with(CONFIG)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ETH: LinkHeader = LinkHeader::Ethernet(EthernetHeader {
    dst: [2, 0, 0, 0, 0, 1],
    src: [2, 0, 0, 0, 0, 2],
    vlans: [0, 0],
    vlan_count: 0,
});

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: ETH,
        src: ip(src),
        dst: ip(dst),
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: 0,
        flags,
        window: 65535,
        mss: None,
        payload,
    }
    .write(&mut out)
    .unwrap();
    out
}

/// An Ethernet/IPv4/UDP frame (checksums are not checked on the packet path).
fn udp4(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        panic!("IPv4 only")
    };
    let total = (20 + 8 + payload.len()) as u16;
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn run(e: &mut Engine, secs: u64, frame: &[u8]) -> Verdict {
    let mut out = Output::default();
    e.handle_frame(
        Timestamp(JUNE_2026 * SEC + secs * SEC),
        Port::Any,
        frame,
        &mut out,
    )
}

fn usage(e: &Engine, session: u32, rg: u32) -> crate::charging::Usage {
    e.meter()
        .usage(&Metered::RatingGroup(SessionId(session), rg))
        .copied()
        .unwrap_or_default()
}

#[test]
fn both_directions_of_a_flow_are_metered_under_the_rule_rating_group() {
    let mut e = engine();
    let syn = tcp(UE, 40000, WEB, 80, SYN, b"");
    let synack = tcp(WEB, 80, UE, 40000, SYN | ACK, b"");
    let get = tcp(
        UE,
        40000,
        WEB,
        80,
        PSH | ACK,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(run(&mut e, 0, &syn), Verdict::Forward);
    assert_eq!(run(&mut e, 1, &synack), Verdict::Forward);
    assert_eq!(run(&mut e, 2, &get), Verdict::Forward);
    let u = usage(&e, 0, 10);
    assert_eq!((u.uplink_bytes, u.uplink_packets), (40 + 40 + 27, 2));
    assert_eq!((u.downlink_bytes, u.downlink_packets), (40, 1));
    assert_eq!(u.first_seen, Some(Timestamp(JUNE_2026 * SEC)));
    assert_eq!(u.last_seen, Some(Timestamp(JUNE_2026 * SEC + 2 * SEC)));
    let mk = e
        .meter()
        .usage(&Metered::MonitoringKey(SessionId(0), Arc::from("mk-web")))
        .copied()
        .unwrap();
    assert_eq!(mk.total_bytes(), u.total_bytes());
    // One flow, classified once per direction, then served from the cache.
    assert_eq!(e.flows().created, 1);
    let report = e.report();
    assert_eq!(report.rules.len(), 1);
    assert_eq!(
        (report.rules[0].rule.as_str(), report.rules[0].packets),
        ("web", 3)
    );
}

#[test]
fn lower_precedence_wins_and_a_disabled_rule_closes_the_gate() {
    let mut e = engine();
    // 6881 matches "p2p" (precedence 5, DISABLED): dropped in both directions.
    assert_eq!(
        run(&mut e, 0, &tcp(UE, 40001, WEB, 6881, SYN, b"")),
        Verdict::Drop(DropReason::GateClosed)
    );
    assert_eq!(
        run(&mut e, 0, &tcp(WEB, 6881, UE, 40001, ACK, b"")),
        Verdict::Drop(DropReason::GateClosed)
    );
    // Port 80 still passes.
    assert_eq!(
        run(&mut e, 0, &tcp(UE, 40002, WEB, 80, SYN, b"")),
        Verdict::Forward
    );
    let c = e.counters();
    assert_eq!(c.dropped[DropReason::GateClosed.index()], 2);
    assert_eq!(c.forwarded, 1);
    // Dropped packets are not metered.
    assert_eq!(usage(&e, 0, 0).total_bytes(), 0);
}

#[test]
fn enabled_uplink_passes_uplink_only() {
    let mut e = engine();
    assert_eq!(
        run(&mut e, 0, &tcp(UE, 40003, WEB, 21, SYN, b"")),
        Verdict::Forward
    );
    assert_eq!(
        run(&mut e, 0, &tcp(WEB, 21, UE, 40003, SYN | ACK, b"")),
        Verdict::Drop(DropReason::GateClosed)
    );
    assert_eq!(usage(&e, 0, 40).uplink_packets, 1);
    assert_eq!(usage(&e, 0, 40).downlink_packets, 0);
}

#[test]
fn flow_direction_limits_a_filter_to_one_direction() {
    let mut e = engine();
    // "video" is DOWNLINK only and beats "web" on precedence for downlink packets from its prefix;
    // the uplink of the same flow falls through to "web".
    assert_eq!(
        run(&mut e, 0, &tcp(UE, 40004, "203.0.113.7", 80, SYN, b"")),
        Verdict::Forward
    );
    assert_eq!(
        run(
            &mut e,
            0,
            &tcp("203.0.113.7", 80, UE, 40004, SYN | ACK, b"")
        ),
        Verdict::Forward
    );
    assert_eq!(usage(&e, 0, 10).uplink_packets, 1);
    assert_eq!(usage(&e, 0, 10).downlink_packets, 0);
    assert_eq!(usage(&e, 0, 20).downlink_packets, 1);
}

#[test]
fn a_rule_stops_matching_at_its_deactivation_time_even_for_a_cached_flow() {
    let mut e = engine();
    let down = tcp("203.0.113.7", 80, UE, 40005, ACK, b"");
    assert_eq!(run(&mut e, 0, &down), Verdict::Forward);
    assert_eq!(usage(&e, 0, 20).downlink_packets, 1);
    // 2027-01-01T00:00:00Z is 214 days after June 1st 2026; one second before and at it.
    let end = 214 * 86_400;
    assert_eq!(run(&mut e, end - 1, &down), Verdict::Forward);
    assert_eq!(usage(&e, 0, 20).downlink_packets, 2);
    assert_eq!(run(&mut e, end, &down), Verdict::Forward);
    assert_eq!(
        usage(&e, 0, 20).downlink_packets,
        2,
        "video is over: web takes the flow"
    );
    assert_eq!(usage(&e, 0, 10).downlink_packets, 1);
}

/// A live run's time is monotonic: rule activation dates, and the usage timestamps shown, are
/// judged on the wall clock the caller sets; idle timeouts run on the monotonic clock, however the
/// wall clock steps.
#[test]
fn dates_are_judged_by_the_wall_clock_and_idle_timeouts_by_the_monotonic_one() {
    let mut e = engine();
    let mono = |secs: u64| Timestamp(secs * SEC);
    let wall = |secs: u64| Timestamp((JUNE_2026 + secs) * SEC);
    e.set_wall_clock(mono(100), wall(0));
    let down = tcp("203.0.113.7", 80, UE, 40006, ACK, b"");
    let mut out = Output::default();
    assert_eq!(
        e.handle_frame(mono(100), Port::Any, &down, &mut out),
        Verdict::Forward
    );
    let video = usage(&e, 0, 20);
    assert_eq!(video.downlink_packets, 1, "the campaign is on in June 2026");
    assert_eq!(video.first_seen, Some(wall(0)));

    // The wall clock steps back a day: the flow is no older for it.
    e.set_wall_clock(mono(200), Timestamp((JUNE_2026 - 86_400) * SEC));
    e.handle_timeout(mono(100 + 299));
    assert_eq!(e.flows().len(), 1);
    e.handle_timeout(mono(100 + 301));
    assert_eq!((e.flows().len(), e.flows().expired), (0, 1));
}

#[test]
fn default_rule_forwards_with_its_rating_group_or_drops() {
    let mut e = engine();
    assert_eq!(
        run(&mut e, 0, &udp4(UE, 5000, WEB, 9999, b"hello")),
        Verdict::Forward
    );
    assert_eq!(usage(&e, 0, 0).uplink_bytes, 33);
    // The second subscriber's default rule drops.
    assert_eq!(
        run(&mut e, 0, &udp4("10.45.0.3", 5000, WEB, 9999, b"x")),
        Verdict::Drop(DropReason::DefaultRule)
    );
    assert_eq!(
        run(&mut e, 0, &tcp("10.45.0.3", 5000, WEB, 443, SYN, b"")),
        Verdict::Forward
    );
    assert_eq!(usage(&e, 1, 10).uplink_packets, 1);
}

#[test]
fn udp_dns_both_ways() {
    let mut e = engine();
    assert_eq!(
        run(&mut e, 0, &udp4(UE, 5353, "192.0.2.53", 53, &[0; 30])),
        Verdict::Forward
    );
    assert_eq!(
        run(&mut e, 0, &udp4("192.0.2.53", 53, UE, 5353, &[0; 60])),
        Verdict::Forward
    );
    let u = usage(&e, 0, 1);
    assert_eq!((u.uplink_bytes, u.downlink_bytes), (58, 88));
}

#[test]
fn ipv6_session_is_found_by_its_prefix() {
    let mut e = engine();
    assert_eq!(
        run(
            &mut e,
            0,
            &tcp(UE6, 40006, "2001:db8:100::10", 443, SYN, b"")
        ),
        Verdict::Forward
    );
    assert_eq!(
        run(
            &mut e,
            0,
            &tcp("2001:db8:100::10", 443, UE6, 40006, SYN | ACK, b"")
        ),
        Verdict::Forward
    );
    let u = usage(&e, 0, 10);
    assert_eq!((u.uplink_bytes, u.downlink_bytes), (60, 60));
    // Another address of the same pool without a session.
    assert_eq!(
        run(
            &mut e,
            0,
            &tcp("2001:db8:45:2::9", 40006, "2001:db8:100::10", 443, SYN, b"")
        ),
        Verdict::Drop(DropReason::UnknownSubscriber)
    );
}

#[test]
fn unknown_and_non_subscriber_traffic_follow_the_gateway_settings() {
    let mut e = engine();
    assert_eq!(
        run(&mut e, 0, &tcp("10.45.9.9", 1, WEB, 80, SYN, b"")),
        Verdict::Drop(DropReason::UnknownSubscriber)
    );
    assert_eq!(
        run(&mut e, 0, &tcp("192.0.2.1", 1, WEB, 80, SYN, b"")),
        Verdict::Forward
    );
    assert_eq!(e.counters().non_subscriber_forwarded, 1);
    let mut e = engine_with(&CONFIG.replace(
        "flow_table_capacity = 4",
        "flow_table_capacity = 4\nunknown_subscriber = \"forward\"\nnon_subscriber = \"drop\"",
    ));
    assert_eq!(
        run(&mut e, 0, &tcp("10.45.9.9", 1, WEB, 80, SYN, b"")),
        Verdict::Forward
    );
    assert_eq!(
        run(&mut e, 0, &tcp("192.0.2.1", 1, WEB, 80, SYN, b"")),
        Verdict::Drop(DropReason::NonSubscriber)
    );
    assert_eq!(e.counters().unknown_subscriber_forwarded, 1);
}

#[test]
fn malformed_frames_are_counted_and_dropped_or_passed() {
    let good = tcp(UE, 40007, WEB, 80, SYN, b"");
    let truncated = &good[..30];
    let mut e = engine();
    assert_eq!(
        run(&mut e, 0, truncated),
        Verdict::Drop(DropReason::Malformed(crate::wire::WireError::TruncatedIp))
    );
    assert_eq!(
        run(&mut e, 0, &good[..10]),
        Verdict::Drop(DropReason::Malformed(crate::wire::WireError::TruncatedLink))
    );
    assert_eq!(e.counters().dropped_total(), 2);
    let mut e = engine_with(&CONFIG.replace(
        "flow_table_capacity = 4",
        "flow_table_capacity = 4\nmalformed = \"pass\"",
    ));
    assert_eq!(run(&mut e, 0, truncated), Verdict::Forward);
    assert_eq!(e.counters().malformed_passed.iter().sum::<u64>(), 1);
    // ARP passes as non-IP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(run(&mut e, 0, &arp), Verdict::Forward);
    assert_eq!(e.counters().non_ip, 1);
}

#[test]
fn the_flow_table_stays_bounded_and_idle_flows_expire() {
    let mut e = engine();
    for port in 0..20 {
        assert_eq!(
            run(&mut e, 0, &tcp(UE, 41000 + port, WEB, 80, SYN, b"")),
            Verdict::Forward
        );
    }
    assert!(e.flows().len() <= 4);
    assert_eq!(e.flows().created, 20);
    assert_eq!(e.flows().evicted, 16);
    // Metering is exact even when flows are evicted and come back.
    assert_eq!(usage(&e, 0, 10).uplink_packets, 20);
    e.handle_timeout(Timestamp((JUNE_2026 + 301) * SEC));
    assert_eq!(e.flows().len(), 0);
    assert_eq!(e.flows().expired, 4);
}

#[test]
fn a_new_snapshot_reclassifies_cached_flows() {
    let mut e = engine();
    let syn = tcp(UE, 40008, WEB, 80, SYN, b"");
    assert_eq!(run(&mut e, 0, &syn), Verdict::Forward);
    let closed = CONFIG.replace(
        "name = \"web\"\nprecedence = 100",
        "name = \"web\"\nprecedence = 100\nflow_status = \"DISABLED\"",
    );
    e.set_snapshot(Arc::new(PolicySnapshot::build(&config(&closed), 2)));
    assert_eq!(run(&mut e, 1, &syn), Verdict::Drop(DropReason::GateClosed));
}

/// A change to one session leaves every other session's flows cached (a cache hit makes no
/// flow entry), and re-decides its own.
#[test]
fn a_cached_flow_survives_another_session_s_change_and_not_its_own() {
    let c = config(CONFIG);
    let mut e = engine();
    let syn = tcp(UE, 40009, WEB, 80, SYN, b"");
    assert_eq!(run(&mut e, 0, &syn), Verdict::Forward);
    assert_eq!(e.flows().created, 1);

    // The other subscriber gets a new rule set: the first subscriber's flow stays cached.
    let mut other = c.sessions[1].clone();
    other.predefined = vec!["dns".into(), "web".into(), "video".into()];
    let next = e
        .snapshot()
        .with_changes(2, &[(SessionId(1), Some(&other))]);
    e.set_snapshot(Arc::new(next));
    assert_eq!(run(&mut e, 1, &syn), Verdict::Forward);
    assert_eq!(e.flows().created, 1);

    // Its own session replaced, same rules: decided again, once.
    let next = e
        .snapshot()
        .with_changes(3, &[(SessionId(0), Some(&c.sessions[0]))]);
    e.set_snapshot(Arc::new(next));
    assert_eq!(run(&mut e, 2, &syn), Verdict::Forward);
    assert_eq!(run(&mut e, 3, &syn), Verdict::Forward);
    assert_eq!(e.flows().created, 2);

    // Removed, and its address and slot given to another subscriber whose default rule drops:
    // the old decision is never used again.
    let mut newcomer = c.sessions[1].clone();
    newcomer.subscriber = crate::policy::SubscriberId::parse("imsi-001010000000009").unwrap();
    newcomer.ipv4 = c.sessions[0].ipv4;
    newcomer.ipv6 = None;
    newcomer.predefined.clear();
    let next = e
        .snapshot()
        .with_changes(4, &[(SessionId(0), None), (SessionId(9), Some(&newcomer))]);
    assert_eq!(
        next.session_by_id(SessionId(9)).map(|(slot, _)| slot),
        Some(0)
    );
    e.set_snapshot(Arc::new(next));
    assert_eq!(run(&mut e, 4, &syn), Verdict::Drop(DropReason::DefaultRule));
    // And removing the subscriber leaves its address unknown.
    let next = e.snapshot().with_changes(5, &[(SessionId(9), None)]);
    e.set_snapshot(Arc::new(next));
    assert_eq!(
        run(&mut e, 5, &syn),
        Verdict::Drop(DropReason::UnknownSubscriber)
    );
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    // A UDP datagram to port 53 split in two IPv4 fragments (raw IP, same id).
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(UE), ip("192.0.2.53")) else {
        unreachable!()
    };
    let header = |total: u16, frag: u16| {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        h
    };
    let mut first = header(20 + 16, 0x2000); // MF, offset 0
    first.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 24, 0, 0]);
    first.extend_from_slice(&[0xaa; 8]);
    let mut second = header(20 + 8, 2); // offset 16 bytes
    second.extend_from_slice(&[0xbb; 8]);
    let mut e = Engine::new(
        Arc::new(PolicySnapshot::build(&config(CONFIG), 1)),
        LinkType::RawIp,
    );
    let mut out = Output::default();
    let now = Timestamp(JUNE_2026 * SEC);
    assert_eq!(
        e.handle_frame(now, Port::Any, &first, &mut out),
        Verdict::Forward
    );
    assert_eq!(
        e.handle_frame(now, Port::Any, &second, &mut out),
        Verdict::Forward
    );
    assert_eq!(usage(&e, 0, 1).uplink_bytes, 36 + 28);
    assert_eq!(e.counters().fragments_resolved, 1);
    // A later fragment of an unknown datagram has no ports: the default rule takes it.
    let mut orphan = second.clone();
    orphan[4] = 0x99;
    assert_eq!(
        e.handle_frame(now, Port::Any, &orphan, &mut out),
        Verdict::Forward
    );
    assert_eq!(e.counters().fragments_orphan, 1);
    assert_eq!(usage(&e, 0, 0).uplink_bytes, 28);
}

#[test]
fn neighbour_discovery_passes_even_when_the_default_rule_drops() {
    // A Neighbor Solicitation (ICMPv6 135, hop limit 255) from a subscriber whose session drops
    // unmatched traffic: without it the UE could not resolve its next hop.
    let text = CONFIG.replace(
        "ipv4 = \"10.45.0.3\"",
        "ipv4 = \"10.45.0.3\"\nipv6 = \"2001:db8:45:3::/64\"",
    );
    let mut e = Engine::new(
        Arc::new(PolicySnapshot::build(&config(&text), 1)),
        LinkType::RawIp,
    );
    let ns = |hop_limit: u8, icmp_type: u8| {
        let mut f = vec![0x60, 0, 0, 0, 0, 24, 58, hop_limit];
        f.extend_from_slice(
            &"2001:db8:45:3::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        f.extend_from_slice(
            &"ff02::1:ff00:1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        f.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[0; 16]);
        f
    };
    let mut out = Output::default();
    let now = Timestamp(JUNE_2026 * SEC);
    assert_eq!(
        e.handle_frame(now, Port::Any, &ns(255, 135), &mut out),
        Verdict::Forward
    );
    assert_eq!(e.counters().neighbor_discovery, 1);
    // Not metered and not a flow.
    assert_eq!(e.flows().created, 0);
    assert!(e.report().rating_groups.is_empty());
    // The same message after crossing a router, or an echo request, is ordinary traffic.
    assert_eq!(
        e.handle_frame(now, Port::Any, &ns(254, 135), &mut out),
        Verdict::Drop(DropReason::DefaultRule)
    );
    assert_eq!(
        e.handle_frame(now, Port::Any, &ns(255, 128), &mut out),
        Verdict::Drop(DropReason::DefaultRule)
    );
}

#[test]
fn a_subscriber_address_on_the_wrong_leg_is_dropped() {
    let mut e = engine();
    let mut out = Output::default();
    let now = Timestamp(JUNE_2026 * SEC);
    let up = tcp(UE, 40100, WEB, 80, SYN, b"");
    let down = tcp(WEB, 80, UE, 40100, SYN | ACK, b"");
    assert_eq!(
        e.handle_frame(now, Port::Ue, &up, &mut out),
        Verdict::Forward
    );
    assert_eq!(
        e.handle_frame(now, Port::Internet, &down, &mut out),
        Verdict::Forward
    );
    // The same frames on the opposite legs: a forged source, or a loop.
    assert_eq!(
        e.handle_frame(now, Port::Internet, &up, &mut out),
        Verdict::Drop(DropReason::WrongLeg)
    );
    assert_eq!(
        e.handle_frame(now, Port::Ue, &down, &mut out),
        Verdict::Drop(DropReason::WrongLeg)
    );
    // Non-subscriber traffic has no wrong leg.
    let transit = tcp("192.0.2.1", 1, WEB, 80, SYN, b"");
    assert_eq!(
        e.handle_frame(now, Port::Internet, &transit, &mut out),
        Verdict::Forward
    );
    assert_eq!(
        usage(&e, 0, 10).total_bytes(),
        80,
        "only the two good frames are metered"
    );
}

#[test]
fn every_drop_reason_has_its_own_counter_and_name() {
    let reasons: Vec<DropReason> = DropReason::all().collect();
    assert_eq!(reasons.len(), DropReason::COUNT);
    let mut indices: Vec<usize> = reasons.iter().map(|r| r.index()).collect();
    indices.sort();
    assert_eq!(indices, (0..DropReason::COUNT).collect::<Vec<_>>());
    let mut names: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), DropReason::COUNT);
}
