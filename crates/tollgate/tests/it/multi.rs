//! Several instances on one PostgreSQL database and one Redis, as in production: a
//! revocation, a block or a grant change made through one instance holds on the others within
//! a second; a rate limit is shared; a scheduled key rotation happens once; Redis restarted
//! empty in the middle of a run loses no revocation or block, and the instances recover
//! without a restart.
//!
//! Needs `TOLLGATE_TEST_POSTGRES_URL` and `TOLLGATE_TEST_REDIS_URL`, and `redis-server` on
//! `PATH`: without them every test prints `SKIPPED: multi-instance suite — …` and passes
//! (fails with `TOLLGATE_REQUIRE_BACKENDS=1`). `serve` names every Redis key and channel
//! `tollgate:…` and has no setting for another prefix or database, so tests running in
//! parallel cannot share the Redis at `TOLLGATE_TEST_REDIS_URL` without seeing each other's
//! rate-limit buckets and revocation marker: each test runs its own throwaway `redis-server`
//! ([`RedisServer`]), which the restart test also needs to kill.
//!
//! Every wait is bounded in time and count; observed latencies are written to stderr
//! (`multi::<test>: …`, visible with `--nocapture`) and named in assertion messages.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tollgate_domain::TokenFacts;
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::revocation_service_client::RevocationServiceClient;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::{
    CreateApiRequest, DeleteApiRequest, GrantList, IntrospectTokenRequest, IntrospectTokenResponse,
    ListKeysRequest, RevokeTokensRequest, SigningKeyInfo, UpdateAppRequest,
};
use tollgate_state::{RevocationStatus, SharedState};
use tollgate_testkit::{
    AdminCredentials, Backend, BearerAuth, RedisServer, TestOptions, TestServer,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::fixtures::{
    ARCHIVE, Fixture, encode_form, grant, multi_instance_missing, present_or_skip, reason,
    retry_after, scopes,
};

/// The bound every cross-instance change must meet (issue 3: "within 1 s").
const WITHIN: Duration = Duration::from_secs(1);
/// How often a test looks again while it waits for a change.
const POLL: Duration = Duration::from_millis(50);
/// The longest any single request of a test may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound on recovering from a Redis restart ("within a few seconds").
const RECOVERY: Duration = Duration::from_secs(10);
/// The tenant of most scenarios.
const TENANT: &str = "acme";
/// The channel that carries configuration changes between instances.
const CHANGES_CHANNEL: &str = "tollgate:changes";

// ---------------------------------------------------------------------------------------------
// Harness

/// Whether both backends and `redis-server` are available; otherwise a loud skip, or a panic
/// with `TOLLGATE_REQUIRE_BACKENDS=1`.
fn backends_or_skip(test: &str) -> bool {
    present_or_skip(
        "multi-instance suite",
        &format!("multi::{test}"),
        multi_instance_missing(),
    )
}

/// Writes one observation to stderr, where `--nocapture` shows it.
fn report(test: &str, message: &str) {
    let _ = writeln!(std::io::stderr(), "multi::{test}: {message}");
}

/// Instances sharing one fresh PostgreSQL database, one master key and one Redis. Dropping
/// it stops the instances, then kills Redis.
struct Cluster {
    nodes: Vec<TestServer>,
    redis: RedisServer,
}

impl Cluster {
    /// `count` instances with default options.
    async fn start(count: usize) -> anyhow::Result<Self> {
        let redis = RedisServer::start().await?;
        let first = first_node(&redis, TestOptions::default()).await?;
        let mut nodes = join_nodes(&first, &redis, count - 1, TestOptions::default()).await?;
        nodes.insert(0, first);
        Ok(Self { nodes, redis })
    }
}

/// The instance that bootstraps a fresh PostgreSQL database.
async fn first_node(redis: &RedisServer, options: TestOptions) -> anyhow::Result<TestServer> {
    TestServer::start_with(TestOptions {
        backend: Backend::Postgres,
        redis_url: Some(redis.url()),
        join: None,
        ..options
    })
    .await
}

/// `count` more instances of `first`'s deployment, started together as replicas are.
async fn join_nodes(
    first: &TestServer,
    redis: &RedisServer,
    count: usize,
    options: TestOptions,
) -> anyhow::Result<Vec<TestServer>> {
    let starting: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(TestServer::start_with(TestOptions {
                backend: Backend::Postgres,
                redis_url: Some(redis.url()),
                join: Some(first.joined.clone()),
                ..options.clone()
            }))
        })
        .collect();
    let mut nodes = Vec::with_capacity(count);
    for start in starting {
        nodes.push(start.await??);
    }
    Ok(nodes)
}

/// Runs `check` every `every` until it reports `true` or `limit` has passed since `since`;
/// returns how long after `since` it saw it. An error from `check` ends the wait at once.
async fn within<F, Fut>(
    since: Instant,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<Option<Duration>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    loop {
        let seen = tokio::time::timeout(CALL_TIMEOUT, check())
            .await
            .with_context(|| format!("a check did not answer within {CALL_TIMEOUT:?}"))??;
        let elapsed = since.elapsed();
        if seen {
            return Ok(Some(elapsed));
        }
        if elapsed >= limit {
            return Ok(None);
        }
        tokio::time::sleep(every).await;
    }
}

