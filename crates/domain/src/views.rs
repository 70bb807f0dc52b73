//! What management hands back: tenants, APIs, apps, client secrets and signing keys as an
//! admin sees them, with their states now (computed by management, by its clock), and the
//! pages they come in. Transports only render these; the store's records never leave the
//! service.

use crate::{
    Algorithm, ApiIdentifier, ClientId, ClientSecret, KeyId, ScopeDefinition, ScopeSet, SecretId,
    TenantId, TenantName, TokenLifetime, UnixTime,
};

/// A page of results and the token of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The results.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    /// Its id; never changes.
    pub id: TenantId,
    /// Its name; never changes.
    pub name: TenantName,
    /// The `iss` of its tokens, rendered from the server's issuer template.
    pub issuer: String,
    /// For people.
    pub display_name: String,
    /// The algorithm of its tokens unless an API chooses another.
    pub signing_alg: Algorithm,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was last changed.
    pub updated_at: UnixTime,
    /// Its token requests per second, across its apps; `None` for the server's default.
    pub rate_limit_per_second: Option<i64>,
}

/// The client credentials of a tenant's admin app, shown once.
pub struct AdminCredentials {
    /// The tenant.
    pub tenant: TenantName,
    /// The admin app's client id.
    pub client_id: ClientId,
    /// Its secret, in plain text: to be shown once, then dropped.
    pub client_secret: ClientSecret,
    /// The tenant's Management API identifier.
    pub audience: ApiIdentifier,
}

/// An API (a resource server) of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiInfo {
    /// The tenant it belongs to.
    pub tenant: TenantName,
    /// For people.
    pub name: String,
    /// The audience of its tokens; unique within the tenant; never changes.
    pub identifier: ApiIdentifier,
    /// The scopes it defines.
    pub scopes: Vec<ScopeDefinition>,
    /// How long its tokens live.
    pub token_lifetime: TokenLifetime,
    /// Overrides the tenant's algorithm when set.
    pub signing_alg: Option<Algorithm>,
    /// Built in (e.g. the Management API): not deletable by users.
    pub is_system: bool,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was last changed.
    pub updated_at: UnixTime,
}

/// An app (an OAuth client) of a tenant, with the scopes it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AppInfo {
    /// The tenant it belongs to.
    pub tenant: TenantName,
    /// Its OAuth client id; unique across all tenants; never changes.
    pub client_id: ClientId,
    /// For people.
    pub name: String,
    /// For people.
    pub description: String,
    /// The scopes it holds, per API, ordered by audience.
    pub grants: Vec<GrantInfo>,
    /// A blocked app gets no tokens.
    pub is_blocked: bool,
    /// Built in (e.g. the tenant's admin app): not deletable by users.
    pub is_system: bool,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was last changed.
    pub updated_at: UnixTime,
    /// Its token requests per second; `None` for the server's default.
    pub rate_limit_per_second: Option<i64>,
}

/// The scopes an app holds on one API.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantInfo {
    /// The API's identifier.
    pub audience: ApiIdentifier,
    /// The scopes held.
    pub scopes: ScopeSet,
}

/// One secret of an app: its dates and whether it is active, never its value or hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretInfo {
    /// The secret's id (the `sid` of the tokens it obtains).
    pub id: SecretId,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it stops authenticating, if ever.
    pub expires_at: Option<UnixTime>,
    /// When it last authenticated, as far as recorded.
    pub last_used_at: Option<UnixTime>,
    /// Whether it authenticates its app now: it has no end, or its end is still ahead.
    pub is_active: bool,
}

/// A new client secret, and the app's secrets after it was added.
pub struct RotatedSecret {
    /// The new secret's dates and state.
    pub info: SecretInfo,
    /// The new secret, to be shown once.
    pub secret: ClientSecret,
    /// The app's secrets after the rotation, newest first.
    pub secrets: Vec<SecretInfo>,
}

/// A signing key of a tenant: its dates and where it is in its life, never its material.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// The JWS `kid`.
    pub kid: KeyId,
    /// The algorithm it signs with.
    pub alg: Algorithm,
    /// Its state now.
    pub state: KeyState,
    /// When it was created (and, at once, published in the JWKS).
    pub created_at: UnixTime,
    /// When it may start signing; 0 for keys that predate rotation.
    pub activate_at: UnixTime,
    /// When it stops signing, if ever.
    pub retire_at: Option<UnixTime>,
    /// When it leaves the JWKS, if ever.
    pub remove_at: Option<UnixTime>,
}

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing.
    Active,
    /// Published so its tokens verify; no longer signing.
    Retiring,
    /// No longer published.
    Retired,
}

impl KeyState {
    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }
}
