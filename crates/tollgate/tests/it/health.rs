//! Health that follows the dependencies: `GET /healthz`, `GET /readyz` with its JSON body,
//! and gRPC health (`grpc.health.v1.Health/Check`) for the server as a whole and for every
//! service, on a healthy server and while the test's own `redis-server` or PostgreSQL
//! cluster is stopped and started again. Every wait polls with a deadline
//! ([`FLIP_WITHIN`]).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_testkit::{Backend, PostgresServer, RedisServer, StopMode, TestOptions, TestServer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::present_or_skip;

/// The longest readiness may take to follow a dependency down or up: one probe interval
/// (1 s) plus one probe timeout (1 s), plus the Redis client's reconnect and room for a
/// loaded machine.
const FLIP_WITHIN: Duration = Duration::from_secs(15);
/// The pause between two polls.
const POLL: Duration = Duration::from_millis(100);

/// Every service the server registers, and the server as a whole (`""`).
const SERVICES: [&str; 8] = [
    "",
    "tollgate.v1.TokenService",
    "tollgate.v1.TenantService",
    "tollgate.v1.ApiService",
    "tollgate.v1.AppService",
    "tollgate.v1.KeyService",
    "tollgate.v1.RevocationService",
    "tollgate.v1.AuditService",
];

/// `/readyz`'s status code and JSON body.
async fn readyz(server: &TestServer) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("{}/readyz", server.http_url))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// The gRPC health status of each of [`SERVICES`].
async fn grpc_statuses(server: &TestServer) -> anyhow::Result<Vec<ServingStatus>> {
    let mut client = HealthClient::new(server.channel());
    let mut statuses = Vec::new();
    for service in SERVICES {
        let response = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        statuses.push(response.into_inner().status());
    }
    Ok(statuses)
}

/// Polls until `/readyz` answers `status` with `body` and every gRPC status is `grpc`;
/// fails with the last answers after [`FLIP_WITHIN`].
async fn wait_for(
    server: &TestServer,
    status: u16,
    body: &Value,
    grpc: ServingStatus,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let http = readyz(server).await?;
        let statuses = grpc_statuses(server).await?;
        if http.0 == status && &http.1 == body && statuses.iter().all(|s| *s == grpc) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > FLIP_WITHIN {
            anyhow::bail!(
                "after {FLIP_WITHIN:?}: /readyz {} {}, gRPC {statuses:?}; wanted {status} {body}, {grpc:?}",
                http.0,
                http.1
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ready(redis: &str) -> Value {
    json!({"status": "ready", "checks": {"database": "up", "redis": redis, "draining": false}})
}

fn not_ready(database: &str, redis: &str) -> Value {
    json!({"status": "not ready", "checks": {"database": database, "redis": redis, "draining": false}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_server_is_alive_ready_and_serving() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let healthz = reqwest::get(format!("{}/healthz", server.http_url)).await?;
    assert_eq!(healthz.status().as_u16(), 200);
    assert_eq!(healthz.text().await?, "ok");
    wait_for(
        &server,
        200,
        &ready("not configured"),
        ServingStatus::Serving,
    )
    .await?;
    // An unknown service is NOT_FOUND, as the health protocol says, not SERVING.
    let unknown = HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: "tollgate.v1.NoSuchService".to_owned(),
        })
        .await;
    assert_eq!(
        unknown.map(|_| ()).map_err(|e| e.code()),
        Err(tonic::Code::NotFound)
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_down_and_up() -> anyhow::Result<()> {
    let missing = (!RedisServer::is_installed()).then_some("redis-server is not on PATH");
    if !present_or_skip("health", "readiness_follows_redis_down_and_up", missing) {
        return Ok(());
    }
    let mut redis = RedisServer::start().await?;
    let server = TestServer::start_with(TestOptions {
        redis_url: Some(redis.url()),
        ..Default::default()
    })
    .await?;
    wait_for(&server, 200, &ready("up"), ServingStatus::Serving).await?;

    redis.kill()?;
    let down = wait_for(
        &server,
        503,
        &not_ready("up", "down"),
        ServingStatus::NotServing,
    )
    .await?;
    // The process still serves: alive, only not ready.
    let healthz = reqwest::get(format!("{}/healthz", server.http_url)).await?;
    assert_eq!(healthz.status().as_u16(), 200);

    redis.restart_empty().await?;
    let up = wait_for(&server, 200, &ready("up"), ServingStatus::Serving).await?;
    eprintln!("health::readiness_follows_redis_down_and_up: down seen in {down:?}, up in {up:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgres_down_and_up() -> anyhow::Result<()> {
    let missing = PostgresServer::installed_bin()
        .is_none()
        .then_some("no PostgreSQL programs under /usr/lib/postgresql");
    if !present_or_skip("health", "readiness_follows_postgres_down_and_up", missing) {
        return Ok(());
    }
    let mut database = PostgresServer::start().await?;
    let server = TestServer::start_with(TestOptions {
        backend: Backend::Postgres,
        database_url: Some(database.url()),
        ..Default::default()
    })
    .await?;
    wait_for(
        &server,
        200,
        &ready("not configured"),
        ServingStatus::Serving,
    )
    .await?;

    database.stop(StopMode::Fast)?;
    let down = wait_for(
        &server,
        503,
        &not_ready("down", "not configured"),
        ServingStatus::NotServing,
    )
    .await?;

    database.start_again().await?;
    let up = wait_for(
        &server,
        200,
        &ready("not configured"),
        ServingStatus::Serving,
    )
    .await?;
    eprintln!(
        "health::readiness_follows_postgres_down_and_up: down seen in {down:?}, up in {up:?}"
    );
    server.stop().await
}
