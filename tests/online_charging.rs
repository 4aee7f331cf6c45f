//! Online charging (Gy) in the data path, replayed through the engine with a virtual clock:
//! grants consumed packet by packet, the threshold report raised by exactly the packet that
//! reaches it, each Final-Unit-Action applied by the packet after the one that used the grant
//! up (to its rating group only), a new grant lifting it and a repeated answer changing
//! nothing, the pending action while credit is asked for, Validity-Time and
//! Quota-Holding-Time, and reports that add up to the meter byte for byte.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weir::charging::{CreditState, Metered};
use weir::engine::{DropReason, Engine, Output, Port, Verdict};
use weir::packet::{Event, Octets, ReportingReason, UsedUnits};
use weir::policy::{
    Config, CreditGrant, FinalUnitAction, FinalUnitIndication, GrantedServiceUnit, PendingAction,
    PolicySnapshot, RedirectAddressType, RedirectInformation, SessionId,
};
use weir::time::Timestamp;
use weir::wire::{self, tcp_flags, Checksum, LinkHeader, LinkType, Parsed, TcpSegment};

const T0: u64 = 1_800_000_000;
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const UE1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
const SITE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const PORTAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
const SITE2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
const S: SessionId = SessionId(0);

/// Rating group 10: web (TCP from port 80), online. 20: video (UDP from port 5000), online.
/// 30: DNS, offline.
fn config() -> Config {
    let text = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[redirect]
http_ports = [80]
success_url = "http://portal.example/recharge/success"
token_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
online = true
flow = [{ description = "permit out 6 from any 80 to assigned" }]

[[predefined_rule]]
name = "video"
precedence = 110
rating_group = 20
online = true
flow = [{ description = "permit out 17 from any 5000 to assigned" }]

[[predefined_rule]]
name = "dns"
precedence = 120
rating_group = 30
flow = [{ description = "permit out 17 from any 53 to assigned" }]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
predefined = ["web", "video", "dns"]
"#;
    let mut config = Config::from_toml_str(text, "online").unwrap_or_else(|e| panic!("{:#?}", e.0));
    // Held while credit is asked for (the default forwards).
    config.gateway.credit.pending = PendingAction::Hold;
    config
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn grant(rating_group: u32, grant: u64, total: u64, threshold: Option<u64>) -> CreditGrant {
    CreditGrant {
        rating_group,
        service_identifier: None,
        grant,
        granted: GrantedServiceUnit {
            total: Some(total),
            ..Default::default()
        },
        volume_threshold: threshold,
        time_threshold: None,
        validity_time: None,
        quota_holding_time: None,
        final_unit: None,
    }
}

fn with_fui(mut g: CreditGrant, action: FinalUnitAction, filters: &[&str]) -> CreditGrant {
    g.final_unit = Some(FinalUnitIndication {
        action,
        restriction_filters: filters.iter().map(|f| f.parse().unwrap()).collect(),
        filter_ids: Vec::new(),
    });
    g
}

fn topup() -> FinalUnitAction {
    FinalUnitAction::Redirect(
        RedirectInformation::new(
            true,
            RedirectAddressType::Url,
            "http://portal.example/topup",
        )
        .unwrap(),
    )
}

struct Gw {
    config: Config,
    version: u64,
    engine: Engine,
    out: Output,
}

impl Gw {
    fn new(config: Config) -> Gw {
        let engine = Engine::new(Arc::new(PolicySnapshot::build(&config, 1)), LinkType::RawIp);
        Gw {
            config,
            version: 1,
            engine,
            out: Output::default(),
        }
    }

    /// The control plane installs the credits of a CCA.
    fn answer(&mut self, credits: Vec<CreditGrant>) {
        self.config.sessions[0].credits = credits;
        self.version += 1;
        let snap = PolicySnapshot::build(&self.config, self.version);
        self.engine.set_snapshot(Arc::new(snap));
    }

    fn send(&mut self, now: Timestamp, frame: &[u8]) -> Verdict {
        self.out.clear();
        self.engine
            .handle_frame(now, Port::Any, frame, &mut self.out)
    }

    fn events(&mut self) -> Vec<Event> {
        self.engine.drain_events().collect()
    }

    fn dropped(&self, reason: DropReason) -> u64 {
        self.engine.counters().dropped[reason.index()]
    }

    fn meter(&self, rating_group: u32) -> Octets {
        let u = self
            .engine
            .meter()
            .usage(&Metered::RatingGroup(S, rating_group))
            .copied()
            .unwrap_or_default();
        Octets {
            uplink: u.uplink_bytes,
            downlink: u.downlink_bytes,
        }
    }

    fn state(&self, rating_group: u32) -> Option<CreditState> {
        let slot = self
            .engine
            .meter()
            .iter()
            .position(|(m, _)| *m == Metered::RatingGroup(S, rating_group))?;
        self.engine.credit().state(slot)
    }

    fn unreported(&self, rating_group: u32) -> Octets {
        let slot = self
            .engine
            .meter()
            .iter()
            .position(|(m, _)| *m == Metered::RatingGroup(S, rating_group))
            .unwrap();
        self.engine.credit().unreported(slot).unwrap()
    }

    /// Releases held frames; returns each with its verdict, in order.
    fn release(&mut self, now: Timestamp) -> Vec<(Vec<u8>, Verdict)> {
        let mut released = Vec::new();
        let mut out = Output::default();
        self.engine.release_held(now, &mut out, |_, frame, v, _| {
            released.push((frame.to_vec(), v))
        });
        released
    }
}

/// A UDP datagram, raw IPv4, of `ip_len` IP bytes; `tag` marks its payload.
fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, ip_len: usize, tag: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let udp_len = ip_len - 20;
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&(ip_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&s.octets());
    out.extend_from_slice(&d.octets());
    let c = wire::ipv4_checksum(&out[..20]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.resize(ip_len, tag);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, 17, udp_len as u32)
        .add(&out[20..])
        .finish();
    out[26..28].copy_from_slice(&sum.to_be_bytes());
    out
}

