//! The generic cell rate algorithm (GCRA), in microseconds, and an in-process limiter built on
//! it. The Redis backend runs the same arithmetic in a Lua script (`remote.rs`); keep the two
//! in step.
//!
//! A bucket is one number, the theoretical arrival time (TAT): when the bucket would be full
//! again had every admitted request come exactly on schedule. With emission interval
//! `I = 1 / rate` and capacity `B`, a request at `now` is admitted when
//! `max(TAT, now) + I <= now + B·I`, and then `TAT := max(TAT, now) + I`. A missing bucket is a
//! full one, so a key can be forgotten once `TAT <= now`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tollgate_domain::Clock;

use crate::RateDecision;

/// Slowest accepted rate: one unit a day. Slower, zero, negative or NaN rates are raised to
/// it, so a misconfigured limit denies almost everything rather than allowing everything.
pub(crate) const MIN_RATE_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Fastest accepted rate (one unit per microsecond, the arithmetic's resolution).
pub(crate) const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
/// Largest accepted burst; a zero burst is raised to one.
pub(crate) const MAX_BURST: u32 = 1_000_000;

/// Shards of the in-process limiter: contention stays low without a concurrent map crate.
const SHARDS: usize = 16;
/// How often each shard drops its full buckets.
const PRUNE_EVERY_US: u64 = 10_000_000;
/// Buckets per shard beyond which the fullest buckets are evicted (16 × 65,536 ≈ 1M keys).
const SHARD_CAPACITY: usize = 65_536;

/// A limit in the algorithm's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// Microseconds between two units at the sustained rate (at least 1).
    pub(crate) interval_us: u64,
    /// Capacity (at least 1).
    pub(crate) burst: u32,
}

impl Limit {
    /// The limit for `rate_per_second` and `burst`, clamped to the accepted ranges.
    pub(crate) fn new(rate_per_second: f64, burst: u32) -> Self {
        let rate = if rate_per_second.is_nan() {
            MIN_RATE_PER_SECOND
        } else {
            rate_per_second.clamp(MIN_RATE_PER_SECOND, MAX_RATE_PER_SECOND)
        };
        // In range: 1 ..= 86,400,000,000.
        let interval_us = (1_000_000.0 / rate).round().max(1.0) as u64;
        Self {
            interval_us,
            burst: burst.clamp(1, MAX_BURST),
        }
    }

    /// `B·I`: how long an empty bucket takes to fill (at most 8.64e16 µs, no overflow).
    pub(crate) fn window_us(&self) -> u64 {
        self.interval_us * u64::from(self.burst)
    }
}

/// One decision, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    pub(crate) remaining: u32,
    pub(crate) retry_after_us: u64,
    pub(crate) reset_after_us: u64,
}

impl Outcome {
    /// The public form.
    pub(crate) fn into_decision(self, limit: Limit, degraded: bool) -> RateDecision {
        RateDecision {
            allowed: self.allowed,
            limit: limit.burst,
            remaining: self.remaining,
            retry_after: Duration::from_micros(self.retry_after_us),
            reset_after: Duration::from_micros(self.reset_after_us),
            degraded,
        }
    }
}

/// Decides one request at `now` against a bucket whose TAT is `stored` (`None`: full).
/// Returns the outcome and, when admitted, the TAT to store.
pub(crate) fn decide(stored: Option<u64>, now: u64, limit: Limit) -> (Outcome, Option<u64>) {
    let tat = stored.map_or(now, |tat| tat.max(now));
    let new_tat = tat.saturating_add(limit.interval_us);
    let horizon = now.saturating_add(limit.window_us());
    if new_tat > horizon {
        let outcome = Outcome {
            allowed: false,
            remaining: 0,
            retry_after_us: new_tat - horizon,
            reset_after_us: tat - now,
        };
        return (outcome, None);
    }
    let remaining = (horizon - new_tat) / limit.interval_us;
    let outcome = Outcome {
        allowed: true,
        // At most burst - 1.
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        retry_after_us: 0,
        reset_after_us: new_tat - now,
    };
    (outcome, Some(new_tat))
}

/// GCRA buckets in this process: sharded maps of key → TAT, pruned of full buckets, with a
/// hard cap per shard so that a flood of distinct keys cannot exhaust memory.
pub(crate) struct LocalLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    /// Whose monotonic reading is the limiter's time.
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    next_prune_us: u64,
}

impl LocalLimiter {
    /// A limiter timed by `clock`'s monotonic reading.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            clock,
        }
    }

    /// Microseconds on this limiter's monotonic clock.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.clock.monotonic().as_micros()).unwrap_or(u64::MAX)
    }

    /// Checks and consumes one unit of `key` now.
    pub(crate) fn check(&self, key: &str, limit: Limit) -> Outcome {
        self.check_at(key, limit, self.now_us())
    }

    /// Checks and consumes one unit of `key` at `now` (microseconds on any monotonic clock,
    /// the same for every call).
    pub(crate) fn check_at(&self, key: &str, limit: Limit, now: u64) -> Outcome {
        let key = crate::keys::rate_key(key);
        // In range: reduced modulo the shard count.
        let index = (self.hasher.hash_one(key.as_ref()) % self.shards.len() as u64) as usize;
        // A panic while holding the lock cannot leave a TAT half-written; carry on.
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (outcome, new_tat) = decide(shard.tats.get(key.as_ref()).copied(), now, limit);
        if let Some(new_tat) = new_tat {
            match shard.tats.get_mut(key.as_ref()) {
                Some(tat) => *tat = new_tat,
                None => {
                    shard.tats.insert(key.into_owned(), new_tat);
                }
            }
        }
        if now >= shard.next_prune_us || shard.tats.len() > SHARD_CAPACITY {
            shard.prune(now);
        }
        outcome
    }

    /// Buckets currently held (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .tats
                    .len()
            })
            .sum()
    }
}

