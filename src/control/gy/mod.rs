//! The gateway's side of Gy: the data path's credit events become CCR-I (the first request of
//! a session, Multiple-Services-Credit-Control for the rating groups asked), CCR-U (the
//! Used-Service-Unit a worker reported, with its Reporting-Reason, and a new request for
//! credit) and CCR-T (at session end, the units used since the last report). Each answer
//! becomes one all-or-nothing change of the session's grants through the session manager.
//!
//! One request of a Gy session is in flight at a time, numbered from 0 by CC-Request-Number,
//! strictly increasing; a retry re-sends the same number (the charging system answers a
//! repeated number from its record, so nothing is counted twice). A request that carries used
//! units is written to the journal before it is sent and stays owed until it is answered:
//! requests of a session that wait behind an unanswered one queue behind it in order, and are
//! sent again when the charging system is back, or when the gateway starts again.
//!
//! When the charging system cannot be reached (every attempt of a request timed out or
//! failed), Credit-Control-Failure-Handling decides: TERMINATE and RETRY_AND_TERMINATE end the
//! session, CONTINUE grants the asked rating groups `continue_octets` locally so traffic flows
//! and is metered. Either way the owed reports are delivered later.
//!
//! What it must never do: send a session's requests out of order, lose or repeat a report's
//! units, or touch another session than the one an event names.

mod answer;
pub mod journal;
mod reauth;

pub use answer::grants_of;

use super::manager::Manager;
use super::sessions::Entry;
use super::Tallies;
use crate::packet::{ReportingReason, UsedUnits};
use crate::policy::{
    CreditControlSettings, CreditGrant, FailureHandling, GrantedServiceUnit, SessionId,
};
use crate::proto::v1 as pb;
use journal::{Journal, JournalError};
use pb::charging_system_client::ChargingSystemClient;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// How long the CCR-T waits for the workers' fresh meters.
const FINAL_READ: Duration = Duration::from_millis(500);

/// One Gy session: its id, subscriber, next number, and the requests still owed in order.
struct GySession {
    session_id: String,
    subscriber: String,
    /// The gateway's session, while it lasts (`None`: a session of before a restart, only its
    /// owed requests left).
    local: Option<SessionId>,
    next: u32,
    failure_handling: FailureHandling,
    /// Requests sent (journaled) and not answered, oldest first.
    owed: VecDeque<pb::CreditControlRequest>,
    /// Octets reported per rating group, for the CCR-T's last Used-Service-Unit.
    reported: HashMap<u32, u64>,
    /// The re-authorization triggers (Trigger-Type) the charging system's last answer gave per
    /// rating group, for bearer events.
    triggers: HashMap<u32, Vec<pb::TriggerType>>,
    ended: bool,
}

type Shared = Arc<tokio::sync::Mutex<GySession>>;

/// Counts of what the Gy client did, for logs and tests.
#[derive(Debug, Default)]
pub struct GyCounters {
    pub requests: AtomicU64,
    pub answers: AtomicU64,
    pub failures: AtomicU64,
    /// Rating groups blocked by USER_UNKNOWN or RATING_FAILED.
    pub blocked: AtomicU64,
    pub local_grants: AtomicU64,
}

pub struct Gy {
    client: ChargingSystemClient<Channel>,
    settings: CreditControlSettings,
    origin_host: String,
    manager: Manager,
    tallies: Tallies,
    journal: Option<Mutex<Journal>>,
    sessions: Mutex<HashMap<SessionId, Shared>>,
    /// Sessions of before a restart with requests still owed.
    orphans: Mutex<Vec<Shared>>,
    /// The Gx client, for the CCR-T of a session CC-Failure-Handling ends (weak: it holds this
    /// client too).
    gx: std::sync::OnceLock<std::sync::Weak<super::gx::Gx>>,
    /// Requests to the charging system at once, at most [`IN_FLIGHT`]: when many sessions
    /// cross their thresholds together, the requests queue here, in order, instead of opening
    /// more HTTP/2 streams than the charging system accepts (it resets them) and timing out in
    /// its queue, which turned 99 % of 100 000 CCR-I into CONTINUE's local grants.
    in_flight: tokio::sync::Semaphore,
    pub counters: GyCounters,
}

