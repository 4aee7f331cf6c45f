//! The immutable policy snapshot the data path reads: sessions indexed by UE address, each with
//! its PCC rules (its own dynamic rules and the shared predefined ones) compiled into one
//! classifier per direction.
//!
//! Built by the single writer, then shared read-only (`Arc`) with every worker. A change to a
//! few sessions ([`PolicySnapshot::with_changes`]) compiles only those sessions and shares
//! everything else with the snapshot it came from, so it costs in proportion to the sessions
//! changed, not to all of them. Building never fails on a valid [`Config`]; all validation
//! happened there.
//!
//! Every compiled session carries a `stamp` unique in the process: a flow cache entry made
//! under a session stays valid across snapshots for as long as the session at that slot has the
//! same stamp, so installing rules for one subscriber leaves every other subscriber's flows
//! cached. A full build (start, SIGHUP) stamps every session afresh.

mod compile;
mod persist;

use super::config::{split_http_url, Config, GatewaySettings};
use super::model::{
    CreditGrant, FlowStatus, MonitoringGrant, PccRule, RedirectAddressType, RedirectInformation,
    SessionConfig, SubscriberId,
};
use crate::classify::{self, Key, Prefix};
use crate::time::Timestamp;
use crate::wire::Direction;
pub(crate) use compile::expand_filter;
use compile::{Classifiers, SharedClassifiers};
use persist::{FreeSlots, ShardedMap, Slots};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Stable identity of a session across snapshots (counters are keyed by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// A rule of one session: its position in [`Session::rules`]. Valid for that compiled session
/// only (the session's `stamp` names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(pub u32);

/// Stamps handed to compiled sessions; unique in the process, so a stamp seen once never names
/// another compilation, whichever snapshot or build it comes from.
static STAMPS: AtomicU64 = AtomicU64::new(1);

/// `n` fresh stamps, the first returned.
fn stamps(n: usize) -> u64 {
    STAMPS.fetch_add(n as u64, Ordering::Relaxed)
}

/// A PCC rule as the data path uses it.
pub struct CompiledRule {
    /// A predefined rule is shared by every session that activates it, never copied.
    pub rule: Arc<PccRule>,
    pub predefined: bool,
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
    /// Where the snapshot keeps it: the index [`PolicySnapshot::session`] takes. Stays while
    /// the session lives; a removed session's slot goes to a later one.
    pub slot: u32,
    /// Unique to this compilation of the session: a flow decided under it is still decided
    /// right while the session at its slot has the same stamp.
    pub stamp: u64,
    pub subscriber: SubscriberId,
    pub ipv4: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<super::flow::IpPrefix>,
    pub default_rule: super::model::DefaultRule,
    /// Every rule of the session (dynamic and predefined), best precedence first; a
    /// [`RuleId`] is a position here.
    pub rules: Vec<CompiledRule>,
    /// Its rules carrying Redirect-Information with Redirect-Support ENABLED, best precedence
    /// first: while one is active the whole session is under redirect.
    pub redirect_rules: Vec<RuleId>,
    /// Usage-Monitoring-Information in force, as configured or installed.
    pub monitoring: Vec<MonitoringGrant>,
    /// Credit in force per rating group, as configured or installed (online charging).
    pub credits: Vec<CreditGrant>,
    /// Shared with every session of the same predefined rules and none of its own.
    classifiers: Arc<Classifiers>,
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

    /// One of this session's rules. `id` comes from this session (a classification, its
    /// `redirect_rules`): anything else is a bug, and panics like an index out of range.
    #[inline]
    pub fn rule(&self, id: RuleId) -> &CompiledRule {
        &self.rules[id.0 as usize]
    }

    /// The rule that applies to a packet, given its key in subscriber orientation: source =
    /// the remote end, destination = the UE, as a `permit out` filter reads.
    pub fn classify(&self, direction: Direction, key: &Key, now: Timestamp) -> Option<RuleId> {
        let timed = !self.boundaries.is_empty();
        match direction {
            Direction::Uplink => self.classifiers.uplink.lookup(&self.rules, key, now, timed),
            Direction::Downlink => self
                .classifiers
                .downlink
                .lookup(&self.rules, key, now, timed),
        }
    }

    /// The portals of its own redirect rules (the predefined ones count once, snapshot-wide).
    fn dynamic_portals(&self) -> impl Iterator<Item = PortalHost> + '_ {
        self.rules
            .iter()
            .filter(|r| !r.predefined)
            .filter_map(|r| r.rule.redirect.as_ref().and_then(PortalHost::of))
    }
}

