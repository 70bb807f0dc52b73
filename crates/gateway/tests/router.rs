//! The gateway's routes end to end, driven with `tower::ServiceExt::oneshot` (and, where
//! the peer address matters, over TCP through `serve`) against a fake backend that records
//! what it was asked.

use std::error::Error;
use std::future::{Future, ready};
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tollgate_domain::{
    AccessTokenClaims, ErrorCode, IssuedToken, IssuerTemplate, ScopeSet, TenantName,
    TokenCallRequest, TokenRequest,
};
use tollgate_gateway::{
    BackendError, GatewayConfig, RateLimitInfo, TenantKeys, TokenBackend, router,
};
use tower::ServiceExt;

// In a folder of its own so that Cargo does not take it for a test binary.
#[path = "router/proptests.rs"]
mod proptests;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

const ACCESS_TOKEN: &str = "header.payload.signature";
const API: &str = "https://api.example.com/";
const API_FORM: &str = "https%3A%2F%2Fapi.example.com%2F";
const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"}]}"#;
const ISSUER: &str = "http://acme.hub.localhost:8080/";
const TENANT_HOST: &str = "acme.hub.localhost:8080";
const BARE_HOST: &str = "localhost:8080";

/// What the fake backend was asked, with the secret exposed so tests can compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    tenant: String,
    client_id: String,
    client_secret: String,
    audience: String,
    scopes: Option<String>,
    source: Option<IpAddr>,
}

/// What the fake backend was asked to revoke or introspect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordedCall {
    /// `revoke` or `introspect`.
    kind: &'static str,
    tenant: String,
    client_id: String,
    client_secret: String,
    token: String,
    source: Option<IpAddr>,
}

impl RecordedCall {
    fn new(kind: &'static str, tenant: &str, client_id: &str, secret: &str, token: &str) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
            token: token.to_owned(),
            source: None,
        }
    }

    fn from(kind: &'static str, request: &TokenCallRequest) -> Self {
        Self {
            kind,
            tenant: request.tenant.to_string(),
            client_id: request.client_id.to_string(),
            client_secret: request.client_secret.expose().to_owned(),
            token: request.token.clone(),
            source: request.origin.source,
        }
    }
}

/// Issues tokens for `API`, fails as its audience asks for `https://backend/<outcome>`,
/// revokes and introspects any token but fails as a token `backend:<outcome>` asks, and
/// knows the keys of tenant `acme`; tenant `down` is unavailable, `busy` rate-limited, any
/// other is unknown.
#[derive(Default)]
struct FakeBackend {
    requests: Mutex<Vec<Recorded>>,
    calls: Mutex<Vec<RecordedCall>>,
}

impl FakeBackend {
    fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    fn calls(&self) -> Vec<RecordedCall> {
        self.calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }

    /// Token, revocation and introspection requests received so far.
    fn total(&self) -> usize {
        self.requests().len() + self.calls().len()
    }

    fn record_call(&self, kind: &'static str, request: &TokenCallRequest) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(RecordedCall::from(kind, request));
        }
    }
}

/// Retry-After 1.5 s (sent as 2); 100 requests per window, none left, reset in 2.2 s (3).
fn rate_limited() -> BackendError {
    BackendError::new(ErrorCode::ResourceExhausted, "app over its token rate")
        .with_retry_after(Duration::from_millis(1500))
        .with_rate_limit(RateLimitInfo {
            limit: 100,
            remaining: 0,
            reset: Duration::from_millis(2200),
        })
}

/// The failure a `backend:<outcome>` token asks for.
fn call_failure(token: &str) -> Option<BackendError> {
    let outcome = token.strip_prefix("backend:")?;
    Some(match outcome {
        "invalid_client" => BackendError::new(ErrorCode::InvalidClient, "wrong secret for app"),
        "not_found" => BackendError::new(ErrorCode::NotFound, "tenant acme not found"),
        "unavailable" => BackendError::new(ErrorCode::Unavailable, "redis at 10.0.0.8 refused"),
        "exhausted" => BackendError::new(ErrorCode::ResourceExhausted, "pool exhausted"),
        "rate_limited" => rate_limited(),
        _ => BackendError::new(ErrorCode::Internal, "revocation store: key 42"),
    })
}

/// The claims the fake backend reports for an active token.
fn claims(scopes: &[&str]) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.to_owned(),
        sub: "app@client".to_owned(),
        aud: API.to_owned(),
        iat: 1_700_000_000,
        nbf: 1_700_000_000,
        exp: 1_700_003_600,
        jti: "jti-1".to_owned(),
        cid: "tenant-1".to_owned(),
        sid: "secret-1".to_owned(),
        scp: scopes.iter().map(|&scope| scope.to_owned()).collect(),
        scope: scopes.join(" "),
        client_id: "app".to_owned(),
        gty: "client_credentials".to_owned(),
    }
}

impl TokenBackend for FakeBackend {
    fn issue_token(
        &self,
        request: TokenRequest,
    ) -> impl Future<Output = Result<IssuedToken, BackendError>> + Send {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(Recorded {
                tenant: request.tenant.to_string(),
                client_id: request.client_id.to_string(),
                client_secret: request.client_secret.expose().to_owned(),
                audience: request.audience.to_string(),
                scopes: request.scopes.as_ref().map(ScopeSet::to_delimited),
                source: request.origin.source,
            });
        }
        let fail = |code, message: &str| Err(BackendError::new(code, message));
        let outcome = match request.audience.as_str() {
            "https://backend/invalid_client" => {
                fail(ErrorCode::InvalidClient, "no app \"app\" in tenant acme")
            }
            "https://backend/not_found" => fail(ErrorCode::NotFound, "tenant acme not found"),
            "https://backend/invalid_target" => fail(
                ErrorCode::InvalidTarget,
                "audience: not an API of this tenant",
            ),
            "https://backend/unauthorized_client" => fail(
                ErrorCode::UnauthorizedClient,
                "the app has no grant on this API",
            ),
            "https://backend/invalid_scope" => fail(
                ErrorCode::InvalidScope,
                "scope: \"admin\" is not granted to the app",
            ),
            "https://backend/unavailable" => {
                fail(ErrorCode::Unavailable, "database at 10.0.0.7 refused")
            }
            "https://backend/exhausted" => fail(ErrorCode::ResourceExhausted, "pool exhausted"),
            "https://backend/rate_limited" => Err(rate_limited()),
            "https://backend/internal" => fail(ErrorCode::Internal, "panic in signer: key 42"),
            "https://backend/permission_denied" => {
                fail(ErrorCode::PermissionDenied, "admin token lacks scope")
            }
            "https://backend/no_scopes" => Ok(IssuedToken {
                access_token: ACCESS_TOKEN.to_owned(),
                expires_in: 60,
                scopes: ScopeSet::new(),
            }),
            _ => match request.scopes {
                Some(scopes) => Ok(scopes),
                None => ScopeSet::parse_delimited("write read"),
            }
            .map(|scopes| IssuedToken {
                access_token: ACCESS_TOKEN.to_owned(),
                expires_in: 3600,
                scopes,
            })
            .map_err(|error| BackendError::new(ErrorCode::Internal, error.to_string())),
        };
        ready(outcome)
    }

    fn revoke_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        self.record_call("revoke", &request);
        ready(call_failure(&request.token).map_or(Ok(()), Err))
    }

    fn introspect_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<Option<AccessTokenClaims>, BackendError>> + Send {
        self.record_call("introspect", &request);
        ready(match call_failure(&request.token) {
            Some(error) => Err(error),
            None => Ok(match request.token.as_str() {
                "inactive" => None,
                "no-scope" => Some(claims(&[])),
                _ => Some(claims(&["read", "write"])),
            }),
        })
    }

    fn jwks(
        &self,
        tenant: &TenantName,
    ) -> impl Future<Output = Result<TenantKeys, BackendError>> + Send {
        ready(match tenant.as_str() {
            "acme" => Ok(TenantKeys {
                issuer: ISSUER.to_owned(),
                jwks_json: JWKS.to_owned(),
            }),
            "down" => Err(BackendError::new(
                ErrorCode::Unavailable,
                "key store unreachable",
            )),
            "busy" => Err(rate_limited()),
            _ => Err(BackendError::new(ErrorCode::NotFound, "tenant not found")),
        })
    }
}