impl Shard {
    fn prune(&mut self, now: u64) {
        self.next_prune_us = now.saturating_add(PRUNE_EVERY_US);
        // A full bucket is the same as no bucket.
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() > SHARD_CAPACITY * 3 / 4 {
            // Still crowded with live buckets: forget the fuller half. Those keys get their
            // burst back early, the price of bounded memory under a flood of keys.
            let mut tats: Vec<u64> = self.tats.values().copied().collect();
            let middle = tats.len() / 2;
            let (_, median, _) = tats.select_nth_unstable(middle);
            let median = *median;
            self.tats.retain(|_, tat| *tat > median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn limits_are_clamped() {
        assert_eq!(
            Limit::new(1.0, 3),
            Limit {
                interval_us: SECOND,
                burst: 3
            }
        );
        assert_eq!(Limit::new(4.0, 0).burst, 1);
        assert_eq!(Limit::new(0.0, 1).interval_us, 86_400 * SECOND);
        assert_eq!(Limit::new(-5.0, 1).interval_us, 86_400 * SECOND);
        assert_eq!(Limit::new(f64::NAN, 1).interval_us, 86_400 * SECOND);
        assert_eq!(Limit::new(f64::INFINITY, 1).interval_us, 1);
        assert_eq!(Limit::new(1.0, u32::MAX).burst, MAX_BURST);
        // The largest window does not overflow.
        assert_eq!(
            Limit::new(0.0, u32::MAX).window_us(),
            86_400 * SECOND * u64::from(MAX_BURST)
        );
    }

    #[test]
    fn burst_then_steady_rate() {
        let limit = Limit::new(2.0, 3); // one unit every 500 ms, three at once
        let limiter = LocalLimiter::new(Arc::new(tollgate_domain::SystemClock));
        let t0 = 1_000 * SECOND;
        let first = limiter.check_at("k", limit, t0);
        assert_eq!(
            first,
            Outcome {
                allowed: true,
                remaining: 2,
                retry_after_us: 0,
                reset_after_us: SECOND / 2
            }
        );
        let second = limiter.check_at("k", limit, t0);
        assert_eq!((second.allowed, second.remaining), (true, 1));
        let third = limiter.check_at("k", limit, t0);
        assert_eq!((third.allowed, third.remaining), (true, 0));
        assert_eq!(third.reset_after_us, 3 * SECOND / 2);

        let denied = limiter.check_at("k", limit, t0);
        assert_eq!(
            denied,
            Outcome {
                allowed: false,
                remaining: 0,
                retry_after_us: SECOND / 2,
                reset_after_us: 3 * SECOND / 2
            }
        );
        // A denial consumes nothing: 100 ms later the wait is 100 ms shorter.
        let later = limiter.check_at("k", limit, t0 + SECOND / 10);
        assert!(!later.allowed);
        assert_eq!(later.retry_after_us, 4 * SECOND / 10);

        // After exactly retry_after, one unit is back.
        let refilled = limiter.check_at("k", limit, t0 + SECOND / 2);
        assert_eq!((refilled.allowed, refilled.remaining), (true, 0));
        assert!(!limiter.check_at("k", limit, t0 + SECOND / 2).allowed);

        // After reset_after the whole burst is back.
        let full = limiter.check_at("k", limit, t0 + 2 * SECOND);
        assert_eq!((full.allowed, full.remaining), (true, 2));

        // Other keys are independent.
        assert_eq!(limiter.check_at("other", limit, t0).remaining, 2);
    }

    #[test]
    fn sustained_rate_is_enforced() {
        let limit = Limit::new(10.0, 5);
        let limiter = LocalLimiter::new(Arc::new(tollgate_domain::SystemClock));
        // 100 requests per second for 10 s: 5 of burst + 10/s × 10 s.
        let admitted = (0..1_000u64)
            .filter(|i| limiter.check_at("k", limit, i * SECOND / 100).allowed)
            .count();
        assert!((104..=106).contains(&admitted), "{admitted}");
    }

    #[test]
    fn full_buckets_are_pruned() {
        let limit = Limit::new(1.0, 2);
        let limiter = LocalLimiter::new(Arc::new(tollgate_domain::SystemClock));
        for i in 0..1_000 {
            limiter.check_at(&format!("key-{i}"), limit, 0);
        }
        assert_eq!(limiter.len(), 1_000);
        // Well after every bucket is full again, each shard drops its buckets on its next use.
        for i in 0..1_000 {
            limiter.check_at(&format!("later-{i}"), limit, 100 * SECOND);
        }
        assert_eq!(limiter.len(), 1_000);
    }

    #[test]
    fn shards_are_capped() {
        let mut shard = Shard::default();
        for i in 0..(SHARD_CAPACITY as u64 + 10) {
            shard.tats.insert(i.to_string(), 1_000 + i);
        }
        shard.prune(0);
        assert!(shard.tats.len() <= SHARD_CAPACITY / 2 + 10);
        // The emptiest buckets (latest TAT) are the ones kept.
        assert!(
            shard
                .tats
                .contains_key(&(SHARD_CAPACITY as u64 + 9).to_string())
        );
        assert!(!shard.tats.contains_key("0"));
    }
}
