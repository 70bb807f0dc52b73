//! The `signing_keys` table: a tenant's token-signing keys, the private half sealed.

use std::fmt;

use sea_orm::entity::prelude::*;

/// One key row. `id` is the JWS `kid`.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub alg: String,
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub public_jwk: String,
    #[sea_orm(column_type = "Blob")]
    pub private_key_sealed: Vec<u8>,
    pub created_at: i64,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
    pub remove_at: Option<i64>,
}

// Written by hand: even sealed, key material has no business in logs.
impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("activate_at", &self.activate_at)
            .field("retire_at", &self.retire_at)
            .field("remove_at", &self.remove_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
