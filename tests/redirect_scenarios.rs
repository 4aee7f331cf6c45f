//! Scenario tests of the redirect path: frames replayed through the engine with a virtual clock,
//! and every injected frame parsed back and its checksums verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use weir::engine::{DropReason, Engine, Output, Port, Toward, Verdict};
use weir::packet::Event;
use weir::policy::{Config, PolicySnapshot, RedirectAddressType, RedirectInformation, SessionId};
use weir::redirect::{FinalUnitRedirect, PENDING_SLOTS};
use weir::time::Timestamp;
use weir::token::TokenKey;
use weir::wire::{
    self, proto, tcp_flags, Checksum, EthernetHeader, LinkHeader, LinkType, Packet, Parsed,
    TcpSegment,
};

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const T0: u64 = 1_800_000_000;

fn config() -> Config {
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]

[redirect]
http_ports = [80, 8080]
success_url = "http://portal.example/recharge/success"
token_key = "{KEY_HEX}"
token_max_age = 600
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]
dns_resolvers = ["192.0.2.53", "2001:db8:53::1"]
grace = 30

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

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.2"
ipv6 = "2001:db8:45:2::/64"
predefined = ["web"]

[[session]]
subscriber = "imsi-001010000000003"
ipv4 = "10.45.0.3"
ipv6 = "2001:db8:45:3::/64"
predefined = ["web", "recharge-redirect"]
"#
    );
    Config::from_toml_str(&text, "scenario").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

fn engine(link: LinkType) -> Engine {
    Engine::new(Arc::new(PolicySnapshot::build(&config(), 1)), link)
}

const UE2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
const UE1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2));
const SITE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const PORTAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
const UE2_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 3, 0, 0, 0, 0x10));
const SITE_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 7));

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

/// One TCP connection as a client sees it.
#[derive(Clone, Copy)]
struct Client {
    link: LinkHeader,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    isn: u32,
}

impl Client {
    fn new(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Client {
        Client {
            link: LinkHeader::RawIp,
            src,
            dst,
            sport,
            dport,
            isn: 1_000_000,
        }
    }

    fn seg(&self, seq: u32, ack: u32, flags: u8, mss: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        TcpSegment {
            link: self.link,
            src: self.src,
            dst: self.dst,
            src_port: self.sport,
            dst_port: self.dport,
            seq,
            ack,
            flags,
            window: 64240,
            mss,
            payload,
        }
        .write(&mut out)
        .unwrap();
        out
    }

    fn syn(&self) -> Vec<u8> {
        self.seg(self.isn, 0, tcp_flags::SYN, Some(1460), &[])
    }

    /// Data at `offset` bytes into the stream, acknowledging `ack`.
    fn data(&self, offset: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        self.seg(
            self.isn.wrapping_add(1).wrapping_add(offset),
            ack,
            tcp_flags::ACK | tcp_flags::PSH,
            None,
            payload,
        )
    }
}

/// An injected frame, parsed, with its checksums verified.
#[derive(Debug)]
struct Injected {
    toward: Toward,
    packet: Packet,
    bytes: Vec<u8>,
}

impl Injected {
    fn payload(&self) -> &[u8] {
        let s = usize::from(self.packet.payload_offset);
        &self.bytes[s..s + usize::from(self.packet.payload_len)]
    }
}

fn verify_checksums(bytes: &[u8], p: &Packet) {
    let l3 = usize::from(p.l3_offset);
    let l4 = usize::from(p.l4_offset);
    let end = l3 + usize::from(p.ip_len);
    if p.tuple.src.is_ipv4() {
        assert_eq!(
            wire::internet_checksum(&bytes[l3..l4]),
            0,
            "IPv4 header checksum"
        );
    }
    let l4_bytes = &bytes[l4..end];
    let sum = match p.tuple.protocol {
        proto::ICMP => wire::internet_checksum(l4_bytes),
        protocol => Checksum::new()
            .add_pseudo_header(p.tuple.src, p.tuple.dst, protocol, l4_bytes.len() as u32)
            .add(l4_bytes)
            .finish(),
    };
    assert_eq!(sum, 0, "L4 checksum of {:?}", p.tuple);
}

fn injected(out: &Output, link: LinkType) -> Vec<Injected> {
    out.frames()
        .map(|(toward, bytes)| {
            let Ok(Parsed::Ip(packet)) = wire::parse(link, bytes) else {
                panic!("injected frame does not parse: {bytes:02x?}");
            };
            verify_checksums(bytes, &packet);
            Injected {
                toward,
                packet,
                bytes: bytes.to_vec(),
            }
        })
        .collect()
}

struct Run {
    engine: Engine,
    out: Output,
    link: LinkType,
}

impl Run {
    fn new(link: LinkType) -> Run {
        Run {
            engine: engine(link),
            out: Output::default(),
            link,
        }
    }

