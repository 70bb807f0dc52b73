//! The `apps` table.

use sea_orm::entity::prelude::*;

/// One app row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    #[sea_orm(unique)]
    pub client_id: String,
    pub name: String,
    pub description: String,
    pub is_blocked: bool,
    pub is_system: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub rate_limit_per_second: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
