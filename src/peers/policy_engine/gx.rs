//! `weir.v1.PolicyEngine`: CCR-I/U/T from gateways.

use super::store::{RedirectState, SessionRow, UsageRow};
use super::{internal, now_secs, Change, Core};
use crate::policy::{IpPrefix, SubscriberId};
use crate::proto::rules::{check_events, check_len, check_name, Invalid};
use crate::proto::v1 as pb;
use crate::token::{Holder, Token, TokenError, MAX_NONCE_LEN};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(super) struct Gx(pub(super) Arc<Core>);

/// Longest Session-Id and Origin-Host accepted, in bytes.
const MAX_ID_LEN: usize = 256;

fn check_id(value: &str, field: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_ID_LEN} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

fn check_type(value: i32, want: pb::CcRequestType) -> Result<(), Invalid> {
    if value == 0 || value == want as i32 {
        return Ok(());
    }
    let name = pb::CcRequestType::try_from(value)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| value.to_string());
    Err(Invalid::new(
        "cc_request_type",
        format!("{name} on an RPC that is {}", want.as_str_name()),
    ))
}

/// The subscriber id in its one written form.
pub(crate) fn subscriber(text: &str, field: &str) -> Result<String, Invalid> {
    if text.is_empty() {
        return Err(Invalid::new(field, "required"));
    }
    SubscriberId::parse(text)
        .map(|s| s.to_string())
        .map_err(|m| Invalid::new(field, m))
}

fn usage_rows(
    items: &[pb::UsageMonitoringInformation],
    field: &str,
) -> Result<Vec<UsageRow>, Invalid> {
    check_len(items, field)?;
    items
        .iter()
        .enumerate()
        .map(|(i, u)| {
            check_name(&u.monitoring_key, &format!("{field}[{i}].monitoring_key"))?;
            let used = u.used_service_unit.unwrap_or_default();
            Ok(UsageRow {
                monitoring_key: u.monitoring_key.clone(),
                total_octets: used.cc_total_octets.unwrap_or(0),
                input_octets: used.cc_input_octets.unwrap_or(0),
                output_octets: used.cc_output_octets.unwrap_or(0),
            })
        })
        .collect()
}

/// Whether `ue` is an address of the session.
fn belongs(s: &SessionRow, ue: IpAddr) -> bool {
    match ue {
        IpAddr::V4(a) => s.framed_ip_address.parse::<Ipv4Addr>() == Ok(a),
        IpAddr::V6(_) => {
            IpPrefix::parse(&s.framed_ipv6_prefix, false).is_ok_and(|p| p.contains(ue))
        }
    }
}

/// The token fields checked for form; `None` with the reason when malformed.
fn token_of(r: &pb::RechargeSuccess) -> Result<(Token<'_>, IpAddr), Invalid> {
    let f = |name: &str| format!("recharge_success.{name}");
    if r.subscriber_id.is_empty() {
        return Err(Invalid::new(f("subscriber_id"), "required"));
    }
    let ue: IpAddr = r.ue_address.parse().map_err(|_| {
        Invalid::new(
            f("ue_address"),
            format!("'{}' is not an IP address", r.ue_address),
        )
    })?;
    if r.nonce.is_empty() || r.nonce.len() > MAX_NONCE_LEN {
        return Err(Invalid::new(
            f("nonce"),
            format!("needs 1-{MAX_NONCE_LEN} characters"),
        ));
    }
    if r.signature.is_empty() {
        return Err(Invalid::new(f("signature"), "required"));
    }
    Ok((
        Token {
            subscriber: Cow::Borrowed(&r.subscriber_id),
            ue: Some(ue),
            expires: r.expires,
            nonce: Cow::Borrowed(&r.nonce),
            sig: &r.signature,
        },
        ue,
    ))
}

fn success() -> i32 {
    pb::ResultCode::DiameterSuccess as i32
}

impl Gx {
    /// Verifies a recharge-success token against the session and spends its nonce. `Err` with
    /// the reason when refused.
    async fn accept_token(
        &self,
        s: &SessionRow,
        r: &pb::RechargeSuccess,
    ) -> Result<Result<(), &'static str>, Status> {
        let core = &self.0;
        let (token, ue) = token_of(r)?;
        // A token for another address is checked against the session's own, so it fails as
        // "other_subscriber" rather than passing.
        let own = if belongs(s, ue) {
            ue
        } else {
            s.framed_ip_address
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let verdict = token.verify(
            &core.cfg.token_key,
            Holder {
                subscriber: &s.subscriber_id,
                ue: own,
            },
            now_secs(),
            core.cfg.token_max_age.as_secs(),
        );
        if let Err(e) = verdict {
            return Ok(Err(e.as_str()));
        }
        let (nonce, sub, expires) = (r.nonce.clone(), s.subscriber_id.clone(), r.expires);
        let fresh = core
            .db(move |st| st.spend_nonce(&nonce, &sub, expires, now_secs()))
            .await
            .map_err(internal)?;
        if !fresh {
            return Ok(Err(TokenError::Replayed.as_str()));
        }
        Ok(Ok(()))
    }
}

