//! `TokenService/WatchRevocations`: a resource server's app follows its tenant's
//! revocations as a stream: the snapshot first, then each revocation within a second, from
//! any instance; open watches do not hold up shutdown.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tollgate_proto::v1::revocation_service_client::RevocationServiceClient;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{
    RevokeTokenRequest, RevokeTokensRequest, WatchRevocationsRequest, WatchRevocationsResponse,
};
use tollgate_testkit::{BearerAuth, RedisServer, TestOptions, TestServer};
use tollgate_verify::unverified_claim;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::fixtures::{ARCHIVE, Fixture, reason};

crate::backend_tests!(
    watch_sees_the_snapshot_then_each_revocation,
    watch_needs_an_app_of_the_tenant,
);

async fn watch(
    channel: Channel,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> Result<Streaming<WatchRevocationsResponse>, tonic::Status> {
    TokenServiceClient::new(channel)
        .watch_revocations(WatchRevocationsRequest {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The next message that carries revocations (heartbeats skipped), within `within`.
async fn next_revocations(
    stream: &mut Streaming<WatchRevocationsResponse>,
    within: Duration,
) -> anyhow::Result<WatchRevocationsResponse> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, stream.message())
            .await
            .context("no revocation in time")??
            .context("the stream ended")?;
        if message.is_snapshot || !message.revocations.is_empty() {
            return Ok(message);
        }
    }
}

fn kinds(message: &WatchRevocationsResponse) -> Vec<(String, String)> {
    message
        .revocations
        .iter()
        .map(|entry| (entry.kind.clone(), entry.value.clone()))
        .collect()
}

async fn watch_sees_the_snapshot_then_each_revocation(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let token = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token;
    let jti = unverified_claim(&token, "jti").context("no jti")?;

    let mut stream = watch(
        server.channel(),
        "acme",
        &fixture.client_id,
        &fixture.client_secret,
    )
    .await?;
    let first = next_revocations(&mut stream, Duration::from_secs(5)).await?;
    assert!(first.is_snapshot);
    assert!(first.revocations.is_empty());
    assert_eq!(first.heartbeat_seconds, 5);

    // The app revokes its token (RFC 7009): on the stream within a second.
    let started = Instant::now();
    server
        .tokens()
        .revoke_token(RevokeTokenRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            client_secret: fixture.client_secret.clone(),
            token: token.clone(),
        })
        .await?;
    let message = next_revocations(&mut stream, Duration::from_secs(1)).await?;
    eprintln!(
        "watch: RFC 7009 revocation seen after {:?}",
        started.elapsed()
    );
    assert!(!message.is_snapshot);
    assert_eq!(kinds(&message), [("jti".to_owned(), jti.clone())]);
    assert_eq!(message.revocations[0].tenant_id, fixture.tenant_id);

    // An admin revokes every token of the app.
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    RevocationServiceClient::with_interceptor(server.channel(), BearerAuth::new(&admin_token)?)
        .revoke_tokens(RevokeTokensRequest {
            tenant: "acme".to_owned(),
            target: Some(Target::ClientId(fixture.client_id.clone())),
        })
        .await?;
    let message = next_revocations(&mut stream, Duration::from_secs(1)).await?;
    assert_eq!(
        kinds(&message),
        [("client".to_owned(), fixture.client_id.clone())]
    );
    let cut_off = message.revocations[0].revoked_at;
    // The cut-off covers the token issued before it.
    assert!(cut_off >= issued_at, "{cut_off} < {issued_at}");

    // Another tenant's revocations are not on this stream; a new watch starts from both.
    let other = Fixture::new(&server, "globex").await?;
    let other_token = server
        .issue(
            "globex",
            &other.client_id,
            &other.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token;
    server
        .tokens()
        .revoke_token(RevokeTokenRequest {
            tenant: "globex".to_owned(),
            client_id: other.client_id.clone(),
            client_secret: other.client_secret.clone(),
            token: other_token,
        })
        .await?;
    let mut again = watch(
        server.channel(),
        "acme",
        &fixture.client_id,
        &fixture.client_secret,
    )
    .await?;
    let snapshot = next_revocations(&mut again, Duration::from_secs(5)).await?;
    assert!(snapshot.is_snapshot);
    // Both were revoked in the same second: their order in the snapshot is not defined.
    let mut in_snapshot = kinds(&snapshot);
    in_snapshot.sort();
    assert_eq!(
        in_snapshot,
        [
            ("client".to_owned(), fixture.client_id.clone()),
            ("jti".to_owned(), jti),
        ]
    );
    if let Ok(Ok(Some(message))) =
        tokio::time::timeout(Duration::from_millis(500), stream.message()).await
    {
        assert!(message.revocations.is_empty(), "{message:?}");
    }

    // Open watches do not hold up a graceful stop.
    let started = Instant::now();
    server.stop().await?;
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

async fn watch_needs_an_app_of_the_tenant(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let other = Fixture::new(&server, "globex").await?;
    for (tenant, client_id, secret) in [
        ("acme", fixture.client_id.as_str(), "tgsec_wrong"),
        (
            "acme",
            other.client_id.as_str(),
            other.client_secret.as_str(),
        ),
        (
            "nosuch",
            fixture.client_id.as_str(),
            fixture.client_secret.as_str(),
        ),
    ] {
        let status = watch(server.channel(), tenant, client_id, secret)
            .await
            .err()
            .context("watch allowed")?;
        assert_eq!(
            reason(&status),
            (tonic::Code::Unauthenticated, "invalid_client".to_owned()),
            "{tenant} {client_id}"
        );
    }
    let status = watch(server.channel(), "Not A Tenant", "x", "y")
        .await
        .err()
        .context("watch allowed")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    Ok(())
}

/// With two instances on PostgreSQL and Redis, a watch on one sees a revocation made on the
/// other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_revocations_made_on_another_instance() -> anyhow::Result<()> {
    let test = "watch::watch_sees_revocations_made_on_another_instance";
    if tollgate_testkit::postgres_url_or_skip(test).is_none() {
        return Ok(());
    }
    if !RedisServer::is_installed() {
        if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            bail!("{test}: redis-server is not on PATH but TOLLGATE_REQUIRE_BACKENDS=1");
        }
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} — redis-server is not on PATH"
        );
        return Ok(());
    }
    // A Redis of its own: tests running in parallel would see each other's messages.
    let redis = RedisServer::start().await?;
    let redis_url = redis.url();
    let first = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        redis_url: Some(redis_url.clone()),
        ..Default::default()
    })
    .await?;
    let second = TestServer::start_with(TestOptions {
        backend: tollgate_testkit::Backend::Postgres,
        redis_url: Some(redis_url),
        join: Some(first.joined.clone()),
        ..Default::default()
    })
    .await?;
    let fixture = Fixture::new(&first, "acme").await?;
    let mut stream = watch(
        second.channel(),
        "acme",
        &fixture.client_id,
        &fixture.client_secret,
    )
    .await?;
    let snapshot = next_revocations(&mut stream, Duration::from_secs(5)).await?;
    assert!(snapshot.is_snapshot);
    let token = first
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token;
    let started = Instant::now();
    first
        .tokens()
        .revoke_token(RevokeTokenRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            client_secret: fixture.client_secret.clone(),
            token: token.clone(),
        })
        .await?;
    let message = next_revocations(&mut stream, Duration::from_secs(1)).await?;
    eprintln!(
        "watch: revocation on A seen by a watch on B after {:?}",
        started.elapsed()
    );
    let jti = unverified_claim(&token, "jti").context("no jti")?;
    if kinds(&message) != [("jti".to_owned(), jti)] {
        bail!("unexpected {message:?}");
    }
    second.stop().await?;
    first.stop().await?;
    Ok(())
}
