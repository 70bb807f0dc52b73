//! Tollgate's vocabulary, shared by every other crate: validated names ([`TenantName`],
//! [`ClientId`], [`ApiIdentifier`], [`Scope`]), signing [`Algorithm`]s, access-token
//! [`AccessTokenClaims`], the closed set of [`ErrorCode`]s, the [`Clock`], the
//! [`IssuerTemplate`] and the opaque ids of stored things ([`TenantId`], [`ApiId`], [`AppId`],
//! [`SecretId`], [`KeyId`]), and what management is asked and answers: its inputs
//! ([`NewApi`], [`PageRequest`], …) and views ([`TenantInfo`], [`KeyInfo`],
//! [`RecordedEvent`], …).
//!
//! Invariant: this crate does no I/O and knows nothing of gRPC, HTTP, SQL or cryptography.
//! Values are parsed here once, at the edge; everything inside takes the parsed types.

mod audit;
mod bearer;
mod claims;
mod clock;
mod error;
mod ids;
mod inputs;
mod issuer;
mod names;
mod request;
mod revocation;
mod secret;
mod views;

pub use audit::{AuditEntry, ChainBreakAt, ChainCheck, RecordedEvent};
pub use bearer::bearer_token;
pub use claims::{AccessTokenClaims, GRANT_TYPE_CLIENT_CREDENTIALS};
pub use clock::{Clock, ManualClock, SystemClock, TestClock, UnixTime};
pub use error::{ErrorCode, RateLimitState, ServiceError, UNAVAILABLE_RETRY_AFTER};
pub use ids::{ApiId, AppId, KeyId, SecretId, TenantId};
pub use inputs::{ApiUpdate, AppUpdate, NewApi, NewApp, NewTenantInput, PageRequest, TenantUpdate};
pub use issuer::{IssuerTemplate, MANAGEMENT_API_SUFFIX};
pub use names::{
    Algorithm, ApiIdentifier, ClientId, InvalidValue, MAX_TOKEN_LIFETIME, Scope, ScopeSet,
    TenantName, TokenLifetime,
};
pub use request::{
    IssuedToken, RequestOrigin, ScopeDefinition, TokenCallRequest, TokenRequest, TraceId, Transport,
};
pub use revocation::{Revocation, RevocationTarget, TokenFacts};
pub use secret::ClientSecret;
pub use views::{
    AdminCredentials, ApiInfo, AppInfo, GrantInfo, KeyInfo, KeyState, Page, RotatedSecret,
    SecretInfo, TenantInfo,
};

/// Told when a tenant's configuration changes (APIs, apps, grants, keys), so caches of it
/// can be dropped. Implemented by the catalog (`tollgate-catalog`); called by management after
/// commit.
pub trait ChangeListener: Send + Sync {
    /// Something of `tenant` changed, or the tenant was created or deleted.
    fn tenant_changed(&self, tenant: &TenantName);
}

/// The name of the built-in tenant whose admins manage every tenant.
pub const SYSTEM_TENANT: &str = "system";
