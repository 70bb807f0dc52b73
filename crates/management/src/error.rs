//! [`ManageError`]: why a management call failed, each variant an outcome with the values it
//! names, never free text. The messages are what clients read, so each one is fixed here,
//! once, and pinned by the tests below.

use std::fmt;

use tollgate_catalog::{InactiveToken, RevocationError};
use tollgate_domain::{ClientId, InvalidValue, Scope, TenantName};
use tollgate_keys::KeyError;
use tollgate_store::StoreError;

/// Why a management call failed. Messages are lowercase, name the entity and are safe to
/// return; internal causes are kept as sources for the log.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// Malformed input; names the field.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// No, malformed, expired or foreign admin token.
    #[error("{0}")]
    Unauthenticated(AdminTokenRefusal),
    /// The admin token lacks a scope or targets another tenant.
    #[error("{0}")]
    PermissionDenied(Denial),
    /// The named resource does not exist.
    #[error("{entity} {name} not found")]
    NotFound {
        /// What kind of resource.
        entity: Entity,
        /// Its name, identifier or id, as the caller gave it.
        name: String,
    },
    /// The tenant an audit stream followed is gone (deleted, its name perhaps taken again).
    #[error("the tenant whose audit events this stream followed not found")]
    FollowedTenantGone,
    /// Name or identifier taken.
    #[error("{entity} {name} already exists")]
    AlreadyExists {
        /// What kind of resource.
        entity: Entity,
        /// The name or identifier taken.
        name: String,
    },
    /// Not allowed in this state (built-in resources, limits).
    #[error("{0}")]
    FailedPrecondition(Precondition),
    /// The store failed.
    #[error("storage unavailable")]
    Store(#[source] StoreError),
    /// Key generation or randomness failed.
    #[error("key material unavailable")]
    Keys(#[from] KeyError),
    /// A revocation could not be recorded, or an admin token's revocation not checked.
    #[error("revocation unavailable")]
    Revocation(#[from] RevocationError),
}

impl ManageError {
    /// Maps a store error, naming the `entity` called `name` where the store's answer is
    /// about it.
    pub(crate) fn from_store(error: StoreError, entity: Entity, name: impl fmt::Display) -> Self {
        match error {
            StoreError::AlreadyExists { .. } => ManageError::AlreadyExists {
                entity,
                name: name.to_string(),
            },
            StoreError::NotFound { .. } => ManageError::not_found(entity, name),
            other => ManageError::Store(other),
        }
    }

    /// The `entity` called `name` does not exist.
    pub(crate) fn not_found(entity: Entity, name: impl fmt::Display) -> Self {
        ManageError::NotFound {
            entity,
            name: name.to_string(),
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(error: StoreError) -> Self {
        ManageError::Store(error)
    }
}

/// The kinds of resource management names in its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A tenant, by name.
    Tenant,
    /// An API, by identifier.
    Api,
    /// An app, by client id.
    App,
    /// A client secret, by id.
    Secret,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Tenant => "tenant",
            Entity::Api => "api",
            Entity::App => "app",
            Entity::Secret => "secret",
        })
    }
}

/// Why an admin token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenRefusal {
    /// No bearer token at all.
    #[error("missing admin token: send authorization: Bearer <token>")]
    Missing,
    /// Not a compact JWS with an `iss`.
    #[error("admin token rejected: malformed token")]
    Malformed,
    /// Its `iss` names no tenant this server serves.
    #[error("admin token rejected: unknown issuer")]
    UnknownIssuer,
    /// The tenant's check of its own tokens refused it (signature, lifetime, tenant,
    /// revocation, the app behind it).
    #[error("admin token rejected: {0}")]
    Inactive(#[from] InactiveToken),
    /// Its `scp` holds something that is not a scope.
    #[error("admin token rejected: malformed scopes")]
    MalformedScopes,
    /// The tenant's view could not be built (a stored key cannot be opened), so no token of
    /// it can be checked now.
    #[error("admin token cannot be checked now")]
    Uncheckable,
}

/// Why an authenticated admin may not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum Denial {
    /// The token's tenant is not `system` and not the tenant acted on.
    #[error("an admin token of tenant {tenant} cannot act on tenant {target}")]
    OtherTenant {
        /// The token's tenant.
        tenant: TenantName,
        /// The tenant acted on.
        target: TenantName,
    },
    /// The token lacks a scope the call needs.
    #[error("the admin token lacks the scope {0}")]
    LacksScope(String),
    /// A grant would give a management scope the token lacks.
    #[error("the admin token cannot grant the scope {0}, which it lacks")]
    CannotGrant(Scope),
    /// The app to change holds a management scope the token lacks.
    #[error("app {client_id} holds the scope {scope}, which the admin token lacks")]
    AppHoldsMore {
        /// The app.
        client_id: ClientId,
        /// The first scope it holds that the token lacks.
        scope: Scope,
    },
    /// The built-in Management API changes only for an admin holding all its scopes.
    #[error(
        "the built-in Management API can be changed only by an admin holding all its scopes; the admin token lacks {0}"
    )]
    BuiltInApiNeedsAllScopes(Scope),
    /// Tenants are managed by the system tenant's admins only.
    #[error("only the system tenant's admins manage tenants")]
    SystemOnly,
    /// A tenant's admin reads its own tenant's audit events only.
    #[error(
        "an admin token of tenant {0} reads its own tenant's audit events only: name the tenant"
    )]
    OwnAuditOnly(TenantName),
}

