//! State every instance must share: a fast copy of the revocations, rate limits, and
//! notifications that a tenant's configuration changed. One type, [`SharedState`], with two
//! backends chosen at start: Redis (`TOLLGATE_REDIS_URL`), correct for any number of
//! instances, and an in-process one, correct for a single instance.
//!
//! The database stays the source of truth for revocations: this is a copy that can be lost
//! (Redis keeps nothing on disk here) and is rebuilt with
//! [`SharedState::replace_revocations`]. A population marker tells a complete copy from an
//! empty Redis: while it is missing, [`SharedState::revocation_status`] answers
//! [`RevocationStatus::Unknown`] and callers ask the database.
//!
//! # Redis key layout
//!
//! Every key and channel starts with the prefix `tollgate:` (tests choose another, see
//! [`SharedState::connect_redis_with_prefix`]).
//!
//! | key | value | expiry |
//! |---|---|---|
//! | `tollgate:rv:<tenant_id>:jti:<jti>` | `revoked_at` (Unix seconds) | `expires_at` |
//! | `tollgate:rv:<tenant_id>:sid:<sid>` | `revoked_at` | `expires_at` |
//! | `tollgate:rv:<tenant_id>:client:<client_id>` | the cut-off: tokens with `iat` ≤ it are revoked | `expires_at` |
//! | `tollgate:rv:<tenant_id>:tenant` | the cut-off | `expires_at` |
//! | `tollgate:rv:populated` | when the copy was last completed (Unix seconds) | none |
//! | `tollgate:rl:<key>` | GCRA theoretical arrival time (µs, Redis server clock) | when the bucket is full again |
//!
//! Pub/sub channel `tollgate:changes`: each message is a tenant name.
//!
//! Adding a revocation to an existing key keeps the later cut-off and the longer expiry (a
//! Lua script, atomic), so concurrent writers and repopulation never shorten one. Expiries
//! are relative TTLs computed from the caller's `now`, so Redis's own clock does not matter.
//! Tenant ids are at most 128 bytes without `:`, and `jti`, `sid` and client ids at most 512
//! bytes (anything longer is refused with [`StateError::InvalidKey`]); rate-limit keys longer
//! than 256 bytes are shortened to a prefix plus a hash.
//!
//! Redis must not evict keys (`maxmemory-policy noeviction`, the default): an evicted
//! revocation with the marker still present would read as "not revoked". The backend warns
//! at start when it can see another policy.
//!
//! # When Redis is unreachable
//!
//! Every call is bounded by a 1 s deadline (one reconnect-and-retry included).
//!
//! - [`revocation_status`](SharedState::revocation_status), [`is_populated`](SharedState::is_populated),
//!   [`add_revocations`](SharedState::add_revocations) and
//!   [`replace_revocations`](SharedState::replace_revocations) return `Err`; revocation
//!   checks fail closed.
//! - [`check_rate`](SharedState::check_rate) falls back to in-process buckets with the same
//!   parameters (per-instance limits, never unlimited) and marks decisions `degraded`; after a
//!   failure it does not try Redis again for 1 s, so token requests do not each wait for a
//!   dead server. Refusing every token request because the limiter's store is down would turn
//!   a Redis outage into a full outage; allowing everything would lift brute-force damping.
//! - [`publish_change`](SharedState::publish_change) logs the error and delivers the change
//!   to this instance's own subscribers; other instances rely on their database poller.
//! - [`subscribe_changes`](SharedState::subscribe_changes) keeps working: a background task
//!   reconnects with backoff, re-subscribes and then emits [`ChangeEvent::All`];
//!   [`is_listening`](SharedState::is_listening) is `false` meanwhile.

mod gcra;
mod keys;
mod memory;
mod remote;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tollgate_domain::{Clock, Revocation, SystemClock, TenantName, TokenFacts, UnixTime};

use crate::gcra::Limit;
use crate::memory::MemoryBackend;
use crate::remote::RedisBackend;

/// Capacity of the change channel; a receiver that falls further behind gets `Lagged`.
const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// Why a shared-state call failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The Redis URL does not parse.
    #[error("invalid redis url: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// The key prefix is empty, too long or contains whitespace.
    #[error("invalid key prefix: must be 1 to 64 bytes without whitespace")]
    InvalidPrefix,
    /// A tenant id, `jti`, `sid` or client id cannot be part of a key.
    #[error("invalid {field} for a revocation key: {reason}")]
    InvalidKey {
        /// Which value.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Redis answered with an error, or the connection failed.
    #[error("redis request failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A revocation key holds something that is not a cut-off; treated as a failure so that
    /// checks fail closed.
    #[error("unexpected value under a revocation key")]
    CorruptValue,
}

