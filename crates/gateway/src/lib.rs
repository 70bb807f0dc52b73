//! Tollgate's HTTP edge: the OAuth 2.0 token endpoint (RFC 6749 §4.4, client credentials),
//! token revocation (RFC 7009) and introspection (RFC 7662), each tenant's JWK Set and its
//! RFC 8414 authorization-server metadata.
//!
//! The gateway parses HTTP, calls a [`TokenBackend`] and renders the outcome; it decides
//! nothing about apps, APIs, scopes or tokens and holds no credentials of its own. The
//! backend is in-process in the all-in-one server, or [`GrpcBackend`] at a separate edge.
//!
//! Every route exists twice: under `/t/<tenant>/` for clients that cannot set `Host`, and at
//! the root, where the tenant is the first label of a `Host` ending in the issuer template's
//! host suffix (`acme.hub.localhost:8080` → `acme`). The metadata of a path issuer
//! (`http://host/t/acme/`) is also where RFC 8414 §3.1 puts it, between host and path:
//! `/.well-known/oauth-authorization-server/t/acme`.

pub mod access;
mod backend;
mod basic;
mod discovery;
mod endpoint;
mod grpc_backend;
pub mod listen;
mod params;
#[cfg(test)]
mod proptests;
mod response;
mod tenant;
mod token;
mod token_call;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use tollgate_domain::{ErrorCode, IssuerTemplate};

pub use backend::{BackendError, RateLimitInfo, TenantKeys, TokenBackend};
pub use grpc_backend::{
    FORWARDED_FOR_METADATA, GATEWAY_SECRET_METADATA, GatewayCredential, GrpcBackend,
    InvalidGatewayCredential,
};
pub use listen::ConnectionLimits;

/// How the gateway behaves; everything else comes from the backend.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The issuer URL template; its host suffix lets the gateway find the tenant in `Host`.
    pub issuer_template: IssuerTemplate,
    /// How long clients and caches may keep a JWK Set or metadata document.
    pub jwks_max_age_seconds: u64,
    /// The largest body accepted by the token, revocation and introspection endpoints;
    /// larger ones get 413.
    pub max_body_bytes: usize,
    /// What `GET /readyz` reports; `None` (an edge gateway): always ready, no checks.
    pub readiness: Option<ReadinessCheck>,
}

/// The state `GET /readyz` reports: 200 when `ready`, else 503, with `body` as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessReport {
    /// Whether the process should receive traffic.
    pub ready: bool,
    /// The JSON body, e.g. `{"status":"ready","checks":{...}}`.
    pub body: serde_json::Value,
}

/// Reads the current readiness. Called once per `GET /readyz`, so it must only read state
/// kept up to date elsewhere (no I/O).
#[derive(Clone)]
pub struct ReadinessCheck(pub Arc<dyn Fn() -> ReadinessReport + Send + Sync>);

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadinessCheck")
    }
}

impl GatewayConfig {
    /// The default of [`GatewayConfig::jwks_max_age_seconds`]: five minutes.
    pub const DEFAULT_JWKS_MAX_AGE_SECONDS: u64 = 300;
    /// The default of [`GatewayConfig::max_body_bytes`]: 16 KiB, far above any honest request.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

    /// A configuration for `issuer_template` with the default limits.
    pub fn new(issuer_template: IssuerTemplate) -> Self {
        Self {
            issuer_template,
            jwks_max_age_seconds: Self::DEFAULT_JWKS_MAX_AGE_SECONDS,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            readiness: None,
        }
    }
}

/// What every handler shares, computed once when the router is built so that requests only
/// read it.
pub(crate) struct Gateway<B> {
    pub(crate) backend: Arc<B>,
    /// Lowercase, e.g. `.hub.localhost`; `None` when the issuer template does not put the
    /// tenant in the host, so only `/t/<tenant>/` routes can name one.
    pub(crate) host_suffix: Option<String>,
    /// `public, max-age=<jwks_max_age_seconds>`.
    pub(crate) public_cache_control: HeaderValue,
    pub(crate) max_body_bytes: usize,
    pub(crate) readiness: Option<ReadinessCheck>,
}

/// The route prefixes; each endpoint is served under every one. `{tenant}` is read by
/// [`tenant::ResolvedTenant`].
const PREFIXES: [&str; 2] = ["", "/t/{tenant}"];

