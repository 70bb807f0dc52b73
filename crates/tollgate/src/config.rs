//! Server configuration: flags with `TOLLGATE_*` environment equivalents, validated once at
//! start. A bad value fails start-up with a message naming the setting, and never echoes a
//! secret value.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use tollgate_domain::IssuerTemplate;
use tollgate_gateway::ConnectionLimits;
use tollgate_keys::MasterKey;

/// Settings of `tollgate serve` (and `tollgate migrate`, which needs the database ones).
#[derive(Clone, clap::Args)]
pub struct ServeArgs {
    /// Where the embedded SQLite database, the development master key and the first admin
    /// credentials live.
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./tollgate-data")]
    pub data_dir: PathBuf,
    /// Address of the gRPC API (every service on one port).
    #[arg(long, env = "TOLLGATE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP gateway (token endpoint, JWKS, metadata).
    #[arg(long, env = "TOLLGATE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// `postgres://user:password@host/db` for PostgreSQL; default: SQLite in the data dir.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// 32-byte key (64 hex characters or base64) that encrypts signing keys at rest and
    /// derives the client-secret pepper. Default: a key file generated in the data dir
    /// (development only).
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Issuer URL of each tenant; must contain `{tenant}` and end with `/`.
    #[arg(long, env = "TOLLGATE_ISSUER_TEMPLATE", default_value = IssuerTemplate::DEFAULT)]
    pub issuer_template: String,
    /// `Cache-Control: max-age` of the JWKS and metadata documents, in seconds.
    #[arg(long, env = "TOLLGATE_JWKS_MAX_AGE", default_value_t = 300)]
    pub jwks_max_age: u64,
    /// `redis://host:port/db`: revocation, rate limits and cache invalidation shared by every
    /// instance. Without it they are in-process, which is correct for one instance only.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Time between scheduled signing-key rotations of each tenant, as a number with a unit
    /// (`30d`, `12h`, `90m`, `45s`); `0` turns them off.
    #[arg(long, env = "TOLLGATE_KEY_ROTATION_PERIOD", default_value = "30d")]
    pub key_rotation_period: String,
    /// How long audit records are kept, as a number with a unit (`90d`, `12h`); `0` keeps
    /// them forever. Older records are purged in the background; what remains of each
    /// tenant's chain still verifies from its oldest record.
    #[arg(long, env = "TOLLGATE_AUDIT_RETENTION", default_value = "90d")]
    pub audit_retention: String,
    /// Seconds between two looks for tenants due for a scheduled rotation.
    #[arg(
        long,
        env = "TOLLGATE_KEY_ROTATION_CHECK_SECONDS",
        default_value_t = 60
    )]
    pub key_rotation_check_seconds: u64,
    /// Seconds between publishing a new signing key and signing with it; default: the JWKS
    /// max-age, so verifiers have the key before they meet a token it signed.
    #[arg(long, env = "TOLLGATE_KEY_PROPAGATION_SECONDS")]
    pub key_propagation_seconds: Option<u64>,
    /// Default token requests per second of one app (bursts of twice that); apps may set
    /// their own.
    #[arg(long, env = "TOLLGATE_APP_RATE_LIMIT", default_value_t = 100)]
    pub app_rate_limit: u64,
    /// Default token requests per second of one tenant (bursts of twice that); tenants may
    /// set their own.
    #[arg(long, env = "TOLLGATE_TENANT_RATE_LIMIT", default_value_t = 2000)]
    pub tenant_rate_limit: u64,
    /// Connection limits of both listeners.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The secret an edge gateway presents to have the caller addresses it forwards trusted.
    #[command(flatten)]
    pub gateway: GatewaySecretArgs,
}

