//! App repository: apps with their secrets and grants. Also reads grants back with their
//! audience, for this module and the snapshot.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tollgate_domain::{AppId, ClientId, TenantId};

use crate::AuditAppend;
use crate::changes::log_change;
use crate::entity::{apis, app_secrets, apps, grants};
use crate::error::DbResultExt;
use crate::records::{app_row, grant_from_row, grant_row, secret_row};
use crate::support::{IN_LIST_CHUNK, insert_all, page_limit};
use crate::{AppRecord, AppWithGrants, GrantRecord, SecretRecord, Store, StoreError};

impl Store {
    /// Adds `app` to `tenant` with its first secret and its grants, and writes a change-log
    /// row, in one transaction.
    /// `secret.app_id` is taken from `app.id`. `AlreadyExists` if the client id (or an id)
    /// is taken; a grant on an API that is not the tenant's is `NotFound { entity: "api" }`.
    pub async fn create_app(
        &self,
        tenant: &TenantId,
        app: &AppRecord,
        secret: &SecretRecord,
        grants: &[GrantRecord],
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;

        apps::Entity::insert(app_row(tenant, app))
            .exec_without_returning(&txn)
            .await
            .or_conflict("app", "tenant")?;
        app_secrets::Entity::insert(secret_row(tenant, &app.id, secret))
            .exec_without_returning(&txn)
            .await
            .or_conflict("secret", "app")?;
        // The (api_id, tenant_id) foreign key refuses an API of another tenant.
        let rows = grants
            .iter()
            .map(|grant| grant_row(tenant, &app.id, grant))
            .collect();
        insert_all(&txn, rows, "grant", "api").await?;

        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// The app of `tenant` with `client_id`, with its grants, if any.
    pub async fn find_app(
        &self,
        tenant: &TenantId,
        client_id: &ClientId,
    ) -> Result<Option<AppWithGrants>, StoreError> {
        let Some(row) = apps::Entity::find()
            .filter(apps::Column::TenantId.eq(tenant.as_str()))
            .filter(apps::Column::ClientId.eq(client_id.as_str()))
            .one(&self.conn)
            .await
            .or_unavailable()?
        else {
            return Ok(None);
        };
        let app = AppRecord::try_from(row)?;
        let mut grants =
            load_grants(&self.conn, tenant, Some(std::slice::from_ref(&app.id))).await?;
        Ok(Some(AppWithGrants {
            grants: grants.remove(&app.id).unwrap_or_default(),
            app,
        }))
    }

    /// Up to `limit` apps of `tenant` ordered by client id, starting strictly after `after`,
    /// each with its grants. Two queries in all, whatever the page size.
    pub async fn list_apps(
        &self,
        tenant: &TenantId,
        after: Option<&ClientId>,
        limit: u64,
    ) -> Result<Vec<AppWithGrants>, StoreError> {
        let mut query = apps::Entity::find().filter(apps::Column::TenantId.eq(tenant.as_str()));
        if let Some(after) = after {
            query = query.filter(apps::Column::ClientId.gt(after.as_str()));
        }
        let apps = query
            .order_by_asc(apps::Column::ClientId)
            .limit(page_limit(limit))
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(AppRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<AppId> = apps.iter().map(|app| app.id.clone()).collect();
        let grants = load_grants(&self.conn, tenant, Some(&ids)).await?;
        Ok(attach_grants(apps, grants))
    }

    /// Writes `name`, `description`, `is_blocked`, `rate_limit_per_second` and `updated_at`
    /// of the app with `app.id` (its client id and `is_system` never change) and, when
    /// `grants` is given, replaces all its grants; with a change-log row, in one
    /// transaction. `NotFound` if the tenant has no such app, or `NotFound { entity: "api" }`
    /// if a grant names an API that is not the tenant's.
    pub async fn update_app(
        &self,
        tenant: &TenantId,
        app: &AppRecord,
        grants: Option<&[GrantRecord]>,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;

        let updated = apps::Entity::update_many()
            .col_expr(apps::Column::Name, Expr::value(app.name.clone()))
            .col_expr(
                apps::Column::Description,
                Expr::value(app.description.clone()),
            )
            .col_expr(apps::Column::IsBlocked, Expr::value(app.is_blocked))
            .col_expr(
                apps::Column::RateLimitPerSecond,
                Expr::value(app.rate_limit_per_second),
            )
            .col_expr(apps::Column::UpdatedAt, Expr::value(app.updated_at))
            .filter(apps::Column::TenantId.eq(tenant.as_str()))
            .filter(apps::Column::Id.eq(app.id.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { entity: "app" });
        }

        if let Some(new_grants) = grants {
            grants::Entity::delete_many()
                .filter(grants::Column::TenantId.eq(tenant.as_str()))
                .filter(grants::Column::AppId.eq(app.id.as_str()))
                .exec(&txn)
                .await
                .or_unavailable()?;
            let rows = new_grants
                .iter()
                .map(|grant| grant_row(tenant, &app.id, grant))
                .collect();
            insert_all(&txn, rows, "grant", "api").await?;
        }

        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// Deletes the app of `tenant` with `client_id`, its secrets and its grants, and writes a
    /// change-log row, in one transaction. `false` if there was no such app (nothing
    /// logged). Its revocations stay until they expire.
    pub async fn delete_app(
        &self,
        tenant: &TenantId,
        client_id: &ClientId,
        audit: &dyn AuditAppend,
    ) -> Result<bool, StoreError> {
        // A subquery rather than a read first: see `delete_tenant`.
        let app_id = || {
            Query::select()
                .column(apps::Column::Id)
                .from(apps::Entity)
                .and_where(apps::Column::TenantId.eq(tenant.as_str()))
                .and_where(apps::Column::ClientId.eq(client_id.as_str()))
                .to_owned()
        };
        let txn = self.conn.begin().await.or_unavailable()?;

        grants::Entity::delete_many()
            .filter(grants::Column::TenantId.eq(tenant.as_str()))
            .filter(grants::Column::AppId.in_subquery(app_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        app_secrets::Entity::delete_many()
            .filter(app_secrets::Column::TenantId.eq(tenant.as_str()))
            .filter(app_secrets::Column::AppId.in_subquery(app_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        let deleted = apps::Entity::delete_many()
            .filter(apps::Column::TenantId.eq(tenant.as_str()))
            .filter(apps::Column::ClientId.eq(client_id.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        let existed = deleted.rows_affected > 0;
        if existed {
            log_change(&txn, tenant, self.now(), audit).await?;
        }

        txn.commit().await.or_unavailable()?;
        Ok(existed)
    }
}

/// The grants of the apps of the tenant with `tenant_id` (of those in `app_ids`, or of all its apps when
/// `None`), by app id, each app's ordered by audience.
pub(crate) async fn load_grants(
    conn: &impl ConnectionTrait,
    tenant_id: &TenantId,
    app_ids: Option<&[AppId]>,
) -> Result<HashMap<AppId, Vec<GrantRecord>>, StoreError> {
    let query = || {
        grants::Entity::find()
            .find_also_related(apis::Entity)
            // Both sides filtered on the tenant: the join alone must not be what keeps
            // another tenant's rows out.
            .filter(grants::Column::TenantId.eq(tenant_id.as_str()))
            .filter(apis::Column::TenantId.eq(tenant_id.as_str()))
            .order_by_asc(grants::Column::AppId)
            .order_by_asc(apis::Column::Identifier)
    };
    let rows = match app_ids {
        None => query().all(conn).await.or_unavailable()?,
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in ids.chunks(IN_LIST_CHUNK) {
                let chunk_rows = query()
                    .filter(grants::Column::AppId.is_in(chunk.iter().map(AppId::as_str)))
                    .all(conn)
                    .await
                    .or_unavailable()?;
                rows.extend(chunk_rows);
            }
            rows
        }
    };

    let mut by_app: HashMap<AppId, Vec<GrantRecord>> = HashMap::new();
    for (grant, api) in rows {
        // The filter on apis.tenant_id makes the outer join an inner one; a missing API
        // would mean a broken foreign key.
        let api = api.ok_or_else(|| StoreError::Corrupt {
            entity: "grant",
            reason: "grant without its api".to_owned(),
        })?;
        let record = grant_from_row(&grant, &api.identifier)?;
        by_app
            .entry(AppId::new(grant.app_id))
            .or_default()
            .push(record);
    }
    Ok(by_app)
}

/// Pairs each app with its grants, keeping the apps' order.
pub(crate) fn attach_grants(
    apps: Vec<AppRecord>,
    mut grants: HashMap<AppId, Vec<GrantRecord>>,
) -> Vec<AppWithGrants> {
    apps.into_iter()
        .map(|app| AppWithGrants {
            grants: grants.remove(&app.id).unwrap_or_default(),
            app,
        })
        .collect()
}
