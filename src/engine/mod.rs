//! The per-worker sans-IO pipeline: parse, find the session, classify (flow cache first), gate,
//! meter. Bytes and the time go in; a [`Verdict`] comes out, and any frames to inject are written
//! into the caller's [`Output`].
//!
//! No sockets, threads or clocks in here: every behaviour can be replayed from bytes. Nothing on
//! the packet path allocates once a flow is known.

mod counters;
mod flow_table;
mod report;

pub use counters::{Counters, DropReason, VerdictTotals};
pub use flow_table::{Decision, FlowEntry, FlowKey, FlowTable, IdleTimeouts};
pub use report::{FlowSummary, MonitoringUsage, RatingGroupUsage, Report, RuleHits, Tally};

use crate::charging::{Meter, Metered};
use crate::classify::ip_key;
use crate::policy::{subscriber_key, DefaultRule, MalformedAction, PolicySnapshot, SessionId};
use crate::redirect::{self, Event, FinalUnitRedirect, Redirector, Stage};
use crate::time::Timestamp;
use crate::wire::{
    self, Direction, FragmentOutcome, FragmentTable, FragmentTableConfig, LinkType, Parsed,
};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Where a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The leg facing the UEs.
    Ue,
    /// The leg facing the internet.
    Internet,
    /// No leg: a replayed capture, or a TUN device that carries both directions. Direction
    /// comes from the UE pools alone.
    Any,
}

/// What should happen to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on, unchanged, out of the other leg.
    Forward,
    Drop(DropReason),
    /// The engine answered the frame itself: the frames in [`Output`] go out, the original does
    /// not.
    Inject,
}

/// Which leg an injected frame leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    Ue,
    Internet,
}

/// Caller-owned buffer for frames the engine injects; cleared by the caller between frames.
#[derive(Default)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// (leg, start, length) into `bytes`.
    pub frames: Vec<(Toward, usize, usize)>,
}

impl Output {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }

    pub fn frames(&self) -> impl Iterator<Item = (Toward, &[u8])> {
        self.frames
            .iter()
            .map(|(t, start, len)| (*t, &self.bytes[*start..*start + *len]))
    }
}

/// One worker's engine.
pub struct Engine {
    snapshot: Arc<PolicySnapshot>,
    link: LinkType,
    flows: FlowTable,
    fragments: FragmentTable,
    meter: Meter,
    /// Rule hits by (session, rule name); the flow table holds indices into `hits`.
    hit_index: FxHashMap<(SessionId, Arc<str>), u32>,
    hits: Vec<u64>,
    counters: Counters,
    redirect: Redirector,
    /// Wall-clock time minus `now`, in nanoseconds (see [`Engine::set_wall_clock`]).
    wall_offset: i64,
}

impl Engine {
    pub fn new(snapshot: Arc<PolicySnapshot>, link: LinkType) -> Engine {
        let s = &snapshot.settings;
        let flows = FlowTable::new(
            s.flow_table_capacity,
            IdleTimeouts {
                tcp: s.tcp_idle_timeout,
                udp: s.udp_idle_timeout,
                icmp: s.icmp_idle_timeout,
                other: s.other_idle_timeout,
            },
        );
        Engine {
            redirect: Redirector::new(&snapshot),
            snapshot,
            link,
            flows,
            fragments: FragmentTable::new(FragmentTableConfig::default()),
            meter: Meter::new(),
            hit_index: FxHashMap::default(),
            hits: Vec::new(),
            counters: Counters::default(),
            wall_offset: 0,
        }
    }

    /// Installs a newer policy. Cached decisions made under the old one are re-made lazily, on
    /// each flow's next packet; usage counters carry over (they are keyed by session id).
    pub fn set_snapshot(&mut self, snapshot: Arc<PolicySnapshot>) {
        self.redirect.set_snapshot(&snapshot);
        self.snapshot = snapshot;
    }

    /// Applies online charging's Final-Unit-Action REDIRECT to a session (or one of its rating
    /// groups). Idempotent; the session's flows are decided again on their next packet.
    pub fn apply_final_unit_redirect(&mut self, session: SessionId, fu: FinalUnitRedirect) {
        if self.redirect.apply_final_unit(&self.snapshot, session, fu) {
            self.flows.invalidate_session(session);
        }
    }

