//! The `tenants` table.

use sea_orm::entity::prelude::*;

/// One tenant row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub name: String,
    pub display_name: String,
    pub signing_alg: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub keys_rotated_at: Option<i64>,
    pub rate_limit_per_second: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
