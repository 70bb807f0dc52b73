//! Outages under load, against real processes: a PostgreSQL of the test's own stopped and
//! started again, a `redis-server` of its own killed and started again empty, and the audit
//! store refusing every append (a trigger), each while clients keep asking for tokens over
//! HTTP and gRPC. Each scenario shows:
//!
//! - no token issued without its committed record: every `jti` a client received is in a
//!   `token_issued` record once the outage is over;
//! - no revoked token accepted: a token revoked before the outage is never introspected
//!   active, during the outage or after it; through the Redis outage a watching resource
//!   server (the SDK's `RevocationWatch`) never accepts it either, and refuses a token
//!   revoked on another instance during the outage within [`WATCH_WHILE_DEAF`];
//! - no grant change lost: a change made just before the outage, and one attempted during it
//!   (answered UNAVAILABLE where the outage prevents it, then retried), hold afterwards;
//! - recovery without restarting Tollgate, within [`RECOVERY`] of the dependency's return;
//! - what clients saw meanwhile: every answer is a token, or 503 `temporarily_unavailable`
//!   with `Retry-After` (HTTP) / UNAVAILABLE with a `RetryInfo` delay (gRPC) — never a 500,
//!   INTERNAL, UNKNOWN, or a request left without an answer, and none slower than
//!   [`SLOWEST`]. The counts per phase go to stderr (`outage::<test>: …`, visible with
//!   `--nocapture`).
//!
//! The PostgreSQL at `TOLLGATE_TEST_POSTGRES_URL` is shared with every other test, so the
//! PostgreSQL outage runs a cluster of its own ([`PostgresServer`], needs PostgreSQL's
//! programs under `/usr/lib/postgresql`); the Redis outage runs its own `redis-server`
//! ([`RedisServer`]) beside the shared PostgreSQL. Without them a test prints `SKIPPED: …`
//! and passes, or fails with `TOLLGATE_REQUIRE_BACKENDS=1`.
//!
//! Every load is bounded: [`CLIENTS_PER_TARGET`] clients per instance, at most
//! [`MAX_REQUESTS_PER_CLIENT`] requests each, [`PAUSE`] apart, for at most [`LOAD_LIMIT`].

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tollgate_audit::verify_tenant;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{
    GetJwksRequest, GrantList, IntrospectTokenRequest, IssueTokenRequest, UpdateAppRequest,
};
use tollgate_store::Store;
use tollgate_testkit::{Backend, PostgresServer, RedisServer, StopMode, TestOptions, TestServer};
use tollgate_verify::{
    ClientSecret, KeySet, Policy, RevocationCheck as _, RevocationWatch, unverified_claim,
    verify_claims,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::fixtures::{ARCHIVE, FailingTrail, Fixture, encode_form, grant, reason, retry_after};

crate::backend_tests!(options = audit_options; audit_store_failing_under_load);

/// The tenant of every scenario.
const TENANT: &str = "acme";
/// Load clients per instance: one over HTTP, one over gRPC, twice.
const CLIENTS_PER_TARGET: usize = 4;
/// The most token requests one load client sends.
const MAX_REQUESTS_PER_CLIENT: usize = 1_000;
/// The pause between two requests of one load client.
const PAUSE: Duration = Duration::from_millis(20);
/// The longest a load runs, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(45);
/// The longest one request may take before it counts as left without an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest any answer of the load may take, outage or not: a request waits at most
/// 2 s for a PostgreSQL connection, and a token request may queue behind one audit batch
/// that waits as long (about 4 s in all; the rest is room for a loaded machine).
const SLOWEST: Duration = Duration::from_secs(8);
/// The bound on recovery: tokens (and revocation checks) again after the dependency is back.
const RECOVERY: Duration = Duration::from_secs(10);
/// How long load runs before and after an outage.
const STEADY: Duration = Duration::from_secs(1);
/// App rate limit of the test servers: high enough that the load is never rate limited.
const LOAD_RATE_LIMIT: u64 = 100_000;

// ---------------------------------------------------------------------------------------------
// Harness

/// Writes one observation to stderr, where `--nocapture` shows it.
fn report(test: &str, message: &str) {
    let _ = writeln!(std::io::stderr(), "outage::{test}: {message}");
}

/// A loud skip (or, with `TOLLGATE_REQUIRE_BACKENDS=1`, a panic) when `missing` names what
/// the test lacks; `true` when nothing is missing.
fn present_or_skip(test: &str, missing: Option<&str>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        panic!("outage::{test}: {missing}, but TOLLGATE_REQUIRE_BACKENDS=1");
    }
    // Straight to stderr: the test harness swallows `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: outage suite — outage::{test}: {missing}"
    );
    false
}

fn audit_options() -> TestOptions {
    TestOptions {
        app_rate_limit: LOAD_RATE_LIMIT,
        ..Default::default()
    }
}

/// A client id and secret.
#[derive(Debug, Clone)]
struct Credentials {
    id: String,
    secret: String,
}

