//! The Redis backend. Commands go through one multiplexed [`ConnectionManager`] (it
//! reconnects on its own after an I/O error); change notifications through a dedicated
//! pub/sub connection owned by a background task. The key layout is in the crate docs.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{RedisError, RedisResult, Script};
use tokio::sync::broadcast;
use tokio::time::timeout;
use tokio_stream::StreamExt;
use tollgate_domain::{
    Clock, Revocation, RevocationTarget, TenantId, TenantName, TokenFacts, UnixTime,
};

use crate::gcra::{Limit, LocalLimiter};
use crate::keys::KeySpace;
use crate::{ChangeEvent, RateDecision, RevocationStatus, StateError, covered};

/// Deadline of one operation, a reconnect-and-retry included.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadline of one connection attempt (and of one reply on the command connection).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Deadline of the initial connection, subscription and checks in `connect`.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed rate-limit call, Redis is not tried again for this long.
const RATE_BYPASS: Duration = Duration::from_secs(1);
/// At most one "rate limiting is degraded" warning this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The subscriber pings this often, so a silently dead connection is noticed.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Backoff of the subscriber's reconnection attempts.
const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);
/// Revocations per script call: bounds how long one call blocks Redis.
const WRITE_CHUNK: usize = 256;
/// Longest revocation TTL written (a year); `expires_at` is never that far off in practice.
const MAX_TTL_SECONDS: i64 = 366 * 86_400;

/// Merges revocations: keeps the later cut-off and the longer TTL of what is held and what
/// is added. `KEYS[i]` is a revocation key, `ARGV[2i-1]` its cut-off (Unix seconds),
/// `ARGV[2i]` its TTL (ms).
const ADD_REVOCATIONS_LUA: &str = r"
for i, key in ipairs(KEYS) do
  local cutoff = tonumber(ARGV[2 * i - 1])
  local ttl = tonumber(ARGV[2 * i])
  local held = tonumber(redis.call('GET', key))
  if held then
    if held > cutoff then cutoff = held end
    local held_ttl = redis.call('PTTL', key)
    if held_ttl > ttl then ttl = held_ttl end
  end
  redis.call('SET', key, string.format('%d', cutoff), 'PX', string.format('%d', ttl))
end
return #KEYS
";

/// GCRA (see `gcra.rs` for the arithmetic, which this mirrors). `KEYS[1]` is the bucket,
/// `ARGV[1]` the emission interval (µs), `ARGV[2]` the burst. Returns `{allowed (0|1),
/// remaining, retry_after (µs), reset_after (µs)}`. Time is the server's, so instances with
/// skewed clocks agree; effects replication (the default since Redis 5, and forced here for
/// older servers) makes reading TIME before writing legal.
const GCRA_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local horizon = now + interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat > horizon then
  return {0, 0, new_tat - horizon, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, math.floor((horizon - new_tat) / interval), 0, new_tat - now}
";

pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    keys: KeySpace,
    add_script: Script,
    gcra_script: Script,
    /// Buckets used while Redis is unreachable; also the clock of the fields below.
    fallback: LocalLimiter,
    /// Until when (µs on `fallback`'s clock) rate limiting skips Redis.
    bypass_until_us: AtomicU64,
    /// When (µs on `fallback`'s clock) the next degraded warning may be logged.
    next_warning_us: AtomicU64,
    /// Whether the last rate-limit decision was degraded (to log the recovery once).
    degraded: AtomicBool,
    changes: broadcast::Sender<ChangeEvent>,
    /// Whether the listener is subscribed now: while it is not, published changes are lost.
    listening: Arc<AtomicBool>,
    listener: tokio::task::AbortHandle,
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // The listener holds no reference to the backend; without this it would run forever.
        self.listener.abort();
    }
}

impl RedisBackend {
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StateError> {
        let keys = KeySpace::new(prefix)?;
        let client = redis::Client::open(url).map_err(StateError::InvalidUrl)?;
        // One attempt per reconnection: a command during an outage should fail fast (the
        // next one triggers the next attempt), not wait out a backoff schedule.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT);
        let start = async {
            let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            let pubsub = subscribe(&client, &keys.channel()).await?;
            Ok::<_, RedisError>((conn, pubsub))
        };
        let (mut conn, pubsub) = timeout(START_TIMEOUT, start)
            .await
            .map_err(|_| StateError::Timeout(START_TIMEOUT))??;
        warn_unless_noeviction(&mut conn).await;

        let (changes, _) = broadcast::channel(crate::CHANGE_CHANNEL_CAPACITY);
        let listening = Arc::new(AtomicBool::new(true));
        let listener = tokio::spawn(listen(
            client,
            keys.channel(),
            changes.clone(),
            pubsub,
            Arc::clone(&listening),
        ));
        Ok(Self {
            conn,
            keys,
            add_script: Script::new(ADD_REVOCATIONS_LUA),
            gcra_script: Script::new(GCRA_LUA),
            fallback: LocalLimiter::new(clock),
            bypass_until_us: AtomicU64::new(0),
            next_warning_us: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            changes,
            listening,
            listener: listener.abort_handle(),
        })
    }

