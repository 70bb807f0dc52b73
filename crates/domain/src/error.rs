//! The closed set of outcomes a caller can see, and the seam between services and
//! transports: every service error implements [`ServiceError`], which gives its
//! [`ErrorCode`] and when to retry in domain terms. Exactly two translations exist: to a
//! gRPC status (in `tollgate-proto`, applied by the binary's adapters) and to an RFC 6749
//! §5.2 JSON error (in `tollgate-gateway`, from its backend error).

use std::fmt;
use std::time::Duration;

/// How long a caller should wait before retrying after an outage ([`ErrorCode::Unavailable`]
/// without a more precise hint): one second, on gRPC as `google.rpc.RetryInfo` and over HTTP
/// as `Retry-After: 1`.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An error a service returns to its callers. Transports translate it through its
/// [`ErrorCode`] alone (plus the retry hints below), so they need nothing of the service's
/// internals; the error's `Display` is the message (shown or logged depending on the code),
/// its `source` the internal cause (logged, never returned).
pub trait ServiceError: std::error::Error {
    /// The caller-visible outcome.
    fn code(&self) -> ErrorCode;

    /// The state of the rate limit that refused the request, for an error with
    /// [`ErrorCode::ResourceExhausted`] caused by one.
    fn rate_limit(&self) -> Option<RateLimitState> {
        None
    }

    /// When the caller may retry: the refusing rate limit's delay, or for an outage
    /// [`UNAVAILABLE_RETRY_AFTER`]; `None` when retrying will not help.
    fn retry_after(&self) -> Option<Duration> {
        match self.rate_limit() {
            Some(limit) => Some(limit.retry_after),
            None if self.code() == ErrorCode::Unavailable => Some(UNAVAILABLE_RETRY_AFTER),
            None => None,
        }
    }
}

/// The state of a rate limit when it refused a request: what a caller is told about it
/// (gRPC `RetryInfo`; HTTP `Retry-After` and the RateLimit header fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitState {
    /// Requests allowed in a burst.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// How long until one request is allowed again.
    pub retry_after: Duration,
    /// How long until the whole burst is available again.
    pub reset_after: Duration,
}

/// What went wrong, as a caller needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed input; the message names the field. OAuth `invalid_request`.
    InvalidRequest,
    /// Client authentication failed: unknown tenant, unknown client, wrong secret or blocked
    /// app, indistinguishable on purpose. OAuth `invalid_client`.
    InvalidClient,
    /// The grant type is not `client_credentials`. OAuth `unsupported_grant_type`.
    UnsupportedGrantType,
    /// The audience is not an API of the tenant. RFC 8707 `invalid_target`.
    InvalidTarget,
    /// The app holds no grant on the requested API. OAuth `unauthorized_client`.
    UnauthorizedClient,
    /// A requested scope is malformed or not held. OAuth `invalid_scope`.
    InvalidScope,
    /// Missing, malformed or invalid admin token.
    Unauthenticated,
    /// The admin token is valid but lacks the scope, or targets another tenant.
    PermissionDenied,
    /// The named resource does not exist.
    NotFound,
    /// A resource with that name or identifier already exists.
    AlreadyExists,
    /// The operation is not allowed in the resource's state (e.g. deleting a built-in).
    FailedPrecondition,
    /// A limit was reached; retry later.
    ResourceExhausted,
    /// A dependency (database, key material) is unavailable; retry later.
    Unavailable,
    /// A bug or an unexpected failure; the cause is logged, never returned.
    Internal,
}

impl ErrorCode {
    /// The OAuth 2.0 error code (RFC 6749 §5.2, RFC 8707), where one applies.
    pub fn oauth_error(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::InvalidScope => "invalid_scope",
            _ => return None,
        })
    }

    /// A stable snake_case name, used as `google.rpc.ErrorInfo.reason`: the OAuth code where
    /// one applies, else the code's own name.
    pub fn reason(self) -> &'static str {
        if let Some(oauth) = self.oauth_error() {
            return oauth;
        }
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            _ => "internal",
        }
    }

    /// The inverse of [`ErrorCode::reason`]; unknown reasons are `Internal`.
    pub fn from_reason(reason: &str) -> Self {
        const ALL: [ErrorCode; 14] = [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidClient,
            ErrorCode::UnsupportedGrantType,
            ErrorCode::InvalidTarget,
            ErrorCode::UnauthorizedClient,
            ErrorCode::InvalidScope,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::FailedPrecondition,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        ALL.into_iter()
            .find(|code| code.reason() == reason)
            .unwrap_or(ErrorCode::Internal)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidClient,
            ErrorCode::InvalidScope,
            ErrorCode::NotFound,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_reason(code.reason()), code);
        }
        assert_eq!(ErrorCode::InvalidTarget.reason(), "invalid_target");
        assert_eq!(ErrorCode::PermissionDenied.oauth_error(), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("test error")]
    struct TestError(ErrorCode, Option<RateLimitState>);

    impl ServiceError for TestError {
        fn code(&self) -> ErrorCode {
            self.0
        }

        fn rate_limit(&self) -> Option<RateLimitState> {
            self.1
        }
    }

    #[test]
    fn retry_hints_follow_the_code_and_the_rate_limit() {
        let limit = RateLimitState {
            limit: 10,
            remaining: 0,
            retry_after: Duration::from_millis(1_500),
            reset_after: Duration::from_secs(10),
        };
        for (error, expected) in [
            (
                TestError(ErrorCode::Unavailable, None),
                Some(UNAVAILABLE_RETRY_AFTER),
            ),
            (
                TestError(ErrorCode::ResourceExhausted, Some(limit)),
                Some(Duration::from_millis(1_500)),
            ),
            (TestError(ErrorCode::ResourceExhausted, None), None),
            (TestError(ErrorCode::InvalidClient, None), None),
            (TestError(ErrorCode::Internal, None), None),
        ] {
            assert_eq!(error.retry_after(), expected, "{:?}", error.0);
        }
    }
}
