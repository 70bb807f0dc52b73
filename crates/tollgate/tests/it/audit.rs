//! The audit trail's read side over the wire: `ListEvents` filters and pages, `StreamEvents`
//! follows and resumes, `VerifyChain` and the CLI name a tampered record, an export verifies
//! offline, and each admin reads only what it may.
//!
//! Events are seeded straight into the server's database with `tollgate_audit::AuditWriter`,
//! as another instance would record them. They are stamped in a window in 2096 (from
//! `BASE_MS`) and exact expectations filter on that window, so events the server records
//! by itself (now) never change them, and its retention purge never removes them.

use std::time::Duration;

use anyhow::{Context, bail};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tollgate_audit::{
    AuditAction, AuditConfig, AuditEvent, AuditWriter, CHAIN_VERSION, FieldName, GENESIS_HASH,
    Identifier, Outcome, Transport, record_hash,
};
use tollgate_domain::{AuditEntry, ErrorCode, RecordedEvent, TenantName};
use tollgate_management::{MAX_EVENT_BYTES, MAX_PAGE_BYTES};
use tollgate_proto::v1::audit_service_client::AuditServiceClient;
use tollgate_proto::v1::{
    AuditFilter, CreateAppRequest, EventOrder, GetApiRequest, GetAppRequest, ListEventsRequest,
    ListEventsResponse, StreamEventsRequest, StreamEventsResponse, VerifyChainRequest,
};
use tollgate_store::{AuditRow, Store};
use tollgate_testkit::{AdminCredentials, BearerAuth, TestServer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::cli::{json, tollgate, tollgate_command};
use crate::fixtures::{ARCHIVE, Fixture, grant};

crate::backend_tests!(
    admin_apps_hold_audit_read,
    list_filters_and_pages,
    tenants_read_only_their_own_trail,
    tail_sees_a_burst_exactly_once_in_order,
    list_then_stream_misses_nothing,
    tampering_is_named_by_verify_chain,
    cli_lists_tails_exports_and_verifies,
    what_the_server_records_is_streamed,
    large_events_are_read_in_bounded_pages,
    an_event_too_large_to_send_is_elided,
);

/// 2096-10-02T07:06:40Z: seeded events are stamped from here on. In the future, so that
/// neither what the server records (now) falls in the window nor the retention purge (of
/// what is older than 90 days, at start and every 10 minutes) takes seeded events away.
const BASE_MS: i64 = 4_000_000_000_000;

/// How long a test waits for streamed events.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// How long a stream must stay silent to show it sends nothing more (several polls).
const QUIET: Duration = Duration::from_millis(800);

type AuditClient = AuditServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Writes audit events into the server's database, and edits them there.
struct Trail {
    writer: AuditWriter,
    task: JoinHandle<()>,
    raw: DatabaseConnection,
}

impl Trail {
    async fn open(server: &TestServer) -> anyhow::Result<Self> {
        let url = &server.joined.database_url;
        let store = Store::connect(url).await?;
        let (writer, task) = AuditWriter::start(store, AuditConfig::default());
        let raw = sea_orm::Database::connect(url.as_str()).await?;
        Ok(Self { writer, task, raw })
    }

    async fn record(&self, event: AuditEvent) -> anyhow::Result<()> {
        Ok(self.writer.record(event).await?)
    }

    async fn exec(&self, sql: &str) -> anyhow::Result<u64> {
        Ok(self.raw.execute_unprepared(sql).await?.rows_affected())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.writer.shutdown().await;
        self.task.await?;
        self.raw.close().await?;
        Ok(())
    }
}

/// Whose chain a seeded event joins.
#[derive(Debug, Clone)]
struct Tenant {
    id: String,
    name: String,
}

impl Tenant {
    fn of(fixture: &Fixture, name: &str) -> Self {
        Self {
            id: fixture.tenant_id.clone(),
            name: name.to_owned(),
        }
    }
}

/// An event of `tenant` at `BASE_MS + offset`, about `client`, identified by `jti`.
fn seed(
    tenant: &Tenant,
    offset: i64,
    action: AuditAction,
    result: Outcome,
    client: &str,
    jti: &str,
) -> anyhow::Result<AuditEvent> {
    let mut event = AuditEvent::new(
        tollgate_domain::TenantId::new(tenant.id.as_str()),
        TenantName::parse(&tenant.name)?,
        BASE_MS + offset,
        action,
        result,
    );
    event.actor = Some(Identifier::parse(client)?);
    event.client_id = Some(Identifier::parse(client)?);
    event.jti = Some(Identifier::parse(jti)?);
    if result == Outcome::Denied {
        event.error = Some(ErrorCode::InvalidScope);
    }
    Ok(event)
}

fn at_ms(time_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time_ms.div_euclid(1_000),
        nanos: i32::try_from(time_ms.rem_euclid(1_000) * 1_000_000).unwrap_or_default(),
    }
}

/// The seeded window `[BASE_MS + from, BASE_MS + to)` as a filter.
fn window(from: i64, to: i64) -> AuditFilter {
    AuditFilter {
        since: Some(at_ms(BASE_MS + from)),
        until: Some(at_ms(BASE_MS + to)),
        ..Default::default()
    }
}

/// The whole seeded window.
fn seeded() -> AuditFilter {
    window(0, 1_000_000)
}

async fn audit_client(
    server: &TestServer,
    admin: &AdminCredentials,
) -> anyhow::Result<AuditClient> {
    let token = server.admin_token_for(admin).await?;
    Ok(AuditServiceClient::with_interceptor(
        server.channel(),
        BearerAuth::new(&token)?,
    ))
}

fn jtis(events: &[tollgate_proto::v1::AuditEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| event.jti.clone().unwrap_or_default())
        .collect()
}

fn names(prefix: &str, numbers: &[usize]) -> Vec<String> {
    numbers.iter().map(|n| format!("{prefix}-{n}")).collect()
}

/// Every page of a listing: the events of each page and the `stream_cursor` of each.
async fn pages(
    audit: &mut AuditClient,
    request: ListEventsRequest,
) -> anyhow::Result<(Vec<Vec<tollgate_proto::v1::AuditEvent>>, Vec<String>)> {
    let mut events = Vec::new();
    let mut cursors = Vec::new();
    let mut request = request;
    for _ in 0..100 {
        let page: ListEventsResponse = audit.list_events(request.clone()).await?.into_inner();
        events.push(page.events);
        cursors.push(page.stream_cursor);
        if page.next_page_token.is_empty() {
            return Ok((events, cursors));
        }
        request.page_token = page.next_page_token;
        request.after.clear();
    }
    bail!("more than 100 pages")
}

/// Every event of a listing, in order.
async fn listed(
    audit: &mut AuditClient,
    request: ListEventsRequest,
) -> anyhow::Result<Vec<tollgate_proto::v1::AuditEvent>> {
    Ok(pages(audit, request).await?.0.concat())
}

/// The code and message of a failed call.
fn failure<T>(result: Result<T, tonic::Status>) -> (Code, String) {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// The next `count` events of a stream, waiting at most [`STREAM_WAIT`].
async fn receive(
    stream: &mut Streaming<StreamEventsResponse>,
    count: usize,
) -> anyhow::Result<Vec<tollgate_proto::v1::AuditEvent>> {
    let deadline = Instant::now() + STREAM_WAIT;
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let message = timeout_at(deadline, stream.message())
            .await
            .with_context(|| format!("{} of {count} events streamed in time", events.len()))??
            .context("the stream ended")?;
        events.push(message.event.context("a message without an event")?);
    }
    Ok(events)
}

