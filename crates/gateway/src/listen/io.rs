//! [`Limited`]: an accepted connection that fails its reads and writes once it is past its
//! deadline or was told to make room, and leaves its listener's registry when dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::{Protocol, Registry};

/// The length of the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const HTTP2_PREFACE_LEN: usize = 24;

/// `evicted_at` before any eviction.
const NOT_EVICTED: u64 = u64::MAX;

/// What a connection and the requests on it share.
pub(crate) struct Shared {
    /// Requests whose response has not ended yet.
    in_flight: AtomicUsize,
    /// When the last request ended, or the connection was accepted (registry nanoseconds).
    idle_since: AtomicU64,
    /// When the connection was told to close to make room, or [`NOT_EVICTED`].
    evicted_at: AtomicU64,
    /// The task serving the connection, woken to re-arm its deadline or to close.
    waker: Mutex<Option<Waker>>,
    registry: Arc<Registry>,
}

impl Shared {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }

    pub(crate) fn evicted_at(&self) -> Option<u64> {
        let at = self.evicted_at.load(Ordering::Acquire);
        (at != NOT_EVICTED).then_some(at)
    }

    pub(crate) fn evict(&self, at: u64) {
        self.evicted_at.store(at, Ordering::Release);
        self.wake();
    }

    /// Counts a request as in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(self))
    }

    fn register(&self, waker: &Waker) {
        let mut slot = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slot
            .as_ref()
            .is_some_and(|current| current.will_wake(waker))
        {
            *slot = Some(waker.clone());
        }
    }

    pub(crate) fn wake(&self) {
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A request in flight on a connection: while one exists the connection is not idle.
pub(crate) struct RequestGuard(Arc<Shared>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.0.registry.since_epoch(Instant::now());
            self.0.idle_since.store(now, Ordering::Release);
            // The connection's task may be parked without a deadline: let it arm one.
            self.0.wake();
        }
    }
}

/// An accepted connection under its listener's [`super::ConnectionLimits`].
pub struct Limited<IO> {
    io: IO,
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    accepted: Instant,
    /// The `idle_since` value at accept time: a different one means a request has ended.
    accepted_nanos: u64,
    /// gRPC listener: preface bytes still expected.
    preface_left: usize,
    /// HTTP listener: when the first byte of a request head arrived while idle, with the
    /// `idle_since` it belongs to.
    head_started: Option<(Instant, u64)>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Limited<TcpStream> {
    pub(super) fn new(stream: TcpStream, peer: SocketAddr, registry: Arc<Registry>) -> Self {
        let accepted = Instant::now();
        let accepted_nanos = registry.since_epoch(accepted);
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let preface_left = match registry.protocol {
            Protocol::Grpc => HTTP2_PREFACE_LEN,
            Protocol::Http => 0,
        };
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(accepted_nanos),
            evicted_at: AtomicU64::new(NOT_EVICTED),
            waker: Mutex::new(None),
            registry: Arc::clone(&registry),
        });
        registry.live().insert(id, Arc::clone(&shared));
        let local = stream.local_addr().ok();
        Self {
            io: stream,
            shared,
            id,
            peer,
            local,
            accepted,
            accepted_nanos,
            preface_left,
            head_started: None,
            timer: Box::pin(tokio::time::sleep_until(accepted.into())),
            armed: None,
        }
    }
}

impl<IO> Limited<IO> {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address the connection was accepted on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn body_timeout(&self) -> std::time::Duration {
        self.shared.registry.limits.body_timeout
    }

    /// When the connection must have made progress, or `None` while a request is in
    /// flight.
    fn deadline(&mut self) -> Option<Instant> {
        if self.shared.in_flight() > 0 {
            return None;
        }
        let registry = &self.shared.registry;
        let limits = &registry.limits;
        let idle_since = self.shared.idle_since();
        let deadline = match registry.protocol {
            Protocol::Grpc if self.preface_left > 0 => Some(self.accepted + limits.preface_timeout),
            Protocol::Grpc => Some(registry.at(idle_since) + limits.idle_timeout),
            Protocol::Http if idle_since == self.accepted_nanos => {
                Some(self.accepted + limits.header_timeout)
            }
            Protocol::Http => match self.head_started {
                Some((started, of)) if of == idle_since => Some(started + limits.header_timeout),
                _ => {
                    self.head_started = None;
                    Some(registry.at(idle_since) + limits.idle_timeout)
                }
            },
        };
        match registry.drain_deadline(idle_since) {
            Some(drain) => deadline.map(|deadline| deadline.min(drain)),
            None => deadline,
        }
    }

    /// Fails once the connection is past its deadline (a drain's included), or, when
    /// `reading`, was told to make room; otherwise arms the timer so the task wakes at the
    /// deadline. Writes go on after an eviction, so that a response whose body has ended
    /// (and with it the request's count) still reaches the client; the next read then
    /// closes the connection. A drain closes idle connections only after a short grace,
    /// because the HTTP/2 stack may read before it writes the end of a response.
    fn check(&mut self, cx: &mut Context<'_>, reading: bool) -> io::Result<()> {
        self.shared.register(cx.waker());
        if reading && self.shared.evicted_at().is_some() {
            tracing::debug!(peer = %self.peer, "closing an idle connection to make room");
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            ));
        }
        let Some(deadline) = self.deadline() else {
            return Ok(());
        };
        if self.armed != Some(deadline) {
            self.timer.as_mut().reset(deadline.into());
            self.armed = Some(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(peer = %self.peer, "closing a connection past its deadline");
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection deadline passed",
                ))
            }
            Poll::Pending => Ok(()),
        }
    }

    /// Notes `read` bytes just received.
    fn received(&mut self, read: usize) {
        if read == 0 {
            return;
        }
        match self.shared.registry.protocol {
            Protocol::Grpc => self.preface_left = self.preface_left.saturating_sub(read),
            Protocol::Http => {
                if self.head_started.is_none() && self.shared.in_flight() == 0 {
                    self.head_started = Some((Instant::now(), self.shared.idle_since()));
                }
            }
        }
    }
}

impl<IO> Drop for Limited<IO> {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check(cx, true)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.received(buf.filled().len().saturating_sub(before));
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check(cx, false)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check(cx, false)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check(cx, false)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
