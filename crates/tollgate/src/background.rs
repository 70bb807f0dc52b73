//! The server's periodic work, each a loop that ends with the server:
//! - cross-instance cache invalidation: change notifications (fast path) and a poll of the
//!   database's change log (the bounded fallback when a notification is missed);
//! - copying revocations to the shared state when it lost them (Redis restarted empty);
//! - writing secrets' last-use times;
//! - scheduled signing-key rotation (one instance wins each rotation);
//! - recording aggregated refusals (rate limits, failed client authentication), one record
//!   per second and client, or per second and source address when no valid client was
//!   named;
//! - audit retention: purging records older than the configured period.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tollgate_catalog::{Catalog, Revocations};
use tollgate_domain::{ChangeListener, Clock, TenantName};
use tollgate_issuer::Issuer;
use tollgate_management::Management;
use tollgate_state::{ChangeEvent, SharedState};
use tollgate_store::Store;

/// How often the change log is polled: the worst-case staleness when a notification is lost.
const CHANGE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far back each poll looks, to cover transactions that committed late.
const CHANGE_POLL_LOOKBACK: i64 = 5;
/// How often the shared state is checked for lost revocations.
const REPOPULATE_INTERVAL: Duration = Duration::from_millis(500);
/// How often last-use times are written, unless [`Config::usage_flush`](crate::config::Config)
/// says otherwise.
pub(crate) const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// How often expired revocations, old change-log rows and audit records past retention are
/// deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// How often aggregated refusals are recorded (each record covers one second), unless
/// [`Config::denial_flush`](crate::config::Config) says otherwise (never longer: the period
/// bounds their memory). What is pending is at most about two seconds' worth, and at most
/// `tollgate_audit::MAX_PENDING_DENIAL_KEYS` aggregates.
pub(crate) const DENIAL_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Tells this instance's catalog at once and every instance through the shared state.
pub struct Broadcaster {
    /// This instance's catalog.
    pub catalog: Arc<Catalog>,
    /// The shared state that carries the notification to other instances.
    pub state: SharedState,
}

impl ChangeListener for Broadcaster {
    fn tenant_changed(&self, tenant: &TenantName) {
        self.catalog.invalidate(tenant);
        let state = self.state.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move { state.publish_change(&tenant).await });
    }
}

/// Everything the loops need.
pub struct Background {
    /// The store (the change log, purges).
    pub store: Store,
    /// The catalog to invalidate.
    pub catalog: Arc<Catalog>,
    /// Revocations (repopulation of the shared copy, purge).
    pub revocations: Arc<Revocations>,
    /// Issuance (secrets' last uses, aggregated refusals).
    pub issuer: Arc<Issuer>,
    /// Management (key rotation).
    pub management: Arc<Management>,
    /// The shared state.
    pub state: SharedState,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Scheduled key rotation period, seconds.
    pub key_rotation_period: Option<i64>,
    /// How often due key rotations are looked for.
    pub key_rotation_check: Duration,
    /// How often secrets' last-use times are written.
    pub usage_flush: Duration,
    /// How often aggregated refusals are recorded.
    pub denial_flush: Duration,
    /// Seconds audit records are kept; `None` = forever.
    pub audit_retention: Option<i64>,
}

impl Background {
    /// Starts every loop; they stop when `stop` turns true.
    pub fn spawn(self: Arc<Self>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(Arc::clone(&self).follow_notifications(stop.clone())),
            tokio::spawn(Arc::clone(&self).poll_change_log(stop.clone())),
            tokio::spawn(Arc::clone(&self).repopulate_revocations(stop.clone())),
            tokio::spawn(Arc::clone(&self).flush_usage(stop.clone())),
            tokio::spawn(Arc::clone(&self).purge(stop.clone())),
            tokio::spawn(Arc::clone(&self).flush_denials(stop.clone())),
        ];
        if let Some(period) = self.key_rotation_period {
            tasks.push(tokio::spawn(Arc::clone(&self).rotate_keys(period, stop)));
        }
        tasks
    }

    async fn follow_notifications(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut changes = self.state.subscribe_changes();
        loop {
            tokio::select! {
                () = stop_requested(&mut stop) => return,
                change = changes.recv() => match change {
                    Ok(ChangeEvent::Tenant(tenant)) => self.catalog.invalidate(&tenant),
                    // Revocations are checked against the shared state, not cached here.
                    Ok(ChangeEvent::Revoked(_)) => {}
                    Ok(ChangeEvent::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.catalog.invalidate_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    async fn poll_change_log(self: Arc<Self>, stop: watch::Receiver<bool>) {
        every(CHANGE_POLL_INTERVAL, stop, || async {
            let since = self.clock.now() - CHANGE_POLL_LOOKBACK;
            match self.store.changed_tenants_since(since).await {
                Ok(changed) => {
                    for tenant in changed {
                        if self.catalog.is_cached(&tenant) {
                            self.catalog.invalidate(&tenant);
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "cannot poll the change log"),
            }
        })
        .await;
    }

    async fn repopulate_revocations(self: Arc<Self>, stop: watch::Receiver<bool>) {
        every(REPOPULATE_INTERVAL, stop, || async {
            if let Err(error) = self
                .revocations
                .repopulate_if_needed(self.clock.now())
                .await
            {
                tracing::warn!(error = %error, "cannot check or repopulate the shared revocations");
            }
        })
        .await;
    }

    async fn flush_usage(self: Arc<Self>, stop: watch::Receiver<bool>) {
        every(self.usage_flush, stop, || async {
            if let Err(error) = self.issuer.flush_usage().await {
                tracing::warn!(error = %error, "cannot record when secrets were last used");
            }
        })
        .await;
        // One last time at shutdown.
        if let Err(error) = self.issuer.flush_usage().await {
            tracing::warn!(error = %error, "cannot record when secrets were last used");
        }
    }

    async fn purge(self: Arc<Self>, stop: watch::Receiver<bool>) {
        every(PURGE_INTERVAL, stop, || async {
            let now = self.clock.now();
            if let Err(error) = self.revocations.purge(now).await {
                tracing::warn!(error = %error, "cannot purge expired revocations");
            }
            if let Err(error) = self.store.purge_change_log(now - 3_600).await {
                tracing::warn!(error = %error, "cannot purge the change log");
            }
            if let Some(retention) = self.audit_retention {
                let before_ms = self.clock.now_ms().saturating_sub(retention * 1_000);
                match self.store.purge_audit_before(before_ms).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "audit records past retention purged"),
                    Err(error) => tracing::warn!(error = %error, "cannot purge old audit records"),
                }
            }
        })
        .await;
    }

    async fn flush_denials(self: Arc<Self>, stop: watch::Receiver<bool>) {
        // The final flush, after the servers have stopped, is `serve`'s.
        every(self.denial_flush, stop, || async {
            if let Err(error) = self.issuer.flush_denials(false).await {
                tracing::warn!(error = %error, "aggregated refusals not recorded");
            }
        })
        .await;
    }

    async fn rotate_keys(self: Arc<Self>, period: i64, stop: watch::Receiver<bool>) {
        every(self.key_rotation_check, stop, || async {
            if let Err(error) = self.management.rotate_due_keys(period).await {
                tracing::warn!(error = %error, "scheduled key rotation failed");
            }
        })
        .await;
    }
}

/// Runs `work` every `interval` (the first time at once) until `stop` turns true.
async fn every<F, Fut>(interval: Duration, mut stop: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop_requested(&mut stop) => return,
            _ = ticker.tick() => work().await,
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before the caller's next await.
    let _ = stop.wait_for(|stop| *stop).await;
}