/// Video toward the UE (rating group 20).
fn video(ip_len: usize, tag: u8) -> Vec<u8> {
    udp(SITE, UE1, 5000, 40000, ip_len, tag)
}

/// Video from the UE.
fn video_up(ip_len: usize) -> Vec<u8> {
    udp(UE1, SITE, 40000, 5000, ip_len, 0)
}

fn dns(ip_len: usize) -> Vec<u8> {
    udp(SITE, UE1, 53, 40053, ip_len, 0)
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

fn web_syn(port: u16) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: LinkHeader::RawIp,
        src: UE1,
        dst: SITE,
        src_port: port,
        dst_port: 80,
        seq: 1_000_000,
        ack: 0,
        flags: tcp_flags::SYN,
        window: 64240,
        mss: Some(1460),
        payload: &[],
    }
    .write(&mut out)
    .unwrap();
    out
}

fn report(
    grant: u64,
    reason: ReportingReason,
    uplink: u64,
    downlink: u64,
    time: u64,
    at: Timestamp,
) -> Event {
    Event::CreditReport {
        session: S,
        rating_group: 20,
        service_identifier: None,
        grant,
        reason,
        used: UsedUnits {
            octets: Octets { uplink, downlink },
            time,
        },
        at,
    }
}

fn request(rating_group: u32, at: Timestamp) -> Event {
    Event::CreditRequest {
        session: S,
        rating_group,
        service_identifier: None,
        at,
    }
}

