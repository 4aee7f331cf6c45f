//! Online charging (Gy, RFC 4006 / TS 32.299): per session × rating group of the rules with
//! `online = true`, the credit granted in force and how much of it is used, consumed by the
//! owning worker packet by packet, without locks.
//!
//! Grants come in the session's configuration through the snapshot ([`CreditGrant`]); a group
//! reads them again only when the snapshot changed (on its next packet, or at once when it is
//! waiting for one — see [`Credit::set_snapshot`]). A grant is taken once: one whose number is
//! not above the last taken changes nothing, so a repeated answer neither lifts a Final-Unit
//! action nor restores used-up credit.
//!
//! Per packet of a group with a grant: its IP octets (the segments of an aggregate included,
//! as the meter counts them) are counted against the grant; the packet that brings what is
//! left to the threshold raises one [`Event::CreditReport`] with reason `Threshold` (the
//! packet and the rest of the grant go on); the packet that uses the grant up is the last one
//! forwarded under it. Then, with a Final-Unit-Indication, its action applies at once (a report
//! with reason `Final`); without one, a report with reason `QuotaExhausted` asks for more and
//! the pending action applies until a grant comes. Without a grant the first packet raises one
//! [`Event::CreditRequest`] (again only after `credit.retry`).
//!
//! Every report carries what was counted since the previous report of the group, so the
//! reports of a group added up (and what it has not reported yet, [`Credit::unreported`]) are
//! exactly the octets the meter counted for it. Time used is whole seconds since the previous
//! report (or the group's first packet); the fraction carries over to the next report.
//!
//! This module decides; the engine does what it decides (holds frames, applies the redirect).
//! Nothing here allocates per packet: a group's state is made when its flow is classified.

use super::Slot;
use crate::classify::Rule;
use crate::packet::{DropReason, Event, FlowKey, Octets, ReportingReason, UsedUnits};
use crate::policy::{
    CreditGrant, FinalUnitAction, FinalUnitIndication, GrantedServiceUnit, PolicySnapshot,
    SessionId,
};
use crate::time::Timestamp;
use crate::wire::Direction;
use std::time::Duration;

/// What becomes of a packet of an online rating group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Forward it: counted.
    Pass,
    /// The last grant is used up and its Final-Unit-Action is REDIRECT: the engine applies the
    /// redirect to the rating group now. `forward`: this packet used the grant up (counted,
    /// forwarded, the last one under it); otherwise nothing was left for it (a grant of
    /// nothing) and it is dropped, as the redirect stage would have done.
    Redirect {
        forward: bool,
    },
    /// No credit in force: the pending action applies (a forwarded packet was counted).
    Pending,
    Drop(DropReason),
}

/// Where a group stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditState {
    /// No grant in force: asked for (or to be asked by the next packet).
    Waiting,
    /// A grant in force.
    Granted,
    /// The last grant used up, Final-Unit-Action TERMINATE.
    Terminated,
    /// The last grant used up, Final-Unit-Action REDIRECT (the redirect stage holds it).
    Redirected,
    /// The last grant used up, Final-Unit-Action RESTRICT_ACCESS.
    Restricted,
}

/// What a new snapshot changed for a group the engine must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A grant came for the group in meter slot `index`, which was waiting: frames held for
    /// it can go.
    Granted { index: usize },
    /// A grant came for a redirected group: the engine lifts its Final-Unit redirect.
    Unredirected {
        session: SessionId,
        rating_group: u32,
    },
}

/// The grant in force, copied out of the snapshot when taken (the Final-Unit-Indication stays
/// there and is looked up when the grant is used up).
#[derive(Clone, Copy, Debug, Default)]
struct Taken {
    grant: u64,
    granted: GrantedServiceUnit,
    volume_threshold: Option<u64>,
    time_threshold: Option<u64>,
    validity_time: Option<u64>,
    quota_holding_time: Option<u64>,
    /// When it was taken into use (monotonic): the first packet counted under it.
    since: Option<Timestamp>,
    /// Octets counted under it.
    used: Octets,
    /// Its threshold was reported.
    threshold_reported: bool,
}

