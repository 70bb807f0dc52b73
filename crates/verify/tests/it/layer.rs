//! `BearerAuthLayer` in front of an axum router and of a real tonic server, and the
//! synchronous tonic interceptor: claims in the extensions, RFC 6750 answers, gRPC codes.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevokeTokenRequest, RevokeTokenResponse,
};
use tollgate_verify::tonic::{BearerInterceptor, ClaimsExt};
use tollgate_verify::{BearerAuthLayer, Claims, ScopeRules};
use tonic::Code;
use tower::ServiceExt as _;

use crate::{AUDIENCE, CLIENT_ID, TestResult, builder, stub};

const READ_CHALLENGE: &str = r#"Bearer error="insufficient_scope", scope="archive:read""#;
const WRITE_CHALLENGE: &str = r#"Bearer error="insufficient_scope", scope="archive:write""#;

#[tokio::test]
async fn the_axum_layer_answers_401_and_403_per_rfc_6750_and_hands_claims_on() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    let rules = ScopeRules::new()
        .require_for("GET", "/archive/*", ["archive:read"])
        .require_for("POST", "/archive/*", ["archive:write"]);
    let whoami = async |claims: Claims| claims.client_id.unwrap_or_default();
    let app = Router::new()
        .route("/archive/{id}", get(whoami).post(whoami))
        .layer(BearerAuthLayer::new(verifier).scopes(rules));

    let reader = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    let expired = stub.sign(
        &stub.header(),
        &serde_json::json!({ "iss": stub.issuer(), "aud": AUDIENCE, "exp": 1 }),
    )?;
    let bearer = |token: &str| format!("Bearer {token}");
    let invalid = |why: &str| format!(r#"Bearer error="invalid_token", error_description="{why}""#);
    #[rustfmt::skip]
    let cases = [
        ("GET",  None,                      StatusCode::OK,           None,                                    CLIENT_ID),
        ("GET",  Some(String::new()),       StatusCode::UNAUTHORIZED, Some("Bearer".to_owned()),               ""),
        ("GET",  Some(bearer("nonsense")),  StatusCode::UNAUTHORIZED, Some(invalid("token is malformed")),     ""),
        ("GET",  Some(bearer(&expired)),    StatusCode::UNAUTHORIZED, Some(invalid("token has expired")),      ""),
        ("GET",  Some(format!("Basic {reader}")), StatusCode::BAD_REQUEST,
            Some(r#"Bearer error="invalid_request""#.to_owned()), ""),
        ("POST", None,                      StatusCode::FORBIDDEN,    Some(WRITE_CHALLENGE.to_owned()),        ""),
    ];
    for (method, authorization, status, challenge, body) in cases {
        let authorization = authorization.unwrap_or_else(|| bearer(&reader));
        let mut request = Request::builder().method(method).uri("/archive/7");
        if !authorization.is_empty() {
            request = request.header(header::AUTHORIZATION, &authorization);
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        let case = format!("{method} with {authorization:?}");
        assert_eq!(response.status(), status, "{case}");
        let actual = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|value| value.to_str().unwrap_or("not text").to_owned());
        assert_eq!(actual, challenge, "{case}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        assert_eq!(std::str::from_utf8(&bytes)?, body, "{case}");
    }
    // A handler asking for Claims on a route the layer does not cover gets a 401, not a panic.
    let unprotected = Router::new().route("/", get(whoami));
    let response = unprotected
        .oneshot(Request::builder().uri("/").body(Body::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

/// A gRPC service that answers `GetJwks` with the caller's client id from the claims.
struct WhoAmI;

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

    async fn issue_token(
        &self,
        request: tonic::Request<IssueTokenRequest>,
    ) -> Result<tonic::Response<IssueTokenResponse>, tonic::Status> {
        let claims = request.require_claims()?;
        Ok(tonic::Response::new(IssueTokenResponse {
            access_token: claims.client_id.clone().unwrap_or_default(),
            ..IssueTokenResponse::default()
        }))
    }

    async fn get_jwks(
        &self,
        request: tonic::Request<GetJwksRequest>,
    ) -> Result<tonic::Response<GetJwksResponse>, tonic::Status> {
        let claims = request.require_claims()?;
        Ok(tonic::Response::new(GetJwksResponse {
            issuer: claims.client_id.clone().unwrap_or_default(),
            jwks_json: claims.scopes.join(" "),
        }))
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

/// `message` with `authorization: Bearer <token>`, if there is a token.
fn authorized<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Calls `GetJwks` and `IssueToken` with `token` and returns each outcome as (code, value,
/// challenge).
async fn call_both(
    url: &str,
    token: Option<&str>,
) -> Result<[(Code, String, Option<String>); 2], Box<dyn std::error::Error>> {
    let mut client = TokenServiceClient::connect(url.to_owned()).await?;
    let outcome = |result: Result<String, tonic::Status>| match result {
        Ok(value) => (Code::Ok, value, None),
        Err(status) => (
            status.code(),
            status.message().to_owned(),
            status
                .metadata()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        ),
    };
    let jwks = client
        .get_jwks(authorized(GetJwksRequest::default(), token))
        .await
        .map(|response| response.into_inner().issuer);
    let issue = client
        .issue_token(authorized(IssueTokenRequest::default(), token))
        .await
        .map(|response| response.into_inner().access_token);
    Ok([outcome(jwks), outcome(issue)])
}

#[tokio::test]
async fn the_layer_protects_a_tonic_server_per_method_with_grpc_codes() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    let rules = ScopeRules::new()
        .require("/tollgate.v1.TokenService/IssueToken", ["archive:write"])
        .require("/tollgate.v1.TokenService/*", ["archive:read"]);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tonic::transport::Server::builder()
        .layer(BearerAuthLayer::new(verifier).scopes(rules))
        .add_service(TokenServiceServer::new(WhoAmI))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let reader = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    let writer = stub.issue(CLIENT_ID, AUDIENCE, "archive:read archive:write")?;
    let ok = |value: &str| (Code::Ok, value.to_owned(), None);
    let unauthenticated = |message: &str, challenge: &str| {
        (
            Code::Unauthenticated,
            message.to_owned(),
            Some(challenge.to_owned()),
        )
    };
    let denied = |challenge: &str| {
        (
            Code::PermissionDenied,
            "token lacks a required scope".to_owned(),
            Some(challenge.to_owned()),
        )
    };
    let malformed = r#"Bearer error="invalid_token", error_description="token is malformed""#;
    #[rustfmt::skip]
    let cases = [
        ("no token",      None,           [unauthenticated("no bearer token", "Bearer"), unauthenticated("no bearer token", "Bearer")]),
        ("garbage",       Some("x.y.z"),  [unauthenticated("token is malformed", malformed), unauthenticated("token is malformed", malformed)]),
        ("read scope",    Some(&*reader), [ok(CLIENT_ID), denied(WRITE_CHALLENGE)]),
        ("write scope",   Some(&*writer), [ok(CLIENT_ID), ok(CLIENT_ID)]),
    ];
    for (case, token, expected) in cases {
        assert_eq!(call_both(&url, token).await?, expected, "{case}");
    }
    server.abort();
    Ok(())
}

#[tokio::test]
async fn the_synchronous_interceptor_uses_cached_keys() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let interceptor = BearerInterceptor::new(verifier.clone(), ["archive:read"]);
    let server = tonic::transport::Server::builder()
        .add_service(TokenServiceServer::with_interceptor(WhoAmI, interceptor))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let reader = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    let nobody = stub.issue(CLIENT_ID, AUDIENCE, "")?;
    // Before any fetch it cannot verify; it starts one and refuses meanwhile.
    let [(code, _, _), _] = call_both(&url, Some(&reader)).await?;
    assert_eq!(code, Code::Unavailable);
    verifier.ready().await?;
    let [jwks, issue] = call_both(&url, Some(&reader)).await?;
    assert_eq!(jwks, (Code::Ok, CLIENT_ID.to_owned(), None));
    assert_eq!(issue.0, Code::Ok);
    let [(code, _, challenge), _] = call_both(&url, Some(&nobody)).await?;
    assert_eq!(
        (code, challenge.as_deref()),
        (Code::PermissionDenied, Some(READ_CHALLENGE))
    );
    server.abort();
    Ok(())
}
