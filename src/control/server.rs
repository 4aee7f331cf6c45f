//! `weir.v1.Gateway`: the policy engine's RAR and ASR, and the operator API.
//!
//! Limits (a request past them gets INVALID_ARGUMENT naming the field, and changes nothing):
//! lists of at most 64 entries (rules, names, events, grants), names of at most 128 bytes,
//! Session-Id and Origin-Host of at most 256 bytes, pages of 1-1000 sessions. An unknown
//! session gets NOT_FOUND on the operator API, and DIAMETER_UNKNOWN_SESSION_ID in the answer of
//! ReAuth and AbortSession (as a Diameter peer would answer). A ReAuth installs each rule it
//! can and reports the others in the RAA's Charging-Rule-Report; the operator's CreateSession
//! is stricter: a rule that could not be installed refuses the whole request.

use super::gx::Gx;
use super::manager::Manager;
use super::sessions::{Entry, Origin, Refused, Sessions, Update};
use super::Tallies;
use crate::policy::{IpPrefix, SessionId, SubscriberId};
use crate::proto::rules::{definition_of, rule_of, Invalid};
use crate::proto::v1 as pb;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Longest Session-Id and Origin-Host accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Largest page of ListSessions, and the page when none is asked for.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

pub struct GatewayService {
    manager: Manager,
    tallies: Tallies,
    gx: Option<Arc<Gx>>,
    gy: Option<Arc<super::gy::Gy>>,
}

impl GatewayService {
    pub fn new(
        manager: Manager,
        tallies: Tallies,
        gx: Option<Arc<Gx>>,
        gy: Option<Arc<super::gy::Gy>>,
    ) -> GatewayService {
        GatewayService {
            manager,
            tallies,
            gx,
            gy,
        }
    }

    /// The session of a Session-Id; NOT_FOUND without one.
    async fn by_session_id(&self, session_id: &str) -> Result<SessionId, Status> {
        let key = session_id.to_string();
        self.manager
            .call(move |s, _| s.by_session_id(&key))
            .await?
            .ok_or_else(|| Status::not_found(format!("no session {session_id}")))
    }

    /// CCR-T for a session that ended here, in the background.
    fn terminate(&self, entry: Entry, cause: pb::TerminationCause) {
        match (&self.gx, entry.origin) {
            (Some(gx), Origin::PolicyEngine) => {
                let gx = Arc::clone(gx);
                tokio::spawn(async move { gx.terminate(entry, cause).await });
            }
            _ => {
                if let Some(gy) = &self.gy {
                    let gy = Arc::clone(gy);
                    tokio::spawn(async move { gy.terminate(&entry, cause).await });
                }
            }
        }
    }

    /// A session's view, with its usage from the workers' last published tallies.
    fn with_usage(
        &self,
        mut view: pb::GatewaySession,
        id: SessionId,
        grants: &[crate::policy::MonitoringGrant],
    ) -> pb::GatewaySession {
        let Some(board) = self.tallies.get() else {
            return view;
        };
        let report = board.current().report;
        let usage = |u: &crate::charging::Usage| pb::Usage {
            uplink_octets: u.uplink_bytes,
            downlink_octets: u.downlink_bytes,
            uplink_packets: u.uplink_packets,
            downlink_packets: u.downlink_packets,
        };
        view.rating_group_usage = report
            .rating_groups
            .iter()
            .filter(|r| r.session_id == id.0)
            .map(|r| pb::RatingGroupUsage {
                rating_group: r.rating_group,
                usage: Some(usage(&r.usage)),
            })
            .collect();
        for m in report
            .monitoring_keys
            .iter()
            .filter(|m| m.session_id == id.0)
        {
            if let Some(v) = view
                .monitoring_key_usage
                .iter_mut()
                .find(|v| v.monitoring_key == m.monitoring_key)
            {
                v.usage = Some(usage(&m.usage));
            } else {
                let g = grants
                    .iter()
                    .find(|g| *g.monitoring_key == *m.monitoring_key);
                view.monitoring_key_usage.push(pb::MonitoringKeyUsage {
                    monitoring_key: m.monitoring_key.clone(),
                    usage: Some(usage(&m.usage)),
                    granted_service_unit: g.map(grant_unit),
                });
            }
        }
        view
    }
}

