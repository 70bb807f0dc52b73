//! `tollgate.v1.AuditService`: thin adapters over [`Management`]'s audit read side, and the
//! two conversions of a stored audit record to and from its wire form ([`event_to_wire`],
//! [`event_from_wire`]), which must stay exact inverses: an exported event is verified
//! offline from its wire form.
//!
//! A stream is management's tail (`Management::tail_audit_events`) through the one
//! forwarder (`super::forward`), which ends it like every stream; what waits for a slow
//! client is bounded in bytes ([`STREAM_BUFFER`]), not only in messages.
//!
//! Every message is bounded in bytes by the read side (`tollgate_management::MAX_PAGE_BYTES`
//! per page, `MAX_EVENT_BYTES` per event): [`MAX_AUDIT_MESSAGE_BYTES`] is the encoding
//! limit of this service and the decoding limit its clients need.

use std::sync::Arc;

use tokio::sync::watch;
use tollgate_audit::{AuditAction, ChainReport, Identifier, Outcome};
use tollgate_domain::{InvalidValue, TenantName};
use tollgate_management::{
    AuditEntry, AuditListRequest, AuditOrder, AuditQuery, AuditTarget, MAX_EVENT_BYTES, Management,
    PageRequest, Principal,
};
use tollgate_proto::audit::{timestamp_of_ms, unix_ms};
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1;
use tollgate_proto::v1::audit_service_server::AuditService;
use tollgate_store::AuditRow;
use tonic::{Request, Response, Status};

use super::forward::{Buffer, Forwarded, forward};
use super::{bearer_token, into_status};

/// What a stream buffers for a slow client before its tail waits: 64 events, and 4 MiB of
/// encoded events (a larger event is let through alone).
const STREAM_BUFFER: Buffer = Buffer {
    messages: 64,
    bytes: Some(4 << 20),
};

pub use tollgate_proto::audit::MAX_AUDIT_MESSAGE_BYTES;

// The largest event returned whole fits in a message, with 1 MiB to spare for a page's
// tokens and framing.
const _: () = assert!(MAX_EVENT_BYTES as usize + (1 << 20) <= MAX_AUDIT_MESSAGE_BYTES);

/// Serves `AuditService` over one [`Management`].
#[derive(Clone)]
pub struct AuditAdapter {
    management: Arc<Management>,
    shutdown: watch::Receiver<bool>,
}

impl AuditAdapter {
    /// Serves `management`; open streams end when `shutdown` turns true.
    pub fn new(management: Arc<Management>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            management,
            shutdown,
        }
    }

    /// The caller's principal and the admin token it came from (a tail authenticates it
    /// again from time to time).
    async fn principal<T>(&self, request: &Request<T>) -> Result<(Principal, String), Status> {
        let bearer = bearer_token(request.metadata());
        let principal = self
            .management
            .authenticate(bearer)
            .await
            .map_err(into_status)?;
        Ok((principal, bearer.unwrap_or_default().to_owned()))
    }
}

#[tonic::async_trait]
impl AuditService for AuditAdapter {
    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        let (principal, _) = self.principal(&request).await?;
        let list = list_request(request.into_inner()).map_err(invalid_argument)?;
        let page = self
            .management
            .list_audit_events(&principal, list)
            .await
            .map_err(into_status)?;
        Ok(Response::new(v1::ListEventsResponse {
            events: page.events.into_iter().map(event_to_wire).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            stream_cursor: page.stream_cursor,
        }))
    }

    type StreamEventsStream = Forwarded<v1::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let (principal, bearer) = self.principal(&request).await?;
        let request = request.into_inner();
        let target = target(&request.tenant).map_err(invalid_argument)?;
        let query = query(request.filter).map_err(invalid_argument)?;
        let events = self
            .management
            .tail_audit_events(&principal, bearer, target, &query, &request.after)
            .await
            .map_err(into_status)?;
        Ok(Response::new(forward(
            events,
            stream_message,
            STREAM_BUFFER,
            self.shutdown.clone(),
        )))
    }

    async fn verify_chain(
        &self,
        request: Request<v1::VerifyChainRequest>,
    ) -> Result<Response<v1::VerifyChainResponse>, Status> {
        let (principal, _) = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant)
            .map_err(|error| invalid_argument(error.for_field("tenant")))?;
        let report = self
            .management
            .verify_audit_chain(&principal, &tenant)
            .await
            .map_err(into_status)?;
        Ok(Response::new(verify_response(report)))
    }
}

/// A followed event on the wire.
fn stream_message(entry: AuditEntry) -> v1::StreamEventsResponse {
    v1::StreamEventsResponse {
        event: Some(event_to_wire(entry)),
    }
}

fn target(tenant: &str) -> Result<AuditTarget, InvalidValue> {
    match tenant {
        "" => Ok(AuditTarget::AllTenants),
        name => Ok(AuditTarget::Tenant(
            TenantName::parse(name).map_err(|error| error.for_field("tenant"))?,
        )),
    }
}