/// Checks that a stream sends nothing for [`QUIET`].
async fn assert_quiet(stream: &mut Streaming<StreamEventsResponse>) -> anyhow::Result<()> {
    match tokio::time::timeout(QUIET, stream.message()).await {
        Err(_) => Ok(()),
        Ok(Ok(Some(message))) => bail!("unexpected event {:?}", message.event),
        Ok(other) => bail!("the stream ended: {other:?}"),
    }
}

/// Every tenant's Management API defines `audit:read`, and its admin app holds it; a
/// database from before the scope existed gains it when migrated.
async fn admin_apps_hold_audit_read(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let mut system = server.system_admin().await?;
    let expected = |tenant: &str| {
        let mut scopes = vec![
            "apis:read",
            "apis:write",
            "apps:read",
            "apps:write",
            "keys:read",
            "keys:write",
            "tokens:revoke",
            "audit:read",
        ];
        if tenant == "system" {
            scopes.extend(["tenants:read", "tenants:write"]);
        }
        scopes
    };
    // The scopes the tenant's Management API defines, and those its admin app holds on it.
    let mut builtin_scopes = async |tenant: &str, admin: &AdminCredentials| {
        let manage = format!("http://{tenant}.hub.localhost:8080/manage");
        let api = system
            .apis
            .get_api(GetApiRequest {
                tenant: tenant.into(),
                identifier: manage.clone(),
            })
            .await?
            .into_inner();
        let app = system
            .apps
            .get_app(GetAppRequest {
                tenant: tenant.into(),
                client_id: admin.client_id.clone(),
            })
            .await?
            .into_inner();
        let grant = app
            .grants
            .into_iter()
            .find(|grant| grant.audience == manage)
            .context("no grant on the Management API")?;
        let defined: Vec<String> = api.scopes.into_iter().map(|scope| scope.value).collect();
        anyhow::Ok((defined, grant.scopes))
    };
    for (tenant, admin) in [("acme", &acme.admin), ("system", &server.admin)] {
        let (defined, held) = builtin_scopes(tenant, admin).await?;
        assert_eq!(defined, expected(tenant), "{tenant}");
        let mut sorted = expected(tenant);
        sorted.sort();
        assert_eq!(held, sorted, "{tenant}");
    }

    // A database from before audit:read: the scope neither defined nor held.
    let trail = Trail::open(&server).await?;
    trail
        .exec(
            r#"UPDATE apis SET scopes = REPLACE(scopes, ',{"description":"Read, follow and verify the audit trail","value":"audit:read"}', '') WHERE is_system"#,
        )
        .await?;
    trail
        .exec(r#"UPDATE grants SET scopes = REPLACE(scopes, '"audit:read",', '')"#)
        .await?;
    trail
        .exec("DELETE FROM seaql_migrations WHERE version = 'm20261123_000001_audit_read_scope'")
        .await?;
    let (defined, held) = builtin_scopes("acme", &acme.admin).await?;
    assert!(
        !defined.iter().any(|scope| scope == "audit:read"),
        "{defined:?}"
    );
    assert!(!held.iter().any(|scope| scope == "audit:read"), "{held:?}");
    // Migrating (as `tollgate migrate` or the next start does) gives it back.
    Store::connect(&server.joined.database_url)
        .await?
        .migrate()
        .await?;
    for (tenant, admin) in [("acme", &acme.admin), ("system", &server.admin)] {
        // Appended to the definitions, so after `tenants:*` on the system tenant.
        let (mut defined, held) = builtin_scopes(tenant, admin).await?;
        assert_eq!(defined.last().map(String::as_str), Some("audit:read"));
        defined.sort();
        let mut sorted = expected(tenant);
        sorted.sort();
        assert_eq!(defined, sorted, "{tenant}");
        assert_eq!(held, sorted, "{tenant}");
    }
    trail.close().await
}

async fn list_filters_and_pages(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let trail = Trail::open(&server).await?;
    use AuditAction::*;
    use Outcome::*;
    let plan = [
        (TokenIssued, Granted, "c1"),
        (TokenDenied, Denied, "c2"),
        (TokenIssued, Granted, "c2"),
        (AppBlocked, Ok, "c1"),
        (TokenIssued, Granted, "c1"),
        (TokenDenied, Denied, "c1"),
        (SecretRotated, Ok, "c2"),
        (TokenIssued, Granted, "c1"),
        (RateLimited, Denied, "c2"),
        (TokenIssued, Granted, "c2"),
    ];
    for (offset, (action, result, client)) in plan.into_iter().enumerate() {
        let offset = i64::try_from(offset)?;
        trail
            .record(seed(
                &tenant,
                offset,
                action,
                result,
                client,
                &format!("s-{offset}"),
            )?)
            .await?;
    }
    // One event with every field set, to check each on the wire.
    let mut full = seed(&tenant, 10, TokenDenied, Denied, "c3", "s-10")?;
    full.secret_id = Some(Identifier::parse("sec_1")?);
    full.audience = Some(Identifier::parse("https://archive.example.com/")?);
    full.scopes_requested = vec![
        Identifier::parse("archive:read")?,
        Identifier::parse("archive:admin")?,
    ];
    full.scopes_granted = vec![Identifier::parse("archive:read")?];
    full.source = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    full.transport = Some(Transport::Http);
    full.trace_id = Some(Identifier::parse("4bf92f3577b34da6a3ce929d0e0e4736")?);
    full.resource = Some(Identifier::parse("app/c3")?);
    full.changed_fields = vec![FieldName::parse("grants")?];
    full.count = 3;
    trail.record(full).await?;

    let mut audit = audit_client(&server, &acme.admin).await?;
    let list = |filter: AuditFilter, page_size: i32| ListEventsRequest {
        tenant: "acme".into(),
        filter: Some(filter),
        page_size,
        ..Default::default()
    };

    // Newest first, in pages of four; every page ends at the same stream cursor.
    let (pages_of_four, cursors) = pages(&mut audit, list(seeded(), 4)).await?;
    let page_jtis: Vec<Vec<String>> = pages_of_four.iter().map(|page| jtis(page)).collect();
    assert_eq!(
        page_jtis,
        [
            names("s", &[10, 9, 8, 7]),
            names("s", &[6, 5, 4, 3]),
            names("s", &[2, 1, 0]),
        ]
    );
    assert!(
        cursors.iter().all(|cursor| *cursor == cursors[0]),
        "{cursors:?}"
    );
    assert!(
        cursors[0].starts_with(&format!("seq.{}.", tenant.id)),
        "{}",
        cursors[0]
    );

    // Every stored field, as recorded.
    let newest = &pages_of_four[0][0];
    assert_eq!(newest.tenant_id, tenant.id);
    assert_eq!(newest.tenant_name, "acme");
    assert_eq!(newest.time_ms, BASE_MS + 10);
    assert_eq!(newest.time, Some(at_ms(BASE_MS + 10)));
    assert_eq!(
        (newest.action.as_str(), newest.result.as_str()),
        ("token_denied", "denied")
    );
    assert_eq!(newest.error_code.as_deref(), Some("invalid_scope"));
    assert_eq!(newest.actor.as_deref(), Some("c3"));
    assert_eq!(newest.client_id.as_deref(), Some("c3"));
    assert_eq!(newest.secret_id.as_deref(), Some("sec_1"));
    assert_eq!(
        newest.audience.as_deref(),
        Some("https://archive.example.com/")
    );
    assert_eq!(newest.scopes_requested, ["archive:read", "archive:admin"]);
    assert_eq!(newest.scopes_granted, ["archive:read"]);
    assert_eq!(newest.jti.as_deref(), Some("s-10"));
    assert_eq!(newest.source.as_deref(), Some("192.0.2.7"));
    assert_eq!(newest.transport.as_deref(), Some("http"));
    assert_eq!(
        newest.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(newest.resource.as_deref(), Some("app/c3"));
    assert_eq!(newest.changed_fields, ["grants"]);
    assert_eq!((newest.count, newest.version), (3, 1));
    assert_eq!(newest.cursor, format!("seq.{}.{}", tenant.id, newest.seq));
    let oldest = &pages_of_four[2][2];
    assert_eq!(
        oldest.error_code, None,
        "an unset optional field stays unset"
    );
    assert_eq!(oldest.secret_id, None);
    assert!(oldest.scopes_requested.is_empty());
    assert_eq!(oldest.count, 1);

    // Filters, alone and together.
    let filtered = |filter: AuditFilter| list(AuditFilter { ..filter }, 50);
    let by_client = AuditFilter {
        client_id: "c1".into(),
        ..seeded()
    };
    assert_eq!(
        jtis(&listed(&mut audit, filtered(by_client)).await?),
        names("s", &[7, 5, 4, 3, 0])
    );
    let issued = AuditFilter {
        action: "token_issued".into(),
        ..seeded()
    };
    assert_eq!(
        jtis(&listed(&mut audit, filtered(issued.clone())).await?),
        names("s", &[9, 7, 4, 2, 0])
    );
    let issued_to_c2 = AuditFilter {
        client_id: "c2".into(),
        result: "granted".into(),
        ..issued
    };
    assert_eq!(
        jtis(&listed(&mut audit, filtered(issued_to_c2)).await?),
        names("s", &[9, 2])
    );
    let denied = AuditFilter {
        result: "denied".into(),
        ..seeded()
    };
    assert_eq!(
        jtis(&listed(&mut audit, filtered(denied)).await?),
        names("s", &[10, 8, 5, 1])
    );
    // `since` is inclusive, `until` exclusive.
    assert_eq!(
        jtis(&listed(&mut audit, filtered(window(2, 5))).await?),
        names("s", &[4, 3, 2])
    );

    // Oldest first: chain order, each record linked to the one before.
    let oldest_first = ListEventsRequest {
        order: EventOrder::OldestFirst.into(),
        ..list(seeded(), 3)
    };
    let chain = listed(&mut audit, oldest_first.clone()).await?;
    assert_eq!(
        jtis(&chain),
        names("s", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    );
    for pair in chain.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].hash.len(), 64);
    }
    // ... and from a cursor on.
    let after_three = ListEventsRequest {
        after: chain[3].cursor.clone(),
        ..oldest_first.clone()
    };
    assert_eq!(
        jtis(&listed(&mut audit, after_three).await?),
        names("s", &[4, 5, 6, 7, 8, 9, 10])
    );

    // Malformed requests are INVALID_ARGUMENT naming the field.
    let newest_token = audit
        .list_events(list(seeded(), 2))
        .await?
        .into_inner()
        .next_page_token;
    let invalid = [
        (
            list(
                AuditFilter {
                    action: "token_stolen".into(),
                    ..seeded()
                },
                5,
            ),
            "filter.action: ",
        ),
        (
            list(
                AuditFilter {
                    result: "maybe".into(),
                    ..seeded()
                },
                5,
            ),
            "filter.result: ",
        ),
        (
            list(
                AuditFilter {
                    client_id: "two words".into(),
                    ..seeded()
                },
                5,
            ),
            "filter.client_id: ",
        ),
        (list(window(5, 5), 5), "filter.until: must be after since"),
        (
            ListEventsRequest {
                page_token: "garbage".into(),
                ..list(seeded(), 5)
            },
            "page_token: ",
        ),
        (
            ListEventsRequest {
                page_token: newest_token,
                ..oldest_first.clone()
            },
            "page_token: belongs to a listing in the other order",
        ),
        (
            ListEventsRequest {
                after: chain[3].cursor.clone(),
                ..list(seeded(), 5)
            },
            "after: applies to oldest-first listings only",
        ),
        (
            ListEventsRequest {
                after: "seq.ten_someone-else.3".into(),
                ..oldest_first.clone()
            },
            "after: is a cursor of another tenant's audit events",
        ),
        (
            ListEventsRequest {
                after: "id.3".into(),
                ..oldest_first
            },
            "after: is not a cursor of one tenant's audit events",
        ),
        (list(seeded(), -1), "page_size: "),
        (
            ListEventsRequest {
                tenant: "Not_A_Label".into(),
                ..list(seeded(), 5)
            },
            "tenant: ",
        ),
        (
            ListEventsRequest {
                order: 7,
                ..list(seeded(), 5)
            },
            "order: ",
        ),
    ];
    for (request, message) in invalid {
        let (code, text) = failure(audit.list_events(request.clone()).await);
        assert_eq!(code, Code::InvalidArgument, "{request:?}: {text}");
        assert!(text.starts_with(message), "{request:?}: {text}");
    }
    trail.close().await
}

