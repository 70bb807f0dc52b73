//! The audit trail's read side: listing, following and verifying audit events, with the
//! scope `audit:read`. A tenant's admin reads its own tenant; the `system` tenant's admin
//! reads any tenant, or every tenant at once. (Recording is `tollgate-audit`'s writer.)
//!
//! ## Cursors
//!
//! An event's position is its tenant's `seq` when one tenant is read, and its global `id`
//! when every tenant is read ([`AuditScope`]). Both grow in commit order, because appends
//! are serialised by one database-wide lock: once a reader has seen position P, no event
//! at or before P can still commit. So "the events after P" is a resumable, gap-free
//! query, whichever instance recorded them.
//!
//! Positions leave this crate as opaque strings bound to what they index, so that a cursor
//! of one tenant cannot silently be applied to another's `seq` numbers:
//!
//! - a cursor (`AuditEntry::cursor`, `AuditPage::stream_cursor`, `after`) is
//!   `seq.<tenant id>.<seq>` or `id.<id>`;
//! - a page token is `<order>:<cursor of the last event shown>:<stream cursor position>`,
//!   where `order` is `newest` or `oldest`: a listing carries its upper bound (the newest
//!   position when its first page was read) from page to page, so every page of one
//!   listing ends at the same `stream_cursor`.
//!
//! ## Listing, then following, without a gap
//!
//! A listing first reads the newest position H (of any event in the scope, matching or
//! not), then shows only events at or before H, and returns H as `stream_cursor`. A tail
//! started after H shows exactly the events after it: each event is seen once.
//!
//! ## Bounded in bytes
//!
//! Stored events may be of any size (records written before events were bounded, or put in
//! the database by other means), so every read is bounded in bytes as well as in count: a
//! page or a tail's batch holds at most [`MAX_PAGE_BYTES`] of events by stored size, and
//! at least one event; an event over [`MAX_EVENT_BYTES`] is elided; verification reads at
//! most `VERIFY_PAGE_BYTES` at a time (an event larger than that alone, whole). The store
//! measures the rows before it reads them (`tollgate_store::Store::read_audit_events`), so
//! memory follows these bounds, not the page size times the largest event.
//!
//! ## Following
//!
//! [`AuditTail`] polls the database ([`TAIL_POLL_INTERVAL`] while idle, at once while it
//! is catching up): events of every instance sharing the database land there, so polling is
//! what sees them all, in commit order. Each poll first reads the newest position, then the
//! matching events up to it, and moves its cursor to that position even when nothing
//! matched, so a narrow filter does not rescan the same rows on every poll. Every
//! [`TAIL_RECHECK_INTERVAL`] the tail authenticates its admin token again, so a tail ends
//! once its token expires or is revoked, or its tenant is deleted.
//!
//! A tail is a stream ([`Management::tail_audit_events`]) of single events, oldest first.
//! It is pulled: the next poll of the database happens only once the consumer has taken
//! every event of the previous batch, so a slow reader holds back the reads, not memory.
//! An error is its last item.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::Stream;
use tollgate_audit::{AuditAction, Identifier, Outcome};
use tollgate_domain::{AuditEntry, ChainCheck, InvalidValue, TenantId, TenantName};
use tollgate_store::{
    AuditFilter, AuditRead, AuditReadOrder, AuditRecord, AuditRow, AuditScope, AuditSlice,
};

use crate::auth::Principal;
use crate::error::Denial;
use crate::views::chain_check;
use crate::{ManageError, Management, PageRequest};

/// The scope that reads the audit trail.
pub const AUDIT_READ_SCOPE: &str = "audit:read";

/// How long an idle tail waits between looks at the database.
pub const TAIL_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How often a tail authenticates its admin token again.
pub const TAIL_RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Most events one poll of a tail reads: a tail far behind catches up in pages this size
/// (or of [`MAX_PAGE_BYTES`], whichever is less).
const TAIL_PAGE: u64 = 256;

/// Records read per query while verifying a chain (or fewer: [`VERIFY_PAGE_BYTES`]).
const VERIFY_PAGE: u64 = 1_000;