/// What the current state does not allow.
#[derive(Debug, thiserror::Error)]
pub enum Precondition {
    /// The system tenant is permanent.
    #[error("the system tenant cannot be deleted")]
    SystemTenantUndeletable,
    /// The blocking task generating a key was cancelled.
    #[error("key generation was interrupted")]
    KeyGenerationInterrupted,
    /// The built-in Management API's scopes and algorithm are fixed.
    #[error("the scopes and algorithm of the built-in Management API cannot change")]
    BuiltInApiFixed,
    /// The built-in Management API is permanent.
    #[error("the built-in Management API cannot be deleted")]
    BuiltInApiUndeletable,
    /// The built-in admin app cannot be blocked and its grants are fixed.
    #[error("the built-in admin app cannot be blocked or have its grants changed")]
    BuiltInAppFixed,
    /// The built-in admin app is permanent.
    #[error("the built-in admin app cannot be deleted")]
    BuiltInAppUndeletable,
    /// The app already has as many live secrets as it may.
    #[error("app {client_id} already has {live} live secrets; revoke one first")]
    TooManySecrets {
        /// The app.
        client_id: ClientId,
        /// How many live secrets it has (the most allowed).
        live: usize,
    },
}

#[cfg(test)]
mod tests {
    //! The exact messages clients read: the same bytes as before the variants were typed.

    use tollgate_verify::VerifyError;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn messages_are_unchanged() -> TestResult {
        let acme = TenantName::parse("acme")?;
        let app = ClientId::parse("app1")?;
        let scope = Scope::parse("apps:write")?;
        let expired = format!("admin token rejected: {}", VerifyError::Expired);
        let cases: Vec<(ManageError, &str)> = vec![
            (
                ManageError::not_found(Entity::Tenant, &acme),
                "tenant acme not found",
            ),
            (
                ManageError::not_found(Entity::Api, "https://archive.example.com/"),
                "api https://archive.example.com/ not found",
            ),
            (
                ManageError::not_found(Entity::App, &app),
                "app app1 not found",
            ),
            (
                ManageError::not_found(Entity::Secret, "sec_1"),
                "secret sec_1 not found",
            ),
            (
                ManageError::FollowedTenantGone,
                "the tenant whose audit events this stream followed not found",
            ),
            (
                ManageError::from_store(
                    StoreError::AlreadyExists { entity: "app" },
                    Entity::App,
                    &app,
                ),
                "app app1 already exists",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::Missing),
                "missing admin token: send authorization: Bearer <token>",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::Malformed),
                "admin token rejected: malformed token",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::UnknownIssuer),
                "admin token rejected: unknown issuer",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::Inactive(InactiveToken::Revoked)),
                "admin token rejected: token has been revoked",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::Inactive(InactiveToken::Invalid(
                    VerifyError::Expired,
                ))),
                &expired,
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::MalformedScopes),
                "admin token rejected: malformed scopes",
            ),
            (
                ManageError::Unauthenticated(AdminTokenRefusal::Uncheckable),
                "admin token cannot be checked now",
            ),
            (
                ManageError::PermissionDenied(Denial::OtherTenant {
                    tenant: acme.clone(),
                    target: TenantName::parse("globex")?,
                }),
                "an admin token of tenant acme cannot act on tenant globex",
            ),
            (
                ManageError::PermissionDenied(Denial::LacksScope("keys:write".to_owned())),
                "the admin token lacks the scope keys:write",
            ),
            (
                ManageError::PermissionDenied(Denial::CannotGrant(scope.clone())),
                "the admin token cannot grant the scope apps:write, which it lacks",
            ),
            (
                ManageError::PermissionDenied(Denial::AppHoldsMore {
                    client_id: app.clone(),
                    scope: scope.clone(),
                }),
                "app app1 holds the scope apps:write, which the admin token lacks",
            ),
            (
                ManageError::PermissionDenied(Denial::BuiltInApiNeedsAllScopes(scope)),
                "the built-in Management API can be changed only by an admin holding all its scopes; the admin token lacks apps:write",
            ),
            (
                ManageError::PermissionDenied(Denial::SystemOnly),
                "only the system tenant's admins manage tenants",
            ),
            (
                ManageError::PermissionDenied(Denial::OwnAuditOnly(acme)),
                "an admin token of tenant acme reads its own tenant's audit events only: name the tenant",
            ),
            (
                ManageError::FailedPrecondition(Precondition::SystemTenantUndeletable),
                "the system tenant cannot be deleted",
            ),
            (
                ManageError::FailedPrecondition(Precondition::KeyGenerationInterrupted),
                "key generation was interrupted",
            ),
            (
                ManageError::FailedPrecondition(Precondition::BuiltInApiFixed),
                "the scopes and algorithm of the built-in Management API cannot change",
            ),
            (
                ManageError::FailedPrecondition(Precondition::BuiltInApiUndeletable),
                "the built-in Management API cannot be deleted",
            ),
            (
                ManageError::FailedPrecondition(Precondition::BuiltInAppFixed),
                "the built-in admin app cannot be blocked or have its grants changed",
            ),
            (
                ManageError::FailedPrecondition(Precondition::BuiltInAppUndeletable),
                "the built-in admin app cannot be deleted",
            ),
            (
                ManageError::FailedPrecondition(Precondition::TooManySecrets {
                    client_id: app,
                    live: 2,
                }),
                "app app1 already has 2 live secrets; revoke one first",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected, "{error:?}");
        }
        Ok(())
    }
}
