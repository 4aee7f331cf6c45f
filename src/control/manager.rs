//! The task that owns [`Sessions`]: requests reach it as closures over a bounded queue, each
//! applied in turn; the requests that queued up while the previous snapshot was being built (and
//! those arriving within an optional linger window) are published as one snapshot — a group
//! commit, so a lone request waits for no timer and a burst costs few builds — and each caller gets its answer only after the snapshot carrying its change is
//! in the workers' hands. Events go out on a broadcast channel, which never waits for a watcher.

use super::sessions::Sessions;
use crate::policy::PolicySnapshot;
use crate::proto::v1 as pb;
use crate::time::Timestamp;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long the manager lingers for more requests once it has taken those already queued. None:
/// requests queue up on their own while a snapshot is built, and a lone request (a first packet
/// waiting for its session) should not wait for a timer.
pub const BATCH_WINDOW: Duration = Duration::ZERO;
/// Requests waiting for the manager at most; a caller past that waits for room.
const QUEUE: usize = 4096;
/// Events a watcher may fall behind by before it skips (and is told in the log).
pub const EVENT_BUFFER: usize = 1024;

type Reply = Box<dyn FnOnce() + Send>;
type Job = Box<dyn FnOnce(&mut Sessions, Timestamp) -> Reply + Send>;

/// The manager stopped (the gateway is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the session manager has stopped")]
pub struct Stopped;

impl From<Stopped> for tonic::Status {
    fn from(_: Stopped) -> tonic::Status {
        tonic::Status::unavailable("the gateway is stopping")
    }
}

/// A handle on the session manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    jobs: mpsc::Sender<Job>,
    events: broadcast::Sender<pb::GatewayEvent>,
    policy: Arc<ArcSwap<PolicySnapshot>>,
}

impl Manager {
    /// Starts the manager task on the current runtime. The sessions' first snapshot is
    /// published into `policy` before this returns.
    pub fn start(
        mut sessions: Sessions,
        policy: Arc<ArcSwap<PolicySnapshot>>,
        window: Duration,
        metrics: crate::metrics::ControlMetrics,
    ) -> (Manager, tokio::task::JoinHandle<()>) {
        if let Some(s) = sessions.snapshot() {
            policy.store(s);
        }
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let task = tokio::spawn(run(
            sessions,
            rx,
            Arc::clone(&policy),
            events.clone(),
            window,
            metrics,
        ));
        (
            Manager {
                jobs,
                events,
                policy,
            },
            task,
        )
    }

    /// Runs `f` on the sessions; its result comes back once any change it made is published.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sessions, Timestamp) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |s, now| {
            let r = f(s, now);
            Box::new(move || {
                let _ = tx.send(r);
            })
        });
        self.jobs.send(job).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::GatewayEvent> {
        self.events.subscribe()
    }

    /// Sends an event to watchers directly (one that does not pass through the sessions).
    pub fn announce(&self, e: pb::GatewayEvent) {
        let _ = self.events.send(e);
    }

    /// The snapshot the workers read now.
    pub fn policy(&self) -> Arc<PolicySnapshot> {
        self.policy.load_full()
    }
}

async fn run(
    mut sessions: Sessions,
    mut rx: mpsc::Receiver<Job>,
    policy: Arc<ArcSwap<PolicySnapshot>>,
    events: broadcast::Sender<pb::GatewayEvent>,
    window: Duration,
    metrics: crate::metrics::ControlMetrics,
) {
    while let Some(job) = rx.recv().await {
        let mut replies = vec![job(&mut sessions, Timestamp::now())];
        // Everything already queued joins this snapshot, at most a queue's worth.
        while replies.len() < QUEUE {
            match rx.try_recv() {
                Ok(job) => replies.push(job(&mut sessions, Timestamp::now())),
                Err(_) => break,
            }
        }
        if !window.is_zero() {
            let deadline = tokio::time::Instant::now() + window;
            while let Ok(Some(job)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                replies.push(job(&mut sessions, Timestamp::now()));
            }
        }
        let building = std::time::Instant::now();
        if let Some(snapshot) = sessions.snapshot() {
            metrics.observe_snapshot_build(building.elapsed().as_secs_f64());
            tracing::debug!(
                version = snapshot.version,
                requests = replies.len(),
                sessions = sessions.len(),
                "policy published"
            );
            policy.store(snapshot);
        }
        for e in sessions.take_events() {
            // No watcher is not an error.
            let _ = events.send(e);
        }
        for reply in replies {
            reply();
        }
    }
}
