//! Requests on a [`Limited`] connection: counted as in flight from their head to the end of
//! their response body (an idle connection is one without any), with their request body
//! bounded in time. [`GrpcConnectionLayer`] does this for tonic; the HTTP listener does it
//! in its own connection loop.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::Limited;
use super::io::{RequestGuard, Shared};

type BoxError = Box<dyn StdError + Send + Sync>;

/// What tonic attaches to each request of a [`Limited`] connection; [`GrpcConnectionLayer`]
/// takes it out again and leaves tonic's own `TcpConnectInfo`, so
/// `tonic::Request::remote_addr` keeps working.
#[derive(Clone)]
pub struct ConnectionInfo {
    tcp: TcpConnectInfo,
    shared: Arc<Shared>,
    body_timeout: Duration,
}

impl Connected for Limited<TcpStream> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tcp: TcpConnectInfo {
                local_addr: self.local_addr(),
                remote_addr: Some(self.peer_addr()),
            },
            shared: Arc::clone(self.shared()),
            body_timeout: self.body_timeout(),
        }
    }
}

/// A tower layer for `tonic::transport::Server::layer`, on a server fed by
/// [`super::Acceptor::into_incoming`]: counts each call as in flight until its response
/// body ends (so a stream in progress keeps its connection from idling out or being closed
/// to make room) and cuts a request body off after the body timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcConnectionLayer;

impl<S> tower::Layer<S> for GrpcConnectionLayer {
    type Service = GrpcConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcConnectionService { inner }
    }
}

/// The service of [`GrpcConnectionLayer`].
#[derive(Debug, Clone)]
pub struct GrpcConnectionService<S> {
    inner: S,
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<GrpcRequest> for GrpcConnectionService<S>
where
    S: tower::Service<GrpcRequest, Response = GrpcResponse>,
    S::Future: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GrpcResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: GrpcRequest) -> Self::Future {
        let guard = match request.extensions_mut().remove::<ConnectionInfo>() {
            Some(info) => {
                request.extensions_mut().insert(info.tcp);
                let timeout = info.body_timeout;
                request = request
                    .map(|body| tonic::body::Body::new(DeadlineBody::new(body, timeout, None)));
                Some(info.shared.begin())
            }
            None => None,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                Some(guard) => {
                    response.map(|body| tonic::body::Body::new(GuardedBody::new(body, guard)))
                }
                None => response,
            })
        })
    }
}

/// A request body that fails once it has not ended within its deadline.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Set when the deadline passed, for the HTTP listener to answer 408.
    expired: Option<Arc<AtomicBool>>,
    state: DeadlineState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DeadlineState {
    Reading,
    Ended,
    Expired,
}

impl<B> DeadlineBody<B> {
    /// `inner` must end within `timeout` from now; `expired` is set if it does not.
    pub(crate) fn new(inner: B, timeout: Duration, expired: Option<Arc<AtomicBool>>) -> Self {
        Self {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            expired,
            state: DeadlineState::Reading,
        }
    }
}

/// The error of a [`DeadlineBody`] past its deadline.
#[derive(Debug)]
pub(crate) struct BodyTimeout(Duration);

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs()
        )
    }
}

impl StdError for BodyTimeout {}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match this.state {
            DeadlineState::Expired => {
                return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
            }
            DeadlineState::Ended => {
                return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
            }
            DeadlineState::Reading => {}
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.state = DeadlineState::Ended;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if this.inner.is_end_stream() {
                    this.state = DeadlineState::Ended;
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.state = DeadlineState::Expired;
                    if let Some(expired) = &this.expired {
                        expired.store(true, Ordering::Release);
                    }
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state != DeadlineState::Expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it ends or is
/// dropped.
pub(crate) struct GuardedBody<B> {
    inner: B,
    guard: Option<RequestGuard>,
}

impl<B> GuardedBody<B> {
    pub(crate) fn new(inner: B, guard: RequestGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B> HttpBody for GuardedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
