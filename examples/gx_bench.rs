//! Gx benchmarks: `weir run`'s control plane in this process (the session manager, weir.v1.Gateway
//! on loopback, the Gx client) with an [`Engine`] reading the published policy the way a worker
//! does, against a real `weir policy-engine` (the release binary, its own process and SQLite
//! store).
//!
//! ```sh
//! cargo build --release && cargo run --release --example gx_bench
//! cargo run --release --example gx_bench -- --sessions 10000,100000 --rars 100000 --latency 1000 --scale 100000
//! ```
//!
//! 1. **ReAuth under load**: N sessions made through `Gateway/CreateSession`, then `--rars` RARs
//!    (one dynamic rule each, and again with ten each) from 64 concurrent callers, while an engine
//!    forwards a steady flow of another session and picks up every new snapshot between its
//!    batches. Every packet of that flow must be forwarded and metered under its rule's rating
//!    group, byte for byte: any other outcome counts as misclassified.
//! 2. **CCR-I and the first packet**: the CCR-I round trip to the policy engine, and the time from
//!    a new subscriber's first packet (held by the engine) to that packet released under the
//!    session's rules, one subscriber at a time and 1,000 at once.
//! 3. **Recharge success → unredirected**: a subscriber at zero balance, under the redirect,
//!    recharges; time until its next connection to the site is forwarded, with the success
//!    reported to the policy engine, lifted locally, and with neither (the billing delay alone).
//! 4. **Scale**: `--scale` subscribers attach through CCR-I; the time that takes, and the resident
//!    memory per session of the gateway and of the policy engine.
//!
//! The policy engine binary is `target/release/weir` (or `WEIR_BIN`).

use arc_swap::ArcSwap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::charging::Metered;
use weir::classify::ip_key;
use weir::control::{self, Control};
use weir::engine::{Engine, Output, Port, Verdict};
use weir::policy::{Config, PolicySnapshot, SubscriberId, SubscriberMapping};
use weir::proto::v1 as pb;
use weir::time::Timestamp;
use weir::wire::{self, tcp_flags, Checksum, LinkHeader, LinkType, TcpSegment};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const SITE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORTAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// The steady flow's subscriber, a session of the file that no RAR touches.
const STEADY: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);
const STEADY_GROUP: u32 = 7;
const CALLERS: usize = 64;

const RULES: &str = r#"
[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{ description = "permit out 17 from any 53 to assigned" }]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]

[[predefined_rule]]
name = "stream"
precedence = 20
rating_group = 7
flow = [{ description = "permit out 17 from any 9000 to assigned" }]
"#;

/// The gateway's configuration: loopback control plane, the lab's redirect settings, and the
/// policy engine at `policy_engine` (with `success_action`) or none.
fn gateway_config(policy_engine: Option<&str>, success_action: &str) -> Config {
    let control = match policy_engine {
        Some(a) => format!(
            "policy_engine = \"http://{a}\"\npending_action = \"hold\"\npending_subscribers = 65536\n"
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.0.0.0/8"]

[control]
listen = "127.0.0.1:0"
origin_host = "gw.bench"
{control}
[redirect]
http_ports = [80]
success_url = "http://portal.example/recharge/success"
token_key = "{KEY}"
portal_hosts = ["portal.example"]
portal_addresses = ["{PORTAL}"]
success_action = "{success_action}"
{RULES}
[[session]]
subscriber = "imsi-001019999999999"
ipv4 = "{STEADY}"
predefined = ["stream"]
default_rule = {{ action = "drop" }}
"#
    );
    Config::from_toml_str(&text, "gx-bench.toml").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

fn subscriber(i: u32) -> String {
    format!("imsi-00101{i:010}")
}

/// The i-th bench subscriber's address: 10.0.0.0/8 past the first /24.
fn ue(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 1, 0)) + i)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} samples)",
        percentile(&v, 0.50).as_secs_f64() * 1e6,
        percentile(&v, 0.99).as_secs_f64() * 1e6,
        v.last().unwrap().as_secs_f64() * 1e6,
        v.len()
    )
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

