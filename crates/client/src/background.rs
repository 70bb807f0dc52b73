//! [`BackgroundToken`]: a token kept fresh by a background task, readable synchronously;
//! and, with feature `grpc`, [`BearerInterceptor`], a tonic interceptor that reads it.
//!
//! A tonic `Interceptor` is synchronous and cannot wait for a fetch. So the task fetches
//! ahead (at the token's refresh time, through the same cached, single-flight
//! [`TokenClient`]) and the interceptor only reads the latest token. Until the first token
//! arrives, or once the last one has expired while the server is unreachable, calls fail
//! with UNAVAILABLE rather than go out unauthenticated. Where an async layer fits, prefer
//! [`BearerLayer`](crate::BearerLayer).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Token, TokenClient, TokenError, TokenRequest};

/// The latest outcome of the background task.
#[derive(Debug, Clone, Default)]
struct Latest {
    token: Option<Token>,
    error: Option<TokenError>,
}

/// Aborts the task when the last handle goes.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A token kept fresh in the background. Clones share the task, which stops when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct BackgroundToken {
    latest: watch::Receiver<Latest>,
    client: TokenClient,
    _task: Arc<Task>,
}

impl BackgroundToken {
    /// Starts keeping a token for `request` fresh. Must be called inside a tokio runtime.
    pub fn spawn(client: TokenClient, request: TokenRequest) -> Self {
        let (sender, latest) = watch::channel(Latest::default());
        let task = tokio::spawn(refresh_forever(client.clone(), request, sender));
        Self {
            latest,
            client,
            _task: Arc::new(Task(task)),
        }
    }

    /// The current token, if there is one that has not expired.
    pub fn current(&self) -> Option<Token> {
        let now = self.client.clock().now();
        self.latest
            .borrow()
            .token
            .as_ref()
            .filter(|token| now < token.expires_at)
            .cloned()
    }

    /// The last failure of the background task, if its last attempt failed.
    pub fn last_error(&self) -> Option<TokenError> {
        self.latest.borrow().error.clone()
    }

    /// Waits for the first token (or the first failure).
    pub async fn ready(&self) -> Result<Token, TokenError> {
        let mut latest = self.latest.clone();
        let outcome = latest
            .wait_for(|latest| latest.token.is_some() || latest.error.is_some())
            .await
            .map_err(|_| TokenError::Invalid("the background task stopped".to_owned()))?;
        match (&outcome.token, &outcome.error) {
            (Some(token), _) => Ok(token.clone()),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Err(TokenError::Invalid("no token".to_owned())),
        }
    }

    /// A tonic interceptor that adds this token to every call.
    #[cfg(feature = "grpc")]
    pub fn interceptor(&self) -> BearerInterceptor {
        BearerInterceptor {
            token: self.clone(),
        }
    }
}

/// The task: fetch, publish, sleep until the refresh time; on failure, keep the old token
/// and retry with the client's backoff.
async fn refresh_forever(
    client: TokenClient,
    request: TokenRequest,
    sender: watch::Sender<Latest>,
) {
    let mut failures = 0_u32;
    loop {
        let wait = match client.get_token(&request).await {
            Ok(token) => {
                failures = 0;
                let wait = token.refresh_at.saturating_sub(client.clock().now()).max(1);
                sender.send_modify(|latest| {
                    latest.token = Some(token);
                    latest.error = None;
                });
                Duration::from_secs(u64::try_from(wait).unwrap_or(1))
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                sender.send_modify(|latest| latest.error = Some(error));
                let policy = client.retry_policy();
                policy
                    .delay(failures, None)
                    .unwrap_or(policy.max_delay)
                    .max(Duration::from_millis(100))
            }
        };
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// A tonic interceptor adding the [`BackgroundToken`]'s current token to every call.
#[cfg(feature = "grpc")]
#[derive(Debug, Clone)]
pub struct BearerInterceptor {
    token: BackgroundToken,
}

#[cfg(feature = "grpc")]
impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(token) = self.token.current() else {
            let why = self.token.last_error().map_or_else(
                || "no access token yet".to_owned(),
                |error| error.to_string(),
            );
            return Err(tonic::Status::unavailable(why));
        };
        let mut value: tonic::metadata::AsciiMetadataValue =
            format!("Bearer {}", token.access_token.expose())
                .parse()
                .map_err(|_| tonic::Status::internal("the access token is not a header value"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
