//! Connection limits shared by Tollgate's two listeners, the HTTP gateway and the gRPC API:
//! a cap on open connections, and deadlines for a connection's first bytes, a request head,
//! a request body and an idle connection.
//!
//! An [`Acceptor`] accepts on a listener and hands out [`Limited`] connections. Each one
//! carries a deadline that depends on where the connection is:
//!
//! - just accepted: the first request head (HTTP listener) or the HTTP/2 connection preface
//!   (gRPC listener) must arrive within [`ConnectionLimits::header_timeout`] or
//!   [`ConnectionLimits::preface_timeout`];
//! - a request in flight (from its parsed head until its response body ends): no deadline
//!   on the connection, but the request body must arrive within
//!   [`ConnectionLimits::body_timeout`] (the requests of both APIs are small and unary;
//!   responses, such as a revocation watch, may stream for hours);
//! - no request in flight: closed [`ConnectionLimits::idle_timeout`] after the last one
//!   ended; on the HTTP listener, a new request head must arrive within the header timeout
//!   of its first byte.
//!
//! A connection past its deadline fails its next read or write, and the HTTP stack drops
//! it. At the cap ([`ConnectionLimits::max_connections`]), the connection idle for longest
//! is closed to make room for the new one (as nginx reuses keep-alive connections), so
//! idle or trickling connections cannot lock legitimate clients out; when every connection
//! has a request in flight, new ones wait in the kernel's accept backlog. Accept errors
//! never end the loop: running out of file descriptors closes the longest-idle connection
//! and backs off briefly.

// Connection deadlines are about real I/O (bytes that do or do not arrive), so they read the real monotonic clock, not an injected one.
#![allow(clippy::disallowed_methods)]

mod http;
mod io;
mod track;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub(crate) use http::serve_http;
pub use io::Limited;
use io::Shared;
pub use track::{ConnectionInfo, GrpcConnectionLayer, GrpcConnectionService};

/// The limits of one listener's connections. [`Default`] gives the documented defaults,
/// with [`ConnectionLimits::DEFAULT_MAX_CONNECTIONS`] as the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once on the listener. At the cap the connection idle for
    /// longest is closed to make room; when none is idle, new connections wait in the
    /// accept backlog.
    pub max_connections: usize,
    /// HTTP listener: the time from accepting a connection to its first complete request
    /// head, and from the first byte of any later request head to its end.
    pub header_timeout: Duration,
    /// The time from a request's head to the end of its body.
    pub body_timeout: Duration,
    /// How long a connection without a request in flight stays open.
    pub idle_timeout: Duration,
    /// gRPC listener: the time from accepting a connection to the end of its HTTP/2
    /// connection preface (24 bytes).
    pub preface_timeout: Duration,
    /// HTTP/2: the time between two keep-alive pings the server sends.
    pub http2_keepalive_interval: Duration,
    /// HTTP/2: how long the server waits for a ping's acknowledgement before closing.
    pub http2_keepalive_timeout: Duration,
    /// HTTP/2: the most streams (requests) a client may have open at once on one
    /// connection.
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// The default cap when nothing else is known: far above one server's honest load.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// Default of [`ConnectionLimits::header_timeout`]: 10 s (a request head is one packet).
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ConnectionLimits::body_timeout`]: 10 s (bodies are at most kilobytes).
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ConnectionLimits::idle_timeout`]: 60 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default of [`ConnectionLimits::preface_timeout`]: 10 s.
    pub const DEFAULT_PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ConnectionLimits::http2_keepalive_interval`]: 30 s.
    pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
    /// Default of [`ConnectionLimits::http2_keepalive_timeout`]: 10 s.
    pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ConnectionLimits::http2_max_concurrent_streams`]: 128.
    pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
    /// File descriptors kept out of the listeners' caps when they are derived from the
    /// open-file limit: database pools (three files per SQLite connection), Redis, the
    /// listeners themselves, the runtime, logs and key files.
    pub const RESERVED_FILES: u64 = 128;
    /// The smallest cap derived from the open-file limit.
    pub const MIN_DERIVED_MAX_CONNECTIONS: usize = 16;

    /// The cap per listener that keeps `listeners` listeners at their caps within
    /// `open_files` descriptors, [`ConnectionLimits::RESERVED_FILES`] kept aside: at least
    /// [`ConnectionLimits::MIN_DERIVED_MAX_CONNECTIONS`], at most
    /// [`ConnectionLimits::DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections_for(open_files: u64, listeners: u64) -> usize {
        let per_listener = open_files.saturating_sub(Self::RESERVED_FILES) / listeners.max(1);
        usize::try_from(per_listener).unwrap_or(usize::MAX).clamp(
            Self::MIN_DERIVED_MAX_CONNECTIONS,
            Self::DEFAULT_MAX_CONNECTIONS,
        )
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            preface_timeout: Self::DEFAULT_PREFACE_TIMEOUT,
            http2_keepalive_interval: Self::DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
            http2_keepalive_timeout: Self::DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
            http2_max_concurrent_streams: Self::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        }
    }
}

