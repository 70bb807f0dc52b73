//! Small helpers shared by the repositories: batch inserts and page sizes.

use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel};

use crate::StoreError;
use crate::error::DbResultExt;

/// Inserts `rows` with one statement (none if empty), mapping a unique violation to
/// `AlreadyExists { entity }` and a foreign-key violation to `NotFound { referenced }`.
pub(crate) async fn insert_all<A>(
    conn: &impl ConnectionTrait,
    rows: Vec<A>,
    entity: &'static str,
    referenced: &'static str,
) -> Result<(), StoreError>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    // sea-orm refuses an INSERT without rows; an empty batch simply writes nothing.
    if rows.is_empty() {
        return Ok(());
    }
    // Without RETURNING: ids are ours, and sea-orm need not read any back.
    <A::Entity as EntityTrait>::insert_many(rows)
        .exec_without_returning(conn)
        .await
        .or_conflict(entity, referenced)?;
    Ok(())
}

/// The `LIMIT` for a page of `limit` rows. The drivers bind integers as `i64` (and panic on
/// larger `u64`s), so a caller asking for "everything" with `u64::MAX` is clamped.
pub(crate) fn page_limit(limit: u64) -> u64 {
    limit.min(i64::MAX as u64)
}

/// Most values bound in one `IN (…)` list; far below SQLite's and PostgreSQL's limits on
/// bound parameters, however large a page the caller asks for.
pub(crate) const IN_LIST_CHUNK: usize = 500;
