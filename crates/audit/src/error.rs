//! [`AuditError`], the one error type of this crate.

use tollgate_domain::ErrorCode;
use tollgate_store::StoreError;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The batch holding the event could not be committed: the event is not recorded, and
    /// whatever it records must not happen (fail closed). The cause is logged once per
    /// batch by the writer, not repeated to every waiter.
    #[error("audit store unavailable")]
    Unavailable,
    /// The writer has shut down (or its task ended): nothing more can be recorded.
    #[error("audit writer is shut down")]
    Closed,
    /// A stored record holds a value no event could have produced.
    #[error("stored audit record {seq} of tenant {tenant_id} is corrupt: {reason}")]
    Corrupt {
        /// The tenant's id, as stored.
        tenant_id: String,
        /// The record's `seq`.
        seq: i64,
        /// What is wrong, without echoing the value.
        reason: String,
    },
    /// Reading the trail failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuditError {
    /// The caller-visible outcome: an unrecordable event is `Unavailable` (UNAVAILABLE, HTTP
    /// 503), a corrupt record `Internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuditError::Unavailable | AuditError::Closed => ErrorCode::Unavailable,
            AuditError::Corrupt { .. } => ErrorCode::Internal,
            AuditError::Store(error) => error.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(AuditError::Unavailable.code(), ErrorCode::Unavailable);
        assert_eq!(AuditError::Closed.code(), ErrorCode::Unavailable);
        let corrupt = AuditError::Corrupt {
            tenant_id: "ten_1".into(),
            seq: 3,
            reason: "unknown action".into(),
        };
        assert_eq!(corrupt.code(), ErrorCode::Internal);
        assert_eq!(
            corrupt.to_string(),
            "stored audit record 3 of tenant ten_1 is corrupt: unknown action"
        );
        let missing = AuditError::from(StoreError::NotFound { entity: "tenant" });
        assert_eq!(missing.code(), ErrorCode::NotFound);
    }
}
