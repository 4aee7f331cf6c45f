//! The sessions of the gateway and the one place policy changes: every session with what the
//! control plane knows of it (Session-Id, origin, event triggers, monitoring grants,
//! CC-Request-Number), and the build of the snapshot the workers read.
//!
//! Nothing here does I/O or reads a clock: requests come in as values with the time, and the
//! snapshot to publish comes out. A request applies as a whole: it is checked first (a
//! malformed one is refused with the field and the reason, and changes nothing), then applied to
//! a copy of the session, which replaces the original in one step. A rule that cannot be
//! installed is reported (Charging-Rule-Report with its Rule-Failure-Code, TS 29.212 §4.5.12)
//! and the request's other rules install; other sessions are never touched.

pub use super::update::{Refused, Update};

use super::update::{failure_code, report};
use crate::packet::Octets;
use crate::policy::{
    Config, DefaultRule, GatewaySettings, IpPrefix, MonitoringGrant, PccRule, PolicySnapshot,
    SessionConfig, SessionId, SubscriberId,
};
use crate::proto::rules::{rule_of, Invalid};
use crate::proto::v1 as pb;
use crate::time::Timestamp;
use pb::gateway_event::Event as Ev;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Most rules (dynamic and predefined) one session may hold; one more is reported as
/// RESOURCES_LIMITATION.
pub const MAX_RULES_PER_SESSION: usize = 256;

/// Where a session's policy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A `[[session]]` of the configuration file (replaced on SIGHUP).
    Config,
    /// A CCA-I of the policy engine.
    PolicyEngine,
    /// `weir.v1.Gateway/CreateSession`.
    Operator,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::PolicyEngine => "policy-engine",
            Origin::Operator => "operator",
        }
    }
}

/// One session as the control plane holds it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Stable for the session's life, never reused: counters are keyed by it.
    pub id: SessionId,
    /// Session-Id (RFC 6733 §8.8): `<origin_host>;<start>;<id>`.
    pub session_id: String,
    pub config: SessionConfig,
    pub origin: Origin,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub event_triggers: Vec<i32>,
    /// The CC-Request-Number of the last request sent for the session (0 is CCR-I).
    pub cc_request_number: u32,
    /// Revalidation-Time in force, seconds since the Unix epoch; 0 none.
    pub revalidation_time: u64,
    /// Octets already reported per monitoring key, so CCR-T carries only the rest.
    pub reported: HashMap<Arc<str>, Octets>,
    next_grant: u64,
}

impl Entry {
    /// The redirect in force: the best-precedence rule with Redirect-Support ENABLED among
    /// the session's dynamic rules and active predefined rules (name, server address).
    pub fn redirect(&self, predefined: &[PccRule]) -> Option<(String, String)> {
        let active = predefined
            .iter()
            .filter(|r| self.config.predefined.contains(&r.name));
        self.config
            .rules
            .iter()
            .map(|r| &**r)
            .chain(active)
            .filter_map(|r| {
                let info = r.redirect.as_ref().filter(|i| i.enabled())?;
                Some((
                    r.precedence,
                    r.name.clone(),
                    info.server_address().to_string(),
                ))
            })
            .min()
            .map(|(_, n, a)| (n, a))
    }

    /// Takes the next CC-Request-Number for a request about to be sent.
    pub fn next_request_number(&mut self) -> u32 {
        self.cc_request_number += 1;
        self.cc_request_number
    }
}

/// Every session, and the policy around them.
pub struct Sessions {
    settings: GatewaySettings,
    predefined: Vec<PccRule>,
    entries: BTreeMap<SessionId, Entry>,
    by_session_id: HashMap<String, SessionId>,
    /// The entries by subscriber and by address.
    index: super::index::Index,
    next_id: u32,
    version: u64,
    dirty: bool,
    /// Sessions added, changed or ended since the last snapshot.
    changed: std::collections::BTreeSet<SessionId>,
    /// The settings or predefined rules changed (or nothing was published yet): the next
    /// snapshot is built whole.
    full: bool,
    /// The snapshot published last, which the next one shares everything unchanged with.
    published: Option<Arc<PolicySnapshot>>,
    origin_host: String,
    /// Seconds since the Unix epoch when the gateway started: part of every Session-Id, so ids
    /// never repeat across restarts.
    boot: u64,
    /// Events for watchers, taken after each publish.
    events: Vec<pb::GatewayEvent>,
}