async fn tenants_read_only_their_own_trail(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let globex = Fixture::new(&server, "globex").await?;
    let trail = Trail::open(&server).await?;
    for offset in 0..6 {
        let (tenant, prefix) = if offset % 2 == 0 {
            (Tenant::of(&acme, "acme"), "a")
        } else {
            (Tenant::of(&globex, "globex"), "g")
        };
        let jti = format!("{prefix}-{offset}");
        trail
            .record(seed(
                &tenant,
                offset,
                AuditAction::TokenIssued,
                Outcome::Granted,
                "c1",
                &jti,
            )?)
            .await?;
    }
    let list = |tenant: &str| ListEventsRequest {
        tenant: tenant.into(),
        filter: Some(seeded()),
        ..Default::default()
    };

    // A tenant's admin reads its own tenant, and nothing else.
    let mut acme_audit = audit_client(&server, &acme.admin).await?;
    assert_eq!(
        jtis(&listed(&mut acme_audit, list("acme")).await?),
        ["a-4", "a-2", "a-0"]
    );
    let (code, message) = failure(acme_audit.list_events(list("globex")).await);
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        message,
        "an admin token of tenant acme cannot act on tenant globex"
    );
    let (code, message) = failure(acme_audit.list_events(list("")).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        message.contains("its own tenant's audit events only"),
        "{message}"
    );
    let stream = acme_audit
        .stream_events(StreamEventsRequest {
            tenant: "globex".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(failure(stream).0, Code::PermissionDenied);
    let verify = acme_audit
        .verify_chain(VerifyChainRequest {
            tenant: "globex".into(),
        })
        .await;
    assert_eq!(failure(verify).0, Code::PermissionDenied);
    // Whether a tenant exists is not another tenant's business.
    assert_eq!(
        failure(acme_audit.list_events(list("nosuch")).await).0,
        Code::PermissionDenied
    );

    // An admin app of acme without audit:read reads nothing.
    let manage = "http://acme.hub.localhost:8080/manage";
    let mut acme_admin_clients = acme.admin_clients;
    let reader = acme_admin_clients
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "api reader".into(),
            grants: vec![grant(manage, &["apis:read", "apps:read"])],
            ..Default::default()
        })
        .await?
        .into_inner();
    let reader = AdminCredentials {
        tenant: "acme".into(),
        client_id: reader.app.context("app")?.client_id,
        client_secret: reader.client_secret,
        audience: manage.into(),
    };
    let mut no_scope = audit_client(&server, &reader).await?;
    let (code, message) = failure(no_scope.list_events(list("acme")).await);
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(message, "the admin token lacks the scope audit:read");
    let stream = no_scope
        .stream_events(StreamEventsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(failure(stream).0, Code::PermissionDenied);
    let verify = no_scope
        .verify_chain(VerifyChainRequest {
            tenant: "acme".into(),
        })
        .await;
    assert_eq!(failure(verify).0, Code::PermissionDenied);
    // No admin token at all.
    let mut anonymous = AuditServiceClient::new(server.channel());
    assert_eq!(
        failure(anonymous.list_events(list("acme")).await).0,
        Code::Unauthenticated
    );

    // The system tenant's admin reads any tenant, and all of them at once (positions are
    // then global ids).
    let mut system = audit_client(&server, &server.admin).await?;
    assert_eq!(
        jtis(&listed(&mut system, list("acme")).await?),
        ["a-4", "a-2", "a-0"]
    );
    assert_eq!(
        jtis(&listed(&mut system, list("globex")).await?),
        ["g-5", "g-3", "g-1"]
    );
    let (all_pages, cursors) = pages(
        &mut system,
        ListEventsRequest {
            page_size: 4,
            ..list("")
        },
    )
    .await?;
    let page_jtis: Vec<Vec<String>> = all_pages.iter().map(|page| jtis(page)).collect();
    assert_eq!(
        page_jtis,
        [vec!["g-5", "a-4", "g-3", "a-2"], vec!["g-1", "a-0"]]
    );
    assert!(cursors[0].starts_with("id."), "{}", cursors[0]);
    let all = all_pages.concat();
    assert!(all.windows(2).all(|pair| pair[0].id > pair[1].id));
    assert!(
        all.iter()
            .all(|event| event.cursor == format!("id.{}", event.id))
    );
    // A cursor of one tenant does not page through another.
    let acme_cursor = listed(&mut system, list("acme")).await?[0].cursor.clone();
    let foreign = system
        .list_events(ListEventsRequest {
            order: EventOrder::OldestFirst.into(),
            after: acme_cursor,
            ..list("globex")
        })
        .await;
    assert_eq!(
        failure(foreign),
        (
            Code::InvalidArgument,
            "after: is a cursor of another tenant's audit events".to_owned()
        )
    );
    assert_eq!(
        failure(system.list_events(list("nosuch")).await).0,
        Code::NotFound
    );
    let verified = system
        .verify_chain(VerifyChainRequest {
            tenant: "globex".into(),
        })
        .await?
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    trail.close().await
}