/// Connection limits of the listeners (see README, "Connection limits"). Each applies to
/// the gRPC and the HTTP listener alike, except where it names one.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectionArgs {
    /// Most connections open at once on each listener. At the cap the connection idle for
    /// longest is closed to make room; when every one has a request in flight, new ones wait
    /// in the accept backlog. Default: derived from the open-file limit, (limit − 128) / 2
    /// per listener (the gateway alone: limit − 128), between 16 and 10000.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds from accepting an HTTP connection to its first complete request head, and
    /// from the first byte of a later request head to its end.
    #[arg(long, env = "TOLLGATE_HEADER_TIMEOUT_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout_seconds: u64,
    /// Seconds from a request's head to the end of its body (HTTP bodies and gRPC request
    /// messages).
    #[arg(long, env = "TOLLGATE_BODY_TIMEOUT_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_BODY_TIMEOUT))]
    pub body_timeout_seconds: u64,
    /// Seconds a connection without a request in flight stays open (a stream in progress,
    /// such as a revocation watch, counts as a request).
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_IDLE_TIMEOUT))]
    pub idle_timeout_seconds: u64,
    /// gRPC listener: seconds from accepting a connection to the end of its HTTP/2
    /// connection preface.
    #[arg(long, env = "TOLLGATE_PREFACE_TIMEOUT_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_PREFACE_TIMEOUT))]
    pub preface_timeout_seconds: u64,
    /// HTTP/2: seconds between two keep-alive pings from the server.
    #[arg(long, env = "TOLLGATE_HTTP2_KEEPALIVE_INTERVAL_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_HTTP2_KEEPALIVE_INTERVAL))]
    pub http2_keepalive_interval_seconds: u64,
    /// HTTP/2: seconds to wait for a ping's acknowledgement before closing the connection.
    #[arg(long, env = "TOLLGATE_HTTP2_KEEPALIVE_TIMEOUT_SECONDS", default_value_t = secs(ConnectionLimits::DEFAULT_HTTP2_KEEPALIVE_TIMEOUT))]
    pub http2_keepalive_timeout_seconds: u64,
    /// HTTP/2: the most requests a client may have open at once on one connection.
    #[arg(long, env = "TOLLGATE_HTTP2_MAX_STREAMS", default_value_t = ConnectionLimits::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS)]
    pub http2_max_streams: u32,
}

const fn secs(duration: std::time::Duration) -> u64 {
    duration.as_secs()
}

/// The documented defaults (the same as the command line's).
impl Default for ConnectionArgs {
    fn default() -> Self {
        Self {
            max_connections: None,
            header_timeout_seconds: secs(ConnectionLimits::DEFAULT_HEADER_TIMEOUT),
            body_timeout_seconds: secs(ConnectionLimits::DEFAULT_BODY_TIMEOUT),
            idle_timeout_seconds: secs(ConnectionLimits::DEFAULT_IDLE_TIMEOUT),
            preface_timeout_seconds: secs(ConnectionLimits::DEFAULT_PREFACE_TIMEOUT),
            http2_keepalive_interval_seconds: secs(
                ConnectionLimits::DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
            ),
            http2_keepalive_timeout_seconds: secs(
                ConnectionLimits::DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
            ),
            http2_max_streams: ConnectionLimits::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        }
    }
}

/// The longest timeout any connection setting accepts: one hour.
const MAX_CONNECTION_TIMEOUT_SECONDS: u64 = 3_600;
/// The largest `TOLLGATE_MAX_CONNECTIONS`.
const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// The largest `TOLLGATE_HTTP2_MAX_STREAMS`.
const MAX_HTTP2_STREAMS: u32 = 10_000;

/// Validated [`ConnectionArgs`]: the limits, and whether the cap was given (otherwise it is
/// derived from the open-file limit at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The limits; `max_connections` holds the default until [`ConnectionConfig::resolve`].
    pub limits: ConnectionLimits,
    /// `TOLLGATE_MAX_CONNECTIONS`, if set.
    pub max_connections: Option<usize>,
}

