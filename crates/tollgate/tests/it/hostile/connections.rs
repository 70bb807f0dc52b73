//! Connection-level attacks on a `tollgate serve` process limited to 1,024 descriptors:
//! 1,100 idle connections (half-sent HTTP request heads, and gRPC connections that never
//! send the HTTP/2 preface), a slowloris request head, and a body announced as 16,000 bytes
//! and never finished. The listeners' timeouts are set short (a few seconds) so the test
//! sees them act.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Endpoint;

use super::process::ServeProcess;
use super::{Bounds, ms, report};
use crate::fixtures::{Fixture, post_archive_form};

/// The descriptors the server may have (`ulimit -n`, soft and hard).
const SERVER_OPEN_FILES: u32 = 1024;

/// Idle connections opened, half on each listener.
const IDLE_CONNECTIONS: usize = 1_100;

/// The request-head, body and preface timeouts the server is started with.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The idle keep-alive timeout the server is started with.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// What the test tolerates beyond a timeout before calling it missed (a debug build on a
/// busy machine).
const SLACK: Duration = Duration::from_secs(3);

/// How long the test waits for anything at most.
const PATIENCE: Duration = Duration::from_secs(20);

/// The settings that make the listeners' timeouts short.
fn short_timeouts() -> Vec<(&'static str, String)> {
    let seconds = |duration: Duration| duration.as_secs().to_string();
    vec![
        ("TOLLGATE_HEADER_TIMEOUT_SECONDS", seconds(TIMEOUT)),
        ("TOLLGATE_BODY_TIMEOUT_SECONDS", seconds(TIMEOUT)),
        ("TOLLGATE_PREFACE_TIMEOUT_SECONDS", seconds(TIMEOUT)),
        ("TOLLGATE_IDLE_TIMEOUT_SECONDS", seconds(IDLE_TIMEOUT)),
    ]
}

/// Makes sure this process may open the attack's connections and its own: raises the soft
/// descriptor limit to the hard one (with `prlimit`) when it is too low.
fn ensure_open_files(needed: u64) -> anyhow::Result<()> {
    let soft = || -> anyhow::Result<(u64, String)> {
        let limits = std::fs::read_to_string("/proc/self/limits")?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .context("no open-files limit")?
            .to_owned();
        let mut numbers = line.split_whitespace().skip(3);
        let soft = numbers.next().unwrap_or("0").parse().unwrap_or(u64::MAX);
        let hard = numbers.next().unwrap_or("unlimited").to_owned();
        Ok((soft, hard))
    };
    let (current, hard) = soft()?;
    if current >= needed {
        return Ok(());
    }
    let _ = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
    let (raised, _) = soft()?;
    if raised < needed {
        bail!("this test needs {needed} open files; the limit is {raised} (hard {hard})");
    }
    Ok(())
}

/// Reads from `stream` until the server closes it (end of stream or reset) or `deadline`;
/// returns when it was closed, and the first bytes it sent.
async fn wait_closed(mut stream: TcpStream, deadline: Instant) -> (Option<Instant>, Vec<u8>) {
    let mut first = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(Instant::now()), first),
            Ok(Ok(n)) => {
                if first.len() < 256 {
                    first.extend_from_slice(&buffer[..n.min(256 - first.len())]);
                }
            }
            Err(_) => return (None, first),
        }
    }
}

/// The first line the server sent, for reports.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or("nothing").trim().to_owned();
    if line.is_empty() {
        "nothing".to_owned()
    } else {
        line
    }
}

/// What one attempt at a token on a fresh connection came to.
enum Attempt {
    /// A token.
    Got,
    /// No token; worth another attempt.
    Failed,
    /// The attempt could not be made at all; nor can any other.
    Impossible,
}

/// Makes `attempt` every 100 ms until one gets a token, one cannot be made, or `deadline`
/// passes; returns how long the token took and how many attempts failed.
async fn retry_until<F, Fut>(deadline: Instant, mut attempt: F) -> (Option<Duration>, usize)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let started = Instant::now();
    let mut failures = 0;
    while Instant::now() < deadline {
        match attempt().await {
            Attempt::Got => return (Some(started.elapsed()), failures),
            Attempt::Impossible => return (None, failures),
            Attempt::Failed => {}
        }
        failures += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (None, failures)
}

