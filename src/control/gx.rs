//! The gateway's side of Gx: CCR-I when a pool address without a session sends its first
//! packet, CCR-U for a verified recharge success and for usage past its threshold, CCR-T when a
//! session idles out or is aborted, each answer applied through the session manager.
//!
//! A recharge-success report that cannot be delivered is sent again with a doubling wait
//! (`retry_backoff` up to `retry_max_backoff`) until the policy engine answers or the session
//! ends; the subscriber stays redirected meanwhile, since only the policy engine lifts it. A
//! failed CCR-I is not retried here: the data path asks again after its pending timeout.

use super::manager::Manager;
use super::sessions::{Entry, Origin, Update};
use super::Tallies;
use crate::packet::{Event, Octets, SuccessToken};
use crate::policy::{ControlSettings, SessionId, SuccessAction};
use crate::proto::v1 as pb;
use crate::time::Timestamp;
use pb::gateway_event::Event as Ev;
use pb::policy_engine_client::PolicyEngineClient;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// CCR-T attempts before it is given up (logged).
const TERMINATE_ATTEMPTS: u32 = 3;

pub struct Gx {
    client: PolicyEngineClient<Channel>,
    /// Latency and result of every request to the policy engine.
    metrics: crate::metrics::ControlMetrics,
    settings: ControlSettings,
    manager: Manager,
    tallies: Tallies,
    /// UE addresses whose CCR-I is on its way.
    pending: Mutex<HashSet<IpAddr>>,
    /// The ReAuth endpoint CCR-I gives, once the server is bound.
    reauth_endpoint: Mutex<String>,
    /// Requests to the policy engine at once, at most [`IN_FLIGHT`]: a burst of attaching
    /// subscribers queues here, in order, instead of opening more HTTP/2 streams than the
    /// policy engine accepts (which it resets) and timing out in its queue.
    in_flight: tokio::sync::Semaphore,
    /// The Gy client, told of every session end before the CCR-T goes out.
    gy: Option<Arc<super::gy::Gy>>,
}

/// Requests to the policy engine in flight at most.
pub const IN_FLIGHT: usize = 128;

/// Whether trying again may help: the policy engine was unreachable or busy.
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

fn success(code: i32) -> bool {
    code == pb::ResultCode::DiameterSuccess as i32
        || code == pb::ResultCode::DiameterLimitedSuccess as i32
}

