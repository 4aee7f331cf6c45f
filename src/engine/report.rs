//! The usage report: what `weir replay` prints and a running gateway serves.

use super::{Counters, Engine, EventCounters, VerdictTotals};
use crate::charging::{Metered, Usage};
use crate::packet::Octets;
use crate::policy::{PolicySnapshot, SessionId, SubscriberId};
use crate::redirect;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RatingGroupUsage {
    pub subscriber: String,
    pub session_id: u32,
    pub rating_group: u32,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MonitoringUsage {
    pub subscriber: String,
    pub session_id: u32,
    pub monitoring_key: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// IP octets counted since the key's last usage report (what CCR-T sends as final usage).
    pub unreported: Octets,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleHits {
    pub subscriber: String,
    pub session_id: u32,
    pub rule: String,
    pub packets: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowSummary {
    /// Flows classified (a flow that went idle and came back counts again).
    pub created: u64,
    pub active: u64,
    pub expired: u64,
    pub evicted: u64,
}

/// Totals, usage and rule hits of one or more engines, sorted for stable output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub totals: VerdictTotals,
    pub rating_groups: Vec<RatingGroupUsage>,
    pub monitoring_keys: Vec<MonitoringUsage>,
    pub rules: Vec<RuleHits>,
    pub flows: FlowSummary,
    /// What the redirect stage did: 302s, resets, walled-garden passes and blocks, successes.
    pub redirect: redirect::Counters,
    /// Events for the control plane: sent, waiting, coalesced, dropped by kind.
    pub events: EventCounters,
}

/// What a report is built from: one engine's raw counters, copied out without names, sorting or
/// merging, so that a worker can hand them to another thread cheaply and that thread builds the
/// report.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub counters: Counters,
    pub redirect: redirect::Counters,
    pub flows: FlowSummary,
    /// Every metered quantity with its usage, in the meter's slot order.
    pub usage: Vec<(Metered, Usage)>,
    /// Rule hits by session and rule name.
    pub hits: Vec<(SessionId, Arc<str>, u64)>,
    /// Octets since the last usage report, by meter slot as `usage` (zero for rating groups).
    pub unreported: Vec<Octets>,
    /// Events on their way to the control plane (the engine's; a worker adds its own).
    pub events: EventCounters,
}

impl Tally {
    pub fn of(engine: &Engine) -> Tally {
        let mut t = Tally::default();
        t.copy_from(engine);
        t
    }

    /// Copies `engine`'s counters in, reusing this tally's storage: once it has room for every
    /// metered quantity and rule the engine knows, a copy allocates nothing.
    pub fn copy_from(&mut self, engine: &Engine) {
        self.counters.clone_from(engine.counters());
        self.redirect.clone_from(engine.redirect().counters());
        let f = engine.flows();
        self.flows = FlowSummary {
            created: f.created,
            active: f.len() as u64,
            expired: f.expired,
            evicted: f.evicted,
        };
        // Meter slots are only ever appended, so the quantities already copied stay where they
        // are and only their numbers change.
        let mut n = 0;
        for (i, (what, usage)) in engine.meter().iter().enumerate() {
            match self.usage.get_mut(i) {
                Some(slot) => slot.1 = *usage,
                None => self.usage.push((what.clone(), *usage)),
            }
            n = i + 1;
        }
        self.usage.truncate(n);
        let monitoring = engine.monitoring();
        self.unreported.clear();
        self.unreported
            .extend((0..n).map(|i| monitoring.unreported(i).unwrap_or_default()));
        self.events.clone_from(engine.event_counters());
        self.hits.clear();
        self.hits.extend(
            engine
                .rule_hits()
                .map(|((s, name), hits)| (*s, Arc::clone(name), hits)),
        );
    }
}

/// Subscriber names by session id, made once per report.
struct Names<'s>(FxHashMap<SessionId, &'s SubscriberId>);

impl<'s> Names<'s> {
    fn of(snapshot: Option<&'s PolicySnapshot>) -> Names<'s> {
        Names(
            snapshot
                .map(|s| s.sessions().map(|s| (s.id, &s.subscriber)).collect())
                .unwrap_or_default(),
        )
    }

    /// The subscriber's name, or `session-N` for a session the policy no longer has.
    fn get(&self, id: SessionId) -> String {
        match self.0.get(&id) {
            Some(s) => s.to_string(),
            None => format!("session-{}", id.0),
        }
    }
}

impl Report {
    /// Sums the engines of several workers into one report (sessions are owned by one worker
    /// each, so their usage never overlaps; the sum is exact either way).
    pub fn from_engines(engines: &[Engine]) -> Report {
        let tallies: Vec<Tally> = engines.iter().map(Tally::of).collect();
        Report::from_tallies(&tallies, engines.first().map(|e| &**e.snapshot()))
    }