/// What one token request got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A token, with its `jti`.
    Token(String),
    /// HTTP 503 `temporarily_unavailable` with a `Retry-After` of whole seconds (at least
    /// 1), or gRPC UNAVAILABLE with reason `unavailable` and a `RetryInfo` delay.
    Unavailable,
    /// Anything else, described.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Transport {
    Http,
    Grpc,
}

/// One answer of the load.
#[derive(Debug, Clone)]
struct Answer {
    transport: Transport,
    started: Instant,
    finished: Instant,
    seen: Seen,
}

/// Concurrent clients asking for tokens until told to stop (or bounded out).
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// [`CLIENTS_PER_TARGET`] clients per server, half over HTTP, half over gRPC.
    fn start(targets: &[&TestServer], app: &Credentials) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let began = Instant::now();
        for server in targets {
            for index in 0..CLIENTS_PER_TARGET {
                let transport = if index % 2 == 0 {
                    Transport::Http
                } else {
                    Transport::Grpc
                };
                let client = TokenClient::new(server, transport, app.clone())?;
                let stop = Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for _ in 0..MAX_REQUESTS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) || began.elapsed() > LOAD_LIMIT {
                            break;
                        }
                        let started = Instant::now();
                        let seen = client.token().await;
                        answers.push(Answer {
                            transport,
                            started,
                            finished: Instant::now(),
                            seen,
                        });
                        tokio::time::sleep(PAUSE).await;
                    }
                    answers
                }));
            }
        }
        Ok(Self { stop, tasks })
    }

    /// Stops the clients and returns every answer.
    async fn finish(self) -> anyhow::Result<Vec<Answer>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for task in self.tasks {
            answers.extend(task.await?);
        }
        Ok(answers)
    }
}

/// A token client over one transport.
struct TokenClient {
    transport: Transport,
    http: reqwest::Client,
    token_url: String,
    grpc: TokenServiceClient<Channel>,
    app: Credentials,
}

impl TokenClient {
    fn new(server: &TestServer, transport: Transport, app: Credentials) -> anyhow::Result<Self> {
        Ok(Self {
            transport,
            http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
            token_url: format!("{}/t/{TENANT}/oauth/token", server.http_url),
            grpc: server.tokens(),
            app,
        })
    }

    async fn token(&self) -> Seen {
        match self.transport {
            Transport::Http => self.http_token().await,
            Transport::Grpc => self.grpc_token().await,
        }
    }

    async fn http_token(&self) -> Seen {
        let sent = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.app.id, Some(&self.app.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(&[
                ("grant_type", "client_credentials"),
                ("audience", ARCHIVE),
            ]))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return Seen::Other(format!("HTTP request failed: {error}")),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(error) => {
                return Seen::Other(format!("HTTP {status} without a JSON body: {error}"));
            }
        };
        match status {
            200 => match body["access_token"]
                .as_str()
                .and_then(|token| unverified_claim(token, "jti"))
            {
                Some(jti) => Seen::Token(jti),
                None => Seen::Other(format!("HTTP 200 without a token: {body}")),
            },
            503 if is_unavailable_body(&body, retry_after.as_deref()) => Seen::Unavailable,
            _ => Seen::Other(format!(
                "HTTP {status}, Retry-After {retry_after:?}: {body}"
            )),
        }
    }

    async fn grpc_token(&self) -> Seen {
        let request = IssueTokenRequest {
            tenant: TENANT.to_owned(),
            client_id: self.app.id.clone(),
            client_secret: self.app.secret.clone(),
            audience: ARCHIVE.to_owned(),
            scopes: Vec::new(),
        };
        let mut grpc = self.grpc.clone();
        match tokio::time::timeout(CALL_TIMEOUT, grpc.issue_token(request)).await {
            Err(_) => Seen::Other(format!("gRPC: no answer within {CALL_TIMEOUT:?}")),
            Ok(Ok(response)) => {
                match unverified_claim(&response.into_inner().access_token, "jti") {
                    Some(jti) => Seen::Token(jti),
                    None => Seen::Other("gRPC token without jti".to_owned()),
                }
            }
            Ok(Err(status)) if is_unavailable_status(&status) => Seen::Unavailable,
            Ok(Err(status)) => {
                Seen::Other(format!("gRPC {:?}: {}", reason(&status), status.message()))
            }
        }
    }
}

/// RFC 6749's "retry later": `temporarily_unavailable`, with `Retry-After` in whole seconds.
fn is_unavailable_body(body: &Value, retry_after: Option<&str>) -> bool {
    body == &json!({
        "error": "temporarily_unavailable",
        "error_description": "the service is temporarily unavailable; retry later",
    }) && retry_after
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|seconds| seconds >= 1)
}

/// gRPC UNAVAILABLE with Tollgate's reason `unavailable` and a `RetryInfo` delay of at
/// least a second (gRPC's `Retry-After`).
fn is_unavailable_status(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    reason(status) == (Code::Unavailable, "unavailable".to_owned())
        && delay.is_some_and(|delay| delay >= Duration::from_secs(1))
}

