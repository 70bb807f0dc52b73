//! `tollgate token …`: `TokenService`, with an app's own client credentials (no admin
//! credentials).

use std::fmt;

use clap::{Args, Subcommand};
use tollgate_proto::v1;
use tollgate_proto::v1::token_service_client::TokenServiceClient;

use super::GlobalOptions;
use super::auth::connect;
use super::flags::parse_scope;
use super::output::{OutputFormat, emit, print};

/// The token verbs.
#[derive(Debug, Subcommand)]
pub enum TokenSubcommand {
    /// Gets an access token with the client-credentials grant. Text output is the bare
    /// access token, for `TOKEN=$(tollgate token issue …)`; `--output json` prints the whole
    /// response (token type, expiry, scopes).
    Issue(IssueArgs),
}

/// `tollgate token issue`.
#[derive(Args)]
pub struct IssueArgs {
    /// The tenant of the app and the API.
    #[arg(long)]
    pub tenant: String,
    /// The app's client id.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The app's client secret. Prefer the environment variable: a flag is visible to other
    /// users in the process list.
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: String,
    /// The identifier of the API the token is for.
    #[arg(long, value_name = "URL")]
    pub audience: String,
    /// A scope to ask for; repeat for each. None: every scope the app holds on the API.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub scopes: Vec<String>,
}

impl fmt::Debug for IssueArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueArgs")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Runs a `token` command.
pub async fn run(options: &GlobalOptions, command: TokenSubcommand) -> anyhow::Result<()> {
    let format = options.output;
    match command {
        TokenSubcommand::Issue(args) => {
            let channel = connect(&options.endpoint).await?;
            let response = TokenServiceClient::new(channel)
                .issue_token(v1::IssueTokenRequest {
                    tenant: args.tenant,
                    client_id: args.client_id,
                    client_secret: args.client_secret,
                    audience: args.audience,
                    scopes: args.scopes,
                })
                .await?
                .into_inner();
            match format {
                OutputFormat::Text => emit(&format!("{}\n", response.access_token)),
                OutputFormat::Json => print(format, &response),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn issue_arguments_and_redacted_debug() -> anyhow::Result<()> {
        let cli = Cli::try_parse_from([
            "tollgate",
            "token",
            "issue",
            "--tenant",
            "acme",
            "--client-id",
            "c1",
            "--client-secret",
            "tgsec_hidden",
            "--audience",
            "https://archive.example.com/",
            "--scope",
            "archive:read",
            "--scope",
            "archive:write",
            "--output",
            "json",
        ])?;
        assert_eq!(cli.options.output, OutputFormat::Json);
        let Command::Token(command) = cli.command else {
            anyhow::bail!("not a token command");
        };
        let TokenSubcommand::Issue(args) = &command;
        assert_eq!(args.scopes, ["archive:read", "archive:write"]);
        assert_eq!(args.client_secret, "tgsec_hidden");
        assert!(!format!("{command:?}").contains("tgsec_hidden"));
        Ok(())
    }
}