impl ConnectionConfig {
    /// Validates `args`; errors name the setting.
    pub fn from_args(args: &ConnectionArgs) -> anyhow::Result<Self> {
        let timeout = |name: &str, seconds: u64| -> anyhow::Result<std::time::Duration> {
            if !(1..=MAX_CONNECTION_TIMEOUT_SECONDS).contains(&seconds) {
                bail!(
                    "invalid {name}: must be between 1 and {MAX_CONNECTION_TIMEOUT_SECONDS} seconds"
                );
            }
            Ok(std::time::Duration::from_secs(seconds))
        };
        if let Some(max) = args.max_connections
            && !(1..=MAX_MAX_CONNECTIONS).contains(&max)
        {
            bail!(
                "invalid TOLLGATE_MAX_CONNECTIONS (--max-connections): must be between 1 and {MAX_MAX_CONNECTIONS}"
            );
        }
        if !(1..=MAX_HTTP2_STREAMS).contains(&args.http2_max_streams) {
            bail!(
                "invalid TOLLGATE_HTTP2_MAX_STREAMS (--http2-max-streams): must be between 1 and {MAX_HTTP2_STREAMS}"
            );
        }
        let limits = ConnectionLimits {
            max_connections: args
                .max_connections
                .unwrap_or(ConnectionLimits::DEFAULT_MAX_CONNECTIONS),
            header_timeout: timeout(
                "TOLLGATE_HEADER_TIMEOUT_SECONDS (--header-timeout-seconds)",
                args.header_timeout_seconds,
            )?,
            body_timeout: timeout(
                "TOLLGATE_BODY_TIMEOUT_SECONDS (--body-timeout-seconds)",
                args.body_timeout_seconds,
            )?,
            idle_timeout: timeout(
                "TOLLGATE_IDLE_TIMEOUT_SECONDS (--idle-timeout-seconds)",
                args.idle_timeout_seconds,
            )?,
            preface_timeout: timeout(
                "TOLLGATE_PREFACE_TIMEOUT_SECONDS (--preface-timeout-seconds)",
                args.preface_timeout_seconds,
            )?,
            http2_keepalive_interval: timeout(
                "TOLLGATE_HTTP2_KEEPALIVE_INTERVAL_SECONDS (--http2-keepalive-interval-seconds)",
                args.http2_keepalive_interval_seconds,
            )?,
            http2_keepalive_timeout: timeout(
                "TOLLGATE_HTTP2_KEEPALIVE_TIMEOUT_SECONDS (--http2-keepalive-timeout-seconds)",
                args.http2_keepalive_timeout_seconds,
            )?,
            http2_max_concurrent_streams: args.http2_max_streams,
        };
        Ok(Self {
            limits,
            max_connections: args.max_connections,
        })
    }

    /// The limits of one of `listeners` listeners in a process allowed `open_files` file
    /// descriptors: the configured cap, or one derived from `open_files`.
    pub fn resolve(&self, open_files: Option<u64>, listeners: u64) -> ConnectionLimits {
        let max_connections = match (self.max_connections, open_files) {
            (Some(max), Some(open_files))
                if (max as u64).saturating_mul(listeners)
                    > open_files.saturating_sub(ConnectionLimits::RESERVED_FILES) =>
            {
                // Used as given: descriptors running out are survived (the listener closes
                // an idle connection and backs off), but the operator should know.
                tracing::warn!(
                    max_connections = max,
                    listeners,
                    open_files,
                    "TOLLGATE_MAX_CONNECTIONS is more than the open-file limit leaves for connections"
                );
                max
            }
            (Some(max), _) => max,
            (None, Some(open_files)) => {
                ConnectionLimits::max_connections_for(open_files, listeners)
            }
            (None, None) => ConnectionLimits::DEFAULT_MAX_CONNECTIONS,
        };
        ConnectionLimits {
            max_connections,
            ..self.limits.clone()
        }
    }
}

/// Redacts the master key and the database URL, which may hold a password.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServeArgs")
            .field("data_dir", &self.data_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("database_url", &redacted(&self.database_url))
            .field("master_key", &redacted(&self.master_key))
            .field("issuer_template", &self.issuer_template)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("redis_url", &redacted(&self.redis_url))
            .field("key_rotation_period", &self.key_rotation_period)
            .field(
                "key_rotation_check_seconds",
                &self.key_rotation_check_seconds,
            )
            .field("key_propagation_seconds", &self.key_propagation_seconds)
            .field("app_rate_limit", &self.app_rate_limit)
            .field("tenant_rate_limit", &self.tenant_rate_limit)
            .field("connections", &self.connections)
            .field("gateway", &self.gateway)
            .finish()
    }
}

