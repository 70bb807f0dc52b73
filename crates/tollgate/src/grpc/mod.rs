//! Thin gRPC adapters: convert the request (failure = INVALID_ARGUMENT naming the field),
//! call the service, convert back, map the error through the one `ErrorCode → Status`
//! translation. No business logic lives here.

mod audit;
mod convert;
mod management;
#[cfg(test)]
mod proptests;
mod token;

pub(crate) use audit::{event_from_wire, verify_response};
pub(crate) use convert::token_call;

pub use audit::{AuditAdapter, MAX_AUDIT_MESSAGE_BYTES};
pub use management::ManagementAdapter;
pub use token::TokenAdapter;

use tollgate_domain::ErrorCode;
use tollgate_proto::status::{to_status, to_status_with_retry};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Converts a service error to a status; internal causes are logged, never returned.
fn into_status<E>(error: E) -> Status
where
    E: std::error::Error + HasCode,
{
    log_if_internal(&error);
    let code = error.code();
    match error.retry_after() {
        Some(retry_after) => to_status_with_retry(code, error.to_string(), retry_after),
        // What HTTP's 503 says with `Retry-After: 1`: retry, in about a second.
        None if code == ErrorCode::Unavailable => {
            to_status_with_retry(code, error.to_string(), UNAVAILABLE_RETRY_AFTER)
        }
        None => to_status(code, error.to_string()),
    }
}

/// The `RetryInfo` delay of an UNAVAILABLE answer (a dependency such as the database, Redis
/// or the audit trail failed): the same second the HTTP gateway sends as `Retry-After`.
const UNAVAILABLE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The admin token of a call: the value of `authorization: Bearer <token>` (`bearer` in
/// any case), trimmed; `None` without one.
fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Logs the cause of an error the caller only sees as internal or unavailable. Shared by the
/// gRPC adapters and the in-process gateway backend, the two places service errors leave.
pub(crate) fn log_if_internal<E>(error: &E)
where
    E: std::error::Error + HasCode,
{
    if matches!(error.code(), ErrorCode::Internal | ErrorCode::Unavailable) {
        tracing::error!(error = %error, cause = ?error.source(), "request failed");
    }
}

/// Service errors that know their caller-visible code.
pub(crate) trait HasCode {
    fn code(&self) -> ErrorCode;

    /// When a rate-limited caller may retry.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

impl HasCode for tollgate_issuer::IssueError {
    fn code(&self) -> ErrorCode {
        tollgate_issuer::IssueError::code(self)
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            tollgate_issuer::IssueError::RateLimited(decision) => Some(decision.retry_after),
            _ => None,
        }
    }
}

impl HasCode for tollgate_management::ManageError {
    fn code(&self) -> ErrorCode {
        tollgate_management::ManageError::code(self)
    }
}
