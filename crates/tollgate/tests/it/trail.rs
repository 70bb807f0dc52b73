//! The audit trail as it is written: every token request and every change of a scripted run
//! recorded exactly once with the right fields, no secret anywhere in the store or the
//! logs, rate-limit refusals aggregated, nothing issued or changed while the trail cannot be
//! written, and one verifiable chain per tenant from several instances.
//!
//! The records are read straight from the database the server writes, as an auditor with
//! database access would; the query API over them is tested in `audit.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tollgate_audit::verify_tenant;
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::{
    CreateAppRequest, IssueTokenRequest, RotateSecretRequest, RotateSigningKeyRequest,
    UpdateAppRequest,
};
use tollgate_store::{AuditRow, Store};
use tollgate_testkit::{BearerAuth, TestOptions, TestServer};
use tollgate_verify::unverified_claim;

use crate::fixtures::{
    ARCHIVE, FailingTrail, Fixture, audit_records, grant, post_token_form, reason, wait_for_record,
};

crate::backend_tests!(
    scripted_run_records_each_request_and_change_once,
    rate_limit_refusals_are_aggregated_per_client_and_second,
    unwritable_trail_issues_nothing_and_changes_nothing,
);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The tenant's records of token requests (not of management changes), oldest first.
async fn token_records(store: &Store, tenant_id: &str) -> anyhow::Result<Vec<AuditRow>> {
    Ok(audit_records(store, tenant_id)
        .await?
        .into_iter()
        .filter(|row| {
            matches!(
                row.action.as_str(),
                "token_issued" | "token_denied" | "rate_limited" | "token_revoked"
            )
        })
        .collect())
}

/// A compact, comparable view of a token request's record.
fn summary(
    row: &AuditRow,
) -> (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    (
        row.action.clone(),
        row.result.clone(),
        row.error_code.clone(),
        row.transport.clone(),
        row.audience.clone(),
    )
}

/// A change's action, actor, resource and changed fields.
type ChangeSummary = (String, Option<String>, Option<String>, Vec<String>);

fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

