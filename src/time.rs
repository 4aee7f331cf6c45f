//! Time as the engine sees it: a timestamp handed in by the caller.
//!
//! The engine never reads a clock. A replay passes the capture's own timestamps, so a replay is
//! deterministic. A live run passes [`Clock::now`]: monotonic, so a wall clock stepped back (NTP,
//! an operator) cannot freeze idle timeouts or invalidate SYN cookies; the wall-clock time beside
//! it ([`Clock::wall`]) is for what people read (report timestamps, logs) and token expiry.

use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    pub fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// The current wall-clock time; for the edges only, never inside the engine, and never to
    /// measure an interval (see [`Clock`]).
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later (captures can go back in time).
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// How far `wall` is ahead of `self` (negative: behind), in nanoseconds: what
    /// [`Timestamp::shifted`] adds to turn a time of this clock into wall-clock time.
    pub fn offset_to(self, wall: Timestamp) -> i64 {
        let d = i128::from(wall.0) - i128::from(self.0);
        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// This time moved by `offset` nanoseconds, saturating at both ends.
    pub fn shifted(self, offset: i64) -> Timestamp {
        Timestamp(self.0.saturating_add_signed(offset))
    }
}

/// The live clock of `weir run`: a monotonic `now` for the engine and, beside it, the wall-clock
/// time. Clones share one origin, so every worker and the portal resolver agree on `now`.
///
/// `now` starts at the wall-clock time of [`Clock::system`] and then advances with
/// CLOCK_MONOTONIC: while nobody steps the wall clock the two agree, and after a step only the
/// offset between them (`now.offset_to(wall)`) changes.
#[derive(Clone, Debug)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    System { origin: Instant, anchor: Timestamp },
    Manual(Arc<ManualTime>),
}

/// Both times of a [`Clock::manual`], set by hand (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualTime {
    now: AtomicU64,
    wall: AtomicU64,
}

impl ManualTime {
    /// Moves the monotonic time (and the wall clock with it) forward.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.now.fetch_add(n, Ordering::Relaxed);
        self.wall.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the wall clock alone, as NTP or an operator stepping it does.
    pub fn set_wall(&self, wall: Timestamp) {
        self.wall.store(wall.0, Ordering::Relaxed);
    }
}

impl Clock {
    /// The machine's clocks.
    pub fn system() -> Clock {
        Clock {
            source: Source::System {
                origin: Instant::now(),
                anchor: Timestamp::now(),
            },
        }
    }

    /// A clock that moves only when told to, starting at `now` and `wall`.
    pub fn manual(now: Timestamp, wall: Timestamp) -> (Clock, Arc<ManualTime>) {
        let time = Arc::new(ManualTime {
            now: AtomicU64::new(now.0),
            wall: AtomicU64::new(wall.0),
        });
        (
            Clock {
                source: Source::Manual(Arc::clone(&time)),
            },
            time,
        )
    }

    /// Monotonic time: never goes back, whatever the wall clock does.
    pub fn now(&self) -> Timestamp {
        match &self.source {
            Source::System { origin, anchor } => anchor.saturating_add(origin.elapsed()),
            Source::Manual(t) => Timestamp(t.now.load(Ordering::Relaxed)),
        }
    }

    /// Wall-clock time: what to show, and what token expiry is measured against.
    pub fn wall(&self) -> Timestamp {
        match &self.source {
            Source::System { .. } => Timestamp::now(),
            Source::Manual(t) => Timestamp(t.wall.load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let c = Clock::system();
        let (a, wall) = (c.now(), c.wall());
        assert!(a.offset_to(wall).abs() < 1_000_000_000);
        let b = c.clone().now();
        assert!(b >= a);
    }

    #[test]
    fn offsets_turn_monotonic_time_into_wall_time_both_ways() {
        let now = Timestamp::from_secs(1_000);
        let wall = Timestamp::from_secs(400);
        let offset = now.offset_to(wall);
        assert_eq!(offset, -600_000_000_000);
        assert_eq!(now.shifted(offset), wall);
        assert_eq!(wall.shifted(-offset), now);
        assert_eq!(Timestamp::ZERO.shifted(-1), Timestamp::ZERO);
        assert_eq!(Timestamp::MAX.shifted(1), Timestamp::MAX);
        assert_eq!(Timestamp::MAX.offset_to(Timestamp::ZERO), i64::MIN);
    }

    #[test]
    fn a_manual_clock_steps_its_wall_clock_alone() {
        let (c, t) = Clock::manual(Timestamp::from_secs(10), Timestamp::from_secs(5_000));
        t.advance(Duration::from_secs(2));
        assert_eq!(
            (c.now(), c.wall()),
            (Timestamp::from_secs(12), Timestamp::from_secs(5_002))
        );
        t.set_wall(Timestamp::from_secs(1_000));
        t.advance(Duration::from_secs(1));
        assert_eq!(
            (c.now(), c.wall()),
            (Timestamp::from_secs(13), Timestamp::from_secs(1_001))
        );
    }
}
