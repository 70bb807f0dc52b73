//! [`TokenClient`]: the cache in front of a [`TokenSource`].
//!
//! Invariants:
//! - One cache entry per [`TokenRequest`] (audience and sorted scopes).
//! - A token is used until `skew` before it expires (the skew is at most half its lifetime,
//!   so short-lived tokens are not refetched on every call).
//! - Single-flight: when an entry is missing or expired, one caller fetches and every
//!   concurrent caller for that entry waits for that fetch and shares its outcome, success
//!   or failure. 1,000 callers with an expired token cause one request (plus its retries).
//! - Refresh ahead: from the refresh time until expiry, one caller refreshes while the others
//!   keep getting the current, still valid token without waiting; if the refresh fails, the
//!   current token is served until it expires and the refresh is retried after a pause.
//! - Only transient failures are retried (see [`RetryPolicy`]); a rejection is final.
//! - Time is the injected [`Clock`]'s (whole seconds), so tests move time instead of
//!   sleeping; backoff waits are real.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tollgate_domain::{Clock, SystemClock, UnixTime};

use crate::{AccessToken, FetchError, RetryPolicy, TokenError, TokenRequest, TokenSource};

/// The default refresh skew: a token is replaced this long before it expires.
const DEFAULT_SKEW: Duration = Duration::from_secs(60);
/// The lifetime assumed when the server does not send `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The default time one attempt may take.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A cached access token. Cheap to clone; `Debug` does not show the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub access_token: AccessToken,
    /// When it expires (clock seconds).
    pub expires_at: UnixTime,
    /// When the client replaces it (`expires_at` minus the skew).
    pub refresh_at: UnixTime,
    /// The granted scopes, if the server said.
    pub scopes: Option<Arc<[String]>>,
}

impl Token {
    /// `Bearer <token>` as a header value, marked sensitive (not logged by HTTP stacks that
    /// honour the mark, never indexed by HPACK).
    pub fn authorization(&self) -> Result<http::HeaderValue, TokenError> {
        let mut value =
            http::HeaderValue::try_from(format!("Bearer {}", self.access_token.expose())).map_err(
                |_| TokenError::Invalid("the token is not a valid header value".to_owned()),
            )?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Gets access tokens from a [`TokenSource`], caching them per [`TokenRequest`]. Cheap to
/// clone (one `Arc`); share one per client identity.
///
/// Runs on tokio with timers enabled (`#[tokio::main]` does; a hand-built runtime needs
/// `enable_all`), for the per-attempt timeout and the backoff. Only the caller that refreshes
/// a token waits for it (and every caller when there is no valid token at all); for calls
/// that must never wait, keep the token fresh with [`BackgroundToken`](crate::BackgroundToken).
#[derive(Clone)]
pub struct TokenClient {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TokenSource>,
    retry: RetryPolicy,
    skew: Duration,
    attempt_timeout: Duration,
    clock: Arc<dyn Clock>,
    entries: RwLock<HashMap<TokenRequest, Arc<Entry>>>,
    /// Attempts made, for metrics and tests.
    attempts: AtomicU64,
}

/// One cache entry.
#[derive(Default)]
struct Entry {
    current: RwLock<Option<Token>>,
    /// Held while fetching; holds the outcome of the last fetch so that callers who waited
    /// for it share a failure instead of each trying again.
    fetch: tokio::sync::Mutex<Option<Result<Token, TokenError>>>,
    /// Fetches completed.
    generation: AtomicU64,
    /// After a failed refresh of a still valid token: no new attempt before this time.
    refresh_not_before: AtomicI64,
}

impl Entry {
    /// The cached token, if it has not expired.
    fn current(&self, now: UnixTime) -> Option<Token> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|token| now < token.expires_at)
            .cloned()
    }

