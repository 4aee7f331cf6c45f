//! The sessions by subscriber and by address, kept beside [`super::sessions::Sessions`]' entries
//! so that a CCR-I, a RAR by subscriber or a clash check costs the same at a million sessions as
//! at ten (a scan of every session made attaching N subscribers cost N² compares).

use crate::policy::{IpPrefix, SessionConfig, SessionId, SubscriberId};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Default)]
pub(super) struct Index {
    subscriber: HashMap<SubscriberId, SessionId>,
    ipv4: HashMap<Ipv4Addr, SessionId>,
    /// IPv6 prefixes by their network address, with their length. Sessions' prefixes never
    /// overlap (a clash is refused), so the one that may contain an address is the greatest at
    /// or below it.
    ipv6: BTreeMap<u128, (u8, SessionId)>,
}

fn v6(p: &IpPrefix) -> Option<(u128, u128)> {
    match p.addr {
        IpAddr::V6(a) => {
            let start = u128::from(a);
            let host = u128::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
            Some((start, start | host))
        }
        IpAddr::V4(_) => None,
    }
}

impl Index {
    pub(super) fn add(&mut self, id: SessionId, c: &SessionConfig) {
        self.subscriber.insert(c.subscriber.clone(), id);
        if let Some(a) = c.ipv4 {
            self.ipv4.insert(a, id);
        }
        if let Some((start, _)) = c.ipv6.as_ref().and_then(v6) {
            self.ipv6.insert(start, (c.ipv6.map_or(0, |p| p.len), id));
        }
    }

    /// Forgets what `c` of session `id` was indexed under (and only where it is still `id`'s).
    pub(super) fn remove(&mut self, id: SessionId, c: &SessionConfig) {
        if self.subscriber.get(&c.subscriber) == Some(&id) {
            self.subscriber.remove(&c.subscriber);
        }
        if let Some(a) = c.ipv4 {
            if self.ipv4.get(&a) == Some(&id) {
                self.ipv4.remove(&a);
            }
        }
        if let Some((start, _)) = c.ipv6.as_ref().and_then(v6) {
            if self.ipv6.get(&start).is_some_and(|&(_, i)| i == id) {
                self.ipv6.remove(&start);
            }
        }
    }

    pub(super) fn by_subscriber(&self, sub: &SubscriberId) -> Option<SessionId> {
        self.subscriber.get(sub).copied()
    }

    pub(super) fn by_address(&self, ue: IpAddr) -> Option<SessionId> {
        match ue {
            IpAddr::V4(a) => self.ipv4.get(&a).copied(),
            IpAddr::V6(a) => {
                let a = u128::from(a);
                let (&start, &(len, id)) = self.ipv6.range(..=a).next_back()?;
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                (a <= start | host).then_some(id)
            }
        }
    }

    /// A session whose IPv4 address is `ipv4` or whose IPv6 prefix overlaps `ipv6`.
    pub(super) fn clash(
        &self,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<&IpPrefix>,
    ) -> Option<SessionId> {
        if let Some(id) = ipv4.and_then(|a| self.ipv4.get(&a)) {
            return Some(*id);
        }
        let (start, end) = ipv6.and_then(v6)?;
        // A prefix starting inside this one, or the one before it reaching into it.
        if let Some((_, &(_, id))) = self.ipv6.range(start..=end).next() {
            return Some(id);
        }
        let (&s, &(len, id)) = self.ipv6.range(..start).next_back()?;
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        (start <= s | host).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DefaultRule;

    fn config(sub: &str, v4: Option<&str>, v6: Option<&str>) -> SessionConfig {
        SessionConfig {
            subscriber: SubscriberId::parse(sub).unwrap(),
            ipv4: v4.map(|a| a.parse().unwrap()),
            ipv6: v6.map(|p| {
                let (a, l) = p.split_once('/').unwrap();
                IpPrefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
            }),
            rules: Vec::new(),
            predefined: Vec::new(),
            default_rule: DefaultRule::Forward { rating_group: 0 },
            monitoring: Vec::new(),
            credits: Vec::new(),
        }
    }

    #[test]
    fn finds_sessions_by_subscriber_address_and_prefix_and_forgets_them() {
        let mut ix = Index::default();
        let a = config(
            "imsi-001010000000001",
            Some("10.0.0.1"),
            Some("2001:db8:1::/64"),
        );
        let b = config("imsi-001010000000002", None, Some("2001:db8:2::/48"));
        ix.add(SessionId(1), &a);
        ix.add(SessionId(2), &b);
        assert_eq!(ix.by_subscriber(&a.subscriber), Some(SessionId(1)));
        assert_eq!(
            ix.by_address("10.0.0.1".parse().unwrap()),
            Some(SessionId(1))
        );
        assert_eq!(ix.by_address("10.0.0.2".parse().unwrap()), None);
        assert_eq!(
            ix.by_address("2001:db8:1::9".parse().unwrap()),
            Some(SessionId(1))
        );
        assert_eq!(ix.by_address("2001:db8:1:1::9".parse().unwrap()), None);
        assert_eq!(
            ix.by_address("2001:db8:2:ff::1".parse().unwrap()),
            Some(SessionId(2))
        );
        assert_eq!(ix.by_address("2001:db8:3::1".parse().unwrap()), None);

        let p = |s: &str| config("imsi-001010000000009", None, Some(s)).ipv6.unwrap();
        // Inside b, covering b, inside a, covering both, and beside them.
        assert_eq!(
            ix.clash(None, Some(&p("2001:db8:2:5::/64"))),
            Some(SessionId(2))
        );
        assert_eq!(
            ix.clash(None, Some(&p("2001:db8::/32"))),
            Some(SessionId(1))
        );
        assert_eq!(
            ix.clash(None, Some(&p("2001:db8:1::/80"))),
            Some(SessionId(1))
        );
        assert_eq!(ix.clash(None, Some(&p("2001:db8:3::/48"))), None);
        assert_eq!(
            ix.clash(Some("10.0.0.1".parse().unwrap()), None),
            Some(SessionId(1))
        );

        ix.remove(SessionId(1), &a);
        assert_eq!(ix.by_subscriber(&a.subscriber), None);
        assert_eq!(ix.by_address("10.0.0.1".parse().unwrap()), None);
        assert_eq!(ix.clash(None, Some(&p("2001:db8:1::/80"))), None);
        // Removing under another id leaves the entry alone.
        ix.remove(SessionId(9), &b);
        assert_eq!(ix.by_subscriber(&b.subscriber), Some(SessionId(2)));
    }
}