/// When the dependency was down (stopped, killed, failing), and when it began to come back
/// (restarted, mended).
#[derive(Debug, Clone, Copy)]
struct Outage {
    down: Instant,
    ended: Instant,
}

/// The answers counted per phase: `before` (answered before the dependency was down),
/// `during` (asked and answered while it was down), `after` (asked once it was being
/// brought back), and `across` (asked before the dependency was down and answered while it
/// was, or asked while it was down and answered after).
#[derive(Debug, Default)]
struct Tally {
    /// (phase, transport) → (tokens, unavailable, other).
    counts: BTreeMap<(&'static str, Transport), (usize, usize, usize)>,
    /// Every answer that was neither a token nor a clear "retry later".
    others: Vec<String>,
    /// The slowest answer.
    slowest: Duration,
}

impl Tally {
    fn of(answers: &[Answer], outage: Outage) -> Self {
        let mut tally = Tally::default();
        for answer in answers {
            let phase = if answer.finished < outage.down {
                "before"
            } else if answer.started >= outage.ended {
                "after"
            } else if answer.started >= outage.down && answer.finished < outage.ended {
                "during"
            } else {
                "across"
            };
            let entry = tally.counts.entry((phase, answer.transport)).or_default();
            match &answer.seen {
                Seen::Token(_) => entry.0 += 1,
                Seen::Unavailable => entry.1 += 1,
                Seen::Other(what) => {
                    entry.2 += 1;
                    tally.others.push(what.clone());
                }
            }
            tally.slowest = tally.slowest.max(answer.finished - answer.started);
        }
        tally
    }

    /// (tokens, unavailable, other) of a phase, both transports together.
    fn phase(&self, phase: &str) -> (usize, usize, usize) {
        self.counts
            .iter()
            .filter(|((name, _), _)| *name == phase)
            .fold((0, 0, 0), |sum, (_, count)| {
                (sum.0 + count.0, sum.1 + count.1, sum.2 + count.2)
            })
    }

    fn report(&self, test: &str) {
        report(test, "phase   transport  tokens  503/UNAVAILABLE  other");
        for ((phase, transport), (tokens, unavailable, other)) in &self.counts {
            report(
                test,
                &format!("{phase:<7} {transport:<10?} {tokens:>6}  {unavailable:>15}  {other:>5}"),
            );
        }
        report(
            test,
            &format!("slowest answer: {} ms", self.slowest.as_millis()),
        );
    }
}

/// Asserts what clients saw and that every token they got is recorded; returns the tally.
async fn check_answers(
    test: &str,
    answers: &[Answer],
    outage: Outage,
    database_url: &str,
) -> anyhow::Result<Tally> {
    let tally = Tally::of(answers, outage);
    tally.report(test);
    assert!(
        tally.others.is_empty(),
        "{} answers were neither a token nor 503/UNAVAILABLE with Retry-After, e.g. {:?}",
        tally.others.len(),
        &tally.others[..tally.others.len().min(5)]
    );
    assert!(
        tally.slowest <= SLOWEST,
        "an answer took {:?}, more than {SLOWEST:?}",
        tally.slowest
    );
    assert!(tally.phase("before").0 > 0, "no token before the outage");
    assert!(tally.phase("after").0 > 0, "no token after the outage");

    // Every token a client received has its committed record.
    let issued: Vec<&str> = answers
        .iter()
        .filter_map(|answer| match &answer.seen {
            Seen::Token(jti) => Some(jti.as_str()),
            _ => None,
        })
        .collect();
    let recorded = issued_jtis(database_url).await?;
    let missing: Vec<&&str> = issued
        .iter()
        .filter(|jti| recorded.get(**jti).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} tokens are not recorded exactly once, e.g. {:?}",
        missing.len(),
        issued.len(),
        &missing[..missing.len().min(5)]
    );
    report(
        test,
        &format!(
            "{} tokens received, each in one token_issued record",
            issued.len()
        ),
    );
    Ok(tally)
}

/// How many `token_issued` records name each `jti`, read straight from the database.
async fn issued_jtis(database_url: &str) -> anyhow::Result<HashMap<String, usize>> {
    let connection = sea_orm::Database::connect(database_url).await?;
    let backend = connection.get_database_backend();
    let rows = connection
        .query_all(Statement::from_string(
            backend,
            "SELECT jti FROM audit_events WHERE action = 'token_issued' AND jti IS NOT NULL",
        ))
        .await?;
    let mut jtis = HashMap::new();
    for row in rows {
        let jti: String = row.try_get("", "jti")?;
        *jtis.entry(jti).or_insert(0) += 1;
    }
    connection.close().await?;
    Ok(jtis)
}

