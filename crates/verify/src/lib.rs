//! Verification of access tokens, as a resource server does it (RFC 9068, RFC 8725): the key
//! is found by `kid` in a JWK Set, the algorithm comes from the key (never from the token
//! header), and `typ`, `iss`, `aud`, `exp` and `nbf` are always checked.
//!
//! Two levels, one set of rules:
//! - [`verify`] checks a Tollgate token against a [`KeySet`] and [`Expectations`] and returns
//!   Tollgate's [`AccessTokenClaims`]. Management uses it for its own admin tokens, so the
//!   rules a resource server applies and the rules Tollgate applies to itself cannot drift
//!   apart.
//! - [`verify_claims`] checks a token of any issuer against a [`Policy`] (accepted `typ`,
//!   audiences, leeway, required claims) and returns generic [`Claims`]: the standard
//!   claims, the scopes (from `scope` or `scp`) and the raw JSON.
//!
//! Features add the network and transport parts; the default build does no I/O and pulls in
//! no HTTP stack, because the issuer uses this crate on the server side:
//! - `remote`: [`Verifier`], which discovers `jwks_uri` from RFC 8414 metadata, caches the
//!   JWK Set per `Cache-Control`, refetches (rate limited) on an unknown `kid`, and asks an
//!   optional [`RevocationCheck`] such as [`Introspection`] (RFC 7662).
//! - `tower`: [`BearerAuthLayer`], for axum routers and tonic servers: 401/403 with RFC 6750
//!   challenges, or the gRPC codes, and the [`Claims`] in the request extensions.
//! - `axum`: [`Claims`] as an axum extractor. `tonic`: `tonic::ClaimsExt` and a synchronous
//!   `tonic::BearerInterceptor`.
//! - `watch`: [`RevocationWatch`], a [`RevocationCheck`] that follows Tollgate's
//!   `WatchRevocations` stream and answers from memory (a revoked token is refused within
//!   milliseconds, with no call per request), failing closed before its first snapshot and
//!   when the stream falls silent. It brings in Tollgate's gRPC bindings (`tollgate-proto`).
//!
//! ```
//! use tollgate_verify::{KeySet, Policy, VerifyError, verify_claims};
//!
//! let keys = KeySet::from_jwks_json(r#"{"keys":[]}"#)?;
//! let policy = Policy::new("https://acme.hub.example.com/", "https://archive.example.com/")
//!     .with_leeway_seconds(10);
//! // Not a token at all: refused before any key is looked at.
//! assert_eq!(verify_claims("abc", &keys, &policy, 0), Err(VerifyError::Malformed));
//! # Ok::<(), VerifyError>(())
//! ```
//!
//! Invariant: only asymmetric algorithms (ES256, EdDSA, RS256) are ever accepted, and only
//! for keys that declare them; there is no way to configure `none` or an HMAC algorithm.
//!
//! Built on `jsonwebtoken` 9, whose crypto back-end is ring, the project's one crypto stack
//! (versions 10+ offer only aws-lc-rs or RustCrypto). `jsonwebtoken` does not check `typ` and
//! leaves `nbf` off by default; both are enforced here explicitly.

use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;
use tollgate_domain::{AccessTokenClaims, UnixTime};

mod claims;
mod rejection;
mod scopes;

#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "watch")]
mod watch;

pub use claims::{ACCESS_TOKEN_TYPE, Claims, Policy, unverified_key_id, verify_claims};
#[cfg(feature = "tower")]
pub use layer::{BearerAuth, BearerAuthLayer, bearer_token, rejection};
pub use rejection::{AuthError, grpc_code};
#[cfg(feature = "remote")]
pub use remote::{Introspection, RevocationCheck, RevocationFuture, Verifier, VerifierBuilder};
pub use scopes::ScopeRules;
/// The credential [`Introspection`] and [`RevocationWatch`] authenticate with, re-exported so
/// that resource servers need not depend on `tollgate-domain` for it.
#[cfg(feature = "remote")]
pub use tollgate_domain::ClientSecret;
#[cfg(feature = "watch")]
pub use watch::{RevocationWatch, RevocationWatchBuilder, WatchStatus};

