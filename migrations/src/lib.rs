//! Tollgate's database schema, as an ordered list of sea-orm migrations. The [`Migrator`] is
//! applied at start and by `tollgate migrate`; it records what ran in `seaql_migrations`, so
//! applying it again is a no-op.
//!
//! Invariant: every column type here is portable between SQLite and PostgreSQL (text ids,
//! `bigint` Unix seconds, booleans, JSON as text, binary key material), so one schema serves
//! both backends.

use sea_orm_migration::prelude::*;

pub use sea_orm_migration::MigratorTrait;

mod m20261121_000001_initial;
mod m20261122_000001_lifecycle;
mod m20261122_000002_audit;
mod m20261123_000001_audit_read_scope;
mod m20261123_000002_audit_time_index;

/// Applies Tollgate's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261122_000001_lifecycle::Migration),
            Box::new(m20261122_000002_audit::Migration),
            Box::new(m20261123_000001_audit_read_scope::Migration),
            Box::new(m20261123_000002_audit_time_index::Migration),
        ]
    }
}
