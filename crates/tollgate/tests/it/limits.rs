//! Connection limits of both listeners, gRPC message limits and the modes of the files at
//! rest, against the real server with deadlines shortened to a second or two.
//!
//! Connections are raw TCP sockets here: a client library would finish what these leave
//! half done. Every wait is bounded.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::config::ConnectionArgs;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{CreateAppRequest, IssueTokenRequest, WatchRevocationsRequest};
use tollgate_testkit::{TestOptions, TestServer};

use crate::fixtures::{ARCHIVE, Fixture};

/// Deadlines of a second (idle: two, to tell it from the header timeout).
fn short_deadlines() -> TestOptions {
    TestOptions {
        connections: ConnectionArgs {
            header_timeout_seconds: 1,
            body_timeout_seconds: 1,
            idle_timeout_seconds: 2,
            preface_timeout_seconds: 1,
            ..ConnectionArgs::default()
        },
        ..TestOptions::default()
    }
}

/// `host:port` of a `http://host:port` URL.
fn address(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Reads until the server closes the connection, for at most `limit`; returns what arrived
/// and how long after `since` the connection closed.
async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<(String, Duration)> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let remaining = limit.checked_sub(since.elapsed()).unwrap_or(Duration::ZERO);
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Err(_) => bail!(
                "still open after {limit:?}, having received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => {
                return Ok((
                    String::from_utf8_lossy(&received).into_owned(),
                    since.elapsed(),
                ));
            }
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body, for at most five seconds.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .context("no content-length")?;
            if body.len() >= length {
                return Ok(text);
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(remaining, stream.read(&mut buffer))
            .await
            .context("no complete response within 5 s")??;
        if read == 0 {
            bail!("closed before a complete response: {text:?}");
        }
        received.extend_from_slice(&buffer[..read]);
    }
}