/// [`within`] the cross-instance bound, polling every 50 ms.
async fn within_a_second<F, Fut>(since: Instant, check: F) -> anyhow::Result<Option<Duration>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    within(since, WITHIN, POLL, check).await
}

/// Asserts that `what` was seen within `limit`, and reports the latency.
fn seen(test: &str, what: &str, latency: Option<Duration>, limit: Duration) -> Duration {
    let latency = latency
        .unwrap_or_else(|| panic!("{what}: not seen within {limit:?} (checked every few ms)"));
    report(test, &format!("{what}: {} ms", latency.as_millis()));
    assert!(
        latency <= limit,
        "{what}: seen only after {} ms, more than {limit:?}",
        latency.as_millis()
    );
    latency
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A client id and secret.
type Credentials<'a> = (&'a str, &'a str);

/// An issued access token with the claims revocation works on.
struct Token {
    raw: String,
    claims: Value,
}

impl Token {
    fn parse(raw: String) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let payload = raw.split('.').nth(1).context("not a JWT")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
        Ok(Self {
            claims: serde_json::from_slice(&bytes)?,
            raw,
        })
    }

    fn claim(&self, name: &str) -> &str {
        self.claims[name].as_str().unwrap_or_default()
    }

    fn jti(&self) -> String {
        self.claim("jti").to_owned()
    }

    fn kid(&self) -> anyhow::Result<String> {
        jsonwebtoken::decode_header(&self.raw)?
            .kid
            .context("token without kid")
    }

    fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            tenant_id: self.claim("cid"),
            jti: self.claim("jti"),
            sid: self.claim("sid"),
            client_id: self.claim("client_id"),
            iat: self.claims["iat"].as_i64().unwrap_or_default(),
        }
    }
}

/// Gets a token for ARCHIVE in `acme` over gRPC.
async fn issue(server: &TestServer, (id, secret): Credentials<'_>) -> anyhow::Result<Token> {
    Token::parse(
        server
            .issue(TENANT, id, secret, ARCHIVE, &[])
            .await?
            .access_token,
    )
}

/// `Ok(false)` while a call still succeeds, `Ok(true)` once it fails with exactly
/// `expected` (gRPC code and `ErrorInfo.reason`); any other failure is an error.
fn refused<T>(result: Result<T, tonic::Status>, expected: (Code, &str)) -> anyhow::Result<bool> {
    match result {
        Ok(_) => Ok(false),
        Err(status) if reason(&status) == (expected.0, expected.1.to_owned()) => Ok(true),
        Err(status) => bail!(
            "expected {expected:?}, got {:?}: {}",
            reason(&status),
            status.message()
        ),
    }
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?)
}

/// POSTs a form to `/t/acme/oauth/<endpoint>` of `server` with Basic authentication.
async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    endpoint: &str,
    (id, secret): Credentials<'_>,
    form: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    Ok(client
        .post(format!("{}/t/{TENANT}/oauth/{endpoint}", server.http_url))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await?)
}

const TOKEN_FORM: &[(&str, &str)] = &[("grant_type", "client_credentials"), ("audience", ARCHIVE)];

/// RFC 7009 revocation over HTTP; asserts the empty 200.
async fn revoke_http(
    server: &TestServer,
    caller: Credentials<'_>,
    token: &str,
) -> anyhow::Result<()> {
    let response = post(&http()?, server, "revoke", caller, &[("token", token)]).await?;
    assert_eq!(response.status(), 200, "RFC 7009 revocation refused");
    assert_eq!(response.text().await?, "");
    Ok(())
}

/// What introspection said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Introspection {
    /// `active: true`, with the token's `jti`.
    Active(String),
    /// Exactly `{"active": false}` (gRPC: the empty response).
    Inactive,
    /// HTTP 503 `temporarily_unavailable` with `Retry-After: 1`, or gRPC UNAVAILABLE with
    /// reason `unavailable`: the revocation state could not be read, and the check failed
    /// closed.
    Unavailable,
}

/// RFC 7662 introspection over HTTP, by the resource server's app.
async fn introspect_http(
    server: &TestServer,
    caller: Credentials<'_>,
    token: &str,
) -> anyhow::Result<Introspection> {
    let response = post(&http()?, server, "introspect", caller, &[("token", token)]).await?;
    let status = response.status().as_u16();
    let retry_after = retry_after(&response);
    let body: Value = response.json().await?;
    match status {
        200 if body == json!({"active": false}) => Ok(Introspection::Inactive),
        200 if body["active"] == true => Ok(Introspection::Active(
            body["jti"]
                .as_str()
                .context("active without jti")?
                .to_owned(),
        )),
        503 => {
            assert_eq!(
                body,
                json!({
                    "error": "temporarily_unavailable",
                    "error_description": "the service is temporarily unavailable; retry later",
                })
            );
            assert_eq!(retry_after.as_deref(), Some("1"));
            Ok(Introspection::Unavailable)
        }
        _ => bail!(
            "introspection on {} answered {status}: {body}",
            server.http_url
        ),
    }
}

