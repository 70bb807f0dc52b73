//! axum integration (feature `axum`): [`Claims`] as an extractor in handlers behind a
//! [`BearerAuthLayer`](crate::BearerAuthLayer).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tollgate_verify::{BearerAuthLayer, Claims, ScopeRules, Verifier};
//!
//! async fn read(claims: Claims) -> String {
//!     format!("hello {:?}", claims.client_id)
//! }
//!
//! # fn app(verifier: Verifier) -> Router {
//! Router::new()
//!     .route("/archive/{id}", get(read))
//!     .layer(
//!         BearerAuthLayer::new(verifier)
//!             .scopes(ScopeRules::new().require_for("GET", "/archive/*", ["archive:read"])),
//!     )
//! # }
//! ```

use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;

use crate::{AuthError, Claims, rejection};

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    /// 401 with `WWW-Authenticate: Bearer`: the route is not behind the layer, so no token
    /// was verified.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .ok_or_else(|| rejection(&AuthError::MissingToken, false))
    }
}
