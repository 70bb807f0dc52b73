//! The largest gRPC request messages the services decode, and the status an oversized one
//! gets: RESOURCE_EXHAUSTED, as gRPC specifies for a message over the receiver's limit
//! (tonic answers OUT_OF_RANGE; [`OversizedMessageLayer`] corrects it).
//!
//! Tonic checks a message's length prefix before reading its body, so an oversized
//! request costs its first five bytes, not its size.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Code;

/// The largest `TokenService` request: 64 KiB. An honest token request (tenant, client id,
/// secret, audience, a few scopes) is well under 1 KiB, and every field has a documented
/// limit of its own far below this.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

/// The largest management or audit request: 4 MiB, tonic's default, stated here so the
/// bound is ours. Management requests carry descriptions, scope lists and public keys.
pub const MAX_MANAGEMENT_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Turns tonic's OUT_OF_RANGE for a request message over the decoding limit into
/// RESOURCE_EXHAUSTED. The refusal is a trailers-only response (the status in the
/// headers), since tonic decodes a unary request before calling the handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizedMessageLayer;

impl<S> tower::Layer<S> for OversizedMessageLayer {
    type Service = OversizedMessage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizedMessage { inner }
    }
}

/// The service of [`OversizedMessageLayer`].
#[derive(Debug, Clone)]
pub struct OversizedMessage<S> {
    inner: S,
}

type Response = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for OversizedMessage<S>
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
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            remap_oversized(&mut response);
            Ok(response)
        })
    }
}

/// What tonic's decoder says about a message over its limit (its words, spaces possibly
/// percent-encoded in `grpc-message`).
const TONIC_TOO_LARGE: &str = "decoded message length too large";

fn remap_oversized(response: &mut Response) {
    let headers = response.headers_mut();
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if headers
        .get("grpc-status")
        .is_none_or(|status| status.as_bytes() != out_of_range.as_bytes())
    {
        return;
    }
    let too_large = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| message.replace("%20", " ").contains(TONIC_TOO_LARGE));
    if too_large {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from((Code::ResourceExhausted as i32) as u16),
        );
    }
}
