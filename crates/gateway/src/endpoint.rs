//! What the client-authenticated POST endpoints (token, revocation, introspection) share:
//! reading the body (encoding, size limit), the peer address, client authentication
//! (`client_secret_basic` or `client_secret_post`, RFC 6749 §2.3.1), the identity checks, the
//! 405 answer, and how a refusal is rendered (never cached).
//!
//! Each endpoint runs its checks in the order a client can act on: body encoding and size,
//! parameters, the shape of the client authentication, the endpoint's own parameters.
//! Whether the tenant and the client id exist is decided last ([`identify`], then the
//! backend's own check), and every such failure reads the same ([`CLIENT_AUTH_FAILED`]), so
//! that a caller cannot probe which tenants or clients exist.

use std::borrow::Cow;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use tollgate_domain::{RequestOrigin, TraceId, Transport};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tollgate_domain::{ClientId, ClientSecret, ErrorCode, TenantName};

use crate::BackendError;
use crate::basic::{self, BasicCredentials};
use crate::params::{BodyFormat, Endpoint, Params};
use crate::response::{backend_error_response, error_response, json_error};

/// The one description of every failure that depends on who the client is: unknown or
/// invalid tenant, malformed or unknown client id, wrong or empty secret.
pub(crate) const CLIENT_AUTH_FAILED: &str = "client authentication failed";

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");

/// Why a request did not succeed.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// An outcome the gateway found, rendered by [`error_response`].
    Error(ErrorCode, Cow<'static, str>),
    /// The backend's refusal, rendered with its retry information.
    Backend(BackendError),
    /// The body exceeds the configured limit (an HTTP condition, not an OAuth one).
    TooLarge(usize),
}

impl Rejection {
    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Error(ErrorCode::InvalidRequest, description.into())
    }

    pub(crate) fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Error(ErrorCode::InvalidClient, description.into())
    }

    pub(crate) fn client_auth_failed() -> Self {
        Self::invalid_client(CLIENT_AUTH_FAILED)
    }

    pub(crate) fn into_response(self) -> Response {
        match self {
            Rejection::Error(code, description) => error_response(code, &description),
            Rejection::Backend(error) => backend_error_response(&error),
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
            _ => Rejection::Backend(error),
        }
    }
}

/// Any method but POST on `endpoint` (e.g. "the token endpoint").
pub(crate) fn method_not_allowed(endpoint: &str) -> Response {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        &format!("{endpoint} accepts only POST"),
    );
    response.headers_mut().insert(header::ALLOW, ALLOW_POST);
    no_store(response)
}

/// RFC 6749 §5.1, RFC 7662 §4: these responses, successful or not, must not be cached.
pub(crate) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(header::PRAGMA, NO_CACHE);
    response
}

/// A request whose body has been read, not yet parsed.
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    format: BodyFormat,
    body: Bytes,
    /// The TCP peer's address. Forwarding headers (`X-Forwarded-For`, `Forwarded`) are not
    /// read: anyone can set them, and the address feeds brute-force limits.
    pub(crate) source: Option<IpAddr>,
}

impl Received {
    /// Checks the body's encoding and reads it whole, refusing more than `limit` bytes.
    pub(crate) async fn read(request: Request, limit: usize) -> Result<Self, Rejection> {
        let (parts, body) = request.into_parts();
        let format = BodyFormat::of(parts.headers.get(header::CONTENT_TYPE))
            .map_err(|error| Rejection::invalid_request(error.to_string()))?;
        let body = read_body(body, &parts.headers, limit).await?;
        // Present when the router is served by `crate::serve`; absent in tests that call the
        // router directly.
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`.
            .map(|ConnectInfo(address)| address.ip().to_canonical());
        Ok(Self {
            headers: parts.headers,
            format,
            body,
            source,
        })
    }

    /// Where the request came from: the TCP peer, over HTTP, with the trace id of a
    /// well-formed W3C `traceparent` header.
    pub(crate) fn origin(&self) -> RequestOrigin {
        RequestOrigin {
            source: self.source,
            transport: Transport::Http,
            trace_id: self
                .headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .and_then(TraceId::from_traceparent),
        }
    }

    /// `endpoint`'s parameters.
    pub(crate) fn params(&self, endpoint: Endpoint) -> Result<Params<'_>, Rejection> {
        Params::parse(endpoint, self.format, &self.body)
            .map_err(|error| Rejection::invalid_request(error.to_string()))
    }

    /// The client id and secret, from exactly one authentication method (§2.3), checked in
    /// shape only; [`identify`] checks the values.
    pub(crate) fn client_credentials<'a>(
        &self,
        body_id: Option<Cow<'a, str>>,
        body_secret: Option<Cow<'a, str>>,
    ) -> Result<(Cow<'a, str>, String), Rejection> {
        let Some(authorization) = self.headers.get(header::AUTHORIZATION) else {
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
        // §2.3.1 allows a client_id in the body alongside Basic only if it names the same
        // client.
        if body_id.is_some_and(|body_id| body_id != client_id) {
            return Err(Rejection::invalid_request(
                "client_id does not match the Authorization header",
            ));
        }
        Ok((Cow::Owned(client_id), client_secret))
    }
}

/// The calling client, well-formed; whether it exists and the secret is right is the
/// backend's to decide.
pub(crate) struct Client {
    pub(crate) tenant: TenantName,
    pub(crate) client_id: ClientId,
    pub(crate) client_secret: ClientSecret,
}

/// The identity checks, run last (see the module documentation); never says which part was
/// wrong.
pub(crate) fn identify(
    tenant: Option<TenantName>,
    client_id: &str,
    client_secret: String,
) -> Result<Client, Rejection> {
    // Over the length limit is a malformed request, not a failed authentication: the
    // limit is public, so saying so reveals nothing about which clients exist.
    if client_id.len() > ClientId::MAX_LEN {
        return Err(Rejection::invalid_request(format!(
            "client_id must be at most {} characters",
            ClientId::MAX_LEN
        )));
    }
    let (Some(tenant), Ok(client_id)) = (tenant, ClientId::parse(client_id)) else {
        return Err(Rejection::client_auth_failed());
    };
    if client_secret.is_empty() {
        return Err(Rejection::client_auth_failed());
    }
    Ok(Client {
        tenant,
        client_id,
        client_secret: ClientSecret::new(client_secret),
    })
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