/// Everything the data path needs to enforce policy, frozen. Cloning one is cheap (shared
/// chunks); [`PolicySnapshot::with_changes`] is the way to derive the next.
#[derive(Clone)]
pub struct PolicySnapshot {
    /// Increases with every snapshot (for logs and metrics; the flow cache goes by stamps).
    pub version: u64,
    pub settings: Arc<GatewaySettings>,
    pools: Arc<[Prefix]>,
    /// The predefined rules by name, each compiled once and shared by the sessions using it.
    predefined: Arc<FxHashMap<String, Arc<PccRule>>>,
    /// Classifiers of sessions made of predefined rules alone, one per combination.
    shared: Arc<SharedClassifiers>,
    /// Sessions by slot.
    slots: Slots<Arc<Session>>,
    free: FreeSlots,
    /// No slot at or above this was ever used.
    slot_end: u32,
    /// Slot by session id.
    by_id: ShardedMap<u32, u32>,
    by_ipv4: ShardedMap<u32, u32>,
    /// IPv6 sessions by (prefix length, masked address); few distinct lengths in practice.
    by_ipv6: ShardedMap<(u8, u128), u32>,
    /// How many sessions have an IPv6 prefix of each length.
    ipv6_length_counts: [u32; 129],
    /// The lengths in use, longest first, so the most specific session wins.
    ipv6_lengths: Vec<u8>,
    /// No session of this or an earlier snapshot has an id at or above this.
    next_session_id: u32,
    /// Portals of sessions' own redirect rules, with how many rules name each, in the order
    /// first seen.
    dynamic_portals: Arc<Vec<(PortalHost, u32)>>,
    /// The configured portals and the predefined rules', in the order written.
    fixed_portals: Arc<[PortalHost]>,
    /// The portal's host names (configured, and those of redirect rules' URLs), each once.
    portal_hosts: Arc<[String]>,
    /// The portal's addresses known without resolving (configured, and redirect rules' literal
    /// addresses), each once.
    portal_addresses: Arc<[IpAddr]>,
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
    /// subscriber's counters to another. New subscribers get ids never used before. A full
    /// build: settings or predefined rules may have changed, so every flow is decided again.
    pub fn rebuild(config: &Config, version: u64, previous: &PolicySnapshot) -> PolicySnapshot {
        let known: FxHashMap<&SubscriberId, SessionId> =
            previous.sessions().map(|s| (&s.subscriber, s.id)).collect();
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
    /// Slots are given in the order listed.
    pub fn build_from(
        settings: &GatewaySettings,
        predefined: &[PccRule],
        sessions: &[(SessionId, &SessionConfig)],
        version: u64,
    ) -> PolicySnapshot {
        let mut by_name: FxHashMap<String, Arc<PccRule>> = FxHashMap::default();
        for r in predefined {
            by_name
                .entry(r.name.clone())
                .or_insert_with(|| Arc::new(r.clone()));
        }
        let mut snapshot = PolicySnapshot {
            version,
            settings: Arc::new(settings.clone()),
            pools: settings
                .ue_pools
                .iter()
                .map(|p| Prefix::from_ip(p.addr, p.len))
                .collect(),
            predefined: Arc::new(by_name),
            shared: Arc::new(FxHashMap::default()),
            slots: Slots::default(),
            free: FreeSlots::default(),
            slot_end: 0,
            by_id: ShardedMap::default(),
            by_ipv4: ShardedMap::default(),
            by_ipv6: ShardedMap::default(),
            ipv6_length_counts: [0; 129],
            ipv6_lengths: Vec::new(),
            next_session_id: 0,
            dynamic_portals: Arc::new(Vec::new()),
            // The predefined rules' portals whether a session uses them or not: the garden is
            // ready before the first session is.
            fixed_portals: predefined_portals(settings, predefined).into(),
            portal_hosts: Arc::new([]),
            portal_addresses: Arc::new([]),
        };
        let first = stamps(sessions.len());
        for (n, (id, s)) in sessions.iter().enumerate() {
            snapshot.put(*id, s, first + n as u64);
        }
        snapshot.finish_portals();
        snapshot
    }

    /// The next snapshot: `self` with the sessions in `changes` added or replaced (`Some`) or
    /// removed (`None`), in order; a later change of the same id wins. Everything else —
    /// settings, predefined rules, every other session and most of the indexes — is shared
    /// with `self`, so the cost is that of compiling the changed sessions plus a small constant
    /// (a few pointers per 4,096 sessions). Ids are the caller's; a replaced session keeps its
    /// slot, and a new id at or above [`PolicySnapshot::next_session_id`] moves it up.
    pub fn with_changes(
        &self,
        version: u64,
        changes: &[(SessionId, Option<&SessionConfig>)],
    ) -> PolicySnapshot {
        let mut next = self.clone();
        next.version = version;
        let first = stamps(changes.len());
        let mut portals_changed = false;
        for (n, (id, change)) in changes.iter().enumerate() {
            portals_changed |= match change {
                Some(s) => next.put(*id, s, first + n as u64),
                None => next.remove(*id),
            };
        }
        if portals_changed {
            next.finish_portals();
        }
        next
    }

    /// Adds or replaces one session; returns whether the set of dynamic portals may have
    /// changed.
    fn put(&mut self, id: SessionId, s: &SessionConfig, stamp: u64) -> bool {
        let old = self
            .by_id
            .get(&id.0)
            .and_then(|slot| self.slots.get(slot).cloned());
        let mut portals_changed = false;
        let slot = match &old {
            Some(old) => {
                portals_changed |= self.unindex(old);
                old.slot
            }
            None => self.free.pop().unwrap_or_else(|| {
                self.slot_end += 1;
                self.slot_end - 1
            }),
        };
        let session = compile::compile(id, slot, stamp, s, &self.predefined, &mut self.shared);
        portals_changed |= self.index(&session);
        self.by_id.insert(id.0, slot);
        self.slots.set(slot, Some(Arc::new(session)));
        self.next_session_id = self.next_session_id.max(id.0.saturating_add(1));
        portals_changed
    }

    /// Removes one session, if present; returns whether the dynamic portals may have changed.
    fn remove(&mut self, id: SessionId) -> bool {
        let Some(slot) = self.by_id.remove(&id.0) else {
            return false;
        };
        let Some(old) = self.slots.get(slot).cloned() else {
            return false;
        };
        let portals_changed = self.unindex(&old);
        self.slots.set(slot, None);
        self.free.push(slot);
        portals_changed
    }

    /// Enters a session's addresses and portals.
    fn index(&mut self, s: &Session) -> bool {
        if let Some(a) = s.ipv4 {
            self.by_ipv4.insert(u32::from(a), s.slot);
        }
        if let Some(p) = s.ipv6 {
            let key = Prefix::from_ip(p.addr, p.len);
            self.by_ipv6.insert((key.len, key.addr), s.slot);
            self.count_ipv6_length(key.len, true);
        }
        let mut changed = false;
        for portal in s.dynamic_portals() {
            let portals = Arc::make_mut(&mut self.dynamic_portals);
            match portals.iter_mut().find(|(p, _)| *p == portal) {
                Some((_, n)) => *n += 1,
                None => {
                    portals.push((portal, 1));
                    changed = true;
                }
            }
        }
        changed
    }

    /// Takes out what [`Self::index`] entered, where it still points at this session.
    fn unindex(&mut self, s: &Session) -> bool {
        if let Some(a) = s.ipv4 {
            if self.by_ipv4.get(&u32::from(a)) == Some(s.slot) {
                self.by_ipv4.remove(&u32::from(a));
            }
        }
        if let Some(p) = s.ipv6 {
            let key = Prefix::from_ip(p.addr, p.len);
            if self.by_ipv6.get(&(key.len, key.addr)) == Some(s.slot) {
                self.by_ipv6.remove(&(key.len, key.addr));
            }
            self.count_ipv6_length(key.len, false);
        }
        let mut changed = false;
        for portal in s.dynamic_portals() {
            let portals = Arc::make_mut(&mut self.dynamic_portals);
            if let Some(i) = portals.iter().position(|(p, _)| *p == portal) {
                portals[i].1 -= 1;
                if portals[i].1 == 0 {
                    portals.remove(i);
                    changed = true;
                }
            }
        }
        changed
    }

    fn count_ipv6_length(&mut self, len: u8, add: bool) {
        let n = &mut self.ipv6_length_counts[usize::from(len.min(128))];
        let was = *n;
        *n = if add {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if (was == 0) != (*n == 0) {
            self.ipv6_lengths = (0..=128u8)
                .rev()
                .filter(|l| self.ipv6_length_counts[usize::from(*l)] > 0)
                .collect();
        }
    }

    /// The walled garden's portals: the configured ones and the predefined rules', then those
    /// of sessions' own redirect rules in the order first installed.
    fn finish_portals(&mut self) {
        let mut hosts: Vec<String> = Vec::new();
        let mut addresses: Vec<IpAddr> = Vec::new();
        let dynamic = self.dynamic_portals.iter().map(|(p, _)| p);
        for portal in self.fixed_portals.iter().chain(dynamic) {
            match portal {
                PortalHost::Name(n) if !hosts.contains(n) => hosts.push(n.clone()),
                PortalHost::Address(a) if !addresses.contains(a) => addresses.push(*a),
                _ => {}
            }
        }
        self.portal_hosts = hosts.into();
        self.portal_addresses = addresses.into();
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

    /// The slot of the session owning a UE address (in classifier form).
    #[inline]
    pub fn session_index(&self, addr: u128) -> Option<u32> {
        if addr >> 32 == 0xffff {
            return self.by_ipv4.get(&(addr as u32));
        }
        self.ipv6_lengths
            .iter()
            .find_map(|len| self.by_ipv6.get(&(*len, addr & classify::mask(*len))))
    }

    /// The session at a slot. `index` comes from this snapshot ([`Self::session_index`],
    /// [`Self::session_by_id`], or a flow entry checked with [`Self::is_current`]): any other
    /// is a bug, and panics like an index out of range.
    #[inline]
    pub fn session(&self, index: u32) -> &Session {
        match self.slots.get(index) {
            Some(s) => s,
            None => panic!("no session at slot {index}"),
        }
    }

    /// The session at a slot, if there is one.
    #[inline]
    pub fn try_session(&self, index: u32) -> Option<&Session> {
        self.slots.get(index).map(|s| &**s)
    }

    /// A session by its id, with its slot: one hash lookup.
    #[inline]
    pub fn session_by_id(&self, id: SessionId) -> Option<(u32, &Session)> {
        let slot = self.by_id.get(&id.0)?;
        Some((slot, self.try_session(slot)?))
    }

    /// Whether what was decided under the session with `stamp` at `slot` still holds: the
    /// session is there and has not changed since.
    #[inline]
    pub fn is_current(&self, slot: u32, stamp: u64) -> bool {
        self.slots.get(slot).is_some_and(|s| s.stamp == stamp)
    }

    /// Every session, in slot order. O(sessions): for reports and reloads, not per change.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> + '_ {
        self.slots.iter().map(|s| &**s)
    }

    pub fn session_count(&self) -> usize {
        self.by_id.len()
    }

    /// Ids below this have been used; the session manager gives new sessions ids from here.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session_id)
    }

    /// A predefined rule by name.
    pub fn predefined_rule(&self, name: &str) -> Option<&Arc<PccRule>> {
        self.predefined.get(name)
    }

    /// The rule that applies to a packet of `session`; see [`Session::classify`].
    #[inline]
    pub fn classify(
        &self,
        session: &Session,
        direction: Direction,
        key: &Key,
        now: Timestamp,
    ) -> Option<RuleId> {
        session.classify(direction, key, now)
    }
}

/// The configured portals and those of the predefined rules, in the order written.
fn predefined_portals<'a>(
    settings: &GatewaySettings,
    predefined: impl IntoIterator<Item = &'a PccRule>,
) -> Vec<PortalHost> {
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
    let of_rules = predefined
        .into_iter()
        .filter_map(|r| r.redirect.as_ref().and_then(PortalHost::of));
    configured.chain(addressed).chain(of_rules).collect()
}

#[cfg(test)]
mod tests;
