//! Signing-key rotation. A new key is published at once and signs only after a propagation
//! delay; the key it replaces stops signing then and stays published until every token it
//! signed has expired. States follow from the dates, so no job has to flip them.

use std::collections::BTreeSet;

use tollgate_domain::{Algorithm, MAX_TOKEN_LIFETIME, TenantName, UnixTime};
use tollgate_store::TenantRecord;

use crate::auth::Principal;
use crate::trail::{Actor, Change, SCHEDULER_ACTOR};
use crate::{KeyInfo, ManageError, Management};
use tollgate_audit::{AuditAction, ChangeEvents};

impl Management {
    /// Rotates every algorithm of the tenant's ring; returns the keys afterwards, with their
    /// states.
    pub async fn rotate_signing_key(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        propagation_delay: Option<i64>,
    ) -> Result<Vec<KeyInfo>, ManageError> {
        principal.require(tenant, "keys:write")?;
        let delay = propagation_delay.unwrap_or(self.keys.propagation_delay);
        if !(0..=86_400).contains(&delay) {
            return Err(tollgate_domain::InvalidValue::new(
                "propagation_delay_seconds",
                "must be between 0 and 86400",
            )
            .into());
        }
        let tenant_record = self.find_tenant(tenant).await?;
        self.rotate_keys(Actor::Admin(principal), &tenant_record, delay, None)
            .await?;
        let keys = self.store.list_signing_keys(&tenant_record.id).await?;
        Ok(self.key_infos(keys))
    }

    /// The tenant's keys and their states, newest first.
    pub async fn list_keys(
        &self,
        principal: &Principal,
        tenant: &TenantName,
    ) -> Result<Vec<KeyInfo>, ManageError> {
        principal.require(tenant, "keys:read")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let keys = self.store.list_signing_keys(&tenant_record.id).await?;
        Ok(self.key_infos(keys))
    }

    /// Scheduled rotation: rotates the keys of every tenant last rotated `period` seconds ago
    /// or more. However many instances run this at once, each tenant is rotated once: the
    /// store's compare-and-set on the tenant's last rotation time lets exactly one win.
    /// Also deletes keys that have left the JWKS. Returns how many tenants this call rotated.
    pub async fn rotate_due_keys(&self, period: i64) -> Result<usize, ManageError> {
        let now = self.clock.now();
        let due = self
            .store
            .tenants_due_for_rotation(now - period, 100)
            .await?;
        let mut rotated = 0;
        for tenant in due {
            let expected = Some(tenant.keys_rotated_at);
            if self
                .rotate_keys(
                    Actor::Server(SCHEDULER_ACTOR),
                    &tenant,
                    self.keys.propagation_delay,
                    expected,
                )
                .await?
            {
                rotated += 1;
                tracing::info!(tenant = %tenant.name, "signing keys rotated on schedule");
            }
            let audit = Change::new(
                self.clock.now_ms(),
                Actor::Server(SCHEDULER_ACTOR),
                &tenant,
                AuditAction::ManagementChange,
                &format!("tenant/{}/keys", tenant.name),
            )?
            .fields(["removed_keys"])
            .done();
            let removed = self
                .store
                .delete_removed_keys(&tenant.id, now, &audit)
                .await?;
            if removed > 0 {
                self.listener.tenant_changed(&tenant.name);
            }
        }
        Ok(rotated)
    }

    /// Adds a key per algorithm in use and schedules the keys they replace. With
    /// `expected_rotated_at`, only if the tenant's last rotation is still that (else another
    /// instance did it: returns false).
    async fn rotate_keys(
        &self,
        actor: Actor<'_>,
        tenant: &TenantRecord,
        delay: i64,
        expected_rotated_at: Option<Option<UnixTime>>,
    ) -> Result<bool, ManageError> {
        let now = self.clock.now();
        let keys = self.store.list_signing_keys(&tenant.id).await?;
        let algorithms: BTreeSet<&'static str> = keys
            .iter()
            .filter(|key| key.retire_at.is_none())
            .map(|key| key.alg.as_str())
            .chain([tenant.signing_alg.as_str()])
            .collect();
        let activate_at = now + delay;
        let mut new_keys = Vec::new();
        let mut retire = Vec::new();
        for name in algorithms {
            let alg = Algorithm::parse(name)?;
            let mut key = self.new_signing_key(&tenant.id, alg).await?;
            key.activate_at = activate_at;
            new_keys.push(key);
            // Every key of the algorithm that would still sign after the new one activates
            // (the current one, and a pending one from an earlier rotation) stops then.
            for replaced in keys.iter().filter(|key| {
                key.alg == alg
                    && key
                        .retire_at
                        .is_none_or(|retire_at| retire_at > activate_at)
            }) {
                retire.push((
                    replaced.kid.clone(),
                    activate_at,
                    activate_at + MAX_TOKEN_LIFETIME,
                ));
            }
        }
        let events = new_keys
            .iter()
            .map(|key| {
                Change::new(
                    self.clock.now_ms(),
                    actor,
                    tenant,
                    AuditAction::KeyRotated,
                    &format!("key/{}", key.kid),
                )
                .map(|change| change.fields(["activate_at"]).event())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audit = ChangeEvents::new(events);
        let is_rotated = self
            .store
            .rotate_signing_keys(
                &tenant.id,
                expected_rotated_at,
                now,
                &new_keys,
                &retire,
                &audit,
            )
            .await?;
        if is_rotated {
            self.listener.tenant_changed(&tenant.name);
            tracing::info!(tenant = %tenant.name, activate_at, "signing keys rotated");
        }
        Ok(is_rotated)
    }
}
