//! The `audit_heads` table: the newest `(seq, hash)` of each tenant's audit chain, and the
//! row `tenant_id = ''` that is the audit lock and global event counter.

use sea_orm::entity::prelude::*;

/// One chain head.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_heads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    pub seq: i64,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