fn config() -> TestResult<GatewayConfig> {
    Ok(GatewayConfig::new(IssuerTemplate::parse(
        IssuerTemplate::DEFAULT,
    )?))
}

fn gateway() -> TestResult<(Router, Arc<FakeBackend>)> {
    let backend = Arc::new(FakeBackend::default());
    Ok((router(config()?, Arc::clone(&backend)), backend))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn json(&self) -> TestResult<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

async fn send(router: &Router, request: Request<Body>) -> TestResult<Reply> {
    let response = router.clone().oneshot(request).await?;
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX).await?,
    })
}

fn basic(id: &str, secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {encoded}")
}

fn get(path: &str, host: &str) -> TestResult<Request<Body>> {
    Ok(Request::get(path)
        .header(header::HOST, host)
        .body(Body::empty())?)
}

/// One request to a client-authenticated endpoint and the error it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    host: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    body: String,
    declare_length: bool,
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    backend_calls: usize,
    /// `Retry-After`; by default "1" for `temporarily_unavailable`, else absent.
    retry_after: Option<&'static str>,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    rate_limit: Option<[&'static str; 3]>,
}

impl Case {
    /// A POST of `body` as a form to `/oauth/token` at the `acme` host, expected to fail
    /// before reaching the backend.
    fn post(name: &'static str, body: impl Into<String>) -> Self {
        Self {
            name,
            method: "POST",
            path: "/oauth/token".to_owned(),
            host: TENANT_HOST,
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            body: body.into(),
            declare_length: true,
            status: StatusCode::BAD_REQUEST,
            error: "",
            description: "",
            backend_calls: 0,
            retry_after: None,
            rate_limit: None,
        }
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn streamed(mut self) -> Self {
        self.declare_length = false;
        self
    }

    /// Expects the headers of [`rate_limited`].
    fn rate_limited(mut self) -> Self {
        self.retry_after = Some("2");
        self.rate_limit = Some(["100", "0", "3"]);
        self.expect(
            429,
            "temporarily_unavailable",
            "too many requests; retry later",
        )
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }

    fn json(self) -> Self {
        self.content_type(Some("application/json"))
    }

    fn authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    fn at(mut self, path: impl Into<String>, host: &'static str) -> Self {
        self.path = path.into();
        self.host = host;
        self
    }

    fn expect(mut self, status: u16, error: &'static str, description: &'static str) -> Self {
        self.status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        self.error = error;
        self.description = description;
        self
    }

    fn via_backend(mut self) -> Self {
        self.backend_calls = 1;
        self
    }

    fn request(&self) -> TestResult<Request<Body>> {
        let mut builder = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header(header::HOST, self.host);
        if let Some(content_type) = self.content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        if self.declare_length {
            builder = builder.header(header::CONTENT_LENGTH, self.body.len());
        }
        Ok(builder.body(Body::from(self.body.clone()))?)
    }
}

/// A valid request without client authentication.
fn unauthenticated() -> String {
    format!("grant_type=client_credentials&audience={API_FORM}")
}

/// A valid `client_secret_post` request for `audience`.
fn post_for(audience: &str) -> String {
    format!(
        "grant_type=client_credentials&client_id=app&client_secret=s3cret&audience={}",
        form_urlencoded::byte_serialize(audience.as_bytes()).collect::<String>()
    )
}

const CLIENT_AUTH_FAILED: &str = "client authentication failed";
const AUTH_REQUIRED: &str =
    "client authentication is required: HTTP Basic, or client_id and client_secret in the body";
const BAD_CONTENT_TYPE: &str =
    "Content-Type must be application/x-www-form-urlencoded or application/json";

fn error_cases() -> Vec<Case> {
    let valid = post_for(API);
    let too_large = format!("{valid}&padding={}", "x".repeat(16 * 1024));
    vec![
        // Body encoding.
        Case::post("text/plain body", valid.clone())
            .content_type(Some("text/plain"))
            .expect(400, "invalid_request", BAD_CONTENT_TYPE),
        Case::post("no content type", valid.clone())
            .content_type(None)
            .expect(400, "invalid_request", BAD_CONTENT_TYPE),
        Case::post("truncated JSON", r#"{"grant_type":"#).json().expect(
            400,
            "invalid_request",
            "the body must be a JSON object",
        ),
        Case::post("JSON array", r#"["client_credentials"]"#).json().expect(
            400,
            "invalid_request",
            "the body must be a JSON object",
        ),
        Case::post(
            "JSON number value",
            r#"{"grant_type":"client_credentials","client_id":"app","client_secret":42,"audience":"https://api.example.com/"}"#,
        )
        .json()
        .expect(400, "invalid_request", "client_secret must be a string"),
        Case::post(
            "JSON duplicate key",
            r#"{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","audience":"https://api.example.com/","audience":"https://other/"}"#,
        )
        .json()
        .expect(400, "invalid_request", "audience must not be repeated"),
        Case::post("form duplicate", format!("{valid}&client_id=app")).expect(
            400,
            "invalid_request",
            "client_id must not be repeated",
        ),
        Case::post("body over the limit, declared", too_large.clone()).expect(
            413,
            "invalid_request",
            "the request body exceeds 16384 bytes",
        ),
        Case::post("body over the limit, streamed", too_large)
            .streamed()
            .expect(413, "invalid_request", "the request body exceeds 16384 bytes"),
        Case::post("GET", "").method("GET").content_type(None).expect(
            405,
            "invalid_request",
            "the token endpoint accepts only POST",
        ),
        Case::post("PUT", valid.clone()).method("PUT").expect(
            405,
            "invalid_request",
            "the token endpoint accepts only POST",
        ),
        // Grant type, checked before client authentication.
        Case::post(
            "no grant_type",
            format!("client_id=app&client_secret=s3cret&audience={API_FORM}"),
        )
        .expect(400, "invalid_request", "grant_type is required"),
        Case::post(
            "empty grant_type",
            format!("grant_type=&client_id=app&client_secret=s3cret&audience={API_FORM}"),
        )
        .expect(400, "invalid_request", "grant_type is required"),
        Case::post("password grant, no credentials", "grant_type=password").expect(
            400,
            "unsupported_grant_type",
            "only the client_credentials grant is supported",
        ),
        // Client authentication: its shape.
        Case::post("no credentials", unauthenticated()).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        Case::post("client_id only", format!("{}&client_id=app", unauthenticated())).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        Case::post(
            "client_secret only",
            format!("{}&client_secret=s3cret", unauthenticated()),
        )
        .expect(401, "invalid_client", AUTH_REQUIRED),
        Case::post(
            "Basic and client_secret in body",
            format!("{}&client_secret=s3cret", unauthenticated()),
        )
        .authorization(basic("app", "s3cret"))
        .expect(
            400,
            "invalid_request",
            "authenticate with the Authorization header or with client_secret in the body, not both",
        ),
        Case::post(
            "Basic and another client_id in body",
            format!("{}&client_id=other", unauthenticated()),
        )
        .authorization(basic("app", "s3cret"))
        .expect(
            400,
            "invalid_request",
            "client_id does not match the Authorization header",
        ),
        Case::post("Bearer scheme", unauthenticated())
            .authorization("Bearer abc.def.ghi")
            .expect(
                401,
                "invalid_client",
                "unsupported authentication scheme; use Basic or client_secret_post",
            ),
        Case::post("Basic, bad base64", unauthenticated())
            .authorization("Basic !!!")
            .expect(401, "invalid_client", "malformed Basic credentials"),
        Case::post("Basic, no colon", unauthenticated())
            .authorization(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("app")
            ))
            .expect(401, "invalid_client", "malformed Basic credentials"),
        // Client identity: one description for every cause.
        Case::post("Basic, empty secret", unauthenticated())
            .authorization(basic("app", ""))
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("Basic, malformed client_id", unauthenticated())
            .authorization(basic("a%40b", "s3cret"))
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post(
            "post, malformed client_id",
            valid.replace("client_id=app", "client_id=a+b"),
        )
        .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("no tenant in host", valid.clone())
            .at("/oauth/token", BARE_HOST)
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("invalid tenant in host", valid.clone())
            .at("/oauth/token", "bad_name.hub.localhost")
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("invalid tenant in path", valid.clone())
            .at("/t/-acme/oauth/token", BARE_HOST)
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        // Audience and scope.
        Case::post(
            "no audience",
            "grant_type=client_credentials&client_id=app&client_secret=s3cret",
        )
        .expect(400, "invalid_request", "audience is required"),
        Case::post("audience and resource differ", format!("{valid}&resource=https%3A%2F%2Fother%2F"))
            .expect(
                400,
                "invalid_request",
                "audience and resource name different APIs; give one",
            ),
        Case::post("malformed audience", post_for("has space")).expect(
            400,
            "invalid_request",
            "audience: must be printable ASCII without spaces",
        ),
        Case::post(
            "malformed resource",
            "grant_type=client_credentials&client_id=app&client_secret=s3cret&resource=has+space",
        )
        .expect(
            400,
            "invalid_request",
            "resource: must be printable ASCII without spaces",
        ),
        Case::post("malformed scope", format!("{valid}&scope=read+a%22b")).expect(
            400,
            "invalid_scope",
            r#"scope: "a\"b" is not a valid scope token"#,
        ),
        // The limits on a token request, checked before the backend is asked.
        Case::post(
            "65 scopes",
            format!(
                "{valid}&scope={}",
                (0..65).map(|i| format!("s{i}")).collect::<Vec<_>>().join("+")
            ),
        )
        .expect(400, "invalid_scope", "scope: at most 64 scopes may be requested"),
        Case::post(
            "2,000 scopes",
            format!(
                "{valid}&scope={}",
                (0..2_000).map(|i| format!("s{i}")).collect::<Vec<_>>().join("+")
            ),
        )
        .expect(400, "invalid_scope", "scope: at most 64 scopes may be requested"),
        Case::post("scope of 129 bytes", format!("{valid}&scope={}", "s".repeat(129))).expect(
            400,
            "invalid_scope",
            "scope: must be at most 128 characters",
        ),
        Case::post(
            "client_id of 129 bytes, post",
            valid.replace("client_id=app", &format!("client_id={}", "c".repeat(129))),
        )
        .expect(400, "invalid_request", "client_id must be at most 128 characters"),
        Case::post("client_id of 129 bytes, Basic", unauthenticated())
            .authorization(basic(&"c".repeat(129), "s3cret"))
            .expect(400, "invalid_request", "client_id must be at most 128 characters"),
        Case::post(
            "audience of 256 bytes",
            post_for(&format!("https://{}/", "a".repeat(247))),
        )
        .expect(400, "invalid_request", "audience: must be at most 255 characters"),
        // The backend's verdicts.
        Case::post("backend: invalid_client", post_for("https://backend/invalid_client"))
            .via_backend()
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("backend: not_found", post_for("https://backend/not_found"))
            .via_backend()
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        Case::post("backend: invalid_target", post_for("https://backend/invalid_target"))
            .via_backend()
            .expect(400, "invalid_target", "audience: not an API of this tenant"),
        Case::post(
            "backend: unauthorized_client",
            post_for("https://backend/unauthorized_client"),
        )
        .via_backend()
        .expect(400, "unauthorized_client", "the app has no grant on this API"),
        Case::post("backend: invalid_scope", post_for("https://backend/invalid_scope"))
            .via_backend()
            .expect(
                400,
                "invalid_scope",
                r#"scope: "admin" is not granted to the app"#,
            ),
        Case::post("backend: unavailable", post_for("https://backend/unavailable"))
            .via_backend()
            .expect(
                503,
                "temporarily_unavailable",
                "the service is temporarily unavailable; retry later",
            ),
        Case::post("backend: exhausted", post_for("https://backend/exhausted"))
            .via_backend()
            .expect(
                429,
                "temporarily_unavailable",
                "too many requests; retry later",
            ),
        Case::post("backend: rate limited", post_for("https://backend/rate_limited"))
            .via_backend()
            .rate_limited(),
        Case::post("backend: internal", post_for("https://backend/internal"))
            .via_backend()
            .expect(500, "server_error", "internal error"),
        Case::post(
            "backend: permission_denied",
            post_for("https://backend/permission_denied"),
        )
        .via_backend()
        .expect(500, "server_error", "internal error"),
    ]
}

