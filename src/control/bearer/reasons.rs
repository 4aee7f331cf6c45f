//! Why a bearer event re-authorizes credit: the one table between Trigger-Type (TS 32.299
//! §7.2.208, what the charging system asks to hear of) and Event-Trigger (TS 29.212 §5.3.7,
//! what the access side reports), and the reasons a rule change brings.
//!
//! The reasons, per rating group of the session:
//!
//! 1. a reported event is one of the re-authorization triggers the charging system's last
//!    answer gave for the rating group ([`TRIGGERS`] says which event is which trigger);
//! 2. the policy engine's answer installed an online rule whose rating group holds no grant yet
//!    (the grant is asked for now, instead of on the rule's first packet);
//! 3. the answer installed again a rule of the same name with the other online flag;
//! 4. the answer removed a rule while its rating group holds quota (a grant with units left).
//!
//! TFT_CHANGE has no Trigger-Type (TS 32.299 names none), so a TFT change re-authorizes credit
//! only through the rule change it brings. Everything here is a pure function of values: no
//! I/O, no clock, no session manager.

use crate::policy::{PccRule, SessionConfig};
use crate::proto::v1 as pb;
use pb::{EventTrigger as E, TriggerType as T};

/// Trigger-Type ↔ Event-Trigger: a trigger fires on any of its events.
pub const TRIGGERS: &[(T, &[E])] = &[
    (T::ChangeInSgsnIpAddress, &[E::SgsnChange, E::AnGwChange]),
    (
        T::ChangeInQos,
        &[
            E::QosChange,
            E::DefaultEpsBearerQosChange,
            E::DefaultQosChange,
        ],
    ),
    (
        T::ChangeInLocation,
        &[
            E::UserLocationChange,
            E::RaiChange,
            E::TaiChange,
            E::EcgiChange,
        ],
    ),
    (T::ChangeInRat, &[E::RatChange]),
    (T::ChangeInUeTimezone, &[E::UeTimeZoneChange]),
    (T::ChangeinlocationMcc, &[E::PlmnChange]),
    (T::ChangeinlocationMnc, &[E::PlmnChange]),
    (T::ChangeinlocationRac, &[E::RaiChange]),
    (T::ChangeinlocationTac, &[E::TaiChange]),
    (T::ChangeinlocationEcgi, &[E::EcgiChange]),
    (T::ChangeInServingNode, &[E::SgsnChange, E::AnGwChange]),
    (
        T::ChangeInUserCsgInformation,
        &[E::UserCsgInformationChange],
    ),
];

/// Whether trigger `t` fires on any of `events`.
pub fn fires(t: T, events: &[E]) -> bool {
    TRIGGERS
        .iter()
        .filter(|(trigger, _)| *trigger == t)
        .any(|(_, on)| on.iter().any(|e| events.contains(e)))
}

/// What credit control needs to know of one rule in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCharging {
    pub name: String,
    pub rating_group: Option<u32>,
    pub online: bool,
}

/// The rules in force of a session: its dynamic rules and its predefined ones by name.
pub fn rules_of(config: &SessionConfig, predefined: &[PccRule]) -> Vec<RuleCharging> {
    let of = |r: &PccRule| RuleCharging {
        name: r.name.clone(),
        rating_group: r.rating_group,
        online: r.online,
    };
    config
        .rules
        .iter()
        .map(|r| of(r))
        .chain(
            predefined
                .iter()
                .filter(|p| config.predefined.contains(&p.name))
                .map(of),
        )
        .collect()
}

/// What a rating group holds at the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// No grant was ever put in force.
    Nothing,
    /// A grant of nothing (refused, out of credit, or given back).
    Empty,
    /// A grant with units.
    Quota,
}

/// What each rating group of a session holds, from its grants.
pub fn held_of(config: &SessionConfig) -> Vec<(u32, Held)> {
    config
        .credits
        .iter()
        .map(|c| {
            let g = &c.granted;
            let units = [g.total, g.uplink, g.downlink, g.time]
                .iter()
                .any(|u| u.is_some_and(|n| n > 0));
            (
                c.rating_group,
                if units { Held::Quota } else { Held::Empty },
            )
        })
        .collect()
}

fn held(credits: &[(u32, Held)], rg: u32) -> Held {
    credits
        .iter()
        .find(|(g, _)| *g == rg)
        .map_or(Held::Nothing, |(_, h)| *h)
}

