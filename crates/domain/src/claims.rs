//! The claims of a Tollgate access token (RFC 9068 plus Tollgate's own).

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// The `gty` claim of every token Tollgate issues.
pub const GRANT_TYPE_CLIENT_CREDENTIALS: &str = "client_credentials";

/// The payload of a Tollgate JWT access token. Field order is the serialisation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The tenant's issuer URL.
    pub iss: String,
    /// `<client_id>@client`.
    pub sub: String,
    /// The API identifier; exactly one audience per token (RFC 9700 §2.3).
    pub aud: String,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before; equal to `iat`.
    pub nbf: UnixTime,
    /// Expiry: `iat` + the API's token lifetime.
    pub exp: UnixTime,
    /// Unique token id, 128 random bits.
    pub jti: String,
    /// The tenant's id.
    pub cid: String,
    /// The id of the client secret that authenticated the request.
    pub sid: String,
    /// Granted scopes as an array.
    pub scp: Vec<String>,
    /// Granted scopes, space-delimited (RFC 9068).
    pub scope: String,
    /// The app's client id (RFC 9068).
    pub client_id: String,
    /// Always `client_credentials`.
    pub gty: String,
}
