//! What every worker does between batches, whatever its I/O: pick up the newest policy
//! snapshot, expire idle flows, publish its counters (a copy; the report is built elsewhere).

use super::events::Outbox;
use super::report::{Board, IoCounters, WorkerReport};
use super::resolve::PortalAddresses;
use crate::engine::{Engine, Output, Tally};
use crate::policy::PolicySnapshot;
use crate::time::{Clock, Timestamp};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// What every worker shares with the others and the control threads.
#[derive(Clone)]
pub struct Shared {
    pub policy: Arc<ArcSwap<PolicySnapshot>>,
    pub board: Arc<Board>,
    pub portal: PortalAddresses,
    /// `now` for the engine (monotonic) and the wall clock beside it.
    pub clock: Clock,
    /// The control plane's end of the events; `None`: events are logged.
    pub events: Option<crossbeam_channel::Sender<crate::packet::Event>>,
}

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
    clock: Clock,
    outbox: Outbox,
    /// The resolved portal addresses this engine has learned.
    portal_seen: Arc<Vec<(std::net::IpAddr, Timestamp)>>,
    answered: u64,
    /// A publish found the slot busy: try again after the next batch.
    publish_pending: bool,
    last_housekeeping: Timestamp,
    /// `idle = "spin"`: an idle worker polls its rings instead of sleeping in poll(2).
    pub spin: bool,
}

impl Worker {
    pub fn new(index: usize, core: usize, engine: Engine, shared: Shared) -> Worker {
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
        let now = shared.clock.now();
        engine.set_wall_clock(now, shared.clock.wall());
        Worker {
            index,
            core,
            engine,
            out: Output::default(),
            io: IoCounters::default(),
            policy: shared.policy,
            board: shared.board,
            portal: shared.portal,
            clock: shared.clock,
            outbox: Outbox::new(shared.events),
            portal_seen: Arc::default(),
            answered: 0,
            publish_pending: false,
            last_housekeeping: now,
            spin: false,
        }
    }

    /// The time to hand the engine for the next batch: monotonic.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
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
        // Out to the control plane without waiting; what finds the channel full waits here.
        let Worker {
            engine,
            outbox,
            index,
            ..
        } = self;
        outbox.send(*index, engine.drain_events());
        let tick = now.saturating_since(self.last_housekeeping) >= HOUSEKEEPING;
        if tick {
            self.last_housekeeping = now;
            // The wall clock may have been stepped: what is shown, and token expiry, follow it;
            // `now` and everything measured with it do not.
            let wall = self.clock.wall();
            self.engine.set_wall_clock(now, wall);
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
        let events = &self.outbox.counters;
        let done = self.board.try_publish(index, generation, |slot| {
            slot.worker = index;
            slot.core = core;
            slot.io.clone_from(io);
            slot.tally.copy_from(engine);
            slot.tally.events.add(events);
        });
        if done {
            self.answered = generation;
        }
        self.publish_pending = !done;
    }

    /// Publishes the last numbers and hands them back.
    pub fn finish(self) -> WorkerReport {
        let mut tally = Tally::of(&self.engine);
        tally.events.add(&self.outbox.counters);
        let last = WorkerReport {
            worker: self.index,
            core: self.core,
            io: self.io.clone(),
            tally,
        };
        self.board.publish_last(&last);
        last
    }

