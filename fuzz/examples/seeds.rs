//! Writes the seed corpora of the fuzz targets from real data and test vectors:
//!
//! - `frame`: every frame of the captures in ../shared/data/pcap and examples/sample.pcap as it
//!   is; each TCP or UDP flow of them again with its client moved to a subscriber's address (the
//!   metered one, the redirected one, the redirected one talking to the portal or the resolver)
//!   and the server port to 80, so real segments reach the 302 responder, the garden and the
//!   watch; and scripted exchanges that only a gateway's own answers make possible (the ACK that
//!   carries the SYN cookie, a success URL with a valid token).
//! - `http`: every TCP payload of the captures.
//! - `flow_description`: every Flow-Description literal in src/, tests/ and examples/.
//! - `config`: examples/*.toml, the frame target's configuration, and every TOML document
//!   written as a raw string in the tests.
//! - `token`: tokens signed as the tests sign them, and hex keys.
//!
//! Usage: `seeds OUT_DIR` (scripts/fuzz.sh runs it); files are named by a hash of their bytes.
//! Addresses are rewritten without fixing checksums: the engine never checks them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use weir::engine::{Output, Port};
use weir::io::pcap::CaptureReader;
use weir::time::Timestamp;
use weir::token::TokenKey;
use weir::wire::{self, proto, tcp_flags, LinkHeader, LinkType, Parsed, TcpSegment};
use weir_fuzz::{
    control, header, push_record, FINAL_UNIT, METERED, METERED_V6, PORTAL, PORTAL_V6, REDIRECTED,
    REDIRECTED_ID, REDIRECTED_V6, RESOLVER, RESOLVER_V6, T0, TOKEN_KEY,
};

/// Frames of one flow put into one input, at most: enough for a handshake, a request, an
/// answer and the close.
const FLOW_FRAMES: usize = 24;

type Error = Box<dyn std::error::Error>;

struct Corpus {
    dir: PathBuf,
    written: BTreeSet<u64>,
}

impl Corpus {
    fn new(out: &Path, target: &str) -> Result<Corpus, Error> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        Ok(Corpus {
            dir,
            written: BTreeSet::new(),
        })
    }

    fn add(&mut self, bytes: &[u8]) -> Result<(), Error> {
        // FNV-1a: stable across runs and platforms, so a re-run rewrites the same files.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        if self.written.insert(hash) {
            std::fs::write(self.dir.join(format!("{hash:016x}")), bytes)?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Error> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: seeds OUT_DIR")?);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut captures = vec![root.join("examples/sample.pcap")];
    let data = root.join("../shared/data/pcap");
    if data.is_dir() {
        collect(&data, &mut captures, &|p| {
            p.extension().is_some_and(|e| e == "pcap" || e == "pcapng")
        })?;
    } else if std::env::var_os("CI").is_some() {
        return Err(format!("test data missing: {}", data.display()).into());
    } else {
        eprintln!("seeds: no ../shared/data/pcap; only examples/sample.pcap");
    }

    let mut frame = Corpus::new(&out, "frame")?;
    let mut http = Corpus::new(&out, "http")?;
    for path in &captures {
        let (link, frames) = read_capture(path)?;
        capture_seeds(link, &frames, &mut frame, &mut http)?;
    }
    let scripted = scripted_seeds(&mut frame)?;
    check_scripted(&scripted)?;

    let mut sources = Vec::new();
    for dir in ["src", "tests", "examples"] {
        collect(&root.join(dir), &mut sources, &|p| {
            p.extension().is_some_and(|e| e == "rs" || e == "toml")
        })?;
    }
    let mut flows = Corpus::new(&out, "flow_description")?;
    let mut configs = Corpus::new(&out, "config")?;
    for path in &sources {
        let text = std::fs::read_to_string(path)?;
        for literal in quoted(&text, "\"permit ").chain(quoted(&text, "\"deny ")) {
            flows.add(literal.as_bytes())?;
        }
        if path.extension().is_some_and(|e| e == "toml") {
            configs.add(text.as_bytes())?;
        }
        for raw in raw_strings(&text).filter(|s| s.contains('[') && s.contains(" = ")) {
            configs.add(raw.as_bytes())?;
        }
    }
    for lenient in [false, true] {
        configs.add(weir_fuzz::config_text(lenient).as_bytes())?;
    }

    let mut tokens = Corpus::new(&out, "token")?;
    token_seeds(&mut tokens)?;
    for c in [&frame, &http, &flows, &configs, &tokens] {
        println!("{}: {} seeds", c.dir.display(), c.written.len());
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, keep: &dyn Fn(&Path) -> bool) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out, keep)?;
        } else if keep(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn read_capture(path: &Path) -> Result<(LinkType, Vec<Vec<u8>>), Error> {
    let mut reader = CaptureReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frames = Vec::new();
    let mut link = LinkType::Ethernet;
    while let Some(r) = reader.next_record()? {
        link = r.link;
        frames.push(r.data);
    }
    Ok((link, frames))
}

/// Where the client of a flow goes: which subscriber, and whether the server becomes the portal
/// (and, for DNS, the resolver).
#[derive(Clone, Copy)]
enum Client {
    Metered,
    Redirected,
    RedirectedToPortal,
}

fn capture_seeds(
    link: LinkType,
    frames: &[Vec<u8>],
    frame: &mut Corpus,
    http: &mut Corpus,
) -> Result<(), Error> {
    let any = header(Port::Any, 0);
    let mut flows: BTreeMap<(IpAddr, u16, IpAddr, u16, u8), Vec<usize>> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        let mut input = vec![control(link, false)];
        push_record(&mut input, any, f);
        frame.add(&input)?;
        let Ok(Parsed::Ip(p)) = wire::parse(link, f) else {
            continue;
        };
        let t = p.tuple;
        if p.payload_len > 0 && t.protocol == proto::TCP {
            let start = usize::from(p.payload_offset);
            http.add(&f[start..start + usize::from(p.payload_len)])?;
        }
        if matches!(t.protocol, proto::TCP | proto::UDP) && p.l4_offset != 0 {
            let a = (t.src, t.src_port);
            let b = (t.dst, t.dst_port);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            flows
                .entry((lo.0, lo.1, hi.0, hi.1, t.protocol))
                .or_default()
                .push(i);
        }
    }
    for indexes in flows.values() {
        // The client is the sender of the first frame (the SYN, the DNS query).
        let Ok(Parsed::Ip(first)) = wire::parse(link, &frames[indexes[0]]) else {
            continue;
        };
        let client = (first.tuple.src, first.tuple.src_port);
        for how in [
            Client::Metered,
            Client::Redirected,
            Client::RedirectedToPortal,
        ] {
            for lenient in [false, true] {
                let mut input = vec![control(link, lenient)];
                for &i in indexes.iter().take(FLOW_FRAMES) {
                    let mut f = frames[i].clone();
                    let uplink = rewrite(link, &mut f, client, how);
                    let port = if lenient {
                        Port::Any
                    } else if uplink {
                        Port::Ue
                    } else {
                        Port::Internet
                    };
                    push_record(&mut input, header(port, 0), &f);
                }
                frame.add(&input)?;
            }
        }
    }
    Ok(())
}

