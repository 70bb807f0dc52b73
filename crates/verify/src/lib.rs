//! Verification of Tollgate access tokens, as a resource server does it (RFC 9068, RFC 8725):
//! the key is found by `kid` in a JWK Set, the algorithm comes from the key (never from the
//! token header), and `typ`, `iss`, `aud`, `exp` and `nbf` are always checked.
//!
//! Management uses this crate to check its own admin tokens, so the rules a resource server
//! applies and the rules Tollgate applies to itself cannot drift apart.
//!
//! Invariant: only asymmetric algorithms (ES256, EdDSA, RS256) are ever accepted; there is no
//! way to configure `none` or an HMAC algorithm.
//!
//! Built on `jsonwebtoken` 9, whose crypto back-end is ring, the project's one crypto stack
//! (versions 10+ offer only aws-lc-rs or RustCrypto). `jsonwebtoken` does not check `typ` and
//! leaves `nbf` off by default; both are enforced here explicitly.

use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;
use tollgate_domain::AccessTokenClaims;

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
            if jwk
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let member = |name: &str| {
                jwk.get(name).and_then(Value::as_str).ok_or_else(|| {
                    VerifyError::InvalidKeySet(format!("key lacks the {name:?} member"))
                })
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
            let key = key.map_err(|error| {
                VerifyError::InvalidKeySet(format!("key {kid:?} is invalid: {error}"))
            })?;
            keys.insert(kid.to_owned(), VerifyingKey { algorithm, key });
        }
        Ok(Self { keys })
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

/// Verifies `token` against `keys` and returns its claims.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
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
    Ok(data.claims)
}

#[cfg(test)]
mod tests;
