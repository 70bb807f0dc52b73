//! Fresh databases for each case: a temporary SQLite file, or a uniquely named PostgreSQL
//! database created over `TOLLGATE_TEST_POSTGRES_URL` (with
//! `tollgate_store::testing`) and dropped afterwards. Migrated, or (for migration cases)
//! left empty.

use std::future::Future;
use std::io::Write;
use std::sync::Once;

use sea_orm::sea_query::{Alias, Asterisk, Expr, Query};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tollgate_store::Store;
use tollgate_store::testing::{drop_postgres_database, fresh_postgres_database};

use crate::TestResult;

/// The backends the suite runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a case gets: a migrated, empty store (unless the case asked for no migration) and a
/// second, raw connection to the same database for checks and writes the store API does not
/// offer (row counts, rows of an older schema).
#[derive(Clone)]
pub struct TestDb {
    pub store: Store,
    pub raw: DatabaseConnection,
    /// The database's URL, for cases that need a pool of their own (a second instance).
    pub url: String,
}

/// Whether [`run`] migrates the database before the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Migrated,
    Empty,
}

/// Every table that holds a tenant's rows, and the column naming the tenant.
pub const TENANT_TABLES: [(&str, &str); 7] = [
    ("tenants", "id"),
    ("apis", "tenant_id"),
    ("apps", "tenant_id"),
    ("app_secrets", "tenant_id"),
    ("grants", "tenant_id"),
    ("signing_keys", "tenant_id"),
    ("revocations", "tenant_id"),
];

impl TestDb {
    /// How many rows of `table` belong to the tenant with `tenant_id`.
    pub async fn count(&self, table: &str, tenant_id: &str) -> Result<i64, sea_orm::DbErr> {
        let column = TENANT_TABLES
            .iter()
            .find(|(name, _)| *name == table)
            .map_or("tenant_id", |(_, column)| *column);
        self.count_where(table, column, tenant_id).await
    }

    /// How many change-log rows name the tenant `name`.
    pub async fn changes(&self, name: &str) -> Result<i64, sea_orm::DbErr> {
        self.count_where("change_log", "tenant_name", name).await
    }

    /// How many rows of `table` have `column = value`.
    pub async fn count_where(
        &self,
        table: &str,
        column: &str,
        value: impl Into<sea_orm::Value>,
    ) -> Result<i64, sea_orm::DbErr> {
        let query = Query::select()
            .expr(Expr::col(Asterisk).count())
            .from(Alias::new(table))
            .and_where(Expr::col(Alias::new(column)).eq(value))
            .to_owned();
        let statement = self.raw.get_database_backend().build(&query);
        let row = self
            .raw
            .query_one(statement)
            .await?
            .ok_or_else(|| sea_orm::DbErr::Custom("count returned no row".into()))?;
        row.try_get_by_index::<i64>(0)
    }

    /// Row counts of the tenant in every table, in [`TENANT_TABLES`] order.
    pub async fn counts(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(&'static str, i64)>, sea_orm::DbErr> {
        let mut counts = Vec::new();
        for (table, _) in TENANT_TABLES {
            counts.push((table, self.count(table, tenant_id).await?));
        }
        Ok(counts)
    }
}

/// Runs `case` on a fresh database of `backend` (migrated, or not at all), then removes the
/// database, even when the case fails or panics.
pub async fn run<F, Fut>(backend: Backend, schema: Schema, case: F) -> TestResult
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("store.db").display()
            );
            let db = open(&url, schema).await?;
            let outcome = tokio::spawn(case(db.clone())).await;
            db.store.close().await?;
            db.raw.close().await?;
            finish(outcome)
        }
        Backend::Postgres => {
            let Some(base_url) = postgres_url()? else {
                return Ok(());
            };
            let url = fresh_postgres_database(&base_url).await?;
            let outcome = match open(&url, schema).await {
                Ok(db) => {
                    let outcome = tokio::spawn(case(db.clone())).await;
                    db.store.close().await?;
                    db.raw.close().await?;
                    outcome
                }
                Err(error) => Ok(Err(error)),
            };
            drop_postgres_database(&base_url, &url).await?;
            finish(outcome)
        }
    }
}

/// A case's result, re-raising its panic if it panicked.
fn finish(outcome: Result<TestResult, tokio::task::JoinError>) -> TestResult {
    match outcome {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(error.into()),
    }
}

async fn open(
    url: &str,
    schema: Schema,
) -> Result<TestDb, Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::connect(url).await?;
    if schema == Schema::Migrated {
        store.migrate().await?;
    }
    let raw = Database::connect(url).await?;
    Ok(TestDb {
        store,
        raw,
        url: url.to_owned(),
    })
}

/// The PostgreSQL URL, or `None` after saying SKIPPED (once per run), or an error when
/// every backend is required.
fn postgres_url() -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    match std::env::var("TOLLGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") => {
            Err("TOLLGATE_REQUIRE_BACKENDS=1 but TOLLGATE_TEST_POSTGRES_URL is not set".into())
        }
        _ => {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr: the test harness captures `eprintln!`
                // of passing tests, and a skip must not go unnoticed.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: postgres suite — TOLLGATE_TEST_POSTGRES_URL is not set"
                );
            });
            Ok(None)
        }
    }
}
