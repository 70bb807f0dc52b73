//! The gateway's only dependency on the rest of Tollgate: something that issues tokens and
//! returns a tenant's public keys.

use std::future::Future;

use tollgate_domain::{ErrorCode, IssuedToken, TenantName, TokenRequest};

/// How the gateway reaches issuance and public keys: in the all-in-one server an in-process
/// implementation (written elsewhere), at the edge the gRPC one ([`crate::GrpcBackend`]).
pub trait TokenBackend: Send + Sync + 'static {
    /// Authenticates the client and issues a token. Unknown tenants, unknown clients and
    /// wrong secrets must all fail with [`ErrorCode::InvalidClient`].
    fn issue_token(
        &self,
        request: TokenRequest,
    ) -> impl Future<Output = Result<IssuedToken, BackendError>> + Send;

    /// The tenant's issuer URL and JWK Set; [`ErrorCode::NotFound`] for an unknown tenant.
    fn jwks(
        &self,
        tenant: &TenantName,
    ) -> impl Future<Output = Result<TenantKeys, BackendError>> + Send;
}

/// A tenant's public verification material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeys {
    /// The tenant's issuer URL, exactly the `iss` of its tokens; ends with `/`.
    pub issuer: String,
    /// The RFC 7517 JWK Set as JSON text, served verbatim.
    pub jwks_json: String,
}

/// Why the backend refused or failed. The message is shown to the client only for OAuth
/// errors and `NotFound`; for anything else it is logged and replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// What went wrong, as the client may learn it.
    pub code: ErrorCode,
    /// Details: public for OAuth errors, internal otherwise.
    pub message: String,
}

impl BackendError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
