//! A small OAuth 2.0 authorization server, independent of Tollgate's own code, for testing
//! the SDK crates (`tollgate-client`, `tollgate-verify`) against an issuer that is not the
//! real server. Dev-dependency only.
//!
//! It serves, on `127.0.0.1:0`, under the `/t/<tenant>/` prefix as Tollgate's gateway does:
//! RFC 8414 metadata, a JWK Set with `Cache-Control: max-age`, the client-credentials token
//! endpoint (RFC 6749 §4.4, `client_secret_basic` and `client_secret_post`, `audience` and
//! `scope` parameters) and RFC 7662 introspection; and, on a second port, the gRPC
//! `tollgate.v1.TokenService/IssueToken` and `WatchRevocations`. It signs ES256 with ring
//! keys it generates.
//!
//! Tests steer it: scripted failures for the next token requests, a delay per token request,
//! key rotation, revocation, the revocation stream (entries pushed by the test, heartbeats,
//! silence, ended streams), and counters of every kind of request.
//!
//! Invariant: loopback only; it stops when dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tollgate_domain::{Clock, ErrorCode, SystemClock};
use tollgate_proto::v1::token_service_server::{TokenService, TokenServiceServer};
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevocationEntry, RevokeTokenRequest,
    RevokeTokenResponse, WatchRevocationsRequest, WatchRevocationsResponse,
};

/// Why the stub could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// Binding a loopback port failed.
    #[error("cannot bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    /// ring refused to generate or use a key.
    #[error("key error: {0}")]
    Key(String),
    /// JSON could not be encoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the next token request gets instead of being served normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// An HTTP status with an empty JSON body (gRPC: 503 is UNAVAILABLE, 500 INTERNAL).
    Status(u16),
    /// 429 with `Retry-After` (gRPC: RESOURCE_EXHAUSTED with `RetryInfo`).
    TooManyRequests {
        /// The `Retry-After` seconds.
        retry_after_seconds: u64,
    },
    /// An RFC 6749 §5.2 error, e.g. `(401, "invalid_client")`.
    OAuthError(u16, &'static str),
}

/// One token request as the stub saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCall {
    /// `basic`, `post`, `grpc`, `both` or `none`.
    pub client_auth: &'static str,
    /// The client id presented.
    pub client_id: Option<String>,
    /// The `audience` parameter.
    pub audience: Option<String>,
    /// The `scope` parameter (gRPC: the scopes joined by spaces).
    pub scope: Option<String>,
}

/// A running stub issuer. Stops when dropped.
pub struct StubIssuer {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    state: Arc<State>,
    shutdown: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

struct State {
    issuer: String,
    tenant: String,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    token_requests: AtomicUsize,
    jwks_fetches: AtomicUsize,
    metadata_fetches: AtomicUsize,
    introspections: AtomicUsize,
    watches: AtomicUsize,
}

/// One open `WatchRevocations` stream.
type Watcher = mpsc::Sender<Result<WatchRevocationsResponse, tonic::Status>>;

struct Inner {
    /// Published keys; `signing` indexes the one that signs.
    keys: Vec<Key>,
    signing: usize,
    clients: HashMap<String, (String, Vec<String>)>,
    token_lifetime: i64,
    jwks_max_age: u64,
    script: VecDeque<Scripted>,
    delay: Duration,
    issued: HashSet<String>,
    revoked: HashSet<String>,
    next_jti: u64,
    calls: Vec<TokenCall>,
    /// Every entry pushed on the revocation stream: the snapshot of new watches.
    watch_entries: Vec<RevocationEntry>,
    watchers: Vec<Watcher>,
    /// While set, watches get nothing: no snapshot, no entries, no heartbeats.
    is_watch_silent: bool,
    watch_heartbeat: Duration,
}

struct Key {
    kid: String,
    pair: EcdsaKeyPair,
}

impl Key {
    fn generate(kid: String) -> Result<Self, StubError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|error| StubError::Key(error.to_string()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|error| StubError::Key(error.to_string()))?;
        Ok(Self { kid, pair })
    }

