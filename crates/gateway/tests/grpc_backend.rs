//! `GrpcBackend` against a fake `TokenService` on a loopback port: what it sends, how it
//! reads introspection answers, and how retry information survives the hop to HTTP.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tollgate_domain::{
    AccessTokenClaims, ClientId, ClientSecret, ErrorCode, IssuerTemplate, TenantName,
    TokenCallRequest,
};
use tollgate_gateway::{BackendError, GatewayConfig, GrpcBackend, TokenBackend, router};
use tollgate_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevokeTokenRequest, RevokeTokenResponse,
};
use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::ServiceExt;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// Answers by token: `active`, `inactive`, `rate_limited` (RESOURCE_EXHAUSTED with a
/// 1.5 s RetryInfo), anything else `invalid_client`. Records (method, tenant, client id,
/// secret, token).
#[derive(Default)]
struct FakeTokenService {
    calls: Arc<Mutex<Vec<[String; 5]>>>,
}

fn outcome(token: &str) -> Result<(), Status> {
    match token {
        "active" | "inactive" => Ok(()),
        "rate_limited" => {
            let mut details =
                ErrorDetails::with_error_info("resource_exhausted", "tollgate", HashMap::new());
            details.set_retry_info(Some(Duration::from_millis(1500)));
            Err(Status::with_error_details(
                Code::ResourceExhausted,
                "slow down",
                details,
            ))
        }
        _ => Err(tollgate_proto::status::to_status(
            ErrorCode::InvalidClient,
            "no such app",
        )),
    }
}

#[tonic::async_trait]
impl TokenService for FakeTokenService {
    type WatchRevocationsStream =
        tokio_stream::Empty<Result<tollgate_proto::v1::WatchRevocationsResponse, Status>>;

    async fn watch_revocations(
        &self,
        _: tonic::Request<tollgate_proto::v1::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn issue_token(
        &self,
        _: tonic::Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn get_jwks(
        &self,
        _: tonic::Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn revoke_token(
        &self,
        request: tonic::Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let RevokeTokenRequest {
            tenant,
            client_id,
            client_secret,
            token,
        } = request.into_inner();
        outcome(&token)?;
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(["revoke".to_owned(), tenant, client_id, client_secret, token]);
        }
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn introspect_token(
        &self,
        request: tonic::Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let IntrospectTokenRequest {
            tenant,
            client_id,
            client_secret,
            token,
        } = request.into_inner();
        outcome(&token)?;
        let active = token == "active";
        if let Ok(mut calls) = self.calls.lock() {
            calls.push([
                "introspect".to_owned(),
                tenant,
                client_id,
                client_secret,
                token,
            ]);
        }
        if !active {
            return Ok(Response::new(IntrospectTokenResponse::default()));
        }
        Ok(Response::new(IntrospectTokenResponse {
            active: true,
            scope: "read".to_owned(),
            client_id: "app".to_owned(),
            token_type: "Bearer".to_owned(),
            exp: 1_700_003_600,
            iat: 1_700_000_000,
            nbf: 1_700_000_000,
            sub: "app@client".to_owned(),
            aud: "https://api.example.com/".to_owned(),
            iss: "http://acme.hub.localhost:8080/".to_owned(),
            jti: "jti-1".to_owned(),
            cid: "tenant-1".to_owned(),
            sid: "secret-1".to_owned(),
            scp: vec!["read".to_owned()],
            gty: "client_credentials".to_owned(),
        }))
    }
}

/// Starts the fake service; returns a backend connected to it, its record, and the handle
/// that stops it when dropped.
async fn start() -> TestResult<(
    GrpcBackend,
    Arc<Mutex<Vec<[String; 5]>>>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let service = FakeTokenService::default();
    let calls = Arc::clone(&service.calls);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TokenServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok((GrpcBackend::new(channel), calls, stop))
}

fn call_request(token: &str) -> TestResult<TokenCallRequest> {
    Ok(TokenCallRequest {
        tenant: TenantName::parse("acme")?,
        client_id: ClientId::parse("app")?,
        client_secret: ClientSecret::new("s3cret".to_owned()),
        token: token.to_owned(),
        origin: Default::default(),
    })
}

fn recorded(method: &str, token: &str) -> [String; 5] {
    [method, "acme", "app", "s3cret", token].map(str::to_owned)
}

#[tokio::test]
async fn revoke_and_introspect_over_grpc() -> TestResult {
    let (backend, calls, _stop) = start().await?;

    backend.revoke_token(call_request("active")?).await?;
    assert_eq!(
        backend.introspect_token(call_request("inactive")?).await?,
        None
    );
    assert_eq!(
        backend.introspect_token(call_request("active")?).await?,
        Some(AccessTokenClaims {
            iss: "http://acme.hub.localhost:8080/".to_owned(),
            sub: "app@client".to_owned(),
            aud: "https://api.example.com/".to_owned(),
            iat: 1_700_000_000,
            nbf: 1_700_000_000,
            exp: 1_700_003_600,
            jti: "jti-1".to_owned(),
            cid: "tenant-1".to_owned(),
            sid: "secret-1".to_owned(),
            scp: vec!["read".to_owned()],
            scope: "read".to_owned(),
            client_id: "app".to_owned(),
            gty: "client_credentials".to_owned(),
        })
    );
    assert_eq!(
        calls.lock().map(|calls| calls.clone()).unwrap_or_default(),
        [
            recorded("revoke", "active"),
            recorded("introspect", "inactive"),
            recorded("introspect", "active"),
        ]
    );

    for error in [
        backend
            .revoke_token(call_request("rate_limited")?)
            .await
            .err(),
        backend
            .introspect_token(call_request("rate_limited")?)
            .await
            .err(),
    ] {
        assert_eq!(
            error,
            Some(
                BackendError::new(ErrorCode::ResourceExhausted, "slow down")
                    .with_retry_after(Duration::from_millis(1500))
            )
        );
    }
    assert_eq!(
        backend.revoke_token(call_request("wrong")?).await.err(),
        Some(BackendError::new(ErrorCode::InvalidClient, "no such app"))
    );
    Ok(())
}

#[tokio::test]
async fn retry_info_reaches_the_http_client() -> TestResult {
    let (backend, _, _stop) = start().await?;
    let router = router(
        GatewayConfig::new(IssuerTemplate::parse(IssuerTemplate::DEFAULT)?),
        Arc::new(backend),
    );
    for path in ["/t/acme/oauth/revoke", "/t/acme/oauth/introspect"] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "client_id=app&client_secret=s3cret&token=rate_limited",
            ))?;
        let response = router.clone().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|value| value.as_bytes()),
            Some(&b"2"[..]),
            "{path}"
        );
        // Rate-limit counters have no gRPC status detail, so they do not cross the hop.
        assert!(
            !response.headers().contains_key("ratelimit-limit"),
            "{path}"
        );
    }
    Ok(())
}
