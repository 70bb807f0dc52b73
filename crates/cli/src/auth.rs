//! Connecting to the server and authenticating the admin commands.
//!
//! An admin command finds the credentials of an admin app ([`find_credentials`]), exchanges
//! them for an access token to the tenant's Management API with `TokenService/IssueToken`,
//! and sends that token as `authorization: Bearer …` on every management call
//! ([`AdminSession`]). Errors name the credential source and the client id, never the
//! secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tollgate_domain::MANAGEMENT_API_SUFFIX;
use tollgate_proto::v1;
use tollgate_proto::v1::api_service_client::ApiServiceClient;
use tollgate_proto::v1::app_service_client::AppServiceClient;
use tollgate_proto::v1::audit_service_client::AuditServiceClient;
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::revocation_service_client::RevocationServiceClient;
use tollgate_proto::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use super::GlobalOptions;
use super::channel::GrpcChannel;
use tollgate_proto::admin::ADMIN_CREDENTIALS_FILE;

/// Environment variable with the admin app's tenant.
pub const ENV_ADMIN_TENANT: &str = "TOLLGATE_ADMIN_TENANT";
/// Environment variable with the admin app's client id.
pub const ENV_ADMIN_CLIENT_ID: &str = "TOLLGATE_ADMIN_CLIENT_ID";
/// Environment variable with the admin app's client secret.
pub const ENV_ADMIN_CLIENT_SECRET: &str = "TOLLGATE_ADMIN_CLIENT_SECRET";

/// How long to wait for the TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The client credentials of an admin app, in the format of the data dir's
/// `admin-credentials.json` and of the `admin` member of `tenant create --output json`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AdminCredentials {
    /// The tenant the admin app belongs to.
    pub tenant: String,
    /// The admin app's client id.
    pub client_id: String,
    /// The admin app's client secret; never printed.
    pub client_secret: String,
    /// The Management API identifier to ask a token for; when absent, `<issuer>manage` with
    /// the issuer from `TokenService/GetJwks`.
    #[serde(default)]
    pub audience: Option<String>,
}

impl fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("audience", &self.audience)
            .finish()
    }
}

/// Where the admin credentials were found; named in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The `TOLLGATE_ADMIN_*` environment variables.
    Environment,
    /// The file given with `--credentials`.
    CredentialsFlag(PathBuf),
    /// `admin-credentials.json` in the data dir.
    DataDir(PathBuf),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Environment => write!(
                f,
                "the environment ({ENV_ADMIN_TENANT}, {ENV_ADMIN_CLIENT_ID}, {ENV_ADMIN_CLIENT_SECRET})"
            ),
            CredentialSource::CredentialsFlag(path) => {
                write!(f, "the credentials file {} (--credentials)", path.display())
            }
            CredentialSource::DataDir(path) => write!(
                f,
                "the credentials file {} (in the data dir: --data-dir, TOLLGATE_DATA_DIR)",
                path.display()
            ),
        }
    }
}