impl Gx {
    /// Runs one request to the policy engine, its latency and result recorded by RPC.
    async fn timed<T>(
        &self,
        rpc: &str,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        // Never closed, so the permit always comes.
        let _permit = self.in_flight.acquire().await;
        let started = std::time::Instant::now();
        let answer = call.await;
        let result = match &answer {
            Ok(_) => "Ok".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        self.metrics
            .observe(rpc, &result, started.elapsed().as_secs_f64());
        answer
    }

    /// A client for `endpoint`; it connects on first use and again after a failure. Needs a
    /// runtime.
    pub fn new(
        endpoint: &str,
        settings: ControlSettings,
        manager: Manager,
        tallies: Tallies,
        metrics: crate::metrics::ControlMetrics,
        gy: Option<Arc<super::gy::Gy>>,
    ) -> Result<Gx, crate::proto::tls::TlsError> {
        let channel = crate::proto::tls::client_channel(
            endpoint,
            settings.policy_engine_tls.as_ref(),
            settings.request_timeout,
        )?
        .connect_lazy();
        Ok(Gx {
            client: PolicyEngineClient::new(channel),
            metrics,
            manager,
            tallies,
            reauth_endpoint: Mutex::new(settings.reauth_endpoint()),
            settings,
            pending: Mutex::new(HashSet::new()),
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
            gy,
        })
    }

    /// Where the policy engine reaches this gateway's ReAuth (given in each CCR-I).
    pub fn set_reauth_endpoint(&self, endpoint: String) {
        *self
            .reauth_endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = endpoint;
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<IpAddr>> {
        // The set holds addresses only; a panic elsewhere leaves it usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CCR-I for a UE address, and its answer installed. Duplicates while one is on its way are
    /// ignored; a failure is logged and the next request tries again.
    pub async fn session_request(self: Arc<Self>, ue: IpAddr) {
        if !self.pending().insert(ue) {
            return;
        }
        self.create(ue).await;
        self.pending().remove(&ue);
    }

    async fn create(&self, ue: IpAddr) {
        let mapping = self.settings.subscriber_for(ue);
        let reserved = self
            .manager
            .call(move |s, _| match s.by_address(ue) {
                Some(_) => None,
                None => Some(s.reserve()),
            })
            .await;
        let Ok(Some((id, session_id))) = reserved else {
            return;
        };
        let request = pb::CreateSessionRequest {
            session_id: session_id.clone(),
            origin_host: self.settings.origin_host.clone(),
            cc_request_type: pb::CcRequestType::InitialRequest as i32,
            cc_request_number: 0,
            subscriber_id: mapping.subscriber.to_string(),
            framed_ip_address: mapping.ipv4.map(|a| a.to_string()).unwrap_or_default(),
            framed_ipv6_prefix: mapping.ipv6.map(|p| p.to_string()).unwrap_or_default(),
            reauth_endpoint: self
                .reauth_endpoint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            event_trigger: vec![pb::EventTrigger::UeIpAddressAllocate as i32],
        };
        let started = std::time::Instant::now();
        let answer = match self
            .timed("CreateSession", self.client.clone().create_session(request))
            .await
        {
            Ok(a) => a.into_inner(),
            Err(e) => {
                tracing::warn!(ue = %ue, subscriber = %mapping.subscriber, session = %session_id,
                    code = ?e.code(), error = %e.message(), "CCR-I failed; the next packet asks again");
                return;
            }
        };
        if !success(answer.result_code) {
            tracing::warn!(ue = %ue, subscriber = %mapping.subscriber, result_code = answer.result_code,
                "CCR-I refused; the next packet asks again");
            return;
        }
        let update = Update {
            installs: answer.charging_rule_install,
            removes: answer.charging_rule_remove,
            event_triggers: answer.event_trigger,
            monitoring: answer.usage_monitoring_information,
            revalidation_time: answer.revalidation_time,
        };
        let sub = mapping.subscriber.clone();
        let installed = self
            .manager
            .call(move |s, now| {
                s.create(
                    sub,
                    mapping.ipv4,
                    mapping.ipv6,
                    Origin::PolicyEngine,
                    Some(id),
                    now,
                )?;
                s.apply(id, &update, pb::RedirectLiftCause::PolicyEngine, now)
            })
            .await;
        match installed {
            Ok(Ok(reports)) => {
                tracing::info!(ue = %ue, subscriber = %mapping.subscriber, session = %session_id,
                failed_rules = reports.len(), ms = started.elapsed().as_millis() as u64, "CCA-I installed");
                self.report_rules(id, reports).await;
            }
            Ok(Err(e)) => {
                tracing::warn!(ue = %ue, session = %session_id, error = %e, "CCA-I not installed")
            }
            Err(_) => {}
        }
    }

    /// The session's Session-Id and the next CC-Request-Number, if it is the policy engine's.
    async fn next_request(&self, id: SessionId) -> Option<(String, u32)> {
        self.manager
            .call(move |s, _| {
                let e = s.get_mut(id).filter(|e| e.origin == Origin::PolicyEngine)?;
                let n = e.next_request_number();
                Some((e.session_id.clone(), n))
            })
            .await
            .ok()
            .flatten()
    }

    /// Sends a CCR-U and applies its answer; rules of the answer that could not be installed
    /// are reported to the policy engine in one more CCR-U.
    async fn update(&self, id: SessionId, request: pb::UpdateSessionRequest, what: &str) {
        let failed = self.send_update(id, request, what).await;
        self.report_rules(id, failed).await;
    }

    /// Charging-Rule-Report for rules a CCA put in force that the gateway could not install
    /// (TS 29.212 §4.5.12): a CCR-U that carries only the reports. Failures in the answer to
    /// that CCR-U are logged and not reported again, so a policy engine that keeps sending a
    /// bad rule cannot start a loop.
    pub(super) async fn report_rules(&self, id: SessionId, reports: Vec<pb::ChargingRuleReport>) {
        if reports.is_empty() {
            return;
        }
        let request = pb::UpdateSessionRequest {
            charging_rule_report: reports,
            ..Default::default()
        };
        let again = self.send_update(id, request, "rule report").await;
        if !again.is_empty() {
            tracing::warn!(
                session = id.0,
                failed_rules = again.len(),
                "the answer to a rule report installs rules that fail again; not reported twice"
            );
        }
    }

    /// Sends a CCR-U until the policy engine answers (retrying with backoff while it cannot be
    /// reached and the session lasts), then applies the answer. Returns the reports of the
    /// answer's rules that could not be installed.
    async fn send_update(
        &self,
        id: SessionId,
        request: pb::UpdateSessionRequest,
        what: &str,
    ) -> Vec<pb::ChargingRuleReport> {
        let Some(answer) = self.deliver_update(id, request, what).await else {
            return Vec::new();
        };
        let session_id = answer.session_id.clone();
        if !success(answer.result_code) {
            tracing::warn!(session = %session_id, report = what, result_code = answer.result_code,
                detail = %answer.detail, "CCR-U answered without success; nothing changes");
            return Vec::new();
        }
        let update = Update::of_update_answer(answer);
        let applied = self
            .manager
            .call(move |s, now| s.apply(id, &update, pb::RedirectLiftCause::PolicyEngine, now))
            .await;
        match applied {
            Ok(Ok(reports)) => {
                tracing::info!(session = %session_id, report = what, failed_rules = reports.len(), "CCA-U applied");
                reports
            }
            Ok(Err(e)) => {
                tracing::info!(session = %session_id, error = %e, "CCA-U for a session that ended");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Numbers a CCR-U as the session's next request and sends it until the policy engine
    /// answers (retrying with backoff while it cannot be reached and the session lasts). The
    /// answer, applied by the caller; `None` when the session is not the policy engine's, ended,
    /// or the request was refused.
    pub(super) async fn deliver_update(
        &self,
        id: SessionId,
        mut request: pb::UpdateSessionRequest,
        what: &str,
    ) -> Option<pb::UpdateSessionAnswer> {
        let (session_id, number) = self.next_request(id).await?;
        request.session_id = session_id.clone();
        request.origin_host = self.settings.origin_host.clone();
        request.cc_request_type = pb::CcRequestType::UpdateRequest as i32;
        request.cc_request_number = number;
        let mut pause = self.settings.retry_backoff;
        loop {
            match self
                .timed(
                    "UpdateSession",
                    self.client.clone().update_session(request.clone()),
                )
                .await
            {
                Ok(a) => return Some(a.into_inner()),
                Err(e) if transient(&e) => {
                    let alive = self
                        .manager
                        .call(move |s, _| s.get(id).is_some())
                        .await
                        .unwrap_or(false);
                    if !alive {
                        return None;
                    }
                    tracing::warn!(session = %session_id, report = what, error = %e.message(), retry_in = ?pause,
                        "CCR-U not delivered; retrying (the redirect stays until the policy engine answers)");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2)
                        .clamp(Duration::from_millis(100), self.settings.retry_max_backoff);
                }
                Err(e) => {
                    tracing::warn!(session = %session_id, report = what, code = ?e.code(), error = %e.message(), "CCR-U refused");
                    return None;
                }
            }
        }
    }

    /// A verified recharge success: CCR-U with WEIR_RECHARGE_SUCCESS and the token.
    pub async fn recharge_success(self: Arc<Self>, id: SessionId, token: SuccessToken) {
        let request = pb::UpdateSessionRequest {
            event_trigger: vec![pb::EventTrigger::WeirRechargeSuccess as i32],
            recharge_success: Some(token_of(&token)),
            ..Default::default()
        };
        self.update(id, request, "recharge success").await;
        // A rating group the charging system left at its Final-Unit-Action (REDIRECT to the
        // portal) has no redirect rule for the policy engine to remove: it is freed by credit.
        // Asked only now, after the policy engine has accepted the success, so the charging
        // system grants from the recharge on the same evidence, before billing applies it.
        if let Some(gy) = &self.gy {
            let groups = gy.rating_groups(id).await;
            if !groups.is_empty() {
                gy.reauthorize(id, groups).await;
            }
        }
    }

    /// Usage past its grant: CCR-U with USAGE_REPORT; the answer carries the next grant.
    pub async fn usage_threshold(self: Arc<Self>, id: SessionId, key: Arc<str>, used: Octets) {
        let k = Arc::clone(&key);
        let _ = self
            .manager
            .call(move |s, _| {
                if let Some(e) = s.get_mut(id) {
                    let r = e.reported.entry(k).or_default();
                    r.uplink += used.uplink;
                    r.downlink += used.downlink;
                }
            })
            .await;
        let umi = usage_info(&key, used);
        self.manager
            .call(move |s, now| s.note(id, now, Ev::UsageReport(umi)))
            .await
            .ok();
        let request = pb::UpdateSessionRequest {
            event_trigger: vec![pb::EventTrigger::UsageReport as i32],
            usage_monitoring_information: vec![usage_info(&key, used)],
            ..Default::default()
        };
        self.update(id, request, "usage").await;
    }

    /// The usage per monitoring key the workers counted for a session and no report carried yet.
    fn final_usage(&self, e: &Entry) -> Vec<pb::UsageMonitoringInformation> {
        let Some(board) = self.tallies.get() else {
            return Vec::new();
        };
        board
            .current()
            .report
            .monitoring_keys
            .iter()
            .filter(|m| m.session_id == e.id.0)
            .map(|m| {
                let done = e
                    .reported
                    .get(m.monitoring_key.as_str())
                    .copied()
                    .unwrap_or_default();
                usage_info(
                    &m.monitoring_key,
                    Octets {
                        uplink: m.usage.uplink_bytes.saturating_sub(done.uplink),
                        downlink: m.usage.downlink_bytes.saturating_sub(done.downlink),
                    },
                )
            })
            .collect()
    }

    /// CCR-T for an ended session, retried a few times.
    pub async fn terminate(&self, e: Entry, cause: pb::TerminationCause) {
        if let Some(gy) = &self.gy {
            gy.terminate(&e, cause).await;
        }
        let mut pause = self.settings.retry_backoff;
        let request = self.termination(e, cause);
        for attempt in 1..=TERMINATE_ATTEMPTS {
            match self
                .timed(
                    "TerminateSession",
                    self.client.clone().terminate_session(request.clone()),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(session = %request.session_id, cause = ?cause, "CCR-T answered");
                    return;
                }
                Err(s) if transient(&s) && attempt < TERMINATE_ATTEMPTS => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2)
                        .clamp(Duration::from_millis(100), self.settings.retry_max_backoff);
                }
                Err(s) => {
                    tracing::warn!(session = %request.session_id, error = %s.message(), "CCR-T not delivered; giving up");
                    return;
                }
            }
        }
    }

    /// One CCR-T attempt (at shutdown, under a deadline).
    pub async fn terminate_once(&self, e: Entry, cause: pb::TerminationCause) {
        if let Some(gy) = &self.gy {
            gy.terminate(&e, cause).await;
        }
        let request = self.termination(e, cause);
        if let Err(s) = self
            .timed(
                "TerminateSession",
                self.client.clone().terminate_session(request.clone()),
            )
            .await
        {
            tracing::warn!(session = %request.session_id, error = %s.message(), "CCR-T not delivered");
        }
    }

    fn termination(
        &self,
        mut e: Entry,
        cause: pb::TerminationCause,
    ) -> pb::TerminateSessionRequest {
        let usage = self.final_usage(&e);
        pb::TerminateSessionRequest {
            session_id: e.session_id.clone(),
            origin_host: self.settings.origin_host.clone(),
            cc_request_type: pb::CcRequestType::TerminationRequest as i32,
            cc_request_number: e.next_request_number(),
            termination_cause: cause as i32,
            usage_monitoring_information: usage,
        }
    }

    /// Ends the policy engine's sessions that saw no packet for `session_idle_timeout` (judged
    /// from the workers' tallies; a session with no traffic at all from its start), and sends
    /// CCR-U with REVALIDATION_TIMEOUT for sessions whose Revalidation-Time has come. Runs every
    /// quarter of the idle timeout, between 0.2 and 10 s.
    pub async fn idle_sweep(self: Arc<Self>) {
        let idle = self.settings.session_idle_timeout;
        let every = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            tokio::time::sleep(every).await;
            let seen = self.last_seen();
            let ended = self
                .manager
                .call(move |s, now| {
                    let stale: Vec<SessionId> = s
                        .iter()
                        .filter(|e| e.origin == Origin::PolicyEngine)
                        .filter(|e| {
                            let last = seen
                                .iter()
                                .filter(|(id, _)| *id == e.id.0)
                                .map(|(_, t)| *t)
                                .max()
                                .unwrap_or(Timestamp::from_secs(e.started_at));
                            now.saturating_since(last) >= idle
                        })
                        .map(|e| e.id)
                        .collect();
                    stale
                        .into_iter()
                        .filter_map(|id| {
                            s.end(id, pb::TerminationCause::DiameterSessionTimeout, now)
                        })
                        .collect::<Vec<_>>()
                })
                .await;
            let Ok(ended) = ended else { return };
            // Revalidation-Time reached: ask again (CCR-U with REVALIDATION_TIMEOUT), once.
            let due = self
                .manager
                .call(|s, now| {
                    let secs = super::sessions::unix_secs(now);
                    let due: Vec<SessionId> = s
                        .iter()
                        .filter(|e| e.origin == Origin::PolicyEngine)
                        .filter(|e| e.revalidation_time != 0 && e.revalidation_time <= secs)
                        .map(|e| e.id)
                        .collect();
                    for id in &due {
                        if let Some(e) = s.get_mut(*id) {
                            e.revalidation_time = 0;
                        }
                    }
                    due
                })
                .await
                .unwrap_or_default();
            for id in due {
                let gx = Arc::clone(&self);
                let request = pb::UpdateSessionRequest {
                    event_trigger: vec![pb::EventTrigger::RevalidationTimeout as i32],
                    ..Default::default()
                };
                tokio::spawn(async move { gx.update(id, request, "revalidation").await });
            }
            for e in ended {
                tracing::info!(session = %e.session_id, subscriber = %e.config.subscriber, "session idle: CCR-T");
                let gx = Arc::clone(&self);
                tokio::spawn(async move {
                    gx.terminate(e, pb::TerminationCause::DiameterSessionTimeout)
                        .await
                });
            }
        }
    }

    /// (session id, last packet) from the workers' tallies.
    fn last_seen(&self) -> Vec<(u32, Timestamp)> {
        let Some(board) = self.tallies.get() else {
            return Vec::new();
        };
        let r = board.current().report;
        r.rating_groups
            .iter()
            .filter_map(|u| Some((u.session_id, u.usage.last_seen?)))
            .chain(
                r.monitoring_keys
                    .iter()
                    .filter_map(|u| Some((u.session_id, u.usage.last_seen?))),
            )
            .collect()
    }
}

fn usage_info(key: &str, used: Octets) -> pb::UsageMonitoringInformation {
    pb::UsageMonitoringInformation {
        monitoring_key: key.to_string(),
        granted_service_unit: None,
        used_service_unit: Some(pb::ServiceUnit {
            cc_total_octets: Some(used.total()),
            cc_input_octets: Some(used.uplink),
            cc_output_octets: Some(used.downlink),
        }),
        usage_monitoring_level: pb::UsageMonitoringLevel::PccRuleLevel as i32,
    }
}

fn token_of(t: &SuccessToken) -> pb::RechargeSuccess {
    pb::RechargeSuccess {
        subscriber_id: t.subscriber.clone(),
        ue_address: t.ue.map(|a| a.to_string()).unwrap_or_default(),
        expires: t.expires,
        nonce: t.nonce.clone(),
        signature: t.signature.clone(),
        original_url: t.original_url.clone().unwrap_or_default(),
    }
}

/// Reads the data path's events on a thread of its own (the channel blocks) and hands each to
/// the runtime: with a policy engine, SessionRequest → CCR-I, RechargeSuccess → CCR-U,
/// UsageThreshold → CCR-U; watchers hear of successes and usage either way.
pub fn spawn_event_pump(
    rx: crossbeam_channel::Receiver<Event>,
    runtime: tokio::runtime::Handle,
    manager: Manager,
    gx: Option<Arc<Gx>>,
    gy: Option<Arc<super::gy::Gy>>,
    success_action: SuccessAction,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weir-events".into())
        .spawn(move || {
            for event in rx.iter() {
                dispatch(
                    &runtime,
                    &manager,
                    gx.as_ref(),
                    gy.as_ref(),
                    success_action,
                    event,
                );
            }
        })
        .map(|_| ())
}

fn dispatch(
    runtime: &tokio::runtime::Handle,
    manager: &Manager,
    gx: Option<&Arc<Gx>>,
    gy: Option<&Arc<super::gy::Gy>>,
    success_action: SuccessAction,
    event: Event,
) {
    match event {
        Event::SessionRequest { ue, .. } => match gx {
            Some(gx) => {
                runtime.spawn(Arc::clone(gx).session_request(ue));
            }
            None => tracing::debug!(ue = %ue, "session request without a policy engine"),
        },
        Event::RechargeSuccess {
            session,
            subscriber,
            ue,
            at,
            token,
        } => {
            tracing::info!(session = session.0, subscriber = %subscriber, ue = %ue, "recharge success");
            let m = manager.clone();
            let t = token_of(&token);
            let local = success_action == SuccessAction::Local;
            runtime.spawn(async move {
                let _ = m
                    .call(move |s, _| {
                        s.note(session, at, Ev::RechargeSuccess(t));
                        if local {
                            let source = s
                                .get(session)
                                .and_then(|e| e.redirect(s.predefined()))
                                .map(|(n, _)| n)
                                .unwrap_or_default();
                            s.note(
                                session,
                                at,
                                Ev::RedirectLifted(pb::RedirectLifted {
                                    cause: pb::RedirectLiftCause::LocalSuccess as i32,
                                    source,
                                }),
                            );
                        }
                    })
                    .await;
            });
            if let Some(gx) = gx {
                runtime.spawn(Arc::clone(gx).recharge_success(session, token));
            }
        }
        Event::UsageThreshold {
            session,
            monitoring_key,
            used,
            ..
        } => match gx {
            Some(gx) => {
                runtime.spawn(Arc::clone(gx).usage_threshold(session, monitoring_key, used));
            }
            None => {
                tracing::debug!(session = session.0, key = %monitoring_key, "usage threshold without a policy engine")
            }
        },
        // Online charging's events go to the charging system, not the policy engine.
        Event::CreditRequest {
            session,
            rating_group,
            service_identifier,
            ..
        } => match gy {
            Some(gy) => {
                runtime.spawn(Arc::clone(gy).credit_request(
                    session,
                    rating_group,
                    service_identifier,
                ));
            }
            None => {
                tracing::debug!(
                    session = session.0,
                    rating_group,
                    "credit request without a charging system"
                )
            }
        },
        Event::CreditReport {
            session,
            rating_group,
            service_identifier,
            reason,
            used,
            ..
        } => match gy {
            Some(gy) => {
                runtime.spawn(Arc::clone(gy).credit_report(
                    session,
                    rating_group,
                    service_identifier,
                    reason,
                    used,
                ));
            }
            None => {
                tracing::debug!(
                    session = session.0,
                    rating_group,
                    "credit report without a charging system"
                )
            }
        },
        // Every online rating group terminated by its Final-Unit-Action: the session ends
        // (CCR-T to both peers).
        Event::CreditTerminated { session, at } => {
            let m = manager.clone();
            let gx = gx.cloned();
            let gy = gy.cloned();
            runtime.spawn(async move {
                let cause = pb::TerminationCause::DiameterAdministrative;
                let ended = m.call(move |s, _| s.end(session, cause, at)).await;
                let Ok(Some(e)) = ended else { return };
                tracing::info!(session = %e.session_id, subscriber = %e.config.subscriber,
                    "every online rating group terminated: the session ends");
                match (gx, e.origin) {
                    (Some(gx), super::Origin::PolicyEngine) => gx.terminate(e, cause).await,
                    (_, _) => {
                        if let Some(gy) = gy {
                            gy.terminate(&e, cause).await;
                        }
                    }
                }
            });
        }
    }
}
