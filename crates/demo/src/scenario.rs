//! [`run_scenario`]: the seed scenario from set-up to the last refusal, checking every
//! answer and narrating each step.
//!
//! 1. Set-up through the management API, as the system admin and then as the new tenant's
//!    own admin (their tokens come from a [`TokenClient`] and ride on a [`BearerLayer`]):
//!    tenant `acme`, the API `https://archive.example.com/` with `archive:read` and
//!    `archive:write`, the apps `archiver` (write), `reader` (read) and `storage-api` (no
//!    grant: its credentials only watch revocations).
//! 2. The storage API starts on a free loopback port, its keys discovered from the issuer and
//!    its revocations watched.
//! 3. An anonymous request is refused (401); the archiver writes (201); the reader lists and
//!    reads (200) and is refused a write (403 `insufficient_scope`); the archiver is refused
//!    a read (403).
//! 4. An operator revokes every token of the reader; the storage API refuses the reader's
//!    token from then on (401 `invalid_token`), measured.
//!
//! The storage API is stopped on every path out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tollgate_client::{BearerLayer, GrpcTokenSource, TokenClient, TokenRequest};
use tollgate_domain::ClientSecret;
use tollgate_proto::v1::api_service_client::ApiServiceClient;
use tollgate_proto::v1::app_service_client::AppServiceClient;
use tollgate_proto::v1::revocation_service_client::RevocationServiceClient;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::v1::{
    CreateApiRequest, CreateAppRequest, CreateTenantRequest, Grant, RevokeTokensRequest,
    ScopeDefinition,
};
use tollgate_verify::{RevocationWatch, Verifier};
use tonic::transport::Channel;

use crate::DemoError;
use crate::calls::{Answer, Archiver, Reader, read};
use crate::storage::{self, API_IDENTIFIER, READ, WRITE};

/// Admin client credentials, as `tollgate serve` writes them to
/// `<data dir>/admin-credentials.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdminCredentials {
    /// The admin app's tenant (`system`).
    pub tenant: String,
    /// Its client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The Management API identifier to ask tokens for.
    pub audience: String,
}

/// Where the scenario runs.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Tollgate's gRPC API, e.g. `http://127.0.0.1:50051`.
    pub grpc_url: String,
    /// The system admin's credentials, to create the tenant.
    pub admin: AdminCredentials,
    /// The tenant to create (it must not exist yet).
    pub tenant: String,
}

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Every line narrated.
    pub narrative: Vec<String>,
    /// The tenant's issuer URL.
    pub issuer: String,
    /// From the revocation request until the storage API refused the revoked token.
    pub revocation_delay: Duration,
}

/// The archives the archiver writes.
const ARCHIVES: [(&str, &str); 3] = [
    ("2024-06-01.tar", "ledger entries of the first of June"),
    ("2024-06-02.tar", "ledger entries of the second of June"),
    ("2024-06-03.tar", "ledger entries of the third of June"),
];

/// How long the storage API may take to refuse a revoked token.
const REVOCATION_LIMIT: Duration = Duration::from_secs(1);

/// Narrates and records.
struct Narrator<F> {
    lines: Vec<String>,
    out: F,
}

impl<F: FnMut(&str)> Narrator<F> {
    fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        (self.out)(&line);
        self.lines.push(line);
    }
}

/// Stops the storage API when dropped, whatever way the scenario ends.
struct StopOnDrop(Option<oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// The outcome the scenario expects of a call, or an error saying what came instead.
fn expect(
    step: &str,
    answer: &Answer,
    status: u16,
    challenge: Option<&str>,
) -> Result<(), DemoError> {
    if answer.status == status && answer.challenge.as_deref() == challenge {
        return Ok(());
    }
    let show = |status: u16, challenge: Option<&str>| match challenge {
        Some(challenge) => format!("{status} with WWW-Authenticate: {challenge}"),
        None => status.to_string(),
    };
    Err(DemoError::Unexpected {
        step: step.to_owned(),
        expected: show(status, challenge),
        actual: show(answer.status, answer.challenge.as_deref()),
    })
}

fn refusal(answer: &Answer) -> String {
    format!(
        "{}, WWW-Authenticate: {}",
        answer.status,
        answer.challenge.as_deref().unwrap_or("(none)")
    )
}

fn grpc_failed(step: &str) -> impl FnOnce(tonic::Status) -> DemoError + '_ {
    move |status| DemoError::failed(step, format!("{:?}: {}", status.code(), status.message()))
}

/// An app of the scenario: its client id and secret.
struct App {
    client_id: String,
    secret: String,
}