    fn send(&mut self, now: Timestamp, frame: &[u8]) -> (Verdict, Vec<Injected>) {
        self.out.clear();
        let v = self
            .engine
            .handle_frame(now, Port::Any, frame, &mut self.out);
        (v, injected(&self.out, self.link))
    }
}

/// Runs the handshake; returns the cookie (the SYN-ACK's sequence number).
fn handshake(run: &mut Run, c: &Client, now: Timestamp) -> u32 {
    let (v, frames) = run.send(now, &c.syn());
    assert_eq!(v, Verdict::Inject);
    assert_eq!(frames.len(), 1);
    let synack = &frames[0];
    assert_eq!(synack.toward, Toward::Ue);
    assert_eq!(synack.packet.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!(synack.packet.tcp_ack, c.isn.wrapping_add(1));
    assert_eq!(synack.packet.tuple.src, c.dst);
    assert_eq!(synack.packet.tuple.dst, c.src);
    let cookie = synack.packet.tcp_seq;
    let (v, frames) = run.send(
        now,
        &c.seg(
            c.isn.wrapping_add(1),
            cookie.wrapping_add(1),
            tcp_flags::ACK,
            None,
            &[],
        ),
    );
    assert_eq!(v, Verdict::Inject, "the handshake's ACK is consumed");
    assert!(frames.is_empty());
    cookie
}

fn http_text(frames: &[Injected]) -> String {
    let mut all = Vec::new();
    for f in frames {
        all.extend_from_slice(f.payload());
    }
    String::from_utf8(all).unwrap()
}

fn location(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .expect("a Location header")
}

const GET_SITE: &[u8] =
    b"GET /news/today?lang=en HTTP/1.1\r\nHost: site.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
const LOCATION_SITE: &str = "http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2Fnews%2Ftoday%3Flang%3Den&sub=imsi-001010000000003";

/// The full exchange on one connection: handshake, request, 302 with FIN, closing handshake,
/// and a retransmitted request answered identically.
fn full_exchange(run: &mut Run, c: &Client) {
    let now = at(0);
    let cookie = handshake(run, c, now);
    let (v, frames) = run.send(now, &c.data(0, cookie.wrapping_add(1), GET_SITE));
    assert_eq!(v, Verdict::Inject);
    let text = http_text(&frames);
    assert!(text.starts_with("HTTP/1.1 302 Found\r\n"), "{text}");
    assert_eq!(location(&text), LOCATION_SITE);
    assert!(text.contains("\r\nCache-Control: no-store\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.contains("<a href=\"http://portal.example/recharge?orig="));
    let last = frames.last().unwrap();
    assert_ne!(
        last.packet.tcp_flags & tcp_flags::FIN,
        0,
        "FIN on the last segment"
    );
    let mut seq = cookie.wrapping_add(1);
    for f in &frames {
        assert_eq!(f.packet.tcp_seq, seq);
        assert_eq!(f.packet.tcp_ack, c.isn + 1 + GET_SITE.len() as u32);
        assert!(f.packet.payload_len <= 1460);
        seq = seq.wrapping_add(u32::from(f.packet.payload_len));
    }
    let fin_end = seq.wrapping_add(1);

    // The same request again (our answer was lost): the same 302, byte for byte.
    let (_, again) = run.send(now, &c.data(0, cookie.wrapping_add(1), GET_SITE));
    assert_eq!(http_text(&again), text);

    // The client acknowledges and closes; we acknowledge its FIN.
    let client_fin_seq = c.isn + 1 + GET_SITE.len() as u32;
    let (v, frames) = run.send(
        now,
        &c.seg(client_fin_seq, fin_end, tcp_flags::ACK, None, &[]),
    );
    assert_eq!((v, frames.len()), (Verdict::Inject, 0));
    let (_, frames) = run.send(
        now,
        &c.seg(
            client_fin_seq,
            fin_end,
            tcp_flags::FIN | tcp_flags::ACK,
            None,
            &[],
        ),
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].packet.tcp_flags, tcp_flags::ACK);
    assert_eq!(frames[0].packet.tcp_seq, fin_end);
    assert_eq!(frames[0].packet.tcp_ack, client_fin_seq + 1);
    assert_eq!(
        run.engine.flows().len(),
        0,
        "no flow state for answered connections"
    );
}

#[test]
fn ipv4_request_gets_the_302_with_the_original_url() {
    let mut run = Run::new(LinkType::RawIp);
    full_exchange(&mut run, &Client::new(UE2, SITE, 40000, 80));
    let c = run.engine.redirect().counters();
    assert_eq!(
        (c.syn_answered, c.redirects_sent, c.retransmissions),
        (1, 2, 0)
    );
}

#[test]
fn ipv6_request_gets_the_302() {
    let mut run = Run::new(LinkType::RawIp);
    full_exchange(&mut run, &Client::new(UE2_V6, SITE_V6, 40000, 80));
}

#[test]
fn vlan_tags_and_macs_are_mirrored() {
    for vlans in [([100, 0], 1), ([200, 300], 2)] {
        let mut run = Run::new(LinkType::Ethernet);
        let eth = EthernetHeader {
            dst: [2, 0, 0, 0, 0, 0xaa],
            src: [2, 0, 0, 0, 0, 0xbb],
            vlans: vlans.0,
            vlan_count: vlans.1,
        };
        let mut c = Client::new(UE2, SITE, 40001, 80);
        c.link = LinkHeader::Ethernet(eth);
        let (_, frames) = run.send(at(0), &c.syn());
        let f = &frames[0];
        assert_eq!(&f.bytes[0..6], &eth.src, "to the client's MAC");
        assert_eq!(&f.bytes[6..12], &eth.dst, "from the MAC it sent to");
        assert_eq!(f.packet.vlan_count, vlans.1);
        assert_eq!(f.packet.vlans, vlans.0);
        full_exchange(&mut run, &c);
        let mut c6 = Client::new(UE2_V6, SITE_V6, 40002, 80);
        c6.link = LinkHeader::Ethernet(eth);
        full_exchange(&mut run, &c6);
    }
}

#[test]
fn the_synack_honours_the_client_mss_and_the_302_is_cut_to_it() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, SITE, 40003, 80);
    let (_, frames) = run.send(at(0), &c.seg(c.isn, 0, tcp_flags::SYN, Some(536), &[]));
    let synack = &frames[0];
    let mss_opt = &synack.bytes[usize::from(synack.packet.l4_offset) + 20..][..4];
    assert_eq!(mss_opt, &[2, 4, 0x02, 0x18], "MSS 536 announced back");
    let cookie = synack.packet.tcp_seq;
    let (_, frames) = run.send(at(0), &c.data(0, cookie + 1, GET_SITE));
    assert!(frames.len() >= 2, "a 302 longer than 536 bytes is split");
    assert!(frames.iter().all(|f| f.packet.payload_len <= 536));
    assert_eq!(location(&http_text(&frames)), LOCATION_SITE);
    let fins = frames
        .iter()
        .filter(|f| f.packet.tcp_flags & tcp_flags::FIN != 0)
        .count();
    assert_eq!(fins, 1);
}