/// Sends every case and checks the whole error response: status, body, headers, and
/// whether the backend was asked.
async fn check_errors(cases: Vec<Case>) -> TestResult {
    let (router, backend) = gateway()?;
    for case in cases {
        let name = format!("{} {}", case.path, case.name);
        let calls_before = backend.total();
        let reply = send(&router, case.request()?).await?;
        assert_eq!(reply.status, case.status, "{name}");
        assert_eq!(
            reply.json()?,
            json!({"error": case.error, "error_description": case.description}),
            "{name}"
        );
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some("application/json"),
            "{name}"
        );
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("no-store"),
            "{name}"
        );
        assert_eq!(reply.header(header::PRAGMA), Some("no-cache"), "{name}");
        assert_eq!(
            reply.header(header::WWW_AUTHENTICATE),
            (case.error == "invalid_client").then_some(r#"Basic realm="tollgate""#),
            "{name}"
        );
        assert_eq!(
            reply.header(header::RETRY_AFTER),
            case.retry_after
                .or((case.error == "temporarily_unavailable").then_some("1")),
            "{name}"
        );
        assert_eq!(
            RATELIMIT_FIELDS.map(|field| reply.header(HeaderName::from_static(field))),
            case.rate_limit.map_or([None; 3], |values| values.map(Some)),
            "{name}"
        );
        assert_eq!(
            reply.header(header::ALLOW),
            (case.status == StatusCode::METHOD_NOT_ALLOWED).then_some("POST"),
            "{name}"
        );
        assert_eq!(backend.total() - calls_before, case.backend_calls, "{name}");
    }
    Ok(())
}

