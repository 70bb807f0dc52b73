//! Revocation of outstanding tokens beyond one token: by secret, by app, by tenant.

use tollgate_domain::{MAX_TOKEN_LIFETIME, Revocation, RevocationTarget, TenantName};
use tollgate_store::TenantRecord;

use crate::auth::Principal;
use crate::trail::{Actor, Change};
use crate::{ManageError, Management};
use tollgate_audit::AuditAction;

impl Management {
    /// Revokes the tokens `target` covers (scope `tokens:revoke`). The revocation lasts until
    /// every token it can cover has expired.
    pub async fn revoke_tokens(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        target: RevocationTarget,
    ) -> Result<(), ManageError> {
        principal.require(tenant, "tokens:revoke")?;
        let tenant_record = self.find_tenant(tenant).await?;
        self.revoke_target(principal, &tenant_record, target).await
    }

    /// Records the revocation `principal` asked for, with its audit event in the same
    /// transaction.
    pub(crate) async fn revoke_target(
        &self,
        principal: &Principal,
        tenant: &TenantRecord,
        target: RevocationTarget,
    ) -> Result<(), ManageError> {
        let now = self.clock.now();
        let (action, resource) = match &target {
            RevocationTarget::Token(jti) => (AuditAction::TokenRevoked, format!("token/{jti}")),
            RevocationTarget::Secret(id) => (AuditAction::TokensRevoked, format!("secret/{id}")),
            RevocationTarget::App(client_id) => {
                (AuditAction::TokensRevoked, format!("app/{client_id}"))
            }
            RevocationTarget::Tenant => (
                AuditAction::TokensRevoked,
                format!("tenant/{}", tenant.name),
            ),
        };
        let mut change = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            tenant,
            action,
            &resource,
        )?;
        change = match &target {
            RevocationTarget::Token(jti) => change.jti(jti),
            RevocationTarget::Secret(id) => change.secret(id),
            RevocationTarget::App(client_id) => change.client(client_id),
            RevocationTarget::Tenant => change,
        };
        let audit = change.done();
        let revocation = Revocation {
            tenant_id: tenant.id.clone(),
            target,
            revoked_at: now,
            expires_at: now + MAX_TOKEN_LIFETIME,
        };
        self.revocations
            .revoke(&tenant.id, revocation, now, &audit)
            .await?;
        Ok(())
    }
}
