//! The README walkthrough through the real `tollgate` binary: tenant → API → app → token,
//! then the token verified with a standard JWT library through the JWKS; and how the binary
//! behaves with closed pipes and at the wrong port.

use std::process::Output;

use anyhow::{Context, bail};
use serde_json::Value;
use tollgate_testkit::TestServer;

use crate::fixtures::{fetch_jwks, verify_with_jwks};

crate::backend_tests!(cli_walkthrough, cli_operating_access);

/// The `tollgate` binary with `args`, set up against `server` as the system admin
/// (credentials found in the data dir, as after `serve` on a fresh machine).
pub(crate) fn tollgate_command(server: &TestServer, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .args(args)
        .env("TOLLGATE_ENDPOINT", &server.grpc_url)
        .env("TOLLGATE_DATA_DIR", &server.data_dir)
        .env_remove("TOLLGATE_ADMIN_TENANT")
        .env_remove("TOLLGATE_ADMIN_CLIENT_ID")
        .env_remove("TOLLGATE_ADMIN_CLIENT_SECRET");
    command
}

/// Runs `tollgate` with `args` against `server`, as the system admin.
pub(crate) async fn tollgate(server: &TestServer, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tollgate_command(server, args).output().await?)
}

/// Runs `tollgate --output json` with `args` and parses what it printed; fails if it failed.
pub(crate) async fn json(server: &TestServer, args: &[&str]) -> anyhow::Result<Value> {
    let mut full = vec!["--output", "json"];
    full.extend_from_slice(args);
    let output = tollgate(server, &full).await?;
    if !output.status.success() {
        bail!(
            "tollgate {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "tollgate {args:?} printed no JSON: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn cli_walkthrough(server: TestServer) -> anyhow::Result<()> {
    let created = json(&server, &["tenant", "create", "acme"]).await?;
    assert_eq!(created["tenant"]["name"], "acme");
    assert!(
        created["admin"]["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("tgsec_"))
    );

    let api = json(
        &server,
        &[
            "api",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Archive",
            "--identifier",
            "https://archive.example.com/",
            "--scope",
            "archive:read",
            "--scope",
            "archive:write=Write archives",
            "--ttl",
            "600",
        ],
    )
    .await?;
    assert_eq!(api["identifier"], "https://archive.example.com/");
    assert_eq!(
        api["token_lifetime_seconds"], "600",
        "int64 is a JSON string in proto3 JSON"
    );
    assert_eq!(api["scopes"][1]["description"], "Write archives");

    let app = json(
        &server,
        &[
            "app",
            "create",
            "--tenant",
            "acme",
            "--name",
            "archiver",
            "--grant",
            "https://archive.example.com/=archive:read,archive:write",
        ],
    )
    .await?;
    let client_id = app["app"]["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    let client_secret = app["client_secret"]
        .as_str()
        .context("client_secret")?
        .to_owned();

    // The app's own credentials; text output is the token alone.
    let output = tollgate(
        &server,
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &client_secret,
            "--audience",
            "https://archive.example.com/",
            "--scope",
            "archive:read",
        ],
    )
    .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)?.trim().to_owned();
    let jwks = fetch_jwks(&server, "acme").await?;
    let (_, claims) = verify_with_jwks(
        &token,
        &jwks,
        "http://acme.hub.localhost:8080/",
        "https://archive.example.com/",
    )?;
    assert_eq!(claims["scope"], "archive:read");
    assert_eq!(claims["sub"], format!("{client_id}@client"));

    let listed = json(&server, &["app", "list", "--tenant", "acme"]).await?;
    assert_eq!(listed["apps"].as_array().map(Vec::len), Some(2));
    let blocked = json(
        &server,
        &[
            "app",
            "update",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--block",
        ],
    )
    .await?;
    assert_eq!(blocked["blocked"], true);

    // Errors: exit code 1 and the reason on stderr, never the secret.
    let denied = tollgate(
        &server,
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &client_secret,
            "--audience",
            "https://archive.example.com/",
        ],
    )
    .await?;
    assert_eq!(denied.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains(&client_secret), "secret printed: {stderr}");

    let deleted = tollgate(
        &server,
        &[
            "api",
            "delete",
            "--tenant",
            "acme",
            "--identifier",
            "https://archive.example.com/",
        ],
    )
    .await?;
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let missing = tollgate(
        &server,
        &[
            "api",
            "get",
            "--tenant",
            "acme",
            "--identifier",
            "https://archive.example.com/",
        ],
    )
    .await?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));
    Ok(())
}