const RATELIMIT_FIELDS: [&str; 3] = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];

#[tokio::test]
async fn token_endpoint_errors() -> TestResult {
    check_errors(error_cases()).await
}

/// A valid `client_secret_post` revocation or introspection body for `token`.
fn call_for(token: &str) -> String {
    format!(
        "client_id=app&client_secret=s3cret&token={}",
        form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    )
}

/// The errors of `/oauth/<endpoint>`, `revoke` or `introspect`, which share everything but
/// the name in the 405 description.
fn token_call_cases(endpoint: &str, not_post: &'static str) -> Vec<Case> {
    let new =
        |name, body: String| Case::post(name, body).at(format!("/oauth/{endpoint}"), TENANT_HOST);
    let valid = call_for("a.b.c");
    let too_large = format!("{valid}&padding={}", "x".repeat(16 * 1024));
    vec![
        // Body encoding.
        new("text/plain body", valid.clone())
            .content_type(Some("text/plain"))
            .expect(400, "invalid_request", BAD_CONTENT_TYPE),
        new("no content type", valid.clone())
            .content_type(None)
            .expect(400, "invalid_request", BAD_CONTENT_TYPE),
        new("truncated JSON", r#"{"token":"#.to_owned()).json().expect(
            400,
            "invalid_request",
            "the body must be a JSON object",
        ),
        new(
            "JSON number token",
            r#"{"client_id":"app","client_secret":"s3cret","token":42}"#.to_owned(),
        )
        .json()
        .expect(400, "invalid_request", "token must be a string"),
        new(
            "JSON duplicate token",
            r#"{"client_id":"app","client_secret":"s3cret","token":"a","token":"b"}"#.to_owned(),
        )
        .json()
        .expect(400, "invalid_request", "token must not be repeated"),
        new("form duplicate token", format!("{valid}&token=other")).expect(
            400,
            "invalid_request",
            "token must not be repeated",
        ),
        new("form duplicate client_id", format!("{valid}&client_id=app")).expect(
            400,
            "invalid_request",
            "client_id must not be repeated",
        ),
        new(
            "duplicate token_type_hint",
            format!("{valid}&token_type_hint=access_token&token_type_hint=access_token"),
        )
        .expect(
            400,
            "invalid_request",
            "token_type_hint must not be repeated",
        ),
        new("body over the limit, declared", too_large.clone()).expect(
            413,
            "invalid_request",
            "the request body exceeds 16384 bytes",
        ),
        new("body over the limit, streamed", too_large)
            .streamed()
            .expect(413, "invalid_request", "the request body exceeds 16384 bytes"),
        new("GET", String::new())
            .method("GET")
            .content_type(None)
            .expect(405, "invalid_request", not_post),
        new("PUT", valid.clone())
            .method("PUT")
            .expect(405, "invalid_request", not_post),
        new("DELETE", valid.clone())
            .method("DELETE")
            .expect(405, "invalid_request", not_post),
        // The token, checked after the shape of the client authentication.
        new("no token", "client_id=app&client_secret=s3cret".to_owned()).expect(
            400,
            "invalid_request",
            "token is required",
        ),
        new("empty token", "client_id=app&client_secret=s3cret&token=".to_owned()).expect(
            400,
            "invalid_request",
            "token is required",
        ),
        new("no token, Basic", "token_type_hint=access_token".to_owned())
            .authorization(basic("app", "s3cret"))
            .expect(400, "invalid_request", "token is required"),
        // …but before the client's identity.
        new("no token, unknown tenant", "client_id=app&client_secret=s3cret".to_owned())
            .at(format!("/t/ghost/oauth/{endpoint}"), BARE_HOST)
            .expect(400, "invalid_request", "token is required"),
        // Client authentication: its shape.
        new("no credentials", "token=a.b.c".to_owned()).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        new("no credentials, no token", String::new()).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        new("client_id only", "token=a.b.c&client_id=app".to_owned()).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        new("client_secret only", "token=a.b.c&client_secret=s3cret".to_owned()).expect(
            401,
            "invalid_client",
            AUTH_REQUIRED,
        ),
        new("Basic and client_secret in body", "token=a.b.c&client_secret=s3cret".to_owned())
            .authorization(basic("app", "s3cret"))
            .expect(
                400,
                "invalid_request",
                "authenticate with the Authorization header or with client_secret in the body, not both",
            ),
        new("Basic and another client_id in body", "token=a.b.c&client_id=other".to_owned())
            .authorization(basic("app", "s3cret"))
            .expect(
                400,
                "invalid_request",
                "client_id does not match the Authorization header",
            ),
        new("Bearer scheme", "token=a.b.c".to_owned())
            .authorization("Bearer a.b.c")
            .expect(
                401,
                "invalid_client",
                "unsupported authentication scheme; use Basic or client_secret_post",
            ),
        new("Basic, bad base64", "token=a.b.c".to_owned())
            .authorization("Basic !!!")
            .expect(401, "invalid_client", "malformed Basic credentials"),
        // Client identity: one description for every cause.
        new("Basic, empty secret", "token=a.b.c".to_owned())
            .authorization(basic("app", ""))
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("Basic, malformed client_id", "token=a.b.c".to_owned())
            .authorization(basic("a%40b", "s3cret"))
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("post, malformed client_id", valid.replace("client_id=app", "client_id=a+b"))
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("no tenant in host", valid.clone())
            .at(format!("/oauth/{endpoint}"), BARE_HOST)
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("invalid tenant in host", valid.clone())
            .at(format!("/oauth/{endpoint}"), "bad_name.hub.localhost")
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("invalid tenant in path", valid.clone())
            .at(format!("/t/-acme/oauth/{endpoint}"), BARE_HOST)
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        // The backend's verdicts.
        new("backend: invalid_client", call_for("backend:invalid_client"))
            .via_backend()
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("backend: not_found", call_for("backend:not_found"))
            .via_backend()
            .expect(401, "invalid_client", CLIENT_AUTH_FAILED),
        new("backend: unavailable", call_for("backend:unavailable"))
            .via_backend()
            .expect(
                503,
                "temporarily_unavailable",
                "the service is temporarily unavailable; retry later",
            ),
        new("backend: exhausted", call_for("backend:exhausted"))
            .via_backend()
            .expect(
                429,
                "temporarily_unavailable",
                "too many requests; retry later",
            ),
        new("backend: rate limited", call_for("backend:rate_limited"))
            .via_backend()
            .rate_limited(),
        new("backend: internal", call_for("backend:internal"))
            .via_backend()
            .expect(500, "server_error", "internal error"),
    ]
}

