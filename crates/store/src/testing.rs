//! Test support: throwaway PostgreSQL databases, so that every test run (and every test)
//! gets an empty database of its own on a shared server. Used by this crate's integration
//! tests and by `tollgate-testkit`; nothing in production calls it.
//!
//! It lives here because this is the crate that speaks SQL.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector};

use crate::StoreError;
use crate::error::DbResultExt;

/// Every database made here is named with this prefix, and only such databases are dropped.
const PREFIX: &str = "tollgate_test_";

/// Creates a new, empty database on the server of `base_url` (a `postgres://` URL whose
/// role may create databases) and returns the URL of the new database.
///
/// Where the server has ICU, the database collates by the `en-US` locale rather than
/// bytes: a schema that relied on the server's default (often `C`) for its sort order
/// would then show up in tests instead of in production.
pub async fn fresh_postgres_database(base_url: &str) -> Result<String, StoreError> {
    let name = unique_name();
    let admin = connect_admin(base_url).await?;
    // The name is ours ([a-z0-9_]), so formatting it into the statement is safe.
    let icu = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    );
    let created = match admin.execute_unprepared(&icu).await {
        Ok(_) => Ok(()),
        // PostgreSQL before 15, or built without ICU.
        Err(_) => admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map(|_| ()),
    };
    let closed = admin.close().await;
    created.or_unavailable()?;
    closed.or_unavailable()?;
    Ok(with_database(base_url, &name))
}

/// Drops a database made by [`fresh_postgres_database`], given its URL, even if
/// connections to it remain. Refuses any database it did not make.
pub async fn drop_postgres_database(base_url: &str, database_url: &str) -> Result<(), StoreError> {
    let name = database_name(database_url).unwrap_or_default();
    let ours = name.starts_with(PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ours {
        return Err(StoreError::Unavailable(DbErr::Custom(format!(
            "refusing to drop database {name:?}: not made by fresh_postgres_database"
        ))));
    }
    let admin = connect_admin(base_url).await?;
    // FORCE: a pool a failed test left open must not keep the database alive.
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let mut dropped = admin.execute_unprepared(&drop).await;
    // FORCE cannot end an autovacuum worker that happens to be visiting the database
    // ("must be a member of the role whose process is being terminated" for a role that is
    // not a superuser); it leaves soon, so wait a little and try again. The server does the
    // waiting: this crate has no timer of its own.
    for _ in 0..DROP_ATTEMPTS {
        if dropped.is_ok() {
            break;
        }
        let _ = admin.execute_unprepared("SELECT pg_sleep(0.2)").await;
        dropped = admin.execute_unprepared(&drop).await;
    }
    let closed = admin.close().await;
    dropped.or_unavailable()?;
    closed.or_unavailable()
}

/// How many times a failed DROP DATABASE is retried, 0.2 s apart.
const DROP_ATTEMPTS: usize = 25;

/// One connection to the server's maintenance database, for CREATE/DROP DATABASE.
async fn connect_admin(base_url: &str) -> Result<DatabaseConnection, StoreError> {
    let to_error = |error| StoreError::Unavailable(DbErr::Conn(RuntimeErr::SqlxError(error)));
    let options = PgConnectOptions::from_str(base_url).map_err(to_error)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(to_error)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

/// A database name no other test or concurrent run uses.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Only a seed for a unique name: no reading of time that anything depends on.
    #[allow(clippy::disallowed_methods)]
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{PREFIX}{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database (the path) replaced by `database`; any query is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The database (the path) of `url`, if it names one.
fn database_name(url: &str) -> Option<&str> {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let slash = base[authority_start..].find('/')?;
    Some(&base[authority_start + slash + 1..]).filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(database_name("postgres://h/x?sslmode=disable"), Some("x"));
        assert_eq!(database_name("postgres://u:p@h:5432/x"), Some("x"));
        assert_eq!(database_name("postgres://h"), None);
        assert_eq!(database_name("postgres://h/"), None);
        assert!(unique_name().starts_with(PREFIX));
        assert_ne!(unique_name(), unique_name());
    }

    #[tokio::test]
    async fn drops_only_its_own_databases() {
        // Refused before any connection is attempted, so no server is needed.
        for url in [
            "postgres://h/postgres",
            "postgres://h",
            "postgres://h/tollgate_test_x;--",
        ] {
            let refused = drop_postgres_database("postgres://h/postgres", url).await;
            assert!(
                matches!(&refused, Err(StoreError::Unavailable(DbErr::Custom(m))) if m.starts_with("refusing")),
                "{url}: {refused:?}"
            );
        }
    }
}
