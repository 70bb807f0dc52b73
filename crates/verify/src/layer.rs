//! [`BearerAuthLayer`]: a tower layer for axum routers and tonic servers alike (feature
//! `tower`). It reads `Authorization: Bearer`, verifies the token with a [`Verifier`], checks
//! the [`ScopeRules`] for the request's method and path, puts the [`Claims`] into the request
//! extensions and calls the inner service; otherwise it answers itself, through
//! [`AuthError`]:
//! - HTTP: 401/403/400/503 with RFC 6750's `WWW-Authenticate`, empty body;
//! - gRPC (a request whose `content-type` starts with `application/grpc`): a trailers-only
//!   response with `grpc-status` UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT or
//!   UNAVAILABLE, and the same `WWW-Authenticate` header.
//!
//! Being a tower layer, it may wait for the key set to be fetched, which a tonic
//! `Interceptor` (synchronous) cannot: that is why it is the way to protect a tonic server
//! (`Server::builder().layer(BearerAuthLayer::new(verifier))`). A gRPC method's path is
//! `/<package>.<Service>/<Method>`, so scope rules work per method.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::{AuthError, Claims, ScopeRules, Verifier};

/// Authenticates every request with a [`Verifier`] and authorizes it with [`ScopeRules`].
#[derive(Clone, Debug)]
pub struct BearerAuthLayer {
    verifier: Verifier,
    rules: Arc<ScopeRules>,
}

impl BearerAuthLayer {
    /// Any valid token passes; add rules with [`BearerAuthLayer::scopes`].
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            rules: Arc::new(ScopeRules::new()),
        }
    }

    /// Requires scopes per route and method.
    #[must_use]
    pub fn scopes(mut self, rules: ScopeRules) -> Self {
        self.rules = Arc::new(rules);
        self
    }

    /// Requires all of `scopes` for every request.
    #[must_use]
    pub fn require<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes(ScopeRules::new().require_by_default(scopes))
    }
}

impl<S> tower::Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            verifier: self.verifier.clone(),
            rules: self.rules.clone(),
        }
    }
}

/// The service [`BearerAuthLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    verifier: Verifier,
    rules: Arc<ScopeRules>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for BearerAuth<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is ready only if polled; keep the one that was (tower's convention).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let rules = self.rules.clone();
        Box::pin(async move {
            let is_grpc = is_grpc(&request);
            // Only owned values cross the await: the request body need not be `Sync`.
            let token = bearer_token(&request).map(str::to_owned);
            let required = rules.required(request.method().as_str(), request.uri().path());
            match authorize(&verifier, required, token).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(error) => {
                    if matches!(
                        error,
                        AuthError::KeysUnavailable(_) | AuthError::RevocationUnavailable(_)
                    ) {
                        tracing::warn!(error = %error, "request refused: cannot verify tokens");
                    }
                    Ok(rejection(&error, is_grpc))
                }
            }
        })
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The bearer token of `request`: exactly one `Authorization` header, read by
/// [`tollgate_domain::bearer_token`] (scheme `Bearer` in any case, RFC 6750 §2.1, and a
/// non-empty token).
pub fn bearer_token<B>(request: &Request<B>) -> Result<&str, AuthError> {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if request.headers().contains_key(header::AUTHORIZATION) {
            AuthError::MalformedHeader
        } else {
            AuthError::MissingToken
        });
    };
    let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
    tollgate_domain::bearer_token(value).ok_or(AuthError::MalformedHeader)
}

async fn authorize(
    verifier: &Verifier,
    required: &[String],
    token: Result<String, AuthError>,
) -> Result<Claims, AuthError> {
    let claims = verifier.verify(&token?).await?;
    if !claims.has_scopes(required) {
        return Err(AuthError::InsufficientScope {
            required: required.to_vec(),
        });
    }
    Ok(claims)
}

/// The response that refuses a request for `error`.
pub fn rejection<B: Default>(error: &AuthError, is_grpc: bool) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    if let Some(challenge) = error
        .www_authenticate()
        .and_then(|value| HeaderValue::try_from(value).ok())
    {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if is_grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(error.grpc_code()));
        if let Ok(message) = HeaderValue::try_from(grpc_message(&error.public_message())) {
            headers.insert("grpc-message", message);
        }
    } else {
        *response.status_mut() =
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    }
    response
}

/// Percent-encodes a `grpc-message` (the gRPC HTTP/2 protocol: bytes outside printable
/// ASCII, and `%`).
fn grpc_message(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::{bearer_token, grpc_message};
    use crate::AuthError;

    #[test]
    fn the_bearer_token_is_read_strictly() {
        #[rustfmt::skip]
        let cases: [(&[&str], Result<&str, AuthError>); 9] = [
            (&["Bearer abc.def.ghi"],  Ok("abc.def.ghi")),
            (&["bearer abc"],          Ok("abc")),
            (&["BEARER  abc"],         Ok("abc")),
            (&[],                      Err(AuthError::MissingToken)),
            (&["Basic dXNlcjpwdw=="],  Err(AuthError::MalformedHeader)),
            (&["Bearer"],              Err(AuthError::MalformedHeader)),
            (&["Bearer "],             Err(AuthError::MalformedHeader)),
            (&["Bearer a b"],          Err(AuthError::MalformedHeader)),
            (&["Bearer a", "Bearer b"], Err(AuthError::MalformedHeader)),
        ];
        for (headers, expected) in cases {
            let mut request = Request::builder();
            for value in headers {
                request = request.header("authorization", *value);
            }
            let request = request.body(()).unwrap_or_default();
            assert_eq!(bearer_token(&request), expected, "{headers:?}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("token has expired"), "token has expired");
        assert_eq!(grpc_message("100% é"), "100%25 %C3%A9");
    }
}
