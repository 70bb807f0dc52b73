//! The gateway's only dependency on the rest of Tollgate: something that issues, revokes and
//! introspects tokens and returns a tenant's public keys.

use std::future::Future;
use std::time::Duration;

use tollgate_domain::{
    AccessTokenClaims, ErrorCode, IssuedToken, ServiceError, TenantName, TokenCallRequest,
    TokenRequest,
};

/// How the gateway reaches issuance and public keys: in the all-in-one server an in-process
/// implementation (written elsewhere), at the edge the gRPC one ([`crate::GrpcBackend`]).
///
/// Every method that authenticates a client must fail with [`ErrorCode::InvalidClient`] for
/// an unknown tenant, an unknown client and a wrong secret alike, and with
/// [`ErrorCode::ResourceExhausted`] (ideally with [`BackendError::retry_after`] and
/// [`BackendError::rate_limit`]) when a rate limit refuses the request.
pub trait TokenBackend: Send + Sync + 'static {
    /// Authenticates the client and issues a token (RFC 6749 §4.4).
    fn issue_token(
        &self,
        request: TokenRequest,
    ) -> impl Future<Output = Result<IssuedToken, BackendError>> + Send;

    /// RFC 7009: authenticates the client and revokes `request.token` if it was issued to
    /// the calling app. `Ok(())` also when the token is unknown, invalid, expired or another
    /// app's, so that the answer reveals nothing about it.
    fn revoke_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// RFC 7662: authenticates the client and tells whether `request.token` is active.
    /// `Ok(None)` = inactive (revoked, expired, malformed, another tenant's…);
    /// `Ok(Some(claims))` = active, with its claims.
    fn introspect_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<Option<AccessTokenClaims>, BackendError>> + Send;

    /// The tenant's issuer URL and JWK Set; [`ErrorCode::NotFound`] for an unknown tenant.
    fn jwks(
        &self,
        tenant: &TenantName,
    ) -> impl Future<Output = Result<TenantKeys, BackendError>> + Send;
}

/// A tenant's public verification material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeys {
    /// The tenant's issuer URL, exactly the `iss` of its tokens; ends with `/`.
    pub issuer: String,
    /// The RFC 7517 JWK Set as JSON text, served verbatim.
    pub jwks_json: String,
}

/// Why the backend refused or failed. The message is shown to the client only for OAuth
/// errors and `NotFound`; for anything else it is logged and replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// What went wrong, as the client may learn it.
    pub code: ErrorCode,
    /// Details: public for OAuth errors, internal otherwise.
    pub message: String,
    /// When the client may try again; sent as `Retry-After` (whole seconds, rounded up, at
    /// least 1) with [`ErrorCode::ResourceExhausted`] and [`ErrorCode::Unavailable`], which
    /// default to 1 s without it.
    pub retry_after: Option<Duration>,
    /// The rate limit that refused the request; sent as `RateLimit-Limit`,
    /// `RateLimit-Remaining` and `RateLimit-Reset` with [`ErrorCode::ResourceExhausted`].
    pub rate_limit: Option<RateLimitInfo>,
}

impl BackendError {
    /// Builds an error without retry information.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            rate_limit: None,
        }
    }

    /// The one translation of a service's error for the gateway: its code and message, its
    /// retry hint ([`ServiceError::retry_after`]) and the state of the rate limit that
    /// refused it. Which of these the client sees is the renderer's decision (by code).
    pub fn from_service<E: ServiceError + ?Sized>(error: &E) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            retry_after: error.retry_after(),
            rate_limit: error.rate_limit().map(|limit| RateLimitInfo {
                limit: limit.limit,
                remaining: limit.remaining,
                reset: limit.reset_after,
            }),
        }
    }

    /// Sets [`BackendError::retry_after`].
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Sets [`BackendError::rate_limit`].
    #[must_use]
    pub fn with_rate_limit(mut self, rate_limit: RateLimitInfo) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }
}

/// The state of the rate limit that applied to a request, for the RateLimit header fields
/// (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// Requests allowed per window (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the current window (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the quota is fully restored (`RateLimit-Reset`, whole seconds rounded up).
    pub reset: Duration,
}

#[cfg(test)]
mod tests {
    use tollgate_domain::{RateLimitState, UNAVAILABLE_RETRY_AFTER};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct TestError {
        code: ErrorCode,
        message: &'static str,
        rate_limit: Option<RateLimitState>,
    }

    impl ServiceError for TestError {
        fn code(&self) -> ErrorCode {
            self.code
        }

        fn rate_limit(&self) -> Option<RateLimitState> {
            self.rate_limit
        }
    }

    #[test]
    fn service_errors_keep_their_code_message_and_retry_hints() {
        let limit = RateLimitState {
            limit: 20,
            remaining: 0,
            retry_after: Duration::from_millis(300),
            reset_after: Duration::from_secs(2),
        };
        let refused = BackendError::from_service(&TestError {
            code: ErrorCode::ResourceExhausted,
            message: "too many requests; retry in 1 s",
            rate_limit: Some(limit),
        });
        assert_eq!(
            refused,
            BackendError::new(
                ErrorCode::ResourceExhausted,
                "too many requests; retry in 1 s"
            )
            .with_retry_after(Duration::from_millis(300))
            .with_rate_limit(RateLimitInfo {
                limit: 20,
                remaining: 0,
                reset: Duration::from_secs(2),
            })
        );
        let outage = BackendError::from_service(&TestError {
            code: ErrorCode::Unavailable,
            message: "database unavailable",
            rate_limit: None,
        });
        assert_eq!(
            outage,
            BackendError::new(ErrorCode::Unavailable, "database unavailable")
                .with_retry_after(UNAVAILABLE_RETRY_AFTER)
        );
        let rejected = BackendError::from_service(&TestError {
            code: ErrorCode::InvalidClient,
            message: "client authentication failed",
            rate_limit: None,
        });
        assert_eq!(
            rejected,
            BackendError::new(ErrorCode::InvalidClient, "client authentication failed")
        );
    }
}
