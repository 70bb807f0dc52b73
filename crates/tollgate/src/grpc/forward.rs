//! The one way a service's stream becomes a gRPC response stream ([`forward`]): a task of
//! its own pulls the service's items, converts each to its wire message (an error through
//! the one service-error translation, as the stream's last message) and hands them to tonic
//! through a bounded buffer.
//!
//! Every forwarded stream ends the same way: when the client goes away (the task stops
//! pulling, and the service's stream is dropped), after an error, when the service's stream
//! ends, or when the server shuts down: then the last message is UNAVAILABLE "server shutting
//! down" (with a retry hint), so that graceful shutdown is not held up by streams that never
//! end on their own and clients reconnect elsewhere. A client that does not read is never
//! waited for at shutdown: the answer is dropped if its buffer is full.

use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tollgate_domain::{ErrorCode, ServiceError, UNAVAILABLE_RETRY_AFTER};
use tollgate_proto::status::to_status_with_retry;
use tonic::Status;

use super::into_status;

/// A response stream of forwarded messages.
pub(crate) type Forwarded<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send + 'static>>;

/// How much of a stream may wait for a slow client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffer {
    /// Messages waiting at most.
    pub messages: usize,
    /// Bytes of encoded messages waiting at most, if bounded (a larger message is let
    /// through alone, once the buffer is empty).
    pub bytes: Option<usize>,
}

/// A message on its way and its share of the buffer's bytes, given back once it has been
/// taken for sending.
type Buffered<M> = (Result<M, Status>, Option<OwnedSemaphorePermit>);

/// Forwards `items` to the client, each converted by `convert`, through `buffer`; see the
/// module documentation for how it ends. `shutdown` turns true when the server stops.
pub(crate) fn forward<S, T, E, M>(
    items: S,
    convert: fn(T) -> M,
    buffer: Buffer,
    shutdown: watch::Receiver<bool>,
) -> Forwarded<M>
where
    S: Stream<Item = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: ServiceError + Send + 'static,
    M: Message + Send + 'static,
{
    let (sender, receiver) = mpsc::channel::<Buffered<M>>(buffer.messages);
    tokio::spawn(pump(items, convert, buffer, sender, shutdown));
    // The permit is dropped as the message leaves the buffer.
    Box::pin(ReceiverStream::new(receiver).map(|(message, _permit)| message))
}

/// Moves `items` into `sender` until the client goes away, an error has been sent, `items`
/// ends, or `shutdown` turns true.
async fn pump<S, T, E, M>(
    items: S,
    convert: fn(T) -> M,
    buffer: Buffer,
    sender: mpsc::Sender<Buffered<M>>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Stream<Item = Result<T, E>> + Send + 'static,
    E: ServiceError,
    M: Message,
{
    let buffer_bytes = buffer
        .bytes
        .map(|bytes| (Arc::new(Semaphore::new(bytes)), bytes));
    let mut items = std::pin::pin!(items);
    loop {
        let next = tokio::select! {
            next = items.next() => next,
            () = sender.closed() => return,
            () = stopping(&mut shutdown) => return shut_down(&sender),
        };
        let message = match next {
            None => return,
            Some(Ok(item)) => Ok(convert(item)),
            Some(Err(error)) => Err(into_status(error)),
        };
        let is_last = message.is_err();
        let permit = match &buffer_bytes {
            None => None,
            Some((semaphore, bytes)) => {
                let size = message.as_ref().map_or(0, Message::encoded_len);
                // At most the whole buffer: a larger message waits for an empty buffer.
                let permits = u32::try_from(size.clamp(1, *bytes)).unwrap_or(u32::MAX);
                // A client that does not read must not hold up shutdown.
                tokio::select! {
                    permit = Arc::clone(semaphore).acquire_many_owned(permits) => permit.ok(),
                    () = stopping(&mut shutdown) => return shut_down(&sender),
                }
            }
        };
        tokio::select! {
            sent = sender.send((message, permit)) => if sent.is_err() { return },
            () = stopping(&mut shutdown) => return shut_down(&sender),
        }
        if is_last {
            return;
        }
    }
}

/// Completes when `shutdown` turns true, or its sender is gone (the server is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before the caller's next await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Ends a stream because the server is shutting down, if the client has room for it.
fn shut_down<M>(sender: &mpsc::Sender<Buffered<M>>) {
    let _ = sender.try_send((Err(shutting_down()), None));
}

/// The last message of every stream the server's shutdown ends.
fn shutting_down() -> Status {
    to_status_with_retry(
        ErrorCode::Unavailable,
        "server shutting down",
        UNAVAILABLE_RETRY_AFTER,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_proto::v1::WatchRevocationsResponse;

    use super::*;

    #[derive(Debug)]
    struct Outage;

    impl std::fmt::Display for Outage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("database unavailable")
        }
    }

    impl std::error::Error for Outage {}

    impl ServiceError for Outage {
        fn code(&self) -> ErrorCode {
            ErrorCode::Unavailable
        }
    }

    fn message(heartbeat_seconds: i64) -> WatchRevocationsResponse {
        WatchRevocationsResponse {
            heartbeat_seconds,
            ..WatchRevocationsResponse::default()
        }
    }

    const BUFFER: Buffer = Buffer {
        messages: 4,
        bytes: None,
    };

    #[tokio::test]
    async fn items_then_an_error_end_the_stream() {
        let items = tokio_stream::iter([Ok(1), Ok(2), Err(Outage), Ok(3)]);
        let (_stop, shutdown) = watch::channel(false);
        let received: Vec<_> = forward(items, message, BUFFER, shutdown).collect().await;
        assert_eq!(received.len(), 3, "nothing follows the error");
        assert_eq!(received[0].as_ref().ok(), Some(&message(1)));
        assert_eq!(received[1].as_ref().ok(), Some(&message(2)));
        let error = received[2].as_ref().err().map(|status| {
            (
                status.code(),
                status.message().to_owned(),
                tonic_types::StatusExt::get_details_retry_info(status)
                    .and_then(|info| info.retry_delay),
            )
        });
        assert_eq!(
            error,
            Some((
                tonic::Code::Unavailable,
                "database unavailable".to_owned(),
                Some(UNAVAILABLE_RETRY_AFTER)
            ))
        );
    }

    #[tokio::test]
    async fn shutdown_ends_an_endless_stream_with_unavailable() {
        let items = tokio_stream::iter([Ok::<_, Outage>(1)]).chain(tokio_stream::pending());
        let (stop, shutdown) = watch::channel(false);
        let mut forwarded = forward(items, message, BUFFER, shutdown);
        let first = forwarded.next().await.and_then(Result::ok);
        assert_eq!(first, Some(message(1)));
        let _ = stop.send(true);
        let last = tokio::time::timeout(Duration::from_secs(10), forwarded.next())
            .await
            .ok()
            .flatten()
            .and_then(Result::err)
            .map(|status| (status.code(), status.message().to_owned()));
        assert_eq!(
            last,
            Some((tonic::Code::Unavailable, "server shutting down".to_owned()))
        );
        assert!(forwarded.next().await.is_none(), "the stream ends there");
    }
}