fn grant_unit(g: &crate::policy::MonitoringGrant) -> pb::ServiceUnit {
    pb::ServiceUnit {
        cc_total_octets: g.total,
        cc_input_octets: g.uplink,
        cc_output_octets: g.downlink,
    }
}

/// The wire form of a session (usage left to the caller).
pub fn view(s: &Sessions, e: &Entry) -> pb::GatewaySession {
    let redirect = e.redirect(s.predefined());
    pb::GatewaySession {
        session_id: e.session_id.clone(),
        subscriber_id: e.config.subscriber.to_string(),
        framed_ip_address: e.config.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        framed_ipv6_prefix: e.config.ipv6.map(|p| p.to_string()).unwrap_or_default(),
        charging_rule_definition: e.config.rules.iter().map(|r| definition_of(r)).collect(),
        charging_rule_name: e.config.predefined.clone(),
        event_trigger: e.event_triggers.clone(),
        redirect: Some(match redirect {
            Some((name, address)) => pb::RedirectState {
                redirected: true,
                cause: pb::RedirectCause::PccRule as i32,
                source: name,
                redirect_server_address: address,
            },
            None => pb::RedirectState::default(),
        }),
        rating_group_usage: Vec::new(),
        monitoring_key_usage: e
            .config
            .monitoring
            .iter()
            .map(|g| pb::MonitoringKeyUsage {
                monitoring_key: g.monitoring_key.to_string(),
                usage: Some(pb::Usage::default()),
                granted_service_unit: Some(grant_unit(g)),
            })
            .collect(),
        origin: e.origin.as_str().to_string(),
        started_at: e.started_at,
    }
}

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

fn subscriber(text: &str, field: &str) -> Result<SubscriberId, Invalid> {
    if text.is_empty() {
        return Err(Invalid::new(field, "required"));
    }
    SubscriberId::parse(text).map_err(|m| Invalid::new(field, m))
}

/// Finds the session a selector names.
fn select(s: &Sessions, sel: Option<&pb::SessionSelector>) -> Result<SessionId, Refused> {
    use pb::session_selector::Key;
    let key = sel
        .and_then(|s| s.key.as_ref())
        .ok_or_else(|| Invalid::new("session", "name a session_id, subscriber_id or ue_address"))?;
    let found = match key {
        Key::SessionId(id) => {
            check_id(id, "session.session_id")?;
            s.by_session_id(id)
        }
        Key::SubscriberId(text) => s.by_subscriber(&subscriber(text, "session.subscriber_id")?),
        Key::UeAddress(text) => {
            let ue: IpAddr = text.parse().map_err(|_| {
                Invalid::new(
                    "session.ue_address",
                    format!("'{text}' is not an IP address"),
                )
            })?;
            s.by_address(ue)
        }
    };
    found.ok_or_else(|| {
        Refused::NotFound(match key {
            Key::SessionId(id) => format!("no session '{id}'"),
            Key::SubscriberId(sub) => format!("no session for subscriber {sub}"),
            Key::UeAddress(ue) => format!("no session owns {ue}"),
        })
    })
}

/// Binds reflection and health beside the Gateway service.
pub async fn routes(
    svc: GatewayService,
) -> Result<tonic::service::Routes, crate::proto::ReflectionError> {
    let (routes, _health) = crate::proto::standard_routes(&["weir.v1.Gateway"]).await?;
    Ok(routes.add_service(pb::gateway_server::GatewayServer::new(svc)))
}

/// Serves `routes` on `listener` until `shutdown`. `tls` is where TLS plugs in.
pub async fn serve(
    listener: std::net::TcpListener,
    routes: tonic::service::Routes,
    tls: Option<tonic::transport::ServerTlsConfig>,
    metrics: crate::metrics::ControlMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| crate::proto::tls::error_chain(&e))?;
    }
    server
        .layer(crate::proto::timed::layer(metrics))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

