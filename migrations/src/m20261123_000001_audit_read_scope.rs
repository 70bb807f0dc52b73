//! The scope `audit:read` for tenants that existed before it: every built-in Management API
//! (`apis.is_system`) defines it, and every built-in admin app (`apps.is_system`) holds it on
//! its tenant's Management API, as tenants created since are set up.
//!
//! A data migration: rows are read, their JSON scope lists extended (definitions appended,
//! a grant's scopes kept sorted, as the store writes them), and written back one by one.
//! Idempotent: rows that already have the scope are left alone. `down` takes the scope away
//! again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, QueryResult};
use serde_json::Value;

/// Adds `audit:read` to built-in Management APIs and admin apps.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_audit_read_scope"
    }
}

/// The scope, and its description (as `tollgate-management` defines it).
const SCOPE: &str = "audit:read";
const DESCRIPTION: &str = "Read, follow and verify the audit trail";

#[derive(DeriveIden)]
enum Apis {
    Table,
    Id,
    Scopes,
    IsSystem,
}

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
    IsSystem,
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    AppId,
    ApiId,
    Scopes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rewrite(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rewrite(manager, false).await
    }
}

/// Adds (`add`) or removes the scope in every built-in API's definitions and in every
/// admin app's grant on one.
async fn rewrite(manager: &SchemaManager<'_>, add: bool) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let system_apis = Query::select()
        .column(Apis::Id)
        .from(Apis::Table)
        .and_where(Expr::col(Apis::IsSystem).eq(true))
        .to_owned();
    let system_apps = Query::select()
        .column(Apps::Id)
        .from(Apps::Table)
        .and_where(Expr::col(Apps::IsSystem).eq(true))
        .to_owned();

    let apis = Query::select()
        .columns([Apis::Id, Apis::Scopes])
        .from(Apis::Table)
        .and_where(Expr::col(Apis::IsSystem).eq(true))
        .to_owned();
    for row in db.query_all(backend.build(&apis)).await? {
        let id: String = text(&row, "id")?;
        let scopes = json(&text(&row, "scopes")?, "apis.scopes", &id)?;
        if let Some(scopes) = definitions(scopes, add) {
            let update = Query::update()
                .table(Apis::Table)
                .value(Apis::Scopes, scopes)
                .and_where(Expr::col(Apis::Id).eq(id))
                .to_owned();
            execute(db, backend, &update).await?;
        }
    }

    let grants = Query::select()
        .columns([Grants::AppId, Grants::ApiId, Grants::Scopes])
        .from(Grants::Table)
        .and_where(Expr::col(Grants::ApiId).in_subquery(system_apis))
        .and_where(Expr::col(Grants::AppId).in_subquery(system_apps))
        .to_owned();
    for row in db.query_all(backend.build(&grants)).await? {
        let app_id: String = text(&row, "app_id")?;
        let api_id: String = text(&row, "api_id")?;
        let scopes = json(&text(&row, "scopes")?, "grants.scopes", &app_id)?;
        if let Some(scopes) = held(scopes, add) {
            let update = Query::update()
                .table(Grants::Table)
                .value(Grants::Scopes, scopes)
                .and_where(Expr::col(Grants::AppId).eq(app_id))
                .and_where(Expr::col(Grants::ApiId).eq(api_id))
                .to_owned();
            execute(db, backend, &update).await?;
        }
    }
    Ok(())
}

async fn execute(
    db: &impl ConnectionTrait,
    backend: DbBackend,
    statement: &UpdateStatement,
) -> Result<(), DbErr> {
    db.execute(backend.build(statement)).await.map(|_| ())
}

fn text(row: &QueryResult, column: &str) -> Result<String, DbErr> {
    row.try_get("", column)
}

fn json(text: &str, column: &str, id: &str) -> Result<Value, DbErr> {
    serde_json::from_str(text)
        .map_err(|error| DbErr::Migration(format!("{column} of {id} is not JSON: {error}")))
}

/// An API's scope definitions (`[{"value": …, "description": …}]`) with the scope added at
/// the end or removed; `None` when nothing changes.
fn definitions(mut scopes: Value, add: bool) -> Option<String> {
    let list = scopes.as_array_mut()?;
    let position = list
        .iter()
        .position(|definition| definition.get("value").and_then(Value::as_str) == Some(SCOPE));
    match (add, position) {
        (true, None) => {
            list.push(serde_json::json!({ "value": SCOPE, "description": DESCRIPTION }))
        }
        (false, Some(index)) => {
            list.remove(index);
        }
        _ => return None,
    }
    Some(scopes.to_string())
}

/// A grant's scopes (`["a", "b"]`, sorted) with the scope added or removed; `None` when
/// nothing changes.
fn held(scopes: Value, add: bool) -> Option<String> {
    let mut list: Vec<String> = scopes
        .as_array()?
        .iter()
        .filter_map(|scope| scope.as_str().map(str::to_owned))
        .collect();
    let has_scope = list.iter().any(|scope| scope == SCOPE);
    match (add, has_scope) {
        (true, false) => list.push(SCOPE.to_owned()),
        (false, true) => list.retain(|scope| scope != SCOPE),
        _ => return None,
    }
    list.sort();
    Some(Value::from(list).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_gain_the_scope_once() {
        let before = serde_json::json!([{ "value": "apis:read", "description": "Read APIs" }]);
        let added = definitions(before.clone(), true).unwrap_or_default();
        let added: Value = serde_json::from_str(&added).unwrap_or_default();
        assert_eq!(
            added,
            serde_json::json!([
                { "value": "apis:read", "description": "Read APIs" },
                { "value": "audit:read", "description": "Read, follow and verify the audit trail" },
            ])
        );
        assert_eq!(definitions(added.clone(), true), None, "idempotent");
        assert_eq!(definitions(added, false), Some(before.to_string()));
    }

    #[test]
    fn grants_gain_the_scope_sorted() {
        let before = serde_json::json!(["apis:read", "tokens:revoke"]);
        assert_eq!(
            held(before.clone(), true).as_deref(),
            Some(r#"["apis:read","audit:read","tokens:revoke"]"#)
        );
        assert_eq!(held(serde_json::json!(["audit:read"]), true), None);
        assert_eq!(held(before, false), None);
        assert_eq!(
            held(serde_json::json!(["audit:read", "b"]), false).as_deref(),
            Some(r#"["b"]"#)
        );
    }
}
