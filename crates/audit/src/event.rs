//! What an audit record says: [`AuditEvent`] and the closed vocabularies it is made of, and
//! their conversion to and from the store's [`AuditRow`].
//!
//! Invariant: an event cannot carry a secret or a hash of one. It has no free-form field;
//! every text is an [`Identifier`] (printable ASCII, at most 256 bytes, never containing
//! the client-secret prefix `tgsec_` or the `$` of stored secret hashes) or a
//! [`FieldName`] (a lowercase field *name*: management changes record which fields
//! changed, never their values).
//!
//! Invariant: a record's size is bounded whatever a request held. Every text has a maximum
//! length (an [`Identifier`] 256 bytes, a [`FieldName`] 64, a tenant name 63, the closed
//! names and an address less), and every list a maximum number of items, applied when the
//! event becomes a row ([`AuditEvent::into_row`], the only way into the trail): at most
//! [`MAX_RECORDED_REQUESTED_SCOPES`] requested scopes, [`MAX_RECORDED_GRANTED_SCOPES`]
//! granted scopes and [`MAX_CHANGED_FIELDS`] field names. Scopes past their limit are not
//! silently lost: their number is kept ([`AuditEvent::scopes_requested_omitted`],
//! [`AuditEvent::scopes_granted_omitted`]) and stored as a last list item `+<n> more`,
//! which no scope or identifier can be (it holds a space). So no row exceeds
//! [`MAX_EVENT_TEXT_BYTES`] of text.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use tollgate_domain::{ClientId, ErrorCode, InvalidValue, TenantId, TenantName, Transport};
use tollgate_keys::CLIENT_SECRET_PREFIX;
use tollgate_store::AuditRow;

use crate::AuditError;
use crate::chain::CHAIN_VERSION;

/// Longest [`Identifier`], in bytes: room for URLs used as audiences, not for documents.
pub const MAX_IDENTIFIER_LEN: usize = 256;

/// Longest [`FieldName`], in bytes.
pub const MAX_FIELD_NAME_LEN: usize = 64;

/// Most requested scopes a record lists. A refusal keeps a few of what was asked for, to
/// show what it was about, and the number of the others: a request naming many scopes
/// (at most 64 pass the transports' limits, and the trail must not trust even that)
/// costs the trail no more than one naming eight.
pub const MAX_RECORDED_REQUESTED_SCOPES: usize = 8;

/// Most granted scopes a record lists. Granted scopes come from the catalog, not from the
/// caller; 64 is as many as a request may name, and an app holding more that asks for
/// every scope has the others counted.
pub const MAX_RECORDED_GRANTED_SCOPES: usize = 64;

/// Most field names a management change lists (changes touch a handful; the names come
/// from the server's own code, never from a request).
pub const MAX_CHANGED_FIELDS: usize = 32;

/// Upper bound of the text one record stores, in bytes: every optional identifier at its
/// longest, the lists at their limits (with their `+<n> more` items), the tenant name,
/// the closed names and an IPv6 address. Not a target; a ceiling the types guarantee.
pub const MAX_EVENT_TEXT_BYTES: usize = IDENTIFIER_FIELDS * MAX_IDENTIFIER_LEN
    + (MAX_RECORDED_REQUESTED_SCOPES + MAX_RECORDED_GRANTED_SCOPES) * MAX_IDENTIFIER_LEN
    + 2 * OMITTED_ITEM_MAX_LEN
    + MAX_CHANGED_FIELDS * MAX_FIELD_NAME_LEN
    + tollgate_domain::TenantName::MAX_LEN
    + CLOSED_NAMES_MAX_LEN
    + IP_ADDRESS_MAX_LEN;

/// The identifier fields of an event: tenant id, actor, client id, secret id, audience,
/// jti, trace id, resource.
const IDENTIFIER_FIELDS: usize = 8;
/// `+4294967295 more`.
const OMITTED_ITEM_MAX_LEN: usize = 17;
/// Action, result, error code and transport, each well under 32 bytes.
const CLOSED_NAMES_MAX_LEN: usize = 4 * 32;
/// The longest textual IPv6 address.
const IP_ADDRESS_MAX_LEN: usize = 45;

