//! The immutable policy snapshot the data path reads: sessions indexed by UE address, each with
//! its PCC rules (dynamic and active predefined) compiled into one classifier per direction.
//!
//! Built once per policy change by the single writer, then shared read-only (`Arc`) with every
//! worker. Building never fails on a valid [`Config`]; all validation happened there.

use super::config::{split_http_url, Config, GatewaySettings};
use super::flow::{AddressMatch, FilterDirection, FlowDescription, PortRange};
use super::model::{
    DefaultRule, FlowDirection, FlowStatus, PccRule, RedirectAddressType, RedirectInformation,
    SessionConfig, SubscriberId,
};
use crate::classify::{self, Classifier, Key, Linear, PackedTuples, Ports, Prefix, Rule};
use crate::time::Timestamp;
use crate::wire::Direction;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Stable identity of a session across snapshots (counters are keyed by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// Index of a rule in [`PolicySnapshot::rules`]; valid for that snapshot only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(pub u32);

/// Below this many classifier entries a linear scan beats any structure.
const LINEAR_LIMIT: usize = 24;

/// The per-direction lookup of one session.
enum SessionClassifier {
    Linear(Linear),
    Packed(PackedTuples),
}

impl SessionClassifier {
    fn build(rules: &[Rule]) -> Self {
        if rules.len() <= LINEAR_LIMIT {
            SessionClassifier::Linear(Linear::build(rules))
        } else {
            SessionClassifier::Packed(PackedTuples::build(rules))
        }
    }

    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        match self {
            SessionClassifier::Linear(c) => c.classify_from(key, from),
            SessionClassifier::Packed(c) => c.classify_from(key, from),
        }
    }
}

struct DirectionalRules {
    classifier: SessionClassifier,
    /// Classifier entry index -> rule.
    entries: Vec<RuleId>,
}

impl DirectionalRules {
    fn lookup(
        &self,
        rules: &[CompiledRule],
        key: &Key,
        now: Timestamp,
        timed: bool,
    ) -> Option<RuleId> {
        let mut from = 0;
        loop {
            let entry = self.classifier.classify_from(key, from)?;
            let id = self.entries[entry as usize];
            if !timed || rules[id.0 as usize].rule.active_at(now) {
                return Some(id);
            }
            from = entry + 1;
        }
    }
}

/// A PCC rule as the data path uses it.
pub struct CompiledRule {
    pub rule: Arc<PccRule>,
    /// `None` for a predefined rule (shared by sessions), else the session owning it.
    pub session: Option<SessionId>,
}

impl CompiledRule {
    /// Whether the gate lets a packet of this direction through.
    pub fn gate_open(&self, direction: Direction) -> bool {
        matches!(
            (self.rule.flow_status, direction),
            (FlowStatus::Enabled, _)
                | (FlowStatus::EnabledUplink, Direction::Uplink)
                | (FlowStatus::EnabledDownlink, Direction::Downlink)
        )
    }
}

/// A session as the data path sees it.
pub struct Session {
    pub id: SessionId,
    pub subscriber: SubscriberId,
    pub ipv4: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<super::flow::IpPrefix>,
    pub default_rule: DefaultRule,
    /// Every rule of the session (dynamic and predefined), best precedence first.
    pub rules: Vec<RuleId>,
    /// Its rules carrying Redirect-Information with Redirect-Support ENABLED, best precedence
    /// first: while one is active the whole session is under redirect.
    pub redirect_rules: Vec<RuleId>,
    /// Usage-Monitoring-Information in force, as the session's config has it.
    pub monitoring: Vec<super::model::MonitoringGrant>,
    uplink: DirectionalRules,
    downlink: DirectionalRules,
    /// Activation/deactivation instants of its rules, sorted; classification results are valid
    /// only until the next one.
    boundaries: Vec<Timestamp>,
}

