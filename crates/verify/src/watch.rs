//! [`RevocationWatch`]: revocation awareness without a call per request (feature `watch`).
//!
//! It subscribes to Tollgate's `tollgate.v1.TokenService/WatchRevocations` with the resource
//! server's own app credentials, keeps the tenant's revocations in memory (a snapshot
//! replaces everything, later messages add to it, entries are forgotten once every token
//! they can cover has expired) and answers [`RevocationCheck`] from memory. Coverage is
//! [`Revocation::covers`], the very rule the server applies: `jti`, `sid`, `client_id` with
//! the `iat` cut-off, the whole tenant with the `iat` cut-off, each only for tokens whose
//! `cid` is the entry's tenant.
//!
//! Invariants:
//! - **Fails closed.** Before the first snapshot, and whenever nothing (not even a heartbeat)
//!   has been heard for [`RevocationWatchBuilder::stale_after`] (three heartbeats by
//!   default), every check is an error, which the [`Verifier`](crate::Verifier) turns into
//!   [`AuthError::RevocationUnavailable`] (503 / UNAVAILABLE). So is a token lacking a claim
//!   coverage depends on (`cid`, `jti`, `client_id`, `iat`), and any token while an entry of
//!   a kind this version does not know may still cover tokens.
//! - One background task per watch, reconnecting after any interruption with jittered
//!   exponential backoff; it ends when the last clone of the watch is dropped.
//! - Merging two entries for the same target keeps the later cut-off and the later expiry,
//!   which covers at least what both did.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tokio::time::Instant;
use tollgate_domain::{
    ClientSecret, Clock, Revocation, RevocationTarget, SystemClock, TokenFacts, UnixTime,
};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{RevocationEntry, WatchRevocationsRequest, WatchRevocationsResponse};
use tonic::transport::Channel;

use crate::{AuthError, Claims, RevocationCheck, RevocationFuture};

/// The heartbeat assumed until the server states its own.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Heartbeats that may be missed before the copy counts as stale.
const HEARTBEATS_BEFORE_STALE: u32 = 3;
/// How long entries are kept past their `expires_at`: a verifier's leeway may still accept
/// a token a little after its `exp`, and it must still be refused then.
const EXPIRY_GRACE_SECONDS: i64 = 300;
/// The default bounds of the reconnection backoff.
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long opening the stream may take.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A tenant's revocations, followed live from the issuer; a [`RevocationCheck`] answered from
/// memory. Cheap to clone; the background task stops when the last clone is dropped.
///
/// ```no_run
/// # async fn example() -> Result<(), tollgate_verify::AuthError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tollgate_verify::{ClientSecret, RevocationWatch, Verifier};
///
/// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect_lazy();
/// let secret = ClientSecret::new(std::env::var("RS_SECRET").unwrap_or_default());
/// let watch = RevocationWatch::builder(channel, "acme", "archive-server", secret).spawn()?;
/// watch.ready(Duration::from_secs(10)).await?; // the first snapshot
/// let verifier = Verifier::builder("https://acme.hub.example.com/", "https://archive.example.com/")
///     .revocation_check(Arc::new(watch))
///     .build()?;
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RevocationWatch {
    shared: Arc<Shared>,
    _task: Arc<AbortOnDrop>,
}

/// What the background task and the checks share.
struct Shared {
    tenant: String,
    clock: Arc<dyn Clock>,
    /// Overrides three heartbeats as the silence that makes the copy stale.
    stale_after: Option<Duration>,
    state: RwLock<State>,
    /// The number of snapshots received, for [`RevocationWatch::ready`].
    snapshots: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    revocations: RevocationSet,
    /// Whether any snapshot has arrived (on any stream).
    has_snapshot: bool,
    /// The last message (heartbeats included) of a stream that had sent its snapshot.
    last_heard: Option<Instant>,
    /// The server's heartbeat interval.
    heartbeat: Option<Duration>,
    /// Why the stream was last interrupted; cleared by the next message.
    last_error: Option<String>,
}

