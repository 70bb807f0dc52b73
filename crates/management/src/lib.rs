//! Management of tenants, APIs and M2M apps, and the audit trail's read side.
//!
//! Every operation takes the caller's [`Principal`], obtained by [`Management::authenticate`]
//! from a Tollgate access token for the caller tenant's built-in Management API, verified
//! against the tenant's live catalog view: its own key ring (no leeway), revocation, and the
//! app behind the token (exists, not blocked, secret still live; scopes it still holds).
//!
//! Invariants:
//! - a principal of tenant T acts only on T, unless T is `system`;
//! - delegation never escalates: granting a Management API scope takes holding it, and
//!   changing an app (grants, block, delete, secrets) takes holding every management scope
//!   that app holds;
//! - every write commits in one store transaction, then tells the [`ChangeListener`], so the
//!   next token request sees it;
//! - a client secret leaves this crate once, in the response that created it; only its keyed
//!   hash is stored.

mod apis;
mod apps;
mod audit;
mod auth;
mod error;
mod keys;
mod revoke;
mod secrets;
mod service_error;
mod tenants;
mod trail;
mod views;

use std::sync::Arc;

use tollgate_catalog::{Catalog, Revocations};
use tollgate_domain::{ChangeListener, Clock, IssuerTemplate};
use tollgate_keys::{MasterKey, SecretHasher};
use tollgate_store::Store;

pub use audit::{
    AUDIT_READ_SCOPE, AuditListRequest, AuditOrder, AuditPage, AuditQuery, AuditTarget,
    MAX_EVENT_BYTES, MAX_PAGE_BYTES, TAIL_POLL_INTERVAL, TAIL_RECHECK_INTERVAL,
};
pub use auth::{MANAGEMENT_SCOPES, Principal, SYSTEM_ONLY_SCOPES};
pub use error::{AdminTokenRefusal, Denial, Entity, ManageError, Precondition};
pub use secrets::DEFAULT_SECRET_OVERLAP;
pub use trail::{BOOTSTRAP_ACTOR, SCHEDULER_ACTOR};
pub use views::ExportedChain;
// What management is asked and what it answers are the domain's, so that transports
// convert them without knowing this crate's store.
pub use tollgate_domain::{
    AdminCredentials, ApiInfo, ApiUpdate, AppInfo, AppUpdate, AuditEntry, ChainBreakAt, ChainCheck,
    GrantInfo, KeyInfo, KeyState, NewApi, NewApp, NewTenantInput, Page, PageRequest, RecordedEvent,
    RotatedSecret, SecretInfo, TenantInfo, TenantUpdate,
};

/// Turns `limit + 1` fetched rows into a page: the extra row only tells that more exist.
fn paginate<T>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> String) -> Page<T> {
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_page_token = if has_more { rows.last().map(key) } else { None };
    Page {
        items: rows,
        next_page_token,
    }
}

/// The management services.
pub struct Management {
    store: Store,
    catalog: Arc<Catalog>,
    listener: Arc<dyn ChangeListener>,
    issuer_template: IssuerTemplate,
    master_key: Arc<MasterKey>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    revocations: Arc<Revocations>,
    keys: KeyPolicy,
}

/// What management is made of. The binary constructs each part (the store, catalog and
/// revocations it also hands to the issuer) and gives management exactly these.
pub struct ManagementParts {
    /// Where every change is written.
    pub store: Store,
    /// The tenant read model, whose views check admin tokens.
    pub catalog: Arc<Catalog>,
    /// Where revocations are recorded, and admin tokens checked against them.
    pub revocations: Arc<Revocations>,
    /// Told of every committed change.
    pub listener: Arc<dyn ChangeListener>,
    /// Issuer URLs and Management API audiences of tenants.
    pub issuer_template: IssuerTemplate,
    /// Seals new signing keys; derives the client-secret hasher.
    pub master_key: Arc<MasterKey>,
    /// Tells time.
    pub clock: Arc<dyn Clock>,
    /// How signing keys are rotated.
    pub keys: KeyPolicy,
}

/// How signing keys are rotated.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// Seconds between publishing a new key and signing with it, by default: at least the
    /// JWKS max-age, so verifiers have refetched the JWKS before they meet a token it signed.
    pub propagation_delay: i64,
}

impl Management {
    /// The management services of `parts`.
    pub fn new(parts: ManagementParts) -> Self {
        let ManagementParts {
            store,
            catalog,
            revocations,
            listener,
            issuer_template,
            master_key,
            clock,
            keys,
        } = parts;
        let hasher = master_key.secret_hasher();
        Self {
            store,
            catalog,
            listener,
            issuer_template,
            master_key,
            hasher,
            clock,
            revocations,
            keys,
        }
    }
}
