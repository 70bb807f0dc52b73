//! The seed scenario of Tollgate, as runnable code: the archive team's storage API and the
//! two services that call it, each using only the SDK crates a service team would use.
//!
//! - [`storage`]: the storage API, an axum service behind `tollgate-verify`'s
//!   [`BearerAuthLayer`](tollgate_verify::BearerAuthLayer): writes need `archive:write`,
//!   reads `archive:read`; refusals are 401/403 with RFC 6750 challenges. It is
//!   revocation-aware through a [`RevocationWatch`](tollgate_verify::RevocationWatch).
//! - [`calls`]: the callers, an archiver daemon (the write app, tokens over HTTP from the
//!   discovered token endpoint) and a reader job (the read app, tokens over gRPC), each with
//!   a [`TokenClient`](tollgate_client::TokenClient).
//! - [`scenario`]: [`run_scenario`] sets the tenant up through the management API, starts the
//!   storage API, runs both callers and checks every answer, narrating as it goes. `cargo
//!   xtask demo` runs it against a `tollgate serve` process; the server's tests run it
//!   in-process.
//!
//! Invariant: nothing here depends on the server's crates; the demo talks to Tollgate only
//! over its public gRPC and HTTP APIs, as any service would.

pub mod calls;
pub mod scenario;
pub mod storage;

pub use scenario::{AdminCredentials, ScenarioConfig, ScenarioReport, run_scenario};

/// Why the scenario did not behave.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step could not be carried out (a call failed, a server was unreachable).
    #[error("{step}: {reason}")]
    Failed {
        /// What was being done.
        step: String,
        /// What went wrong.
        reason: String,
    },
    /// A step was carried out, but the answer was not the one the scenario expects.
    #[error("{step}: expected {expected}, got {actual}")]
    Unexpected {
        /// What was being done.
        step: String,
        /// The answer the scenario expects.
        expected: String,
        /// The answer it got.
        actual: String,
    },
}

impl DemoError {
    /// A failed step, from any error.
    pub fn failed(step: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Failed {
            step: step.into(),
            reason: reason.to_string(),
        }
    }
}
