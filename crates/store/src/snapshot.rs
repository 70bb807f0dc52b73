//! The tenant snapshot: everything the token hot path needs about one tenant, read in one
//! transaction so that it is consistent.

use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IsolationLevel, QueryFilter,
    QueryOrder, TransactionTrait,
};
use tollgate_domain::TenantName;

use crate::apps::{attach_grants, load_grants};
use crate::entity::{apis, app_secrets, apps, signing_keys, tenants};
use crate::error::DbResultExt;
use crate::{
    ApiRecord, AppRecord, SecretRecord, SigningKeyRecord, Store, StoreError, TenantRecord,
    TenantSnapshot,
};

impl Store {
    /// The tenant named `name` with its APIs, apps and grants, secrets and signing keys, or
    /// `None` if there is no such tenant. Read in one transaction: on PostgreSQL at
    /// REPEATABLE READ, so every query sees the same snapshot; on SQLite a read
    /// transaction is a snapshot already.
    pub async fn load_tenant_snapshot(
        &self,
        name: &TenantName,
    ) -> Result<Option<TenantSnapshot>, StoreError> {
        let txn = match self.conn.get_database_backend() {
            DbBackend::Postgres => self
                .conn
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await
                .or_unavailable()?,
            // SQLite has neither setting (sea-orm would log a warning on every call).
            _ => self.conn.begin().await.or_unavailable()?,
        };

        let Some(tenant) = tenants::Entity::find()
            .filter(tenants::Column::Name.eq(name.as_str()))
            .one(&txn)
            .await
            .or_unavailable()?
        else {
            return Ok(None);
        };
        let tenant = TenantRecord::try_from(tenant)?;
        let tenant_id = tenant.id.as_str();

        let apis = apis::Entity::find()
            .filter(apis::Column::TenantId.eq(tenant_id))
            .order_by_asc(apis::Column::Identifier)
            .all(&txn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(ApiRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let apps = apps::Entity::find()
            .filter(apps::Column::TenantId.eq(tenant_id))
            .order_by_asc(apps::Column::ClientId)
            .all(&txn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(AppRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let grants = load_grants(&txn, &tenant.id, None).await?;
        let secrets = app_secrets::Entity::find()
            .filter(app_secrets::Column::TenantId.eq(tenant_id))
            .order_by_asc(app_secrets::Column::AppId)
            .order_by_asc(app_secrets::Column::CreatedAt)
            .order_by_asc(app_secrets::Column::Id)
            .all(&txn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(SecretRecord::from)
            .collect();
        let keys = signing_keys::Entity::find()
            .filter(signing_keys::Column::TenantId.eq(tenant_id))
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::Id)
            .all(&txn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(SigningKeyRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;

        // Read-only: committing only ends the transaction.
        txn.commit().await.or_unavailable()?;
        Ok(Some(TenantSnapshot {
            apps: attach_grants(apps, grants),
            tenant,
            apis,
            secrets,
            keys,
        }))
    }
}
