//! The `tollgate` command line: the server commands `serve`, `migrate` and `gateway`, and
//! the admin and token commands of `tollgate-cli` ([`AdminCommand`]), flattened into one
//! list so that the line reads as one program. See `tollgate_cli` for the conventions every
//! command follows (output, exit status).

use std::future::Future;
use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_cli::{AdminCommand, ExportVerifier, GlobalOptions};
use tollgate_management::ExportedChain;
use tollgate_proto::v1;

use crate::config::{Config, GatewayArgs, GatewayOnlyConfig, ServeArgs};
use crate::server::{self, Listeners};

/// The `tollgate` command line.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: a multi-tenant OAuth 2.0 client-credentials authorization server.",
    propagate_version = true
)]
pub struct Cli {
    /// Options of the admin and token commands, accepted anywhere on the line.
    #[command(flatten)]
    pub options: GlobalOptions,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server (gRPC API and HTTP gateway) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Applies pending database migrations, then exits.
    Migrate(ServeArgs),
    /// Runs the HTTP gateway alone, in front of a Tollgate server's gRPC API (for the edge:
    /// no database credentials, no key material).
    Gateway(GatewayArgs),
    // The admin and token commands of `tollgate-cli`, listed after the server's.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Gateway(args) => gateway(args).await,
        Command::Admin(command) => tollgate_cli::run(&cli.options, command, export_verifier).await,
    }
}

/// The audit trail's chain verifier, for `audit verify --file`: each exported event is
/// hashed as the stored record it stands for ([`ExportedChain`]).
fn export_verifier() -> Box<dyn ExportVerifier> {
    Box::new(ExportChain(ExportedChain::new()))
}

/// [`ExportedChain`] over events on the wire.
struct ExportChain(ExportedChain);

impl ExportVerifier for ExportChain {
    fn push(&mut self, event: v1::AuditEvent) -> Result<(), v1::ChainBreak> {
        self.0.push(event.into()).map_err(Into::into)
    }

    fn report(&self, outcome: Result<(), v1::ChainBreak>) -> v1::VerifyChainResponse {
        self.0.report(outcome.map_err(Into::into)).into()
    }
}

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing()?;
    let config = Config::from_args(args)?;
    let shutdown = shutdown_signal()?;
    let listeners = Listeners::bind(&config).await?;
    server::serve(config, listeners, shutdown).await
}

/// Runs the HTTP gateway alone until SIGINT or SIGTERM.
async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    init_tracing()?;
    let config = GatewayOnlyConfig::from_args(args)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on TOLLGATE_HTTP_ADDR {}", config.http_addr))?;
    server::serve_gateway(config, listener, shutdown).await
}

/// Connects to the database, applies pending migrations and says so.
async fn migrate(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing()?;
    let default_database = args.database_url.is_none();
    let config = Config::from_args(args)?;
    let store = server::open_store(&config).await?;
    let backend = store.backend_name();
    store.close().await.context("cannot close the database")?;
    // The URL is not echoed: it may hold a password.
    let database = if default_database {
        format!(
            "the {backend} database {}",
            config.data_dir.join("tollgate.db").display()
        )
    } else {
        format!("the {backend} database of TOLLGATE_DATABASE_URL")
    };
    tollgate_cli::emit(&format!(
        "Applied all pending migrations: {database} is up to date.\n"
    ))
}

/// The environment variable choosing the log format: `text` (the default) or `json`.
pub const LOG_FORMAT_VAR: &str = "TOLLGATE_LOG_FORMAT";

/// The log line formats of [`LOG_FORMAT_VAR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line: the event's fields at the top level, the enclosing
    /// request span's (`trace_id`, `span_id`) under `span`.
    Json,
}