/// Seconds since the Unix epoch of a wall-clock time.
pub fn unix_secs(t: Timestamp) -> u64 {
    t.as_nanos() / 1_000_000_000
}

impl Sessions {
    /// The sessions of the configuration file, ids from 0 in file order; the first snapshot
    /// gets `version` 1.
    pub fn new(config: &Config, now: Timestamp) -> Sessions {
        let mut s = Sessions {
            settings: config.gateway.clone(),
            predefined: config.predefined.clone(),
            entries: BTreeMap::new(),
            by_session_id: HashMap::new(),
            index: Default::default(),
            next_id: 0,
            version: 0,
            dirty: true,
            changed: Default::default(),
            full: true,
            published: None,
            origin_host: config.control.origin_host.clone(),
            boot: unix_secs(now),
            events: Vec::new(),
        };
        for c in &config.sessions {
            let id = s.new_id();
            s.insert(id, c.clone(), Origin::Config, now);
        }
        s.events.clear();
        s
    }

    fn new_id(&mut self) -> SessionId {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        id
    }

    fn insert(&mut self, id: SessionId, config: SessionConfig, origin: Origin, now: Timestamp) {
        let session_id = self.session_id_of(id);
        let entry = Entry {
            id,
            session_id: session_id.clone(),
            config,
            origin,
            started_at: unix_secs(now),
            event_triggers: Vec::new(),
            cc_request_number: 0,
            revalidation_time: 0,
            reported: HashMap::new(),
            next_grant: 1,
        };
        self.event(
            &entry,
            now,
            Ev::SessionUp(pb::SessionUp {
                framed_ip_address: entry.config.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                framed_ipv6_prefix: entry.config.ipv6.map(|p| p.to_string()).unwrap_or_default(),
            }),
        );
        if let Some((name, _)) = entry.redirect(&self.predefined) {
            self.event(
                &entry,
                now,
                Ev::RedirectApplied(pb::RedirectApplied {
                    cause: pb::RedirectCause::PccRule as i32,
                    source: name,
                }),
            );
        }
        self.by_session_id.insert(session_id, id);
        self.index.add(id, &entry.config);
        self.entries.insert(id, entry);
        self.changed.insert(id);
        self.dirty = true;
    }

    fn event(&mut self, e: &Entry, now: Timestamp, ev: Ev) {
        self.events.push(pb::GatewayEvent {
            at_unix_nanos: now.as_nanos(),
            session_id: e.session_id.clone(),
            subscriber_id: e.config.subscriber.to_string(),
            event: Some(ev),
        });
    }

