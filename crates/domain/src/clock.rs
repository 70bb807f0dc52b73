//! Time as a parameter: every `iat`, `exp`, timestamp, second bucket and rate-limit reading
//! comes from an injected [`Clock`], so tests move time instead of sleeping.
//!
//! This module is the only place that reads the system clock (`clippy.toml` bans
//! `SystemTime::now` and `Instant::now` elsewhere): [`SystemClock`] is the real clock,
//! [`ManualClock`] stands still until a test moves it, and [`TestClock`] runs with the real
//! clock plus an offset that a test moves forward.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// A source of the current time: wall-clock time (for what is stored or sent: `iat`,
/// `exp`, audit timestamps) and a monotonic reading (for measuring intervals: rate limits).
pub trait Clock: Send + Sync + 'static {
    /// The current time, in whole seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        self.now_ms().div_euclid(1_000)
    }

    /// The current time, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Time elapsed since an arbitrary origin fixed for the clock's life: it never goes
    /// back, whatever happens to the wall clock, so differences of two readings are
    /// intervals.
    fn monotonic(&self) -> Duration;
}

/// A shared clock is a clock (so an `Arc<dyn Clock>` can be handed on as `impl Clock`).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> UnixTime {
        (**self).now()
    }

    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }

    fn monotonic(&self) -> Duration {
        (**self).monotonic()
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The origin of [`SystemClock::monotonic`]: the first reading in this process.
static MONOTONIC_ORIGIN: OnceLock<Instant> = OnceLock::new();

// The one place where the system clock is read (see `clippy.toml`).
#[allow(clippy::disallowed_methods)]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // Before 1970 reads as 0; past i64 milliseconds (year 292 million) saturates.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }

    fn monotonic(&self) -> Duration {
        MONOTONIC_ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// Milliseconds in `duration`, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A clock that only moves when told to; for tests. Clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<ManualTime>);

#[derive(Debug, Default)]
struct ManualTime {
    /// Wall-clock time, Unix milliseconds.
    wall_ms: AtomicI64,
    /// Monotonic reading, nanoseconds: only forward moves advance it.
    monotonic_ns: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `now` (seconds since the Unix epoch).
    pub fn new(now: UnixTime) -> Self {
        Self::at_ms(now.saturating_mul(1_000))
    }

    /// A clock standing at `now_ms` (milliseconds since the Unix epoch).
    pub fn at_ms(now_ms: i64) -> Self {
        Self(Arc::new(ManualTime {
            wall_ms: AtomicI64::new(now_ms),
            monotonic_ns: AtomicU64::new(0),
        }))
    }

    /// Moves the clock forward (or its wall time back, with a negative value) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        let by = Duration::from_secs(seconds.unsigned_abs());
        if seconds >= 0 {
            self.advance_by(by);
        } else {
            self.0.wall_ms.fetch_sub(millis(by), Ordering::SeqCst);
        }
    }

    /// Moves the clock forward by `by`: both readings.
    pub fn advance_by(&self, by: Duration) {
        self.0.wall_ms.fetch_add(millis(by), Ordering::SeqCst);
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.monotonic_ns.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.0.monotonic_ns.load(Ordering::SeqCst))
    }
}

/// The real clock plus an offset that only grows: time passes as it really does, and a
/// test jumps it forward ([`TestClock::advance`]) instead of sleeping. For servers under
/// test, whose background tasks and peers expect time to pass; keep the offset to seconds
/// where tokens are checked by parties reading the real clock. Clones share one offset.
#[derive(Debug, Clone, Default)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    /// A clock reading the real time (no offset yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves both readings forward by `by`, at once.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Moves the clock forward to the start of the next wall-clock second (by at most one
    /// second): what a test needs where times are compared in whole seconds, say an `iat`
    /// after a revocation's cut-off.
    pub fn advance_to_next_second(&self) {
        let into_second = self.now_ms().rem_euclid(1_000).unsigned_abs();
        self.advance(Duration::from_millis(1_000 - into_second));
    }

    /// How far ahead of the real clock this clock is.
    pub fn offset(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(millis(self.offset()))
    }

    fn monotonic(&self) -> Duration {
        SystemClock.monotonic().saturating_add(self.offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_700_000_000);
        assert_eq!(clock.now(), 1_700_000_000);
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
        assert_eq!(clock.monotonic(), Duration::ZERO);
        clock.advance_by(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 1_700_000_001_500);
        assert_eq!(clock.now(), 1_700_000_001);
        assert_eq!(clock.monotonic(), Duration::from_millis(1_500));
        // Wall time may go back; the monotonic reading does not.
        clock.advance(-2);
        assert_eq!(clock.now_ms(), 1_699_999_999_500);
        assert_eq!(clock.now(), 1_699_999_999);
        assert_eq!(clock.monotonic(), Duration::from_millis(1_500));
        let shared = clock.clone();
        shared.advance(1);
        assert_eq!(clock.monotonic(), Duration::from_millis(2_500));
    }

    #[test]
    fn test_clock_is_the_real_clock_plus_its_offset() {
        let clock = TestClock::new();
        let before = SystemClock.now_ms();
        let read = clock.now_ms();
        assert!(
            (before..before + 1_000).contains(&read),
            "{read} vs {before}"
        );
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(clock.offset(), Duration::from_secs(3_600));
        let ahead = clock.now_ms() - SystemClock.now_ms();
        assert!((3_599_000..=3_600_000).contains(&ahead), "{ahead}");
        let monotonic = clock.monotonic();
        assert!(monotonic >= Duration::from_secs(3_600));
        clock.advance_to_next_second();
        let ms = clock.now_ms();
        // Lands at most a few ms past a second boundary (the real clock moves meanwhile).
        assert!(ms.rem_euclid(1_000) < 200, "{ms}");
        assert!(clock.monotonic() > monotonic);
    }
}
