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

/// The pools of a store: one for everything, and the one audit batches are appended through.
pub(crate) struct Pools {
    pub(crate) conn: DatabaseConnection,
    pub(crate) audit: DatabaseConnection,
}

/// Opens the pools for `url` (`sqlite:…` or `postgres://…` / `postgresql://…`).
///
/// On a SQLite file, audit batches get a connection of their own, kept open: SQLite drops a
/// connection's page cache whenever another connection has written since its last
/// transaction, so appends spread over a pool's connections would each start cold and
/// read back the index pages they extend (measured: most of the cost of an append). Writes
/// are serialised by SQLite anyway. Elsewhere the one pool serves both.
pub(crate) async fn open(url: &str) -> Result<Pools, StoreError> {
    if url.starts_with("sqlite:") {
        let conn = open_sqlite(url, false).await?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let audit = if in_memory {
            conn.clone()
        } else {
            open_sqlite(url, true).await?
        };
        Ok(Pools { conn, audit })
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let conn = open_postgres(url).await?;
        Ok(Pools {
            audit: conn.clone(),
            conn,
        })
    } else {
        // Only the scheme is named: the rest of a URL may hold a password.
        Err(StoreError::Unavailable(DbErr::Custom(
            "unsupported database URL: expected sqlite: or postgres://".to_owned(),
        )))
    }
}

/// A pool on a SQLite database; `is_single_writer`: one connection, never retired.
async fn open_sqlite(url: &str, is_single_writer: bool) -> Result<DatabaseConnection, StoreError> {
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
    } else if is_single_writer {
        (
            options.journal_mode(SqliteJournalMode::Wal),
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
