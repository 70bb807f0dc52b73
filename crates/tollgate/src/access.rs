//! The access log of the gRPC server: one line per call, at target `tollgate::access`,
//! level `info`, like the HTTP gateway's (`tollgate_gateway::access`).
//!
//! A line carries the method path (`/tollgate.v1.TokenService/IssueToken`), the gRPC status
//! code, the duration in milliseconds until the response headers, and the caller's W3C trace
//! context. Never metadata other than `traceparent`, nor a message: no credential, secret or
//! token can reach it. The status is the one in the response headers (every refusal, since
//! tonic answers those trailers-only); a response without one is logged as `0` (OK), which
//! a server stream may still end otherwise in its trailers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tollgate_domain::TraceId;
use tollgate_gateway::access::{ACCESS_TARGET, request_span, trace_context};
use tracing::Instrument;

/// Logs an access line for every gRPC call, and runs the call inside a `request` span
/// carrying `trace_id` and `span_id` when the caller sent a `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcAccessLogLayer;

impl<S> tower::Layer<S> for GrpcAccessLogLayer {
    type Service = GrpcAccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAccessLog { inner }
    }
}

/// The service of [`GrpcAccessLogLayer`].
#[derive(Debug, Clone)]
pub struct GrpcAccessLog<S> {
    inner: S,
}

type Response = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcAccessLog<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The wall-clock time a caller waited, real I/O time: not the domain clock's to fake.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        // The path of a gRPC call is its method: a fixed set, no caller data.
        let method = request.uri().path().to_owned();
        let context = trace_context(request.headers());
        let span = request_span(context.as_ref());
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let response = response.await;
                let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                let (trace_id, span_id) = context.unzip();
                match &response {
                    Ok(response) => tracing::info!(
                        target: ACCESS_TARGET,
                        protocol = "grpc",
                        method = %method,
                        grpc_status = grpc_status(response),
                        duration_ms,
                        trace_id = trace_id.as_ref().map(TraceId::as_str),
                        span_id = span_id.as_deref(),
                        "call served"
                    ),
                    Err(_) => tracing::info!(
                        target: ACCESS_TARGET,
                        protocol = "grpc",
                        method = %method,
                        duration_ms,
                        trace_id = trace_id.as_ref().map(TraceId::as_str),
                        span_id = span_id.as_deref(),
                        "call failed before a response"
                    ),
                }
                response
            }
            .instrument(span),
        )
    }
}

/// The `grpc-status` of the response headers, `0` (OK) when there is none.
fn grpc_status(response: &Response) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}