/// A bad setting stops `serve` at start with a message naming it, and never echoes a secret.
#[tokio::test]
async fn invalid_configuration_names_the_setting() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let cases = [
        (
            "TOLLGATE_ISSUER_TEMPLATE",
            "https://hub.example.com/",
            "invalid TOLLGATE_ISSUER_TEMPLATE",
        ),
        (
            "TOLLGATE_MASTER_KEY",
            "c2VjcmV0LWJ1dC10b28tc2hvcnQ",
            "invalid TOLLGATE_MASTER_KEY",
        ),
        (
            "TOLLGATE_DATABASE_URL",
            "mysql://root:hunter2@localhost/db",
            "invalid TOLLGATE_DATABASE_URL",
        ),
        ("TOLLGATE_GRPC_ADDR", "not-an-address", "--grpc-addr"),
        (
            "TOLLGATE_JWKS_MAX_AGE",
            "0",
            "invalid TOLLGATE_JWKS_MAX_AGE",
        ),
    ];
    for (variable, value, expected) in cases {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("serve")
            .env("TOLLGATE_DATA_DIR", data_dir.path())
            .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
            .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
            .env(variable, value)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}: server started");
        assert!(stderr.contains(expected), "{variable}: {stderr}");
        if matches!(variable, "TOLLGATE_MASTER_KEY" | "TOLLGATE_DATABASE_URL") {
            assert!(
                !stderr.contains(value),
                "{variable}: value echoed: {stderr}"
            );
        }
    }
    Ok(())
}

/// The README's "Operating access" commands through the binary: the leaked-secret recipe,
/// revocation and introspection with an app's own credentials, blocking, key rotation.
async fn cli_operating_access(server: TestServer) -> anyhow::Result<()> {
    json(&server, &["tenant", "create", "acme"]).await?;
    json(
        &server,
        &[
            "api",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Archive",
            "--identifier",
            "https://archive.example.com/",
            "--scope",
            "archive:read",
        ],
    )
    .await?;
    let app = json(
        &server,
        &[
            "app",
            "create",
            "--tenant",
            "acme",
            "--name",
            "archiver",
            "--grant",
            "https://archive.example.com/=archive:read",
        ],
    )
    .await?;
    let client_id = app["app"]["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    let leaked = app["client_secret"]
        .as_str()
        .context("client_secret")?
        .to_owned();
    let issue = |secret: String| {
        let client_id = client_id.clone();
        let server = &server;
        async move {
            json(
                server,
                &[
                    "token",
                    "issue",
                    "--tenant",
                    "acme",
                    "--client-id",
                    &client_id,
                    "--client-secret",
                    &secret,
                    "--audience",
                    "https://archive.example.com/",
                ],
            )
            .await
        }
    };
    let introspect = |token: String| {
        let client_id = client_id.clone();
        let secret = leaked.clone();
        let server = &server;
        async move {
            json(
                server,
                &[
                    "token",
                    "introspect",
                    "--tenant",
                    "acme",
                    "--client-id",
                    &client_id,
                    "--client-secret",
                    &secret,
                    "--token",
                    &token,
                ],
            )
            .await
        }
    };

    // RFC 7009 with the app's own credentials, checked by introspection.
    let first = issue(leaked.clone()).await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let active = introspect(first.clone()).await?;
    assert_eq!(active["active"], true);
    let leaked_sid = active["sid"].as_str().context("sid")?.to_owned();
    let revoked = tollgate(
        &server,
        &[
            "token",
            "revoke",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &leaked,
            "--token",
            &first,
        ],
    )
    .await?;
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(introspect(first).await?["active"], false);

    // The leaked-secret recipe, in three commands.
    let held = issue(leaked.clone()).await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    json(
        &server,
        &[
            "app",
            "revoke-secret",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--secret-id",
            &leaked_sid,
            "--revoke-tokens",
        ],
    )
    .await?;
    let rotated = json(
        &server,
        &[
            "app",
            "rotate-secret",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
        ],
    )
    .await?;
    let fresh = rotated["client_secret"]
        .as_str()
        .context("new secret")?
        .to_owned();
    let secrets = json(
        &server,
        &[
            "app",
            "secrets",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
        ],
    )
    .await?;
    let mut states: Vec<(String, bool)> = secrets["secrets"]
        .as_array()
        .context("secrets")?
        .iter()
        .map(|secret| {
            (
                secret["id"].as_str().unwrap_or_default().to_owned(),
                secret["active"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    states.sort_by_key(|(_, active)| *active);
    assert_eq!(states.len(), 2);
    assert_eq!(states[0], (leaked_sid.clone(), false));
    assert!(states[1].1);
    // The leaked secret gets nothing, its tokens are dead, the new secret works.
    let refused = tollgate(
        &server,
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &leaked,
            "--audience",
            "https://archive.example.com/",
        ],
    )
    .await?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_client"));
    let after = issue(fresh.clone()).await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let by_new = json(
        &server,
        &[
            "token",
            "introspect",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &fresh,
            "--token",
            &held,
        ],
    )
    .await?;
    assert_eq!(by_new["active"], false);
    let by_new = json(
        &server,
        &[
            "token",
            "introspect",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
            "--client-secret",
            &fresh,
            "--token",
            &after,
        ],
    )
    .await?;
    assert_eq!(by_new["active"], true);

    // Blocking, and key rotation.
    let blocked = json(
        &server,
        &[
            "app",
            "block",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
        ],
    )
    .await?;
    assert_eq!(blocked["blocked"], true);
    let unblocked = json(
        &server,
        &[
            "app",
            "unblock",
            "--tenant",
            "acme",
            "--client-id",
            &client_id,
        ],
    )
    .await?;
    assert_eq!(unblocked["blocked"], false);
    let keys = json(
        &server,
        &[
            "key",
            "rotate",
            "--tenant",
            "acme",
            "--propagation-delay",
            "0",
        ],
    )
    .await?;
    let mut states: Vec<&str> = keys["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|key| key["state"].as_str())
        .collect();
    states.sort();
    assert_eq!(states, ["active", "retiring"]);
    let listed = json(&server, &["key", "list", "--tenant", "acme"]).await?;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(2));
    Ok(())
}

/// A pipe whose reader is already gone: every write to it fails with `EPIPE`, as when the
/// reader of `tollgate … | head -1` has exited.
fn closed_pipe() -> anyhow::Result<std::process::Stdio> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    Ok(writer.into())
}

/// Runs `tollgate` with `args` against `server` with standard output and error as given
/// (`None`: captured). Unlike `Command::output`, which always captures both.
async fn tollgate_with_stdio(
    server: &TestServer,
    args: &[&str],
    stdout: Option<std::process::Stdio>,
    stderr: Option<std::process::Stdio>,
) -> anyhow::Result<Output> {
    let piped = std::process::Stdio::piped;
    Ok(tollgate_command(server, args)
        .stdout(stdout.unwrap_or_else(piped))
        .stderr(stderr.unwrap_or_else(piped))
        .spawn()?
        .wait_with_output()
        .await?)
}

/// Standard output or standard error closed by its reader: no panic (status 101), and a
/// closed standard output ends the command quietly with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pipes_end_commands_without_a_panic() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    json(&server, &["tenant", "create", "acme"]).await?;

    // Standard error closed: a failure (`error: …`) and a success with a note on stderr.
    let failed = tollgate_with_stdio(
        &server,
        &["tenant", "get", "ghost"],
        None,
        Some(closed_pipe()?),
    )
    .await?;
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "");
    let created = tollgate_with_stdio(
        &server,
        &["app", "create", "--tenant", "acme", "--name", "a"],
        None,
        Some(closed_pipe()?),
    )
    .await?;
    assert_eq!(created.status.code(), Some(0));
    assert!(String::from_utf8(created.stdout)?.contains("client_secret: tgsec_"));

    // Standard output closed: the command stops at its first write, says nothing and
    // succeeds (`audit export` would otherwise go on and end with a note on what it
    // exported).
    for args in [
        &["tenant", "list"][..],
        &["--output", "json", "tenant", "list"][..],
        &["audit", "export", "--tenant", "system"][..],
        &["audit", "list", "--tenant", "acme"][..],
    ] {
        let output = tollgate_with_stdio(&server, args, Some(closed_pipe()?), None).await?;
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ),
            (Some(0), "".into()),
            "{args:?}"
        );
    }

    // Both closed, and the command fails: status 1 all the same.
    let output = tollgate_with_stdio(
        &server,
        &["tenant", "get", "ghost"],
        Some(closed_pipe()?),
        Some(closed_pipe()?),
    )
    .await?;
    assert_eq!(output.status.code(), Some(1));
    Ok(())
}