    /// Records an event about a session that does not change policy (a recharge success seen,
    /// usage reported).
    pub fn note(&mut self, id: SessionId, now: Timestamp, ev: Ev) {
        if let Some(e) = self.entries.get(&id).cloned() {
            self.event(&e, now, ev);
        }
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub fn predefined(&self) -> &[PccRule] {
        &self.predefined
    }

    pub fn get(&self, id: SessionId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.entries.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn by_session_id(&self, session_id: &str) -> Option<SessionId> {
        self.by_session_id.get(session_id).copied()
    }

    pub fn by_subscriber(&self, sub: &SubscriberId) -> Option<SessionId> {
        self.index.by_subscriber(sub)
    }

    /// The session owning a UE address (its IPv4 address, or inside its IPv6 prefix).
    pub fn by_address(&self, ue: IpAddr) -> Option<SessionId> {
        self.index.by_address(ue)
    }

    /// The version of the last snapshot made.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Takes a session id and its Session-Id for a session not started yet (its CCR-I is on
    /// its way); [`Sessions::create`] starts it under them.
    pub fn reserve(&mut self) -> (SessionId, String) {
        let id = self.new_id();
        (id, self.session_id_of(id))
    }

    fn session_id_of(&self, id: SessionId) -> String {
        format!("{};{};{}", self.origin_host, self.boot, id.0)
    }

    /// Starts a session with no rules (they come with an [`Update`]), under `reserved` if given.
    /// Refused when an address lies outside every UE pool or belongs to another session, or the
    /// subscriber has one.
    pub fn create(
        &mut self,
        subscriber: SubscriberId,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<IpPrefix>,
        origin: Origin,
        reserved: Option<SessionId>,
        now: Timestamp,
    ) -> Result<SessionId, Refused> {
        if ipv4.is_none() && ipv6.is_none() {
            return Err(Invalid::new(
                "framed_ip_address",
                "a Framed-IP-Address or a framed_ipv6_prefix is required",
            )
            .into());
        }
        let pools = &self.settings.ue_pools;
        if let Some(a) = ipv4 {
            if !pools.iter().any(|p| p.contains(IpAddr::V4(a))) {
                return Err(Invalid::new(
                    "framed_ip_address",
                    format!("{a} is not inside any UE pool"),
                )
                .into());
            }
        }
        if let Some(p) = ipv6 {
            if !pools.iter().any(|q| q.covers(&p)) {
                return Err(Invalid::new(
                    "framed_ipv6_prefix",
                    format!("{p} is not inside any UE pool"),
                )
                .into());
            }
        }
        if let Some(other) = self.by_subscriber(&subscriber) {
            return Err(Refused::Exists(format!(
                "subscriber {subscriber} already has session '{}'",
                self.entries[&other].session_id
            )));
        }
        if let Some(e) = self
            .index
            .clash(ipv4, ipv6.as_ref())
            .and_then(|id| self.entries.get(&id))
        {
            return Err(Refused::Exists(format!(
                "the address is already used by session '{}' of {}",
                e.session_id, e.config.subscriber
            )));
        }
        let id = reserved.unwrap_or_else(|| self.new_id());
        let config = SessionConfig {
            subscriber,
            ipv4,
            ipv6,
            rules: Vec::new(),
            predefined: Vec::new(),
            default_rule: DefaultRule::Forward { rating_group: 0 },
            monitoring: Vec::new(),
            credits: Vec::new(),
        };
        self.insert(id, config, origin, now);
        Ok(id)
    }

    /// Applies `update` to session `id` as a whole: removals first, then installs, triggers,
    /// grants. Returns a Charging-Rule-Report per rule that could not be installed; the rest is
    /// in force once the next snapshot is published. `lift` names why a redirect that ends here
    /// ended.
    pub fn apply(
        &mut self,
        id: SessionId,
        update: &Update,
        lift: pb::RedirectLiftCause,
        now: Timestamp,
    ) -> Result<Vec<pb::ChargingRuleReport>, Refused> {
        update.check()?;
        let Some(entry) = self.entries.get(&id) else {
            return Err(Refused::NotFound(format!("no session {}", id.0)));
        };
        let mut next = entry.clone();
        let before = entry.redirect(&self.predefined);
        let mut reports = Vec::new();
        for r in &update.removes {
            for name in &r.charging_rule_name {
                next.config.rules.retain(|x| &x.name != name);
                next.config.predefined.retain(|x| x != name);
            }
        }
        for (i, install) in update.installs.iter().enumerate() {
            let path = format!("charging_rule_install[{i}]");
            let timed = install.rule_activation_time != 0 || install.rule_deactivation_time != 0;
            for name in &install.charging_rule_name {
                let known = self.predefined.iter().any(|p| &p.name == name);
                let names = std::slice::from_ref(name);
                if !known {
                    reports.push(report(
                        names,
                        pb::RuleFailureCode::UnknownRuleName,
                        format!("'{name}' is not a predefined rule of this gateway"),
                    ));
                } else if timed {
                    reports.push(report(
                        names,
                        pb::RuleFailureCode::GwPcefMalfunction,
                        format!("'{name}': activation times apply to dynamic rules only (predefined rules are shared)"),
                    ));
                } else if next.config.rules.iter().any(|r| &r.name == name) {
                    reports.push(report(
                        names,
                        pb::RuleFailureCode::GwPcefMalfunction,
                        format!("'{name}' is the name of a dynamic rule of this session"),
                    ));
                } else if !next.config.predefined.contains(name) {
                    if next.config.rules.len() + next.config.predefined.len()
                        >= MAX_RULES_PER_SESSION
                    {
                        reports.push(report(
                            names,
                            pb::RuleFailureCode::ResourcesLimitation,
                            format!("a session holds at most {MAX_RULES_PER_SESSION} rules"),
                        ));
                    } else {
                        next.config.predefined.push(name.clone());
                    }
                }
            }
            for (j, def) in install.charging_rule_definition.iter().enumerate() {
                let dpath = format!("{path}.charging_rule_definition[{j}]");
                let names = std::slice::from_ref(&def.charging_rule_name);
                let mut rule = match rule_of(def, &dpath) {
                    Ok(r) => r,
                    Err(e) => {
                        reports.push(report(names, failure_code(&e), e.to_string()));
                        continue;
                    }
                };
                if self.predefined.iter().any(|p| p.name == rule.name) {
                    reports.push(report(
                        names,
                        pb::RuleFailureCode::GwPcefMalfunction,
                        format!("'{}' is the name of a predefined rule", rule.name),
                    ));
                    continue;
                }
                let secs = |s: u64| (s != 0).then(|| Timestamp::from_secs(s));
                rule.activation = secs(install.rule_activation_time);
                rule.deactivation = secs(install.rule_deactivation_time);
                // Installing a rule of a name in force modifies it (TS 29.212 §4.5.2).
                if let Some(old) = next.config.rules.iter_mut().find(|r| r.name == rule.name) {
                    *old = Arc::new(rule);
                } else if next.config.rules.len() + next.config.predefined.len()
                    >= MAX_RULES_PER_SESSION
                {
                    reports.push(report(
                        names,
                        pb::RuleFailureCode::ResourcesLimitation,
                        format!("a session holds at most {MAX_RULES_PER_SESSION} rules"),
                    ));
                } else {
                    next.config.rules.push(Arc::new(rule));
                }
            }
        }
        if !update.event_triggers.is_empty() {
            if update
                .event_triggers
                .contains(&(pb::EventTrigger::NoEventTriggers as i32))
            {
                next.event_triggers.clear();
            } else {
                next.event_triggers = update.event_triggers.clone();
            }
        }
        for u in &update.monitoring {
            let key: Arc<str> = Arc::from(u.monitoring_key.as_str());
            next.config.monitoring.retain(|g| g.monitoring_key != key);
            let gsu = u.granted_service_unit.unwrap_or_default();
            if gsu.cc_total_octets.is_some()
                || gsu.cc_input_octets.is_some()
                || gsu.cc_output_octets.is_some()
            {
                next.config.monitoring.push(MonitoringGrant {
                    monitoring_key: key,
                    total: gsu.cc_total_octets,
                    uplink: gsu.cc_input_octets,
                    downlink: gsu.cc_output_octets,
                    grant: next.next_grant,
                });
                next.next_grant += 1;
            }
        }
        if update.revalidation_time != 0 {
            next.revalidation_time = update.revalidation_time;
        }
        let after = next.redirect(&self.predefined);
        let changed = next.config != entry.config;
        for r in &reports {
            self.event(&next, now, Ev::RuleFailure(r.clone()));
        }
        match (&before, &after) {
            (Some((old, _)), None) => self.event(
                &next,
                now,
                Ev::RedirectLifted(pb::RedirectLifted {
                    cause: lift as i32,
                    source: old.clone(),
                }),
            ),
            (None, Some((new, _))) => self.event(
                &next,
                now,
                Ev::RedirectApplied(pb::RedirectApplied {
                    cause: pb::RedirectCause::PccRule as i32,
                    source: new.clone(),
                }),
            ),
            _ => {}
        }
        self.entries.insert(id, next);
        if changed {
            self.changed.insert(id);
        }
        self.dirty |= changed;
        Ok(reports)
    }

    /// Puts a charging system's answer in force for session `id`: each grant replaces the one of
    /// its rating group, all of them in the same snapshot.
    pub fn set_credits(
        &mut self,
        id: SessionId,
        grants: Vec<crate::policy::CreditGrant>,
    ) -> Result<(), Refused> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Err(Refused::NotFound(format!("no session {}", id.0)));
        };
        let credits = &mut entry.config.credits;
        for g in grants {
            credits.retain(|c| c.rating_group != g.rating_group);
            credits.push(g);
        }
        credits.sort_by_key(|c| c.rating_group);
        self.changed.insert(id);
        self.dirty = true;
        Ok(())
    }

