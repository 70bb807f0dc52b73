//! The client-credentials request and its outcome, as every transport hands them to the
//! issuer. Parsed values only: transports do the parsing.

use crate::{ApiIdentifier, ClientId, ClientSecret, Scope, ScopeSet, TenantName};

/// A validated client-credentials token request (RFC 6749 §4.4.2).
#[derive(Clone)]
pub struct TokenRequest {
    /// The tenant the app and the API belong to.
    pub tenant: TenantName,
    /// The authenticating app.
    pub client_id: ClientId,
    /// The app's secret, as presented.
    pub client_secret: ClientSecret,
    /// The API the token is for.
    pub audience: ApiIdentifier,
    /// The scopes asked for; `None` asks for every scope the app holds on the API.
    pub scopes: Option<ScopeSet>,
    /// The network address the request came from, when the transport knows it; failed
    /// authentications are rate-limited per address.
    pub source: Option<std::net::IpAddr>,
}

/// A client-authenticated request about an existing token: revocation (RFC 7009) or
/// introspection (RFC 7662).
#[derive(Clone)]
pub struct TokenCallRequest {
    /// The tenant of the calling app.
    pub tenant: TenantName,
    /// The calling app.
    pub client_id: ClientId,
    /// Its secret.
    pub client_secret: ClientSecret,
    /// The token in question, as presented (not yet verified).
    pub token: String,
    /// Where the request came from, when known.
    pub source: Option<std::net::IpAddr>,
}

/// A token the issuer signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWS.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The scopes it carries.
    pub scopes: ScopeSet,
}

/// A scope an API defines, with its description for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeDefinition {
    /// The scope token.
    pub value: Scope,
    /// What it allows.
    pub description: String,
}