/// Gets a token over gRPC, with its `jti` and scopes.
async fn token(server: &TestServer, app: &Credentials) -> Result<(String, String), tonic::Status> {
    let response = server
        .issue(TENANT, &app.id, &app.secret, ARCHIVE, &[])
        .await?;
    Ok((response.access_token, response.scopes.join(" ")))
}

/// Waits until `server` issues tokens to `app` again; returns how long after `since`.
async fn tokens_again(
    server: &TestServer,
    app: &Credentials,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, token(server, app)).await {
            Ok(Ok(_)) => return Ok(since.elapsed()),
            Ok(Err(status)) if is_unavailable_status(&status) => {}
            Ok(Err(status)) => bail!(
                "while recovering: {:?} {}",
                reason(&status),
                status.message()
            ),
            Err(_) => bail!("while recovering: no answer within {CALL_TIMEOUT:?}"),
        }
        if since.elapsed() > RECOVERY {
            bail!("no token within {RECOVERY:?} of the dependency's return");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts a recovery time, and reports it.
fn recovered(test: &str, what: &str, took: Duration) {
    report(test, &format!("{what}: {} ms", took.as_millis()));
    assert!(
        took <= RECOVERY,
        "{what} took {took:?}, more than {RECOVERY:?}"
    );
}

/// What introspection said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Introspection {
    /// `active: true`.
    Active,
    /// Exactly `{"active": false}` (gRPC: the empty response).
    Inactive,
    /// 503 `temporarily_unavailable` with `Retry-After` / UNAVAILABLE: failed closed.
    Unavailable,
}

/// RFC 7662 introspection over HTTP and over gRPC by `caller`; both must agree.
async fn introspect(
    server: &TestServer,
    caller: &Credentials,
    token: &str,
) -> anyhow::Result<Introspection> {
    let response = reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()?
        .post(format!("{}/t/{TENANT}/oauth/introspect", server.http_url))
        .basic_auth(&caller.id, Some(&caller.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[("token", token)]))
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after = retry_after(&response);
    let body: Value = response.json().await?;
    let over_http = match status {
        200 if body == json!({"active": false}) => Introspection::Inactive,
        200 if body["active"] == true => Introspection::Active,
        503 if is_unavailable_body(&body, retry_after.as_deref()) => Introspection::Unavailable,
        _ => bail!("HTTP introspection answered {status} (Retry-After {retry_after:?}): {body}"),
    };
    let answer = tokio::time::timeout(
        CALL_TIMEOUT,
        server.tokens().introspect_token(IntrospectTokenRequest {
            tenant: TENANT.to_owned(),
            client_id: caller.id.clone(),
            client_secret: caller.secret.clone(),
            token: token.to_owned(),
        }),
    )
    .await
    .context("gRPC introspection did not answer")?;
    let over_grpc = match answer {
        Ok(response) if response.get_ref().active => Introspection::Active,
        Ok(_) => Introspection::Inactive,
        Err(status) if is_unavailable_status(&status) => Introspection::Unavailable,
        Err(status) => bail!(
            "gRPC introspection failed: {:?} {}",
            reason(&status),
            status.message()
        ),
    };
    // The two may differ only while the outage begins or ends.
    if over_http != over_grpc {
        if [&over_http, &over_grpc].contains(&&Introspection::Active)
            && [&over_http, &over_grpc].contains(&&Introspection::Inactive)
        {
            bail!("introspection over HTTP said {over_http:?}, over gRPC {over_grpc:?}");
        }
        return Ok(Introspection::Unavailable);
    }
    Ok(over_http)
}

/// RFC 7009 revocation over HTTP by the token's app: `Ok(true)` on 200, `Ok(false)` on 503
/// with `Retry-After`; anything else is an error.
async fn revoke(server: &TestServer, app: &Credentials, token: &str) -> anyhow::Result<bool> {
    let response = reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()?
        .post(format!("{}/t/{TENANT}/oauth/revoke", server.http_url))
        .basic_auth(&app.id, Some(&app.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[("token", token)]))
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after = retry_after(&response);
    let text = response.text().await?;
    match status {
        200 if text.is_empty() => Ok(true),
        503 if is_unavailable_body(&serde_json::from_str(&text)?, retry_after.as_deref()) => {
            Ok(false)
        }
        _ => bail!("revocation answered {status} (Retry-After {retry_after:?}): {text}"),
    }
}

/// Replaces the app's grants with `scopes` on ARCHIVE.
async fn set_scopes(
    fixture: &Fixture,
    app: &Credentials,
    scopes: &[&str],
) -> Result<(), tonic::Status> {
    let mut apps = fixture.admin_clients.apps.clone();
    let call = apps.update_app(UpdateAppRequest {
        tenant: TENANT.to_owned(),
        client_id: app.id.clone(),
        grants: Some(GrantList {
            grants: vec![grant(ARCHIVE, scopes)],
        }),
        ..Default::default()
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answer) => answer.map(|_| ()),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer")),
    }
}

