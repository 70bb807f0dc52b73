//! The access log: one line per HTTP request, at target `tollgate::access`, level `info`
//! (filter it with `RUST_LOG`, e.g. `RUST_LOG=info,tollgate::access=off`).
//!
//! A line carries the method, the route template (axum's matched path, so tenant names in
//! paths do not multiply the routes), the status, the duration in milliseconds, the tenant
//! when the request names one, and the caller's W3C trace context. Never the target's query,
//! a header value other than `traceparent`, or the body: no credential, secret or token can
//! reach it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tollgate_domain::TraceId;
use tracing::Instrument;

use crate::tenant::ResolvedTenant;
use crate::{Gateway, TokenBackend};

/// The target of access log lines.
pub const ACCESS_TARGET: &str = "tollgate::access";

/// The route logged for a request no route matched (the JSON 404).
const UNMATCHED_ROUTE: &str = "(unmatched)";

/// The W3C trace context of a request: its trace id and its parent's span id, both from a
/// well-formed `traceparent` header.
pub fn trace_context(headers: &http::HeaderMap) -> Option<(TraceId, String)> {
    let header = headers.get("traceparent")?.to_str().ok()?;
    let trace_id = TraceId::from_traceparent(header)?;
    // Well formed, so the third field is the 16 hex digits of the parent id.
    let span_id = header.trim().split('-').nth(2)?.to_owned();
    Some((trace_id, span_id))
}

/// The span a request is served in, named `request`, carrying the caller's `trace_id` and
/// `span_id` when it sent a trace context (HTTP and gRPC alike).
pub fn request_span(context: Option<&(TraceId, String)>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    );
    if let Some((trace_id, span_id)) = context {
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
    }
    span
}

/// The middleware: runs the request inside a `request` span carrying `trace_id` and
/// `span_id` (when the caller sent a `traceparent`), then logs its access line.
pub(crate) async fn access_log<B: TokenBackend>(
    State(gateway): State<Arc<Gateway<B>>>,
    request: Request,
    next: Next,
) -> Response {
    // The wall-clock time a caller waited, real I/O time: not the domain clock's to fake.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let (mut parts, body) = request.into_parts();
    let tenant = match ResolvedTenant::from_request_parts(&mut parts, &gateway).await {
        Ok(ResolvedTenant(tenant)) => tenant,
        Err(never) => match never {},
    };
    let context = trace_context(&parts.headers);
    let request = Request::from_parts(parts, body);
    let span = request_span(context.as_ref());
    let response = next.run(request).instrument(span).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (trace_id, span_id) = context.unzip();
    tracing::info!(
        target: ACCESS_TARGET,
        protocol = "http",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        duration_ms,
        tenant = tenant.as_ref().map(|t| t.as_str()),
        trace_id = trace_id.as_ref().map(TraceId::as_str),
        span_id = span_id.as_deref(),
        "request served"
    );
    response
}
