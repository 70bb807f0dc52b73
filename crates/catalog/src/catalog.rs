//! The in-memory read model of each tenant's configuration that issuance and management's
//! admin-token checks need: APIs, apps with their grants and secret hashes, and parsed signing
//! keys. Loaded from the store on first use, dropped when a change is reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tollgate_domain::{
    Algorithm, ApiId, ApiIdentifier, AppId, ChangeListener, ClientId, IssuerTemplate, KeyId,
    ScopeSet, SecretId, TenantId, TenantName, TokenLifetime, UnixTime,
};
use tollgate_keys::{MasterKey, SigningKey, jwks_json};
use tollgate_store::{Store, StoreError, TenantSnapshot};
use tollgate_verify::KeySet;

/// Beyond this many cached "no such tenant" answers, they are all forgotten, so that probing
/// random tenant names cannot grow memory without bound.
const MAX_ABSENT_ENTRIES: usize = 10_000;

/// An API as the catalog holds it.
#[derive(Debug)]
pub struct ApiView {
    /// Database id, the key of grants.
    pub id: ApiId,
    /// The audience.
    pub identifier: ApiIdentifier,
    /// Scopes the API defines.
    pub scopes: ScopeSet,
    /// Lifetime of its tokens.
    pub token_lifetime: TokenLifetime,
    /// Per-API algorithm override.
    pub signing_alg: Option<Algorithm>,
}

/// One client secret: its id (the `sid` of tokens it mints) and keyed hash.
pub struct SecretView {
    /// The credential id.
    pub id: SecretId,
    /// The keyed hash, as stored.
    pub hash: String,
    /// When the secret stops working, if ever.
    pub expires_at: Option<UnixTime>,
    /// When this instance last queued a last-used record for it; records are thinned to one
    /// per secret per [`USAGE_RECORD_INTERVAL`] so the hot path rarely takes a lock.
    pub last_recorded: AtomicI64,
}

/// Seconds between two last-used records of one secret.
pub const USAGE_RECORD_INTERVAL: i64 = 30;

/// An app as the catalog holds it.
pub struct AppView {
    /// The client id.
    pub client_id: ClientId,
    /// A blocked app cannot authenticate.
    pub is_blocked: bool,
    /// Its secrets (at most a few).
    pub secrets: Vec<SecretView>,
    /// Granted scopes by API id.
    pub grants: HashMap<ApiId, ScopeSet>,
    /// Token-request rate limit; `None` = server default.
    pub rate_limit_per_second: Option<i64>,
}

/// Everything issuance and admin-token checks need about one tenant, immutable once built.
pub struct TenantView {
    /// The tenant's id (`cid`, and the id of its audit chain).
    pub id: TenantId,
    /// The tenant's name.
    pub name: TenantName,
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The identifier of the tenant's built-in Management API (the audience of admin tokens).
    pub management_audience: String,
    /// Default signing algorithm.
    pub signing_alg: Algorithm,
    /// APIs by identifier.
    pub apis: HashMap<ApiIdentifier, ApiView>,
    /// Apps by client id.
    pub apps: HashMap<ClientId, AppView>,
    /// The key ring, newest activation first.
    pub keys: Vec<RingKey>,
    /// Verification keys of the whole ring, for introspection and admin tokens.
    pub key_set: KeySet,
    /// Tenant-wide token-request rate limit; `None` = server default.
    pub rate_limit_per_second: Option<i64>,
}

/// One key of a tenant's ring, with its schedule.
pub struct RingKey {
    /// The parsed key.
    pub key: Arc<SigningKey>,
    /// Its public JWK.
    pub public_jwk: Value,
    /// When it starts signing.
    pub activate_at: UnixTime,
    /// When it stops signing, if scheduled.
    pub retire_at: Option<UnixTime>,
    /// When it leaves the JWKS, if scheduled.
    pub remove_at: Option<UnixTime>,
}

impl TenantView {
    /// The key that signs `alg` tokens at `now`: the newest of that algorithm that is active
    /// (activated, not retired).
    pub fn signing_key(&self, alg: Algorithm, now: UnixTime) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .find(|ring_key| {
                ring_key.key.alg() == alg
                    && ring_key.activate_at <= now
                    && ring_key.retire_at.is_none_or(|retire_at| now < retire_at)
            })
            .map(|ring_key| &ring_key.key)
    }

    /// The JWK Set published at `now`: every key not yet removed, pending ones included, so
    /// verifiers know a key before it signs.
    pub fn jwks_json(&self, now: UnixTime) -> String {
        jwks_json(
            self.keys
                .iter()
                .filter(|ring_key| ring_key.remove_at.is_none_or(|remove_at| now < remove_at))
                .map(|ring_key| &ring_key.public_jwk),
        )
    }
}

/// Why the catalog could not produce a tenant.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored key could not be decrypted or parsed (wrong master key?).
    #[error("signing key {kid} of tenant {tenant} is unusable")]
    UnusableKey {
        /// The tenant.
        tenant: TenantName,
        /// The key.
        kid: KeyId,
        /// Why.
        #[source]
        source: tollgate_keys::KeyError,
    },
    /// The ring's public keys could not be read back for verification.
    #[error("key set of tenant {tenant} is unusable: {reason}")]
    UnusableKeySet {
        /// The tenant.
        tenant: TenantName,
        /// Why.
        reason: String,
    },
}

#[derive(Clone)]
enum Entry {
    Present(Arc<TenantView>),
    Absent,
}

