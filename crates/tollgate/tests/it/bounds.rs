//! What unauthenticated token traffic may cost the audit trail: requests over the documented
//! limits are refused at the edge and leave no record; floods of made-up client ids or
//! tenant names cost a handful of aggregated records whose counts add up to every request;
//! a request naming many scopes is recorded with a few of them and their number. Each chain
//! still verifies afterwards.
//!
//! The records are read straight from the database the server writes, as in `trail.rs`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tollgate_audit::{MAX_RECORDED_REQUESTED_SCOPES, verify_tenant};
use tollgate_domain::{Clock, TokenRequest};
use tollgate_proto::v1::{GetTenantRequest, IssueTokenRequest};
use tollgate_store::{AuditRow, Store};
use tollgate_testkit::{Backend, TestOptions, TestServer};

use crate::fixtures::{ARCHIVE, Fixture, audit_records, encode_form, post_token_form, reason};

crate::backend_tests!(
    requests_over_a_limit_are_refused_and_leave_no_record,
    random_client_ids_cost_a_few_aggregated_records,
    random_tenant_names_cost_the_system_chain_a_few_records,
    many_scopes_are_recorded_as_a_few_and_their_number,
);

/// Refusals still pending at shutdown are recorded before the server exits: on SQLite in a
/// database file that outlives the server, and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_pending_at_shutdown_are_recorded_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tollgate.db").display()
    );
    refusals_pending_at_shutdown_are_recorded(TestOptions {
        backend: Backend::Sqlite,
        database_url: Some(url),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_pending_at_shutdown_are_recorded_postgres() -> anyhow::Result<()> {
    let Some(base) = tollgate_testkit::postgres_url_or_skip(concat!(
        module_path!(),
        "::refusals_pending_at_shutdown_are_recorded_postgres"
    )) else {
        return Ok(());
    };
    let url = tollgate_store::testing::fresh_postgres_database(&base).await?;
    refusals_pending_at_shutdown_are_recorded(TestOptions {
        backend: Backend::Postgres,
        database_url: Some(url),
        ..Default::default()
    })
    .await
}

async fn refusals_pending_at_shutdown_are_recorded(options: TestOptions) -> anyhow::Result<()> {
    let server = TestServer::start_with(options).await?;
    let fixture = Fixture::new(&server, "acme").await?;
    let database_url = server.joined.database_url.clone();
    let since = server.clock.now_ms();
    let refused = 200;
    for n in 0..refused {
        let status = server
            .issue("acme", &format!("gone-{n}"), "tgsec_x", ARCHIVE, &[])
            .await
            .err()
            .context("a made-up client was granted a token")?;
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        );
    }
    // At once: most of these are still waiting for the next one-second flush.
    tokio::time::timeout(Duration::from_secs(20), server.stop()).await??;
    let store = Store::connect(&database_url).await?;
    let rows = refusals_since(&store, &fixture.tenant_id, since).await?;
    let counted: i64 = rows.iter().map(|row| row.count).sum();
    assert_eq!(counted, refused, "{rows:?}");
    assert!(rows.len() <= 6, "{} records", rows.len());
    assert_chain_verifies(&store, &fixture.tenant_id).await
}

/// Requests of each flood.
const FLOOD: usize = 2_000;
/// Requests in flight at once during a flood.
const CONCURRENCY: usize = 16;

/// The refusals of token requests (denied or rate limited) recorded at or after `since_ms`.
async fn refusals_since(
    store: &Store,
    tenant_id: &str,
    since_ms: i64,
) -> anyhow::Result<Vec<AuditRow>> {
    Ok(audit_records(store, tenant_id)
        .await?
        .into_iter()
        .filter(|row| {
            row.time_ms >= since_ms
                && matches!(row.action.as_str(), "token_denied" | "rate_limited")
        })
        .collect())
}

/// Waits (up to 15 s) until the refusals recorded since `since_ms` count `expected`
/// requests, and returns them.
async fn wait_for_count(
    store: &Store,
    tenant_id: &str,
    since_ms: i64,
    expected: i64,
) -> anyhow::Result<Vec<AuditRow>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = refusals_since(store, tenant_id, since_ms).await?;
        let counted: i64 = rows.iter().map(|row| row.count).sum();
        if counted == expected {
            return Ok(rows);
        }
        if counted > expected || Instant::now() > deadline {
            bail!(
                "{counted} of {expected} refusals recorded in {} records",
                rows.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn system_tenant_id(server: &TestServer) -> anyhow::Result<String> {
    Ok(server
        .system_admin()
        .await?
        .tenants
        .get_tenant(GetTenantRequest {
            name: "system".to_owned(),
        })
        .await?
        .into_inner()
        .id)
}

async fn assert_chain_verifies(store: &Store, tenant_id: &str) -> anyhow::Result<()> {
    let report = verify_tenant(
        store,
        &tollgate_domain::TenantId::new(tenant_id),
        500,
        u64::MAX,
    )
    .await?;
    assert_eq!(report.outcome, Ok(()), "chain of {tenant_id}");
    assert_eq!(
        report.checked,
        audit_records(store, tenant_id).await?.len() as u64,
        "chain of {tenant_id}"
    );
    Ok(())
}

/// An HTTP case: name, Basic credentials, form parameters besides `grant_type`, status,
/// `error` and `error_description`.
type HttpCase<'a> = (
    &'a str,
    (&'a str, &'a str),
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
    String,
);

/// `n` distinct scope tokens, `x:0`, `x:1`, …
fn many_scopes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("x:{i}")).collect()
}