impl Taken {
    fn of(g: &CreditGrant) -> Taken {
        Taken {
            grant: g.grant,
            granted: g.granted,
            volume_threshold: g.volume_threshold,
            time_threshold: g.time_threshold,
            validity_time: g.validity_time,
            quota_holding_time: g.quota_holding_time,
            since: None,
            used: Octets::default(),
            threshold_reported: false,
        }
    }

    fn elapsed(&self, now: Timestamp) -> Duration {
        self.since
            .map_or(Duration::ZERO, |s| now.saturating_since(s))
    }

    /// Whether a unit granted is used up: plain compares per limit given (the clock is read
    /// only for a time grant).
    #[inline]
    fn used_up(&self, now: Timestamp) -> bool {
        let (g, u) = (&self.granted, &self.used);
        g.total.is_some_and(|t| u.total() >= t)
            || g.uplink.is_some_and(|t| u.uplink >= t)
            || g.downlink.is_some_and(|t| u.downlink >= t)
            || g.time.is_some_and(|t| self.elapsed(now).as_secs() >= t)
    }

    /// Whether what is left of a unit is at its threshold or below.
    #[inline]
    fn at_threshold(&self, now: Timestamp) -> bool {
        let (g, u) = (&self.granted, &self.used);
        let volume = self.volume_threshold.is_some_and(|v| {
            g.total.is_some_and(|t| u.total().saturating_add(v) >= t)
                || g.uplink.is_some_and(|t| u.uplink.saturating_add(v) >= t)
                || g.downlink
                    .is_some_and(|t| u.downlink.saturating_add(v) >= t)
        });
        volume
            || self
                .time_threshold
                .zip(g.time)
                .is_some_and(|(v, t)| self.elapsed(now).as_secs().saturating_add(v) >= t)
    }
}

/// One session × rating group of online rules.
#[derive(Debug)]
struct Group {
    session: SessionId,
    rating_group: u32,
    service_identifier: Option<u32>,
    state: CreditState,
    /// The grant in force (state `Granted`), or the last one (a Final-Unit action's).
    taken: Option<Taken>,
    /// The highest grant number taken: no grant up to it is taken again.
    last: u64,
    /// When credit was last asked for and not yet granted (monotonic).
    requested: Option<Timestamp>,
    /// Counted since the previous report.
    unreported: Octets,
    /// Where the time of the next report starts (monotonic); `None` before the first packet.
    interval: Option<Timestamp>,
    last_packet: Timestamp,
    /// Restriction-Filter-Rules and Filter-Ids compiled (state `Restricted`).
    allowed: Vec<Rule>,
    /// The snapshot version its grant was last looked for in.
    version: Option<u64>,
    /// Listed in `Credit::waiting`.
    listed: bool,
}

/// A grant of no units whose Final-Unit-Action is REDIRECT.
fn nothing_but_redirect(g: &CreditGrant) -> bool {
    let granted = &g.granted;
    let units = [
        granted.total,
        granted.uplink,
        granted.downlink,
        granted.time,
    ];
    units.iter().all(|u| u.is_none_or(|n| n == 0))
        && units.iter().any(Option::is_some)
        && g.final_unit
            .as_ref()
            .is_some_and(|f| matches!(f.action, FinalUnitAction::Redirect(_)))
}

impl Group {
    /// Takes the group's grant from the session's credits when it is new.
    fn rearm(&mut self, grants: &[CreditGrant], version: u64, index: usize) -> Option<Change> {
        self.version = Some(version);
        let g = grants
            .iter()
            .find(|g| g.rating_group == self.rating_group && g.grant > self.last)?;
        let before = self.state;
        self.last = g.grant;
        if before == CreditState::Redirected && nothing_but_redirect(g) {
            // Still out of credit (the answer to the final units' report): the redirect stays.
            // Taken, the nothing would lift it and be used up, reported FINAL and answered with
            // nothing again by the next packet, in a loop dropping every packet.
            return None;
        }
        self.taken = Some(Taken::of(g));
        self.service_identifier = g.service_identifier.or(self.service_identifier);
        self.state = CreditState::Granted;
        self.requested = None;
        self.allowed = Vec::new();
        let (session, rating_group) = (self.session, self.rating_group);
        match before {
            CreditState::Waiting => Some(Change::Granted { index }),
            CreditState::Redirected => Some(Change::Unredirected {
                session,
                rating_group,
            }),
            _ => None,
        }
    }

