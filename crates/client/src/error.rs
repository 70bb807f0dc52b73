//! What can go wrong getting a token, in two layers: [`FetchError`], what one attempt of a
//! [`TokenSource`](crate::TokenSource) says (and so whether to retry), and [`TokenError`],
//! what a caller of [`TokenClient::get_token`](crate::TokenClient::get_token) gets.

use std::time::Duration;

/// The outcome of one failed attempt. The variant decides retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Worth retrying: 5xx, 429, 408, a connection error or timeout, gRPC UNAVAILABLE or
    /// RESOURCE_EXHAUSTED. `retry_after` is the server's own hint (`Retry-After`,
    /// `google.rpc.RetryInfo`).
    #[error("transient failure: {reason}")]
    Transient {
        /// What happened, for logs.
        reason: String,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The server refused the request (RFC 6749 §5.2: `invalid_client`, `invalid_scope`,
    /// `unauthorized_client`, …): retrying cannot help and would only add failed
    /// authentications.
    #[error("rejected: {error}")]
    Rejected {
        /// The OAuth error code (or `http_<status>` when the server sent none).
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The answer could not be used (not JSON, no `access_token`, not a bearer token) or the
    /// source is misconfigured; not retried.
    #[error("unusable answer: {0}")]
    Invalid(String),
}

impl FetchError {
    /// A transient failure without a hint.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// Why [`TokenClient::get_token`](crate::TokenClient::get_token) has no token. Messages
/// never contain a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The authorization server refused: see `error` (e.g. `invalid_client`).
    #[error("token request rejected: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        /// The OAuth error code.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// Every attempt failed transiently, or the server asked to wait longer than allowed.
    #[error("token endpoint unavailable after {attempts} attempt(s): {reason}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The answer could not be used, or the source is misconfigured.
    #[error("invalid token response: {0}")]
    Invalid(String),
}

impl TokenError {
    /// Whether the server refused with this OAuth error code.
    pub fn is_rejected_with(&self, code: &str) -> bool {
        matches!(self, Self::Rejected { error, .. } if error == code)
    }
}
