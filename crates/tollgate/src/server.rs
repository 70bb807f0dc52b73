//! `serve`: wires store, key material, catalog, issuer, management, the gRPC services and
//! the HTTP gateway, on listeners the caller has already bound (tests bind port 0).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_audit::{AuditConfig, AuditWriter};
use tollgate_catalog::{Catalog, Revocations};
use tollgate_domain::{
    AccessTokenClaims, ChangeListener, Clock, IssuedToken, TenantName, TokenCallRequest,
    TokenRequest,
};
use tollgate_gateway::listen::{Acceptor, GrpcConnectionLayer, Protocol};
use tollgate_gateway::{BackendError, ConnectionLimits, GatewayConfig, TenantKeys, TokenBackend};
use tollgate_issuer::{Issuer, IssuerParts};
use tollgate_management::{AdminCredentials, KeyPolicy, Management, ManagementParts};
use tollgate_proto::v1::api_service_server::ApiServiceServer;
use tollgate_proto::v1::app_service_server::AppServiceServer;
use tollgate_proto::v1::audit_service_server::AuditServiceServer;
use tollgate_proto::v1::key_service_server::KeyServiceServer;
use tollgate_proto::v1::revocation_service_server::RevocationServiceServer;
use tollgate_proto::v1::tenant_service_server::TenantServiceServer;
use tollgate_proto::v1::token_service_server::TokenServiceServer;
use tollgate_state::SharedState;
use tollgate_store::Store;

use crate::background::{Background, Broadcaster};
use crate::config::{Config, GatewayOnlyConfig};
use crate::grpc::{AuditAdapter, ManagementAdapter, TokenAdapter, log_if_internal};
use crate::health::Health;
use crate::message_limits::{
    MAX_MANAGEMENT_REQUEST_BYTES, MAX_TOKEN_REQUEST_BYTES, OversizedMessageLayer,
};

pub use tollgate_proto::admin::ADMIN_CREDENTIALS_FILE;