/// Every reason to re-authorize credit after `events`, in rating group order (trigger matches
/// before rule changes within one): the re-authorization triggers per rating group `reauth`,
/// the rules before and after the policy engine's answer, and what the rating groups hold.
pub fn reasons(
    events: &[E],
    reauth: &[(u32, Vec<T>)],
    before: &[RuleCharging],
    after: &[RuleCharging],
    credits: &[(u32, Held)],
) -> Vec<pb::CreditReauthorizationReason> {
    let mut out: Vec<pb::CreditReauthorizationReason> = Vec::new();
    for (rg, triggers) in reauth {
        let fired: Vec<i32> = triggers
            .iter()
            .filter(|t| fires(**t, events))
            .map(|t| *t as i32)
            .collect();
        if !fired.is_empty() {
            out.push(pb::CreditReauthorizationReason {
                rating_group: *rg,
                trigger_type: fired,
                ..Default::default()
            });
        }
    }
    let mut rule = |rg: u32, change: pb::RuleCreditChange, name: &str| {
        out.push(pb::CreditReauthorizationReason {
            rating_group: rg,
            trigger_type: Vec::new(),
            rule_change: change as i32,
            charging_rule_name: name.to_string(),
        })
    };
    for r in after {
        let Some(rg) = r.rating_group else { continue };
        match before.iter().find(|b| b.name == r.name) {
            Some(b) if b.online != r.online => {
                rule(rg, pb::RuleCreditChange::OnlineChanged, &r.name)
            }
            None if r.online && held(credits, rg) == Held::Nothing => {
                rule(rg, pb::RuleCreditChange::NewRatingGroup, &r.name)
            }
            _ => {}
        }
    }
    for b in before {
        let Some(rg) = b.rating_group else { continue };
        let gone = !after.iter().any(|r| r.name == b.name);
        if gone && held(credits, rg) == Held::Quota {
            rule(rg, pb::RuleCreditChange::RemovedWithQuota, &b.name);
        }
    }
    out.sort_by_key(|r| (r.rating_group, r.rule_change));
    out
}