/// Gets a token for the fixture's app over HTTP on a new connection, retrying until
/// `deadline`; returns how long it took and how many attempts failed.
async fn http_token_on_fresh_connection(
    http_url: &str,
    fixture: &Fixture,
    deadline: Instant,
) -> (Option<Duration>, usize) {
    let token_url = &format!("{http_url}/t/acme/oauth/token");
    retry_until(deadline, move || async move {
        let Ok(client) = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
        else {
            return Attempt::Impossible;
        };
        let answer = post_archive_form(
            &client,
            token_url,
            &fixture.client_id,
            &fixture.client_secret,
        )
        .await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            Attempt::Got
        } else {
            Attempt::Failed
        }
    })
    .await
}

/// Gets a token for the fixture's app over gRPC on a new connection, retrying until
/// `deadline`; returns how long it took and how many attempts failed.
async fn grpc_token_on_fresh_connection(
    grpc_url: &str,
    fixture: &Fixture,
    deadline: Instant,
) -> (Option<Duration>, usize) {
    retry_until(deadline, move || async move {
        let Ok(endpoint) = Endpoint::from_shared(grpc_url.to_owned()) else {
            return Attempt::Impossible;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5));
        let Ok(channel) = endpoint.connect().await else {
            return Attempt::Failed;
        };
        match TokenServiceClient::new(channel)
            .issue_token(fixture.archive_request())
            .await
        {
            Ok(_) => Attempt::Got,
            Err(_) => Attempt::Failed,
        }
    })
    .await
}

/// 1,100 idle connections on a server with 1,024 descriptors: token issuance over HTTP and
/// gRPC keeps answering on fresh connections, and the idle ones are closed by the
/// request-head and preface timeouts. Then a slowloris head, an unfinished body and a
/// silent gRPC connection are each closed after their timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_do_not_starve_the_server() -> anyhow::Result<()> {
    ensure_open_files(IDLE_CONNECTIONS as u64 + 500)?;
    let mut process = ServeProcess::start(&short_timeouts(), Some(SERVER_OPEN_FILES)).await?;
    let fixture = Fixture::new(&process.server, "acme").await?;
    let files_before = process.open_files()?;

    // The idle crowd.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut refused = 0;
    let opened_at = Instant::now();
    for index in 0..IDLE_CONNECTIONS {
        let (address, greeting): (&str, &[u8]) = if index % 2 == 0 {
            (
                &process.http_addr,
                b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            )
        } else {
            (&process.grpc_addr, b"")
        };
        let connected =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await;
        match connected {
            Ok(Ok(mut stream)) => {
                if !greeting.is_empty() && stream.write_all(greeting).await.is_err() {
                    refused += 1;
                    continue;
                }
                idle.push(stream);
            }
            _ => refused += 1,
        }
    }
    let opening = opened_at.elapsed();
    let files_under_attack = process.open_files().unwrap_or_default();

    // Fresh clients, while the crowd is there.
    let deadline = Instant::now() + PATIENCE;
    let (http_token, grpc_token) = tokio::join!(
        http_token_on_fresh_connection(&process.server.http_url, &fixture, deadline),
        grpc_token_on_fresh_connection(&process.server.grpc_url, &fixture, deadline),
    );

    // Does the server close the crowd?
    let deadline = opened_at + PATIENCE;
    let mut closers = tokio::task::JoinSet::new();
    for stream in idle {
        closers.spawn(wait_closed(stream, deadline));
    }
    let mut still_open = 0;
    let mut last_closed = Duration::ZERO;
    while let Some(joined) = closers.join_next().await {
        match joined.ok().and_then(|(closed, _)| closed) {
            Some(at) => last_closed = last_closed.max(at.duration_since(opened_at)),
            None => still_open += 1,
        }
    }
    let files_after = process.open_files().unwrap_or_default();
    report(&format!(
        "{IDLE_CONNECTIONS} idle connections on a {SERVER_OPEN_FILES}-descriptor server (opened in {}, {refused} refused): server files {files_before}→{files_under_attack}→{files_after}; fresh HTTP token after {:?} ({} failed attempts), fresh gRPC token after {:?} ({} failed attempts); idle closed by {} ({still_open} still open after {PATIENCE:?}); server running {}",
        ms(opening),
        http_token.0.map(ms),
        http_token.1,
        grpc_token.0.map(ms),
        grpc_token.1,
        ms(last_closed),
        process.is_running(),
    ));
    assert!(
        process.is_running(),
        "the server died: {}",
        process.log_tail()
    );
    let mut bounds = Bounds::default();
    let answered_within = TIMEOUT + SLACK;
    bounds.check(
        http_token.0.is_some_and(|took| took <= answered_within),
        || {
            format!(
                "HTTP token on a fresh connection: {:?} (at most {answered_within:?})",
                http_token.0
            )
        },
    );
    bounds.check(
        grpc_token.0.is_some_and(|took| took <= answered_within),
        || {
            format!(
                "gRPC token on a fresh connection: {:?} (at most {answered_within:?})",
                grpc_token.0
            )
        },
    );
    bounds.check(still_open == 0, || {
        format!("{still_open} idle connections the server left open for {PATIENCE:?}")
    });

    // One at a time now: slowloris, an unfinished body, a silent gRPC connection.
    let slowloris = tokio::spawn(slowloris(process.http_addr.clone()));
    let unfinished = tokio::spawn(unfinished_body(process.http_addr.clone()));
    let silent = tokio::spawn(silent_grpc(process.grpc_addr.clone()));
    let (slowloris, unfinished, silent) = (slowloris.await??, unfinished.await??, silent.await??);
    report(&format!(
        "slowloris (a byte every 300 ms) closed after {:?} having sent {} bytes, answered {:?}; unfinished 16,000-byte body closed after {:?}, answered {:?}; silent gRPC connection closed after {:?}",
        slowloris.0.map(ms),
        slowloris.2,
        slowloris.1,
        unfinished.0.map(ms),
        unfinished.1,
        silent.0.map(ms),
    ));
    bounds.check(
        slowloris.0.is_some_and(|took| took <= TIMEOUT + SLACK),
        || format!("slowloris kept its connection for {:?}", slowloris.0),
    );
    bounds.check(
        unfinished.0.is_some_and(|took| took <= TIMEOUT + SLACK),
        || {
            format!(
                "an unfinished body kept its connection for {:?}",
                unfinished.0
            )
        },
    );
    bounds.check(silent.0.is_some_and(|took| took <= TIMEOUT + SLACK), || {
        format!(
            "a connection without the HTTP/2 preface stayed open for {:?}",
            silent.0
        )
    });
    // And the server still answers.
    let still_answers = fixture.archive_token(&process.server).await;
    bounds.check(still_answers.is_ok(), || {
        format!("afterwards a token request was answered {still_answers:?}")
    });
    let stopped = process.stop().await;
    bounds.assert_all();
    stopped
}

