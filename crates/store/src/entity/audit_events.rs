//! The `audit_events` table: one row per audit event, chained per tenant.

use sea_orm::entity::prelude::*;

/// One audit event row. `id` is assigned by the store from the global audit counter (not by
/// the database); the list columns are JSON arrays of strings.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub tenant_id: String,
    pub seq: i64,
    pub version: i32,
    pub time_ms: i64,
    pub tenant_name: String,
    pub action: String,
    pub result: String,
    pub error_code: Option<String>,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub secret_id: Option<String>,
    pub audience: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub scopes_requested: String,
    #[sea_orm(column_type = "Text")]
    pub scopes_granted: String,
    pub jti: Option<String>,
    pub source: Option<String>,
    pub transport: Option<String>,
    pub trace_id: Option<String>,
    pub resource: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub changed_fields: String,
    pub count: i64,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