#[test]
fn the_threshold_is_reported_by_the_packet_that_reaches_it_and_the_one_that_uses_the_grant_up_is_the_last_forwarded(
) {
    let mut gw = Gw::new(config());
    gw.answer(vec![grant(20, 1, 1000, Some(300))]);
    for i in 0..3 {
        assert_eq!(gw.send(at(0), &video(200, i)), Verdict::Forward);
    }
    assert_eq!(gw.events(), vec![], "700 left, above the threshold");
    // 200 left: at the threshold. Forwarding goes on.
    assert_eq!(gw.send(at(1), &video(200, 3)), Verdict::Forward);
    assert_eq!(
        gw.events(),
        vec![report(1, ReportingReason::Threshold, 0, 800, 1, at(1))]
    );
    // The packet that uses the grant up is forwarded, the last one under it.
    assert_eq!(gw.send(at(2), &video(200, 4)), Verdict::Forward);
    assert_eq!(
        gw.events(),
        vec![report(1, ReportingReason::QuotaExhausted, 0, 200, 1, at(2))]
    );
    // Without a Final-Unit-Indication the pending action (hold) applies; the report asked for
    // more, so no request is made on top of it.
    assert_eq!(gw.send(at(2), &video(100, 5)), Verdict::Held);
    assert_eq!(gw.send(at(2), &video(120, 6)), Verdict::Held);
    assert_eq!(gw.events(), vec![]);
    assert_eq!(gw.state(20), Some(CreditState::Waiting));
    // The same answer again (a repeated CCA) grants nothing.
    gw.answer(vec![grant(20, 1, 1000, Some(300))]);
    assert!(!gw.engine.has_held_ready());
    assert_eq!(gw.send(at(3), &video(100, 7)), Verdict::Held);
    // The new grant releases the held frames, in order, under it.
    gw.answer(vec![grant(20, 2, 10_000, None)]);
    assert!(gw.engine.has_held_ready());
    let released = gw.release(at(3));
    assert_eq!(
        released,
        vec![
            (video(100, 5), Verdict::Forward),
            (video(120, 6), Verdict::Forward),
            (video(100, 7), Verdict::Forward),
        ]
    );
    assert_eq!(gw.engine.credit_held(), 0);
    assert_eq!(
        gw.unreported(20),
        Octets {
            uplink: 0,
            downlink: 320
        }
    );
    assert_eq!(
        gw.meter(20),
        Octets {
            uplink: 0,
            downlink: 1320
        }
    );
    assert_eq!(gw.engine.counters().credit_reports, 2);
}

#[test]
fn without_a_grant_one_request_and_the_pending_action() {
    // Hold: one request for any number of packets, the queue bounded, released in order.
    let mut gw = Gw::new(config());
    for i in 0..10 {
        let v = gw.send(at(0), &video(100 + usize::from(i), i));
        let want = if i < 8 {
            Verdict::Held
        } else {
            Verdict::Drop(DropReason::CreditQueueFull)
        };
        assert_eq!(v, want, "packet {i}");
    }
    assert_eq!(gw.events(), vec![request(20, at(0))]);
    assert_eq!(gw.dropped(DropReason::CreditQueueFull), 2);
    assert_eq!(gw.engine.counters().credit_requests, 1);
    assert_eq!(gw.engine.credit_held(), 8);
    // Offline traffic is not held.
    assert_eq!(gw.send(at(0), &dns(80)), Verdict::Forward);
    // Unanswered for `credit.retry` (5 s): asked again, once; the stale frames dropped.
    assert_eq!(
        gw.send(at(4), &video(100, 50)),
        Verdict::Drop(DropReason::CreditQueueFull)
    );
    assert_eq!(gw.events(), vec![]);
    assert_eq!(gw.send(at(5), &video(100, 51)), Verdict::Held);
    assert_eq!(gw.events(), vec![request(20, at(5))]);
    assert_eq!(gw.engine.counters().held_expired, 8);
    gw.answer(vec![grant(20, 1, 1_000_000, None)]);
    let released = gw.release(at(5));
    assert_eq!(released, vec![(video(100, 51), Verdict::Forward)]);
    assert_eq!(gw.send(at(5), &video(100, 52)), Verdict::Forward);
    assert_eq!(gw.meter(20).downlink, 200);

    // Forward: forwarded and counted (reported under the first grant's report).
    let mut config = config();
    config.gateway.credit.pending = PendingAction::Forward;
    let mut gw = Gw::new(config);
    for i in 0..3 {
        assert_eq!(gw.send(at(0), &video(100, i)), Verdict::Forward);
    }
    assert_eq!(gw.events(), vec![request(20, at(0))]);
    assert_eq!(gw.engine.counters().credit_pending_forwarded, 3);
    gw.answer(vec![grant(20, 1, 300, None)]);
    assert_eq!(gw.send(at(1), &video(300, 9)), Verdict::Forward);
    assert_eq!(
        gw.events(),
        vec![report(1, ReportingReason::QuotaExhausted, 0, 600, 1, at(1))]
    );

    // Drop: dropped, counted, one request.
    let mut config = self::config();
    config.gateway.credit.pending = PendingAction::Drop;
    let mut gw = Gw::new(config);
    for i in 0..3 {
        assert_eq!(
            gw.send(at(0), &video(100, i)),
            Verdict::Drop(DropReason::CreditPending)
        );
    }
    assert_eq!(gw.events(), vec![request(20, at(0))]);
    assert_eq!(gw.dropped(DropReason::CreditPending), 3);
    assert_eq!(gw.meter(20), Octets::default());
}

