//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662): a client,
//! authenticated exactly as at the token endpoint, asks about one token.
//!
//! Checks, in order (see [`crate::endpoint`]): body encoding and size, parameters, the shape
//! of the client authentication, `token`, and last the client's identity. `token_type_hint`
//! is read (so a repeated one is refused like any parameter) and otherwise ignored: Tollgate
//! issues only access tokens, and RFC 7009 §2.1 / RFC 7662 §2.1 let a server ignore a hint
//! it does not need, whatever its value.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::{AccessTokenClaims, TenantName, TokenCallRequest};

use crate::endpoint::{Received, Rejection, identify, no_store};
use crate::params::{Endpoint, Params};
use crate::response::{json_response, json_response_sized};
use crate::tenant::ResolvedTenant;
use crate::{Gateway, TokenBackend};

/// Handles `POST /oauth/revoke`: 200 with an empty body whether or not the token was
/// revoked (RFC 7009 §2.2), so that the answer reveals nothing about the token.
pub(crate) async fn revoke<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    ResolvedTenant(tenant): ResolvedTenant,
    request: Request,
) -> Response {
    let outcome = match token_call(&gateway, tenant, request).await {
        Ok(request) => gateway
            .backend
            .revoke_token(request)
            .await
            .map_err(Rejection::from),
        Err(rejection) => Err(rejection),
    };
    no_store(match outcome {
        Ok(()) => Response::new(Body::empty()),
        Err(rejection) => rejection.into_response(),
    })
}

/// Handles `POST /oauth/introspect` (RFC 7662 §2.2).
pub(crate) async fn introspect<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    ResolvedTenant(tenant): ResolvedTenant,
    request: Request,
) -> Response {
    let outcome = match token_call(&gateway, tenant, request).await {
        Ok(request) => gateway
            .backend
            .introspect_token(request)
            .await
            .map_err(Rejection::from),
        Err(rejection) => Err(rejection),
    };
    no_store(match outcome {
        Ok(None) => json_response(StatusCode::OK, &Inactive { active: false }),
        Ok(Some(claims)) => active(&claims),
        Err(rejection) => rejection.into_response(),
    })
}

/// Reads and validates a revocation or introspection request.
async fn token_call<B: TokenBackend>(
    gateway: &Gateway<B>,
    tenant: Option<TenantName>,
    request: Request,
) -> Result<TokenCallRequest, Rejection> {
    let received = Received::read(request, gateway.max_body_bytes).await?;
    let params = received.params(Endpoint::TokenCall)?;
    token_call_request(tenant, &received, params)
}

/// See the module documentation for the order of the checks.
fn token_call_request(
    tenant: Option<TenantName>,
    received: &Received,
    params: Params<'_>,
) -> Result<TokenCallRequest, Rejection> {
    let (client_id, client_secret) =
        received.client_credentials(params.client_id, params.client_secret)?;
    let Some(token) = params.token else {
        return Err(Rejection::invalid_request("token is required"));
    };
    let client = identify(tenant, &client_id, client_secret)?;
    Ok(TokenCallRequest {
        tenant: client.tenant,
        client_id: client.client_id,
        client_secret: client.client_secret,
        token: token.into_owned(),
        origin: received.origin(),
    })
}

/// RFC 7662 §2.2 for a token that is not active: nothing but `active`.
#[derive(Serialize)]
struct Inactive {
    active: bool,
}

/// RFC 7662 §2.2 for an active token: its registered members, then Tollgate's own claims
/// under their JWT names.
#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    // RFC 6749 §3.3's scope syntax has at least one token, so an empty grant is left out
    // (as at the token endpoint); `scp` is then `[]`.
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    client_id: &'a str,
    token_type: &'static str,
    exp: i64,
    iat: i64,
    nbf: i64,
    sub: &'a str,
    aud: &'a str,
    iss: &'a str,
    jti: &'a str,
    cid: &'a str,
    sid: &'a str,
    scp: &'a [String],
    gty: &'a str,
}

fn active(claims: &AccessTokenClaims) -> Response {
    let body = Active {
        active: true,
        scope: &claims.scope,
        client_id: &claims.client_id,
        token_type: "Bearer",
        exp: claims.exp,
        iat: claims.iat,
        nbf: claims.nbf,
        sub: &claims.sub,
        aud: &claims.aud,
        iss: &claims.iss,
        jti: &claims.jti,
        cid: &claims.cid,
        sid: &claims.sid,
        scp: &claims.scp,
        gty: &claims.gty,
    };
    // The member names, numbers and quoting take well under 256 bytes; the scopes appear
    // twice.
    let capacity = 256
        + 2 * claims.scope.len()
        + claims.client_id.len()
        + claims.sub.len()
        + claims.aud.len()
        + claims.iss.len()
        + claims.jti.len()
        + claims.cid.len()
        + claims.sid.len()
        + claims.gty.len();
    json_response_sized(StatusCode::OK, &body, capacity)
}