    /// What an idle worker does before it looks at its rings again: sleeps until one of `fds`
    /// is readable, or (`idle = "spin"`) goes straight back, keeping its core awake.
    pub(super) fn wait(&self, fds: [std::os::fd::BorrowedFd<'_>; 2]) {
        if self.spin {
            std::hint::spin_loop();
        } else {
            wait_readable(fds);
        }
    }
}

/// Sleeps until one of two descriptors is readable. The timeout bounds how late an idle worker
/// notices a stop request or a new policy snapshot.
fn wait_readable(fds: [std::os::fd::BorrowedFd<'_>; 2]) {
    let mut ready = [false; 2];
    if let Err(e) = crate::io::sys::poll_readable(&fds, 100, &mut ready) {
        tracing::warn!(error = %e, "poll failed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::report::tests::{policy, udp};
    use crate::engine::{Port, Verdict};
    use crate::time::ManualTime;
    use crate::wire::LinkType;

    const HOUR: Duration = Duration::from_secs(3600);

    fn worker(clock: Clock) -> (Worker, Arc<Board>) {
        let policy = policy();
        let board = Board::new("bridge", 1, Arc::clone(&policy));
        let shared = Shared {
            policy: Arc::clone(&policy),
            board: Arc::clone(&board),
            portal: Arc::default(),
            clock,
            events: None,
        };
        let engine = Engine::new(policy.load_full(), LinkType::RawIp);
        (Worker::new(0, 0, engine, shared), board)
    }

    /// Asks for fresh numbers as the report endpoint does, lets the worker answer between two
    /// batches, and reads the report.
    fn last_seen(w: &mut Worker, board: &Board) -> Option<Timestamp> {
        board.fresh(Duration::ZERO);
        w.between_batches(w.now());
        board.current().report.rating_groups[0].usage.last_seen
    }

    /// A live run whose wall clock is stepped back an hour: flows still idle out on time, and the
    /// report shows wall-clock times as they were when the packet was metered.
    #[test]
    fn a_wall_clock_stepped_back_neither_freezes_expiry_nor_shows_in_the_engine() {
        let start = Timestamp::from_secs(1_000);
        let wall = Timestamp::from_secs(1_780_272_000);
        let (clock, time): (Clock, Arc<ManualTime>) = Clock::manual(start, wall);
        let (mut w, board) = worker(clock);
        let now = w.now();
        assert_eq!(now, start);
        let p = udp([10, 45, 0, 2], 5000, [192, 0, 2, 53], 53, 30);
        let Worker { engine, out, .. } = &mut w;
        assert_eq!(
            engine.handle_frame(now, Port::Any, &p, out),
            Verdict::Forward
        );
        assert_eq!(last_seen(&mut w, &board), Some(wall));
        assert_eq!(w.engine.flows().len(), 1);

        // NTP steps the wall clock back an hour; a minute and a second later the flow is idle.
        time.set_wall(Timestamp(wall.0 - HOUR.as_nanos() as u64));
        time.advance(Duration::from_secs(61));
        assert!(w.between_batches(w.now()));
        assert_eq!((w.engine.flows().len(), w.engine.flows().expired), (0, 1));
        // The report shows the wall-clock time the packet was metered at; the step later does
        // not move it.
        assert_eq!(last_seen(&mut w, &board), Some(wall));
        let fin = w.finish();
        assert_eq!(fin.tally.flows.expired, 1);
    }

    const PENDING: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
"#;

    fn pending_policy(extra: &str, version: u64) -> PolicySnapshot {
        let mut config =
            crate::policy::Config::from_toml_str(&format!("{PENDING}{extra}"), "t.toml").unwrap();
        config.gateway.pending = Some(crate::policy::PendingSettings::default());
        PolicySnapshot::build(&config, version)
    }

    /// Session requests find the event channel full: one waits in the worker and goes on the
    /// next batch; the report shows both; a snapshot with the session readies the held frames.
    #[test]
    fn events_wait_in_the_worker_while_the_channel_is_full() {
        let (clock, _time) = Clock::manual(Timestamp::from_secs(1_000), Timestamp::from_secs(1));
        let policy = Arc::new(ArcSwap::from_pointee(pending_policy("", 1)));
        let board = Board::new("bridge", 1, Arc::clone(&policy));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let shared = Shared {
            policy: Arc::clone(&policy),
            board: Arc::clone(&board),
            portal: Arc::default(),
            clock,
            events: Some(tx),
        };
        let engine = Engine::new(policy.load_full(), LinkType::RawIp);
        let mut w = Worker::new(0, 0, engine, shared);
        let now = w.now();
        for ue in [[10, 45, 0, 8], [10, 45, 0, 9]] {
            let p = udp(ue, 5000, [192, 0, 2, 53], 53, 30);
            let Worker { engine, out, .. } = &mut w;
            assert_eq!(engine.handle_frame(now, Port::Any, &p, out), Verdict::Held);
        }
        board.fresh(Duration::ZERO);
        w.between_batches(now);
        let first = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        let e = board.current().report.events;
        assert_eq!((e.sent, e.waiting, e.retried), (1, 1, 0));
        board.fresh(Duration::ZERO);
        w.between_batches(now);
        let second = rx.try_recv().unwrap();
        let ues: Vec<_> = [first, second]
            .into_iter()
            .map(|e| match e {
                crate::packet::Event::SessionRequest { ue, .. } => ue.to_string(),
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(ues, ["10.45.0.8", "10.45.0.9"]);
        let e = board.current().report.events;
        assert_eq!((e.sent, e.waiting, e.retried), (2, 0, 1));

        // The session of 10.45.0.8 arrives: picked up between batches, its frame ready.
        policy.store(Arc::new(pending_policy(
            "\n[[session]]\nsubscriber = \"imsi-001010000000008\"\nipv4 = \"10.45.0.8\"\n",
            2,
        )));
        w.between_batches(now);
        assert!(w.engine.has_held_ready());
        let mut released = Vec::new();
        let Worker { engine, out, .. } = &mut w;
        engine.release_held(now, out, |_, f, v, _| released.push((f.to_vec(), v)));
        assert_eq!(
            released,
            [(
                udp([10, 45, 0, 8], 5000, [192, 0, 2, 53], 53, 30),
                Verdict::Forward
            )]
        );
        assert_eq!(w.engine.pending(), (1, 1));
    }
}
