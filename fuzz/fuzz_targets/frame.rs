//! The whole frame path: a few frames per input through `Engine::handle_frame`, on one engine, so
//! TCP state (the 302 responder's pending requests, the watch's streams, the flow table, the
//! fragment table) carries from frame to frame.
//!
//! Input: one control byte, then records of `[header][length: u16 big-endian][frame]`.
//! - control: bits 0-1 the link type (Ethernet, raw IP, loopback, Ethernet), bit 2 the
//!   configuration (0: malformed frames and unknown subscribers dropped; 1: passed/forwarded).
//! - header: bits 0-1 the port the frame arrived on (UE, internet, any, any), bits 2-7 seconds
//!   the clock moves before it (flows expire when it moves).
//!
//! A length past the end takes what is left. The configuration reaches every stage: subscriber
//! 10.45.0.2 / 2001:db8:45:2::/64 is metered (rating groups, a monitoring key, a closed gate),
//! 10.45.0.3 / 2001:db8:45:3::/64 is under redirect (302 responder on 80 and 8080, walled garden
//! of the portal 192.0.2.80 and the resolvers, the success watch with a token key), and
//! 10.45.0.4 has a Final-Unit redirect on rating group 20 only.
//!
//! Checked on every frame: each frame gets one verdict, and every injected frame parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, PolicySnapshot, RedirectAddressType, RedirectInformation, SessionId};
use weir::redirect::FinalUnitRedirect;
use weir::time::Timestamp;
use weir::wire::{self, LinkType, Parsed};

/// The clock at the first frame; tokens in the seeds expire 300 s later.
const T0: u64 = 1_800_000_000;

const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]
malformed = "MALFORMED"
unknown_subscriber = "UNKNOWN"
flow_table_capacity = 64
idle_timeout = { tcp = 120, udp = 30, icmp = 10, other = 20 }

[redirect]
http_ports = [80, 8080]
location = "{url}{q}orig={orig}&sub={sub}&ue={ue}"
success_url = "http://portal.example/recharge/success"
token_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
token_max_age = 600
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80", "2001:db8:80::80"]
dns_resolvers = ["192.0.2.53", "2001:db8:53::1"]
success_action = "local"
grace = 30
quic = "unreachable"

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
name = "alt"
precedence = 50
rating_group = 20
flow = [{ description = "permit out 6 from any 8080 to assigned", direction = "UPLINK" }]

[[predefined_rule]]
name = "blocked-p2p"
precedence = 5
flow_status = "DISABLED"
flow = [
  { description = "permit out 6 from any 6881-6889 to assigned" },
  { description = "permit out 6 from any to assigned 6881-6889" },
]

[[predefined_rule]]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = { address_type = "URL", server_address = "http://portal.example/recharge" }
flow = [{ description = "permit out ip from any to assigned" }]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
ipv6 = "2001:db8:45:2::/64"
predefined = ["dns", "web", "alt", "blocked-p2p"]
default_rule = { action = "forward", rating_group = 99 }

[[session]]
subscriber = "imsi-001010000000003"
ipv4 = "10.45.0.3"
ipv6 = "2001:db8:45:3::/64"
predefined = ["dns", "web", "recharge-redirect"]

[[session]]
subscriber = "imsi-001010000000004"
ipv4 = "10.45.0.4"
predefined = ["dns", "web", "alt"]
default_rule = { action = "drop" }
"#;

fn snapshot(lenient: bool) -> Arc<PolicySnapshot> {
    let (malformed, unknown) = if lenient {
        ("pass", "forward")
    } else {
        ("drop", "drop")
    };
    let text = CONFIG
        .replace("MALFORMED", malformed)
        .replace("UNKNOWN", unknown);
    let config = Config::from_toml_str(&text, "fuzz").expect("the fuzz configuration is valid");
    Arc::new(PolicySnapshot::build(&config, 1))
}

fn engine(link: LinkType, lenient: bool) -> Engine {
    static SNAPSHOTS: OnceLock<[Arc<PolicySnapshot>; 2]> = OnceLock::new();
    let snaps = SNAPSHOTS.get_or_init(|| [snapshot(false), snapshot(true)]);
    let mut engine = Engine::new(snaps[usize::from(lenient)].clone(), link);
    engine.apply_final_unit_redirect(
        SessionId(2),
        FinalUnitRedirect {
            rating_group: Some(20),
            redirect: RedirectInformation {
                enabled: true,
                address_type: RedirectAddressType::Url,
                server_address: "http://portal.example/topup".into(),
            },
            restriction_filters: vec!["permit out 17 from any 123 to assigned"
                .parse()
                .expect("a valid filter")],
            filter_ids: vec!["dns".into()],
        },
    );
    engine
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let link = [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::Loopback,
        LinkType::Ethernet,
    ][usize::from(control & 3)];
    let mut engine = engine(link, control & 4 != 0);
    let mut out = Output::default();
    let mut now = T0;
    let mut frames = 0u64;
    while let [header, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        let port = [Port::Ue, Port::Internet, Port::Any, Port::Any][usize::from(header & 3)];
        let advance = u64::from(header >> 2);
        if advance > 0 {
            now += advance;
            engine.handle_timeout(Timestamp::from_secs(now));
        }
        out.clear();
        let verdict = engine.handle_frame(Timestamp::from_secs(now), port, frame, &mut out);
        frames += 1;
        if verdict != Verdict::Inject {
            assert_eq!(out.frames().count(), 0, "frames injected with {verdict:?}");
        }
        for (_, bytes) in out.frames() {
            assert!(
                matches!(wire::parse(link, bytes), Ok(Parsed::Ip(_))),
                "an injected frame does not parse: {bytes:02x?}"
            );
        }
    }
    let c = engine.counters();
    assert_eq!(c.frames, frames);
    assert_eq!(c.forwarded + c.dropped_total() + c.answered, c.frames);
    let _ = engine.drain_events().count();
    let _ = engine.report();
});
