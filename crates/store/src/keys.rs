//! Signing-key repository: adding and listing a tenant's keys, rotating them (with the
//! compare-and-set that lets exactly one instance perform a scheduled rotation), and
//! deleting keys that have left the JWKS. The snapshot reads keys too.

use sea_orm::sea_query::{Expr, Func, SimpleExpr};
use sea_orm::{
    ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tollgate_domain::{KeyId, TenantId, UnixTime};

use crate::AuditAppend;
use crate::changes::log_change;
use crate::entity::{signing_keys, tenants};
use crate::error::DbResultExt;
use crate::records::key_row;
use crate::support::{insert_all, page_limit};
use crate::{SigningKeyRecord, Store, StoreError, TenantRecord};

impl Store {
    /// Adds a signing key, with its dates, to `tenant`, and writes a change-log row, in one
    /// transaction. `AlreadyExists` if the kid is taken.
    pub async fn add_signing_key(
        &self,
        tenant: &TenantId,
        key: &SigningKeyRecord,
        audit: &dyn AuditAppend,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;
        signing_keys::Entity::insert(key_row(tenant, key))
            .exec_without_returning(&txn)
            .await
            .or_conflict("signing key", "tenant")?;
        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()
    }

    /// Rotates `tenant`'s signing keys in one transaction:
    ///
    /// 1. sets the tenant's `keys_rotated_at` to `rotated_at`: unconditionally when
    ///    `expected_rotated_at` is `None`, otherwise only if it still holds the expected
    ///    value (`Some(None)`: never rotated). If it does not (another instance rotated
    ///    first, or the tenant is gone), nothing is written and the result is `Ok(false)`;
    /// 2. inserts `new_keys` (`AlreadyExists` if a kid is taken);
    /// 3. sets `retire_at` and `remove_at` of each `(kid, retire_at, remove_at)` in `retire`
    ///    (`NotFound { entity: "signing key" }`, nothing written, if the tenant has no such
    ///    key);
    /// 4. writes a change-log row.
    ///
    /// `Ok(true)` when rotated. Two concurrent calls with the same expected value: exactly
    /// one returns `true` (the second waits for the first's row lock, then no longer
    /// matches). With `expected_rotated_at: None` and no such tenant: `NotFound { "tenant" }`.
    pub async fn rotate_signing_keys(
        &self,
        tenant: &TenantId,
        expected_rotated_at: Option<Option<UnixTime>>,
        rotated_at: UnixTime,
        new_keys: &[SigningKeyRecord],
        retire: &[(KeyId, UnixTime, UnixTime)],
        audit: &dyn AuditAppend,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;

        // The compare-and-set comes first: it is the write that serialises rotations (and,
        // on SQLite, takes the write lock before anything is read).
        let mut claim = tenants::Entity::update_many()
            .col_expr(tenants::Column::KeysRotatedAt, Expr::value(rotated_at))
            .filter(tenants::Column::Id.eq(tenant.as_str()));
        // `IS NOT DISTINCT FROM`, spelled portably: `= NULL` would match nothing.
        claim = match expected_rotated_at {
            None => claim,
            Some(None) => claim.filter(tenants::Column::KeysRotatedAt.is_null()),
            Some(Some(expected)) => claim.filter(tenants::Column::KeysRotatedAt.eq(expected)),
        };
        let claimed = claim.exec(&txn).await.or_unavailable()?;
        if claimed.rows_affected == 0 {
            // Dropping the transaction rolls it back; it has written nothing anyway.
            return match expected_rotated_at {
                None => Err(StoreError::NotFound { entity: "tenant" }),
                Some(_) => Ok(false),
            };
        }

        let rows = new_keys.iter().map(|key| key_row(tenant, key)).collect();
        insert_all(&txn, rows, "signing key", "tenant").await?;

        for (kid, retire_at, remove_at) in retire {
            let updated = signing_keys::Entity::update_many()
                .col_expr(signing_keys::Column::RetireAt, Expr::value(*retire_at))
                .col_expr(signing_keys::Column::RemoveAt, Expr::value(*remove_at))
                .filter(signing_keys::Column::TenantId.eq(tenant.as_str()))
                .filter(signing_keys::Column::Id.eq(kid.as_str()))
                .exec(&txn)
                .await
                .or_unavailable()?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound {
                    entity: "signing key",
                });
            }
        }

        log_change(&txn, tenant, self.now(), audit).await?;
        txn.commit().await.or_unavailable()?;
        Ok(true)
    }

    /// Every signing key of `tenant`, with its dates, newest first.
    pub async fn list_signing_keys(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<SigningKeyRecord>, StoreError> {
        signing_keys::Entity::find()
            .filter(signing_keys::Column::TenantId.eq(tenant.as_str()))
            .order_by_desc(signing_keys::Column::CreatedAt)
            .order_by_desc(signing_keys::Column::Id)
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(SigningKeyRecord::try_from)
            .collect()
    }

    /// Deletes `tenant`'s keys whose `remove_at` is at or before `now` (they have left the
    /// JWKS, and every token they signed has expired), with a change-log row if any were, in
    /// one transaction. Returns how many.
    pub async fn delete_removed_keys(
        &self,
        tenant: &TenantId,
        now: UnixTime,
        audit: &dyn AuditAppend,
    ) -> Result<u64, StoreError> {
        let txn = self.conn.begin().await.or_unavailable()?;
        // A NULL remove_at compares as unknown: keys without one stay.
        let deleted = signing_keys::Entity::delete_many()
            .filter(signing_keys::Column::TenantId.eq(tenant.as_str()))
            .filter(signing_keys::Column::RemoveAt.lte(now))
            .exec(&txn)
            .await
            .or_unavailable()?;
        if deleted.rows_affected > 0 {
            log_change(&txn, tenant, self.now(), audit).await?;
        }
        txn.commit().await.or_unavailable()?;
        Ok(deleted.rows_affected)
    }

    /// Up to `limit` tenants whose keys were last rotated at or before `before` (by
    /// `keys_rotated_at`, or `created_at` for a tenant never rotated), least recently
    /// rotated first (then by name). For the rotation scheduler, across all tenants; each
    /// rotation is then claimed with [`Store::rotate_signing_keys`]'s compare-and-set.
    pub async fn tenants_due_for_rotation(
        &self,
        before: UnixTime,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let last_rotated = || -> SimpleExpr {
            Func::coalesce([
                Expr::col(tenants::Column::KeysRotatedAt).into(),
                Expr::col(tenants::Column::CreatedAt).into(),
            ])
            .into()
        };
        tenants::Entity::find()
            .filter(Expr::expr(last_rotated()).lte(before))
            .order_by(last_rotated(), Order::Asc)
            .order_by_asc(tenants::Column::Name)
            .limit(page_limit(limit))
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(TenantRecord::try_from)
            .collect()
    }
}
