//! Revocation of outstanding tokens beyond one token: by secret, by app, by tenant.

use tollgate_domain::{Revocation, RevocationTarget, TenantName};
use tollgate_issuer::MAX_TOKEN_LIFETIME;
use tollgate_store::TenantRecord;

use crate::auth::Principal;
use crate::{ManageError, Management};

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
        self.revoke_target(&tenant_record, target).await
    }

    pub(crate) async fn revoke_target(
        &self,
        tenant: &TenantRecord,
        target: RevocationTarget,
    ) -> Result<(), ManageError> {
        let now = self.clock.now();
        let revocation = Revocation {
            tenant_id: tenant.id.clone(),
            target,
            revoked_at: now,
            expires_at: now + MAX_TOKEN_LIFETIME,
        };
        self.revocations.revoke(tenant, revocation, now).await?;
        Ok(())
    }
}