#[tokio::test]
async fn revocation_endpoint_errors() -> TestResult {
    check_errors(token_call_cases(
        "revoke",
        "the revocation endpoint accepts only POST",
    ))
    .await
}

#[tokio::test]
async fn introspection_endpoint_errors() -> TestResult {
    check_errors(token_call_cases(
        "introspect",
        "the introspection endpoint accepts only POST",
    ))
    .await
}

/// Sends a token request and checks the success response's headers; returns its body and
/// what the backend received.
async fn issue(
    path: &str,
    host: &str,
    content_type: &str,
    authorization: Option<&str>,
    body: &str,
) -> TestResult<(Bytes, Recorded)> {
    let (router, backend) = gateway()?;
    let mut builder = Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(authorization) = authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    let reply = send(&router, builder.body(Body::from(body.to_owned()))?).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
    assert_eq!(reply.header(header::PRAGMA), Some("no-cache"));
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), None);
    let requests = backend.requests();
    assert_eq!(requests.len(), 1);
    let recorded = requests.into_iter().next().ok_or("no request recorded")?;
    Ok((reply.body, recorded))
}

fn recorded(tenant: &str, client_id: &str, secret: &str, scopes: Option<&str>) -> Recorded {
    Recorded {
        tenant: tenant.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: secret.to_owned(),
        audience: API.to_owned(),
        scopes: scopes.map(str::to_owned),
        source: None,
    }
}

#[tokio::test]
async fn client_secret_post_under_path_prefix() -> TestResult {
    let (body, request) = issue(
        "/t/acme/oauth/token",
        BARE_HOST,
        "application/x-www-form-urlencoded",
        None,
        &format!("{}&scope=write++read&unknown=1", post_for(API)),
    )
    .await?;
    // The exact bytes, member order included.
    assert_eq!(
        body,
        r#"{"access_token":"header.payload.signature","token_type":"Bearer","expires_in":3600,"scope":"read write"}"#
    );
    assert_eq!(
        request,
        recorded("acme", "app", "s3cret", Some("read write"))
    );
    Ok(())
}

#[tokio::test]
async fn client_secret_basic_at_tenant_host() -> TestResult {
    // The id and secret are url-encoded before base64, as RFC 6749 §2.3.1 requires.
    let (body, request) = issue(
        "/oauth/token",
        TENANT_HOST,
        "application/x-www-form-urlencoded;charset=UTF-8",
        Some(&basic("app.1", "p%3Ass%25w%2Brd+x")),
        // A body client_id naming the same client is allowed; an empty scope is no scope.
        &format!("{}&client_id=app.1&scope=", unauthenticated()),
    )
    .await?;
    assert_eq!(
        serde_json::from_slice::<Value>(&body)?,
        json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600, "scope": "read write"})
    );
    assert_eq!(request, recorded("acme", "app.1", "p:ss%w+rd x", None));
    Ok(())
}

#[tokio::test]
async fn json_body_with_resource() -> TestResult {
    let (body, request) = issue(
        "/oauth/token",
        "ACME.Hub.LocalHost",
        "application/json; charset=utf-8",
        None,
        r#"{"grant_type":"client_credentials","client_id":"app","client_secret":"s\u0033cret","resource":"https://api.example.com/","audience":"https://api.example.com/","scope":"read","extra":[1,{"a":null}]}"#,
    )
    .await?;
    assert_eq!(
        serde_json::from_slice::<Value>(&body)?,
        json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600, "scope": "read"})
    );
    assert_eq!(request, recorded("acme", "app", "s3cret", Some("read")));
    Ok(())
}

#[tokio::test]
async fn path_tenant_wins_over_host() -> TestResult {
    let (_, request) = issue(
        "/t/acme/oauth/token",
        "other.hub.localhost",
        "application/x-www-form-urlencoded",
        Some(&basic("app", "s3cret")),
        &unauthenticated(),
    )
    .await?;
    assert_eq!(request, recorded("acme", "app", "s3cret", None));
    Ok(())
}