async fn scripted_run_records_each_request_and_change_once(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin_subject = format!("{}@client", fixture.admin.client_id);
    let client = reqwest::Client::new();

    // 1. Granted over HTTP, with a trace context and one scope.
    let response = client
        .post(format!("{}/t/acme/oauth/token", server.http_url))
        .header("traceparent", TRACEPARENT)
        .basic_auth(&fixture.client_id, Some(&fixture.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", "archive:read"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await?;
    let http_token = body["access_token"]
        .as_str()
        .context("no token")?
        .to_owned();

    // 2. Granted over gRPC, every scope held, with a trace context in the metadata.
    let mut request = tonic::Request::new(fixture.archive_request());
    request
        .metadata_mut()
        .insert("traceparent", TRACEPARENT.parse()?);
    let grpc_token = server
        .tokens()
        .issue_token(request)
        .await?
        .into_inner()
        .access_token;

    // 3. Wrong secret over HTTP. Recorded in aggregate by the next flush (as every failed
    // authentication is, known client or not): wait for it, so that the records of this
    // script stay in the order of its steps.
    let wrong = post_token_form(
        &server,
        "acme",
        Some((
            &fixture.client_id,
            "tgsec_wrongwrongwrongwrongwrongwrongwrongwrongw",
        )),
        &[("grant_type", "client_credentials"), ("audience", ARCHIVE)],
    )
    .await?;
    assert_eq!(wrong.status(), 401);
    let store = Store::connect(&server.joined.database_url).await?;
    // A flush takes the seconds the server's clock has left: move it out of this one.
    server.clock.advance(Duration::from_secs(1));
    let denied = wait_for_record(&store, &fixture.tenant_id, |row| {
        row.error_code.as_deref() == Some("invalid_client")
            && row.client_id.as_deref() == Some(fixture.client_id.as_str())
    })
    .await?;
    assert_eq!(denied.count, 1);

    // 4. Unknown audience over gRPC.
    let status = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            "https://nowhere.example.com/",
            &[],
        )
        .await
        .err()
        .context("unknown audience granted")?;
    assert_eq!(reason(&status).1, "invalid_target");

    // 5. A scope not held, over HTTP.
    let response = post_token_form(
        &server,
        "acme",
        Some((&fixture.client_id, &fixture.client_secret)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", "archive:admin"),
        ],
    )
    .await?;
    assert_eq!(response.status(), 400);

    // 6. An unknown tenant: recorded in the system tenant's trail.
    let response = post_token_form(
        &server,
        "nosuch",
        Some((&fixture.client_id, &fixture.client_secret)),
        &[("grant_type", "client_credentials"), ("audience", ARCHIVE)],
    )
    .await?;
    assert_eq!(response.status(), 401);

    // 7. The app revokes its own HTTP token (RFC 7009).
    let response = client
        .post(format!("{}/t/acme/oauth/revoke", server.http_url))
        .basic_auth(&fixture.client_id, Some(&fixture.client_secret))
        .form(&[("token", http_token.as_str())])
        .send()
        .await?;
    assert_eq!(response.status(), 200);

    // Management: narrow the rate limit, rotate the secret, block, rotate the keys.
    fixture
        .admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            rate_limit_per_second: Some(50),
            ..Default::default()
        })
        .await?;
    let rotated = fixture
        .admin_clients
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            overlap_seconds: Some(60),
        })
        .await?
        .into_inner();
    fixture
        .admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            blocked: Some(true),
            ..Default::default()
        })
        .await?;
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    KeyServiceClient::with_interceptor(server.channel(), BearerAuth::new(&admin_token)?)
        .rotate_signing_key(RotateSigningKeyRequest {
            tenant: "acme".to_owned(),
            propagation_delay_seconds: Some(0),
        })
        .await?;

    let tokens = token_records(&store, &fixture.tenant_id).await?;
    // The fixture's own admin token requests are the tenant's too; leave them out.
    let tokens: Vec<&AuditRow> = tokens
        .iter()
        .filter(|row| row.client_id.as_deref() == Some(fixture.client_id.as_str()))
        .collect();
    let expected = [
        ("token_issued", "granted", None, "http", ARCHIVE),
        ("token_issued", "granted", None, "grpc", ARCHIVE),
        (
            "token_denied",
            "denied",
            s("invalid_client"),
            "http",
            ARCHIVE,
        ),
        (
            "token_denied",
            "denied",
            s("invalid_target"),
            "grpc",
            "https://nowhere.example.com/",
        ),
        (
            "token_denied",
            "denied",
            s("invalid_scope"),
            "http",
            ARCHIVE,
        ),
        ("token_revoked", "ok", None, "http", ARCHIVE),
    ]
    .map(|(action, result, error, transport, audience)| {
        (
            action.to_owned(),
            result.to_owned(),
            error,
            s(transport),
            s(audience),
        )
    });
    let got: Vec<_> = tokens.iter().map(|row| summary(row)).collect();
    assert_eq!(got, expected);

    let http_jti = unverified_claim(&http_token, "jti").context("no jti")?;
    let grpc_jti = unverified_claim(&grpc_token, "jti").context("no jti")?;
    let sid = unverified_claim(&http_token, "sid").context("no sid")?;
    let (issued_http, issued_grpc) = (tokens[0], tokens[1]);
    assert_eq!(issued_http.jti, Some(http_jti.clone()));
    assert_eq!(issued_http.secret_id, Some(sid.clone()));
    assert_eq!(issued_http.actor, Some(fixture.client_id.clone()));
    assert_eq!(issued_http.scopes_requested, strings(&["archive:read"]));
    assert_eq!(issued_http.scopes_granted, strings(&["archive:read"]));
    assert_eq!(issued_http.trace_id.as_deref(), Some(TRACE_ID));
    assert_eq!(issued_http.source.as_deref(), Some("127.0.0.1"));
    assert_eq!(issued_grpc.jti, Some(grpc_jti));
    assert!(issued_grpc.scopes_requested.is_empty());
    assert_eq!(
        issued_grpc.scopes_granted,
        strings(&["archive:read", "archive:write"])
    );
    assert_eq!(issued_grpc.trace_id.as_deref(), Some(TRACE_ID));
    assert_eq!(issued_grpc.source.as_deref(), Some("127.0.0.1"));
    // A refusal before authentication succeeded names no secret; one after does.
    assert_eq!(tokens[2].secret_id, None);
    assert_eq!(tokens[2].trace_id, None);
    assert_eq!(tokens[4].secret_id, Some(sid.clone()));
    assert_eq!(tokens[4].scopes_requested, strings(&["archive:admin"]));
    assert!(tokens[4].scopes_granted.is_empty());
    assert_eq!(tokens[5].jti, Some(http_jti));

    // The request for a tenant that does not exist, in the system tenant's trail.
    let system = server.system_admin().await?;
    let system_id = system
        .tenants
        .clone()
        .get_tenant(tollgate_proto::v1::GetTenantRequest {
            name: "system".to_owned(),
        })
        .await?
        .into_inner()
        .id;
    // Recorded by a flush once the server's clock has left the refusal's second.
    server.clock.advance(Duration::from_secs(1));
    wait_for_record(&store, &system_id, |row| {
        row.resource.as_deref() == Some("tenant/nosuch")
    })
    .await?;
    let unknown: Vec<AuditRow> = audit_records(&store, &system_id)
        .await?
        .into_iter()
        .filter(|row| row.resource.as_deref() == Some("tenant/nosuch"))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    // Alone in its second and from its address, the refusal keeps its details.
    assert_eq!(unknown[0].count, 1);
    assert_eq!(
        unknown[0].client_id.as_deref(),
        Some(fixture.client_id.as_str())
    );
    assert_eq!(unknown[0].action, "token_denied");
    assert_eq!(unknown[0].error_code.as_deref(), Some("invalid_client"));

    // The changes, by whom, to what, which fields.
    let changes: Vec<ChangeSummary> = audit_records(&store, &fixture.tenant_id)
        .await?
        .into_iter()
        .filter(|row| row.result == "ok" && row.action != "token_revoked")
        .map(|row| (row.action, row.actor, row.resource, row.changed_fields))
        .collect();
    let system_subject = format!("{}@client", server.admin.client_id);
    let app = format!("app/{}", fixture.client_id);
    let new_secret = format!("secret/{}", rotated.secret.context("no secret")?.id);
    let mut expected = vec![
        (
            "management_change",
            system_subject.as_str(),
            "tenant/acme".to_owned(),
            vec!["created"],
        ),
        (
            "management_change",
            admin_subject.as_str(),
            format!("api/{ARCHIVE}"),
            vec!["created"],
        ),
        (
            "management_change",
            admin_subject.as_str(),
            app.clone(),
            vec!["created", "grants"],
        ),
        (
            "management_change",
            admin_subject.as_str(),
            app.clone(),
            vec!["rate_limit_per_second"],
        ),
        (
            "secret_rotated",
            admin_subject.as_str(),
            new_secret,
            vec!["created", "expires_at"],
        ),
        ("app_blocked", admin_subject.as_str(), app, vec!["blocked"]),
    ];
    let keys: Vec<_> = changes
        .iter()
        .filter(|change| change.0 == "key_rotated")
        .cloned()
        .collect();
    assert_eq!(keys.len(), 1, "one new key (ES256 only): {keys:?}");
    let key_resource = keys[0].2.clone().context("no key resource")?;
    assert!(key_resource.starts_with("key/key_"), "{key_resource}");
    expected.push((
        "key_rotated",
        admin_subject.as_str(),
        key_resource,
        vec!["activate_at"],
    ));
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(action, actor, resource, fields)| {
            (
                action.to_owned(),
                s(actor),
                Some(resource),
                strings(&fields),
            )
        })
        .collect();
    assert_eq!(changes, expected);

    // The chain verifies from its first record to its head.
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 100, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.first_seq, Some(1));
    let all = audit_records(&store, &fixture.tenant_id).await?;
    assert_eq!(report.checked, all.len() as u64);
    let seqs: Vec<i64> = all.iter().map(|row| row.seq).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    Ok(())
}

