//! Audit repository: appending batches of audit events to per-tenant hash chains, listing
//! and tailing them, reading a chain for verification, and purging old events.
//!
//! The store knows the chain's shape (`seq`, `prev_hash`, `hash`) but not how hashes are
//! computed: that is `tollgate-audit`'s, which hands the store a closure that builds the
//! batch's rows from the current chain heads.
//!
//! ## Appending: one lock, read and extend in one transaction
//!
//! Several instances may append to one tenant's chain. [`Store::append_audit_batch`] runs
//! one transaction that
//!
//! 1. updates the audit lock row (`audit_heads` with `tenant_id = ''`). On PostgreSQL that
//!    takes the row lock, so concurrent appends (from any instance) queue behind it until
//!    commit; on SQLite, a write as first statement takes the database's single write lock
//!    before anything is read (a deferred transaction that read first could fail with
//!    `SQLITE_BUSY_SNAPSHOT` when it then writes);
//! 2. reads the heads of the batch's tenants — current, because every appender holds the
//!    lock — and lets the caller build the rows from them;
//! 3. checks that the rows continue each head (seq `head + 1, …`, each `prev_hash` the
//!    previous hash), inserts them (multi-row `INSERT`s) with ids taken from the global
//!    counter, and moves the heads forward with a guard (`seq` may only grow);
//! 4. commits. Any failure rolls everything back: no event, head or counter is half written.
//!
//! One lock for all tenants rather than one per tenant: a batch holds many tenants' events
//! and per-tenant row locks would need a global lock order (and new tenants' heads an
//! insert) to stay deadlock-free; more importantly, it makes `id` a commit-ordered,
//! gap-free position across tenants, so a live tail across tenants ([`AuditScope::All`])
//! can resume from an id without ever missing a row that committed late. The cost is that
//! batches of all instances commit one at a time; group commit makes each batch carry many
//! events, so the lock is taken once per batch, not per event. `UNIQUE (tenant_id, seq)`
//! backs the design up: a forked or duplicated chain cannot be stored whatever happens.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IsolationLevel, QueryFilter,
    QueryOrder, QuerySelect, Select, SqlErr, Statement, TransactionTrait, Value,
};
use tollgate_domain::TenantId;

use crate::entity::{audit_events, audit_heads};
use crate::error::DbResultExt;
use crate::support::{IN_LIST_CHUNK, page_limit};
use crate::{Store, StoreError};

/// The `tenant_id` of the audit lock row; never a tenant's id.
const LOCK_ROW: &str = "";

/// The only row counts of an `INSERT` of events, largest first: a batch of any size is
/// written as a few statements of these sizes (509 = 256 + 3 × 64 + 3 × 16 + 3 × 4 + 1).
///
/// Fixed sizes, because both drivers cache prepared statements by their SQL text: a
/// statement for every batch size would be parsed (and, on PostgreSQL, planned) anew for
/// most batches, and that cost more than the rows themselves. The largest holds about
/// 24 × 256 bound values, well below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const INSERT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// One audit event as stored: the domain's [`RecordedEvent`], the event's fields in their
/// stored text form and its place in its tenant's chain. `id` is assigned by
/// [`Store::append_audit_batch`] (ignored on input). `tollgate-audit` turns events into rows
/// and rows back into events; the hash covers every field but `id`.
pub use tollgate_domain::RecordedEvent as AuditRow;

/// The newest record of a tenant's chain: where the next append continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The tenant's id.
    pub tenant_id: String,
    /// The newest record's `seq` (the number of records ever appended to the chain).
    pub seq: i64,
    /// The newest record's `hash`.
    pub hash: String,
}

/// Whose events a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditScope<'a> {
    /// One tenant's (the tenant's chain). Cursors are `seq` values.
    Tenant(&'a TenantId),
    /// Every tenant's (for the system tenant's admins). Cursors are `id` values.
    All,
}

/// Conditions on listed events; `None` fields do not filter. Only the time range has an
/// index (`time_ms`, across tenants); the others are checked on the rows scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only events before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Only events about this client id.
    pub client_id: Option<String>,
    /// Only events with this action (stored name, e.g. `token_denied`).
    pub action: Option<String>,
    /// Only events with this result (`granted`, `denied`, `ok`).
    pub result: Option<String>,
}

/// The order of a read: by position (`seq` for a tenant, `id` across tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditReadOrder {
    /// Oldest first: chain order.
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

/// What a bounded read of audit events ([`Store::read_audit_events`]) reads: the events of
/// `scope` matching `filter` strictly between the positions `after` and `before`, in
/// `order`, at most `max_rows` of them and at most `max_bytes` of them by their stored
/// size ([`AUDIT_ROW_OVERHEAD`] plus the bytes of their texts), but always at least one
/// when one matches, so that a reader paging through always moves forward.
#[derive(Debug, Clone, Copy)]
pub struct AuditRead<'a> {
    /// Whose events.
    pub scope: AuditScope<'a>,
    /// Which events.
    pub filter: &'a AuditFilter,
    /// In which order.
    pub order: AuditReadOrder,
    /// Only positions strictly after this one.
    pub after: Option<i64>,
    /// Only positions strictly before this one.
    pub before: Option<i64>,
    /// At most this many rows (at least one is read).
    pub max_rows: u64,
    /// At most this many bytes of rows, by stored size; the first row is read whatever its
    /// size.
    pub max_bytes: u64,
    /// A row whose stored size exceeds this is read alone and elided ([`AuditRecord`]);
    /// `u64::MAX` reads every row whole (verification must).
    pub max_row_bytes: u64,
}

