//! Opening the connection pool for a database URL, with settings per backend.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::StoreError;

/// How long a request waits for a free SQLite connection before the database counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a PostgreSQL connection, a new one's connection attempts
/// included, before the database counts as unavailable (503 / UNAVAILABLE). Short, because
/// while PostgreSQL is down or restarting every request would otherwise wait this long
/// (the pool retries a refused connection until then), and requests queued behind one that
/// waits (such as audit batches, written one at a time) wait for it too.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the first PostgreSQL connection may take at start: the database may still be
/// starting too.
const POSTGRES_START_TIMEOUT: Duration = Duration::from_secs(10);

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
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = if in_memory {
            None
        } else {
            let options = SqliteConnectOptions::from_str(url).map_err(connection_error)?;
            let path = options.get_filename().to_path_buf();
            prepare_sqlite_file(&path, url.contains("mode=rwc"))?;
            Some(path)
        };
        let conn = open_sqlite(url, false).await?;
        if let Some(path) = &file {
            // SQLite gives the -wal and -shm files it creates the database file's mode; an
            // older or copied set may still be looser.
            protect_sqlite_files(path)?;
        }
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
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    // One connection now, so that a wrong URL or password stops the start; a database that
    // does not answer yet gets several acquire timeouts' worth of patience.
    // Patience with a database that does not answer yet is real time.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    loop {
        match pool.acquire().await {
            Ok(connection) => {
                drop(connection);
                break;
            }
            Err(sea_orm::sqlx::Error::PoolTimedOut)
                if started.elapsed() < POSTGRES_START_TIMEOUT => {}
            Err(error) => return Err(connection_error(error)),
        }
    }
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

fn connection_error(error: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Unavailable(DbErr::Conn(RuntimeErr::SqlxError(error)))
}

/// The mode of a SQLite database and its -wal and -shm files: owner only. They hold every
/// secret hash and sealed key.
#[cfg(unix)]
const SQLITE_FILE_MODE: u32 = 0o600;

/// Creates the database file empty with mode 0600 when SQLite would create it (`create`:
/// the URL says `mode=rwc`), so it is never readable by others, not even between SQLite
/// creating it and a later `chmod`; tightens an existing one.
fn prepare_sqlite_file(path: &Path, create: bool) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;

        if create && !path.exists() {
            // An empty file is an empty SQLite database.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(SQLITE_FILE_MODE)
                .open(path)
                .map_err(|error| file_error("cannot create", path, &error))?;
        }
        protect_sqlite_files(path)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, create);
        Ok(())
    }
}

/// Restricts the database file and its -wal and -shm files, where they exist, to mode 0600;
/// logs each change.
fn protect_sqlite_files(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;

        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = Path::new(&file);
            let Ok(metadata) = std::fs::metadata(file) else {
                continue;
            };
            let current = metadata.permissions().mode() & 0o777;
            if current & !SQLITE_FILE_MODE != 0 {
                let tightened = current & SQLITE_FILE_MODE;
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(tightened))
                    .map_err(|error| file_error("cannot restrict the mode of", file, &error))?;
                tracing::warn!(
                    path = %file.display(),
                    from = format!("{current:o}"),
                    to = format!("{tightened:o}"),
                    "tightened the permissions of a database file that others could read"
                );
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn file_error(what: &str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Unavailable(DbErr::Custom(format!("{what} {}: {error}", path.display())))
}