impl Shared {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The silence after which the copy is stale.
    fn stale_after(&self, state: &State) -> Duration {
        self.stale_after.unwrap_or_else(|| {
            state.heartbeat.unwrap_or(DEFAULT_HEARTBEAT) * HEARTBEATS_BEFORE_STALE
        })
    }

    /// Takes in one message. `is_stream_synced` tells whether this stream already sent its
    /// snapshot; returns whether it has now.
    // When the stream was last heard from is real time: silence is about the connection.
    #[allow(clippy::disallowed_methods)]
    fn apply(&self, message: WatchRevocationsResponse, is_stream_synced: bool) -> bool {
        let now = self.clock.now();
        let is_synced = is_stream_synced || message.is_snapshot;
        {
            let mut state = self.state_mut();
            if let Ok(seconds) = u64::try_from(message.heartbeat_seconds)
                && seconds > 0
            {
                state.heartbeat = Some(Duration::from_secs(seconds));
            }
            if message.is_snapshot {
                state.revocations.replace(&message.revocations, now);
                state.has_snapshot = true;
            } else {
                // Adding is always safe, even before this stream's snapshot.
                for entry in &message.revocations {
                    state.revocations.add(entry, now);
                }
            }
            if is_synced {
                state.last_heard = Some(Instant::now());
                state.last_error = None;
            }
            state.revocations.prune(now);
        }
        if message.is_snapshot {
            self.snapshots.send_modify(|count| *count += 1);
        }
        is_synced
    }

    fn record_interruption(&self, why: String) {
        self.state_mut().last_error = Some(why);
    }

    /// Whether the token of `claims` is revoked; an error when that cannot be known.
    fn check(&self, claims: &Claims) -> Result<bool, String> {
        let state = self.state();
        if !state.has_snapshot {
            return Err(match &state.last_error {
                Some(error) => format!("no revocation snapshot yet: {error}"),
                None => "no revocation snapshot yet".to_owned(),
            });
        }
        let stale_after = self.stale_after(&state);
        let silent_for = state
            .last_heard
            .map_or(Duration::MAX, |heard| heard.elapsed());
        if silent_for > stale_after {
            return Err(format!(
                "the revocation stream has been silent for more than {} ms{}",
                stale_after.as_millis(),
                state
                    .last_error
                    .as_deref()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default()
            ));
        }
        state
            .revocations
            .covers(&token_facts(claims)?, self.clock.now())
    }
}

/// What the background task needs to (re)open the stream.
struct Source {
    client: TokenServiceClient<Channel>,
    client_id: String,
    secret: ClientSecret,
    connect_timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

/// Aborts the background task when the last watch is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for RevocationWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationWatch")
            .field("tenant", &self.shared.tenant)
            .field("status", &self.status())
            .finish()
    }
}

/// A watch's state, for health checks and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    /// Whether a snapshot has arrived: before it, every check fails.
    pub has_snapshot: bool,
    /// Whether checks are answered now (a snapshot, and no silence beyond the limit).
    pub is_answering: bool,
    /// Revocations held in memory.
    pub revocations: usize,
    /// Time since the stream was last heard from, if it ever was.
    pub last_heard: Option<Duration>,
    /// Why the stream was last interrupted, until it is heard from again.
    pub last_error: Option<String>,
}

