//! Test fixtures: [`TestServer`] runs the real `serve` in-process on ephemeral ports (SQLite
//! in a temporary directory by default, PostgreSQL on request) and hands out gRPC clients
//! and the HTTP base URL, so tests talk to Tollgate exactly as clients do.
//!
//! Backend selection: PostgreSQL suites read `TOLLGATE_TEST_POSTGRES_URL`; unset, they skip
//! loudly, and with `TOLLGATE_REQUIRE_BACKENDS=1` (as in CI) a skip is a failure.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::config::{Config, ServeArgs};
use tollgate::server::{ADMIN_CREDENTIALS_FILE, Listeners, serve};
use tollgate_proto::v1::api_service_client::ApiServiceClient;
use tollgate_proto::v1::app_service_client::AppServiceClient;
use tollgate_proto::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{IssueTokenRequest, IssueTokenResponse};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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

/// Options of a test server.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The database.
    pub backend: Backend,
    /// The issuer template (default: `http://{tenant}.hub.localhost:8080/`).
    pub issuer_template: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            issuer_template: None,
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
        let database_url = match options.backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let base = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
                    .context("TOLLGATE_TEST_POSTGRES_URL is not set")?;
                Some(tollgate_store::testing::fresh_postgres_database(&base).await?)
            }
        };
        let args = ServeArgs {
            data_dir: data_dir.clone(),
            grpc_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            database_url,
            master_key: None,
            issuer_template: options
                .issuer_template
                .unwrap_or_else(|| tollgate_domain::IssuerTemplate::DEFAULT.to_owned()),
            jwks_max_age: 300,
        };
        let config = Config::from_args(args)?;
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_url = format!("http://{}", grpc.local_addr()?);
        let http_url = format!("http://{}", http.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, Listeners { grpc, http }, async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(grpc_url.clone())?.connect_lazy();
        // The listeners are bound already; wait until bootstrap has written the credentials.
        let credentials_path = data_dir.join(ADMIN_CREDENTIALS_FILE);
        let mut waited = Duration::ZERO;
        while !credentials_path.exists() {
            if task.is_finished() {
                match task.await {
                    Ok(Ok(())) => bail!("server stopped during start-up"),
                    Ok(Err(error)) => return Err(error.context("server failed to start")),
                    Err(error) => bail!("server task panicked: {error}"),
                }
            }
            if waited > Duration::from_secs(60) {
                bail!("server did not bootstrap within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        // The file is created empty, then written: read until it parses.
        let admin = loop {
            let text = std::fs::read_to_string(&credentials_path)?;
            if let Ok(admin) = serde_json::from_str::<AdminCredentials>(&text) {
                break admin;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Self {
            grpc_url,
            http_url,
            admin,
            data_dir,
            channel,
            _temp_dir: temp_dir,
            stop: Some(stop),
            task: Some(task),
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

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<tonic::metadata::Ascii>);

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