    fn fresh(&self, now: UnixTime) -> Option<Token> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|token| now < token.refresh_at)
            .cloned()
    }
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("TokenClient")
            .field("retry", &self.inner.retry)
            .field("skew", &self.inner.skew)
            .field("cached_entries", &entries)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// A client of `source` with the default skew (60 s), retries and timeout.
    pub fn new(source: impl TokenSource) -> Self {
        Self::builder(source).build()
    }

    /// Configures a client of `source`.
    pub fn builder(source: impl TokenSource) -> TokenClientBuilder {
        TokenClientBuilder {
            source: Arc::new(source),
            retry: RetryPolicy::default(),
            skew: DEFAULT_SKEW,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// A token for `request`: the cached one while it is fresh, else one fetch shared by
    /// every concurrent caller.
    pub async fn get_token(&self, request: &TokenRequest) -> Result<Token, TokenError> {
        let entry = self.entry(request);
        let now = self.inner.clock.now();
        let Some(current) = entry.current(now) else {
            return self.fetch_waiting(&entry, request).await;
        };
        if now < current.refresh_at {
            return Ok(current);
        }
        // Between the refresh time and expiry: one caller refreshes, everyone else keeps
        // using the still valid token instead of waiting; a failed refresh is retried after
        // a pause, never by every caller in turn.
        if now < entry.refresh_not_before.load(Ordering::Acquire) {
            return Ok(current);
        }
        let Ok(mut last) = entry.fetch.try_lock() else {
            return Ok(current);
        };
        if let Some(token) = entry.fresh(self.inner.clock.now()) {
            return Ok(token);
        }
        match self.fetch_holding(&entry, &mut last, request).await {
            Ok(token) => Ok(token),
            Err(error) => {
                let pause = self.inner.retry.max_delay.as_secs().max(1);
                let not_before = self
                    .inner
                    .clock
                    .now()
                    .saturating_add(i64::try_from(pause).unwrap_or(i64::MAX));
                entry
                    .refresh_not_before
                    .store(not_before, Ordering::Release);
                tracing::warn!(error = %error, "cannot refresh a token; using the current one until it expires");
                Ok(current)
            }
        }
    }

    /// No usable token: every caller waits for one fetch and shares its outcome.
    async fn fetch_waiting(
        &self,
        entry: &Entry,
        request: &TokenRequest,
    ) -> Result<Token, TokenError> {
        let seen = entry.generation.load(Ordering::Acquire);
        let mut last = entry.fetch.lock().await;
        if let Some(token) = entry.fresh(self.inner.clock.now()) {
            return Ok(token);
        }
        if entry.generation.load(Ordering::Acquire) != seen
            && let Some(Err(error)) = &*last
        {
            // The fetch we waited for failed: share its failure, do not start another.
            return Err(error.clone());
        }
        self.fetch_holding(entry, &mut last, request).await
    }

    /// Fetches while holding the entry's fetch lock, and publishes the outcome.
    async fn fetch_holding(
        &self,
        entry: &Entry,
        last: &mut Option<Result<Token, TokenError>>,
        request: &TokenRequest,
    ) -> Result<Token, TokenError> {
        let outcome = self.fetch(request).await;
        if let Ok(token) = &outcome {
            *entry
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
            entry
                .refresh_not_before
                .store(UnixTime::MIN, Ordering::Release);
        }
        entry.generation.fetch_add(1, Ordering::AcqRel);
        *last = Some(outcome.clone());
        outcome
    }

    /// Drops the cached token for `request`, e.g. after a resource server refused it.
    pub fn invalidate(&self, request: &TokenRequest) {
        if let Some(entry) = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request)
        {
            *entry
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Attempts made against the source so far (retries included).
    pub fn attempts(&self) -> u64 {
        self.inner.attempts.load(Ordering::Relaxed)
    }

    /// The refresh skew.
    pub fn skew(&self) -> Duration {
        self.inner.skew
    }

    /// The clock tokens are timed with.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The retry policy.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    fn entry(&self, request: &TokenRequest) -> Arc<Entry> {
        if let Some(entry) = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request)
        {
            return entry.clone();
        }
        self.inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(request.clone())
            .or_default()
            .clone()
    }

    /// One fetch, with retries of transient failures.
    async fn fetch(&self, request: &TokenRequest) -> Result<Token, TokenError> {
        let retry = &self.inner.retry;
        let max_attempts = retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = self.inner.clock.now();
            self.inner.attempts.fetch_add(1, Ordering::Relaxed);
            let result =
                tokio::time::timeout(self.inner.attempt_timeout, self.inner.source.fetch(request))
                    .await
                    .unwrap_or_else(|_| Err(FetchError::transient("the attempt timed out")));
            let (reason, retry_after) = match result {
                Ok(fetched) => return Ok(self.token(fetched, started)),
                Err(FetchError::Rejected { error, description }) => {
                    return Err(TokenError::Rejected { error, description });
                }
                Err(FetchError::Invalid(why)) => return Err(TokenError::Invalid(why)),
                Err(FetchError::Transient {
                    reason,
                    retry_after,
                }) => (reason, retry_after),
            };
            let delay = retry.delay(attempt, retry_after);
            match delay {
                Some(delay) if attempt < max_attempts => {
                    tracing::debug!(attempt, reason = %reason, delay_ms = delay.as_millis(), "token request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    tracing::warn!(attempt, reason = %reason, "token request failed");
                    return Err(TokenError::Unavailable {
                        attempts: attempt,
                        reason,
                    });
                }
            }
        }
    }

    fn token(&self, fetched: crate::FetchedToken, started: UnixTime) -> Token {
        let lifetime = fetched.expires_in.unwrap_or(DEFAULT_LIFETIME);
        let skew = self.inner.skew.min(lifetime / 2);
        let seconds = |duration: Duration| i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        // Timed from when the request started: the token cannot outlive that.
        let expires_at = started.saturating_add(seconds(lifetime));
        Token {
            access_token: fetched.access_token,
            expires_at,
            refresh_at: expires_at.saturating_sub(seconds(skew)),
            scopes: fetched.scopes.map(Arc::from),
        }
    }
}

/// Configures a [`TokenClient`].
pub struct TokenClientBuilder {
    source: Arc<dyn TokenSource>,
    retry: RetryPolicy,
    skew: Duration,
    attempt_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl TokenClientBuilder {
    /// Replace tokens this long before they expire (default 60 s; at most half a token's
    /// lifetime is used).
    #[must_use]
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// How transient failures are retried.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long one attempt may take before it counts as a transient failure (default 10 s).
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The clock tokens are timed with.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the client.
    pub fn build(self) -> TokenClient {
        TokenClient {
            inner: Arc::new(Inner {
                source: self.source,
                retry: self.retry,
                skew: self.skew,
                attempt_timeout: self.attempt_timeout,
                clock: self.clock,
                entries: RwLock::new(HashMap::new()),
                attempts: AtomicU64::new(0),
            }),
        }
    }
}
