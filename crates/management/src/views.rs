//! The one place store records become what management hands back: the domain's views
//! ([`TenantInfo`], [`ApiInfo`], [`AppInfo`], [`SecretInfo`], [`KeyInfo`], [`RecordedEvent`],
//! [`ChainCheck`]), with the states computed here from their dates by the service's clock,
//! so that transports only render them and no store type leaves this crate. Also the way
//! back for audit events ([`ExportedChain`]): an exported event is verified as the stored
//! record it stands for.

use tollgate_audit::{ChainBreak, ChainReport, ChainVerifier};
use tollgate_domain::{
    ApiInfo, AppInfo, ChainBreakAt, ChainCheck, GrantInfo, KeyInfo, KeyState, Page, RecordedEvent,
    SecretInfo, TenantInfo, TenantName, UnixTime,
};
use tollgate_store::{ApiRecord, AppWithGrants, SecretRecord, SigningKeyRecord, TenantRecord};

use crate::Management;

/// Whether `secret` authenticates its app at `now`.
pub(crate) fn is_secret_active(secret: &SecretRecord, now: UnixTime) -> bool {
    secret.expires_at.is_none_or(|expires_at| now < expires_at)
}

/// The state of `key` at `now`.
pub(crate) fn key_state(key: &SigningKeyRecord, now: UnixTime) -> KeyState {
    if key.remove_at.is_some_and(|remove_at| remove_at <= now) {
        KeyState::Retired
    } else if key.retire_at.is_some_and(|retire_at| retire_at <= now) {
        KeyState::Retiring
    } else if now < key.activate_at {
        KeyState::Pending
    } else {
        KeyState::Active
    }
}

/// `page` with each item turned into its view.
pub(crate) fn page_of<R, V>(page: Page<R>, view: impl FnMut(R) -> V) -> Page<V> {
    Page {
        items: page.items.into_iter().map(view).collect(),
        next_page_token: page.next_page_token,
    }
}

/// An API of `tenant` as an admin sees it.
pub(crate) fn api_info(tenant: &TenantName, record: ApiRecord) -> ApiInfo {
    ApiInfo {
        tenant: tenant.clone(),
        name: record.name,
        identifier: record.identifier,
        scopes: record.scopes,
        token_lifetime: record.token_lifetime,
        signing_alg: record.signing_alg,
        is_system: record.is_system,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// An app of `tenant` with its grants, as an admin sees it.
pub(crate) fn app_info(tenant: &TenantName, record: AppWithGrants) -> AppInfo {
    let AppWithGrants { app, grants } = record;
    AppInfo {
        tenant: tenant.clone(),
        client_id: app.client_id,
        name: app.name,
        description: app.description,
        grants: grants
            .into_iter()
            .map(|grant| GrantInfo {
                audience: grant.audience,
                scopes: grant.scopes,
            })
            .collect(),
        is_blocked: app.is_blocked,
        is_system: app.is_system,
        created_at: app.created_at,
        updated_at: app.updated_at,
        rate_limit_per_second: app.rate_limit_per_second,
    }
}

fn chain_break_at(broken: ChainBreak) -> ChainBreakAt {
    ChainBreakAt {
        seq: broken.seq,
        reason: broken.reason,
    }
}

/// A verification report as the read side hands it back.
pub(crate) fn chain_check(report: ChainReport) -> ChainCheck {
    ChainCheck {
        checked: report.checked,
        first_seq: report.first_seq,
        last_seq: report.last_seq,
        head_seq: report.head.map(|head| head.seq),
        outcome: report.outcome.map_err(chain_break_at),
    }
}

/// Verifies exported events (e.g. `tollgate audit verify --file`), oldest first, by the
/// audit trail's chain verifier, each hashed as the record it is.
#[derive(Debug, Default)]
pub struct ExportedChain(ChainVerifier);

impl ExportedChain {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event (see [`ChainVerifier::push`]); after a break, every call
    /// returns that break.
    pub fn push(&mut self, event: RecordedEvent) -> Result<(), ChainBreakAt> {
        self.0.push(&event).map_err(chain_break_at)
    }

    /// What was verified, ending in `outcome`. An export carries no head: what was cut from
    /// its end cannot be told.
    pub fn report(&self, outcome: Result<(), ChainBreakAt>) -> ChainCheck {
        ChainCheck {
            checked: self.0.checked(),
            first_seq: self.0.first_seq(),
            last_seq: self.0.last_seq(),
            head_seq: None,
            outcome,
        }
    }
}

impl Management {
    /// `record` as an admin sees it, with its issuer.
    pub(crate) fn tenant_info(&self, record: TenantRecord) -> TenantInfo {
        TenantInfo {
            issuer: self.issuer_template.issuer(&record.name),
            id: record.id,
            name: record.name,
            display_name: record.display_name,
            signing_alg: record.signing_alg,
            created_at: record.created_at,
            updated_at: record.updated_at,
            rate_limit_per_second: record.rate_limit_per_second,
        }
    }

    /// `secret` with its state now.
    pub(crate) fn secret_info(&self, secret: SecretRecord) -> SecretInfo {
        SecretInfo {
            is_active: is_secret_active(&secret, self.clock.now()),
            id: secret.id,
            created_at: secret.created_at,
            expires_at: secret.expires_at,
            last_used_at: secret.last_used_at,
        }
    }

    /// `secrets` with their states now.
    pub(crate) fn secret_infos(&self, secrets: Vec<SecretRecord>) -> Vec<SecretInfo> {
        secrets
            .into_iter()
            .map(|secret| self.secret_info(secret))
            .collect()
    }

    /// `keys` with their states now.
    pub(crate) fn key_infos(&self, keys: Vec<SigningKeyRecord>) -> Vec<KeyInfo> {
        let now = self.clock.now();
        keys.into_iter()
            .map(|key| KeyInfo {
                state: key_state(&key, now),
                kid: key.kid,
                alg: key.alg,
                created_at: key.created_at,
                activate_at: key.activate_at,
                retire_at: key.retire_at,
                remove_at: key.remove_at,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_active_until_its_end() {
        let secret = |expires_at| SecretRecord {
            id: "sec_1".into(),
            app_id: "app_1".into(),
            hash: "v1$".to_owned(),
            created_at: 100,
            expires_at,
            last_used_at: None,
        };
        assert!(is_secret_active(&secret(None), 1_000));
        assert!(is_secret_active(&secret(Some(1_001)), 1_000));
        assert!(!is_secret_active(&secret(Some(1_000)), 1_000));
        assert!(!is_secret_active(&secret(Some(999)), 1_000));
    }

    #[test]
    fn keys_move_through_their_states_by_their_dates() {
        let key = SigningKeyRecord {
            kid: "key_1".into(),
            alg: tollgate_domain::Algorithm::Es256,
            public_jwk: String::new(),
            private_key_sealed: Vec::new(),
            created_at: 100,
            activate_at: 200,
            retire_at: Some(300),
            remove_at: Some(400),
        };
        let states: Vec<KeyState> = [100, 199, 200, 299, 300, 399, 400]
            .into_iter()
            .map(|now| key_state(&key, now))
            .collect();
        use KeyState::{Active, Pending, Retired, Retiring};
        assert_eq!(
            states,
            [
                Pending, Pending, Active, Active, Retiring, Retiring, Retired
            ]
        );
    }
}