/// A path tenant that is not UTF-8 once percent-decoded names no tenant; the host's tenant
/// must not stand in for it. (Found by the property
/// `an_escaped_path_tenant_is_decoded_never_replaced_by_the_host`.)
#[tokio::test]
async fn undecodable_path_tenant_is_not_replaced_by_the_host() -> TestResult {
    let (router, backend) = gateway()?;
    for path in ["/t/%80/oauth/token", "/t/ac%FFme/oauth/token"] {
        let request = Request::post(path)
            .header(header::HOST, TENANT_HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(post_for(API)))?;
        let reply = send(&router, request).await?;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            reply.json()?,
            json!({"error": "invalid_client", "error_description": CLIENT_AUTH_FAILED}),
            "{path}"
        );
    }
    for path in [
        "/t/%80/.well-known/jwks.json",
        "/t/%80/.well-known/openid-configuration",
    ] {
        let reply = send(&router, get(path, TENANT_HOST)?).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(backend.total(), 0);
    Ok(())
}

#[tokio::test]
async fn empty_grant_omits_scope() -> TestResult {
    let (body, _) = issue(
        "/oauth/token",
        TENANT_HOST,
        "application/x-www-form-urlencoded",
        None,
        &post_for("https://backend/no_scopes"),
    )
    .await?;
    assert_eq!(
        serde_json::from_slice::<Value>(&body)?,
        json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 60})
    );
    Ok(())
}

#[tokio::test]
async fn body_at_the_limit_is_read() -> TestResult {
    let mut body = format!("{}&padding=", post_for(API));
    let padding = GatewayConfig::DEFAULT_MAX_BODY_BYTES - body.len();
    body.push_str(&"x".repeat(padding));
    assert_eq!(body.len(), 16 * 1024);
    let (_, request) = issue(
        "/oauth/token",
        TENANT_HOST,
        "application/x-www-form-urlencoded",
        None,
        &body,
    )
    .await?;
    assert_eq!(request, recorded("acme", "app", "s3cret", None));
    Ok(())
}

#[tokio::test]
async fn custom_body_limit() -> TestResult {
    let mut config = config()?;
    config.max_body_bytes = 64;
    let router = router(config, Arc::new(FakeBackend::default()));
    let request = Request::post("/oauth/token")
        .header(header::HOST, TENANT_HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(post_for(API)))?;
    let reply = send(&router, request).await?;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.json()?,
        json!({"error": "invalid_request", "error_description": "the request body exceeds 64 bytes"})
    );
    Ok(())
}

fn expected_etag() -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(JWKS.as_bytes());
    format!("\"{:016x}\"", hasher.finish())
}

#[tokio::test]
async fn jwks_at_host_and_path() -> TestResult {
    let (router, _) = gateway()?;
    for (path, host) in [
        ("/.well-known/jwks.json", TENANT_HOST),
        ("/t/acme/.well-known/jwks.json", BARE_HOST),
    ] {
        let reply = send(&router, get(path, host)?).await?;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, JWKS.as_bytes(), "{path}");
        assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=300")
        );
        assert_eq!(reply.header(header::ETAG), Some(expected_etag().as_str()));
    }
    Ok(())
}

#[tokio::test]
async fn jwks_conditional_get() -> TestResult {
    let (router, _) = gateway()?;
    let etag = expected_etag();
    for (if_none_match, status) in [
        (etag.clone(), StatusCode::NOT_MODIFIED),
        (format!("W/{etag}"), StatusCode::NOT_MODIFIED),
        (format!(r#""stale", {etag}"#), StatusCode::NOT_MODIFIED),
        ("*".to_owned(), StatusCode::NOT_MODIFIED),
        (r#""stale""#.to_owned(), StatusCode::OK),
    ] {
        let request = Request::get("/.well-known/jwks.json")
            .header(header::HOST, TENANT_HOST)
            .header(header::IF_NONE_MATCH, &if_none_match)
            .body(Body::empty())?;
        let reply = send(&router, request).await?;
        assert_eq!(reply.status, status, "{if_none_match}");
        let expected_body: &[u8] = if status == StatusCode::OK {
            JWKS.as_bytes()
        } else {
            b""
        };
        assert_eq!(reply.body, expected_body, "{if_none_match}");
        assert_eq!(reply.header(header::ETAG), Some(etag.as_str()));
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=300")
        );
    }
    Ok(())
}

#[tokio::test]
async fn jwks_max_age_is_configurable() -> TestResult {
    let mut config = config()?;
    config.jwks_max_age_seconds = 60;
    let router = router(config, Arc::new(FakeBackend::default()));
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let reply = send(&router, get(path, TENANT_HOST)?).await?;
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=60")
        );
    }
    Ok(())
}

#[tokio::test]
async fn discovery_errors() -> TestResult {
    let (router, _) = gateway()?;
    for (path, host, status, error, description) in [
        (
            "/.well-known/jwks.json",
            BARE_HOST,
            404,
            "not_found",
            "unknown tenant",
        ),
        (
            "/t/Acme/.well-known/jwks.json",
            BARE_HOST,
            404,
            "not_found",
            "unknown tenant",
        ),
        (
            "/.well-known/jwks.json",
            "ghost.hub.localhost",
            404,
            "not_found",
            "tenant not found",
        ),
        (
            "/t/ghost/.well-known/oauth-authorization-server",
            BARE_HOST,
            404,
            "not_found",
            "tenant not found",
        ),
        (
            "/.well-known/openid-configuration",
            BARE_HOST,
            404,
            "not_found",
            "unknown tenant",
        ),
        (
            "/.well-known/jwks.json",
            "down.hub.localhost",
            503,
            "temporarily_unavailable",
            "the service is temporarily unavailable; retry later",
        ),
        (
            "/.well-known/oauth-authorization-server/t/ghost",
            BARE_HOST,
            404,
            "not_found",
            "tenant not found",
        ),
        (
            "/.well-known/openid-configuration/t/Acme",
            TENANT_HOST,
            404,
            "not_found",
            "unknown tenant",
        ),
        (
            "/.well-known/oauth-authorization-server/t/down/",
            BARE_HOST,
            503,
            "temporarily_unavailable",
            "the service is temporarily unavailable; retry later",
        ),
        (
            "/.well-known/oauth-authorization-server/t/acme/x",
            BARE_HOST,
            404,
            "not_found",
            "no such endpoint",
        ),
        (
            "/.well-known/jwks.json/t/acme",
            BARE_HOST,
            404,
            "not_found",
            "no such endpoint",
        ),
        ("/nope", TENANT_HOST, 404, "not_found", "no such endpoint"),
        (
            "/t/acme/nope",
            BARE_HOST,
            404,
            "not_found",
            "no such endpoint",
        ),
    ] {
        let reply = send(&router, get(path, host)?).await?;
        assert_eq!(reply.status.as_u16(), status, "{path} {host}");
        assert_eq!(
            reply.json()?,
            json!({"error": error, "error_description": description}),
            "{path} {host}"
        );
        assert_eq!(reply.header(header::CACHE_CONTROL), None, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn metadata_documents() -> TestResult {
    let (router, _) = gateway()?;
    let expected = json!({
        "issuer": ISSUER,
        "token_endpoint": "http://acme.hub.localhost:8080/oauth/token",
        "jwks_uri": "http://acme.hub.localhost:8080/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint": "http://acme.hub.localhost:8080/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint": "http://acme.hub.localhost:8080/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
    });
    for (path, host) in [
        ("/.well-known/oauth-authorization-server", TENANT_HOST),
        ("/.well-known/openid-configuration", TENANT_HOST),
        ("/t/acme/.well-known/oauth-authorization-server", BARE_HOST),
        ("/t/acme/.well-known/openid-configuration", BARE_HOST),
        // RFC 8414 §3.1: for a path issuer the well-known segment goes between host and
        // path; the path tenant wins over the host's, as under `/t/<tenant>/`.
        ("/.well-known/oauth-authorization-server/t/acme", BARE_HOST),
        ("/.well-known/oauth-authorization-server/t/acme/", BARE_HOST),
        ("/.well-known/openid-configuration/t/acme", BARE_HOST),
        ("/.well-known/openid-configuration/t/acme/", BARE_HOST),
        (
            "/.well-known/oauth-authorization-server/t/acme",
            "ghost.hub.localhost",
        ),
    ] {
        let reply = send(&router, get(path, host)?).await?;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.json()?, expected, "{path}");
        assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=300")
        );
    }
    Ok(())
}

#[tokio::test]
async fn healthz_and_other_methods() -> TestResult {
    let (router, _) = gateway()?;
    let reply = send(&router, get("/healthz", BARE_HOST)?).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ok".as_bytes());

    let request = Request::post("/.well-known/jwks.json")
        .header(header::HOST, TENANT_HOST)
        .body(Body::empty())?;
    let reply = send(&router, request).await?;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header(header::ALLOW), Some("GET,HEAD"));
    Ok(())
}

