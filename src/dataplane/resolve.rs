//! The portal's host names resolved for the walled garden, off the packet path. A control
//! thread asks the configured `dns_resolvers` (UDP port 53) for the A and AAAA records of every
//! portal host name, publishes the addresses with their expiry, and asks again before the
//! shortest TTL runs out. Workers pick the newest list up between batches, as they pick up policy
//! snapshots; a packet never waits for a resolver.
//!
//! The thread follows the policy: a reload that changes the portal host names or the resolvers
//! is resolved at once (and one that removes them stops the queries), so what the workers are
//! handed always belongs to the policy in force.
//!
//! std's resolver gives no TTL, hence this small query. Addresses that never change belong in
//! `portal_addresses`, which needs none of it. A refresh that fails keeps the last answer until
//! it expires and is retried sooner.

use crate::policy::PolicySnapshot;
use crate::time::{Clock, Timestamp};
use crate::wire::dns::address_records;
use arc_swap::ArcSwap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The newest resolved portal addresses, each with the time it stops being the portal's.
pub type PortalAddresses = Arc<ArcSwap<Vec<(IpAddr, Timestamp)>>>;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// Where the configured resolvers listen.
pub const DNS_PORT: u16 = 53;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// An address outlives a very short TTL, as one learned from the data path does: a connection
/// started just before it expired must still reach the portal.
const MIN_HOLD: Duration = Duration::from_secs(60);
const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How late a reload is noticed, and a stop request.
const POLL: Duration = Duration::from_millis(100);

/// The host names whose addresses belong in the walled garden under `snapshot`: `portal_hosts`
/// and the hosts of redirect URLs.
pub fn portal_hosts(snapshot: &PolicySnapshot) -> Vec<String> {
    snapshot.portal_hosts().to_vec()
}

/// What the thread resolves, and where: all it takes from a policy snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Targets {
    hosts: Vec<String>,
    servers: Vec<SocketAddr>,
}

impl Targets {
    fn of(snapshot: &PolicySnapshot, port: u16) -> Targets {
        Targets {
            hosts: portal_hosts(snapshot),
            servers: snapshot
                .settings
                .redirect
                .dns_resolvers
                .iter()
                .map(|a| SocketAddr::new(*a, port))
                .collect(),
        }
    }

    /// Nothing to ask, or no one to ask it.
    fn is_idle(&self) -> bool {
        self.hosts.is_empty() || self.servers.is_empty()
    }
}