impl AuditRead<'_> {
    /// The read's rows, scoped, filtered and ordered; `position` is the scope's position
    /// column.
    fn query(&self, position: audit_events::Column) -> Select<audit_events::Entity> {
        let mut query = filtered(self.filter);
        if let AuditScope::Tenant(tenant_id) = self.scope {
            query = query.filter(audit_events::Column::TenantId.eq(tenant_id.as_str()));
        }
        if let Some(after) = self.after {
            query = query.filter(position.gt(after));
        }
        if let Some(before) = self.before {
            query = query.filter(position.lt(before));
        }
        match self.order {
            AuditReadOrder::OldestFirst => query.order_by_asc(position),
            AuditReadOrder::NewestFirst => query.order_by_desc(position),
        }
    }
}

/// One row of a bounded read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The row as stored; if elided, with every text cut to its first
    /// [`ELIDED_TEXT_CHARS`] characters and its lists empty (so its hash no longer
    /// matches its content: only the server, which reads it whole, can verify it).
    pub row: AuditRow,
    /// `Some(stored size)` when the row was larger than the read's `max_row_bytes` and was
    /// elided.
    pub elided_bytes: Option<u64>,
}

/// What a bounded read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSlice {
    /// The rows read, in the read's order.
    pub records: Vec<AuditRecord>,
    /// Whether more matching rows follow the last one (within the read's positions): the
    /// read stopped at its row or byte bound.
    pub has_more: bool,
}

/// Bytes counted for a row on top of its texts' bytes, for its numbers and for the framing
/// a reader adds (field tags, lengths, a cursor); see [`AuditRead`].
pub const AUDIT_ROW_OVERHEAD: u64 = 512;

/// Characters kept of each text of an elided row.
pub const ELIDED_TEXT_CHARS: u32 = 256;

/// The bytes of a row's texts, in SQL (`octet_length` exists in PostgreSQL and in SQLite
/// from 3.43, and reads the length without the value). The first term is a `BIGINT` so
/// that the sum cannot overflow PostgreSQL's `integer`.
const STORED_BYTES_SQL: &str = "CAST(octet_length(tenant_id) AS BIGINT) \
    + octet_length(tenant_name) + octet_length(action) + octet_length(result) \
    + COALESCE(octet_length(error_code), 0) + COALESCE(octet_length(actor), 0) \
    + COALESCE(octet_length(client_id), 0) + COALESCE(octet_length(secret_id), 0) \
    + COALESCE(octet_length(audience), 0) + octet_length(scopes_requested) \
    + octet_length(scopes_granted) + COALESCE(octet_length(jti), 0) \
    + COALESCE(octet_length(source), 0) + COALESCE(octet_length(transport), 0) \
    + COALESCE(octet_length(trace_id), 0) + COALESCE(octet_length(resource), 0) \
    + octet_length(changed_fields) + octet_length(prev_hash) + octet_length(hash)";

/// The columns of an elided row, as SQL: numbers as stored, texts cut to
/// [`ELIDED_TEXT_CHARS`] characters, lists empty.
const ELIDED_COLUMNS: [(&str, &str); 24] = [
    ("id", "id"),
    ("tenant_id", "substr(tenant_id, 1, 256)"),
    ("seq", "seq"),
    ("version", "version"),
    ("time_ms", "time_ms"),
    ("tenant_name", "substr(tenant_name, 1, 256)"),
    ("action", "substr(action, 1, 256)"),
    ("result", "substr(result, 1, 256)"),
    ("error_code", "substr(error_code, 1, 256)"),
    ("actor", "substr(actor, 1, 256)"),
    ("client_id", "substr(client_id, 1, 256)"),
    ("secret_id", "substr(secret_id, 1, 256)"),
    ("audience", "substr(audience, 1, 256)"),
    ("scopes_requested", "'[]'"),
    ("scopes_granted", "'[]'"),
    ("jti", "substr(jti, 1, 256)"),
    ("source", "substr(source, 1, 256)"),
    ("transport", "substr(transport, 1, 256)"),
    ("trace_id", "substr(trace_id, 1, 256)"),
    ("resource", "substr(resource, 1, 256)"),
    ("changed_fields", "'[]'"),
    ("count", "count"),
    ("prev_hash", "substr(prev_hash, 1, 256)"),
    ("hash", "substr(hash, 1, 256)"),
];