#[test]
fn terminate_drops_that_rating_group_only_and_a_repeated_answer_keeps_it_terminated() {
    let mut gw = Gw::new(config());
    let video_grant = with_fui(grant(20, 1, 400, None), FinalUnitAction::Terminate, &[]);
    let web_grant = with_fui(
        grant(10, 1, 1_000_000, None),
        FinalUnitAction::Terminate,
        &[],
    );
    gw.answer(vec![video_grant.clone(), web_grant.clone()]);
    assert_eq!(gw.send(at(0), &web_syn(41000)), Verdict::Forward);
    assert_eq!(gw.send(at(0), &video(200, 0)), Verdict::Forward);
    assert_eq!(gw.send(at(0), &video(200, 1)), Verdict::Forward);
    assert_eq!(
        gw.events(),
        vec![report(1, ReportingReason::Final, 0, 400, 0, at(0))]
    );
    for i in 0..3 {
        assert_eq!(
            gw.send(at(1), &video(200, 2 + i)),
            Verdict::Drop(DropReason::CreditTerminated)
        );
    }
    assert_eq!(gw.dropped(DropReason::CreditTerminated), 3);
    assert_eq!(gw.state(20), Some(CreditState::Terminated));
    // The other online group and the offline one go on; the session is not ended.
    assert_eq!(gw.send(at(1), &web_syn(41001)), Verdict::Forward);
    assert_eq!(gw.send(at(1), &dns(80)), Verdict::Forward);
    assert_eq!(gw.events(), vec![]);
    // A repeated final-unit answer changes nothing.
    gw.answer(vec![video_grant.clone(), web_grant]);
    assert_eq!(
        gw.send(at(2), &video(200, 9)),
        Verdict::Drop(DropReason::CreditTerminated)
    );
    // A new grant lifts it.
    gw.answer(vec![grant(20, 2, 1000, None), grant(10, 1, 40, None)]);
    assert_eq!(gw.send(at(3), &video(200, 10)), Verdict::Forward);
    assert_eq!(gw.meter(20).downlink, 600);
    // Every online group terminated: the session ends.
    gw.answer(vec![
        with_fui(grant(20, 3, 100, None), FinalUnitAction::Terminate, &[]),
        with_fui(grant(10, 2, 40, None), FinalUnitAction::Terminate, &[]),
    ]);
    gw.events();
    assert_eq!(gw.send(at(4), &video(100, 11)), Verdict::Forward);
    assert_eq!(gw.send(at(4), &web_syn(41002)), Verdict::Forward);
    let events = gw.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        Event::CreditTerminated {
            session: S,
            at: at(4)
        }
    );
}

