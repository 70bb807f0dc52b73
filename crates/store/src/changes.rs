//! The change log: which tenants' configuration changed when. Every configuration write
//! appends a row in its own transaction ([`log_change`]); other instances poll
//! [`Store::changed_tenants_since`] to drop stale caches when a pub/sub message was missed.

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tollgate_domain::{TenantId, TenantName, UnixTime};

use crate::AuditAppend;
use crate::audit::append_audit_in;
use crate::entity::{change_log, tenants};
use crate::error::DbResultExt;
use crate::{Store, StoreError};

/// Appends `(tenant's name, changed_at)` to the change log and `audit`'s events to the audit
/// trail, inside the caller's transaction, so that both commit (or roll back) with the
/// change they record. The last write of every configuration change within a tenant.
///
/// The log is keyed by name (what caches are keyed by); the name is read from the tenant's
/// row by the insert itself, so callers name the tenant by id like every other call. A
/// tenant that no longer exists logs nothing: its deletion logged its own row.
pub(crate) async fn log_change(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    changed_at: UnixTime,
    audit: &dyn AuditAppend,
) -> Result<(), StoreError> {
    let insert = Query::insert()
        .into_table(change_log::Entity)
        .columns([
            change_log::Column::TenantName,
            change_log::Column::ChangedAt,
        ])
        .select_from(
            Query::select()
                .column(tenants::Column::Name)
                .expr(Expr::value(changed_at))
                .from(tenants::Entity)
                .and_where(tenants::Column::Id.eq(tenant.as_str()))
                .to_owned(),
        )
        .map_err(|error| StoreError::Unavailable(sea_orm::DbErr::Custom(error.to_string())))?
        .to_owned();
    conn.execute(conn.get_database_backend().build(&insert))
        .await
        .or_unavailable()?;
    append_audit_in(conn, audit).await
}

/// [`log_change`] for the writes that name the tenant itself: creating, updating and
/// deleting it.
pub(crate) async fn log_change_of_name(
    conn: &impl ConnectionTrait,
    tenant: &TenantName,
    changed_at: UnixTime,
    audit: &dyn AuditAppend,
) -> Result<(), StoreError> {
    change_log::Entity::insert(change_log::ActiveModel {
        id: NotSet,
        tenant_name: Set(tenant.as_str().to_owned()),
        changed_at: Set(changed_at),
    })
    .exec_without_returning(conn)
    .await
    .or_unavailable()?;
    append_audit_in(conn, audit).await
}

impl Store {
    /// The current time of the store's clock: the `changed_at` of change-log rows.
    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The distinct names of tenants whose configuration changed at or after `since`, by
    /// name. A deleted tenant is listed too (its cache must go).
    ///
    /// `changed_at` is taken before the change commits, in whole seconds, and instances'
    /// clocks differ: a poller should ask from a little before its previous poll (e.g. a few
    /// seconds), not from exactly then, and tolerate seeing a tenant twice.
    pub async fn changed_tenants_since(
        &self,
        since: UnixTime,
    ) -> Result<Vec<TenantName>, StoreError> {
        change_log::Entity::find()
            .select_only()
            .column(change_log::Column::TenantName)
            .distinct()
            .filter(change_log::Column::ChangedAt.gte(since))
            .order_by_asc(change_log::Column::TenantName)
            .into_tuple::<String>()
            .all(&self.conn)
            .await
            .or_unavailable()?
            .iter()
            .map(|name| TenantName::parse(name).map_err(|e| StoreError::corrupt("change", e)))
            .collect()
    }

    /// Deletes change-log rows older than `before` (`changed_at < before`); returns how many.
    pub async fn purge_change_log(&self, before: UnixTime) -> Result<u64, StoreError> {
        let deleted = change_log::Entity::delete_many()
            .filter(change_log::Column::ChangedAt.lt(before))
            .exec(&self.conn)
            .await
            .or_unavailable()?;
        Ok(deleted.rows_affected)
    }
}
