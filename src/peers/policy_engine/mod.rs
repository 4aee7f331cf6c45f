//! `weir policy-engine`: a reference policy engine (PCRF) for Weir's gateways, serving
//! `weir.v1.PolicyEngine` (Gx: CCR-I/U/T from gateways) and `weir.v1.Admin` (operators), with
//! gRPC reflection and health.
//!
//! Accounts live in SQLite or PostgreSQL ([`store`]). A subscriber at balance zero or less gets the configured
//! redirect rule (Redirect-Information to the recharge portal) instead of the plan. A recharge
//! reaches the balance only after the configured billing delay, as in a real billing chain; a
//! CCR-U carrying a recharge-success token that verifies (the portal's key and format) lifts the
//! redirect at once — the delay this product removes. When billing catches up, or an operator
//! changes a balance, sessions whose redirect state changes get a RAR at the gateway address
//! given in CCR-I.
//!
//! What it must never do: crash on a peer's failure, change anything on a request it refuses,
//! or apply a credit twice.

mod admin;
pub mod config;
pub mod db;
pub mod events;
pub(crate) mod gx;
mod pool;
pub mod push;
pub mod store;

pub use config::PolicyEngineConfig;

use crate::peers::charging_system::ChargingSystem;
use crate::proto::v1 as pb;
use push::{Pusher, RarJob, Undo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{AccountRow, RedirectState, SessionRow, Store, StoreError};
use tonic::Status;

/// Why the policy engine cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PolicyEngineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Reflection(#[from] crate::proto::ReflectionError),
    #[error(transparent)]
    Tls(#[from] crate::proto::tls::TlsError),
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Reads and validates a configuration file; every error is listed with its location.
pub fn load_config(path: &Path) -> Result<PolicyEngineConfig, PolicyEngineError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyEngineError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    PolicyEngineConfig::from_toml_str(&text, &path.display().to_string(), dir).map_err(|errors| {
        let mut msg = String::new();
        for e in &errors.0 {
            msg.push_str(&e.to_string());
            msg.push('\n');
        }
        msg.push_str(&format!("{}: {} error(s)", path.display(), errors.0.len()));
        PolicyEngineError::Config(msg)
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The first whole second at least `delay` from now, so a credit never lands early.
fn due_after(delay: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (now + delay).as_secs_f64().ceil() as u64
}

/// A plan ready to install.
#[derive(Clone, Debug, Default)]
struct Plan {
    installs: Vec<pb::ChargingRuleInstall>,
    names: Vec<String>,
    grants: Vec<pb::UsageMonitoringInformation>,
}

/// Rule changes for one session.
#[derive(Clone, Debug, Default)]
struct Change {
    installs: Vec<pb::ChargingRuleInstall>,
    removes: Vec<pb::ChargingRuleRemove>,
    installed: Vec<String>,
    grants: Vec<pb::UsageMonitoringInformation>,
}

fn grant_of(g: &config::Grant) -> pb::UsageMonitoringInformation {
    pb::UsageMonitoringInformation {
        monitoring_key: g.monitoring_key.clone(),
        granted_service_unit: Some(pb::ServiceUnit {
            cc_total_octets: g.total_octets,
            cc_input_octets: g.input_octets,
            cc_output_octets: g.output_octets,
        }),
        used_service_unit: None,
        usage_monitoring_level: pb::UsageMonitoringLevel::PccRuleLevel as i32,
    }
}

/// The wire form of a configured plan, stored with each account opened on it.
fn stored_plan(p: &config::PlanConfig) -> pb::Plan {
    pb::Plan {
        name: p.name.clone(),
        charging_rule_name: p.predefined.clone(),
        charging_rule_definition: p
            .rules
            .iter()
            .map(crate::proto::rules::definition_of)
            .collect(),
        usage_monitoring_information: p.usage_monitoring.iter().map(grant_of).collect(),
        recharge_amount: p.recharge.clone(),
        currency: p.currency.clone(),
        minor_units: p.minor_units,
    }
}

/// State shared by both services and the billing task.
pub(crate) struct Core {
    cfg: PolicyEngineConfig,
    store: Arc<Store>,
    pub(crate) pusher: Pusher,
    redirect_definition: pb::ChargingRuleDefinition,
}

/// A store error as the client sees it; the details go to the log.
pub(crate) fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "store failure");
    Status::internal(format!("store: {e}"))
}

impl Core {
    fn new(
        cfg: PolicyEngineConfig,
        store: Arc<Store>,
        gateway_tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Core {
        let redirect_definition = crate::proto::rules::definition_of(&cfg.redirect_rule);
        let pusher = Pusher {
            reauth: cfg.reauth,
            store: store.clone(),
            tls: gateway_tls,
        };
        Core {
            cfg,
            store,
            pusher,
            redirect_definition,
        }
    }

    /// The configuration the engine runs with.
    pub(crate) fn cfg(&self) -> &PolicyEngineConfig {
        &self.cfg
    }

    /// The redirect rule, as CCAs and RARs carry it.
    pub(crate) fn redirect_definition(&self) -> &pb::ChargingRuleDefinition {
        &self.redirect_definition
    }

    /// Runs a store call off the async threads.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    fn redirect_name(&self) -> &str {
        &self.cfg.redirect_rule.name
    }

    /// The plan in force for an account: the configured plan of its name (so a change to the
    /// file reaches every account on it), else the rules stored with the account.
    fn plan_of(&self, account: &AccountRow) -> Plan {
        if let Some(p) = self.cfg.plan(&account.plan_name) {
            let mut names = p.predefined.clone();
            names.extend(p.rules.iter().map(|r| r.name.clone()));
            return Plan {
                installs: crate::proto::rules::installs_of(&p.predefined, &p.rules),
                names,
                grants: p.usage_monitoring.iter().map(grant_of).collect(),
            };
        }
        let stored = &account.plan;
        let mut names = stored.charging_rule_name.clone();
        names.extend(
            stored
                .charging_rule_definition
                .iter()
                .map(|d| d.charging_rule_name.clone()),
        );
        let install = pb::ChargingRuleInstall {
            charging_rule_name: stored.charging_rule_name.clone(),
            charging_rule_definition: stored.charging_rule_definition.clone(),
            ..Default::default()
        };
        let empty =
            install.charging_rule_name.is_empty() && install.charging_rule_definition.is_empty();
        Plan {
            installs: if empty { Vec::new() } else { vec![install] },
            names,
            grants: stored.usage_monitoring_information.clone(),
        }
    }

    /// The rules a new session gets.
    fn initial(&self, plan: &Plan, redirected: bool) -> Change {
        if redirected {
            self.enter_redirect(&[])
        } else {
            Change {
                installs: plan.installs.clone(),
                removes: Vec::new(),
                installed: plan.names.clone(),
                grants: plan.grants.clone(),
            }
        }
    }

    /// From the plan (whatever is installed) into the redirect.
    fn enter_redirect(&self, installed: &[String]) -> Change {
        let removed: Vec<String> = installed
            .iter()
            .filter(|n| *n != self.redirect_name())
            .cloned()
            .collect();
        Change {
            installs: vec![pb::ChargingRuleInstall {
                charging_rule_definition: vec![self.redirect_definition.clone()],
                ..Default::default()
            }],
            removes: if removed.is_empty() {
                Vec::new()
            } else {
                vec![pb::ChargingRuleRemove {
                    charging_rule_name: removed,
                    charging_rule_base_name: Vec::new(),
                }]
            },
            installed: vec![self.redirect_name().to_string()],
            grants: Vec::new(),
        }
    }

    /// From the redirect back to the plan.
    fn leave_redirect(&self, plan: &Plan) -> Change {
        Change {
            installs: plan.installs.clone(),
            removes: vec![pb::ChargingRuleRemove {
                charging_rule_name: vec![self.redirect_name().to_string()],
                charging_rule_base_name: Vec::new(),
            }],
            installed: plan.names.clone(),
            grants: plan.grants.clone(),
        }
    }

    /// Where a session should be, given its account: redirected when out of credit (balance
    /// <= 0 and no bucket left) unless a verified recharge success lifted it while its credit
    /// is still pending, and redirected while its account's shared quota group is restricted
    /// (the charging system's groups). `lifted` also marks a session the charging system alone
    /// redirected (a rating group's Final-Unit-Action): its pending credit is then what the
    /// charging system grants from.
    fn wanted(account: &AccountRow, s: &SessionRow, restricted: bool) -> RedirectState {
        let lifted = s.lifted && !account.pending.is_empty() && account.balance <= 0;
        RedirectState {
            redirected: restricted || (account.out_of_credit() && !lifted),
            lifted: lifted && !restricted,
        }
    }

    /// Whether the account's shared quota group is restricted.
    pub(crate) async fn group_restricted(&self, sub: &str) -> Result<bool, StoreError> {
        let sub = sub.to_string();
        self.db(move |s| crate::peers::charging_system::groups::restricted(&mut s.conn(), &sub))
            .await
    }

    /// Moves one session to where its account says it should be; returns the rule change when
    /// its redirect state changed (the store records it first, by compare-and-set, so only
    /// one process acts on it).
    async fn settle(
        &self,
        account: &AccountRow,
        s: &SessionRow,
    ) -> Result<Option<(Change, Undo)>, StoreError> {
        let from = RedirectState {
            redirected: s.redirected,
            lifted: s.lifted,
        };
        let restricted = self.group_restricted(&account.subscriber_id).await?;
        let to = Self::wanted(account, s, restricted);
        if to == from {
            return Ok(None);
        }
        let change = match (from.redirected, to.redirected) {
            (false, true) => Some(self.enter_redirect(&s.installed)),
            (true, false) => Some(self.leave_redirect(&self.plan_of(account))),
            _ => None,
        };
        let installed = change
            .as_ref()
            .map_or_else(|| s.installed.clone(), |c| c.installed.clone());
        let id = s.session_id.clone();
        let moved = self
            .db(move |st| st.swap_redirect_state(&id, from, to, &installed))
            .await?;
        if !moved {
            return Ok(None);
        }
        Ok(change.map(|c| {
            (
                c,
                Undo {
                    from,
                    to,
                    installed_before: s.installed.clone(),
                },
            )
        }))
    }

    fn rar(&self, session_id: &str, change: &Change) -> pb::ReAuthRequest {
        pb::ReAuthRequest {
            session_id: session_id.to_string(),
            origin_host: self.cfg.origin_host.clone(),
            re_auth_request_type: pb::ReAuthRequestType::AuthorizeOnly as i32,
            charging_rule_install: change.installs.clone(),
            charging_rule_remove: change.removes.clone(),
            event_trigger: Vec::new(),
            usage_monitoring_information: change.grants.clone(),
            revalidation_time: 0,
            session_release_cause: None,
        }
    }

    /// Brings every session of `sub` in line with its account, pushing a RAR to each one whose
    /// redirect state changed.
    pub(crate) async fn reconcile(&self, sub: &str) -> Result<(), StoreError> {
        let id = sub.to_string();
        let Some(account) = self.db(move |s| s.account(&id)).await? else {
            return Ok(());
        };
        let id = sub.to_string();
        let sessions = self
            .db(move |s| s.sessions(&id, "", usize::MAX >> 1))
            .await?;
        for s in sessions {
            let Some((change, undo)) = self.settle(&account, &s).await? else {
                continue;
            };
            tracing::info!(session = %s.session_id, subscriber = %sub, balance = account.balance,
                redirected = undo.to.redirected, "redirect state changed");
            if s.reauth_endpoint.is_empty() {
                tracing::warn!(session = %s.session_id, "no reauth_endpoint: the change waits for the next CCR-U");
                continue;
            }
            self.pusher.spawn(RarJob {
                endpoint: s.reauth_endpoint.clone(),
                request: self.rar(&s.session_id, &change),
                undo: Some(undo),
            });
        }
        Ok(())
    }

    /// Reconciles in the background (after an admin change), logging failures.
    fn reconcile_later(self: &Arc<Self>, sub: String) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.reconcile(&sub).await {
                tracing::error!(subscriber = %sub, error = %e, "cannot reconcile sessions");
            }
        });
    }

    /// Applies due credits until the server stops.
    async fn billing(self: Arc<Self>) {
        loop {
            match self.db(|s| s.apply_due_credits(now_secs())).await {
                Ok(subs) => {
                    for sub in subs {
                        tracing::info!(subscriber = %sub, "billing applied a credit");
                        if let Err(e) = self.reconcile(&sub).await {
                            tracing::error!(subscriber = %sub, error = %e, "cannot reconcile sessions");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "billing: cannot apply due credits"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Opens the configured `[[account]]`s that are missing.
    fn seed(&self) -> Result<(), StoreError> {
        for a in &self.cfg.accounts {
            let Some(plan) = self.cfg.plan(&a.plan) else {
                continue;
            };
            let sub = a.subscriber.to_string();
            match self.store.create_account(
                &sub,
                a.balance,
                &plan.name,
                &stored_plan(plan),
                now_secs(),
            ) {
                Ok(_) => {
                    tracing::info!(subscriber = %sub, balance = a.balance, "account created from the configuration")
                }
                Err(StoreError::Exists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The server's and the RAR client's TLS configurations, from their files (`None`: plaintext).
fn tls_of(
    cfg: &PolicyEngineConfig,
) -> Result<
    (
        Option<tonic::transport::ServerTlsConfig>,
        Option<tonic::transport::ClientTlsConfig>,
    ),
    PolicyEngineError,
> {
    let server = cfg
        .tls
        .as_ref()
        .map(crate::proto::tls::server_tls)
        .transpose()?;
    let client = cfg
        .gateway_tls
        .as_ref()
        .map(crate::proto::tls::client_tls)
        .transpose()?;
    Ok((server, client))
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: PolicyEngineConfig,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), PolicyEngineError> {
    let (server_tls, gateway_tls) = tls_of(&cfg)?;
    // Opening and seeding block (PostgreSQL's client runs its own runtime): off the async
    // threads.
    let database = cfg.database.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&database))
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
    let core = Arc::new(Core::new(cfg, Arc::new(store), gateway_tls));
    {
        let core = core.clone();
        tokio::task::spawn_blocking(move || core.seed())
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
    }
    let (routes, _health) = crate::proto::standard_routes(&[
        "weir.v1.PolicyEngine",
        "weir.v1.Admin",
        "weir.v1.ChargingSystem",
    ])
    .await?;
    let charging = ChargingSystem::new(core.clone());
    let routes = routes
        .add_service(pb::policy_engine_server::PolicyEngineServer::new(gx::Gx(
            core.clone(),
        )))
        .add_service(pb::admin_server::AdminServer::new(admin::AdminService(
            core.clone(),
        )))
        .add_service(pb::charging_system_server::ChargingSystemServer::new(
            charging.clone(),
        ));
    let billing = tokio::spawn(core.clone().billing());
    let expiry = tokio::spawn(charging.expiry());
    let timing = crate::metrics::ControlMetrics::new();
    let metrics_server = match core.cfg.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| PolicyEngineError::Listen { addr, source })?;
            tracing::info!(%addr, "metrics at GET /metrics");
            Some(tokio::spawn(crate::proto::timed::serve(l, timing.clone())))
        }
        None => None,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| PolicyEngineError::Serve(e.to_string()))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| PolicyEngineError::Serve(e.to_string()))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = server_tls {
        server = server
            .tls_config(tls)
            .map_err(|e| PolicyEngineError::Serve(crate::proto::tls::error_chain(&e)))?;
    }
    let served = server
        .layer(crate::proto::timed::layer(timing))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    billing.abort();
    expiry.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    served.map_err(|e| PolicyEngineError::Serve(e.to_string()))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `weir policy-engine`: binds, calls `on_ready` with the address, serves until SIGINT or
/// SIGTERM.
pub fn run(
    cfg: PolicyEngineConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), PolicyEngineError> {
    // The TLS files are checked before anything is bound or announced.
    tls_of(&cfg)?;
    let addr = cfg.listen;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|source| PolicyEngineError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| PolicyEngineError::Listen { addr, source })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| PolicyEngineError::Serve(e.to_string()))?;
    tracing::info!(addr = %bound, database = %cfg.database,
        billing_delay = ?cfg.billing_delay, tls = cfg.tls.is_some(),
        client_certificates = cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "policy engine listening");
    on_ready(bound);
    runtime.block_on(serve(cfg, listener, shutdown_signal()))
}
