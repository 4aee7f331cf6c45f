//! The stages a frame goes through, in order. Each is a short method of the engine's state that
//! either finishes with a verdict (`Break`) or hands on what the next stage needs (`Continue`);
//! [`Engine::handle_frame`] is the list of them.

use super::EventCounters;
use super::{Decision, DropReason, Engine, FlowEntry, Frame, Output, Port, State, Verdict};
use crate::charging::Metered;
use crate::packet::{ip_key, Context, Event, FlowKey};
use crate::policy::{
    DefaultRule, MalformedAction, PendingAction, PendingSettings, PolicySnapshot, SessionId,
};
use crate::redirect::Stage;
use crate::time::Timestamp;
use crate::wire::{self, Direction, FragmentOutcome, Packet, Parsed, WireError};
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;

/// A stage's outcome: the frame's verdict, or what the next stage works on.
pub(super) type Step<T> = ControlFlow<Verdict, T>;

/// The flow a packet belongs to, as the stages after the cache need it: copied out of its
/// entry, so they hold no borrow of the table.
#[derive(Clone, Copy)]
pub(super) struct Flow {
    /// The session's index in the snapshot in force.
    pub(super) session: u32,
    pub(super) session_id: SessionId,
    pub(super) watch: bool,
    /// The decision for this packet's direction.
    pub(super) decision: Decision,
}

impl Engine {
    /// Runs one frame through the pipeline.
    #[inline]
    pub fn handle_frame(
        &mut self,
        now: Timestamp,
        port: Port,
        bytes: &[u8],
        out: &mut Output,
    ) -> Verdict {
        self.state.count(bytes);
        self.pipeline(now, port, bytes, 0, out)
    }

    /// Runs an aggregate through the pipeline once: a frame that stands for several segments of
    /// `segment_size` payload bytes each (GSO or GRO), classified and enforced as one packet and
    /// metered as the segments the wire carries (see [`super::on_the_wire`]). A `segment_size`
    /// of 0 is a single frame, as [`Engine::handle_frame`].
    #[inline]
    pub fn handle_aggregate(
        &mut self,
        now: Timestamp,
        port: Port,
        bytes: &[u8],
        segment_size: u16,
        out: &mut Output,
    ) -> Verdict {
        self.state.count(bytes);
        self.pipeline(now, port, bytes, segment_size, out)
    }

    /// The stages after a frame is counted: also the way back in for a held frame, which was
    /// counted when it first came.
    #[inline]
    pub(super) fn pipeline(
        &mut self,
        now: Timestamp,
        port: Port,
        bytes: &[u8],
        segment_size: u16,
        out: &mut Output,
    ) -> Verdict {
        let (snap, st) = (&*self.snapshot, &mut self.state);
        let mut stages = || -> Step<Verdict> {
            // The parse is matched here, not handed back through a stage: a packet is large,
            // and copying it out of a wrapper costs more than the rest of a cache hit.
            let mut packet = match wire::parse(st.link, bytes) {
                Ok(Parsed::Ip(p)) => p,
                other => return Break(st.not_ip(snap, other)),
            };
            st.reassemble(now, &mut packet, bytes)?;
            let direction = st.orient(snap, port, &packet)?;
            let cx = st.context(now, direction, bytes, &packet);
            let mut flow = match st.cached(snap, &cx) {
                Some(flow) => flow,
                None => st.admit(snap, port, &cx, out)?,
            };
            st.decide_reverse(snap, &cx, &mut flow);
            st.held(snap, &cx, &mut flow, out)?;
            st.gate(&flow)?;
            st.charge(snap, port, &cx, &flow, segment_size)?;
            st.meter(snap, &cx, &flow, segment_size);
            st.watch(snap, &cx, &flow);
            Continue(st.forward())
        };
        match stages() {
            Break(verdict) | Continue(verdict) => verdict,
        }
    }
}

