//! [`StoreError`], the store's only error type, and the one place database errors are
//! classified.

use sea_orm::{DbErr, SqlErr};
use tollgate_domain::{ErrorCode, InvalidValue};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same unique key (tenant name, API identifier, client id, id) exists.
    #[error("{entity} already exists")]
    AlreadyExists {
        /// What kind of row collided, e.g. `"tenant"`.
        entity: &'static str,
    },
    /// The row to update, or a row the write refers to, does not exist in this tenant.
    #[error("{entity} not found")]
    NotFound {
        /// What kind of row is missing, e.g. `"api"`.
        entity: &'static str,
    },
    /// The database failed or could not be reached; retrying later may help.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// A stored row no longer parses into its domain type (e.g. an invalid name or JSON).
    #[error("stored {entity} is corrupt: {reason}")]
    Corrupt {
        /// What kind of row failed to parse.
        entity: &'static str,
        /// Why, without echoing secret material.
        reason: String,
    },
}

impl StoreError {
    /// The caller-visible outcome. A corrupt row is a server fault, hence `Internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    /// A row of `entity` failed domain validation.
    pub(crate) fn corrupt(entity: &'static str, error: InvalidValue) -> Self {
        StoreError::Corrupt {
            entity,
            reason: error.to_string(),
        }
    }

    /// A JSON column of `entity` failed to decode.
    pub(crate) fn corrupt_json(entity: &'static str, error: &serde_json::Error) -> Self {
        StoreError::Corrupt {
            entity,
            reason: format!("invalid JSON: {error}"),
        }
    }
}

/// Classifies database errors for reads and writes.
pub(crate) trait DbResultExt<T> {
    /// Any failure is the database's: [`StoreError::Unavailable`].
    fn or_unavailable(self) -> Result<T, StoreError>;

    /// For inserts: a unique violation means `entity` already exists, a foreign-key
    /// violation means `referenced` (the parent the row points to) does not exist.
    fn or_conflict(self, entity: &'static str, referenced: &'static str) -> Result<T, StoreError>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn or_unavailable(self) -> Result<T, StoreError> {
        self.map_err(StoreError::Unavailable)
    }

    fn or_conflict(self, entity: &'static str, referenced: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists { entity },
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                StoreError::NotFound { entity: referenced }
            }
            _ => StoreError::Unavailable(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            StoreError::AlreadyExists { entity: "tenant" }.code(),
            ErrorCode::AlreadyExists
        );
        assert_eq!(
            StoreError::NotFound { entity: "api" }.code(),
            ErrorCode::NotFound
        );
        assert_eq!(
            StoreError::Unavailable(DbErr::Custom("down".into())).code(),
            ErrorCode::Unavailable
        );
        let corrupt = StoreError::corrupt("tenant", InvalidValue::new("tenant", "bad"));
        assert_eq!(corrupt.code(), ErrorCode::Internal);
        assert_eq!(corrupt.to_string(), "stored tenant is corrupt: tenant: bad");
    }
}
