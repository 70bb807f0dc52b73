//! The `revocations` table: the source of truth for revoked tokens, copied by fast stores.

use sea_orm::entity::prelude::*;

/// One revocation row. `kind` is `jti`, `sid`, `client` or `tenant`; `subject` is the
/// revoked identifier (empty for a tenant).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub subject: String,
    pub revoked_at: i64,
    pub expires_at: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
