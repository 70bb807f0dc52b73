//! The HTTP listener's connection loop: HTTP/1.1 with keep-alive, or HTTP/2 with prior
//! knowledge, on [`Limited`](super::Limited) connections, each request handed to the
//! router with its peer's address.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use super::Acceptor;
use super::io::Shared;
use super::track::{DeadlineBody, GuardedBody};

/// Serves `router` on the connections of `acceptor` until `shutdown` completes, then stops
/// accepting and waits for the open connections to finish their requests and close.
pub(crate) async fn serve_http(
    acceptor: Acceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = acceptor.limits().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The connection's own deadlines time request heads (hyper's would also cut idle
    // keep-alive connections at the header timeout); hyper keeps no timer for HTTP/1.
    builder.http1().keep_alive(true).header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let connection = tokio::select! {
            connection = acceptor.accept() => connection,
            () = &mut shutdown => break,
        };
        let peer = connection.peer_addr();
        let shared = Arc::clone(connection.shared());
        let body_timeout = connection.body_timeout();
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(
                router.clone(),
                Arc::clone(&shared),
                peer,
                body_timeout,
                request,
            )
        });
        let served = graceful.watch(
            builder
                .serve_connection(TokioIo::new(connection), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::debug!(%peer, error = %error, "HTTP connection ended with an error");
            }
        });
    }
    // Close idle connections, and the listening socket before waiting, so new clients are
    // refused at once.
    acceptor.drain();
    drop(acceptor);
    graceful.shutdown().await;
}

/// One request: counted in flight until its response body ends, its body cut off after
/// `body_timeout` (answered 408, and the connection closed).
async fn handle(
    router: Router,
    shared: Arc<Shared>,
    peer: SocketAddr,
    body_timeout: Duration,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let guard = shared.begin();
    let expired = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = Body::new(DeadlineBody::new(
        body,
        body_timeout,
        Some(Arc::clone(&expired)),
    ));
    let response = match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if expired.load(Ordering::Acquire) {
        body_timeout_response(body_timeout)
    } else {
        response
    };
    Ok(response.map(|body| Body::new(GuardedBody::new(body, guard))))
}

/// 408 for a body that did not arrive in time; `Connection: close`, as the rest of the
/// body may still come.
fn body_timeout_response(body_timeout: Duration) -> Response<Body> {
    let mut response = crate::response::json_error(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request",
        &format!(
            "the request body did not arrive within {} s",
            body_timeout.as_secs()
        ),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
