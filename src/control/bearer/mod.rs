//! Bearer events (`weir.v1.Gateway/ReportBearerEvent`): what changed on a session's bearer, and
//! the order the gateway tells its peers in.
//!
//! Event triggers first: when a reported event is one of the session's event triggers (from
//! the policy engine), exactly one CCR-U goes to the policy engine with the events that match
//! and the bearer's new values (RAT-Type, 3GPP-SGSN-MCC-MNC, AN-GW-Address, QoS), and its
//! answer is applied through the session manager (all-or-nothing per rule, as every CCA).
//! Only then credit: the reasons ([`reasons`]) come from the charging system's
//! re-authorization triggers and from the rule change just applied, and when there is at least
//! one, exactly one request goes to the charging system carrying all of them (Reporting-Reason
//! RATING_CONDITION_CHANGE), through the Gy client's queue and journal. No reason, no request;
//! an event that matches nothing sends nothing to anyone.
//!
//! What it must never do: send a second request to either peer for one report, or ask for
//! credit before the policy engine's answer is in force.

pub mod reasons;

use super::gx::Gx;
use super::gy::Gy;
use super::manager::Manager;
use super::sessions::Update;
use crate::policy::SessionId;
use crate::proto::rules::Invalid;
use crate::proto::v1 as pb;
use reasons::{held_of, mscc_of, rules_of, Held, RuleCharging};
use std::sync::Arc;

/// Most events and TFT packet filters in one report.
const MAX_EVENTS: usize = 64;

/// Events a bearer reports. The others are the gateway's own (usage, credit, recharge success,
/// revalidation) or a policy engine's instruction (NO_EVENT_TRIGGERS), each reported with what
/// only the gateway knows.
fn bearer_event(e: pb::EventTrigger) -> bool {
    use pb::EventTrigger as E;
    !matches!(
        e,
        E::NoEventTriggers
            | E::UsageReport
            | E::WeirRechargeSuccess
            | E::OutOfCredit
            | E::ReallocationOfCredit
            | E::RevalidationTimeout
            | E::UeIpAddressAllocate
            | E::UeIpAddressRelease
    )
}