/// What happened. Closed: the stored names ([`AuditAction::as_str`]) are part of the hash
/// chain's serialization and must never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A token was issued.
    TokenIssued,
    /// A token request was refused (any reason but the rate limit).
    TokenDenied,
    /// One token was revoked (RFC 7009, or by `jti`).
    TokenRevoked,
    /// Many tokens were revoked at once: by secret, app or tenant.
    TokensRevoked,
    /// An app's secret was rotated (a new one created).
    SecretRotated,
    /// An app's secret was revoked.
    SecretRevoked,
    /// An app was blocked.
    AppBlocked,
    /// An app was unblocked.
    AppUnblocked,
    /// A tenant's signing keys were rotated (on demand or on schedule).
    KeyRotated,
    /// A token request was refused by a rate limit.
    RateLimited,
    /// Any other management change (create, update, delete of a tenant, API, app, grant).
    ManagementChange,
}

impl AuditAction {
    /// Every action, in declaration order.
    pub const ALL: [AuditAction; 11] = [
        AuditAction::TokenIssued,
        AuditAction::TokenDenied,
        AuditAction::TokenRevoked,
        AuditAction::TokensRevoked,
        AuditAction::SecretRotated,
        AuditAction::SecretRevoked,
        AuditAction::AppBlocked,
        AuditAction::AppUnblocked,
        AuditAction::KeyRotated,
        AuditAction::RateLimited,
        AuditAction::ManagementChange,
    ];

    /// The stored name, snake_case (e.g. `token_issued`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::TokenIssued => "token_issued",
            AuditAction::TokenDenied => "token_denied",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::TokensRevoked => "tokens_revoked",
            AuditAction::SecretRotated => "secret_rotated",
            AuditAction::SecretRevoked => "secret_revoked",
            AuditAction::AppBlocked => "app_blocked",
            AuditAction::AppUnblocked => "app_unblocked",
            AuditAction::KeyRotated => "key_rotated",
            AuditAction::RateLimited => "rate_limited",
            AuditAction::ManagementChange => "management_change",
        }
    }

    /// The action stored as `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A token was issued.
    Granted,
    /// A request was refused; the event's `error` says why.
    Denied,
    /// A change or revocation was carried out.
    Ok,
}

impl Outcome {
    /// The stored name: `granted`, `denied` or `ok`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Denied => "denied",
            Outcome::Ok => "ok",
        }
    }

    /// The outcome stored as `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Outcome::Granted, Outcome::Denied, Outcome::Ok]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier recorded in an event: a tenant or credential id, client id, admin `sub`,
/// audience, scope, `jti`, trace id or resource name.
///
/// 1 to [`MAX_IDENTIFIER_LEN`] bytes of printable ASCII without spaces, never containing
/// the client-secret prefix `tgsec_` (in any case) or `$` (the separator of stored secret
/// hashes, `v1$…`). Values a client sent (a client id, an audience, scopes) are recorded
/// only if they pass: a secret pasted into the wrong field does not reach the trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(String);

