//! Test fixtures: [`TestServer`] runs the real `serve` in-process on ephemeral ports (SQLite
//! in a temporary directory by default, PostgreSQL on request) and hands out gRPC clients
//! and the HTTP base URL, so tests talk to Tollgate exactly as clients do.
//!
//! Backend selection: PostgreSQL suites read `TOLLGATE_TEST_POSTGRES_URL`; unset, they skip
//! loudly, and with `TOLLGATE_REQUIRE_BACKENDS=1` (as in CI) a skip is a failure.
//!
//! Time: every [`TestServer`] tells time by a [`TestClock`] ([`TestServer::clock`]): the
//! real clock until a test moves it forward instead of sleeping; instances joining one share
//! its clock.
//!
//! [`RedisServer`] runs a throwaway `redis-server` per test (`serve` has no setting for a
//! Redis key prefix, so parallel tests cannot share one), which a test may also kill and
//! restart empty.
//!
//! [`PostgresServer`] runs a throwaway PostgreSQL cluster (`initdb` in a temporary
//! directory) that a test may stop and start again, where the shared PostgreSQL must stay
//! up for the tests running beside it; [`TestOptions::database_url`] points a server at it.

// Fixtures wait for real processes and sockets (start-up deadlines): real time.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::config::{Config, ServeArgs};
use tollgate::server::{ADMIN_CREDENTIALS_FILE, Listeners, serve};
pub use tollgate_domain::TestClock;
use tollgate_proto::v1::api_service_client::ApiServiceClient;
use tollgate_proto::v1::app_service_client::AppServiceClient;
use tollgate_proto::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{IssueTokenRequest, IssueTokenResponse};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

mod postgres;
mod redis;
pub use postgres::{PostgresServer, StopMode};
pub use redis::RedisServer;

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file in the server's temporary data dir.
    Sqlite,
    /// A fresh database on the server named by `TOLLGATE_TEST_POSTGRES_URL`.
    Postgres,
}

/// The PostgreSQL URL for tests, or `None` after a loud skip notice. Panics when
/// `TOLLGATE_REQUIRE_BACKENDS=1` and the URL is missing, so CI cannot skip silently.
pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var("TOLLGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
                panic!(
                    "{test}: TOLLGATE_TEST_POSTGRES_URL is not set but TOLLGATE_REQUIRE_BACKENDS=1"
                );
            }
            // Straight to stderr: the test harness swallows `eprintln!` of passing tests.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {test} on PostgreSQL — TOLLGATE_TEST_POSTGRES_URL is not set"
            );
            None
        }
    }
}

/// Admin client credentials as written to `admin-credentials.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdminCredentials {
    /// Tenant of the admin app.
    pub tenant: String,
    /// Its client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The Management API identifier.
    pub audience: String,
}

/// How often a test server writes secrets' last-use times (the server's 10 s, shortened so
/// that a test sees a last use at once).
pub const USAGE_FLUSH: Duration = Duration::from_millis(200);
/// How often a test server records aggregated refusals (the server's 1 s, shortened so that
/// a test sees them once the server's clock has left their second).
pub const DENIAL_FLUSH: Duration = Duration::from_millis(100);

/// Options of a test server.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The database.
    pub backend: Backend,
    /// The issuer template (default: `http://{tenant}.hub.localhost:8080/`). `{http_addr}`
    /// is replaced by the test server's HTTP address, so that
    /// `http://{http_addr}/t/{tenant}/` gives issuers whose metadata, JWKS and token
    /// endpoint are reachable at their own URLs (discovery as clients do it).
    pub issuer_template: Option<String>,
    /// `TOLLGATE_REDIS_URL`; `None` = in-process shared state.
    pub redis_url: Option<String>,
    /// Join another instance: same database, same master key (same admin credentials).
    pub join: Option<Joined>,
    /// The database of a first instance, instead of the backend's default (say, a
    /// [`PostgresServer`] the test stops and starts); ignored when joining.
    pub database_url: Option<String>,
    /// Default app rate limit (requests per second).
    pub app_rate_limit: u64,
    /// Scheduled key rotation period (`30d`, `10s`, …; `0` = off).
    pub key_rotation_period: String,
    /// Seconds between looks for due rotations.
    pub key_rotation_check_seconds: u64,
    /// Key propagation delay in seconds.
    pub key_propagation_seconds: u64,
    /// Connection limits of both listeners (default: the server's defaults).
    pub connections: tollgate::config::ConnectionArgs,
    /// `TOLLGATE_GATEWAY_SECRET`: the secret an edge gateway must present for the caller
    /// addresses it forwards to be trusted (default: none, forwarded addresses ignored).
    pub gateway_secret: Option<String>,
}