/// What a listener speaks, which decides a new connection's first deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, or HTTP/2 with prior knowledge: the first request head within the header
    /// timeout.
    Http,
    /// HTTP/2 only (gRPC): the connection preface within the preface timeout.
    Grpc,
}

/// The first wait after an accept error that says the process or system is out of
/// resources; doubled on each repeat, up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between accept attempts while resources are exhausted.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// At the cap with no idle connection to close, how often the acceptor looks again (a
/// connection turning idle does not notify it; one closing does).
const RECHECK_AT_CAP: Duration = Duration::from_millis(100);
/// How long a connection told to close may take before another is chosen in its place.
const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Once the listener drains, how long a connection without a request in flight stays open:
/// long enough for the end of a response that just finished (an HTTP/2 trailers frame, such
/// as the UNAVAILABLE that ends a stream at shutdown) to be written and for the HTTP stack's
/// own graceful close, short enough that a shutdown never waits for the header or preface
/// timeout of a connection that may never send a request.
const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// `drain_started` while the listener accepts.
const NOT_DRAINING: u64 = u64::MAX;

/// The open connections of one listener.
pub(crate) struct Registry {
    epoch: Instant,
    limits: Arc<ConnectionLimits>,
    protocol: Protocol,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Shared>>>,
    /// Notified whenever a connection closes.
    closed: Notify,
    /// When the listener stopped accepting (registry nanoseconds), or [`NOT_DRAINING`]:
    /// from then on, idle connections close within [`DRAIN_GRACE`].
    drain_started: AtomicU64,
}

impl Registry {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, Arc<Shared>>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep using it.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn since_epoch(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    pub(crate) fn remove(&self, id: u64) {
        self.live().remove(&id);
        self.closed.notify_waiters();
    }

    /// When a connection idle since `idle_since` (registry nanoseconds) must close because
    /// the listener is draining, or `None` while it accepts.
    pub(crate) fn drain_deadline(&self, idle_since: u64) -> Option<Instant> {
        let started = self.drain_started.load(Ordering::Acquire);
        (started != NOT_DRAINING).then(|| self.at(started.max(idle_since)) + DRAIN_GRACE)
    }

    /// Closes every connection without a request in flight within [`DRAIN_GRACE`], now and
    /// whenever one becomes idle: the listener has stopped accepting, and a shutdown must
    /// not wait for the header or preface timeout of connections that may never send a
    /// request.
    fn drain(&self) {
        let now = self.since_epoch(Instant::now());
        let _ = self.drain_started.compare_exchange(
            NOT_DRAINING,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        for connection in self.live().values() {
            connection.wake();
        }
    }

    /// Tells the connection idle for longest to close, unless one told so recently is still
    /// open. Returns whether there was one to close or pending.
    fn evict_longest_idle(&self) -> bool {
        let now = Instant::now();
        let live = self.live();
        let pending = live.values().any(|connection| {
            connection
                .evicted_at()
                .is_some_and(|at| now.saturating_duration_since(self.at(at)) < EVICTION_GRACE)
        });
        if pending {
            return true;
        }
        let victim = live
            .values()
            .filter(|connection| connection.in_flight() == 0 && connection.evicted_at().is_none())
            .min_by_key(|connection| connection.idle_since());
        match victim {
            Some(victim) => {
                victim.evict(self.since_epoch(now));
                true
            }
            None => false,
        }
    }

    /// Whether a new connection can be taken: the listener is below its cap, or holds a
    /// connection that can be closed to make room (or is closing one).
    fn can_take_one(&self) -> bool {
        let live = self.live();
        live.len() < self.limits.max_connections
            || live
                .values()
                .any(|connection| connection.in_flight() == 0 || connection.evicted_at().is_some())
    }

    /// Waits until [`Registry::can_take_one`]; meanwhile new connections wait in the
    /// kernel's accept backlog.
    async fn wait_to_take_one(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.can_take_one() {
                return;
            }
            tracing::debug!(
                max_connections = self.limits.max_connections,
                "every connection has a request in flight; new ones wait in the backlog"
            );
            let _ = tokio::time::timeout(RECHECK_AT_CAP, closed).await;
        }
    }

    /// Waits until the listener is below its cap, closing idle connections to get there.
    async fn make_room(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.live().len() < self.limits.max_connections {
                return;
            }
            self.evict_longest_idle();
            let _ = tokio::time::timeout(RECHECK_AT_CAP, closed).await;
        }
    }
}