/// Most bytes of records one query of chain verification reads, by their stored size
/// (`tollgate_store::AuditRead`); a larger record is read alone, whole (it must be hashed).
const VERIFY_PAGE_BYTES: u64 = 4 << 20;

/// Most bytes of events one listing page, or one batch a tail reads, holds, by their
/// stored size: the bytes of their texts plus `tollgate_store::AUDIT_ROW_OVERHEAD` (512)
/// each, which is at least their size on the wire. A page stops before the event that
/// would cross it, but holds at least one event, so that paging always moves on: an
/// event larger than this comes alone. With `page_size` this bounds both a page's
/// message and what the server holds in memory to build it, however large the stored
/// events are.
pub const MAX_PAGE_BYTES: u64 = 1 << 20;

/// The largest event, by stored size, that is returned whole (16 MiB). Above it an event
/// is *elided*: returned alone, with its texts cut to their first 256 characters and its
/// lists empty, and [`AuditEntry::elided_bytes`] set. No event Tollgate records comes near
/// it (a token request's scopes were never larger than its 4 MiB message); a larger one
/// was put in the database by other means. Its chain position and hashes stay exact, but
/// its content can no longer be verified from what was returned: `VerifyChain` (which
/// reads every record whole on the server) still can. So every message of the audit
/// service is below this plus a little, whatever the trail holds.
pub const MAX_EVENT_BYTES: u64 = 16 << 20;

/// Whose audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// One tenant's.
    Tenant(TenantName),
    /// Every tenant's (the `system` tenant's admins only).
    AllTenants,
}

/// Conditions on events; `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only events before this time (Unix ms); must be after `since_ms`.
    pub until_ms: Option<i64>,
    /// Only events about this client.
    pub client_id: Option<Identifier>,
    /// Only events with this action.
    pub action: Option<AuditAction>,
    /// Only events with this result.
    pub result: Option<Outcome>,
}

impl AuditQuery {
    /// The store's filter, after checking that the time range is not empty.
    fn to_filter(&self) -> Result<AuditFilter, InvalidValue> {
        if let (Some(since), Some(until)) = (self.since_ms, self.until_ms)
            && until <= since
        {
            return Err(InvalidValue::new("filter.until", "must be after since"));
        }
        Ok(AuditFilter {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            client_id: self.client_id.as_ref().map(|id| id.as_str().to_owned()),
            action: self.action.map(|action| action.as_str().to_owned()),
            result: self.result.map(|result| result.as_str().to_owned()),
        })
    }
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditOrder {
    /// Newest first.
    #[default]
    NewestFirst,
    /// Oldest first: chain order, the order an export verifies in.
    OldestFirst,
}

impl AuditOrder {
    fn token_name(self) -> &'static str {
        match self {
            AuditOrder::NewestFirst => "newest",
            AuditOrder::OldestFirst => "oldest",
        }
    }
}

/// What to list.
#[derive(Debug, Clone)]
pub struct AuditListRequest {
    /// Whose events.
    pub target: AuditTarget,
    /// Which events.
    pub query: AuditQuery,
    /// In which order.
    pub order: AuditOrder,
    /// Page size and the previous page's token.
    pub page: PageRequest,
    /// Oldest first, first page only: start strictly after this cursor; empty = at the
    /// oldest kept event.
    pub after: String,
}

/// A page of events.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// The events, in the requested order.
    pub events: Vec<AuditEntry>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// The newest position when the listing started (the same on every page): a tail from
    /// here continues exactly where the listing ends.
    pub stream_cursor: String,
}

/// Where a resolved target's events are, and how their positions are named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// One tenant's, by id; positions are `seq`s.
    Tenant { id: TenantId },
    /// Every tenant's; positions are `id`s.
    All,
}