#[test]
fn a_request_split_over_segments_is_answered_once_complete() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, SITE, 40004, 8080);
    let cookie = handshake(&mut run, &c, at(0));
    let ack = cookie + 1;
    let (a, rest) = GET_SITE.split_at(10);
    let (b, d) = rest.split_at(30);
    let (_, frames) = run.send(at(0), &c.data(0, ack, a));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].packet.tcp_flags, tcp_flags::ACK);
    assert_eq!(frames[0].packet.tcp_ack, c.isn + 1 + 10);
    assert_eq!(run.engine.redirect().pending_requests(), 1);

    // The third piece before the second: a gap, so the next byte missing is asked for again.
    let (_, frames) = run.send(at(0), &c.data(40, ack, d));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].packet.tcp_ack, c.isn + 1 + 10);

    let (_, frames) = run.send(at(0), &c.data(10, ack, b));
    assert_eq!(frames[0].packet.tcp_ack, c.isn + 1 + 40);
    let (_, frames) = run.send(at(0), &c.data(40, ack, d));
    let text = http_text(&frames);
    assert!(text.starts_with("HTTP/1.1 302"));
    assert!(location(&text).contains("orig=http%3A%2F%2Fsite.example%2Fnews"));

    // The last piece retransmitted: the same 302.
    let (_, again) = run.send(at(0), &c.data(40, ack, d));
    assert_eq!(http_text(&again), text);
    assert_eq!(run.engine.redirect().counters().retransmissions, 1);
}

#[test]
fn an_endless_request_head_is_answered_at_the_bound() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, SITE, 40005, 80);
    let cookie = handshake(&mut run, &c, at(0));
    let mut offset = 0;
    let head = b"GET /long HTTP/1.1\r\nHost: site.example\r\n";
    let (_, frames) = run.send(at(0), &c.data(offset, cookie + 1, head));
    assert_eq!(frames.len(), 1);
    offset += head.len() as u32;
    let filler = [b"X-Filler: ".as_slice(), &[b'a'; 1000], b"\r\n"].concat();
    let mut answered = false;
    for _ in 0..10 {
        let (_, frames) = run.send(at(0), &c.data(offset, cookie + 1, &filler));
        offset += filler.len() as u32;
        if http_text(&frames).starts_with("HTTP/1.1 302") {
            answered = true;
            assert!(location(&http_text(&frames)).contains("orig=http%3A%2F%2Fsite.example%2Flong"));
            break;
        }
    }
    assert!(answered, "answered once the bound was reached");
}

#[test]
fn a_syn_flood_leaves_no_state_behind() {
    let mut run = Run::new(LinkType::RawIp);
    for i in 0..20_000u32 {
        let c = Client {
            isn: i.wrapping_mul(2_654_435_761),
            ..Client::new(
                UE2,
                IpAddr::V4(Ipv4Addr::from(0xc633_6400 + (i % 250))),
                (i % 60_000) as u16 + 1024,
                80,
            )
        };
        let (v, frames) = run.send(at(u64::from(i / 1000)), &c.syn());
        assert_eq!((v, frames.len()), (Verdict::Inject, 1));
    }
    assert_eq!(run.engine.flows().len(), 0);
    assert_eq!(run.engine.redirect().pending_requests(), 0);
    assert_eq!(run.engine.redirect().watched_flows(), 0);
    assert_eq!(run.engine.redirect().counters().syn_answered, 20_000);
}