    fn count(&mut self, direction: Direction, len: u64, now: Timestamp) {
        let add = |o: &mut Octets| match direction {
            Direction::Uplink => o.uplink += len,
            Direction::Downlink => o.downlink += len,
        };
        add(&mut self.unreported);
        if self.state == CreditState::Granted {
            if let Some(t) = &mut self.taken {
                add(&mut t.used);
                t.since.get_or_insert(now);
            }
        }
        if self.interval.is_none() {
            self.interval = Some(now);
        }
        self.last_packet = now;
    }

    /// What was counted since the previous report; the next one starts here.
    fn report(&mut self, reason: ReportingReason, now: Timestamp, at: Timestamp) -> Event {
        let time = match self.interval {
            Some(start) => {
                let secs = now.saturating_since(start).as_secs();
                self.interval = Some(start.saturating_add(Duration::from_secs(secs)));
                secs
            }
            None => 0,
        };
        Event::CreditReport {
            session: self.session,
            rating_group: self.rating_group,
            service_identifier: self.service_identifier,
            grant: self.taken.map_or(0, |t| t.grant),
            reason,
            used: UsedUnits {
                octets: std::mem::take(&mut self.unreported),
                time,
            },
            at,
        }
    }

    /// Validity-Time and Quota-Holding-Time of the grant in force: when one has run out, the
    /// report, and the group waits for a grant (asked for by the report on Validity-Time; by
    /// its next packet after Quota-Holding-Time, which gives the grant back).
    fn timers(&mut self, now: Timestamp, at: Timestamp) -> Option<Event> {
        if self.state != CreditState::Granted {
            return None;
        }
        let t = self.taken.as_ref()?;
        // Neither runs before the grant's first packet.
        let since = t.since?;
        let reason = if t
            .validity_time
            .is_some_and(|v| now.saturating_since(since) >= Duration::from_secs(v))
        {
            ReportingReason::ValidityTime
        } else if t.quota_holding_time.is_some_and(|q| {
            now.saturating_since(self.last_packet.max(since)) >= Duration::from_secs(q)
        }) {
            ReportingReason::QuotaHoldingTime
        } else {
            return None;
        };
        let event = self.report(reason, now, at);
        self.state = CreditState::Waiting;
        self.requested = (reason == ReportingReason::ValidityTime).then_some(now);
        // Time no packet used is not charged: the next interval starts with the next packet.
        self.interval = None;
        Some(event)
    }
}

/// One worker's online charging, by meter slot (the rating group's).
#[derive(Default)]
pub struct Credit {
    groups: Vec<Option<Group>>,
    /// Groups not in `Granted`, which a new snapshot may change.
    waiting: Vec<u32>,
}

impl Credit {
    pub fn new() -> Credit {
        Credit::default()
    }

    /// Charges the rating group counted in `slot` online (at classification, once per flow);
    /// does nothing when it is charged already.
    pub fn track(&mut self, slot: Slot, session: SessionId, rating_group: u32) {
        let i = slot.index();
        if self.groups.len() <= i {
            self.groups.resize_with(i + 1, || None);
        }
        if self.groups[i].is_none() {
            self.groups[i] = Some(Group {
                session,
                rating_group,
                service_identifier: None,
                state: CreditState::Waiting,
                taken: None,
                last: 0,
                requested: None,
                unreported: Octets::default(),
                interval: None,
                last_packet: Timestamp::default(),
                allowed: Vec::new(),
                version: None,
                listed: true,
            });
            self.waiting.push(i as u32);
        }
    }

    /// Whether the rating group of `slot` is charged online.
    #[inline]
    pub fn tracks(&self, slot: Slot) -> bool {
        matches!(self.groups.get(slot.index()), Some(Some(_)))
    }

