//! The gateway's routes end to end, driven with `tower::ServiceExt::oneshot` against a fake
//! backend that records what it was asked.

use std::error::Error;
use std::future::{Future, ready};
use std::hash::Hasher;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tollgate_domain::{ErrorCode, IssuedToken, IssuerTemplate, ScopeSet, TenantName, TokenRequest};
use tollgate_gateway::{BackendError, GatewayConfig, TenantKeys, TokenBackend, router};
use tower::ServiceExt;

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
}

/// Issues tokens for `API`, fails as its audience asks for `https://backend/<outcome>`, and
/// knows the keys of tenant `acme`; tenant `down` is unavailable, any other is unknown.
#[derive(Default)]
struct FakeBackend {
    requests: Mutex<Vec<Recorded>>,
}

impl FakeBackend {
    fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
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

/// One token-endpoint request and the error it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    body: String,
    declare_length: bool,
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    backend_calls: usize,
}

impl Case {
    /// A POST of `body` as a form to `/oauth/token` at the `acme` host, expected to fail
    /// before reaching the backend.
    fn post(name: &'static str, body: impl Into<String>) -> Self {
        Self {
            name,
            method: "POST",
            path: "/oauth/token",
            host: TENANT_HOST,
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            body: body.into(),
            declare_length: true,
            status: StatusCode::BAD_REQUEST,
            error: "",
            description: "",
            backend_calls: 0,
        }
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

    fn at(mut self, path: &'static str, host: &'static str) -> Self {
        self.path = path;
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
            .uri(self.path)
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
        Case {
            declare_length: true,
            ..Case::post("body over the limit, declared", too_large.clone()).expect(
                413,
                "invalid_request",
                "the request body exceeds 16384 bytes",
            )
        },
        Case {
            declare_length: false,
            ..Case::post("body over the limit, streamed", too_large).expect(
                413,
                "invalid_request",
                "the request body exceeds 16384 bytes",
            )
        },
        Case {
            method: "GET",
            ..Case::post("GET", "").content_type(None).expect(
                405,
                "invalid_request",
                "the token endpoint accepts only POST",
            )
        },
        Case {
            method: "PUT",
            ..Case::post("PUT", valid.clone()).expect(
                405,
                "invalid_request",
                "the token endpoint accepts only POST",
            )
        },
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

#[tokio::test]
async fn token_endpoint_errors() -> TestResult {
    let (router, backend) = gateway()?;
    for case in error_cases() {
        let name = case.name;
        let calls_before = backend.requests().len();
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
            (case.error == "temporarily_unavailable").then_some("1"),
            "{name}"
        );
        assert_eq!(
            reply.header(header::ALLOW),
            (case.status == StatusCode::METHOD_NOT_ALLOWED).then_some("POST"),
            "{name}"
        );
        assert_eq!(
            backend.requests().len() - calls_before,
            case.backend_calls,
            "{name}"
        );
    }
    Ok(())
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
        "response_types_supported": [],
    });
    for (path, host) in [
        ("/.well-known/oauth-authorization-server", TENANT_HOST),
        ("/.well-known/openid-configuration", TENANT_HOST),
        ("/t/acme/.well-known/oauth-authorization-server", BARE_HOST),
        ("/t/acme/.well-known/openid-configuration", BARE_HOST),
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