/// The sockets `serve` accepts on.
pub struct Listeners {
    /// gRPC API.
    pub grpc: TcpListener,
    /// HTTP gateway.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on TOLLGATE_GRPC_ADDR {}", config.grpc_addr))?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on TOLLGATE_HTTP_ADDR {}", config.http_addr))?;
        Ok(Self { grpc, http })
    }
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    // Owner-only from the first start: the database, its WAL and the key files live here.
    crate::files::prepare_data_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot prepare TOLLGATE_DATA_DIR {}",
            config.data_dir.display()
        )
    })?;
    let store = Store::connect(&config.database_url)
        .await
        .context("cannot open TOLLGATE_DATABASE_URL")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// Runs the server until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let open_files = crate::fd_limit::raise_open_file_limit();
    let connection_limits = config.connections.resolve(open_files, 2);
    let store = open_store(&config).await?;
    let master_key = Arc::new(config.load_master_key()?);
    let clock: Arc<dyn Clock> = Arc::clone(&config.clock);
    let store = store.with_clock(Arc::clone(&clock));
    let state = match &config.redis_url {
        Some(url) => SharedState::connect_redis_with_clock(url, Arc::clone(&clock))
            .await
            .context("cannot connect to TOLLGATE_REDIS_URL")?,
        None => SharedState::in_process_with_clock(Arc::clone(&clock)),
    };
    let catalog = Arc::new(Catalog::new(
        store.clone(),
        Arc::clone(&master_key),
        config.issuer_template.clone(),
    ));
    // Every token request is recorded through this writer before it is answered.
    let (audit, audit_task) =
        AuditWriter::start_with_clock(store.clone(), AuditConfig::default(), Arc::clone(&clock));
    let revocations = Arc::new(Revocations::new(store.clone(), state.clone()));
    let issuer = Arc::new(Issuer::new(IssuerParts {
        store: store.clone(),
        catalog: Arc::clone(&catalog),
        revocations: Arc::clone(&revocations),
        shared: state.clone(),
        hasher: master_key.secret_hasher(),
        clock: Arc::clone(&clock),
        limits: config.rate_limits,
        audit,
    }));
    let listener: Arc<dyn ChangeListener> = Arc::new(Broadcaster {
        catalog: Arc::clone(&catalog),
        state: state.clone(),
    });
    let management = Arc::new(Management::new(ManagementParts {
        store: store.clone(),
        catalog: Arc::clone(&catalog),
        revocations: Arc::clone(&revocations),
        listener,
        issuer_template: config.issuer_template.clone(),
        master_key: Arc::clone(&master_key),
        clock: Arc::clone(&clock),
        keys: KeyPolicy {
            propagation_delay: config.key_propagation_delay,
        },
    }));
    if let Some(credentials) = management.bootstrap().await? {
        announce_admin_credentials(&config.data_dir, &credentials)?;
    }

    // Created only now that the key material is loaded and the system tenant exists:
    // nothing reports ready before.
    let health = Health::new(store.clone(), state.clone(), config.redis_url.is_some()).await;
    let (stop_sender, stop_receiver) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_sender.send(true);
    });
    let background = Arc::new(Background {
        store: store.clone(),
        catalog: Arc::clone(&catalog),
        revocations,
        issuer: Arc::clone(&issuer),
        management: Arc::clone(&management),
        state: state.clone(),
        clock,
        key_rotation_period: config.key_rotation_period,
        key_rotation_check: config.key_rotation_check,
        usage_flush: config.usage_flush,
        denial_flush: config.denial_flush,
        audit_retention: config.audit_retention,
    })
    .spawn(stop_receiver.clone());
    let health_task = health.clone().spawn(stop_receiver.clone());

    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let grpc = tokio::spawn(serve_grpc(
        listeners.grpc,
        TokenAdapter::new(
            Arc::clone(&issuer),
            stop_receiver.clone(),
            config.gateway_secret.clone(),
        ),
        ManagementAdapter::new(Arc::clone(&management)),
        // Audit streams end on shutdown by themselves: graceful shutdown waits for them.
        AuditAdapter::new(management, stop_receiver.clone()),
        health.reporter(),
        connection_limits.clone(),
        stopped(stop_receiver.clone()),
    ));
    let router = tollgate_gateway::router(
        GatewayConfig {
            jwks_max_age_seconds: config.jwks_max_age,
            readiness: Some(health.readiness_check()),
            ..GatewayConfig::new(config.issuer_template.clone())
        },
        Arc::new(InProcessBackend {
            issuer: Arc::clone(&issuer),
        }),
    );
    let http = tokio::spawn(tollgate_gateway::serve_with_limits(
        listeners.http,
        router,
        connection_limits.clone(),
        stopped(stop_receiver),
    ));
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        max_connections_per_listener = connection_limits.max_connections,
        database = store.backend_name(),
        shared_state = state.backend_name(),
        "tollgate serving"
    );
    let (grpc, http) = tokio::join!(grpc, http);
    for task in background {
        let _ = task.await;
    }
    let _ = health_task.await;
    // No request is in flight any more: record the last aggregated denials, then commit
    // everything queued before the process ends.
    if let Err(error) = issuer.flush_denials(true).await {
        tracing::error!(error = %error, "rate-limit denials not recorded at shutdown");
    }
    issuer.audit().shutdown().await;
    let _ = audit_task.await;
    let stats = issuer.audit().stats();
    let transactions = stats.batches + stats.failed_batches;
    tracing::info!(
        events = stats.events,
        transactions = stats.batches,
        failed_events = stats.failed_events,
        mean_batch = stats.events.checked_div(stats.batches).unwrap_or(0),
        mean_commit_micros = stats.commit_micros.checked_div(transactions).unwrap_or(0),
        "audit trail flushed"
    );
    // Checkpoints an embedded database, so the file alone is a complete copy after a stop.
    if let Err(error) = store.close().await {
        tracing::warn!(error = %error, "the database was not closed cleanly");
    }
    grpc.context("gRPC server task failed")??;
    http.context("HTTP server task failed")?
        .context("HTTP server failed")?;
    tracing::info!("tollgate stopped");
    Ok(())
}

/// Runs the HTTP gateway alone, reaching the issuer at `config.issuer_endpoint` over gRPC,
/// until `shutdown` completes. For the edge: no database credentials, no key material.
pub async fn serve_gateway(
    config: GatewayOnlyConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let channel = config.issuer_endpoint.connect_lazy();
    let router = tollgate_gateway::router(
        GatewayConfig {
            jwks_max_age_seconds: config.jwks_max_age,
            ..GatewayConfig::new(config.issuer_template)
        },
        Arc::new(match config.credential {
            Some(credential) => {
                tollgate_gateway::GrpcBackend::new(channel).with_credential(credential)
            }
            None => tollgate_gateway::GrpcBackend::new(channel),
        }),
    );
    let open_files = crate::fd_limit::raise_open_file_limit();
    let limits = config.connections.resolve(open_files, 1);
    tracing::info!(
        http = %listener.local_addr()?,
        issuer = %config.issuer_endpoint.uri(),
        max_connections = limits.max_connections,
        "tollgate gateway serving"
    );
    tollgate_gateway::serve_with_limits(listener, router, limits, shutdown)
        .await
        .context("HTTP gateway failed")
}