/// `TokenService/IntrospectToken`, by the resource server's app.
async fn introspect_grpc(
    server: &TestServer,
    (id, secret): Credentials<'_>,
    token: &str,
) -> anyhow::Result<Introspection> {
    let answer = server
        .tokens()
        .introspect_token(IntrospectTokenRequest {
            tenant: TENANT.to_owned(),
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
            token: token.to_owned(),
        })
        .await;
    match answer {
        Ok(response) => {
            let response = response.into_inner();
            if response.active {
                Ok(Introspection::Active(response.jti))
            } else {
                assert_eq!(response, IntrospectTokenResponse::default());
                Ok(Introspection::Inactive)
            }
        }
        Err(status) if reason(&status) == (Code::Unavailable, "unavailable".to_owned()) => {
            Ok(Introspection::Unavailable)
        }
        Err(status) => bail!(
            "gRPC introspection on {} failed: {:?} {}",
            server.grpc_url,
            reason(&status),
            status.message()
        ),
    }
}

/// Whether a token introspected inactive; 503/UNAVAILABLE is an error (Redis is up).
fn is_inactive(outcome: Introspection) -> anyhow::Result<bool> {
    match outcome {
        Introspection::Inactive => Ok(true),
        Introspection::Active(_) => Ok(false),
        Introspection::Unavailable => {
            bail!("introspection answered 503/UNAVAILABLE while Redis is up")
        }
    }
}

type Authed = InterceptedService<Channel, BearerAuth>;

async fn revocation_client(
    server: &TestServer,
    admin: &AdminCredentials,
) -> anyhow::Result<RevocationServiceClient<Authed>> {
    let token = server.admin_token_for(admin).await?;
    Ok(RevocationServiceClient::with_interceptor(
        server.channel(),
        BearerAuth::new(&token)?,
    ))
}

async fn list_keys(
    server: &TestServer,
    admin: &AdminCredentials,
    tenant: &str,
) -> anyhow::Result<Vec<SigningKeyInfo>> {
    let token = server.admin_token_for(admin).await?;
    let mut keys = KeyServiceClient::with_interceptor(server.channel(), BearerAuth::new(&token)?);
    Ok(keys
        .list_keys(ListKeysRequest {
            tenant: tenant.to_owned(),
        })
        .await?
        .into_inner()
        .keys)
}