impl Session {
    /// The first instant after `now` at which a rule of this session turns on or off.
    pub fn next_boundary(&self, now: Timestamp) -> Timestamp {
        let i = self.boundaries.partition_point(|b| *b <= now);
        self.boundaries.get(i).copied().unwrap_or(Timestamp::MAX)
    }
}

/// Everything the data path needs to enforce policy, frozen.
pub struct PolicySnapshot {
    /// Increases with every snapshot; flow-cache entries from older snapshots are stale.
    pub version: u64,
    pub settings: GatewaySettings,
    pools: Vec<Prefix>,
    pub rules: Vec<CompiledRule>,
    pub sessions: Vec<Session>,
    by_ipv4: FxHashMap<u32, u32>,
    /// IPv6 sessions by (prefix length, masked address); few distinct lengths in practice.
    ipv6_lengths: Vec<u8>,
    by_ipv6: FxHashMap<(u8, u128), u32>,
    /// No session of this or an earlier snapshot has an id at or above this.
    next_session_id: u32,
    /// The portal's host names (configured, and those of redirect rules' URLs), each once.
    portal_hosts: Vec<String>,
    /// The portal's addresses known without resolving (configured, and redirect rules' literal
    /// addresses), each once.
    portal_addresses: Vec<IpAddr>,
}

/// Where a redirect sends the subscriber, as the walled garden needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortalHost {
    /// A host name: lower case, without a trailing dot.
    Name(String),
    Address(IpAddr),
}

impl PortalHost {
    /// A host as written in a URL or the configuration.
    pub fn parse(host: &str) -> PortalHost {
        let host = host.trim_end_matches('.');
        match host.parse::<IpAddr>() {
            Ok(addr) => PortalHost::Address(addr),
            Err(_) => PortalHost::Name(host.to_ascii_lowercase()),
        }
    }

    /// The portal a Redirect-Information points at; `None` for a SIP URI (no web portal) or an
    /// address that is not a URL with a host.
    pub fn of(info: &RedirectInformation) -> Option<PortalHost> {
        match info.address_type() {
            RedirectAddressType::Url => {
                split_http_url(info.server_address()).map(|(host, _)| PortalHost::parse(&host))
            }
            RedirectAddressType::Ipv4 | RedirectAddressType::Ipv6 => {
                Some(PortalHost::parse(info.server_address()))
            }
            RedirectAddressType::SipUri => None,
        }
    }
}