#[test]
fn split_requests_beyond_the_table_are_answered_not_held() {
    let mut run = Run::new(LinkType::RawIp);
    for i in 0..(PENDING_SLOTS as u16 + 10) {
        let c = Client::new(UE2, SITE, 20_000 + i, 80);
        let cookie = handshake(&mut run, &c, at(0));
        let (_, frames) = run.send(at(0), &c.data(0, cookie + 1, b"GET /part"));
        assert_eq!(frames.len(), 1);
    }
    assert_eq!(run.engine.redirect().pending_requests(), PENDING_SLOTS);
    assert_eq!(run.engine.redirect().counters().pending_full, 10);
}

#[test]
fn acks_without_our_cookie_get_a_reset() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, SITE, 40006, 80);
    let (_, frames) = run.send(at(0), &c.data(0, 12345, GET_SITE));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].packet.tcp_flags, tcp_flags::RST);
    assert_eq!(frames[0].packet.tcp_seq, 12345);
    assert_eq!(run.engine.redirect().counters().bad_cookies, 1);
    // A cookie from two key rotations ago is no longer ours either.
    let (_, frames) = run.send(at(0), &c.syn());
    let cookie = frames[0].packet.tcp_seq;
    let (_, frames) = run.send(at(200), &c.data(0, cookie + 1, GET_SITE));
    assert_eq!(frames[0].packet.tcp_flags, tcp_flags::RST);
}

#[test]
fn https_gets_a_reset_quic_an_unreachable_and_the_rest_is_dropped() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, SITE, 40007, 443);
    let (v, frames) = run.send(at(0), &c.syn());
    assert_eq!(v, Verdict::Inject);
    assert_eq!(frames[0].packet.tcp_flags, tcp_flags::RST | tcp_flags::ACK);
    assert_eq!(frames[0].packet.tcp_ack, c.isn + 1);

    let mut udp = Vec::new();
    let quic = build_udp(UE2, SITE, 50000, 443, &[0xc0; 1200], &mut udp);
    let (v, frames) = run.send(at(0), quic);
    assert_eq!(v, Verdict::Inject);
    assert_eq!(frames[0].packet.tuple.protocol, proto::ICMP);
    assert_eq!(frames[0].payload().len(), 0, "ICMP carries no port payload");
    assert_eq!(frames[0].bytes[20], 3, "destination unreachable");
    assert_eq!(frames[0].bytes[21], 3, "port unreachable");

    let mut udp6 = Vec::new();
    let quic6 = build_udp(UE2_V6, SITE_V6, 50000, 443, &[0xc0; 1200], &mut udp6);
    let (_, frames) = run.send(at(0), quic6);
    assert_eq!(frames[0].packet.tuple.protocol, proto::ICMPV6);

    let mut other = Vec::new();
    let (v, _) = run.send(at(0), build_udp(UE2, SITE, 50000, 5000, b"x", &mut other));
    assert_eq!(v, Verdict::Drop(DropReason::WalledGarden));
    let mut dns = Vec::new();
    let (v, _) = run.send(at(0), build_udp(UE2, SITE, 50000, 53, b"x", &mut dns));
    assert_eq!(
        v,
        Verdict::Drop(DropReason::WalledGarden),
        "DNS to other resolvers"
    );
    let mut down = Vec::new();
    let (v, _) = run.send(at(0), build_udp(SITE, UE2, 5000, 50001, b"x", &mut down));
    assert_eq!(v, Verdict::Drop(DropReason::WalledGarden));
    let c = run.engine.redirect().counters();
    assert_eq!(
        (
            c.resets_sent,
            c.quic_unreachable,
            c.blocked_other,
            c.blocked_dns,
            c.blocked_downlink
        ),
        (1, 2, 1, 1, 1)
    );
    assert_eq!(
        run.engine.counters().dropped[DropReason::WalledGarden.index()],
        3
    );
}

/// A UDP datagram, raw IP, with a correct checksum.
fn build_udp<'a>(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    out: &'a mut Vec<u8>,
) -> &'a [u8] {
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
    out.extend_from_slice(payload);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, 17, udp_len as u32)
        .add(&out[l4..])
        .finish();
    out[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// An ICMPv6 message, raw IP, with a correct checksum.
fn build_icmpv6(src: IpAddr, dst: IpAddr, hop_limit: u8, icmp_type: u8, body: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("IPv6 only")
    };
    let len = 4 + body.len();
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&[proto::ICMPV6, hop_limit]);
    out.extend_from_slice(&s.octets());
    out.extend_from_slice(&d.octets());
    out.extend_from_slice(&[icmp_type, 0, 0, 0]);
    out.extend_from_slice(body);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, proto::ICMPV6, len as u32)
        .add(&out[40..])
        .finish();
    out[42..44].copy_from_slice(&sum.to_be_bytes());
    out
}

