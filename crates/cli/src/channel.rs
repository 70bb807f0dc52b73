//! The channel of the admin and token commands: tonic's `Channel`, plus a check that the
//! endpoint speaks gRPC at all.
//!
//! Pointed at the HTTP gateway's port, which speaks HTTP/2 too, a gRPC call is answered with
//! a JSON 404; tonic then reads the JSON as a gRPC message and reports "invalid compression
//! flag: 123". [`GrpcChannel`] looks at each response's `content-type` before tonic does
//! (every gRPC response carries `application/grpc`, possibly with a `+proto` suffix, gRPC
//! over HTTP/2 §Responses) and turns any other answer into a status that says what is
//! wrong and where the gRPC API is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::Channel;

/// Where the server's gRPC API listens, for the hint in [`not_grpc`].
const GRPC_ADDRESS_HINT: &str = "the gRPC API listens on TOLLGATE_GRPC_ADDR of `tollgate \
     serve` (default 127.0.0.1:50051); give that address with --endpoint or TOLLGATE_ENDPOINT";

/// At most this many bytes of a non-gRPC answer's `content-type` are quoted in the message.
const MAX_QUOTED_CONTENT_TYPE: usize = 64;

/// A connected channel that refuses answers from servers that do not speak gRPC.
#[derive(Clone)]
pub struct GrpcChannel {
    inner: Channel,
    /// The endpoint as the user gave it, for messages.
    endpoint: Arc<str>,
}

impl GrpcChannel {
    /// Wraps `inner`, connected to `endpoint`.
    pub fn new(inner: Channel, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: Arc::from(endpoint),
        }
    }
}

impl tower::Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let endpoint = Arc::clone(&self.endpoint);
        Box::pin(async move {
            // The replacement is a trailers-only gRPC answer: tonic reads the status from
            // its headers.
            match response.await {
                Ok(response) if is_grpc(response.headers()) => Ok(response),
                Ok(response) => Ok(not_grpc(&endpoint, &response).into_http()),
                // An HTTP/1.1-only server breaks the HTTP/2 connection instead of answering;
                // hyper reports that to the call either as the protocol error or as a plain
                // "connection closed", depending on timing, so it is left as it comes.
                Err(error) => Err(error),
            }
        })
    }
}

/// Whether `headers` are those of a gRPC response.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .get(..16)
                .is_some_and(|head| head.eq_ignore_ascii_case("application/grpc"))
                && matches!(value.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// The status of an answer that is not gRPC, naming what came back.
fn not_grpc(endpoint: &str, response: &http::Response<Body>) -> tonic::Status {
    let content_type = match response.headers().get(http::header::CONTENT_TYPE) {
        None => "no content-type".to_owned(),
        Some(value) => match value.to_str() {
            Ok(text) if text.len() <= MAX_QUOTED_CONTENT_TYPE => format!("content-type {text}"),
            _ => "another content-type".to_owned(),
        },
    };
    tonic::Status::unavailable(format!(
        "{endpoint} does not speak gRPC (it answered HTTP {} with {content_type}): is this the \
         HTTP port? {GRPC_ADDRESS_HINT}",
        response.status()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for (value, expected) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC", true),
            ("application/grpc; charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpcx", false),
            ("application/json", false),
            ("text/html", false),
            ("", false),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(value),
            );
            assert_eq!(is_grpc(&headers), expected, "{value:?}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn the_message_names_the_answer_and_the_grpc_address() -> Result<(), http::Error> {
        let response = http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::empty())?;
        let status = not_grpc("http://127.0.0.1:8080", &response);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "http://127.0.0.1:8080 does not speak gRPC (it answered HTTP 404 Not Found with \
             content-type application/json): is this the HTTP port? the gRPC API listens on \
             TOLLGATE_GRPC_ADDR of `tollgate serve` (default 127.0.0.1:50051); give that \
             address with --endpoint or TOLLGATE_ENDPOINT"
        );
        Ok(())
    }
}