async fn requests_over_a_limit_are_refused_and_leave_no_record(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let store = Store::connect(&server.joined.database_url).await?;
    let system_id = system_tenant_id(&server).await?;
    let before = (
        audit_records(&store, &fixture.tenant_id).await?.len(),
        audit_records(&store, &system_id).await?.len(),
    );
    let id = fixture.client_id.as_str();
    let secret = fixture.client_secret.as_str();

    // HTTP: (case, credentials, form, status, error, description).
    let over_scopes = many_scopes(TokenRequest::MAX_SCOPES + 1).join(" ");
    // As many scopes as fit under the 16 KiB body limit (`s0` … `s1999`, 12 KB encoded).
    let flood_scopes: String = (0..2_000).map(|i| format!("s{i} ")).collect();
    let long_scope = format!("archive:read {}", "s".repeat(129));
    let long_audience = format!("https://{}/", "a".repeat(247));
    let long_client = "c".repeat(129);
    let cases: Vec<HttpCase> = vec![
        (
            "65 scopes",
            (id, secret),
            vec![("scope", &over_scopes)],
            400,
            "invalid_scope",
            "scope: at most 64 scopes may be requested".to_owned(),
        ),
        (
            "2,000 scopes in 12 KiB",
            (id, "tgsec_wrong"),
            vec![("scope", &flood_scopes)],
            400,
            "invalid_scope",
            "scope: at most 64 scopes may be requested".to_owned(),
        ),
        (
            "a scope of 129 bytes",
            (id, secret),
            vec![("scope", &long_scope)],
            400,
            "invalid_scope",
            "scope: must be at most 128 characters".to_owned(),
        ),
        (
            "a client id of 129 bytes",
            (&long_client, secret),
            vec![],
            400,
            "invalid_request",
            "client_id must be at most 128 characters".to_owned(),
        ),
        (
            "an audience of 256 bytes",
            (id, secret),
            vec![("audience", &long_audience)],
            400,
            "invalid_request",
            "audience: must be at most 255 characters".to_owned(),
        ),
        (
            "a resource of 256 bytes",
            (id, secret),
            vec![("resource", &long_audience)],
            400,
            "invalid_request",
            "resource: must be at most 255 characters".to_owned(),
        ),
    ];
    assert_eq!(long_audience.len(), 256);
    for (name, credentials, extra, status, error, description) in cases {
        let mut form = vec![("grant_type", "client_credentials")];
        if !extra
            .iter()
            .any(|(key, _)| *key == "audience" || *key == "resource")
        {
            form.push(("audience", ARCHIVE));
        }
        form.extend(extra);
        assert!(
            encode_form(&form).len() < 16 * 1024,
            "{name}: body under the limit"
        );
        let response = post_token_form(&server, "acme", Some(credentials), &form).await?;
        assert_eq!(response.status(), status, "{name}");
        let body: serde_json::Value = response.json().await?;
        assert_eq!(
            body,
            serde_json::json!({"error": error, "error_description": description}),
            "{name}"
        );
    }

    // gRPC: the same limits, INVALID_ARGUMENT naming the field.
    let request =
        |tenant: &str, client_id: &str, audience: &str, scopes: Vec<String>| IssueTokenRequest {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
            audience: audience.to_owned(),
            scopes,
        };
    let long_tenant = "t".repeat(64);
    let grpc_cases = [
        (
            request(
                "acme",
                id,
                ARCHIVE,
                many_scopes(TokenRequest::MAX_SCOPES + 1),
            ),
            "scopes: at most 64 scopes may be requested",
        ),
        (
            request("acme", id, ARCHIVE, vec!["s".repeat(129)]),
            "scopes: must be at most 128 characters",
        ),
        (
            request("acme", &long_client, ARCHIVE, Vec::new()),
            "client_id: must be at most 128 characters",
        ),
        (
            request("acme", id, &long_audience, Vec::new()),
            "audience: must be at most 255 characters",
        ),
        (
            request(&long_tenant, id, ARCHIVE, Vec::new()),
            "tenant: must be at most 63 characters",
        ),
    ];
    for (request, message) in grpc_cases {
        let status = server
            .tokens()
            .issue_token(request)
            .await
            .err()
            .context(message)?;
        assert_eq!(
            (reason(&status), status.message()),
            (
                (tonic::Code::InvalidArgument, "invalid_request".to_owned()),
                message
            )
        );
    }
    // At the limit, the request reaches the issuer (and is refused there: scopes not held).
    let status = server
        .tokens()
        .issue_token(request(
            "acme",
            id,
            ARCHIVE,
            many_scopes(TokenRequest::MAX_SCOPES),
        ))
        .await
        .err()
        .context("64 unheld scopes granted")?;
    assert_eq!(
        reason(&status),
        (tonic::Code::PermissionDenied, "invalid_scope".to_owned())
    );

    // Past a flush, the refusals at the edge have left no record; the one that reached the
    // issuer has left one. A flush records every second before the server's current one at
    // once: move the server a second on, wait for the issuer's record, then a few more
    // flushes (any record of the edge's refusals would have come with it).
    server.clock.advance(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_records(&store, &fixture.tenant_id).await?.len() <= before.0 {
        if Instant::now() > deadline {
            bail!("the refusal that reached the issuer was not recorded within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(3 * tollgate_testkit::DENIAL_FLUSH).await;
    let after = (
        audit_records(&store, &fixture.tenant_id).await?.len(),
        audit_records(&store, &system_id).await?.len(),
    );
    assert_eq!(after, (before.0 + 1, before.1));
    assert_chain_verifies(&store, &fixture.tenant_id).await
}

/// Sends `FLOOD` refused token requests, half over HTTP and half over gRPC, from
/// `CONCURRENCY` tasks; `target(n)` names the tenant and the client id of request `n`.
/// Returns how long it took. Every answer must be `invalid_client` or a rate limit.
async fn flood(
    server: &TestServer,
    target: impl Fn(usize) -> (String, String) + Send + Sync + Clone + 'static,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (http, target) = (http.clone(), target.clone());
        let (http_url, mut tokens) = (server.http_url.clone(), server.tokens());
        tasks.spawn(async move {
            for n in (worker..FLOOD).step_by(CONCURRENCY) {
                let (tenant, client_id) = target(n);
                let outcome = if n % 2 == 0 {
                    let response = http
                        .post(format!("{http_url}/t/{tenant}/oauth/token"))
                        .basic_auth(&client_id, Some("tgsec_notasecret"))
                        .form(&[("grant_type", "client_credentials"), ("audience", ARCHIVE)])
                        .send()
                        .await?;
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await?;
                    format!("{status} {}", body["error"].as_str().unwrap_or_default())
                } else {
                    let status = tokens
                        .issue_token(IssueTokenRequest {
                            tenant,
                            client_id,
                            client_secret: "tgsec_notasecret".to_owned(),
                            audience: ARCHIVE.to_owned(),
                            scopes: Vec::new(),
                        })
                        .await
                        .err()
                        .context("a made-up client was granted a token")?;
                    format!("{:?} {}", status.code(), reason(&status).1)
                };
                match outcome.as_str() {
                    "401 invalid_client"
                    | "429 temporarily_unavailable"
                    | "Unauthenticated invalid_client"
                    | "ResourceExhausted resource_exhausted" => {}
                    other => bail!("request {n}: unexpected answer {other}"),
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(started.elapsed())
}

/// Checks a flood's records: a handful (at most one per action and second, and one second of
/// slack at each end), all from the one source address.
fn check_flood_records(rows: &[AuditRow], elapsed: Duration) {
    let seconds = elapsed.as_secs() as usize + 2;
    assert!(
        rows.len() <= 2 * seconds,
        "{} records for {FLOOD} refusals in {elapsed:?}",
        rows.len()
    );
    for row in rows {
        assert_eq!(row.result, "denied");
        assert_eq!(row.source.as_deref(), Some("127.0.0.1"), "{row:?}");
        match row.action.as_str() {
            "token_denied" => assert_eq!(row.error_code.as_deref(), Some("invalid_client")),
            _ => assert_eq!(row.error_code.as_deref(), Some("resource_exhausted")),
        }
    }
}

async fn random_client_ids_cost_a_few_aggregated_records(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let store = Store::connect(&server.joined.database_url).await?;
    let since = server.clock.now_ms();
    let nonce = since % 1_000_000;
    let elapsed = flood(&server, move |n| {
        ("acme".to_owned(), format!("rnd-{nonce}-{n}"))
    })
    .await?;
    // The flush records seconds the server's clock has left behind: leave this one.
    server.clock.advance(Duration::from_secs(1));
    let rows = wait_for_count(&store, &fixture.tenant_id, since, FLOOD as i64).await?;
    check_flood_records(&rows, elapsed);
    for row in rows.iter().filter(|row| row.count > 1) {
        // Made-up client ids do not survive aggregation.
        assert_eq!((&row.client_id, &row.actor), (&None, &None), "{row:?}");
    }
    println!(
        "{FLOOD} random client ids in {elapsed:?}: {} records, counts {:?}",
        rows.len(),
        rows.iter()
            .map(|row| (row.action.as_str(), row.count))
            .collect::<Vec<_>>()
    );
    assert_chain_verifies(&store, &fixture.tenant_id).await
}

async fn random_tenant_names_cost_the_system_chain_a_few_records(
    server: TestServer,
) -> anyhow::Result<()> {
    let store = Store::connect(&server.joined.database_url).await?;
    let system_id = system_tenant_id(&server).await?;
    let since = server.clock.now_ms();
    let nonce = since % 1_000_000;
    let elapsed = flood(&server, move |n| {
        (format!("rnd-{nonce}-{n}"), "probe".to_owned())
    })
    .await?;
    // The flush records seconds the server's clock has left behind: leave this one.
    server.clock.advance(Duration::from_secs(1));
    let rows = wait_for_count(&store, &system_id, since, FLOOD as i64).await?;
    check_flood_records(&rows, elapsed);
    for row in rows.iter().filter(|row| row.count > 1) {
        // Many names: none kept (a lone one would keep `tenant/<name>`).
        assert_eq!(row.resource, None, "{row:?}");
    }
    println!(
        "{FLOOD} random tenant names in {elapsed:?}: {} records in the system chain",
        rows.len()
    );
    assert_chain_verifies(&store, &system_id).await
}

async fn many_scopes_are_recorded_as_a_few_and_their_number(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let store = Store::connect(&server.joined.database_url).await?;
    let since = server.clock.now_ms();
    // 64 scopes, the most a request may name; the app holds two of them.
    let mut scopes = many_scopes(TokenRequest::MAX_SCOPES - 2);
    scopes.extend(["archive:read".to_owned(), "archive:write".to_owned()]);
    let scope_parameter = scopes.join(" ");
    let omitted = format!(
        "+{} more",
        TokenRequest::MAX_SCOPES - MAX_RECORDED_REQUESTED_SCOPES
    );
    // Sorted, as the request's scope set is.
    let mut sorted = scopes.clone();
    sorted.sort();
    let mut listed: Vec<String> = sorted[..MAX_RECORDED_REQUESTED_SCOPES].to_vec();
    listed.push(omitted);

    // An authenticated client asking for scopes it does not hold, over HTTP and gRPC:
    // recorded one by one, before the answer.
    let response = post_token_form(
        &server,
        "acme",
        Some((&fixture.client_id, &fixture.client_secret)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", &scope_parameter),
        ],
    )
    .await?;
    assert_eq!(response.status(), 400);
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let status = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &scope_refs,
        )
        .await
        .err()
        .context("unheld scopes granted")?;
    assert_eq!(reason(&status).1, "invalid_scope");
    let denied: Vec<AuditRow> = refusals_since(&store, &fixture.tenant_id, since)
        .await?
        .into_iter()
        .filter(|row| row.error_code.as_deref() == Some("invalid_scope"))
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    for row in &denied {
        assert_eq!(row.scopes_requested, listed);
        assert_eq!(row.count, 1);
    }

    // A wrong secret with as many scopes: aggregated (alone, so with its details), bounded
    // the same way.
    let response = post_token_form(
        &server,
        "acme",
        Some((&fixture.client_id, "tgsec_wrong")),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", &scope_parameter),
        ],
    )
    .await?;
    assert_eq!(response.status(), 401);
    // The flush records seconds the server's clock has left behind: leave this one.
    server.clock.advance(Duration::from_secs(1));
    let rows = wait_for_count(&store, &fixture.tenant_id, since, 3).await?;
    let invalid_client: Vec<&AuditRow> = rows
        .iter()
        .filter(|row| row.error_code.as_deref() == Some("invalid_client"))
        .collect();
    assert_eq!(invalid_client.len(), 1);
    assert_eq!(invalid_client[0].scopes_requested, listed);
    assert_eq!(
        invalid_client[0].client_id.as_deref(),
        Some(fixture.client_id.as_str())
    );
    assert_chain_verifies(&store, &fixture.tenant_id).await
}
