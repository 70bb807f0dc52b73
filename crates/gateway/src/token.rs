//! `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4) with
//! `client_secret_basic` or `client_secret_post` authentication (§2.3.1) and an RFC 8707
//! audience.
//!
//! Checks run in the order a client can act on: body encoding and size, parameters,
//! `grant_type`, the shape of the client authentication, `audience`, `scope`. Whether the
//! tenant and the client id exist is decided last, together with the backend's own check,
//! and every such failure reads the same ([`CLIENT_AUTH_FAILED`]), so that a caller cannot
//! probe which tenants or clients exist.

use std::borrow::Cow;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::{
    ApiIdentifier, ClientId, ClientSecret, ErrorCode, GRANT_TYPE_CLIENT_CREDENTIALS, IssuedToken,
    ScopeSet, TenantName, TokenRequest,
};

use crate::basic::{self, BasicCredentials};
use crate::params::{BodyFormat, TokenParams};
use crate::response::{error_response, json_error, json_response_sized};
use crate::tenant::ResolvedTenant;
use crate::{BackendError, Gateway, TokenBackend};

/// The one description of every failure that depends on who the client is: unknown or
/// invalid tenant, malformed or unknown client id, wrong or empty secret.
pub(crate) const CLIENT_AUTH_FAILED: &str = "client authentication failed";

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");

/// Why a token request did not produce a token.
#[derive(Debug)]
enum Rejection {
    /// An outcome with an [`ErrorCode`], rendered by [`error_response`].
    Error(ErrorCode, Cow<'static, str>),
    /// The body exceeds the configured limit (an HTTP condition, not an OAuth one).
    TooLarge(usize),
}

impl Rejection {
    fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Error(ErrorCode::InvalidRequest, description.into())
    }

    fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Error(ErrorCode::InvalidClient, description.into())
    }

    fn client_auth_failed() -> Self {
        Self::invalid_client(CLIENT_AUTH_FAILED)
    }

    fn into_response(self) -> Response {
        match self {
            Rejection::Error(code, description) => error_response(code, &description),
            Rejection::TooLarge(limit) => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                &format!("the request body exceeds {limit} bytes"),
            ),
        }
    }
}

impl From<BackendError> for Rejection {
    fn from(error: BackendError) -> Self {
        match error.code {
            // The backend words its refusals as it likes; here they must all read the same.
            // A backend that reports an unknown tenant as `NotFound` is folded in too.
            ErrorCode::InvalidClient | ErrorCode::NotFound => Rejection::client_auth_failed(),
            code => Rejection::Error(code, error.message.into()),
        }
    }
}

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

/// Any method but POST on the token endpoint.
pub(crate) async fn method_not_allowed() -> Response {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "the token endpoint accepts only POST",
    );
    response.headers_mut().insert(header::ALLOW, ALLOW_POST);
    no_store(response)
}

/// §5.1: token responses, successful or not, must not be cached.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(header::PRAGMA, NO_CACHE);
    response
}

async fn issue<B: TokenBackend>(
    gateway: &Gateway<B>,
    tenant: Option<TenantName>,
    request: Request,
) -> Result<IssuedToken, Rejection> {
    let (parts, body) = request.into_parts();
    let format = BodyFormat::of(parts.headers.get(header::CONTENT_TYPE))
        .map_err(|error| Rejection::invalid_request(error.to_string()))?;
    let body = read_body(body, &parts.headers, gateway.max_body_bytes).await?;
    let params = TokenParams::parse(format, &body)
        .map_err(|error| Rejection::invalid_request(error.to_string()))?;
    let request = token_request(tenant, &parts.headers, params)?;
    Ok(gateway.backend.issue_token(request).await?)
}

/// Reads the whole body, refusing it as soon as it is known to exceed `limit`: up front from
/// `Content-Length`, else while streaming.
async fn read_body(mut body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        drain(body).await;
        return Err(Rejection::TooLarge(limit));
    }
    // A small body nearly always arrives as one frame; keep that frame as it is and copy
    // only when there are more.
    let mut first = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    let mut total = 0usize;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|_| Rejection::invalid_request("cannot read the request body"))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            drain(body).await;
            return Err(Rejection::TooLarge(limit));
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buffer = Vec::with_capacity(total);
                buffer.extend_from_slice(&first);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}

/// Reads and discards what is left of a refused body, up to [`DRAIN_LIMIT_BYTES`] and
/// [`DRAIN_TIMEOUT`]. Answering 413 while the client is still sending makes the kernel reset
/// the connection, and most clients then report a transport error instead of the 413; a
/// bounded drain lets them read the answer, and the bounds keep it from becoming a way to
/// tie the server up.
async fn drain(mut body: Body) {
    let discard = async {
        let mut total = 0usize;
        while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            total = total.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if total > DRAIN_LIMIT_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

/// The most of a refused body [`drain`] reads before giving up on the connection.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;
/// The longest [`drain`] waits for the rest of a refused body.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Validates the parameters into a [`TokenRequest`]; see the module documentation for the
/// order of the checks.
fn token_request(
    tenant: Option<TenantName>,
    headers: &HeaderMap,
    params: TokenParams<'_>,
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
    let (client_id, client_secret) = client_credentials(
        headers.get(header::AUTHORIZATION),
        params.client_id,
        params.client_secret,
    )?;
    let audience = audience(params.audience, params.resource)?;
    let scopes = match params.scope.as_deref().map(ScopeSet::parse_delimited) {
        None => None,
        Some(Ok(scopes)) => (!scopes.is_empty()).then_some(scopes),
        Some(Err(error)) => {
            return Err(Rejection::Error(
                ErrorCode::InvalidScope,
                error.to_string().into(),
            ));
        }
    };
    // Identity checks last (see the module documentation); never say which part was wrong.
    let (Some(tenant), Ok(client_id)) = (tenant, ClientId::parse(&client_id)) else {
        return Err(Rejection::client_auth_failed());
    };
    if client_secret.is_empty() {
        return Err(Rejection::client_auth_failed());
    }
    Ok(TokenRequest {
        tenant,
        client_id,
        client_secret: ClientSecret::new(client_secret),
        audience,
        scopes,
    })
}

/// The client id and secret, from exactly one authentication method (§2.3).
fn client_credentials<'a>(
    authorization: Option<&HeaderValue>,
    body_id: Option<Cow<'a, str>>,
    body_secret: Option<Cow<'a, str>>,
) -> Result<(Cow<'a, str>, String), Rejection> {
    let Some(authorization) = authorization else {
        return match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok((id, secret.into_owned())),
            _ => Err(Rejection::invalid_client(
                "client authentication is required: HTTP Basic, or client_id and client_secret in the body",
            )),
        };
    };
    // §2.3: "The client MUST NOT use more than one authentication method in each request."
    if body_secret.is_some() {
        return Err(Rejection::invalid_request(
            "authenticate with the Authorization header or with client_secret in the body, not both",
        ));
    }
    let BasicCredentials {
        client_id,
        client_secret,
    } = basic::parse_authorization(authorization)
        .map_err(|error| Rejection::invalid_client(error.to_string()))?;
    // §2.3.1 allows a client_id in the body alongside Basic only if it names the same client.
    if body_id.is_some_and(|body_id| body_id != client_id) {
        return Err(Rejection::invalid_request(
            "client_id does not match the Authorization header",
        ));
    }
    Ok((Cow::Owned(client_id), client_secret))
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