/// Whether a token is revoked, as far as the shared state knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// A stored revocation covers the token.
    Revoked,
    /// No stored revocation covers it, and the store holds a complete copy.
    NotRevoked,
    /// The store cannot vouch for its contents (Redis restarted empty or was flushed and has
    /// not been repopulated): ask the database.
    Unknown,
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed (one unit was consumed).
    pub allowed: bool,
    /// The burst capacity in force (after clamping to 1..=1,000,000).
    pub limit: u32,
    /// Units left right now.
    pub remaining: u32,
    /// How long to wait before one unit is available; zero when allowed.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
    /// Decided by this instance alone because Redis was unreachable.
    pub degraded: bool,
}

/// A notification that cached configuration is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// This tenant's configuration changed.
    Tenant(TenantName),
    /// Messages may have been missed (lag or reconnect): drop everything cached (and
    /// re-read revocations, for those who follow them).
    All,
    /// Tokens were revoked (on this instance or another).
    Revoked(Revocation),
}

/// The shared-state backend. Cheap to clone: every clone shares one backend.
#[derive(Clone)]
pub struct SharedState {
    backend: Arc<Backend>,
}

enum Backend {
    Memory(MemoryBackend),
    Redis(RedisBackend),
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("backend", &self.backend_name())
            .finish()
    }
}

impl SharedState {
    /// In-process backend: correct for one instance only.
    pub fn in_process() -> SharedState {
        Self::in_process_with_clock(SystemClock)
    }

    /// In-process backend timed by `clock`: revocations expire by its wall time, rate
    /// limits refill by its monotonic reading (tests move a
    /// [`ManualClock`](tollgate_domain::ManualClock) or a
    /// [`TestClock`](tollgate_domain::TestClock)).
    pub fn in_process_with_clock(clock: impl Clock) -> SharedState {
        SharedState {
            backend: Arc::new(Backend::Memory(MemoryBackend::new(Arc::new(clock)))),
        }
    }

    /// Redis backend (`redis://host:port/db`). Connects eagerly (a command connection and the
    /// change subscription) and fails if Redis is unreachable at start.
    pub async fn connect_redis(url: &str) -> Result<SharedState, StateError> {
        Self::connect_redis_with_clock(url, Arc::new(SystemClock)).await
    }

    /// [`connect_redis`](Self::connect_redis) with every key and the channel under `prefix`
    /// instead of `tollgate:`, so that test runs sharing one Redis do not collide.
    pub async fn connect_redis_with_prefix(
        url: &str,
        prefix: &str,
    ) -> Result<SharedState, StateError> {
        Self::connect_redis_with(url, prefix, Arc::new(SystemClock)).await
    }

    /// [`connect_redis`](Self::connect_redis) timed by `clock`, as
    /// [`connect_redis_with`](Self::connect_redis_with) says.
    pub async fn connect_redis_with_clock(
        url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<SharedState, StateError> {
        Self::connect_redis_with(url, keys::DEFAULT_PREFIX, clock).await
    }

    /// [`connect_redis_with_prefix`](Self::connect_redis_with_prefix) whose fallback rate
    /// limiter (deciding while Redis is unreachable) and outage back-off are timed by
    /// `clock`'s monotonic reading. Rate limits decided by Redis are timed by the Redis
    /// server's clock, which no [`Clock`] moves.
    pub async fn connect_redis_with(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<SharedState, StateError> {
        let backend = RedisBackend::connect(url, prefix, clock).await?;
        Ok(SharedState {
            backend: Arc::new(Backend::Redis(backend)),
        })
    }

    /// `"redis"` or `"in-process"`.
    pub fn backend_name(&self) -> &'static str {
        match *self.backend {
            Backend::Memory(_) => "in-process",
            Backend::Redis(_) => "redis",
        }
    }

    /// Stores revocations; each entry expires at its `expires_at` (Redis: key TTL; memory:
    /// pruned on later writes), so state never grows without bound. Entries already expired
    /// at `now` are skipped. Nothing is stored if any entry has an invalid key.
    pub async fn add_revocations(
        &self,
        entries: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Memory(memory) => memory.add_revocations(entries, now),
            Backend::Redis(redis) => redis.add_revocations(entries, now).await,
        }
    }

    /// Whether the token is covered by a stored revocation, in one round trip (Redis: one
    /// `MGET` of its jti, sid, client and tenant keys and the population marker). Coverage is
    /// [`Revocation::covers`]. [`RevocationStatus::Unknown`] when the marker is missing and
    /// nothing stored covers the token; `Err` when Redis is unreachable: fail closed.
    pub async fn revocation_status(
        &self,
        token: &TokenFacts<'_>,
    ) -> Result<RevocationStatus, StateError> {
        match &*self.backend {
            Backend::Memory(memory) => memory.revocation_status(token),
            Backend::Redis(redis) => redis.revocation_status(token).await,
        }
    }