/// The secret shared by `tollgate gateway` and the server behind it (README, "tollgate
/// gateway"): the gateway presents it with the caller's address on every call it forwards,
/// and the server trusts a forwarded address only next to it. Given inline or in a file;
/// never logged or echoed.
#[derive(Clone, Default, clap::Args)]
pub struct GatewaySecretArgs {
    /// Secret shared by `tollgate gateway` and `tollgate serve` (the same on both), at least
    /// 32 characters of visible ASCII, e.g. from `openssl rand -hex 32`.
    #[arg(long, env = "TOLLGATE_GATEWAY_SECRET", hide_env_values = true)]
    pub gateway_secret: Option<String>,
    /// File holding the gateway secret instead (a trailing newline is ignored).
    #[arg(long, env = "TOLLGATE_GATEWAY_SECRET_FILE")]
    pub gateway_secret_file: Option<PathBuf>,
}

/// Redacts the secret.
impl std::fmt::Debug for GatewaySecretArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySecretArgs")
            .field(
                "gateway_secret",
                &self.gateway_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("gateway_secret_file", &self.gateway_secret_file)
            .finish()
    }
}

impl GatewaySecretArgs {
    /// The shortest gateway secret accepted: 32 characters (`openssl rand -hex 32` gives
    /// 64, `openssl rand -base64 32` 44).
    pub const MIN_LEN: usize = 32;
    /// The longest gateway secret accepted: 1,024 characters (it travels in a gRPC
    /// metadata entry on every forwarded call).
    pub const MAX_LEN: usize = 1_024;

    /// The configured secret, checked: `None` when neither setting is given. Errors name
    /// the setting, never the value.
    pub fn resolve(&self) -> anyhow::Result<Option<String>> {
        let (name, secret) = match (&self.gateway_secret, &self.gateway_secret_file) {
            (Some(_), Some(_)) => bail!(
                "invalid TOLLGATE_GATEWAY_SECRET (--gateway-secret): give it or \
                 TOLLGATE_GATEWAY_SECRET_FILE (--gateway-secret-file), not both"
            ),
            (None, None) => return Ok(None),
            (Some(secret), None) => ("TOLLGATE_GATEWAY_SECRET (--gateway-secret)", secret.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "invalid TOLLGATE_GATEWAY_SECRET_FILE (--gateway-secret-file): cannot \
                         read {}",
                        path.display()
                    )
                })?;
                let secret = text.strip_suffix('\n').unwrap_or(&text);
                let secret = secret.strip_suffix('\r').unwrap_or(secret);
                (
                    "TOLLGATE_GATEWAY_SECRET_FILE (--gateway-secret-file)",
                    secret.to_owned(),
                )
            }
        };
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("invalid {name}: must be visible ASCII, without spaces");
        }
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&secret.len()) {
            bail!(
                "invalid {name}: must be {} to {} characters long",
                Self::MIN_LEN,
                Self::MAX_LEN
            );
        }
        Ok(Some(secret))
    }
}

#[cfg(test)]
mod gateway_secret_tests {
    use super::*;

    const SECRET: &str = "9f2c4e81b7d35a06c1e8f4a2d9b7306e";

    fn resolve(secret: Option<&str>, file: Option<PathBuf>) -> Result<Option<String>, String> {
        GatewaySecretArgs {
            gateway_secret: secret.map(str::to_owned),
            gateway_secret_file: file,
        }
        .resolve()
        .map_err(|error| format!("{error:#}"))
    }

