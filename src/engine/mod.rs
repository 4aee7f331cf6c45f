//! The per-worker sans-IO pipeline: parse, orient, the flow cache, the redirect stage, classify,
//! gate, credit (online charging), meter, watch. Bytes and the time go in; a [`Verdict`] comes out, and any frames to
//! inject are written into the caller's [`Output`].
//!
//! No sockets, threads or clocks in here: every behaviour can be replayed from bytes. Nothing on
//! the packet path allocates once a flow is known.
//!
//! Time comes in as `now`, a monotonic clock (a replay: the capture's), which runs idle
//! timeouts, cookie epochs and TTLs. What is a date — a token's expiry, a rule's activation,
//! the usage timestamps a report shows — is judged on the wall clock, `now` plus the offset the
//! caller last gave [`Engine::set_wall_clock`] (none for a replay).
//!
//! The engine is the policy snapshot in force plus the worker's own [`State`] (flows, counters,
//! the redirect stage, usage monitoring, online charging's credit, the subscribers waiting for
//! their session and the frames waiting for their rating group's credit); the stages
//! in `stages` are methods of the state that read the snapshot, so a stage can never hold the
//! snapshot it is also replacing.
//!
//! What the control plane must hear of — a recharge success, a pool address without a session,
//! a usage threshold reached, credit to ask for or to report — is queued as an [`Event`] for the caller to take with
//! [`Engine::drain_events`]; frames held for a session on its way come back through
//! [`Engine::release_held`] once a snapshot brings it.

mod counters;
mod credit;
mod flow_table;
mod hits;
mod pending;
mod report;
mod segments;
mod stages;

pub use counters::{Counters, EventCounters, VerdictTotals};
pub use flow_table::{Decision, FlowEntry, FlowTable, IdleTimeouts};
pub use report::{FlowSummary, MonitoringUsage, RatingGroupUsage, Report, RuleHits, Tally};
pub use segments::on_the_wire;
// The engine's vocabulary, defined below every stage so that the stages need not import the
// engine.
pub use crate::packet::{DropReason, Event, FlowKey, Frame, Output, Port, Toward, Verdict};

use crate::charging::{Change, Credit, Meter, Monitoring};
use crate::policy::{PendingSettings, PolicySnapshot, SessionId};
use crate::redirect::{FinalUnitRedirect, Redirector};
use crate::time::Timestamp;
use crate::wire::{FragmentTable, FragmentTableConfig, LinkType};
use hits::HitCounters;
use std::sync::Arc;

/// One worker's engine.
pub struct Engine {
    snapshot: Arc<PolicySnapshot>,
    state: State,
}

/// What a worker's engine keeps from packet to packet, apart from the policy it enforces.
struct State {
    link: LinkType,
    clock: WallClock,
    flows: FlowTable,
    fragments: FragmentTable,
    meter: Meter,
    hits: HitCounters,
    counters: Counters,
    redirect: Redirector,
    pending: pending::Pending,
    monitoring: Monitoring,
    /// Online charging: the credit of each online rating group, consumed here.
    credit: Credit,
    /// Frames held while their rating group's credit is asked for, by group.
    credit_held: pending::Pending,
    /// What the last snapshot changed for online rating groups (room reused).
    credit_changes: Vec<Change>,
    /// Session requests and usage thresholds for the control plane, oldest first (recharge
    /// successes wait in the redirect stage).
    events: Vec<Event>,
    /// Events that found `events` full, by kind.
    event_counters: EventCounters,
}