    /// Ends a session; the entry comes back for its CCR-T.
    pub fn end(
        &mut self,
        id: SessionId,
        cause: pb::TerminationCause,
        now: Timestamp,
    ) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.by_session_id.remove(&entry.session_id);
        self.index.remove(id, &entry.config);
        self.event(
            &entry,
            now,
            Ev::SessionDown(pb::SessionDown {
                termination_cause: cause as i32,
            }),
        );
        self.changed.insert(id);
        self.dirty = true;
        Some(entry)
    }

    /// SIGHUP: the file's settings, predefined rules and sessions replace the old file's. A file
    /// session keeps its id when its subscriber had one from the file before; sessions from the
    /// policy engine and the operator stay, and a file session that would clash with one of
    /// them (same subscriber or address) is left out, logged.
    pub fn reload(&mut self, config: &Config, now: Timestamp) {
        self.settings = config.gateway.clone();
        self.predefined = config.predefined.clone();
        let old: HashMap<SubscriberId, SessionId> = self
            .entries
            .values()
            .filter(|e| e.origin == Origin::Config)
            .map(|e| (e.config.subscriber.clone(), e.id))
            .collect();
        let mut kept = Vec::new();
        for c in &config.sessions {
            match old.get(&c.subscriber) {
                Some(&id) => {
                    if let Some(e) = self.entries.get_mut(&id) {
                        self.index.remove(id, &e.config);
                        e.config = c.clone();
                        self.index.add(id, &e.config);
                    }
                    kept.push(id);
                }
                None => {
                    let clash = self
                        .index
                        .by_subscriber(&c.subscriber)
                        .or_else(|| self.index.clash(c.ipv4, c.ipv6.as_ref()))
                        .and_then(|id| self.entries.get(&id));
                    if let Some(e) = clash {
                        tracing::warn!(subscriber = %c.subscriber, session = %e.session_id,
                            origin = e.origin.as_str(), "reload: a file session clashes with a running one; left out");
                        continue;
                    }
                    let id = self.new_id();
                    self.insert(id, c.clone(), Origin::Config, now);
                    kept.push(id);
                }
            }
        }
        let gone: Vec<SessionId> = old
            .values()
            .copied()
            .filter(|id| !kept.contains(id))
            .collect();
        for id in gone {
            self.end(id, pb::TerminationCause::DiameterAdministrative, now);
        }
        self.full = true;
        self.dirty = true;
    }

    /// The snapshot to publish if anything changed since the last one. It costs what the
    /// changed sessions cost: everything else is shared with the snapshot published before. A
    /// reload (new settings or predefined rules) builds it whole.
    pub fn snapshot(&mut self) -> Option<Arc<PolicySnapshot>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.version += 1;
        let changed = std::mem::take(&mut self.changed);
        let snapshot = match self.published.as_ref().filter(|_| !self.full) {
            Some(previous) => {
                let changes: Vec<(SessionId, Option<&SessionConfig>)> = changed
                    .iter()
                    .map(|id| (*id, self.entries.get(id).map(|e| &e.config)))
                    .collect();
                previous.with_changes(self.version, &changes)
            }
            None => {
                let sessions: Vec<(SessionId, &SessionConfig)> =
                    self.entries.values().map(|e| (e.id, &e.config)).collect();
                PolicySnapshot::build_from(
                    &self.settings,
                    &self.predefined,
                    &sessions,
                    self.version,
                )
            }
        };
        self.full = false;
        let snapshot = Arc::new(snapshot);
        self.published = Some(Arc::clone(&snapshot));
        Some(snapshot)
    }

    /// The events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<pb::GatewayEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests;
