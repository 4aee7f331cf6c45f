//! The control plane of `weir run`: the session manager (the single writer of policy), the
//! `weir.v1.Gateway` server (Gx RAR/ASR and the operator API, with reflection and health), and
//! the `weir.v1.PolicyEngine` client (Gx CCR-I/U/T) driven by the data path's events.
//!
//! It runs on a tokio runtime of its own, beside the workers; it never blocks a worker (the
//! workers only send on a bounded channel and read the snapshot it publishes) and it never
//! touches packets.

mod bearer;
pub mod gx;
pub mod gy;
mod index;
pub mod manager;
pub mod server;
pub mod sessions;
mod update;

pub use manager::Manager;
pub use sessions::{Entry, Origin, Refused, Sessions, Update};

use crate::dataplane::report::Board;
use crate::packet::Event;
use crate::policy::{Config, PolicySnapshot};
use crate::time::Timestamp;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Where the workers' published tallies are read from, once the data path is up.
pub type Tallies = Arc<OnceLock<Arc<Board>>>;

/// Events the data path may queue for the control plane before a worker has to coalesce or
/// count them.
pub const EVENT_QUEUE: usize = 4096;

/// Why the control plane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot start the control plane's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen for weir.v1.Gateway on {addr}: {source} (set listen in [control], or \"\" to turn the server off)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Reflection(#[from] crate::proto::ReflectionError),
    #[error("[control] tls: {0}")]
    Tls(crate::proto::tls::TlsError),
    #[error("[control] policy_engine: {0}")]
    Endpoint(crate::proto::tls::TlsError),
    #[error(transparent)]
    Gy(#[from] gy::GyError),
}

/// The running control plane.
pub struct Control {
    runtime: tokio::runtime::Runtime,
    manager: Manager,
    gx: Option<Arc<gx::Gx>>,
    gy: Option<Arc<gy::Gy>>,
    events: crossbeam_channel::Sender<Event>,
    settings: crate::policy::ControlSettings,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
    metrics: crate::metrics::ControlMetrics,
    tallies: Tallies,
    local_addr: OnceLock<SocketAddr>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Starts the control plane for `config`: the session manager with the file's sessions, whose
/// first snapshot goes into `policy`, and, with a policy engine, the Gx client reading the data
/// path's events. The Gateway server starts with [`Control::listen`].
pub fn start(
    config: &Config,
    policy: Arc<ArcSwap<PolicySnapshot>>,
    tallies: Tallies,
) -> Result<Control, ControlError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-control")
        .enable_all()
        .build()
        .map_err(ControlError::Runtime)?;
    let settings = config.control.clone();
    // Certificate files are read now, so a bad one stops `weir run` before it forwards.
    let server_tls = settings
        .tls
        .as_ref()
        .map(crate::proto::tls::server_tls)
        .transpose()
        .map_err(ControlError::Tls)?;
    let metrics = crate::metrics::ControlMetrics::new();
    let sessions = Sessions::new(config, Timestamp::now());
    let (manager, _task) = {
        let _guard = runtime.enter();
        Manager::start(sessions, policy, manager::BATCH_WINDOW, metrics.clone())
    };
    let success_action = config.gateway.redirect.success_action;
    let gy = match &settings.charging_system {
        Some(endpoint) => {
            let _guard = runtime.enter();
            Some(Arc::new(gy::Gy::new(
                endpoint,
                &settings,
                manager.clone(),
                Arc::clone(&tallies),
            )?))
        }
        None => None,
    };
    let gx = match &settings.policy_engine {
        Some(endpoint) => {
            let _guard = runtime.enter();
            Some(Arc::new(
                gx::Gx::new(
                    endpoint,
                    settings.clone(),
                    manager.clone(),
                    Arc::clone(&tallies),
                    metrics.clone(),
                    gy.clone(),
                )
                .map_err(ControlError::Endpoint)?,
            ))
        }
        None => None,
    };
    if let (Some(gy), Some(gx)) = (&gy, &gx) {
        gy.set_gx(gx);
    }
    let (events, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
    gx::spawn_event_pump(
        rx,
        runtime.handle().clone(),
        manager.clone(),
        gx.clone(),
        gy.clone(),
        success_action,
    )
    .map_err(ControlError::Runtime)?;
    if let Some(g) = &gx {
        runtime.spawn(Arc::clone(g).idle_sweep());
    }
    if let Some(g) = &gy {
        runtime.spawn(Arc::clone(g).resend_loop());
    }
    Ok(Control {
        runtime,
        manager,
        gx,
        gy,
        events,
        settings,
        server_tls,
        metrics,
        tallies,
        local_addr: OnceLock::new(),
        stop: Mutex::new(None),
        server: Mutex::new(None),
    })
}

impl Control {
    /// Binds `control.listen` and serves weir.v1.Gateway there (reflection and health beside
    /// it); nothing when the server is turned off. Once bound, CCR-I gives the policy engine
    /// this address (unless `advertise` names another).
    pub fn listen(&self) -> Result<Option<SocketAddr>, ControlError> {
        let Some(addr) = self.settings.listen else {
            return Ok(None);
        };
        if let Some(a) = self.local_addr.get() {
            return Ok(Some(*a));
        }
        let l = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ControlError::Listen { addr, source })?;
        let bound = l.local_addr().unwrap_or(addr);
        let _ = self.local_addr.set(bound);
        if let Some(gx) = &self.gx {
            gx.set_reauth_endpoint(
                self.settings
                    .advertise
                    .clone()
                    .unwrap_or(format!("http://{bound}")),
            );
        }
        let svc = server::GatewayService::new(
            self.manager.clone(),
            Arc::clone(&self.tallies),
            self.gx.clone(),
            self.gy.clone(),
        );
        let routes = self.runtime.block_on(server::routes(svc))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = self.server_tls.clone();
        let metrics = self.metrics.clone();
        let task = self.runtime.spawn(async move {
            if let Err(e) = server::serve(l, routes, tls, metrics, async {
                let _ = stopped.await;
            })
            .await
            {
                tracing::error!(error = %e, "weir.v1.Gateway server stopped");
            }
        });
        tracing::info!(addr = %bound, "weir.v1.Gateway listening");
        *lock(&self.stop) = Some(stop);
        *lock(&self.server) = Some(task);
        Ok(Some(bound))
    }