    /// Removes a Final-Unit REDIRECT (credit granted again): the normal rules apply again.
    pub fn remove_final_unit_redirect(&mut self, session: SessionId, rating_group: Option<u32>) {
        if self.redirect.remove_final_unit(session, rating_group) {
            self.flows.invalidate_session(session);
        }
    }

    /// Events for the control plane (recharge successes), oldest first.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.redirect.drain_events()
    }

    /// The redirect stage: its counters, portal host names to resolve, and the SYN-cookie
    /// secret (the live data path sets a random one).
    pub fn redirect(&self) -> &Redirector {
        &self.redirect
    }

    pub fn redirect_mut(&mut self) -> &mut Redirector {
        &mut self.redirect
    }

    pub fn snapshot(&self) -> &Arc<PolicySnapshot> {
        &self.snapshot
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Housekeeping the caller runs now and then (e.g. once a second): expires idle flows.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.flows.expire(now);
    }

    /// Runs one frame through the pipeline.
    pub fn handle_frame(
        &mut self,
        now: Timestamp,
        port: Port,
        frame: &[u8],
        out: &mut Output,
    ) -> Verdict {
        self.counters.frames += 1;
        self.counters.bytes += frame.len() as u64;
        let mut packet = match wire::parse(self.link, frame) {
            Ok(Parsed::Ip(p)) => p,
            Ok(Parsed::NonIp { .. }) => {
                self.counters.non_ip += 1;
                return self.forward();
            }
            Err(e) => {
                return match self.snapshot.settings.malformed {
                    MalformedAction::Drop => self.drop(DropReason::Malformed(e)),
                    MalformedAction::Pass => {
                        self.counters.malformed_passed[e as usize] += 1;
                        self.forward()
                    }
                };
            }
        };
        match self.fragments.resolve(now, &mut packet) {
            FragmentOutcome::NotFragment => {}
            FragmentOutcome::First => self.counters.fragments_first += 1,
            FragmentOutcome::Resolved => self.counters.fragments_resolved += 1,
            FragmentOutcome::Orphan => self.counters.fragments_orphan += 1,
        }
        // IPv6's ARP: link plumbing, passed like ARP for subscribers and everyone else, never
        // metered and never a flow. Without it a bridged UE could not reach its next hop — under
        // redirect neither the portal nor the 302 would arrive; with a dropping default rule
        // nothing would.
        if wire::is_neighbor_discovery(&packet, frame) {
            self.counters.neighbor_discovery += 1;
            return self.forward();
        }

        let snap = &*self.snapshot;
        let t = packet.tuple;
        let (src, dst) = (ip_key(t.src), ip_key(t.dst));
        let (direction, key) = if snap.in_ue_pool(src) {
            (
                Direction::Uplink,
                FlowKey {
                    ue: src,
                    remote: dst,
                    ue_port: t.src_port,
                    remote_port: t.dst_port,
                    protocol: t.protocol,
                },
            )
        } else if snap.in_ue_pool(dst) {
            (
                Direction::Downlink,
                FlowKey {
                    ue: dst,
                    remote: src,
                    ue_port: t.dst_port,
                    remote_port: t.src_port,
                    protocol: t.protocol,
                },
            )
        } else if snap.settings.forward_non_subscriber {
            self.counters.non_subscriber_forwarded += 1;
            return self.forward();
        } else {
            return self.drop(DropReason::NonSubscriber);
        };

        // A subscriber's address on the leg it cannot come from — its source arriving from the
        // internet, or traffic to it arriving from the UE side — is spoofed or looped.
        if matches!(
            (port, direction),
            (Port::Internet, Direction::Uplink) | (Port::Ue, Direction::Downlink)
        ) {
            return self.drop(DropReason::WrongLeg);
        }

        // The flow cache: a hit is a flow of this snapshot, not idle, whose rules have not
        // turned on or off since it was classified. A hit costs one table lookup; what the rest
        // of the path needs is copied out of it.
        let idle_limit = self.flows.timeouts.for_protocol(key.protocol);
        let cached = match self.flows.get_mut(&key) {
            Some(e)
                if e.version == snap.version
                    && now < e.valid_until
                    && now.saturating_since(e.last_seen) <= idle_limit =>
            {
                e.last_seen = now;
                e.packets += 1;
                e.bytes += u64::from(packet.ip_len);
                Some((e.session, e.session_id, e.watch, *e.decision_mut(direction)))
            }
            _ => None,
        };
        let (session_index, session_id, watch, mut decision) = match cached {
            Some(hit) => hit,
            None => {
                let Some(index) = snap.session_index(key.ue) else {
                    return if snap.settings.forward_unknown_subscriber {
                        self.counters.unknown_subscriber_forwarded += 1;
                        self.forward()
                    } else {
                        self.drop(DropReason::UnknownSubscriber)
                    };
                };
                // The redirect stage runs before the normal rules. What it answers or blocks
                // leaves no flow state behind, so a flood of new connections cannot fill the
                // table.
                let before = out.frames.len();
                let f = redirect::Frame {
                    link: self.link,
                    bytes: frame,
                    packet: &packet,
                };
                let stage = self
                    .redirect
                    .enforce(snap, index, direction, &key, &f, now, out);
                let session = snap.session(index);
                let mut entry = FlowEntry::new(
                    snap.version,
                    index,
                    session.id,
                    session.next_boundary(now),
                    now,
                );
                match stage {
                    Stage::Pass { watch } => entry.watch = watch,
                    Stage::Garden {
                        rating_group,
                        watch,
                    } => {
                        entry.watch = watch;
                        let allowed = Decision::Decided {
                            rule: None,
                            forward: true,
                            rating_group: rating_group
                                .map(|rg| self.meter.slot(Metered::RatingGroup(session.id, rg))),
                            monitoring_key: None,
                            hits: None,
                        };
                        entry.uplink = allowed;
                        entry.downlink = allowed;
                    }
                    Stage::Answered(_) | Stage::Blocked => {
                        return self.redirected(stage, out.frames.len() - before)
                    }
                }
                entry.packets = 1;
                entry.bytes = u64::from(packet.ip_len);
                // Decided before the insert, so a new flow costs no second lookup either.
                if *entry.decision_mut(direction) == Decision::Undecided {
                    *entry.decision_mut(direction) = decide(
                        snap,
                        &mut self.meter,
                        &mut self.hit_index,
                        &mut self.hits,
                        index,
                        direction,
                        &key,
                        now,
                    );
                }
                let hit = (
                    index,
                    session.id,
                    entry.watch,
                    *entry.decision_mut(direction),
                );
                self.flows.insert(key, entry, now);
                hit
            }
        };
        if decision == Decision::Undecided {
            // The first packet of this direction on a flow the other direction opened: classify
            // once and remember it.
            decision = decide(
                snap,
                &mut self.meter,
                &mut self.hit_index,
                &mut self.hits,
                session_index,
                direction,
                &key,
                now,
            );
            if let Some(e) = self.flows.get_mut(&key) {
                *e.decision_mut(direction) = decision;
            }
        }
        let Decision::Decided {
            rule,
            forward,
            rating_group,
            monitoring_key,
            hits,
        } = decision
        else {
            return self.forward();
        };
        if self.redirect.has_rating_group_redirects() {
            let rg = match rule {
                Some(id) => snap.rule(id).rule.rating_group,
                None => match snap.session(session_index).default_rule {
                    DefaultRule::Forward { rating_group } => Some(rating_group),
                    DefaultRule::Drop => None,
                },
            };
            if let Some(rg) = rg {
                let before = out.frames.len();
                let f = redirect::Frame {
                    link: self.link,
                    bytes: frame,
                    packet: &packet,
                };
                let stage = self.redirect.enforce_rating_group(
                    snap,
                    session_index,
                    rg,
                    direction,
                    &key,
                    &f,
                    now,
                    out,
                );
                if let Some(stage @ (Stage::Answered(_) | Stage::Blocked)) = stage {
                    // Not cached: the flow is decided afresh each packet while redirected.
                    self.flows.remove(&key);
                    return self.redirected(stage, out.frames.len() - before);
                }
            }
        }
        if let Some(h) = hits {
            self.hits[h as usize] += 1;
        }
        if !forward {
            return self.drop(if rule.is_some() {
                DropReason::GateClosed
            } else {
                DropReason::DefaultRule
            });
        }
        if let Some(s) = rating_group {
            self.meter.add(s, direction, packet.ip_len, now);
        }
        if let Some(s) = monitoring_key {
            self.meter.add(s, direction, packet.ip_len, now);
        }
        if watch {
            let f = redirect::Frame {
                link: self.link,
                bytes: frame,
                packet: &packet,
            };
            if self
                .redirect
                .observe(snap, session_index, direction, &key, &f, now)
            {
                self.flows.invalidate_session(session_id);
            }
        }
        self.forward()
    }

    /// Counts what the redirect stage did with a packet it kept from the normal rules.
    fn redirected(&mut self, stage: Stage, injected: usize) -> Verdict {
        match stage {
            Stage::Blocked => self.drop(DropReason::WalledGarden),
            _ => {
                self.counters.answered += 1;
                self.counters.injected_frames += injected as u64;
                Verdict::Inject
            }
        }
    }

    #[inline]
    fn forward(&mut self) -> Verdict {
        self.counters.forwarded += 1;
        Verdict::Forward
    }

    #[inline]
    fn drop(&mut self, reason: DropReason) -> Verdict {
        self.counters.dropped[reason.index()] += 1;
        Verdict::Drop(reason)
    }

    /// The usage report: totals, usage per session × rating group and monitoring key, rule hits.
    pub fn report(&self) -> Report {
        Report::from_engines(std::slice::from_ref(self))
    }

    pub(crate) fn rule_hits(&self) -> impl Iterator<Item = (&(SessionId, Arc<str>), u64)> {
        self.hit_index
            .iter()
            .map(|(k, i)| (k, self.hits[*i as usize]))
    }

    /// Tells the engine the wall-clock time `wall` at its time `now` (a live run's `now` is
    /// monotonic): it records `wall − now`, for what must be measured against the wall clock.
    pub fn set_wall_clock(&mut self, now: Timestamp, wall: Timestamp) {
        self.wall_offset = now.offset_to(wall);
    }
}

