//! Public discovery documents: a tenant's JWK Set (RFC 7517) and its authorization-server
//! metadata (RFC 8414), both cacheable for `jwks_max_age_seconds`.

use std::hash::Hasher;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::{ErrorCode, TenantName};

use crate::response::{APPLICATION_JSON, backend_error_response, error_response, json_response};
use crate::tenant::ResolvedTenant;
use crate::{Gateway, TenantKeys, TokenBackend};

const UNKNOWN_TENANT: &str = "unknown tenant";
/// How clients authenticate at the token, revocation and introspection endpoints alike.
const CLIENT_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Handles `GET /.well-known/jwks.json`, answering 304 when the client's copy is current.
pub(crate) async fn jwks<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    ResolvedTenant(tenant): ResolvedTenant,
    request: Request,
) -> Response {
    let keys = match tenant_keys(&gateway, tenant).await {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    let etag = etag(&keys.jwks_json);
    let not_modified = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| etag_matches(value, &etag));

    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(keys.jwks_json));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, APPLICATION_JSON);
        response
    };
    // RFC 9110 §15.4.5: a 304 carries the validators and caching headers a 200 would.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, gateway.public_cache_control.clone());
    if let Ok(etag) = HeaderValue::try_from(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// RFC 8414 metadata, served at both well-known paths, each appended to the issuer
/// (`<issuer>.well-known/…`, the OpenID Connect Discovery form) and, for path issuers,
/// inserted between host and path (`/.well-known/…/t/<tenant>`, RFC 8414 §3.1).
///
/// Tollgate is an authorization server with token, revocation and introspection endpoints,
/// not an OpenID provider: `/.well-known/openid-configuration` serves the same document for
/// client libraries that only know that path and use it to find `token_endpoint` and
/// `jwks_uri`. Members are limited to what is true:
/// - `response_types_supported` is REQUIRED by RFC 8414 §2, but its values are for the
///   authorization endpoint, which does not exist here. `[]` is the honest value and keeps
///   the member present for parsers that insist on it; `["token"]` would advertise the
///   implicit grant, which Tollgate does not implement.
/// - `scopes_supported` is omitted: scopes are defined per API and tenant, not per server.
/// - OpenID-only members (`subject_types_supported`, `id_token_signing_alg_values_supported`,
///   `userinfo_endpoint`) are omitted: no ID tokens are issued. A strict OpenID Connect
///   discovery validator would reject the document anyway (it also needs an
///   `authorization_endpoint`), so pretending partly would buy nothing.
/// - `token_endpoint_auth_signing_alg_values_supported` is omitted: it applies only to
///   `private_key_jwt`/`client_secret_jwt`, which are not supported.
#[derive(Serialize)]
struct Metadata<'a> {
    issuer: &'a str,
    token_endpoint: String,
    jwks_uri: String,
    grant_types_supported: [&'static str; 1],
    token_endpoint_auth_methods_supported: [&'static str; 2],
    revocation_endpoint: String,
    revocation_endpoint_auth_methods_supported: [&'static str; 2],
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: [&'static str; 2],
    response_types_supported: [&'static str; 0],
}

/// Handles both metadata paths.
pub(crate) async fn metadata<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    ResolvedTenant(tenant): ResolvedTenant,
) -> Response {
    // The issuer comes from the backend rather than the template, so that the metadata
    // names exactly the `iss` tokens carry; the backend caches keys, so this is cheap.
    let keys = match tenant_keys(&gateway, tenant).await {
        Ok(keys) => keys,
        Err(response) => return *response,
    };
    let issuer = keys.issuer.as_str();
    let mut response = json_response(
        StatusCode::OK,
        &Metadata {
            issuer,
            token_endpoint: format!("{issuer}oauth/token"),
            jwks_uri: format!("{issuer}.well-known/jwks.json"),
            grant_types_supported: ["client_credentials"],
            token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
            revocation_endpoint: format!("{issuer}oauth/revoke"),
            revocation_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
            introspection_endpoint: format!("{issuer}oauth/introspect"),
            introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
            response_types_supported: [],
        },
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, gateway.public_cache_control.clone());
    response
}

/// The tenant's keys, or the error response to send instead (boxed: a `Response` is large).
async fn tenant_keys<B: TokenBackend>(
    gateway: &Gateway<B>,
    tenant: Option<TenantName>,
) -> Result<TenantKeys, Box<Response>> {
    let Some(tenant) = tenant else {
        return Err(Box::new(error_response(
            ErrorCode::NotFound,
            UNKNOWN_TENANT,
        )));
    };
    gateway
        .backend
        .jwks(&tenant)
        .await
        .map_err(|error| Box::new(backend_error_response(&error)))
}

/// A strong entity tag for `body`: SipHash-1-3 with fixed keys, stable across processes and
/// replicas of the same build, and cheap; it only has to change when the keys do.
fn etag(body: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(body.as_bytes());
    format!("\"{:016x}\"", hasher.finish())
}

/// Whether an `If-None-Match` value (`*` or a list of tags) matches `etag`; RFC 9110
/// §13.1.2 compares weakly, so `W/` prefixes are ignored.
fn etag_matches(value: &HeaderValue, etag: &str) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        let tag = etag(r#"{"keys":[]}"#);
        assert_eq!(tag.len(), 18);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_eq!(tag, etag(r#"{"keys":[]}"#));
        assert_ne!(tag, etag(r#"{"keys":[{}]}"#));

        let matches = |value: &str| {
            HeaderValue::try_from(value).is_ok_and(|value| etag_matches(&value, &tag))
        };
        assert!(matches(&tag));
        assert!(matches(&format!("W/{tag}")));
        assert!(matches(&format!(r#""other", {tag}"#)));
        assert!(matches("*"));
        assert!(!matches(r#""other""#));
        assert!(!matches(tag.trim_matches('"')));
        assert!(!matches(""));
    }
}
