//! The credit stage: online charging between the gate and the meter. A packet of an online
//! rating group consumes its credit (`charging::Credit` decides), waits for it under the
//! pending action, or meets the Final-Unit-Action; the engine does what was decided — holds the
//! frame, drops it, or hands the rating group to the redirect stage.

use super::stages::{push, rating_group_of, Flow, Step};
use super::{Decision, DropReason, Port, State, Verdict};
use crate::charging::{Admit, Slot};
use crate::packet::{Context, Event};
use crate::policy::{
    CreditSettings, FinalUnitAction, PendingAction, PendingSettings, PolicySnapshot,
};
use crate::redirect::FinalUnitRedirect;
use std::ops::ControlFlow::{Break, Continue};

impl State {
    /// Online charging: a packet of an online rating group consumes its credit, or waits for
    /// it under the pending action, or meets the Final-Unit-Action. Offline flows pass at the
    /// cost of one compare.
    #[inline]
    pub(super) fn charge(
        &mut self,
        snap: &PolicySnapshot,
        port: Port,
        cx: &Context<'_>,
        flow: &Flow,
        segment_size: u16,
    ) -> Step<()> {
        let Decision::Decided {
            rating_group: Some(slot),
            online: true,
            rule,
            ..
        } = flow.decision
        else {
            return Continue(());
        };
        let (len, _) = super::on_the_wire(cx.frame.packet, segment_size);
        let settings = snap.settings.credit;
        let (events, dropped, counters) = (
            &mut self.events,
            &mut self.event_counters,
            &mut self.counters,
        );
        let mut raise = |e: Event| {
            match e {
                Event::CreditRequest { .. } => counters.credit_requests += 1,
                Event::CreditReport { .. } => counters.credit_reports += 1,
                _ => {}
            }
            push(events, dropped, e);
        };
        let admit = self.credit.admit(
            slot,
            snap,
            flow.session,
            &cx.key,
            rule.is_none(),
            cx.direction,
            len,
            cx.now,
            cx.wall,
            settings.pending == PendingAction::Forward,
            settings.retry,
            &mut raise,
        );
        match admit {
            Admit::Pass => Continue(()),
            Admit::Drop(reason) => Break(self.drop(reason)),
            Admit::Redirect { forward } => {
                self.final_unit_redirect(snap, flow);
                if forward {
                    Continue(())
                } else {
                    Break(self.drop(DropReason::WalledGarden))
                }
            }
            Admit::Pending => self.credit_pending(&settings, port, cx, slot),
        }
    }

    /// The last grant of a flow's online rating group is used up with Final-Unit-Action
    /// REDIRECT: the redirect stage holds that rating group (and only it) from the next packet
    /// on.
    #[cold]
    fn final_unit_redirect(&mut self, snap: &PolicySnapshot, flow: &Flow) {
        let Some(rating_group) = rating_group_of(snap, flow.session, &flow.decision) else {
            return;
        };
        let session = snap.session(flow.session);
        let Some(grant) = session
            .credits
            .iter()
            .filter(|c| c.rating_group == rating_group)
            .max_by_key(|c| c.grant)
        else {
            return;
        };
        let Some(fui) = &grant.final_unit else {
            return;
        };
        let FinalUnitAction::Redirect(info) = &fui.action else {
            return;
        };
        let fu = FinalUnitRedirect {
            rating_group: Some(rating_group),
            redirect: info.clone(),
            restriction_filters: fui.restriction_filters.clone(),
            filter_ids: fui.filter_ids.clone(),
        };
        if self.redirect.apply_final_unit(snap, flow.session_id, fu) {
            self.flows.invalidate_session(flow.session);
        }
    }

    /// A packet of an online rating group without credit: held (in order, bounded), forwarded
    /// or dropped while the credit is asked for.
    #[cold]
    fn credit_pending(
        &mut self,
        settings: &CreditSettings,
        port: Port,
        cx: &Context<'_>,
        slot: Slot,
    ) -> Step<()> {
        match settings.pending {
            PendingAction::Forward => {
                self.counters.credit_pending_forwarded += 1;
                Continue(())
            }
            PendingAction::Drop => Break(self.drop(DropReason::CreditPending)),
            PendingAction::Hold => {
                let p = PendingSettings {
                    action: PendingAction::Hold,
                    queue: settings.queue,
                    subscribers: settings.groups,
                    timeout: settings.retry,
                };
                let expired = &mut self.counters.held_expired;
                let Ok((entry, _)) =
                    self.credit_held
                        .enter(super::pending::credit_key(slot), cx.now, &p, expired)
                else {
                    return Break(self.drop(DropReason::CreditQueueFull));
                };
                if self.credit_held.hold(entry, port, cx.frame.bytes, p.queue) {
                    self.counters.credit_held += 1;
                    Break(Verdict::Held)
                } else {
                    Break(self.drop(DropReason::CreditQueueFull))
                }
            }
        }
    }
}