impl RevocationWatch {
    /// Starts configuring a watch of `tenant`'s revocations over `channel` (Tollgate's gRPC
    /// API), authenticated as the app `client_id` of that tenant (typically the resource
    /// server's own app; it needs no grant).
    pub fn builder(
        channel: Channel,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> RevocationWatchBuilder {
        RevocationWatchBuilder {
            channel,
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret,
            clock: Arc::new(SystemClock),
            stale_after: None,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Waits, at most `timeout`, for the first snapshot; for start-up, so that the first
    /// requests are not refused. Fails with the last interruption's cause.
    pub async fn ready(&self, timeout: Duration) -> Result<(), AuthError> {
        let mut snapshots = self.shared.snapshots.subscribe();
        let arrived = tokio::time::timeout(timeout, snapshots.wait_for(|count| *count > 0)).await;
        match arrived {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AuthError::RevocationUnavailable(
                self.status()
                    .last_error
                    .unwrap_or_else(|| "no revocation snapshot yet".to_owned()),
            )),
        }
    }

    /// The watch's state now.
    pub fn status(&self) -> WatchStatus {
        let state = self.shared.state();
        let last_heard = state.last_heard.map(|heard| heard.elapsed());
        WatchStatus {
            has_snapshot: state.has_snapshot,
            is_answering: state.has_snapshot
                && last_heard.is_some_and(|silence| silence <= self.shared.stale_after(&state)),
            revocations: state.revocations.len(),
            last_heard,
            last_error: state.last_error.clone(),
        }
    }
}

impl RevocationCheck for RevocationWatch {
    fn is_revoked<'a>(&'a self, _token: &'a str, claims: &'a Claims) -> RevocationFuture<'a> {
        Box::pin(std::future::ready(self.shared.check(claims)))
    }
}

/// Configures a [`RevocationWatch`].
pub struct RevocationWatchBuilder {
    channel: Channel,
    tenant: String,
    client_id: String,
    secret: ClientSecret,
    clock: Arc<dyn Clock>,
    stale_after: Option<Duration>,
    min_backoff: Duration,
    max_backoff: Duration,
    connect_timeout: Duration,
}

impl RevocationWatchBuilder {
    /// Refuse to answer after this much silence (default: three of the server's heartbeats,
    /// 15 s with Tollgate's 5 s).
    #[must_use]
    pub fn stale_after(mut self, silence: Duration) -> Self {
        self.stale_after = Some(silence);
        self
    }

    /// Reconnect after `min`, doubling up to `max`, each wait jittered (default 100 ms to
    /// 5 s). The backoff starts over once a stream has delivered its snapshot.
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// How long opening the stream may take (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The clock entries' expiry is read against.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts following the stream in a task on the current tokio runtime. Checks fail until
    /// the first snapshot arrives (see [`RevocationWatch::ready`]).
    pub fn spawn(self) -> Result<RevocationWatch, AuthError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            AuthError::RevocationUnavailable("a revocation watch needs a tokio runtime".to_owned())
        })?;
        let (snapshots, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            tenant: self.tenant,
            clock: self.clock,
            stale_after: self.stale_after,
            state: RwLock::new(State::default()),
            snapshots,
        });
        let source = Source {
            client: TokenServiceClient::new(self.channel),
            client_id: self.client_id,
            secret: self.secret,
            connect_timeout: self.connect_timeout,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
        };
        let task = runtime.spawn(follow(shared.clone(), source));
        Ok(RevocationWatch {
            shared,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }
}

/// Follows the stream for as long as the watch lives (the task is aborted with it):
/// one stream at a time, reconnecting after each interruption.
async fn follow(shared: Arc<Shared>, mut source: Source) {
    let mut failures: u32 = 0;
    loop {
        let (had_snapshot, why) = follow_stream(&shared, &mut source).await;
        failures = if had_snapshot {
            1
        } else {
            failures.saturating_add(1)
        };
        let delay = backoff(source.min_backoff, source.max_backoff, failures);
        tracing::warn!(
            tenant = %shared.tenant,
            reason = %why,
            retry_in_ms = delay.as_millis(),
            "revocation watch interrupted"
        );
        shared.record_interruption(why);
        tokio::time::sleep(delay).await;
    }
}