/// Classifies one direction of a new flow and resolves its counter slots. Runs once per flow and
/// direction, not per packet.
#[allow(clippy::too_many_arguments)]
fn decide(
    snap: &PolicySnapshot,
    meter: &mut Meter,
    hit_index: &mut FxHashMap<(SessionId, Arc<str>), u32>,
    hits: &mut Vec<u64>,
    session_index: u32,
    direction: Direction,
    key: &FlowKey,
    now: Timestamp,
) -> Decision {
    let session = snap.session(session_index);
    let ckey = subscriber_key(
        key.ue,
        key.ue_port,
        key.remote,
        key.remote_port,
        key.protocol,
    );
    match snap.classify(session, direction, &ckey, now) {
        Some(id) => {
            let compiled = snap.rule(id);
            let rule = &compiled.rule;
            let name: Arc<str> = Arc::from(rule.name.as_str());
            let next = hits.len() as u32;
            let h = *hit_index.entry((session.id, name)).or_insert(next);
            if h == next {
                hits.push(0);
            }
            Decision::Decided {
                rule: Some(id),
                forward: compiled.gate_open(direction),
                rating_group: rule
                    .rating_group
                    .map(|rg| meter.slot(Metered::RatingGroup(session.id, rg))),
                monitoring_key: rule.monitoring_key.as_ref().map(|mk| {
                    meter.slot(Metered::MonitoringKey(session.id, Arc::from(mk.as_str())))
                }),
                hits: Some(h),
            }
        }
        None => match session.default_rule {
            DefaultRule::Forward { rating_group } => Decision::Decided {
                rule: None,
                forward: true,
                rating_group: Some(meter.slot(Metered::RatingGroup(session.id, rating_group))),
                monitoring_key: None,
                hits: None,
            },
            DefaultRule::Drop => Decision::Decided {
                rule: None,
                forward: false,
                rating_group: None,
                monitoring_key: None,
                hits: None,
            },
        },
    }
}

#[cfg(test)]
mod tests;
