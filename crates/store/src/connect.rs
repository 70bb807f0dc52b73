//! Opening the connection pool for a database URL, with settings per backend.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::StoreError;

/// How long a request waits for a free connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits for another connection's write lock before failing with "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite allows one writer at a time; a few connections still let reads run beside it.
const SQLITE_FILE_CONNECTIONS: u32 = 4;

/// Enough for a single server's concurrency without crowding a shared PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 10;

/// Opens a pool for `url` (`sqlite:…` or `postgres://…` / `postgresql://…`).
pub(crate) async fn open(url: &str) -> Result<DatabaseConnection, StoreError> {
    if url.starts_with("sqlite:") {
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url).await
    } else {
        // Only the scheme is named: the rest of a URL may hold a password.
        Err(StoreError::Unavailable(DbErr::Custom(
            "unsupported database URL: expected sqlite: or postgres://".to_owned(),
        )))
    }
}

async fn open_sqlite(url: &str) -> Result<DatabaseConnection, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(connection_error)?
        // Declared foreign keys are only enforced when this is on, per connection.
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let (options, pool) = if in_memory {
        // Each in-memory database dies with its last connection, so keep exactly one and
        // never let the pool retire it. (WAL does not apply to memory databases.)
        (
            options,
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
        )
    } else {
        // WAL lets readers proceed while one connection writes.
        (
            options.journal_mode(SqliteJournalMode::Wal),
            SqlitePoolOptions::new().max_connections(SQLITE_FILE_CONNECTIONS),
        )
    };
    let pool = pool
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connection_error)?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

async fn open_postgres(url: &str) -> Result<DatabaseConnection, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(connection_error)?;
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connection_error)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

fn connection_error(error: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Unavailable(DbErr::Conn(RuntimeErr::SqlxError(error)))
}