/// Sends a request head one byte every 300 ms; returns when the server closed the
/// connection (after how long), what it answered and how many bytes were sent.
async fn slowloris(address: String) -> anyhow::Result<(Option<Duration>, String, usize)> {
    let stream = TcpStream::connect(&address).await?;
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let deadline = started + PATIENCE;
    let head = b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ";
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        tokio::select! {
            read = reader.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Ok((Some(started.elapsed()), first_line(&answer), sent)),
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                if writer.write_all(&[byte]).await.is_err() {
                    return Ok((Some(started.elapsed()), first_line(&answer), sent));
                }
                sent += 1;
            }
        }
        if Instant::now() >= deadline {
            return Ok((None, first_line(&answer), sent));
        }
    }
}

/// Sends a complete head announcing 16,000 bytes of body, then 100 of them and nothing
/// more; returns when the server closed the connection and what it answered.
async fn unfinished_body(address: String) -> anyhow::Result<(Option<Duration>, String)> {
    let mut stream = TcpStream::connect(&address).await?;
    stream
        .write_all(
            b"POST /t/acme/oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n",
        )
        .await?;
    stream.write_all(&[b'a'; 100]).await?;
    let started = Instant::now();
    let (closed, answer) = wait_closed(stream, started + PATIENCE).await;
    Ok((
        closed.map(|at| at.duration_since(started)),
        first_line(&answer),
    ))
}

/// Opens a gRPC connection and sends nothing; returns when the server closed it.
async fn silent_grpc(address: String) -> anyhow::Result<(Option<Duration>,)> {
    let stream = TcpStream::connect(&address).await?;
    let started = Instant::now();
    let (closed, _) = wait_closed(stream, started + PATIENCE).await;
    Ok((closed.map(|at| at.duration_since(started)),))
}
