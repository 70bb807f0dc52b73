//! Thin gRPC adapters: convert the request (failure = INVALID_ARGUMENT naming the field),
//! call the service, convert back, map the error through the one `ErrorCode → Status`
//! translation. No business logic lives here.

mod convert;
mod management;
mod token;

pub use management::ManagementAdapter;
pub use token::TokenAdapter;

use tollgate_domain::ErrorCode;
use tollgate_proto::status::to_status;
use tonic::Status;

/// Converts a service error to a status; internal causes are logged, never returned.
fn into_status<E>(error: E) -> Status
where
    E: std::error::Error + HasCode,
{
    let code = error.code();
    if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
        tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "request failed");
    }
    to_status(code, error.to_string())
}

/// Service errors that know their caller-visible code.
trait HasCode {
    fn code(&self) -> ErrorCode;
}

impl HasCode for tollgate_issuer::IssueError {
    fn code(&self) -> ErrorCode {
        tollgate_issuer::IssueError::code(self)
    }
}

impl HasCode for tollgate_management::ManageError {
    fn code(&self) -> ErrorCode {
        tollgate_management::ManageError::code(self)
    }
}
