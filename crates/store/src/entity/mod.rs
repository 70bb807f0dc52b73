//! sea-orm entities, one per table of `tollgate-migrations`. Private to the store: rows leave
//! the crate only as the parsed records of [`crate::records`].
//!
//! Column types mirror the migrations: text ids, `i64` Unix seconds, booleans, JSON as text
//! and the sealed private key as binary.

pub(crate) mod apis;
pub(crate) mod app_secrets;
pub(crate) mod apps;
pub(crate) mod audit_events;
pub(crate) mod audit_heads;
pub(crate) mod change_log;
pub(crate) mod grants;
pub(crate) mod revocations;
pub(crate) mod signing_keys;
pub(crate) mod tenants;
