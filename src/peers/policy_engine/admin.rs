//! `weir.v1.Admin`: accounts, the policy engine's sessions, and rule pushes on demand.

use super::config::{PolicyEngineConfig, MAX_AMOUNT};
use super::gx::subscriber;
use super::push::send_once;
use super::store::{AccountRow, Credit, SessionRow, StoreError};
use super::{due_after, internal, now_secs, stored_plan, Core};
use crate::peers::charging_system::admin as cs;
use crate::proto::rules::{
    check_events, check_installs, check_len, check_name, check_removes, Invalid,
};
use crate::proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(super) struct AdminService(pub(super) Arc<Core>);

/// Longest payment reference, in bytes.
const MAX_REFERENCE_LEN: usize = 128;
/// Largest page.
const MAX_PAGE: u32 = 1000;

fn page_size(n: u32) -> Result<usize, Invalid> {
    match n {
        0 => Ok(100),
        1..=MAX_PAGE => Ok(n as usize),
        _ => Err(Invalid::new(
            "page_size",
            format!("at most {MAX_PAGE}, got {n}"),
        )),
    }
}

fn check_amount(n: i64, field: &str) -> Result<(), Invalid> {
    if n.unsigned_abs() > MAX_AMOUNT as u64 {
        return Err(Invalid::new(
            field,
            format!("must be within ±{MAX_AMOUNT}, got {n}"),
        ));
    }
    Ok(())
}

fn credit_of(c: &Credit) -> pb::PendingCredit {
    pb::PendingCredit {
        amount: c.amount,
        due_at: u64::try_from(c.due_at).unwrap_or(0),
        reference: c.reference.clone().unwrap_or_default(),
    }
}

/// An account as Admin answers it. The prices are the configuration's plan of the account's
/// plan name when it still has one: the operator's current offer, not the one the account was
/// opened with.
fn account_of(a: &AccountRow, cfg: &PolicyEngineConfig) -> pb::Account {
    let mut plan = a.plan.clone();
    plan.name = a.plan_name.clone();
    if let Some(p) = cfg.plan(&a.plan_name) {
        plan.recharge_amount = p.recharge.clone();
        plan.currency = p.currency.clone();
        plan.minor_units = p.minor_units;
    }
    pb::Account {
        subscriber_id: a.subscriber_id.clone(),
        balance: a.balance,
        plan: Some(plan),
        pending_credit: a.pending.iter().map(credit_of).collect(),
        created_at: u64::try_from(a.created_at).unwrap_or(0),
        updated_at: u64::try_from(a.updated_at).unwrap_or(0),
    }
}

fn no_account(sub: &str) -> Status {
    Status::not_found(format!("no account for subscriber {sub}"))
}

fn store_status(e: StoreError, sub: &str) -> Status {
    match e {
        StoreError::NoAccount => no_account(sub),
        StoreError::Exists => {
            Status::already_exists(format!("subscriber {sub} already has an account"))
        }
        e => internal(e),
    }
}

impl AdminService {
    /// Checks an account's own rules as the configuration's plans are checked.
    fn check_plan(&self, plan: &pb::Plan) -> Result<(), Invalid> {
        let install = pb::ChargingRuleInstall {
            charging_rule_name: plan.charging_rule_name.clone(),
            charging_rule_definition: plan.charging_rule_definition.clone(),
            ..Default::default()
        };
        check_len(&plan.charging_rule_name, "plan.charging_rule_name")?;
        check_len(
            &plan.charging_rule_definition,
            "plan.charging_rule_definition",
        )?;
        check_installs(&[install], &self.0.cfg.predefined_rules, "plan").map_err(|mut e| {
            e.field = e.field.replacen("plan[0]", "plan", 1);
            e
        })?;
        let redirect = self.0.redirect_name();
        let clash = plan.charging_rule_name.iter().any(|n| n == redirect)
            || plan
                .charging_rule_definition
                .iter()
                .any(|d| d.charging_rule_name == redirect);
        if clash {
            return Err(Invalid::new(
                "plan",
                format!("'{redirect}' is the redirect rule's name"),
            ));
        }
        check_len(
            &plan.usage_monitoring_information,
            "plan.usage_monitoring_information",
        )?;
        for (i, u) in plan.usage_monitoring_information.iter().enumerate() {
            let path = format!("plan.usage_monitoring_information[{i}]");
            check_name(&u.monitoring_key, &format!("{path}.monitoring_key"))?;
            let granted = u.granted_service_unit.as_ref().filter(|g| {
                g.cc_total_octets.is_some()
                    || g.cc_input_octets.is_some()
                    || g.cc_output_octets.is_some()
            });
            if granted.is_none() {
                return Err(Invalid::new(
                    format!("{path}.granted_service_unit"),
                    "a threshold needs cc_total_octets, cc_input_octets or cc_output_octets",
                ));
            }
        }
        Ok(())
    }

