//! `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4) with
//! `client_secret_basic` or `client_secret_post` authentication (§2.3.1) and an RFC 8707
//! audience.
//!
//! Checks run in the order a client can act on (see [`crate::endpoint`]): body encoding and
//! size, parameters, `grant_type`, the shape of the client authentication, `audience`,
//! `scope`, and last the client's identity.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::{
    ApiIdentifier, ErrorCode, GRANT_TYPE_CLIENT_CREDENTIALS, IssuedToken, TenantName, TokenRequest,
};

use crate::endpoint::{Received, Rejection, identify, no_store};
use crate::params::{Endpoint, Params};
use crate::response::json_response_sized;
use crate::tenant::ResolvedTenant;
use crate::{Gateway, TokenBackend};

/// The §5.1 success body.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    // §3.3's scope syntax has at least one token, so an empty grant is left out.
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

/// Handles `POST /oauth/token`.
pub(crate) async fn token<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    ResolvedTenant(tenant): ResolvedTenant,
    request: Request,
) -> Response {
    let response = match issue(&gateway, tenant, request).await {
        Ok(token) => {
            let scope = token.scopes.to_delimited();
            // The fixed members and their quoting take well under 128 bytes.
            let capacity = token.access_token.len() + scope.len() + 128;
            json_response_sized(
                StatusCode::OK,
                &TokenResponse {
                    access_token: &token.access_token,
                    token_type: "Bearer",
                    expires_in: token.expires_in,
                    scope: &scope,
                },
                capacity,
            )
        }
        Err(rejection) => rejection.into_response(),
    };
    no_store(response)
}

async fn issue<B: TokenBackend>(
    gateway: &Gateway<B>,
    tenant: Option<TenantName>,
    request: Request,
) -> Result<IssuedToken, Rejection> {
    let received = Received::read(request, gateway.max_body_bytes).await?;
    let params = received.params(Endpoint::Token)?;
    let request = token_request(tenant, &received, params)?;
    Ok(gateway.backend.issue_token(request).await?)
}

/// Validates the parameters into a [`TokenRequest`]; see the module documentation for the
/// order of the checks.
fn token_request(
    tenant: Option<TenantName>,
    received: &Received,
    params: Params<'_>,
) -> Result<TokenRequest, Rejection> {
    match params.grant_type.as_deref() {
        None => return Err(Rejection::invalid_request("grant_type is required")),
        Some(GRANT_TYPE_CLIENT_CREDENTIALS) => {}
        Some(_) => {
            return Err(Rejection::Error(
                ErrorCode::UnsupportedGrantType,
                "only the client_credentials grant is supported".into(),
            ));
        }
    }
    let (client_id, client_secret) =
        received.client_credentials(params.client_id, params.client_secret)?;
    let audience = audience(params.audience, params.resource)?;
    let scopes = match params
        .scope
        .as_deref()
        .map(TokenRequest::parse_scope_parameter)
    {
        None => None,
        Some(Ok(scopes)) => scopes,
        Some(Err(error)) => {
            return Err(Rejection::Error(
                ErrorCode::InvalidScope,
                error.to_string().into(),
            ));
        }
    };
    let client = identify(tenant, &client_id, client_secret)?;
    Ok(TokenRequest {
        tenant: client.tenant,
        client_id: client.client_id,
        client_secret: client.client_secret,
        audience,
        scopes,
        origin: received.origin(),
    })
}

/// The API the token is for: `audience`, or RFC 8707's `resource`, or both if equal.
fn audience(
    audience: Option<Cow<'_, str>>,
    resource: Option<Cow<'_, str>>,
) -> Result<ApiIdentifier, Rejection> {
    let (value, field) = match (audience, resource) {
        (Some(audience), Some(resource)) if audience != resource => {
            return Err(Rejection::invalid_request(
                "audience and resource name different APIs; give one",
            ));
        }
        (Some(audience), _) => (audience, "audience"),
        (None, Some(resource)) => (resource, "resource"),
        (None, None) => return Err(Rejection::invalid_request("audience is required")),
    };
    ApiIdentifier::parse(&value)
        .map_err(|error| Rejection::invalid_request(error.for_field(field).to_string()))
}
