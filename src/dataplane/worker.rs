//! What every worker does between batches, whatever its I/O: pick up the newest policy
//! snapshot, expire idle flows, publish its counters (a copy; the report is built elsewhere).

use super::report::{Board, IoCounters, WorkerReport};
use super::resolve::PortalAddresses;
use crate::engine::{Engine, Output, Tally};
use crate::policy::PolicySnapshot;
use crate::time::Timestamp;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The engine of one worker and what surrounds it.
pub struct Worker {
    pub index: usize,
    pub core: usize,
    pub engine: Engine,
    pub out: Output,
    pub io: IoCounters,
    policy: Arc<ArcSwap<PolicySnapshot>>,
    board: Arc<Board>,
    portal: PortalAddresses,
    /// The resolved portal addresses this engine has learned.
    portal_seen: Arc<Vec<(std::net::IpAddr, Timestamp)>>,
    answered: u64,
    /// A publish found the slot busy: try again after the next batch.
    publish_pending: bool,
    last_housekeeping: Instant,
}

impl Worker {
    pub fn new(
        index: usize,
        core: usize,
        engine: Engine,
        policy: Arc<ArcSwap<PolicySnapshot>>,
        board: Arc<Board>,
        portal: PortalAddresses,
    ) -> Worker {
        let mut engine = engine;
        // A live gateway's SYN cookies must not be predictable from the configuration file.
        let mut secret = [0u8; 32];
        match std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
        {
            Ok(()) => engine.redirect_mut().set_cookie_secret(&secret),
            Err(e) => tracing::warn!(
                worker = index,
                error = %e,
                "no random SYN-cookie secret; using the one derived from the configuration"
            ),
        }
        Worker {
            index,
            core,
            engine,
            out: Output::default(),
            io: IoCounters::default(),
            policy,
            board,
            portal,
            portal_seen: Arc::default(),
            answered: 0,
            publish_pending: false,
            last_housekeeping: Instant::now(),
        }
    }

    /// Runs between two batches. Returns true once a second, when the caller should also read
    /// its ring statistics.
    pub fn between_batches(&mut self, now: Timestamp) -> bool {
        {
            let newest = self.policy.load();
            if !Arc::ptr_eq(&newest, self.engine.snapshot()) {
                tracing::debug!(version = newest.version, "worker picked up a new policy");
                self.engine.set_snapshot(Arc::clone(&newest));
                // New redirect settings start a new walled garden: hand the addresses in again.
                self.portal_seen = Arc::default();
            }
        }
        {
            let resolved = self.portal.load();
            if !Arc::ptr_eq(&resolved, &self.portal_seen) {
                for (addr, until) in resolved.iter() {
                    self.engine
                        .redirect_mut()
                        .learn_portal_address(*addr, *until, now);
                }
                self.portal_seen = Arc::clone(&resolved);
            }
        }
        // Until recharge successes are reported to the policy engine, they are logged here (the
        // local success action already lifted the redirect in the engine).
        for event in self.engine.drain_events() {
            match event {
                crate::redirect::Event::RechargeSuccess {
                    session,
                    subscriber,
                    ue,
                    at,
                } => tracing::info!(
                    worker = self.index,
                    session = session.0,
                    %subscriber,
                    %ue,
                    %at,
                    "recharge success"
                ),
            }
        }
        let tick = self.last_housekeeping.elapsed() >= HOUSEKEEPING;
        if tick {
            self.last_housekeeping = Instant::now();
            self.engine.handle_timeout(now);
        }
        match self.board.wanted_after(self.answered) {
            Some(generation) => self.publish(generation),
            None if tick || self.publish_pending => self.publish(self.answered),
            None => {}
        }
        tick
    }

    /// Copies the counters into this worker's slot on the board: plain numbers into storage
    /// the slot already has, no report built here.
    fn publish(&mut self, generation: u64) {
        let (index, core, io, engine) = (self.index, self.core, &self.io, &self.engine);
        let done = self.board.try_publish(index, generation, |slot| {
            slot.worker = index;
            slot.core = core;
            slot.io.clone_from(io);
            slot.tally.copy_from(engine);
        });
        if done {
            self.answered = generation;
        }
        self.publish_pending = !done;
    }

    /// Publishes the last numbers and hands them back.
    pub fn finish(self) -> WorkerReport {
        let last = WorkerReport {
            worker: self.index,
            core: self.core,
            io: self.io.clone(),
            tally: Tally::of(&self.engine),
        };
        self.board.publish_last(&last);
        last
    }
}

/// Sleeps until one of two descriptors is readable. The timeout bounds how late an idle worker
/// notices a stop request or a new policy snapshot.
pub(super) fn wait_readable(fds: [std::os::fd::BorrowedFd<'_>; 2]) {
    let mut ready = [false; 2];
    if let Err(e) = crate::io::sys::poll_readable(&fds, 100, &mut ready) {
        tracing::warn!(error = %e, "poll failed");
        std::thread::sleep(Duration::from_millis(10));
    }
}