impl LogFormat {
    /// The format named by `TOLLGATE_LOG_FORMAT`; unset or empty means text.
    fn from_env() -> anyhow::Result<Self> {
        match std::env::var(LOG_FORMAT_VAR) {
            Err(std::env::VarError::NotPresent) => Ok(Self::Text),
            Ok(value) => match value.as_str() {
                "" | "text" => Ok(Self::Text),
                "json" => Ok(Self::Json),
                other => anyhow::bail!("{LOG_FORMAT_VAR} must be `text` or `json`, not {other:?}"),
            },
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{LOG_FORMAT_VAR} must be `text` or `json`")
            }
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`), as text or JSON lines
/// ([`LOG_FORMAT_VAR`]); an unknown format is an error before anything starts. A log line
/// that cannot be written (standard error is a pipe nobody reads any more) is dropped: the
/// server keeps serving.
fn init_tracing() -> anyhow::Result<()> {
    let format = LogFormat::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Otherwise a failed write is reported with `eprintln!` to the same standard
        // error, which panics when that is a closed pipe.
        .log_internal_errors(false);
    // Fails only if a subscriber is already installed, which is then kept.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Every line logged while serving a request carries the request span's
        // `trace_id` and `span_id` under `span`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM. A second signal exits at once, without
/// waiting for the drain.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "shutting down; send it again to exit at once"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
    })
}

/// Completes on the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;
    use tollgate_cli::{
        AppSubcommand, AuditSubcommand, KeySubcommand, OutputFormat, TenantSubcommand,
    };

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tollgate").chain(args.iter().copied()))
    }

    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() -> anyhow::Result<()> {
        for args in [
            &[
                "--output",
                "json",
                "--endpoint",
                "http://h:1",
                "tenant",
                "list",
            ][..],
            &[
                "tenant",
                "--output",
                "json",
                "--endpoint",
                "http://h:1",
                "list",
            ][..],
            &[
                "tenant",
                "list",
                "--output",
                "json",
                "--endpoint",
                "http://h:1",
            ][..],
        ] {
            let cli = parse(args)?;
            assert_eq!(cli.options.output, OutputFormat::Json, "{args:?}");
            assert_eq!(cli.options.endpoint, "http://h:1", "{args:?}");
            assert!(matches!(
                cli.command,
                Command::Admin(AdminCommand::Tenant(TenantSubcommand::List(_)))
            ));
        }
        let cli = parse(&["--credentials", "c.json", "app", "list", "--tenant", "acme"])?;
        assert_eq!(cli.options.credentials, Some(PathBuf::from("c.json")));
        assert_eq!(cli.options.output, OutputFormat::Text);
        Ok(())
    }

    #[test]
    fn serve_and_the_admin_commands_share_the_data_dir() -> anyhow::Result<()> {
        for args in [
            &["--data-dir", "/x", "serve"][..],
            &["serve", "--data-dir", "/x"][..],
        ] {
            let cli = parse(args)?;
            let Command::Serve(serve) = cli.command else {
                anyhow::bail!("not serve");
            };
            assert_eq!(serve.data_dir, PathBuf::from("/x"), "{args:?}");
            assert_eq!(cli.options.data_dir, PathBuf::from("/x"), "{args:?}");
        }
        let cli = parse(&["tenant", "get", "acme", "--data-dir", "/y"])?;
        assert_eq!(cli.options.data_dir, PathBuf::from("/y"));
        Ok(())
    }

    #[test]
    fn usage_errors() {
        for args in [
            &[
                "api",
                "update",
                "--tenant",
                "t",
                "--identifier",
                "i",
                "--scope",
                "a",
                "--clear-scopes",
            ][..],
            &[
                "api",
                "update",
                "--tenant",
                "t",
                "--identifier",
                "i",
                "--alg",
                "RS256",
                "--default-alg",
            ][..],
            &[
                "app",
                "update",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--block",
                "--unblock",
            ][..],
            &[
                "app",
                "update",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--grant",
                "a=",
                "--clear-grants",
            ][..],
            &[
                "app",
                "create",
                "--tenant",
                "t",
                "--name",
                "n",
                "--grant",
                "no-equals-sign",
            ][..],
            &["tenant", "create", "acme", "--alg", "HS256"][..],
            &["tenant", "list", "--all", "--page-token", "x"][..],
            &[
                "api",
                "create",
                "--tenant",
                "t",
                "--name",
                "n",
                "--identifier",
                "i",
                "--ttl",
                "10",
            ][..],
            &[
                "api",
                "create",
                "--tenant",
                "t",
                "--name",
                "n",
                "--identifier",
                "i",
                "--scope",
                "a b",
            ][..],
            &["tenant", "list", "--output", "yaml"][..],
            // --revoke-tokens belongs to blocking.
            &[
                "app",
                "update",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--revoke-tokens",
            ][..],
            &[
                "app",
                "update",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--unblock",
                "--revoke-tokens",
            ][..],
            &[
                "app",
                "unblock",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--revoke-tokens",
            ][..],
            &["app", "block", "--tenant", "t"][..],
            // Rate limits: 0 (server default) to 1000000 per second.
            &[
                "app",
                "update",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--rate-limit",
                "-1",
            ][..],
            &["tenant", "update", "acme", "--rate-limit", "1000001"][..],
            &["tenant", "update", "acme", "--rate-limit", "fast"][..],
            // Overlap: 0 to 30 days, in seconds.
            &[
                "app",
                "rotate-secret",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--overlap",
                "2592001",
            ][..],
            &[
                "app",
                "rotate-secret",
                "--tenant",
                "t",
                "--client-id",
                "c",
                "--overlap",
                "24h",
            ][..],
            &["app", "revoke-secret", "--tenant", "t", "--client-id", "c"][..],
            &["app", "secrets", "--tenant", "t"][..],
            // Propagation delay: 0 to one day.
            &[
                "key",
                "rotate",
                "--tenant",
                "t",
                "--propagation-delay",
                "86401",
            ][..],
            &[
                "key",
                "rotate",
                "--tenant",
                "t",
                "--propagation-delay",
                "-1",
            ][..],
            &["key", "list"][..],
            // Audit: a server or a file to verify, not both; export names its tenant;
            // times, actions and results are checked before anything is sent.
            &["audit", "verify"][..],
            &["audit", "verify", "--tenant", "t", "--file", "f.jsonl"][..],
            &["audit", "export", "--since", "1h"][..],
            &["audit", "list", "--since", "yesterday"][..],
            &["audit", "list", "--action", "token_stolen"][..],
            &["audit", "list", "--result", "maybe"][..],
            &["audit", "list", "--limit", "0"][..],
            &["audit", "tail", "--until", "1w"][..],
        ] {
            let error = parse(args).err();
            assert_eq!(
                error.map(|error| error.exit_code()),
                Some(2),
                "{args:?} should be a usage error"
            );
        }
    }

    #[test]
    fn block_and_unblock_are_update_app_sugar() -> anyhow::Result<()> {
        let cli = parse(&[
            "app",
            "block",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
            "--revoke-tokens",
        ])?;
        let Command::Admin(AdminCommand::App(AppSubcommand::Block {
            tenant,
            client_id,
            revoke_tokens,
        })) = cli.command
        else {
            anyhow::bail!("not app block");
        };
        assert_eq!((tenant.as_str(), client_id.as_str()), ("acme", "c1"));
        assert!(revoke_tokens);

        let cli = parse(&["app", "unblock", "--tenant", "acme", "--client-id", "c1"])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::App(AppSubcommand::Unblock { .. }))
        ));

        // `app update --block` keeps working, now with --revoke-tokens and --rate-limit.
        let cli = parse(&[
            "app",
            "update",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
            "--block",
            "--revoke-tokens",
            "--rate-limit",
            "0",
        ])?;
        let Command::Admin(AdminCommand::App(AppSubcommand::Update {
            block,
            revoke_tokens,
            unblock,
            rate_limit,
            ..
        })) = cli.command
        else {
            anyhow::bail!("not app update");
        };
        assert!(block && revoke_tokens && !unblock);
        assert_eq!(rate_limit, Some(0), "0 returns to the server default");
        Ok(())
    }

    #[test]
    fn secret_and_key_commands() -> anyhow::Result<()> {
        let cli = parse(&[
            "app",
            "rotate-secret",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
            "--overlap",
            "0",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::App(AppSubcommand::RotateSecret {
                overlap: Some(0),
                ..
            }))
        ));
        let cli = parse(&[
            "app",
            "rotate-secret",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::App(AppSubcommand::RotateSecret {
                overlap: None,
                ..
            }))
        ));
        let cli = parse(&[
            "app",
            "revoke-secret",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
            "--secret-id",
            "sec_1",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::App(AppSubcommand::RevokeSecret {
                revoke_tokens: false,
                ..
            }))
        ));
        for verb in ["secrets", "list-secrets"] {
            let cli = parse(&["app", verb, "--tenant", "acme", "--client-id", "c1"])?;
            assert!(matches!(
                cli.command,
                Command::Admin(AdminCommand::App(AppSubcommand::Secrets { .. }))
            ));
        }

        let cli = parse(&["key", "rotate", "--tenant", "acme"])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Key(KeySubcommand::Rotate {
                propagation_delay: None,
                ..
            }))
        ));
        let cli = parse(&[
            "key",
            "rotate",
            "--tenant",
            "acme",
            "--propagation-delay",
            "0",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Key(KeySubcommand::Rotate {
                propagation_delay: Some(0),
                ..
            }))
        ));
        let cli = parse(&["key", "list", "--tenant", "acme", "--output", "json"])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Key(KeySubcommand::List { .. }))
        ));

        let cli = parse(&[
            "audit",
            "list",
            "--tenant",
            "acme",
            "--since",
            "2026-11-22T09:00:00Z",
            "--action",
            "token_denied",
            "--result",
            "denied",
            "--client",
            "c1",
            "--limit",
            "1000",
        ])?;
        let Command::Admin(AdminCommand::Audit(AuditSubcommand::List { filter, limit, .. })) =
            cli.command
        else {
            anyhow::bail!("not audit list");
        };
        assert_eq!(filter.tenant.as_deref(), Some("acme"));
        assert_eq!(filter.since.map(|since| since.seconds), Some(1_795_338_000));
        assert_eq!(
            (filter.action.as_deref(), filter.result.as_deref()),
            (Some("token_denied"), Some("denied"))
        );
        assert_eq!(limit, 1000);
        for args in [
            &["audit", "verify", "--tenant", "acme"][..],
            &["audit", "verify", "--file", "events.jsonl"][..],
            &["audit", "export", "--tenant", "acme", "--since", "7d"][..],
            &["audit", "tail", "--after", "seq.ten_1.3"][..],
        ] {
            assert!(
                matches!(parse(args)?.command, Command::Admin(AdminCommand::Audit(_))),
                "{args:?}"
            );
        }

        let cli = parse(&["tenant", "update", "acme", "--rate-limit", "5000"])?;
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Tenant(TenantSubcommand::Update {
                rate_limit: Some(5000),
                ..
            }))
        ));
        Ok(())
    }
}