#[test]
fn redirect_holds_that_rating_group_only_a_repeated_answer_keeps_it_and_a_new_grant_lifts_it() {
    let mut gw = Gw::new(config());
    let syn = web_syn(42000);
    let web = with_fui(grant(10, 1, syn.len() as u64, None), topup(), &[]);
    let credits = vec![web.clone(), grant(20, 1, 1_000_000, None)];
    gw.answer(credits.clone());
    // The SYN uses the web grant up: forwarded, the last one.
    assert_eq!(gw.send(at(0), &syn), Verdict::Forward);
    assert!(matches!(
        gw.events()[..],
        [Event::CreditReport {
            rating_group: 10,
            reason: ReportingReason::Final,
            ..
        }]
    ));
    // From the next packet on the web group is answered by the redirect stage: a new
    // connection gets the SYN-ACK, its request the 302 to the Redirect-Server.
    let redirected = |gw: &mut Gw, port: u16| -> Option<String> {
        if gw.send(at(1), &web_syn(port)) != Verdict::Inject {
            return None;
        }
        let synack = gw.out.frames().next().unwrap().1.to_vec();
        let Ok(Parsed::Ip(p)) = wire::parse(LinkType::RawIp, &synack) else {
            panic!()
        };
        let mut get = Vec::new();
        TcpSegment {
            link: LinkHeader::RawIp,
            src: UE1,
            dst: SITE,
            src_port: port,
            dst_port: 80,
            seq: 1_000_001,
            ack: p.tcp_seq.wrapping_add(1),
            flags: tcp_flags::ACK | tcp_flags::PSH,
            window: 64240,
            mss: None,
            payload: b"GET / HTTP/1.1\r\nHost: site.example\r\n\r\n",
        }
        .write(&mut get)
        .unwrap();
        assert_eq!(gw.send(at(1), &get), Verdict::Inject);
        let text: Vec<u8> = gw
            .out
            .frames()
            .flat_map(|(_, f)| {
                let Ok(Parsed::Ip(p)) = wire::parse(LinkType::RawIp, f) else {
                    panic!()
                };
                let s = usize::from(p.payload_offset);
                f[s..s + usize::from(p.payload_len)].to_vec()
            })
            .collect();
        let text = String::from_utf8(text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .map(str::to_string)
    };
    let location = redirected(&mut gw, 42001).expect("redirected");
    assert!(
        location.starts_with("http://portal.example/topup"),
        "{location}"
    );
    // Data on the connection the SYN opened is held too.
    assert_ne!(
        gw.send(at(1), &tcp(SITE, UE1, 80, 42000, tcp_flags::ACK, b"x")),
        Verdict::Forward
    );
    // The other online group keeps forwarding.
    assert_eq!(gw.send(at(1), &video(500, 0)), Verdict::Forward);
    assert_eq!(gw.state(10), Some(CreditState::Redirected));
    // A repeated final-unit answer (the same grant) does not lift it.
    gw.answer(credits);
    assert!(redirected(&mut gw, 42002).is_some());
    assert_eq!(gw.engine.redirect().counters().redirects_sent, 2);
    // Nor does the answer to the report of the final units: a grant of nothing with the same
    // Final-Unit-Action, newly numbered. The group stays redirected (taken, the nothing would
    // be used up by the next packet, reported FINAL and answered with nothing, in a loop that
    // drops every packet), and nothing more is reported.
    gw.events();
    gw.answer(vec![
        with_fui(grant(10, 2, 0, None), topup(), &[]),
        grant(20, 1, 1_000_000, None),
    ]);
    assert!(redirected(&mut gw, 42004).is_some());
    assert!(redirected(&mut gw, 42005).is_some());
    assert_eq!(gw.state(10), Some(CreditState::Redirected));
    assert_eq!(gw.events(), vec![]);
    // A new grant does, at once.
    gw.answer(vec![
        grant(10, 3, 1_000_000, None),
        grant(20, 1, 1_000_000, None),
    ]);
    assert_eq!(gw.state(10), Some(CreditState::Granted));
    assert_eq!(gw.send(at(2), &web_syn(42003)), Verdict::Forward);
    assert_eq!(
        gw.send(at(2), &tcp(SITE, UE1, 80, 42000, tcp_flags::ACK, b"x")),
        Verdict::Forward
    );
}

#[test]
fn restrict_access_lets_the_restriction_filters_through_and_drops_the_rest_of_the_group() {
    let mut gw = Gw::new(config());
    gw.answer(vec![with_fui(
        grant(20, 1, 300, None),
        FinalUnitAction::RestrictAccess,
        &["permit out 17 from 198.51.100.9 to assigned"],
    )]);
    assert_eq!(gw.send(at(0), &video(300, 0)), Verdict::Forward);
    assert_eq!(
        gw.send(at(0), &video(300, 1)),
        Verdict::Drop(DropReason::CreditRestricted)
    );
    assert_eq!(
        gw.send(at(0), &video_up(100)),
        Verdict::Drop(DropReason::CreditRestricted)
    );
    let allowed = udp(SITE2, UE1, 5000, 40000, 150, 0);
    assert_eq!(gw.send(at(0), &allowed), Verdict::Forward);
    assert_eq!(gw.dropped(DropReason::CreditRestricted), 2);
    // Offline traffic is untouched.
    assert_eq!(gw.send(at(0), &dns(80)), Verdict::Forward);
    assert_eq!(
        gw.meter(20),
        Octets {
            uplink: 0,
            downlink: 450
        }
    );
    gw.answer(vec![grant(20, 2, 10_000, None)]);
    assert_eq!(gw.send(at(1), &video(300, 2)), Verdict::Forward);
}

#[test]
fn validity_time_and_quota_holding_time_report_and_ask_again() {
    let mut gw = Gw::new(config());
    let mut g = grant(20, 1, 1_000_000, None);
    g.validity_time = Some(10);
    gw.answer(vec![g]);
    assert_eq!(gw.send(at(0), &video(100, 0)), Verdict::Forward);
    assert_eq!(gw.send(at(4), &video_up(60)), Verdict::Forward);
    gw.engine.handle_timeout(at(9));
    assert_eq!(gw.events(), vec![]);
    gw.engine.handle_timeout(at(10));
    assert_eq!(
        gw.events(),
        vec![report(
            1,
            ReportingReason::ValidityTime,
            60,
            100,
            10,
            at(10)
        )]
    );
    // The report asked for more: held meanwhile, no second request.
    assert_eq!(gw.send(at(11), &video(100, 1)), Verdict::Held);
    assert_eq!(gw.events(), vec![]);

    let mut gw = Gw::new(config());
    let mut g = grant(20, 1, 1_000_000, None);
    g.quota_holding_time = Some(5);
    gw.answer(vec![g]);
    assert_eq!(gw.send(at(0), &video(100, 0)), Verdict::Forward);
    assert_eq!(gw.send(at(3), &video(100, 1)), Verdict::Forward);
    gw.engine.handle_timeout(at(7));
    assert_eq!(gw.events(), vec![]);
    gw.engine.handle_timeout(at(8));
    assert_eq!(
        gw.events(),
        vec![report(
            1,
            ReportingReason::QuotaHoldingTime,
            0,
            200,
            8,
            at(8)
        )]
    );
    // The grant was given back: the next packet asks.
    assert_eq!(gw.send(at(20), &video(100, 2)), Verdict::Held);
    assert_eq!(gw.events(), vec![request(20, at(20))]);
}

#[test]
fn reports_add_up_to_the_meter_byte_for_byte() {
    let mut gw = Gw::new(config());
    let mut next = 1;
    gw.answer(vec![grant(20, next, 5000, Some(1000))]);
    let mut reported = Octets::default();
    let mut time = 0;
    let mut reports = 0;
    // A mixed stream: both directions, sizes 60..1500, offline DNS between; the control plane
    // answers every report with a new grant.
    let mut sizes = 60usize;
    for i in 0..400u64 {
        sizes = (sizes * 7 + 13) % 1441 + 60;
        let frame = if i % 3 == 0 {
            video_up(sizes)
        } else {
            video(sizes, i as u8)
        };
        let now = Timestamp::from_nanos((T0 + i / 10) * 1_000_000_000 + (i % 10) * 99_000_000);
        let v = gw.send(now, &frame);
        if i % 5 == 0 {
            gw.send(now, &dns(90));
        }
        for e in gw.events() {
            let Event::CreditReport { used, reason, .. } = e else {
                panic!("{e:?}")
            };
            reports += 1;
            reported.uplink += used.octets.uplink;
            reported.downlink += used.octets.downlink;
            time += used.time;
            if reason == ReportingReason::QuotaExhausted || reason == ReportingReason::Threshold {
                next += 1;
                gw.answer(vec![grant(20, next, 5000, Some(1000))]);
                for (_, v) in gw.release(now) {
                    assert_eq!(v, Verdict::Forward);
                }
            }
        }
        assert_ne!(v, Verdict::Drop(DropReason::CreditQueueFull));
    }
    assert!(reports > 50, "{reports}");
    let unreported = gw.unreported(20);
    let meter = gw.meter(20);
    assert_eq!(reported.uplink + unreported.uplink, meter.uplink);
    assert_eq!(reported.downlink + unreported.downlink, meter.downlink);
    assert_eq!(gw.engine.credit_held(), 0);
    // Time: whole seconds, the fractions carried, so the reports' time is the stream's time
    // up to the last report.
    assert!(time <= 39, "{time}");
}

#[test]
fn an_aggregate_is_charged_as_its_segments() {
    // 10 segments of 1448 bytes, 40 bytes of headers each: 14 880 bytes on the wire, 14 520 in
    // the aggregate frame. A grant of 14 600 is used up by it only if counted as segments.
    let mut gw = Gw::new(config());
    gw.answer(vec![grant(10, 1, 14_600, None)]);
    let payload = vec![0u8; 10 * 1448];
    let frame = tcp(SITE, UE1, 80, 43000, tcp_flags::ACK, &payload);
    assert_eq!(frame.len(), 14_520);
    let mut out = Output::default();
    assert_eq!(
        gw.engine
            .handle_aggregate(at(0), Port::Any, &frame, 1448, &mut out),
        Verdict::Forward
    );
    let events = gw.events();
    let [Event::CreditReport {
        rating_group: 10,
        reason: ReportingReason::QuotaExhausted,
        used,
        ..
    }] = events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        used.octets,
        Octets {
            uplink: 0,
            downlink: 14_880
        }
    );
    assert_eq!(gw.meter(10).downlink, 14_880);
    assert_eq!(
        gw.send(at(0), &tcp(SITE, UE1, 80, 43000, tcp_flags::ACK, b"y")),
        Verdict::Held
    );
}