impl State {
    /// What is not IP, or not parseable: passed, or dropped as malformed.
    #[cold]
    fn not_ip(&mut self, snap: &PolicySnapshot, parsed: Result<Parsed, WireError>) -> Verdict {
        match parsed {
            Ok(_) => {
                self.counters.non_ip += 1;
                self.forward()
            }
            Err(e) => match snap.settings.malformed {
                MalformedAction::Drop => self.drop(DropReason::Malformed(e)),
                MalformedAction::Pass => {
                    self.counters.malformed_passed[e as usize] += 1;
                    self.forward()
                }
            },
        }
    }

    /// Reassembles the ports of fragments; passes IPv6 neighbour discovery.
    #[inline]
    fn reassemble(&mut self, now: Timestamp, packet: &mut Packet, bytes: &[u8]) -> Step<()> {
        match self.fragments.resolve(now, packet) {
            FragmentOutcome::NotFragment => {}
            FragmentOutcome::First => self.counters.fragments_first += 1,
            FragmentOutcome::Resolved => self.counters.fragments_resolved += 1,
            FragmentOutcome::Orphan => self.counters.fragments_orphan += 1,
        }
        // IPv6's ARP: link plumbing, passed like ARP for subscribers and everyone else, never
        // metered and never a flow. Without it a bridged UE could not reach its next hop — under
        // redirect neither the portal nor the 302 would arrive; with a dropping default rule
        // nothing would.
        if wire::is_neighbor_discovery(packet, bytes) {
            self.counters.neighbor_discovery += 1;
            return Break(self.forward());
        }
        Continue(())
    }

    /// Every frame counts, whatever becomes of it.
    #[inline]
    fn count(&mut self, bytes: &[u8]) {
        self.counters.frames += 1;
        self.counters.bytes += bytes.len() as u64;
    }

    /// Which way the packet goes, from the UE pools. Traffic with no subscriber end, or a
    /// subscriber's address on the leg it cannot come from (spoofed or looped), goes no
    /// further.
    #[inline]
    fn orient(&mut self, snap: &PolicySnapshot, port: Port, packet: &Packet) -> Step<Direction> {
        let t = &packet.tuple;
        let direction = if snap.in_ue_pool(ip_key(t.src)) {
            Direction::Uplink
        } else if snap.in_ue_pool(ip_key(t.dst)) {
            Direction::Downlink
        } else if snap.settings.forward_non_subscriber {
            self.counters.non_subscriber_forwarded += 1;
            return Break(self.forward());
        } else {
            return Break(self.drop(DropReason::NonSubscriber));
        };
        if matches!(
            (port, direction),
            (Port::Internet, Direction::Uplink) | (Port::Ue, Direction::Downlink)
        ) {
            return Break(self.drop(DropReason::WrongLeg));
        }
        Continue(direction)
    }