    #[test]
    fn gateway_secrets_are_checked_and_never_echoed() -> anyhow::Result<()> {
        assert_eq!(resolve(None, None), Ok(None));
        assert_eq!(resolve(Some(SECRET), None), Ok(Some(SECRET.to_owned())));
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("gateway-secret");
        std::fs::write(&file, format!("{SECRET}\n"))?;
        assert_eq!(
            resolve(None, Some(file.clone())),
            Ok(Some(SECRET.to_owned()))
        );
        let short = &SECRET[..31];
        let spaced = format!("{SECRET} x");
        let long = "a".repeat(1_025);
        for (secret, file, expected) in [
            (
                Some(short),
                None,
                "invalid TOLLGATE_GATEWAY_SECRET (--gateway-secret): must be 32 to 1024 \
                 characters long",
            ),
            (
                Some(spaced.as_str()),
                None,
                "invalid TOLLGATE_GATEWAY_SECRET (--gateway-secret): must be visible ASCII, \
                 without spaces",
            ),
            (
                Some(long.as_str()),
                None,
                "invalid TOLLGATE_GATEWAY_SECRET (--gateway-secret): must be 32 to 1024 \
                 characters long",
            ),
            (
                Some(SECRET),
                Some(file.clone()),
                "invalid TOLLGATE_GATEWAY_SECRET (--gateway-secret): give it or \
                 TOLLGATE_GATEWAY_SECRET_FILE (--gateway-secret-file), not both",
            ),
        ] {
            let error = resolve(secret, file).err().unwrap_or_default();
            assert_eq!(error, expected);
            assert!(!error.contains(short), "{error}");
        }
        let missing = resolve(None, Some(dir.path().join("absent")))
            .err()
            .unwrap_or_default();
        assert!(
            missing.starts_with("invalid TOLLGATE_GATEWAY_SECRET_FILE"),
            "{missing}"
        );
        let debug = format!(
            "{:?}",
            GatewaySecretArgs {
                gateway_secret: Some(SECRET.to_owned()),
                gateway_secret_file: None,
            }
        );
        assert!(!debug.contains(SECRET), "{debug}");
        Ok(())
    }
}

/// Settings of `tollgate gateway`: the HTTP edge alone, reaching a Tollgate server's gRPC
/// API for issuance and public keys. It holds no database credentials and no key material.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// The gRPC endpoint of the Tollgate server that issues tokens.
    #[arg(
        long,
        env = "TOLLGATE_ISSUER_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub issuer_endpoint: String,
    /// Address of the HTTP gateway.
    #[arg(long, env = "TOLLGATE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Issuer URL template; the same as the server's, so the gateway can read tenants from
    /// `Host`.
    #[arg(long, env = "TOLLGATE_ISSUER_TEMPLATE", default_value = IssuerTemplate::DEFAULT)]
    pub issuer_template: String,
    /// `Cache-Control: max-age` of the JWKS and metadata documents, in seconds.
    #[arg(long, env = "TOLLGATE_JWKS_MAX_AGE", default_value_t = 300)]
    pub jwks_max_age: u64,
    /// Connection limits of the HTTP listener (the preface timeout is the gRPC
    /// listener's, so it does not apply here).
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The secret to present to the server, so that it trusts the caller addresses this
    /// gateway forwards.
    #[command(flatten)]
    pub gateway: GatewaySecretArgs,
}

/// Validated settings of `tollgate gateway`.
#[derive(Debug, Clone)]
pub struct GatewayOnlyConfig {
    /// The issuer's gRPC endpoint.
    pub issuer_endpoint: tonic::transport::Endpoint,
    /// See [`GatewayArgs::http_addr`].
    pub http_addr: SocketAddr,
    /// Parsed issuer template.
    pub issuer_template: IssuerTemplate,
    /// See [`GatewayArgs::jwks_max_age`].
    pub jwks_max_age: u64,
    /// See [`GatewayArgs::connections`].
    pub connections: ConnectionConfig,
    /// The gateway secret to present with each caller's address; `None`: addresses are not
    /// forwarded (see [`GatewaySecretArgs`]).
    pub credential: Option<tollgate_gateway::GatewayCredential>,
}