/// The Multiple-Services-Credit-Control of the one request that carries `reasons`: one per
/// rating group, Reporting-Reason RATING_CONDITION_CHANGE, the Trigger-Types that fired, and a
/// request for credit again, except for a rating group only a removed rule used (nothing in
/// force uses it: it is reported, not asked for).
pub fn mscc_of(
    reasons: &[pb::CreditReauthorizationReason],
    after: &[RuleCharging],
) -> Vec<pb::MultipleServicesCreditControl> {
    let mut out: Vec<pb::MultipleServicesCreditControl> = Vec::new();
    for r in reasons {
        let m = match out
            .iter_mut()
            .find(|m| m.rating_group == Some(r.rating_group))
        {
            Some(m) => m,
            None => {
                let used = after
                    .iter()
                    .any(|x| x.rating_group == Some(r.rating_group) && x.online);
                out.push(pb::MultipleServicesCreditControl {
                    rating_group: Some(r.rating_group),
                    requested_service_unit: used.then(pb::ServiceUnits::default),
                    reporting_reason: Some(pb::ReportingReason::RatingConditionChange as i32),
                    ..Default::default()
                });
                // Just pushed.
                let Some(m) = out.last_mut() else { continue };
                m
            }
        };
        for t in &r.trigger_type {
            if !m.trigger_type.contains(t) {
                m.trigger_type.push(*t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, rg: u32, online: bool) -> RuleCharging {
        RuleCharging {
            name: name.into(),
            rating_group: Some(rg),
            online,
        }
    }

    fn reason(
        rg: u32,
        triggers: &[T],
        change: pb::RuleCreditChange,
        name: &str,
    ) -> pb::CreditReauthorizationReason {
        pb::CreditReauthorizationReason {
            rating_group: rg,
            trigger_type: triggers.iter().map(|t| *t as i32).collect(),
            rule_change: change as i32,
            charging_rule_name: name.into(),
        }
    }

    #[test]
    fn every_event_of_the_table_fires_its_trigger_and_nothing_else_fires() {
        assert!(fires(T::ChangeInRat, &[E::RatChange]));
        assert!(fires(T::ChangeInQos, &[E::QosChange]));
        assert!(fires(T::ChangeInSgsnIpAddress, &[E::AnGwChange]));
        assert!(fires(T::ChangeInSgsnIpAddress, &[E::SgsnChange]));
        assert!(fires(T::ChangeInLocation, &[E::UserLocationChange]));
        assert!(fires(T::ChangeinlocationMcc, &[E::PlmnChange]));
        assert!(!fires(T::ChangeInRat, &[E::QosChange, E::PlmnChange]));
        assert!(!fires(T::ChangeInQos, &[E::TftChange]));
        // No Trigger-Type fires on a TFT change.
        assert!(TRIGGERS.iter().all(|(_, on)| !on.contains(&E::TftChange)));
        assert!(!fires(T::ChangeInMediaComposition, &[E::RatChange]));
    }

    #[test]
    fn a_trigger_match_names_the_rating_group_and_its_fired_triggers_only() {
        let reauth = vec![
            (
                10,
                vec![T::ChangeInRat, T::ChangeInQos, T::ChangeInLocation],
            ),
            (20, vec![T::ChangeInLocation]),
        ];
        let rules = [rule("web", 10, true)];
        let got = reasons(
            &[E::RatChange, E::QosChange],
            &reauth,
            &rules,
            &rules,
            &[(10, Held::Quota)],
        );
        assert_eq!(
            got,
            [reason(
                10,
                &[T::ChangeInRat, T::ChangeInQos],
                pb::RuleCreditChange::None,
                ""
            )]
        );
        // An event no trigger names: no reason.
        assert!(reasons(&[E::TftChange], &reauth, &rules, &rules, &[]).is_empty());
    }

    #[test]
    fn rule_changes_that_need_credit_and_those_that_do_not() {
        let before = [
            rule("web", 10, true),
            rule("mail", 30, true),
            rule("dns", 40, false),
            rule("old", 50, true),
        ];
        let after = [
            rule("web", 10, true),
            // New, online, its rating group never granted: a reason.
            rule("video", 20, true),
            // New, online, but its rating group already holds a grant: none.
            rule("web2", 10, true),
            // New and offline: none.
            rule("voice", 60, false),
            // The online flag changed: a reason.
            rule("dns", 40, true),
        ];
        let credits = [(10, Held::Quota), (30, Held::Quota), (50, Held::Empty)];
        let got = reasons(&[E::RatChange], &[], &before, &after, &credits);
        assert_eq!(
            got,
            [
                reason(20, &[], pb::RuleCreditChange::NewRatingGroup, "video"),
                // Removed while its rating group holds quota; "old" held nothing left.
                reason(30, &[], pb::RuleCreditChange::RemovedWithQuota, "mail"),
                reason(40, &[], pb::RuleCreditChange::OnlineChanged, "dns"),
            ]
        );
        // No rule change at all: no reason.
        assert!(reasons(&[E::RatChange], &[], &before, &before, &credits).is_empty());
    }

    #[test]
    fn one_mscc_per_rating_group_carries_every_reason() {
        let rs = [
            reason(10, &[T::ChangeInRat], pb::RuleCreditChange::None, ""),
            reason(20, &[T::ChangeInRat], pb::RuleCreditChange::None, ""),
            reason(20, &[], pb::RuleCreditChange::NewRatingGroup, "video"),
            reason(30, &[], pb::RuleCreditChange::RemovedWithQuota, "mail"),
        ];
        let after = [rule("web", 10, true), rule("video", 20, true)];
        let m = mscc_of(&rs, &after);
        assert_eq!(m.len(), 3);
        let cond = Some(pb::ReportingReason::RatingConditionChange as i32);
        assert!(m.iter().all(|x| x.reporting_reason == cond));
        assert_eq!(
            m.iter().map(|x| x.rating_group).collect::<Vec<_>>(),
            [Some(10), Some(20), Some(30)]
        );
        assert_eq!(m[1].trigger_type, [T::ChangeInRat as i32]);
        assert!(m[0].requested_service_unit.is_some());
        assert!(m[1].requested_service_unit.is_some());
        // Nothing in force uses rating group 30 any more: reported, not asked for.
        assert!(m[2].requested_service_unit.is_none());
        assert!(m[2].trigger_type.is_empty());
    }
}
