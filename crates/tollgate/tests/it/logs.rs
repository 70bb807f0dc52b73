//! Structured logs: `tollgate serve` with `TOLLGATE_LOG_FORMAT=json` writes one JSON object
//! per line to standard error, an access line per HTTP request and per gRPC call (target
//! `tollgate::access`) carrying the caller's trace context, and never a secret or a token.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The caller's W3C trace context, sent on both requests.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Reads standard error lines into a channel, so the test can wait for one while the
/// server keeps writing.
fn collect_lines(
    stderr: tokio::process::ChildStderr,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_access_lines_and_no_secret() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("TOLLGATE_DATA_DIR", data_dir.path())
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        // Standard output carries the first admin credentials, by design; the logs are
        // standard error.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut receiver = collect_lines(child.stderr.take().context("no stderr")?);

    // The start line names the bound addresses.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (grpc_addr, http_addr) = loop {
        let line = tokio::time::timeout_at(deadline.into(), receiver.recv())
            .await
            .context("serve did not log its addresses within 60 s")?
            .context("serve exited while starting")?;
        let parsed: Value =
            serde_json::from_str(&line).with_context(|| format!("not a JSON line: {line}"))?;
        lines.push(line);
        if let (Some(grpc), Some(http)) = (parsed["grpc"].as_str(), parsed["http"].as_str()) {
            break (grpc.to_owned(), http.to_owned());
        }
    };

    let credentials: Value = serde_json::from_slice(&std::fs::read(
        data_dir.path().join("admin-credentials.json"),
    )?)?;
    let field = |name: &str| {
        credentials[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("admin credentials without {name}"))
    };
    let (tenant, client_id, client_secret, audience) = (
        field("tenant")?,
        field("client_id")?,
        field("client_secret")?,
        field("audience")?,
    );
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");

    // A token over HTTP, with the secret in the body.
    let response = reqwest::Client::new()
        .post(format!("http://{http_addr}/t/{tenant}/oauth/token"))
        .header("traceparent", &traceparent)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("audience", audience.as_str()),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    let http_token = body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();

    // A token over gRPC.
    let mut grpc = tollgate_proto::v1::token_service_client::TokenServiceClient::connect(format!(
        "http://{grpc_addr}"
    ))
    .await?;
    let mut request = tonic::Request::new(tollgate_proto::v1::IssueTokenRequest {
        tenant: tenant.clone(),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        audience: audience.clone(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse()?);
    let grpc_token = grpc.issue_token(request).await?.into_inner().access_token;
    assert!(!grpc_token.is_empty());
    // And a refused one: a wrong secret.
    let refused = grpc
        .issue_token(tollgate_proto::v1::IssueTokenRequest {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            client_secret: "tgsec_wrong".to_owned(),
            audience: audience.clone(),
            ..Default::default()
        })
        .await
        .err()
        .context("a wrong secret got a token")?;
    drop(grpc);

    let pid = child.id().context("no pid")?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(status.code(), Some(0));
    while let Some(line) = tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await? {
        lines.push(line);
    }

    let mut access = Vec::new();
    for line in &lines {
        let parsed: Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON line: {line}"))?;
        for secret in [&client_secret, &http_token, &grpc_token] {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the logs: {line}"
            );
        }
        assert!(
            !line.contains("tgsec_wrong"),
            "a secret in the logs: {line}"
        );
        if parsed["target"] == "tollgate::access" {
            assert_eq!(parsed["level"], "INFO", "{line}");
            access.push(parsed);
        }
    }

    let http_line = access
        .iter()
        .find(|line| line["protocol"] == "http")
        .with_context(|| format!("no HTTP access line in {lines:#?}"))?;
    assert_eq!(http_line["method"], "POST");
    assert_eq!(http_line["route"], "/t/{tenant}/oauth/token");
    assert_eq!(http_line["status"], 200);
    assert_eq!(http_line["tenant"], tenant.as_str());
    assert_eq!(http_line["trace_id"], TRACE_ID);
    assert_eq!(http_line["span_id"], PARENT_ID);
    assert!(
        http_line["duration_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0)
    );

    let issue = "/tollgate.v1.TokenService/IssueToken";
    let grpc_lines: Vec<&Value> = access
        .iter()
        .filter(|line| line["protocol"] == "grpc" && line["method"] == issue)
        .collect();
    assert_eq!(grpc_lines.len(), 2, "{grpc_lines:#?}");
    let first = grpc_lines.first().context("no first call")?;
    assert_eq!(first["grpc_status"], 0);
    assert_eq!(first["trace_id"], TRACE_ID);
    assert_eq!(first["span_id"], PARENT_ID);
    assert!(first["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let second = grpc_lines.get(1).context("no second call")?;
    assert_eq!(second["grpc_status"], refused.code() as i32);
    assert!(second.get("trace_id").is_none(), "{second}");
    Ok(())
}

/// An unknown `TOLLGATE_LOG_FORMAT` stops `serve` before it starts, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_log_format_is_refused() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("TOLLGATE_DATA_DIR", data_dir.path())
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_LOG_FORMAT", "yaml")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output).await??;
    if output.status.success() {
        bail!("serve accepted TOLLGATE_LOG_FORMAT=yaml");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOLLGATE_LOG_FORMAT must be `text` or `json`"),
        "{stderr}"
    );
    assert!(
        !data_dir.path().join("admin-credentials.json").exists(),
        "serve started anyway"
    );
    Ok(())
}
