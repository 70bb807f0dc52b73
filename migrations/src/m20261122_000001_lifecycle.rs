//! Access lifecycle: signing-key rotation dates, scheduled-rotation bookkeeping, rate-limit
//! overrides, revocations and the change log.
//!
//! Upgrades a database made by the initial migration in place: every added column is
//! nullable or has a default that describes existing rows (an existing key has been active
//! since forever and is neither retiring nor leaving the JWKS; no tenant has rotated yet).
//!
//! SQLite alters one column per statement, so each column is its own `ALTER TABLE`.

use sea_orm_migration::prelude::*;

/// Adds the lifecycle columns and tables.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_lifecycle"
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    KeysRotatedAt,
    RateLimitPerSecond,
}

#[derive(DeriveIden)]
enum Apps {
    Table,
    RateLimitPerSecond,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    ActivateAt,
    RetireAt,
    RemoveAt,
}

#[derive(DeriveIden)]
enum Revocations {
    Table,
    Id,
    TenantId,
    Kind,
    Subject,
    RevokedAt,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChangeLog {
    Table,
    Id,
    TenantName,
    ChangedAt,
}

/// A nullable `bigint` (Unix seconds, or a count).
fn nullable_bigint(column: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    def.big_integer().null();
    def
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

/// `ALTER TABLE table ADD COLUMN column`.
async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    column: ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(column.to_owned())
                .to_owned(),
        )
        .await
}

/// `ALTER TABLE table DROP COLUMN column`.
async fn drop_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    column: impl IntoIden + 'static,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Signing keys: when a key starts signing, stops signing, and leaves the JWKS.
        // Existing keys: active since forever (0), never retiring, never removed.
        add_column(
            manager,
            SigningKeys::Table,
            bigint(SigningKeys::ActivateAt).default(0).to_owned(),
        )
        .await?;
        add_column(
            manager,
            SigningKeys::Table,
            nullable_bigint(SigningKeys::RetireAt),
        )
        .await?;
        add_column(
            manager,
            SigningKeys::Table,
            nullable_bigint(SigningKeys::RemoveAt),
        )
        .await?;

        // Tenants: the last key rotation (NULL: never; the creation time counts), which the
        // scheduled rotation compares and sets so that one instance performs it; and an
        // optional per-tenant token rate limit.
        add_column(
            manager,
            Tenants::Table,
            nullable_bigint(Tenants::KeysRotatedAt),
        )
        .await?;
        add_column(
            manager,
            Tenants::Table,
            nullable_bigint(Tenants::RateLimitPerSecond),
        )
        .await?;

        // Apps: an optional per-app token rate limit (NULL: the server's default).
        add_column(
            manager,
            Apps::Table,
            nullable_bigint(Apps::RateLimitPerSecond),
        )
        .await?;

        // Revocations: the source of truth that fast stores (Redis, memory) copy. `kind` is
        // `jti`, `sid`, `client` or `tenant`; `subject` is the revoked identifier (empty for
        // a tenant). A row may be forgotten once `expires_at` has passed.
        manager
            .create_table(
                Table::create()
                    .table(Revocations::Table)
                    .col(
                        ColumnDef::new(Revocations::Id)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(Revocations::TenantId))
                    .col(text(Revocations::Kind))
                    .col(text(Revocations::Subject))
                    .col(bigint(Revocations::RevokedAt))
                    .col(bigint(Revocations::ExpiresAt))
                    .col(bigint(Revocations::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_revocations_tenant")
                            .from(Revocations::Table, Revocations::TenantId)
                            .to(Tenants::Table, Tenants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Looking up what could cover a token, and every by-tenant query (tenant_id leads,
        // so it needs no index of its own).
        manager
            .create_index(
                Index::create()
                    .name("ix_revocations_tenant_kind_subject")
                    .table(Revocations::Table)
                    .col(Revocations::TenantId)
                    .col(Revocations::Kind)
                    .col(Revocations::Subject)
                    .to_owned(),
            )
            .await?;
        // Reading the live ones and purging the expired ones.
        manager
            .create_index(
                Index::create()
                    .name("ix_revocations_expires_at")
                    .table(Revocations::Table)
                    .col(Revocations::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        // The change log: one row per committed configuration change of a tenant, polled
        // by other instances to drop stale caches when a pub/sub message was missed. By
        // name, not id, and without a foreign key: a deleted tenant's row must remain.
        // An auto-increment `bigint` key is `bigserial` on PostgreSQL and
        // `integer PRIMARY KEY AUTOINCREMENT` (a 64-bit rowid) on SQLite.
        manager
            .create_table(
                Table::create()
                    .table(ChangeLog::Table)
                    .col(
                        ColumnDef::new(ChangeLog::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text(ChangeLog::TenantName))
                    .col(bigint(ChangeLog::ChangedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_change_log_changed_at")
                    .table(ChangeLog::Table)
                    .col(ChangeLog::ChangedAt)
                    .to_owned(),
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping a table drops its indexes.
        manager
            .drop_table(Table::drop().table(ChangeLog::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Revocations::Table).to_owned())
            .await?;
        drop_column(manager, Apps::Table, Apps::RateLimitPerSecond).await?;
        drop_column(manager, Tenants::Table, Tenants::RateLimitPerSecond).await?;
        drop_column(manager, Tenants::Table, Tenants::KeysRotatedAt).await?;
        drop_column(manager, SigningKeys::Table, SigningKeys::RemoveAt).await?;
        drop_column(manager, SigningKeys::Table, SigningKeys::RetireAt).await?;
        drop_column(manager, SigningKeys::Table, SigningKeys::ActivateAt).await?;
        Ok(())
    }
}
