//! How management changes are recorded: one [`ChangeEvents`] per change, committed by the
//! change's own store transaction (so a change is never stored unrecorded).
//!
//! Invariant: a change event names the fields a change touched, never their values, and no
//! secret or hash of one (the event types refuse them anyway).

use tollgate_audit::{AuditAction, AuditEvent, ChangeEvents, FieldName, Identifier, Outcome};
use tollgate_store::TenantRecord;

use crate::ManageError;
use crate::auth::Principal;

/// The actor of changes the server makes on its own schedule (key rotation and removal).
pub const SCHEDULER_ACTOR: &str = "tollgate:scheduler";

/// The actor of the first start's creation of the system tenant.
pub const BOOTSTRAP_ACTOR: &str = "tollgate:bootstrap";

/// Who made a change: an admin token's subject, or the server itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    /// An admin, by its token.
    Admin(&'a Principal),
    /// The server itself: [`SCHEDULER_ACTOR`] or [`BOOTSTRAP_ACTOR`].
    Server(&'static str),
}

impl Actor<'_> {
    fn subject(&self) -> &str {
        match self {
            Actor::Admin(principal) => &principal.subject,
            Actor::Server(name) => name,
        }
    }
}

/// A change event under construction.
pub(crate) struct Change {
    event: AuditEvent,
}

impl Change {
    /// `actor` did `action` to `resource` (e.g. `app/<client id>`) of `tenant`, at `time_ms`
    /// (Unix milliseconds of the service's clock).
    pub(crate) fn new(
        time_ms: i64,
        actor: Actor<'_>,
        tenant: &TenantRecord,
        action: AuditAction,
        resource: &str,
    ) -> Result<Self, ManageError> {
        // The id heads the tenant's audit chain: one a record could not hold is corrupt.
        Identifier::parse(tenant.id.as_str()).map_err(|error| {
            ManageError::Store(tollgate_store::StoreError::Corrupt {
                entity: "tenant",
                reason: error.to_string(),
            })
        })?;
        let mut event = AuditEvent::new(
            tenant.id.clone(),
            tenant.name.clone(),
            time_ms,
            action,
            Outcome::Ok,
        );
        event.actor = Identifier::parse(actor.subject()).ok();
        // A resource name too long (or odd) to record is left out rather than failing the
        // change: the action, actor and changed fields still say what happened.
        event.resource = Identifier::parse(resource).ok();
        Ok(Self { event })
    }

    /// Names the fields the change touched.
    pub(crate) fn fields<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.event.changed_fields = names
            .into_iter()
            .filter_map(|name| FieldName::parse(name).ok())
            .collect();
        self
    }

    /// The app the change concerns.
    pub(crate) fn client(mut self, client_id: &str) -> Self {
        self.event.client_id = Identifier::parse(client_id).ok();
        self
    }

    /// The client secret the change concerns.
    pub(crate) fn secret(mut self, secret_id: &str) -> Self {
        self.event.secret_id = Identifier::parse(secret_id).ok();
        self
    }

    /// The token the change concerns.
    pub(crate) fn jti(mut self, jti: &str) -> Self {
        self.event.jti = Identifier::parse(jti).ok();
        self
    }

    /// The event alone.
    pub(crate) fn event(self) -> AuditEvent {
        self.event
    }

    /// Ready for the store.
    pub(crate) fn done(self) -> ChangeEvents {
        ChangeEvents::one(self.event)
    }
}

/// The names of `fields` whose flag is set: `changed(&[("name", old != new), …])`.
pub(crate) fn changed<'a>(fields: &[(&'a str, bool)]) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(_, is_changed)| *is_changed)
        .map(|(name, _)| *name)
        .collect()
}
