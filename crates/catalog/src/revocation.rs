//! Revocation of outstanding tokens. The database is the source of truth; the shared state
//! (Redis across instances, or memory for one) holds a fast copy that every check reads.
//!
//! Invariant: a check fails closed. If the fast copy cannot be read, the check is an error;
//! if it cannot vouch for its contents (Redis restarted empty), the database answers.

use std::sync::atomic::{AtomicBool, Ordering};

use tollgate_domain::{Revocation, TenantId, TokenFacts, UnixTime};
use tollgate_keys::generate_id;
use tollgate_state::{RevocationStatus, SharedState};
use tollgate_store::{AuditAppend, Store, StoreError};

/// Why a revocation could not be recorded or checked.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The database failed.
    #[error("revocation store unavailable")]
    Store(#[from] StoreError),
    /// The shared state failed.
    #[error("revocation state unavailable")]
    State(#[from] tollgate_state::StateError),
    /// Randomness failed.
    #[error("revocation id unavailable")]
    Keys(#[from] tollgate_keys::KeyError),
}

/// Records and checks revocations.
pub struct Revocations {
    store: Store,
    state: SharedState,
    /// Set when a write reached the database but not the shared state: the next
    /// [`Revocations::repopulate_if_needed`] copies everything again.
    is_dirty: AtomicBool,
}

impl Revocations {
    /// Revocations kept in `store`, copied to `state`.
    pub fn new(store: Store, state: SharedState) -> Self {
        Self {
            store,
            state,
            is_dirty: AtomicBool::new(false),
        }
    }

    /// Records `revocation` in the database, with its audit events in the same transaction,
    /// then in the shared state. Succeeds once the database has it: if the shared state is
    /// down, checks fail closed meanwhile and the copy is repaired by the next repopulation.
    pub async fn revoke(
        &self,
        tenant: &TenantId,
        revocation: Revocation,
        now: UnixTime,
        audit: &dyn AuditAppend,
    ) -> Result<(), RevocationError> {
        let id = generate_id("rev")?;
        self.store
            .add_revocation(tenant, &id, &revocation, now, audit)
            .await?;
        if let Err(error) = self
            .state
            .add_revocations(std::slice::from_ref(&revocation), now)
            .await
        {
            self.is_dirty.store(true, Ordering::SeqCst);
            tracing::warn!(error = %error, "revocation stored in the database only; the shared copy will be repopulated");
        }
        // For watchers (resource servers following revocations), on every instance.
        self.state.publish_revocation(&revocation).await;
        tracing::info!(tenant_id = %tenant, "tokens revoked");
        Ok(())
    }

    /// Whether the token is revoked: the shared state answers, or the database when the
    /// shared state cannot vouch for its contents. An error when neither can be read.
    pub async fn is_revoked(
        &self,
        token: &TokenFacts<'_>,
        now: UnixTime,
    ) -> Result<bool, RevocationError> {
        match self.state.revocation_status(token).await? {
            RevocationStatus::Revoked => Ok(true),
            RevocationStatus::NotRevoked => Ok(false),
            RevocationStatus::Unknown => {
                let matching = self
                    .store
                    .matching_revocations(
                        &TenantId::new(token.tenant_id),
                        token.jti,
                        token.sid,
                        token.client_id,
                        now,
                    )
                    .await?;
                Ok(matching.iter().any(|revocation| revocation.covers(token)))
            }
        }
    }

    /// Copies every live revocation from the database to the shared state when the shared
    /// state lost them (Redis restarted empty) or missed a write. Run periodically.
    pub async fn repopulate_if_needed(&self, now: UnixTime) -> Result<bool, RevocationError> {
        let is_dirty = self.is_dirty.swap(false, Ordering::SeqCst);
        let is_populated = match self.state.is_populated().await {
            Ok(is_populated) => is_populated,
            Err(error) => {
                self.is_dirty.store(is_dirty, Ordering::SeqCst);
                return Err(error.into());
            }
        };
        if is_populated && !is_dirty {
            return Ok(false);
        }
        let result = async {
            let live = self.store.live_revocations(now).await?;
            self.state.replace_revocations(&live, now).await?;
            tracing::info!(count = live.len(), "revocations copied to the shared state");
            Ok::<_, RevocationError>(())
        }
        .await;
        if result.is_err() {
            self.is_dirty.store(true, Ordering::SeqCst);
        }
        result.map(|()| true)
    }

    /// The tenant's revocations in force at `now`, from the database.
    pub async fn live_of_tenant(
        &self,
        tenant: &TenantId,
        now: UnixTime,
    ) -> Result<Vec<Revocation>, RevocationError> {
        Ok(self.store.tenant_live_revocations(tenant, now).await?)
    }

    /// Deletes expired revocations from the database.
    pub async fn purge(&self, now: UnixTime) -> Result<u64, RevocationError> {
        Ok(self.store.purge_expired_revocations(now).await?)
    }
}
