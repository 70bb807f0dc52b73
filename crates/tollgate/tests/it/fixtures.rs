//! A tenant with an API and an app, made through the management API, helpers to read tokens
//! with a standard JWT library, and the loud skip of a test whose backends are missing.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use tollgate_proto::v1::{
    CreateApiRequest, CreateAppRequest, CreateTenantRequest, Grant, IssueTokenRequest,
    IssueTokenResponse, ScopeDefinition,
};
use tollgate_store::{AuditFilter, AuditRow, AuditScope, Store};
use tollgate_testkit::{AdminClients, AdminCredentials, RedisServer, TestServer};

pub const ARCHIVE: &str = "https://archive.example.com/";

/// A tenant `name` with an API `ARCHIVE` (scopes archive:read, archive:write, archive:admin)
/// and an app holding archive:read and archive:write on it.
pub struct Fixture {
    pub tenant_id: String,
    pub issuer: String,
    pub admin: AdminCredentials,
    pub admin_clients: AdminClients,
    pub client_id: String,
    pub client_secret: String,
}

pub fn scopes(values: &[&str]) -> Vec<ScopeDefinition> {
    values
        .iter()
        .map(|value| ScopeDefinition {
            value: (*value).to_owned(),
            description: format!("allows {value}"),
        })
        .collect()
}