async fn rate_limit_refusals_are_aggregated_per_client_and_second(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    // 1 request per second, bursts of 2.
    fixture
        .admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            rate_limit_per_second: Some(1),
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..40 {
        match fixture.archive_token(&server).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
            Err(status) => bail!("unexpected {status:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(refused >= 30, "only {refused} of 40 refused in {elapsed:?}");

    // Recorded at the next flush (every second; every `DENIAL_FLUSH` on a test server) once
    // the server's clock has left their second behind, as few records.
    server.clock.advance(Duration::from_secs(1));
    let store = Store::connect(&server.joined.database_url).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let limited = loop {
        let limited: Vec<AuditRow> = token_records(&store, &fixture.tenant_id)
            .await?
            .into_iter()
            .filter(|row| row.action == "rate_limited")
            .collect();
        let counted: i64 = limited.iter().map(|row| row.count).sum();
        if counted == refused {
            break limited;
        }
        if Instant::now() > deadline {
            bail!("{counted} of {refused} refusals recorded: {limited:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = elapsed.as_secs() as usize + 2;
    assert!(
        limited.len() <= seconds,
        "{} records for {refused} refusals in {elapsed:?}",
        limited.len()
    );
    for row in &limited {
        assert_eq!(row.result, "denied");
        assert_eq!(row.error_code.as_deref(), Some("resource_exhausted"));
        assert_eq!(row.client_id.as_deref(), Some(fixture.client_id.as_str()));
        assert_eq!(row.transport.as_deref(), Some("grpc"));
    }
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 100, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    Ok(())
}

async fn unwritable_trail_issues_nothing_and_changes_nothing(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let store = Store::connect(&server.joined.database_url).await?;
    let before = audit_records(&store, &fixture.tenant_id).await?.len();
    let trail = FailingTrail::connect(&server.joined.database_url).await?;
    trail.fail().await?;

    // No token over gRPC or HTTP.
    let status = fixture
        .archive_token(&server)
        .await
        .err()
        .context("a token was issued while the trail could not be written")?;
    assert_eq!(
        reason(&status),
        (tonic::Code::Unavailable, "unavailable".to_owned())
    );
    let response = post_token_form(
        &server,
        "acme",
        Some((&fixture.client_id, &fixture.client_secret)),
        &[("grant_type", "client_credentials"), ("audience", ARCHIVE)],
    )
    .await?;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none());

    // No change either: the app is not created.
    let created = fixture
        .admin_clients
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".to_owned(),
            name: "reader".to_owned(),
            description: String::new(),
            grants: vec![grant(ARCHIVE, &["archive:read"])],
        })
        .await;
    let status = created.err().context("an app was created unrecorded")?;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let apps = fixture
        .admin_clients
        .apps
        .list_apps(tollgate_proto::v1::ListAppsRequest {
            tenant: "acme".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .apps;
    assert!(apps.iter().all(|app| app.name != "reader"), "{apps:?}");
    assert_eq!(
        audit_records(&store, &fixture.tenant_id).await?.len(),
        before
    );

    // Mended, tokens flow again and the chain is whole.
    trail.mend().await?;
    fixture.archive_token(&server).await?;
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 100, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    Ok(())
}

/// `tollgate serve` as a process, with every log level on: after a run with grants,
/// refusals, a rotation and a tenant creation, no client secret appears in its output, nor
/// in any byte of its SQLite database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_trail_the_database_or_the_logs() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    // Logs go to standard error. Standard output carries one thing on purpose: the first
    // start's announcement of the system admin credentials, shown once.
    let log_path = data_dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path)?;
    let stdout_path = data_dir.path().join("serve.out");
    let stdout = std::fs::File::create(&stdout_path)?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("TOLLGATE_DATA_DIR", data_dir.path())
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace")
        .stdout(stdout)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let (grpc, http) = wait_for_addresses(&log_path).await?;
    let admin: tollgate_testkit::AdminCredentials = serde_json::from_str(
        &std::fs::read_to_string(data_dir.path().join("admin-credentials.json"))?,
    )?;
    let server = TestServer::attach(&grpc, &http, admin.clone(), data_dir.path().to_owned())?;
    let mut secrets = vec![admin.client_secret.clone()];
    let mut fixture = Fixture::new(&server, "acme").await?;
    secrets.push(fixture.admin.client_secret.clone());
    secrets.push(fixture.client_secret.clone());
    fixture.archive_token(&server).await?;
    let wrong = "tgsec_thisisnotthesecretbutstillsecretxxxxxxxxxxxxxxx";
    secrets.push(wrong.to_owned());
    let _ = server
        .issue("acme", &fixture.client_id, wrong, ARCHIVE, &[])
        .await;
    let _ = post_token_form(
        &server,
        "acme",
        Some((&fixture.client_id, wrong)),
        &[("grant_type", "client_credentials"), ("audience", ARCHIVE)],
    )
    .await?;
    // A secret pasted where an audience belongs.
    let _ = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            wrong,
            &[],
        )
        .await;
    let rotated = fixture
        .admin_clients
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            overlap_seconds: None,
        })
        .await?
        .into_inner();
    secrets.push(rotated.client_secret.clone());
    server
        .issue(
            "acme",
            &fixture.client_id,
            &rotated.client_secret,
            ARCHIVE,
            &[],
        )
        .await?;

    // Stop it gracefully (SIGTERM), so that everything is flushed and logged.
    let pid = child.id().context("no pid")?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;

    let logs = std::fs::read_to_string(&log_path)?;
    assert!(
        logs.contains("token"),
        "trace logs were not captured: {logs}"
    );
    let mut database = Vec::new();
    for entry in std::fs::read_dir(data_dir.path())? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| ext == "db" || ext.to_string_lossy().starts_with("db-"))
            || path.to_string_lossy().contains(".db")
        {
            database.extend(std::fs::read(&path)?);
        }
    }
    assert!(database.len() > 10_000, "no database file found");
    let database = String::from_utf8_lossy(&database);
    for secret in &secrets {
        // The part after the prefix: the secret itself, however it might be framed.
        let body = secret.trim_start_matches("tgsec_");
        assert!(!logs.contains(body), "a secret is in the logs");
        assert!(!database.contains(body), "a secret is in the database");
    }
    Ok(())
}

