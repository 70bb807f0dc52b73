//! [`ManageError`] as a [`ServiceError`]: its caller-visible code, the only thing the
//! transports read of it. An outage (database, key material, revocation state, a tenant
//! whose view cannot be built) is `Unavailable`, so callers retry, never an authentication
//! failure.

use tollgate_domain::{ErrorCode, ServiceError};

use crate::{AdminTokenRefusal, ManageError};

impl ServiceError for ManageError {
    fn code(&self) -> ErrorCode {
        match self {
            ManageError::Invalid(_) => ErrorCode::InvalidRequest,
            // The token may be fine: its tenant's keys cannot be read now.
            ManageError::Unauthenticated(AdminTokenRefusal::Uncheckable) => ErrorCode::Unavailable,
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

#[cfg(test)]
mod tests {
    use tollgate_domain::UNAVAILABLE_RETRY_AFTER;
    use tollgate_keys::KeyError;

    use super::*;

    #[test]
    fn outages_are_unavailable_with_a_retry_hint_and_refusals_are_not() {
        for outage in [
            ManageError::Unauthenticated(AdminTokenRefusal::Uncheckable),
            ManageError::Keys(KeyError::Random),
        ] {
            assert_eq!(outage.code(), ErrorCode::Unavailable, "{outage}");
            assert_eq!(outage.retry_after(), Some(UNAVAILABLE_RETRY_AFTER));
        }
        for refusal in [
            ManageError::Unauthenticated(AdminTokenRefusal::Missing),
            ManageError::Unauthenticated(AdminTokenRefusal::Malformed),
            ManageError::FollowedTenantGone,
        ] {
            assert_ne!(refusal.code(), ErrorCode::Unavailable, "{refusal}");
            assert_eq!(refusal.retry_after(), None);
        }
    }
}