/// Opens one stream and applies its messages until it fails, ends or falls silent. Returns
/// whether it delivered a snapshot, and why it stopped.
// The snapshot and silence deadlines are about the connection: real time.
#[allow(clippy::disallowed_methods)]
async fn follow_stream(shared: &Shared, source: &mut Source) -> (bool, String) {
    let request = WatchRevocationsRequest {
        tenant: shared.tenant.clone(),
        client_id: source.client_id.clone(),
        client_secret: source.secret.expose().to_owned(),
    };
    let opened = tokio::time::timeout(
        source.connect_timeout,
        source.client.watch_revocations(request),
    )
    .await;
    let mut stream = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return (false, describe(&status)),
        Err(_) => {
            return (
                false,
                format!(
                    "opening the stream took longer than {} ms",
                    source.connect_timeout.as_millis()
                ),
            );
        }
    };
    let mut is_synced = false;
    // Until its snapshot, a stream must deliver it within one silence limit of opening:
    // heartbeats alone would otherwise keep an unsynced stream open forever.
    let snapshot_due = Instant::now() + shared.stale_after(&shared.state());
    loop {
        let silence = shared.stale_after(&shared.state());
        let deadline = if is_synced {
            Instant::now() + silence
        } else {
            snapshot_due
        };
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => is_synced = shared.apply(message, is_synced),
            Ok(Ok(None)) => return (is_synced, "the issuer ended the stream".to_owned()),
            Ok(Err(status)) => return (is_synced, describe(&status)),
            Err(_) if is_synced => {
                return (
                    is_synced,
                    format!("nothing heard for {} ms", silence.as_millis()),
                );
            }
            Err(_) => return (false, "the stream sent no snapshot in time".to_owned()),
        }
    }
}

/// A failed call, for logs: the code and the server's message (never a credential).
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The wait before reconnection attempt `failures` (1-based): "equal jitter", half the
/// exponential delay plus a random part of the other half, so that many resource servers
/// cut off together do not come back at once.
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let delay = min.saturating_mul(1_u32 << exponent).min(max);
    let half = delay / 2;
    let mut bytes = [0_u8; 4];
    let fraction = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    };
    half + half.mul_f64(fraction)
}

/// The claims coverage depends on; a token without them cannot be answered for.
fn token_facts(claims: &Claims) -> Result<TokenFacts<'_>, String> {
    let missing = |name: &str| format!("the token has no {name} claim to check revocation by");
    Ok(TokenFacts {
        tenant_id: claims
            .claim("cid")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("cid"))?,
        jti: claims.token_id.as_deref().ok_or_else(|| missing("jti"))?,
        sid: claims.claim("sid").and_then(Value::as_str).unwrap_or(""),
        client_id: claims
            .client_id
            .as_deref()
            .ok_or_else(|| missing("client_id"))?,
        iat: claims.issued_at.ok_or_else(|| missing("iat"))?,
    })
}

/// The revocations in force, by tenant and target.
#[derive(Debug, Default)]
struct RevocationSet {
    entries: HashMap<(String, RevocationTarget), Revocation>,
    /// An entry of a kind this version cannot read, and until when it may cover tokens.
    unknown: Option<(String, UnixTime)>,
}

impl RevocationSet {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn replace(&mut self, entries: &[RevocationEntry], now: UnixTime) {
        self.entries.clear();
        self.unknown = None;
        for entry in entries {
            self.add(entry, now);
        }
    }

    fn add(&mut self, entry: &RevocationEntry, now: UnixTime) {
        if entry.expires_at.saturating_add(EXPIRY_GRACE_SECONDS) < now {
            return;
        }
        let Some(target) = RevocationTarget::from_parts(&entry.kind, &entry.value) else {
            tracing::warn!(kind = %entry.kind, "revocation of an unknown kind: refusing every token it may cover");
            let until = entry.expires_at.saturating_add(EXPIRY_GRACE_SECONDS);
            let later = self
                .unknown
                .as_ref()
                .is_none_or(|(_, known)| *known < until);
            if later {
                self.unknown = Some((entry.kind.clone(), until));
            }
            return;
        };
        let key = (entry.tenant_id.clone(), target.clone());
        self.entries
            .entry(key)
            .and_modify(|held| {
                held.revoked_at = held.revoked_at.max(entry.revoked_at);
                held.expires_at = held.expires_at.max(entry.expires_at);
            })
            .or_insert_with(|| Revocation {
                tenant_id: entry.tenant_id.clone().into(),
                target,
                revoked_at: entry.revoked_at,
                expires_at: entry.expires_at,
            });
    }

