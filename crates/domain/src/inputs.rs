//! What management is asked to create or change, parsed by the transport: new tenants, APIs
//! and apps, changes to them, and where a listing starts. Management checks the rest (names'
//! lengths, duplicate scopes, what the caller may grant).

use crate::{
    Algorithm, ApiIdentifier, InvalidValue, ScopeDefinition, ScopeSet, TenantName, TokenLifetime,
};

/// Where a listing starts and how much it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// 0 = default ([`PageRequest::DEFAULT_SIZE`]); at most [`PageRequest::MAX_SIZE`].
    pub page_size: i32,
    /// The previous page's `next_page_token`, or empty.
    pub page_token: String,
}

impl PageRequest {
    /// Results per page when the caller names no size.
    pub const DEFAULT_SIZE: u64 = 50;
    /// Most results per page; a larger size is cut to it.
    pub const MAX_SIZE: u64 = 500;

    /// How many results the page holds; negative sizes are refused.
    pub fn limit(&self) -> Result<u64, InvalidValue> {
        match self.page_size {
            0 => Ok(Self::DEFAULT_SIZE),
            size if size < 0 => Err(InvalidValue::new("page_size", "must not be negative")),
            size => Ok((size as u64).min(Self::MAX_SIZE)),
        }
    }
}

/// What a new tenant is made of.
#[derive(Debug, Clone)]
pub struct NewTenantInput {
    /// The tenant's name.
    pub name: TenantName,
    /// Human-readable name; the tenant's name when empty.
    pub display_name: String,
    /// Default signing algorithm.
    pub signing_alg: Algorithm,
}

/// Changes to a tenant; `None` leaves a field as is.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New default signing algorithm.
    pub signing_alg: Option<Algorithm>,
    /// New tenant-wide rate limit; `Some(None)` returns to the server default.
    pub rate_limit_per_second: Option<Option<i64>>,
}

/// A new API.
#[derive(Debug, Clone)]
pub struct NewApi {
    /// Human-readable name.
    pub name: String,
    /// The audience; unique in the tenant.
    pub identifier: ApiIdentifier,
    /// The scopes it defines.
    pub scopes: Vec<ScopeDefinition>,
    /// Lifetime of its tokens.
    pub token_lifetime: TokenLifetime,
    /// Algorithm override; `None` = the tenant's default.
    pub signing_alg: Option<Algorithm>,
}

/// Changes to an API; `None` leaves a field as is.
#[derive(Debug, Clone, Default)]
pub struct ApiUpdate {
    /// New name.
    pub name: Option<String>,
    /// New scopes, replacing the old ones.
    pub scopes: Option<Vec<ScopeDefinition>>,
    /// New lifetime.
    pub token_lifetime: Option<TokenLifetime>,
    /// New override; `Some(None)` returns to the tenant's default.
    pub signing_alg: Option<Option<Algorithm>>,
}

/// A new app.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Human-readable name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Scopes per API.
    pub grants: Vec<(ApiIdentifier, ScopeSet)>,
}

/// Changes to an app; `None` leaves a field as is.
#[derive(Debug, Clone, Default)]
pub struct AppUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New grants, replacing all old ones.
    pub grants: Option<Vec<(ApiIdentifier, ScopeSet)>>,
    /// Block (true) or unblock (false).
    pub blocked: Option<bool>,
    /// With `blocked: Some(true)`, also revoke every token the app holds now.
    pub revoke_tokens: bool,
    /// New token-request rate limit; `Some(None)` returns to the server default.
    pub rate_limit_per_second: Option<Option<i64>>,
}