/// A row's stored size from the bytes of its texts (as [`STORED_BYTES_SQL`] counts them).
fn stored_bytes(text_bytes: i64) -> u64 {
    u64::try_from(text_bytes)
        .unwrap_or(0)
        .saturating_add(AUDIT_ROW_OVERHEAD)
}

/// Of `sizes` (position and text bytes of up to `max_rows + 1` rows, in order), those the
/// read takes: the first always; then each next one while the count stays within
/// `max_rows`, the bytes within `max_bytes`, and the row itself within `max_row_bytes` (a
/// larger row is only ever read alone). And whether any row is left over.
fn fitting_rows<'s>(sizes: &'s [(i64, i64)], read: &AuditRead<'_>) -> (&'s [(i64, i64)], bool) {
    let max_rows = usize::try_from(read.max_rows.max(1)).unwrap_or(usize::MAX);
    let mut total = 0_u64;
    let mut taken = 0;
    for (index, &(_, text_bytes)) in sizes.iter().enumerate() {
        let size = stored_bytes(text_bytes);
        if index > 0 {
            let is_too_large = size > read.max_row_bytes
                || total.saturating_add(size) > read.max_bytes
                || index >= max_rows;
            if is_too_large {
                break;
            }
        }
        total = total.saturating_add(size);
        taken = index + 1;
        if size > read.max_row_bytes {
            break;
        }
    }
    (&sizes[..taken], sizes.len() > taken)
}

