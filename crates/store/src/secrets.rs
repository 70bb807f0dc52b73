//! Secret repository: listing an app's secrets, rotating (add one, expire others), ending
//! one, and recording when secrets were last used.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use tollgate_domain::{AppId, SecretId, TenantId, UnixTime};

use crate::AuditAppend;
use crate::changes::log_change;
use crate::entity::app_secrets;
use crate::error::DbResultExt;
use crate::records::secret_row;
use crate::{SecretRecord, Store, StoreError};

impl Store {
    /// Every secret of `tenant`'s app `app` (expired ones too), newest first.
    pub async fn list_secrets(
        &self,
        tenant: &TenantId,
        app: &AppId,
    ) -> Result<Vec<SecretRecord>, StoreError> {
        Ok(app_secrets::Entity::find()
            .filter(app_secrets::Column::TenantId.eq(tenant.as_str()))
            .filter(app_secrets::Column::AppId.eq(app.as_str()))
            .order_by_desc(app_secrets::Column::CreatedAt)
            .order_by_desc(app_secrets::Column::Id)
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(SecretRecord::from)
            .collect())
    }

    /// In one transaction: inserts `new` as a secret of `app` (`new.app_id` is taken from
    /// `app.id`), sets `expires_at` of each `(secret id, expires_at)` in `expire` (exactly
    /// that value: use [`Store::expire_secret`] to only ever shorten), and writes a
    /// change-log row.
    ///
    /// `AlreadyExists { "secret" }` if the id is taken; `NotFound { "app" }` if the tenant
    /// has no app `app.id`; `NotFound { "secret" }` if an id in `expire` is not a secret of
    /// that app. Nothing is written on any error.
    pub async fn add_secret(
        &self,
        tenant: &TenantId,
        app: &AppId,
        new: &SecretRecord,
        expire: &[(SecretId, UnixTime)],
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;

        // The (app_id, tenant_id) foreign key refuses an app of another tenant.
        app_secrets::Entity::insert(secret_row(tenant, app, new))
            .exec_without_returning(&txn)
            .await
            .or_conflict("secret", "app")?;
        for (secret_id, expires_at) in expire {
            let updated = app_secrets::Entity::update_many()
                .col_expr(app_secrets::Column::ExpiresAt, Expr::value(*expires_at))
                .filter(app_secrets::Column::TenantId.eq(tenant.as_str()))
                .filter(app_secrets::Column::AppId.eq(app.as_str()))
                .filter(app_secrets::Column::Id.eq(secret_id.as_str()))
                .exec(&txn)
                .await
                .or_unavailable()?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound { entity: "secret" });
            }
        }

        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// Makes secret `secret_id` of `app` stop authenticating at `at` at the latest: sets
    /// `expires_at` to the earlier of its current value and `at` (a secret that already
    /// expires sooner keeps its time), with a change-log row, in one transaction. `false`
    /// (and nothing written) if the app has no such secret.
    pub async fn expire_secret(
        &self,
        tenant: &TenantId,
        app: &AppId,
        secret_id: &SecretId,
        at: UnixTime,
        audit: &dyn AuditAppend,
    ) -> Result<bool, StoreError> {
        let column = app_secrets::Column::ExpiresAt;
        // min(expires_at, at), with NULL (never) as the largest: portable SQL has no
        // two-argument minimum (SQLite's min() is PostgreSQL's LEAST()).
        let earlier = Expr::case(
            Condition::any().add(column.is_null()).add(column.gt(at)),
            at,
        )
        .finally(Expr::col(column));
        let txn = self.conn.begin().await.or_unavailable()?;
        let updated = app_secrets::Entity::update_many()
            .col_expr(column, earlier.into())
            .filter(app_secrets::Column::TenantId.eq(tenant.as_str()))
            .filter(app_secrets::Column::AppId.eq(app.as_str()))
            .filter(app_secrets::Column::Id.eq(secret_id.as_str()))
            .exec(&txn)
            .await
            .or_unavailable()?;
        if updated.rows_affected == 0 {
            return Ok(false);
        }
        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()?;
        Ok(true)
    }

    /// Records when secrets were used: for each `(tenant id, secret id, used_at)`, sets the
    /// secret's `last_used_at` to `used_at` unless it already holds a later time (so
    /// batches flushed out of order never move it back). Unknown secrets are skipped. One
    /// statement per distinct secret (the latest time of each), in one transaction, in a
    /// fixed order so that concurrent batches from several instances cannot deadlock. No
    /// change-log row: this is not configuration.
    pub async fn touch_secrets(
        &self,
        uses: &[(TenantId, SecretId, UnixTime)],
    ) -> Result<(), StoreError> {
        let mut latest: BTreeMap<(&str, &str), UnixTime> = BTreeMap::new();
        for (tenant_id, secret_id, used_at) in uses {
            let entry = latest
                .entry((tenant_id.as_str(), secret_id.as_str()))
                .or_insert(*used_at);
            *entry = (*entry).max(*used_at);
        }
        if latest.is_empty() {
            return Ok(());
        }

        let txn = self.conn.begin().await.or_unavailable()?;
        for ((tenant_id, secret_id), used_at) in latest {
            let column = app_secrets::Column::LastUsedAt;
            app_secrets::Entity::update_many()
                .col_expr(column, Expr::value(used_at))
                .filter(app_secrets::Column::TenantId.eq(tenant_id))
                .filter(app_secrets::Column::Id.eq(secret_id))
                .filter(
                    Condition::any()
                        .add(column.is_null())
                        .add(column.lt(used_at)),
                )
                .exec(&txn)
                .await
                .or_unavailable()?;
        }
        txn.commit().await.or_unavailable()
    }
}