/// Waits for `tollgate serve`'s "tollgate serving" log line and returns its gRPC and HTTP
/// addresses.
async fn wait_for_addresses(log_path: &std::path::Path) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains("tollgate serving")) {
            let field = |name: &str| -> Option<String> {
                let start = line.find(&format!("{name}="))? + name.len() + 1;
                let rest = &line[start..];
                Some(rest.split_whitespace().next()?.to_owned())
            };
            if let (Some(grpc), Some(http)) = (field("grpc"), field("http")) {
                return Ok((grpc, http));
            }
        }
        if Instant::now() > deadline {
            bail!("tollgate serve did not start: {text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances on one PostgreSQL database issuing for one tenant at once: one chain,
/// gap-free and verifiable, holding every grant exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_write_one_verifiable_chain() -> anyhow::Result<()> {
    if tollgate_testkit::postgres_url_or_skip("trail::two_instances_write_one_verifiable_chain")
        .is_none()
    {
        return Ok(());
    }
    let first = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        ..Default::default()
    })
    .await?;
    let second = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        join: Some(first.joined.clone()),
        ..Default::default()
    })
    .await?;
    let fixture = Fixture::new(&first, "acme").await?;
    let mut tasks = Vec::new();
    for (index, server) in [&first, &second].into_iter().enumerate() {
        for worker in 0..8 {
            let tokens = server.tokens();
            let (client_id, secret) = (fixture.client_id.clone(), fixture.client_secret.clone());
            tasks.push(tokio::spawn(async move {
                let mut jtis = Vec::new();
                for _ in 0..10 {
                    let token = tokens
                        .clone()
                        .issue_token(IssueTokenRequest {
                            tenant: "acme".to_owned(),
                            client_id: client_id.clone(),
                            client_secret: secret.clone(),
                            audience: ARCHIVE.to_owned(),
                            scopes: Vec::new(),
                        })
                        .await?
                        .into_inner()
                        .access_token;
                    jtis.push(unverified_claim(&token, "jti").context("no jti")?);
                }
                anyhow::Ok((index, worker, jtis))
            }));
        }
    }
    let mut issued = HashMap::new();
    for task in tasks {
        let (_, _, jtis) = task.await??;
        for jti in jtis {
            *issued.entry(jti).or_insert(0) += 1;
        }
    }
    assert_eq!(issued.len(), 160);
    let store = Store::connect(&first.joined.database_url).await?;
    let recorded: Vec<AuditRow> = token_records(&store, &fixture.tenant_id)
        .await?
        .into_iter()
        .filter(|row| row.client_id.as_deref() == Some(fixture.client_id.as_str()))
        .collect();
    let mut seen = HashMap::new();
    for row in &recorded {
        *seen.entry(row.jti.clone().context("no jti")?).or_insert(0) += 1;
    }
    assert_eq!(seen, issued, "each grant recorded exactly once");
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 64, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    let all = audit_records(&store, &fixture.tenant_id).await?;
    let seqs: Vec<i64> = all.iter().map(|row| row.seq).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    second.stop().await?;
    first.stop().await?;
    Ok(())
}

