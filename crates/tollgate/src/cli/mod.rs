//! The `tollgate` command line: `serve` and `migrate` run the server side; `tenant`, `api`,
//! `app` and `key` manage a running server over gRPC with admin credentials, and `audit`
//! reads, follows, exports and verifies its audit trail; `token` asks
//! for, introspects and revokes access tokens with an app's own credentials (and revokes
//! them more widely with admin credentials).
//!
//! Commands are noun–verb (`tollgate tenant create acme`). Everything is driven by flags and
//! environment variables, never by prompts, so scripts and tests can run every command.
//!
//! Output goes to standard output, as `key: value` text (the default) or, with
//! `--output json`, as the response message in the canonical protobuf JSON mapping with the
//! proto field names (`client_id`, not `clientId`). Notes for people go to standard error.
//! A failure prints `error: …` to standard error and exits with status 1; a usage error exits
//! with status 2. A reader that closes standard output early (`… | head -1`) ends the
//! command quietly with status 0; nothing written to standard error can make it panic.

mod api;
mod app;
mod audit;
mod auth;
mod channel;
mod flags;
mod key;
mod output;
mod serve;
mod tenant;
mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{GatewayArgs, ServeArgs};

pub use api::ApiSubcommand;
pub use app::AppSubcommand;
pub use audit::{AuditSubcommand, FilterArgs};
pub use auth::{
    AdminCredentials, AdminSession, CredentialSource, ENV_ADMIN_CLIENT_ID, ENV_ADMIN_CLIENT_SECRET,
    ENV_ADMIN_TENANT, find_credentials,
};
pub use flags::{parse_grant, parse_scope, parse_scope_definition};
pub use key::KeySubcommand;
pub use output::{
    OutputClosed, OutputFormat, ProtoMessage, describe_error, is_output_closed, note, to_json,
    to_text,
};
pub use tenant::TenantSubcommand;
pub use token::{IntrospectArgs, IssueArgs, Revocation, RevokeArgs, TokenSubcommand};

/// The default gRPC endpoint of the admin and token commands.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

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
    /// Manages tenants (needs admin credentials of the `system` tenant).
    #[command(subcommand)]
    Tenant(TenantSubcommand),
    /// Manages a tenant's APIs (resource servers).
    #[command(subcommand)]
    Api(ApiSubcommand),
    /// Manages a tenant's M2M apps (clients): grants, blocking, secrets and their rotation.
    #[command(subcommand)]
    App(AppSubcommand),
    /// Manages a tenant's signing keys: rotation and their states.
    #[command(subcommand)]
    Key(KeySubcommand),
    /// Gets, introspects and revokes access tokens with an app's own client credentials;
    /// `token revoke` also revokes by jti, secret, app or tenant with admin credentials.
    #[command(subcommand)]
    Token(TokenSubcommand),
    /// Reads, follows, exports and verifies the audit trail (scope `audit:read`).
    #[command(subcommand)]
    Audit(AuditSubcommand),
}

/// Where the server is, how to print its answers and where the admin credentials are.
/// Global: they may appear before or after the command (`tollgate --output json tenant
/// list` or `tollgate tenant list --output json`).
///
/// Admin credentials are looked up in this order: the environment variables
/// `TOLLGATE_ADMIN_TENANT`, `TOLLGATE_ADMIN_CLIENT_ID` and `TOLLGATE_ADMIN_CLIENT_SECRET`
/// (all three); else the `--credentials` file; else `admin-credentials.json` in the data dir.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// The Tollgate gRPC endpoint (`http://host:port`) of the admin and token commands.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOLLGATE_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        value_name = "URL"
    )]
    pub endpoint: String,
    /// How the admin and token commands print results.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = OutputFormat::Text,
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,
    /// JSON file with the admin app's `tenant`, `client_id`, `client_secret` and optional
    /// `audience`, used when the TOLLGATE_ADMIN_* variables are not set.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub credentials: Option<PathBuf>,
    /// The data dir; the admin commands use its `admin-credentials.json` when neither the
    /// TOLLGATE_ADMIN_* variables nor `--credentials` are given.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "TOLLGATE_DATA_DIR",
        default_value = "./tollgate-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