#[test]
fn neighbour_discovery_passes_the_walled_garden_and_opens_nothing_else() {
    const NEIGHBOR_SOLICITATION: u8 = 135;
    const NEIGHBOR_ADVERTISEMENT: u8 = 136;
    const ECHO_REQUEST: u8 = 128;
    let mut run = Run::new(LinkType::RawIp);
    let mut target = [0u8; 20];
    if let IpAddr::V6(a) = SITE_V6 {
        target[4..].copy_from_slice(&a.octets());
    }
    let solicited: IpAddr = "ff02::1:ff00:7".parse().unwrap();
    let ns = build_icmpv6(UE2_V6, solicited, 255, NEIGHBOR_SOLICITATION, &target);
    let (v, _) = run.send(at(0), &ns);
    assert_eq!(v, Verdict::Forward, "the subscriber's solicitation");
    // The advertisement answering the network's solicitation, toward the neighbour itself.
    let na = build_icmpv6(UE2_V6, SITE_V6, 255, NEIGHBOR_ADVERTISEMENT, &target);
    assert_eq!(run.send(at(0), &na).0, Verdict::Forward);
    let na_down = build_icmpv6(SITE_V6, UE2_V6, 255, NEIGHBOR_ADVERTISEMENT, &target);
    assert_eq!(run.send(at(0), &na_down).0, Verdict::Forward);
    // Between the same two addresses, anything else is still the walled garden's to drop: the
    // advertisement above left no flow behind.
    let echo = build_icmpv6(UE2_V6, SITE_V6, 64, ECHO_REQUEST, &[0; 8]);
    assert_eq!(
        run.send(at(0), &echo).0,
        Verdict::Drop(DropReason::WalledGarden)
    );
    // A "solicitation" that crossed a router is not neighbour discovery.
    let routed = build_icmpv6(UE2_V6, SITE_V6, 254, NEIGHBOR_SOLICITATION, &target);
    assert_eq!(
        run.send(at(0), &routed).0,
        Verdict::Drop(DropReason::WalledGarden)
    );
    assert_eq!(run.engine.counters().neighbor_discovery, 3);
    assert_eq!(run.engine.redirect().counters().blocked_other, 2);
    assert!(
        run.engine.report().rating_groups.is_empty(),
        "neighbour discovery is not metered, like ARP"
    );
}

#[test]
fn captive_portal_probes_of_every_os_get_the_302() {
    let probes: [(&str, &[u8]); 5] = [
        ("android", b"GET /generate_204 HTTP/1.1\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP1A.240405.002)\r\nHost: connectivitycheck.gstatic.com\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip\r\n\r\n"),
        ("apple", b"GET /hotspot-detect.html HTTP/1.0\r\nHost: captive.apple.com\r\nConnection: close\r\nUser-Agent: CaptiveNetworkSupport-481.100.2 wispr\r\n\r\n"),
        ("windows", b"GET /connecttest.txt HTTP/1.1\r\nConnection: Close\r\nUser-Agent: Microsoft NCSI\r\nHost: www.msftconnecttest.com\r\n\r\n"),
        ("firefox", b"GET /canonical.html HTTP/1.1\r\nHost: detectportal.firefox.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nConnection: keep-alive\r\n\r\n"),
        ("firefox-success", b"GET /success.txt?ipv4 HTTP/1.1\r\nHost: detectportal.firefox.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nConnection: keep-alive\r\n\r\n"),
    ];
    let mut run = Run::new(LinkType::RawIp);
    for (i, (os, probe)) in probes.iter().enumerate() {
        let c = Client::new(UE2, SITE, 41000 + i as u16, 80);
        let cookie = handshake(&mut run, &c, at(0));
        let (_, frames) = run.send(at(0), &c.data(0, cookie + 1, probe));
        let text = http_text(&frames);
        assert!(text.starts_with("HTTP/1.1 302 Found"), "{os}: {text}");
        let host = std::str::from_utf8(probe)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Host: "))
            .unwrap();
        assert!(
            location(&text).contains(&format!("orig=http%3A%2F%2F{host}%2F")),
            "{os}: {}",
            location(&text)
        );
    }
}

#[test]
fn subscribers_in_credit_are_untouched() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE1, SITE, 40008, 80);
    let (v, frames) = run.send(at(0), &c.syn());
    assert_eq!((v, frames.len()), (Verdict::Forward, 0));
    let (v, _) = run.send(at(0), &c.data(0, 1, GET_SITE));
    assert_eq!(v, Verdict::Forward);
}