async fn tail_sees_a_burst_exactly_once_in_order(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let globex = Fixture::new(&server, "globex").await?;
    let trail = Trail::open(&server).await?;
    let mut acme_audit = audit_client(&server, &acme.admin).await?;
    let mut system = audit_client(&server, &server.admin).await?;

    // Where the trail ends before the burst, for catching up afterwards.
    let before_burst = system
        .list_events(ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .stream_cursor;
    // Both tails start (at the newest event now) before the burst: acme's events about the
    // client `burst`, and every tenant's seeded events.
    let mut acme_tail = acme_audit
        .stream_events(StreamEventsRequest {
            tenant: "acme".into(),
            filter: Some(AuditFilter {
                client_id: "burst".into(),
                ..Default::default()
            }),
            after: String::new(),
        })
        .await?
        .into_inner();
    let mut all_tail = system
        .stream_events(StreamEventsRequest {
            tenant: String::new(),
            filter: Some(seeded()),
            after: String::new(),
        })
        .await?
        .into_inner();

    // Six recorders at once, 60 events each: acme about `burst`, acme about `noise`, globex
    // about `burst`, in turn. The writer batches what arrives together.
    let (acme_tenant, globex_tenant) = (Tenant::of(&acme, "acme"), Tenant::of(&globex, "globex"));
    let mut recorders = Vec::new();
    for recorder in 0..6 {
        let writer = trail.writer.clone();
        let (acme_tenant, globex_tenant) = (acme_tenant.clone(), globex_tenant.clone());
        recorders.push(tokio::spawn(async move {
            for n in 0..60_i64 {
                let (tenant, client) = match n % 3 {
                    0 => (&acme_tenant, "burst"),
                    1 => (&acme_tenant, "noise"),
                    _ => (&globex_tenant, "burst"),
                };
                let jti = format!("b-{recorder}-{n}");
                let event = seed(
                    tenant,
                    n,
                    AuditAction::TokenIssued,
                    Outcome::Granted,
                    client,
                    &jti,
                )?;
                writer.record(event).await?;
            }
            anyhow::Ok(())
        }));
    }
    for recorder in recorders {
        recorder.await??;
    }

    // acme's tail: exactly acme's `burst` events, once each, in chain order.
    let expected = listed(
        &mut acme_audit,
        ListEventsRequest {
            tenant: "acme".into(),
            filter: Some(AuditFilter {
                client_id: "burst".into(),
                ..Default::default()
            }),
            page_size: 500,
            order: EventOrder::OldestFirst.into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(expected.len(), 120);
    let tailed = receive(&mut acme_tail, 120).await?;
    assert_eq!(jtis(&tailed), jtis(&expected));
    assert!(tailed.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(
        tailed
            .iter()
            .all(|event| event.cursor == format!("seq.{}.{}", acme_tenant.id, event.seq))
    );
    assert_quiet(&mut acme_tail).await?;

    // The all-tenants tail: all 360 events, once each, in commit (id) order.
    let everything = receive(&mut all_tail, 360).await?;
    assert!(everything.windows(2).all(|pair| pair[0].id < pair[1].id));
    let mut seen = jtis(&everything);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 360, "every event exactly once");
    assert!(
        everything
            .iter()
            .all(|event| event.cursor == format!("id.{}", event.id))
    );
    assert_quiet(&mut all_tail).await?;

    // A tail that starts behind catches up through more than one poll's page, then waits.
    let mut catching_up = system
        .stream_events(StreamEventsRequest {
            tenant: String::new(),
            filter: Some(seeded()),
            after: before_burst,
        })
        .await?
        .into_inner();
    let replayed = receive(&mut catching_up, 360).await?;
    assert_eq!(jtis(&replayed), jtis(&everything));
    assert_quiet(&mut catching_up).await?;
    trail.close().await
}

async fn list_then_stream_misses_nothing(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let trail = Trail::open(&server).await?;
    let record = |offset: i64, jti: String| {
        seed(
            &tenant,
            offset,
            AuditAction::TokenIssued,
            Outcome::Granted,
            "c1",
            &jti,
        )
    };
    for n in 0..5 {
        trail.record(record(n, format!("early-{n}"))?).await?;
    }
    let mut audit = audit_client(&server, &acme.admin).await?;
    let list = |order: EventOrder| ListEventsRequest {
        tenant: "acme".into(),
        filter: Some(seeded()),
        page_size: 2,
        order: order.into(),
        ..Default::default()
    };

    // First pages of two listings, then events recorded before any stream starts.
    let newest = audit
        .list_events(list(EventOrder::NewestFirst))
        .await?
        .into_inner();
    let oldest = audit
        .list_events(list(EventOrder::OldestFirst))
        .await?
        .into_inner();
    assert_eq!(jtis(&newest.events), names("early", &[4, 3]));
    assert_eq!(jtis(&oldest.events), names("early", &[0, 1]));
    assert_eq!(newest.stream_cursor, oldest.stream_cursor);
    for n in 0..3 {
        trail.record(record(10 + n, format!("late-{n}"))?).await?;
    }
    // The listings go on to their end, as of their first page: no late event.
    let rest = |first: &ListEventsResponse, order| ListEventsRequest {
        page_token: first.next_page_token.clone(),
        ..list(order)
    };
    let (newest_rest, newest_cursors) =
        pages(&mut audit, rest(&newest, EventOrder::NewestFirst)).await?;
    assert_eq!(jtis(&newest_rest.concat()), names("early", &[2, 1, 0]));
    let (oldest_rest, oldest_cursors) =
        pages(&mut audit, rest(&oldest, EventOrder::OldestFirst)).await?;
    assert_eq!(jtis(&oldest_rest.concat()), names("early", &[2, 3, 4]));
    assert!(
        newest_cursors
            .iter()
            .chain(&oldest_cursors)
            .all(|cursor| *cursor == newest.stream_cursor)
    );

    // A stream from the listing's cursor: exactly what came after it, then what comes next.
    let stream_from = |after: String| StreamEventsRequest {
        tenant: "acme".into(),
        filter: Some(seeded()),
        after,
    };
    let mut stream = audit
        .stream_events(stream_from(newest.stream_cursor.clone()))
        .await?
        .into_inner();
    let caught_up = receive(&mut stream, 3).await?;
    assert_eq!(jtis(&caught_up), names("late", &[0, 1, 2]));
    trail.record(record(13, "late-3".into())?).await?;
    assert_eq!(jtis(&receive(&mut stream, 1).await?), ["late-3"]);
    assert_quiet(&mut stream).await?;
    drop(stream);

    // Resuming after an event's cursor (a reconnect) continues right after it.
    let mut resumed = audit
        .stream_events(stream_from(caught_up[1].cursor.clone()))
        .await?
        .into_inner();
    assert_eq!(jtis(&receive(&mut resumed, 2).await?), ["late-2", "late-3"]);
    assert_quiet(&mut resumed).await?;

    let foreign = audit
        .stream_events(stream_from("seq.ten_someone-else.1".into()))
        .await;
    assert_eq!(
        failure(foreign),
        (
            Code::InvalidArgument,
            "after: is a cursor of another tenant's audit events".to_owned()
        )
    );

    // A graceful stop is not held up by an open stream: it ends with UNAVAILABLE, and the
    // client resumes elsewhere from its last cursor.
    trail.close().await?;
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.stop()).await;
    stopped.context("the server did not stop with a stream open")??;
    let ended = tokio::time::timeout(STREAM_WAIT, resumed.message())
        .await
        .context("the stream did not end")?;
    match ended {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(other) => bail!("the stream ended without UNAVAILABLE: {other:?}"),
    }
    Ok(())
}

async fn tampering_is_named_by_verify_chain(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let trail = Trail::open(&server).await?;
    for n in 0..6 {
        let event = seed(
            &tenant,
            n,
            AuditAction::TokenIssued,
            Outcome::Granted,
            "c1",
            &format!("t-{n}"),
        )?;
        trail.record(event).await?;
    }
    let mut audit = audit_client(&server, &acme.admin).await?;
    let verify = VerifyChainRequest {
        tenant: "acme".into(),
    };
    let intact = audit.verify_chain(verify.clone()).await?.into_inner();
    assert!(intact.ok, "{intact:?}");
    assert_eq!(intact.first_break, None);
    assert!(intact.records_checked >= 6, "{intact:?}");
    assert_eq!(intact.oldest_seq, Some(1));
    assert_eq!(intact.newest_seq, Some(intact.head_seq));
    let cli = tollgate(&server, &["audit", "verify", "--tenant", "acme"]).await?;
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        String::from_utf8_lossy(&cli.stdout)
            .starts_with("the audit chain of tenant acme verified: "),
        "{}",
        String::from_utf8_lossy(&cli.stdout)
    );

    let chain = listed(
        &mut audit,
        ListEventsRequest {
            tenant: "acme".into(),
            filter: Some(seeded()),
            order: EventOrder::OldestFirst.into(),
            ..Default::default()
        },
    )
    .await?;
    let edited_seq = chain[3].seq;
    // Someone with database access rewrites history: a record's client, and (later in the
    // chain) an action no event could have.
    let edited = trail
        .exec(&format!(
            "UPDATE audit_events SET client_id = 'mallory' WHERE tenant_id = '{}' AND seq = {edited_seq}",
            tenant.id
        ))
        .await?;
    assert_eq!(edited, 1);
    trail
        .exec(&format!(
            "UPDATE audit_events SET action = 'token_stolen' WHERE tenant_id = '{}' AND seq = {}",
            tenant.id, chain[5].seq
        ))
        .await?;

    let broken = audit.verify_chain(verify).await?.into_inner();
    assert!(!broken.ok);
    let first_break = broken.first_break.context("no break reported")?;
    assert_eq!(first_break.seq, edited_seq);
    assert_eq!(
        first_break.reason,
        "the hash does not match the record's content"
    );
    assert_eq!(broken.records_checked, edited_seq - 1);
    assert_eq!(broken.newest_seq, Some(edited_seq - 1));

    // The trail still reads, edits and all: reading is how the damage is inspected.
    let after_edit = listed(
        &mut audit,
        ListEventsRequest {
            tenant: "acme".into(),
            filter: Some(seeded()),
            order: EventOrder::OldestFirst.into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(after_edit[3].client_id.as_deref(), Some("mallory"));
    assert_eq!(after_edit[5].action, "token_stolen");

    let cli = tollgate(&server, &["audit", "verify", "--tenant", "acme"]).await?;
    assert_eq!(cli.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(
        stderr.contains(&format!(
            "the audit chain of tenant acme is broken at seq {edited_seq}: the hash does not match"
        )),
        "{stderr}"
    );
    let cli = tollgate(
        &server,
        &["--output", "json", "audit", "verify", "--tenant", "acme"],
    )
    .await?;
    assert_eq!(
        cli.status.code(),
        Some(1),
        "a broken chain fails in JSON too"
    );
    let printed: serde_json::Value = serde_json::from_slice(&cli.stdout)?;
    assert_eq!(printed["ok"], false);
    assert_eq!(printed["first_break"]["seq"], edited_seq.to_string());
    trail.close().await
}

async fn cli_lists_tails_exports_and_verifies(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let trail = Trail::open(&server).await?;
    let record = |offset: i64, jti: String| {
        seed(
            &tenant,
            offset,
            AuditAction::TokenIssued,
            Outcome::Granted,
            "c1",
            &jti,
        )
    };
    for n in 0..4 {
        trail.record(record(n, format!("cli-{n}"))?).await?;
    }
    let since = at_ms(BASE_MS).to_string();
    let until = at_ms(BASE_MS + 1_000_000).to_string();
    let window = ["--tenant", "acme", "--since", &since, "--until", &until];

    // list: newest first, --limit, then the rest with the page token it printed.
    let mut args = vec!["audit", "list", "--limit", "3"];
    args.extend(window);
    let first = json(&server, &args).await?;
    let jti_of = |event: &serde_json::Value| event["jti"].as_str().unwrap_or_default().to_owned();
    let first_events: Vec<String> = first["events"]
        .as_array()
        .context("events")?
        .iter()
        .map(jti_of)
        .collect();
    assert_eq!(first_events, names("cli", &[3, 2, 1]));
    let token = first["next_page_token"]
        .as_str()
        .context("next_page_token")?;
    let stream_cursor = first["stream_cursor"]
        .as_str()
        .context("stream_cursor")?
        .to_owned();
    let mut args = vec!["audit", "list", "--page-token", token];
    args.extend(window);
    let rest = json(&server, &args).await?;
    let rest_events: Vec<String> = rest["events"]
        .as_array()
        .context("events")?
        .iter()
        .map(jti_of)
        .collect();
    assert_eq!(rest_events, names("cli", &[0]));
    assert_eq!(rest["next_page_token"], "");
    // Text: one line per event, then the cursor.
    let mut args = vec!["audit", "list"];
    args.extend(window);
    let text = tollgate(&server, &args).await?;
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8(text.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with("2096-10-02T07:06:40.003Z acme seq=")
            && lines[0].contains(" token_issued granted actor=c1 client_id=c1 jti=cli-3"),
        "{text}"
    );
    assert_eq!(lines[4], format!("stream_cursor: {stream_cursor}"));

    // tail: from the listing's cursor, what is recorded next, one JSON object per line.
    let mut tail = tollgate_command(
        &server,
        &[
            "--output",
            "json",
            "audit",
            "tail",
            "--tenant",
            "acme",
            "--since",
            &since,
            "--after",
            &stream_cursor,
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true)
    .spawn()?;
    for n in 0..3 {
        trail.record(record(10 + n, format!("tail-{n}"))?).await?;
    }
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().context("stdout")?).lines();
    let deadline = Instant::now() + STREAM_WAIT;
    let mut tailed = Vec::new();
    while tailed.len() < 3 {
        let line = timeout_at(deadline, lines.next_line())
            .await
            .context("audit tail printed too little in time")??
            .context("audit tail ended")?;
        let event: serde_json::Value = serde_json::from_str(&line)?;
        tailed.push(jti_of(&event));
    }
    assert_eq!(tailed, names("tail", &[0, 1, 2]));
    tail.kill().await?;

    // export, then verify the file offline.
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let exported = tollgate(&server, &["audit", "export", "--tenant", "acme"]).await?;
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    std::fs::write(&path, &exported.stdout)?;
    let file = path.to_str().context("path")?;
    let lines: Vec<serde_json::Value> = String::from_utf8(exported.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        lines[0]["seq"], "1",
        "the export starts at the oldest record"
    );
    // The seeded events, among whatever else the server recorded for acme.
    let exported_jtis: Vec<String> = lines
        .iter()
        .map(jti_of)
        .filter(|jti| jti.starts_with("cli-") || jti.starts_with("tail-"))
        .collect();
    assert_eq!(
        exported_jtis,
        [
            "cli-0", "cli-1", "cli-2", "cli-3", "tail-0", "tail-1", "tail-2"
        ]
    );
    for field in [
        "prev_hash",
        "hash",
        "tenant_id",
        "time_ms",
        "version",
        "scopes_granted",
    ] {
        assert!(
            lines[0].get(field).is_some(),
            "{field} missing from {}",
            lines[0]
        );
    }
    let verified = tollgate(&server, &["audit", "verify", "--file", file]).await?;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(
        String::from_utf8(verified.stdout)?,
        format!(
            "the audit export {file} verified: {} records, seq 1..={}\n",
            lines.len(),
            lines.len()
        )
    );

    // --since: an unbroken piece of the chain from the first event at or after it, which
    // verifies on its own.
    let from_two = at_ms(BASE_MS + 2).to_string();
    let partial = tollgate(
        &server,
        &["audit", "export", "--tenant", "acme", "--since", &from_two],
    )
    .await?;
    assert!(
        partial.status.success(),
        "{}",
        String::from_utf8_lossy(&partial.stderr)
    );
    let partial_lines: Vec<serde_json::Value> = String::from_utf8(partial.stdout.clone())?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        partial_lines[0]["time_ms"]
            .as_str()
            .and_then(|ms| ms.parse::<i64>().ok())
            .is_some_and(|ms| ms >= BASE_MS + 2)
    );
    assert_eq!(partial_lines.last().map(jti_of).as_deref(), Some("tail-2"));
    let partial_path = directory.path().join("partial.jsonl");
    std::fs::write(&partial_path, &partial.stdout)?;
    let verified = tollgate(
        &server,
        &[
            "audit",
            "verify",
            "--file",
            partial_path.to_str().context("path")?,
        ],
    )
    .await?;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // One edited line: verification fails naming that record.
    let index = lines
        .iter()
        .position(|line| jti_of(line) == "cli-1")
        .context("cli-1 exported")?;
    let edited_seq = lines[index]["seq"].as_str().context("seq")?.to_owned();
    let mut edited = lines.clone();
    edited[index]["client_id"] = "mallory".into();
    let text: String = edited.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&path, text)?;
    let refused = tollgate(&server, &["audit", "verify", "--file", file]).await?;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "the audit export {file} is broken at seq {edited_seq}: the hash does not match"
        )),
        "{stderr}"
    );
    // A removed line breaks the chain at the next record.
    let mut shortened = lines.clone();
    shortened.remove(index);
    let text: String = shortened.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&path, text)?;
    let refused = tollgate(&server, &["audit", "verify", "--file", file]).await?;
    assert_eq!(refused.status.code(), Some(1));
    let next_seq = edited_seq.parse::<i64>()? + 1;
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(&format!("is broken at seq {next_seq}: records")),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    trail.close().await
}