impl Identifier {
    /// Checks the rule above.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "audit identifier";
        if value.is_empty() {
            return Err(InvalidValue::new(field, "must not be empty"));
        }
        if value.len() > MAX_IDENTIFIER_LEN {
            return Err(InvalidValue::new(field, "must be at most 256 bytes"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic() && b != b'$') {
            return Err(InvalidValue::new(
                field,
                "must be printable ASCII without spaces or '$'",
            ));
        }
        if looks_like_secret(value) {
            // Deliberately not echoing the value.
            return Err(InvalidValue::new(field, "looks like a client secret"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&ClientId> for Identifier {
    type Error = InvalidValue;
    fn try_from(client_id: &ClientId) -> Result<Self, InvalidValue> {
        Identifier::parse(client_id.as_str())
    }
}

impl FromStr for Identifier {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        Identifier::parse(value)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a field a management change touched (e.g. `display_name`, `grants`): a
/// lowercase letter, then up to 63 lowercase letters, digits, `_` or `.`. A name, never a
/// value: a client secret (mixed-case base64url) cannot pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(String);

impl FieldName {
    /// Checks the rule above.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let field = "audit field name";
        let mut bytes = value.bytes();
        let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok =
            bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.'));
        if !starts_with_letter || !rest_ok || value.len() > MAX_FIELD_NAME_LEN {
            return Err(InvalidValue::new(
                field,
                "must be a lowercase name: a letter, then letters, digits, '_' or '.' \
                 (at most 64)",
            ));
        }
        if looks_like_secret(value) {
            return Err(InvalidValue::new(field, "looks like a client secret"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `value` contains the client-secret prefix, in any case.
fn looks_like_secret(value: &str) -> bool {
    // Without allocating: this runs for every identifier of every token request.
    let prefix = CLIENT_SECRET_PREFIX.as_bytes();
    value
        .as_bytes()
        .windows(prefix.len())
        .any(|window| window.eq_ignore_ascii_case(prefix))
}

/// One audited event: a token request (granted, denied or rate limited), a revocation, a
/// secret or key rotation, a block, or a management change.
///
/// Fields that do not apply stay `None` or empty. Conventions: `actor` is the client id for
/// token requests and the admin token's `sub` for management; `error` is set exactly when
/// `result` is [`Outcome::Denied`]; `resource` and `changed_fields` describe management
/// changes (e.g. `app/<client id>` and `["grants", "rate_limit_per_second"]`); `count` is 1
/// unless the record aggregates refusals of one second ([`crate::DenialCounter`]: rate-limit
/// refusals, and refusals that failed client authentication).
///
/// Lists are bounded when the event becomes a row (see the module documentation): what is
/// past a list's limit is counted in its `_omitted` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The tenant's id (e.g. `ten_…`): whose chain the record joins.
    pub tenant_id: TenantId,
    /// The tenant's name at the time.
    pub tenant_name: TenantName,
    /// When it happened, in Unix milliseconds ([`crate::AuditWriter::now_ms`]).
    pub time_ms: i64,
    /// What happened.
    pub action: AuditAction,
    /// How it ended.
    pub result: Outcome,
    /// Why it was denied.
    pub error: Option<ErrorCode>,
    /// Who acted: a client id or an admin token's `sub`.
    pub actor: Option<Identifier>,
    /// The client (app) the event concerns.
    pub client_id: Option<Identifier>,
    /// The id (`sid`) of the client secret used or affected.
    pub secret_id: Option<Identifier>,
    /// The audience asked for.
    pub audience: Option<Identifier>,
    /// The scopes asked for (empty: none named), at most
    /// [`MAX_RECORDED_REQUESTED_SCOPES`] of them in the stored record.
    pub scopes_requested: Vec<Identifier>,
    /// How many more scopes were asked for than `scopes_requested` lists (or could list: a
    /// value that is no [`Identifier`] is counted here instead).
    pub scopes_requested_omitted: u32,
    /// The scopes granted, at most [`MAX_RECORDED_GRANTED_SCOPES`] in the stored record.
    pub scopes_granted: Vec<Identifier>,
    /// How many more scopes were granted than `scopes_granted` lists.
    pub scopes_granted_omitted: u32,
    /// The issued or revoked token's id.
    pub jti: Option<Identifier>,
    /// The caller's address.
    pub source: Option<IpAddr>,
    /// The protocol of the request.
    pub transport: Option<Transport>,
    /// The request's trace id.
    pub trace_id: Option<Identifier>,
    /// The resource a management change touched.
    pub resource: Option<Identifier>,
    /// The names of the fields a management change touched.
    pub changed_fields: Vec<FieldName>,
    /// How many occurrences this record stands for (at least 1).
    pub count: u32,
}

impl AuditEvent {
    /// An event with the required fields; everything else `None`, empty, and `count` 1.
    pub fn new(
        tenant_id: TenantId,
        tenant_name: TenantName,
        time_ms: i64,
        action: AuditAction,
        result: Outcome,
    ) -> Self {
        AuditEvent {
            tenant_id,
            tenant_name,
            time_ms,
            action,
            result,
            error: None,
            actor: None,
            client_id: None,
            secret_id: None,
            audience: None,
            scopes_requested: Vec::new(),
            scopes_requested_omitted: 0,
            scopes_granted: Vec::new(),
            scopes_granted_omitted: 0,
            jti: None,
            source: None,
            transport: None,
            trace_id: None,
            resource: None,
            changed_fields: Vec::new(),
            count: 1,
        }
    }

    /// Sets the requested scopes from what a request named: the first
    /// [`MAX_RECORDED_REQUESTED_SCOPES`] that can be recorded, and the number of the others.
    pub fn set_scopes_requested<'a>(&mut self, scopes: impl IntoIterator<Item = &'a str>) {
        let (listed, omitted) = bounded_identifiers(scopes, MAX_RECORDED_REQUESTED_SCOPES);
        self.scopes_requested = listed;
        self.scopes_requested_omitted = omitted;
    }

    /// Sets the granted scopes: the first [`MAX_RECORDED_GRANTED_SCOPES`], and the number
    /// of the others.
    pub fn set_scopes_granted<'a>(&mut self, scopes: impl IntoIterator<Item = &'a str>) {
        let (listed, omitted) = bounded_identifiers(scopes, MAX_RECORDED_GRANTED_SCOPES);
        self.scopes_granted = listed;
        self.scopes_granted_omitted = omitted;
    }

    /// How many scopes the request named, listed or not.
    pub fn scopes_requested_count(&self) -> u64 {
        self.scopes_requested.len() as u64 + u64::from(self.scopes_requested_omitted)
    }

    /// The stored form, not yet placed in a chain (`seq` 0, no hashes, `id` 0).
    pub fn to_row(&self) -> AuditRow {
        self.clone().into_row()
    }

    /// [`AuditEvent::to_row`], moving the texts instead of copying them (every token
    /// request's event goes through here). Lists past their limits are cut here, the cut
    /// items counted in the `+<n> more` item: this is where a record's size is bounded.
    pub fn into_row(self) -> AuditRow {
        let text = |value: Option<Identifier>| value.map(|v| v.0);
        let mut changed_fields = self.changed_fields;
        changed_fields.truncate(MAX_CHANGED_FIELDS);
        AuditRow {
            id: 0,
            tenant_id: self.tenant_id.into_string(),
            seq: 0,
            version: CHAIN_VERSION,
            time_ms: self.time_ms,
            tenant_name: self.tenant_name.as_str().to_owned(),
            action: self.action.as_str().to_owned(),
            result: self.result.as_str().to_owned(),
            error_code: self.error.map(|code| code.reason().to_owned()),
            actor: text(self.actor),
            client_id: text(self.client_id),
            secret_id: text(self.secret_id),
            audience: text(self.audience),
            scopes_requested: bounded_texts(
                self.scopes_requested,
                self.scopes_requested_omitted,
                MAX_RECORDED_REQUESTED_SCOPES,
            ),
            scopes_granted: bounded_texts(
                self.scopes_granted,
                self.scopes_granted_omitted,
                MAX_RECORDED_GRANTED_SCOPES,
            ),
            jti: text(self.jti),
            source: self.source.map(|address| address.to_string()),
            transport: self.transport.map(|t| t.as_str().to_owned()),
            trace_id: text(self.trace_id),
            resource: text(self.resource),
            changed_fields: changed_fields.into_iter().map(|name| name.0).collect(),
            count: i64::from(self.count),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// The first `limit` values that are [`Identifier`]s, and how many others there were.
fn bounded_identifiers<'a>(
    values: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> (Vec<Identifier>, u32) {
    let mut listed = Vec::new();
    let mut omitted = 0u32;
    for value in values {
        match Identifier::parse(value) {
            Ok(identifier) if listed.len() < limit => listed.push(identifier),
            _ => omitted = omitted.saturating_add(1),
        }
    }
    (listed, omitted)
}

/// A list as stored: at most `limit` items, then `+<n> more` if any were left out.
fn bounded_texts(values: Vec<Identifier>, omitted: u32, limit: usize) -> Vec<String> {
    let cut = u32::try_from(values.len().saturating_sub(limit)).unwrap_or(u32::MAX);
    let omitted = omitted.saturating_add(cut);
    let mut texts: Vec<String> = values.into_iter().take(limit).map(|v| v.0).collect();
    if omitted > 0 {
        texts.push(omitted_item(omitted));
    }
    texts
}

/// The stored item counting `n` scopes a list leaves out.
fn omitted_item(n: u32) -> String {
    format!("+{n} more")
}

/// The number an item written by [`omitted_item`] counts, if it is one.
fn parse_omitted_item(item: &str) -> Option<u32> {
    let digits = item.strip_prefix('+')?.strip_suffix(" more")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// A stored event read back: the event and its place in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The global position (the cursor across tenants).
    pub id: i64,
    /// The position in the tenant's chain (the cursor within a tenant).
    pub seq: i64,
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// What it records.
    pub event: AuditEvent,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = AuditError;

    /// Parses every field back; a value no event could have produced is
    /// [`AuditError::Corrupt`], naming the record. (The chain does not need this to
    /// verify: it hashes the stored text.)
    fn try_from(row: AuditRow) -> Result<Self, AuditError> {
        let corrupt = |reason: String| AuditError::Corrupt {
            tenant_id: row.tenant_id.clone(),
            seq: row.seq,
            reason,
        };
        let ident = |value: &str| Identifier::parse(value).map_err(|e| corrupt(e.to_string()));
        let opt = |value: &Option<String>| value.as_deref().map(ident).transpose();
        // A list of identifiers, and the `+<n> more` item that may end it.
        let scope_list = |values: &[String]| {
            let (listed, omitted) = match values.split_last() {
                Some((last, rest)) => match parse_omitted_item(last) {
                    Some(n) => (rest, n),
                    None => (values, 0),
                },
                None => (values, 0),
            };
            listed
                .iter()
                .map(|v| ident(v))
                .collect::<Result<Vec<_>, _>>()
                .map(|listed| (listed, omitted))
        };
        let (scopes_requested, scopes_requested_omitted) = scope_list(&row.scopes_requested)?;
        let (scopes_granted, scopes_granted_omitted) = scope_list(&row.scopes_granted)?;
        let event = AuditEvent {
            // Checked as every other stored text is, then kept as the id it is.
            tenant_id: TenantId::from(ident(&row.tenant_id)?.0),
            tenant_name: TenantName::parse(&row.tenant_name).map_err(|e| corrupt(e.to_string()))?,
            time_ms: row.time_ms,
            action: AuditAction::parse(&row.action)
                .ok_or_else(|| corrupt(format!("unknown action {:?}", row.action)))?,
            result: Outcome::parse(&row.result)
                .ok_or_else(|| corrupt(format!("unknown result {:?}", row.result)))?,
            error: row
                .error_code
                .as_deref()
                .map(|reason| {
                    let code = ErrorCode::from_reason(reason);
                    // `from_reason` maps anything unknown to Internal; only a true round
                    // trip is a stored code.
                    (code.reason() == reason)
                        .then_some(code)
                        .ok_or_else(|| corrupt(format!("unknown error code {reason:?}")))
                })
                .transpose()?,
            actor: opt(&row.actor)?,
            client_id: opt(&row.client_id)?,
            secret_id: opt(&row.secret_id)?,
            audience: opt(&row.audience)?,
            scopes_requested,
            scopes_requested_omitted,
            scopes_granted,
            scopes_granted_omitted,
            jti: opt(&row.jti)?,
            source: row
                .source
                .as_deref()
                .map(|s| IpAddr::from_str(s).map_err(|_| corrupt("invalid source".to_owned())))
                .transpose()?,
            transport: row
                .transport
                .as_deref()
                .map(|t| {
                    Transport::parse(t).ok_or_else(|| corrupt(format!("unknown transport {t:?}")))
                })
                .transpose()?,
            trace_id: opt(&row.trace_id)?,
            resource: opt(&row.resource)?,
            changed_fields: row
                .changed_fields
                .iter()
                .map(|name| FieldName::parse(name).map_err(|e| corrupt(e.to_string())))
                .collect::<Result<_, _>>()?,
            count: u32::try_from(row.count)
                .map_err(|_| corrupt(format!("invalid count {}", row.count)))?,
        };
        Ok(AuditRecord {
            id: row.id,
            seq: row.seq,
            prev_hash: row.prev_hash,
            hash: row.hash,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_event() -> Result<AuditEvent, InvalidValue> {
        let mut event = AuditEvent::new(
            TenantId::new("ten_1"),
            TenantName::parse("acme")?,
            1_700_000_000_123,
            AuditAction::TokenDenied,
            Outcome::Denied,
        );
        event.error = Some(ErrorCode::InvalidScope);
        event.actor = Some(Identifier::parse("client-1")?);
        event.client_id = Some(Identifier::parse("client-1")?);
        event.secret_id = Some(Identifier::parse("sec_1")?);
        event.audience = Some(Identifier::parse("https://api.example/")?);
        event.scopes_requested = vec![Identifier::parse("read")?, Identifier::parse("admin")?];
        event.scopes_granted = vec![Identifier::parse("read")?];
        event.jti = Some(Identifier::parse("jti_1")?);
        event.source = Some(IpAddr::from([192, 0, 2, 7]));
        event.transport = Some(Transport::Http);
        event.trace_id = Some(Identifier::parse("4bf92f3577b34da6a3ce929d0e0e4736")?);
        event.resource = Some(Identifier::parse("app/client-1")?);
        event.changed_fields = vec![FieldName::parse("rate_limit_per_second")?];
        event.count = 3;
        Ok(event)
    }

    #[test]
    fn names_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("TokenIssued"), None);
        for outcome in [Outcome::Granted, Outcome::Denied, Outcome::Ok] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        for transport in [Transport::Http, Transport::Grpc] {
            assert_eq!(Transport::parse(transport.as_str()), Some(transport));
        }
    }

    #[test]
    fn identifiers_refuse_secrets_and_hashes() {
        assert!(Identifier::parse("client_1.a~b-c").is_ok());
        assert!(Identifier::parse("https://api.example/path?x=1").is_ok());
        for bad in [
            "",
            "has space",
            "tab\t",
            "é",
            "tgsec_8lQ0c3VwZXJzZWNyZXQ",
            "xxTGSEC_abc",
            "v1$AAAA",
        ] {
            assert!(Identifier::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Identifier::parse(&"a".repeat(256)).is_ok());
        assert!(Identifier::parse(&"a".repeat(257)).is_err());
        let secret = "tgsec_DoNotEchoMe";
        let message = Identifier::parse(secret)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!message.contains("DoNotEchoMe"), "{message}");
        let client = ClientId::parse("tgsec_pasted-secret").ok();
        assert!(client.is_some_and(|c| Identifier::try_from(&c).is_err()));
    }

    #[test]
    fn field_names_are_names() {
        for good in ["display_name", "grants", "rate_limit_per_second", "a.b2"] {
            assert!(FieldName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Name",
            "_x",
            "2x",
            "x y",
            "tgsec_abc",
            "secret=abc",
            &"a".repeat(65),
        ] {
            assert!(FieldName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let event = full_event()?;
        let mut row = event.to_row();
        assert_eq!(row.action, "token_denied");
        assert_eq!(row.result, "denied");
        assert_eq!(row.error_code.as_deref(), Some("invalid_scope"));
        assert_eq!(row.source.as_deref(), Some("192.0.2.7"));
        assert_eq!(row.version, CHAIN_VERSION);
        row.id = 7;
        row.seq = 3;
        let record = AuditRecord::try_from(row.clone())?;
        assert_eq!((record.id, record.seq), (7, 3));
        assert_eq!(record.event, event);

        let minimal = AuditEvent::new(
            TenantId::new("ten_1"),
            TenantName::parse("acme")?,
            1,
            AuditAction::KeyRotated,
            Outcome::Ok,
        );
        assert_eq!(
            AuditRecord::try_from(minimal.to_row())?.event,
            minimal,
            "an event without optional fields"
        );
        Ok(())
    }

    #[test]
    fn lists_are_bounded_and_what_is_cut_is_counted() -> Result<(), Box<dyn std::error::Error>> {
        let mut event = full_event()?;
        let many: Vec<String> = (0..1_000).map(|n| format!("scope:{n}")).collect();
        event.set_scopes_requested(
            many.iter()
                .map(String::as_str)
                .chain(["tgsec_pasted", "has space"]),
        );
        assert_eq!(event.scopes_requested.len(), MAX_RECORDED_REQUESTED_SCOPES);
        assert_eq!(event.scopes_requested_omitted, 994);
        assert_eq!(event.scopes_requested_count(), 1_002);
        event.set_scopes_granted(many.iter().map(String::as_str));
        assert_eq!(event.scopes_granted_omitted, 936);
        // Set directly, past the limit: cut when stored, and counted.
        event.changed_fields = (0..100)
            .map(|n| FieldName::parse(&format!("f{n}")))
            .collect::<Result<_, _>>()?;
        let row = event.to_row();
        assert_eq!(
            row.scopes_requested.len(),
            MAX_RECORDED_REQUESTED_SCOPES + 1
        );
        assert_eq!(row.scopes_requested[0], "scope:0");
        assert_eq!(
            row.scopes_requested.last().map(String::as_str),
            Some("+994 more")
        );
        assert_eq!(
            row.scopes_granted.last().map(String::as_str),
            Some("+936 more")
        );
        assert_eq!(row.changed_fields.len(), MAX_CHANGED_FIELDS);
        let back = AuditRecord::try_from(row)?.event;
        assert_eq!(back.scopes_requested, event.scopes_requested);
        assert_eq!(back.scopes_requested_omitted, 994);
        assert_eq!(back.scopes_granted_omitted, 936);

        let mut direct = full_event()?;
        direct.scopes_requested = (0..20)
            .map(|n| Identifier::parse(&format!("s{n}")))
            .collect::<Result<_, _>>()?;
        direct.scopes_requested_omitted = 5;
        let row = direct.to_row();
        assert_eq!(
            row.scopes_requested.last().map(String::as_str),
            Some("+17 more")
        );
        Ok(())
    }

    #[test]
    fn the_largest_event_fits_the_bound() -> Result<(), Box<dyn std::error::Error>> {
        let long = |c: char| Identifier::parse(&c.to_string().repeat(MAX_IDENTIFIER_LEN));
        let mut event = AuditEvent::new(
            TenantId::new(long('t')?.as_str()),
            TenantName::parse(&"n".repeat(TenantName::MAX_LEN))?,
            i64::MAX,
            AuditAction::ManagementChange,
            Outcome::Denied,
        );
        event.error = Some(ErrorCode::UnsupportedGrantType);
        for field in [
            &mut event.actor,
            &mut event.client_id,
            &mut event.secret_id,
            &mut event.audience,
            &mut event.jti,
            &mut event.trace_id,
            &mut event.resource,
        ] {
            *field = Some(long('v')?);
        }
        let scopes = vec![long('s')?; 10_000];
        event.scopes_requested = scopes.clone();
        event.scopes_requested_omitted = u32::MAX;
        event.scopes_granted = scopes;
        event.scopes_granted_omitted = u32::MAX;
        event.changed_fields = vec![FieldName::parse(&"f".repeat(MAX_FIELD_NAME_LEN))?; 1_000];
        event.source = Some(IpAddr::from([0xffff_u16; 8]));
        event.transport = Some(Transport::Http);
        let row = event.into_row();
        let list = |v: &[String]| v.iter().map(String::len).sum::<usize>();
        let text = row.tenant_id.len()
            + row.tenant_name.len()
            + row.action.len()
            + row.result.len()
            + row
                .optional_texts()
                .into_iter()
                .flatten()
                .map(str::len)
                .sum::<usize>()
            + list(&row.scopes_requested)
            + list(&row.scopes_granted)
            + list(&row.changed_fields);
        assert!(
            text <= MAX_EVENT_TEXT_BYTES,
            "{text} > {MAX_EVENT_TEXT_BYTES}"
        );
        // Clamped a little under it, not wildly: the bound is real, not decorative.
        assert!(text > MAX_EVENT_TEXT_BYTES - 512, "{text}");
        Ok(())
    }

    #[test]
    fn corrupt_rows_name_the_record() -> Result<(), Box<dyn std::error::Error>> {
        let mut row = full_event()?.to_row();
        row.seq = 9;
        let bad_rows = [
            AuditRow {
                action: "token_stolen".into(),
                ..row.clone()
            },
            AuditRow {
                result: "maybe".into(),
                ..row.clone()
            },
            AuditRow {
                error_code: Some("oops".into()),
                ..row.clone()
            },
            AuditRow {
                client_id: Some("tgsec_x".into()),
                ..row.clone()
            },
            AuditRow {
                source: Some("nowhere".into()),
                ..row.clone()
            },
            AuditRow {
                transport: Some("smtp".into()),
                ..row.clone()
            },
            AuditRow {
                changed_fields: vec!["New Value".into()],
                ..row.clone()
            },
            AuditRow {
                count: -1,
                ..row.clone()
            },
        ];
        for bad in bad_rows {
            match AuditRecord::try_from(bad) {
                Err(AuditError::Corrupt { tenant_id, seq, .. }) => {
                    assert_eq!((tenant_id.as_str(), seq), ("ten_1", 9));
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        Ok(())
    }
}