    fn policy_session(s: &SessionRow, usage: Vec<super::store::UsageRow>) -> pb::PolicySession {
        pb::PolicySession {
            session_id: s.session_id.clone(),
            subscriber_id: s.subscriber_id.clone(),
            framed_ip_address: s.framed_ip_address.clone(),
            framed_ipv6_prefix: s.framed_ipv6_prefix.clone(),
            reauth_endpoint: s.reauth_endpoint.clone(),
            origin_host: s.origin_host.clone(),
            redirected: s.redirected,
            lifted_on_recharge_success: s.lifted,
            charging_rule_name: s.installed.clone(),
            usage: usage
                .into_iter()
                .map(|u| pb::MonitoringKeyTotal {
                    monitoring_key: u.monitoring_key,
                    used_service_unit: Some(pb::ServiceUnit {
                        cc_total_octets: Some(u.total_octets),
                        cc_input_octets: Some(u.input_octets),
                        cc_output_octets: Some(u.output_octets),
                    }),
                    granted_service_unit: None,
                })
                .collect(),
            cc_request_number: s.cc_request_number,
            started_at: u64::try_from(s.started_at).unwrap_or(0),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let core = &self.0;
        let r = request.into_inner();
        let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
        check_amount(r.balance, "balance")?;
        let custom = r.plan.as_ref().is_some_and(|p| {
            !p.charging_rule_name.is_empty()
                || !p.charging_rule_definition.is_empty()
                || !p.usage_monitoring_information.is_empty()
        });
        let (name, plan) = if let (true, Some(plan)) = (custom, r.plan) {
            self.check_plan(&plan)?;
            ("custom".to_string(), plan)
        } else {
            let name = if r.plan_name.is_empty() {
                core.cfg.default_plan.clone()
            } else {
                r.plan_name.clone()
            };
            let p = core.cfg.plan(&name).ok_or_else(|| {
                Invalid::new("plan_name", format!("no [[plan]] is named '{name}'"))
            })?;
            (name, stored_plan(p))
        };
        let (id, balance) = (sub.clone(), r.balance);
        let account = core
            .db(move |s| s.create_account(&id, balance, &name, &plan, now_secs()))
            .await
            .map_err(|e| store_status(e, &sub))?;
        tracing::info!(subscriber = %sub, balance, plan = %account.plan_name, "account created");
        Ok(Response::new(account_of(&account, &self.0.cfg)))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let sub = subscriber(&request.into_inner().subscriber_id, "subscriber_id")?;
        let id = sub.clone();
        let account = self
            .0
            .db(move |s| s.account(&id))
            .await
            .map_err(internal)?
            .ok_or_else(|| no_account(&sub))?;
        Ok(Response::new(account_of(&account, &self.0.cfg)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let after = r.page_token;
        let mut accounts = self
            .0
            .db(move |s| s.accounts(&after, limit + 1))
            .await
            .map_err(internal)?;
        let next_page_token = if accounts.len() > limit {
            accounts.truncate(limit);
            accounts
                .last()
                .map(|a| a.subscriber_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts
                .iter()
                .map(|a| account_of(a, &self.0.cfg))
                .collect(),
            next_page_token,
        }))
    }

    async fn set_balance(
        &self,
        request: Request<pb::SetBalanceRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let r = request.into_inner();
        let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
        check_amount(r.balance, "balance")?;
        let (id, balance) = (sub.clone(), r.balance);
        let account = self
            .0
            .db(move |s| s.set_balance(&id, balance, now_secs()))
            .await
            .map_err(|e| store_status(e, &sub))?;
        tracing::info!(subscriber = %sub, balance, reason = %r.reason, "balance set");
        self.0.reconcile_later(sub);
        Ok(Response::new(account_of(&account, &self.0.cfg)))
    }

    async fn recharge(
        &self,
        request: Request<pb::RechargeRequest>,
    ) -> Result<Response<pb::RechargeResponse>, Status> {
        let core = &self.0;
        let r = request.into_inner();
        let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
        if r.amount <= 0 {
            return Err(Invalid::new(
                "amount",
                format!("must be greater than zero, got {}", r.amount),
            )
            .into());
        }
        check_amount(r.amount, "amount")?;
        if r.reference.len() > MAX_REFERENCE_LEN {
            return Err(Invalid::new(
                "reference",
                format!(
                    "at most {MAX_REFERENCE_LEN} bytes, got {}",
                    r.reference.len()
                ),
            )
            .into());
        }
        // Without a billing delay the credit is due now, which the store applies at once.
        let now = now_secs();
        let delay = core.cfg.billing_delay;
        let due = if delay.is_zero() {
            now
        } else {
            due_after(delay)
        };
        let (id, amount) = (sub.clone(), r.amount);
        let reference = (!r.reference.is_empty()).then(|| r.reference.clone());
        let done = core
            .db(move |s| s.recharge(&id, amount, reference.as_deref(), due, now))
            .await
            .map_err(|e| store_status(e, &sub))?;
        let applied = done.credit.applied_at.is_some();
        tracing::info!(subscriber = %sub, amount, due_at = done.credit.due_at, applied,
            duplicate = done.duplicate, "recharge");
        if applied && !done.duplicate {
            core.reconcile_later(sub);
        }
        Ok(Response::new(pb::RechargeResponse {
            account: Some(account_of(&done.account, &core.cfg)),
            credit: Some(credit_of(&done.credit)),
            applied,
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListPolicySessionsRequest>,
    ) -> Result<Response<pb::ListPolicySessionsResponse>, Status> {
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let sub = if r.subscriber_id.is_empty() {
            String::new()
        } else {
            subscriber(&r.subscriber_id, "subscriber_id")?
        };
        let after = r.page_token;
        let mut rows = self
            .0
            .db(move |s| {
                let rows = s.sessions(&sub, &after, limit + 1)?;
                rows.into_iter()
                    .map(|row| {
                        let usage = s.usage(&row.session_id)?;
                        Ok((row, usage))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
            .map_err(internal)?;
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|(s, _)| s.session_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListPolicySessionsResponse {
            sessions: rows
                .into_iter()
                .map(|(s, u)| Self::policy_session(&s, u))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetPolicySessionRequest>,
    ) -> Result<Response<pb::PolicySession>, Status> {
        let id = request.into_inner().session_id;
        if id.is_empty() {
            return Err(Invalid::new("session_id", "required").into());
        }
        let key = id.clone();
        let found = self
            .0
            .db(move |s| {
                let Some(row) = s.session(&key)? else {
                    return Ok(None);
                };
                let usage = s.usage(&key)?;
                Ok(Some((row, usage)))
            })
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no session '{id}'")))?;
        Ok(Response::new(Self::policy_session(&found.0, found.1)))
    }

    async fn push_rules(
        &self,
        request: Request<pb::PushRulesRequest>,
    ) -> Result<Response<pb::PushRulesResponse>, Status> {
        use pb::push_rules_request::Target;
        let core = &self.0;
        let r = request.into_inner();
        check_installs(
            &r.charging_rule_install,
            &core.cfg.predefined_rules,
            "charging_rule_install",
        )?;
        check_removes(&r.charging_rule_remove, "charging_rule_remove")?;
        check_events(&r.event_trigger, "event_trigger")?;
        if r.charging_rule_install.is_empty()
            && r.charging_rule_remove.is_empty()
            && r.event_trigger.is_empty()
        {
            return Err(Invalid::new(
                "charging_rule_install",
                "nothing to push: give rules to install or remove, or event triggers",
            )
            .into());
        }
        let sessions = match r.target {
            None => {
                return Err(Invalid::new("target", "give a session_id or a subscriber_id").into())
            }
            Some(Target::SessionId(id)) => {
                if id.is_empty() {
                    return Err(Invalid::new("session_id", "required").into());
                }
                let key = id.clone();
                let s = core
                    .db(move |s| s.session(&key))
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| Status::not_found(format!("no session '{id}'")))?;
                vec![s]
            }
            Some(Target::SubscriberId(sub)) => {
                let sub = subscriber(&sub, "subscriber_id")?;
                let key = sub.clone();
                let sessions = core
                    .db(move |s| s.sessions(&key, "", usize::MAX >> 1))
                    .await
                    .map_err(internal)?;
                if sessions.is_empty() {
                    return Err(Status::not_found(format!(
                        "subscriber {sub} has no session"
                    )));
                }
                sessions
            }
        };
        let mut results = Vec::with_capacity(sessions.len());
        for s in sessions {
            let mut result = pb::PushResult {
                session_id: s.session_id.clone(),
                ..Default::default()
            };
            if s.reauth_endpoint.is_empty() {
                result.error = "the gateway gave no reauth_endpoint in CCR-I".to_string();
                results.push(result);
                continue;
            }
            let rar = pb::ReAuthRequest {
                session_id: s.session_id.clone(),
                origin_host: core.cfg.origin_host.clone(),
                re_auth_request_type: pb::ReAuthRequestType::AuthorizeOnly as i32,
                charging_rule_install: r.charging_rule_install.clone(),
                charging_rule_remove: r.charging_rule_remove.clone(),
                event_trigger: r.event_trigger.clone(),
                ..Default::default()
            };
            match send_once(
                &s.reauth_endpoint,
                rar,
                core.cfg.reauth.timeout,
                core.pusher.tls.as_ref(),
            )
            .await
            {
                Ok(raa) => {
                    result.result_code = raa.result_code;
                    result.experimental_result_code = raa.experimental_result_code;
                    let ok = raa.result_code == pb::ResultCode::DiameterSuccess as i32
                        || raa.result_code == pb::ResultCode::DiameterLimitedSuccess as i32;
                    if ok {
                        let failed: Vec<&String> = raa
                            .charging_rule_report
                            .iter()
                            .flat_map(|rep| rep.charging_rule_name.iter())
                            .collect();
                        let mut installed: Vec<String> = s
                            .installed
                            .iter()
                            .filter(|n| {
                                !r.charging_rule_remove
                                    .iter()
                                    .any(|rm| rm.charging_rule_name.contains(n))
                            })
                            .cloned()
                            .collect();
                        for i in &r.charging_rule_install {
                            let names = i.charging_rule_name.iter().chain(
                                i.charging_rule_definition
                                    .iter()
                                    .map(|d| &d.charging_rule_name),
                            );
                            for n in names {
                                if !failed.contains(&n) && !installed.contains(n) {
                                    installed.push(n.clone());
                                }
                            }
                        }
                        let id = s.session_id.clone();
                        core.db(move |st| st.set_installed(&id, &installed))
                            .await
                            .map_err(internal)?;
                    }
                    result.charging_rule_report = raa.charging_rule_report;
                    tracing::info!(session = %s.session_id, result_code = raa.result_code, "rules pushed");
                }
                Err(e) => {
                    tracing::warn!(session = %s.session_id, error = %e, "push failed");
                    result.error = e.to_string();
                }
            }
            results.push(result);
        }
        if results.iter().all(|r| !r.error.is_empty()) {
            let why: Vec<String> = results
                .iter()
                .map(|r| format!("{}: {}", r.session_id, r.error))
                .collect();
            return Err(Status::unavailable(why.join("; ")));
        }
        Ok(Response::new(pb::PushRulesResponse { results }))
    }

    // The charging system's containers and quota groups (peers::charging_system::admin).

    async fn add_credit_container(
        &self,
        request: Request<pb::AddCreditContainerRequest>,
    ) -> Result<Response<pb::CreditContainer>, Status> {
        cs::add_credit_container(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_credit_containers(
        &self,
        request: Request<pb::ListCreditContainersRequest>,
    ) -> Result<Response<pb::ListCreditContainersResponse>, Status> {
        cs::list_credit_containers(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_credit_container(
        &self,
        request: Request<pb::GetCreditContainerRequest>,
    ) -> Result<Response<pb::CreditContainer>, Status> {
        cs::get_credit_container(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_quota_group(
        &self,
        request: Request<pb::CreateQuotaGroupRequest>,
    ) -> Result<Response<pb::QuotaGroup>, Status> {
        cs::create_quota_group(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn add_quota_group_member(
        &self,
        request: Request<pb::QuotaGroupMemberRequest>,
    ) -> Result<Response<pb::QuotaGroup>, Status> {
        cs::change_member(&self.0, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn remove_quota_group_member(
        &self,
        request: Request<pb::QuotaGroupMemberRequest>,
    ) -> Result<Response<pb::QuotaGroup>, Status> {
        cs::change_member(&self.0, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn get_quota_group(
        &self,
        request: Request<pb::GetQuotaGroupRequest>,
    ) -> Result<Response<pb::QuotaGroup>, Status> {
        cs::get_quota_group(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_quota_groups(
        &self,
        request: Request<pb::ListQuotaGroupsRequest>,
    ) -> Result<Response<pb::ListQuotaGroupsResponse>, Status> {
        cs::list_quota_groups(&self.0, request.into_inner())
            .await
            .map(Response::new)
    }
}
