//! Revocation awareness: the [`RevocationCheck`] a [`Verifier`](super::Verifier) asks about
//! every otherwise valid token, and [`Introspection`], its RFC 7662 implementation with a
//! short cache.
//!
//! The trait is small on purpose, so that other sources can plug in beside introspection:
//! `RevocationWatch` (feature `watch`) follows Tollgate's revocation stream; a shared cache
//! would do as well.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tollgate_domain::{ClientSecret, Clock, SystemClock, UnixTime};

use crate::Claims;

/// What [`RevocationCheck::is_revoked`] returns: `Ok(true)` for a revoked token, an error
/// (the cause, for logs) when the answer cannot be known; the verifier then fails closed.
pub type RevocationFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Tells whether a token that verified is nonetheless revoked.
pub trait RevocationCheck: Send + Sync + 'static {
    /// Whether `token`, whose verified claims are `claims`, has been revoked.
    fn is_revoked<'a>(&'a self, token: &'a str, claims: &'a Claims) -> RevocationFuture<'a>;
}

/// The default time an introspection answer is reused.
const DEFAULT_CACHE_SECONDS: u64 = 10;
/// The default number of answers kept.
const DEFAULT_CAPACITY: usize = 10_000;

/// RFC 7662 token introspection as a [`RevocationCheck`]: POSTs the token to the issuer's
/// introspection endpoint with the resource server's own client credentials
/// (`client_secret_basic`) and takes `"active": false` as revoked.
///
/// Answers are cached by `iss` and `jti` (or the whole token when there is no `jti`): an
/// active one for the cache time (10 s by default), so a revocation is noticed within it;
/// an inactive one until the token expires, since a revoked token never comes back.
pub struct Introspection {
    endpoint: String,
    client_id: String,
    secret: ClientSecret,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache_seconds: i64,
    capacity: usize,
    /// Cache key → (is revoked, reusable until).
    cache: Mutex<HashMap<String, (bool, UnixTime)>>,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("cache_seconds", &self.cache_seconds)
            .finish()
    }
}

impl Introspection {
    /// Introspects at `endpoint` (Tollgate's is `<issuer>oauth/introspect`) as `client_id`.
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            client_id: client_id.into(),
            secret,
            http: reqwest::Client::new(),
            clock: Arc::new(SystemClock),
            cache_seconds: i64::try_from(DEFAULT_CACHE_SECONDS).unwrap_or(10),
            capacity: DEFAULT_CAPACITY,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reuses an "active" answer for `duration` (whole seconds; zero disables caching).
    #[must_use]
    pub fn cache_for(mut self, duration: Duration) -> Self {
        self.cache_seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Keeps at most `capacity` answers.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The HTTP client to use.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The clock cache lifetimes are read against.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn cached(&self, key: &str, now: UnixTime) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(is_revoked, _)| *is_revoked)
    }

    fn remember(&self, key: String, is_revoked: bool, until: UnixTime, now: UnixTime) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity {
            cache.retain(|_, (_, until)| now < *until);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(key, (is_revoked, until));
    }

    async fn introspect(&self, token: &str) -> Result<bool, String> {
        // RFC 6749 §2.3.1: form-urlencode each credential before joining them.
        let encode =
            |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!(
            "{}:{}",
            encode(&self.client_id),
            encode(self.secret.expose())
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let response = self
            .http
            .post(&self.endpoint)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Basic {credentials}"),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| format!("introspection at {}: {error}", self.endpoint))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "introspection at {} answered {status}",
                self.endpoint
            ));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|error| format!("introspection at {}: {error}", self.endpoint))?;
        match answer.get("active").and_then(Value::as_bool) {
            Some(is_active) => Ok(!is_active),
            None => Err(format!(
                "introspection at {} answered without a boolean \"active\"",
                self.endpoint
            )),
        }
    }
}

impl RevocationCheck for Introspection {
    fn is_revoked<'a>(&'a self, token: &'a str, claims: &'a Claims) -> RevocationFuture<'a> {
        Box::pin(async move {
            let key = match &claims.token_id {
                Some(jti) => format!("{}\n{jti}", claims.issuer),
                None => token.to_owned(),
            };
            let now = self.clock.now();
            if let Some(is_revoked) = self.cached(&key, now) {
                return Ok(is_revoked);
            }
            let is_revoked = self.introspect(token).await?;
            let until = if is_revoked {
                claims.expires_at
            } else {
                now.saturating_add(self.cache_seconds)
                    .min(claims.expires_at)
            };
            if until > now {
                self.remember(key, is_revoked, until, now);
            }
            Ok(is_revoked)
        })
    }
}
