//! Signing-key repository: adding a tenant's keys. Keys are read with the tenant snapshot.

use sea_orm::EntityTrait;

use crate::entity::signing_keys;
use crate::error::DbResultExt;
use crate::records::key_row;
use crate::{SigningKeyRecord, Store, StoreError, TenantRecord};

impl Store {
    /// Adds an active signing key to `tenant`. `AlreadyExists` if the kid is taken.
    pub async fn add_signing_key(
        &self,
        tenant: &TenantRecord,
        key: &SigningKeyRecord,
    ) -> Result<(), StoreError> {
        signing_keys::Entity::insert(key_row(&tenant.id, key))
            .exec_without_returning(&self.conn)
            .await
            .or_conflict("signing key", "tenant")?;
        Ok(())
    }
}