/// Runs the scenario against the Tollgate at `config.grpc_url`, calling `narrate` with each
/// line as it happens. Succeeds only if every answer was the expected one.
///
/// The tenant's issuer URL must be reachable from here (its metadata names the token
/// endpoint and the JWKS): run the server with an issuer template such as
/// `http://127.0.0.1:8080/t/{tenant}/`.
pub async fn run_scenario(
    config: &ScenarioConfig,
    narrate: impl FnMut(&str),
) -> Result<ScenarioReport, DemoError> {
    let mut say = Narrator {
        lines: Vec::new(),
        out: narrate,
    };
    let tenant = config.tenant.as_str();
    let channel = Channel::from_shared(config.grpc_url.clone())
        .map_err(|error| DemoError::failed("the gRPC URL", error))?
        .connect_lazy();
    say.say(format!("Tollgate's gRPC API: {}", config.grpc_url));

    // 1. Set-up, as the operators would do it.
    let admin = &config.admin;
    let system = admin_channel(&channel, admin);
    let step = "creating the tenant";
    let created = TenantServiceClient::new(system)
        .create_tenant(CreateTenantRequest {
            name: tenant.to_owned(),
            display_name: format!("{tenant} (demo)"),
            signing_alg: String::new(),
        })
        .await
        .map_err(grpc_failed(step))?
        .into_inner();
    let created_tenant = created
        .tenant
        .ok_or_else(|| DemoError::failed(step, "no tenant in the answer"))?;
    let issuer = created_tenant.issuer;
    let tenant_admin = created
        .admin
        .ok_or_else(|| DemoError::failed(step, "no admin credentials in the answer"))?;
    say.say(format!(
        "[setup]    tenant {tenant}: issuer {issuer}, signing {}",
        created_tenant.signing_alg
    ));
    let managed = admin_channel(
        &channel,
        &AdminCredentials {
            tenant: tenant_admin.tenant,
            client_id: tenant_admin.client_id,
            client_secret: tenant_admin.client_secret,
            audience: tenant_admin.audience,
        },
    );
    let step = "registering the API";
    ApiServiceClient::new(managed.clone())
        .create_api(CreateApiRequest {
            tenant: tenant.to_owned(),
            name: "Archive storage".to_owned(),
            identifier: API_IDENTIFIER.to_owned(),
            scopes: [(READ, "read archives"), (WRITE, "write archives")]
                .into_iter()
                .map(|(value, description)| ScopeDefinition {
                    value: value.to_owned(),
                    description: description.to_owned(),
                })
                .collect(),
            token_lifetime_seconds: 900,
            signing_alg: String::new(),
        })
        .await
        .map_err(grpc_failed(step))?;
    say.say(format!(
        "[setup]    API {API_IDENTIFIER}: scopes {READ}, {WRITE}; tokens live 900 s"
    ));
    let mut apps = AppServiceClient::new(managed.clone());
    let mut create_app = async |name: &str, what: &str, scopes: &[&str]| {
        let step = format!("creating the app {name}");
        let grants = if scopes.is_empty() {
            Vec::new()
        } else {
            vec![Grant {
                audience: API_IDENTIFIER.to_owned(),
                scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            }]
        };
        let created = apps
            .create_app(CreateAppRequest {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                description: what.to_owned(),
                grants,
            })
            .await
            .map_err(grpc_failed(&step))?
            .into_inner();
        let client_id = created
            .app
            .ok_or_else(|| DemoError::failed(&step, "no app in the answer"))?
            .client_id;
        Ok::<_, DemoError>(App {
            client_id,
            secret: created.client_secret,
        })
    };
    let archiver_app = create_app("archiver", "the archiver daemon", &[WRITE]).await?;
    let reader_app = create_app("reader", "the reader job", &[READ]).await?;
    let storage_app = create_app("storage-api", "the storage API's own identity", &[]).await?;
    for (name, app, granted) in [
        ("archiver", &archiver_app, WRITE),
        ("reader", &reader_app, READ),
        (
            "storage-api",
            &storage_app,
            "nothing (it only watches revocations)",
        ),
    ] {
        say.say(format!(
            "[setup]    app {name:<11} client id {}, granted {granted}",
            app.client_id
        ));
    }

    // 2. The storage API: keys from the issuer, revocations from the stream.
    let step = "starting the storage API";
    let watch = RevocationWatch::builder(
        channel.clone(),
        tenant,
        storage_app.client_id.clone(),
        ClientSecret::new(storage_app.secret),
    )
    .spawn()
    .map_err(|error| DemoError::failed(step, error))?;
    watch
        .ready(Duration::from_secs(10))
        .await
        .map_err(|error| DemoError::failed(step, error))?;
    let verifier = Verifier::builder(&issuer, API_IDENTIFIER)
        .revocation_check(Arc::new(watch.clone()))
        .build()
        .map_err(|error| DemoError::failed(step, error))?;
    verifier
        .ready()
        .await
        .map_err(|error| DemoError::failed(step, error))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| DemoError::failed(step, error))?;
    let storage_url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|error| DemoError::failed(step, error))?
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let _stop = StopOnDrop(Some(stop));
    tokio::spawn(storage::serve(listener, verifier, async move {
        let _ = stopped.await;
    }));
    say.say(format!(
        "[storage]  listening on {storage_url}: accepts tokens of {issuer} for {API_IDENTIFIER} \
         (keys from the issuer's JWKS), revocation-aware ({} revocations in force)",
        watch.status().revocations
    ));

    // 3. The callers.
    let step = "GET /archives without a token";
    let anonymous = read(
        reqwest::Client::new()
            .get(format!("{storage_url}/archives"))
            .send()
            .await,
        step,
    )
    .await?;
    expect(step, &anonymous, 401, Some("Bearer"))?;
    say.say(format!("[nobody]   {step} → {}", refusal(&anonymous)));

    let archiver = Archiver::new(
        &issuer,
        &archiver_app.client_id,
        archiver_app.secret,
        &storage_url,
    );
    for (name, content) in ARCHIVES {
        let step = format!("PUT /archives/{name}");
        let answer = archiver.archive(name, content.as_bytes().to_vec()).await?;
        expect(&step, &answer, 201, None)?;
        say.say(format!(
            "[archiver] {step} ({} bytes) → 201 Created",
            content.len()
        ));
    }
    say.say(format!(
        "[archiver] {} writes, {} token request (HTTP; token endpoint discovered from the issuer's metadata)",
        ARCHIVES.len(),
        archiver.token_requests()
    ));

    let reader = Reader::new(
        channel.clone(),
        tenant,
        &reader_app.client_id,
        reader_app.secret,
        &storage_url,
    );
    let step = "GET /archives";
    let listed = reader.list().await?;
    expect(step, &listed, 200, None)?;
    let names: Vec<String> = listed
        .json()
        .and_then(|body| {
            body["archives"].as_array().map(|archives| {
                archives
                    .iter()
                    .filter_map(|archive| archive["name"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    let written: Vec<&str> = ARCHIVES.iter().map(|(name, _)| *name).collect();
    if names != written {
        return Err(DemoError::Unexpected {
            step: step.to_owned(),
            expected: format!("{written:?}"),
            actual: format!("{names:?}"),
        });
    }
    say.say(format!(
        "[reader]   {step} → 200: {} archives, written by {}",
        names.len(),
        archiver_app.client_id
    ));
    let (name, content) = ARCHIVES[0];
    let step = format!("GET /archives/{name}");
    let answer = reader.read(name).await?;
    expect(&step, &answer, 200, None)?;
    if answer.body != content.as_bytes() {
        return Err(DemoError::Unexpected {
            step,
            expected: format!("{content:?}"),
            actual: String::from_utf8_lossy(&answer.body).into_owned(),
        });
    }
    say.say(format!(
        "[reader]   {step} → 200: {} bytes, as written",
        answer.body.len()
    ));

    let step = "PUT /archives/forged.tar";
    let answer = reader
        .try_write("forged.tar", b"not mine to write".to_vec())
        .await?;
    let write_challenge = format!(r#"Bearer error="insufficient_scope", scope="{WRITE}""#);
    expect(step, &answer, 403, Some(&write_challenge))?;
    say.say(format!("[reader]   {step} → {}", refusal(&answer)));
    let step = "GET /archives";
    let answer = archiver.list().await?;
    let read_challenge = format!(r#"Bearer error="insufficient_scope", scope="{READ}""#);
    expect(step, &answer, 403, Some(&read_challenge))?;
    say.say(format!("[archiver] {step} → {}", refusal(&answer)));
    say.say(format!(
        "[reader]   {} token request for two reads and the refused write (gRPC IssueToken)",
        reader.token_requests()
    ));

    // 4. Revocation: every token the reader holds, by an operator.
    let step = "revoking the reader's tokens";
    // The demo reports how long a revocation took to take effect: real time.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    RevocationServiceClient::new(managed)
        .revoke_tokens(RevokeTokensRequest {
            tenant: tenant.to_owned(),
            target: Some(Target::ClientId(reader_app.client_id.clone())),
        })
        .await
        .map_err(grpc_failed(step))?;
    say.say(format!(
        "[operator] revoked every token of the reader (tollgate token revoke --tenant {tenant} --app {})",
        reader_app.client_id
    ));
    let revoked_challenge =
        r#"Bearer error="invalid_token", error_description="token has been revoked""#;
    let step = "GET /archives with the revoked token";
    let answer = loop {
        let answer = reader.list().await?;
        if answer.status != 200 || started.elapsed() > REVOCATION_LIMIT {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let revocation_delay = started.elapsed();
    expect(step, &answer, 401, Some(revoked_challenge))?;
    say.say(format!(
        "[reader]   {step} → {} ({} ms after the revocation request)",
        refusal(&answer),
        revocation_delay.as_millis()
    ));
    say.say("Everything behaved: writes need archive:write, reads archive:read, and revoked tokens are refused at once.");
    Ok(ScenarioReport {
        narrative: say.lines,
        issuer,
        revocation_delay,
    })
}

/// A gRPC channel that carries an admin token of `admin` on every call, fetched and
/// refreshed by a [`TokenClient`].
fn admin_channel(channel: &Channel, admin: &AdminCredentials) -> tollgate_client::Bearer<Channel> {
    let tokens = TokenClient::new(GrpcTokenSource::new(
        channel.clone(),
        &admin.tenant,
        &admin.client_id,
        admin.client_secret.clone(),
    ));
    tower::Layer::layer(
        &BearerLayer::new(tokens, TokenRequest::new(&admin.audience)),
        channel.clone(),
    )
}