/// Waits (bounded) until `server` issues `app` tokens with exactly `scope`.
async fn scope_in_effect(
    server: &TestServer,
    app: &Credentials,
    scope: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let since = Instant::now();
    loop {
        let seen = match token(server, app).await {
            Ok((_, granted)) => granted,
            Err(status) => format!("{:?}", reason(&status)),
        };
        if seen == scope {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            bail!(
                "{}: scope {seen:?}, not {scope:?}, after {limit:?}",
                server.grpc_url
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state a scenario sets up before its outage.
struct Before {
    fixture: Fixture,
    /// The app the load runs as.
    app: Credentials,
    /// An app whose grants change around the outage.
    reader: Credentials,
    /// A token revoked before the outage.
    revoked: String,
    /// A token never revoked.
    live: String,
}

/// The tenant, its apps, a revoked and a live token, and a grant change (the reader gains
/// `archive:write`) in effect on `others` too.
async fn prepare(server: &TestServer, others: &[&TestServer]) -> anyhow::Result<Before> {
    let fixture = Fixture::new(server, TENANT).await?;
    let app = Credentials {
        id: fixture.client_id.clone(),
        secret: fixture.client_secret.clone(),
    };
    let (id, secret) = fixture
        .create_app("reader", vec![grant(ARCHIVE, &["archive:read"])])
        .await?;
    let reader = Credentials { id, secret };
    let (revoked, _) = token(server, &app).await?;
    assert!(revoke(server, &app, &revoked).await?, "revocation refused");
    let (live, _) = token(server, &app).await?;
    for node in std::iter::once(&server).chain(others) {
        let inactive = wait_for(Duration::from_secs(2), || async {
            Ok(introspect(node, &app, &revoked).await? == Introspection::Inactive)
        })
        .await?;
        assert!(
            inactive,
            "the revoked token is not inactive on {}",
            node.grpc_url
        );
        assert_eq!(introspect(node, &app, &live).await?, Introspection::Active);
    }
    set_scopes(&fixture, &reader, &["archive:read", "archive:write"]).await?;
    for node in std::iter::once(&server).chain(others) {
        scope_in_effect(
            node,
            &reader,
            "archive:read archive:write",
            Duration::from_secs(2),
        )
        .await?;
    }
    Ok(Before {
        fixture,
        app,
        reader,
        revoked,
        live,
    })
}

/// Runs `check` every 50 ms until it is true (`Ok(true)`) or `limit` has passed
/// (`Ok(false)`).
async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let since = Instant::now();
    loop {
        if check().await? {
            return Ok(true);
        }
        if since.elapsed() > limit {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The revoked token is never active; the live one is active or, failing closed,
/// unavailable. Returns what the revoked token's check said.
async fn revoked_stays_revoked(
    server: &TestServer,
    before: &Before,
    when: &str,
) -> anyhow::Result<Introspection> {
    let revoked = introspect(server, &before.app, &before.revoked).await?;
    assert_ne!(
        revoked,
        Introspection::Active,
        "a token revoked before the outage was active {when} on {}",
        server.grpc_url
    );
    let live = introspect(server, &before.app, &before.live).await?;
    assert_ne!(
        live,
        Introspection::Inactive,
        "a live token was inactive {when} on {}",
        server.grpc_url
    );
    Ok(revoked)
}

/// Asserts that `status` is a clear "retry later" ([`is_unavailable_status`]); `what` names
/// the call in the message.
fn assert_unavailable(status: &tonic::Status, what: &str) {
    assert!(
        is_unavailable_status(status),
        "{what}: {:?} {}",
        reason(status),
        status.message()
    );
}

/// Sleeps until `length` has passed since `began`, the outage's start.
async fn keep_down(began: Instant, length: Duration) {
    let elapsed = began.elapsed();
    if elapsed < length {
        tokio::time::sleep(length - elapsed).await;
    }
}

/// Waits (at most a second) until `server` issues the reader tokens with the grant made
/// before the outage, `archive:read archive:write`.
async fn change_before_holds(server: &TestServer, before: &Before) -> anyhow::Result<()> {
    scope_in_effect(
        server,
        &before.reader,
        "archive:read archive:write",
        Duration::from_secs(1),
    )
    .await?;
    Ok(())
}

/// Retries the grant change refused during the outage (the reader back to `archive:read`
/// alone) and waits until each of `nodes` issues the reader tokens with just that scope,
/// within `limit` each.
async fn retry_grant_change(
    before: &Before,
    nodes: &[&TestServer],
    limit: Duration,
) -> anyhow::Result<()> {
    set_scopes(&before.fixture, &before.reader, &["archive:read"])
        .await
        .map_err(|status| anyhow::anyhow!("retried grant change: {status:?}"))?;
    for node in nodes {
        scope_in_effect(node, &before.reader, "archive:read", limit).await?;
    }
    Ok(())
}

/// Revokes the live token (the dependency is back), and asserts it is inactive at once.
async fn revoke_live(server: &TestServer, before: &Before) -> anyhow::Result<()> {
    assert!(revoke(server, &before.app, &before.live).await?);
    assert_eq!(
        introspect(server, &before.app, &before.live).await?,
        Introspection::Inactive
    );
    Ok(())
}

/// Lets the load run [`STEADY`] more, stops it, and checks every answer ([`check_answers`]).
async fn finish_load(
    test: &str,
    load: Load,
    outage: Outage,
    database_url: &str,
) -> anyhow::Result<Tally> {
    tokio::time::sleep(STEADY).await;
    let answers = load.finish().await?;
    check_answers(test, &answers, outage, database_url).await
}

/// Asserts that the tenant's audit chain, read straight from the database, verifies.
async fn assert_chain_intact(database_url: &str, tenant_id: &str) -> anyhow::Result<()> {
    let store = Store::connect(database_url).await?;
    let chain = verify_tenant(
        &store,
        &tollgate_domain::TenantId::new(tenant_id),
        500,
        u64::MAX,
    )
    .await?;
    assert_eq!(chain.outcome, Ok(()));
    Ok(())
}

/// A revocation-aware resource server: the SDK's [`RevocationWatch`], following one
/// instance's `WatchRevocations` stream, with the tenant's keys.
struct Watcher {
    watch: RevocationWatch,
    keys: KeySet,
    policy: Policy,
}

impl Watcher {
    /// Follows `server`'s stream as `app`, once it has its first snapshot.
    async fn start(server: &TestServer, app: &Credentials) -> anyhow::Result<Self> {
        let jwks = server
            .tokens()
            .get_jwks(GetJwksRequest {
                tenant: TENANT.to_owned(),
            })
            .await?
            .into_inner();
        let watch = RevocationWatch::builder(
            server.channel(),
            TENANT,
            app.id.clone(),
            ClientSecret::new(app.secret.clone()),
        )
        .spawn()?;
        watch.ready(Duration::from_secs(10)).await?;
        Ok(Self {
            watch,
            keys: KeySet::from_jwks_json(&jwks.jwks_json)?,
            policy: Policy::new(jwks.issuer, ARCHIVE),
        })
    }

    /// `Some(true)`: revoked; `Some(false)`: not revoked; `None`: no answer (fails closed).
    async fn is_revoked(&self, token: &str) -> anyhow::Result<Option<bool>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = verify_claims(token, &self.keys, &self.policy, i64::try_from(now)?)?;
        Ok(self.watch.is_revoked(token, &claims).await.ok())
    }
}

/// How long a revocation made during a Redis outage may take to reach a watcher: the
/// stream re-reads the database every second while its instance cannot hear of it.
const WATCH_WHILE_DEAF: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// 1. PostgreSQL stopped and started again

/// How long the PostgreSQL outage lasts: a few times the pool's acquire timeout (2 s), so
/// that requests waiting for a connection give up during it.
const POSTGRES_OUTAGE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_and_restarted_under_load() -> anyhow::Result<()> {
    const TEST: &str = "postgres_stopped_and_restarted_under_load";
    let missing = PostgresServer::installed_bin()
        .is_none()
        .then_some("no PostgreSQL programs under /usr/lib/postgresql (initdb, pg_ctl, postgres)");
    if !present_or_skip(TEST, missing) {
        return Ok(());
    }
    let mut database = PostgresServer::start().await?;
    let server = TestServer::start_with(TestOptions {
        backend: Backend::Postgres,
        database_url: Some(database.url()),
        app_rate_limit: LOAD_RATE_LIMIT,
        ..Default::default()
    })
    .await?;
    let before = prepare(&server, &[]).await?;
    let load = Load::start(&[&server], &before.app)?;
    tokio::time::sleep(STEADY).await;

    let began = Instant::now();
    database.stop(StopMode::Fast)?;
    let down = Instant::now();
    // Revocation checks read the shared state, not the database: the revoked token stays
    // refused, the live one active.
    assert_eq!(
        revoked_stays_revoked(&server, &before, "with PostgreSQL down").await?,
        Introspection::Inactive
    );
    // What needs the database is refused as unavailable, and changes nothing: a token (its
    // record cannot commit), a grant change (the reader back to read-only) and a
    // revocation. Each waits for a connection first, so they run side by side.
    let (issued, change, revoked) = tokio::join!(
        token(&server, &before.reader),
        set_scopes(&before.fixture, &before.reader, &["archive:read"]),
        revoke(&server, &before.app, &before.live),
    );
    let status = issued
        .err()
        .context("a token was issued with PostgreSQL down")?;
    assert!(
        is_unavailable_status(&status),
        "token with PostgreSQL down: {status:?}"
    );
    let status = change
        .err()
        .context("a grant change succeeded with PostgreSQL down")?;
    assert_unavailable(&status, "grant change with PostgreSQL down");
    assert!(!revoked?, "a revocation succeeded with PostgreSQL down");
    report(
        TEST,
        &format!(
            "token, grant change and revocation refused as unavailable within {} ms",
            began.elapsed().as_millis()
        ),
    );
    keep_down(began, POSTGRES_OUTAGE).await;

    let ended = Instant::now();
    database.start_again().await?;
    recovered(
        TEST,
        "PostgreSQL back -> tokens again",
        tokens_again(&server, &before.app, ended).await?,
    );
    // The change made before the outage holds; the refused one is retried, and holds.
    change_before_holds(&server, &before).await?;
    retry_grant_change(&before, &[&server], Duration::from_secs(2)).await?;
    assert_eq!(
        revoked_stays_revoked(&server, &before, "after PostgreSQL returned").await?,
        Introspection::Inactive
    );
    revoke_live(&server, &before).await?;
    let tally = finish_load(
        TEST,
        load,
        Outage { down, ended },
        &server.joined.database_url,
    )
    .await?;
    // No token can be recorded while the database is down.
    assert_eq!(
        tally.phase("during").0,
        0,
        "tokens issued with PostgreSQL down"
    );
    assert!(
        tally.phase("during").1 + tally.phase("across").1 > 0,
        "no client was told to retry later"
    );
    assert_chain_intact(&server.joined.database_url, &before.fixture.tenant_id).await?;
    server.stop().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Redis stopped and started again (empty)

/// How long Redis stays down: longer than a revocation may take to reach a watcher then.
const REDIS_OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_and_restarted_under_load() -> anyhow::Result<()> {
    const TEST: &str = "redis_stopped_and_restarted_under_load";
    let is_set = |name: &str| std::env::var(name).is_ok_and(|value| !value.is_empty());
    let missing = if !is_set("TOLLGATE_TEST_POSTGRES_URL") {
        Some("TOLLGATE_TEST_POSTGRES_URL is not set")
    } else if !RedisServer::is_installed() {
        Some("redis-server is not on PATH")
    } else {
        None
    };
    if !present_or_skip(TEST, missing) {
        return Ok(());
    }
    let mut redis = RedisServer::start().await?;
    let options = TestOptions {
        backend: Backend::Postgres,
        redis_url: Some(redis.url()),
        app_rate_limit: LOAD_RATE_LIMIT,
        ..Default::default()
    };
    let a = TestServer::start_with(options.clone()).await?;
    let b = TestServer::start_with(TestOptions {
        join: Some(a.joined.clone()),
        ..options
    })
    .await?;
    let before = prepare(&a, &[&b]).await?;
    let (doomed, _) = token(&b, &before.app).await?;
    // A resource server following B's revocation stream; revocations are made on A.
    let watcher = Watcher::start(&b, &before.app).await?;
    assert_eq!(watcher.is_revoked(&before.revoked).await?, Some(true));
    assert_eq!(watcher.is_revoked(&before.live).await?, Some(false));
    assert_eq!(watcher.is_revoked(&doomed).await?, Some(false));
    let load = Load::start(&[&a, &b], &before.app)?;
    tokio::time::sleep(STEADY).await;

    let began = Instant::now();
    redis.kill()?;
    let down = Instant::now();
    // Revocation checks fail closed: never active, for any token, on either instance.
    for node in [&a, &b] {
        for raw in [&before.revoked, &before.live, &doomed] {
            let seen = introspect(node, &before.app, raw).await?;
            assert_eq!(seen, Introspection::Unavailable, "with Redis down");
        }
    }
    // Revocations go to the database (Redis is repopulated from it later).
    assert!(
        revoke(&a, &before.app, &doomed).await?,
        "revocation refused with Redis down"
    );
    // The watcher on B learns of it although no notification can travel (B's stream reads
    // the database while B cannot listen), and never accepts the token revoked before.
    let revoked_at = Instant::now();
    let (watcher_ref, revoked_raw, doomed_raw) = (&watcher, &before.revoked, &doomed);
    let seen = wait_for(WATCH_WHILE_DEAF, || async move {
        assert_ne!(
            watcher_ref.is_revoked(revoked_raw).await?,
            Some(false),
            "the watcher accepted a token revoked before the outage"
        );
        Ok(watcher_ref.is_revoked(doomed_raw).await? != Some(false))
    })
    .await?;
    assert!(
        seen,
        "a revocation made with Redis down did not reach a watcher within {WATCH_WHILE_DEAF:?}"
    );
    report(
        TEST,
        &format!(
            "revocation on A with Redis down -> refused by B's watcher: {} ms",
            revoked_at.elapsed().as_millis()
        ),
    );
    // Management checks its admin tokens' revocation in Redis too, and fails closed: the
    // grant change (the reader back to read-only) is refused as unavailable, not made, and
    // the one made before the outage holds on both instances.
    let status = set_scopes(&before.fixture, &before.reader, &["archive:read"])
        .await
        .err()
        .context("a grant change was accepted without checking the admin token")?;
    assert_unavailable(&status, "grant change with Redis down");
    for node in [&a, &b] {
        change_before_holds(node, &before).await?;
    }
    keep_down(began, REDIS_OUTAGE).await;

    let ended = Instant::now();
    redis.restart_empty().await?;
    // Checks answer again once the instances have copied the revocations back.
    let (app, revoked, live) = (&before.app, &before.revoked, &before.live);
    let answered = wait_for(RECOVERY, || async {
        let mut answered = true;
        for node in [&a, &b] {
            for (raw, expected) in [
                (revoked, Introspection::Inactive),
                (&doomed, Introspection::Inactive),
                (live, Introspection::Active),
            ] {
                match introspect(node, app, raw).await? {
                    Introspection::Unavailable => answered = false,
                    seen if seen == expected => {}
                    seen => bail!("{seen:?} instead of {expected:?} after Redis returned"),
                }
            }
        }
        Ok(answered)
    })
    .await?;
    assert!(answered, "introspection did not answer within {RECOVERY:?}");
    recovered(
        TEST,
        "Redis back empty -> revocation checks answer again on both",
        ended.elapsed(),
    );
    for raw in [&before.revoked, &doomed] {
        let answered = wait_for(RECOVERY, || async {
            Ok(watcher.is_revoked(raw).await? == Some(true))
        })
        .await?;
        assert!(
            answered,
            "the watcher does not refuse a revoked token after the outage"
        );
    }
    assert_eq!(watcher.is_revoked(&before.live).await?, Some(false));
    for node in [&a, &b] {
        recovered(
            TEST,
            "Redis back empty -> tokens",
            tokens_again(node, &before.app, ended).await?,
        );
    }
    // The refused change is retried, and holds on both instances.
    retry_grant_change(&before, &[&a, &b], Duration::from_secs(2)).await?;
    let tally = finish_load(TEST, load, Outage { down, ended }, &a.joined.database_url).await?;
    // A Redis outage is not a token outage: rate limits fall back to per-instance buckets.
    assert!(tally.phase("during").0 > 0, "no token while Redis was down");
    assert_chain_intact(&a.joined.database_url, &before.fixture.tenant_id).await?;
    b.stop().await?;
    a.stop().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. The audit store failing

/// How long the audit store refuses appends.
const AUDIT_OUTAGE: Duration = Duration::from_secs(3);

async fn audit_store_failing_under_load(server: TestServer) -> anyhow::Result<()> {
    const TEST: &str = "audit_store_failing_under_load";
    let before = prepare(&server, &[]).await?;
    let load = Load::start(&[&server], &before.app)?;
    tokio::time::sleep(STEADY).await;

    let trail = FailingTrail::connect(&server.joined.database_url).await?;
    let began = Instant::now();
    trail.fail().await?;
    let down = Instant::now();
    // No token: the record cannot commit.
    let status = token(&server, &before.app)
        .await
        .err()
        .context("a token was issued while the trail refused appends")?;
    assert!(is_unavailable_status(&status), "{status:?}");
    // A refusal is still answered as such (nothing was granted).
    let wrong = Credentials {
        id: before.app.id.clone(),
        secret: "tgsec_wrongwrongwrongwrongwrongwrongwrongwrongw".to_owned(),
    };
    let status = token(&server, &wrong)
        .await
        .err()
        .context("a wrong secret got a token")?;
    assert_eq!(
        reason(&status),
        (Code::Unauthenticated, "invalid_client".to_owned())
    );
    // Revocation checks need no append: the revoked token stays refused.
    assert_eq!(
        revoked_stays_revoked(&server, &before, "with the trail failing").await?,
        Introspection::Inactive
    );
    // A grant change and a revocation cannot be recorded, so they do not happen.
    let status = set_scopes(&before.fixture, &before.reader, &["archive:read"])
        .await
        .err()
        .context("a grant change succeeded unrecorded")?;
    assert_unavailable(&status, "grant change with the trail failing");
    assert!(
        !revoke(&server, &before.app, &before.live).await?,
        "a revocation succeeded unrecorded"
    );
    keep_down(began, AUDIT_OUTAGE).await;

    let ended = Instant::now();
    trail.mend().await?;
    recovered(
        TEST,
        "trail writable again -> tokens again",
        tokens_again(&server, &before.app, ended).await?,
    );
    // The change made before still holds (the reader can write); the refused one is retried.
    change_before_holds(&server, &before).await?;
    retry_grant_change(&before, &[&server], Duration::from_secs(1)).await?;
    revoke_live(&server, &before).await?;
    assert_eq!(
        introspect(&server, &before.app, &before.revoked).await?,
        Introspection::Inactive
    );
    let tally = finish_load(
        TEST,
        load,
        Outage { down, ended },
        &server.joined.database_url,
    )
    .await?;
    assert_eq!(
        tally.phase("during").0,
        0,
        "tokens issued while the trail failed"
    );
    assert!(
        tally.phase("during").1 > 0,
        "no client was told to retry later"
    );
    assert_chain_intact(&server.joined.database_url, &before.fixture.tenant_id).await?;
    trail.close().await?;
    Ok(())
}