/// Events waiting in an engine for its caller, at most; later ones are counted and dropped. A
/// live worker drains them after every batch.
const MAX_EVENTS: usize = 1024;

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
        let state = State {
            link,
            clock: WallClock::default(),
            flows,
            fragments: FragmentTable::new(FragmentTableConfig::default()),
            meter: Meter::new(),
            hits: HitCounters::default(),
            counters: Counters::default(),
            redirect: Redirector::new(&snapshot),
            pending: pending::Pending::default(),
            monitoring: Monitoring::new(),
            credit: Credit::new(),
            credit_held: pending::Pending::default(),
            credit_changes: Vec::new(),
            events: Vec::with_capacity(64),
            event_counters: EventCounters::default(),
        };
        Engine { snapshot, state }
    }

    /// Installs a newer policy. Cached decisions of sessions it changed (all of them, after a
    /// full build) are re-made lazily, on each flow's next packet; other flows stay cached.
    /// Usage counters carry over (they are keyed by session id).
    ///
    /// Held frames of subscribers whose session the new snapshot has are then ready: the caller
    /// hands them on with [`Engine::release_held`] before its next frame, so they keep their
    /// order ahead of the subscriber's later packets.
    ///
    /// Online rating groups without credit in force take a new grant at once: their held
    /// frames are ready the same way, and a Final-Unit REDIRECT of a group granted again is
    /// lifted (a repeated answer, with the same grant number, changes nothing).
    pub fn set_snapshot(&mut self, snapshot: Arc<PolicySnapshot>) {
        let st = &mut self.state;
        st.redirect.set_snapshot(&snapshot);
        st.counters.held_expired += st.pending.set_snapshot(&snapshot);
        let mut changes = std::mem::take(&mut st.credit_changes);
        st.credit.set_snapshot(&snapshot, &mut changes);
        for change in changes.drain(..) {
            match change {
                Change::Granted { index } => {
                    st.credit_held.release(pending::credit_key_of(index));
                }
                Change::Unredirected {
                    session,
                    rating_group,
                } => {
                    if st.redirect.remove_final_unit(session, Some(rating_group)) {
                        invalidate(&mut st.flows, &snapshot, session);
                    }
                }
            }
        }
        st.credit_changes = changes;
        self.snapshot = snapshot;
    }

    /// Whether held frames wait for [`Engine::release_held`].
    pub fn has_held_ready(&self) -> bool {
        self.state.pending.has_ready() || self.state.credit_held.has_ready()
    }

    /// Runs the held frames of subscribers whose session has arrived through the pipeline, in
    /// the order they came, each enforced and metered like any frame; `send` is handed each
    /// frame with the leg it came from, its verdict and the frames injected for it (in `out`,
    /// cleared before each).
    pub fn release_held(
        &mut self,
        now: Timestamp,
        out: &mut Output,
        mut send: impl FnMut(Port, &[u8], Verdict, &Output),
    ) {
        // Sessions first: a frame held for its session may be held again for its credit.
        for credit in [false, true] {
            fn pending(st: &mut State, credit: bool) -> &mut pending::Pending {
                if credit {
                    &mut st.credit_held
                } else {
                    &mut st.pending
                }
            }
            if !pending(&mut self.state, credit).has_ready() {
                continue;
            }
            let ready = pending(&mut self.state, credit).take_ready();
            for &i in &ready {
                let (bytes, frames) = pending(&mut self.state, credit).take_frames(i);
                for &(port, start, len) in &frames {
                    let frame = &bytes[start as usize..(start + len) as usize];
                    out.clear();
                    self.state.counters.held_released += 1;
                    let verdict = self.pipeline(now, port, frame, 0, out);
                    send(port, frame, verdict, out);
                }
                out.clear();
                pending(&mut self.state, credit).released(i, bytes, frames);
            }
            pending(&mut self.state, credit).ready_done(ready);
        }
    }

    /// Pool addresses waiting for their session, and the frames held for them.
    pub fn pending(&self) -> (usize, usize) {
        (self.state.pending.len(), self.state.pending.held())
    }

    /// Applies online charging's Final-Unit-Action REDIRECT to a session (or one of its rating
    /// groups). Idempotent; the session's flows are decided again on their next packet.
    pub fn apply_final_unit_redirect(&mut self, session: SessionId, fu: FinalUnitRedirect) {
        let st = &mut self.state;
        if st.redirect.apply_final_unit(&self.snapshot, session, fu) {
            invalidate(&mut st.flows, &self.snapshot, session);
        }
    }

    /// Removes a Final-Unit REDIRECT (credit granted again): the normal rules apply again.
    pub fn remove_final_unit_redirect(&mut self, session: SessionId, rating_group: Option<u32>) {
        let st = &mut self.state;
        if st.redirect.remove_final_unit(session, rating_group) {
            invalidate(&mut st.flows, &self.snapshot, session);
        }
    }

    /// Events for the control plane, oldest first within a kind: recharge successes, then
    /// session requests and usage thresholds.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        let st = &mut self.state;
        st.redirect.drain_events().chain(st.events.drain(..))
    }

    /// Events this engine had no room for, by kind.
    pub fn event_counters(&self) -> &EventCounters {
        &self.state.event_counters
    }

    pub fn monitoring(&self) -> &Monitoring {
        &self.state.monitoring
    }

    /// Online charging's credit per rating group.
    pub fn credit(&self) -> &Credit {
        &self.state.credit
    }

    /// Frames held while their rating group's credit is asked for.
    pub fn credit_held(&self) -> usize {
        self.state.credit_held.held()
    }

    /// The redirect stage: its counters, portal host names to resolve, and the SYN-cookie
    /// secret (the live data path sets a random one).
    pub fn redirect(&self) -> &Redirector {
        &self.state.redirect
    }

    pub fn redirect_mut(&mut self) -> &mut Redirector {
        &mut self.state.redirect
    }

    pub fn snapshot(&self) -> &Arc<PolicySnapshot> {
        &self.snapshot
    }

    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    pub fn meter(&self) -> &Meter {
        &self.state.meter
    }

    pub fn flows(&self) -> &FlowTable {
        &self.state.flows
    }

    /// Tells the engine what the wall clock reads at monotonic time `now`; a live run calls it
    /// now and then (e.g. once a second), so a clock step moves only what is compared with a
    /// date — never an idle timeout or a cookie epoch. A replay never calls it: its wall clock
    /// is the capture's.
    pub fn set_wall_clock(&mut self, now: Timestamp, wall: Timestamp) {
        self.state.clock = WallClock::at(now, wall);
    }

    /// Housekeeping the caller runs now and then (e.g. once a second): expires idle flows, and
    /// the pending subscribers whose session did not come in time (their held frames dropped);
    /// reports the online grants whose Validity-Time or Quota-Holding-Time ran out, and drops
    /// the frames held for credit longer than `credit.retry`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.state.flows.expire(now);
        let st = &mut self.state;
        st.counters.held_expired += st
            .pending
            .expire(now, self.snapshot.settings.pending.as_ref());
        let c = self.snapshot.settings.credit;
        let credit_pending = PendingSettings {
            action: c.pending,
            queue: c.queue,
            subscribers: c.groups,
            timeout: c.retry,
        };
        st.counters.held_expired += st.credit_held.expire(now, Some(&credit_pending));
        let wall = st.clock.wall(now);
        let (events, dropped, counters) =
            (&mut st.events, &mut st.event_counters, &mut st.counters);
        st.credit.handle_timeout(now, wall, &mut |e| {
            counters.credit_reports += 1;
            stages::push(events, dropped, e);
        });
    }

    /// The usage report: totals, usage per session × rating group and monitoring key, rule hits.
    pub fn report(&self) -> Report {
        Report::from_engines(std::slice::from_ref(self))
    }

    pub(crate) fn rule_hits(&self) -> impl Iterator<Item = (&(SessionId, Arc<str>), u64)> {
        self.state.hits.iter()
    }
}

/// Makes a session's cached decisions stale, by its slot in `snapshot`. A session the snapshot
/// no longer has needs nothing: its flows fail the stamp check.
fn invalidate(flows: &mut FlowTable, snapshot: &PolicySnapshot, session: SessionId) {
    if let Some((slot, _)) = snapshot.session_by_id(session) {
        flows.invalidate_session(slot);
    }
}

/// Wall-clock time as an offset from the engine's monotonic time; zero until set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WallClock {
    /// Wall minus monotonic, in nanoseconds (±292 years).
    offset: i64,
}

impl WallClock {
    fn at(now: Timestamp, wall: Timestamp) -> WallClock {
        let offset = i128::from(wall.as_nanos()) - i128::from(now.as_nanos());
        WallClock {
            offset: offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        }
    }

    #[inline]
    fn wall(self, now: Timestamp) -> Timestamp {
        Timestamp::from_nanos(now.as_nanos().saturating_add_signed(self.offset))
    }
}

#[cfg(test)]
mod tests;