fn result(code: pb::ResultCode) -> i32 {
    code as i32
}

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GatewayService {
    async fn re_auth(
        &self,
        request: Request<pb::ReAuthRequest>,
    ) -> Result<Response<pb::ReAuthAnswer>, Status> {
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        if r.origin_host.len() > MAX_ID_LEN {
            return Err(Invalid::new("origin_host", format!("at most {MAX_ID_LEN} bytes")).into());
        }
        if let Some(c) = r.session_release_cause {
            pb::SessionReleaseCause::try_from(c).map_err(|_| {
                Invalid::new(
                    "session_release_cause",
                    format!("{c} is not a Session-Release-Cause value"),
                )
            })?;
        }
        let update = Update {
            installs: r.charging_rule_install,
            removes: r.charging_rule_remove,
            event_triggers: r.event_trigger,
            monitoring: r.usage_monitoring_information,
            revalidation_time: r.revalidation_time,
        };
        update.check()?;
        let session_id = r.session_id.clone();
        let release = r.session_release_cause.is_some();
        let outcome = self
            .manager
            .call(move |s, now| {
                let id = s.by_session_id(&session_id)?;
                if release {
                    return s
                        .end(id, pb::TerminationCause::DiameterAdministrative, now)
                        .map(Err);
                }
                Some(Ok(s.apply(
                    id,
                    &update,
                    pb::RedirectLiftCause::PolicyEngine,
                    now,
                )))
            })
            .await?;
        let mut answer = pb::ReAuthAnswer {
            session_id: r.session_id.clone(),
            result_code: result(pb::ResultCode::DiameterSuccess),
            ..Default::default()
        };
        match outcome {
            None => {
                tracing::info!(session = %r.session_id, origin_host = %r.origin_host, "RAR for an unknown session");
                answer.result_code = result(pb::ResultCode::DiameterUnknownSessionId);
            }
            Some(Err(ended)) => {
                tracing::info!(session = %r.session_id, subscriber = %ended.config.subscriber, "RAR released the session");
                self.terminate(ended, pb::TerminationCause::DiameterAdministrative);
            }
            Some(Ok(applied)) => {
                let reports = applied?;
                tracing::info!(session = %r.session_id, origin_host = %r.origin_host, failed = reports.len(), "RAR applied");
                if !reports.is_empty() {
                    answer.result_code = result(pb::ResultCode::DiameterLimitedSuccess);
                    answer.experimental_result_code =
                        pb::ExperimentalResultCode::DiameterPccRuleEvent as i32;
                }
                answer.charging_rule_report = reports;
            }
        }
        Ok(Response::new(answer))
    }

    async fn report_bearer_event(
        &self,
        request: Request<pb::BearerEventReport>,
    ) -> Result<Response<pb::BearerEventAnswer>, Status> {
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        let events = super::bearer::check(&r)?;
        let id = self.by_session_id(&r.session_id).await?;
        // In a task of its own, so a client that hangs up cannot cut the exchange between the
        // policy engine's answer and the credit re-authorization.
        let (manager, gx, gy) = (self.manager.clone(), self.gx.clone(), self.gy.clone());
        let answer = tokio::spawn(async move {
            super::bearer::report(&manager, gx.as_ref(), gy.as_ref(), id, &r, &events).await
        })
        .await
        .map_err(|e| Status::internal(format!("bearer event: {e}")))?;
        Ok(Response::new(answer))
    }

    async fn credit_re_auth(
        &self,
        request: Request<pb::CreditReAuthRequest>,
    ) -> Result<Response<pb::CreditReAuthAnswer>, Status> {
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        if r.origin_host.len() > MAX_ID_LEN {
            return Err(Invalid::new("origin_host", format!("at most {MAX_ID_LEN} bytes")).into());
        }
        if r.rating_group.len() > 64 {
            return Err(Invalid::new("rating_group", "at most 64 entries").into());
        }
        for (i, rg) in r.rating_group.iter().enumerate() {
            if r.rating_group[..i].contains(rg) {
                return Err(Invalid::new(
                    format!("rating_group[{i}]"),
                    format!("rating group {rg} is listed twice"),
                )
                .into());
            }
        }
        let Some(gy) = self.gy.clone() else {
            return Err(Status::failed_precondition(
                "no charging system is configured ([control] charging_system)",
            ));
        };
        let id = self.by_session_id(&r.session_id).await?;
        let groups = gy.rating_groups(id).await;
        let named: Vec<u32> = if r.rating_group.is_empty() {
            groups
        } else {
            if let Some((i, rg)) = r
                .rating_group
                .iter()
                .enumerate()
                .find(|(_, rg)| !groups.contains(rg))
            {
                return Err(Invalid::new(
                    format!("rating_group[{i}]"),
                    format!(
                        "rating group {rg} has no credit in session {}",
                        r.session_id
                    ),
                )
                .into());
            }
            r.rating_group.clone()
        };
        tracing::info!(session = %r.session_id, rating_groups = ?named, origin = %r.origin_host, "Gy RAR: re-authorizing");
        let origin_host = gy.origin_host().to_string();
        tokio::spawn(async move { gy.reauthorize(id, named).await });
        Ok(Response::new(pb::CreditReAuthAnswer {
            session_id: r.session_id,
            result_code: pb::ResultCode::DiameterLimitedSuccess as i32,
            origin_host,
        }))
    }

    async fn abort_session(
        &self,
        request: Request<pb::AbortSessionRequest>,
    ) -> Result<Response<pb::AbortSessionAnswer>, Status> {
        let r = request.into_inner();
        check_id(&r.session_id, "session_id")?;
        if r.origin_host.len() > MAX_ID_LEN {
            return Err(Invalid::new("origin_host", format!("at most {MAX_ID_LEN} bytes")).into());
        }
        let session_id = r.session_id.clone();
        let ended = self
            .manager
            .call(move |s, now| {
                let id = s.by_session_id(&session_id)?;
                s.end(id, pb::TerminationCause::DiameterAdministrative, now)
            })
            .await?;
        let code = match ended {
            Some(e) => {
                tracing::info!(session = %r.session_id, subscriber = %e.config.subscriber, reason = %r.reason, "ASR: session ended");
                self.terminate(e, pb::TerminationCause::DiameterAdministrative);
                pb::ResultCode::DiameterSuccess
            }
            None => pb::ResultCode::DiameterUnknownSessionId,
        };
        Ok(Response::new(pb::AbortSessionAnswer {
            session_id: r.session_id,
            result_code: result(code),
        }))
    }

    async fn create_session(
        &self,
        request: Request<pb::GatewayCreateSessionRequest>,
    ) -> Result<Response<pb::GatewaySession>, Status> {
        let r = request.into_inner();
        let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
        let ipv4 = if r.framed_ip_address.is_empty() {
            None
        } else {
            Some(r.framed_ip_address.parse::<Ipv4Addr>().map_err(|_| {
                Invalid::new(
                    "framed_ip_address",
                    format!("'{}' is not an IPv4 address", r.framed_ip_address),
                )
            })?)
        };
        let ipv6 = if r.framed_ipv6_prefix.is_empty() {
            None
        } else {
            match IpPrefix::parse(&r.framed_ipv6_prefix, true) {
                Ok(p) if p.addr.is_ipv6() => Some(p),
                _ => {
                    return Err(Invalid::new(
                        "framed_ipv6_prefix",
                        format!("'{}' is not an IPv6 prefix", r.framed_ipv6_prefix),
                    )
                    .into())
                }
            }
        };
        let update = Update {
            installs: r.charging_rule_install,
            ..Default::default()
        };
        update.check()?;
        // The operator gets every mistake as INVALID_ARGUMENT, before anything changes.
        let policy = self.manager.policy();
        for (i, install) in update.installs.iter().enumerate() {
            for (j, n) in install.charging_rule_name.iter().enumerate() {
                if policy.predefined_rule(n).is_none() {
                    return Err(Invalid::new(
                        format!("charging_rule_install[{i}].charging_rule_name[{j}]"),
                        format!("'{n}' is not a predefined rule of this gateway"),
                    )
                    .into());
                }
            }
            for (j, d) in install.charging_rule_definition.iter().enumerate() {
                rule_of(
                    d,
                    &format!("charging_rule_install[{i}].charging_rule_definition[{j}]"),
                )?;
            }
        }
        let session = self
            .manager
            .call(move |s, now| -> Result<_, Refused> {
                let id = s.create(sub, ipv4, ipv6, Origin::Operator, None, now)?;
                let reports = s.apply(id, &update, pb::RedirectLiftCause::Operator, now)?;
                if let Some(first) = reports.first() {
                    s.end(id, pb::TerminationCause::DiameterAdministrative, now);
                    return Err(Invalid::new(
                        "charging_rule_install",
                        format!("{:?}: {}", first.charging_rule_name, first.detail),
                    )
                    .into());
                }
                let e = s
                    .get(id)
                    .ok_or_else(|| Refused::NotFound("the session ended".into()))?;
                Ok(view(s, e))
            })
            .await??;
        tracing::info!(session = %session.session_id, subscriber = %session.subscriber_id, "operator created a session");
        Ok(Response::new(session))
    }

    async fn delete_session(
        &self,
        request: Request<pb::GatewayDeleteSessionRequest>,
    ) -> Result<Response<pb::GatewayDeleteSessionResponse>, Status> {
        let r = request.into_inner();
        let ended = self
            .manager
            .call(move |s, now| -> Result<Entry, Refused> {
                let id = select(s, r.session.as_ref())?;
                s.end(id, pb::TerminationCause::DiameterAdministrative, now)
                    .ok_or_else(|| Refused::NotFound("the session ended".into()))
            })
            .await??;
        tracing::info!(session = %ended.session_id, subscriber = %ended.config.subscriber, "operator ended a session");
        let session_id = ended.session_id.clone();
        self.terminate(ended, pb::TerminationCause::DiameterAdministrative);
        Ok(Response::new(pb::GatewayDeleteSessionResponse {
            session_id,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GatewayGetSessionRequest>,
    ) -> Result<Response<pb::GatewaySession>, Status> {
        let r = request.into_inner();
        let (id, v, grants) = self
            .manager
            .call(move |s, _| -> Result<_, Refused> {
                let id = select(s, r.session.as_ref())?;
                let e = s
                    .get(id)
                    .ok_or_else(|| Refused::NotFound("the session ended".into()))?;
                Ok((id, view(s, e), e.config.monitoring.clone()))
            })
            .await??;
        Ok(Response::new(self.with_usage(v, id, &grants)))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::GatewayListSessionsRequest>,
    ) -> Result<Response<pb::GatewayListSessionsResponse>, Status> {
        let r = request.into_inner();
        let size = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n <= MAX_PAGE => n,
            n => {
                return Err(
                    Invalid::new("page_size", format!("at most {MAX_PAGE}, got {n}")).into(),
                )
            }
        } as usize;
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(
                SubscriberId::parse(&r.page_token)
                    .map_err(|_| Invalid::new("page_token", "not a token from a previous answer"))?
                    .to_string(),
            )
        };
        let (page, more) = self
            .manager
            .call(move |s, _| {
                let mut all: Vec<(String, &Entry)> = s
                    .iter()
                    .map(|e| (e.config.subscriber.to_string(), e))
                    .collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                let rest: Vec<_> = all
                    .into_iter()
                    .filter(|(sub, _)| after.as_ref().is_none_or(|a| sub > a))
                    .collect();
                let more = rest.len() > size;
                let page: Vec<_> = rest
                    .into_iter()
                    .take(size)
                    .map(|(_, e)| (e.id, view(s, e), e.config.monitoring.clone()))
                    .collect();
                (page, more)
            })
            .await?;
        let next_page_token = if more {
            page.last()
                .map(|(_, v, _)| v.subscriber_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::GatewayListSessionsResponse {
            sessions: page
                .into_iter()
                .map(|(id, v, g)| self.with_usage(v, id, &g))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GatewayStats>, Status> {
        let (sessions, redirected) = self
            .manager
            .call(|s, _| {
                let redirected = s
                    .iter()
                    .filter(|e| e.redirect(s.predefined()).is_some())
                    .count();
                (s.len() as u64, redirected as u64)
            })
            .await?;
        let mut stats = pb::GatewayStats {
            sessions,
            redirected_sessions: redirected,
            snapshot_generation: self.manager.policy().version,
            ..Default::default()
        };
        if let Some(board) = self.tallies.get() {
            let r = board.current();
            stats.workers = r
                .workers
                .iter()
                .map(|w| pb::WorkerStats {
                    worker: w.worker as u32,
                    frames_in: w.io.rx_frames,
                    frames_out: w.io.tx_frames,
                    drops: w
                        .drop_reasons
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                    flows: w.flows,
                })
                .collect();
            stats
                .events_dropped
                .insert("recharge_success".into(), r.report.redirect.events_dropped);
        }
        Ok(Response::new(stats))
    }

    type WatchEventsStream = ReceiverStream<Result<pb::GatewayEvent, Status>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let r = request.into_inner();
        let only = if r.subscriber_id.is_empty() {
            None
        } else {
            Some(subscriber(&r.subscriber_id, "subscriber_id")?.to_string())
        };
        let mut events = self.manager.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if only.as_ref().is_some_and(|s| *s != e.subscriber_id) {
                            continue;
                        }
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "a WatchEvents client fell behind; events skipped"
                        );
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
