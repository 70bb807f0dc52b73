//! Thin gRPC adapters: convert the request (failure = INVALID_ARGUMENT naming the field),
//! call the service, convert back, map the error through the one service-error translation
//! (`tollgate_proto::status::service_status`). A service's stream (a revocation watch, an
//! audit tail) reaches the client through the one forwarder (`forward.rs`), which ends every
//! stream the same way at shutdown. No business logic and no protocol live here.

mod audit;
mod forward;
mod management;
mod token;

pub use audit::{AuditAdapter, MAX_AUDIT_MESSAGE_BYTES};
pub use management::ManagementAdapter;
pub use token::TokenAdapter;

use tollgate_domain::{ErrorCode, ServiceError};
use tollgate_proto::status::service_status;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Converts a service error to a status (`tollgate_proto::status::service_status`); internal
/// causes are logged, never returned.
fn into_status<E: ServiceError>(error: E) -> Status {
    log_if_internal(&error);
    service_status(&error)
}

/// The admin token of a call: its `authorization` metadata read by the one Bearer reader,
/// [`tollgate_domain::bearer_token`]; `None` without one.
fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    tollgate_domain::bearer_token(value)
}

/// Logs the cause of an error the caller only sees as internal or unavailable. Shared by the
/// gRPC adapters and the in-process gateway backend, the two places service errors leave.
pub(crate) fn log_if_internal<E: ServiceError + ?Sized>(error: &E) {
    if matches!(error.code(), ErrorCode::Internal | ErrorCode::Unavailable) {
        tracing::error!(error = %error, cause = ?error.source(), "request failed");
    }
}
