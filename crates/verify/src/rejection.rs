//! Why a request was not let through, and the one translation of that into HTTP status,
//! gRPC code and RFC 6750 `WWW-Authenticate` challenge. Every layer of this crate answers
//! through [`AuthError`]; nothing else decides a status.

use crate::VerifyError;

/// Why a request bearing (or lacking) an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (RFC 6750 §3.1: the challenge carries no error).
    #[error("no bearer token")]
    MissingToken,
    /// More than one `Authorization` header, or one that is not a bearer token.
    #[error("malformed authorization header")]
    MalformedHeader,
    /// The token itself was refused.
    #[error(transparent)]
    InvalidToken(#[from] VerifyError),
    /// The token was valid but has been revoked.
    #[error("token has been revoked")]
    Revoked,
    /// The token lacks a scope this request needs; carries every scope it needs.
    #[error("token lacks a required scope")]
    InsufficientScope {
        /// The scopes the request needs.
        required: Vec<String>,
    },
    /// The issuer's keys could not be fetched and none are cached: fail closed.
    #[error("issuer keys are unavailable: {0}")]
    KeysUnavailable(String),
    /// Revocation status could not be learnt: fail closed.
    #[error("revocation status is unavailable: {0}")]
    RevocationUnavailable(String),
}

/// gRPC status codes used here (the numbers of `google.rpc.Code`).
pub mod grpc_code {
    /// `INVALID_ARGUMENT`
    pub const INVALID_ARGUMENT: i32 = 3;
    /// `PERMISSION_DENIED`
    pub const PERMISSION_DENIED: i32 = 7;
    /// `UNAVAILABLE`
    pub const UNAVAILABLE: i32 = 14;
    /// `UNAUTHENTICATED`
    pub const UNAUTHENTICATED: i32 = 16;
}

impl AuthError {
    /// The HTTP status: 400, 401, 403 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MalformedHeader => 400,
            Self::MissingToken | Self::InvalidToken(_) | Self::Revoked => 401,
            Self::InsufficientScope { .. } => 403,
            Self::KeysUnavailable(_) | Self::RevocationUnavailable(_) => 503,
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(&self) -> i32 {
        match self {
            Self::MalformedHeader => grpc_code::INVALID_ARGUMENT,
            Self::MissingToken | Self::InvalidToken(_) | Self::Revoked => {
                grpc_code::UNAUTHENTICATED
            }
            Self::InsufficientScope { .. } => grpc_code::PERMISSION_DENIED,
            Self::KeysUnavailable(_) | Self::RevocationUnavailable(_) => grpc_code::UNAVAILABLE,
        }
    }

    /// The message to send back: the error's text, except for failures of our own
    /// dependencies, whose cause is for our logs only.
    pub fn public_message(&self) -> String {
        match self {
            Self::KeysUnavailable(_) | Self::RevocationUnavailable(_) => {
                "token cannot be verified right now".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The RFC 6750 §3 `WWW-Authenticate` value, for the statuses that carry one.
    pub fn www_authenticate(&self) -> Option<String> {
        let quoted = |text: &str| text.replace(['\\', '"'], "");
        match self {
            Self::MissingToken => Some("Bearer".to_owned()),
            Self::MalformedHeader => Some(r#"Bearer error="invalid_request""#.to_owned()),
            Self::InvalidToken(_) | Self::Revoked => Some(format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                quoted(&self.to_string())
            )),
            Self::InsufficientScope { required } => Some(format!(
                r#"Bearer error="insufficient_scope", scope="{}""#,
                quoted(&required.join(" "))
            )),
            Self::KeysUnavailable(_) | Self::RevocationUnavailable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuthError;
    use crate::VerifyError;

    #[test]
    fn each_refusal_has_one_status_code_and_challenge() {
        let scope = AuthError::InsufficientScope {
            required: vec!["a:read".into(), "b:write".into()],
        };
        #[rustfmt::skip]
        let cases = [
            (AuthError::MissingToken, 401, 16, Some("Bearer")),
            (AuthError::MalformedHeader, 400, 3, Some(r#"Bearer error="invalid_request""#)),
            (AuthError::InvalidToken(VerifyError::Expired), 401, 16,
                Some(r#"Bearer error="invalid_token", error_description="token has expired""#)),
            (AuthError::Revoked, 401, 16,
                Some(r#"Bearer error="invalid_token", error_description="token has been revoked""#)),
            (scope, 403, 7, Some(r#"Bearer error="insufficient_scope", scope="a:read b:write""#)),
            (AuthError::KeysUnavailable("down".into()), 503, 14, None),
            (AuthError::RevocationUnavailable("down".into()), 503, 14, None),
        ];
        for (error, status, code, challenge) in cases {
            assert_eq!(error.http_status(), status, "{error:?}");
            assert_eq!(error.grpc_code(), code, "{error:?}");
            assert_eq!(error.www_authenticate().as_deref(), challenge, "{error:?}");
        }
        assert_eq!(
            AuthError::KeysUnavailable("10.0.0.1 refused".into()).public_message(),
            "token cannot be verified right now"
        );
    }
}