    fn jwk(&self) -> Value {
        // The public key is the SEC1 uncompressed point: 0x04, x, y.
        let point = self.pair.public_key().as_ref();
        let coordinates = point.get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    fn sign(&self, header: &Value, claims: &Value) -> Result<String, StubError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|error| StubError::Key(error.to_string()))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

impl State {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StubIssuer {
    /// Starts a stub for `tenant` on the system clock.
    pub async fn start(tenant: &str) -> Result<Self, StubError> {
        Self::start_with_clock(tenant, Arc::new(SystemClock)).await
    }

    /// Starts a stub for `tenant` whose `iat`/`exp` read `clock`.
    pub async fn start_with_clock(tenant: &str, clock: Arc<dyn Clock>) -> Result<Self, StubError> {
        let http = TcpListener::bind(("127.0.0.1", 0)).await?;
        let grpc = TcpListener::bind(("127.0.0.1", 0)).await?;
        let http_addr = http.local_addr()?;
        let grpc_addr = grpc.local_addr()?;
        let state = Arc::new(State {
            issuer: format!("http://{http_addr}/t/{tenant}/"),
            tenant: tenant.to_owned(),
            clock,
            inner: Mutex::new(Inner {
                keys: vec![Key::generate("stub-1".to_owned())?],
                signing: 0,
                clients: HashMap::new(),
                token_lifetime: 3600,
                jwks_max_age: 300,
                script: VecDeque::new(),
                delay: Duration::ZERO,
                issued: HashSet::new(),
                revoked: HashSet::new(),
                next_jti: 1,
                calls: Vec::new(),
                watch_entries: Vec::new(),
                watchers: Vec::new(),
                is_watch_silent: false,
                watch_heartbeat: Duration::from_secs(5),
            }),
            token_requests: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            metadata_fetches: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
        });
        let prefix = format!("/t/{tenant}");
        let router = Router::new()
            .route(
                &format!("{prefix}/.well-known/oauth-authorization-server"),
                get(metadata),
            )
            .route(&format!("{prefix}/.well-known/jwks.json"), get(jwks))
            .route(&format!("{prefix}/oauth/token"), post(token))
            .route(&format!("{prefix}/oauth/introspect"), post(introspect))
            .with_state(state.clone());
        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, router)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await;
        });
        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let service = TokenServiceServer::new(GrpcStub {
            state: state.clone(),
        });
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc),
                    async {
                        let _ = grpc_stopped.await;
                    },
                )
                .await;
        });
        Ok(Self {
            http_addr,
            grpc_addr,
            state,
            shutdown: vec![http_stop, grpc_stop],
            tasks: vec![http_task, grpc_task],
        })
    }

    /// The issuer URL, `http://127.0.0.1:<port>/t/<tenant>/`: exactly the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The tenant name.
    pub fn tenant(&self) -> &str {
        &self.state.tenant
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gRPC endpoint, `http://127.0.0.1:<port>`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}oauth/token", self.state.issuer)
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}.well-known/jwks.json", self.state.issuer)
    }

    /// The introspection endpoint.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}oauth/introspect", self.state.issuer)
    }

    /// Registers a client that may ask for any of `scopes`.
    pub fn add_client(&self, client_id: &str, secret: &str, scopes: &[&str]) {
        self.state.inner().clients.insert(
            client_id.to_owned(),
            (
                secret.to_owned(),
                scopes.iter().map(|s| (*s).to_owned()).collect(),
            ),
        );
    }

    /// Makes the next token requests (HTTP or gRPC) fail as scripted, in order.
    pub fn script(&self, failures: impl IntoIterator<Item = Scripted>) {
        self.state.inner().script.extend(failures);
    }

    /// Delays every token response, so that concurrent callers pile up.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state.inner().delay = delay;
    }

    /// The `expires_in` of issued tokens.
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.state.inner().token_lifetime = seconds;
    }

    /// The JWKS `Cache-Control: max-age`.
    pub fn set_jwks_max_age(&self, seconds: u64) {
        self.state.inner().jwks_max_age = seconds;
    }

    /// Publishes a new key and signs with it from now on; the old keys stay published.
    /// Returns the new kid.
    pub fn rotate(&self) -> Result<String, StubError> {
        let mut inner = self.state.inner();
        let kid = format!("stub-{}", inner.keys.len() + 1);
        inner.keys.push(Key::generate(kid.clone())?);
        inner.signing = inner.keys.len() - 1;
        Ok(kid)
    }

    /// The kid that signs now.
    pub fn signing_kid(&self) -> String {
        let inner = self.state.inner();
        inner
            .keys
            .get(inner.signing)
            .map(|key| key.kid.clone())
            .unwrap_or_default()
    }

    /// The published JWK Set.
    pub fn jwks(&self) -> Value {
        let inner = self.state.inner();
        json!({ "keys": inner.keys.iter().map(Key::jwk).collect::<Vec<_>>() })
    }

    /// The header the stub writes: ES256, `at+jwt`, the signing kid.
    pub fn header(&self) -> Value {
        json!({ "alg": "ES256", "typ": "at+jwt", "kid": self.signing_kid() })
    }

    /// The claims the stub issues to `client_id` for `audience` with `scope`, now.
    pub fn claims(&self, client_id: &str, audience: &str, scope: &str) -> Value {
        let now = self.state.clock.now();
        let mut inner = self.state.inner();
        claims(
            &self.state.issuer,
            &mut inner,
            now,
            client_id,
            audience,
            scope,
        )
    }

    /// Signs `header` and `claims` as given with the current signing key.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, StubError> {
        let inner = self.state.inner();
        let key = inner
            .keys
            .get(inner.signing)
            .ok_or_else(|| StubError::Key("no signing key".to_owned()))?;
        key.sign(header, claims)
    }

    /// A valid token, as the token endpoint would issue it.
    pub fn issue(&self, client_id: &str, audience: &str, scope: &str) -> Result<String, StubError> {
        self.sign(&self.header(), &self.claims(client_id, audience, scope))
    }

    /// Marks the token with this `jti` revoked (introspection answers `active: false`).
    pub fn revoke(&self, jti: &str) {
        self.state.inner().revoked.insert(jti.to_owned());
    }

    /// Sends `entry` on every open revocation stream (unless silent) and adds it to the
    /// snapshot of later ones.
    pub fn push_revocation(&self, entry: RevocationEntry) {
        let mut inner = self.state.inner();
        inner.watch_entries.push(entry.clone());
        if !inner.is_watch_silent {
            let message = WatchRevocationsResponse {
                is_snapshot: false,
                revocations: vec![entry],
                heartbeat_seconds: heartbeat_seconds(inner.watch_heartbeat),
            };
            inner
                .watchers
                .retain(|watcher| watcher.try_send(Ok(message.clone())).is_ok());
        }
    }

    /// While `is_silent`, revocation streams get nothing at all, as if the network dropped
    /// them without a word; new ones get no snapshot either.
    pub fn set_watch_silent(&self, is_silent: bool) {
        self.state.inner().is_watch_silent = is_silent;
    }

    /// The interval of heartbeats on revocation streams (default 5 s; the messages state
    /// it in whole seconds, at least one).
    pub fn set_watch_heartbeat(&self, interval: Duration) {
        self.state.inner().watch_heartbeat = interval;
    }

    /// Ends every open revocation stream.
    pub fn end_watches(&self) {
        self.state.inner().watchers.clear();
    }

    /// `WatchRevocations` calls received.
    pub fn watches(&self) -> usize {
        self.state.watches.load(Ordering::SeqCst)
    }

    /// Token requests received (HTTP and gRPC, scripted failures included).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// JWKS documents served.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Metadata documents served.
    pub fn metadata_fetches(&self) -> usize {
        self.state.metadata_fetches.load(Ordering::SeqCst)
    }

    /// Introspection requests received.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    /// Every token request so far.
    pub fn token_calls(&self) -> Vec<TokenCall> {
        self.state.inner().calls.clone()
    }
}