impl GatewayOnlyConfig {
    /// Validates `args`; errors name the setting.
    pub fn from_args(args: GatewayArgs) -> anyhow::Result<Self> {
        let issuer_template = parse_issuer_template(&args.issuer_template)?;
        let issuer_endpoint = tonic::transport::Endpoint::from_shared(args.issuer_endpoint)
            .ok()
            .filter(|endpoint| endpoint.uri().scheme_str() == Some("http"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid TOLLGATE_ISSUER_ENDPOINT (--issuer-endpoint): must be an http:// URL"
                )
            })?;
        check_jwks_max_age(args.jwks_max_age)?;
        let connections = ConnectionConfig::from_args(&args.connections)?;
        let credential = match args.gateway.resolve()? {
            Some(secret) => Some(
                tollgate_gateway::GatewayCredential::new(&secret)
                    .context("invalid TOLLGATE_GATEWAY_SECRET")?,
            ),
            None => None,
        };
        Ok(Self {
            issuer_endpoint,
            http_addr: args.http_addr,
            issuer_template,
            jwks_max_age: args.jwks_max_age,
            connections,
            credential,
        })
    }
}

/// Parses `30d`, `12h`, `90m`, `45s` into seconds; `0` is `None` (off).
fn parse_period(text: &str) -> Option<Option<i64>> {
    let text = text.trim();
    if text == "0" {
        return Some(None);
    }
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let seconds = number.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    })?;
    (1..=3_650 * 86_400)
        .contains(&seconds)
        .then_some(Some(seconds))
}

fn parse_issuer_template(template: &str) -> anyhow::Result<IssuerTemplate> {
    IssuerTemplate::parse(template).map_err(|error| {
        anyhow::anyhow!(
            "invalid TOLLGATE_ISSUER_TEMPLATE (--issuer-template): {}",
            error.reason
        )
    })
}

fn check_jwks_max_age(seconds: u64) -> anyhow::Result<()> {
    if !(1..=86_400).contains(&seconds) {
        bail!(
            "invalid TOLLGATE_JWKS_MAX_AGE (--jwks-max-age): must be between 1 and 86400 seconds"
        );
    }
    Ok(())
}

/// Validated configuration. Its `Debug` redacts the database URL.
#[derive(Clone)]
pub struct Config {
    /// See [`ServeArgs::data_dir`].
    pub data_dir: PathBuf,
    /// See [`ServeArgs::grpc_addr`].
    pub grpc_addr: SocketAddr,
    /// See [`ServeArgs::http_addr`].
    pub http_addr: SocketAddr,
    /// The database URL, defaulted to SQLite in the data dir.
    pub database_url: String,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// Parsed issuer template.
    pub issuer_template: IssuerTemplate,
    /// See [`ServeArgs::jwks_max_age`].
    pub jwks_max_age: u64,
    /// See [`ServeArgs::redis_url`].
    pub redis_url: Option<String>,
    /// Seconds between scheduled key rotations; `None` = off.
    pub key_rotation_period: Option<i64>,
    /// Seconds audit records are kept; `None` = forever.
    pub audit_retention: Option<i64>,
    /// Seconds between two looks for due rotations.
    pub key_rotation_check: std::time::Duration,
    /// How often secrets' last-use times are written (10 s; not configurable from outside:
    /// tests shorten it to see a last use without waiting).
    pub usage_flush: std::time::Duration,
    /// How often aggregated refusals are recorded (1 s; not configurable from outside: tests
    /// shorten it, and it must not be longer, since it bounds what is pending).
    pub denial_flush: std::time::Duration,
    /// Seconds between publishing and using a new key.
    pub key_propagation_delay: i64,
    /// Rate limits.
    pub rate_limits: tollgate_issuer::RateLimits,
    /// Connection limits of both listeners.
    pub connections: ConnectionConfig,
    /// The secret an edge gateway presents with the caller addresses it forwards; `None`:
    /// forwarded addresses are ignored (see [`GatewaySecretArgs`]).
    pub gateway_secret: Option<tollgate_keys::SharedSecret>,
    /// What the server tells time by: the system clock, unless a test put its own here (it is
    /// not configurable from outside).
    pub clock: std::sync::Arc<dyn tollgate_domain::Clock>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("database_url", &"<redacted>")
            .field("master_key", &self.master_key)
            .field("issuer_template", &self.issuer_template)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("key_rotation_period", &self.key_rotation_period)
            .field("audit_retention", &self.audit_retention)
            .field("key_rotation_check", &self.key_rotation_check)
            .field("usage_flush", &self.usage_flush)
            .field("denial_flush", &self.denial_flush)
            .field("key_propagation_delay", &self.key_propagation_delay)
            .field("rate_limits", &self.rate_limits)
            .field("connections", &self.connections)
            .field("gateway_secret", &self.gateway_secret)
            .finish_non_exhaustive()
    }
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// Given in configuration.
    Configured(String),
    /// `<data dir>/master.key`, generated on first start.
    DevelopmentFile(PathBuf),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Configured(_) => f.write_str("Configured(..)"),
            MasterKeySource::DevelopmentFile(path) => write!(f, "DevelopmentFile({path:?})"),
        }
    }
}

