//! The in-process backend: correct for a single instance. Revocations live in a map pruned on
//! every write once they expire, rate limits in a [`LocalLimiter`], changes in a broadcast
//! channel.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::broadcast;
use tollgate_domain::{Clock, Revocation, TokenFacts, UnixTime};

use crate::gcra::{Limit, LocalLimiter};
use crate::keys::KeySpace;
use crate::{ChangeEvent, RateDecision, RevocationStatus, StateError, covered};

/// How often (seconds) writes sweep expired revocations out of the map.
const PRUNE_EVERY_SECONDS: i64 = 60;

pub(crate) struct MemoryBackend {
    clock: Arc<dyn Clock>,
    keys: KeySpace,
    revocations: RwLock<Revocations>,
    limiter: LocalLimiter,
    changes: broadcast::Sender<ChangeEvent>,
}

#[derive(Default)]
struct Revocations {
    entries: HashMap<String, Entry>,
    next_prune: UnixTime,
}

/// One key's merged revocations: the latest cut-off, kept until the latest expiry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    cutoff: UnixTime,
    expires_at: UnixTime,
}

impl MemoryBackend {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: KeySpace::bare(),
            revocations: RwLock::default(),
            limiter: LocalLimiter::new(Arc::clone(&clock)),
            clock,
            changes: broadcast::channel(crate::CHANGE_CHANNEL_CAPACITY).0,
        }
    }

    pub(crate) fn add_revocations(
        &self,
        entries: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        // Validate everything first so that a bad entry adds nothing.
        let keyed = self.keyed(entries)?;
        let mut revocations = self.write();
        revocations.insert(keyed, now);
        Ok(())
    }

    pub(crate) fn replace_revocations(
        &self,
        all_live: &[Revocation],
        now: UnixTime,
    ) -> Result<(), StateError> {
        let keyed = self.keyed(all_live)?;
        let mut revocations = self.write();
        revocations.entries.clear();
        revocations.insert(keyed, now);
        Ok(())
    }

    pub(crate) fn revocation_status(
        &self,
        token: &TokenFacts<'_>,
    ) -> Result<RevocationStatus, StateError> {
        let keys = self.keys.token_keys(token)?;
        let now = self.clock.now();
        let revocations = self
            .revocations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let [jti, sid, client, tenant] = keys.map(|key| {
            revocations
                .entries
                .get(&key)
                .filter(|entry| entry.expires_at > now)
                .map(|entry| entry.cutoff)
        });
        Ok(if covered(jti, sid, client, tenant, token.iat) {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::NotRevoked
        })
    }

    pub(crate) fn check_rate(&self, key: &str, limit: Limit) -> RateDecision {
        self.limiter.check(key, limit).into_decision(limit, false)
    }

    pub(crate) fn changes(&self) -> &broadcast::Sender<ChangeEvent> {
        &self.changes
    }

    /// Entries held, expired or not (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.revocations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    fn keyed(&self, entries: &[Revocation]) -> Result<Vec<(String, Entry)>, StateError> {
        entries
            .iter()
            .map(|revocation| {
                Ok((
                    self.keys.revocation(revocation)?,
                    Entry {
                        cutoff: revocation.revoked_at,
                        expires_at: revocation.expires_at,
                    },
                ))
            })
            .collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Revocations> {
        // Every write is a max-merge of whole values: a panic elsewhere cannot leave a
        // half-written entry, so a poisoned lock is still sound.
        self.revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Revocations {
    fn insert(&mut self, keyed: Vec<(String, Entry)>, now: UnixTime) {
        for (key, entry) in keyed {
            if entry.expires_at <= now {
                continue;
            }
            self.entries
                .entry(key)
                .and_modify(|held| {
                    held.cutoff = held.cutoff.max(entry.cutoff);
                    held.expires_at = held.expires_at.max(entry.expires_at);
                })
                .or_insert(entry);
        }
        if now >= self.next_prune {
            self.entries.retain(|_, entry| entry.expires_at > now);
            self.next_prune = now.saturating_add(PRUNE_EVERY_SECONDS);
        }
    }
}
