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

use crate::fixtures::Fixture;

crate::backend_tests!(health_and_reflection, jwks_and_metadata);

async fn health_and_reflection(server: TestServer) -> anyhow::Result<()> {
    let mut health = HealthClient::new(server.channel());
    for service in ["", "tollgate.v1.TokenService", "tollgate.v1.TenantService"] {
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