impl Scope {
    fn store(&self) -> AuditScope<'_> {
        match self {
            Scope::Tenant { id } => AuditScope::Tenant(id),
            Scope::All => AuditScope::All,
        }
    }

    fn position(&self, row: &AuditRow) -> i64 {
        match self {
            Scope::Tenant { .. } => row.seq,
            Scope::All => row.id,
        }
    }

    fn cursor(&self, position: i64) -> String {
        match self {
            Scope::Tenant { id } => format!("seq.{id}.{position}"),
            Scope::All => format!("id.{position}"),
        }
    }

    fn entry(&self, record: AuditRecord) -> AuditEntry {
        AuditEntry {
            cursor: self.cursor(self.position(&record.row)),
            event: record.row,
            elided_bytes: record.elided_bytes,
        }
    }

    /// The position in a cursor this scope issued; `field` names the request field.
    fn parse_cursor(&self, text: &str, field: &'static str) -> Result<i64, InvalidValue> {
        let invalid = |reason: &str| InvalidValue::new(field, reason);
        let position = match self {
            Scope::Tenant { id } => {
                let (tenant, position) = text
                    .strip_prefix("seq.")
                    .and_then(|rest| rest.rsplit_once('.'))
                    .ok_or_else(|| invalid("is not a cursor of one tenant's audit events"))?;
                if *id != tenant {
                    return Err(invalid("is a cursor of another tenant's audit events"));
                }
                position
            }
            Scope::All => text
                .strip_prefix("id.")
                .ok_or_else(|| invalid("is not a cursor of every tenant's audit events"))?,
        };
        position
            .parse::<i64>()
            .ok()
            .filter(|position| *position >= 0)
            .ok_or_else(|| invalid("is not a valid audit cursor"))
    }

    fn page_token(&self, order: AuditOrder, position: i64, head: i64) -> String {
        format!("{}:{}:{head}", order.token_name(), self.cursor(position))
    }

    /// The position and upper bound in a page token of this scope and order.
    fn parse_page_token(&self, order: AuditOrder, text: &str) -> Result<(i64, i64), InvalidValue> {
        let field = "page_token";
        let mut parts = text.split(':');
        let (Some(token_order), Some(cursor), Some(head), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidValue::new(field, "is not an audit page token"));
        };
        if token_order != order.token_name() {
            return Err(InvalidValue::new(
                field,
                "belongs to a listing in the other order",
            ));
        }
        let position = self.parse_cursor(cursor, field)?;
        let head = head
            .parse::<i64>()
            .ok()
            .filter(|head| *head >= 0)
            .ok_or_else(|| InvalidValue::new(field, "is not an audit page token"))?;
        Ok((position, head))
    }
}

/// A live tail of audit events: see [`Management::tail_audit_events`].
struct AuditTail {
    target: AuditTarget,
    scope: Scope,
    filter: AuditFilter,
    /// The position everything up to which has been delivered (or did not match).
    after: i64,
    /// The admin token the tail was opened with, authenticated again from time to time.
    bearer: String,
    checked_at: Instant,
}