/// Requests to the charging system in flight at most (as many as to the policy engine).
pub const IN_FLIGHT: usize = super::gx::IN_FLIGHT;

/// Whether a request's answer is worth waiting again for.
fn transient(s: &tonic::Status) -> bool {
    !matches!(
        s.code(),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
    )
}

fn units_of(used: UsedUnits) -> pb::ServiceUnits {
    pb::ServiceUnits {
        cc_time: u32::try_from(used.time).ok().filter(|t| *t > 0),
        cc_total_octets: Some(used.octets.uplink + used.octets.downlink),
        cc_input_octets: Some(used.octets.uplink),
        cc_output_octets: Some(used.octets.downlink),
    }
}

fn reason_of(r: ReportingReason) -> pb::ReportingReason {
    match r {
        ReportingReason::Threshold => pb::ReportingReason::Threshold,
        ReportingReason::QuotaHoldingTime => pb::ReportingReason::Qht,
        ReportingReason::Final => pb::ReportingReason::Final,
        ReportingReason::QuotaExhausted => pb::ReportingReason::QuotaExhausted,
        ReportingReason::ValidityTime => pb::ReportingReason::ValidityTime,
    }
}

fn handling_of(code: i32) -> Option<FailureHandling> {
    match pb::CreditControlFailureHandling::try_from(code).ok()? {
        pb::CreditControlFailureHandling::Terminate => Some(FailureHandling::Terminate),
        pb::CreditControlFailureHandling::Continue => Some(FailureHandling::Continue),
        pb::CreditControlFailureHandling::RetryAndTerminate => {
            Some(FailureHandling::RetryAndTerminate)
        }
    }
}

impl Gy {
    /// A client for `endpoint` (connecting on first use), with the journal opened and what it
    /// still owes queued to be sent again. Needs a runtime.
    pub fn new(
        endpoint: &str,
        settings: &crate::policy::ControlSettings,
        manager: Manager,
        tallies: Tallies,
    ) -> Result<Gy, GyError> {
        let channel = crate::proto::tls::client_channel(
            endpoint,
            settings.charging_system_tls.as_ref(),
            settings.credit.request_timeout,
        )
        .map_err(GyError::Endpoint)?
        .connect_lazy();
        let (journal, owed) = match &settings.credit.journal {
            Some(p) => {
                let (j, owed) = Journal::open(p)?;
                (Some(Mutex::new(j)), owed)
            }
            None => (None, Vec::new()),
        };
        let mut orphans: Vec<GySession> = Vec::new();
        for r in owed {
            match orphans.iter_mut().find(|o| o.session_id == r.session_id) {
                Some(o) => {
                    o.next = o.next.max(r.cc_request_number + 1);
                    o.owed.push_back(r);
                }
                None => orphans.push(GySession {
                    session_id: r.session_id.clone(),
                    subscriber: r.subscriber_id.clone(),
                    local: None,
                    next: r.cc_request_number + 1,
                    failure_handling: settings.credit.failure_handling,
                    owed: VecDeque::from([r]),
                    reported: HashMap::new(),
                    triggers: HashMap::new(),
                    ended: true,
                }),
            }
        }
        if !orphans.is_empty() {
            tracing::info!(
                sessions = orphans.len(),
                "credit journal: reports owed from before the restart are sent again"
            );
        }
        Ok(Gy {
            client: ChargingSystemClient::new(channel),
            settings: settings.credit.clone(),
            origin_host: settings.origin_host.clone(),
            manager,
            tallies,
            journal,
            sessions: Mutex::new(HashMap::new()),
            orphans: Mutex::new(
                orphans
                    .into_iter()
                    .map(|o| Arc::new(tokio::sync::Mutex::new(o)))
                    .collect(),
            ),
            gx: std::sync::OnceLock::new(),
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
            counters: GyCounters::default(),
        })
    }

