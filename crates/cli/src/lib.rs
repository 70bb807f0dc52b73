//! The `tollgate` admin command line: `tenant`, `api`, `app` and `key` manage a running
//! server over gRPC with admin credentials, and `audit` reads, follows, exports and
//! verifies its audit trail; `token` asks for, introspects and revokes access tokens with
//! an app's own credentials (and revokes them more widely with admin credentials). The
//! `tollgate` binary adds its server commands (`serve`, `migrate`, `gateway`) to these
//! ([`AdminCommand`], flattened into its command line) and runs them with [`run`]. This
//! crate speaks only the gRPC API (`tollgate-proto`): it holds no server code.
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
mod tenant;
mod token;

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use api::ApiSubcommand;
pub use app::AppSubcommand;
pub use audit::{AuditSubcommand, ExportVerifier, FilterArgs, NewExportVerifier};
pub use auth::{
    AdminCredentials, AdminSession, CredentialSource, ENV_ADMIN_CLIENT_ID, ENV_ADMIN_CLIENT_SECRET,
    ENV_ADMIN_TENANT, find_credentials,
};
pub use flags::{parse_grant, parse_scope, parse_scope_definition};
pub use key::KeySubcommand;
pub use output::{
    OutputClosed, OutputFormat, ProtoMessage, describe_error, emit, is_output_closed, note,
    to_json, to_text,
};
pub use tenant::TenantSubcommand;
pub use token::{IntrospectArgs, IssueArgs, Revocation, RevokeArgs, TokenSubcommand};

/// The default gRPC endpoint of the admin and token commands.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// The admin and token commands, for the binary to flatten into its top-level commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
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

/// Runs an admin or token command; `new_export_verifier` makes the chain verifier of
/// `audit verify --file`.
pub async fn run(
    options: &GlobalOptions,
    command: AdminCommand,
    new_export_verifier: NewExportVerifier,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::Tenant(command) => tenant::run(options, command).await,
        AdminCommand::Api(command) => api::run(options, command).await,
        AdminCommand::App(command) => app::run(options, command).await,
        AdminCommand::Key(command) => key::run(options, command).await,
        AdminCommand::Token(command) => token::run(options, command).await,
        AdminCommand::Audit(command) => audit::run(options, command, new_export_verifier).await,
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

/// The admin commands alone as a command line, for the tests of this crate (the binary's
/// line adds its server commands).
#[cfg(test)]
mod testing {
    use clap::Parser;

    use super::{AdminCommand, GlobalOptions};

    /// `tollgate` without its server commands.
    #[derive(Debug, Parser)]
    #[command(name = "tollgate")]
    pub(crate) struct Cli {
        /// The global options.
        #[command(flatten)]
        pub(crate) options: GlobalOptions,
        /// The admin command.
        #[command(subcommand)]
        pub(crate) command: AdminCommand,
    }

    #[test]
    fn command_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