fn list_request(request: v1::ListEventsRequest) -> Result<AuditListRequest, InvalidValue> {
    let order = match v1::EventOrder::try_from(request.order) {
        Ok(v1::EventOrder::Unspecified | v1::EventOrder::NewestFirst) => AuditOrder::NewestFirst,
        Ok(v1::EventOrder::OldestFirst) => AuditOrder::OldestFirst,
        Err(_) => return Err(InvalidValue::new("order", "unknown order")),
    };
    Ok(AuditListRequest {
        target: target(&request.tenant)?,
        query: query(request.filter)?,
        order,
        page: PageRequest {
            page_size: request.page_size,
            page_token: request.page_token,
        },
        after: request.after,
    })
}

fn query(filter: Option<v1::AuditFilter>) -> Result<AuditQuery, InvalidValue> {
    let Some(filter) = filter else {
        return Ok(AuditQuery::default());
    };
    let action = match filter.action.as_str() {
        "" => None,
        name => Some(AuditAction::parse(name).ok_or_else(|| {
            let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            InvalidValue::new(
                "filter.action",
                format!("must be one of {}", names.join(", ")),
            )
        })?),
    };
    let result = match filter.result.as_str() {
        "" => None,
        name => Some(Outcome::parse(name).ok_or_else(|| {
            InvalidValue::new("filter.result", "must be one of granted, denied, ok")
        })?),
    };
    let client_id = match filter.client_id.as_str() {
        "" => None,
        id => Some(Identifier::parse(id).map_err(|error| error.for_field("filter.client_id"))?),
    };
    Ok(AuditQuery {
        since_ms: filter
            .since
            .map(|since| unix_ms(&since, "filter.since"))
            .transpose()?,
        until_ms: filter
            .until
            .map(|until| unix_ms(&until, "filter.until"))
            .transpose()?,
        client_id,
        action,
        result,
    })
}

/// A stored event on the wire, with its cursor.
pub(crate) fn event_to_wire(entry: AuditEntry) -> v1::AuditEvent {
    let row = entry.row;
    v1::AuditEvent {
        id: row.id,
        tenant_id: row.tenant_id,
        tenant_name: row.tenant_name,
        seq: row.seq,
        time_ms: row.time_ms,
        time: timestamp_of_ms(row.time_ms),
        action: row.action,
        result: row.result,
        error_code: row.error_code,
        actor: row.actor,
        client_id: row.client_id,
        secret_id: row.secret_id,
        audience: row.audience,
        scopes_requested: row.scopes_requested,
        scopes_granted: row.scopes_granted,
        jti: row.jti,
        source: row.source,
        transport: row.transport,
        trace_id: row.trace_id,
        resource: row.resource,
        changed_fields: row.changed_fields,
        count: row.count,
        prev_hash: row.prev_hash,
        hash: row.hash,
        version: row.version,
        cursor: entry.cursor,
        elided_bytes: entry
            .elided_bytes
            .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
    }
}

/// The stored record an event on the wire stands for (its `time`, `cursor` and
/// `elided_bytes`, which are not stored, are left out): what offline verification hashes.
pub(crate) fn event_from_wire(event: v1::AuditEvent) -> AuditRow {
    AuditRow {
        id: event.id,
        tenant_id: event.tenant_id,
        seq: event.seq,
        version: event.version,
        time_ms: event.time_ms,
        tenant_name: event.tenant_name,
        action: event.action,
        result: event.result,
        error_code: event.error_code,
        actor: event.actor,
        client_id: event.client_id,
        secret_id: event.secret_id,
        audience: event.audience,
        scopes_requested: event.scopes_requested,
        scopes_granted: event.scopes_granted,
        jti: event.jti,
        source: event.source,
        transport: event.transport,
        trace_id: event.trace_id,
        resource: event.resource,
        changed_fields: event.changed_fields,
        count: event.count,
        prev_hash: event.prev_hash,
        hash: event.hash,
    }
}

