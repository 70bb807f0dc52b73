//! The `apis` table.

use sea_orm::entity::prelude::*;

/// One API row; `scopes` is a JSON array of `{"value", "description"}`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apis")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub identifier: String,
    #[sea_orm(column_type = "Text")]
    pub scopes: String,
    pub token_lifetime_seconds: i64,
    pub signing_alg: Option<String>,
    pub is_system: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