impl fmt::Debug for AuditTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the admin token.
        f.debug_struct("AuditTail")
            .field("target", &self.target)
            .field("filter", &self.filter)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Management {
    /// Lists audit events: newest first from the newest event, or oldest first from the
    /// oldest kept one (or after `request.after`), a page at a time. See the module
    /// documentation for the cursors and the page's `stream_cursor`.
    pub async fn list_audit_events(
        &self,
        principal: &Principal,
        request: AuditListRequest,
    ) -> Result<AuditPage, ManageError> {
        let scope = self.audit_scope(principal, &request.target).await?;
        let filter = request.query.to_filter()?;
        let limit = request.page.limit()?;
        let order = request.order;
        let (start, head) = if request.page.page_token.is_empty() {
            let head = self.newest_audit_position(&scope).await?;
            let start = match (order, request.after.as_str()) {
                (AuditOrder::NewestFirst, "") => head.saturating_add(1),
                (AuditOrder::NewestFirst, _) => {
                    return Err(InvalidValue::new(
                        "after",
                        "applies to oldest-first listings only",
                    )
                    .into());
                }
                (AuditOrder::OldestFirst, "") => 0,
                (AuditOrder::OldestFirst, after) => scope.parse_cursor(after, "after")?,
            };
            (start, head)
        } else {
            if !request.after.is_empty() {
                return Err(InvalidValue::new(
                    "after",
                    "applies to the first page only (without page_token)",
                )
                .into());
            }
            scope.parse_page_token(order, &request.page.page_token)?
        };
        // Nothing after `head`: what committed after the listing started is the stream's.
        let (store_order, after, before) = match order {
            AuditOrder::NewestFirst => (AuditReadOrder::NewestFirst, None, start),
            AuditOrder::OldestFirst => (
                AuditReadOrder::OldestFirst,
                Some(start),
                head.saturating_add(1),
            ),
        };
        let AuditSlice { records, has_more } = self
            .store
            .read_audit_events(&AuditRead {
                scope: scope.store(),
                filter: &filter,
                order: store_order,
                after,
                before: Some(before),
                max_rows: limit,
                max_bytes: MAX_PAGE_BYTES,
                max_row_bytes: MAX_EVENT_BYTES,
            })
            .await?;
        let next_page_token = match records.last() {
            Some(last) if has_more => {
                Some(scope.page_token(order, scope.position(&last.row), head))
            }
            _ => None,
        };
        Ok(AuditPage {
            events: records
                .into_iter()
                .map(|record| scope.entry(record))
                .collect(),
            next_page_token,
            stream_cursor: scope.cursor(head),
        })
    }

    /// Follows the events of `target` matching `query`, strictly after the cursor `after`
    /// (empty: after the newest event now, so only events that commit from now on), oldest
    /// first, each as soon as it commits (see the module documentation). `bearer` is the
    /// admin token `principal` was authenticated from: the tail authenticates it again
    /// every [`TAIL_RECHECK_INTERVAL`]. A refused target, filter or cursor fails the call;
    /// a later failure is the stream's last item: `Unauthenticated` once the admin token
    /// has expired or been revoked, `FollowedTenantGone` once the tenant is gone, `Store`
    /// when the database fails. The stream never ends on its own otherwise: drop it to stop
    /// following.
    pub async fn tail_audit_events(
        self: &Arc<Self>,
        principal: &Principal,
        bearer: String,
        target: AuditTarget,
        query: &AuditQuery,
        after: &str,
    ) -> Result<impl Stream<Item = Result<AuditEntry, ManageError>> + Send + 'static, ManageError>
    {
        let tail = self
            .start_audit_tail(principal, bearer, target, query, after)
            .await?;
        let following = Following {
            management: Arc::clone(self),
            tail,
            batch: VecDeque::new(),
            has_ended: false,
        };
        Ok(futures_util::stream::unfold(
            following,
            |mut following| async move {
                let entry = following.next().await?;
                Some((entry, following))
            },
        ))
    }

    /// Opens a tail: see [`Management::tail_audit_events`].
    // The tail's re-check interval paces database reads: real time.
    #[allow(clippy::disallowed_methods)]
    async fn start_audit_tail(
        &self,
        principal: &Principal,
        bearer: String,
        target: AuditTarget,
        query: &AuditQuery,
        after: &str,
    ) -> Result<AuditTail, ManageError> {
        let scope = self.audit_scope(principal, &target).await?;
        let filter = query.to_filter()?;
        let after = match after {
            "" => self.newest_audit_position(&scope).await?,
            cursor => scope.parse_cursor(cursor, "after")?,
        };
        Ok(AuditTail {
            target,
            scope,
            filter,
            after,
            bearer,
            checked_at: Instant::now(),
        })
    }

    /// The next events of `tail`, oldest first: at once if some are stored after its cursor,
    /// else as soon as one commits. Never returns an empty batch; cancel the future to stop
    /// waiting. An error ends the tail: `Unauthenticated` once its admin token has expired
    /// or been revoked, `NotFound` once its tenant is gone, `Store` when the database fails.
    // The tail's re-check interval paces database reads: real time.
    #[allow(clippy::disallowed_methods)]
    async fn next_audit_events(
        &self,
        tail: &mut AuditTail,
    ) -> Result<Vec<AuditEntry>, ManageError> {
        loop {
            if tail.checked_at.elapsed() >= TAIL_RECHECK_INTERVAL {
                let principal = self.authenticate(Some(&tail.bearer)).await?;
                let scope = self.audit_scope(&principal, &tail.target).await?;
                if scope != tail.scope {
                    // The tenant was deleted and its name taken again.
                    return Err(ManageError::FollowedTenantGone);
                }
                tail.checked_at = Instant::now();
            }
            // The newest position first: everything up to it that matches is read below,
            // so the cursor can move there even if nothing matched.
            let head = self.newest_audit_position(&tail.scope).await?;
            if head > tail.after {
                let AuditSlice { records, has_more } = self
                    .store
                    .read_audit_events(&AuditRead {
                        scope: tail.scope.store(),
                        filter: &tail.filter,
                        order: AuditReadOrder::OldestFirst,
                        after: Some(tail.after),
                        before: Some(head.saturating_add(1)),
                        max_rows: TAIL_PAGE,
                        max_bytes: MAX_PAGE_BYTES,
                        max_row_bytes: MAX_EVENT_BYTES,
                    })
                    .await?;
                tail.after = match records.last() {
                    Some(last) if has_more => tail.scope.position(&last.row),
                    // Every matching event up to `head` has been read.
                    _ => head,
                };
                if !records.is_empty() {
                    return Ok(records
                        .into_iter()
                        .map(|record| tail.scope.entry(record))
                        .collect());
                }
            }
            tokio::time::sleep(TAIL_POLL_INTERVAL).await;
        }
    }

    /// Verifies the tenant's hash chain from its oldest kept record to its head.
    pub async fn verify_audit_chain(
        &self,
        principal: &Principal,
        tenant: &TenantName,
    ) -> Result<ChainCheck, ManageError> {
        principal.require(tenant, AUDIT_READ_SCOPE)?;
        let record = self.find_tenant(tenant).await?;
        let report =
            tollgate_audit::verify_tenant(&self.store, &record.id, VERIFY_PAGE, VERIFY_PAGE_BYTES)
                .await
                .map_err(ManageError::Store)?;
        Ok(chain_check(report))
    }

    /// Authorizes `principal` to read `target`'s events and resolves the tenant's id. The
    /// tenant is looked up only after the authorization, so that another tenant's admin
    /// cannot learn which tenants exist.
    async fn audit_scope(
        &self,
        principal: &Principal,
        target: &AuditTarget,
    ) -> Result<Scope, ManageError> {
        match target {
            AuditTarget::Tenant(name) => {
                principal.require(name, AUDIT_READ_SCOPE)?;
                let tenant = self.find_tenant(name).await?;
                Ok(Scope::Tenant { id: tenant.id })
            }
            AuditTarget::AllTenants => {
                if !principal.tenant.is_system() {
                    return Err(ManageError::PermissionDenied(Denial::OwnAuditOnly(
                        principal.tenant.clone(),
                    )));
                }
                principal.require_scope(AUDIT_READ_SCOPE)?;
                Ok(Scope::All)
            }
        }
    }

    /// The position of the newest event of `scope`, matching any filter or none; 0 when
    /// there is none. Positions only grow in commit order, so nothing can later commit at
    /// or before it.
    async fn newest_audit_position(&self, scope: &Scope) -> Result<i64, ManageError> {
        Ok(self.store.newest_audit_position(scope.store()).await?)
    }
}