/// A verification report on the wire.
pub(crate) fn verify_response(report: ChainReport) -> v1::VerifyChainResponse {
    v1::VerifyChainResponse {
        ok: report.outcome.is_ok(),
        records_checked: i64::try_from(report.checked).unwrap_or(i64::MAX),
        oldest_seq: report.first_seq,
        newest_seq: report.last_seq,
        head_seq: report.head.map_or(0, |head| head.seq),
        first_break: report.outcome.err().map(|broken| v1::ChainBreak {
            seq: broken.seq,
            reason: broken.reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn full_row() -> AuditRow {
        AuditRow {
            id: 12,
            tenant_id: "ten_1".into(),
            seq: 3,
            version: 1,
            time_ms: 1_700_000_000_123,
            tenant_name: "acme".into(),
            action: "token_denied".into(),
            result: "denied".into(),
            error_code: Some("invalid_scope".into()),
            actor: Some("c1".into()),
            client_id: Some("c1".into()),
            secret_id: Some("sec_1".into()),
            audience: Some("https://api.example/".into()),
            scopes_requested: vec!["read".into(), "admin".into()],
            scopes_granted: vec!["read".into()],
            jti: Some("jti_1".into()),
            source: Some("192.0.2.7".into()),
            transport: Some("http".into()),
            trace_id: Some("trace".into()),
            resource: Some("app/c1".into()),
            changed_fields: vec!["grants".into()],
            count: 2,
            prev_hash: "a".repeat(64),
            hash: "b".repeat(64),
        }
    }

    #[test]
    fn wire_events_round_trip_exactly() {
        for row in [
            full_row(),
            AuditRow::default(),
            // Present but empty is not absent: the hash tells them apart.
            AuditRow {
                actor: Some(String::new()),
                ..AuditRow::default()
            },
        ] {
            let wire = event_to_wire(AuditEntry {
                row: row.clone(),
                cursor: "seq.ten_1.3".into(),
                elided_bytes: None,
            });
            assert_eq!(wire.cursor, "seq.ten_1.3");
            assert_eq!(wire.elided_bytes, None);
            assert_eq!(event_from_wire(wire), row);
        }
    }

    /// The size the store counts for a row (`AUDIT_ROW_OVERHEAD` plus the bytes of its
    /// stored texts, lists as JSON), as its SQL does.
    fn stored_size(row: &AuditRow) -> usize {
        let json = |list: &[String]| serde_json::Value::from(list.to_vec()).to_string().len();
        let texts = [&row.tenant_id, &row.tenant_name, &row.action, &row.result]
            .into_iter()
            .chain([&row.prev_hash, &row.hash])
            .map(String::len)
            .sum::<usize>();
        let optional = row
            .optional_texts()
            .into_iter()
            .flatten()
            .map(str::len)
            .sum::<usize>();
        tollgate_store::AUDIT_ROW_OVERHEAD as usize
            + texts
            + optional
            + json(&row.scopes_requested)
            + json(&row.scopes_granted)
            + json(&row.changed_fields)
    }

    #[test]
    fn the_stored_size_bounds_the_size_on_the_wire() {
        let many = |count: usize, item: &str| vec![item.to_owned(); count];
        let rows = [
            full_row(),
            AuditRow::default(),
            // Lists of short items cost more on the wire per item than long ones.
            AuditRow {
                scopes_requested: many(100_000, "a"),
                scopes_granted: many(1_000, ""),
                changed_fields: many(1_000, "x"),
                ..full_row()
            },
            // An item of megabytes: its length takes 4 bytes on the wire, 2 quotes in JSON.
            AuditRow {
                scopes_requested: many(2, &"s".repeat(3 << 20)),
                ..full_row()
            },
            AuditRow {
                actor: Some("é".repeat(10_000)),
                resource: Some("\u{1}\"".repeat(100)),
                scopes_requested: many(100, "ü"),
                ..full_row()
            },
            AuditRow {
                id: i64::MIN,
                seq: i64::MIN,
                time_ms: i64::MIN,
                count: i64::MIN,
                version: i32::MIN,
                ..full_row()
            },
        ];
        for row in rows {
            let stored = stored_size(&row);
            let page = v1::ListEventsResponse {
                events: vec![event_to_wire(AuditEntry {
                    row,
                    cursor: format!("seq.ten_{}.{}", "x".repeat(32), i64::MAX),
                    elided_bytes: Some(u64::MAX),
                })],
                next_page_token: String::new(),
                stream_cursor: String::new(),
            };
            // The event with its framing in a page.
            let on_the_wire = page.encoded_len();
            assert!(on_the_wire <= stored, "{on_the_wire} > {stored}");
        }
    }

    #[test]
    fn the_wire_names_every_audit_action() {
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, tollgate_proto::audit::AUDIT_ACTIONS);
    }

    #[test]
    fn filters_name_their_field() {
        let refused = |filter: v1::AuditFilter| {
            query(Some(filter))
                .err()
                .map(|error| error.field)
                .unwrap_or_default()
        };
        let filter = v1::AuditFilter::default;
        assert_eq!(
            refused(v1::AuditFilter {
                action: "token_stolen".into(),
                ..filter()
            }),
            "filter.action"
        );
        assert_eq!(
            refused(v1::AuditFilter {
                result: "maybe".into(),
                ..filter()
            }),
            "filter.result"
        );
        assert_eq!(
            refused(v1::AuditFilter {
                client_id: "has space".into(),
                ..filter()
            }),
            "filter.client_id"
        );
        assert_eq!(
            refused(v1::AuditFilter {
                since: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5
                }),
                ..filter()
            }),
            "filter.since"
        );
        assert_eq!(
            target("Not_A_Label").err().map(|error| error.field),
            Some("tenant")
        );
        assert_eq!(target(""), Ok(AuditTarget::AllTenants));
    }
}