/// The cache of [`TenantView`]s.
pub struct Catalog {
    store: Store,
    master_key: Arc<MasterKey>,
    issuer_template: IssuerTemplate,
    entries: RwLock<HashMap<TenantName, Entry>>,
    /// Bumped by every invalidation; a load that began before a bump must not be cached,
    /// or it could reinstate what the invalidation removed.
    generation: AtomicU64,
}

impl Catalog {
    /// An empty catalog over `store`.
    pub fn new(store: Store, master_key: Arc<MasterKey>, issuer_template: IssuerTemplate) -> Self {
        Self {
            store,
            master_key,
            issuer_template,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The tenant's view, loading it on a miss; `None` if the tenant does not exist.
    pub async fn tenant(&self, name: &TenantName) -> Result<Option<Arc<TenantView>>, CatalogError> {
        if let Some(entry) = self.cached(name) {
            return Ok(match entry {
                Entry::Present(view) => Some(view),
                Entry::Absent => None,
            });
        }
        let generation = self.generation.load(Ordering::Acquire);
        let view = match self.store.load_tenant_snapshot(name).await? {
            Some(snapshot) => Some(Arc::new(self.build(snapshot)?)),
            None => None,
        };
        let entry = match &view {
            Some(view) => Entry::Present(Arc::clone(view)),
            None => Entry::Absent,
        };
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            if matches!(entry, Entry::Absent) && entries.len() >= MAX_ABSENT_ENTRIES {
                entries.retain(|_, entry| matches!(entry, Entry::Present(_)));
            }
            entries.insert(name.clone(), entry);
        }
        Ok(view)
    }

    /// Forgets everything cached (a change notification may have been missed).
    pub fn invalidate_all(&self) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Whether `name` has a cached view (present or absent).
    pub fn is_cached(&self, name: &TenantName) -> bool {
        self.cached(name).is_some()
    }

    /// Forgets what is cached of `name`.
    pub fn invalidate(&self, name: &TenantName) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(name);
    }

    fn cached(&self, name: &TenantName) -> Option<Entry> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    fn build(&self, snapshot: TenantSnapshot) -> Result<TenantView, CatalogError> {
        let TenantSnapshot {
            tenant,
            apis,
            apps,
            secrets,
            keys,
        } = snapshot;
        let mut ring = Vec::with_capacity(keys.len());
        for record in keys {
            let key = self
                .master_key
                .open_signing_key(
                    &tenant.id,
                    record.alg,
                    &record.kid,
                    &record.private_key_sealed,
                )
                .map_err(|source| CatalogError::UnusableKey {
                    tenant: tenant.name.clone(),
                    kid: record.kid.clone(),
                    source,
                })?;
            ring.push(RingKey {
                public_jwk: key.public_jwk(),
                key: Arc::new(key),
                activate_at: record.activate_at,
                retire_at: record.retire_at,
                remove_at: record.remove_at,
            });
        }
        // Newest activation first; the creation order breaks ties, newest first too.
        ring.reverse();
        ring.sort_by_key(|ring_key| std::cmp::Reverse(ring_key.activate_at));
        let key_set = KeySet::from_jwks(
            &ring
                .iter()
                .map(|ring_key| ring_key.public_jwk.clone())
                .collect::<Vec<_>>(),
        )
        .map_err(|error| CatalogError::UnusableKeySet {
            tenant: tenant.name.clone(),
            reason: error.to_string(),
        })?;
        let mut secrets_by_app: HashMap<AppId, Vec<SecretView>> = HashMap::new();
        for secret in secrets {
            secrets_by_app
                .entry(secret.app_id.clone())
                .or_default()
                .push(SecretView {
                    id: secret.id.clone(),
                    hash: secret.hash.clone(),
                    expires_at: secret.expires_at,
                    last_recorded: AtomicI64::new(secret.last_used_at.unwrap_or(i64::MIN)),
                });
        }
        let apps = apps
            .into_iter()
            .map(|entry| {
                let grants = entry
                    .grants
                    .into_iter()
                    .map(|grant| (grant.api_id, grant.scopes))
                    .collect();
                let view = AppView {
                    client_id: entry.app.client_id.clone(),
                    is_blocked: entry.app.is_blocked,
                    rate_limit_per_second: entry.app.rate_limit_per_second,
                    secrets: secrets_by_app.remove(&entry.app.id).unwrap_or_default(),
                    grants,
                };
                (entry.app.client_id, view)
            })
            .collect();
        let apis = apis
            .into_iter()
            .map(|api| {
                let view = ApiView {
                    id: api.id,
                    identifier: api.identifier.clone(),
                    scopes: api.scopes.into_iter().map(|scope| scope.value).collect(),
                    token_lifetime: api.token_lifetime,
                    signing_alg: api.signing_alg,
                };
                (api.identifier, view)
            })
            .collect();
        // The id heads the tenant's audit chain: one an audit record could not hold is
        // refused here, once, rather than at every event.
        tollgate_audit::Identifier::parse(tenant.id.as_str()).map_err(|error| {
            CatalogError::Store(StoreError::Corrupt {
                entity: "tenant",
                reason: error.to_string(),
            })
        })?;
        Ok(TenantView {
            issuer: self.issuer_template.issuer(&tenant.name),
            management_audience: self.issuer_template.management_audience(&tenant.name),
            id: tenant.id,
            name: tenant.name,
            signing_alg: tenant.signing_alg,
            apis,
            apps,
            keys: ring,
            key_set,
            rate_limit_per_second: tenant.rate_limit_per_second,
        })
    }
}

impl ChangeListener for Catalog {
    fn tenant_changed(&self, tenant: &TenantName) {
        self.invalidate(tenant);
    }
}