/// Accepts connections on one listener within its [`ConnectionLimits`].
#[derive(Clone)]
pub struct Acceptor {
    listener: Arc<TcpListener>,
    registry: Arc<Registry>,
}

impl Acceptor {
    /// Accepts on `listener` under `limits`, with the first deadline `protocol` implies.
    pub fn new(listener: TcpListener, limits: ConnectionLimits, protocol: Protocol) -> Self {
        Self {
            listener: Arc::new(listener),
            registry: Arc::new(Registry {
                epoch: Instant::now(),
                limits: Arc::new(limits),
                protocol,
                next_id: AtomicU64::new(0),
                live: Mutex::new(HashMap::new()),
                closed: Notify::new(),
                drain_started: AtomicU64::new(NOT_DRAINING),
            }),
        }
    }

    /// The limits this acceptor applies.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.registry.limits
    }

    /// The number of connections open now.
    pub fn open_connections(&self) -> usize {
        self.registry.live().len()
    }

    /// The next connection, once the listener is below its cap. Never fails: accept errors
    /// are logged and retried (with a backoff, and an idle connection closed, when they
    /// say descriptors ran out).
    pub async fn accept(&self) -> Limited<TcpStream> {
        let mut backoff = MIN_ACCEPT_BACKOFF;
        loop {
            self.registry.wait_to_take_one().await;
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    // Room is made only for a connection that came: an idle connection is
                    // closed when a new one needs its place, not in advance.
                    self.registry.make_room().await;
                    // Token responses are small and latency-bound: no Nagle delay.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::trace!(%error, "cannot set TCP_NODELAY");
                    }
                    return Limited::new(stream, peer, Arc::clone(&self.registry));
                }
                Err(error) if is_resource_exhaustion(&error) => {
                    let freed = self.registry.evict_longest_idle();
                    tracing::warn!(
                        %error,
                        open_connections = self.open_connections(),
                        closing_an_idle_connection = freed,
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot accept a connection"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
                Err(error) => {
                    // A connection that failed before it was accepted (reset, aborted):
                    // nothing to wait for.
                    tracing::debug!(%error, "accept failed");
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Stops the listener's connections that have no request in flight, now and as soon
    /// as the others finish theirs (for a shutdown; the caller stops accepting).
    pub fn drain(&self) {
        self.registry.drain();
    }

    /// The accepted connections as a stream that never ends nor fails, for
    /// `tonic::transport::Server::serve_with_incoming_shutdown`.
    pub fn into_incoming(self) -> Incoming {
        Incoming {
            acceptor: self,
            pending: None,
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` (Linux numbers): retrying at once would spin.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
        || error.kind() == std::io::ErrorKind::OutOfMemory
}

type AcceptFuture = Pin<Box<dyn Future<Output = Limited<TcpStream>> + Send>>;

/// [`Acceptor::into_incoming`]: a `Stream` of accepted connections. Dropping it, as tonic
/// does when it stops accepting at shutdown, drains the connections ([`Acceptor::drain`]).
pub struct Incoming {
    acceptor: Acceptor,
    pending: Option<AcceptFuture>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.acceptor.drain();
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<Limited<TcpStream>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let acceptor = self.acceptor.clone();
        let pending = self
            .pending
            .get_or_insert_with(|| Box::pin(async move { acceptor.accept().await }));
        match pending.as_mut().poll(cx) {
            Poll::Ready(connection) => {
                self.pending = None;
                Poll::Ready(Some(Ok(connection)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