    /// Sums the tallies of several workers into one report, naming subscribers from
    /// `snapshot` (the policy in force).
    pub fn from_tallies<'a>(
        tallies: impl IntoIterator<Item = &'a Tally>,
        snapshot: Option<&PolicySnapshot>,
    ) -> Report {
        let mut counters = Counters::default();
        let mut rg: BTreeMap<(SessionId, u32), Usage> = BTreeMap::new();
        let mut mk: BTreeMap<(SessionId, Arc<str>), (Usage, Octets)> = BTreeMap::new();
        let mut hits: BTreeMap<(SessionId, Arc<str>), u64> = BTreeMap::new();
        let mut flows = FlowSummary::default();
        let mut redirect = redirect::Counters::default();
        let mut events = EventCounters::default();
        for t in tallies {
            counters.add(&t.counters);
            redirect.add(&t.redirect);
            events.add(&t.events);
            for (i, (what, usage)) in t.usage.iter().enumerate() {
                let target = match what {
                    Metered::RatingGroup(s, g) => rg.entry((*s, *g)).or_default(),
                    Metered::MonitoringKey(s, k) => {
                        let (usage, unreported) = mk.entry((*s, Arc::clone(k))).or_default();
                        add_octets(
                            unreported,
                            &t.unreported.get(i).copied().unwrap_or_default(),
                        );
                        usage
                    }
                };
                // The engine meters on its wall clock: the times are shown as they are.
                merge(target, usage);
            }
            for (s, name, n) in &t.hits {
                *hits.entry((*s, Arc::clone(name))).or_default() += n;
            }
            flows.created += t.flows.created;
            flows.active += t.flows.active;
            flows.expired += t.flows.expired;
            flows.evicted += t.flows.evicted;
        }
        let names = Names::of(snapshot);
        Report {
            totals: VerdictTotals::from(&counters),
            rating_groups: rg
                .into_iter()
                .map(|((s, g), usage)| RatingGroupUsage {
                    subscriber: names.get(s),
                    session_id: s.0,
                    rating_group: g,
                    usage,
                })
                .collect(),
            monitoring_keys: mk
                .into_iter()
                .map(|((s, k), (usage, unreported))| MonitoringUsage {
                    subscriber: names.get(s),
                    session_id: s.0,
                    monitoring_key: k.to_string(),
                    usage,
                    unreported,
                })
                .collect(),
            rules: hits
                .into_iter()
                .map(|((s, rule), packets)| RuleHits {
                    subscriber: names.get(s),
                    session_id: s.0,
                    rule: rule.to_string(),
                    packets,
                })
                .collect(),
            flows,
            redirect,
            events,
        }
    }
}

fn add_octets(into: &mut Octets, from: &Octets) {
    into.uplink += from.uplink;
    into.downlink += from.downlink;
}

fn merge(into: &mut Usage, from: &Usage) {
    into.uplink_bytes += from.uplink_bytes;
    into.uplink_packets += from.uplink_packets;
    into.downlink_bytes += from.downlink_bytes;
    into.downlink_packets += from.downlink_packets;
    into.first_seen = match (into.first_seen, from.first_seen) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.last_seen = into.last_seen.max(from.last_seen);
}

impl Report {
    /// Sums reports of several workers, e.g. snapshots published by running workers, into one
    /// (same exactness argument as [`Report::from_engines`]).
    pub fn merge(parts: &[Report]) -> Report {
        let mut totals: Option<VerdictTotals> = None;
        let mut rg: BTreeMap<(u32, u32), RatingGroupUsage> = BTreeMap::new();
        let mut mk: BTreeMap<(u32, String), MonitoringUsage> = BTreeMap::new();
        let mut hits: BTreeMap<(u32, String), RuleHits> = BTreeMap::new();
        let mut flows = FlowSummary::default();
        let mut redirect = redirect::Counters::default();
        let mut events = EventCounters::default();
        for p in parts {
            redirect.add(&p.redirect);
            events.add(&p.events);
            match &mut totals {
                None => totals = Some(p.totals.clone()),
                Some(t) => t.add(&p.totals),
            }
            for u in &p.rating_groups {
                rg.entry((u.session_id, u.rating_group))
                    .and_modify(|e| merge(&mut e.usage, &u.usage))
                    .or_insert_with(|| u.clone());
            }
            for u in &p.monitoring_keys {
                mk.entry((u.session_id, u.monitoring_key.clone()))
                    .and_modify(|e| {
                        merge(&mut e.usage, &u.usage);
                        add_octets(&mut e.unreported, &u.unreported);
                    })
                    .or_insert_with(|| u.clone());
            }
            for h in &p.rules {
                hits.entry((h.session_id, h.rule.clone()))
                    .and_modify(|e| e.packets += h.packets)
                    .or_insert_with(|| h.clone());
            }
            flows.created += p.flows.created;
            flows.active += p.flows.active;
            flows.expired += p.flows.expired;
            flows.evicted += p.flows.evicted;
        }
        Report {
            totals: totals.unwrap_or_else(|| VerdictTotals::from(&Counters::default())),
            rating_groups: rg.into_values().collect(),
            monitoring_keys: mk.into_values().collect(),
            rules: hits.into_values().collect(),
            flows,
            redirect,
            events,
        }
    }
}