    /// The control plane's request latencies and snapshot build times, for `GET /metrics`.
    pub fn metrics(&self) -> crate::metrics::ControlMetrics {
        self.metrics.clone()
    }

    /// Where the data path sends its events.
    pub fn events(&self) -> crossbeam_channel::Sender<Event> {
        self.events.clone()
    }

    /// Where weir.v1.Gateway is served, once it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// What the Gy client did (requests, answers, failures), when a charging system is set.
    pub fn gy_counters(&self) -> Option<&gy::GyCounters> {
        self.gy.as_deref().map(|g| &g.counters)
    }

    /// Runs a future on the control plane's runtime (for the command line and tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// SIGHUP: applies the re-read file through the session manager (file sessions replaced,
    /// the policy engine's and the operator's kept). Waits until it is published.
    pub fn reload(&self, config: Config) {
        (self.reloader())(config);
    }

    /// [`Control::reload`] as a function of its own, for a caller on another thread.
    pub fn reloader(&self) -> impl FnMut(Config) + Send + 'static {
        let m = self.manager.clone();
        let handle = self.runtime.handle().clone();
        move |config: Config| {
            let m = m.clone();
            let done = handle.block_on(async move {
                m.call(move |s, now| {
                    s.reload(&config, now);
                    s.len()
                })
                .await
            });
            match done {
                Ok(n) => tracing::info!(sessions = n, "policy reloaded"),
                Err(_) => tracing::warn!("reload: the session manager has stopped"),
            }
        }
    }

    /// Stops: the server first, then CCR-T for every session from the policy engine, each
    /// given until `deadline` (best effort: the policy engine cleans up stale sessions itself).
    pub fn stop(mut self, deadline: Duration) {
        if let Some(s) = lock(&self.stop).take() {
            let _ = s.send(());
        }
        if let Some(gx) = self.gx.take() {
            let m = self.manager.clone();
            self.runtime.block_on(async move {
                let ended = m
                    .call(|s, now| {
                        let ids: Vec<_> = s
                            .iter()
                            .filter(|e| e.origin == Origin::PolicyEngine)
                            .map(|e| e.id)
                            .collect();
                        ids.into_iter()
                            .filter_map(|id| {
                                s.end(id, crate::proto::v1::TerminationCause::DiameterLogout, now)
                            })
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_default();
                let n = ended.len();
                let all = futures_join(ended.into_iter().map(|e| {
                    let gx = Arc::clone(&gx);
                    async move {
                        gx.terminate_once(e, crate::proto::v1::TerminationCause::DiameterLogout)
                            .await
                    }
                }));
                if tokio::time::timeout(deadline, all).await.is_err() {
                    tracing::warn!(
                        sessions = n,
                        "stopping: not every CCR-T was answered in time"
                    );
                }
            });
        }
        // Without a policy engine the sessions stay, but their credit is handed back: CCR-T
        // to the charging system for each session it was asked for.
        if let Some(gy) = self.gy.take() {
            self.runtime.block_on(async move {
                let all = gy.live_sessions();
                let m = self.manager.clone();
                let entries = m
                    .call(move |s, _| {
                        all.into_iter()
                            .filter_map(|id| s.get(id).cloned())
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_default();
                let cause = crate::proto::v1::TerminationCause::DiameterLogout;
                let done = async {
                    for e in &entries {
                        gy.terminate(e, cause).await;
                    }
                };
                if tokio::time::timeout(deadline, done).await.is_err() {
                    tracing::warn!("stopping: not every Gy CCR-T was answered in time (owed reports stay in the journal)");
                }
            });
        }
        let server = lock(&self.server).take();
        if let Some(server) = server {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
        }
        self.runtime.shutdown_timeout(Duration::from_millis(500));
    }
}

/// Waits for every future (spawned, so they run side by side).
async fn futures_join<F>(futures: impl Iterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Handles only: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
