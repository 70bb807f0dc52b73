//! Where tokens come from: the [`TokenSource`] trait, what is asked ([`TokenRequest`]) and
//! what one successful attempt returns ([`FetchedToken`]). A source makes exactly one
//! attempt per call; caching, single-flight and retries are [`TokenClient`](crate::TokenClient)'s.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{AccessToken, FetchError};

/// What to ask for; also the cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    /// The API the token is for (`audience`), if the server needs one.
    pub audience: Option<String>,
    /// The scopes to ask for; empty lets the server choose (Tollgate: all the app holds).
    pub scopes: Vec<String>,
}

impl TokenRequest {
    /// A request for `audience` with no particular scopes.
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            scopes: Vec::new(),
        }
    }

    /// A request without an audience, for servers that do not use one.
    pub fn without_audience() -> Self {
        Self::default()
    }

    /// Asks for `scopes`. They are sorted and deduplicated, so that the same set is one
    /// cache entry whatever the order.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self.scopes.sort_unstable();
        self.scopes.dedup();
        self
    }
}

/// One token as the server returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedToken {
    /// The bearer token.
    pub access_token: AccessToken,
    /// `expires_in`; `None` when the server did not say.
    pub expires_in: Option<Duration>,
    /// The granted scopes, when the server said.
    pub scopes: Option<Vec<String>>,
}

/// What [`TokenSource::fetch`] returns.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedToken, FetchError>> + Send + 'a>>;

/// Makes one token request. Implemented by [`HttpTokenSource`](crate::HttpTokenSource) and
/// [`GrpcTokenSource`](crate::GrpcTokenSource); implement it for anything else (a test
/// double, another protocol).
pub trait TokenSource: Send + Sync + 'static {
    /// One attempt; classify failures with [`FetchError`] so the client knows whether to
    /// retry.
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> FetchFuture<'a>;
}
