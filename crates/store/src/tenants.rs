//! Tenant repository: creating a tenant with everything it starts with, reading, listing,
//! updating, and deleting a tenant with everything it owns.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use tollgate_domain::TenantName;

use crate::AuditAppend;
use crate::changes::log_change_of_name;
use crate::entity::{apis, app_secrets, apps, grants, revocations, signing_keys, tenants};
use crate::error::DbResultExt;
use crate::records::{api_row, app_row, grant_row, key_row, secret_row, tenant_row};
use crate::support::{insert_all, page_limit};
use crate::{NewTenant, Store, StoreError, TenantRecord};

impl Store {
    /// Writes the tenant (every field, `keys_rotated_at` included), its keys, APIs and apps
    /// (with their secrets and grants) and a change-log row in one transaction.
    /// `AlreadyExists` if the name (or any id or client id) is taken; a grant on an API not
    /// in `new.apis` is `NotFound { entity: "api" }`.
    pub async fn create_tenant(
        &self,
        new: &NewTenant,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let tenant_id = &new.tenant.id;
        let txn = self.conn.begin().await.or_unavailable()?;

        tenants::Entity::insert(tenant_row(&new.tenant))
            .exec_without_returning(&txn)
            .await
            .or_conflict("tenant", "tenant")?;
        let keys = new.keys.iter().map(|key| key_row(tenant_id, key)).collect();
        insert_all(&txn, keys, "signing key", "tenant").await?;
        let apis = new.apis.iter().map(|api| api_row(tenant_id, api)).collect();
        insert_all(&txn, apis, "api", "tenant").await?;

        let apps = new
            .apps
            .iter()
            .map(|new_app| app_row(tenant_id, &new_app.app))
            .collect();
        insert_all(&txn, apps, "app", "tenant").await?;
        let secrets = new
            .apps
            .iter()
            .map(|new_app| secret_row(tenant_id, &new_app.app.id, &new_app.secret))
            .collect();
        insert_all(&txn, secrets, "secret", "app").await?;
        let grants = new
            .apps
            .iter()
            .flat_map(|new_app| {
                new_app
                    .grants
                    .iter()
                    .map(|grant| grant_row(tenant_id, &new_app.app.id, grant))
            })
            .collect();
        insert_all(&txn, grants, "grant", "api").await?;

        log_change_of_name(&txn, &new.tenant.name, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// The tenant named `name`, if any.
    pub async fn find_tenant(&self, name: &TenantName) -> Result<Option<TenantRecord>, StoreError> {
        tenants::Entity::find()
            .filter(tenants::Column::Name.eq(name.as_str()))
            .one(&self.conn)
            .await
            .or_unavailable()?
            .map(TenantRecord::try_from)
            .transpose()
    }

    /// Up to `limit` tenants ordered by name, starting strictly after `after`.
    pub async fn list_tenants(
        &self,
        after: Option<&TenantName>,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let mut query = tenants::Entity::find();
        if let Some(after) = after {
            query = query.filter(tenants::Column::Name.gt(after.as_str()));
        }
        query
            .order_by_asc(tenants::Column::Name)
            .limit(page_limit(limit))
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(TenantRecord::try_from)
            .collect()
    }

    /// Writes `display_name`, `signing_alg`, `rate_limit_per_second` and `updated_at` of the
    /// tenant with `record.id`, and a change-log row, in one transaction; the id and name
    /// never change, and `keys_rotated_at` belongs to [`Store::rotate_signing_keys`].
    /// `NotFound` if it does not exist.
    pub async fn update_tenant(
        &self,
        record: &TenantRecord,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;
        let result = tenants::Entity::update_many()
            .col_expr(
                tenants::Column::DisplayName,
                Expr::value(record.display_name.clone()),
            )
            .col_expr(
                tenants::Column::SigningAlg,
                Expr::value(record.signing_alg.as_str()),
            )
            .col_expr(
                tenants::Column::RateLimitPerSecond,
                Expr::value(record.rate_limit_per_second),
            )
            .col_expr(tenants::Column::UpdatedAt, Expr::value(record.updated_at))
            .filter(tenants::Column::Id.eq(record.id.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        if result.rows_affected == 0 {
            return Err(StoreError::NotFound { entity: "tenant" });
        }
        log_change_of_name(&txn, &record.name, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// Deletes the tenant named `name` and every row it owns (its revocations too: its id is
    /// never reused, so they can cover nothing any more), and writes a change-log row, in one
    /// transaction. `false` if there was no such tenant (and nothing is logged).
    pub async fn delete_tenant(
        &self,
        name: &TenantName,
        audit: &dyn AuditAppend,
    ) -> Result<bool, StoreError> {
        // The tenant's id as a subquery, so that the first statement of the transaction is
        // already a write: a SQLite transaction that reads first and writes later can fail
        // with "busy" when another connection wrote in between, instead of waiting.
        let tenant_id = || {
            Query::select()
                .column(tenants::Column::Id)
                .from(tenants::Entity)
                .and_where(tenants::Column::Name.eq(name.as_str()))
                .to_owned()
        };
        let txn = self.conn.begin().await.or_unavailable()?;

        // Children before parents: the foreign keys have no ON DELETE action.
        grants::Entity::delete_many()
            .filter(grants::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        app_secrets::Entity::delete_many()
            .filter(app_secrets::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        apps::Entity::delete_many()
            .filter(apps::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        apis::Entity::delete_many()
            .filter(apis::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        signing_keys::Entity::delete_many()
            .filter(signing_keys::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        revocations::Entity::delete_many()
            .filter(revocations::Column::TenantId.in_subquery(tenant_id()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        let deleted = tenants::Entity::delete_many()
            .filter(tenants::Column::Name.eq(name.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        let existed = deleted.rows_affected > 0;
        if existed {
            log_change_of_name(&txn, name, self.now(), audit).await?;
        }

        txn.commit().await.or_unavailable()?;
        Ok(existed)
    }

    /// Whether no tenant exists at all (a first start).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let any = tenants::Entity::find()
            .select_only()
            .column(tenants::Column::Id)
            .into_tuple::<String>()
            .one(&self.conn)
            .await
            .or_unavailable()?;
        Ok(any.is_none())
    }
}
