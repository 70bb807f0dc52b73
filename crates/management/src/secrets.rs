//! Client-secret rotation: a new secret alongside the current one for an overlap, then the
//! old one ends; or a secret ended at once, with the tokens it obtained.

use tollgate_domain::{ClientId, InvalidValue, RevocationTarget, SecretId, TenantName};
use tollgate_keys::{generate_client_secret, generate_id};
use tollgate_store::{AppWithGrants, SecretRecord};

use crate::auth::Principal;
use crate::error::{Entity, Precondition};
use crate::trail::{Actor, Change};
use crate::views::is_secret_active;
use crate::{ManageError, Management, RotatedSecret, SecretInfo};
use tollgate_audit::AuditAction;

/// How long the previous secret keeps working after a rotation, by default: one day.
pub const DEFAULT_SECRET_OVERLAP: i64 = 86_400;
/// The longest overlap allowed: thirty days.
const MAX_SECRET_OVERLAP: i64 = 30 * 86_400;
/// Live secrets an app may have at once.
const MAX_LIVE_SECRETS: usize = 2;

impl Management {
    /// Adds a new secret to the app; the current live secrets end after `overlap_seconds`.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
        overlap_seconds: Option<i64>,
    ) -> Result<RotatedSecret, ManageError> {
        principal.require(tenant, "apps:write")?;
        let overlap = overlap_seconds.unwrap_or(DEFAULT_SECRET_OVERLAP);
        if !(0..=MAX_SECRET_OVERLAP).contains(&overlap) {
            return Err(InvalidValue::new(
                "overlap_seconds",
                format!("must be between 0 and {MAX_SECRET_OVERLAP}"),
            )
            .into());
        }
        let tenant_record = self.find_tenant(tenant).await?;
        let AppWithGrants { app, grants } = self.find_app(&tenant_record, client_id).await?;
        self.require_may_change(principal, tenant, client_id, &grants)?;
        let now = self.clock.now();
        let existing = self.store.list_secrets(&tenant_record.id, &app.id).await?;
        let live: Vec<&SecretRecord> = existing
            .iter()
            .filter(|secret| is_secret_active(secret, now))
            .collect();
        if live.len() >= MAX_LIVE_SECRETS {
            return Err(ManageError::FailedPrecondition(
                Precondition::TooManySecrets {
                    client_id: client_id.clone(),
                    live: MAX_LIVE_SECRETS,
                },
            ));
        }
        let ends_at = now + overlap;
        let expire: Vec<(SecretId, i64)> = live
            .iter()
            .filter(|secret| {
                secret
                    .expires_at
                    .is_none_or(|expires_at| ends_at < expires_at)
            })
            .map(|secret| (secret.id.clone(), ends_at))
            .collect();
        let secret = generate_client_secret()?;
        let record = SecretRecord {
            id: generate_id("sec")?.into(),
            app_id: app.id.clone(),
            hash: self.hasher.hash(&secret),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::SecretRotated,
            &format!("secret/{}", record.id),
        )?
        .client(client_id.as_str())
        .secret(record.id.as_str())
        .fields(if expire.is_empty() {
            vec!["created"]
        } else {
            vec!["created", "expires_at"]
        })
        .done();
        self.store
            .add_secret(&tenant_record.id, &app.id, &record, &expire, &audit)
            .await?;
        self.listener.tenant_changed(tenant);
        tracing::info!(tenant = %tenant, client_id = %client_id, secret_id = %record.id, "secret rotated");
        let secrets = self.store.list_secrets(&tenant_record.id, &app.id).await?;
        Ok(RotatedSecret {
            info: self.secret_info(record),
            secret,
            secrets: self.secret_infos(secrets),
        })
    }

    /// Ends one secret now; with `revoke_tokens`, also revokes every token it obtained.
    pub async fn revoke_secret(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
        secret_id: &str,
        revoke_tokens: bool,
    ) -> Result<(), ManageError> {
        principal.require(tenant, "apps:write")?;
        if revoke_tokens {
            principal.require(tenant, "tokens:revoke")?;
        }
        let tenant_record = self.find_tenant(tenant).await?;
        let AppWithGrants { app, grants } = self.find_app(&tenant_record, client_id).await?;
        self.require_may_change(principal, tenant, client_id, &grants)?;
        let now = self.clock.now();
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::SecretRevoked,
            &format!("secret/{secret_id}"),
        )?
        .client(client_id.as_str())
        .secret(secret_id)
        .fields(["expires_at"])
        .done();
        let is_found = self
            .store
            .expire_secret(
                &tenant_record.id,
                &app.id,
                &SecretId::new(secret_id),
                now,
                &audit,
            )
            .await?;
        if !is_found {
            return Err(ManageError::not_found(Entity::Secret, secret_id));
        }
        self.listener.tenant_changed(tenant);
        tracing::info!(tenant = %tenant, client_id = %client_id, secret_id = %secret_id, "secret revoked");
        if revoke_tokens {
            self.revoke_target(
                principal,
                &tenant_record,
                RevocationTarget::Secret(secret_id.to_owned()),
            )
            .await?;
        }
        Ok(())
    }

    /// The app's secrets and their states, newest first (never their values).
    pub async fn list_secrets(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
    ) -> Result<Vec<SecretInfo>, ManageError> {
        principal.require(tenant, "apps:read")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let app = self.find_app(&tenant_record, client_id).await?.app;
        let secrets = self.store.list_secrets(&tenant_record.id, &app.id).await?;
        Ok(self.secret_infos(secrets))
    }
}