// --- frames ------------------------------------------------------------------------------------

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let udp_len = 8 + payload;
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = wire::ipv4_checksum(&out[..20]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.resize(20 + udp_len, 0x5a);
    let sum = Checksum::new()
        .add_pseudo_header(src.into(), dst.into(), 17, udp_len as u32)
        .add(&out[20..])
        .finish();
    out[26..28].copy_from_slice(&sum.to_be_bytes());
    out
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    TcpSegment {
        link: LinkHeader::RawIp,
        src: src.into(),
        dst: dst.into(),
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
    .expect("a TCP segment");
    out
}

/// A worker's view: an engine that takes every new snapshot before its next frame.
struct Worker {
    engine: Engine,
    policy: Arc<ArcSwap<PolicySnapshot>>,
    out: Output,
}

impl Worker {
    fn new(policy: &Arc<ArcSwap<PolicySnapshot>>) -> Worker {
        Worker {
            engine: Engine::new(policy.load_full(), LinkType::RawIp),
            policy: Arc::clone(policy),
            out: Output::default(),
        }
    }

    /// Takes a new snapshot if there is one; returns the held frames it released, by verdict.
    fn refresh(&mut self) -> Vec<(Vec<u8>, Verdict)> {
        let newest = self.policy.load();
        if !Arc::ptr_eq(&newest, self.engine.snapshot()) {
            self.engine.set_snapshot(Arc::clone(&newest));
        }
        let mut released = Vec::new();
        if self.engine.has_held_ready() {
            let mut out = std::mem::take(&mut self.out);
            self.engine
                .release_held(Timestamp::now(), &mut out, |_, frame, verdict, _| {
                    released.push((frame.to_vec(), verdict))
                });
            self.out = out;
        }
        released
    }

    fn send(&mut self, frame: &[u8]) -> Verdict {
        self.out.clear();
        self.engine
            .handle_frame(Timestamp::now(), Port::Any, frame, &mut self.out)
    }
}

// --- the policy engine -------------------------------------------------------------------------

/// A running `weir policy-engine`, killed on drop, with its folder.
struct PolicyEngine {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl PolicyEngine {
    /// Accounts `imsi-00101…` 0..`accounts` in credit, and `zero` more at zero balance after them.
    fn start(dir: &Path, accounts: u32, zero: u32, billing_delay: u64) -> PolicyEngine {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("the bench folder");
        let mut text = format!(
            r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = {billing_delay}
origin_host = "pcrf.bench"
token_key = "{KEY}"
token_max_age = 600
predefined_rules = ["dns", "web"]
default_plan = "standard"
reauth = {{ timeout = 5, attempts = 3, backoff = 0, max_backoff = 1 }}

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["dns", "web"]
"#
        );
        for i in 0..accounts + zero {
            let balance = if i < accounts { 1000 } else { 0 };
            text.push_str(&format!(
                "\n[[account]]\nsubscriber = \"{}\"\nbalance = {balance}\n",
                subscriber(i)
            ));
        }
        let path = dir.join("pe.toml");
        std::fs::write(&path, text).expect("the policy engine's file");
        let bin = std::env::var("WEIR_BIN").unwrap_or_else(|_| "target/release/weir".into());
        let mut child = Command::new(&bin)
            .args(["policy-engine", "--config"])
            .arg(&path)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (cargo build --release, or set WEIR_BIN)"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.strip_prefix("weir policy-engine: listening on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        // Seeding runs one transaction per account: a million take minutes.
        let addr = rx
            .recv_timeout(Duration::from_secs(1800))
            .expect("the policy engine says where it listens");
        PolicyEngine {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("an address")
        .connect()
        .await
        .expect("connects")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

// --- 1. ReAuth under load ----------------------------------------------------------------------

fn rule(name: String, port: u16) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        charging_rule_name: name,
        flow_information: vec![pb::FlowInformation {
            flow_description: format!("permit out 17 from 203.0.113.0/24 to assigned {port}"),
            flow_direction: pb::FlowDirection::Bidirectional as i32,
        }],
        precedence: Some(50),
        rating_group: Some(30),
        ..Default::default()
    }
}

fn reauth(sessions: u32, rars: u32) {
    let config = gateway_config(None, "local");
    let policy = Arc::new(ArcSwap::from_pointee(PolicySnapshot::build(&config, 0)));
    let control = control::start(&config, Arc::clone(&policy), control::Tallies::default())
        .expect("the control plane");
    let addr = control
        .listen()
        .expect("listens")
        .expect("an address")
        .to_string();
    let rt = runtime();

    // N sessions, through the operator API.
    let t = Instant::now();
    let ids: Vec<String> = rt.block_on(async {
        let ch = channel(&addr).await;
        let mut tasks = Vec::new();
        for c in 0..CALLERS as u32 {
            let mut client = pb::gateway_client::GatewayClient::new(ch.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut i = c;
                while i < sessions {
                    let s = client
                        .create_session(pb::GatewayCreateSessionRequest {
                            subscriber_id: subscriber(i),
                            framed_ip_address: ue(i).to_string(),
                            charging_rule_install: vec![pb::ChargingRuleInstall {
                                charging_rule_name: vec!["dns".into(), "web".into()],
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .await
                        .expect("CreateSession")
                        .into_inner();
                    ids.push(s.session_id);
                    i += CALLERS as u32;
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("a caller"));
        }
        all
    });
    let created = t.elapsed();
    assert_eq!(ids.len(), sessions as usize);
    println!(
        "{sessions} sessions: CreateSession {:.0}/s ({:.2} s)",
        sessions as f64 / created.as_secs_f64(),
        created.as_secs_f64()
    );

    for per_rar in [1u32, 10] {
        let snap = policy.load_full();
        let steady = snap
            .session(
                snap.session_index(ip_key(STEADY.into()))
                    .expect("the steady session"),
            )
            .id;
        let version = snap.version;
        drop(snap);
        // The steady flow, both directions, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let flow = {
            let (policy, stop) = (Arc::clone(&policy), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut w = Worker::new(&policy);
                let up = udp(STEADY, SITE, 5000, 9000, 100);
                let down = udp(SITE, STEADY, 9000, 5000, 1200);
                let (mut sent, mut bytes, mut wrong, mut swaps) = (0u64, 0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let before = Arc::as_ptr(w.engine.snapshot());
                    w.refresh();
                    swaps += u64::from(before != Arc::as_ptr(w.engine.snapshot()));
                    for _ in 0..32 {
                        for f in [&up, &down] {
                            sent += 1;
                            bytes += f.len() as u64;
                            if w.send(f) != Verdict::Forward {
                                wrong += 1;
                            }
                        }
                    }
                }
                let meter = w.engine.meter();
                let usage = meter
                    .usage(&Metered::RatingGroup(steady, STEADY_GROUP))
                    .copied()
                    .unwrap_or_default();
                let metered_packets = usage.uplink_packets + usage.downlink_packets;
                let metered_bytes = usage.uplink_bytes + usage.downlink_bytes;
                let elsewhere = meter
                    .iter()
                    .filter(|(m, _)| !matches!(m, Metered::RatingGroup(s, g) if *s == steady && *g == STEADY_GROUP))
                    .count();
                wrong += sent.abs_diff(metered_packets);
                (sent, bytes, metered_bytes, wrong, elsewhere, swaps)
            })
        };

        let t = Instant::now();
        let installed = rt.block_on(async {
            let ch = channel(&addr).await;
            let ids = Arc::new(ids.clone());
            let mut tasks = Vec::new();
            for c in 0..CALLERS as u32 {
                let mut client = pb::gateway_client::GatewayClient::new(ch.clone());
                let ids = Arc::clone(&ids);
                tasks.push(tokio::spawn(async move {
                    let mut ok = 0u32;
                    let mut r = c;
                    while r < rars {
                        let session = &ids[r as usize % ids.len()];
                        let defs = (0..per_rar)
                            .map(|k| rule(format!("d{per_rar}-{r}-{k}"), (r % 60000) as u16 + 1))
                            .collect();
                        let a = client
                            .re_auth(pb::ReAuthRequest {
                                session_id: session.clone(),
                                origin_host: "pcrf.bench".into(),
                                charging_rule_install: vec![pb::ChargingRuleInstall {
                                    charging_rule_definition: defs,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            })
                            .await
                            .expect("ReAuth")
                            .into_inner();
                        if a.charging_rule_report.is_empty() {
                            ok += per_rar;
                        }
                        r += CALLERS as u32;
                    }
                    ok
                }));
            }
            let mut all = 0;
            for t in tasks {
                all += t.await.expect("a caller");
            }
            all
        });
        let took = t.elapsed();
        // Let the last snapshot reach the flow before it stops.
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let (sent, bytes, metered, wrong, elsewhere, swaps) = flow.join().expect("the flow");
        let published = policy.load().version - version;
        println!(
            "{sessions} sessions, {rars} RARs x {per_rar} rule: {:.0} rules/s ({:.0} RARs/s, {:.2} s), \
             {installed} rules installed, {published} snapshots published, {swaps} picked up by the \
             flow; flow: {sent} packets, {bytes} bytes sent, {metered} metered, {wrong} misclassified, \
             {elsewhere} other counters",
            installed as f64 / took.as_secs_f64(),
            rars as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
        assert_eq!(installed, rars * per_rar, "every rule installs");
        assert_eq!(
            (wrong, elsewhere, metered),
            (0, 0, bytes),
            "no packet misclassified"
        );
    }
    control.stop(Duration::from_secs(5));
}

// --- 2. CCR-I and the first packet -------------------------------------------------------------

fn gateway_with(
    pe: &PolicyEngine,
    subscribers: u32,
    success_action: &str,
) -> (Control, Arc<ArcSwap<PolicySnapshot>>) {
    let mut config = gateway_config(Some(&pe.addr), success_action);
    config.control.subscribers = (0..subscribers)
        .map(|i| SubscriberMapping {
            subscriber: SubscriberId::parse(&subscriber(i)).expect("an IMSI"),
            ipv4: Some(ue(i)),
            ipv6: None,
        })
        .collect();
    let policy = Arc::new(ArcSwap::from_pointee(PolicySnapshot::build(&config, 0)));
    let control = control::start(&config, Arc::clone(&policy), control::Tallies::default())
        .expect("the control plane");
    // Bound, so CCR-I gives the policy engine the address its RARs reach.
    control.listen().expect("listens");
    (control, policy)
}

/// First packets of subscribers `from..to`, all sent before any is waited for; the time each
/// took from its first packet to its release.
fn first_packets(w: &mut Worker, control: &Control, from: u32, to: u32) -> Vec<Duration> {
    let events = control.events();
    let mut started = std::collections::HashMap::new();
    for i in from..to {
        let frame = udp(ue(i), SITE, 40000, 53, 40);
        let t = Instant::now();
        assert_eq!(w.send(&frame), Verdict::Held, "the first packet waits");
        for e in w.engine.drain_events() {
            events.send(e).expect("the control plane takes events");
        }
        started.insert(ue(i), t);
    }
    let mut took = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while took.len() < (to - from) as usize {
        assert!(Instant::now() < deadline, "sessions did not arrive");
        for (frame, _verdict) in w.refresh() {
            let src = Ipv4Addr::new(frame[12], frame[13], frame[14], frame[15]);
            took.push(started[&src].elapsed());
        }
        std::hint::spin_loop();
    }
    took
}

fn ccr_and_first_packet(dir: &Path, n: u32) {
    // Subscribers 0..n for the first packets, n..2n for the direct CCR-Is.
    let pe = PolicyEngine::start(dir, 2 * n + 1000, 0, 30);
    let rt = runtime();
    let rtt = rt.block_on(async {
        let mut client = pb::policy_engine_client::PolicyEngineClient::new(channel(&pe.addr).await);
        let mut v = Vec::new();
        for i in n..2 * n {
            let t = Instant::now();
            let a = client
                .create_session(pb::CreateSessionRequest {
                    session_id: format!("bench;{i}"),
                    origin_host: "gw.bench".into(),
                    cc_request_type: pb::CcRequestType::InitialRequest as i32,
                    cc_request_number: 0,
                    subscriber_id: subscriber(i),
                    framed_ip_address: ue(i).to_string(),
                    reauth_endpoint: "127.0.0.1:9".into(),
                    ..Default::default()
                })
                .await
                .expect("CCR-I")
                .into_inner();
            v.push(t.elapsed());
            assert_eq!(a.charging_rule_install.len(), 1, "{a:?}");
        }
        v
    });
    println!(
        "CCR-I round trip (gRPC on loopback, policy engine with SQLite): {}",
        summary(rtt)
    );

    let (control, policy) = gateway_with(&pe, 2 * n + 1000, "report");
    let mut w = Worker::new(&policy);
    let one: Vec<Duration> = (0..n)
        .flat_map(|i| first_packets(&mut w, &control, i, i + 1))
        .collect();
    println!(
        "first packet -> released under its rules, one subscriber at a time: {}",
        summary(one)
    );
    let t = Instant::now();
    let burst = first_packets(&mut w, &control, 2 * n, 2 * n + 1000);
    println!(
        "first packet -> released, 1000 new subscribers at once: {} (all in {:.1} ms)",
        summary(burst),
        t.elapsed().as_secs_f64() * 1e3
    );
    // Every held first packet went out under its session's dns rule.
    assert_eq!(w.engine.counters().forwarded, u64::from(n) + 1000);
    control.stop(Duration::from_secs(5));
}

// --- 3. Recharge success -> unredirected -------------------------------------------------------

/// Whether a new connection of subscriber `i` to the site is forwarded (not answered by the
/// redirect).
fn forwarded(w: &mut Worker, i: u32, port: u16) -> bool {
    w.send(&tcp(ue(i), SITE, port, 80, tcp_flags::SYN, &[])) == Verdict::Forward
}

/// The subscriber asks the portal for the success page with a valid token.
fn success_page(w: &mut Worker, i: u32, port: u16) {
    let key =
        weir::token::TokenKey::new(&weir::token::parse_hex_key(KEY).expect("hex")).expect("a key");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 300;
    let query = key.sign(&subscriber(i), ue(i).into(), exp, &format!("n{i}-{port}"));
    assert_eq!(
        w.send(&tcp(ue(i), PORTAL, port, 80, tcp_flags::SYN, &[])),
        Verdict::Forward
    );
    let get = format!(
        "GET /recharge/success?{query} HTTP/1.1\r\nHost: portal.example\r\nAccept: text/html\r\n\r\n"
    );
    let v = w.send(&tcp(
        ue(i),
        PORTAL,
        port,
        80,
        tcp_flags::ACK | tcp_flags::PSH,
        get.as_bytes(),
    ));
    assert_eq!(v, Verdict::Forward, "the success page goes to the portal");
}

fn recharge(dir: &Path, runs: u32, delay: u64) {
    for mode in ["report", "local", "billing"] {
        // Subscribers 0..runs at zero balance.
        let pe = PolicyEngine::start(dir, 0, runs, delay);
        let action = if mode == "local" { "local" } else { "report" };
        let (control, policy) = gateway_with(&pe, runs, action);
        let mut w = Worker::new(&policy);
        let rt = runtime();
        let mut admin =
            rt.block_on(async { pb::admin_client::AdminClient::new(channel(&pe.addr).await) });
        let mut took = Vec::new();
        let mut port = 20000u16;
        for i in 0..runs {
            first_packets(&mut w, &control, i, i + 1);
            // The CCA-I's redirect is in force for the session now.
            port += 1;
            assert!(!forwarded(&mut w, i, port), "under the redirect");
            let t = Instant::now();
            if mode == "billing" {
                rt.block_on(admin.recharge(pb::RechargeRequest {
                    subscriber_id: subscriber(i),
                    amount: 500,
                    reference: format!("bench-{i}"),
                }))
                .expect("Recharge");
            } else {
                rt.block_on(admin.recharge(pb::RechargeRequest {
                    subscriber_id: subscriber(i),
                    amount: 500,
                    reference: format!("bench-{i}"),
                }))
                .expect("Recharge");
                port += 1;
                success_page(&mut w, i, port);
                for e in w.engine.drain_events() {
                    control.events().send(e).expect("events");
                }
            }
            let t = if mode == "billing" { t } else { Instant::now() };
            let deadline = t + Duration::from_secs(delay + 30);
            loop {
                w.refresh();
                port = port.wrapping_add(1).max(20000);
                if forwarded(&mut w, i, port) {
                    took.push(t.elapsed());
                    break;
                }
                assert!(Instant::now() < deadline, "{mode}: never unredirected");
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let label = match mode {
            "report" => "success reported (CCR-U, the CCA-U removes the redirect)",
            "local" => "success lifted locally",
            _ => "no watch: the billing delay, then the policy engine's RAR",
        };
        println!(
            "recharge -> next connection forwarded, {label}: {}",
            summary(took)
        );
        control.stop(Duration::from_secs(5));
    }
}

// --- 4. Scale ----------------------------------------------------------------------------------

fn scale(dir: &Path, n: u32) {
    let t = Instant::now();
    let pe = PolicyEngine::start(dir, n, 0, 30);
    let seeded = t.elapsed();
    let pe_pid = pe.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let pe_before = rss(pe_pid);
    let me = std::process::id();
    let gw_before = rss(me);
    let (control, policy) = gateway_with(&pe, n, "report");
    let events = control.events();
    let t = Instant::now();
    let at = Timestamp::now();
    for i in 0..n {
        events
            .send(weir::packet::Event::SessionRequest {
                ue: ue(i).into(),
                at,
            })
            .expect("events");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while policy.load().session_count() < n as usize + 1 {
        assert!(
            Instant::now() < deadline,
            "only {} sessions",
            policy.load().session_count()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let attached = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (pe_after, gw_after) = (rss(pe_pid), rss(me));
    let db = std::fs::metadata(dir.join("pe.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(dir.join("pe.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "{n} accounts seeded from the file in {:.2} s; {n} subscribers attached through CCR-I in {:.2} s ({:.0}/s)",
        seeded.as_secs_f64(),
        attached.as_secs_f64(),
        n as f64 / attached.as_secs_f64()
    );
    println!(
        "memory per session: gateway {:.0} B (resident {} MB -> {} MB), policy engine {:.0} B \
         (resident {} MB -> {} MB; database {} MB)",
        gw_after.saturating_sub(gw_before) as f64 / n as f64,
        gw_before >> 20,
        gw_after >> 20,
        pe_after.saturating_sub(pe_before) as f64 / n as f64,
        pe_before >> 20,
        pe_after >> 20,
        db >> 20
    );
    control.stop(Duration::from_secs(10));
}

fn main() {
    let mut sessions = vec![10_000u32, 100_000];
    let (mut rars, mut latency, mut scale_n, mut recharge_runs) =
        (100_000u32, 1000u32, 100_000u32, 20u32);
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--sessions" => {
                sessions = value()
                    .split(',')
                    .map(|v| v.parse().expect("a count"))
                    .collect()
            }
            "--rars" => rars = value().parse().expect("a count"),
            "--latency" => latency = value().parse().expect("a count"),
            "--scale" => scale_n = value().parse().expect("a count"),
            "--recharges" => recharge_runs = value().parse().expect("a count"),
            "--only" => only = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("weir-gx-bench-{}", std::process::id()));
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if run("reauth") {
        for &n in &sessions {
            reauth(n, rars);
        }
    }
    if run("ccr") {
        ccr_and_first_packet(&dir, latency);
    }
    if run("recharge") {
        recharge(&dir, recharge_runs, 5);
    }
    if run("scale") {
        scale(&dir, scale_n);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