/// Whether the server has closed `stream` (after whatever it sent, such as its HTTP/2
/// SETTINGS), looking for at most 200 ms.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn assert_closed_between(elapsed: Duration, low: Duration, high: Duration, what: &str) {
    assert!(
        elapsed >= low && elapsed <= high,
        "{what}: closed after {elapsed:?}, expected between {low:?} and {high:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_http_header_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(short_deadlines()).await?;
    let http = address(&server.http_url);

    // Half a request head, then silence.
    let mut silent = TcpStream::connect(http).await?;
    let since = Instant::now();
    silent
        .write_all(b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: localhost\r\n")
        .await?;
    let (received, elapsed) = read_until_closed(&mut silent, since, Duration::from_secs(5)).await?;
    assert_eq!(received, "", "no answer to a head that never ended");
    assert_closed_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_secs(3),
        "half-sent head",
    );

    // A byte every 200 ms does not keep a head alive.
    let mut trickle = TcpStream::connect(http).await?;
    let since = Instant::now();
    let head = b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed_after = Some(since.elapsed());
            break;
        }
        if since.elapsed() > Duration::from_secs(6) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = match closed_after {
        Some(elapsed) => elapsed,
        None => {
            read_until_closed(&mut trickle, since, Duration::from_secs(6))
                .await?
                .1
        }
    };
    assert_closed_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_secs(4),
        "trickled head",
    );

    // The listener still serves.
    let healthz = reqwest::get(format!("{}/healthz", server.http_url)).await?;
    assert_eq!(healthz.status(), 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_body_is_cut_off_with_408() -> anyhow::Result<()> {
    let server = TestServer::start_with(short_deadlines()).await?;
    let mut stream = TcpStream::connect(address(&server.http_url)).await?;
    stream
        .write_all(
            b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n\
              grant_type=client_credentials&scope=",
        )
        .await?;
    let since = Instant::now();
    let (received, elapsed) = read_until_closed(&mut stream, since, Duration::from_secs(5)).await?;
    assert!(
        received.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{received}"
    );
    assert!(
        received.to_ascii_lowercase().contains("connection: close"),
        "{received}"
    );
    assert!(
        received.ends_with(
            r#"{"error":"invalid_request","error_description":"the request body did not arrive within 1 s"}"#
        ),
        "{received}"
    );
    assert_closed_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_secs(3),
        "unfinished body",
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(short_deadlines()).await?;
    let mut stream = TcpStream::connect(address(&server.http_url)).await?;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stream.write_all(request).await?;
    let first = read_response(&mut stream).await?;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");

    // Idle for longer than the header timeout (1 s) but less than the idle timeout (2 s):
    // the connection is kept, and serves a second request.
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    stream.write_all(request).await?;
    let second = read_response(&mut stream).await?;
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");

    let since = Instant::now();
    let (received, elapsed) = read_until_closed(&mut stream, since, Duration::from_secs(6)).await?;
    assert_eq!(received, "");
    assert_closed_between(
        elapsed,
        Duration::from_millis(1_800),
        Duration::from_secs(4),
        "idle keep-alive connection",
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_connection_without_its_preface_is_closed_after_the_preface_timeout()
-> anyhow::Result<()> {
    let server = TestServer::start_with(short_deadlines()).await?;
    let grpc = address(&server.grpc_url);

    // The server speaks first (its SETTINGS frame), then waits for the client's preface.
    let mut silent = TcpStream::connect(grpc).await?;
    let since = Instant::now();
    let (_, elapsed) = read_until_closed(&mut silent, since, Duration::from_secs(5)).await?;
    assert_closed_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_secs(3),
        "no preface",
    );

    // Most of the preface is not the preface.
    let mut partial = TcpStream::connect(grpc).await?;
    let since = Instant::now();
    partial.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").await?;
    let (_, elapsed) = read_until_closed(&mut partial, since, Duration::from_secs(5)).await?;
    assert_closed_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_secs(3),
        "partial preface",
    );

    // gRPC still answers.
    let fixture = Fixture::new(&server, "acme").await?;
    fixture.archive_token(&server).await?;
    server.stop().await
}

/// A server-streaming call counts as a request in flight for as long as it streams: the
/// idle timeout does not end a revocation watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_progress_outlives_the_idle_timeout() -> anyhow::Result<()> {
    let mut options = short_deadlines();
    options.connections.idle_timeout_seconds = 1;
    let server = TestServer::start_with(options).await?;
    let fixture = Fixture::new(&server, "acme").await?;
    let mut stream = server
        .tokens()
        .watch_revocations(WatchRevocationsRequest {
            tenant: "acme".to_owned(),
            client_id: fixture.client_id.clone(),
            client_secret: fixture.client_secret.clone(),
        })
        .await?
        .into_inner();
    let snapshot = stream.message().await?.context("no snapshot")?;
    assert!(snapshot.is_snapshot);

    let watching = Instant::now();
    let watch_for = Duration::from_millis(3_500);
    while let Some(remaining) = watch_for.checked_sub(watching.elapsed()) {
        match tokio::time::timeout(remaining, stream.message()).await {
            Err(_) => break,
            Ok(Ok(Some(_heartbeat))) => {}
            Ok(Ok(None)) => bail!("the watch ended after {:?}", watching.elapsed()),
            Ok(Err(status)) => bail!("the watch failed after {:?}: {status}", watching.elapsed()),
        }
    }
    server.stop().await
}