impl Drop for StubIssuer {
    fn drop(&mut self) {
        for stop in self.shutdown.drain(..) {
            let _ = stop.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn claims(
    issuer: &str,
    inner: &mut Inner,
    now: i64,
    client_id: &str,
    audience: &str,
    scope: &str,
) -> Value {
    let jti = format!("jti-{}", inner.next_jti);
    inner.next_jti += 1;
    inner.issued.insert(jti.clone());
    json!({
        "iss": issuer, "sub": format!("{client_id}@clients"), "aud": audience,
        "iat": now, "nbf": now, "exp": now + inner.token_lifetime, "jti": jti,
        "client_id": client_id, "scope": scope,
        // Another issuer's extra claim; no Tollgate `cid`, `sid`, `scp` or `gty`.
        "azp": client_id,
    })
}

async fn metadata(AxumState(state): AxumState<Arc<State>>) -> Response {
    state.metadata_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = &state.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}oauth/token"),
        "jwks_uri": format!("{issuer}.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}oauth/introspect"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
    }))
    .into_response()
}

async fn jwks(AxumState(state): AxumState<Arc<State>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let (document, max_age) = {
        let inner = state.inner();
        (
            json!({ "keys": inner.keys.iter().map(Key::jwk).collect::<Vec<_>>() }),
            inner.jwks_max_age,
        )
    };
    let mut response = axum::Json(document).into_response();
    if let Ok(value) = HeaderValue::try_from(format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: u16, error: &str, is_basic: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
    if status == StatusCode::UNAUTHORIZED && is_basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"stub\""),
        );
    }
    response
}