impl PolicySnapshot {
    /// Compiles a validated configuration. Session ids are their positions in the config.
    pub fn build(config: &Config, version: u64) -> PolicySnapshot {
        let sessions: Vec<(SessionId, &SessionConfig)> = config
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (SessionId(i as u32), s))
            .collect();
        Self::build_from(&config.gateway, &config.predefined, &sessions, version)
    }

    /// Compiles a new configuration to replace `previous`, keeping each subscriber's session id:
    /// usage is counted per session id, so a reordered or edited file must not hand one
    /// subscriber's counters to another. New subscribers get ids never used before.
    pub fn rebuild(config: &Config, version: u64, previous: &PolicySnapshot) -> PolicySnapshot {
        let known: FxHashMap<&SubscriberId, SessionId> = previous
            .sessions
            .iter()
            .map(|s| (&s.subscriber, s.id))
            .collect();
        let mut next = previous.next_session_id;
        let sessions: Vec<(SessionId, &SessionConfig)> = config
            .sessions
            .iter()
            .map(|s| {
                let id = known.get(&s.subscriber).copied().unwrap_or_else(|| {
                    next += 1;
                    SessionId(next - 1)
                });
                (id, s)
            })
            .collect();
        let mut snapshot =
            Self::build_from(&config.gateway, &config.predefined, &sessions, version);
        snapshot.next_session_id = snapshot.next_session_id.max(next);
        snapshot
    }

    /// Compiles sessions with ids chosen by the caller (the session manager keeps them stable).
    pub fn build_from(
        settings: &GatewaySettings,
        predefined: &[PccRule],
        sessions: &[(SessionId, &SessionConfig)],
        version: u64,
    ) -> PolicySnapshot {
        let mut rules: Vec<CompiledRule> = predefined
            .iter()
            .map(|r| CompiledRule {
                rule: Arc::new(r.clone()),
                session: None,
            })
            .collect();
        let predefined_by_name: FxHashMap<&str, RuleId> = predefined
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), RuleId(i as u32)))
            .collect();

        let mut compiled = Vec::with_capacity(sessions.len());
        let mut by_ipv4 = FxHashMap::default();
        let mut by_ipv6 = FxHashMap::default();
        let mut ipv6_lengths = Vec::new();
        for (index, (id, s)) in sessions.iter().enumerate() {
            let mut ids: Vec<RuleId> = Vec::new();
            for r in &s.rules {
                ids.push(RuleId(rules.len() as u32));
                rules.push(CompiledRule {
                    rule: Arc::new(r.clone()),
                    session: Some(*id),
                });
            }
            ids.extend(
                s.predefined
                    .iter()
                    .filter_map(|name| predefined_by_name.get(name.as_str()).copied()),
            );
            // Lower precedence wins; ties go to dynamic rules, then to the name, so the order
            // never depends on how the rules happened to be listed.
            ids.sort_by(|a, b| {
                let (ra, rb) = (&rules[a.0 as usize], &rules[b.0 as usize]);
                (ra.rule.precedence, ra.session.is_none(), &ra.rule.name).cmp(&(
                    rb.rule.precedence,
                    rb.session.is_none(),
                    &rb.rule.name,
                ))
            });
            ids.dedup();
            let (uplink, downlink) = compile_session(s, &ids, &rules);
            let mut boundaries: Vec<Timestamp> = ids
                .iter()
                .flat_map(|r| {
                    let rule = &rules[r.0 as usize].rule;
                    [rule.activation, rule.deactivation]
                })
                .flatten()
                .collect();
            boundaries.sort();
            boundaries.dedup();
            if let Some(a) = s.ipv4 {
                by_ipv4.insert(u32::from(a), index as u32);
            }
            if let Some(p) = s.ipv6 {
                let key = Prefix::from_ip(p.addr, p.len);
                by_ipv6.insert((key.len, key.addr), index as u32);
                if !ipv6_lengths.contains(&key.len) {
                    ipv6_lengths.push(key.len);
                }
            }
            let redirect_rules = ids
                .iter()
                .copied()
                .filter(|r| {
                    rules[r.0 as usize]
                        .rule
                        .redirect
                        .as_ref()
                        .is_some_and(|i| i.enabled())
                })
                .collect();
            compiled.push(Session {
                id: *id,
                subscriber: s.subscriber.clone(),
                ipv4: s.ipv4,
                ipv6: s.ipv6,
                default_rule: s.default_rule,
                rules: ids,
                redirect_rules,
                monitoring: s.monitoring.clone(),
                uplink,
                downlink,
                boundaries,
            });
        }
        // Longest prefixes first, so the most specific session wins.
        ipv6_lengths.sort_by(|a, b| b.cmp(a));
        let (portal_hosts, portal_addresses) = portals(settings, &rules);
        PolicySnapshot {
            version,
            settings: settings.clone(),
            pools: settings
                .ue_pools
                .iter()
                .map(|p| Prefix::from_ip(p.addr, p.len))
                .collect(),
            rules,
            sessions: compiled,
            by_ipv4,
            ipv6_lengths,
            by_ipv6,
            next_session_id: sessions.iter().map(|(id, _)| id.0 + 1).max().unwrap_or(0),
            portal_hosts,
            portal_addresses,
        }
    }

    /// Host names whose addresses belong in the walled garden: the configured `portal_hosts`
    /// and the hosts of redirect rules' URLs, for whoever resolves them at the edge.
    pub fn portal_hosts(&self) -> &[String] {
        &self.portal_hosts
    }

    /// Portal addresses known without resolving: the configured `portal_addresses` and redirect
    /// rules' literal addresses.
    pub fn portal_addresses(&self) -> &[IpAddr] {
        &self.portal_addresses
    }

    /// Whether an address (in classifier form) belongs to a UE pool.
    #[inline]
    pub fn in_ue_pool(&self, addr: u128) -> bool {
        self.pools.iter().any(|p| p.contains(addr))
    }

    /// The session index owning a UE address (in classifier form).
    #[inline]
    pub fn session_index(&self, addr: u128) -> Option<u32> {
        if addr >> 32 == 0xffff {
            return self.by_ipv4.get(&(addr as u32)).copied();
        }
        self.ipv6_lengths.iter().find_map(|len| {
            self.by_ipv6
                .get(&(*len, addr & classify::mask(*len)))
                .copied()
        })
    }

    pub fn session(&self, index: u32) -> &Session {
        &self.sessions[index as usize]
    }

    pub fn rule(&self, id: RuleId) -> &CompiledRule {
        &self.rules[id.0 as usize]
    }

    /// The rule that applies to a packet of `session`, given its key in subscriber orientation:
    /// source = the remote end, destination = the UE, as a `permit out` filter reads.
    pub fn classify(
        &self,
        session: &Session,
        direction: Direction,
        key: &Key,
        now: Timestamp,
    ) -> Option<RuleId> {
        let timed = !session.boundaries.is_empty();
        match direction {
            Direction::Uplink => session.uplink.lookup(&self.rules, key, now, timed),
            Direction::Downlink => session.downlink.lookup(&self.rules, key, now, timed),
        }
    }
}