#[test]
fn the_walled_garden_lets_the_portal_and_the_resolvers_through() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, PORTAL, 40009, 80);
    assert_eq!(run.send(at(0), &c.syn()).0, Verdict::Forward);
    let mut q = Vec::new();
    let resolver = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
    assert_eq!(
        run.send(at(0), build_udp(UE2, resolver, 5353, 53, b"q", &mut q))
            .0,
        Verdict::Forward
    );

    // A DNS answer for the portal's name teaches the garden a new portal address.
    let learned = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 80));
    let c2 = Client::new(UE2, learned, 40010, 80);
    let (v, _) = run.send(at(0), &c2.syn());
    assert_eq!(
        v,
        Verdict::Inject,
        "not yet in the garden: answered by the responder"
    );
    let answer = dns_answer("portal.example", learned, 300);
    let mut a = Vec::new();
    assert_eq!(
        run.send(at(1), build_udp(resolver, UE2, 53, 5353, &answer, &mut a))
            .0,
        Verdict::Forward
    );
    assert_eq!(run.engine.redirect().counters().dns_learned, 1);
    let c3 = Client::new(UE2, learned, 40011, 80);
    assert_eq!(run.send(at(2), &c3.syn()).0, Verdict::Forward);
    // After the TTL (at least a minute) it is gone again.
    let c4 = Client::new(UE2, learned, 40012, 80);
    assert_eq!(run.send(at(400), &c4.syn()).0, Verdict::Inject);
}

