//! [`Verifier`]: verification against an issuer found on the network (feature `remote`).
//!
//! It discovers `jwks_uri` from the issuer's RFC 8414 metadata (or is given it), caches the
//! JWK Set for the `Cache-Control: max-age` the issuer sent (clamped), refetches when a token
//! names an unknown `kid` — at most once per [`VerifierBuilder::min_refetch_interval`], so
//! forged kids cannot make it hammer the issuer — and optionally asks a
//! [`RevocationCheck`] about every valid token.
//!
//! Invariants:
//! - Fetches are single-flight: however many requests wait on a stale or missing key set,
//!   one fetch happens and all of them use its result.
//! - Fails closed: without keys (none fetched yet and the issuer unreachable) every token is
//!   refused with [`AuthError::KeysUnavailable`]. A key set that went stale is still used
//!   while refetching it fails, retried once per `min_refetch_interval`: keys do not become
//!   unsafe at `max-age`, and an issuer outage must not take every resource server down.
//! - Time is the injected [`Clock`]'s.

mod discovery;
mod revocation;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tollgate_domain::{Clock, SystemClock, UnixTime};

use crate::{AuthError, Claims, KeySet, Policy, VerifyError, unverified_key_id, verify_claims};

pub use revocation::{Introspection, RevocationCheck, RevocationFuture};

/// How long a key set is kept when the issuer states no `max-age`.
const DEFAULT_CACHE_SECONDS: u64 = 300;
/// The longest a key set is kept, whatever the issuer says.
const MAX_CACHE_SECONDS: u64 = 86_400;
/// The default of [`VerifierBuilder::min_refetch_interval`].
const DEFAULT_MIN_REFETCH_SECONDS: u64 = 30;
/// The default timeout of one request to the issuer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies access tokens of one issuer, fetching and caching its keys. Cheap to clone
/// (one `Arc`); share one per issuer.
///
/// ```no_run
/// # async fn example() -> Result<(), tollgate_verify::AuthError> {
/// use tollgate_verify::Verifier;
///
/// let verifier = Verifier::builder("https://acme.hub.example.com/", "https://archive.example.com/")
///     .build()?;
/// let claims = verifier.verify("eyJ...").await?;
/// println!("{:?} may {:?}", claims.client_id, claims.scopes);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    /// Where keys come from; `None` for a fixed key set.
    remote: Option<Remote>,
    clock: Arc<dyn Clock>,
    /// The current key set, swapped whole; readers never wait for a fetch.
    keys: RwLock<Arc<KeyState>>,
    /// Held while fetching, so that fetches are single-flight.
    fetch: tokio::sync::Mutex<FetchState>,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

struct Remote {
    http: reqwest::Client,
    location: Location,
    min_refetch_seconds: i64,
    min_cache_seconds: u64,
    max_cache_seconds: u64,
}

enum Location {
    /// Discover `jwks_uri` from the metadata at the first of these URLs that serves it.
    Metadata(Vec<String>),
    JwksUri(String),
}

/// One key set and its freshness.
struct KeyState {
    keys: Arc<KeySet>,
    /// Bumped on every fetch attempt, so that waiters know one happened while they waited.
    generation: u64,
    /// Until when (clock seconds) this state needs no fetch.
    fresh_until: UnixTime,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

#[derive(Default)]
struct FetchState {
    /// `jwks_uri`, once discovered.
    jwks_uri: Option<String>,
    /// When the last fetch was attempted.
    last_attempt_at: Option<UnixTime>,
}

/// Why a fetch is wanted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No keys yet, or their `max-age` has passed.
    Stale,
    /// A token names a `kid` the set does not have; rate limited.
    UnknownKid,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.current();
        f.debug_struct("Verifier")
            .field("policy", &self.inner.policy)
            .field("keys", &state.keys)
            .field("is_remote", &self.inner.remote.is_some())
            .field("has_revocation_check", &self.inner.revocation.is_some())
            .finish()
    }
}