/// The credentials of `Authorization: Basic` (each form-urlencoded, RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |text: &str| {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// What to do with a token request before serving it: the scripted failure, if any.
async fn before_token_request(state: &State) -> Option<Scripted> {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let (delay, scripted) = {
        let mut inner = state.inner();
        (inner.delay, inner.script.pop_front())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    scripted
}

/// An issued token or an OAuth error (status, code).
type Issued = Result<(String, i64, String), (u16, &'static str)>;

fn issue(state: &State, client_id: &str, secret: &str, audience: &str, scope: &str) -> Issued {
    let now = state.clock.now();
    let mut inner = state.inner();
    let Some((expected, allowed)) = inner.clients.get(client_id).cloned() else {
        return Err((401, "invalid_client"));
    };
    if expected != secret {
        return Err((401, "invalid_client"));
    }
    let granted = if scope.is_empty() {
        allowed.join(" ")
    } else if scope.split(' ').all(|s| allowed.iter().any(|a| a == s)) {
        scope.to_owned()
    } else {
        return Err((400, "invalid_scope"));
    };
    let claims = claims(
        &state.issuer,
        &mut inner,
        now,
        client_id,
        audience,
        &granted,
    );
    let Some(key) = inner.keys.get(inner.signing) else {
        return Err((500, "server_error"));
    };
    let header = json!({ "alg": "ES256", "typ": "at+jwt", "kid": key.kid });
    match key.sign(&header, &claims) {
        Ok(token) => Ok((token, inner.token_lifetime, granted)),
        Err(_) => Err((500, "server_error")),
    }
}

async fn token(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let basic = basic_credentials(&headers);
    let posted = params.get("client_id").cloned().zip(
        params
            .get("client_secret")
            .cloned()
            .or_else(|| Some(String::new())),
    );
    let client_auth = match (&basic, params.contains_key("client_secret")) {
        (Some(_), true) => "both",
        (Some(_), false) => "basic",
        (None, true) => "post",
        (None, false) => "none",
    };
    let audience = params.get("audience").cloned();
    let scope = params.get("scope").cloned();
    state.inner().calls.push(TokenCall {
        client_auth,
        client_id: basic
            .as_ref()
            .map(|(id, _)| id.clone())
            .or_else(|| params.get("client_id").cloned()),
        audience: audience.clone(),
        scope: scope.clone(),
    });
    match before_token_request(&state).await {
        Some(Scripted::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (status, axum::Json(json!({}))).into_response();
        }
        Some(Scripted::TooManyRequests {
            retry_after_seconds,
        }) => {
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({}))).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            return response;
        }
        Some(Scripted::OAuthError(status, error)) => {
            return oauth_error(status, error, basic.is_some());
        }
        None => {}
    }
    if client_auth == "both" {
        return oauth_error(400, "invalid_request", true);
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(400, "unsupported_grant_type", basic.is_some());
    }
    let Some((client_id, secret)) = basic.clone().or(posted) else {
        return oauth_error(401, "invalid_client", false);
    };
    let audience = audience.unwrap_or_else(|| "https://default.example/".to_owned());
    match issue(
        &state,
        &client_id,
        &secret,
        &audience,
        scope.as_deref().unwrap_or(""),
    ) {
        Ok((token, expires_in, scope)) => {
            let mut response = axum::Json(json!({
                "access_token": token, "token_type": "Bearer",
                "expires_in": expires_in, "scope": scope,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err((status, error)) => oauth_error(status, error, basic.is_some()),
    }
}

async fn introspect(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.introspections.fetch_add(1, Ordering::SeqCst);
    let Some((client_id, secret)) = basic_credentials(&headers) else {
        return oauth_error(401, "invalid_client", false);
    };
    let params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let now = state.clock.now();
    let inner = state.inner();
    if inner.clients.get(&client_id).map(|(s, _)| s.as_str()) != Some(secret.as_str()) {
        return oauth_error(401, "invalid_client", true);
    }
    // The stub trusts its own bookkeeping: a token is active if it issued its jti, has not
    // revoked it, and it has not expired.
    let claims = params
        .get("token")
        .and_then(|token| token.split('.').nth(1))
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let is_active = claims.as_ref().is_some_and(|claims| {
        let jti = claims["jti"].as_str().unwrap_or_default();
        inner.issued.contains(jti)
            && !inner.revoked.contains(jti)
            && claims["exp"].as_i64().is_some_and(|exp| exp > now)
    });
    match (is_active, claims) {
        (true, Some(mut claims)) => {
            if let Some(map) = claims.as_object_mut() {
                map.insert("active".to_owned(), Value::Bool(true));
            }
            axum::Json(claims).into_response()
        }
        _ => axum::Json(json!({ "active": false })).into_response(),
    }
}

fn heartbeat_seconds(interval: Duration) -> i64 {
    i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// Sends a heartbeat on `watcher` every interval while it is open (the stub holds the only
/// strong sender, so `end_watches` ends the stream) and the stub is not silent.
async fn heartbeats(
    state: Arc<State>,
    watcher: mpsc::WeakSender<Result<WatchRevocationsResponse, tonic::Status>>,
) {
    loop {
        let (interval, is_silent) = {
            let inner = state.inner();
            (inner.watch_heartbeat, inner.is_watch_silent)
        };
        tokio::time::sleep(interval).await;
        let Some(watcher) = watcher.upgrade().filter(|watcher| !watcher.is_closed()) else {
            return;
        };
        if is_silent || state.inner().is_watch_silent {
            continue;
        }
        let message = WatchRevocationsResponse {
            is_snapshot: false,
            revocations: Vec::new(),
            heartbeat_seconds: heartbeat_seconds(interval),
        };
        if watcher.send(Ok(message)).await.is_err() {
            return;
        }
    }
}

/// The gRPC face of the stub: `IssueToken` and `WatchRevocations`.
struct GrpcStub {
    state: Arc<State>,
}

fn grpc_error(status: u16, error: &str) -> tonic::Status {
    let code = match error {
        "invalid_client" => ErrorCode::InvalidClient,
        "invalid_scope" => ErrorCode::InvalidScope,
        "unauthorized_client" => ErrorCode::UnauthorizedClient,
        "invalid_request" => ErrorCode::InvalidRequest,
        _ if status == 503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    tollgate_proto::status::to_status(code, error.to_owned())
}

#[tonic::async_trait]
impl TokenService for GrpcStub {
    type WatchRevocationsStream =
        tokio_stream::wrappers::ReceiverStream<Result<WatchRevocationsResponse, tonic::Status>>;

    async fn watch_revocations(
        &self,
        request: tonic::Request<WatchRevocationsRequest>,
    ) -> Result<tonic::Response<Self::WatchRevocationsStream>, tonic::Status> {
        self.state.watches.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(64);
        {
            let mut inner = self.state.inner();
            let is_known = inner
                .clients
                .get(&request.client_id)
                .is_some_and(|(secret, _)| *secret == request.client_secret);
            if request.tenant != self.state.tenant || !is_known {
                return Err(grpc_error(401, "invalid_client"));
            }
            if !inner.is_watch_silent {
                let snapshot = WatchRevocationsResponse {
                    is_snapshot: true,
                    revocations: inner.watch_entries.clone(),
                    heartbeat_seconds: heartbeat_seconds(inner.watch_heartbeat),
                };
                let _ = sender.try_send(Ok(snapshot));
            }
            tokio::spawn(heartbeats(self.state.clone(), sender.downgrade()));
            inner.watchers.push(sender);
        }
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ))
    }

    async fn issue_token(
        &self,
        request: tonic::Request<IssueTokenRequest>,
    ) -> Result<tonic::Response<IssueTokenResponse>, tonic::Status> {
        let request = request.into_inner();
        self.state.inner().calls.push(TokenCall {
            client_auth: "grpc",
            client_id: Some(request.client_id.clone()),
            audience: Some(request.audience.clone()),
            scope: Some(request.scopes.join(" ")),
        });
        match before_token_request(&self.state).await {
            Some(Scripted::Status(503)) => {
                return Err(tonic::Status::unavailable("scripted outage"));
            }
            Some(Scripted::Status(status)) => return Err(grpc_error(status, "scripted")),
            Some(Scripted::TooManyRequests {
                retry_after_seconds,
            }) => {
                return Err(tollgate_proto::status::to_status_with_retry(
                    ErrorCode::ResourceExhausted,
                    "slow down",
                    Duration::from_secs(retry_after_seconds),
                ));
            }
            Some(Scripted::OAuthError(status, error)) => return Err(grpc_error(status, error)),
            None => {}
        }
        if request.tenant != self.state.tenant {
            return Err(grpc_error(401, "invalid_client"));
        }
        match issue(
            &self.state,
            &request.client_id,
            &request.client_secret,
            &request.audience,
            &request.scopes.join(" "),
        ) {
            Ok((access_token, expires_in, scope)) => Ok(tonic::Response::new(IssueTokenResponse {
                access_token,
                token_type: "Bearer".to_owned(),
                expires_in,
                scopes: scope.split(' ').map(str::to_owned).collect(),
            })),
            Err((status, error)) => Err(grpc_error(status, error)),
        }
    }

    async fn get_jwks(
        &self,
        _request: tonic::Request<GetJwksRequest>,
    ) -> Result<tonic::Response<GetJwksResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "the stub serves JWKS over HTTP",
        ))
    }

    async fn revoke_token(
        &self,
        _request: tonic::Request<RevokeTokenRequest>,
    ) -> Result<tonic::Response<RevokeTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in the stub"))
    }

    async fn introspect_token(
        &self,
        _request: tonic::Request<IntrospectTokenRequest>,
    ) -> Result<tonic::Response<IntrospectTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in the stub"))
    }
}
