//! Creates the tenants a multi-tenant run needs, through the management gRPC API with the
//! system tenant's admin credentials: per tenant, the tenant, one API and one app holding a
//! grant on it. Runs concurrently, bounded by a deadline; every tenant costs three write
//! transactions on the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Mutex;
use tollgate_proto::v1::api_service_client::ApiServiceClient;
use tollgate_proto::v1::app_service_client::AppServiceClient;
use tollgate_proto::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{
    CreateApiRequest, CreateAppRequest, CreateTenantRequest, Grant, IssueTokenRequest,
    ScopeDefinition,
};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::fixture::Credential;

/// The audience of every benchmark API (identifiers are unique per tenant only).
pub const BENCH_AUDIENCE: &str = "https://bench.tollgate.example/";
/// The one scope of every benchmark API.
pub const BENCH_SCOPE: &str = "bench:read";

/// Attempts per call when the server answers UNAVAILABLE (e.g. the database is busy).
const ATTEMPTS: u32 = 5;

/// What to create.
pub struct SetupSpec {
    /// How many tenants.
    pub tenants: usize,
    /// Tenant names are `<prefix>-<number>`.
    pub prefix: String,
    /// The tenants' signing algorithm (`ES256`, `EdDSA`, `RS256`).
    pub signing_alg: String,
    /// Tenants created at once.
    pub concurrency: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The system admin's bearer token, renewed at half its lifetime.
struct AdminToken {
    admin: Credential,
    tokens: TokenServiceClient<Channel>,
    current: Mutex<Option<(MetadataValue<Ascii>, Instant)>>,
}

impl AdminToken {
    async fn header(&self, renew: bool) -> anyhow::Result<MetadataValue<Ascii>> {
        let mut current = self.current.lock().await;
        if let Some((header, renew_at)) = current.as_ref()
            && !renew
            && Instant::now() < *renew_at
        {
            return Ok(header.clone());
        }
        let response = self
            .tokens
            .clone()
            .issue_token(IssueTokenRequest {
                tenant: self.admin.tenant.clone(),
                client_id: self.admin.client_id.clone(),
                client_secret: self.admin.client_secret.clone(),
                audience: self.admin.audience.clone(),
                scopes: Vec::new(),
            })
            .await
            .context("cannot get an admin token with the admin credentials")?
            .into_inner();
        let header: MetadataValue<Ascii> = format!("Bearer {}", response.access_token).parse()?;
        let lifetime = Duration::from_secs(u64::try_from(response.expires_in).unwrap_or(60));
        *current = Some((header.clone(), Instant::now() + lifetime / 2));
        Ok(header)
    }
}

/// Management clients on one channel, authenticated per call.
#[derive(Clone)]
struct Clients {
    tenants: TenantServiceClient<Channel>,
    apis: ApiServiceClient<Channel>,
    apps: AppServiceClient<Channel>,
}

/// Runs `call` with the admin token, renewing the token on UNAUTHENTICATED and retrying on
/// UNAVAILABLE; ALREADY_EXISTS on a retry means the first attempt went through.
async fn with_admin<T, F, Fut>(
    token: &AdminToken,
    what: &str,
    mut call: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut(MetadataValue<Ascii>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut renew = false;
    for attempt in 1..=ATTEMPTS {
        let header = token.header(renew).await?;
        match call(header).await {
            Ok(value) => return Ok(Some(value)),
            Err(status) if status.code() == Code::AlreadyExists && attempt > 1 => return Ok(None),
            Err(status) if status.code() == Code::Unauthenticated && !renew => renew = true,
            Err(status) if status.code() == Code::Unavailable && attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(status) => bail!("{what}: {:?}: {}", status.code(), status.message()),
        }
    }
    bail!("{what}: gave up after {ATTEMPTS} attempts")
}

fn authorized<T>(message: T, header: MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", header);
    request
}

/// Creates `spec.tenants` tenants with an API and an app each, and returns the apps'
/// credentials in tenant order.
pub async fn create_tenants(
    channel: Channel,
    admin: Credential,
    spec: &SetupSpec,
) -> anyhow::Result<Vec<Credential>> {
    let started = Instant::now();
    let deadline = started + spec.timeout;
    let token = Arc::new(AdminToken {
        admin,
        tokens: TokenServiceClient::new(channel.clone()),
        current: Mutex::new(None),
    });
    token.header(false).await?;
    let clients = Clients {
        tenants: TenantServiceClient::new(channel.clone()),
        apis: ApiServiceClient::new(channel.clone()),
        apps: AppServiceClient::new(channel),
    };
    let results: Arc<std::sync::Mutex<Vec<Option<Credential>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; spec.tenants]));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let width = spec.tenants.saturating_sub(1).to_string().len().max(5);
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency.clamp(1, 256) {
        let (token, clients, results, next, done) = (
            Arc::clone(&token),
            clients.clone(),
            Arc::clone(&results),
            Arc::clone(&next),
            Arc::clone(&done),
        );
        let (total, prefix, alg) = (spec.tenants, spec.prefix.clone(), spec.signing_alg.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(());
                }
                if Instant::now() > deadline {
                    bail!("tenant creation did not finish in time ({index} of {total} started)");
                }
                let name = format!("{prefix}-{index:0width$}");
                let credential = create_one(&token, &clients, &name, &alg).await?;
                if let Some(slot) = results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_mut(index)
                {
                    *slot = Some(credential);
                }
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 1000 == 0 && finished < total {
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  created {finished}/{total} tenants in {seconds:.0} s ({:.0}/s)",
                        finished as f64 / seconds
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let results = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    results
        .into_iter()
        .enumerate()
        .map(|(index, credential)| {
            credential.with_context(|| format!("tenant #{index} was not created"))
        })
        .collect()
}

async fn create_one(
    token: &AdminToken,
    clients: &Clients,
    name: &str,
    alg: &str,
) -> anyhow::Result<Credential> {
    let what = format!("create tenant {name}");
    with_admin(token, &what, |header| {
        let mut tenants = clients.tenants.clone();
        let request = CreateTenantRequest {
            name: name.to_owned(),
            display_name: format!("Benchmark tenant {name}"),
            signing_alg: alg.to_owned(),
        };
        async move { tenants.create_tenant(authorized(request, header)).await }
    })
    .await?;
    let what = format!("create the API of tenant {name}");
    with_admin(token, &what, |header| {
        let mut apis = clients.apis.clone();
        let request = CreateApiRequest {
            tenant: name.to_owned(),
            name: "Benchmark".to_owned(),
            identifier: BENCH_AUDIENCE.to_owned(),
            scopes: vec![ScopeDefinition {
                value: BENCH_SCOPE.to_owned(),
                description: "Benchmark scope".to_owned(),
            }],
            token_lifetime_seconds: 0,
            signing_alg: String::new(),
        };
        async move { apis.create_api(authorized(request, header)).await }
    })
    .await?;
    let what = format!("create the app of tenant {name}");
    let created = with_admin(token, &what, |header| {
        let mut apps = clients.apps.clone();
        let request = CreateAppRequest {
            tenant: name.to_owned(),
            name: "bench".to_owned(),
            description: "tollgate-bench load generator".to_owned(),
            grants: vec![Grant {
                audience: BENCH_AUDIENCE.to_owned(),
                scopes: vec![BENCH_SCOPE.to_owned()],
            }],
        };
        async move { apps.create_app(authorized(request, header)).await }
    })
    .await?
    .with_context(|| format!("{what}: no answer"))?
    .into_inner();
    let app = created
        .app
        .with_context(|| format!("{what}: the answer has no app"))?;
    Ok(Credential {
        tenant: name.to_owned(),
        client_id: app.client_id,
        client_secret: created.client_secret,
        audience: BENCH_AUDIENCE.to_owned(),
    })
}