    /// One round trip to the backend, for health checks. Redis: `PING`, bounded like every
    /// other command. Memory: always `Ok`.
    pub async fn ping(&self) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => redis.ping().await,
        }
    }

    /// Whether the backend holds a complete copy (Redis: the marker key exists). Memory:
    /// always true.
    pub async fn is_populated(&self) -> Result<bool, StateError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(true),
            Backend::Redis(redis) => redis.is_populated().await,
        }
    }

    /// Repopulates from the database's live revocations, then sets the population marker.
    /// Redis: entries are merged in (never deleted: another instance may be adding one the
    /// snapshot missed; stale ones expire) before the marker is set, so a concurrent check
    /// never sees the marker without the data. Memory: the map is replaced.
    pub async fn replace_revocations(
        &self,
        all_live: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Memory(memory) => memory.replace_revocations(all_live, now),
            Backend::Redis(redis) => redis.replace_revocations(all_live, now).await,
        }
    }

    /// Checks and consumes one unit on `key` for a limit of `rate_per_second` with `burst`
    /// capacity (GCRA). Redis: one `EVALSHA`, atomic across instances, timed by the Redis
    /// server's clock; when Redis fails, an in-process bucket with the same parameters
    /// decides and the decision is `degraded`. Rates are clamped to one a day ..= 10⁶/s
    /// (zero, negative and NaN to one a day: a misconfiguration never means unlimited) and
    /// bursts to 1..=10⁶.
    pub async fn check_rate(&self, key: &str, rate_per_second: f64, burst: u32) -> RateDecision {
        let limit = Limit::new(rate_per_second, burst);
        match &*self.backend {
            Backend::Memory(memory) => memory.check_rate(key, limit),
            Backend::Redis(redis) => redis.check_rate(key, limit).await,
        }
    }

    /// Publishes that a tenant's configuration changed (Redis: `PUBLISH` on
    /// `tollgate:changes`; memory: local broadcast). Best effort: errors are logged, not
    /// returned, and the change still reaches this instance's subscribers.
    pub async fn publish_change(&self, tenant: &TenantName) {
        match &*self.backend {
            Backend::Memory(memory) => {
                // No receiver is not an error: nobody caches yet.
                let _ = memory.changes().send(ChangeEvent::Tenant(tenant.clone()));
            }
            Backend::Redis(redis) => redis.publish_change(tenant).await,
        }
    }

    /// Tells every instance's subscribers (this one's included) that `revocation` was
    /// recorded. Best effort, like [`SharedState::publish_change`]: a watcher that misses it
    /// learns of it when it next reads the database (see [`ChangeEvent::All`]).
    pub async fn publish_revocation(&self, revocation: &Revocation) {
        match &*self.backend {
            Backend::Memory(memory) => {
                let _ = memory
                    .changes()
                    .send(ChangeEvent::Revoked(revocation.clone()));
            }
            Backend::Redis(redis) => redis.publish_revocation(revocation).await,
        }
    }

    /// Whether changes published by other instances reach [`subscribe_changes`] now. Redis:
    /// `false` from the moment the subscription is lost until it stands again (then
    /// [`ChangeEvent::All`] follows); meanwhile a subscriber that must not miss a revocation
    /// reads the database itself. Memory: always `true`.
    ///
    /// [`subscribe_changes`]: SharedState::subscribe_changes
    pub fn is_listening(&self) -> bool {
        match &*self.backend {
            Backend::Memory(_) => true,
            Backend::Redis(redis) => redis.is_listening(),
        }
    }

    /// Receives every change published by any instance (including this one). A receiver that
    /// lags (`RecvError::Lagged`) should treat it as [`ChangeEvent::All`].
    pub fn subscribe_changes(&self) -> broadcast::Receiver<ChangeEvent> {
        match &*self.backend {
            Backend::Memory(memory) => memory.changes().subscribe(),
            Backend::Redis(redis) => redis.changes().subscribe(),
        }
    }
}

/// Whether revocations found under a token's jti, sid, client and tenant keys (their
/// cut-offs) cover a token issued at `iat`: exactly [`Revocation::covers`].
fn covered(
    jti: Option<UnixTime>,
    sid: Option<UnixTime>,
    client: Option<UnixTime>,
    tenant: Option<UnixTime>,
    iat: UnixTime,
) -> bool {
    jti.is_some()
        || sid.is_some()
        || client.is_some_and(|cutoff| iat <= cutoff)
        || tenant.is_some_and(|cutoff| iat <= cutoff)
}

#[cfg(test)]
mod tests;