/// What a second instance shares with the first.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The database both use.
    pub database_url: String,
    /// The master key both use.
    pub master_key: String,
    /// The admin credentials the first one bootstrapped.
    pub admin: AdminCredentials,
    /// The first one's clock, which the joining one reads too (moving it moves both).
    pub clock: TestClock,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            issuer_template: None,
            redis_url: None,
            join: None,
            database_url: None,
            app_rate_limit: 100,
            key_rotation_period: "30d".to_owned(),
            key_rotation_check_seconds: 60,
            key_propagation_seconds: 0,
            connections: tollgate::config::ConnectionArgs::default(),
            gateway_secret: None,
        }
    }
}

/// A running Tollgate. Dropping it stops the server.
pub struct TestServer {
    /// `http://127.0.0.1:<port>` of the gRPC API.
    pub grpc_url: String,
    /// `http://127.0.0.1:<port>` of the HTTP gateway.
    pub http_url: String,
    /// The system tenant's admin credentials, read from the data dir.
    pub admin: AdminCredentials,
    /// The server's data dir.
    pub data_dir: PathBuf,
    /// What another instance needs to join this one.
    pub joined: Joined,
    /// The server's clock: tests [`TestClock::advance`] it instead of sleeping where what
    /// they wait for is the server's reading of time (second cut-offs, refills, expiry).
    pub clock: TestClock,
    channel: Channel,
    _temp_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server on SQLite.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(TestOptions::default()).await
    }

    /// Starts a server with `options`.
    pub async fn start_with(options: TestOptions) -> anyhow::Result<Self> {
        let temp_dir = tempfile::tempdir()?;
        let data_dir = temp_dir.path().join("data");
        let (database_url, master_key) = match &options.join {
            Some(joined) => (
                Some(joined.database_url.clone()),
                Some(joined.master_key.clone()),
            ),
            // The first instance uses the defaults where it can: SQLite and the generated
            // development master key in its data dir.
            None => match (options.backend, &options.database_url) {
                (_, Some(url)) => (Some(url.clone()), None),
                (Backend::Sqlite, None) => (None, None),
                (Backend::Postgres, None) => {
                    let base = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
                        .context("TOLLGATE_TEST_POSTGRES_URL is not set")?;
                    let url = tollgate_store::testing::fresh_postgres_database(&base).await?;
                    (Some(url), None)
                }
            },
        };
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_url = format!("http://{}", grpc.local_addr()?);
        let http_url = format!("http://{}", http.local_addr()?);
        let args = ServeArgs {
            data_dir: data_dir.clone(),
            grpc_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            database_url,
            master_key: master_key.clone(),
            issuer_template: options
                .issuer_template
                .unwrap_or_else(|| tollgate_domain::IssuerTemplate::DEFAULT.to_owned())
                .replace("{http_addr}", &http.local_addr()?.to_string()),
            jwks_max_age: 300,
            redis_url: options.redis_url.clone(),
            key_rotation_period: options.key_rotation_period.clone(),
            audit_retention: "90d".to_owned(),
            key_rotation_check_seconds: options.key_rotation_check_seconds,
            key_propagation_seconds: Some(options.key_propagation_seconds),
            app_rate_limit: options.app_rate_limit,
            tenant_rate_limit: 100_000,
            connections: options.connections.clone(),
            gateway: tollgate::config::GatewaySecretArgs {
                gateway_secret: options.gateway_secret.clone(),
                gateway_secret_file: None,
            },
        };
        let clock = options
            .join
            .as_ref()
            .map_or_else(TestClock::new, |joined| joined.clock.clone());
        let config = Config {
            clock: std::sync::Arc::new(clock.clone()),
            usage_flush: USAGE_FLUSH,
            denial_flush: DENIAL_FLUSH,
            ..Config::from_args(args)?
        };
        let database_url = config.database_url.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, Listeners { grpc, http }, async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(grpc_url.clone())?.connect_lazy();
        let admin = match &options.join {
            Some(joined) => {
                wait_until_serving(&channel, &task).await?;
                joined.admin.clone()
            }
            None => read_admin_credentials(&data_dir, &task).await?,
        };
        let master_key = match master_key {
            Some(key) => key,
            None => std::fs::read_to_string(data_dir.join("master.key"))?,
        };
        let joined = Joined {
            database_url,
            master_key,
            admin: admin.clone(),
            clock: clock.clone(),
        };
        Ok(Self {
            grpc_url,
            http_url,
            admin,
            data_dir,
            joined,
            clock,
            channel,
            _temp_dir: temp_dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Clients of a server running elsewhere (say, a `tollgate serve` process) at
    /// `grpc_addr` and `http_addr` (`host:port`), administered with `admin`. Such a server is
    /// not stopped by this value; `joined` describes the default SQLite database in
    /// `data_dir` and carries no master key.
    pub fn attach(
        grpc_addr: &str,
        http_addr: &str,
        admin: AdminCredentials,
        data_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let grpc_url = format!("http://{grpc_addr}");
        let channel = Channel::from_shared(grpc_url.clone())?.connect_lazy();
        Ok(Self {
            grpc_url,
            http_url: format!("http://{http_addr}"),
            joined: Joined {
                database_url: format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("tollgate.db").display()
                ),
                master_key: String::new(),
                admin: admin.clone(),
                clock: TestClock::new(),
            },
            admin,
            data_dir,
            // Another process reads the real clock: this one stays unmoved.
            clock: TestClock::new(),
            channel,
            _temp_dir: tempfile::tempdir()?,
            stop: None,
            task: None,
        })
    }

    /// A channel to the gRPC API.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A TokenService client.
    pub fn tokens(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel())
    }

    /// Gets a token with an app's credentials over gRPC.
    pub async fn issue(
        &self,
        tenant: &str,
        client_id: &str,
        client_secret: &str,
        audience: &str,
        scopes: &[&str],
    ) -> Result<IssueTokenResponse, tonic::Status> {
        self.tokens()
            .issue_token(IssueTokenRequest {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                audience: audience.to_owned(),
                scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// An admin token for the given admin credentials.
    pub async fn admin_token_for(&self, admin: &AdminCredentials) -> anyhow::Result<String> {
        Ok(self
            .issue(
                &admin.tenant,
                &admin.client_id,
                &admin.client_secret,
                &admin.audience,
                &[],
            )
            .await?
            .access_token)
    }

    /// Management clients authenticated with `token`.
    pub fn admin_clients(&self, token: &str) -> anyhow::Result<AdminClients> {
        let header: MetadataValue<_> = format!("Bearer {token}").parse()?;
        let auth = BearerAuth(header);
        Ok(AdminClients {
            tenants: TenantServiceClient::with_interceptor(self.channel(), auth.clone()),
            apis: ApiServiceClient::with_interceptor(self.channel(), auth.clone()),
            apps: AppServiceClient::with_interceptor(self.channel(), auth),
        })
    }

    /// Management clients authenticated as the system tenant's admin.
    pub async fn system_admin(&self) -> anyhow::Result<AdminClients> {
        let token = self.admin_token_for(&self.admin).await?;
        self.admin_clients(&token)
    }

    /// Stops the server gracefully and reports how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits until bootstrap has written the admin credentials to the data dir, and reads them.
async fn read_admin_credentials(
    data_dir: &std::path::Path,
    task: &JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<AdminCredentials> {
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    let started = std::time::Instant::now();
    loop {
        // The file is created empty, then written: read until it parses.
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(admin) = serde_json::from_str::<AdminCredentials>(&text)
        {
            return Ok(admin);
        }
        if task.is_finished() {
            bail!("server stopped during start-up");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("server did not bootstrap within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gRPC API answers (an instance joining a bootstrapped database).
async fn wait_until_serving(
    channel: &Channel,
    task: &JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let answer = TokenServiceClient::new(channel.clone())
            .get_jwks(tollgate_proto::v1::GetJwksRequest {
                tenant: "system".to_owned(),
            })
            .await;
        if answer.is_ok() {
            return Ok(());
        }
        if task.is_finished() {
            bail!("server stopped during start-up");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("server did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<tonic::metadata::Ascii>);

impl BearerAuth {
    /// Sends `token` as the bearer token.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Management clients sharing one admin token.
pub struct AdminClients {
    /// TenantService.
    pub tenants: TenantServiceClient<InterceptedService<Channel, BearerAuth>>,
    /// ApiService.
    pub apis: ApiServiceClient<InterceptedService<Channel, BearerAuth>>,
    /// AppService.
    pub apps: AppServiceClient<InterceptedService<Channel, BearerAuth>>,
}