/// Paging of the `list` commands.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// At most this many results per page (server default 50, at most 500).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=500))]
    pub page_size: Option<i32>,
    /// Starts at this page: the `next_page_token` of a previous page.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Fetches every page and prints them as one list.
    #[arg(long)]
    pub all: bool,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Gateway(args) => serve::gateway(args).await,
        Command::Tenant(command) => tenant::run(&cli.options, command).await,
        Command::Api(command) => api::run(&cli.options, command).await,
        Command::App(command) => app::run(&cli.options, command).await,
        Command::Key(command) => key::run(&cli.options, command).await,
        Command::Token(command) => token::run(&cli.options, command).await,
        Command::Audit(command) => audit::run(&cli.options, command).await,
    }
}

/// Fetches one page, or with `--all` every page from the first requested one, through
/// `fetch(page_token)`, which returns a page and the next page token. Returns the items and
/// the last next page token (empty after `--all`).
async fn collect_pages<T, F, Fut>(args: &ListArgs, mut fetch: F) -> anyhow::Result<(Vec<T>, String)>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut token = args.page_token.clone().unwrap_or_default();
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if !args.all || next.is_empty() {
            return Ok((items, next));
        }
        if !seen.insert(next.clone()) {
            anyhow::bail!("the server returned the same page token twice; stopping");
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

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
                Command::Tenant(TenantSubcommand::List(_))
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
        let Command::App(AppSubcommand::Block {
            tenant,
            client_id,
            revoke_tokens,
        }) = cli.command
        else {
            anyhow::bail!("not app block");
        };
        assert_eq!((tenant.as_str(), client_id.as_str()), ("acme", "c1"));
        assert!(revoke_tokens);

        let cli = parse(&["app", "unblock", "--tenant", "acme", "--client-id", "c1"])?;
        assert!(matches!(
            cli.command,
            Command::App(AppSubcommand::Unblock { .. })
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
        let Command::App(AppSubcommand::Update {
            block,
            revoke_tokens,
            unblock,
            rate_limit,
            ..
        }) = cli.command
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
            Command::App(AppSubcommand::RotateSecret {
                overlap: Some(0),
                ..
            })
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
            Command::App(AppSubcommand::RotateSecret { overlap: None, .. })
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
            Command::App(AppSubcommand::RevokeSecret {
                revoke_tokens: false,
                ..
            })
        ));
        for verb in ["secrets", "list-secrets"] {
            let cli = parse(&["app", verb, "--tenant", "acme", "--client-id", "c1"])?;
            assert!(matches!(
                cli.command,
                Command::App(AppSubcommand::Secrets { .. })
            ));
        }

        let cli = parse(&["key", "rotate", "--tenant", "acme"])?;
        assert!(matches!(
            cli.command,
            Command::Key(KeySubcommand::Rotate {
                propagation_delay: None,
                ..
            })
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
            Command::Key(KeySubcommand::Rotate {
                propagation_delay: Some(0),
                ..
            })
        ));
        let cli = parse(&["key", "list", "--tenant", "acme", "--output", "json"])?;
        assert!(matches!(
            cli.command,
            Command::Key(KeySubcommand::List { .. })
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
        let Command::Audit(AuditSubcommand::List { filter, limit, .. }) = cli.command else {
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
                matches!(parse(args)?.command, Command::Audit(_)),
                "{args:?}"
            );
        }

        let cli = parse(&["tenant", "update", "acme", "--rate-limit", "5000"])?;
        assert!(matches!(
            cli.command,
            Command::Tenant(TenantSubcommand::Update {
                rate_limit: Some(5000),
                ..
            })
        ));
        Ok(())
    }
}