    /// Gives the Gx client that sends CCR-T for a session ended here.
    pub fn set_gx(&self, gx: &Arc<super::gx::Gx>) {
        let _ = self.gx.set(Arc::downgrade(gx));
    }

    /// A session CC-Failure-Handling ended: CCR-T to the policy engine (which tells this
    /// client, so its CCR-T queues behind what is owed), else to the charging system alone.
    async fn ended(&self, e: Option<Entry>) {
        let Some(e) = e else { return };
        let cause = pb::TerminationCause::DiameterLinkBroken;
        match (self.gx.get().and_then(std::sync::Weak::upgrade), e.origin) {
            (Some(gx), super::Origin::PolicyEngine) => gx.terminate(e, cause).await,
            _ => self.terminate(&e, cause).await,
        }
    }

    fn journal_sent(&self, r: &pb::CreditControlRequest) {
        if let Some(j) = &self.journal {
            if let Err(e) = j.lock().unwrap_or_else(|e| e.into_inner()).sent(r) {
                tracing::error!(error = %e, "credit journal: a report is kept in memory only");
            }
        }
    }

    fn journal_answered(&self, r: &pb::CreditControlRequest) {
        if let Some(j) = &self.journal {
            if let Err(e) = j
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .answered(&r.session_id, r.cc_request_number)
            {
                tracing::warn!(error = %e, "credit journal: an answer is not recorded (the report is sent again later, answered from the charging system's record)");
            }
        }
    }

