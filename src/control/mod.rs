//! The control plane of `weir run`: the session manager (the single writer of policy), the
//! `weir.v1.Gateway` server (Gx RAR/ASR and the operator API, with reflection and health), and
//! the `weir.v1.PolicyEngine` client (Gx CCR-I/U/T) driven by the data path's events.
//!
//! It runs on a tokio runtime of its own, beside the workers; it never blocks a worker (the
//! workers only send on a bounded channel and read the snapshot it publishes) and it never
//! touches packets.

pub mod gx;
pub mod manager;
pub mod server;
pub mod sessions;

pub use manager::Manager;
pub use sessions::{Entry, Origin, Refused, Sessions, Update};

use crate::dataplane::report::Board;
use crate::packet::Event;
use crate::policy::{Config, PolicySnapshot};
use crate::time::Timestamp;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
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
    #[error("[control] tls is configured but serving TLS is not available in this build")]
    Tls,
    #[error("policy engine endpoint '{0}' is not usable")]
    Endpoint(String),
}

/// The running control plane.
pub struct Control {
    runtime: tokio::runtime::Runtime,
    manager: Manager,
    gx: Option<Arc<gx::Gx>>,
    events: crossbeam_channel::Sender<Event>,
    local_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the control plane for `config`: the session manager with the file's sessions, whose
/// first snapshot goes into `policy`; the Gateway server on `control.listen`; and, with a
/// policy engine, the Gx client reading the data path's events.
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
    let listener = match settings.listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ControlError::Listen { addr, source })?;
            Some(l)
        }
        None => None,
    };
    let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let sessions = Sessions::new(config, Timestamp::now());
    let (manager, _task) = {
        let _guard = runtime.enter();
        Manager::start(sessions, policy, manager::BATCH_WINDOW)
    };
    let success_action = config.gateway.redirect.success_action;
    let gx = match &settings.policy_engine {
        Some(endpoint) => {
            let mut s = settings.clone();
            // Port 0 asks for any port: the policy engine needs the one bound.
            if s.advertise.is_none() {
                if let Some(a) = local_addr {
                    s.advertise = Some(format!("http://{a}"));
                }
            }
            let _guard = runtime.enter();
            Some(Arc::new(
                gx::Gx::new(endpoint, s, manager.clone(), Arc::clone(&tallies))
                    .map_err(|_| ControlError::Endpoint(endpoint.clone()))?,
            ))
        }
        None => None,
    };
    let (events, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
    gx::spawn_event_pump(
        rx,
        runtime.handle().clone(),
        manager.clone(),
        gx.clone(),
        success_action,
    )
    .map_err(ControlError::Runtime)?;
    if let Some(g) = &gx {
        runtime.spawn(Arc::clone(g).idle_sweep());
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match listener {
        Some(l) => {
            let svc =
                server::GatewayService::new(manager.clone(), Arc::clone(&tallies), gx.clone());
            let tls = settings.tls.clone();
            let routes = runtime.block_on(server::routes(svc))?;
            if tls.is_some() {
                return Err(ControlError::Tls);
            }
            tracing::info!(addr = ?local_addr, "weir.v1.Gateway listening");
            Some(runtime.spawn(async move {
                if let Err(e) = server::serve(l, routes, tls.as_ref(), async {
                    let _ = stopped.await;
                })
                .await
                {
                    tracing::error!(error = %e, "weir.v1.Gateway server stopped");
                }
            }))
        }
        None => None,
    };
    Ok(Control {
        runtime,
        manager,
        gx,
        events,
        local_addr,
        stop: Some(stop),
        server,
    })
}

impl Control {
    /// Where the data path sends its events.
    pub fn events(&self) -> crossbeam_channel::Sender<Event> {
        self.events.clone()
    }

    /// Where weir.v1.Gateway is served, if it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// Runs a future on the control plane's runtime (for the command line and tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// SIGHUP: applies the re-read file through the session manager (file sessions replaced,
    /// the policy engine's and the operator's kept). Waits until it is published.
    pub fn reload(&self, config: Config) {
        let m = self.manager.clone();
        let done = self.runtime.block_on(async move {
            m.call(move |s, now| {
                s.reload(&config, now);
            })
            .await
        });
        if done.is_err() {
            tracing::warn!("reload: the session manager has stopped");
        }
    }

    /// Stops: the server first, then CCR-T for every session from the policy engine, each
    /// given until `deadline` (best effort: the policy engine cleans up stale sessions itself).
    pub fn stop(mut self, deadline: Duration) {
        if let Some(s) = self.stop.take() {
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
        if let Some(server) = self.server.take() {
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
