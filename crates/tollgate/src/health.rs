//! Health that follows the dependencies: a background task probes the database and the
//! shared state (Redis) every [`PROBE_INTERVAL`], and publishes the outcome both to
//! tonic-health (the server as a whole, service `""`, and every gRPC service) and to the
//! gateway's `GET /readyz`, which only reads the last result.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;
use tollgate_gateway::{ReadinessCheck, ReadinessReport};
use tollgate_state::SharedState;
use tollgate_store::Store;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the dependencies are probed; also the longest a change in them goes unseen
/// (plus one [`PROBE_TIMEOUT`]).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest one probe of one dependency may take; a slower answer counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The gRPC services whose status follows readiness, besides the server as a whole (`""`).
pub const SERVICES: [&str; 7] = [
    "tollgate.v1.TokenService",
    "tollgate.v1.TenantService",
    "tollgate.v1.ApiService",
    "tollgate.v1.AppService",
    "tollgate.v1.KeyService",
    "tollgate.v1.RevocationService",
    "tollgate.v1.AuditService",
];

/// The last probe's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    /// `None` until the first probe.
    database: Option<bool>,
    /// `None` without Redis (in-process shared state); else as `database`.
    redis: Option<Option<bool>>,
    draining: bool,
}

impl Snapshot {
    fn ready(&self) -> bool {
        !self.draining
            && self.database == Some(true)
            && matches!(self.redis, None | Some(Some(true)))
    }

    fn report(&self) -> ReadinessReport {
        let state = |up: Option<bool>| match up {
            None => "unknown",
            Some(true) => "up",
            Some(false) => "down",
        };
        let ready = self.ready();
        ReadinessReport {
            ready,
            body: serde_json::json!({
                "status": if ready { "ready" } else { "not ready" },
                "checks": {
                    "database": state(self.database),
                    "redis": match self.redis {
                        None => "not configured",
                        Some(up) => state(up),
                    },
                    "draining": self.draining,
                },
            }),
        }
    }
}

/// The server's readiness: shared by the probe task, tonic-health and `/readyz`.
#[derive(Clone)]
pub(crate) struct Health {
    snapshot: Arc<Mutex<Snapshot>>,
    reporter: HealthReporter,
    store: Store,
    state: SharedState,
    uses_redis: bool,
}

impl Health {
    /// Not ready (no probe yet); every service NOT_SERVING until the first probe succeeds.
    pub(crate) async fn new(store: Store, state: SharedState, uses_redis: bool) -> Self {
        let health = Self {
            snapshot: Arc::new(Mutex::new(Snapshot {
                database: None,
                redis: uses_redis.then_some(None),
                draining: false,
            })),
            reporter: HealthReporter::new(),
            store,
            state,
            uses_redis,
        };
        health.publish(false).await;
        health
    }

    /// The tonic-health reporter whose statuses this keeps.
    pub(crate) fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    /// What `/readyz` calls: reads the last probe, never does I/O.
    pub(crate) fn readiness_check(&self) -> ReadinessCheck {
        let snapshot = Arc::clone(&self.snapshot);
        ReadinessCheck(Arc::new(move || {
            snapshot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .report()
        }))
    }

    /// Probes at once, then every [`PROBE_INTERVAL`] until `stop` turns true; then marks
    /// the server draining (NOT_SERVING everywhere) and returns.
    pub(crate) fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Ended by a stop or by a dropped sender: both mean shutdown.
                    _ = async { stop.wait_for(|stop| *stop).await.is_ok() } => break,
                    _ = ticks.tick() => self.probe().await,
                }
            }
            self.update(|snapshot| snapshot.draining = true).await;
        })
    }

    async fn probe(&self) {
        let database = matches!(timeout(PROBE_TIMEOUT, self.store.ping()).await, Ok(Ok(())));
        let redis = if self.uses_redis {
            Some(Some(matches!(
                timeout(PROBE_TIMEOUT, self.state.ping()).await,
                Ok(Ok(()))
            )))
        } else {
            None
        };
        self.update(|snapshot| {
            snapshot.database = Some(database);
            snapshot.redis = redis;
        })
        .await;
    }

    async fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let (before, after) = {
            let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
            let before = *snapshot;
            change(&mut snapshot);
            (before, *snapshot)
        };
        if before != after {
            tracing::info!(
                ready = after.ready(),
                checks = %after.report().body["checks"],
                "readiness changed"
            );
        }
        // Only on a change, so that gRPC `Watch` streams see transitions, not a heartbeat.
        // The one probe task is the only writer, so publications stay in order.
        if before.ready() != after.ready() {
            self.publish(after.ready()).await;
        }
    }

    async fn publish(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for service in SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tollgate_proto::v1::api_service_server::ApiServiceServer;
    use tollgate_proto::v1::app_service_server::AppServiceServer;
    use tollgate_proto::v1::audit_service_server::AuditServiceServer;
    use tollgate_proto::v1::key_service_server::KeyServiceServer;
    use tollgate_proto::v1::revocation_service_server::RevocationServiceServer;
    use tollgate_proto::v1::tenant_service_server::TenantServiceServer;
    use tollgate_proto::v1::token_service_server::TokenServiceServer;
    use tonic::server::NamedService;

    use crate::grpc::{AuditAdapter, ManagementAdapter, TokenAdapter};

    #[test]
    fn every_served_service_has_a_status() {
        assert_eq!(
            super::SERVICES,
            [
                <TokenServiceServer<TokenAdapter> as NamedService>::NAME,
                <TenantServiceServer<ManagementAdapter> as NamedService>::NAME,
                <ApiServiceServer<ManagementAdapter> as NamedService>::NAME,
                <AppServiceServer<ManagementAdapter> as NamedService>::NAME,
                <KeyServiceServer<ManagementAdapter> as NamedService>::NAME,
                <RevocationServiceServer<ManagementAdapter> as NamedService>::NAME,
                <AuditServiceServer<AuditAdapter> as NamedService>::NAME,
            ]
        );
    }
}
