//! The client-credentials grant (RFC 6749 §4.4): authenticate an app by its secret, check
//! its grant on the requested API, and sign a JWT access token (RFC 9068).
//!
//! The hot path reads only the in-memory [`Catalog`], never the database: one lock-free-ish
//! map lookup, one HMAC, one signature. Management tells the catalog when a tenant changes.
//!
//! Invariant: to a caller, an unknown tenant, an unknown client, a wrong secret and a blocked
//! app are the same [`IssueError::InvalidClient`], and each costs one HMAC.

mod catalog;
mod issue;

pub use catalog::{ApiView, AppView, Catalog, CatalogError, SecretView, TenantView, key_aad};
pub use issue::{IssueError, Issuer};
