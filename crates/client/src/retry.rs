//! Retrying transient failures: exponential backoff with jitter, honouring the server's
//! `Retry-After`. Jitter comes from ring's `SystemRandom`, the project's one source of
//! randomness.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// How transient failures are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more gets no further attempt
    /// now (the caller's request fails instead of hanging).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 100 ms doubling to at most 5 s, `Retry-After` up to 30 s.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): "equal jitter", half the
    /// exponential delay plus a random part of the other half, so retries of many clients
    /// spread out but never come back at once; at least the server's `retry_after`.
    /// `None` when the server asked for longer than [`RetryPolicy::max_retry_after`].
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry_after.is_some_and(|wait| wait > self.max_retry_after) {
            return None;
        }
        let exponent = attempt.saturating_sub(1).min(31);
        let backoff = self
            .base_delay
            .saturating_mul(1_u32 << exponent)
            .min(self.max_delay);
        let half = backoff / 2;
        let jittered = half + half.mul_f64(random_fraction());
        Some(jittered.max(retry_after.unwrap_or_default()))
    }
}

/// A uniformly random number in [0, 1); 0 if the system's generator fails (the delay is
/// then simply not jittered).
fn random_fraction() -> f64 {
    let mut bytes = [0_u8; 4];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RetryPolicy;

    #[test]
    fn delays_grow_exponentially_with_jitter_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let cases = [
            // attempt, retry_after, at least, at most
            (1,  None,                          ms(50),     ms(100)),
            (2,  None,                          ms(100),    ms(200)),
            (3,  None,                          ms(200),    ms(400)),
            (10, None,                          ms(2_500),  ms(5_000)),
            (40, None,                          ms(2_500),  ms(5_000)),
            (1,  Some(Duration::from_secs(2)),  ms(2_000),  ms(2_000)),
            (3,  Some(Duration::from_secs(30)), ms(30_000), ms(30_000)),
        ];
        for (attempt, retry_after, low, high) in cases {
            for _ in 0..50 {
                let delay = policy.delay(attempt, retry_after);
                assert!(
                    delay.is_some_and(|d| low <= d && d <= high),
                    "attempt {attempt}, retry-after {retry_after:?}: {delay:?}"
                );
            }
        }
        assert_eq!(policy.delay(1, Some(Duration::from_secs(31))), None);
        // Jitter: 50 draws are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| policy.delay(5, None)).collect();
        assert!(draws.len() > 1);
    }
}