/// The walled garden's portal, from the settings and every rule carrying Redirect-Information.
fn portals(settings: &GatewaySettings, rules: &[CompiledRule]) -> (Vec<String>, Vec<IpAddr>) {
    let mut hosts: Vec<String> = Vec::new();
    let mut addresses: Vec<IpAddr> = Vec::new();
    let configured = settings
        .redirect
        .portal_hosts
        .iter()
        .map(|h| PortalHost::parse(h));
    let addressed = settings
        .redirect
        .portal_addresses
        .iter()
        .map(|a| PortalHost::Address(*a));
    let of_rules = rules
        .iter()
        .filter_map(|r| r.rule.redirect.as_ref().and_then(PortalHost::of));
    for portal in configured.chain(addressed).chain(of_rules) {
        match portal {
            PortalHost::Name(n) if !hosts.contains(&n) => hosts.push(n),
            PortalHost::Address(a) if !addresses.contains(&a) => addresses.push(a),
            _ => {}
        }
    }
    (hosts, addresses)
}

fn compile_session(
    s: &SessionConfig,
    ids: &[RuleId],
    rules: &[CompiledRule],
) -> (DirectionalRules, DirectionalRules) {
    let mut up = (Vec::new(), Vec::new());
    let mut down = (Vec::new(), Vec::new());
    // A rule carrying Redirect-Information is enforced by the redirect stage, before these
    // rules; it never classifies traffic itself, so lifting a redirect leaves exactly the other
    // rules in force.
    let normal = ids.iter().filter(|id| {
        !rules[id.0 as usize]
            .rule
            .redirect
            .as_ref()
            .is_some_and(|r| r.enabled())
    });
    for id in normal {
        for filter in &rules[id.0 as usize].rule.filters {
            let expanded = expand_filter(&filter.flow, s);
            if matches!(
                filter.direction,
                FlowDirection::Uplink | FlowDirection::Bidirectional
            ) {
                for r in &expanded {
                    up.0.push(*r);
                    up.1.push(*id);
                }
            }
            if matches!(
                filter.direction,
                FlowDirection::Downlink | FlowDirection::Bidirectional
            ) {
                for r in &expanded {
                    down.0.push(*r);
                    down.1.push(*id);
                }
            }
        }
    }
    let finish = |(rules, entries): (Vec<Rule>, Vec<RuleId>)| DirectionalRules {
        classifier: SessionClassifier::build(&rules),
        entries,
    };
    (finish(up), finish(down))
}