// ---------------------------------------------------------------------------------------------
// 1. Revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_holds_on_the_others() -> anyhow::Result<()> {
    const TEST: &str = "revocation_on_one_instance_holds_on_the_others";
    if !backends_or_skip(TEST) {
        return Ok(());
    }
    let cluster = Cluster::start(3).await?;
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let fixture = Fixture::new(a, TENANT).await?;
    let app = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    // The archive API's own app: a grant without scopes on it entitles it to introspect.
    let (resource_id, resource_secret) = fixture
        .create_app("archive-api", vec![grant(ARCHIVE, &[])])
        .await?;
    let resource = (resource_id.as_str(), resource_secret.as_str());

    // One token, revoked over HTTP (RFC 7009) on A by the app it was issued to.
    let token = issue(a, app).await?;
    for node in [a, b, c] {
        assert_eq!(
            introspect_http(node, resource, &token.raw).await?,
            Introspection::Active(token.jti())
        );
    }
    revoke_http(a, app, &token.raw).await?;
    let since = Instant::now();
    let raw = token.raw.as_str();
    let latency = within_a_second(since, || async move {
        is_inactive(introspect_http(b, resource, raw).await?)
    })
    .await?;
    seen(
        TEST,
        "RFC 7009 revocation on A -> inactive on B (HTTP introspection)",
        latency,
        WITHIN,
    );
    let latency = within_a_second(since, || async move {
        is_inactive(introspect_grpc(c, resource, raw).await?)
    })
    .await?;
    seen(
        TEST,
        "RFC 7009 revocation on A -> inactive on C (gRPC introspection)",
        latency,
        WITHIN,
    );
    assert_eq!(
        introspect_http(a, resource, raw).await?,
        Introspection::Inactive
    );

    // Every token of the app, revoked with RevocationService/RevokeTokens on A; the tokens
    // were issued by different instances.
    let from_a = issue(a, app).await?;
    let from_b = issue(b, app).await?;
    for node in [b, c] {
        for token in [&from_a, &from_b] {
            assert_eq!(
                introspect_http(node, resource, &token.raw).await?,
                Introspection::Active(token.jti())
            );
        }
    }
    revocation_client(a, &fixture.admin)
        .await?
        .revoke_tokens(RevokeTokensRequest {
            tenant: TENANT.to_owned(),
            target: Some(Target::ClientId(fixture.client_id.clone())),
        })
        .await?;
    let since = Instant::now();
    let (first, second) = (from_a.raw.as_str(), from_b.raw.as_str());
    for (node, name) in [(b, "B"), (c, "C")] {
        let latency = within_a_second(since, || async move {
            Ok(is_inactive(introspect_http(node, resource, first).await?)?
                && is_inactive(introspect_http(node, resource, second).await?)?)
        })
        .await?;
        seen(
            TEST,
            &format!("RevokeTokens(client_id) on A -> both tokens inactive on {name}"),
            latency,
            WITHIN,
        );
    }

    // The cut-off covers tokens issued until then (its whole second), not the app's later
    // tokens: move the instances' shared clock past that second.
    a.clock.advance(Duration::from_secs(1));
    let later = issue(b, app).await?;
    for node in [a, b, c] {
        assert_eq!(
            introspect_http(node, resource, &later.raw).await?,
            Introspection::Active(later.jti())
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Blocking and grants

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_and_grant_changes_hold_on_the_other_instance() -> anyhow::Result<()> {
    const TEST: &str = "blocking_and_grant_changes_hold_on_the_other_instance";
    if !backends_or_skip(TEST) {
        return Ok(());
    }
    let cluster = Cluster::start(2).await?;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let fixture = Fixture::new(a, TENANT).await?;
    let (id, secret) = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let mut apps = fixture.admin_clients.apps.clone();
    let issue_on_b = |scopes: &'static [&'static str]| async move {
        b.issue(TENANT, id, secret, ARCHIVE, scopes).await
    };

    // B has the tenant cached: each change must reach a warm cache, not a cold load.
    assert_eq!(
        issue_on_b(&["archive:write"]).await?.scopes,
        ["archive:write"]
    );

    // Block on A: invalid_client on B.
    let blocked = apps
        .update_app(UpdateAppRequest {
            tenant: TENANT.to_owned(),
            client_id: id.to_owned(),
            blocked: Some(true),
            ..Default::default()
        })
        .await?
        .into_inner();
    let since = Instant::now();
    assert!(blocked.blocked);
    let latency = within_a_second(since, || async move {
        refused(
            issue_on_b(&[]).await,
            (Code::Unauthenticated, "invalid_client"),
        )
    })
    .await?;
    seen(TEST, "block on A -> invalid_client on B", latency, WITHIN);
    let response = post(&http()?, b, "token", (id, secret), TOKEN_FORM).await?;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await?,
        json!({"error": "invalid_client", "error_description": "client authentication failed"})
    );

    // Unblock on A: tokens again on B.
    apps.update_app(UpdateAppRequest {
        tenant: TENANT.to_owned(),
        client_id: id.to_owned(),
        blocked: Some(false),
        ..Default::default()
    })
    .await?;
    let since = Instant::now();
    let latency = within_a_second(since, || async move {
        match issue_on_b(&[]).await {
            Ok(token) => {
                assert_eq!(token.scopes, ["archive:read", "archive:write"]);
                Ok(true)
            }
            Err(status) => {
                refused(
                    Err::<(), _>(status),
                    (Code::Unauthenticated, "invalid_client"),
                )?;
                Ok(false)
            }
        }
    })
    .await?;
    seen(TEST, "unblock on A -> tokens again on B", latency, WITHIN);

    // Narrow the grant on A: invalid_scope on B for the scope taken away.
    apps.update_app(UpdateAppRequest {
        tenant: TENANT.to_owned(),
        client_id: id.to_owned(),
        grants: Some(GrantList {
            grants: vec![grant(ARCHIVE, &["archive:read"])],
        }),
        ..Default::default()
    })
    .await?;
    let since = Instant::now();
    let latency = within_a_second(since, || async move {
        refused(
            issue_on_b(&["archive:write"]).await,
            (Code::PermissionDenied, "invalid_scope"),
        )
    })
    .await?;
    seen(
        TEST,
        "narrowed grant on A -> invalid_scope on B",
        latency,
        WITHIN,
    );
    assert_eq!(issue_on_b(&[]).await?.scopes, ["archive:read"]);

    // Delete the API on A: invalid_target on B.
    fixture
        .admin_clients
        .apis
        .clone()
        .delete_api(DeleteApiRequest {
            tenant: TENANT.to_owned(),
            identifier: ARCHIVE.to_owned(),
        })
        .await?;
    let since = Instant::now();
    let latency = within_a_second(since, || async move {
        refused(
            issue_on_b(&[]).await,
            (Code::InvalidArgument, "invalid_target"),
        )
    })
    .await?;
    seen(
        TEST,
        "deleted API on A -> invalid_target on B",
        latency,
        WITHIN,
    );
    let response = post(&http()?, b, "token", (id, secret), TOKEN_FORM).await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await?,
        json!({
            "error": "invalid_target",
            "error_description": format!("audience {ARCHIVE} is not an API of this tenant"),
        })
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Rate limits

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_is_shared_between_instances() -> anyhow::Result<()> {
    const TEST: &str = "rate_limit_is_shared_between_instances";
    /// The app's rate; its burst is twice that.
    const RATE: i64 = 5;
    const BURST: u32 = 10;
    const REQUESTS: usize = 40;
    if !backends_or_skip(TEST) {
        return Ok(());
    }
    let cluster = Cluster::start(2).await?;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let fixture = Fixture::new(a, TENANT).await?;
    let (id, secret) = (fixture.client_id.as_str(), fixture.client_secret.as_str());

    // B caches the tenant (through its admin app, which has a bucket of its own) with the
    // app's default limit; the new limit set on A must reach it.
    b.admin_token_for(&fixture.admin).await?;
    let updated = fixture
        .admin_clients
        .apps
        .clone()
        .update_app(UpdateAppRequest {
            tenant: TENANT.to_owned(),
            client_id: id.to_owned(),
            rate_limit_per_second: Some(RATE),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(updated.rate_limit_per_second, RATE);
    // The change holds on every instance within a second.
    tokio::time::sleep(WITHIN).await;

    // Alternate instances, and on each alternate HTTP and gRPC, as fast as one client goes.
    let client = http()?;
    let mut admitted = [0u32; 2];
    let mut denied = [0u32; 2];
    let started = Instant::now();
    for request in 0..REQUESTS {
        let (index, node) = if request % 2 == 0 { (0, a) } else { (1, b) };
        let over_http = (request / 2) % 2 == 0;
        let allowed = if over_http {
            let response = post(&client, node, "token", (id, secret), TOKEN_FORM).await?;
            match response.status().as_u16() {
                200 => true,
                429 => {
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned)
                    };
                    // One unit comes back every 200 ms: the wait rounds up to 1 s.
                    let retry_after: u64 = header("retry-after")
                        .context("429 without Retry-After")?
                        .parse()?;
                    assert_eq!(retry_after, 1, "Retry-After");
                    assert_eq!(header("ratelimit-limit").as_deref(), Some("10"));
                    assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
                    assert_eq!(
                        response.json::<Value>().await?,
                        json!({
                            "error": "temporarily_unavailable",
                            "error_description": "too many requests; retry later",
                        })
                    );
                    false
                }
                other => bail!("token request {request} answered {other}"),
            }
        } else {
            match node.issue(TENANT, id, secret, ARCHIVE, &[]).await {
                Ok(_) => true,
                Err(status) => {
                    assert_eq!(
                        reason(&status),
                        (Code::ResourceExhausted, "resource_exhausted".to_owned()),
                        "token request {request}: {}",
                        status.message()
                    );
                    let retry = status
                        .get_details_retry_info()
                        .and_then(|info| info.retry_delay)
                        .context("RESOURCE_EXHAUSTED without RetryInfo")?;
                    assert!(
                        !retry.is_zero() && retry <= Duration::from_millis(200),
                        "RetryInfo {retry:?}: one unit comes back every 200 ms"
                    );
                    false
                }
            }
        };
        if allowed {
            admitted[index] += 1;
        } else {
            denied[index] += 1;
        }
    }
    let elapsed = started.elapsed();
    let total = admitted[0] + admitted[1];
    // What one shared bucket admits: the burst, plus what refills while the requests run.
    let refilled = (elapsed.as_secs_f64() * RATE as f64).ceil() as u32;
    report(
        TEST,
        &format!(
            "{REQUESTS} requests alternating A/B in {} ms: {total} admitted (A {}, B {}), \
             {} denied; one shared bucket allows {BURST}..={}",
            elapsed.as_millis(),
            admitted[0],
            admitted[1],
            denied[0] + denied[1],
            BURST + refilled
        ),
    );
    assert!(
        elapsed < WITHIN,
        "{REQUESTS} requests took {elapsed:?}: too slow to tell one shared bucket from two"
    );
    assert!(
        (BURST..=BURST + refilled).contains(&total),
        "{total} of {REQUESTS} requests admitted in {elapsed:?} (A {}, B {}): one shared \
         bucket of {BURST} (+{refilled} refilled) allows {BURST}..={}; per-instance buckets \
         would allow about twice that",
        admitted[0],
        admitted[1],
        BURST + refilled
    );
    assert!(
        admitted[0] > 0 && admitted[1] > 0,
        "both instances admit from the same bucket: A {} B {}",
        admitted[0],
        admitted[1]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Scheduled key rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_rotation_happens_once_across_instances() -> anyhow::Result<()> {
    const TEST: &str = "scheduled_rotation_happens_once_across_instances";
    /// The rotation period: the test moves the instances' shared clock this far on instead
    /// of waiting, and a second rotation would need it moved as far again.
    const PERIOD: Duration = Duration::from_secs(15);
    /// How long the rotating instances keep looking after the rotation: each looks every
    /// second.
    const SETTLE: Duration = Duration::from_secs(3);
    const REPORTS: &str = "https://reports.example.com/";
    if !backends_or_skip(TEST) {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    // The observer bootstraps the database and never rotates on schedule.
    let observer = first_node(
        &redis,
        TestOptions {
            key_rotation_period: "0".to_owned(),
            ..Default::default()
        },
    )
    .await?;

    // Three tenants: the system tenant (ES256), orbit (EdDSA), and zenith, whose ring holds
    // ES256 and RS256 (an API signs with RS256).
    let orbit = Fixture::with_alg(&observer, "orbit", "EdDSA").await?;
    let zenith = Fixture::new(&observer, "zenith").await?;
    let mut zenith_admin = zenith.admin_clients.apis.clone();
    zenith_admin
        .create_api(CreateApiRequest {
            tenant: "zenith".to_owned(),
            name: "Reports".to_owned(),
            identifier: REPORTS.to_owned(),
            scopes: scopes(&["reports:read"]),
            token_lifetime_seconds: 300,
            signing_alg: "RS256".to_owned(),
        })
        .await?;
    zenith
        .admin_clients
        .apps
        .clone()
        .update_app(UpdateAppRequest {
            tenant: "zenith".to_owned(),
            client_id: zenith.client_id.clone(),
            grants: Some(GrantList {
                grants: vec![
                    grant(ARCHIVE, &["archive:read"]),
                    grant(REPORTS, &["reports:read"]),
                ],
            }),
            ..Default::default()
        })
        .await?;
    let tenants: [(&str, &AdminCredentials, &[&str]); 3] = [
        ("system", &observer.admin, &["ES256"]),
        ("orbit", &orbit.admin, &["EdDSA"]),
        ("zenith", &zenith.admin, &["ES256", "RS256"]),
    ];
    let mut before = Vec::new();
    for (tenant, admin, algorithms) in tenants {
        let keys = list_keys(&observer, admin, tenant).await?;
        let mut held: Vec<&str> = keys.iter().map(|key| key.alg.as_str()).collect();
        held.sort_unstable();
        assert_eq!(held, algorithms, "{tenant}: keys before the rotation");
        assert!(keys.iter().all(|key| key.state == "active"), "{keys:?}");
        before.push(keys);
    }

    // Three instances rotate on schedule, looking every second.
    let rotating = join_nodes(
        &observer,
        &redis,
        3,
        TestOptions {
            key_rotation_period: format!("{}s", PERIOD.as_secs()),
            key_rotation_check_seconds: 1,
            key_propagation_seconds: 0,
            ..Default::default()
        },
    )
    .await?;
    let started = Instant::now();

    // Every tenant is due PERIOD after its creation: move the instances' shared clock that far
    // on, once all three look, and wait until each has been rotated (by the next look, within
    // a second).
    observer.clock.advance(PERIOD);
    let mut first_rotation: Option<Instant> = None;
    let mut rotated = false;
    for _ in 0..(Duration::from_secs(15).as_millis() / POLL.as_millis()) {
        let mut pending = 0;
        for ((tenant, admin, _), old) in tenants.iter().zip(&before) {
            let keys = list_keys(&observer, admin, tenant).await?;
            if keys.len() > old.len() {
                first_rotation.get_or_insert_with(Instant::now);
            } else {
                pending += 1;
            }
        }
        if pending == 0 {
            rotated = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(
        rotated,
        "not every tenant was rotated within {:?}",
        started.elapsed()
    );
    let first_rotation = first_rotation.unwrap_or_else(Instant::now);
    report(
        TEST,
        &format!(
            "every tenant rotated {} ms after the rotating instances started",
            started.elapsed().as_millis()
        ),
    );

    // The new keys, by tenant and algorithm.
    let mut new_kids = Vec::new();
    for ((tenant, admin, _), old) in tenants.iter().zip(&before) {
        let keys = list_keys(&observer, admin, tenant).await?;
        let old: BTreeSet<&str> = old.iter().map(|key| key.kid.as_str()).collect();
        new_kids.push(
            keys.into_iter()
                .filter(|key| !old.contains(key.kid.as_str()))
                .map(|key| (key.alg, key.kid))
                .collect::<Vec<_>>(),
        );
    }
    let new_kid = |tenant: usize, alg: &str| -> String {
        new_kids[tenant]
            .iter()
            .find(|(key_alg, _)| key_alg == alg)
            .map(|(_, kid)| kid.clone())
            .unwrap_or_default()
    };

    // Every instance signs with the new keys (the propagation delay is 0).
    let since = Instant::now();
    let observer_and_rotating: Vec<&TestServer> =
        std::iter::once(&observer).chain(&rotating).collect();
    for (index, node) in observer_and_rotating.iter().enumerate() {
        let cases = [
            ("orbit", &orbit, ARCHIVE, new_kid(1, "EdDSA")),
            ("zenith", &zenith, ARCHIVE, new_kid(2, "ES256")),
            ("zenith", &zenith, REPORTS, new_kid(2, "RS256")),
        ];
        for (tenant, fixture, audience, expected) in cases {
            let latency = within_a_second(since, || {
                let expected = expected.clone();
                async move {
                    let token = node
                        .issue(
                            tenant,
                            &fixture.client_id,
                            &fixture.client_secret,
                            audience,
                            &[],
                        )
                        .await?;
                    Ok(Token::parse(token.access_token)?.kid()? == expected)
                }
            })
            .await?;
            seen(
                TEST,
                &format!("instance {index} signs {tenant} {audience} with the new key"),
                latency,
                WITHIN,
            );
        }
    }

    // Let every rotating instance look again several times, then stop them: a stop waits for
    // a look in progress, so every look they made is over.
    tokio::time::sleep(SETTLE).await;
    for node in rotating {
        node.stop().await?;
    }
    assert!(
        first_rotation.elapsed() < PERIOD - Duration::from_secs(2),
        "the test took {:?} after the first rotation: a second, legitimate rotation may have \
         started; cannot tell one rotation from two",
        first_rotation.elapsed()
    );

    // Exactly one new key per algorithm of each ring; the keys it replaces are retiring.
    for (((tenant, admin, algorithms), old), new) in tenants.iter().zip(&before).zip(&new_kids) {
        let keys = list_keys(&observer, admin, tenant).await?;
        let mut new_algorithms: Vec<&str> = new.iter().map(|(alg, _)| alg.as_str()).collect();
        new_algorithms.sort_unstable();
        assert_eq!(
            new_algorithms, *algorithms,
            "{tenant}: new keys after three instances looked for due rotations: {keys:?}"
        );
        assert_eq!(
            keys.len(),
            old.len() + algorithms.len(),
            "{tenant}: {keys:?}"
        );
        for key in &keys {
            let is_new = new.iter().any(|(_, kid)| *kid == key.kid);
            if is_new {
                assert_eq!(key.state, "active", "{tenant}: new key {key:?}");
                assert!(key.retire_time.is_none() && key.remove_time.is_none());
            } else {
                assert_eq!(key.state, "retiring", "{tenant}: replaced key {key:?}");
                assert!(key.retire_time.is_some() && key.remove_time.is_some());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Redis restarted empty

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_loses_no_revocation_or_block() -> anyhow::Result<()> {
    const TEST: &str = "redis_restarted_empty_loses_no_revocation_or_block";
    if !backends_or_skip(TEST) {
        return Ok(());
    }
    let mut cluster = Cluster::start(2).await?;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let fixture = Fixture::new(a, TENANT).await?;
    let app = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    // The archive API's own app: a grant without scopes on it entitles it to introspect.
    let (resource_id, resource_secret) = fixture
        .create_app("archive-api", vec![grant(ARCHIVE, &[])])
        .await?;
    let resource = (resource_id.as_str(), resource_secret.as_str());
    let (victim_id, victim_secret) = fixture
        .create_app("victim", vec![grant(ARCHIVE, &["archive:read"])])
        .await?;
    let victim = (victim_id.as_str(), victim_secret.as_str());

    // Before the outage: a revoked token, a live one, a blocked app whose tokens were revoked
    // with the block, and a token to revoke during the outage.
    let revoked = issue(a, app).await?;
    assert_eq!(
        introspect_http(b, resource, &revoked.raw).await?,
        Introspection::Active(revoked.jti())
    );
    revoke_http(a, app, &revoked.raw).await?;
    let since = Instant::now();
    let raw = revoked.raw.as_str();
    let latency = within_a_second(since, || async move {
        is_inactive(introspect_http(b, resource, raw).await?)
    })
    .await?;
    seen(
        TEST,
        "RFC 7009 revocation on A -> inactive on B",
        latency,
        WITHIN,
    );

    let victim_token = issue(b, victim).await?;
    fixture
        .admin_clients
        .apps
        .clone()
        .update_app(UpdateAppRequest {
            tenant: TENANT.to_owned(),
            client_id: victim_id.clone(),
            blocked: Some(true),
            revoke_tokens: true,
            ..Default::default()
        })
        .await?;
    let since = Instant::now();
    let victim_raw = victim_token.raw.as_str();
    let latency = within_a_second(since, || async move {
        Ok(refused(
            issue(b, victim).await.map_err(to_status),
            (Code::Unauthenticated, "invalid_client"),
        )? && is_inactive(introspect_http(b, resource, victim_raw).await?)?)
    })
    .await?;
    seen(
        TEST,
        "block with revoke_tokens on A -> invalid_client and token inactive on B",
        latency,
        WITHIN,
    );
    // Past the block's cut-off second (the instances share one clock).
    a.clock.advance(Duration::from_secs(1));
    let live = issue(b, app).await?;
    let doomed = issue(a, app).await?;
    for node in [a, b] {
        for token in [&live, &doomed] {
            assert_eq!(
                introspect_http(node, resource, &token.raw).await?,
                Introspection::Active(token.jti())
            );
        }
    }

    // Redis dies (SIGKILL: nothing saved).
    cluster.redis.kill()?;
    // Introspection fails closed: 503 / UNAVAILABLE for every token, revoked or not; never
    // active.
    for (node, name) in [(a, "A"), (b, "B")] {
        for (token, what) in [
            (&revoked, "revoked"),
            (&victim_token, "blocked app's"),
            (&live, "live"),
            (&doomed, "doomed"),
        ] {
            assert_eq!(
                introspect_http(node, resource, &token.raw).await?,
                Introspection::Unavailable,
                "{what} token on {name} while Redis is down (HTTP)"
            );
        }
        assert_eq!(
            introspect_grpc(node, resource, &revoked.raw).await?,
            Introspection::Unavailable,
            "revoked token on {name} while Redis is down (gRPC)"
        );
        // The block holds: it lives in the database and each instance's catalog.
        assert!(
            refused(
                issue(node, victim).await.map_err(to_status),
                (Code::Unauthenticated, "invalid_client")
            )?,
            "blocked app got a token on {name} while Redis is down"
        );
    }
    // Tokens are still issued (rate limits fall back to per-instance buckets).
    let during = issue(b, app).await?;
    // A revocation during the outage reaches the database; Redis gets it on repopulation.
    revoke_http(a, app, &doomed.raw).await?;

    // Redis comes back empty, on the same port.
    cluster.redis.restart_empty().await?;
    let restarted = Instant::now();
    let latency = within(
        restarted,
        RECOVERY,
        Duration::from_millis(100),
        || async move {
            let mut answered = true;
            for node in [a, b] {
                match introspect_http(node, resource, raw).await? {
                    Introspection::Inactive => {}
                    Introspection::Unavailable => answered = false,
                    Introspection::Active(_) => {
                        bail!("the revoked token is active after Redis restarted empty")
                    }
                }
            }
            Ok(answered)
        },
    )
    .await?;
    seen(
        TEST,
        "Redis restarted empty -> introspection answers again on A and B",
        latency,
        RECOVERY,
    );
    for (node, name) in [(a, "A"), (b, "B")] {
        for (token, expected) in [
            (&revoked, Introspection::Inactive),
            (&victim_token, Introspection::Inactive),
            (&doomed, Introspection::Inactive),
            (&live, Introspection::Active(live.jti())),
            (&during, Introspection::Active(during.jti())),
        ] {
            assert_eq!(
                introspect_http(node, resource, &token.raw).await?,
                expected,
                "token {} on {name} after the restart",
                token.jti()
            );
        }
        assert_eq!(
            introspect_grpc(node, resource, &doomed.raw).await?,
            Introspection::Inactive
        );
        assert!(
            refused(
                issue(node, victim).await.map_err(to_status),
                (Code::Unauthenticated, "invalid_client")
            )?,
            "blocked app got a token on {name} after the restart"
        );
    }

    // Both instances subscribe to change notifications again.
    let redis = &cluster.redis;
    let latency = within(
        restarted,
        RECOVERY,
        Duration::from_millis(100),
        || async move { Ok(redis.subscribers(CHANGES_CHANNEL).await? == 2) },
    )
    .await?;
    seen(
        TEST,
        "Redis restarted empty -> both instances subscribed again",
        latency,
        RECOVERY,
    );

    // The new Redis holds the revocations again, copied from the database, the one made
    // during the outage included.
    let state = SharedState::connect_redis(&redis.url()).await?;
    let state = &state;
    let latency = within(
        restarted,
        RECOVERY,
        Duration::from_millis(100),
        || async move { Ok(state.is_populated().await?) },
    )
    .await?;
    seen(
        TEST,
        "Redis restarted empty -> revocations copied back from the database",
        latency,
        RECOVERY,
    );
    for (token, expected) in [
        (&revoked, RevocationStatus::Revoked),
        (&doomed, RevocationStatus::Revoked),
        (&victim_token, RevocationStatus::Revoked),
        (&live, RevocationStatus::NotRevoked),
        (&during, RevocationStatus::NotRevoked),
    ] {
        assert_eq!(
            state.revocation_status(&token.facts()).await?,
            expected,
            "token {} in the new Redis",
            token.jti()
        );
    }

    // A new revocation on A holds on B within a second again.
    let fresh = issue(a, app).await?;
    assert_eq!(
        introspect_http(b, resource, &fresh.raw).await?,
        Introspection::Active(fresh.jti())
    );
    revocation_client(a, &fixture.admin)
        .await?
        .revoke_tokens(RevokeTokensRequest {
            tenant: TENANT.to_owned(),
            target: Some(Target::Jti(fresh.jti())),
        })
        .await?;
    let since = Instant::now();
    let fresh_raw = fresh.raw.as_str();
    let latency = within_a_second(since, || async move {
        is_inactive(introspect_http(b, resource, fresh_raw).await?)
    })
    .await?;
    seen(
        TEST,
        "after the restart: RevokeTokens(jti) on A -> inactive on B",
        latency,
        WITHIN,
    );

    // And a configuration change too: unblock on A, tokens again on B.
    fixture
        .admin_clients
        .apps
        .clone()
        .update_app(UpdateAppRequest {
            tenant: TENANT.to_owned(),
            client_id: victim_id.clone(),
            blocked: Some(false),
            ..Default::default()
        })
        .await?;
    let since = Instant::now();
    let latency = within_a_second(since, || async move {
        match b.issue(TENANT, victim.0, victim.1, ARCHIVE, &[]).await {
            Ok(_) => Ok(true),
            Err(status) => {
                refused(
                    Err::<(), _>(status),
                    (Code::Unauthenticated, "invalid_client"),
                )?;
                Ok(false)
            }
        }
    })
    .await?;
    seen(
        TEST,
        "after the restart: unblock on A -> tokens again on B",
        latency,
        WITHIN,
    );
    Ok(())
}

/// The gRPC status inside an [`issue`] error (a JWT parse error cannot happen after a
/// successful call, and reads as INTERNAL).
fn to_status(error: anyhow::Error) -> tonic::Status {
    match error.downcast::<tonic::Status>() {
        Ok(status) => status,
        Err(error) => tonic::Status::internal(error.to_string()),
    }
}