/// Retention as `serve` runs it: records older than `TOLLGATE_AUDIT_RETENTION` (default 90
/// days) are purged when an instance starts (and every 10 minutes), from the oldest end of
/// each chain, and what remains still verifies. On PostgreSQL, where the database outlives
/// the first instance: the old records are written there, then a second instance starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_records_and_the_rest_still_verifies() -> anyhow::Result<()> {
    if tollgate_testkit::postgres_url_or_skip(
        "trail::retention_purges_old_records_and_the_rest_still_verifies",
    )
    .is_none()
    {
        return Ok(());
    }
    let first = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        ..Default::default()
    })
    .await?;
    let fixture = Fixture::new(&first, "acme").await?;
    let store = Store::connect(&first.joined.database_url).await?;
    // The tenant's chain so far (its creation, API, app), then three records a year old
    // (as a clock that was wrong, or a restored backup, would leave them), then a grant.
    let (writer, task) =
        tollgate_audit::AuditWriter::start(store.clone(), tollgate_audit::AuditConfig::default());
    let year_ago = writer.now_ms() - 365 * 86_400 * 1_000;
    for n in 0..3 {
        writer
            .record(tollgate_audit::AuditEvent::new(
                tollgate_domain::TenantId::new(fixture.tenant_id.as_str()),
                tollgate_domain::TenantName::parse("acme")?,
                year_ago + n,
                tollgate_audit::AuditAction::ManagementChange,
                tollgate_audit::Outcome::Ok,
            ))
            .await?;
    }
    writer.shutdown().await;
    task.await?;
    fixture.archive_token(&first).await?;
    let before = audit_records(&store, &fixture.tenant_id).await?;
    let old_last_seq = before
        .iter()
        .filter(|row| row.time_ms < year_ago + 10)
        .map(|row| row.seq)
        .max()
        .context("no old record")?;

    // A second instance starts and purges: everything up to the last old record goes
    // (records before it in the chain too, so that what remains is one unbroken suffix).
    let second = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        join: Some(first.joined.clone()),
        ..Default::default()
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = audit_records(&store, &fixture.tenant_id).await?;
        if after.first().is_some_and(|row| row.seq > old_last_seq) {
            break after;
        }
        if Instant::now() > deadline {
            bail!(
                "nothing purged: oldest seq {:?}",
                after.first().map(|row| row.seq)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after.first().map(|row| row.seq), Some(old_last_seq + 1));
    assert_eq!(after.len(), before.len() - old_last_seq as usize);
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 100, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.first_seq, Some(old_last_seq + 1));
    // The chain goes on where it was.
    fixture.archive_token(&second).await?;
    let report = verify_tenant(&store, &fixture.tenant_id.as_str().into(), 100, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.checked, after.len() as u64 + 1);
    second.stop().await?;
    first.stop().await?;
    Ok(())
}