/// The read side over what the server itself records: a tail sees a token request, granted
/// and refused, as it is answered.
async fn what_the_server_records_is_streamed(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let mut audit = audit_client(&server, &acme.admin).await?;
    let start = audit
        .list_events(ListEventsRequest {
            tenant: "acme".into(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .stream_cursor;
    let mut tail = audit
        .stream_events(StreamEventsRequest {
            tenant: "acme".into(),
            filter: Some(AuditFilter {
                client_id: acme.client_id.clone(),
                ..Default::default()
            }),
            after: start,
        })
        .await?
        .into_inner();

    let token = server
        .issue(
            "acme",
            &acme.client_id,
            &acme.client_secret,
            ARCHIVE,
            &["archive:read"],
        )
        .await?
        .access_token;
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let claims: serde_json::Value = serde_json::from_slice(&base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload,
    )?)?;
    let refused = server
        .issue("acme", &acme.client_id, "tgsec_wrong", ARCHIVE, &[])
        .await;
    assert_eq!(failure(refused).0, Code::Unauthenticated);

    let events = receive(&mut tail, 2).await?;
    let issued = &events[0];
    assert_eq!(
        (issued.action.as_str(), issued.result.as_str()),
        ("token_issued", "granted")
    );
    assert_eq!(issued.jti.as_deref(), claims["jti"].as_str());
    assert_eq!(issued.audience.as_deref(), Some(ARCHIVE));
    assert_eq!(issued.scopes_granted, ["archive:read"]);
    assert_eq!(issued.transport.as_deref(), Some("grpc"));
    let denied = &events[1];
    assert_eq!(
        (denied.action.as_str(), denied.result.as_str()),
        ("token_denied", "denied")
    );
    assert_eq!(denied.error_code.as_deref(), Some("invalid_client"));
    assert_eq!(denied.seq, issued.seq + 1);
    assert_eq!(denied.prev_hash, issued.hash);
    assert_quiet(&mut tail).await?;

    let verified = verified_chain(&mut audit).await?;
    assert_eq!(verified.newest_seq, Some(verified.head_seq));
    Ok(())
}

/// The largest message the audit service sends (README, "Audit trail"): the largest event
/// returned whole, 16 MiB, and 1 MiB to spare. Clients of large events must accept it.
const MAX_AUDIT_MESSAGE_BYTES: usize = 17 << 20;

/// Appends one record per `(offset, jti, scope count)` to `tenant`'s chain straight
/// through the store, as a server without bounds on recorded events could have written
/// them: each asks for `scope count` distinct scopes of 7 bytes (`s000000`, …), so 150,000
/// make a record of about 1.5 MB. Returns each record's `(seq, hash)`.
async fn append_sized(
    store: &Store,
    tenant: &Tenant,
    records: &[(i64, &str, usize)],
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut appended = Vec::new();
    let tenant_ids = [tenant.id.as_str()];
    store
        .append_audit_batch(&tenant_ids, |heads| {
            let (mut seq, mut prev_hash) = heads
                .get(&tenant.id)
                .map_or((0, GENESIS_HASH.to_owned()), |head| {
                    (head.seq, head.hash.clone())
                });
            let mut rows = Vec::with_capacity(records.len());
            for &(offset, jti, scopes) in records {
                seq += 1;
                let mut row = AuditRow {
                    tenant_id: tenant.id.clone(),
                    seq,
                    version: CHAIN_VERSION,
                    time_ms: BASE_MS + offset,
                    tenant_name: tenant.name.clone(),
                    action: "token_denied".to_owned(),
                    result: "denied".to_owned(),
                    error_code: Some("invalid_client".to_owned()),
                    client_id: Some("c1".to_owned()),
                    jti: Some(jti.to_owned()),
                    scopes_requested: (0..scopes).map(|n| format!("s{n:06}")).collect(),
                    count: 1,
                    prev_hash: prev_hash.clone(),
                    ..AuditRow::default()
                };
                row.hash = record_hash(&row).unwrap_or_default();
                prev_hash = row.hash.clone();
                appended.push((seq, row.hash.clone()));
                rows.push(row);
            }
            rows
        })
        .await?;
    Ok(appended)
}

/// Every page of a listing through `audit`, checking each against the byte bounds: a page
/// of more than one event encodes to at most [`MAX_PAGE_BYTES`], any page to at most
/// [`MAX_AUDIT_MESSAGE_BYTES`]. Returns the `jti`s of each page.
async fn bounded_pages(
    audit: &mut AuditClient,
    mut request: ListEventsRequest,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut pages = Vec::new();
    for _ in 0..100 {
        let page = audit.list_events(request.clone()).await?.into_inner();
        let bytes = page.encoded_len();
        assert!(
            bytes <= MAX_AUDIT_MESSAGE_BYTES,
            "a page of {bytes} bytes is over the message bound"
        );
        assert!(
            page.events.len() <= 1 || bytes as u64 <= MAX_PAGE_BYTES,
            "a page of {} events and {bytes} bytes is over the page bound",
            page.events.len()
        );
        pages.push(jtis(&page.events));
        if page.next_page_token.is_empty() {
            return Ok(pages);
        }
        request.page_token = page.next_page_token;
    }
    bail!("more than 100 pages")
}

/// A listing of acme's whole seeded window, oldest first, up to 500 events a page.
fn seeded_oldest_first() -> ListEventsRequest {
    ListEventsRequest {
        tenant: "acme".into(),
        filter: Some(seeded()),
        page_size: 500,
        order: EventOrder::OldestFirst.into(),
        ..Default::default()
    }
}

/// The first `count` seeded events of acme that a stream opened just before `tenant`'s record
/// `first_seq` delivers (the stream is closed after them).
async fn stream_seeded(
    audit: &mut AuditClient,
    tenant: &Tenant,
    first_seq: i64,
    count: usize,
) -> anyhow::Result<Vec<tollgate_proto::v1::AuditEvent>> {
    let mut stream = audit
        .stream_events(StreamEventsRequest {
            tenant: "acme".into(),
            filter: Some(seeded()),
            after: format!("seq.{}.{}", tenant.id, first_seq - 1),
        })
        .await?
        .into_inner();
    receive(&mut stream, count).await
}

/// `VerifyChain` of acme, asserted to have verified.
async fn verified_chain(
    audit: &mut AuditClient,
) -> anyhow::Result<tollgate_proto::v1::VerifyChainResponse> {
    let verified = audit
        .verify_chain(VerifyChainRequest {
            tenant: "acme".into(),
        })
        .await?
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    Ok(verified)
}

/// Writes an export to a file and runs `tollgate audit verify --file` on it; its output,
/// and the file's path as the command was given it.
async fn verify_offline(
    server: &TestServer,
    export: &[u8],
) -> anyhow::Result<(std::process::Output, String)> {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    std::fs::write(&path, export)?;
    let file = path.to_str().context("path")?.to_owned();
    let checked = tollgate(server, &["audit", "verify", "--file", &file]).await?;
    Ok((checked, file))
}

/// How many events each page held.
fn page_lengths(pages: &[Vec<String>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

/// A trail holding records of megabytes (as a flood of requests with huge scope lists left
/// before records were bounded) reads in pages bounded in bytes, each event exactly once,
/// in both orders and by a stream; `audit export` writes all of it (far more than one
/// gRPC message of 4 MiB) and exits 0, and the export verifies offline.
async fn large_events_are_read_in_bounded_pages(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let store = Store::connect(&server.joined.database_url).await?;
    // 60 events: small ones, and at 10, 20, 30, 40 records of about 1.5 MB, at 50 one of
    // about 5 MB (over tonic's default limit of 4 MiB on its own).
    let jti_names: Vec<String> = (0..60).map(|n| format!("big-{n}")).collect();
    let records: Vec<(i64, &str, usize)> = (0..60)
        .map(|n| {
            let scopes = match n {
                10 | 20 | 30 | 40 => 150_000,
                50 => 500_000,
                _ => 2,
            };
            (n as i64, jti_names[n].as_str(), scopes)
        })
        .collect();
    let appended = append_sized(&store, &tenant, &records).await?;
    assert_eq!(appended.len(), 60);

    let token = server.admin_token_for(&acme.admin).await?;
    let mut audit =
        AuditServiceClient::with_interceptor(server.channel(), BearerAuth::new(&token)?)
            .max_decoding_message_size(MAX_AUDIT_MESSAGE_BYTES);
    let request = seeded_oldest_first();
    // A page stops before the event that would take it past 1 MiB; a large event comes
    // alone; every event once, in order.
    let oldest_first = bounded_pages(&mut audit, request.clone()).await?;
    assert_eq!(
        page_lengths(&oldest_first),
        [10, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9]
    );
    assert_eq!(oldest_first.concat(), jti_names);
    let newest_first = bounded_pages(
        &mut audit,
        ListEventsRequest {
            order: EventOrder::NewestFirst.into(),
            ..request.clone()
        },
    )
    .await?;
    assert_eq!(
        page_lengths(&newest_first),
        [9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 10]
    );
    let mut reversed = jti_names.clone();
    reversed.reverse();
    assert_eq!(newest_first.concat(), reversed);
    // The large events come whole.
    let large = audit
        .list_events(ListEventsRequest {
            page_size: 1,
            after: format!("seq.{}.{}", tenant.id, appended[49].0),
            ..request.clone()
        })
        .await?
        .into_inner();
    assert_eq!(large.events.len(), 1);
    assert_eq!(large.events[0].scopes_requested.len(), 500_000);
    assert_eq!(large.events[0].elided_bytes, None);
    assert!(large.encoded_len() > 4 << 20, "{}", large.encoded_len());

    // A stream from before the first seeded event delivers them all, in order.
    let streamed = stream_seeded(&mut audit, &tenant, appended[0].0, 60).await?;
    assert_eq!(jtis(&streamed), jti_names);
    assert_eq!(streamed[50].scopes_requested.len(), 500_000);

    // The export: every record of the chain, in one piece, status 0, then verified.
    let exported = tollgate(&server, &["audit", "export", "--tenant", "acme"]).await?;
    let stderr = String::from_utf8_lossy(&exported.stderr).into_owned();
    assert!(exported.status.success(), "{stderr}");
    assert!(
        exported.stdout.len() > 10 << 20,
        "{} bytes exported",
        exported.stdout.len()
    );
    let verified = verified_chain(&mut audit).await?;
    let head = verified.head_seq;
    assert!(head >= 60, "{verified:?}");
    let text = String::from_utf8(exported.stdout)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let seqs: Vec<String> = lines
        .iter()
        .map(|line| line["seq"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (1..=head).map(|seq| seq.to_string()).collect();
    assert_eq!(seqs, expected, "every record once, oldest first");
    assert!(
        stderr.contains(&format!(
            "exported {head} audit events of tenant acme, seq 1..={head}"
        )),
        "{stderr}"
    );
    let (checked, file) = verify_offline(&server, text.as_bytes()).await?;
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(
        String::from_utf8(checked.stdout)?,
        format!("the audit export {file} verified: {head} records, seq 1..={head}\n")
    );
    Ok(())
}

/// A stored record too large to send whole (over 16 MiB, which no request could have
/// caused) is listed, streamed and exported elided, on a page of its own, within the
/// default 4 MiB a gRPC client accepts; its chain position and hashes are exact, offline
/// verification stops at it by name, and the server's verification reads it whole.
async fn an_event_too_large_to_send_is_elided(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let tenant = Tenant::of(&acme, "acme");
    let store = Store::connect(&server.joined.database_url).await?;
    // 2,500,000 scopes of 7 bytes: 25 MB stored.
    let appended = append_sized(
        &store,
        &tenant,
        &[(0, "huge-0", 2), (1, "huge-1", 2_500_000), (2, "huge-2", 2)],
    )
    .await?;
    let (huge_seq, huge_hash) = appended[1].clone();

    // tonic's default decoding limit (4 MiB): enough, since the large event is elided.
    let mut audit = audit_client(&server, &acme.admin).await?;
    let request = seeded_oldest_first();
    let pages = bounded_pages(&mut audit, request.clone()).await?;
    assert_eq!(pages, [["huge-0"], ["huge-1"], ["huge-2"]]);
    let events = listed(&mut audit, request).await?;
    let huge = &events[1];
    let elided = huge.elided_bytes.context("the large event is not elided")?;
    assert!(elided as u64 > MAX_EVENT_BYTES, "{elided}");
    assert_eq!(
        (huge.seq, huge.hash.as_str(), huge.prev_hash.as_str()),
        (huge_seq, huge_hash.as_str(), appended[0].1.as_str())
    );
    assert_eq!(huge.jti.as_deref(), Some("huge-1"));
    assert!(huge.scopes_requested.is_empty());
    assert_eq!(events[0].elided_bytes, None);
    assert_eq!(events[2].prev_hash, huge_hash);

    // A stream sends it elided too.
    let streamed = stream_seeded(&mut audit, &tenant, appended[0].0, 3).await?;
    assert_eq!(jtis(&streamed), ["huge-0", "huge-1", "huge-2"]);
    assert_eq!(streamed[1].elided_bytes, Some(elided));

    // The server reads it whole: the chain verifies.
    let verified = verified_chain(&mut audit).await?;

    // The export completes, saying which record it elided; offline verification names it.
    let exported = tollgate(&server, &["audit", "export", "--tenant", "acme"]).await?;
    let stderr = String::from_utf8_lossy(&exported.stderr).into_owned();
    assert!(exported.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: seq {huge_seq} is too large to be sent whole ({elided} bytes stored)"
        )),
        "{stderr}"
    );
    let head = verified.head_seq;
    assert_eq!(
        String::from_utf8(exported.stdout.clone())?.lines().count() as i64,
        head
    );
    let (checked, _) = verify_offline(&server, &exported.stdout).await?;
    assert_eq!(checked.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        stderr.contains(&format!(
            "is broken at seq {huge_seq}: the record was exported elided ({elided} bytes \
             stored, too large to be sent whole)"
        )),
        "{stderr}"
    );
    Ok(())
}

/// The size the store counts for an event (`AUDIT_ROW_OVERHEAD` plus the bytes of its
/// stored texts, lists as JSON), as its SQL does.
fn stored_size(event: &RecordedEvent) -> usize {
    let json = |list: &[String]| serde_json::Value::from(list.to_vec()).to_string().len();
    let texts = [
        &event.tenant_id,
        &event.tenant_name,
        &event.action,
        &event.result,
    ]
    .into_iter()
    .chain([&event.prev_hash, &event.hash])
    .map(String::len)
    .sum::<usize>();
    let optional = [
        &event.error_code,
        &event.actor,
        &event.client_id,
        &event.secret_id,
        &event.audience,
        &event.jti,
        &event.source,
        &event.transport,
        &event.trace_id,
        &event.resource,
    ]
    .into_iter()
    .flatten()
    .map(String::len)
    .sum::<usize>();
    tollgate_store::AUDIT_ROW_OVERHEAD as usize
        + texts
        + optional
        + json(&event.scopes_requested)
        + json(&event.scopes_granted)
        + json(&event.changed_fields)
}

/// What the read side bounds by stored size ([`MAX_PAGE_BYTES`], [`MAX_EVENT_BYTES`]) is
/// no larger on the wire, so a page that fits the store's count fits the message limit.
#[test]
fn the_stored_size_bounds_the_size_on_the_wire() {
    let full = || RecordedEvent {
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
    };
    let many = |count: usize, item: &str| vec![item.to_owned(); count];
    let events = [
        full(),
        RecordedEvent::default(),
        // Lists of short items cost more on the wire per item than long ones.
        RecordedEvent {
            scopes_requested: many(100_000, "a"),
            scopes_granted: many(1_000, ""),
            changed_fields: many(1_000, "x"),
            ..full()
        },
        // An item of megabytes: its length takes 4 bytes on the wire, 2 quotes in JSON.
        RecordedEvent {
            scopes_requested: many(2, &"s".repeat(3 << 20)),
            ..full()
        },
        RecordedEvent {
            actor: Some("é".repeat(10_000)),
            resource: Some("\u{1}\"".repeat(100)),
            scopes_requested: many(100, "ü"),
            ..full()
        },
        RecordedEvent {
            id: i64::MIN,
            seq: i64::MIN,
            time_ms: i64::MIN,
            count: i64::MIN,
            version: i32::MIN,
            ..full()
        },
    ];
    for event in events {
        let stored = stored_size(&event);
        let page = ListEventsResponse {
            events: vec![
                AuditEntry {
                    event,
                    cursor: format!("seq.ten_{}.{}", "x".repeat(32), i64::MAX),
                    elided_bytes: Some(u64::MAX),
                }
                .into(),
            ],
            next_page_token: String::new(),
            stream_cursor: String::new(),
        };
        // The event with its framing in a page.
        let on_the_wire = page.encoded_len();
        assert!(on_the_wire <= stored, "{on_the_wire} > {stored}");
    }
}