/// Turns one Flow-Description into classifier rules in subscriber orientation: `assigned`
/// becomes the session's addresses, port lists become one rule per range pair.
pub(crate) fn expand_filter(flow: &FlowDescription, s: &SessionConfig) -> Vec<Rule> {
    // In subscriber orientation the remote end is `from` for `out` and `to` for `in`.
    let (remote, remote_ports, ue, ue_ports) = match flow.direction {
        FilterDirection::Out => (&flow.src, &flow.src_ports, &flow.dst, &flow.dst_ports),
        FilterDirection::In => (&flow.dst, &flow.dst_ports, &flow.src, &flow.src_ports),
    };
    let remote_prefixes = prefixes(remote, s);
    let ue_prefixes = prefixes(ue, s);
    let mut out = Vec::new();
    for rp in &remote_prefixes {
        for up in &ue_prefixes {
            // An IPv4 prefix and an IPv6 prefix can never match the same packet.
            if rp.len > 0 && up.len > 0 && (rp.addr >> 32 == 0xffff) != (up.addr >> 32 == 0xffff) {
                continue;
            }
            for rport in ports(remote_ports) {
                for uport in ports(ue_ports) {
                    out.push(Rule {
                        src: *rp,
                        dst: *up,
                        src_ports: rport,
                        dst_ports: uport,
                        protocol: flow.protocol,
                    });
                }
            }
        }
    }
    out
}

fn prefixes(m: &AddressMatch, s: &SessionConfig) -> Vec<Prefix> {
    match m {
        AddressMatch::Any => vec![Prefix::ANY],
        AddressMatch::Prefix(p) => vec![Prefix::from_ip(p.addr, p.len)],
        AddressMatch::Assigned => s
            .ipv4
            .map(|a| Prefix::from_ip(IpAddr::V4(a), 32))
            .into_iter()
            .chain(s.ipv6.map(|p| Prefix::from_ip(p.addr, p.len)))
            .collect(),
    }
}