#[tokio::test]
async fn serves_over_tcp_until_shutdown() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (router, _) = gateway()?;
    let server = tokio::spawn(tollgate_gateway::serve(listener, router, async {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /t/acme/.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(JWKS), "{response}");

    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// One well-formed revocation or introspection request and what the backend must receive.
struct CallCase {
    name: &'static str,
    path: &'static str,
    host: &'static str,
    content_type: &'static str,
    authorization: Option<String>,
    body: &'static str,
    /// Tenant, client id, secret, token.
    expected: [&'static str; 4],
}

fn call_cases() -> Vec<CallCase> {
    let form = "application/x-www-form-urlencoded";
    let case = |name, body| CallCase {
        name,
        path: "/oauth/{endpoint}",
        host: TENANT_HOST,
        content_type: form,
        authorization: None,
        body,
        expected: ["acme", "app", "s3cret", "a.b.c"],
    };
    vec![
        case(
            "client_secret_post",
            "client_id=app&client_secret=s3cret&token=a.b.c",
        ),
        CallCase {
            authorization: Some(basic("app.1", "p%3Ass%25w%2Brd+x")),
            expected: ["acme", "app.1", "p:ss%w+rd x", "a.b.c"],
            // A body client_id naming the same client is allowed.
            ..case("client_secret_basic", "token=a.b.c&client_id=app.1")
        },
        CallCase {
            path: "/t/acme/oauth/{endpoint}",
            host: BARE_HOST,
            ..case(
                "path prefix",
                "client_id=app&client_secret=s3cret&token=a.b.c",
            )
        },
        CallCase {
            path: "/t/acme/oauth/{endpoint}",
            host: "other.hub.localhost",
            ..case(
                "path wins over host",
                "client_id=app&client_secret=s3cret&token=a.b.c",
            )
        },
        CallCase {
            content_type: "application/json; charset=utf-8",
            ..case(
                "JSON body",
                r#"{"client_id":"app","client_secret":"s\u0033cret","token":"a.b.c","token_type_hint":"access_token","extra":[1]}"#,
            )
        },
        // RFC 7009 §2.1: a hint the server does not use is ignored, whatever its value.
        case(
            "hint access_token",
            "client_id=app&client_secret=s3cret&token=a.b.c&token_type_hint=access_token",
        ),
        case(
            "hint refresh_token",
            "client_id=app&client_secret=s3cret&token=a.b.c&token_type_hint=refresh_token",
        ),
        case(
            "unknown hint",
            "client_id=app&client_secret=s3cret&token=a.b.c&token_type_hint=bogus",
        ),
        case(
            "empty hint",
            "client_id=app&client_secret=s3cret&token=a.b.c&token_type_hint=",
        ),
        // Other endpoints' parameters are unknown here, so even repeated they are ignored.
        case(
            "token endpoint parameters",
            "grant_type=x&grant_type=y&scope=a&scope=b&audience=c&client_id=app&client_secret=s3cret&token=a.b.c",
        ),
        // The token is passed on as presented, decoded from the form.
        CallCase {
            expected: ["acme", "app", "s3cret", "not a jwt+/="],
            ..case(
                "opaque token",
                "client_id=app&client_secret=s3cret&token=not+a+jwt%2B%2F%3D",
            )
        },
    ]
}

/// Sends `case` to `/oauth/<endpoint>` and checks what the backend received; returns the
/// reply.
async fn call(endpoint: &'static str, case: &CallCase) -> TestResult<Reply> {
    let (router, backend) = gateway()?;
    let name = case.name;
    let mut builder = Request::post(case.path.replace("{endpoint}", endpoint))
        .header(header::HOST, case.host)
        .header(header::CONTENT_TYPE, case.content_type);
    if let Some(authorization) = &case.authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    let reply = send(&router, builder.body(Body::from(case.body))?).await?;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {:?}", reply.body);
    assert_eq!(
        reply.header(header::CACHE_CONTROL),
        Some("no-store"),
        "{name}"
    );
    assert_eq!(reply.header(header::PRAGMA), Some("no-cache"), "{name}");
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), None, "{name}");
    let [tenant, client_id, secret, token] = case.expected;
    assert_eq!(
        backend.calls(),
        [RecordedCall::new(
            endpoint, tenant, client_id, secret, token
        )],
        "{name}"
    );
    assert_eq!(backend.requests(), [], "{name}");
    Ok(reply)
}

#[tokio::test]
async fn revocation_succeeds_with_an_empty_body() -> TestResult {
    for case in call_cases() {
        let reply = call("revoke", &case).await?;
        // RFC 7009 §2.2: 200, and the content of the body is ignored by the client.
        assert_eq!(reply.body, "", "{}", case.name);
        assert_eq!(reply.header(header::CONTENT_TYPE), None, "{}", case.name);
        assert_eq!(
            reply.header(header::CONTENT_LENGTH),
            Some("0"),
            "{}",
            case.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn revocation_of_an_unknown_token_succeeds() -> TestResult {
    // The backend answers Ok for a token it does not know; so must the gateway.
    let case = CallCase {
        name: "unknown token",
        path: "/oauth/{endpoint}",
        host: TENANT_HOST,
        content_type: "application/x-www-form-urlencoded",
        authorization: Some(basic("app", "s3cret")),
        body: "token=inactive",
        expected: ["acme", "app", "s3cret", "inactive"],
    };
    let reply = call("revoke", &case).await?;
    assert_eq!(reply.body, "");
    Ok(())
}

/// The exact body for [`claims`] with `read write`.
const ACTIVE: &str = r#"{"active":true,"scope":"read write","client_id":"app","token_type":"Bearer","exp":1700003600,"iat":1700000000,"nbf":1700000000,"sub":"app@client","aud":"https://api.example.com/","iss":"http://acme.hub.localhost:8080/","jti":"jti-1","cid":"tenant-1","sid":"secret-1","scp":["read","write"],"gty":"client_credentials"}"#;

#[tokio::test]
async fn introspection_of_an_active_token() -> TestResult {
    for case in call_cases() {
        let reply = call("introspect", &case).await?;
        // The exact bytes, member order included.
        assert_eq!(reply.body, ACTIVE, "{}", case.name);
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some("application/json"),
            "{}",
            case.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn introspection_shapes() -> TestResult {
    for (token, expected) in [
        ("a.b.c", ACTIVE),
        // RFC 7662 §2.2: an inactive token is `active` and nothing else.
        ("inactive", r#"{"active":false}"#),
        // An empty grant has no `scope` (as at the token endpoint) and an empty `scp`.
        (
            "no-scope",
            r#"{"active":true,"client_id":"app","token_type":"Bearer","exp":1700003600,"iat":1700000000,"nbf":1700000000,"sub":"app@client","aud":"https://api.example.com/","iss":"http://acme.hub.localhost:8080/","jti":"jti-1","cid":"tenant-1","sid":"secret-1","scp":[],"gty":"client_credentials"}"#,
        ),
    ] {
        let (router, _) = gateway()?;
        let request = Request::post("/oauth/introspect")
            .header(header::HOST, TENANT_HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic("app", "s3cret"))
            .body(Body::from(format!("token={token}")))?;
        let reply = send(&router, request).await?;
        assert_eq!(reply.status, StatusCode::OK, "{token}");
        assert_eq!(reply.body, expected, "{token}");
        assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(reply.header(header::PRAGMA), Some("no-cache"));
    }
    Ok(())
}

/// A form POST to `path` at the `acme` host, authenticated with `client_secret_post`, that
/// every endpoint accepts: a token request for `API` that also carries a `token`.
fn accepted_everywhere(path: &str) -> TestResult<Request<Body>> {
    Ok(Request::post(path)
        .header(header::HOST, TENANT_HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        // Never trusted: anyone can send it.
        .header("x-forwarded-for", "203.0.113.9")
        .header(header::FORWARDED, "for=203.0.113.9")
        .body(Body::from(format!("{}&token=a.b.c", post_for(API))))?)
}

/// The `source` each kind of request reached the backend with, in the order sent.
fn sources(backend: &FakeBackend) -> Vec<Option<IpAddr>> {
    let mut sources: Vec<_> = backend.requests().iter().map(|r| r.source).collect();
    sources.extend(backend.calls().iter().map(|call| call.source));
    sources
}

#[tokio::test]
async fn source_address_from_connect_info() -> TestResult {
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    for (peer, expected) in [
        (Some(SocketAddr::new(v4, 50_000)), Some(v4)),
        (Some(SocketAddr::new(v6, 50_000)), Some(v6)),
        // An IPv4 client of a dual-stack listener.
        (
            Some(SocketAddr::new(
                IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
                50_000,
            )),
            Some(v4),
        ),
        // Not served through `serve`: no address, and no failure either.
        (None, None),
    ] {
        let (router, backend) = gateway()?;
        for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
            let mut request = accepted_everywhere(path)?;
            if let Some(peer) = peer {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            let reply = send(&router, request).await?;
            assert_eq!(reply.status, StatusCode::OK, "{path} {peer:?}");
        }
        assert_eq!(sources(&backend), [expected; 3], "{peer:?}");
    }
    Ok(())
}

/// Sends `request` as HTTP/1.1 over a new connection to `address` and returns the raw
/// response.
async fn over_tcp(address: SocketAddr, request: Request<Body>) -> TestResult<String> {
    use std::fmt::Write as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let mut head = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        write!(head, "{name}: {}\r\n", value.to_str()?)?;
    }
    write!(
        head,
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn serve_passes_the_peer_address() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (router, backend) = gateway()?;
    let server = tokio::spawn(tollgate_gateway::serve(listener, router, async {
        let _ = stopped.await;
    }));
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
        let response = over_tcp(address, accepted_everywhere(path)?).await?;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }
    let _ = stop.send(());
    server.await??;
    assert_eq!(
        sources(&backend),
        [Some(IpAddr::V4(Ipv4Addr::LOCALHOST)); 3]
    );
    Ok(())
}

#[tokio::test]
async fn rate_limit_headers_on_discovery() -> TestResult {
    let (router, _) = gateway()?;
    for path in [
        "/t/busy/.well-known/jwks.json",
        "/t/busy/.well-known/oauth-authorization-server",
    ] {
        let reply = send(&router, get(path, BARE_HOST)?).await?;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(
            reply.json()?,
            json!({"error": "temporarily_unavailable", "error_description": "too many requests; retry later"})
        );
        assert_eq!(reply.header(header::RETRY_AFTER), Some("2"), "{path}");
        assert_eq!(
            RATELIMIT_FIELDS.map(|field| reply.header(HeaderName::from_static(field))),
            [Some("100"), Some("0"), Some("3")],
            "{path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn new_endpoints_exist_only_for_post_under_both_prefixes() -> TestResult {
    let (router, _) = gateway()?;
    for path in [
        "/oauth/revoke",
        "/oauth/introspect",
        "/t/acme/oauth/revoke",
        "/t/acme/oauth/introspect",
    ] {
        let reply = send(&router, get(path, TENANT_HOST)?).await?;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(reply.header(header::ALLOW), Some("POST"), "{path}");
    }
    for path in [
        "/oauth/revoke/",
        "/oauth/introspection",
        "/t/acme/oauth/revoke/x",
    ] {
        let reply = send(&router, get(path, TENANT_HOST)?).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    Ok(())
}