impl Verifier {
    /// Starts configuring a verifier for tokens of `issuer` (its exact `iss`, also the base
    /// of metadata discovery) meant for `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(Policy::new(issuer, audience))
    }

    /// A verifier with a fixed key set and no network access (e.g. keys from a file, or
    /// tests).
    pub fn from_key_set(keys: KeySet, policy: Policy) -> Self {
        Self::from_parts(keys, policy, None, Arc::new(SystemClock), None)
    }

    fn from_parts(
        keys: KeySet,
        policy: Policy,
        remote: Option<Remote>,
        clock: Arc<dyn Clock>,
        revocation: Option<Arc<dyn RevocationCheck>>,
    ) -> Self {
        let fresh_until = if remote.is_some() {
            UnixTime::MIN
        } else {
            UnixTime::MAX
        };
        Self {
            inner: Arc::new(Inner {
                policy,
                remote,
                clock,
                keys: RwLock::new(Arc::new(KeyState {
                    keys: Arc::new(keys),
                    generation: 0,
                    fresh_until,
                    last_error: None,
                })),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
                revocation,
            }),
        }
    }

    /// The policy tokens are checked against.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Fetches the key set now unless a fresh one is cached; for warming up at start so the
    /// first request does not wait, and for readiness checks.
    pub async fn ready(&self) -> Result<(), AuthError> {
        let state = self.fresh_keys().await?;
        match &state.last_error {
            Some(error) if state.keys.is_empty() => Err(AuthError::KeysUnavailable(error.clone())),
            None if state.keys.is_empty() && self.inner.remote.is_some() => Err(
                AuthError::KeysUnavailable("the issuer publishes no usable key".to_owned()),
            ),
            _ => Ok(()),
        }
    }

    /// Verifies `token` (the bare compact JWS, without `Bearer `) and returns its claims.
    /// Scopes are not checked here: see [`Claims::has_scopes`] and the layers.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let state = self.fresh_keys().await?;
        let claims = match self.verify_with(&state, token) {
            Err(AuthError::InvalidToken(VerifyError::UnknownKey))
                if self.inner.remote.is_some() && unverified_key_id(token).is_some() =>
            {
                let state = self.refresh(state.generation, Reason::UnknownKid).await?;
                self.verify_with(&state, token)?
            }
            other => other?,
        };
        self.check_revocation(token, &claims).await?;
        Ok(claims)
    }

    /// Verifies `token` with the keys already cached, without waiting for any fetch: for
    /// synchronous callers such as a tonic `Interceptor`. A token whose key is not cached
    /// (or, with no keys yet, any token) is refused, and a fetch is started in the background
    /// (when called inside a tokio runtime) so a retry can succeed. The revocation check,
    /// being asynchronous, is not made: prefer [`Verifier::verify`] and the tower layer.
    pub fn verify_cached(&self, token: &str) -> Result<Claims, AuthError> {
        let state = self.current();
        let now = self.inner.clock.now();
        let result = self.verify_with(&state, token);
        let is_unknown = matches!(
            result,
            Err(AuthError::InvalidToken(VerifyError::UnknownKey) | AuthError::KeysUnavailable(_))
        );
        if self.inner.remote.is_some() && (now >= state.fresh_until || is_unknown) {
            let reason = if is_unknown {
                Reason::UnknownKid
            } else {
                Reason::Stale
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let verifier = self.clone();
                let generation = state.generation;
                runtime.spawn(async move {
                    // The outcome lands in the shared state; nobody awaits it here.
                    let _ = verifier.refresh(generation, reason).await;
                });
            }
        }
        result
    }

    fn verify_with(&self, state: &KeyState, token: &str) -> Result<Claims, AuthError> {
        // No usable key from a remote issuer (not fetched yet, the fetch failed, or the set
        // has none we can use): nothing can be verified, which is our problem, not the
        // token's.
        if state.keys.is_empty() && self.inner.remote.is_some() {
            let why = state
                .last_error
                .as_deref()
                .unwrap_or(if state.generation == 0 {
                    "keys not fetched yet"
                } else {
                    "the issuer publishes no usable key"
                });
            return Err(AuthError::KeysUnavailable(why.to_owned()));
        }
        let now = self.inner.clock.now();
        Ok(verify_claims(token, &state.keys, &self.inner.policy, now)?)
    }

    async fn check_revocation(&self, token: &str, claims: &Claims) -> Result<(), AuthError> {
        let Some(check) = &self.inner.revocation else {
            return Ok(());
        };
        match check.is_revoked(token, claims).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(AuthError::Revoked),
            Err(error) => Err(AuthError::RevocationUnavailable(error)),
        }
    }

    fn current(&self) -> Arc<KeyState> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current keys, fetched first if they are missing or past their `max-age`.
    async fn fresh_keys(&self) -> Result<Arc<KeyState>, AuthError> {
        let state = self.current();
        if self.inner.clock.now() < state.fresh_until {
            return Ok(state);
        }
        self.refresh(state.generation, Reason::Stale).await
    }

    /// Fetches the key set unless another caller did since `seen_generation`, or (for an
    /// unknown kid) one was attempted less than `min_refetch_interval` ago.
    async fn refresh(
        &self,
        seen_generation: u64,
        reason: Reason,
    ) -> Result<Arc<KeyState>, AuthError> {
        let Some(remote) = &self.inner.remote else {
            return Ok(self.current());
        };
        let mut fetch = self.inner.fetch.lock().await;
        let current = self.current();
        if current.generation != seen_generation {
            return Ok(current);
        }
        let now = self.inner.clock.now();
        let is_rate_limited = fetch
            .last_attempt_at
            .is_some_and(|at| now.saturating_sub(at) < remote.min_refetch_seconds);
        if reason == Reason::UnknownKid && is_rate_limited {
            return Ok(current);
        }
        fetch.last_attempt_at = Some(now);
        let next = match self.fetch_key_set(remote, &mut fetch).await {
            Ok((keys, max_age)) => {
                let seconds = max_age
                    .unwrap_or(DEFAULT_CACHE_SECONDS)
                    .clamp(remote.min_cache_seconds, remote.max_cache_seconds);
                KeyState {
                    keys: Arc::new(keys),
                    generation: current.generation + 1,
                    fresh_until: now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)),
                    last_error: None,
                }
            }
            Err(error) => {
                tracing::warn!(issuer = %self.inner.policy.issuer, error = %error, "cannot refresh the issuer's keys");
                KeyState {
                    // Keep what we had (see the module's invariants); try again later.
                    keys: current.keys.clone(),
                    generation: current.generation + 1,
                    fresh_until: now.saturating_add(remote.min_refetch_seconds),
                    last_error: Some(error),
                }
            }
        };
        let next = Arc::new(next);
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next.clone();
        Ok(next)
    }

    async fn fetch_key_set(
        &self,
        remote: &Remote,
        fetch: &mut FetchState,
    ) -> Result<(KeySet, Option<u64>), String> {
        let jwks_uri = match (&fetch.jwks_uri, &remote.location) {
            (Some(uri), _) | (None, Location::JwksUri(uri)) => uri.clone(),
            (None, Location::Metadata(urls)) => {
                let metadata =
                    discovery::metadata(&remote.http, &self.inner.policy.issuer, urls).await?;
                let uri = metadata
                    .get("jwks_uri")
                    .and_then(serde_json::Value::as_str)
                    .ok_or("the issuer's metadata has no jwks_uri")?
                    .to_owned();
                fetch.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let fetched = discovery::fetch(&remote.http, &jwks_uri).await?;
        let (keys, skipped) = KeySet::from_jwks_json_lenient(&fetched.body)
            .map_err(|error| format!("{jwks_uri}: {error}"))?;
        for reason in skipped {
            tracing::debug!(jwks_uri = %jwks_uri, reason = %reason, "key skipped");
        }
        Ok((keys, fetched.max_age))
    }
}

/// Configures a [`Verifier`].
pub struct VerifierBuilder {
    policy: Policy,
    metadata_url: Option<String>,
    jwks_uri: Option<String>,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    min_refetch_seconds: u64,
    min_cache_seconds: Option<u64>,
    max_cache_seconds: u64,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

impl VerifierBuilder {
    /// A builder for `policy`, which also names the issuer to discover.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            metadata_url: None,
            jwks_uri: None,
            http: None,
            clock: Arc::new(SystemClock),
            min_refetch_seconds: DEFAULT_MIN_REFETCH_SECONDS,
            min_cache_seconds: None,
            max_cache_seconds: MAX_CACHE_SECONDS,
            revocation: None,
        }
    }

    /// Replaces the whole policy (`typ`, audiences, leeway, required claims).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Changes the policy in place, e.g. `.with_policy(|p| p.with_token_types(["JWT"]))`.
    #[must_use]
    pub fn with_policy(mut self, change: impl FnOnce(Policy) -> Policy) -> Self {
        self.policy = change(self.policy);
        self
    }

    /// Reads the metadata from exactly this URL instead of the well-known locations.
    #[must_use]
    pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = Some(url.into());
        self
    }

    /// Fetches keys from this JWKS URL, skipping metadata discovery.
    #[must_use]
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The HTTP client to fetch with (for TLS roots, proxies, timeouts). Note that `https`
    /// issuers need one of reqwest's TLS features enabled in the application.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The clock `exp`, `nbf` and cache lifetimes are read against.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// At most one refetch for an unknown `kid` per this interval (default 30 s); also the
    /// delay before retrying a failed fetch, and the shortest time a key set is cached.
    #[must_use]
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_seconds = interval.as_secs();
        self
    }

    /// Bounds on how long a key set is cached, whatever `Cache-Control: max-age` says
    /// (default: `min_refetch_interval` to one day).
    #[must_use]
    pub fn cache_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_cache_seconds = Some(min.as_secs());
        self.max_cache_seconds = max.as_secs().max(min.as_secs());
        self
    }

    /// Asks `check` about every token that is otherwise valid (e.g. [`Introspection`]).
    #[must_use]
    pub fn revocation_check(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// Builds the verifier. Nothing is fetched until the first token (or
    /// [`Verifier::ready`]).
    pub fn build(self) -> Result<Verifier, AuthError> {
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(DEFAULT_TIMEOUT)
                .build()
                .map_err(|error| AuthError::KeysUnavailable(format!("http client: {error}")))?,
        };
        let location = match (self.jwks_uri, self.metadata_url) {
            (Some(uri), _) => Location::JwksUri(uri),
            (None, Some(url)) => Location::Metadata(vec![url]),
            (None, None) => Location::Metadata(discovery::metadata_urls(&self.policy.issuer)),
        };
        let min_refetch_seconds = i64::try_from(self.min_refetch_seconds).unwrap_or(i64::MAX);
        let remote = Remote {
            http,
            location,
            min_refetch_seconds,
            min_cache_seconds: self.min_cache_seconds.unwrap_or(self.min_refetch_seconds),
            max_cache_seconds: self.max_cache_seconds,
        };
        Ok(Verifier::from_parts(
            KeySet::default(),
            self.policy,
            Some(remote),
            self.clock,
            self.revocation,
        ))
    }
}