fn ports(list: &[PortRange]) -> Vec<Ports> {
    if list.is_empty() {
        vec![Ports::ANY]
    } else {
        list.iter().map(|r| Ports { lo: r.lo, hi: r.hi }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ip_key;

    #[test]
    fn portal_hosts_and_addresses_come_from_the_settings_and_the_redirect_rules() {
        let text = r#"
[redirect]
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]

[[predefined_rule]]
name = "by-url"
precedence = 1
redirect = { address_type = "URL", server_address = "http://Top-Up.Example:8080/pay" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "by-address"
precedence = 2
redirect = { address_type = "IPV6_ADDRESS", server_address = "2001:db8::80" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "same-portal"
precedence = 3
redirect = { address_type = "URL", server_address = "http://portal.example/again" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "literal-url"
precedence = 4
redirect = { address_type = "URL", server_address = "http://192.0.2.81/pay" }
flow = [{ description = "permit out ip from any to assigned" }]
"#;
        let snap = PolicySnapshot::build(&Config::from_toml_str(text, "t").unwrap(), 1);
        assert_eq!(snap.portal_hosts(), ["portal.example", "top-up.example"]);
        let addrs: Vec<String> = snap
            .portal_addresses()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addrs, ["192.0.2.80", "2001:db8::80", "192.0.2.81"]);
    }

    /// A session with more filters than the linear limit uses the packed tuple space; its
    /// answers must equal a first-match scan of the same rules in precedence order.
    #[test]
    fn a_rebuild_keeps_each_subscriber_s_session_id() {
        let doc = |order: &[(&str, &str)]| {
            let mut text = String::from("[gateway]\nue_pools = [\"10.45.0.0/16\"]\n");
            for (sub, addr) in order {
                text.push_str(&format!(
                    "[[session]]\nsubscriber = \"{sub}\"\nipv4 = \"{addr}\"\n"
                ));
            }
            Config::from_toml_str(&text, "t.toml").unwrap()
        };
        let first = PolicySnapshot::build(
            &doc(&[
                ("imsi-1", "10.45.0.1"),
                ("imsi-2", "10.45.0.2"),
                ("imsi-3", "10.45.0.3"),
            ]),
            1,
        );
        let ids = |s: &PolicySnapshot| -> Vec<(String, u32)> {
            let mut v: Vec<_> = s
                .sessions
                .iter()
                .map(|x| (x.subscriber.to_string(), x.id.0))
                .collect();
            v.sort();
            v
        };
        // Reordered, one removed, one added: the survivors keep their ids, the newcomer gets
        // one nobody had.
        let second = PolicySnapshot::rebuild(
            &doc(&[
                ("imsi-4", "10.45.0.4"),
                ("imsi-3", "10.45.0.3"),
                ("imsi-1", "10.45.0.1"),
            ]),
            2,
            &first,
        );
        assert_eq!(
            ids(&second),
            [
                ("imsi-1".into(), 0),
                ("imsi-3".into(), 2),
                ("imsi-4".into(), 3)
            ]
        );
        // imsi-2 comes back after being gone: a new id, so its old counters are not resumed by
        // mistake under a different session.
        let third = PolicySnapshot::rebuild(
            &doc(&[("imsi-2", "10.45.0.2"), ("imsi-4", "10.45.0.4")]),
            3,
            &second,
        );
        assert_eq!(ids(&third), [("imsi-2".into(), 4), ("imsi-4".into(), 3)]);
    }

    #[test]
    fn large_sessions_classify_like_a_first_match_scan() {
        let mut text = String::from("[gateway]\nue_pools = [\"10.45.0.0/16\"]\n");
        let mut names = Vec::new();
        for i in 0..40u32 {
            // Precedence runs against the listing order, so sorting matters.
            text.push_str(&format!(
                "[[predefined_rule]]\nname = \"r{i}\"\nprecedence = {}\nrating_group = {i}\nflow = [{{ description = \"permit out 6 from 198.51.{}.0/24 {} to assigned\" }}]\n",
                1000 - i * 10,
                i % 4,
                8000 + i % 7
            ));
            names.push(format!("\"r{i}\""));
        }
        text.push_str(&format!(
            "[[session]]\nsubscriber = \"imsi-1\"\nipv4 = \"10.45.0.2\"\npredefined = [{}]\n",
            names.join(", ")
        ));
        let config = Config::from_toml_str(&text, "t.toml").unwrap();
        let snap = PolicySnapshot::build(&config, 1);
        let session = snap.session(
            snap.session_index(ip_key("10.45.0.2".parse().unwrap()))
                .unwrap(),
        );
        assert!(matches!(
            session.downlink.classifier,
            SessionClassifier::Packed(_)
        ));
        let ue = ip_key("10.45.0.2".parse().unwrap());
        for net in 0..5u32 {
            for port in 7998..8010u16 {
                let remote = ip_key(format!("198.51.{net}.9").parse().unwrap());
                let key = Key {
                    src: remote,
                    dst: ue,
                    src_port: port,
                    dst_port: 50000,
                    protocol: 6,
                };
                let got = snap
                    .classify(session, Direction::Downlink, &key, Timestamp(0))
                    .map(|id| snap.rule(id).rule.name.clone());
                // The reference: the lowest precedence among rules whose filter matches.
                let want = (0..40u32)
                    .filter(|i| i % 4 == net && 8000 + u32::from(*i as u16 % 7) == u32::from(port))
                    .min_by_key(|i| 1000 - i * 10)
                    .map(|i| format!("r{i}"));
                assert_eq!(got, want, "198.51.{net}.9 port {port}");
            }
        }
    }
}
