//! Access tokens for callers of APIs protected by Tollgate or any OAuth 2.0 server (the
//! client-credentials grant, RFC 6749 §4.4).
//!
//! - [`TokenClient`] caches tokens per [`TokenRequest`] (audience and scopes), replaces them
//!   a configurable skew before they expire, makes concurrent callers share one fetch
//!   (single-flight), and retries transient failures with exponential backoff and jitter,
//!   honouring `Retry-After` — never a rejection such as `invalid_client`.
//! - Sources: [`HttpTokenSource`] (feature `http`) for any standard token endpoint, given or
//!   discovered from RFC 8414 metadata, with `client_secret_basic` or `client_secret_post`;
//!   [`GrpcTokenSource`] (feature `grpc`) for Tollgate's `IssueToken`; or your own
//!   [`TokenSource`].
//! - Outgoing calls: [`BearerLayer`], a tower layer that fetches in `call` (works on tonic
//!   channels too), and [`BackgroundToken`] with its synchronous tonic interceptor
//!   (`BackgroundToken::interceptor`, feature `grpc`).
//! - [`Secret`] and [`AccessToken`] print as `<redacted>`.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_client::{
//!     AccessToken, FetchError, FetchFuture, FetchedToken, TokenClient, TokenRequest, TokenSource,
//! };
//!
//! /// A source that hands out the same token; real code uses `HttpTokenSource` or
//! /// `GrpcTokenSource`.
//! struct Fixed;
//!
//! impl TokenSource for Fixed {
//!     fn fetch<'a>(&'a self, _request: &'a TokenRequest) -> FetchFuture<'a> {
//!         Box::pin(async {
//!             Ok(FetchedToken {
//!                 access_token: AccessToken::new("eyJ..."),
//!                 expires_in: Some(Duration::from_secs(3600)),
//!                 scopes: None,
//!             })
//!         })
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?.block_on(async {
//! let client = TokenClient::builder(Fixed).skew(Duration::from_secs(30)).build();
//! let request = TokenRequest::new("https://archive.example.com/").with_scopes(["archive:read"]);
//! let token = client.get_token(&request).await?;
//! assert_eq!(token.access_token.expose(), "eyJ...");
//! assert_eq!(format!("{:?}", token.access_token), "AccessToken(<redacted>)");
//! client.get_token(&request).await?; // cached
//! assert_eq!(client.attempts(), 1);
//! # Ok::<(), tollgate_client::TokenError>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Invariants: no secret or token appears in a `Debug`, `Display` or error message; only
//! transient failures are retried; ring is the only source of randomness (for jitter).

mod background;
mod client;
mod error;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod layer;
mod retry;
mod secret;
mod source;

pub use background::BackgroundToken;
#[cfg(feature = "grpc")]
pub use background::BearerInterceptor;
pub use client::{Token, TokenClient, TokenClientBuilder};
pub use error::{FetchError, TokenError};
#[cfg(feature = "grpc")]
pub use grpc::GrpcTokenSource;
#[cfg(feature = "http")]
pub use http::{AudienceParameter, ClientAuth, HttpTokenSource};
pub use layer::{Bearer, BearerLayer, BoxError};
pub use retry::RetryPolicy;
pub use secret::{AccessToken, Secret};
pub use source::{FetchFuture, FetchedToken, TokenRequest, TokenSource};