    pub(crate) async fn add_revocations(
        &self,
        entries: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        let items = self.items(entries, now)?;
        for chunk in items.chunks(WRITE_CHUNK) {
            let mut invocation = self.add_script.prepare_invoke();
            for (key, _, _) in chunk {
                invocation.key(key);
            }
            for (_, cutoff, ttl_ms) in chunk {
                invocation.arg(cutoff).arg(ttl_ms);
            }
            let invocation = &invocation;
            self.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn replace_revocations(
        &self,
        all_live: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        // Data first, marker last: a check that sees the marker sees the data.
        self.add_revocations(all_live, now).await?;
        let mut set = redis::cmd("SET");
        set.arg(self.keys.marker()).arg(now);
        let set = &set;
        self.run(|mut conn| async move { set.query_async::<()>(&mut conn).await })
            .await
    }

    pub(crate) async fn revocation_status(
        &self,
        token: &TokenFacts<'_>,
    ) -> Result<RevocationStatus, StateError> {
        let [jti, sid, client, tenant] = self.keys.token_keys(token)?;
        let mut mget = redis::cmd("MGET");
        mget.arg(&jti)
            .arg(&sid)
            .arg(&client)
            .arg(&tenant)
            .arg(self.keys.marker());
        let mget = &mget;
        let values: Vec<Option<String>> = self
            .run(|mut conn| async move { mget.query_async(&mut conn).await })
            .await?;
        let [jti, sid, client, tenant, marker] =
            <[Option<String>; 5]>::try_from(values).map_err(|_| StateError::CorruptValue)?;
        let [jti, sid, client, tenant] = [jti, sid, client, tenant].map(|value| {
            value
                .map(|value| value.parse::<UnixTime>())
                .transpose()
                .map_err(|_| StateError::CorruptValue)
        });
        if covered(jti?, sid?, client?, tenant?, token.iat) {
            // Whatever the marker says: this revocation is real.
            Ok(RevocationStatus::Revoked)
        } else if marker.is_some() {
            Ok(RevocationStatus::NotRevoked)
        } else {
            Ok(RevocationStatus::Unknown)
        }
    }

    pub(crate) async fn ping(&self) -> Result<(), StateError> {
        let ping = &redis::cmd("PING");
        self.run(|mut conn| async move { ping.query_async::<()>(&mut conn).await })
            .await
    }

    pub(crate) async fn is_populated(&self) -> Result<bool, StateError> {
        let mut exists = redis::cmd("EXISTS");
        exists.arg(self.keys.marker());
        let exists = &exists;
        self.run(|mut conn| async move { exists.query_async(&mut conn).await })
            .await
    }

    pub(crate) async fn check_rate(&self, key: &str, limit: Limit) -> RateDecision {
        let now = self.fallback.now_us();
        if now < self.bypass_until_us.load(Ordering::Relaxed) {
            return self.fallback.check(key, limit).into_decision(limit, true);
        }
        let mut invocation = self.gcra_script.prepare_invoke();
        invocation
            .key(self.keys.rate(key))
            .arg(limit.interval_us)
            .arg(limit.burst);
        let invocation = &invocation;
        let result = self
            .run(|mut conn| async move {
                invocation
                    .invoke_async::<(i64, i64, i64, i64)>(&mut conn)
                    .await
            })
            .await;
        match result {
            Ok((allowed, remaining, retry_after_us, reset_after_us)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis is reachable again: rate limits are shared again");
                }
                let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
                RateDecision {
                    allowed: allowed == 1,
                    limit: limit.burst,
                    remaining: u32::try_from(remaining).unwrap_or(0),
                    retry_after: micros(retry_after_us),
                    reset_after: micros(reset_after_us),
                    degraded: false,
                }
            }
            Err(error) => {
                let now = self.fallback.now_us();
                self.bypass_until_us.store(
                    now.saturating_add(micros_of(RATE_BYPASS)),
                    Ordering::Relaxed,
                );
                self.degraded.store(true, Ordering::Relaxed);
                self.warn_degraded(now, &error);
                self.fallback.check(key, limit).into_decision(limit, true)
            }
        }
    }

    pub(crate) async fn publish_change(&self, tenant: &TenantName) {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.keys.channel()).arg(tenant.as_str());
        let publish = &publish;
        let result = self
            .run(|mut conn| async move { publish.query_async::<i64>(&mut conn).await })
            .await;
        if let Err(error) = result {
            tracing::warn!(
                %error,
                tenant = tenant.as_str(),
                "could not publish a configuration change; other instances will see it through \
                 their database poll"
            );
            // This instance at least must not serve its own stale view.
            let _ = self.changes.send(ChangeEvent::Tenant(tenant.clone()));
        }
    }

