//! Final-Unit-Action REDIRECT as online charging applies it: to a whole session or to one of its
//! rating groups, with the Restriction-Filter-Rules and Filter-Ids that stay reachable compiled
//! once, when it is applied.

use super::Redirector;
use crate::classify::Rule;
use crate::policy::{
    expand_filter, FlowDescription, PolicySnapshot, RedirectInformation, Session, SessionConfig,
    SessionId,
};

/// Final-Unit-Indication with Final-Unit-Action REDIRECT, as online charging applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalUnitRedirect {
    /// The rating group it applies to; `None` for the whole session.
    pub rating_group: Option<u32>,
    pub redirect: RedirectInformation,
    /// Restriction-Filter-Rules: traffic that stays allowed.
    pub restriction_filters: Vec<FlowDescription>,
    /// Filter-Ids: names of predefined rules whose SDF filters stay allowed.
    pub filter_ids: Vec<String>,
}

pub(super) struct FinalUnitState {
    pub(super) fu: FinalUnitRedirect,
    /// Restriction filters and Filter-Id rules compiled for the session's addresses.
    pub(super) allowed: Vec<Rule>,
}

/// Restriction-Filter-Rules and the SDF filters of the predefined rules that Filter-Ids name,
/// compiled for a session's addresses: what stays reachable under a Final-Unit-Action. Once,
/// when the action is applied; a Filter-Id naming no predefined rule allows nothing.
pub fn restriction_rules(
    snap: &PolicySnapshot,
    s: &Session,
    filters: &[FlowDescription],
    filter_ids: &[String],
) -> Vec<Rule> {
    let addresses = SessionConfig {
        subscriber: s.subscriber.clone(),
        ipv4: s.ipv4,
        ipv6: s.ipv6,
        rules: Vec::new(),
        predefined: Vec::new(),
        default_rule: s.default_rule,
        monitoring: Vec::new(),
        credits: Vec::new(),
    };
    let mut allowed: Vec<Rule> = filters
        .iter()
        .flat_map(|f| expand_filter(f, &addresses))
        .collect();
    for name in filter_ids {
        if let Some(r) = snap.predefined_rule(name) {
            for filter in &r.filters {
                allowed.extend(expand_filter(&filter.flow, &addresses));
            }
        }
    }
    allowed
}

impl Redirector {
    /// Applies Final-Unit-Action REDIRECT. Applying the same one again changes nothing. Returns
    /// whether anything changed (the caller then re-decides the session's flows).
    pub fn apply_final_unit(
        &mut self,
        snap: &PolicySnapshot,
        session: SessionId,
        fu: FinalUnitRedirect,
    ) -> bool {
        let Some((_, s)) = snap.session_by_id(session) else {
            return false;
        };
        let state = self.sessions.entry(session).or_default();
        if let Some(existing) = state
            .final_units
            .iter_mut()
            .find(|f| f.fu.rating_group == fu.rating_group)
        {
            if existing.fu == fu {
                return false;
            }
        }
        let allowed = restriction_rules(snap, s, &fu.restriction_filters, &fu.filter_ids);
        let info = fu.redirect.clone();
        state
            .final_units
            .retain(|f| f.fu.rating_group != fu.rating_group);
        state.final_units.push(FinalUnitState { fu, allowed });
        self.add_portal(&info);
        self.recount();
        true
    }

    /// Removes a Final-Unit REDIRECT (new credit was granted). Returns whether one was removed.
    pub fn remove_final_unit(&mut self, session: SessionId, rating_group: Option<u32>) -> bool {
        let Some(state) = self.sessions.get_mut(&session) else {
            return false;
        };
        let before = state.final_units.len();
        state
            .final_units
            .retain(|f| f.fu.rating_group != rating_group);
        let changed = state.final_units.len() != before;
        if state.final_units.is_empty() {
            state.success_reported = false;
        }
        self.recount();
        changed
    }

    /// Whether any Final-Unit REDIRECT applies to a rating group only.
    #[inline]
    pub fn has_rating_group_redirects(&self) -> bool {
        self.rating_group_redirects > 0
    }

    pub(super) fn recount(&mut self) {
        self.rating_group_redirects = self
            .sessions
            .values()
            .flat_map(|s| &s.final_units)
            .filter(|f| f.fu.rating_group.is_some())
            .count();
    }
}
