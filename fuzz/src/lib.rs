//! What the fuzz targets share with the seed writer: the frame target's configuration and engine,
//! and its input format, so seeds written from captures mean to the target what they say.
//!
//! Input of the frame target: one control byte, then records of
//! `[header][length: u16 big-endian][frame]`.
//! - control: bits 0-1 the link type (Ethernet, raw IP, loopback, Ethernet), bit 2 the
//!   configuration (0: malformed frames and unknown subscribers dropped; 1: passed/forwarded).
//! - header: bits 0-1 the port the frame arrived on (UE, internet, any, any), bits 2-7 seconds
//!   the clock moves before it (flows expire when it moves).
//!
//! A length past the end takes what is left.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, PolicySnapshot, RedirectAddressType, RedirectInformation, SessionId};
use weir::redirect::FinalUnitRedirect;
use weir::time::Timestamp;
use weir::wire::{self, finish_partial_checksum, LinkType, Parsed, Partial};

/// The metered subscriber (rating groups 1, 10, 20 and 99, a monitoring key, a closed gate).
pub const METERED: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
pub const METERED_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 2, 0, 0, 0, 2));
/// The subscriber under redirect: the 302 responder, the walled garden and the success watch.
pub const REDIRECTED: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
pub const REDIRECTED_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 3, 0, 0, 0, 3));
pub const REDIRECTED_ID: &str = "imsi-001010000000003";
/// The subscriber with a Final-Unit redirect on rating group 20 (port 8080) only.
pub const FINAL_UNIT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 4));
pub const PORTAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
pub const PORTAL_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x80, 0, 0, 0, 0, 0x80));
pub const RESOLVER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
pub const RESOLVER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 1));
/// The token key of the configuration (`token_key`): bytes 0, 1, ..., 31.
pub const TOKEN_KEY: [u8; 32] = {
    let mut key = [0; 32];
    let mut i = 0;
    while i < 32 {
        key[i] = i as u8;
        i += 1;
    }
    key
};

/// The clock at the first frame, in seconds since the Unix epoch.
pub const T0: u64 = 1_800_000_000;

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

/// The configuration text: strict (malformed frames and unknown subscribers dropped) or lenient.
pub fn config_text(lenient: bool) -> String {
    let (malformed, unknown) = if lenient {
        ("pass", "forward")
    } else {
        ("drop", "drop")
    };
    CONFIG
        .replace("MALFORMED", malformed)
        .replace("UNKNOWN", unknown)
}

fn snapshot(lenient: bool) -> Arc<PolicySnapshot> {
    let config = Config::from_toml_str(&config_text(lenient), "fuzz")
        .unwrap_or_else(|e| panic!("the fuzz configuration is invalid: {:#?}", e.0));
    Arc::new(PolicySnapshot::build(&config, 1))
}

/// A fresh engine for one input (the snapshots are compiled once).
pub fn engine(link: LinkType, lenient: bool) -> Engine {
    static SNAPSHOTS: OnceLock<[Arc<PolicySnapshot>; 2]> = OnceLock::new();
    let snaps = SNAPSHOTS.get_or_init(|| [snapshot(false), snapshot(true)]);
    let mut engine = Engine::new(snaps[usize::from(lenient)].clone(), link);
    engine.apply_final_unit_redirect(
        SessionId(2),
        FinalUnitRedirect {
            rating_group: Some(20),
            redirect: RedirectInformation::new(
                true,
                RedirectAddressType::Url,
                "http://portal.example/topup",
            )
            .expect("a valid portal URL"),
            restriction_filters: vec!["permit out 17 from any 123 to assigned"
                .parse()
                .expect("a valid filter")],
            filter_ids: vec!["dns".into()],
        },
    );
    engine
}

/// The control byte for a link type and configuration.
pub fn control(link: LinkType, lenient: bool) -> u8 {
    let link = match link {
        LinkType::Ethernet => 0,
        LinkType::RawIp => 1,
        LinkType::Loopback => 2,
    };
    link | u8::from(lenient) << 2
}

fn link_of(control: u8) -> LinkType {
    [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::Loopback,
        LinkType::Ethernet,
    ][usize::from(control & 3)]
}

/// The header byte of a record: the port and the seconds (0-63) the clock moves first.
pub fn header(port: Port, advance: u8) -> u8 {
    let port = match port {
        Port::Ue => 0,
        Port::Internet => 1,
        Port::Any => 2,
    };
    port | advance.min(63) << 2
}

/// Appends one record to an input.
pub fn push_record(input: &mut Vec<u8>, header: u8, frame: &[u8]) {
    let len = frame.len().min(usize::from(u16::MAX));
    input.push(header);
    input.extend_from_slice(&(len as u16).to_be_bytes());
    input.extend_from_slice(&frame[..len]);
}

/// Runs one input through a fresh engine; panics where the engine breaks a promise: each frame
/// gets exactly one verdict, only `Inject` carries frames, every injected frame parses back.
/// Returns the engine, for a caller that looks at what it did.
pub fn run_frames(data: &[u8]) -> Option<Engine> {
    let (&control, mut rest) = data.split_first()?;
    let link = link_of(control);
    let mut engine = engine(link, control & 4 != 0);
    let mut out = Output::default();
    let mut now = T0;
    let mut frames = 0u64;
    // Link 3 is Ethernet as a raw-socket leg hands it over: checksums left to offload are
    // finished first (told, or read from the field).
    let finish = (control & 3 == 3).then_some(if control & 8 != 0 {
        Partial::Known
    } else {
        Partial::IfBegun
    });
    let mut finished = Vec::new();
    while let [header, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (mut frame, next) = tail.split_at(len);
        rest = next;
        if let Some(partial) = finish {
            finished.clear();
            finished.extend_from_slice(frame);
            if finish_partial_checksum(&mut finished, partial) {
                let changed = frame.iter().zip(&finished).filter(|(a, b)| a != b).count();
                assert!(changed <= 2, "finishing changed {changed} bytes");
                // Finishing is exact: once more changes nothing.
                let again = finished.clone();
                assert!(finish_partial_checksum(&mut finished, Partial::Known));
                assert_eq!(finished, again);
            }
            frame = &finished;
        }
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
    Some(engine)
}