/// The CLI pointed at the HTTP gateway's port says that the endpoint does not speak gRPC and
/// where the gRPC API is, instead of tonic's "invalid compression flag".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_is_named_as_not_grpc() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    for args in [
        &["tenant", "list"][..],
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--audience",
            "https://archive.example.com/",
        ][..],
    ] {
        let output = tollgate_command(&server, args)
            .env("TOLLGATE_ENDPOINT", &server.http_url)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "UNAVAILABLE (unavailable): {} does not speak gRPC (it answered HTTP 404 Not \
                 Found with content-type application/json): is this the HTTP port? the gRPC API \
                 listens on TOLLGATE_GRPC_ADDR of `tollgate serve` (default 127.0.0.1:50051); \
                 give that address with --endpoint or TOLLGATE_ENDPOINT\n",
                server.http_url
            )),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("compression"), "{stderr}");
    }
    Ok(())
}

/// `tollgate serve` with standard output and standard error closed by their readers: it
/// starts (printing the first admin credentials and logging into the void), serves, and
/// stops on SIGTERM with status 0, logging all the while, instead of panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_with_closed_output_pipes() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("TOLLGATE_DATA_DIR", data_dir.path())
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
        .stdout(closed_pipe()?)
        .stderr(closed_pipe()?)
        .kill_on_drop(true)
        .spawn()?;
    // Started: the first admin credentials are written (and printed) at the first start.
    let credentials = data_dir.path().join("admin-credentials.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !credentials.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("serve exited while starting: {status}");
        }
        if std::time::Instant::now() > deadline {
            bail!("serve did not start within 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Still serving (and logging) a moment later.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(child.try_wait()?.is_none(), "serve stopped on its own");
    let pid = child.id().context("no pid")?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await??;
    assert_eq!(status.code(), Some(0));
    Ok(())
}
