//! The revocation watch: an app follows its tenant's revocations as a stream
//! ([`Issuer::watch_revocations`]), so a resource server can refuse revoked tokens without
//! asking about each one.
//!
//! The protocol, all of it here (the transport only forwards): the watch subscribes to
//! change notifications *before* it reads the snapshot, so nothing falls between the two;
//! it sends the snapshot, then each of the tenant's new revocations; a fresh snapshot
//! whenever notifications may have been missed (the subscription lagged, or the shared
//! state reconnected), and every [`WATCH_RESYNC_WHILE_DEAF`] while they are being missed
//! (this instance does not hear other instances' changes); and a heartbeat after
//! [`WATCH_HEARTBEAT`] without a message, so the watcher can tell a quiet stream from a
//! dead one. The stream is pulled: while its consumer does not take a message, the next one
//! is not produced (and the heartbeat period counts from when a message was taken).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_stream::Stream;
use tollgate_domain::{ClientId, ClientSecret, RequestOrigin, Revocation, TenantId, TenantName};
use tollgate_state::ChangeEvent;

use crate::issue::{IssueError, Issuer};

/// The period of a revocation watch's heartbeat: a message is sent at least this often.
/// Watchers are told it with every message, and consider a watch dead after three missed.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(5);

/// How often a watch re-reads its tenant's revocations from the database while this
/// instance does not hear of new ones (its Redis subscription is down): a revocation made
/// meanwhile, on any instance, reaches watchers within about this long.
pub const WATCH_RESYNC_WHILE_DEAF: Duration = Duration::from_secs(1);

/// One message of a revocation watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Whether `revocations` is every revocation of the tenant in force, replacing what the
    /// watcher holds; otherwise they are additions.
    pub is_snapshot: bool,
    /// The revocations; none in a heartbeat.
    pub revocations: Vec<Revocation>,
}

impl WatchEvent {
    fn snapshot(revocations: Vec<Revocation>) -> Self {
        Self {
            is_snapshot: true,
            revocations,
        }
    }

    fn heartbeat() -> Self {
        Self {
            is_snapshot: false,
            revocations: Vec::new(),
        }
    }
}

impl Issuer {
    /// Authenticates an app of `tenant` and follows the tenant's revocations (see the module
    /// documentation): the first event is the snapshot. Authentication and the first
    /// snapshot fail the call; a later failure to read the revocations is the stream's last
    /// item. The stream never ends on its own otherwise: drop it to stop watching.
    pub async fn watch_revocations(
        self: &Arc<Self>,
        tenant: &TenantName,
        client_id: &ClientId,
        secret: &ClientSecret,
        origin: &RequestOrigin,
    ) -> Result<impl Stream<Item = Result<WatchEvent, IssueError>> + Send + 'static, IssueError>
    {
        let tenant_id = self
            .authenticate_app(tenant, client_id, secret, origin)
            .await?;
        // Subscribed before the snapshot is read, so nothing falls between the two.
        let changes = self.shared.subscribe_changes();
        let snapshot = self.live_revocations(&tenant_id).await?;
        let mut heartbeat = interval(WATCH_HEARTBEAT);
        // An interval's first tick is at once: the heartbeat's period starts now.
        heartbeat.tick().await;
        let watch = RevocationWatch {
            issuer: Arc::clone(self),
            tenant_id,
            changes,
            first: Some(WatchEvent::snapshot(snapshot)),
            heartbeat,
            // Its first tick is at once: a watch that starts deaf re-reads at once.
            resync: interval(WATCH_RESYNC_WHILE_DEAF),
            has_yielded: false,
            has_ended: false,
        };
        Ok(futures_util::stream::unfold(
            watch,
            |mut watch| async move {
                let event = watch.next().await?;
                Some((event, watch))
            },
        ))
    }
}

/// An interval ticking every `period`, at once first, which waits out a missed tick instead
/// of catching up.
fn interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The state of one watch.
struct RevocationWatch {
    issuer: Arc<Issuer>,
    tenant_id: TenantId,
    changes: broadcast::Receiver<ChangeEvent>,
    /// The snapshot read when the watch started, until it is taken.
    first: Option<WatchEvent>,
    heartbeat: Interval,
    resync: Interval,
    /// Whether an event has been taken: the next call starts the heartbeat period anew.
    has_yielded: bool,
    /// Whether the last item was an error: nothing follows it.
    has_ended: bool,
}

impl RevocationWatch {
    /// The next event, once there is one to send; `None` after an error.
    async fn next(&mut self) -> Option<Result<WatchEvent, IssueError>> {
        if self.has_ended {
            return None;
        }
        if let Some(snapshot) = self.first.take() {
            self.has_yielded = true;
            return Some(Ok(snapshot));
        }
        if std::mem::take(&mut self.has_yielded) {
            // The previous event has been taken (sent on): the heartbeat counts from now.
            self.heartbeat.reset();
        }
        let item = loop {
            let item = tokio::select! {
                _ = self.heartbeat.tick() => Some(Ok(WatchEvent::heartbeat())),
                _ = self.resync.tick() => {
                    if self.issuer.is_hearing_changes() {
                        None
                    } else {
                        Some(self.snapshot().await)
                    }
                }
                change = self.changes.recv() => match change {
                    Ok(ChangeEvent::Revoked(revocation))
                        if revocation.tenant_id == self.tenant_id =>
                    {
                        Some(Ok(WatchEvent {
                            is_snapshot: false,
                            revocations: vec![revocation],
                        }))
                    }
                    Ok(ChangeEvent::Revoked(_) | ChangeEvent::Tenant(_)) => None,
                    // Notifications may have been missed: start over from the database.
                    Ok(ChangeEvent::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some(self.snapshot().await)
                    }
                    // Cannot happen while the issuer lives (its shared state holds the
                    // sender); if it did, there would be nothing more to follow.
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if let Some(item) = item {
                break item;
            }
        };
        self.has_ended = item.is_err();
        self.has_yielded = true;
        Some(item)
    }

    /// Every revocation of the tenant in force now.
    async fn snapshot(&self) -> Result<WatchEvent, IssueError> {
        let revocations = self.issuer.live_revocations(&self.tenant_id).await?;
        Ok(WatchEvent::snapshot(revocations))
    }
}
