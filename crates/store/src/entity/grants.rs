//! The `grants` table: which scopes an app holds on an API. Keyed by `(app_id, api_id)`.

use sea_orm::entity::prelude::*;

/// One grant row; `scopes` is a JSON array of scope strings.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "grants")]
pub struct Model {
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub api_id: String,
    #[sea_orm(column_type = "Text")]
    pub scopes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The API granted on; read back to fill in the grant's audience.
    #[sea_orm(
        belongs_to = "super::apis::Entity",
        from = "Column::ApiId",
        to = "super::apis::Column::Id"
    )]
    Api,
}

impl Related<super::apis::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Api.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