pub fn grant(audience: &str, scopes: &[&str]) -> Grant {
    Grant {
        audience: audience.to_owned(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
    }
}

impl Fixture {
    pub async fn new(server: &TestServer, name: &str) -> anyhow::Result<Self> {
        Self::with_alg(server, name, "").await
    }

    pub async fn with_alg(server: &TestServer, name: &str, alg: &str) -> anyhow::Result<Self> {
        let mut system = server.system_admin().await?;
        let created = system
            .tenants
            .create_tenant(CreateTenantRequest {
                name: name.to_owned(),
                display_name: format!("{name} corp"),
                signing_alg: alg.to_owned(),
            })
            .await?
            .into_inner();
        let tenant = created.tenant.context("no tenant")?;
        let admin = created.admin.context("no admin credentials")?;
        let admin = AdminCredentials {
            tenant: admin.tenant,
            client_id: admin.client_id,
            client_secret: admin.client_secret,
            audience: admin.audience,
        };
        let token = server.admin_token_for(&admin).await?;
        let mut admin_clients = server.admin_clients(&token)?;
        admin_clients
            .apis
            .create_api(CreateApiRequest {
                tenant: name.to_owned(),
                name: "Archive".to_owned(),
                identifier: ARCHIVE.to_owned(),
                scopes: scopes(&["archive:read", "archive:write", "archive:admin"]),
                token_lifetime_seconds: 900,
                signing_alg: String::new(),
            })
            .await?;
        let app = admin_clients
            .apps
            .create_app(CreateAppRequest {
                tenant: name.to_owned(),
                name: "archiver".to_owned(),
                description: "writes archives".to_owned(),
                grants: vec![grant(ARCHIVE, &["archive:read", "archive:write"])],
            })
            .await?
            .into_inner();
        Ok(Self {
            tenant_id: tenant.id,
            issuer: tenant.issuer,
            admin,
            admin_clients,
            client_id: app.app.context("no app")?.client_id,
            client_secret: app.client_secret,
        })
    }

    /// A token request of the fixture's app for [`ARCHIVE`], asking no scope (so for every
    /// one the app holds).
    pub fn archive_request(&self) -> IssueTokenRequest {
        IssueTokenRequest {
            tenant: self.admin.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            audience: ARCHIVE.to_owned(),
            scopes: Vec::new(),
        }
    }

    /// [`Fixture::archive_request`] over gRPC to `server`.
    pub async fn archive_token(
        &self,
        server: &TestServer,
    ) -> Result<IssueTokenResponse, tonic::Status> {
        server
            .tokens()
            .issue_token(self.archive_request())
            .await
            .map(tonic::Response::into_inner)
    }

    /// Creates, through the fixture's admin, an app `name` of the fixture's tenant (no
    /// description) holding `grants`; its client id and secret.
    pub async fn create_app(
        &self,
        name: &str,
        grants: Vec<Grant>,
    ) -> anyhow::Result<(String, String)> {
        create_app_in(&self.admin_clients, &self.admin.tenant, name, grants).await
    }
}

/// Creates, through `admin`, an app `name` of `tenant` (no description) holding `grants`;
/// its client id and secret.
pub async fn create_app_in(
    admin: &AdminClients,
    tenant: &str,
    name: &str,
    grants: Vec<Grant>,
) -> anyhow::Result<(String, String)> {
    let created = admin
        .apps
        .clone()
        .create_app(CreateAppRequest {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            grants,
        })
        .await?
        .into_inner();
    Ok((
        created.app.context("no app")?.client_id,
        created.client_secret,
    ))
}

/// Every audit record of the tenant with `tenant_id`, oldest first, read straight from the
/// store in pages of 1,000.
pub async fn audit_records(store: &Store, tenant_id: &str) -> anyhow::Result<Vec<AuditRow>> {
    let mut rows = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_audit_events(
                AuditScope::Tenant(&tollgate_domain::TenantId::new(tenant_id)),
                &AuditFilter::default(),
                before,
                1_000,
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        let is_last_page = page.len() < 1_000;
        rows.extend(page);
        if is_last_page {
            break;
        }
    }
    rows.reverse();
    Ok(rows)
}

/// Waits (up to 10 s) until the tenant's trail holds a record matching `wanted`, and returns
/// the oldest such: refusals of failed client authentication are recorded in aggregate by
/// the flush (every second; every [`tollgate_testkit::DENIAL_FLUSH`] on a test server) once
/// the server's clock has left their second, not before the answer.
pub async fn wait_for_record(
    store: &Store,
    tenant_id: &str,
    wanted: impl Fn(&AuditRow) -> bool,
) -> anyhow::Result<AuditRow> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(row) = audit_records(store, tenant_id)
            .await?
            .into_iter()
            .find(&wanted)
        {
            return Ok(row);
        }
        if Instant::now() > deadline {
            bail!("no such record in the trail of {tenant_id}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's own database made to refuse every insert into the audit trail (a trigger
/// raising `audit disk full`), as a failing audit store would, until mended.
pub struct FailingTrail {
    connection: sea_orm::DatabaseConnection,
}

impl FailingTrail {
    /// Connects to the database at `database_url`; the trail is still writable.
    pub async fn connect(database_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            connection: sea_orm::Database::connect(database_url).await?,
        })
    }

    /// Makes every insert into `audit_events` fail.
    pub async fn fail(&self) -> anyhow::Result<()> {
        let (fail, _) = self.sql();
        self.run(fail).await
    }

    /// Undoes [`FailingTrail::fail`].
    pub async fn mend(&self) -> anyhow::Result<()> {
        let (_, mend) = self.sql();
        self.run(mend).await
    }

    /// Closes the connection.
    pub async fn close(self) -> anyhow::Result<()> {
        Ok(self.connection.close().await?)
    }

    /// The SQL that makes every insert into the trail fail, and the SQL that undoes it.
    fn sql(&self) -> (&'static [&'static str], &'static [&'static str]) {
        use sea_orm::ConnectionTrait as _;
        match self.connection.get_database_backend() {
            sea_orm::DbBackend::Postgres => (
                &[
                    "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$ LANGUAGE plpgsql",
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
                ],
                &[
                    "DROP TRIGGER refuse_audit ON audit_events",
                    "DROP FUNCTION refuse_audit()",
                ],
            ),
            _ => (
                &[
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit disk full'); END",
                ],
                &["DROP TRIGGER refuse_audit"],
            ),
        }
    }

    async fn run(&self, statements: &[&str]) -> anyhow::Result<()> {
        use sea_orm::ConnectionTrait as _;
        for sql in statements {
            self.connection.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Fetches a tenant's JWKS over HTTP.
pub async fn fetch_jwks(server: &TestServer, tenant: &str) -> anyhow::Result<JwkSet> {
    let url = format!("{}/t/{tenant}/.well-known/jwks.json", server.http_url);
    let response = reqwest::get(&url).await?.error_for_status()?;
    Ok(response.json().await?)
}

/// Verifies `token` with jsonwebtoken (a standard JWT library) against a JWKS, the way a
/// resource server would, and returns header and claims.
pub fn verify_with_jwks(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<(jsonwebtoken::Header, serde_json::Value)> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().context("no kid")?;
    let jwk = jwks.find(&kid).context("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk)?;
    let alg = match jwk.common.key_algorithm.context("jwk without alg")? {
        jsonwebtoken::jwk::KeyAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        jsonwebtoken::jwk::KeyAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        jsonwebtoken::jwk::KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        other => anyhow::bail!("unexpected key algorithm {other:?}"),
    };
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)?;
    Ok((data.header, data.claims))
}

/// The gRPC status code and `ErrorInfo.reason` of a failed call.
pub fn reason(status: &tonic::Status) -> (tonic::Code, String) {
    use tonic_types::StatusExt;
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    (status.code(), reason)
}

/// Posts a form to a tenant's token endpoint.
pub async fn post_token_form(
    server: &TestServer,
    tenant: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/t/{tenant}/oauth/token", server.http_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form));
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    Ok(request.send().await?)
}

/// Posts a client-credentials request for [`ARCHIVE`] (no scope) to `token_url` with `http`,
/// authenticating as `client_id` with `client_secret` (HTTP Basic).
pub async fn post_archive_form(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
) -> reqwest::Result<reqwest::Response> {
    http.post(token_url)
        .basic_auth(client_id, Some(client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
        ]))
        .send()
        .await
}

/// A response's `Retry-After` header, if it is text.
pub fn retry_after(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

pub fn encode_form(form: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in form.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(&urlencode(key));
        out.push('=');
        out.push_str(&urlencode(value));
    }
    out
}

fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// What a test of several instances lacks, if anything: `TOLLGATE_TEST_POSTGRES_URL`,
/// `TOLLGATE_TEST_REDIS_URL`, or `redis-server` on `PATH` (each such test runs its own).
pub fn multi_instance_missing() -> Option<&'static str> {
    let is_set = |name: &str| std::env::var(name).is_ok_and(|value| !value.is_empty());
    if !is_set("TOLLGATE_TEST_POSTGRES_URL") {
        Some("TOLLGATE_TEST_POSTGRES_URL is not set")
    } else if !is_set("TOLLGATE_TEST_REDIS_URL") {
        Some("TOLLGATE_TEST_REDIS_URL is not set")
    } else if !RedisServer::is_installed() {
        Some("redis-server is not on PATH (each test runs its own)")
    } else {
        None
    }
}

/// `true` when `missing` is `None`. Otherwise a loud skip of `test` (`module::name`): a panic
/// with `TOLLGATE_REQUIRE_BACKENDS=1`, else `SKIPPED: {suite} — {test}: {missing}` on stderr
/// and `false`.
pub fn present_or_skip(suite: &str, test: &str, missing: Option<&str>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        panic!("{test}: {missing}, but TOLLGATE_REQUIRE_BACKENDS=1");
    }
    // Straight to stderr: the test harness swallows `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {suite} — {test}: {missing}");
    false
}