    /// The per-packet context the later stages read: the flow in subscriber orientation and the
    /// time on both clocks.
    #[inline]
    fn context<'a>(
        &self,
        now: Timestamp,
        direction: Direction,
        bytes: &'a [u8],
        packet: &'a Packet,
    ) -> Context<'a> {
        Context {
            now,
            wall: self.clock.wall(now),
            direction,
            key: FlowKey::new(&packet.tuple, direction),
            frame: Frame {
                link: self.link,
                bytes,
                packet,
            },
        }
    }

    /// The flow cache: a hit is a flow whose session has not changed since it was classified
    /// (another session's change leaves it cached), not idle, whose rules have not turned on or
    /// off since, and not made stale since it was entered (its session slot's epoch, read
    /// beside the entry). A hit costs one table lookup; what the rest of the path needs is
    /// copied out of it.
    #[inline]
    fn cached(&mut self, snap: &PolicySnapshot, cx: &Context<'_>) -> Option<Flow> {
        let idle_limit = self.flows.timeouts.for_protocol(cx.key.protocol);
        let e = self.flows.get_current_mut(&cx.key)?;
        if !snap.is_current(e.session, e.stamp)
            || cx.wall >= e.valid_until
            || cx.now.saturating_since(e.last_seen) > idle_limit
        {
            return None;
        }
        e.last_seen = cx.now;
        e.packets += 1;
        e.bytes += u64::from(cx.frame.packet.ip_len);
        Some(Flow {
            session: e.session,
            session_id: e.session_id,
            watch: e.watch,
            decision: *e.decision_mut(cx.direction),
        })
    }

    /// A packet the cache does not know: find its session, let the redirect stage see it first,
    /// and remember the flow decided for this direction. What the redirect stage answers or
    /// blocks leaves no flow state behind, so a flood of new connections cannot fill the table
    /// (a flow held by a rating-group redirect is classified first, and cached like any other).
    fn admit(
        &mut self,
        snap: &PolicySnapshot,
        port: Port,
        cx: &Context<'_>,
        out: &mut Output,
    ) -> Step<Flow> {
        let Some(index) = snap.session_index(cx.key.ue) else {
            if let Some(p) = &snap.settings.pending {
                return Break(self.pending(p, port, cx));
            }
            return Break(if snap.settings.forward_unknown_subscriber {
                self.counters.unknown_subscriber_forwarded += 1;
                self.forward()
            } else {
                self.drop(DropReason::UnknownSubscriber)
            });
        };
        let before = out.frames.len();
        let stage = self.redirect.enforce(snap, index, cx, out);
        let session = snap.session(index);
        let mut entry = FlowEntry::new(
            session.stamp,
            index,
            session.id,
            session.next_boundary(cx.wall),
            cx.now,
        );
        match stage {
            Stage::Pass { watch } => entry.watch = watch,
            Stage::Garden {
                rating_group,
                watch,
            } => {
                entry.watch = watch;
                let allowed = self.garden_decision(session.id, rating_group);
                entry.uplink = allowed;
                entry.downlink = allowed;
            }
            Stage::Answered(_) | Stage::Blocked => {
                return Break(self.redirected(stage, out.frames.len() - before))
            }
        }
        entry.packets = 1;
        entry.bytes = u64::from(cx.frame.packet.ip_len);
        // Decided before the insert, so a new flow costs no second lookup either.
        let decision = entry.decision_mut(cx.direction);
        if *decision == Decision::Undecided {
            *decision = self.decide(snap, cx, index);
        }
        let flow = Flow {
            session: index,
            session_id: session.id,
            watch: entry.watch,
            decision: *entry.decision_mut(cx.direction),
        };
        self.flows.insert(cx.key, entry, cx.now);
        Continue(flow)
    }

    /// A pool address without a session while sessions come from a policy engine: ask for the
    /// session once, and hold, forward or drop the packet meanwhile.
    #[cold]
    fn pending(&mut self, p: &PendingSettings, port: Port, cx: &Context<'_>) -> Verdict {
        let key = super::pending::key(cx.key.ue);
        let expired = &mut self.counters.held_expired;
        let (entry, ask) = match self.pending.enter(key, cx.now, p, expired) {
            Ok(e) => e,
            Err(_) => return self.drop(DropReason::PendingTableFull),
        };
        if ask {
            self.counters.session_requests += 1;
            self.raise(Event::SessionRequest {
                ue: cx.frame.ue(cx.direction),
                at: cx.wall,
            });
        }
        match p.action {
            PendingAction::Hold => {
                if self.pending.hold(entry, port, cx.frame.bytes, p.queue) {
                    self.counters.held += 1;
                    Verdict::Held
                } else {
                    self.drop(DropReason::PendingQueueFull)
                }
            }
            PendingAction::Forward => {
                self.counters.pending_forwarded += 1;
                self.forward()
            }
            PendingAction::Drop => self.drop(DropReason::PendingSession),
        }
    }

    /// Queues an event for the caller; counted by kind when the queue is full.
    fn raise(&mut self, event: Event) {
        push(&mut self.events, &mut self.event_counters, event);
    }

    /// The first packet of this direction on a flow the other direction opened: classify once
    /// and remember it.
    fn decide_reverse(&mut self, snap: &PolicySnapshot, cx: &Context<'_>, flow: &mut Flow) {
        if flow.decision != Decision::Undecided {
            return;
        }
        flow.decision = self.decide(snap, cx, flow.session);
        if let Some(e) = self.flows.get_mut(&cx.key) {
            *e.decision_mut(cx.direction) = flow.decision;
        }
    }

    /// A flow held by a Final-Unit REDIRECT of its rating group: the redirect stage answers or
    /// blocks each packet, or lets the flow through the walled garden — from then on it is
    /// cached as a garden flow, metered under the redirect's rating group and watched.
    fn held(
        &mut self,
        snap: &PolicySnapshot,
        cx: &Context<'_>,
        flow: &mut Flow,
        out: &mut Output,
    ) -> Step<()> {
        let Decision::Redirected { rating_group } = flow.decision else {
            return Continue(());
        };
        let before = out.frames.len();
        let stage = match self
            .redirect
            .rating_group_hold(snap, flow.session, rating_group)
        {
            Some(hold) => self.redirect.enforce_hold(snap, hold, cx, out),
            None => Stage::Pass { watch: false },
        };
        match stage {
            Stage::Answered(_) | Stage::Blocked => {
                return Break(self.redirected(stage, out.frames.len() - before))
            }
            Stage::Garden {
                rating_group,
                watch,
            } => {
                flow.decision = self.garden_decision(flow.session_id, rating_group);
                flow.watch |= watch;
            }
            // The redirect is gone (lifting it re-decides the session's flows, so only as a
            // safeguard): the normal rules decide.
            Stage::Pass { watch } => {
                flow.decision = self.classify(snap, cx, flow.session);
                flow.watch |= watch;
            }
        }
        if let Some(e) = self.flows.get_mut(&cx.key) {
            *e.decision_mut(cx.direction) = flow.decision;
            e.watch = flow.watch;
        }
        Continue(())
    }

    /// The gate of the rule that matched (or the default rule); counts the rule's hit.
    #[inline]
    fn gate(&mut self, flow: &Flow) -> Step<()> {
        let Decision::Decided {
            rule,
            forward,
            hits,
            ..
        } = flow.decision
        else {
            return Break(self.forward());
        };
        if let Some(h) = hits {
            self.hits.hit(h);
        }
        if forward {
            Continue(())
        } else if rule.is_some() {
            Break(self.drop(DropReason::GateClosed))
        } else {
            Break(self.drop(DropReason::DefaultRule))
        }
    }

    /// Usage under the flow's rating group and monitoring key, and the key's threshold.
    #[inline]
    fn meter(&mut self, snap: &PolicySnapshot, cx: &Context<'_>, flow: &Flow, segment_size: u16) {
        let Decision::Decided {
            rating_group,
            monitoring_key,
            ..
        } = flow.decision
        else {
            return;
        };
        let (len, packets) = super::on_the_wire(cx.frame.packet, segment_size);
        if let Some(slot) = rating_group {
            self.meter
                .add_packets(slot, cx.direction, len, packets, cx.wall);
        }
        if let Some(slot) = monitoring_key {
            self.meter
                .add_packets(slot, cx.direction, len, packets, cx.wall);
            let crossed = self
                .monitoring
                .add(slot, snap, flow.session, cx.direction, len, cx.wall);
            if let Some(event) = crossed {
                self.counters.usage_thresholds += 1;
                self.raise(event);
            }
        }
    }

    /// Shows a watched flow's packet to the success watch; a lift re-decides the session.
    #[inline]
    fn watch(&mut self, snap: &PolicySnapshot, cx: &Context<'_>, flow: &Flow) {
        if flow.watch && self.redirect.observe(snap, flow.session, cx) {
            self.flows.invalidate_session(flow.session);
        }
    }

    /// Decides one direction of a flow: its rules, unless a Final-Unit REDIRECT holds the
    /// rating group they meter it under. Runs once per flow and direction, not per packet.
    fn decide(&mut self, snap: &PolicySnapshot, cx: &Context<'_>, index: u32) -> Decision {
        let decision = self.classify(snap, cx, index);
        if self.redirect.has_rating_group_redirects() {
            if let Some(rating_group) = rating_group_of(snap, index, &decision) {
                if self
                    .redirect
                    .rating_group_hold(snap, index, rating_group)
                    .is_some()
                {
                    return Decision::Redirected { rating_group };
                }
            }
        }
        decision
    }

    /// Classifies one direction of a flow under the session's rules and resolves its counter
    /// slots.
    fn classify(&mut self, snap: &PolicySnapshot, cx: &Context<'_>, index: u32) -> Decision {
        let session = snap.session(index);
        match snap.classify(session, cx.direction, &cx.key.subscriber_key(), cx.wall) {
            Some(id) => {
                let compiled = session.rule(id);
                let rule = &compiled.rule;
                let rating_group = rule.rating_group.map(|rg| {
                    let slot = self.meter.slot(Metered::RatingGroup(session.id, rg));
                    if rule.online {
                        self.credit.track(slot, session.id, rg);
                    }
                    slot
                });
                Decision::Decided {
                    rule: Some(id),
                    forward: compiled.gate_open(cx.direction),
                    rating_group,
                    monitoring_key: rule.monitoring_key.as_ref().map(|mk| {
                        let key: Arc<str> = mk.as_str().into();
                        let slot = self
                            .meter
                            .slot(Metered::MonitoringKey(session.id, Arc::clone(&key)));
                        self.monitoring.track(slot, session.id, &key);
                        slot
                    }),
                    online: rating_group.is_some() && rule.online,
                    hits: Some(self.hits.slot(session.id, session.stamp, id, &rule.name)),
                }
            }
            None => match session.default_rule {
                DefaultRule::Forward { rating_group } => Decision::Decided {
                    rule: None,
                    forward: true,
                    rating_group: Some(
                        self.meter
                            .slot(Metered::RatingGroup(session.id, rating_group)),
                    ),
                    monitoring_key: None,
                    online: false,
                    hits: None,
                },
                DefaultRule::Drop => Decision::Decided {
                    rule: None,
                    forward: false,
                    rating_group: None,
                    monitoring_key: None,
                    online: false,
                    hits: None,
                },
            },
        }
    }

    /// Forwarded under no rule, metered under `rating_group`: a flow the walled garden let
    /// through. Under a Final-Unit redirect of an online rating group it is free, and counted
    /// as the group's (so that its reports add up to its meter).
    fn garden_decision(&mut self, session: SessionId, rating_group: Option<u32>) -> Decision {
        let slot = rating_group.map(|rg| self.meter.slot(Metered::RatingGroup(session, rg)));
        Decision::Decided {
            rule: None,
            forward: true,
            rating_group: slot,
            monitoring_key: None,
            online: slot.is_some_and(|s| self.credit.tracks(s)),
            hits: None,
        }
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
    pub(super) fn drop(&mut self, reason: DropReason) -> Verdict {
        self.counters.dropped[reason.index()] += 1;
        Verdict::Drop(reason)
    }
}

/// Queues an event for the caller; counted by kind when the queue is full.
pub(super) fn push(events: &mut Vec<Event>, dropped: &mut EventCounters, event: Event) {
    if events.len() < super::MAX_EVENTS {
        events.push(event);
    } else {
        dropped.dropped(event.kind());
    }
}

/// The rating group a decision of session `index` meters under, by number.
pub(super) fn rating_group_of(
    snap: &PolicySnapshot,
    index: u32,
    decision: &Decision,
) -> Option<u32> {
    match *decision {
        Decision::Decided { rule: Some(id), .. } => snap.session(index).rule(id).rule.rating_group,
        Decision::Decided { rule: None, .. } => match snap.session(index).default_rule {
            DefaultRule::Forward { rating_group } => Some(rating_group),
            DefaultRule::Drop => None,
        },
        Decision::Redirected { rating_group } => Some(rating_group),
        Decision::Undecided => None,
    }
}
