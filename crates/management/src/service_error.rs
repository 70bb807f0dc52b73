//! [`ManageError`] as a [`ServiceError`]: its caller-visible code, the only thing the
//! transports read of it. An outage (database, key material, revocation state) is
//! `Unavailable`, so callers retry, never an authentication failure.

use tollgate_domain::{ErrorCode, ServiceError};

use crate::ManageError;

impl ServiceError for ManageError {
    fn code(&self) -> ErrorCode {
        match self {
            ManageError::Invalid(_) => ErrorCode::InvalidRequest,
            ManageError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ManageError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            ManageError::NotFound { .. } | ManageError::FollowedTenantGone => ErrorCode::NotFound,
            ManageError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            ManageError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            ManageError::Store(error) => error.code(),
            ManageError::Keys(_) | ManageError::Revocation(_) => ErrorCode::Unavailable,
        }
    }
}