/// Why a token was refused. Messages are safe to show to the token's presenter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a well-formed JWS with Tollgate's claims.
    #[error("token is malformed")]
    Malformed,
    /// The header's `kid` names no key of the issuer.
    #[error("token is signed with an unknown key")]
    UnknownKey,
    /// The header's `alg` differs from the algorithm of the key it names.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The header's `typ` is not `at+jwt`.
    #[error("token is not an access token (typ must be at+jwt)")]
    WrongType,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` is not the expected audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A JWK Set could not be used.
    #[error("invalid key set: {0}")]
    InvalidKeySet(String),
}

/// One public key, with the only algorithm it may verify.
struct VerifyingKey {
    algorithm: jsonwebtoken::Algorithm,
    key: DecodingKey,
}

/// The public keys of one issuer, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Parses a JWK Set document (`{"keys":[…]}`).
    pub fn from_jwks_json(json: &str) -> Result<Self, VerifyError> {
        let document: Value = serde_json::from_str(json)
            .map_err(|error| VerifyError::InvalidKeySet(format!("not JSON: {error}")))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| VerifyError::InvalidKeySet("no \"keys\" array".to_owned()))?;
        Self::from_jwks(keys)
    }

    /// Builds a key set from JWKs. Each key must carry `kid` and `alg` and be an ES256 (EC
    /// P-256), EdDSA (OKP Ed25519) or RS256 (RSA) key; keys with `use` other than `sig` are
    /// skipped, anything else is an error.
    pub fn from_jwks(jwks: &[Value]) -> Result<Self, VerifyError> {
        let mut keys = HashMap::with_capacity(jwks.len());
        for jwk in jwks {
            if let Some((kid, key)) = parse_jwk(jwk)? {
                keys.insert(kid, key);
            }
        }
        Ok(Self { keys })
    }

    /// Parses a JWK Set document of any issuer, keeping the keys this crate can use and
    /// skipping the others (keys without `kid` or `alg`, other algorithms, encryption keys):
    /// another issuer's JWKS may well publish keys for purposes that are not ours. Returns
    /// the set and one message per skipped key. Only a document that is not a JWK Set at all
    /// is an error.
    pub fn from_jwks_json_lenient(json: &str) -> Result<(Self, Vec<String>), VerifyError> {
        let document: Value = serde_json::from_str(json)
            .map_err(|error| VerifyError::InvalidKeySet(format!("not JSON: {error}")))?;
        let jwks = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| VerifyError::InvalidKeySet("no \"keys\" array".to_owned()))?;
        let mut keys = HashMap::with_capacity(jwks.len());
        let mut skipped = Vec::new();
        for jwk in jwks {
            match parse_jwk(jwk) {
                Ok(Some((kid, key))) => {
                    keys.insert(kid, key);
                }
                Ok(None) => {}
                Err(VerifyError::InvalidKeySet(message)) => skipped.push(message),
                Err(other) => skipped.push(other.to_string()),
            }
        }
        Ok((Self { keys }, skipped))
    }

    /// Whether a key with this `kid` is in the set.
    pub fn contains_key_id(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The `kid`s of the set, in no particular order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One JWK: `Ok(None)` for a key that is not for signatures, an error for one we cannot use.
fn parse_jwk(jwk: &Value) -> Result<Option<(String, VerifyingKey)>, VerifyError> {
    if jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Ok(None);
    }
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::InvalidKeySet(format!("key lacks the {name:?} member")))
    };
    let kid = member("kid")?;
    let (algorithm, key) = match (member("alg")?, member("kty")?) {
        ("ES256", "EC") if member("crv")? == "P-256" => (
            jsonwebtoken::Algorithm::ES256,
            DecodingKey::from_ec_components(member("x")?, member("y")?),
        ),
        ("EdDSA", "OKP") if member("crv")? == "Ed25519" => (
            jsonwebtoken::Algorithm::EdDSA,
            DecodingKey::from_ed_components(member("x")?),
        ),
        ("RS256", "RSA") => (
            jsonwebtoken::Algorithm::RS256,
            DecodingKey::from_rsa_components(member("n")?, member("e")?),
        ),
        (alg, kty) => {
            return Err(VerifyError::InvalidKeySet(format!(
                "unsupported key {kid:?}: alg {alg:?}, kty {kty:?}"
            )));
        }
    };
    let key = key
        .map_err(|error| VerifyError::InvalidKeySet(format!("key {kid:?} is invalid: {error}")))?;
    Ok(Some((kid.to_owned(), VerifyingKey { algorithm, key })))
}

/// What a valid token must say.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The exact `iss`.
    pub issuer: String,
    /// The exact `aud` (the resource server's API identifier).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

impl Expectations {
    /// Expect `issuer` and `audience`, with 30 s of leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_seconds: 30,
        }
    }
}

/// Reads one claim of a compact JWS **without verifying anything**. Only for choosing what to
/// verify against (which tenant's keys, which audience to expect); the value must then be
/// checked by [`verify`], which covers it with the signature.
pub fn unverified_claim(token: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

/// Verifies `token` against `keys` and returns its claims; `exp` and `nbf` are judged by the
/// system clock.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
) -> Result<AccessTokenClaims, VerifyError> {
    verify_with(token, keys, expected, None)
}

/// [`verify`], judging `exp` and `nbf` at `now` instead of by the system clock: for the issuer,
/// which judges its own tokens by the clock it issues them by. The checks and their order are
/// [`verify`]'s: signature, then `exp`, `nbf`, `iss` and `aud`.
pub fn verify_at(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
    now: UnixTime,
) -> Result<AccessTokenClaims, VerifyError> {
    verify_with(token, keys, expected, Some(now))
}

/// [`verify`] with `exp` and `nbf` judged at `now`, or by jsonwebtoken's system clock.
fn verify_with(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
    now: Option<UnixTime>,
) -> Result<AccessTokenClaims, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    let is_access_token = header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    });
    if !is_access_token {
        return Err(VerifyError::WrongType);
    }
    let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
    let key = keys.keys.get(kid).ok_or(VerifyError::UnknownKey)?;
    if header.alg != key.algorithm {
        return Err(VerifyError::AlgorithmMismatch);
    }
    let mut validation = Validation::new(key.algorithm);
    validation.leeway = expected.leeway_seconds;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[expected.issuer.as_str()]);
    validation.set_audience(&[expected.audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    if now.is_some() {
        // Checked below against `now`, in jsonwebtoken's order, after the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.iss = None;
        validation.validate_aud = false;
    }
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.key, &validation).map_err(
        |error| match error.kind() {
            ErrorKind::InvalidSignature => VerifyError::BadSignature,
            ErrorKind::ExpiredSignature => VerifyError::Expired,
            ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
            ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
            ErrorKind::InvalidAudience => VerifyError::WrongAudience,
            ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmMismatch,
            _ => VerifyError::Malformed,
        },
    )?;
    let claims = data.claims;
    if let Some(now) = now {
        let leeway = i64::try_from(expected.leeway_seconds).unwrap_or(i64::MAX);
        if claims.exp < now.saturating_sub(leeway) {
            return Err(VerifyError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid);
        }
        if claims.iss != expected.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if claims.aud != expected.audience {
            return Err(VerifyError::WrongAudience);
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