impl Gx {
    /// The plan's rule change for the bearer events of a CCR-U (`[[plan.on_event]]`), added to
    /// `answer` and to the session's record, while the session is not redirected (the plan is
    /// not in force then).
    async fn answer_events(
        &self,
        r: &pb::UpdateSessionRequest,
        events: &[pb::EventTrigger],
        account: &super::store::AccountRow,
        answer: &mut pb::UpdateSessionAnswer,
    ) -> Result<(), Status> {
        let core = &self.0;
        let Some(change) = core
            .cfg
            .plan(&account.plan_name)
            .and_then(|p| p.events.change_for(events))
        else {
            return Ok(());
        };
        let id = r.session_id.clone();
        let Some(now) = core.db(move |s| s.session(&id)).await.map_err(internal)? else {
            return Ok(());
        };
        if now.redirected {
            return Ok(());
        }
        tracing::info!(session = %r.session_id, subscriber = %now.subscriber_id,
            events = ?events, install = ?change.installed, remove = ?change.removed,
            rat_type = r.rat_type, sgsn_mcc_mnc = %r.sgsn_mcc_mnc, an_gw_address = %r.an_gw_address,
            "bearer event answered with the plan's rule change");
        let mut installed: Vec<String> = now
            .installed
            .iter()
            .filter(|n| !change.removed.contains(n))
            .cloned()
            .collect();
        for n in &change.installed {
            if !installed.contains(n) {
                installed.push(n.clone());
            }
        }
        let id = r.session_id.clone();
        core.db(move |s| s.set_installed(&id, &installed))
            .await
            .map_err(internal)?;
        answer.charging_rule_remove.extend(change.removes);
        answer.charging_rule_install.extend(change.installs);
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::policy_engine_server::PolicyEngine for Gx {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionAnswer>, Status> {
        let core = &self.0;
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        check_type(r.cc_request_type, pb::CcRequestType::InitialRequest)?;
        if r.origin_host.len() > MAX_ID_LEN {
            return Err(Invalid::new("origin_host", format!("at most {MAX_ID_LEN} bytes")).into());
        }
        let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
        if r.framed_ip_address.is_empty() && r.framed_ipv6_prefix.is_empty() {
            return Err(Invalid::new(
                "framed_ip_address",
                "a Framed-IP-Address or a framed_ipv6_prefix is required",
            )
            .into());
        }
        if !r.framed_ip_address.is_empty() && r.framed_ip_address.parse::<Ipv4Addr>().is_err() {
            return Err(Invalid::new(
                "framed_ip_address",
                format!("'{}' is not an IPv4 address", r.framed_ip_address),
            )
            .into());
        }
        let v6 = if r.framed_ipv6_prefix.is_empty() {
            String::new()
        } else {
            match IpPrefix::parse(&r.framed_ipv6_prefix, false) {
                Ok(p) if p.addr.is_ipv6() => p.to_string(),
                _ => {
                    return Err(Invalid::new(
                        "framed_ipv6_prefix",
                        format!("'{}' is not an IPv6 prefix", r.framed_ipv6_prefix),
                    )
                    .into())
                }
            }
        };
        let endpoint = if r.reauth_endpoint.is_empty() {
            String::new()
        } else {
            super::push::normalize_endpoint(&r.reauth_endpoint)
                .map_err(|m| Invalid::new("reauth_endpoint", m))?
        };
        check_events(&r.event_trigger, "event_trigger")?;

        let id = sub.clone();
        let account = core
            .db(move |s| s.account(&id))
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no account for subscriber {sub}")))?;
        let plan = core.plan_of(&account);
        // A member of a restricted quota group starts restricted too.
        let restricted = core
            .group_restricted(&account.subscriber_id)
            .await
            .map_err(internal)?;
        let redirected = account.out_of_credit() || restricted;
        let change = core.initial(&plan, redirected);
        let row = SessionRow {
            session_id: r.session_id.clone(),
            subscriber_id: sub.clone(),
            framed_ip_address: r.framed_ip_address.clone(),
            framed_ipv6_prefix: v6,
            reauth_endpoint: endpoint,
            origin_host: r.origin_host.clone(),
            redirected,
            lifted: false,
            installed: change.installed.clone(),
            cc_request_number: r.cc_request_number,
            started_at: now_secs() as i64,
        };
        core.db(move |s| s.put_session(&row))
            .await
            .map_err(internal)?;
        tracing::info!(session = %r.session_id, subscriber = %sub, balance = account.balance,
            redirected, origin_host = %r.origin_host, "CCR-I");
        let mut triggers = vec![pb::EventTrigger::WeirRechargeSuccess as i32];
        if !change.grants.is_empty() {
            triggers.push(pb::EventTrigger::UsageReport as i32);
        }
        // The bearer events the plan wants to hear of.
        if let Some(p) = core.cfg.plan(&account.plan_name) {
            triggers.extend(p.events.triggers.iter().map(|e| *e as i32));
        }
        Ok(Response::new(pb::CreateSessionAnswer {
            session_id: r.session_id,
            result_code: success(),
            experimental_result_code: 0,
            cc_request_type: pb::CcRequestType::InitialRequest as i32,
            cc_request_number: r.cc_request_number,
            charging_rule_install: change.installs,
            charging_rule_remove: Vec::new(),
            event_trigger: triggers,
            usage_monitoring_information: change.grants,
            revalidation_time: 0,
        }))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionAnswer>, Status> {
        let core = &self.0;
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        check_type(r.cc_request_type, pb::CcRequestType::UpdateRequest)?;
        let events = check_events(&r.event_trigger, "event_trigger")?;
        if events.is_empty() && r.charging_rule_report.is_empty() {
            return Err(Invalid::new(
                "event_trigger",
                "a CCR-U names at least one event or carries a Charging-Rule-Report",
            )
            .into());
        }
        let usage = usage_rows(
            &r.usage_monitoring_information,
            "usage_monitoring_information",
        )?;
        check_len(&r.charging_rule_report, "charging_rule_report")?;
        let recharge = events.contains(&pb::EventTrigger::WeirRechargeSuccess);
        match (recharge, &r.recharge_success) {
            (true, None) => {
                return Err(Invalid::new(
                    "recharge_success",
                    "required with the WEIR_RECHARGE_SUCCESS event trigger",
                )
                .into())
            }
            (false, Some(_)) => {
                return Err(Invalid::new(
                    "recharge_success",
                    "sent without the WEIR_RECHARGE_SUCCESS event trigger",
                )
                .into())
            }
            (true, Some(t)) => {
                token_of(t)?;
            }
            (false, None) => {}
        }
        let id = r.session_id.clone();
        let session = core
            .db(move |s| s.session(&id))
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no session '{}'", r.session_id)))?;
        let mut answer = pb::UpdateSessionAnswer {
            session_id: r.session_id.clone(),
            result_code: success(),
            cc_request_type: pb::CcRequestType::UpdateRequest as i32,
            cc_request_number: r.cc_request_number,
            ..Default::default()
        };

        // The token first: a refused one refuses the whole request, so nothing changes.
        let mut change: Option<Change> = None;
        if let Some(t) = r.recharge_success.as_ref().filter(|_| recharge) {
            if let Err(why) = self.accept_token(&session, t).await? {
                tracing::warn!(session = %r.session_id, subscriber = %session.subscriber_id,
                    reason = why, "recharge-success token refused");
                answer.result_code = pb::ResultCode::DiameterAuthorizationRejected as i32;
                answer.detail = format!("recharge-success token refused: {why}");
                return Ok(Response::new(answer));
            }
            let sub = session.subscriber_id.clone();
            let account = core
                .db(move |s| s.account(&sub))
                .await
                .map_err(internal)?
                .ok_or_else(|| Status::not_found("the session's account is gone"))?;
            let from = RedirectState {
                redirected: session.redirected,
                lifted: session.lifted,
            };
            if session.redirected {
                let lift = core.leave_redirect(&core.plan_of(&account));
                let to = RedirectState {
                    redirected: false,
                    lifted: account.balance <= 0,
                };
                let (id, installed) = (session.session_id.clone(), lift.installed.clone());
                let moved = core
                    .db(move |s| s.swap_redirect_state(&id, from, to, &installed))
                    .await
                    .map_err(internal)?;
                if moved {
                    change = Some(lift);
                }
            } else if !session.lifted && account.balance <= 0 && !account.pending.is_empty() {
                // Not redirected here, but a rating group may be (the charging system's
                // Final-Unit-Action): the same evidence lets the charging system grant from
                // the pending credit at once, before billing applies it.
                let to = RedirectState {
                    redirected: false,
                    lifted: true,
                };
                let (id, installed) = (session.session_id.clone(), session.installed.clone());
                core.db(move |s| s.swap_redirect_state(&id, from, to, &installed))
                    .await
                    .map_err(internal)?;
            }
            tracing::info!(session = %r.session_id, subscriber = %session.subscriber_id,
                lifted = change.is_some(), "recharge success accepted");
        }

        for report in &r.charging_rule_report {
            tracing::warn!(session = %r.session_id, subscriber = %session.subscriber_id,
                rules = ?report.charging_rule_name, rule_failure_code = report.rule_failure_code,
                detail = %report.detail, "gateway reports rules out of force");
        }
        // What the gateway could not install is not in force: the session's view says so.
        let failed: Vec<&String> = r
            .charging_rule_report
            .iter()
            .flat_map(|rep| &rep.charging_rule_name)
            .collect();
        if !failed.is_empty() {
            let installed: Vec<String> = session
                .installed
                .iter()
                .filter(|n| !failed.contains(n))
                .cloned()
                .collect();
            if installed.len() != session.installed.len() {
                let id = r.session_id.clone();
                core.db(move |s| s.set_installed(&id, &installed))
                    .await
                    .map_err(internal)?;
            }
        }
        let id = r.session_id.clone();
        let number = r.cc_request_number;
        let reported: Vec<String> = usage.iter().map(|u| u.monitoring_key.clone()).collect();
        core.db(move |s| s.add_usage(&id, number, &usage))
            .await
            .map_err(internal)?;

        // Anything billing or an operator changed that a RAR did not deliver catches up here.
        let sub = session.subscriber_id.clone();
        let account = core.db(move |s| s.account(&sub)).await.map_err(internal)?;
        if let (None, Some(account)) = (&change, &account) {
            let id = r.session_id.clone();
            if let Some(now) = core.db(move |s| s.session(&id)).await.map_err(internal)? {
                if let Some((c, _)) = core.settle(account, &now).await.map_err(internal)? {
                    change = Some(c);
                }
            }
        }
        if let Some(c) = change {
            answer.charging_rule_install = c.installs;
            answer.charging_rule_remove = c.removes;
            answer.usage_monitoring_information = c.grants;
        }
        if let Some(account) = &account {
            self.answer_events(&r, &events, account, &mut answer)
                .await?;
        }
        // The next threshold for each key reported, as the plan grants it.
        if let Some(account) = &account {
            for g in core.plan_of(account).grants {
                let again = reported.contains(&g.monitoring_key)
                    && !answer
                        .usage_monitoring_information
                        .iter()
                        .any(|u| u.monitoring_key == g.monitoring_key);
                if again {
                    answer.usage_monitoring_information.push(g);
                }
            }
        }
        Ok(Response::new(answer))
    }

    async fn terminate_session(
        &self,
        request: Request<pb::TerminateSessionRequest>,
    ) -> Result<Response<pb::TerminateSessionAnswer>, Status> {
        let core = &self.0;
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        check_type(r.cc_request_type, pb::CcRequestType::TerminationRequest)?;
        let usage = usage_rows(
            &r.usage_monitoring_information,
            "usage_monitoring_information",
        )?;
        let id = r.session_id.clone();
        let number = r.cc_request_number;
        let exists = core
            .db(move |s| s.session(&id))
            .await
            .map_err(internal)?
            .is_some();
        if !exists {
            return Err(Status::not_found(format!("no session '{}'", r.session_id)));
        }
        let id = r.session_id.clone();
        let ended = core
            .db(move |s| {
                s.add_usage(&id, number, &usage)?;
                s.delete_session(&id)
            })
            .await
            .map_err(internal)?;
        if let Some((s, usage)) = ended {
            let total: u64 = usage.iter().map(|u| u.total_octets).sum();
            tracing::info!(session = %s.session_id, subscriber = %s.subscriber_id,
                termination_cause = r.termination_cause, total_octets = total, "CCR-T");
        }
        Ok(Response::new(pb::TerminateSessionAnswer {
            session_id: r.session_id,
            result_code: success(),
            cc_request_type: pb::CcRequestType::TerminationRequest as i32,
            cc_request_number: r.cc_request_number,
        }))
    }
}