#[test]
fn under_a_rating_group_redirect_the_success_watch_lifts_it_and_the_group_asks_for_credit() {
    let mut gw = Gw::new(config());
    let syn = web_syn(44000);
    gw.answer(vec![with_fui(
        grant(10, 1, syn.len() as u64, None),
        topup(),
        &[],
    )]);
    assert_eq!(gw.send(at(0), &syn), Verdict::Forward);
    gw.events();
    assert_eq!(gw.send(at(1), &web_syn(44001)), Verdict::Inject);
    // The portal is in the walled garden, metered under the group, free of credit; the
    // success page with a verified token lifts the redirect locally.
    let key = weir::token::TokenKey::new(&weir::token::parse_hex_key(KEY_HEX).unwrap()).unwrap();
    let q = key.sign("imsi-001010000000002", UE1, T0 + 300, "n-1");
    let get = format!("GET /recharge/success?{q} HTTP/1.1\r\nHost: portal.example\r\n\r\n");
    assert_eq!(
        gw.send(at(2), &tcp(UE1, PORTAL, 44002, 80, tcp_flags::SYN, &[])),
        Verdict::Forward
    );
    assert_eq!(
        gw.send(
            at(2),
            &tcp(
                UE1,
                PORTAL,
                44002,
                80,
                tcp_flags::ACK | tcp_flags::PSH,
                get.as_bytes()
            )
        ),
        Verdict::Forward
    );
    assert!(matches!(gw.events()[..], [Event::RechargeSuccess { .. }]));
    assert_eq!(gw.engine.redirect().counters().lifts, 1);
    // Not free from here: the group has no credit, asks for it once and holds meanwhile.
    let web = web_syn(44003);
    assert_eq!(gw.send(at(3), &web), Verdict::Held);
    assert_eq!(gw.send(at(3), &web_syn(44004)), Verdict::Held);
    assert_eq!(gw.events(), vec![request(10, at(3))]);
    gw.answer(vec![grant(10, 2, 1_000_000, None)]);
    assert_eq!(
        gw.release(at(3)),
        vec![(web, Verdict::Forward), (web_syn(44004), Verdict::Forward)]
    );
    // The reports of the group add up to its meter, the garden's packets included.
    let Octets { uplink, downlink } = gw.meter(10);
    let u = gw.unreported(10);
    assert_eq!(uplink + downlink, syn.len() as u64 + u.uplink + u.downlink);
}