fn dns_answer(name: &str, addr: IpAddr, ttl: u32) -> Vec<u8> {
    let mut m = vec![0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    let IpAddr::V4(a) = addr else { panic!() };
    m.extend_from_slice(&[0, 4]);
    m.extend_from_slice(&a.octets());
    m
}

fn key() -> TokenKey {
    TokenKey::new(&weir::token::parse_hex_key(KEY_HEX).unwrap()).unwrap()
}

fn success_request(query: &str) -> Vec<u8> {
    format!("GET /recharge/success?{query} HTTP/1.1\r\nHost: portal.example\r\nAccept: text/html\r\n\r\n").into_bytes()
}

/// The UE asks the portal for `request` on a fresh connection (forwarded through the garden).
fn to_portal(run: &mut Run, port: u16, now: Timestamp, request: &[u8]) -> Verdict {
    let c = Client::new(UE2, PORTAL, port, 80);
    assert_eq!(run.send(now, &c.syn()).0, Verdict::Forward);
    run.send(now, &c.data(0, 1, request)).0
}

/// Whether the UE's web request to the original site is forwarded (true) or answered (false).
fn browses_freely(run: &mut Run, port: u16, now: Timestamp) -> bool {
    let c = Client::new(UE2, SITE, port, 80);
    match run.send(now, &c.syn()).0 {
        Verdict::Forward => true,
        Verdict::Inject => false,
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_verified_success_request_lifts_the_redirect_at_once() {
    let mut run = Run::new(LinkType::RawIp);
    assert!(!browses_freely(&mut run, 30000, at(0)));
    let q = key().sign("imsi-001010000000003", UE2, T0 + 300, "nonce-1");
    assert_eq!(
        to_portal(&mut run, 30001, at(5), &success_request(&q)),
        Verdict::Forward
    );
    let events: Vec<Event> = run.engine.drain_events().collect();
    assert_eq!(
        events,
        [Event::RechargeSuccess {
            session: SessionId(1),
            subscriber: weir::policy::SubscriberId::parse("imsi-001010000000003").unwrap(),
            ue: UE2,
            at: at(5),
            token: weir::packet::SuccessToken {
                subscriber: "imsi-001010000000003".into(),
                ue: Some(UE2),
                expires: T0 + 300,
                nonce: "nonce-1".into(),
                signature: q.rsplit_once("sig=").unwrap().1.to_string(),
                original_url: None,
            },
        }]
    );
    assert!(browses_freely(&mut run, 30002, at(5)));
    // The portal was metered under the redirect rule's rating group; after the lift the web
    // goes under the normal rule's, and the redirect rule classifies nothing.
    let report = run.engine.report();
    let rgs: Vec<u32> = report
        .rating_groups
        .iter()
        .filter(|u| u.session_id == 1)
        .map(|u| u.rating_group)
        .collect();
    assert_eq!(rgs, [10, 99]);
    assert!(report.rules.iter().all(|r| r.rule != "recharge-redirect"));
    // The same token seen again (the success page reloaded) is a harmless duplicate.
    assert_eq!(
        to_portal(&mut run, 30003, at(6), &success_request(&q)),
        Verdict::Forward
    );
    let c = run.engine.redirect().counters();
    assert_eq!(
        (c.successes, c.lifts, c.tokens_duplicate, c.tokens_replayed),
        (1, 1, 1, 0)
    );
    assert!(run.engine.drain_events().next().is_none());
}

#[test]
fn a_success_location_in_the_portal_response_lifts_the_redirect() {
    let mut run = Run::new(LinkType::RawIp);
    let c = Client::new(UE2, PORTAL, 30010, 80);
    assert_eq!(run.send(at(0), &c.syn()).0, Verdict::Forward);
    let server = Client {
        isn: 77,
        ..Client::new(PORTAL, UE2, 80, 30010)
    };
    assert_eq!(
        run.send(
            at(0),
            &server.seg(
                77,
                c.isn + 1,
                tcp_flags::SYN | tcp_flags::ACK,
                Some(1460),
                &[]
            )
        )
        .0,
        Verdict::Forward
    );
    assert_eq!(run.send(at(0), &c.data(0, 78, b"POST /recharge/pay HTTP/1.1\r\nHost: portal.example\r\nContent-Length: 9\r\n\r\namount=10")).0, Verdict::Forward);
    let q = key().sign("imsi-001010000000003", UE2, T0 + 300, "nonce-2");
    let resp = format!("HTTP/1.1 302 Found\r\nLocation: http://portal.example/recharge/success?{q}\r\nContent-Length: 0\r\n\r\n");
    // The response head split over two segments.
    let (a, b) = resp.as_bytes().split_at(40);
    assert_eq!(
        run.send(at(1), &server.data(0, c.isn + 1, a)).0,
        Verdict::Forward
    );
    assert!(!browses_freely(&mut run, 30011, at(1)));
    assert_eq!(
        run.send(at(1), &server.data(40, c.isn + 1, b)).0,
        Verdict::Forward
    );
    assert_eq!(run.engine.drain_events().count(), 1);
    assert!(browses_freely(&mut run, 30012, at(1)));
}

#[test]
fn forged_expired_other_subscriber_and_malformed_tokens_never_lift() {
    let mut run = Run::new(LinkType::RawIp);
    let k = key();
    let other_key = TokenKey::new(b"not the portal's key at all").unwrap();
    let cases = [
        other_key.sign("imsi-001010000000003", UE2, T0 + 300, "f1"),
        k.sign("imsi-001010000000003", UE2, T0 + 300, "f2")
            .replace("nonce=f2", "nonce=f3"),
        k.sign("imsi-001010000000003", UE2, T0 - 1, "e1"),
        k.sign("imsi-001010000000003", UE2, T0 + 100_000, "e2"),
        k.sign("imsi-001010000000002", UE1, T0 + 300, "o1"),
        k.sign("imsi-001010000000003", UE1, T0 + 300, "o2"),
        "sub=imsi-001010000000003&ue=10.45.0.3".to_string(),
    ];
    for (i, q) in cases.iter().enumerate() {
        assert_eq!(
            to_portal(&mut run, 31000 + i as u16, at(0), &success_request(q)),
            Verdict::Forward
        );
        assert!(
            !browses_freely(&mut run, 32000 + i as u16, at(0)),
            "case {i} lifted the redirect"
        );
    }
    let c = run.engine.redirect().counters();
    assert_eq!(
        (
            c.tokens_forged,
            c.tokens_expired,
            c.tokens_other_subscriber,
            c.tokens_malformed,
            c.lifts
        ),
        (2, 2, 2, 1, 0)
    );
    assert_eq!(run.engine.drain_events().count(), 0);
}

#[test]
fn a_replayed_token_does_not_lift_a_new_redirect() {
    let mut run = Run::new(LinkType::RawIp);
    let q = key().sign("imsi-001010000000003", UE2, T0 + 300, "once");
    to_portal(&mut run, 33000, at(0), &success_request(&q));
    assert!(browses_freely(&mut run, 33001, at(0)));
    // Later the subscriber runs out again: online charging applies Final-Unit REDIRECT.
    run.engine
        .apply_final_unit_redirect(SessionId(1), final_unit(None));
    assert!(!browses_freely(&mut run, 33002, at(10)));
    to_portal(&mut run, 33003, at(10), &success_request(&q));
    assert!(
        !browses_freely(&mut run, 33004, at(10)),
        "the replay lifted the redirect"
    );
    assert_eq!(run.engine.redirect().counters().tokens_replayed, 1);
    // A fresh token does.
    let fresh = key().sign("imsi-001010000000003", UE2, T0 + 300, "twice");
    to_portal(&mut run, 33005, at(11), &success_request(&fresh));
    assert!(browses_freely(&mut run, 33006, at(11)));
}

fn final_unit(rating_group: Option<u32>) -> FinalUnitRedirect {
    FinalUnitRedirect {
        rating_group,
        redirect: RedirectInformation::new(
            true,
            RedirectAddressType::Url,
            "http://portal.example/topup",
        )
        .unwrap(),
        restriction_filters: vec!["permit out 17 from any 123 to assigned".parse().unwrap()],
        filter_ids: Vec::new(),
    }
}

#[test]
fn final_unit_redirect_is_idempotent_and_lifting_it_restores_the_rules_exactly() {
    let mut run = Run::new(LinkType::RawIp);
    let before: Vec<Verdict> = (0..3)
        .map(|i| {
            run.send(at(0), &Client::new(UE1, SITE, 34000 + i, 80).syn())
                .0
        })
        .collect();
    assert!(before.iter().all(|v| *v == Verdict::Forward));
    run.engine
        .apply_final_unit_redirect(SessionId(0), final_unit(None));
    run.engine
        .apply_final_unit_redirect(SessionId(0), final_unit(None));
    let (_, frames) = run.send(at(1), &Client::new(UE1, SITE, 34000, 80).syn());
    let text_loc = {
        let c = Client::new(UE1, SITE, 34000, 80);
        let cookie = frames[0].packet.tcp_seq;
        let (_, frames) = run.send(at(1), &c.data(0, cookie + 1, GET_SITE));
        location(&http_text(&frames)).to_string()
    };
    assert!(
        text_loc.starts_with("http://portal.example/topup?orig="),
        "{text_loc}"
    );
    // Restriction filters stay allowed.
    let mut ntp = Vec::new();
    assert_eq!(
        run.send(at(1), build_udp(UE1, SITE, 5000, 123, b"t", &mut ntp))
            .0,
        Verdict::Forward
    );
    run.engine.remove_final_unit_redirect(SessionId(0), None);
    let after: Vec<Verdict> = (0..3)
        .map(|i| {
            run.send(at(2), &Client::new(UE1, SITE, 34000 + i, 80).syn())
                .0
        })
        .collect();
    assert_eq!(before, after);
}

#[test]
fn final_unit_redirect_of_one_rating_group_leaves_the_others_alone() {
    let mut config = config();
    config.predefined[0].rating_group = Some(10);
    // A second rule for port 8080 under another rating group.
    let mut other = config.predefined[0].clone();
    other.name = "alt".into();
    other.precedence = 50;
    other.rating_group = Some(20);
    other.filters = vec![weir::policy::SdfFilter {
        flow: "permit out 6 from any 8080 to assigned".parse().unwrap(),
        direction: weir::policy::FlowDirection::Bidirectional,
    }];
    config.predefined.push(other);
    config.sessions[0].predefined.push("alt".into());
    let mut run = Run {
        engine: Engine::new(Arc::new(PolicySnapshot::build(&config, 1)), LinkType::RawIp),
        out: Output::default(),
        link: LinkType::RawIp,
    };
    run.engine
        .apply_final_unit_redirect(SessionId(0), final_unit(Some(20)));
    assert_eq!(
        run.send(at(0), &Client::new(UE1, SITE, 35000, 80).syn()).0,
        Verdict::Forward
    );
    assert_eq!(
        run.send(at(0), &Client::new(UE1, SITE, 35001, 8080).syn())
            .0,
        Verdict::Inject
    );
    run.engine
        .remove_final_unit_redirect(SessionId(0), Some(20));
    assert_eq!(
        run.send(at(0), &Client::new(UE1, SITE, 35002, 8080).syn())
            .0,
        Verdict::Forward
    );
}

#[test]
fn injected_frames_pass_tshark_without_checksum_errors() {
    let Ok(status) = std::process::Command::new("tshark")
        .arg("--version")
        .output()
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tshark is missing (scripts/install-deps.sh installs it)");
        }
        eprintln!("skipped: tshark is not installed");
        return;
    };
    assert!(status.status.success());
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for (i, (vlans, count, src, dst)) in [
        ([0, 0], 0, UE2, SITE),
        ([100, 0], 1, UE2_V6, SITE_V6),
        ([200, 300], 2, UE2, SITE),
    ]
    .into_iter()
    .enumerate()
    {
        let port = 42000 + 2 * i as u16;
        let mut run = Run::new(LinkType::Ethernet);
        let mut c = Client::new(src, dst, port, 80);
        c.link = LinkHeader::Ethernet(EthernetHeader {
            dst: [2, 0, 0, 0, 0, 1],
            src: [2, 0, 0, 0, 0, 2],
            vlans,
            vlan_count: count,
        });
        let (_, f) = run.send(at(0), &c.syn());
        let cookie = f[0].packet.tcp_seq;
        frames.extend(f.into_iter().map(|i| i.bytes));
        let (_, f) = run.send(at(0), &c.data(0, cookie + 1, GET_SITE));
        frames.extend(f.into_iter().map(|i| i.bytes));
        let mut q = Client::new(src, dst, port + 1, 443);
        q.link = c.link;
        let (_, f) = run.send(at(0), &q.syn());
        frames.extend(f.into_iter().map(|i| i.bytes));
    }
    let dir = std::env::temp_dir().join(format!("weir-redirect-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("injected.pcap");
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for f in &frames {
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    std::fs::write(&path, pcap).unwrap();
    let tshark = |filter: &str| {
        let out = std::process::Command::new("timeout")
            .args(["60", "tshark", "-n", "-r"])
            .arg(&path)
            .args([
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "_ws.expert.message",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let problems = tshark("_ws.expert.severity >= error");
    let good = tshark("tcp.checksum.status == 1 && (ip.checksum.status == 1 || ipv6)");
    let redirects = tshark("http.response.code == 302");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        problems.trim().is_empty(),
        "tshark found problems:\n{problems}"
    );
    assert_eq!(
        good.lines().count(),
        frames.len(),
        "every frame verified good:\n{good}"
    );
    assert_eq!(redirects.lines().count(), 3, "{redirects}");
}
