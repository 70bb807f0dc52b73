//! Fresh databases for each case: a temporary SQLite file, or a uniquely named PostgreSQL
//! database created over `TOLLGATE_TEST_POSTGRES_URL` and dropped afterwards.

use std::future::Future;
use std::io::Write;
use std::sync::Once;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tollgate_store::Store;
use tollgate_store::testing::{drop_postgres_database, fresh_postgres_database};

use crate::TestResult;

/// The backends the suite runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a case gets: a migrated, empty store, a raw connection to the same database (for
/// tampering and checks the store API does not offer), and the URL for more pools.
#[derive(Clone)]
pub struct TestDb {
    pub store: Store,
    pub raw: DatabaseConnection,
    pub url: String,
}

impl TestDb {
    /// Runs one statement on the raw connection.
    pub async fn exec(&self, sql: &str) -> Result<u64, sea_orm::DbErr> {
        Ok(self.raw.execute_unprepared(sql).await?.rows_affected())
    }

    /// The single integer `sql` selects.
    pub async fn scalar(&self, sql: &str) -> Result<i64, sea_orm::DbErr> {
        let statement = Statement::from_string(self.raw.get_database_backend(), sql);
        self.raw
            .query_one(statement)
            .await?
            .ok_or_else(|| sea_orm::DbErr::Custom(format!("no row for {sql}")))?
            .try_get_by_index::<i64>(0)
    }
}

/// Runs `case` on a fresh, migrated database of `backend`, then removes the database.
pub async fn run<F, Fut>(backend: Backend, case: F) -> TestResult
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("audit.db").display()
            );
            let db = open(&url).await?;
            let outcome = tokio::spawn(case(db.clone())).await;
            // The case may have closed the pool already; closing again is harmless.
            db.store.close().await?;
            db.raw.close().await?;
            finish(outcome)
        }
        Backend::Postgres => {
            let Some(base_url) = postgres_url()? else {
                return Ok(());
            };
            let url = fresh_postgres_database(&base_url).await?;
            let outcome = match open(&url).await {
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

pub async fn open(url: &str) -> Result<TestDb, Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let raw = Database::connect(url).await?;
    Ok(TestDb {
        store,
        raw,
        url: url.to_owned(),
    })
}

/// The PostgreSQL URL, or `None` after saying SKIPPED (once per run), or an error when
/// every backend is required.
pub fn postgres_url() -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    match std::env::var("TOLLGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") => {
            Err("TOLLGATE_REQUIRE_BACKENDS=1 but TOLLGATE_TEST_POSTGRES_URL is not set".into())
        }
        _ => {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr: the harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: postgres suite — TOLLGATE_TEST_POSTGRES_URL is not set"
                );
            });
            Ok(None)
        }
    }
}
