//! API repository: an API's definition, and keeping grants within the scopes it defines.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use tollgate_domain::{ApiIdentifier, ScopeSet, TenantId};

use crate::AuditAppend;
use crate::changes::log_change;
use crate::entity::{apis, grants};
use crate::error::DbResultExt;
use crate::records::{api_row, scope_definitions_json, scope_set_json};
use crate::support::page_limit;
use crate::{ApiRecord, Store, StoreError};

impl Store {
    /// Adds `api` to `tenant`, with a change-log row, in one transaction. `AlreadyExists` if
    /// the tenant has an API with the same identifier (or the id is taken).
    pub async fn create_api(
        &self,
        tenant: &TenantId,
        api: &ApiRecord,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;
        apis::Entity::insert(api_row(tenant, api))
            .exec_without_returning(&txn)
            .await
            .or_conflict("api", "tenant")?;
        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// The API of `tenant` with `identifier`, if any.
    pub async fn find_api(
        &self,
        tenant: &TenantId,
        identifier: &ApiIdentifier,
    ) -> Result<Option<ApiRecord>, StoreError> {
        apis::Entity::find()
            .filter(apis::Column::TenantId.eq(tenant.as_str()))
            .filter(apis::Column::Identifier.eq(identifier.as_str()))
            .one(&self.conn)
            .await
            .or_unavailable()?
            .map(ApiRecord::try_from)
            .transpose()
    }

    /// Up to `limit` APIs of `tenant` ordered by identifier, starting strictly after `after`.
    pub async fn list_apis(
        &self,
        tenant: &TenantId,
        after: Option<&ApiIdentifier>,
        limit: u64,
    ) -> Result<Vec<ApiRecord>, StoreError> {
        let mut query = apis::Entity::find().filter(apis::Column::TenantId.eq(tenant.as_str()));
        if let Some(after) = after {
            query = query.filter(apis::Column::Identifier.gt(after.as_str()));
        }
        query
            .order_by_asc(apis::Column::Identifier)
            .limit(page_limit(limit))
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(ApiRecord::try_from)
            .collect()
    }

    /// Writes `name`, `scopes`, `token_lifetime`, `signing_alg` and `updated_at` of the API
    /// with `api.id` (its identifier and `is_system` never change), and in the same
    /// transaction removes from every grant on it the scopes it no longer defines and writes
    /// a change-log row. A grant left with no scope stays: the app still holds the API.
    /// `NotFound` if the tenant has no such API.
    pub async fn update_api(
        &self,
        tenant: &TenantId,
        api: &ApiRecord,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let defined: ScopeSet = api
            .scopes
            .iter()
            .map(|definition| definition.value.clone())
            .collect();
        let txn = self.conn.begin().await.or_unavailable()?;

        // The write comes first so SQLite takes its write lock (waiting if need be) before
        // this transaction reads anything.
        let updated = apis::Entity::update_many()
            .col_expr(apis::Column::Name, Expr::value(api.name.clone()))
            .col_expr(
                apis::Column::Scopes,
                Expr::value(scope_definitions_json(&api.scopes)),
            )
            .col_expr(
                apis::Column::TokenLifetimeSeconds,
                Expr::value(api.token_lifetime.seconds()),
            )
            .col_expr(
                apis::Column::SigningAlg,
                Expr::value(api.signing_alg.map(|alg| alg.as_str().to_owned())),
            )
            .col_expr(apis::Column::UpdatedAt, Expr::value(api.updated_at))
            .filter(apis::Column::TenantId.eq(tenant.as_str()))
            .filter(apis::Column::Id.eq(api.id.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { entity: "api" });
        }

        let grants_on_api = grants::Entity::find()
            .filter(grants::Column::TenantId.eq(tenant.as_str()))
            .filter(grants::Column::ApiId.eq(api.id.as_str()))
            .all(&txn)
            .await
            .or_unavailable()?;
        for grant in grants_on_api {
            let held: Vec<String> = serde_json::from_str(&grant.scopes)
                .map_err(|e| StoreError::corrupt_json("grant", &e))?;
            let held = ScopeSet::parse_all(held.iter().map(String::as_str))
                .map_err(|e| StoreError::corrupt("grant", e))?;
            let kept = held.intersection(&defined);
            if kept == held {
                continue;
            }
            grants::Entity::update_many()
                .col_expr(grants::Column::Scopes, Expr::value(scope_set_json(&kept)))
                .filter(grants::Column::TenantId.eq(tenant.as_str()))
                .filter(grants::Column::AppId.eq(grant.app_id.as_str()))
                .filter(grants::Column::ApiId.eq(grant.api_id.as_str()))
                .exec(&txn)
                .await
                .or_unavailable()?;
        }

        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// Deletes the API of `tenant` with `identifier` and every grant on it, and writes a
    /// change-log row, in one transaction. `false` if there was no such API (nothing logged).
    pub async fn delete_api(
        &self,
        tenant: &TenantId,
        identifier: &ApiIdentifier,
        audit: &dyn AuditAppend,
    ) -> Result<bool, StoreError> {
        // A subquery rather than a read first: see `delete_tenant`.
        let api_id = Query::select()
            .column(apis::Column::Id)
            .from(apis::Entity)
            .and_where(apis::Column::TenantId.eq(tenant.as_str()))
            .and_where(apis::Column::Identifier.eq(identifier.as_str()))
            .to_owned();
        let txn = self.conn.begin().await.or_unavailable()?;

        grants::Entity::delete_many()
            .filter(grants::Column::TenantId.eq(tenant.as_str()))
            .filter(grants::Column::ApiId.in_subquery(api_id))
            .exec(&txn)
            .await
            .or_unavailable()?;
        let deleted = apis::Entity::delete_many()
            .filter(apis::Column::TenantId.eq(tenant.as_str()))
            .filter(apis::Column::Identifier.eq(identifier.as_str()))
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
