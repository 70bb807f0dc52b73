//! The audit trail: `audit_events`, one row per recorded event, chained per tenant by
//! SHA-256 (`seq`, `prev_hash`, `hash`), and `audit_heads`, the newest `(seq, hash)` of each
//! tenant's chain plus the one row that serialises appends.
//!
//! - `audit_events.id` is not auto-increment: the store assigns it from the global counter in
//!   `audit_heads` while holding the audit lock, so ids are gap-free and increase in commit
//!   order (a reader that has seen id N never later sees a smaller id commit).
//! - `audit_heads` row `tenant_id = ''` (never a tenant id) is the audit lock and global
//!   counter: every append transaction updates it first, which takes PostgreSQL's row lock
//!   or SQLite's write lock before any head is read.
//! - A tenant's head outlives retention: purging old events must not restart its chain.
//! - No foreign key to `tenants`: the trail of a deleted tenant stays until retention.
//! - Lists (scopes, changed fields) are JSON arrays as text, like every other list column.

use sea_orm_migration::prelude::*;

/// Creates the audit tables and the audit lock row.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_audit"
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    Seq,
    Version,
    TimeMs,
    TenantName,
    Action,
    Result,
    ErrorCode,
    Actor,
    ClientId,
    SecretId,
    Audience,
    ScopesRequested,
    ScopesGranted,
    Jti,
    Source,
    Transport,
    TraceId,
    Resource,
    ChangedFields,
    Count,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    Table,
    TenantId,
    Seq,
    Hash,
}

/// A non-null `bigint`.
fn bigint(column: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    def.big_integer().not_null();
    def
}

/// A non-null text column.
fn text(column: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    def.text().not_null();
    def
}

/// A nullable text column.
fn nullable_text(column: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    def.text().null();
    def
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(AuditEvents::TenantId))
                    .col(bigint(AuditEvents::Seq))
                    .col(
                        ColumnDef::new(AuditEvents::Version)
                            .integer()
                            .not_null()
                            .to_owned(),
                    )
                    .col(bigint(AuditEvents::TimeMs))
                    .col(text(AuditEvents::TenantName))
                    .col(text(AuditEvents::Action))
                    .col(text(AuditEvents::Result))
                    .col(nullable_text(AuditEvents::ErrorCode))
                    .col(nullable_text(AuditEvents::Actor))
                    .col(nullable_text(AuditEvents::ClientId))
                    .col(nullable_text(AuditEvents::SecretId))
                    .col(nullable_text(AuditEvents::Audience))
                    .col(text(AuditEvents::ScopesRequested))
                    .col(text(AuditEvents::ScopesGranted))
                    .col(nullable_text(AuditEvents::Jti))
                    .col(nullable_text(AuditEvents::Source))
                    .col(nullable_text(AuditEvents::Transport))
                    .col(nullable_text(AuditEvents::TraceId))
                    .col(nullable_text(AuditEvents::Resource))
                    .col(text(AuditEvents::ChangedFields))
                    .col(bigint(AuditEvents::Count))
                    .col(text(AuditEvents::PrevHash))
                    .col(text(AuditEvents::Hash))
                    .to_owned(),
            )
            .await?;
        // One record per position of a tenant's chain, whatever the application does: the
        // last line of defence against a duplicated or forked chain. It also serves reading
        // a chain in order and paging a tenant's events by seq.
        manager
            .create_index(
                Index::create()
                    .name("ux_audit_events_tenant_seq")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Time-range queries of a tenant, and finding what retention purges.
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_tenant_time")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::TimeMs)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditHeads::Table)
                    .col(
                        ColumnDef::new(AuditHeads::TenantId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(bigint(AuditHeads::Seq))
                    .col(text(AuditHeads::Hash))
                    .to_owned(),
            )
            .await?;
        // The audit lock and global counter (events ever appended); its hash is unused.
        let lock_row = Query::insert()
            .into_table(AuditHeads::Table)
            .columns([AuditHeads::TenantId, AuditHeads::Seq, AuditHeads::Hash])
            .values(["".into(), 0i64.into(), "".into()])
            .map_err(|error| DbErr::Custom(error.to_string()))?
            .to_owned();
        manager.exec_stmt(lock_row).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping a table drops its indexes.
        manager
            .drop_table(Table::drop().table(AuditHeads::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await?;
        Ok(())
    }
}
