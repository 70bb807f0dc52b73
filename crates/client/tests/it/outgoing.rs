//! Tokens on outgoing calls: `BearerLayer` over a tonic channel, and `BackgroundToken`'s
//! synchronous interceptor, both against a tonic server that `tollgate-verify`'s
//! `BearerAuthLayer` protects (one SDK checking the other, with the stub as issuer).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tollgate_client::{BackgroundToken, BearerLayer, HttpTokenSource, TokenRequest};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevokeTokenRequest, RevokeTokenResponse,
};
use tollgate_stub_issuer::StubIssuer;
use tollgate_verify::tonic::ClaimsExt as _;
use tollgate_verify::{BearerAuthLayer, Verifier};
use tonic::Code;
use tonic::transport::Channel;

use crate::{AUDIENCE, CLIENT_ID, TestResult, client_of, http_client, stub};
use tollgate_domain::ManualClock;

/// Answers `GetJwks` with the caller's client id and its token's `jti`; counts the calls
/// that got through.
#[derive(Clone, Default)]
struct WhoAmI {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl TokenService for WhoAmI {
    type WatchRevocationsStream =
        tokio_stream::Empty<Result<tollgate_proto::v1::WatchRevocationsResponse, tonic::Status>>;

    async fn watch_revocations(
        &self,
        _: tonic::Request<tollgate_proto::v1::WatchRevocationsRequest>,
    ) -> Result<tonic::Response<Self::WatchRevocationsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not under test"))
    }

    async fn get_jwks(
        &self,
        request: tonic::Request<GetJwksRequest>,
    ) -> Result<tonic::Response<GetJwksResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let claims = request.require_claims()?;
        Ok(tonic::Response::new(GetJwksResponse {
            issuer: claims.client_id.clone().unwrap_or_default(),
            jwks_json: claims.token_id.clone().unwrap_or_default(),
        }))
    }

    async fn issue_token(
        &self,
        _request: tonic::Request<IssueTokenRequest>,
    ) -> Result<tonic::Response<IssueTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }

    async fn revoke_token(
        &self,
        _request: tonic::Request<RevokeTokenRequest>,
    ) -> Result<tonic::Response<RevokeTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }

    async fn introspect_token(
        &self,
        _request: tonic::Request<IntrospectTokenRequest>,
    ) -> Result<tonic::Response<IntrospectTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
}

/// A resource server requiring `archive:read` from the stub's tokens, on a loopback port.
/// Returns a channel to it and the service's call counter; the server stops with the test.
async fn resource_server(
    stub: &StubIssuer,
    clock: &ManualClock,
) -> Result<(Channel, WhoAmI, tokio::task::JoinHandle<()>), Box<dyn std::error::Error>> {
    let verifier = Verifier::builder(stub.issuer(), AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .build()?;
    let service = WhoAmI::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tonic::transport::Server::builder()
        .layer(BearerAuthLayer::new(verifier).require(["archive:read"]))
        .add_service(TokenServiceServer::new(service.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    Ok((Channel::from_shared(url)?.connect_lazy(), service, task))
}

#[tokio::test]
async fn the_layer_adds_a_fresh_bearer_token_to_outgoing_grpc_calls() -> TestResult {
    let (stub, clock) = stub().await?;
    stub.set_token_lifetime(600);
    let (channel, service, server) = resource_server(&stub, &clock).await?;
    let tokens = http_client(&stub, &clock);
    let request = TokenRequest::new(AUDIENCE).with_scopes(["archive:read"]);
    let layered = tower::ServiceBuilder::new()
        .layer(BearerLayer::new(tokens, request))
        .service(channel.clone());
    let mut client = TokenServiceClient::new(layered);

    let mut jtis = std::collections::HashSet::new();
    for _ in 0..10 {
        let answer = client
            .get_jwks(GetJwksRequest::default())
            .await?
            .into_inner();
        assert_eq!(answer.issuer, CLIENT_ID);
        jtis.insert(answer.jwks_json);
    }
    assert_eq!((jtis.len(), stub.token_requests()), (1, 1));
    // Past the refresh time, the next call carries a new token.
    clock.advance(541);
    let answer = client
        .get_jwks(GetJwksRequest::default())
        .await?
        .into_inner();
    assert!(!jtis.contains(&answer.jwks_json));
    assert_eq!(stub.token_requests(), 2);

    // Without a token, the call does not go out at all.
    let refused = client_of(
        HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, "wrong"),
        &clock,
    )
    .build();
    let layered = tower::ServiceBuilder::new()
        .layer(BearerLayer::new(refused, TokenRequest::new(AUDIENCE)))
        .service(channel);
    let before = service.calls.load(Ordering::SeqCst);
    let outcome = TokenServiceClient::new(layered)
        .get_jwks(GetJwksRequest::default())
        .await;
    let status = outcome.err().ok_or("a call without a token went through")?;
    assert!(status.message().contains("invalid_client"), "{status:?}");
    assert_eq!(service.calls.load(Ordering::SeqCst), before);
    server.abort();
    Ok(())
}

#[tokio::test]
async fn a_background_token_feeds_the_synchronous_interceptor() -> TestResult {
    let (stub, clock) = stub().await?;
    let (channel, _service, server) = resource_server(&stub, &clock).await?;
    let tokens = http_client(&stub, &clock);
    let background = BackgroundToken::spawn(
        tokens,
        TokenRequest::new(AUDIENCE).with_scopes(["archive:read"]),
    );
    background.ready().await?;
    let mut client =
        TokenServiceClient::with_interceptor(channel.clone(), background.interceptor());
    for _ in 0..5 {
        let answer = client
            .get_jwks(GetJwksRequest::default())
            .await?
            .into_inner();
        assert_eq!(answer.issuer, CLIENT_ID);
    }
    assert_eq!(stub.token_requests(), 1);

    // A background token that cannot be had: calls fail UNAVAILABLE, naming why.
    let refused = client_of(
        HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, "wrong"),
        &clock,
    )
    .build();
    let failing = BackgroundToken::spawn(refused, TokenRequest::new(AUDIENCE));
    let error = failing
        .ready()
        .await
        .err()
        .ok_or("a wrong secret got a token")?;
    assert!(error.is_rejected_with("invalid_client"), "{error:?}");
    let status = TokenServiceClient::with_interceptor(channel, failing.interceptor())
        .get_jwks(GetJwksRequest::default())
        .await
        .err()
        .ok_or("a call without a token went through")?;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("invalid_client"), "{status:?}");
    server.abort();
    Ok(())
}