    /// Publishes `revocation` on the change channel (see [`revocation_message`]); if that
    /// fails, this instance's subscribers still hear of it.
    pub(crate) async fn publish_revocation(&self, revocation: &Revocation) {
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(self.keys.channel())
            .arg(revocation_message(revocation));
        let publish = &publish;
        let published = self
            .run(|mut conn| async move { publish.query_async::<i64>(&mut conn).await })
            .await;
        if let Err(error) = published {
            tracing::warn!(
                error = %error,
                "could not publish a revocation; other instances' watchers will see it when they next read the database"
            );
            let _ = self.changes.send(ChangeEvent::Revoked(revocation.clone()));
        }
    }

    pub(crate) fn changes(&self) -> &broadcast::Sender<ChangeEvent> {
        &self.changes
    }

    /// Whether the subscription to changes stands now.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Keys, cut-offs and TTLs (ms) of the entries still live at `now`; fails if any key is
    /// invalid, before anything is written.
    fn items(
        &self,
        entries: &[Revocation],
        now: UnixTime,
    ) -> Result<Vec<(String, UnixTime, i64)>, StateError> {
        let mut items = Vec::with_capacity(entries.len());
        for revocation in entries {
            let key = self.keys.revocation(revocation)?;
            let ttl = revocation.expires_at.saturating_sub(now);
            if ttl <= 0 {
                continue;
            }
            items.push((key, revocation.revoked_at, ttl.min(MAX_TTL_SECONDS) * 1000));
        }
        Ok(items)
    }

    /// Runs `op` on the shared connection within [`OP_TIMEOUT`], once more if the connection
    /// failed (the manager starts reconnecting on such a failure and the retry awaits that
    /// fresh attempt: after a Redis restart the first command on the old connection fails
    /// that way).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match op(self.conn.clone()).await {
                Err(error) if is_connection_failure(&error) => op(self.conn.clone()).await,
                result => result,
            }
        };
        match timeout(OP_TIMEOUT, attempts).await {
            Ok(result) => result.map_err(StateError::from),
            Err(_) => Err(StateError::Timeout(OP_TIMEOUT)),
        }
    }

    fn warn_degraded(&self, now: u64, error: &StateError) {
        let next = self.next_warning_us.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_warning_us
                .compare_exchange(
                    next,
                    now.saturating_add(micros_of(WARN_EVERY)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                %error,
                "redis is unreachable: rate limits are enforced per instance until it is back"
            );
        }
    }
}

fn micros_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Whether the connection, not the command, failed. A refusal counts: it may be the stale
/// result of a reconnection attempted during an outage that has since ended, and the
/// manager's next attempt is fresh.
fn is_connection_failure(error: &RedisError) -> bool {
    error.is_io_error()
}

/// Warns when Redis may evict keys (see the crate docs). `CONFIG` may be disabled (managed
/// Redis); then nothing can be checked and nothing is said beyond a debug line.
async fn warn_unless_noeviction(conn: &mut ConnectionManager) {
    let mut config = redis::cmd("CONFIG");
    config.arg("GET").arg("maxmemory-policy");
    match timeout(OP_TIMEOUT, config.query_async::<Vec<String>>(conn)).await {
        Ok(Ok(reply)) => match reply.get(1).map(String::as_str) {
            Some("noeviction") | None => {}
            Some(policy) => tracing::warn!(
                policy,
                "redis maxmemory-policy is not noeviction: an evicted revocation would be \
                 forgotten; set maxmemory-policy noeviction"
            ),
        },
        Ok(Err(error)) => tracing::debug!(%error, "cannot read redis maxmemory-policy"),
        Err(_) => tracing::debug!("cannot read redis maxmemory-policy: timeout"),
    }
}

/// What starts a revocation's message on the change channel. Tenant names (the channel's
/// other messages) are DNS labels, which cannot contain `|`.
const REVOCATION_PREFIX: &str = "revoked|";

/// `revoked|<tenant id>|<revoked_at>|<expires_at>|<kind>|<subject>`: the subject last, so
/// that whatever it holds cannot shift the other fields.
fn revocation_message(revocation: &Revocation) -> String {
    format!(
        "{REVOCATION_PREFIX}{}|{}|{}|{}|{}",
        revocation.tenant_id,
        revocation.revoked_at,
        revocation.expires_at,
        revocation.target.kind(),
        revocation.target.subject()
    )
}