impl Config {
    /// Validates `args`; errors name the setting.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let issuer_template = parse_issuer_template(&args.issuer_template)?;
        let database_url = match args.database_url {
            Some(url)
                if url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:") =>
            {
                url
            }
            Some(_) => bail!(
                "invalid TOLLGATE_DATABASE_URL (--database-url): must start with postgres://, postgresql:// or sqlite:"
            ),
            None => format!(
                "sqlite://{}?mode=rwc",
                args.data_dir.join("tollgate.db").display()
            ),
        };
        let master_key = match args.master_key {
            Some(key) => {
                MasterKey::parse(&key).map_err(|error| {
                    anyhow::anyhow!("invalid TOLLGATE_MASTER_KEY (--master-key): {error}")
                })?;
                MasterKeySource::Configured(key)
            }
            None => MasterKeySource::DevelopmentFile(args.data_dir.join("master.key")),
        };
        check_jwks_max_age(args.jwks_max_age)?;
        let redis_url = match args.redis_url {
            Some(url) if url.starts_with("redis://") => Some(url),
            Some(_) => bail!("invalid TOLLGATE_REDIS_URL (--redis-url): must start with redis://"),
            None => None,
        };
        let key_rotation_period = parse_period(&args.key_rotation_period).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid TOLLGATE_KEY_ROTATION_PERIOD (--key-rotation-period): a number with a unit (30d, 12h, 90m, 45s), at most 3650d, or 0"
            )
        })?;
        let audit_retention = parse_period(&args.audit_retention).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid TOLLGATE_AUDIT_RETENTION (--audit-retention): a number with a unit (90d, 12h, 90m, 45s), at most 3650d, or 0"
            )
        })?;
        if !(1..=86_400).contains(&args.key_rotation_check_seconds) {
            bail!(
                "invalid TOLLGATE_KEY_ROTATION_CHECK_SECONDS (--key-rotation-check-seconds): must be between 1 and 86400"
            );
        }
        let key_propagation_delay = args.key_propagation_seconds.unwrap_or(args.jwks_max_age);
        if key_propagation_delay > 86_400 {
            bail!(
                "invalid TOLLGATE_KEY_PROPAGATION_SECONDS (--key-propagation-seconds): at most 86400"
            );
        }
        for (name, value) in [
            (
                "TOLLGATE_APP_RATE_LIMIT (--app-rate-limit)",
                args.app_rate_limit,
            ),
            (
                "TOLLGATE_TENANT_RATE_LIMIT (--tenant-rate-limit)",
                args.tenant_rate_limit,
            ),
        ] {
            if !(1..=1_000_000).contains(&value) {
                bail!("invalid {name}: must be between 1 and 1000000");
            }
        }
        let connections = ConnectionConfig::from_args(&args.connections)?;
        let gateway_secret = match args.gateway.resolve()? {
            Some(secret) => Some(
                tollgate_keys::SharedSecret::new(secret.as_bytes())
                    .context("cannot keep TOLLGATE_GATEWAY_SECRET")?,
            ),
            None => None,
        };
        Ok(Self {
            data_dir: args.data_dir,
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            database_url,
            master_key,
            issuer_template,
            jwks_max_age: args.jwks_max_age,
            redis_url,
            key_rotation_period,
            audit_retention,
            key_rotation_check: std::time::Duration::from_secs(args.key_rotation_check_seconds),
            usage_flush: crate::background::USAGE_FLUSH_INTERVAL,
            denial_flush: crate::background::DENIAL_FLUSH_INTERVAL,
            key_propagation_delay: key_propagation_delay as i64,
            rate_limits: tollgate_issuer::RateLimits {
                app_per_second: args.app_rate_limit as f64,
                tenant_per_second: args.tenant_rate_limit as f64,
                ..tollgate_issuer::RateLimits::default()
            },
            connections,
            gateway_secret,
            clock: std::sync::Arc::new(tollgate_domain::SystemClock),
        })
    }

    /// Loads the master key, generating the development key file if needed.
    pub fn load_master_key(&self) -> anyhow::Result<MasterKey> {
        match &self.master_key {
            MasterKeySource::Configured(text) => MasterKey::parse(text)
                .map_err(|error| anyhow::anyhow!("invalid TOLLGATE_MASTER_KEY: {error}")),
            MasterKeySource::DevelopmentFile(path) => {
                if path.exists() {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read master key file {}", path.display())
                    })?;
                    MasterKey::parse(&text).map_err(|error| {
                        anyhow::anyhow!("master key file {} is invalid: {error}", path.display())
                    })
                } else {
                    let (key, encoded) = MasterKey::generate()?;
                    crate::files::write_private(path, encoded.as_bytes())?;
                    tracing::warn!(
                        path = %path.display(),
                        "generated a development master key; set TOLLGATE_MASTER_KEY in production"
                    );
                    Ok(key)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_defaults_are_within_the_documented_bounds() -> anyhow::Result<()> {
        let config = ConnectionConfig::from_args(&ConnectionArgs::default())?;
        let limits = config.limits;
        assert!(limits.header_timeout <= std::time::Duration::from_secs(30));
        assert!(limits.body_timeout <= std::time::Duration::from_secs(30));
        assert!(limits.preface_timeout <= std::time::Duration::from_secs(30));
        assert!(limits.idle_timeout <= std::time::Duration::from_secs(60));
        assert_eq!(config.max_connections, None);
        Ok(())
    }

    #[test]
    fn a_bad_connection_setting_is_named() {
        type Spoil = fn(&mut ConnectionArgs);
        let cases: [(Spoil, &str); 5] = [
            (
                |args| args.header_timeout_seconds = 0,
                "TOLLGATE_HEADER_TIMEOUT_SECONDS",
            ),
            (
                |args| args.body_timeout_seconds = 3_601,
                "TOLLGATE_BODY_TIMEOUT_SECONDS",
            ),
            (
                |args| args.idle_timeout_seconds = 0,
                "TOLLGATE_IDLE_TIMEOUT_SECONDS",
            ),
            (
                |args| args.max_connections = Some(0),
                "TOLLGATE_MAX_CONNECTIONS",
            ),
            (
                |args| args.http2_max_streams = 0,
                "TOLLGATE_HTTP2_MAX_STREAMS",
            ),
        ];
        for (spoil, name) in cases {
            let mut args = ConnectionArgs::default();
            spoil(&mut args);
            let error = ConnectionConfig::from_args(&args)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with(&format!("invalid {name}")),
                "{name}: {error:?}"
            );
        }
    }

    #[test]
    fn the_cap_is_derived_from_the_open_file_limit_unless_given() -> anyhow::Result<()> {
        let derived = ConnectionConfig::from_args(&ConnectionArgs::default())?;
        // 1,024 descriptors, two listeners: (1024 - 128) / 2.
        assert_eq!(derived.resolve(Some(1_024), 2).max_connections, 448);
        assert_eq!(derived.resolve(Some(1_024), 1).max_connections, 896);
        assert_eq!(derived.resolve(Some(1 << 20), 2).max_connections, 10_000);
        assert_eq!(derived.resolve(Some(100), 2).max_connections, 16);
        assert_eq!(derived.resolve(None, 2).max_connections, 10_000);
        let given = ConnectionConfig::from_args(&ConnectionArgs {
            max_connections: Some(50),
            ..ConnectionArgs::default()
        })?;
        assert_eq!(given.resolve(Some(1_024), 2).max_connections, 50);
        Ok(())
    }
}
