//! Verification of access tokens from any issuer, not only Tollgate: the same key and
//! algorithm rules as [`verify`](crate::verify), but the accepted `typ`, the audiences, the
//! leeway and the required claims are a [`Policy`], and the result is [`Claims`], the
//! standard claims plus every other claim as raw JSON.
//!
//! Invariant: the algorithm comes from the key (a [`KeySet`] only holds ES256, EdDSA and RS256
//! keys that declare their `alg`); the header's `alg` must equal it, so `none`, HMAC and any
//! other algorithm confusion are refused before a signature is looked at.
//!
//! Time is a parameter (`now`), so callers and tests decide what "now" is.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use tollgate_domain::UnixTime;

use crate::{KeySet, VerifyError};

/// The `typ` of RFC 9068 JWT access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// What a valid token must say, for tokens of any issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The exact `iss`.
    pub issuer: String,
    /// Accepted audiences: the token's `aud` (a string or an array) must contain one of them.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Accepted `typ` values, compared case-insensitively, with or without the
    /// `application/` prefix (RFC 7515 §4.1.9). [`ACCESS_TOKEN_TYPE`] by default.
    pub token_types: Vec<String>,
    /// Whether a token without `typ` is accepted. Off by default: RFC 8725 §3.11 asks for
    /// explicit typing, and RFC 9068 §4 tells resource servers to refuse other types.
    pub is_missing_type_accepted: bool,
    /// Claims that must be present (and not `null`) besides `iss`, `aud` and `exp`, which
    /// always must. E.g. RFC 9068's `sub`, `client_id`, `iat`, `jti`.
    pub required_claims: Vec<String>,
}

impl Policy {
    /// Expect `issuer` and `audience`, `typ` `at+jwt`, 30 s of leeway, no further claims.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            leeway_seconds: 30,
            token_types: vec![ACCESS_TOKEN_TYPE.to_owned()],
            is_missing_type_accepted: false,
            required_claims: Vec::new(),
        }
    }

    /// Also accept tokens for `audience`.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Tolerate `seconds` of clock skew on `exp` and `nbf`.
    #[must_use]
    pub fn with_leeway_seconds(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// Accept exactly these `typ` values (e.g. `["at+jwt", "JWT"]` for issuers that type
    /// their access tokens as plain JWTs).
    #[must_use]
    pub fn with_token_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.token_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Accept tokens without a `typ` header (for issuers that do not type their tokens).
    #[must_use]
    pub fn accepting_missing_type(mut self) -> Self {
        self.is_missing_type_accepted = true;
        self
    }

    /// Require these claims to be present.
    #[must_use]
    pub fn with_required_claims<I, S>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Require the claims RFC 9068 §2.2 makes mandatory for JWT access tokens:
    /// `sub`, `client_id`, `iat` and `jti` (besides `iss`, `aud` and `exp`).
    #[must_use]
    pub fn requiring_rfc9068_claims(self) -> Self {
        self.with_required_claims(["sub", "client_id", "iat", "jti"])
    }

    fn accepts_type(&self, typ: Option<&str>) -> bool {
        let Some(typ) = typ else {
            return self.is_missing_type_accepted;
        };
        let bare = |value: &str| -> String {
            let lower = value.to_ascii_lowercase();
            match lower.strip_prefix("application/") {
                Some(rest) => rest.to_owned(),
                None => lower,
            }
        };
        let typ = bare(typ);
        self.token_types
            .iter()
            .any(|accepted| bare(accepted) == typ)
    }
}

/// The verified claims of an access token, from any issuer.
///
/// The standard claims are parsed; everything (Tollgate's `cid`, `sid`, `gty`, another
/// issuer's `azp` or `tid`) is also in [`Claims::raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub issuer: String,
    /// `sub`, if present.
    pub subject: Option<String>,
    /// `aud`, as a list even when the token carries one string.
    pub audiences: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: UnixTime,
    /// `nbf`, if present.
    pub not_before: Option<UnixTime>,
    /// `iat`, if present.
    pub issued_at: Option<UnixTime>,
    /// `jti`, if present.
    pub token_id: Option<String>,
    /// `client_id` (RFC 9068), if present.
    pub client_id: Option<String>,
    /// Granted scopes: the space-delimited `scope` claim (RFC 9068), or else the `scp` claim
    /// (an array, or a space-delimited string as some issuers write it).
    pub scopes: Vec<String>,
    /// The `kid` of the key that verified the signature.
    pub key_id: String,
    /// Every claim of the payload, as JSON.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }

    /// Whether every one of `scopes` was granted.
    pub fn has_scopes<S: AsRef<str>>(&self, scopes: &[S]) -> bool {
        scopes.iter().all(|scope| self.has_scope(scope.as_ref()))
    }

    /// Any claim, as JSON.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }
}