    /// The Gy session of `id`, made on first use from the gateway's session.
    async fn session(&self, id: SessionId) -> Option<Shared> {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Some(Arc::clone(s));
        }
        let (session_id, subscriber) = self
            .manager
            .call(move |s, _| {
                s.get(id)
                    .map(|e| (e.session_id.clone(), e.config.subscriber.to_string()))
            })
            .await
            .ok()
            .flatten()?;
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry(id).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(GySession {
                session_id,
                subscriber,
                local: Some(id),
                next: 0,
                failure_handling: self.settings.failure_handling,
                owed: VecDeque::new(),
                reported: HashMap::new(),
                triggers: HashMap::new(),
                ended: false,
            }))
        });
        Some(Arc::clone(s))
    }

    /// One attempt series of `r`: up to `attempts` tries, each within Tx, with backoff.
    async fn deliver(
        &self,
        r: &pb::CreditControlRequest,
    ) -> Result<pb::CreditControlAnswer, tonic::Status> {
        let mut pause = self.settings.retry_backoff;
        let mut last = tonic::Status::unavailable("not sent");
        for attempt in 1..=self.settings.attempts {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut client = self.client.clone();
            // Never closed, so the permit always comes; Tx starts once it has, so the wait
            // here is not counted against the request. The permit is given back before any
            // backoff.
            let permit = self.in_flight.acquire().await;
            let call = client.credit_control(r.clone());
            let outcome = tokio::time::timeout(self.settings.request_timeout, call).await;
            drop(permit);
            match outcome {
                Ok(Ok(a)) => {
                    self.counters.answers.fetch_add(1, Ordering::Relaxed);
                    return Ok(a.into_inner());
                }
                Ok(Err(s)) if !transient(&s) => return Err(s),
                Ok(Err(s)) => last = s,
                Err(_) => last = tonic::Status::deadline_exceeded("Tx expired"),
            }
            if attempt < self.settings.attempts {
                tokio::time::sleep(pause).await;
                pause =
                    (pause * 2).clamp(Duration::from_millis(100), self.settings.retry_max_backoff);
            }
        }
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        Err(last)
    }

    /// Sends the owed requests of `g` in order; true when none is left.
    async fn flush(&self, g: &mut GySession) -> bool {
        while let Some(r) = g.owed.front().cloned() {
            match self.deliver(&r).await {
                Ok(a) => {
                    self.journal_answered(&r);
                    g.owed.pop_front();
                    self.apply(g, &r, &a).await;
                }
                // Older than the charging system's last request: it was accounted already.
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    self.journal_answered(&r);
                    g.owed.pop_front();
                }
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    tracing::error!(session = %r.session_id, number = r.cc_request_number, error = %s.message(),
                        "the charging system refuses a report; it is dropped from the journal");
                    self.journal_answered(&r);
                    g.owed.pop_front();
                }
                Err(s) => {
                    tracing::warn!(session = %r.session_id, number = r.cc_request_number, code = ?s.code(),
                        owed = g.owed.len(), "charging system unreachable; reports kept to be sent again");
                    return false;
                }
            }
        }
        true
    }

    /// Numbers `mscc` as the session's next request, journals it and sends it behind any
    /// request still owed; on failure the failure handling applies. Returns the session when
    /// that ended it.
    async fn request(
        &self,
        id: SessionId,
        mscc: Vec<pb::MultipleServicesCreditControl>,
        terminate: Option<pb::TerminationCause>,
    ) -> Option<Entry> {
        self.numbered(id, mscc, terminate).await.1
    }

    /// [`Gy::request`], with the CC-Request-Number the request got (`None`: nothing was sent,
    /// the session has no Gy session or it ended).
    async fn numbered(
        &self,
        id: SessionId,
        mscc: Vec<pb::MultipleServicesCreditControl>,
        terminate: Option<pb::TerminationCause>,
    ) -> (Option<u32>, Option<Entry>) {
        let Some(shared) = self.session(id).await else {
            return (None, None);
        };
        let mut g = shared.lock().await;
        if g.ended && terminate.is_none() {
            return (None, None);
        }
        let kind = match (terminate, g.next) {
            (Some(_), _) => pb::CcRequestType::TerminationRequest,
            (None, 0) => pb::CcRequestType::InitialRequest,
            (None, _) => pb::CcRequestType::UpdateRequest,
        };
        if kind == pb::CcRequestType::TerminationRequest {
            if g.next == 0 {
                // Never asked: nothing to close at the charging system.
                g.ended = true;
                return (None, None);
            }
            g.ended = true;
        }
        let r = pb::CreditControlRequest {
            session_id: g.session_id.clone(),
            origin_host: self.origin_host.clone(),
            cc_request_type: kind as i32,
            cc_request_number: g.next,
            subscriber_id: g.subscriber.clone(),
            multiple_services_credit_control: mscc,
            termination_cause: terminate.map_or(0, |c| c as i32),
            event_timestamp: crate::time::Timestamp::now().as_nanos() / 1_000_000_000,
        };
        g.next += 1;
        for m in &r.multiple_services_credit_control {
            let used: u64 = m
                .used_service_unit
                .iter()
                .filter_map(|u| u.units.as_ref()?.cc_total_octets)
                .sum();
            *g.reported.entry(m.rating_group.unwrap_or(0)).or_default() += used;
        }
        self.journal_sent(&r);
        g.owed.push_back(r.clone());
        let number = Some(r.cc_request_number);
        if self.flush(&mut g).await {
            return (number, None);
        }
        let asked: Vec<u32> = r
            .multiple_services_credit_control
            .iter()
            .filter_map(|m| m.rating_group)
            .collect();
        let ended = match (g.failure_handling, g.local) {
            (_, None) => None,
            (FailureHandling::Continue, Some(local)) if !g.ended => {
                let grants: Vec<CreditGrant> = asked
                    .iter()
                    .map(|rg| CreditGrant {
                        rating_group: *rg,
                        service_identifier: None,
                        grant: u64::from(r.cc_request_number) + 1,
                        granted: GrantedServiceUnit {
                            total: Some(self.settings.continue_octets),
                            ..Default::default()
                        },
                        volume_threshold: None,
                        time_threshold: None,
                        validity_time: None,
                        quota_holding_time: None,
                        final_unit: None,
                    })
                    .collect();
                self.counters
                    .local_grants
                    .fetch_add(grants.len() as u64, Ordering::Relaxed);
                tracing::warn!(session = %g.session_id, subscriber = %g.subscriber, rating_groups = ?asked,
                    octets = self.settings.continue_octets, "CC-Failure-Handling CONTINUE: granted locally");
                let _ = self
                    .manager
                    .call(move |s, _| s.set_credits(local, grants))
                    .await;
                None
            }
            (FailureHandling::Continue, Some(_)) => None,
            (_, Some(local)) if !g.ended => {
                g.ended = true;
                tracing::warn!(session = %g.session_id, subscriber = %g.subscriber,
                    "CC-Failure-Handling TERMINATE: the session ends (its reports are kept to be sent again)");
                self.manager
                    .call(move |s, now| s.end(local, pb::TerminationCause::DiameterLinkBroken, now))
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        (number, ended)
    }

    /// Applies an answer to `r`: the per-session failure handling it names, and its grants.
    async fn apply(
        &self,
        g: &mut GySession,
        r: &pb::CreditControlRequest,
        a: &pb::CreditControlAnswer,
    ) {
        if let Some(h) = handling_of(a.credit_control_failure_handling) {
            g.failure_handling = h;
        }
        for m in &a.multiple_services_credit_control {
            if let Some(rg) = m.rating_group {
                let kept: Vec<pb::TriggerType> = m.trigger_type().collect();
                if kept.is_empty() {
                    g.triggers.remove(&rg);
                } else {
                    g.triggers.insert(rg, kept);
                }
            }
        }
        let Some(local) = g.local.filter(|_| !g.ended) else {
            return;
        };
        let asked: Vec<u32> = r
            .multiple_services_credit_control
            .iter()
            .filter_map(|m| m.rating_group)
            .collect();
        let (grants, blocked) = grants_of(a, &asked, r.cc_request_number);
        for (rg, code) in &blocked {
            self.counters.blocked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(session = %g.session_id, subscriber = %g.subscriber, rating_group = rg,
                result_code = code, detail = %a.detail, "rating group blocked by the charging system");
        }
        if grants.is_empty() {
            return;
        }
        let n = grants.len();
        match self
            .manager
            .call(move |s, _| s.set_credits(local, grants))
            .await
        {
            Ok(Ok(())) => {
                tracing::debug!(session = %g.session_id, grants = n, number = r.cc_request_number, "CCA grants installed")
            }
            Ok(Err(e)) => {
                tracing::info!(session = %g.session_id, error = %e, "CCA for a session that ended")
            }
            Err(_) => {}
        }
    }

    /// A rating group needs credit: CCR-I (first) or CCR-U with Requested-Service-Unit.
    pub async fn credit_request(
        self: Arc<Self>,
        id: SessionId,
        rating_group: u32,
        service_identifier: Option<u32>,
    ) {
        let m = pb::MultipleServicesCreditControl {
            rating_group: Some(rating_group),
            service_identifier,
            requested_service_unit: Some(pb::ServiceUnits::default()),
            ..Default::default()
        };
        let ended = self.request(id, vec![m], None).await;
        self.ended(ended).await;
    }

    /// Used units a worker reported: CCR-U (CCR-I if it is the first) with Used-Service-Unit,
    /// asking for more unless the reason is FINAL or QHT.
    pub async fn credit_report(
        self: Arc<Self>,
        id: SessionId,
        rating_group: u32,
        service_identifier: Option<u32>,
        reason: ReportingReason,
        used: UsedUnits,
    ) {
        let more = !matches!(
            reason,
            ReportingReason::Final | ReportingReason::QuotaHoldingTime
        );
        let m = pb::MultipleServicesCreditControl {
            rating_group: Some(rating_group),
            service_identifier,
            requested_service_unit: more.then(pb::ServiceUnits::default),
            used_service_unit: vec![pb::UsedServiceUnit {
                units: Some(units_of(used)),
                reporting_reason: reason_of(reason) as i32,
            }],
            reporting_reason: Some(reason_of(reason) as i32),
            ..Default::default()
        };
        let ended = self.request(id, vec![m], None).await;
        self.ended(ended).await;
    }

    /// The session ended (`e`, as the session manager gave it back): CCR-T with the units each
    /// rating group used since its last report, as the workers' meters show them.
    pub async fn terminate(&self, e: &Entry, cause: pb::TerminationCause) {
        let Some(shared) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&e.id)
        else {
            return;
        };
        // Fresh numbers from the workers, not their last publication (up to a second old):
        // the CCR-T is the last word on the session's units, so what was counted since must be
        // in it. An idle worker answers within its poll interval; a stopped one has published
        // its last numbers already.
        let board = self.tallies.get().cloned();
        let fresh = match board {
            Some(b) => tokio::task::spawn_blocking(move || b.fresh(FINAL_READ))
                .await
                .ok(),
            None => None,
        };
        let meters: Vec<(u32, u64, u64)> = fresh
            .map(|r| {
                r.report
                    .rating_groups
                    .iter()
                    .filter(|u| u.session_id == e.id.0)
                    .map(|u| (u.rating_group, u.usage.uplink_bytes, u.usage.downlink_bytes))
                    .collect()
            })
            .unwrap_or_default();
        let mscc: Vec<pb::MultipleServicesCreditControl> = {
            let g = shared.lock().await;
            g.reported
                .iter()
                .map(|(rg, done)| {
                    let metered = meters
                        .iter()
                        .filter(|m| m.0 == *rg)
                        .map(|m| m.1 + m.2)
                        .sum::<u64>();
                    pb::MultipleServicesCreditControl {
                        rating_group: Some(*rg),
                        used_service_unit: vec![pb::UsedServiceUnit {
                            units: Some(pb::ServiceUnits {
                                cc_total_octets: Some(metered.saturating_sub(*done)),
                                ..Default::default()
                            }),
                            reporting_reason: pb::ReportingReason::Final as i32,
                        }],
                        ..Default::default()
                    }
                })
                .collect()
        };
        // Put back so the request finds it; taken out again for good below.
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.id, Arc::clone(&shared));
        // A CCR-T ends nothing more.
        let _ = self.request(e.id, mscc, Some(cause)).await;
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if shared
            .try_lock()
            .map(|g| g.owed.is_empty())
            .unwrap_or(false)
        {
            map.remove(&e.id);
        } else if let Some(s) = map.remove(&e.id) {
            self.orphans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(s);
        }
    }

    /// The Gy session of `id`, when one is open (never made here).
    fn open(&self, id: SessionId) -> Option<Shared> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Origin-Host of the gateway's requests.
    pub fn origin_host(&self) -> &str {
        &self.origin_host
    }

    /// The gateway's sessions with a Gy session open.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Sends again, every `retry_max_backoff` (at least a second), what is owed: sessions of
    /// before a restart (closed with a CCR-T once their reports are answered) and live
    /// sessions whose requests wait.
    pub async fn resend_loop(self: Arc<Self>) {
        let every = self.settings.retry_max_backoff.max(Duration::from_secs(1));
        loop {
            let orphans: Vec<Shared> = self
                .orphans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for o in orphans {
                let mut g = o.lock().await;
                if !self.flush(&mut g).await {
                    continue;
                }
                let closed = g.owed.is_empty();
                if closed {
                    self.orphans
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|x| !Arc::ptr_eq(x, &o));
                }
            }
            let live: Vec<Shared> = self
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for s in live {
                if let Ok(mut g) = s.try_lock() {
                    if !g.owed.is_empty() {
                        self.flush(&mut g).await;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Why the Gy client cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GyError {
    #[error("[control] charging_system: {0}")]
    Endpoint(crate::proto::tls::TlsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}