/// Finds the admin credentials: the `TOLLGATE_ADMIN_TENANT`, `TOLLGATE_ADMIN_CLIENT_ID` and
/// `TOLLGATE_ADMIN_CLIENT_SECRET` variables, read through `env`, when all three are set
/// (an empty variable counts as unset; setting only some of them is an error rather than a
/// silent fall-back); else the `credentials_file`, when given; else
/// `<data_dir>/admin-credentials.json`.
pub fn find_credentials(
    env: impl Fn(&str) -> Option<String>,
    credentials_file: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<(CredentialSource, AdminCredentials)> {
    let variables = [
        ENV_ADMIN_TENANT,
        ENV_ADMIN_CLIENT_ID,
        ENV_ADMIN_CLIENT_SECRET,
    ]
    .map(|name| (name, env(name).filter(|value| !value.is_empty())));
    match variables {
        [
            (_, Some(tenant)),
            (_, Some(client_id)),
            (_, Some(client_secret)),
        ] => {
            return Ok((
                CredentialSource::Environment,
                AdminCredentials {
                    tenant,
                    client_id,
                    client_secret,
                    audience: None,
                },
            ));
        }
        [(_, None), (_, None), (_, None)] => {}
        partial => {
            let (set, unset): (Vec<_>, Vec<_>) =
                partial.iter().partition(|(_, value)| value.is_some());
            let names = |list: Vec<&(&str, Option<String>)>| {
                list.iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            bail!(
                "incomplete admin credentials in the environment: {} set but {} not; set all \
                 three, or none to use --credentials or the data dir",
                names(set),
                names(unset)
            );
        }
    }
    let source = match credentials_file {
        Some(path) => CredentialSource::CredentialsFlag(path.to_owned()),
        None => {
            let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
            if !path.exists() {
                bail!(
                    "no admin credentials: {ENV_ADMIN_TENANT}, {ENV_ADMIN_CLIENT_ID} and \
                     {ENV_ADMIN_CLIENT_SECRET} are not set, --credentials is not given, and {} \
                     does not exist (the first `tollgate serve` writes it into its data dir; \
                     point --data-dir or TOLLGATE_DATA_DIR there)",
                    path.display()
                );
            }
            CredentialSource::DataDir(path)
        }
    };
    let credentials = read_credentials_file(&source)?;
    Ok((source, credentials))
}

fn read_credentials_file(source: &CredentialSource) -> anyhow::Result<AdminCredentials> {
    let (CredentialSource::CredentialsFlag(path) | CredentialSource::DataDir(path)) = source else {
        bail!("{source} is not a file");
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin credentials from {source}"))?;
    let credentials: AdminCredentials = serde_json::from_str(&text).map_err(|error| {
        // serde_json's message names the field and position, never a string value.
        anyhow::anyhow!(
            "invalid admin credentials in {source}: {error} (expected JSON with tenant, \
             client_id, client_secret and optionally audience)"
        )
    })?;
    for (field, value) in [
        ("tenant", &credentials.tenant),
        ("client_id", &credentials.client_id),
        ("client_secret", &credentials.client_secret),
    ] {
        if value.is_empty() {
            bail!("invalid admin credentials in {source}: {field} is empty");
        }
    }
    Ok(credentials)
}

/// Opens a channel to `endpoint`, failing fast if the server cannot be reached. Calls on it
/// fail with a clear message when the endpoint answers but not in gRPC (the HTTP port).
pub async fn connect(endpoint: &str) -> anyhow::Result<GrpcChannel> {
    if endpoint.starts_with("https://") {
        bail!(
            "cannot use endpoint {endpoint} (--endpoint, TOLLGATE_ENDPOINT): this build speaks \
             plain http:// only; terminate TLS in front of Tollgate"
        );
    }
    if !endpoint.starts_with("http://") {
        bail!(
            "invalid endpoint {endpoint:?} (--endpoint, TOLLGATE_ENDPOINT): expected http://host:port"
        );
    }
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid endpoint {endpoint:?} (--endpoint, TOLLGATE_ENDPOINT)"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint} (--endpoint, TOLLGATE_ENDPOINT)"))?;
    Ok(GrpcChannel::new(channel, endpoint))
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct BearerToken(AsciiMetadataValue);

impl BearerToken {
    /// The interceptor for `access_token`.
    pub fn new(access_token: &str) -> anyhow::Result<Self> {
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {access_token}"))
            .context("the server returned an access token that is not valid in a header")?;
        value.set_sensitive(true);
        Ok(Self(value))
    }
}

impl Interceptor for BearerToken {
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

/// A channel through which every call carries an admin token.
pub type AdminChannel = InterceptedService<GrpcChannel, BearerToken>;

/// A connection authenticated as an admin app.
#[derive(Clone)]
pub struct AdminSession {
    channel: GrpcChannel,
    bearer: BearerToken,
}

impl AdminSession {
    /// Finds the admin credentials as `options` say, connects, and gets an admin token.
    pub async fn open(options: &GlobalOptions) -> anyhow::Result<Self> {
        let (source, credentials) = find_credentials(
            |name| std::env::var(name).ok(),
            options.credentials.as_deref(),
            &options.data_dir,
        )?;
        let channel = connect(&options.endpoint).await?;
        let access_token = admin_token(channel.clone(), &source, &credentials).await?;
        Ok(Self {
            channel,
            bearer: BearerToken::new(&access_token)?,
        })
    }

    /// A `TenantService` client.
    pub fn tenants(&self) -> TenantServiceClient<AdminChannel> {
        TenantServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// An `ApiService` client.
    pub fn apis(&self) -> ApiServiceClient<AdminChannel> {
        ApiServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// An `AppService` client.
    pub fn apps(&self) -> AppServiceClient<AdminChannel> {
        AppServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// A `KeyService` client.
    pub fn keys(&self) -> KeyServiceClient<AdminChannel> {
        KeyServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// An `AuditService` client.
    pub fn audit(&self) -> AuditServiceClient<AdminChannel> {
        AuditServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// A `RevocationService` client.
    pub fn revocations(&self) -> RevocationServiceClient<AdminChannel> {
        RevocationServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
}

/// Exchanges the admin credentials for a token to the tenant's Management API.
async fn admin_token(
    channel: GrpcChannel,
    source: &CredentialSource,
    credentials: &AdminCredentials,
) -> anyhow::Result<String> {
    let who = format!(
        "tenant {:?}, client id {:?}, from {source}",
        credentials.tenant, credentials.client_id
    );
    let mut client = TokenServiceClient::new(channel);
    let audience = match credentials.audience.as_deref() {
        Some(audience) if !audience.is_empty() => audience.to_owned(),
        _ => {
            let jwks = client
                .get_jwks(v1::GetJwksRequest {
                    tenant: credentials.tenant.clone(),
                })
                .await
                .with_context(|| {
                    format!(
                        "cannot find the Management API of the admin credentials' tenant ({who})"
                    )
                })?
                .into_inner();
            format!("{}{MANAGEMENT_API_SUFFIX}", jwks.issuer)
        }
    };
    let response = client
        .issue_token(v1::IssueTokenRequest {
            tenant: credentials.tenant.clone(),
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.clone(),
            audience: audience.clone(),
            scopes: Vec::new(),
        })
        .await
        .with_context(|| format!("cannot get an admin token for {audience} ({who})"))?;
    Ok(response.into_inner().access_token)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const FILE_JSON: &str = r#"{"tenant":"system","client_id":"file-id","client_secret":"tgsec_file","audience":"http://system.hub.localhost:8080/manage"}"#;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn full_env() -> impl Fn(&str) -> Option<String> {
        env_of(&[
            (ENV_ADMIN_TENANT, "acme"),
            (ENV_ADMIN_CLIENT_ID, "env-id"),
            (ENV_ADMIN_CLIENT_SECRET, "tgsec_env"),
        ])
    }

    #[test]
    fn environment_wins_over_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("creds.json");
        std::fs::write(&file, FILE_JSON)?;
        std::fs::write(dir.path().join(ADMIN_CREDENTIALS_FILE), FILE_JSON)?;
        let (source, credentials) = find_credentials(full_env(), Some(&file), dir.path())?;
        assert_eq!(source, CredentialSource::Environment);
        assert_eq!(credentials.tenant, "acme");
        assert_eq!(credentials.client_id, "env-id");
        assert_eq!(credentials.client_secret, "tgsec_env");
        assert_eq!(credentials.audience, None);
        Ok(())
    }

    #[test]
    fn credentials_flag_wins_over_the_data_dir() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("creds.json");
        std::fs::write(&file, FILE_JSON)?;
        std::fs::write(
            dir.path().join(ADMIN_CREDENTIALS_FILE),
            r#"{"tenant":"other","client_id":"x","client_secret":"y"}"#,
        )?;
        let (source, credentials) = find_credentials(env_of(&[]), Some(&file), dir.path())?;
        assert_eq!(source, CredentialSource::CredentialsFlag(file));
        assert_eq!(credentials.client_id, "file-id");
        assert_eq!(
            credentials.audience.as_deref(),
            Some("http://system.hub.localhost:8080/manage")
        );
        Ok(())
    }

    #[test]
    fn data_dir_is_the_last_resort() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(ADMIN_CREDENTIALS_FILE);
        // Extra members (as in `tenant create --output json | jq .admin`) are ignored;
        // `audience` is optional.
        std::fs::write(
            &path,
            r#"{"tenant":"acme","client_id":"dd","client_secret":"s","note":"x"}"#,
        )?;
        // Empty variables count as unset.
        let env = env_of(&[(ENV_ADMIN_TENANT, ""), (ENV_ADMIN_CLIENT_SECRET, "")]);
        let (source, credentials) = find_credentials(env, None, dir.path())?;
        assert_eq!(source, CredentialSource::DataDir(path));
        assert_eq!(credentials.client_id, "dd");
        assert_eq!(credentials.audience, None);
        Ok(())
    }

    #[test]
    fn partial_environment_is_an_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(ADMIN_CREDENTIALS_FILE), FILE_JSON)?;
        let env = env_of(&[
            (ENV_ADMIN_TENANT, "acme"),
            (ENV_ADMIN_CLIENT_SECRET, "tgsec_env"),
        ]);
        let message = find_credentials(env, None, dir.path())
            .err()
            .map(|error| format!("{error:#}"))
            .unwrap_or_default();
        assert!(message.contains(ENV_ADMIN_CLIENT_ID), "{message}");
        assert!(!message.contains("tgsec_env"), "{message}");
        Ok(())
    }

    #[test]
    fn missing_and_broken_sources_are_named_without_secrets() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let message = |result: anyhow::Result<(CredentialSource, AdminCredentials)>| {
            result
                .err()
                .map(|error| format!("{error:#}"))
                .unwrap_or_default()
        };

        let missing = message(find_credentials(env_of(&[]), None, dir.path()));
        assert!(missing.contains(ADMIN_CREDENTIALS_FILE), "{missing}");
        assert!(missing.contains(ENV_ADMIN_TENANT), "{missing}");

        let absent = dir.path().join("absent.json");
        let missing_flag = message(find_credentials(env_of(&[]), Some(&absent), dir.path()));
        assert!(missing_flag.contains("absent.json"), "{missing_flag}");
        assert!(missing_flag.contains("--credentials"), "{missing_flag}");

        let broken = dir.path().join("broken.json");
        std::fs::write(
            &broken,
            r#"{"tenant":"acme","client_secret":"tgsec_hidden"}"#,
        )?;
        let broken_message = message(find_credentials(env_of(&[]), Some(&broken), dir.path()));
        assert!(broken_message.contains("client_id"), "{broken_message}");
        assert!(!broken_message.contains("tgsec_hidden"), "{broken_message}");

        let empty = dir.path().join("empty.json");
        std::fs::write(
            &empty,
            r#"{"tenant":"acme","client_id":"c","client_secret":""}"#,
        )?;
        let empty_message = message(find_credentials(env_of(&[]), Some(&empty), dir.path()));
        assert!(
            empty_message.contains("client_secret is empty"),
            "{empty_message}"
        );
        Ok(())
    }

    #[test]
    fn debug_hides_the_secret() {
        let credentials = AdminCredentials {
            tenant: "acme".to_owned(),
            client_id: "c".to_owned(),
            client_secret: "tgsec_hidden".to_owned(),
            audience: None,
        };
        assert!(!format!("{credentials:?}").contains("tgsec_hidden"));
    }

    #[tokio::test]
    async fn bad_endpoints_are_refused_before_connecting() {
        for endpoint in ["https://example.com", "127.0.0.1:50051"] {
            let message = connect(endpoint)
                .await
                .err()
                .map(|error| format!("{error:#}"))
                .unwrap_or_default();
            assert!(message.contains("--endpoint"), "{message}");
        }
    }
}
