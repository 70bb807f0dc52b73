//! Who is calling, and what they may do.

use tollgate_catalog::{CatalogError, InactiveToken, verify_own_token};
use tollgate_domain::{Scope, ScopeSet, TenantName};
use tollgate_verify::{VerifyError, unverified_claim};

use crate::error::{AdminTokenRefusal, Denial};
use crate::{ManageError, Management};

/// The scopes of every tenant's Management API.
pub const MANAGEMENT_SCOPES: [(&str, &str); 8] = [
    ("apis:read", "Read APIs"),
    ("apis:write", "Create, update and delete APIs"),
    ("apps:read", "Read apps and their grants"),
    (
        "apps:write",
        "Create, update, block and delete apps and their grants",
    ),
    ("keys:read", "Read signing keys"),
    ("keys:write", "Rotate signing keys"),
    ("tokens:revoke", "Revoke outstanding tokens"),
    ("audit:read", "Read, follow and verify the audit trail"),
];

/// The extra scopes of the `system` tenant's Management API.
pub const SYSTEM_ONLY_SCOPES: [(&str, &str); 2] = [
    ("tenants:read", "Read tenants"),
    ("tenants:write", "Create, update and delete tenants"),
];

/// A verified admin: the app that holds a valid Management API token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant whose Management API the token is for.
    pub tenant: TenantName,
    /// The token's `sub`, for audit.
    pub subject: String,
    /// The token's scopes.
    pub scopes: ScopeSet,
}

impl Principal {
    /// Checks that this principal may use `scope` on `target`.
    pub(crate) fn require(&self, target: &TenantName, scope: &str) -> Result<(), ManageError> {
        if !self.tenant.is_system() && self.tenant != *target {
            return Err(ManageError::PermissionDenied(Denial::OtherTenant {
                tenant: self.tenant.clone(),
                target: target.clone(),
            }));
        }
        self.require_scope(scope)
    }

    /// Checks that this principal holds `scope`.
    pub(crate) fn require_scope(&self, scope: &str) -> Result<(), ManageError> {
        if self.scopes.iter().any(|held| held.as_str() == scope) {
            Ok(())
        } else {
            Err(ManageError::PermissionDenied(Denial::LacksScope(
                scope.to_owned(),
            )))
        }
    }

    /// Checks that this principal holds every scope of `scopes`: the management scopes an app
    /// would receive, or already holds when the principal is about to change it. Nobody hands
    /// out, takes away or takes over more than they hold. `refusal` names the answer for the
    /// first scope missing.
    pub(crate) fn require_held(
        &self,
        scopes: &ScopeSet,
        refusal: impl FnOnce(Scope) -> Denial,
    ) -> Result<(), ManageError> {
        match scopes.first_missing_from(&self.scopes) {
            Some(missing) => Err(ManageError::PermissionDenied(refusal(missing.clone()))),
            None => Ok(()),
        }
    }

    /// Checks that this is a `system` admin holding `scope`.
    pub(crate) fn require_system(&self, scope: &str) -> Result<(), ManageError> {
        if !self.tenant.is_system() {
            return Err(ManageError::PermissionDenied(Denial::SystemOnly));
        }
        self.require_scope(scope)
    }
}

impl Management {
    /// Verifies an admin bearer token (the value after `Bearer `) and returns its principal.
    ///
    /// The tenant is read from the token's unverified `iss`, only to pick whose keys to check
    /// it with; then, against that tenant's live catalog view: the signature, `iss`, `aud`
    /// (`<issuer>manage`), `typ`, `exp` and `nbf` with no leeway, `cid`, revocation, and the
    /// app behind it: it must still exist, not be blocked, and still have the secret that
    /// obtained the token (`sid`). The principal's scopes are the token's scopes that the app
    /// still holds on the Management API, so a narrowed grant narrows every token at once.
    /// Every instance sees a change within about a second (the catalog's invalidation).
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, ManageError> {
        let token = bearer.ok_or(ManageError::Unauthenticated(AdminTokenRefusal::Missing))?;
        let refused = ManageError::Unauthenticated;
        let issuer = unverified_claim(token, "iss").ok_or(refused(AdminTokenRefusal::Malformed))?;
        let tenant = self
            .issuer_template
            .tenant_of_issuer(&issuer)
            .ok_or(refused(AdminTokenRefusal::UnknownIssuer))?;
        let view = self
            .catalog
            .tenant(&tenant)
            .await
            .map_err(|error| {
                tracing::error!(%tenant, error = %error, "cannot load tenant to check an admin token");
                // The token may be fine: the caller is told to retry (UNAVAILABLE), not that
                // its token is bad.
                match error {
                    CatalogError::Store(error) => ManageError::Store(error),
                    _ => refused(AdminTokenRefusal::Uncheckable),
                }
            })?
            .ok_or(refused(AdminTokenRefusal::UnknownIssuer))?;
        let now = self.clock.now();
        let active = verify_own_token(
            &view,
            &self.revocations,
            token,
            Some(&view.management_audience),
            now,
        )
        .await
        .map_err(|error| {
            tracing::error!(error = %error, "cannot check an admin token's revocation");
            // Fail closed, as UNAVAILABLE: the check, not the token, failed.
            ManageError::Revocation(error)
        })?
        .map_err(|inactive| refused(AdminTokenRefusal::Inactive(inactive)))?;
        // Checked for the Management API's audience, an active token has its live app.
        let (claims, app) = match active.admin_app {
            Some(app) => (active.claims, app),
            None => {
                let wrong = InactiveToken::Invalid(VerifyError::WrongAudience);
                return Err(refused(AdminTokenRefusal::Inactive(wrong)));
            }
        };
        let held = view
            .granted_scopes(app, &view.management_audience)
            .unwrap_or_default();
        let presented = ScopeSet::parse_all(claims.scp.iter().map(String::as_str))
            .map_err(|_| refused(AdminTokenRefusal::MalformedScopes))?;
        Ok(Principal {
            tenant,
            subject: claims.sub,
            scopes: presented.intersection(&held),
        })
    }
}