    /// A packet of `len` IP octets of the online group in `slot`, for session `index` of
    /// `snap`; `garden`: its flow was let through by the walled garden of a redirect (not
    /// decided by a rule); `counted_pending`: a packet without credit is forwarded (and so
    /// counted). Events go to `raise`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn admit(
        &mut self,
        slot: Slot,
        snap: &PolicySnapshot,
        index: u32,
        key: &FlowKey,
        garden: bool,
        direction: Direction,
        len: u64,
        now: Timestamp,
        at: Timestamp,
        counted_pending: bool,
        retry: Duration,
        raise: &mut impl FnMut(Event),
    ) -> Admit {
        let Some(Some(g)) = self.groups.get_mut(slot.index()) else {
            return Admit::Pass;
        };
        // A rule's flow of a redirected group: the success watch lifted the redirect locally
        // (the subscriber paid). Not free: the group asks for credit like one without it.
        if g.state == CreditState::Redirected && !garden {
            g.state = CreditState::Waiting;
            g.requested = None;
        }
        if g.version != Some(snap.version) {
            let _ = g.rearm(&snap.session(index).credits, snap.version, slot.index());
        }
        if let Some(e) = g.timers(now, at) {
            raise(e);
        }
        match g.state {
            CreditState::Granted => {}
            CreditState::Terminated => return Admit::Drop(DropReason::CreditTerminated),
            // Only the garden's flows reach here (the redirect stage holds the rest): free of
            // credit, counted so that reports add up to the meter.
            CreditState::Redirected => {
                g.count(direction, len, now);
                return Admit::Pass;
            }
            CreditState::Restricted => {
                let k = key.subscriber_key();
                if g.allowed.iter().any(|r| r.matches(&k)) {
                    g.count(direction, len, now);
                    return Admit::Pass;
                }
                return Admit::Drop(DropReason::CreditRestricted);
            }
            CreditState::Waiting => {
                if g.requested.is_none_or(|r| now.saturating_since(r) >= retry) {
                    g.requested = Some(now);
                    raise(Event::CreditRequest {
                        session: g.session,
                        rating_group: g.rating_group,
                        service_identifier: g.service_identifier,
                        at,
                    });
                }
                if counted_pending {
                    g.count(direction, len, now);
                }
                self.list(slot.index());
                return Admit::Pending;
            }
        }
        // Granted: a grant of nothing left (zero units) is used up before this packet.
        if g.taken.as_ref().is_some_and(|t| t.used_up(now)) {
            let (admit, event) = Self::final_unit(g, snap, index, now, at);
            raise(event);
            self.after_final(slot.index(), at, raise);
            return match admit {
                // This packet is not the one that used the grant up: the action applies to it.
                Admit::Redirect { .. } => Admit::Redirect { forward: false },
                Admit::Pass => {
                    // Restricted: judged like any packet after.
                    self.admit(
                        slot,
                        snap,
                        index,
                        key,
                        garden,
                        direction,
                        len,
                        now,
                        at,
                        counted_pending,
                        retry,
                        raise,
                    )
                }
                other => other,
            };
        }
        g.count(direction, len, now);
        let Some(t) = g.taken.as_mut() else {
            return Admit::Pass;
        };
        if t.used_up(now) {
            let (admit, event) = Self::final_unit(g, snap, index, now, at);
            raise(event);
            self.after_final(slot.index(), at, raise);
            // The packet that used the grant up is the last one forwarded under it.
            return match admit {
                Admit::Redirect { .. } => Admit::Redirect { forward: true },
                _ => Admit::Pass,
            };
        }
        if !t.threshold_reported && t.at_threshold(now) {
            t.threshold_reported = true;
            raise(g.report(ReportingReason::Threshold, now, at));
        }
        Admit::Pass
    }

    /// The grant in force is used up: its Final-Unit-Action, or a report asking for more.
    /// Returns what to do with later packets (`Redirect`: redirect; `Pass`:
    /// restricted; `Drop`: terminated; `Pending`: waiting) and the report.
    #[cold]
    fn final_unit(
        g: &mut Group,
        snap: &PolicySnapshot,
        index: u32,
        now: Timestamp,
        at: Timestamp,
    ) -> (Admit, Event) {
        let session = snap.session(index);
        let fui = g.taken.and_then(|t| {
            session
                .credits
                .iter()
                .find(|c| c.rating_group == g.rating_group && c.grant == t.grant)
                .and_then(|c| c.final_unit.as_ref())
        });
        let Some(fui) = fui else {
            let event = g.report(ReportingReason::QuotaExhausted, now, at);
            g.state = CreditState::Waiting;
            // The report asks for more.
            g.requested = Some(now);
            return (Admit::Pending, event);
        };
        let event = g.report(ReportingReason::Final, now, at);
        let admit = apply(g, snap, session, fui);
        (admit, event)
    }

    /// After a Final-Unit-Action: the group waits for a new grant; a session whose every
    /// online group is terminated is reported.
    fn after_final(&mut self, i: usize, at: Timestamp, raise: &mut impl FnMut(Event)) {
        self.list(i);
        let Some(Some(g)) = self.groups.get(i) else {
            return;
        };
        if g.state != CreditState::Terminated {
            return;
        }
        let session = g.session;
        // Rare (once per termination): a scan of this worker's groups.
        let all = self
            .groups
            .iter()
            .flatten()
            .filter(|g| g.session == session)
            .all(|g| g.state == CreditState::Terminated);
        if all {
            raise(Event::CreditTerminated { session, at });
        }
    }

    fn list(&mut self, i: usize) {
        if let Some(Some(g)) = self.groups.get_mut(i) {
            if !g.listed {
                g.listed = true;
                self.waiting.push(i as u32);
            }
        }
    }

    /// A new snapshot: the groups without a grant in force look for one at once, so frames
    /// held for them go and a Final-Unit redirect is lifted without waiting for a packet (the
    /// redirect stage keeps its packets from reaching here). Returns what the engine must do.
    pub fn set_snapshot(&mut self, snap: &PolicySnapshot, changes: &mut Vec<Change>) {
        let Credit { groups, waiting } = self;
        waiting.retain(|&i| {
            let Some(Some(g)) = groups.get_mut(i as usize) else {
                return false;
            };
            let Some((_, s)) = snap.session_by_id(g.session) else {
                return true;
            };
            if let Some(c) = g.rearm(&s.credits, snap.version, i as usize) {
                changes.push(c);
            }
            g.listed = g.state != CreditState::Granted;
            g.listed
        });
    }

    /// Validity-Time and Quota-Holding-Time of every grant in force (from the engine's
    /// periodic housekeeping; a packet checks its own group's too).
    pub fn handle_timeout(&mut self, now: Timestamp, at: Timestamp, raise: &mut impl FnMut(Event)) {
        for i in 0..self.groups.len() {
            let Some(Some(g)) = self.groups.get_mut(i) else {
                continue;
            };
            if let Some(e) = g.timers(now, at) {
                raise(e);
                self.list(i);
            }
        }
    }

    /// Where the group in meter slot `index` stands.
    pub fn state(&self, index: usize) -> Option<CreditState> {
        Some(self.groups.get(index)?.as_ref()?.state)
    }

    /// What the group in meter slot `index` counted and has not reported yet.
    pub fn unreported(&self, index: usize) -> Option<Octets> {
        Some(self.groups.get(index)?.as_ref()?.unreported)
    }
}

/// Applies a Final-Unit-Indication's action to a group (the report is made).
fn apply(
    g: &mut Group,
    snap: &PolicySnapshot,
    session: &crate::policy::Session,
    fui: &FinalUnitIndication,
) -> Admit {
    match fui.action {
        FinalUnitAction::Terminate => {
            g.state = CreditState::Terminated;
            Admit::Drop(DropReason::CreditTerminated)
        }
        FinalUnitAction::Redirect(_) => {
            g.state = CreditState::Redirected;
            Admit::Redirect { forward: true }
        }
        FinalUnitAction::RestrictAccess => {
            g.allowed = crate::redirect::restriction_rules(
                snap,
                session,
                &fui.restriction_filters,
                &fui.filter_ids,
            );
            g.state = CreditState::Restricted;
            Admit::Pass
        }
    }
}

#[cfg(test)]
mod tests;
