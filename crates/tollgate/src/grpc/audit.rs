//! `tollgate.v1.AuditService`: thin adapters over [`Management`]'s audit read side. Its
//! events and reports reach the wire through `tollgate_proto::audit`'s conversions.
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
use tollgate_audit::{AuditAction, Identifier, Outcome};
use tollgate_domain::{InvalidValue, TenantName};
use tollgate_management::{
    AuditEntry, AuditListRequest, AuditOrder, AuditQuery, AuditTarget, MAX_EVENT_BYTES, Management,
    PageRequest, Principal,
};
use tollgate_proto::audit::unix_ms;
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1;
use tollgate_proto::v1::audit_service_server::AuditService;
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
            events: page.events.into_iter().map(Into::into).collect(),
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
        Ok(Response::new(report.into()))
    }
}

/// A followed event on the wire.
fn stream_message(entry: AuditEntry) -> v1::StreamEventsResponse {
    v1::StreamEventsResponse {
        event: Some(entry.into()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
