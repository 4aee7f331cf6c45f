//! The walled garden: what a redirected subscriber may still reach — the portal (addresses known
//! up front, handed in by whoever resolves the portal's name, or learned from DNS answers for
//! the portal's host names seen in the data path) and the configured DNS resolvers.
//!
//! Learned addresses expire with their DNS TTL; the table is bounded.

use crate::classify::ip_key;
use crate::time::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Learned portal addresses kept at most; more are refused until some expire.
const MAX_LEARNED: usize = 1024;
/// A learned address outlives a very short TTL: connections started just before it expired
/// must still reach the portal.
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(86_400);

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

#[derive(Default)]
pub struct Garden {
    fixed: FxHashSet<u128>,
    learned: FxHashMap<u128, Timestamp>,
    resolvers: Vec<u128>,
    /// Lower case, no trailing dot.
    hosts: Vec<String>,
}

impl Garden {
    pub fn new(fixed: &[IpAddr], resolvers: &[IpAddr], hosts: &[String]) -> Garden {
        Garden {
            fixed: fixed.iter().map(|a| ip_key(*a)).collect(),
            learned: FxHashMap::default(),
            resolvers: resolvers.iter().map(|a| ip_key(*a)).collect(),
            hosts: hosts.to_vec(),
        }
    }

    /// Adds a portal host name (from a redirect URL); its DNS answers will be learned.
    pub fn add_host(&mut self, host: &str) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(addr) = host.parse::<IpAddr>() {
            self.fixed.insert(ip_key(addr));
        } else if !self.hosts.contains(&host) {
            self.hosts.push(host);
        }
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn is_portal(&self, addr: u128, now: Timestamp) -> bool {
        self.fixed.contains(&addr) || self.learned.get(&addr).is_some_and(|until| now < *until)
    }

    pub fn is_resolver(&self, addr: u128) -> bool {
        self.resolvers.contains(&addr)
    }

    /// Records a portal address until `until` (from a resolver at the edge, or a DNS answer).
    /// Returns false when the table is full of live entries.
    pub fn learn(&mut self, addr: u128, until: Timestamp, now: Timestamp) -> bool {
        if self.fixed.contains(&addr) {
            return true;
        }
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&addr) {
            self.learned.retain(|_, t| now < *t);
            if self.learned.len() >= MAX_LEARNED {
                return false;
            }
        }
        let e = self.learned.entry(addr).or_insert(until);
        *e = (*e).max(until);
        true
    }

    /// Reads a DNS response (UDP payload); when its question is a portal host name, learns the
    /// A and AAAA records of its answer section. Returns how many addresses were learned.
    pub fn snoop_dns(&mut self, msg: &[u8], now: Timestamp) -> usize {
        if self.hosts.is_empty() {
            return 0;
        }
        let Some(records) = portal_answers(msg, &self.hosts) else {
            return 0;
        };
        let mut learned = 0;
        for (addr, ttl) in records.iter().flatten() {
            let ttl = Duration::from_secs(u64::from(*ttl)).clamp(MIN_TTL, MAX_TTL);
            if self.learn(ip_key(*addr), now.saturating_add(ttl), now) {
                learned += 1;
            }
        }
        learned
    }
}

/// At most this many address records of one answer are learned.
const MAX_RECORDS: usize = 16;

/// The A and AAAA records (address, TTL) of a DNS response whose first question names one of
/// `hosts` (lower case, no trailing dot); empty for anything else.
pub fn address_records(msg: &[u8], hosts: &[String]) -> Vec<(IpAddr, u32)> {
    portal_answers(msg, hosts)
        .map(|records| records.into_iter().flatten().collect())
        .unwrap_or_default()
}

