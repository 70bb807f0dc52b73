//! tonic integration (feature `tonic`).
//!
//! The recommended protection of a tonic server is the tower layer,
//! `Server::builder().layer(BearerAuthLayer::new(verifier))`: it can wait for keys to be
//! fetched. Handlers read the claims with [`ClaimsExt::claims`].
//!
//! [`BearerInterceptor`] exists for code that must use a (synchronous) tonic `Interceptor`:
//! it verifies with the keys already cached ([`Verifier::verify_cached`]), so until the first
//! fetch completes, and for the first token of a newly rotated key, it answers UNAUTHENTICATED
//! or UNAVAILABLE while the fetch runs in the background; it makes no revocation check.

use tonic::{Code, Status};

use crate::{AuthError, Claims, Verifier};

/// Reads the claims the layer or interceptor put into a tonic request.
pub trait ClaimsExt {
    /// The verified claims, if the request went through a [`BearerAuthLayer`](crate::BearerAuthLayer)
    /// or [`BearerInterceptor`].
    fn claims(&self) -> Option<&Claims>;

    /// The verified claims, or UNAUTHENTICATED.
    fn require_claims(&self) -> Result<&Claims, Status> {
        self.claims()
            .ok_or_else(|| status(&AuthError::MissingToken))
    }
}

impl<T> ClaimsExt for tonic::Request<T> {
    fn claims(&self) -> Option<&Claims> {
        self.extensions().get::<Claims>()
    }
}

/// The gRPC status for `error`, with its `www-authenticate` challenge in the metadata.
pub fn status(error: &AuthError) -> Status {
    let mut status = Status::new(Code::from(error.grpc_code()), error.public_message());
    if let Some(challenge) = error
        .www_authenticate()
        .and_then(|value| value.parse().ok())
    {
        status.metadata_mut().insert("www-authenticate", challenge);
    }
    status
}

/// A synchronous tonic interceptor; see the module documentation for its limits.
#[derive(Clone, Debug)]
pub struct BearerInterceptor {
    verifier: Verifier,
    required: Vec<String>,
}

impl BearerInterceptor {
    /// Requires a valid token with all of `scopes`.
    pub fn new<I, S>(verifier: Verifier, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            verifier,
            required: scopes.into_iter().map(Into::into).collect(),
        }
    }

    fn authorize<T>(&self, request: &tonic::Request<T>) -> Result<Claims, AuthError> {
        let mut values = request.metadata().get_all("authorization").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if request.metadata().get("authorization").is_some() {
                AuthError::MalformedHeader
            } else {
                AuthError::MissingToken
            });
        };
        let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
        let token = tollgate_domain::bearer_token(value).ok_or(AuthError::MalformedHeader)?;
        let claims = self.verifier.verify_cached(token)?;
        if !claims.has_scopes(&self.required) {
            return Err(AuthError::InsufficientScope {
                required: self.required.clone(),
            });
        }
        Ok(claims)
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let claims = self.authorize(&request).map_err(|error| status(&error))?;
        request.extensions_mut().insert(claims);
        Ok(request)
    }
}
