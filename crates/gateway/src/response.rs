//! Rendering: JSON bodies and the single translation of an [`ErrorCode`] into an HTTP status
//! and an RFC 6749 §5.2 error body ([`error_response`]).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::ErrorCode;

/// `application/json`.
pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The challenge sent with every `invalid_client` (RFC 6749 §5.2, RFC 7617).
const BASIC_CHALLENGE: HeaderValue = HeaderValue::from_static(r#"Basic realm="tollgate""#);
/// How long a client should wait after 429 or 503 before trying again.
const RETRY_AFTER: HeaderValue = HeaderValue::from_static("1");

/// The body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// Translates `code` into the response a client sees; the only place that does.
///
/// `description` is shown for OAuth errors (it must name the offending parameter and never
/// echo a secret) and for `NotFound`. For every other code it is logged and replaced by a
/// fixed text, so that internal details never reach a client.
pub(crate) fn error_response(code: ErrorCode, description: &str) -> Response {
    if let Some(error) = code.oauth_error() {
        if code == ErrorCode::InvalidClient {
            let mut response = json_error(StatusCode::UNAUTHORIZED, error, description);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, BASIC_CHALLENGE);
            return response;
        }
        return json_error(StatusCode::BAD_REQUEST, error, description);
    }
    match code {
        ErrorCode::NotFound => json_error(StatusCode::NOT_FOUND, "not_found", description),
        // RFC 6749 §5.2 has no code for overload; `temporarily_unavailable` (§4.1.2.1) is
        // the one OAuth clients already understand as "retry later".
        ErrorCode::Unavailable | ErrorCode::ResourceExhausted => {
            // Debug, not warn: under overload every request ends here, and the edge must not
            // multiply its work by logging each one; the backend reports the cause.
            tracing::debug!(%code, description, "backend cannot serve the request");
            let (status, text) = if code == ErrorCode::Unavailable {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is temporarily unavailable; retry later",
                )
            } else {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests; retry later",
                )
            };
            let mut response = json_error(status, "temporarily_unavailable", text);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER);
            response
        }
        _ => {
            tracing::error!(%code, description, "request failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        }
    }
}

/// A `{"error","error_description"}` response with `status`. Prefer [`error_response`];
/// this is for conditions that are HTTP's rather than Tollgate's (405, 413).
pub(crate) fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &ErrorBody {
            error,
            error_description: description,
        },
    )
}

/// `value` serialised as the JSON body of a `status` response.
pub(crate) fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    json_response_sized(status, value, 256)
}

/// [`json_response`] with the body buffer sized for `capacity` bytes up front, for bodies
/// whose size is known to exceed the default (a token is several hundred bytes).
pub(crate) fn json_response_sized(
    status: StatusCode,
    value: &impl Serialize,
    capacity: usize,
) -> Response {
    let mut body = Vec::with_capacity(capacity);
    if let Err(error) = serde_json::to_writer(&mut body, value) {
        // Our bodies are plain structs of strings and numbers; this cannot happen.
        tracing::error!(%error, "cannot serialise a response body");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for (code, status) in [
            (ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidClient, StatusCode::UNAUTHORIZED),
            (ErrorCode::UnsupportedGrantType, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidTarget, StatusCode::BAD_REQUEST),
            (ErrorCode::UnauthorizedClient, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidScope, StatusCode::BAD_REQUEST),
            (ErrorCode::NotFound, StatusCode::NOT_FOUND),
            (ErrorCode::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorCode::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
            (
                ErrorCode::Unauthenticated,
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                ErrorCode::PermissionDenied,
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (ErrorCode::AlreadyExists, StatusCode::INTERNAL_SERVER_ERROR),
            (
                ErrorCode::FailedPrecondition,
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (ErrorCode::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let response = error_response(code, "details");
            assert_eq!(response.status(), status, "{code}");
            assert_eq!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                code == ErrorCode::InvalidClient,
                "{code}"
            );
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                matches!(code, ErrorCode::Unavailable | ErrorCode::ResourceExhausted)
                    .then_some(&RETRY_AFTER),
                "{code}"
            );
        }
    }
}