/// The A/AAAA records (address, TTL) of a response whose first question names one of `hosts`.
fn portal_answers(msg: &[u8], hosts: &[String]) -> Option<[Option<(IpAddr, u32)>; MAX_RECORDS]> {
    let u16_at = |at: usize| {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let flags = u16_at(2)?;
    // A response (QR set) without error (RCODE 0).
    if flags & 0x8000 == 0 || flags & 0x000f != 0 {
        return None;
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    if qd == 0 {
        return None;
    }
    let mut name = [0u8; 256];
    let (len, mut at) = read_name(msg, 12, &mut name)?;
    let qname = std::str::from_utf8(&name[..len]).ok()?;
    if !hosts.iter().any(|h| h == qname) {
        return None;
    }
    at += 4;
    for _ in 1..qd {
        at = read_name(msg, at, &mut name)?.1 + 4;
    }
    let mut out = [None; MAX_RECORDS];
    let mut n = 0;
    for _ in 0..an {
        at = read_name(msg, at, &mut name)?.1;
        let (rtype, class) = (u16_at(at)?, u16_at(at + 2)?);
        let ttl = u32::from_be_bytes(msg.get(at + 4..at + 8)?.try_into().ok()?);
        let rdlen = usize::from(u16_at(at + 8)?);
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        at += 10 + rdlen;
        // Records other than addresses (the CNAME chain from the question) are skipped: every
        // address in the answer to a portal question is the portal's.
        let addr = match (rtype, class, rdata.len()) {
            (TYPE_A, CLASS_IN, 4) => IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?),
            (TYPE_AAAA, CLASS_IN, 16) => IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?),
            _ => continue,
        };
        if n < MAX_RECORDS {
            out[n] = Some((addr, ttl));
            n += 1;
        }
    }
    Some(out)
}

/// Reads a (possibly compressed) domain name at `at` into `out` as lower-case dotted text.
/// Returns its length and the offset just past the name where it starts.
fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; 256]) -> Option<(usize, usize)> {
    let mut len = 0;
    let mut end = None;
    // Each pointer must go backwards, so following them terminates; the count is a second guard.
    let mut jumps = 0;
    loop {
        let b = *msg.get(at)?;
        match b & 0xc0 {
            0x00 if b == 0 => {
                return Some((len, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + usize::from(b))?;
                if len != 0 {
                    *out.get_mut(len)? = b'.';
                    len += 1;
                }
                for c in label {
                    *out.get_mut(len)? = c.to_ascii_lowercase();
                    len += 1;
                }
                at += 1 + usize::from(b);
            }
            0xc0 => {
                let target = usize::from(u16::from_be_bytes([b & 0x3f, *msg.get(at + 1)?]));
                if target >= at || jumps > 32 {
                    return None;
                }
                end.get_or_insert(at + 2);
                jumps += 1;
                at = target;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A response for `name` with a CNAME to `alias` and then address records.
    pub(crate) fn dns_response(name: &str, addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x81,
            0x80,
            0,
            1,
            0,
            (addrs.len() + 1) as u8,
            0,
            0,
            0,
            0,
        ];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        // CNAME of the question (pointer to offset 12) to "cdn" + pointer to the question.
        m.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 12,
        ]);
        for a in addrs {
            m.extend_from_slice(&[0xc0, 12]);
            match a {
                IpAddr::V4(v4) => {
                    m.extend_from_slice(&[0, 1, 0, 1]);
                    m.extend_from_slice(&ttl.to_be_bytes());
                    m.extend_from_slice(&[0, 4]);
                    m.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    m.extend_from_slice(&[0, 28, 0, 1]);
                    m.extend_from_slice(&ttl.to_be_bytes());
                    m.extend_from_slice(&[0, 16]);
                    m.extend_from_slice(&v6.octets());
                }
            }
        }
        m
    }

    #[test]
    fn learns_portal_addresses_until_their_ttl() {
        let mut g = Garden::new(&[], &[], &["portal.example".to_string()]);
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80));
        let now = Timestamp::from_secs(1000);
        assert_eq!(
            g.snoop_dns(&dns_response("Portal.Example", &[v4, v6], 300), now),
            2
        );
        assert!(g.is_portal(ip_key(v4), now));
        assert!(g.is_portal(ip_key(v6), Timestamp::from_secs(1299)));
        assert!(!g.is_portal(ip_key(v6), Timestamp::from_secs(1300)));
    }

    #[test]
    fn other_names_and_garbage_teach_nothing() {
        let mut g = Garden::new(&[], &[], &["portal.example".to_string()]);
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 81));
        let now = Timestamp::from_secs(1);
        assert_eq!(
            g.snoop_dns(&dns_response("evil.example", &[v4], 300), now),
            0
        );
        let good = dns_response("portal.example", &[v4], 300);
        for cut in 0..good.len() {
            g.snoop_dns(&good[..cut], now);
        }
        assert!(!g.is_portal(ip_key(v4), now));
        // A pointer loop.
        let mut looped = good.clone();
        looped[12] = 0xc0;
        looped[13] = 12;
        assert_eq!(g.snoop_dns(&looped, now), 0);
    }
}