/// The parts of a compact JWS, split exactly once.
pub(crate) struct Parts<'a> {
    /// `header.payload`, the signing input.
    pub(crate) message: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
}

pub(crate) fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let message = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(VerifyError::Malformed)?;
    Ok(Parts {
        message,
        payload,
        signature,
    })
}

/// The `kid` of a token's header, unverified; `None` if the header cannot be read.
pub fn unverified_key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Verifies `token` against `keys` and `policy` at time `now`, and returns its claims.
///
/// Checks, in order: the shape; `typ`; `kid` names a key of `keys`; the header's `alg` is
/// that key's; the signature; the claims' shapes and the required claims; `exp`, `nbf`
/// (with the leeway); `iss`; `aud`.
pub fn verify_claims(
    token: &str,
    keys: &KeySet,
    policy: &Policy,
    now: UnixTime,
) -> Result<Claims, VerifyError> {
    let parts = split(token)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    if !policy.accepts_type(header.typ.as_deref()) {
        return Err(VerifyError::WrongType);
    }
    let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
    let key = keys.keys.get(&kid).ok_or(VerifyError::UnknownKey)?;
    if header.alg != key.algorithm {
        return Err(VerifyError::AlgorithmMismatch);
    }
    let is_valid = jsonwebtoken::crypto::verify(
        parts.signature,
        parts.message.as_bytes(),
        &key.key,
        key.algorithm,
    )
    .map_err(|_| VerifyError::Malformed)?;
    if !is_valid {
        return Err(VerifyError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts.payload)
        .map_err(|_| VerifyError::Malformed)?;
    let raw: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed)?;
    let claims = parse(raw, kid)?;
    for name in &policy.required_claims {
        if claims.raw.get(name).is_none_or(Value::is_null) {
            return Err(VerifyError::Malformed);
        }
    }
    let leeway = i64::try_from(policy.leeway_seconds).unwrap_or(i64::MAX);
    if claims.expires_at < now.saturating_sub(leeway) {
        return Err(VerifyError::Expired);
    }
    if claims
        .not_before
        .is_some_and(|nbf| nbf > now.saturating_add(leeway))
    {
        return Err(VerifyError::NotYetValid);
    }
    if claims.issuer != policy.issuer {
        return Err(VerifyError::WrongIssuer);
    }
    let is_for_us = claims
        .audiences
        .iter()
        .any(|aud| policy.audiences.iter().any(|accepted| accepted == aud));
    if !is_for_us {
        return Err(VerifyError::WrongAudience);
    }
    Ok(claims)
}

/// Reads the standard claims; a claim of the wrong shape (or `null`) is malformed.
fn parse(raw: Map<String, Value>, key_id: String) -> Result<Claims, VerifyError> {
    let string = |name: &str| -> Result<Option<String>, VerifyError> {
        match raw.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(VerifyError::Malformed),
        }
    };
    // A NumericDate (RFC 7519 §2); only whole, non-negative seconds are accepted.
    let time = |name: &str| -> Result<Option<UnixTime>, VerifyError> {
        match raw.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .filter(|seconds| *seconds >= 0)
                .map(Some)
                .ok_or(VerifyError::Malformed),
        }
    };
    let issuer = string("iss")?.ok_or(VerifyError::Malformed)?;
    let expires_at = time("exp")?.ok_or(VerifyError::Malformed)?;
    let audiences = match raw.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|aud| aud.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(VerifyError::Malformed)?,
        _ => return Err(VerifyError::Malformed),
    };
    let split_scopes = |scopes: &str| scopes.split_whitespace().map(str::to_owned).collect();
    let scopes = match (raw.get("scope"), raw.get("scp")) {
        (Some(Value::String(scope)), _) => split_scopes(scope),
        (Some(_), _) => return Err(VerifyError::Malformed),
        (None, None) => Vec::new(),
        (None, Some(Value::String(scp))) => split_scopes(scp),
        (None, Some(Value::Array(list))) => list
            .iter()
            .map(|scope| scope.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(VerifyError::Malformed)?,
        (None, Some(_)) => return Err(VerifyError::Malformed),
    };
    Ok(Claims {
        issuer,
        subject: string("sub")?,
        audiences,
        expires_at,
        not_before: time("nbf")?,
        issued_at: time("iat")?,
        token_id: string("jti")?,
        client_id: string("client_id")?,
        scopes,
        key_id,
        raw,
    })
}