/// Moves `client` to a subscriber's address and its peer's port to 80 (53 stays 53); returns
/// whether the frame was sent by the client.
fn rewrite(link: LinkType, f: &mut [u8], client: (IpAddr, u16), how: Client) -> bool {
    let Ok(Parsed::Ip(p)) = wire::parse(link, f) else {
        return false;
    };
    let t = p.tuple;
    let uplink = (t.src, t.src_port) == client;
    let v6 = t.src.is_ipv6();
    let ue = match (how, v6) {
        (Client::Metered, false) => METERED,
        (Client::Metered, true) => METERED_V6,
        (_, false) => REDIRECTED,
        (_, true) => REDIRECTED_V6,
    };
    let server_port = if uplink { t.dst_port } else { t.src_port };
    let server = match (how, server_port == 53, v6) {
        (Client::RedirectedToPortal, true, false) => Some(RESOLVER),
        (Client::RedirectedToPortal, true, true) => Some(RESOLVER_V6),
        (Client::RedirectedToPortal, false, false) => Some(PORTAL),
        (Client::RedirectedToPortal, false, true) => Some(PORTAL_V6),
        _ => None,
    };
    let (client_at, server_at) = if uplink { (0, 1) } else { (1, 0) };
    let l3 = usize::from(p.l3_offset);
    let (src, len) = if v6 { (l3 + 8, 16) } else { (l3 + 12, 4) };
    let put = |f: &mut [u8], which: usize, addr: IpAddr| {
        let at = src + which * len;
        match addr {
            IpAddr::V4(a) => f[at..at + 4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => f[at..at + 16].copy_from_slice(&a.octets()),
        }
    };
    put(f, client_at, ue);
    if let Some(s) = server {
        put(f, server_at, s);
    }
    if server_port != 53 {
        let l4 = usize::from(p.l4_offset);
        let at = l4 + 2 * server_at;
        f[at..at + 2].copy_from_slice(&80u16.to_be_bytes());
    }
    uplink
}

/// One TCP endpoint of a scripted exchange.
#[derive(Clone, Copy)]
struct End {
    link: LinkHeader,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

impl End {
    fn seg(&self, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mss = (flags & tcp_flags::SYN != 0).then_some(1460);
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
        .expect("a small segment");
        out
    }

    fn back(&self) -> End {
        End {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

const ISN: u32 = 1_000_000;
const PA: u8 = tcp_flags::PSH | tcp_flags::ACK;

/// The SYN-ACK's sequence number the engine answers `syn` with at T0: the cookie.
fn cookie(link: LinkType, syn: &[u8]) -> u32 {
    let mut engine = weir_fuzz::engine(link, false);
    let mut out = Output::default();
    engine.handle_frame(Timestamp::from_secs(T0), Port::Ue, syn, &mut out);
    let seq = out
        .frames()
        .find_map(|(_, f)| match wire::parse(link, f) {
            Ok(Parsed::Ip(p)) if p.tcp_flags & tcp_flags::SYN != 0 => Some(p.tcp_seq),
            _ => None,
        })
        .unwrap_or(0);
    seq
}

/// The scripted exchanges must reach what they were written for, or they seed nothing.
fn check_scripted(inputs: &[Vec<u8>]) -> Result<(), Error> {
    let (mut sent, mut lifts, mut metered) = (0, 0, 0);
    for input in inputs {
        let engine = weir_fuzz::run_frames(input).ok_or("an empty input")?;
        let c = engine.redirect().counters();
        sent += c.redirects_sent;
        lifts += c.lifts;
        metered += engine.report().rating_groups.len();
    }
    println!(
        "scripted: {} inputs, {sent} redirects sent, {lifts} lifts, {metered} rating-group rows",
        inputs.len()
    );
    if sent == 0 || lifts == 0 || metered == 0 {
        return Err(
            "the scripted seeds no longer reach the responder, the watch and the meter".into(),
        );
    }
    Ok(())
}

fn scripted_seeds(frame: &mut Corpus) -> Result<Vec<Vec<u8>>, Error> {
    let mut all = Vec::new();
    let key = TokenKey::new(&TOKEN_KEY).expect("32 bytes");
    let eth = LinkHeader::Ethernet(wire::EthernetHeader {
        dst: [2, 0, 0, 0, 0, 0xaa],
        src: [2, 0, 0, 0, 0, 0xbb],
        vlans: [100, 0],
        vlan_count: 1,
    });
    let site_v4: IpAddr = "198.51.100.7".parse()?;
    let site_v6: IpAddr = "2001:db8:cafe::7".parse()?;
    let get =
        b"GET /news/today?lang=en HTTP/1.1\r\nHost: site.example\r\nUser-Agent: curl/8\r\n\r\n";
    let ue = header(Port::Ue, 0);
    let inet = header(Port::Internet, 0);
    for (link, lh) in [
        (LinkType::RawIp, LinkHeader::RawIp),
        (LinkType::Ethernet, eth),
    ] {
        for (sub, site, portal) in [
            (REDIRECTED, site_v4, PORTAL),
            (REDIRECTED_V6, site_v6, PORTAL_V6),
        ] {
            // The 302 exchange: handshake, the request in two pieces, our FIN acknowledged,
            // the client's FIN.
            let c = End {
                link: lh,
                src: sub,
                dst: site,
                sport: 40000,
                dport: 80,
            };
            let syn = c.seg(ISN, 0, tcp_flags::SYN, &[]);
            let k = cookie(link, &syn).wrapping_add(1);
            let (a, b) = get.split_at(20);
            let end = ISN + 1 + get.len() as u32;
            let mut input = vec![control(link, false)];
            for f in [
                syn.clone(),
                c.seg(ISN + 1, k, tcp_flags::ACK, &[]),
                c.seg(ISN + 1, k, PA, a),
                c.seg(ISN + 21, k, PA, b),
                c.seg(ISN + 1, k, PA, get),
                c.seg(end, k, tcp_flags::FIN | tcp_flags::ACK, &[]),
            ] {
                push_record(&mut input, ue, &f);
            }
            frame.add(&input)?;
            all.push(input);

            // The success URL through the garden, with a valid token, then the web again.
            let p = End { dst: portal, ..c };
            let q = key.sign(REDIRECTED_ID, sub, T0 + 300, "seed-nonce");
            let req = format!(
                "GET /recharge/success?{q} HTTP/1.1\r\nHost: portal.example\r\nAccept: text/html\r\n\r\n"
            );
            let mut input = vec![control(link, false)];
            for (h, f) in [
                (ue, p.seg(ISN, 0, tcp_flags::SYN, &[])),
                (
                    inet,
                    p.back()
                        .seg(77, ISN + 1, tcp_flags::SYN | tcp_flags::ACK, &[]),
                ),
                (ue, p.seg(ISN + 1, 78, PA, req.as_bytes())),
                (ue, c.seg(ISN, 0, tcp_flags::SYN, &[])),
            ] {
                push_record(&mut input, h, &f);
            }
            frame.add(&input)?;
            all.push(input);

            // The portal's answer carries the success URL (a Location, split over segments).
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://portal.example/recharge/success?{q}\r\nContent-Length: 0\r\n\r\n"
            );
            let (ra, rb) = resp.as_bytes().split_at(40);
            let pay = b"POST /recharge/pay HTTP/1.1\r\nHost: portal.example\r\nContent-Length: 9\r\n\r\namount=10";
            let s = p.back();
            let mut input = vec![control(link, false)];
            for (h, f) in [
                (ue, p.seg(ISN, 0, tcp_flags::SYN, &[])),
                (
                    inet,
                    s.seg(77, ISN + 1, tcp_flags::SYN | tcp_flags::ACK, &[]),
                ),
                (ue, p.seg(ISN + 1, 78, PA, pay)),
                (inet, s.seg(78, ISN + 1 + pay.len() as u32, PA, ra)),
                (inet, s.seg(118, ISN + 1 + pay.len() as u32, PA, rb)),
                (ue, c.seg(ISN, 0, tcp_flags::SYN, &[])),
            ] {
                push_record(&mut input, h, &f);
            }
            frame.add(&input)?;
            all.push(input);
        }
        // Final-Unit redirect on rating group 20: port 8080 answered, port 80 metered.
        let fu = End {
            link: lh,
            src: FINAL_UNIT,
            dst: site_v4,
            sport: 41000,
            dport: 8080,
        };
        let syn = fu.seg(ISN, 0, tcp_flags::SYN, &[]);
        let k = cookie(link, &syn).wrapping_add(1);
        let web = End { dport: 80, ..fu };
        let mut input = vec![control(link, false)];
        for (h, f) in [
            (ue, syn.clone()),
            (ue, fu.seg(ISN + 1, k, PA, get)),
            (ue, web.seg(ISN, 0, tcp_flags::SYN, &[])),
            (
                inet,
                web.back()
                    .seg(5, ISN + 1, tcp_flags::SYN | tcp_flags::ACK, &[]),
            ),
            (header(Port::Ue, 63), web.seg(ISN + 1, 6, PA, get)),
        ] {
            push_record(&mut input, h, &f);
        }
        frame.add(&input)?;
        all.push(input);
        // The metered subscriber: web, the closed gate, an idle flow expiring.
        let m = End {
            link: lh,
            src: METERED,
            dst: site_v4,
            sport: 42000,
            dport: 80,
        };
        let mut input = vec![control(link, false)];
        for (h, f) in [
            (ue, m.seg(ISN, 0, tcp_flags::SYN, &[])),
            (
                inet,
                m.back()
                    .seg(9, ISN + 1, tcp_flags::SYN | tcp_flags::ACK, &[]),
            ),
            (ue, m.seg(ISN + 1, 10, PA, get)),
            (
                ue,
                End { dport: 6881, ..m }.seg(ISN, 0, tcp_flags::SYN, &[]),
            ),
            (header(Port::Ue, 63), m.seg(ISN + 1, 10, PA, get)),
            (header(Port::Ue, 63), m.seg(ISN + 1, 10, PA, get)),
        ] {
            push_record(&mut input, h, &f);
        }
        frame.add(&input)?;
        all.push(input);
    }
    Ok(all)
}

fn token_seeds(tokens: &mut Corpus) -> Result<(), Error> {
    // The token target verifies with this key (fuzz_targets/token.rs).
    let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").expect("32 bytes");
    let v6: IpAddr = "2001:db8:45:3::3".parse()?;
    for (sub, ue, exp, nonce) in [
        (REDIRECTED_ID, REDIRECTED, T0 + 300, "n1"),
        ("nai-alice@example.net", REDIRECTED, 1_000, "n1"),
        (
            "sip-+15551234567@ims.example",
            v6,
            u64::MAX,
            "0123456789abcdef0123456789abcdef",
        ),
        (
            "msisdn-15551234567",
            "::ffff:10.45.0.3".parse()?,
            0,
            "a&b=c",
        ),
    ] {
        let q = key.sign(sub, ue, exp, nonce);
        tokens.add(q.as_bytes())?;
        tokens.add(format!("?{q}").as_bytes())?;
        tokens.add(format!("lang=en&{q}&x").as_bytes())?;
    }
    tokens.add(b"sub=imsi-001010000000003&ue=10.45.0.3")?;
    tokens.add(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")?;
    tokens.add(b" 00ff ")?;
    Ok(())
}

/// The text of every string literal starting with `start` (its opening quote included).
fn quoted<'t>(text: &'t str, start: &'t str) -> impl Iterator<Item = &'t str> + 't {
    text.match_indices(start).filter_map(|(at, _)| {
        let body = &text[at + 1..];
        body.find('"').map(|end| &body[..end])
    })
}

/// The contents of every `r#"..."#` literal.
fn raw_strings(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("r#\"").filter_map(|(at, _)| {
        let body = &text[at + 3..];
        body.find("\"#").map(|end| &body[..end])
    })
}