impl Store {
    /// Appends a batch of audit events to the chains of `tenant_ids`, in one transaction,
    /// under the audit lock (see the module documentation).
    ///
    /// `build` receives the current heads of those tenants that have one (a tenant without
    /// records has none: its first record has `seq` 1 and the caller's genesis `prev_hash`)
    /// and returns the rows to append, in order. Every row's tenant must be in `tenant_ids`,
    /// and each tenant's rows must continue its head: `seq` head + 1, head + 2, …, the first
    /// `prev_hash` equal to the head's hash and each next one to the previous row's hash;
    /// otherwise `Corrupt { entity: "audit chain" }` and nothing is written. `id`s are
    /// assigned here. A stored record already holding a row's `(tenant, seq)` (the head was
    /// tampered with) is `Corrupt` too; a database failure is `Unavailable`.
    ///
    /// `build` runs while the lock is held: it should only compute.
    pub async fn append_audit_batch<F>(
        &self,
        tenant_ids: &[&str],
        build: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce(&HashMap<String, AuditHead>) -> Vec<AuditRow> + Send,
    {
        if tenant_ids.iter().any(|id| id.is_empty()) {
            return Err(chain_error("an empty tenant id".to_owned()));
        }
        let txn = match self.audit_conn.get_database_backend() {
            // READ COMMITTED whatever the server's default: the heads are read by a
            // statement after the lock is granted, and must see what the previous holder
            // committed. (At REPEATABLE READ the snapshot would predate that commit, and
            // the lock's update would fail with a serialization error instead.)
            DbBackend::Postgres => self
                .audit_conn
                .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
                .await
                .or_unavailable()?,
            // SQLite has no isolation levels to choose: the write lock serialises writers.
            _ => self.audit_conn.begin().await.or_unavailable()?,
        };
        if append_in(&txn, tenant_ids, build).await? {
            // 4. Until this commit, no other appender can see (or extend) any of it.
            txn.commit().await.or_unavailable()?;
        }
        // Otherwise dropping the transaction rolls the lock's no-op update back.
        Ok(())
    }

    /// The head of the tenant's chain, or `None` if it has no records (and never had).
    /// Retention leaves heads alone, so a purged chain still has its head.
    pub async fn audit_head(&self, tenant: &TenantId) -> Result<Option<AuditHead>, StoreError> {
        if tenant.as_str() == LOCK_ROW {
            return Ok(None);
        }
        Ok(audit_heads::Entity::find_by_id(tenant.as_str().to_owned())
            .one(&self.conn)
            .await
            .or_unavailable()?
            .map(AuditHead::from))
    }

    /// Up to `limit` events of `scope` matching `filter`, newest first, strictly before the
    /// cursor `before`: the `seq` of the last row of the previous page for a tenant, its
    /// `id` across tenants ([`AuditScope`]). `None` starts at the newest.
    ///
    /// Bounded in count only: `limit` rows of any size are held at once. The server reads
    /// through [`Store::read_audit_events`], which bounds bytes too.
    pub async fn list_audit_events(
        &self,
        scope: AuditScope<'_>,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut query = filtered(filter);
        query = match scope {
            AuditScope::Tenant(tenant_id) => {
                let query = query.filter(audit_events::Column::TenantId.eq(tenant_id.as_str()));
                let query = match before {
                    Some(before) => query.filter(audit_events::Column::Seq.lt(before)),
                    None => query,
                };
                query.order_by_desc(audit_events::Column::Seq)
            }
            AuditScope::All => {
                let query = match before {
                    Some(before) => query.filter(audit_events::Column::Id.lt(before)),
                    None => query,
                };
                query.order_by_desc(audit_events::Column::Id)
            }
        };
        self.audit_rows(query.limit(page_limit(limit))).await
    }

    /// Up to `limit` events of `scope` matching `filter` strictly after the cursor `after`
    /// (a `seq` for a tenant, an `id` across tenants; 0 for the beginning), oldest first:
    /// what a live tail reads to resume. Both cursors grow in commit order (appends hold
    /// the audit lock), so a row committed after a read never lands before its cursor.
    ///
    /// Bounded in count only: `limit` rows of any size are held at once. The server reads
    /// through [`Store::read_audit_events`], which bounds bytes too.
    pub async fn audit_events_after(
        &self,
        scope: AuditScope<'_>,
        filter: &AuditFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let query = filtered(filter);
        let query = match scope {
            AuditScope::Tenant(tenant_id) => query
                .filter(audit_events::Column::TenantId.eq(tenant_id.as_str()))
                .filter(audit_events::Column::Seq.gt(after))
                .order_by_asc(audit_events::Column::Seq),
            AuditScope::All => query
                .filter(audit_events::Column::Id.gt(after))
                .order_by_asc(audit_events::Column::Id),
        };
        self.audit_rows(query.limit(page_limit(limit))).await
    }

    /// Up to `limit` records of the tenant's chain from `from_seq` on, oldest first: what
    /// verification reads, page by page.
    ///
    /// Bounded in count only: `limit` rows of any size are held at once. The server reads
    /// through [`Store::read_audit_events`], which bounds bytes too.
    pub async fn audit_chain(
        &self,
        tenant_id: &TenantId,
        from_seq: i64,
        limit: u64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let query = audit_events::Entity::find()
            .filter(audit_events::Column::TenantId.eq(tenant_id.as_str()))
            .filter(audit_events::Column::Seq.gte(from_seq))
            .order_by_asc(audit_events::Column::Seq)
            .limit(page_limit(limit));
        self.audit_rows(query).await
    }

    /// The position of the newest event of `scope` (its `seq` for a tenant, its `id`
    /// across tenants), whatever it holds; 0 when there is none. Reads one index entry,
    /// never the row.
    pub async fn newest_audit_position(&self, scope: AuditScope<'_>) -> Result<i64, StoreError> {
        let query = audit_events::Entity::find().select_only();
        let query = match scope {
            AuditScope::Tenant(tenant_id) => query
                .column_as(audit_events::Column::Seq.max(), "position")
                .filter(audit_events::Column::TenantId.eq(tenant_id.as_str())),
            AuditScope::All => query.column_as(audit_events::Column::Id.max(), "position"),
        };
        let newest: Option<Option<i64>> = query
            .into_tuple::<Option<i64>>()
            .one(&self.conn)
            .await
            .or_unavailable()?;
        Ok(newest.flatten().unwrap_or(0))
    }

    /// Reads the events `read` describes, bounded in rows and in bytes (see [`AuditRead`]):
    /// first the positions and sizes of up to `max_rows + 1` matching rows (numbers only),
    /// then, in a second query, only the rows that fit `max_bytes` (at least one). So a
    /// read holds at most `max_bytes`, or one row, of events in memory, however large the
    /// stored rows are.
    ///
    /// Between the two queries only rows after the newest position can commit (positions
    /// grow in commit order), so the second query finds the rows the first one measured,
    /// unless retention removed some meanwhile.
    pub async fn read_audit_events(&self, read: &AuditRead<'_>) -> Result<AuditSlice, StoreError> {
        let position = match read.scope {
            AuditScope::Tenant(_) => audit_events::Column::Seq,
            AuditScope::All => audit_events::Column::Id,
        };
        let sizes: Vec<(i64, i64)> = read
            .query(position)
            .select_only()
            .column(position)
            .column_as(Expr::cust(STORED_BYTES_SQL), "stored_bytes")
            .limit(page_limit(read.max_rows.max(1)).saturating_add(1))
            .into_tuple()
            .all(&self.conn)
            .await
            .or_unavailable()?;
        let (taken, has_more) = fitting_rows(&sizes, read);
        let (Some(&(first, first_bytes)), Some(&(last, _))) = (taken.first(), taken.last()) else {
            return Ok(AuditSlice::default());
        };
        let (low, high) = if first <= last {
            (first, last)
        } else {
            (last, first)
        };
        let range = read
            .query(position)
            .filter(position.gte(low))
            .filter(position.lte(high))
            .limit(taken.len() as u64);
        let first_bytes = stored_bytes(first_bytes);
        let records = if taken.len() == 1 && first_bytes > read.max_row_bytes {
            // Too large to hand out whole: its texts cut short and its lists empty, read so
            // in SQL, so that the row is never loaded whole.
            let mut query = range.select_only();
            for (column, expression) in ELIDED_COLUMNS {
                query = query.column_as(Expr::cust(expression), column);
            }
            query
                .into_model::<audit_events::Model>()
                .all(&self.conn)
                .await
                .or_unavailable()?
                .into_iter()
                .map(|row| {
                    Ok(AuditRecord {
                        row: AuditRow::try_from(row)?,
                        elided_bytes: Some(first_bytes),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        } else {
            self.audit_rows(range)
                .await?
                .into_iter()
                .map(|row| AuditRecord {
                    row,
                    elided_bytes: None,
                })
                .collect()
        };
        Ok(AuditSlice { records, has_more })
    }

    /// Retention: deletes, tenant by tenant, the oldest events up to and including the
    /// newest one stamped before `before_ms`; returns how many.
    ///
    /// What remains of each chain is a contiguous suffix, so it still verifies from its
    /// oldest record. (Instances' clocks differ by a little, so a record stamped at or
    /// after `before_ms` that precedes an older-stamped one in its chain goes too, rather
    /// than leaving a hole.) Heads stay: a purged chain continues where it was. Each
    /// tenant's deletion is one statement; a failure part-way leaves every chain whole.
    pub async fn purge_audit_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let tenants: Vec<String> = audit_heads::Entity::find()
            .select_only()
            .column(audit_heads::Column::TenantId)
            .filter(audit_heads::Column::TenantId.ne(LOCK_ROW))
            .into_tuple()
            .all(&self.conn)
            .await
            .or_unavailable()?;
        let mut deleted = 0;
        for tenant_id in tenants {
            let newest_old: Option<i64> = audit_events::Entity::find()
                .select_only()
                .column_as(audit_events::Column::Seq.max(), "seq")
                .filter(audit_events::Column::TenantId.eq(tenant_id.as_str()))
                .filter(audit_events::Column::TimeMs.lt(before_ms))
                .into_tuple::<Option<i64>>()
                .one(&self.conn)
                .await
                .or_unavailable()?
                .flatten();
            let Some(newest_old) = newest_old else {
                continue;
            };
            let result = audit_events::Entity::delete_many()
                .filter(audit_events::Column::TenantId.eq(tenant_id.as_str()))
                .filter(audit_events::Column::Seq.lte(newest_old))
                .exec(&self.conn)
                .await
                .or_unavailable()?;
            deleted += result.rows_affected;
        }
        Ok(deleted)
    }

    async fn audit_rows(
        &self,
        query: Select<audit_events::Entity>,
    ) -> Result<Vec<AuditRow>, StoreError> {
        query
            .all(&self.conn)
            .await
            .or_unavailable()?
            .into_iter()
            .map(AuditRow::try_from)
            .collect()
    }
}

/// Audit events that commit with a configuration change, appended by the change's own
/// transaction (so a change is never stored unrecorded, nor recorded unstored).
/// `tollgate-audit` implements it: the store knows the chain's shape, not its hashing.
pub trait AuditAppend: Send + Sync {
    /// The tenants whose chains the events join.
    fn tenant_ids(&self) -> Vec<String>;
    /// The rows to append after `heads`, as for [`Store::append_audit_batch`]. Runs while
    /// the audit lock is held: it should only compute.
    fn build(&self, heads: &HashMap<String, AuditHead>) -> Vec<AuditRow>;
}

/// Appends `audit`'s events inside the caller's transaction `conn`, which must end in a
/// commit for them (and the change) to count. Called last in a change's transaction: the
/// audit lock is held from here to the commit, briefly.
pub(crate) async fn append_audit_in(
    conn: &impl ConnectionTrait,
    audit: &dyn AuditAppend,
) -> Result<(), StoreError> {
    let tenant_ids = audit.tenant_ids();
    if tenant_ids.is_empty() {
        return Ok(());
    }
    if tenant_ids.iter().any(String::is_empty) {
        return Err(chain_error("an empty tenant id".to_owned()));
    }
    let tenant_ids: Vec<&str> = tenant_ids.iter().map(String::as_str).collect();
    append_in(conn, &tenant_ids, |heads| audit.build(heads)).await?;
    Ok(())
}

/// Steps 1–3 of an append (see [`Store::append_audit_batch`]) in the transaction `conn`;
/// `false` if `build` returned no rows (nothing but the lock's no-op update was written).
async fn append_in<F>(
    conn: &impl ConnectionTrait,
    tenant_ids: &[&str],
    build: F,
) -> Result<bool, StoreError>
where
    F: FnOnce(&HashMap<String, AuditHead>) -> Vec<AuditRow>,
{
    // 1. The lock, and the number of events ever appended (the last id given out).
    let lock = Query::update()
        .table(audit_heads::Entity)
        .value(
            audit_heads::Column::Seq,
            Expr::col(audit_heads::Column::Seq),
        )
        .and_where(Expr::col(audit_heads::Column::TenantId).eq(LOCK_ROW))
        .returning_col(audit_heads::Column::Seq)
        .to_owned();
    let statement = conn.get_database_backend().build(&lock);
    let last_id: i64 = conn
        .query_one(statement)
        .await
        .or_unavailable()?
        .ok_or_else(|| chain_error("the audit lock row is missing".to_owned()))?
        .try_get_by_index(0)
        .or_unavailable()?;

    // 2. The heads, current because every appender holds the lock.
    let mut heads = HashMap::with_capacity(tenant_ids.len());
    for chunk in tenant_ids.chunks(IN_LIST_CHUNK) {
        let found = audit_heads::Entity::find()
            .filter(audit_heads::Column::TenantId.is_in(chunk.iter().copied()))
            .all(conn)
            .await
            .or_unavailable()?;
        for head in found {
            heads.insert(head.tenant_id.clone(), AuditHead::from(head));
        }
    }
    let rows = build(&heads);
    if rows.is_empty() {
        return Ok(false);
    }

    // 3. Rows that continue the heads, then the heads they lead to.
    let new_heads = continued_heads(tenant_ids, &heads, &rows)?;
    let count =
        i64::try_from(rows.len()).map_err(|_| chain_error("a batch larger than i64".to_owned()))?;
    // The rows are moved into bound values (no copies): they are not needed afterwards.
    let backend = conn.get_database_backend();
    let mut values = rows
        .into_iter()
        .zip(last_id.saturating_add(1)..)
        .flat_map(|(row, id)| event_values(id, row));
    let mut left = usize::try_from(count).unwrap_or(usize::MAX);
    for size in INSERT_SIZES {
        while left >= size {
            let chunk: Vec<Value> = values.by_ref().take(size * EVENT_COLUMNS.len()).collect();
            conn.execute(Statement::from_sql_and_values(
                backend,
                insert_events_sql(backend, size),
                chunk,
            ))
            .await
            .map_err(insert_error)?;
            left -= size;
        }
    }

    let mut head_models: Vec<audit_heads::ActiveModel> = new_heads
        .into_iter()
        .map(|head| audit_heads::ActiveModel {
            tenant_id: Set(head.tenant_id),
            seq: Set(head.seq),
            hash: Set(head.hash),
        })
        .collect();
    head_models.push(audit_heads::ActiveModel {
        tenant_id: Set(LOCK_ROW.to_owned()),
        seq: Set(last_id.saturating_add(count)),
        hash: Set(String::new()),
    });
    // A head only moves forward: with the lock held this always holds, and the guard
    // turns a bug (or a tampered head) into a refused batch instead of a rewound chain.
    let upsert = OnConflict::column(audit_heads::Column::TenantId)
        .update_columns([audit_heads::Column::Seq, audit_heads::Column::Hash])
        .action_and_where(
            Expr::col((audit_heads::Entity, audit_heads::Column::Seq)).lt(Expr::col((
                Alias::new("excluded"),
                audit_heads::Column::Seq,
            ))),
        )
        .to_owned();
    let mut head_models = head_models.into_iter().peekable();
    while head_models.peek().is_some() {
        let chunk: Vec<_> = head_models.by_ref().take(IN_LIST_CHUNK).collect();
        let expected = chunk.len() as u64;
        let written = audit_heads::Entity::insert_many(chunk)
            .on_conflict(upsert.clone())
            .exec_without_returning(conn)
            .await
            .or_unavailable()?;
        if written != expected {
            return Err(chain_error("a chain head would move backwards".to_owned()));
        }
    }

    Ok(true)
}

/// The events matching `filter`, not yet scoped or ordered.
fn filtered(filter: &AuditFilter) -> Select<audit_events::Entity> {
    let mut query = audit_events::Entity::find();
    if let Some(since) = filter.since_ms {
        query = query.filter(audit_events::Column::TimeMs.gte(since));
    }
    if let Some(until) = filter.until_ms {
        query = query.filter(audit_events::Column::TimeMs.lt(until));
    }
    if let Some(client_id) = &filter.client_id {
        query = query.filter(audit_events::Column::ClientId.eq(client_id.as_str()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::Column::Action.eq(action.as_str()));
    }
    if let Some(result) = &filter.result {
        query = query.filter(audit_events::Column::Result.eq(result.as_str()));
    }
    query
}

/// The heads `rows` lead to, after checking that every row belongs to a tenant of
/// `tenant_ids` and continues its chain from `heads`.
fn continued_heads(
    tenant_ids: &[&str],
    heads: &HashMap<String, AuditHead>,
    rows: &[AuditRow],
) -> Result<Vec<AuditHead>, StoreError> {
    let announced: HashSet<&str> = tenant_ids.iter().copied().collect();
    // Per tenant: the next seq expected and the hash the next prev_hash must equal (none
    // for a chain's first record: its genesis value is the caller's convention).
    let mut next: HashMap<&str, (i64, Option<&str>)> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for row in rows {
        let tenant = row.tenant_id.as_str();
        if !announced.contains(tenant) {
            return Err(chain_error(format!(
                "a row of tenant {tenant} that the batch did not announce"
            )));
        }
        let (expected_seq, expected_prev) = match next.get(tenant) {
            Some(expected) => *expected,
            None => {
                order.push(tenant);
                heads.get(tenant).map_or((1, None), |head| {
                    (head.seq.saturating_add(1), Some(head.hash.as_str()))
                })
            }
        };
        if row.seq != expected_seq {
            return Err(chain_error(format!(
                "tenant {tenant}: seq {} where {expected_seq} was next",
                row.seq
            )));
        }
        if expected_prev.is_some_and(|prev| prev != row.prev_hash) {
            return Err(chain_error(format!(
                "tenant {tenant}: seq {} does not link to its predecessor",
                row.seq
            )));
        }
        if row.hash.is_empty() {
            return Err(chain_error(format!(
                "tenant {tenant}: seq {} has no hash",
                row.seq
            )));
        }
        next.insert(tenant, (row.seq.saturating_add(1), Some(row.hash.as_str())));
    }
    Ok(order
        .into_iter()
        .filter_map(|tenant| {
            let (next_seq, hash) = next.get(tenant)?;
            Some(AuditHead {
                tenant_id: tenant.to_owned(),
                seq: next_seq.saturating_sub(1),
                hash: (*hash)?.to_owned(),
            })
        })
        .collect())
}

fn chain_error(reason: String) -> StoreError {
    StoreError::Corrupt {
        entity: "audit chain",
        reason,
    }
}

/// A failed insert of events: a taken `(tenant, seq)` means the chain's head is behind its
/// records (tampering, or a bug), which retrying cannot fix.
fn insert_error(error: DbErr) -> StoreError {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => chain_error(
            "a record already holds a seq being appended: the head is behind its records"
                .to_owned(),
        ),
        _ => StoreError::Unavailable(error),
    }
}

fn strings_json(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

/// The columns of `audit_events`, in the order [`event_values`] gives their values.
const EVENT_COLUMNS: [&str; 24] = [
    "id",
    "tenant_id",
    "seq",
    "version",
    "time_ms",
    "tenant_name",
    "action",
    "result",
    "error_code",
    "actor",
    "client_id",
    "secret_id",
    "audience",
    "scopes_requested",
    "scopes_granted",
    "jti",
    "source",
    "transport",
    "trace_id",
    "resource",
    "changed_fields",
    "count",
    "prev_hash",
    "hash",
];

/// `row`'s values to bind, in [`EVENT_COLUMNS`] order, moved out of it.
fn event_values(id: i64, row: AuditRow) -> [Value; 24] {
    [
        id.into(),
        row.tenant_id.into(),
        row.seq.into(),
        row.version.into(),
        row.time_ms.into(),
        row.tenant_name.into(),
        row.action.into(),
        row.result.into(),
        row.error_code.into(),
        row.actor.into(),
        row.client_id.into(),
        row.secret_id.into(),
        row.audience.into(),
        strings_json(&row.scopes_requested).into(),
        strings_json(&row.scopes_granted).into(),
        row.jti.into(),
        row.source.into(),
        row.transport.into(),
        row.trace_id.into(),
        row.resource.into(),
        strings_json(&row.changed_fields).into(),
        row.count.into(),
        row.prev_hash.into(),
        row.hash.into(),
    ]
}

/// `INSERT INTO audit_events (…) VALUES (…), …` for `rows` rows, with the backend's
/// placeholders. Written out directly rather than through the query builder: on the token
/// path, every event goes through here, and building 24 expressions per row cost more than
/// binding them.
fn insert_events_sql(backend: DbBackend, rows: usize) -> String {
    let columns = EVENT_COLUMNS.join(", ");
    let mut sql = String::with_capacity(64 + columns.len() + rows * EVENT_COLUMNS.len() * 6);
    sql.push_str("INSERT INTO audit_events (");
    sql.push_str(&columns);
    sql.push_str(") VALUES ");
    let mut placeholder = 0usize;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..EVENT_COLUMNS.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            placeholder += 1;
            match backend {
                DbBackend::Postgres => {
                    sql.push('$');
                    sql.push_str(&placeholder.to_string());
                }
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

impl From<audit_heads::Model> for AuditHead {
    fn from(row: audit_heads::Model) -> Self {
        AuditHead {
            tenant_id: row.tenant_id,
            seq: row.seq,
            hash: row.hash,
        }
    }
}

impl TryFrom<audit_events::Model> for AuditRow {
    type Error = StoreError;
    fn try_from(row: audit_events::Model) -> Result<Self, StoreError> {
        // The record is named (tenant and seq), so that a verifier can say which one.
        let list = |column: &str, json: &str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(json).map_err(|error| StoreError::Corrupt {
                entity: "audit event",
                reason: format!(
                    "tenant {} seq {}: invalid JSON in {column}: {error}",
                    row.tenant_id, row.seq
                ),
            })
        };
        Ok(AuditRow {
            scopes_requested: list("scopes_requested", &row.scopes_requested)?,
            scopes_granted: list("scopes_granted", &row.scopes_granted)?,
            changed_fields: list("changed_fields", &row.changed_fields)?,
            id: row.id,
            tenant_id: row.tenant_id,
            seq: row.seq,
            version: row.version,
            time_ms: row.time_ms,
            tenant_name: row.tenant_name,
            action: row.action,
            result: row.result,
            error_code: row.error_code,
            actor: row.actor,
            client_id: row.client_id,
            secret_id: row.secret_id,
            audience: row.audience,
            jti: row.jti,
            source: row.source,
            transport: row.transport,
            trace_id: row.trace_id,
            resource: row.resource,
            count: row.count,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, seq: i64, prev: &str, hash: &str) -> AuditRow {
        AuditRow {
            tenant_id: tenant.to_owned(),
            seq,
            prev_hash: prev.to_owned(),
            hash: hash.to_owned(),
            ..AuditRow::default()
        }
    }

    fn head(tenant: &str, seq: i64, hash: &str) -> (String, AuditHead) {
        (
            tenant.to_owned(),
            AuditHead {
                tenant_id: tenant.to_owned(),
                seq,
                hash: hash.to_owned(),
            },
        )
    }

    /// The positions [`fitting_rows`] takes of rows with these text sizes (positions 1, 2,
    /// …), and whether it says more follow.
    fn fitting(
        texts: &[i64],
        max_rows: u64,
        max_bytes: u64,
        max_row_bytes: u64,
    ) -> (Vec<i64>, bool) {
        let sizes: Vec<(i64, i64)> = (1..).zip(texts.iter().copied()).collect();
        let filter = AuditFilter::default();
        let read = AuditRead {
            scope: AuditScope::All,
            filter: &filter,
            order: AuditReadOrder::OldestFirst,
            after: None,
            before: None,
            max_rows,
            max_bytes,
            max_row_bytes,
        };
        let (taken, has_more) = fitting_rows(&sizes, &read);
        (
            taken.iter().map(|(position, _)| *position).collect(),
            has_more,
        )
    }

    #[test]
    fn reads_stop_at_the_row_and_byte_bounds_but_take_one_row() {
        let row = AUDIT_ROW_OVERHEAD as i64;
        // Each row counts its texts plus the overhead: 4 rows of 2 × overhead fill 8.
        let unit = AUDIT_ROW_OVERHEAD;
        assert_eq!(
            fitting(&[row; 5], 10, 8 * unit, u64::MAX),
            (vec![1, 2, 3, 4], true)
        );
        assert_eq!(
            fitting(&[row; 4], 10, 8 * unit, u64::MAX),
            (vec![1, 2, 3, 4], false)
        );
        assert_eq!(
            fitting(&[row; 3], 2, u64::MAX, u64::MAX),
            (vec![1, 2], true)
        );
        assert_eq!(fitting(&[], 2, u64::MAX, u64::MAX), (vec![], false));
        // A first row over the byte bound comes alone; a later one waits for its own read.
        assert_eq!(
            fitting(&[100 * row, 0], 10, unit * 8, u64::MAX),
            (vec![1], true)
        );
        assert_eq!(
            fitting(&[0, 100 * row, 0], 10, unit * 8, u64::MAX),
            (vec![1], true)
        );
        // A row over the row bound is only ever read alone, even within the byte bound.
        assert_eq!(
            fitting(&[0, 3 * row], 10, u64::MAX, unit * 2),
            (vec![1], true)
        );
        assert_eq!(
            fitting(&[3 * row, 0], 10, u64::MAX, unit * 2),
            (vec![1], true)
        );
        assert_eq!(
            fitting(&[3 * row], 10, u64::MAX, unit * 2),
            (vec![1], false)
        );
        // A size the database cannot have (negative) counts as the overhead alone.
        assert_eq!(
            fitting(&[-5, -5], 10, 2 * unit, u64::MAX),
            (vec![1, 2], false)
        );
        // max_rows 0 still reads one row.
        assert_eq!(fitting(&[0, 0], 0, u64::MAX, u64::MAX), (vec![1], true));
    }

    #[test]
    fn continued_heads_follow_each_tenant() -> Result<(), StoreError> {
        let heads = HashMap::from([head("a", 4, "h4")]);
        let rows = [
            row("a", 5, "h4", "h5"),
            row("b", 1, "genesis", "b1"),
            row("a", 6, "h5", "h6"),
            row("b", 2, "b1", "b2"),
        ];
        let new = continued_heads(&["a", "b"], &heads, &rows)?;
        assert_eq!(new, vec![head("a", 6, "h6").1, head("b", 2, "b2").1]);
        Ok(())
    }

    #[test]
    fn continued_heads_refuse_broken_batches() {
        let heads = HashMap::from([head("a", 4, "h4")]);
        let refused = |rows: &[AuditRow], tenants: &[&str]| {
            continued_heads(tenants, &heads, rows)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default()
        };
        assert!(refused(&[row("a", 6, "h4", "x")], &["a"]).contains("seq 6 where 5"));
        assert!(refused(&[row("a", 5, "h3", "x")], &["a"]).contains("does not link"));
        assert!(refused(&[row("a", 5, "h4", "")], &["a"]).contains("no hash"));
        assert!(refused(&[row("b", 1, "g", "x")], &["a"]).contains("did not announce"));
        assert!(
            refused(&[row("b", 1, "g", "b1"), row("b", 2, "zz", "b2")], &["b"])
                .contains("does not link")
        );
        assert!(refused(&[row("b", 2, "g", "b2")], &["b"]).contains("seq 2 where 1"));
    }
}