/// The inverse of [`revocation_message`].
fn parse_revocation_message(text: &str) -> Option<Revocation> {
    let mut parts = text.strip_prefix(REVOCATION_PREFIX)?.splitn(5, '|');
    let tenant_id = TenantId::new(parts.next()?);
    let revoked_at = parts.next()?.parse().ok()?;
    let expires_at = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let target = RevocationTarget::from_parts(kind, parts.next()?)?;
    Some(Revocation {
        tenant_id,
        target,
        revoked_at,
        expires_at,
    })
}

/// A pub/sub connection subscribed to `channel`.
async fn subscribe(client: &redis::Client, channel: &str) -> RedisResult<PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Forwards every message on `channel` into `changes`, forever: after losing the connection
/// it re-subscribes with backoff and then emits [`ChangeEvent::All`], since anything
/// published meanwhile is lost. `listening` says whether it is subscribed.
async fn listen(
    client: redis::Client,
    channel: String,
    changes: broadcast::Sender<ChangeEvent>,
    mut pubsub: PubSub,
    listening: Arc<AtomicBool>,
) {
    loop {
        forward(pubsub, &changes).await;
        listening.store(false, Ordering::SeqCst);
        tracing::warn!("lost the redis subscription to configuration changes; reconnecting");
        pubsub = resubscribe(&client, &channel).await;
        // Before `All`: whoever re-reads on `All` may then stop reading on its own.
        listening.store(true, Ordering::SeqCst);
        tracing::info!("re-subscribed to redis configuration changes");
        let _ = changes.send(ChangeEvent::All);
    }
}

/// Forwards messages until the connection is lost (the stream ends or a ping goes
/// unanswered).
async fn forward(pubsub: PubSub, changes: &broadcast::Sender<ChangeEvent>) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the connection was just proven alive.
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return };
                let event = match message.get_payload::<String>() {
                    Ok(text) if text.starts_with(REVOCATION_PREFIX) => match parse_revocation_message(&text) {
                        Some(revocation) => ChangeEvent::Revoked(revocation),
                        None => {
                            tracing::warn!("ignoring an unreadable revocation notification; watchers re-read every revocation");
                            ChangeEvent::All
                        }
                    },
                    Ok(name) => match TenantName::parse(&name) {
                        Ok(tenant) => ChangeEvent::Tenant(tenant),
                        Err(_) => {
                            tracing::warn!("ignoring an invalid tenant name in a change notification; dropping every cached tenant");
                            ChangeEvent::All
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "unreadable change notification; dropping every cached tenant");
                        ChangeEvent::All
                    }
                };
                // No receiver is not an error: nobody caches yet.
                let _ = changes.send(event);
            }
            _ = ping.tick() => {
                if !matches!(timeout(OP_TIMEOUT, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Subscribes again, retrying with exponential backoff (with jitter) until it works.
async fn resubscribe(client: &redis::Client, channel: &str) -> PubSub {
    let jitter = RandomState::new();
    let mut delay = RESUBSCRIBE_MIN_DELAY;
    let mut attempt: u64 = 0;
    loop {
        // Up to +25 %, so that instances do not reconnect in lockstep.
        let spread = jitter.hash_one(attempt) % (micros_of(delay) / 4 + 1);
        tokio::time::sleep(delay + Duration::from_micros(spread)).await;
        match timeout(CONNECT_TIMEOUT, subscribe(client, channel)).await {
            Ok(Ok(pubsub)) => return pubsub,
            Ok(Err(error)) if attempt.is_multiple_of(10) => {
                tracing::warn!(%error, attempt, "cannot re-subscribe to redis yet");
            }
            Err(_) if attempt.is_multiple_of(10) => {
                tracing::warn!(attempt, "cannot re-subscribe to redis yet: timeout");
            }
            _ => {}
        }
        attempt += 1;
        delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn revocation_messages_round_trip() {
        for target in [
            RevocationTarget::Token("jti_1".to_owned()),
            RevocationTarget::Secret("sec_1".to_owned()),
            RevocationTarget::App("odd|client".to_owned()),
            RevocationTarget::Tenant,
        ] {
            let revocation = Revocation {
                tenant_id: "ten_1".into(),
                target,
                revoked_at: 1_700_000_000,
                expires_at: 1_700_090_000,
            };
            let message = revocation_message(&revocation);
            assert_eq!(parse_revocation_message(&message), Some(revocation));
        }
        assert_eq!(parse_revocation_message("acme"), None);
        assert_eq!(parse_revocation_message("revoked|ten_1|x|1|jti|a"), None);
        assert_eq!(parse_revocation_message("revoked|ten_1|1|1|nope|a"), None);
    }
}
