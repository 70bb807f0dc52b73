//! Rendering: JSON bodies and the single translation of an [`ErrorCode`] into an HTTP status,
//! an RFC 6749 §5.2 error body and its retry headers ([`render_error`], reached through
//! [`error_response`] and [`backend_error_response`]).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tollgate_domain::{ErrorCode, UNAVAILABLE_RETRY_AFTER};

use crate::{BackendError, RateLimitInfo};

/// `application/json`.
pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The challenge sent with every `invalid_client` (RFC 6749 §5.2, RFC 7617).
const BASIC_CHALLENGE: HeaderValue = HeaderValue::from_static(r#"Basic realm="tollgate""#);
/// The RateLimit header fields (draft-ietf-httpapi-ratelimit-headers, the three-field form).
pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The response for an error the gateway itself found (no retry information).
pub(crate) fn error_response(code: ErrorCode, description: &str) -> Response {
    render_error(code, description, None, None)
}

/// The response for an error the backend returned, with its retry information.
pub(crate) fn backend_error_response(error: &BackendError) -> Response {
    render_error(
        error.code,
        &error.message,
        error.retry_after,
        error.rate_limit,
    )
}

/// Translates `code` into the response a client sees; the only place that does.
///
/// `description` is shown for OAuth errors (it must name the offending parameter and never
/// echo a secret) and for `NotFound`. For every other code it is logged and replaced by a
/// fixed text, so that internal details never reach a client.
///
/// 429 (`ResourceExhausted`) and 503 (`Unavailable`) carry `Retry-After`: `retry_after`
/// (else the rate limit's reset, else `tollgate_domain::UNAVAILABLE_RETRY_AFTER`, 1 s) in
/// whole seconds, rounded up, at least 1. A 429
/// also carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` when the
/// backend reported `rate_limit`.
fn render_error(
    code: ErrorCode,
    description: &str,
    retry_after: Option<Duration>,
    rate_limit: Option<RateLimitInfo>,
) -> Response {
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
            let exhausted = code == ErrorCode::ResourceExhausted;
            let (status, text) = if exhausted {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests; retry later",
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is temporarily unavailable; retry later",
                )
            };
            let mut response = json_error(status, "temporarily_unavailable", text);
            let rate_limit = rate_limit.filter(|_| exhausted);
            retry_headers(response.headers_mut(), retry_after, rate_limit);
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

/// `Retry-After` and, with `rate_limit`, the RateLimit header fields.
fn retry_headers(
    headers: &mut HeaderMap,
    retry_after: Option<Duration>,
    rate_limit: Option<RateLimitInfo>,
) {
    // When the backend does not say: what an outage's retry hint says everywhere.
    let retry_after = retry_after
        .or(rate_limit.map(|limit| limit.reset))
        .unwrap_or(UNAVAILABLE_RETRY_AFTER);
    let retry_after = HeaderValue::from(ceil_seconds(retry_after).max(1));
    headers.insert(header::RETRY_AFTER, retry_after);
    if let Some(limit) = rate_limit {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(limit.remaining));
        headers.insert(
            RATELIMIT_RESET,
            HeaderValue::from(ceil_seconds(limit.reset)),
        );
    }
}

/// `duration` in whole seconds, rounded up.
fn ceil_seconds(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
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
                    .then_some(&HeaderValue::from_static("1")),
                "{code}"
            );
            assert!(!response.headers().contains_key(RATELIMIT_LIMIT), "{code}");
        }
    }

    fn header<'a>(response: &'a Response, name: &HeaderName) -> Option<&'a str> {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    }

    #[test]
    fn retry_headers() {
        let limit = |reset_ms| RateLimitInfo {
            limit: 100,
            remaining: 0,
            reset: Duration::from_millis(reset_ms),
        };
        // (code, retry_after, rate_limit) → Retry-After, [RateLimit-Limit, -Remaining, -Reset]
        for (code, retry_after, rate_limit, expected_retry, expected_limit) in [
            (ErrorCode::ResourceExhausted, None, None, "1", None),
            (ErrorCode::ResourceExhausted, Some(0), None, "1", None),
            (ErrorCode::ResourceExhausted, Some(1), None, "1", None),
            (ErrorCode::ResourceExhausted, Some(1000), None, "1", None),
            (ErrorCode::ResourceExhausted, Some(1001), None, "2", None),
            (ErrorCode::ResourceExhausted, Some(59_500), None, "60", None),
            (
                ErrorCode::ResourceExhausted,
                Some(1500),
                Some(limit(2200)),
                "2",
                Some(["100", "0", "3"]),
            ),
            // Without a retry delay the reset is the best guess.
            (
                ErrorCode::ResourceExhausted,
                None,
                Some(limit(4001)),
                "5",
                Some(["100", "0", "5"]),
            ),
            (
                ErrorCode::ResourceExhausted,
                None,
                Some(limit(0)),
                "1",
                Some(["100", "0", "0"]),
            ),
            (ErrorCode::Unavailable, Some(30_000), None, "30", None),
            // Rate-limit facts belong to 429 only.
            (ErrorCode::Unavailable, None, Some(limit(3000)), "1", None),
        ] {
            let response = render_error(
                code,
                "details",
                retry_after.map(Duration::from_millis),
                rate_limit,
            );
            let name = format!("{code} {retry_after:?} {rate_limit:?}");
            assert_eq!(
                header(&response, &header::RETRY_AFTER),
                Some(expected_retry),
                "{name}"
            );
            assert_eq!(
                [RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET]
                    .map(|field| header(&response, &field)),
                expected_limit.map_or([None; 3], |values| values.map(Some)),
                "{name}"
            );
        }
        // Hints on other codes are ignored.
        let response = render_error(
            ErrorCode::InvalidClient,
            "details",
            Some(Duration::from_secs(5)),
            Some(limit(5000)),
        );
        assert_eq!(header(&response, &header::RETRY_AFTER), None);
        assert_eq!(header(&response, &RATELIMIT_LIMIT), None);
    }

    #[test]
    fn ceil_seconds_saturates() {
        assert_eq!(ceil_seconds(Duration::MAX), u64::MAX);
        assert_eq!(ceil_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_seconds(Duration::ZERO), 0);
    }
}
