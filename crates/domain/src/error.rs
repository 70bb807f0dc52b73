//! The closed set of outcomes a caller can see. Each service error maps to one
//! [`ErrorCode`]; exactly two translations exist: to a gRPC status (in `tollgate-proto`) and
//! to an RFC 6749 §5.2 JSON error (in `tollgate-gateway`).

use std::fmt;

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
}
