//! `tollgate gateway` in front of the server, both real and on port 0: the gateway forwards
//! each caller's address over its link to the issuer, authenticated by the shared gateway
//! secret, so the issuer records (and rate-limits) the caller rather than the gateway; a
//! caller that sends the forwarding metadata itself, without the secret or with a wrong
//! one, is recorded with its own address.
//!
//! Every process here is on loopback; the HTTP caller binds `127.0.0.2` so that its address
//! differs from the gateway's (`127.0.0.1`).

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use serde_json::Value;
use tollgate_gateway::{FORWARDED_FOR_METADATA, GATEWAY_SECRET_METADATA};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_store::Store;
use tollgate_testkit::{TestOptions, TestServer};
use tollgate_verify::unverified_claim;

use crate::fixtures::{ARCHIVE, Fixture, wait_for_record};

crate::backend_tests!(
    options = with_gateway_secret;
    edge_gateway_forwards_the_callers_address_and_no_one_else_can,
);

/// The secret both sides are configured with (64 hex characters, as `openssl rand -hex 32`
/// makes them).
const GATEWAY_SECRET: &str = "9f2c4e81b7d35a06c1e8f4a2d9b7306e5c1a8f2d4b6e9073a1c5d8e2f4b7a906";
/// The HTTP caller's address.
const CALLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn with_gateway_secret() -> TestOptions {
    TestOptions {
        gateway_secret: Some(GATEWAY_SECRET.to_owned()),
        ..TestOptions::default()
    }
}

/// Starts `tollgate gateway` in front of `server`, presenting `secret`; returns its base URL
/// and the sender that stops it.
async fn start_edge_gateway(
    server: &TestServer,
    secret: Option<&str>,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let config = tollgate::config::GatewayOnlyConfig::from_args(tollgate::config::GatewayArgs {
        issuer_endpoint: server.grpc_url.clone(),
        http_addr: "127.0.0.1:0".parse()?,
        issuer_template: tollgate_domain::IssuerTemplate::DEFAULT.to_owned(),
        jwks_max_age: 60,
        connections: tollgate::config::ConnectionArgs::default(),
        gateway: tollgate::config::GatewaySecretArgs {
            gateway_secret: secret.map(str::to_owned),
            gateway_secret_file: None,
        },
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tollgate::server::serve_gateway(
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok((url, stop))
}

/// A token over HTTP at `base` (the tenant under `/t/acme/`), from the caller's address.
async fn post_token(
    client: &reqwest::Client,
    base: &str,
    fixture: &Fixture,
    secret: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(client
        .post(format!("{base}/t/acme/oauth/token"))
        .basic_auth(&fixture.client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("audience", ARCHIVE)])
        .send()
        .await?)
}

/// A token over gRPC straight from the server, with `metadata` added to the call; its jti.
async fn issue_directly(
    server: &TestServer,
    fixture: &Fixture,
    metadata: &[(&'static str, &str)],
) -> anyhow::Result<String> {
    let mut request = tonic::Request::new(fixture.archive_request());
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse()?);
    }
    let token = TokenServiceClient::new(server.channel())
        .issue_token(request)
        .await?
        .into_inner()
        .access_token;
    unverified_claim(&token, "jti").context("no jti")
}

/// Where and how the token with `jti` was recorded as issued: (source, transport).
async fn issued_from(
    store: &Store,
    fixture: &Fixture,
    jti: &str,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let row = wait_for_record(store, &fixture.tenant_id, |row| {
        row.action == "token_issued" && row.jti.as_deref() == Some(jti)
    })
    .await?;
    Ok((row.source, row.transport))
}

/// A token through the gateway at `base` (asserted 200), from the caller's address; where
/// and how it was recorded as issued: (source, transport).
async fn issued_through(
    client: &reqwest::Client,
    base: &str,
    store: &Store,
    fixture: &Fixture,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let response = post_token(client, base, fixture, &fixture.client_secret).await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    let token = body["access_token"].as_str().context("no access_token")?;
    let jti = unverified_claim(token, "jti").context("no jti")?;
    issued_from(store, fixture, &jti).await
}
async fn edge_gateway_forwards_the_callers_address_and_no_one_else_can(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let store = Store::connect(&server.joined.database_url).await?;
    let caller = reqwest::Client::builder().local_address(CALLER).build()?;
    let caller_text = Some(CALLER.to_string());
    let local = Some("127.0.0.1".to_owned());
    let (http, grpc) = (Some("http".to_owned()), Some("grpc".to_owned()));

    // Through a gateway holding the secret: the caller's address, over HTTP.
    let (edge, _stop_edge) = start_edge_gateway(&server, Some(GATEWAY_SECRET)).await?;
    assert_eq!(
        issued_through(&caller, &edge, &store, &fixture).await?,
        (caller_text.clone(), http.clone())
    );
    // A failed authentication through it is the caller's too: per-address damping sees
    // the caller, not the gateway.
    let response = post_token(&caller, &edge, &fixture, "tgsec_wrong").await?;
    assert_eq!(response.status(), 401);
    let denied = wait_for_record(&store, &fixture.tenant_id, |row| {
        row.action == "token_denied" && row.error_code.as_deref() == Some("invalid_client")
    })
    .await?;
    assert_eq!(denied.source, caller_text);

    // Through a gateway without the secret: nothing is forwarded; the gateway's address.
    let (bare_edge, _stop_bare_edge) = start_edge_gateway(&server, None).await?;
    assert_eq!(
        issued_through(&caller, &bare_edge, &store, &fixture).await?,
        (local.clone(), grpc.clone())
    );

    // A direct gRPC caller claiming another address: without the secret, with a wrong one
    // (as long as the real one), with an empty one. Each is recorded with its own address.
    let wrong_secret = GATEWAY_SECRET.replace('9', "8");
    for metadata in [
        vec![(FORWARDED_FOR_METADATA, "203.0.113.7")],
        vec![
            (FORWARDED_FOR_METADATA, "203.0.113.7"),
            (GATEWAY_SECRET_METADATA, wrong_secret.as_str()),
        ],
        vec![
            (FORWARDED_FOR_METADATA, "203.0.113.7"),
            (GATEWAY_SECRET_METADATA, ""),
        ],
    ] {
        let jti = issue_directly(&server, &fixture, &metadata).await?;
        assert_eq!(
            issued_from(&store, &fixture, &jti).await?,
            (local.clone(), grpc.clone()),
            "{metadata:?}"
        );
    }
    // The same call with the secret is a gateway's, and its address is believed.
    let jti = issue_directly(
        &server,
        &fixture,
        &[
            (FORWARDED_FOR_METADATA, "203.0.113.7"),
            (GATEWAY_SECRET_METADATA, GATEWAY_SECRET),
        ],
    )
    .await?;
    assert_eq!(
        issued_from(&store, &fixture, &jti).await?,
        (Some("203.0.113.7".to_owned()), http)
    );
    Ok(())
}