/// The state of one tail's stream.
struct Following {
    management: Arc<Management>,
    tail: AuditTail,
    /// The events read and not yet taken.
    batch: VecDeque<AuditEntry>,
    /// Whether the last item was an error: nothing follows it.
    has_ended: bool,
}

impl Following {
    /// The next event, once there is one; `None` after an error.
    async fn next(&mut self) -> Option<Result<AuditEntry, ManageError>> {
        loop {
            if let Some(entry) = self.batch.pop_front() {
                return Some(Ok(entry));
            }
            if self.has_ended {
                return None;
            }
            match self.management.next_audit_events(&mut self.tail).await {
                Ok(batch) => self.batch = batch.into(),
                Err(error) => {
                    self.has_ended = true;
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Scope {
        Scope::Tenant {
            id: "ten_a-b_C".into(),
        }
    }

    #[test]
    fn cursors_round_trip_within_their_scope() {
        for (scope, position) in [(tenant(), 0), (tenant(), 42), (Scope::All, 7)] {
            let cursor = scope.cursor(position);
            assert_eq!(scope.parse_cursor(&cursor, "after"), Ok(position));
            for order in [AuditOrder::NewestFirst, AuditOrder::OldestFirst] {
                let token = scope.page_token(order, position, 99);
                assert_eq!(scope.parse_page_token(order, &token), Ok((position, 99)));
            }
        }
        assert_eq!(tenant().cursor(3), "seq.ten_a-b_C.3");
        assert_eq!(Scope::All.cursor(3), "id.3");
        assert_eq!(
            tenant().page_token(AuditOrder::NewestFirst, 3, 9),
            "newest:seq.ten_a-b_C.3:9"
        );
    }

    #[test]
    fn foreign_and_malformed_cursors_name_the_field() {
        let other = Scope::Tenant {
            id: "ten_other".into(),
        };
        let reason = |scope: &Scope, text: &str| {
            scope
                .parse_cursor(text, "after")
                .err()
                .map(|error| error.to_string())
        };
        assert_eq!(
            reason(&other, "seq.ten_a-b_C.3").as_deref(),
            Some("after: is a cursor of another tenant's audit events")
        );
        assert_eq!(
            reason(&tenant(), "id.3").as_deref(),
            Some("after: is not a cursor of one tenant's audit events")
        );
        assert_eq!(
            reason(&Scope::All, "seq.ten_a-b_C.3").as_deref(),
            Some("after: is not a cursor of every tenant's audit events")
        );
        for bad in [
            "",
            "seq.ten_a-b_C.",
            "seq.ten_a-b_C.-1",
            "seq.ten_a-b_C.x",
            "seq",
        ] {
            assert!(tenant().parse_cursor(bad, "after").is_err(), "{bad:?}");
        }
        let newest = tenant().page_token(AuditOrder::NewestFirst, 3, 9);
        let refused = tenant()
            .parse_page_token(AuditOrder::OldestFirst, &newest)
            .err()
            .map(|error| error.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("page_token: belongs to a listing in the other order")
        );
        for bad in [
            "",
            "newest",
            "newest:seq.ten_a-b_C.3",
            "newest:seq.ten_a-b_C.3:x:y",
        ] {
            assert!(
                tenant()
                    .parse_page_token(AuditOrder::NewestFirst, bad)
                    .is_err(),
                "{bad:?}"
            );
        }
        let from_cursor = tenant()
            .parse_page_token(AuditOrder::NewestFirst, "newest:id.3:9")
            .err()
            .map(|error| error.to_string());
        assert_eq!(
            from_cursor.as_deref(),
            Some("page_token: is not a cursor of one tenant's audit events")
        );
    }

    #[test]
    fn an_empty_time_range_is_refused() -> Result<(), InvalidValue> {
        let query = AuditQuery {
            since_ms: Some(10),
            until_ms: Some(10),
            ..AuditQuery::default()
        };
        assert_eq!(
            query.to_filter().err().map(|error| error.to_string()),
            Some("filter.until: must be after since".to_owned())
        );
        let query = AuditQuery {
            since_ms: Some(10),
            until_ms: Some(11),
            client_id: Some(Identifier::parse("c1")?),
            action: Some(AuditAction::TokenDenied),
            result: Some(Outcome::Denied),
        };
        assert_eq!(
            query.to_filter()?,
            AuditFilter {
                since_ms: Some(10),
                until_ms: Some(11),
                client_id: Some("c1".to_owned()),
                action: Some("token_denied".to_owned()),
                result: Some("denied".to_owned()),
            }
        );
        Ok(())
    }
}