/// The human-readable form: totals, drop reasons, usage, rule hits, redirect activity, flows.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "frames {}  bytes {}  forwarded {}  dropped {}  answered {}  injected {}",
            t.frames, t.bytes, t.forwarded, t.dropped, t.answered, t.injected_frames
        )?;
        for (reason, n) in &t.drop_reasons {
            writeln!(f, "  drop {reason:<26} {n}")?;
        }
        writeln!(
            f,
            "non-ip {}  neighbour discovery {}  non-subscriber {}  unknown-subscriber forwarded {}  malformed passed {}",
            t.non_ip, t.neighbor_discovery, t.non_subscriber_forwarded, t.unknown_subscriber_forwarded, t.malformed_passed
        )?;
        writeln!(
            f,
            "fragments: first {}  resolved {}  orphan {}",
            t.fragments_first, t.fragments_resolved, t.fragments_orphan
        )?;
        if t.session_requests + t.held + t.pending_forwarded + t.usage_thresholds > 0 {
            writeln!(
                f,
                "pending: session requests {}  held {}  released {}  expired {}  forwarded {}  usage thresholds {}",
                t.session_requests, t.held, t.held_released, t.held_expired, t.pending_forwarded, t.usage_thresholds
            )?;
        }
        writeln!(f, "\nusage per session x rating group (IP bytes)")?;
        writeln!(
            f,
            "  {:<28} {:>6} {:>12} {:>9} {:>12} {:>9}",
            "subscriber", "rg", "ul_bytes", "ul_pkts", "dl_bytes", "dl_pkts"
        )?;
        for u in &self.rating_groups {
            writeln!(
                f,
                "  {:<28} {:>6} {:>12} {:>9} {:>12} {:>9}",
                u.subscriber,
                u.rating_group,
                u.usage.uplink_bytes,
                u.usage.uplink_packets,
                u.usage.downlink_bytes,
                u.usage.downlink_packets
            )?;
        }
        if !self.monitoring_keys.is_empty() {
            writeln!(f, "\nusage per session x monitoring key (IP bytes)")?;
            for u in &self.monitoring_keys {
                writeln!(
                    f,
                    "  {:<28} {:>12} {:>12} {:>9} {:>12} {:>9}",
                    u.subscriber,
                    u.monitoring_key,
                    u.usage.uplink_bytes,
                    u.usage.uplink_packets,
                    u.usage.downlink_bytes,
                    u.usage.downlink_packets
                )?;
            }
        }
        let e = &self.events;
        if e.sent + e.waiting + e.coalesced + e.dropped_total() > 0 {
            writeln!(
                f,
                "\nevents: sent {}  retried {}  waiting {}  coalesced {}  dropped {}",
                e.sent,
                e.retried,
                e.waiting,
                e.coalesced,
                e.dropped_total()
            )?;
        }
        writeln!(f, "\nrule hits (packets)")?;
        for h in &self.rules {
            writeln!(f, "  {:<28} {:<20} {}", h.subscriber, h.rule, h.packets)?;
        }
        // Only what happened: a capture without redirected subscribers prints nothing here.
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&self.redirect) {
            let nonzero: Vec<String> = fields
                .iter()
                .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !nonzero.is_empty() {
                writeln!(f, "\nredirect: {}", nonzero.join("  "))?;
            }
        }
        let flows = &self.flows;
        writeln!(
            f,
            "\nflows: created {}  active {}  expired {}  evicted {}",
            flows.created, flows.active, flows.expired, flows.evicted
        )?;
        Ok(())
    }
}
