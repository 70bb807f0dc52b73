//! Health, reflection, JWKS caching headers and RFC 8414 metadata.

use anyhow::Context;
use serde_json::{Value, json};
use tollgate_testkit::TestServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::fixtures::{ARCHIVE, Fixture, encode_form, fetch_jwks, verify_with_jwks};

crate::backend_tests!(
    health_and_reflection,
    jwks_and_metadata,
    edge_gateway_over_grpc
);

async fn health_and_reflection(server: TestServer) -> anyhow::Result<()> {
    let mut health = HealthClient::new(server.channel());
    for service in [
        "",
        "tollgate.v1.TokenService",
        "tollgate.v1.TenantService",
        "tollgate.v1.AuditService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, 1, "{service:?} is SERVING");
    }

    let mut reflection = ServerReflectionClient::new(server.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .context("no reflection response")?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        anyhow::bail!("unexpected reflection response");
    };
    let mut names: Vec<_> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    names.sort();
    for expected in [
        "grpc.health.v1.Health",
        "tollgate.v1.ApiService",
        "tollgate.v1.AuditService",
        "tollgate.v1.AppService",
        "tollgate.v1.TenantService",
        "tollgate.v1.TokenService",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    Ok(())
}

async fn jwks_and_metadata(server: TestServer) -> anyhow::Result<()> {
    Fixture::new(&server, "acme").await?;
    let client = reqwest::Client::new();
    let url = format!("{}/t/acme/.well-known/jwks.json", server.http_url);
    let first = client.get(&url).send().await?;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=300");
    let etag = first.headers()["etag"].to_str()?.to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let jwks: Value = first.json().await?;
    let keys = jwks["keys"].as_array().context("keys")?;
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().context("key")?;
    let mut members: Vec<_> = key.keys().map(String::as_str).collect();
    members.sort();
    assert_eq!(
        members,
        ["alg", "crv", "kid", "kty", "use", "x", "y"],
        "public members only"
    );
    assert_eq!(
        (&key["alg"], &key["use"], &key["kty"]),
        (&json!("ES256"), &json!("sig"), &json!("EC"))
    );

    let cached = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await?.is_empty());

    // Host-based addressing gives the same document.
    let by_host = client
        .get(format!("{}/.well-known/jwks.json", server.http_url))
        .header("host", "acme.hub.localhost")
        .send()
        .await?;
    assert_eq!(by_host.headers()["etag"].to_str()?, etag);

    for path in ["oauth-authorization-server", "openid-configuration"] {
        let metadata: Value = client
            .get(format!("{}/t/acme/.well-known/{path}", server.http_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let issuer = "http://acme.hub.localhost:8080/";
        assert_eq!(metadata["issuer"], issuer, "{path}");
        assert_eq!(
            metadata["token_endpoint"],
            format!("{issuer}oauth/token"),
            "{path}"
        );
        assert_eq!(
            metadata["jwks_uri"],
            format!("{issuer}.well-known/jwks.json"),
            "{path}"
        );
        assert_eq!(
            metadata["grant_types_supported"],
            json!(["client_credentials"]),
            "{path}"
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"]),
            "{path}"
        );
    }
    let unknown = client
        .get(format!(
            "{}/t/nosuch/.well-known/jwks.json",
            server.http_url
        ))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    Ok(())
}

/// `tollgate gateway` in front of the server's gRPC API: the same token endpoint and JWKS,
/// with errors carried through gRPC status details.
async fn edge_gateway_over_grpc(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let config = tollgate::config::GatewayOnlyConfig::from_args(tollgate::config::GatewayArgs {
        issuer_endpoint: server.grpc_url.clone(),
        http_addr: "127.0.0.1:0".parse()?,
        issuer_template: tollgate_domain::IssuerTemplate::DEFAULT.to_owned(),
        jwks_max_age: 60,
        connections: tollgate::config::ConnectionArgs::default(),
        gateway: tollgate::config::GatewaySecretArgs::default(),
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let edge = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tollgate::server::serve_gateway(
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let client = reqwest::Client::new();
    let token_url = format!("{edge}/t/acme/oauth/token");
    let post = |form: String, secret: &str| {
        client
            .post(&token_url)
            .basic_auth(&fixture.client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let ok = post(
        encode_form(&[("grant_type", "client_credentials"), ("audience", ARCHIVE)]),
        &fixture.client_secret,
    )
    .await?;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await?;
    let jwks = fetch_jwks(&server, "acme").await?;
    verify_with_jwks(
        body["access_token"].as_str().context("token")?,
        &jwks,
        &fixture.issuer,
        ARCHIVE,
    )?;

    for (form, secret, status, error) in [
        (
            encode_form(&[("grant_type", "client_credentials"), ("audience", ARCHIVE)]),
            "tgsec_wrong",
            401,
            "invalid_client",
        ),
        (
            encode_form(&[
                ("grant_type", "client_credentials"),
                ("audience", "https://nope/"),
            ]),
            fixture.client_secret.as_str(),
            400,
            "invalid_target",
        ),
        (
            encode_form(&[
                ("grant_type", "client_credentials"),
                ("audience", ARCHIVE),
                ("scope", "archive:admin"),
            ]),
            fixture.client_secret.as_str(),
            400,
            "invalid_scope",
        ),
    ] {
        let response = post(form, secret).await?;
        assert_eq!(response.status(), status, "{error}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"], error);
    }
    let edge_jwks = client
        .get(format!("{edge}/t/acme/.well-known/jwks.json"))
        .send()
        .await?;
    assert_eq!(edge_jwks.headers()["cache-control"], "public, max-age=60");
    let edge_jwks: Value = edge_jwks.json().await?;
    assert_eq!(
        edge_jwks["keys"][0]["kid"],
        json!(jwks.keys[0].common.key_id)
    );
    let missing = client
        .get(format!("{edge}/t/nosuch/.well-known/jwks.json"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    let _ = stop.send(());
    task.await??;
    Ok(())
}