async fn stopped(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

async fn serve_grpc(
    listener: TcpListener,
    tokens: TokenAdapter,
    management: ManagementAdapter,
    audit: AuditAdapter,
    health: tonic_health::server::HealthReporter,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Statuses for "" and every service, kept by `crate::health` (see `health::SERVICES`).
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tollgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    // Connection limits: the acceptor caps connections and times the preface, idle
    // connections and request bodies (see `tollgate_gateway::listen`); hyper pings and caps
    // streams. The acceptor also sets TCP_NODELAY: without it, small responses wait on
    // delayed ACKs (~40 ms per call).
    let incoming = Acceptor::new(listener, limits.clone(), Protocol::Grpc).into_incoming();
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .layer(GrpcConnectionLayer)
        // Outside the remapping below, so the logged status is the one the caller gets.
        .layer(crate::access::GrpcAccessLogLayer)
        .layer(OversizedMessageLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            TokenServiceServer::new(tokens).max_decoding_message_size(MAX_TOKEN_REQUEST_BYTES),
        )
        .add_service(
            TenantServiceServer::new(management.clone())
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES),
        )
        .add_service(
            ApiServiceServer::new(management.clone())
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES),
        )
        .add_service(
            AppServiceServer::new(management.clone())
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES),
        )
        .add_service(
            KeyServiceServer::new(management.clone())
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES),
        )
        .add_service(
            RevocationServiceServer::new(management)
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES),
        )
        .add_service(
            AuditServiceServer::new(audit)
                .max_decoding_message_size(MAX_MANAGEMENT_REQUEST_BYTES)
                .max_encoding_message_size(crate::grpc::MAX_AUDIT_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("gRPC server failed")
}

/// Prints the first admin credentials once and writes them, mode 0600, to the data dir.
fn announce_admin_credentials(
    data_dir: &Path,
    credentials: &AdminCredentials,
) -> anyhow::Result<()> {
    let document = serde_json::json!({
        "tenant": credentials.tenant.as_str(),
        "client_id": credentials.client_id.as_str(),
        "client_secret": credentials.client_secret.expose(),
        "audience": credentials.audience.as_str(),
    });
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    let text = serde_json::to_string_pretty(&document)?;
    crate::files::write_private(&path, text.as_bytes())?;
    // Printed on purpose, once: the operator needs them to create the first tenant. A
    // closed standard output loses only this copy (the file has them), so it is no reason
    // to panic, as `println!` would, or to stop.
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_fmt(
        &mut stdout,
        format_args!(
            "Created the system tenant. Admin credentials (shown once, saved to {}):\n{text}\n",
            path.display()
        ),
    );
    Ok(())
}

/// The gateway's backend in the all-in-one server: calls the issuer directly, skipping a
/// loopback gRPC hop. An edge gateway uses `tollgate_gateway::GrpcBackend` instead.
struct InProcessBackend {
    issuer: Arc<Issuer>,
}

impl TokenBackend for InProcessBackend {
    async fn issue_token(&self, request: TokenRequest) -> Result<IssuedToken, BackendError> {
        self.issuer.issue(request).await.map_err(backend_error)
    }

    async fn jwks(&self, tenant: &TenantName) -> Result<TenantKeys, BackendError> {
        let (issuer, jwks_json) = self.issuer.jwks(tenant).await.map_err(backend_error)?;
        Ok(TenantKeys { issuer, jwks_json })
    }

    async fn revoke_token(&self, request: TokenCallRequest) -> Result<(), BackendError> {
        self.issuer.revoke(request).await.map_err(backend_error)
    }

    async fn introspect_token(
        &self,
        request: TokenCallRequest,
    ) -> Result<Option<AccessTokenClaims>, BackendError> {
        self.issuer.introspect(request).await.map_err(backend_error)
    }
}

/// The issuer's error for the gateway, through the one service-error translation; internal
/// causes are logged here, as the gRPC adapters log theirs.
fn backend_error(error: tollgate_issuer::IssueError) -> BackendError {
    log_if_internal(&error);
    BackendError::from_service(&error)
}
