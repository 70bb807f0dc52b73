//! Tollgate's persistence: sea-orm entities and the [`Store`], whose repository methods read
//! and write tenants, APIs, apps, secrets, grants, signing keys, revocations, the change
//! log and the audit trail on SQLite or PostgreSQL.
//!
//! Invariants:
//! - This is the only crate that speaks SQL. Other crates see parsed domain records
//!   ([`TenantRecord`], [`ApiRecord`], …), never rows.
//! - Every repository method takes the tenant first, and every query it runs filters on that
//!   tenant's id, so no call can read or change another tenant's rows. A call within a tenant
//!   names it by its [`TenantId`](tollgate_domain::TenantId); only the ways from a name to a
//!   tenant ([`Store::find_tenant`], [`Store::load_tenant_snapshot`]) and
//!   [`Store::delete_tenant`] take its name. The schema backs this
//!   up: grants and secrets reference their app and API through `(id, tenant_id)`.
//! - Every multi-row write is one transaction: after a failure nothing is half written.
//! - The same code and schema run on SQLite and PostgreSQL, with the same results
//!   (including sort order: see the migration's byte-wise collation).
//! - Every write of a tenant's configuration appends a row to the change log in the same
//!   transaction, so other instances that poll it ([`Store::changed_tenants_since`]) learn
//!   of every committed change even when a pub/sub message was lost.
//! - Audit events are appended under one lock, read and extended in one transaction, so
//!   several instances build one gap-free chain per tenant ([`Store::append_audit_batch`]).
//!   Audit queries read one tenant's events ([`AuditScope::Tenant`]) or, for the system
//!   tenant's admins, every tenant's ([`AuditScope::All`]).

mod apis;
mod apps;
mod audit;
mod changes;
mod connect;
mod entity;
mod error;
mod keys;
mod records;
mod revocations;
mod secrets;
mod snapshot;
mod support;
mod tenants;
pub mod testing;

pub use audit::{
    AUDIT_ROW_OVERHEAD, AuditAppend, AuditFilter, AuditHead, AuditRead, AuditReadOrder,
    AuditRecord, AuditRow, AuditScope, AuditSlice, ELIDED_TEXT_CHARS,
};
pub use error::StoreError;
pub use records::{
    ApiRecord, AppRecord, AppWithGrants, GrantRecord, NewApp, NewTenant, SecretRecord,
    SigningKeyRecord, TenantRecord, TenantSnapshot,
};

use std::fmt;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tollgate_domain::{Clock, SystemClock};
use tollgate_migrations::{Migrator, MigratorTrait};

use crate::error::DbResultExt;

/// A handle on the database: a small connection pool. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Store {
    conn: DatabaseConnection,
    /// Where audit batches are appended (see `connect::open`).
    audit_conn: DatabaseConnection,
    /// Stamps change-log rows; the caller's clock for everything else.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `url`: `sqlite://path?mode=rwc`, `sqlite::memory:` or `postgres://…`.
    ///
    /// SQLite files run in WAL mode with a busy timeout and foreign keys on; an in-memory
    /// SQLite database lives in exactly one connection that is never recycled (it would
    /// vanish with it). The URL is never echoed in errors: it may hold a password.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pools = connect::open(url).await?;
        Ok(Store {
            conn: pools.conn,
            audit_conn: pools.audit,
            clock: Arc::new(SystemClock),
        })
    }

    /// This store reading the time from `clock` (the system clock by default). The store
    /// reads it only to stamp change-log rows; every other time is given by the caller.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Store {
        Store { clock, ..self }
    }

    /// Applies every pending migration of [`tollgate_migrations::Migrator`]. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.conn, None).await.or_unavailable()
    }

    /// One round trip to the database (a pooled connection's ping), for health checks.
    /// Bounded by the pool's acquire timeout; callers that need a shorter bound wrap it.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.conn.ping().await.or_unavailable()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.conn.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            // Not compiled in (no `sqlx-mysql`), so `connect` can never produce it.
            DbBackend::MySql => "mysql",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned. Clones of this
    /// store fail afterwards.
    ///
    /// A SQLite file is checkpointed first and its WAL emptied, so that after a clean stop
    /// the database file alone holds every committed write (a copy of it is complete).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.audit_conn.close_by_ref().await.or_unavailable()?;
        if self.conn.get_database_backend() == DbBackend::Sqlite {
            // Best effort: it reports busy when a reader is still open, and fails when the
            // pool is closed already; SQLite then checkpoints when its last connection closes.
            let _ = self
                .conn
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await;
        }
        self.conn.close_by_ref().await.or_unavailable()
    }
}
