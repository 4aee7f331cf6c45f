//! The walled garden: what a redirected subscriber may still reach — the portal (addresses known
//! up front, handed in by whoever resolves the portal's name, or learned from DNS answers for
//! the portal's host names seen in the data path) and the configured DNS resolvers.
//!
//! Learned addresses expire with their DNS TTL; the table is bounded.

use crate::packet::ip_key;
use crate::time::Timestamp;
use crate::wire::dns;
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Learned portal addresses kept at most; more are refused until some expire.
const MAX_LEARNED: usize = 1024;
/// A learned address outlives a very short TTL: connections started just before it expired
/// must still reach the portal.
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(86_400);

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

    /// Takes new settings (a policy reload) without forgetting what was learned: learned
    /// addresses stay unless a host name they may have been learned for is gone.
    pub fn reconfigure(&mut self, fixed: &[IpAddr], resolvers: &[IpAddr], hosts: &[String]) {
        if self.hosts.iter().any(|h| !hosts.contains(h)) {
            // Addresses are not kept with the name they answered, so none can be kept safely;
            // whoever resolves at the edge hands the live ones in again.
            self.learned.clear();
        }
        self.fixed = fixed.iter().map(|a| ip_key(*a)).collect();
        self.resolvers = resolvers.iter().map(|a| ip_key(*a)).collect();
        self.hosts = hosts.to_vec();
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

    /// Adds a portal address (from a redirect address given as an IP address).
    pub fn add_address(&mut self, addr: IpAddr) {
        self.fixed.insert(ip_key(addr));
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
        let Some(records) = dns::answers(msg, &self.hosts) else {
            return 0;
        };
        let mut learned = 0;
        for (addr, ttl) in records.iter() {
            let ttl = Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
            if self.learn(ip_key(addr), now.saturating_add(ttl), now) {
                learned += 1;
            }
        }
        learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::tests::dns_response;
    use std::net::{Ipv4Addr, Ipv6Addr};

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
    fn a_reconfiguration_keeps_learned_addresses_unless_their_name_is_gone() {
        let hosts = ["portal.example".to_string()];
        let mut g = Garden::new(&[], &[], &hosts);
        let learned = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
        let fixed = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 81));
        let now = Timestamp::from_secs(1);
        assert!(g.learn(ip_key(learned), Timestamp::from_secs(100), now));
        let more = ["portal.example".to_string(), "pay.example".to_string()];
        g.reconfigure(&[fixed], &[], &more);
        assert!(g.is_portal(ip_key(learned), now) && g.is_portal(ip_key(fixed), now));
        g.reconfigure(&[], &[], &more[1..]);
        assert!(!g.is_portal(ip_key(learned), now) && !g.is_portal(ip_key(fixed), now));
        assert_eq!(g.hosts(), ["pay.example"]);
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
