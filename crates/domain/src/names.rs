//! Validated newtypes. Each `parse` is the single place its rule lives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value was refused; names the offending field so the caller can say which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    /// The field (as the API names it) that held the value.
    pub field: &'static str,
    /// What is wrong with it, lowercase, never echoing a secret.
    pub reason: String,
}

impl InvalidValue {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The same complaint, attributed to another field name (e.g. `audience` vs `identifier`).
    pub fn for_field(self, field: &'static str) -> Self {
        Self { field, ..self }
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A tenant's name: a DNS label (RFC 1123), lowercase, 1–63 characters of `a-z`, `0-9` and
/// `-`, neither starting nor ending with `-`. It appears in host names and issuer URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);
string_newtype!(TenantName);

impl TenantName {
    /// Longest name, in bytes: the most a DNS label may hold (RFC 1035 §2.3.4).
    pub const MAX_LEN: usize = 63;

    /// Checks the DNS-label rule.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "tenant";
        if value.is_empty() {
            return Err(InvalidValue::new(field, "must not be empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(field, "must be at most 63 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidValue::new(
                field,
                "must be a DNS label: lowercase letters, digits and '-'",
            ));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(InvalidValue::new(field, "must not start or end with '-'"));
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether this is the built-in `system` tenant.
    pub fn is_system(&self) -> bool {
        self.0 == crate::SYSTEM_TENANT
    }

    /// The `system` tenant's name.
    pub fn system() -> Self {
        Self(crate::SYSTEM_TENANT.to_owned())
    }
}

impl FromStr for TenantName {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// An app's client id: 1–128 characters of `A-Z a-z 0-9 . _ ~ -` (URL-safe, so it needs no
/// escaping in Basic authentication). Never contains `@`: tokens carry `sub` =
/// `<client_id>@client`, which must not be confusable with a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);
string_newtype!(ClientId);

impl ClientId {
    /// Longest client id, in bytes. Generous for any naming scheme (a UUID is 36), and it
    /// bounds what an unauthenticated request can make the server hash, key a rate limit
    /// by, or record.
    pub const MAX_LEN: usize = 128;

    /// Checks the client-id rule.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "client_id";
        if value.is_empty() {
            return Err(InvalidValue::new(field, "must not be empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(field, "must be at most 128 characters"));
        }
        if value.contains('@') {
            return Err(InvalidValue::new(field, "must not contain '@'"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        {
            return Err(InvalidValue::new(
                field,
                "may contain only letters, digits, '.', '_', '~' and '-'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The token subject of this client: `<client_id>@client`.
    pub fn subject(&self) -> String {
        format!("{}@client", self.0)
    }
}

/// An API identifier, the audience (`aud`) of its tokens: 1–255 printable ASCII characters
/// without spaces, usually a URL such as `https://archive.example.com/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ApiIdentifier(String);
string_newtype!(ApiIdentifier);

impl ApiIdentifier {
    /// Longest identifier, in bytes: room for any reasonable URL (the audience of a token
    /// request is one), and within what an audit record keeps of a value.
    pub const MAX_LEN: usize = 255;

    /// Checks the identifier rule. The error names the field `identifier`; callers that take
    /// it as `audience` rename it with [`InvalidValue::for_field`].
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "identifier";
        if value.is_empty() {
            return Err(InvalidValue::new(field, "must not be empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(field, "must be at most 255 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A scope token (RFC 6749 §3.3: `%x21 / %x23-5B / %x5D-7E`, i.e. printable ASCII without
/// space, `"` or `\`), at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);
string_newtype!(Scope);

impl Scope {
    /// Longest scope token, in bytes. Scopes are names such as `archive:read`; 128 leaves
    /// room for namespaced URLs-as-scopes while bounding a request's scope list.
    pub const MAX_LEN: usize = 128;

    /// Checks the RFC 6749 scope-token grammar.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "scope";
        if value.is_empty() {
            return Err(InvalidValue::new(field, "must not be empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(field, "must be at most 128 characters"));
        }
        if !value
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(InvalidValue::new(
                field,
                format!("{value:?} is not a valid scope token"),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl TryFrom<String> for Scope {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> Self {
        scope.0
    }
}

/// A set of scopes kept sorted and without duplicates, so tokens list them deterministically.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses each value; duplicates collapse.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, InvalidValue> {
        values
            .into_iter()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::from_iter)
    }

    /// Parses a space-delimited `scope` parameter (RFC 6749 §3.3). Runs of spaces are
    /// tolerated; an all-space value is the empty set.
    pub fn parse_delimited(value: &str) -> Result<Self, InvalidValue> {
        Self::parse_all(value.split(' ').filter(|part| !part.is_empty()))
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.binary_search(scope).is_ok()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// The first scope of `self` that `other` lacks, if any.
    pub fn first_missing_from(&self, other: &ScopeSet) -> Option<&Scope> {
        self.0.iter().find(|scope| !other.contains(scope))
    }

    /// The scopes present in both sets.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(
            self.0
                .iter()
                .filter(|scope| other.contains(scope))
                .cloned()
                .collect(),
        )
    }

    /// The space-delimited form, as in the `scope` claim and parameter.
    pub fn to_delimited(&self) -> String {
        let mut out = String::new();
        for (index, scope) in self.0.iter().enumerate() {
            if index > 0 {
                out.push(' ');
            }
            out.push_str(scope.as_str());
        }
        out
    }

    /// The scopes as strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|scope| scope.0.clone()).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes: Vec<Scope> = iter.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A JWS signing algorithm Tollgate signs with. Only asymmetric algorithms exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256: small keys, fast signing. The default.
    #[default]
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys; for verifiers that know nothing else
    /// (RFC 9068 requires support for it). About 35 times slower to sign than ES256.
    Rs256,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256];

    /// The JOSE name (`alg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Rs256 => "RS256",
        }
    }

    /// Parses a JOSE name, exactly as spelled (`ES256`, `EdDSA`, `RS256`).
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "ES256" => Ok(Algorithm::Es256),
            "EdDSA" => Ok(Algorithm::EdDsa),
            "RS256" => Ok(Algorithm::Rs256),
            other => Err(InvalidValue::new(
                "signing_alg",
                format!("{other:?} is not supported; use ES256, EdDSA or RS256"),
            )),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long an API's tokens live: 60 s to 86 400 s (one day); 3 600 s by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(i64);

impl TokenLifetime {
    /// The shortest lifetime allowed.
    pub const MIN_SECONDS: i64 = 60;
    /// The longest lifetime allowed.
    pub const MAX_SECONDS: i64 = 86_400;
    /// The lifetime of an API that does not choose one.
    pub const DEFAULT: TokenLifetime = TokenLifetime(3_600);

    /// Checks the bounds.
    pub fn from_seconds(seconds: i64) -> Result<Self, InvalidValue> {
        if (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(InvalidValue::new(
                "token_lifetime_seconds",
                format!(
                    "must be between {} and {} seconds",
                    Self::MIN_SECONDS,
                    Self::MAX_SECONDS
                ),
            ))
        }
    }

    /// The lifetime in seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }
}

/// The longest any token of this server can live, in seconds: the longest lifetime an API can
/// set ([`TokenLifetime::MAX_SECONDS`]) plus 60 s of leeway. A revocation whose tokens' expiry
/// is unknown lasts this long and then expires with every token it could cover; a retired
/// signing key stays published this long after it stops signing.
pub const MAX_TOKEN_LIFETIME: i64 = TokenLifetime::MAX_SECONDS + 60;

impl Default for TokenLifetime {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: fmt::Debug>(result: Result<T, InvalidValue>, expected: &str) {
        let actual = match result {
            Ok(value) => format!("ok {value:?}"),
            Err(error) => format!("err {error}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn tenant_names() {
        check(TenantName::parse("acme"), r#"ok TenantName("acme")"#);
        check(TenantName::parse("a-1"), r#"ok TenantName("a-1")"#);
        check(TenantName::parse(""), "err tenant: must not be empty");
        check(
            TenantName::parse("Acme"),
            "err tenant: must be a DNS label: lowercase letters, digits and '-'",
        );
        check(
            TenantName::parse("-acme"),
            "err tenant: must not start or end with '-'",
        );
        check(
            TenantName::parse("a.b"),
            "err tenant: must be a DNS label: lowercase letters, digits and '-'",
        );
        check(
            TenantName::parse(&"a".repeat(64)),
            "err tenant: must be at most 63 characters",
        );
    }

    #[test]
    fn client_ids() {
        check(
            ClientId::parse("abc_DEF-1.2~"),
            r#"ok ClientId("abc_DEF-1.2~")"#,
        );
        check(
            ClientId::parse("a@b"),
            "err client_id: must not contain '@'",
        );
        check(
            ClientId::parse("a b"),
            "err client_id: may contain only letters, digits, '.', '_', '~' and '-'",
        );
        check(ClientId::parse(""), "err client_id: must not be empty");
    }

    #[test]
    fn scopes() {
        check(
            Scope::parse("archive:write"),
            r#"ok Scope("archive:write")"#,
        );
        check(
            Scope::parse("a b"),
            r#"err scope: "a b" is not a valid scope token"#,
        );
        check(
            Scope::parse("a\"b"),
            r#"err scope: "a\"b" is not a valid scope token"#,
        );
        check(
            ScopeSet::parse_delimited("b a  a"),
            r#"ok ScopeSet([Scope("a"), Scope("b")])"#,
        );
        check(ScopeSet::parse_delimited("  "), "ok ScopeSet([])");
    }

    #[test]
    fn scope_set_operations() -> Result<(), InvalidValue> {
        let held = ScopeSet::parse_delimited("read write")?;
        let wanted = ScopeSet::parse_delimited("read admin")?;
        assert_eq!(
            wanted.first_missing_from(&held).map(Scope::as_str),
            Some("admin")
        );
        assert_eq!(wanted.intersection(&held).to_delimited(), "read");
        assert_eq!(held.to_delimited(), "read write");
        Ok(())
    }

    #[test]
    fn identifiers_and_lifetimes() {
        check(
            ApiIdentifier::parse("https://api.example.com/"),
            r#"ok ApiIdentifier("https://api.example.com/")"#,
        );
        check(
            ApiIdentifier::parse("has space"),
            "err identifier: must be printable ASCII without spaces",
        );
        check(
            TokenLifetime::from_seconds(59),
            "err token_lifetime_seconds: must be between 60 and 86400 seconds",
        );
        check(TokenLifetime::from_seconds(60), "ok TokenLifetime(60)");
        check(
            Algorithm::parse("HS256"),
            r#"err signing_alg: "HS256" is not supported; use ES256, EdDSA or RS256"#,
        );
        check(Algorithm::parse("EdDSA"), "ok EdDsa");
    }
}