/// At the cap, idle connections (half-sent heads, missing prefaces) make room for new ones:
/// a client still gets its token at once, long before any header or preface timeout, and
/// only one idle connection per new one is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room() -> anyhow::Result<()> {
    const CAP: usize = 4;
    let server = TestServer::start_with(TestOptions {
        connections: ConnectionArgs {
            max_connections: Some(CAP),
            header_timeout_seconds: 30,
            preface_timeout_seconds: 30,
            ..ConnectionArgs::default()
        },
        ..TestOptions::default()
    })
    .await?;
    let fixture = Fixture::new(&server, "acme").await?;

    let mut http_idle = Vec::new();
    let mut grpc_idle = Vec::new();
    for _ in 0..CAP {
        let mut stream = TcpStream::connect(address(&server.http_url)).await?;
        stream
            .write_all(b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: localhost\r\n")
            .await?;
        http_idle.push(stream);
        grpc_idle.push(TcpStream::connect(address(&server.grpc_url)).await?);
        // Accepted in this order, so the first is the longest idle.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/t/acme/oauth/token", server.http_url))
        .basic_auth(&fixture.client_id, Some(&fixture.client_secret))
        .form(&[("grant_type", "client_credentials"), ("audience", ARCHIVE)])
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    assert_eq!(response.status(), 200, "{}", response.text().await?);
    let mut tokens = tokio::time::timeout(
        Duration::from_secs(5),
        TokenServiceClient::connect(server.grpc_url.clone()),
    )
    .await??;
    let issued = tokio::time::timeout(
        Duration::from_secs(5),
        tokens.issue_token(fixture.archive_request()),
    )
    .await??;
    assert!(!issued.into_inner().access_token.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The oldest idle connection of each listener made room; the others are still open.
    for (listener, idle) in [("HTTP", &mut http_idle), ("gRPC", &mut grpc_idle)] {
        let mut closed = Vec::new();
        for stream in idle.iter_mut() {
            closed.push(is_closed(stream).await);
        }
        assert_eq!(closed, [true, false, false, false], "{listener}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_grpc_message_is_resource_exhausted() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let fixture = Fixture::new(&server, "acme").await?;
    let request = |scopes: usize| IssueTokenRequest {
        scopes: (0..scopes).map(|index| format!("{index:01000}")).collect(),
        ..fixture.archive_request()
    };
    // About 66 KB: over TokenService's 64 KiB.
    let status = server
        .tokens()
        .issue_token(request(66))
        .await
        .err()
        .context("an oversized token request was answered")?;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // About 60 KB: decoded, and refused by the request's own limits.
    let status = server
        .tokens()
        .issue_token(request(60))
        .await
        .err()
        .context("60 scopes of 1000 characters were granted")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Management keeps 4 MiB: a 1 MiB request is decoded and judged by the service.
    let create = |description_bytes: usize| CreateAppRequest {
        tenant: "acme".to_owned(),
        name: "big".to_owned(),
        description: "d".repeat(description_bytes),
        grants: vec![],
    };
    let mut apps = fixture.admin_clients.apps.clone();
    // (The description is over its own limit: the service's refusal, not the decoder's.)
    let status = apps
        .create_app(create(1024 * 1024))
        .await
        .err()
        .context("an app with a 1 MiB description was created")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = apps
        .create_app(create(5 * 1024 * 1024))
        .await
        .err()
        .context("a 5 MiB management request was answered")?;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    server.stop().await
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{} is missing", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_database_files_are_private_from_the_first_start() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let dir = server.data_dir.clone();
    assert_eq!(mode(&dir)?, 0o700, "data dir");
    for name in [
        "tollgate.db",
        "tollgate.db-wal",
        "tollgate.db-shm",
        "master.key",
        "admin-credentials.json",
    ] {
        assert_eq!(mode(&dir.join(name))?, 0o600, "{name}");
    }
    server.stop().await
}

/// `tollgate migrate` on a data dir left open to others.
async fn migrate(dir: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("migrate")
        .env("TOLLGATE_DATA_DIR", dir)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env_remove("TOLLGATE_MASTER_KEY")
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "tollgate migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_data_dir_open_to_others_is_tightened() -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let key = dir.join("master.key");
    std::fs::write(&key, "not read by migrate")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;

    migrate(&dir).await?;
    assert_eq!(mode(&dir)?, 0o700, "data dir");
    assert_eq!(mode(&key)?, 0o600, "master.key");
    assert_eq!(mode(&dir.join("tollgate.db"))?, 0o600, "database");
    // A clean exit checkpoints: the database file alone holds every committed write.
    assert!(
        !dir.join("tollgate.db-wal").exists()
            || std::fs::metadata(dir.join("tollgate.db-wal"))?.len() == 0,
        "migrate left a non-empty WAL"
    );

    // Loosened again (a restore, a careless chmod), tightened at the next start.
    let database = dir.join("tollgate.db");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644))?;
    // A WAL left by the copy: created empty if there is none, never truncated (an
    // existing one may hold committed writes).
    let wal = dir.join("tollgate.db-wal");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .append(true)
        .open(&wal)?;
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666))?;
    migrate(&dir).await?;
    assert_eq!(mode(&dir)?, 0o700, "data dir");
    assert_eq!(mode(&database)?, 0o600, "database");
    if wal.exists() {
        assert_eq!(mode(&wal)?, 0o600, "WAL");
    }
    Ok(())
}