    fn prune(&mut self, now: UnixTime) {
        self.entries
            .retain(|_, held| held.expires_at.saturating_add(EXPIRY_GRACE_SECONDS) >= now);
        if self.unknown.as_ref().is_some_and(|(_, until)| *until < now) {
            self.unknown = None;
        }
    }

    fn covers(&self, token: &TokenFacts<'_>, now: UnixTime) -> Result<bool, String> {
        if let Some((kind, until)) = &self.unknown
            && now <= *until
        {
            return Err(format!(
                "the issuer revoked by {kind:?}, which this verifier cannot check"
            ));
        }
        let targets = [
            RevocationTarget::Token(token.jti.to_owned()),
            RevocationTarget::Secret(token.sid.to_owned()),
            RevocationTarget::App(token.client_id.to_owned()),
            RevocationTarget::Tenant,
        ];
        Ok(targets.into_iter().any(|target| {
            self.entries
                .get(&(token.tenant_id.to_owned(), target))
                .is_some_and(|revocation| revocation.covers(token))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use tollgate_domain::{ManualClock, TokenFacts};
    use tollgate_proto::v1::{RevocationEntry, WatchRevocationsResponse};

    use super::{RevocationSet, Shared, State, backoff, token_facts};
    use crate::Claims;

    fn entry(kind: &str, value: &str, revoked_at: i64, expires_at: i64) -> RevocationEntry {
        RevocationEntry {
            kind: kind.to_owned(),
            value: value.to_owned(),
            revoked_at,
            expires_at,
            tenant_id: "ten_acme".to_owned(),
        }
    }

    /// A token of tenant `ten_acme`, app `c1`, secret `s1`, issued at 100.
    const TOKEN: TokenFacts<'static> = TokenFacts {
        tenant_id: "ten_acme",
        jti: "j1",
        sid: "s1",
        client_id: "c1",
        iat: 100,
    };

    /// Whether `entries`, received as a snapshot at time 150, cover `token` at time `now`.
    fn check(entries: &[RevocationEntry], token: TokenFacts<'_>, now: i64) -> Result<bool, String> {
        let mut set = RevocationSet::default();
        set.replace(entries, 150);
        set.prune(now);
        set.covers(&token, now)
    }

    #[test]
    fn each_kind_covers_what_the_server_says_it_covers() {
        let other_tenant = RevocationEntry {
            tenant_id: "ten_globex".to_owned(),
            ..entry("tenant", "", 200, 1000)
        };
        let later_token = TokenFacts { iat: 101, ..TOKEN };
        let other_cid = TokenFacts {
            tenant_id: "ten_globex",
            ..TOKEN
        };
        #[rustfmt::skip]
        /// Name, entries of the snapshot, token, time of the check, answer.
        type Case<'a> = (&'a str, Vec<RevocationEntry>, TokenFacts<'a>, i64, Result<bool, String>);
        let cases: Vec<Case<'_>> = vec![
            ("nothing revoked", vec![], TOKEN, 150, Ok(false)),
            (
                "its jti",
                vec![entry("jti", "j1", 120, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "another jti",
                vec![entry("jti", "j2", 120, 1000)],
                TOKEN,
                150,
                Ok(false),
            ),
            (
                "its secret",
                vec![entry("sid", "s1", 120, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "its secret, later tokens too",
                vec![entry("sid", "s1", 90, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "another secret",
                vec![entry("sid", "s2", 120, 1000)],
                TOKEN,
                150,
                Ok(false),
            ),
            (
                "its app, issued before",
                vec![entry("client", "c1", 120, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "its app, same second",
                vec![entry("client", "c1", 100, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "its app, issued after",
                vec![entry("client", "c1", 100, 1000)],
                later_token,
                150,
                Ok(false),
            ),
            (
                "another app",
                vec![entry("client", "c2", 120, 1000)],
                TOKEN,
                150,
                Ok(false),
            ),
            (
                "its tenant, issued before",
                vec![entry("tenant", "", 100, 1000)],
                TOKEN,
                150,
                Ok(true),
            ),
            (
                "its tenant, issued after",
                vec![entry("tenant", "", 100, 1000)],
                later_token,
                150,
                Ok(false),
            ),
            (
                "another tenant's entry",
                vec![other_tenant],
                TOKEN,
                150,
                Ok(false),
            ),
            (
                "a jti of another cid",
                vec![entry("jti", "j1", 120, 1000)],
                other_cid,
                150,
                Ok(false),
            ),
            (
                "kept within the grace",
                vec![entry("jti", "j1", 120, 1000)],
                TOKEN,
                1300,
                Ok(true),
            ),
            (
                "forgotten after the grace",
                vec![entry("jti", "j1", 120, 1000)],
                TOKEN,
                1301,
                Ok(false),
            ),
            (
                "expired on arrival",
                vec![entry("jti", "j1", 0, -151)],
                TOKEN,
                150,
                Ok(false),
            ),
            (
                "an unknown kind",
                vec![entry("audience", "x", 120, 1000)],
                TOKEN,
                150,
                Err(
                    r#"the issuer revoked by "audience", which this verifier cannot check"#
                        .to_owned(),
                ),
            ),
            (
                "an unknown kind, expired",
                vec![entry("audience", "x", 120, 1000)],
                TOKEN,
                1301,
                Ok(false),
            ),
        ];
        for (name, entries, token, now, expected) in cases {
            assert_eq!(check(&entries, token, now), expected, "{name}");
        }
    }

    #[test]
    fn merged_entries_keep_the_later_cut_off_and_expiry() {
        let mut set = RevocationSet::default();
        set.add(&entry("client", "c1", 90, 500), 150);
        set.add(&entry("client", "c1", 100, 1000), 150);
        set.add(&entry("client", "c1", 80, 400), 150);
        assert_eq!(set.len(), 1);
        assert_eq!(set.covers(&TOKEN, 150), Ok(true));
        set.prune(1000 + 300);
        assert_eq!(set.covers(&TOKEN, 1300), Ok(true));
        // A snapshot replaces everything, the unknown kinds included.
        set.add(&entry("audience", "x", 0, 2000), 150);
        set.replace(&[entry("jti", "j2", 0, 1000)], 150);
        assert_eq!(set.len(), 1);
        assert_eq!(set.covers(&TOKEN, 150), Ok(false));
    }

    fn claims(raw: serde_json::Value) -> Claims {
        let raw = raw.as_object().cloned().unwrap_or_default();
        Claims {
            issuer: "http://acme/".to_owned(),
            subject: None,
            audiences: vec![],
            expires_at: 1000,
            not_before: None,
            issued_at: raw.get("iat").and_then(serde_json::Value::as_i64),
            token_id: raw.get("jti").and_then(|v| v.as_str()).map(str::to_owned),
            client_id: raw
                .get("client_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            scopes: vec![],
            key_id: "k".to_owned(),
            raw,
        }
    }

    #[test]
    fn a_token_without_the_claims_coverage_needs_cannot_be_answered_for() {
        let full =
            json!({"cid": "ten_acme", "jti": "j1", "sid": "s1", "client_id": "c1", "iat": 100});
        assert!(token_facts(&claims(full.clone())).is_ok());
        for name in ["cid", "jti", "client_id", "iat"] {
            let mut partial = full.clone();
            if let Some(map) = partial.as_object_mut() {
                map.remove(name);
            }
            assert_eq!(
                token_facts(&claims(partial)).err(),
                Some(format!(
                    "the token has no {name} claim to check revocation by"
                )),
            );
        }
        // `sid` is optional: no secret revocation can cover a token without one.
        let mut without_sid = full;
        if let Some(map) = without_sid.as_object_mut() {
            map.remove("sid");
        }
        assert_eq!(token_facts(&claims(without_sid)).map(|t| t.sid), Ok(""));
    }

    fn shared(stale_after: Option<Duration>) -> Shared {
        let (snapshots, _) = tokio::sync::watch::channel(0);
        Shared {
            tenant: "acme".to_owned(),
            clock: Arc::new(ManualClock::new(150)),
            stale_after,
            state: std::sync::RwLock::new(State::default()),
            snapshots,
        }
    }

    fn message(is_snapshot: bool, revocations: Vec<RevocationEntry>) -> WatchRevocationsResponse {
        WatchRevocationsResponse {
            is_snapshot,
            revocations,
            heartbeat_seconds: 5,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_fail_closed_before_the_snapshot_and_after_three_silent_heartbeats() {
        let shared = shared(None);
        let token = claims(
            json!({"cid": "ten_acme", "jti": "j1", "sid": "s1", "client_id": "c1", "iat": 100}),
        );
        assert_eq!(
            shared.check(&token),
            Err("no revocation snapshot yet".to_owned())
        );
        // Updates before the stream's snapshot are kept, but do not make it answer.
        let is_synced = shared.apply(message(false, vec![entry("jti", "j9", 0, 1000)]), false);
        assert!(!is_synced);
        assert!(shared.check(&token).is_err());

        let is_synced = shared.apply(message(true, vec![]), false);
        assert!(is_synced);
        assert_eq!(shared.check(&token), Ok(false));
        shared.apply(message(false, vec![entry("jti", "j1", 120, 1000)]), true);
        assert_eq!(shared.check(&token), Ok(true));

        // Heartbeats keep it answering; 15 s (three of them) of silence do not.
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(shared.check(&token), Ok(true));
        shared.apply(message(false, vec![]), true);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(shared.check(&token), Ok(true));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            shared.check(&token),
            Err("the revocation stream has been silent for more than 15000 ms".to_owned())
        );
        // A new stream's snapshot replaces the copy and makes it answer again.
        shared.record_interruption("Unavailable: server shutting down".to_owned());
        assert_eq!(
            shared.check(&token),
            Err("the revocation stream has been silent for more than 15000 ms: Unavailable: server shutting down".to_owned())
        );
        shared.apply(message(true, vec![]), false);
        assert_eq!(shared.check(&token), Ok(false));
    }

    #[tokio::test(start_paused = true)]
    async fn the_silence_limit_follows_the_servers_heartbeat_unless_set() {
        let token = claims(
            json!({"cid": "ten_acme", "jti": "j1", "sid": "s1", "client_id": "c1", "iat": 100}),
        );
        let following = shared(None);
        following.apply(
            WatchRevocationsResponse {
                heartbeat_seconds: 1,
                ..message(true, vec![])
            },
            false,
        );
        tokio::time::advance(Duration::from_millis(3001)).await;
        assert!(following.check(&token).is_err());

        let fixed = shared(Some(Duration::from_millis(500)));
        fixed.apply(message(true, vec![]), false);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(fixed.check(&token), Ok(false));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(fixed.check(&token).is_err());
    }

    #[test]
    fn reconnection_waits_grow_with_jitter_up_to_the_maximum() {
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let cases = [
            // failures, at least, at most
            (1,  ms(50),    ms(100)),
            (2,  ms(100),   ms(200)),
            (4,  ms(400),   ms(800)),
            (7,  ms(2_500), ms(5_000)),
            (40, ms(2_500), ms(5_000)),
        ];
        for (failures, low, high) in cases {
            for _ in 0..20 {
                let delay = backoff(ms(100), ms(5_000), failures);
                assert!(low <= delay && delay <= high, "{failures}: {delay:?}");
            }
        }
        let draws: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(ms(100), ms(5_000), 5)).collect();
        assert!(draws.len() > 1);
    }
}
