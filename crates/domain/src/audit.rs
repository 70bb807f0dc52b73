//! What the audit trail's read side hands back: an event in the text form its hash covers
//! ([`RecordedEvent`]), its position ([`AuditEntry`]), and the outcome of verifying a chain
//! ([`ChainCheck`]). The hashing and the verification themselves are the audit crate's.

/// One audit event as recorded: its fields in their stored text form (the text its hash
/// covers) and its place in its tenant's chain. Texts, not parsed values (ids, client ids,
/// scopes): an event is verified exactly as it reads, whatever it holds, and an export
/// verified offline may hold anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedEvent {
    /// The global position: gap-free and increasing in commit order across all tenants.
    pub id: i64,
    /// The tenant's id, as recorded.
    pub tenant_id: String,
    /// The position in the tenant's chain: 1, 2, 3, …
    pub seq: i64,
    /// The version of the hash's canonical serialization.
    pub version: i32,
    /// When the event happened, in Unix milliseconds.
    pub time_ms: i64,
    /// The tenant's name at the time.
    pub tenant_name: String,
    /// What happened, e.g. `token_issued`.
    pub action: String,
    /// `granted`, `denied` or `ok`.
    pub result: String,
    /// The error code's reason (e.g. `invalid_client`) when the action failed.
    pub error_code: Option<String>,
    /// Who acted: a client id, or an admin token's `sub`.
    pub actor: Option<String>,
    /// The client the event concerns.
    pub client_id: Option<String>,
    /// The client secret's id (`sid`) involved.
    pub secret_id: Option<String>,
    /// The requested audience (API identifier).
    pub audience: Option<String>,
    /// The scopes asked for.
    pub scopes_requested: Vec<String>,
    /// The scopes granted.
    pub scopes_granted: Vec<String>,
    /// The token's id.
    pub jti: Option<String>,
    /// The caller's address.
    pub source: Option<String>,
    /// `http` or `grpc`.
    pub transport: Option<String>,
    /// The request's trace id.
    pub trace_id: Option<String>,
    /// The resource a management change touched, e.g. `app/<client id>`.
    pub resource: Option<String>,
    /// The names (never the values) of the fields a management change touched.
    pub changed_fields: Vec<String>,
    /// How many occurrences the event stands for (more than 1 for aggregated events).
    pub count: i64,
    /// The previous event's `hash` (for the first, the chain's genesis value).
    pub prev_hash: String,
    /// This event's hash, lowercase hex.
    pub hash: String,
}

impl RecordedEvent {
    /// The ten optional text fields (`error_code`, `actor`, `client_id`, `secret_id`,
    /// `audience`, `jti`, `source`, `transport`, `trace_id`, `resource`), `None` where unset:
    /// with the required texts and the three lists, every text an event stores.
    pub fn optional_texts(&self) -> [Option<&str>; 10] {
        [
            self.error_code.as_deref(),
            self.actor.as_deref(),
            self.client_id.as_deref(),
            self.secret_id.as_deref(),
            self.audience.as_deref(),
            self.jti.as_deref(),
            self.source.as_deref(),
            self.transport.as_deref(),
            self.trace_id.as_deref(),
            self.resource.as_deref(),
        ]
    }
}

/// One event and its position in the listing or tail it was read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The event as recorded.
    pub event: RecordedEvent,
    /// Its position as a cursor: pass it as `after` to continue after it.
    pub cursor: String,
    /// `Some(stored size)` when the event was too large to return whole and was elided:
    /// its content no longer matches its hash.
    pub elided_bytes: Option<u64>,
}

/// The outcome of verifying a tenant's hash chain (or an export of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    /// How many events verified.
    pub checked: u64,
    /// The oldest verified event's `seq`.
    pub first_seq: Option<i64>,
    /// The newest verified event's `seq`.
    pub last_seq: Option<i64>,
    /// The `seq` of the chain's head when verification started; `None` when unknown (an
    /// export carries no head) or the chain is empty.
    pub head_seq: Option<i64>,
    /// `Ok`, or the first break.
    pub outcome: Result<(), ChainBreakAt>,
}

/// Where a chain stops verifying, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreakAt {
    /// The `seq` of the first event that does not verify (for events missing at the end,
    /// the first missing `seq`).
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}