/// A recursive query for `host` of type `qtype`.
fn query(host: &str, qtype: u16, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + host.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in host.split('.').filter(|l| !l.is_empty()) {
        // The configuration checked the name; a label over 63 bytes cannot occur.
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// Asks `server` once; the records of its answer (none when it has none).
fn ask(server: SocketAddr, host: &str, qtype: u16) -> std::io::Result<Vec<(IpAddr, u32)>> {
    let any: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    // Connected: the kernel drops datagrams from anyone but the server.
    socket.connect(server)?;
    // Only as unguessable as it needs to be: the source port is random too, and the answer
    // must name the host asked for.
    let id = (Timestamp::now().as_nanos() >> 10) as u16;
    socket.send(&query(host, qtype, id))?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let hosts = [host.to_ascii_lowercase()];
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(&mut buf)?;
        let msg = &buf[..n];
        if msg.get(..2) == Some(&id.to_be_bytes()[..]) {
            return Ok(address_records(msg, &hosts));
        }
    }
}

/// Resolves every host at the first resolver that answers. Returns the addresses with their
/// expiry, and the shortest TTL seen.
pub fn resolve(
    hosts: &[String],
    servers: &[SocketAddr],
    now: Timestamp,
) -> (Vec<(IpAddr, Timestamp)>, Option<Duration>) {
    let mut out: Vec<(IpAddr, Timestamp)> = Vec::new();
    let mut shortest: Option<Duration> = None;
    for host in hosts {
        for server in servers {
            let mut answered = false;
            for qtype in [TYPE_A, TYPE_AAAA] {
                match ask(*server, host, qtype) {
                    Ok(records) => {
                        answered = true;
                        for (addr, ttl) in records {
                            let ttl = Duration::from_secs(u64::from(ttl));
                            shortest = Some(shortest.map_or(ttl, |s| s.min(ttl)));
                            let until = now.saturating_add(ttl.max(MIN_HOLD));
                            match out.iter_mut().find(|(a, _)| *a == addr) {
                                Some(e) => e.1 = e.1.max(until),
                                None => out.push((addr, until)),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%server, host = %host, error = %e, "portal name query failed")
                    }
                }
            }
            if answered {
                break;
            }
        }
    }
    (out, shortest)
}

/// When to ask again after an answer whose shortest TTL was `ttl`: before it runs out.
fn refresh_after(ttl: Option<Duration>) -> Duration {
    ttl.map_or(MAX_REFRESH, |t| t * 4 / 5)
        .clamp(MIN_REFRESH, MAX_REFRESH)
}

/// Starts the resolving thread; it resolves what the newest snapshot in `policy` names, asking
/// the resolvers on `port` (53: [`DNS_PORT`]), and runs until `stop` says so. It idles while the
/// policy names no portal host or no resolver. Expiries are times of `clock`, the workers'.
pub fn spawn(
    policy: Arc<ArcSwap<PolicySnapshot>>,
    clock: Clock,
    port: u16,
    out: PortalAddresses,
    stop: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-resolve".into())
        .spawn(move || {
            let mut seen: Option<Arc<PolicySnapshot>> = None;
            let mut targets = Targets::default();
            let mut next = Instant::now();
            let mut retry = FIRST_RETRY;
            let mut failing = false;
            // The targets changed since the last answer was published: that answer is for
            // names (or resolvers) no longer in force.
            let mut stale = false;
            while !stop() {
                let newest = policy.load_full();
                if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &newest)) {
                    let t = Targets::of(&newest, port);
                    seen = Some(newest);
                    if t != targets {
                        if t.is_idle() {
                            if !targets.is_idle() {
                                tracing::info!("no portal host names to resolve (or no dns_resolvers): the portal name resolver is idle");
                                out.store(Arc::default());
                            }
                        } else {
                            tracing::info!(hosts = ?t.hosts, resolvers = ?t.servers, "resolving the portal's host names");
                            stale = !targets.is_idle();
                        }
                        targets = t;
                        next = Instant::now();
                        retry = FIRST_RETRY;
                        failing = false;
                    }
                }
                if !targets.is_idle() && Instant::now() >= next {
                    let (addresses, ttl) =
                        resolve(&targets.hosts, &targets.servers, clock.now());
                    let wait = if addresses.is_empty() {
                        if !failing {
                            tracing::warn!(hosts = ?targets.hosts, resolvers = ?targets.servers, "cannot resolve the portal's host names; the walled garden has portal_addresses and DNS answers seen in the data path until they resolve");
                        }
                        if stale {
                            out.store(Arc::default());
                        }
                        failing = true;
                        let wait = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        wait
                    } else {
                        tracing::info!(addresses = ?addresses.iter().map(|(a, _)| *a).collect::<Vec<_>>(), ttl_secs = ttl.map(|t| t.as_secs()), "portal host names resolved");
                        failing = false;
                        retry = FIRST_RETRY;
                        out.store(Arc::new(addresses));
                        refresh_after(ttl)
                    };
                    stale = false;
                    next = Instant::now() + wait;
                }
                std::thread::sleep(POLL);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver on loopback that answers every query with `records` of the asked type, after
    /// first sending a datagram with the wrong id.
    fn fake_resolver(records: Vec<(IpAddr, u32)>, queries: usize) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..queries {
                let (n, from) = socket.recv_from(&mut buf).unwrap();
                let q = &buf[..n];
                let qtype = u16::from_be_bytes([q[n - 4], q[n - 3]]);
                let mut wrong = q.to_vec();
                wrong[0] ^= 0xff;
                wrong[2] |= 0x80;
                socket.send_to(&wrong, from).unwrap();
                let mut m = q.to_vec();
                m[2] |= 0x80;
                let answers: Vec<_> = records
                    .iter()
                    .filter(|(a, _)| (qtype == TYPE_A) == a.is_ipv4())
                    .collect();
                m[7] = answers.len() as u8;
                for (a, ttl) in answers {
                    m.extend_from_slice(&[0xc0, 12]);
                    m.extend_from_slice(&qtype.to_be_bytes());
                    m.extend_from_slice(&[0, 1]);
                    m.extend_from_slice(&ttl.to_be_bytes());
                    let rdata = match a {
                        IpAddr::V4(v) => v.octets().to_vec(),
                        IpAddr::V6(v) => v.octets().to_vec(),
                    };
                    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    m.extend_from_slice(&rdata);
                }
                socket.send_to(&m, from).unwrap();
            }
        });
        addr
    }

    /// A resolver on `ip` that answers A queries for the names in `records` (and nothing for
    /// any other name), for as long as the test runs. `port` 0 takes a free one.
    fn named_resolver(ip: &str, port: u16, records: &[(&str, Ipv4Addr)]) -> SocketAddr {
        let socket = UdpSocket::bind((ip, port)).unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Vec<(String, Ipv4Addr)> =
            records.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let q = &buf[..n];
                let mut name = Vec::new();
                let mut at = 12;
                while at < n && q[at] != 0 {
                    let len = usize::from(q[at]);
                    name.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).into_owned());
                    at += 1 + len;
                }
                let name = name.join(".");
                let qtype = u16::from_be_bytes([q[n - 4], q[n - 3]]);
                let mut m = q.to_vec();
                m[2] |= 0x80;
                let answers: Vec<Ipv4Addr> = records
                    .iter()
                    .filter(|(host, _)| qtype == TYPE_A && *host == name)
                    .map(|(_, a)| *a)
                    .collect();
                m[7] = answers.len() as u8;
                for a in answers {
                    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
                    m.extend_from_slice(&300u32.to_be_bytes());
                    m.extend_from_slice(&[0, 4]);
                    m.extend_from_slice(&a.octets());
                }
                let _ = socket.send_to(&m, from);
            }
        });
        addr
    }

    fn snapshot(redirect: &str, version: u64) -> Arc<PolicySnapshot> {
        let text = format!("[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[redirect]\n{redirect}");
        let config = crate::policy::Config::from_toml_str(&text, "t.toml").unwrap();
        Arc::new(PolicySnapshot::build(&config, version))
    }

    /// Waits up to five seconds for the published addresses to be `want`.
    fn published(out: &PortalAddresses, want: &[Ipv4Addr]) -> Vec<IpAddr> {
        let want: Vec<IpAddr> = want.iter().map(|a| IpAddr::V4(*a)).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got: Vec<IpAddr> = out.load().iter().map(|(a, _)| *a).collect();
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_reload_that_changes_the_hosts_or_the_resolvers_is_followed() {
        let portal = Ipv4Addr::new(192, 0, 2, 80);
        let other = Ipv4Addr::new(192, 0, 2, 81);
        let other_elsewhere = Ipv4Addr::new(192, 0, 2, 82);
        let first = named_resolver(
            "127.0.0.1",
            0,
            &[("portal.example", portal), ("other.example", other)],
        );
        // The same port on another loopback address: a reload that names another resolver.
        named_resolver(
            "127.0.0.2",
            first.port(),
            &[("other.example", other_elsewhere)],
        );
        let policy = Arc::new(ArcSwap::new(snapshot("", 1)));
        let out: PortalAddresses = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = spawn(
            Arc::clone(&policy),
            Clock::system(),
            first.port(),
            Arc::clone(&out),
            move || stopped.load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap();

        // Started with nothing to resolve: a reload names the portal and a resolver.
        std::thread::sleep(POLL * 3);
        assert!(out.load().is_empty());
        policy.store(snapshot(
            "portal_hosts = [\"portal.example\"]\ndns_resolvers = [\"127.0.0.1\"]\n",
            2,
        ));
        assert_eq!(published(&out, &[portal]), [IpAddr::V4(portal)]);

        // Another host name: its address replaces the old one's.
        policy.store(snapshot(
            "portal_hosts = [\"other.example\"]\ndns_resolvers = [\"127.0.0.1\"]\n",
            3,
        ));
        assert_eq!(published(&out, &[other]), [IpAddr::V4(other)]);

        // Another resolver, which knows the name by another address.
        policy.store(snapshot(
            "portal_hosts = [\"other.example\"]\ndns_resolvers = [\"127.0.0.2\"]\n",
            4,
        ));
        assert_eq!(
            published(&out, &[other_elsewhere]),
            [IpAddr::V4(other_elsewhere)]
        );

        // A name no resolver knows: nothing of the old names is handed out any more.
        policy.store(snapshot(
            "portal_hosts = [\"unknown.example\"]\ndns_resolvers = [\"127.0.0.1\"]\n",
            5,
        ));
        assert_eq!(published(&out, &[]), Vec::<IpAddr>::new());

        // Back to the portal, then no portal hosts at all: the resolver stops and says so.
        policy.store(snapshot(
            "portal_hosts = [\"portal.example\"]\ndns_resolvers = [\"127.0.0.1\"]\n",
            6,
        ));
        assert_eq!(published(&out, &[portal]), [IpAddr::V4(portal)]);
        policy.store(snapshot("", 7));
        assert_eq!(published(&out, &[]), Vec::<IpAddr>::new());

        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().unwrap();
    }

    #[test]
    fn resolves_a_and_aaaa_with_their_ttl() {
        let v4: IpAddr = "198.51.100.20".parse().unwrap();
        let v6: IpAddr = "2001:db8:100::20".parse().unwrap();
        let server = fake_resolver(vec![(v4, 300), (v6, 120)], 2);
        let now = Timestamp::from_secs(1_000);
        let (addresses, ttl) = resolve(&["portal.example".to_string()], &[server], now);
        assert_eq!(
            addresses,
            vec![
                (v4, Timestamp::from_secs(1_300)),
                (v6, Timestamp::from_secs(1_120))
            ]
        );
        assert_eq!(ttl, Some(Duration::from_secs(120)));
        assert_eq!(refresh_after(ttl), Duration::from_secs(96));
    }

    #[test]
    fn a_short_ttl_is_held_a_minute_and_refreshed_no_faster_than_every_ten_seconds() {
        let v4: IpAddr = "192.0.2.80".parse().unwrap();
        let server = fake_resolver(vec![(v4, 1)], 2);
        let now = Timestamp::from_secs(1_000);
        let (addresses, ttl) = resolve(&["Portal.Example".to_string()], &[server], now);
        assert_eq!(addresses, vec![(v4, Timestamp::from_secs(1_060))]);
        assert_eq!(refresh_after(ttl), MIN_REFRESH);
        assert_eq!(refresh_after(None), MAX_REFRESH);
    }

    #[test]
    fn a_silent_resolver_gives_nothing_and_the_next_one_is_asked() {
        // Bound and never read: queries to it go unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v4: IpAddr = "192.0.2.81".parse().unwrap();
        let good = fake_resolver(vec![(v4, 600)], 2);
        let now = Timestamp::from_secs(0);
        let started = Instant::now();
        let (addresses, _) = resolve(
            &["portal.example".to_string()],
            &[silent.local_addr().unwrap(), good],
            now,
        );
        assert_eq!(addresses, vec![(v4, Timestamp::from_secs(600))]);
        assert!(started.elapsed() < QUERY_TIMEOUT * 3);
    }

    #[test]
    fn the_query_names_the_host_and_asks_for_recursion() {
        let q = query("portal.example.", TYPE_AAAA, 0x1234);
        assert_eq!(
            q,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06portal\x07example\x00\x00\x1c\x00\x01"
        );
    }
}
