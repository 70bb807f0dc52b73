//! The client-credentials grant (RFC 6749 §4.4): authenticate an app by its secret, check
//! its grant on the requested API, and sign a JWT access token (RFC 9068); plus revocation
//! (RFC 7009) and introspection (RFC 7662) of the tokens it issued.
//!
//! The hot path reads only the in-memory catalog (`tollgate_catalog::Catalog`), never the
//! database: one map lookup, one HMAC, the app's and tenant's rate checks, one signature.
//! Management tells the catalog when a tenant changes; the binary hands the issuer its parts
//! ([`IssuerParts`]).
//!
//! Invariants: to a caller, an unknown tenant, an unknown client, a wrong secret and a
//! blocked app are the same [`IssueError::InvalidClient`], and each costs one HMAC.
//! Revocation checks fail closed.

mod issue;
mod service_error;
mod watch;

pub use issue::{IssueError, Issuer, IssuerParts, RateLimits};
pub use watch::{WATCH_HEARTBEAT, WATCH_RESYNC_WHILE_DEAF, WatchEvent};
