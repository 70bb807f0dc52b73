//! The smaller findings, replayed: the server's own admin tokens are refused right after
//! `exp` (no leeway), the data dir and database files are private from the first start, and
//! an app not entitled to a token learns nothing by introspecting it.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use tollgate_proto::v1::{IntrospectTokenRequest, ListApisRequest, UpdateApiRequest};
use tollgate_testkit::TestServer;
use tonic::Code;

use super::report;
use crate::fixtures::{ARCHIVE, Fixture, encode_form};

/// The shortest token lifetime an API may have.
const SHORTEST_LIFETIME: i64 = 60;

/// The `exp` claim of a JWT, read without verifying it.
fn expiry(token: &str) -> anyhow::Result<u64> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    claims["exp"].as_u64().context("no exp")
}

/// Seconds since the epoch, as a float.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or_default()
}

/// Sleeps until `at` (seconds since the epoch).
async fn sleep_until(at: f64) {
    let wait = at - now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// An admin token with the shortest lifetime works until its `exp` and is refused a second
/// after it, not 30 s later. (The shortest lifetime is 60 s, so this test waits a minute.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_are_refused_right_after_expiry() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut fixture = Fixture::new(&server, "acme").await?;
    fixture
        .admin_clients
        .apis
        .update_api(UpdateApiRequest {
            tenant: "acme".to_owned(),
            identifier: fixture.admin.audience.clone(),
            token_lifetime_seconds: Some(SHORTEST_LIFETIME),
            ..Default::default()
        })
        .await?;
    let token = server.admin_token_for(&fixture.admin).await?;
    let exp = expiry(&token)?;
    let mut admin = server.admin_clients(&token)?;
    let list = ListApisRequest {
        tenant: "acme".to_owned(),
        ..Default::default()
    };
    sleep_until(exp as f64 - 3.0).await;
    let before = admin.apis.list_apis(list.clone()).await.map(|_| ());
    sleep_until(exp as f64 + 1.0).await;
    let after = admin.apis.list_apis(list).await.map(|_| ());
    let late_by = now() - exp as f64;
    report(&format!(
        "admin token 3 s before exp: {:?}; {late_by:.1} s after exp: {:?}",
        before.as_ref().map_err(tonic::Status::code),
        after.as_ref().map_err(tonic::Status::code),
    ));
    before.context("the admin token was refused before its exp")?;
    assert_eq!(
        after.map_err(|status| status.code()),
        Err(Code::Unauthenticated),
        "the admin token was accepted {late_by:.1} s after exp"
    );
    Ok(())
}

/// The data dir is 0700 and the database and its WAL 0600 from the first start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_rest_are_private() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    // Something written, so that the WAL exists.
    Fixture::new(&server, "acme").await?;
    let mode = |name: &str| -> Option<u32> {
        let path = if name.is_empty() {
            server.data_dir.clone()
        } else {
            server.data_dir.join(name)
        };
        std::fs::metadata(path)
            .ok()
            .map(|metadata| metadata.permissions().mode() & 0o777)
    };
    let modes: Vec<(&str, Option<u32>)> = [
        "",
        "tollgate.db",
        "tollgate.db-wal",
        "tollgate.db-shm",
        "master.key",
        "admin-credentials.json",
    ]
    .into_iter()
    .map(|name| (name, mode(name)))
    .collect();
    report(&format!(
        "file modes: {}",
        modes
            .iter()
            .map(|(name, mode)| format!(
                "{}={}",
                if name.is_empty() { "data dir" } else { name },
                mode.map_or("absent".to_owned(), |mode| format!("{mode:o}"))
            ))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    assert_eq!(mode(""), Some(0o700), "the data dir");
    assert_eq!(mode("tollgate.db"), Some(0o600), "the database");
    assert_eq!(mode("tollgate.db-wal"), Some(0o600), "the WAL");
    Ok(())
}

/// An app with no grants introspecting another app's token, or an admin token, over HTTP
/// and gRPC, gets `{"active": false}` and nothing else. (Those entitled still see: the
/// app the token was issued to, and an app holding a grant on the token's audience.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reveals_nothing_to_the_unentitled() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let fixture = Fixture::new(&server, "acme").await?;
    let (nosy_id, nosy_secret) = fixture.create_app("nosy", Vec::new()).await?;
    let app_token = fixture.archive_token(&server).await?.access_token;
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    let (resource_server_id, resource_server_secret) = fixture
        .create_app(
            "archive service",
            vec![crate::fixtures::grant(ARCHIVE, &["archive:read"])],
        )
        .await?;
    let introspect_as = |client_id: String, client_secret: String, token: String| {
        let tokens = server.tokens();
        async move {
            let mut tokens = tokens;
            tokens
                .introspect_token(IntrospectTokenRequest {
                    tenant: "acme".to_owned(),
                    client_id,
                    client_secret,
                    token,
                })
                .await
                .map(|answer| answer.into_inner().active)
        }
    };
    let by_owner = introspect_as(
        fixture.client_id.clone(),
        fixture.client_secret.clone(),
        app_token.clone(),
    )
    .await?;
    let by_resource_server = introspect_as(
        resource_server_id.clone(),
        resource_server_secret.clone(),
        app_token.clone(),
    )
    .await?;
    let admin_by_resource_server = introspect_as(
        resource_server_id,
        resource_server_secret.clone(),
        admin_token.clone(),
    )
    .await?;
    report(&format!(
        "introspection by the token's own app: active={by_owner}; by an app with a grant on its audience: active={by_resource_server}; of an admin token by that app: active={admin_by_resource_server}"
    ));
    assert!(by_owner, "the token's own app cannot introspect it");
    assert!(
        by_resource_server,
        "an app with a grant on the audience cannot introspect its tokens"
    );
    assert!(
        !admin_by_resource_server,
        "a resource server's app sees an admin token"
    );

    let mut answers = Vec::new();
    for (whose, token) in [("an app's", &app_token), ("an admin", &admin_token)] {
        let http: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/t/acme/oauth/introspect", server.http_url))
            .basic_auth(&nosy_id, Some(&nosy_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(&[("token", token)]))
            .send()
            .await?
            .json()
            .await?;
        let grpc = server
            .tokens()
            .introspect_token(IntrospectTokenRequest {
                tenant: "acme".to_owned(),
                client_id: nosy_id.clone(),
                client_secret: nosy_secret.clone(),
                token: token.clone(),
            })
            .await?
            .into_inner();
        report(&format!(
            "introspection of {whose} token by an app without grants: HTTP {http}, gRPC active={} client_id={:?}",
            grpc.active, grpc.client_id
        ));
        answers.push((whose, http, grpc));
    }
    for (whose, http, grpc) in answers {
        assert_eq!(
            http,
            serde_json::json!({"active": false}),
            "HTTP introspection of {whose} token"
        );
        assert_eq!(
            grpc,
            tollgate_proto::v1::IntrospectTokenResponse::default(),
            "gRPC introspection of {whose} token"
        );
    }
    Ok(())
}
