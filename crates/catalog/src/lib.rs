//! What issuance and management both read: the tenant read model and revocations.
//!
//! - [`Catalog`]: the in-memory views of each tenant's configuration ([`TenantView`]: APIs,
//!   apps with their grants and secret hashes, parsed signing keys), loaded from the store on
//!   first use and dropped when a change is reported.
//! - [`Revocations`]: revocations recorded in the database first, then copied to the shared
//!   state that every check reads.
//! - [`verify_own_token`]: the one check of a token this server issued (signature, lifetime
//!   with no leeway, tenant, revocation, and for an admin token the app behind it), behind
//!   both introspection and admin-token authentication.
//!
//! The binary constructs one catalog and one set of revocations and hands them to the issuer
//! and to management; neither service reaches the other.
//!
//! Invariant: revocation checks fail closed.

mod catalog;
mod own_token;
mod revocation;

pub use catalog::{
    ApiView, AppView, Catalog, CatalogError, RingKey, SecretView, TenantView, USAGE_RECORD_INTERVAL,
};
pub use own_token::{ActiveToken, InactiveToken, verify_own_token};
pub use revocation::{RevocationError, Revocations};
