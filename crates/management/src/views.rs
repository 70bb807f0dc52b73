//! What an admin sees of client secrets and signing keys: the stored record and its state
//! now, computed here from its dates (by the service's clock), so that transports only
//! render it.

use tollgate_domain::UnixTime;
use tollgate_store::{SecretRecord, SigningKeyRecord};

use crate::Management;
use crate::keys::{KeyState, key_state};

/// A client secret and whether it is active.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretView {
    /// The stored secret (its keyed hash, never its value).
    pub record: SecretRecord,
    /// Whether it authenticates its app now: it has no end, or its end is still ahead.
    pub is_active: bool,
}

/// A signing key and where it is in its life.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyView {
    /// The stored key (its private half sealed).
    pub record: SigningKeyRecord,
    /// Its state now.
    pub state: KeyState,
}

/// Whether `secret` authenticates its app at `now`.
pub(crate) fn is_secret_active(secret: &SecretRecord, now: UnixTime) -> bool {
    secret.expires_at.is_none_or(|expires_at| now < expires_at)
}

impl Management {
    /// `secrets` with their states now.
    pub(crate) fn secret_views(&self, secrets: Vec<SecretRecord>) -> Vec<SecretView> {
        let now = self.clock.now();
        secrets
            .into_iter()
            .map(|record| SecretView {
                is_active: is_secret_active(&record, now),
                record,
            })
            .collect()
    }

    /// `keys` with their states now.
    pub(crate) fn key_views(&self, keys: Vec<SigningKeyRecord>) -> Vec<KeyView> {
        let now = self.clock.now();
        keys.into_iter()
            .map(|record| KeyView {
                state: key_state(&record, now),
                record,
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
            id: "sec_1".to_owned(),
            app_id: "app_1".to_owned(),
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
}