/// The well-known names of the metadata document (RFC 8414 §3 and §7.3.1).
const WELL_KNOWN_METADATA: [&str; 2] = ["oauth-authorization-server", "openid-configuration"];

/// Builds the gateway's routes: the token, revocation and introspection endpoints, JWKS and
/// metadata (at the root and under `/t/<tenant>/`; for path issuers also at
/// `/.well-known/<document>/t/<tenant>`, RFC 8414 §3.1), `GET /healthz` (200 `ok` while the process serves), `GET /readyz` (see
/// [`GatewayConfig::readiness`]), and a JSON 404 for
/// everything else.
///
/// The `source` of the requests handed to the backend is the TCP peer's address, from
/// axum's `ConnectInfo<SocketAddr>`, which [`serve`] provides; a router served otherwise
/// passes `None`. Forwarding headers are never read.
pub fn router<B: TokenBackend>(config: GatewayConfig, backend: Arc<B>) -> Router {
    // Digits and ASCII always make a valid header value; the fallback is unreachable.
    let public_cache_control =
        HeaderValue::try_from(format!("public, max-age={}", config.jwks_max_age_seconds))
            .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    let gateway = Arc::new(Gateway {
        backend,
        host_suffix: config.issuer_template.host_suffix(),
        public_cache_control,
        max_body_bytes: config.max_body_bytes,
        readiness: config.readiness,
    });

    let mut router = Router::new();
    for prefix in PREFIXES {
        router = router
            .route(
                &format!("{prefix}/oauth/token"),
                post(token::token::<B>)
                    .fallback(|| async { endpoint::method_not_allowed("the token endpoint") }),
            )
            .route(
                &format!("{prefix}/oauth/revoke"),
                post(token_call::revoke::<B>)
                    .fallback(|| async { endpoint::method_not_allowed("the revocation endpoint") }),
            )
            .route(
                &format!("{prefix}/oauth/introspect"),
                post(token_call::introspect::<B>).fallback(|| async {
                    endpoint::method_not_allowed("the introspection endpoint")
                }),
            )
            .route(
                &format!("{prefix}/.well-known/jwks.json"),
                get(discovery::jwks::<B>),
            );
        for document in WELL_KNOWN_METADATA {
            router = router.route(
                &format!("{prefix}/.well-known/{document}"),
                get(discovery::metadata::<B>),
            );
        }
    }
    // RFC 8414 §3.1 forms the metadata URL of an issuer with a path by inserting the
    // well-known segment between host and path, without the path's terminating `/`:
    // issuer `http://host/t/acme/` → `/.well-known/oauth-authorization-server/t/acme`.
    // OpenID Connect Discovery appends instead (`/t/acme/.well-known/openid-configuration`,
    // above); clients mix the two conventions, so both documents are served in both forms,
    // and with the `/` kept for clients that do not remove it.
    for document in WELL_KNOWN_METADATA {
        for tail in ["", "/"] {
            router = router.route(
                &format!("/.well-known/{document}/t/{{tenant}}{tail}"),
                get(discovery::metadata::<B>),
            );
        }
    }
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<B>))
        .fallback(not_found)
        // Applied to every route and the fallback, so the matched route is known.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            access::access_log::<B>,
        ))
        .with_state(gateway)
}

/// Serves `router` on `listener` with the default [`ConnectionLimits`]; see
/// [`serve_with_limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, router, ConnectionLimits::default(), shutdown).await
}

/// Serves `router` on `listener` under `limits` (see [`listen`]) until `shutdown`
/// completes, then stops accepting and waits for in-flight requests to finish (graceful
/// shutdown). Each request carries its TCP peer's address (`ConnectInfo<SocketAddr>`),
/// which becomes the `source` of the requests handed to the backend. Accept errors are
/// retried, never returned.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = listen::Acceptor::new(listener, limits, listen::Protocol::Http);
    listen::serve_http(acceptor, router, shutdown).await;
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz<B: TokenBackend>(
    axum::extract::State(gateway): axum::extract::State<Arc<Gateway<B>>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let report = match &gateway.readiness {
        Some(check) => (check.0)(),
        None => ReadinessReport {
            ready: true,
            body: serde_json::json!({"status": "ready", "checks": {}}),
        },
    };
    let status = if report.ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(report.body),
    )
        .into_response()
}

async fn not_found() -> axum::response::Response {
    response::error_response(ErrorCode::NotFound, "no such endpoint")
}