/// The events of a report, checked: at least one, at most [`MAX_EVENTS`], each a bearer event
/// and listed once; and the new values in their forms.
pub fn check(r: &pb::BearerEventReport) -> Result<Vec<pb::EventTrigger>, Invalid> {
    if r.event_trigger.is_empty() {
        return Err(Invalid::new(
            "event_trigger",
            "at least one event is required",
        ));
    }
    if r.event_trigger.len() > MAX_EVENTS {
        return Err(Invalid::new(
            "event_trigger",
            format!(
                "at most {MAX_EVENTS} entries, got {}",
                r.event_trigger.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(r.event_trigger.len());
    for (i, &v) in r.event_trigger.iter().enumerate() {
        let field = format!("event_trigger[{i}]");
        let e = pb::EventTrigger::try_from(v)
            .map_err(|_| Invalid::new(&field, format!("{v} is not an Event-Trigger value")))?;
        if !bearer_event(e) {
            return Err(Invalid::new(
                &field,
                format!("{} is not a bearer event", e.as_str_name()),
            ));
        }
        if events.contains(&e) {
            return Err(Invalid::new(
                &field,
                format!("{} is listed twice", e.as_str_name()),
            ));
        }
        events.push(e);
    }
    let plmn = &r.plmn_id;
    let plmn_ok = (5..=6).contains(&plmn.len()) && plmn.bytes().all(|b| b.is_ascii_digit());
    if !plmn.is_empty() && !plmn_ok {
        return Err(Invalid::new(
            "plmn_id",
            format!("'{plmn}' is not an MCC and MNC of 5 or 6 digits"),
        ));
    }
    let node = &r.serving_node_address;
    if !node.is_empty() && node.parse::<std::net::IpAddr>().is_err() {
        return Err(Invalid::new(
            "serving_node_address",
            format!("'{node}' is not an IP address"),
        ));
    }
    if r.tft_packet_filter.len() > MAX_EVENTS {
        return Err(Invalid::new(
            "tft_packet_filter",
            format!("at most {MAX_EVENTS} entries"),
        ));
    }
    for (i, f) in r.tft_packet_filter.iter().enumerate() {
        f.parse::<crate::policy::FlowDescription>()
            .map_err(|e| Invalid::new(format!("tft_packet_filter[{i}]"), e.to_string()))?;
    }
    Ok(events)
}

/// The CCR-U of the events that match: the events and the bearer's new values.
fn policy_request(
    r: &pb::BearerEventReport,
    matched: &[pb::EventTrigger],
) -> pb::UpdateSessionRequest {
    let qos = r.qos_class_identifier != 0
        || r.apn_aggregate_max_bitrate_ul != 0
        || r.apn_aggregate_max_bitrate_dl != 0;
    pb::UpdateSessionRequest {
        event_trigger: matched.iter().map(|e| *e as i32).collect(),
        rat_type: r.rat_type,
        sgsn_mcc_mnc: r.plmn_id.clone(),
        an_gw_address: r.serving_node_address.clone(),
        qos_information: qos.then_some(pb::QosInformation {
            qos_class_identifier: r.qos_class_identifier,
            apn_aggregate_max_bitrate_ul: r.apn_aggregate_max_bitrate_ul,
            apn_aggregate_max_bitrate_dl: r.apn_aggregate_max_bitrate_dl,
        }),
        ..Default::default()
    }
}

/// The session's rules and grants as credit control sees them, now.
struct Charging {
    rules: Vec<RuleCharging>,
    held: Vec<(u32, Held)>,
}

/// Runs a checked report `r` (its `events`) for session `id` to the end: the policy engine's
/// exchange and its answer applied, then the credit re-authorization. Says what was sent.
pub async fn report(
    manager: &Manager,
    gx: Option<&Arc<Gx>>,
    gy: Option<&Arc<Gy>>,
    id: SessionId,
    r: &pb::BearerEventReport,
    events: &[pb::EventTrigger],
) -> pb::BearerEventAnswer {
    let state = manager
        .call(move |s, _| {
            let e = s.get(id)?;
            Some((
                e.event_triggers.clone(),
                Charging {
                    rules: rules_of(&e.config, s.predefined()),
                    held: held_of(&e.config),
                },
            ))
        })
        .await
        .ok()
        .flatten();
    let mut answer = pb::BearerEventAnswer {
        session_id: r.session_id.clone(),
        ..Default::default()
    };
    let Some((triggers, before)) = state else {
        return answer;
    };
    let matched: Vec<pb::EventTrigger> = events
        .iter()
        .copied()
        .filter(|e| triggers.contains(&(*e as i32)))
        .collect();
    let mut after = None;
    if let (Some(gx), false) = (gx, matched.is_empty()) {
        answer.policy_update_sent = true;
        answer.policy_event_trigger = matched.iter().map(|e| *e as i32).collect();
        let request = policy_request(r, &matched);
        if let Some(a) = gx.deliver_update(id, request, "bearer event").await {
            answer.policy_result_code = a.result_code;
            let ok = a.result_code == pb::ResultCode::DiameterSuccess as i32
                || a.result_code == pb::ResultCode::DiameterLimitedSuccess as i32;
            if ok {
                after = apply(manager, id, a, &mut answer).await;
                if !answer.charging_rule_report.is_empty() {
                    gx.report_rules(id, answer.charging_rule_report.clone())
                        .await;
                }
            } else {
                tracing::warn!(session = %r.session_id, result_code = a.result_code,
                    detail = %a.detail, "bearer event: CCA-U without success; nothing changes");
            }
        }
    }
    let Some(gy) = gy else { return answer };
    let after = after.unwrap_or_else(|| before.rules.clone());
    let reauth = gy.reauthorization_triggers(id).await;
    let why = reasons::reasons(events, &reauth, &before.rules, &after, &before.held);
    if why.is_empty() {
        return answer;
    }
    let mscc = mscc_of(&why, &after);
    tracing::info!(session = %r.session_id, reasons = why.len(), rating_groups = mscc.len(),
        "bearer event: credit re-authorized (RATING_CONDITION_CHANGE)");
    if let Some(n) = gy.rating_condition_change(id, mscc).await {
        answer.credit_update_sent = true;
        answer.credit_request_number = n;
        answer.credit_reason = why;
    }
    answer
}

/// Applies a CCA-U through the session manager; the rules in force after it (`None`: the
/// session ended meanwhile). Fills in what was installed, removed and refused.
async fn apply(
    manager: &Manager,
    id: SessionId,
    a: pb::UpdateSessionAnswer,
    answer: &mut pb::BearerEventAnswer,
) -> Option<Vec<RuleCharging>> {
    let update = Update::of_update_answer(a);
    let installed: Vec<String> = update
        .installs
        .iter()
        .flat_map(|i| {
            i.charging_rule_name.iter().cloned().chain(
                i.charging_rule_definition
                    .iter()
                    .map(|d| d.charging_rule_name.clone()),
            )
        })
        .collect();
    let removed: Vec<String> = update
        .removes
        .iter()
        .flat_map(|r| r.charging_rule_name.iter().cloned())
        .collect();
    let applied = manager
        .call(move |s, now| {
            let reports = s.apply(id, &update, pb::RedirectLiftCause::PolicyEngine, now)?;
            let after = s
                .get(id)
                .map(|e| rules_of(&e.config, s.predefined()))
                .unwrap_or_default();
            Ok::<_, super::Refused>((reports, after))
        })
        .await
        .ok()?;
    match applied {
        Ok((reports, after)) => {
            let failed: Vec<&String> = reports.iter().flat_map(|r| &r.charging_rule_name).collect();
            answer.charging_rule_installed = installed
                .into_iter()
                .filter(|n| !failed.contains(&n))
                .collect();
            answer.charging_rule_removed = removed;
            answer.charging_rule_report = reports;
            Some(after)
        }
        Err(e) => {
            tracing::info!(session = id.0, error = %e, "bearer event: CCA-U for a session that ended");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::EventTrigger as E;

    fn report(events: &[E]) -> pb::BearerEventReport {
        pb::BearerEventReport {
            session_id: "gw;1;0".into(),
            event_trigger: events.iter().map(|e| *e as i32).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_ccr_u_carries_the_matching_events_and_the_bearers_new_values() {
        let mut r = report(&[E::RatChange, E::QosChange, E::PlmnChange]);
        r.rat_type = 1004;
        r.plmn_id = "00102".into();
        r.serving_node_address = "192.0.2.7".into();
        r.qos_class_identifier = 9;
        r.apn_aggregate_max_bitrate_dl = 20_000_000;
        let events = check(&r).unwrap();
        assert_eq!(events, [E::RatChange, E::QosChange, E::PlmnChange]);
        let u = policy_request(&r, &[E::RatChange, E::PlmnChange]);
        assert_eq!(u.event_trigger, [E::RatChange as i32, E::PlmnChange as i32]);
        assert_eq!(
            (
                u.rat_type,
                u.sgsn_mcc_mnc.as_str(),
                u.an_gw_address.as_str()
            ),
            (1004, "00102", "192.0.2.7")
        );
        assert_eq!(
            u.qos_information,
            Some(pb::QosInformation {
                qos_class_identifier: 9,
                apn_aggregate_max_bitrate_ul: 0,
                apn_aggregate_max_bitrate_dl: 20_000_000,
            })
        );
        // No QoS value given: no QoS-Information.
        assert_eq!(
            policy_request(&report(&[E::RatChange]), &[E::RatChange]).qos_information,
            None
        );
    }

    #[test]
    fn a_report_is_refused_with_the_field_that_is_wrong() {
        let refused = |r: &pb::BearerEventReport| check(r).unwrap_err().to_string();
        assert_eq!(
            refused(&report(&[])),
            "event_trigger: at least one event is required"
        );
        assert_eq!(
            refused(&report(&[E::RatChange, E::NoEventTriggers])),
            "event_trigger[1]: NO_EVENT_TRIGGERS is not a bearer event"
        );
        let mut r = report(&[E::AnGwChange]);
        r.serving_node_address = "gw-7".into();
        assert_eq!(
            refused(&r),
            "serving_node_address: 'gw-7' is not an IP address"
        );
        let mut r = report(&[E::TftChange]);
        r.tft_packet_filter = vec!["permit out 6 frm any to assigned".into()];
        assert!(
            refused(&r).starts_with("tft_packet_filter[0]: "),
            "{}",
            refused(&r)
        );
    }
}
