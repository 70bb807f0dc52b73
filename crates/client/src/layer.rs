//! [`BearerLayer`]: a tower layer that adds `authorization: Bearer <token>` to every outgoing
//! request, fetching the token (from the cache, usually) inside `call`.
//!
//! It wraps any `tower::Service<http::Request<B>>`: a tonic `Channel` (so gRPC clients get
//! tokens without a synchronous interceptor), a hyper client, an axum router in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, header};

use crate::{TokenClient, TokenRequest};

/// The error of a [`Bearer`] service: the token's or the inner service's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds a bearer token for one [`TokenRequest`] to every request.
///
/// ```no_run
/// use tollgate_client::{BearerLayer, HttpTokenSource, TokenClient, TokenRequest};
/// use tollgate_proto::v1::token_service_client::TokenServiceClient;
///
/// let tokens = TokenClient::new(HttpTokenSource::discover("https://acme.hub.example.com/", "app", "tgsec_…"));
/// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect_lazy();
/// let layered = tower::ServiceBuilder::new()
///     .layer(BearerLayer::new(tokens, TokenRequest::new("https://archive.example.com/")))
///     .service(channel);
/// let grpc = TokenServiceClient::new(layered);
/// # let _ = grpc;
/// ```
#[derive(Clone, Debug)]
pub struct BearerLayer {
    client: TokenClient,
    request: Arc<TokenRequest>,
}

impl BearerLayer {
    /// Uses tokens of `client` for `request`.
    pub fn new(client: TokenClient, request: TokenRequest) -> Self {
        Self {
            client,
            request: Arc::new(request),
        }
    }
}

impl<S> tower::Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            client: self.client.clone(),
            request: self.request.clone(),
        }
    }
}

/// The service [`BearerLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct Bearer<S> {
    inner: S,
    client: TokenClient,
    request: Arc<TokenRequest>,
}

impl<S, B> tower::Service<Request<B>> for Bearer<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is ready only if polled; keep the one that was (tower's convention).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let client = self.client.clone();
        let token_request = self.request.clone();
        Box::pin(async move {
            let token = client.get_token(&token_request).await?;
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, token.authorization()?);
            inner.call(request).await.map_err(Into::into)
        })
    }
}
