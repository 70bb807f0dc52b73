//! `tollgate token …`: `TokenService`, with an app's own client credentials (issue,
//! introspect, revoke one token), and `RevocationService` with admin credentials (the wider
//! forms of `token revoke`).

use std::fmt;
use std::io::Read;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use tollgate_proto::v1;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::token_service_client::TokenServiceClient;

use super::GlobalOptions;
use super::auth::{AdminSession, connect};
use super::flags::parse_scope;
use super::output::{OutputFormat, emit, print, print_done, to_text};

/// The token verbs.
#[derive(Debug, Subcommand)]
pub enum TokenSubcommand {
    /// Gets an access token with the client-credentials grant. Text output is the bare
    /// access token, for `TOKEN=$(tollgate token issue …)`; `--output json` prints the whole
    /// response (token type, expiry, scopes).
    Issue(IssueArgs),
    /// Revokes one token as the app it was issued to (RFC 7009), or, as an admin, tokens by
    /// jti, secret, app or tenant.
    ///
    /// Give exactly one of --token, --jti, --secret-id, --app and --all.
    ///
    /// --token JWT (or `-` to read it from standard input) authenticates as the app itself,
    /// with --client-id and --client-secret (or TOLLGATE_CLIENT_SECRET), like `token issue`;
    /// no admin credentials are needed. As RFC 7009 prescribes, the answer is the same whether
    /// or not the token was valid and the app's.
    ///
    /// --jti, --secret-id, --app and --all use the admin credentials (scope `tokens:revoke`),
    /// found as for every admin command. --app and --all revoke the tokens issued until now;
    /// new ones can still be issued (`app block` stops an app). --secret-id revokes the tokens
    /// a secret obtained; the secret itself keeps working (`app revoke-secret` ends it).
    ///
    /// Revocations take effect on every instance within a second and last until the tokens
    /// they cover have expired.
    Revoke(RevokeArgs),
    /// Asks whether a token is active, and its claims (RFC 7662), as an app of its tenant.
    ///
    /// The caller is the app the token was issued to, or an app holding a grant (with or
    /// without scopes) on the token's audience, typically the resource server's own; an admin
    /// token only its own app may see. Text output is `active: false`, or `active: true`
    /// followed by the claims; `--output json` prints the whole response. A revoked, expired,
    /// malformed or other tenant's token, and one the caller may not see, is inactive.
    Introspect(IntrospectArgs),
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

/// Help heading of the RFC 7009 form of `token revoke`.
const APP_FORM: &str = "Revoke one token as the app it was issued to (RFC 7009)";
/// Help heading of the admin forms of `token revoke`.
const ADMIN_FORM: &str = "Revoke as an admin (scope tokens:revoke)";

/// `tollgate token revoke`: exactly one of `--token`, `--jti`, `--secret-id`, `--app` and
/// `--all` (the `target` group); `--token` needs `--client-id` and the client secret.
#[derive(Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .multiple(false)
        .args(["token", "jti", "secret_id", "app", "all"])
))]
pub struct RevokeArgs {
    /// The tenant of the tokens.
    #[arg(long)]
    pub tenant: String,
    /// The access token to revoke, or `-` to read it from standard input.
    #[arg(
        long,
        value_name = "JWT",
        requires_all = ["client_id", "client_secret"],
        help_heading = APP_FORM
    )]
    pub token: Option<String>,
    /// The client id of the app the token was issued to.
    #[arg(long, value_name = "ID", requires = "token", help_heading = APP_FORM)]
    pub client_id: Option<String>,
    /// That app's client secret. Prefer the environment variable: a flag is visible to other
    /// users in the process list. Used with --token only.
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = APP_FORM
    )]
    pub client_secret: Option<String>,
    /// Revokes one token, by its `jti` claim.
    #[arg(long, value_name = "JTI", help_heading = ADMIN_FORM)]
    pub jti: Option<String>,
    /// Revokes every token obtained with one client secret, by its id (the tokens' `sid`
    /// claim; `app secrets` lists the ids).
    #[arg(long, value_name = "SID", help_heading = ADMIN_FORM)]
    pub secret_id: Option<String>,
    /// Revokes every token this app (a client id) holds now.
    #[arg(long, value_name = "CLIENT_ID", help_heading = ADMIN_FORM)]
    pub app: Option<String>,
    /// Revokes every token of the tenant issued until now.
    #[arg(long, help_heading = ADMIN_FORM)]
    pub all: bool,
}

impl fmt::Debug for RevokeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeArgs")
            .field("tenant", &self.tenant)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jti", &self.jti)
            .field("secret_id", &self.secret_id)
            .field("app", &self.app)
            .field("all", &self.all)
            .finish()
    }
}

/// What `token revoke` does, decided from its flags.
#[derive(PartialEq)]
pub enum Revocation {
    /// `TokenService/RevokeToken` with the app's own credentials; the token may still be `-`.
    Token(v1::RevokeTokenRequest),
    /// `RevocationService/RevokeTokens` with admin credentials.
    Admin(v1::RevokeTokensRequest),
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revocation::Token(request) => f
                .debug_struct("Token")
                .field("tenant", &request.tenant)
                .field("client_id", &request.client_id)
                .field("client_secret", &"<redacted>")
                .field("token", &"<redacted>")
                .finish(),
            Revocation::Admin(request) => f.debug_tuple("Admin").field(request).finish(),
        }
    }
}

impl RevokeArgs {
    /// The request these flags ask for. Clap has already checked that exactly one target is
    /// given and that `--token` comes with the client credentials.
    pub fn into_revocation(self) -> anyhow::Result<Revocation> {
        let RevokeArgs {
            tenant,
            token,
            client_id,
            client_secret,
            jti,
            secret_id,
            app,
            all,
        } = self;
        let target = match (token, jti, secret_id, app, all) {
            (Some(token), None, None, None, false) => {
                let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
                    bail!(
                        "--token needs --client-id and --client-secret (or TOLLGATE_CLIENT_SECRET)"
                    );
                };
                return Ok(Revocation::Token(v1::RevokeTokenRequest {
                    tenant,
                    client_id,
                    client_secret,
                    token,
                }));
            }
            (None, Some(jti), None, None, false) => Target::Jti(jti),
            (None, None, Some(secret_id), None, false) => Target::SecretId(secret_id),
            (None, None, None, Some(client_id), false) => Target::ClientId(client_id),
            (None, None, None, None, true) => Target::All(true),
            _ => bail!("give exactly one of --token, --jti, --secret-id, --app and --all"),
        };
        Ok(Revocation::Admin(v1::RevokeTokensRequest {
            tenant,
            target: Some(target),
        }))
    }
}

/// `tollgate token introspect`.
#[derive(Args)]
pub struct IntrospectArgs {
    /// The tenant of the calling app and of the token.
    #[arg(long)]
    pub tenant: String,
    /// The calling app's client id (the token's own app, or one holding a grant on its
    /// audience, typically the resource server's).
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The calling app's client secret. Prefer the environment variable: a flag is visible
    /// to other users in the process list.
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: String,
    /// The access token to inspect, or `-` to read it from standard input.
    #[arg(long, value_name = "JWT")]
    pub token: String,
}

impl fmt::Debug for IntrospectArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectArgs")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The most `--token -` reads from standard input; an access token is far shorter.
const MAX_STDIN_TOKEN_BYTES: u64 = 64 * 1024;

/// The token a `--token` flag names: the value itself, or for `-` the text read from
/// `stdin` without surrounding whitespace.
fn resolve_token(value: String, stdin: impl Read) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value);
    }
    let mut text = String::new();
    stdin
        .take(MAX_STDIN_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .context("cannot read the token from standard input (--token -)")?;
    if text.len() as u64 > MAX_STDIN_TOKEN_BYTES {
        bail!(
            "the token on standard input (--token -) is longer than {MAX_STDIN_TOKEN_BYTES} bytes"
        );
    }
    let token = text.trim();
    if token.is_empty() {
        bail!("no token on standard input (--token -)");
    }
    if token.contains(char::is_whitespace) {
        bail!("standard input (--token -) holds more than one token");
    }
    Ok(token.to_owned())
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
        TokenSubcommand::Revoke(args) => match args.into_revocation()? {
            Revocation::Token(mut request) => {
                request.token = resolve_token(request.token, std::io::stdin().lock())?;
                let channel = connect(&options.endpoint).await?;
                let client_id = request.client_id.clone();
                let response = TokenServiceClient::new(channel)
                    .revoke_token(request)
                    .await?
                    .into_inner();
                print_done(
                    format,
                    &response,
                    &format!(
                        "revoked: the token no longer works if it was an active token of app \
                         {client_id} (RFC 7009: the answer is the same either way)"
                    ),
                )
            }
            Revocation::Admin(request) => {
                let session = AdminSession::open(options).await?;
                let tenant = request.tenant.clone();
                let (done, note) = match &request.target {
                    Some(Target::Jti(jti)) => {
                        (format!("revoked token {jti} of tenant {tenant}"), None)
                    }
                    Some(Target::SecretId(secret_id)) => (
                        format!(
                            "revoked every token obtained with secret {secret_id} of tenant {tenant}"
                        ),
                        Some("the secret itself still works; `tollgate app revoke-secret` ends it"),
                    ),
                    Some(Target::ClientId(client_id)) => (
                        format!(
                            "revoked every token issued to app {client_id} of tenant {tenant} until now"
                        ),
                        Some("the app can still get new tokens; `tollgate app block` stops that"),
                    ),
                    Some(Target::All(_)) | None => (
                        format!("revoked every token of tenant {tenant} issued until now"),
                        Some("new tokens can still be issued"),
                    ),
                };
                let response = session
                    .revocations()
                    .revoke_tokens(request)
                    .await?
                    .into_inner();
                print_done(format, &response, &done)?;
                if let (OutputFormat::Text, Some(note)) = (format, note) {
                    super::output::note(format_args!("note: {note}."));
                }
                Ok(())
            }
        },
        TokenSubcommand::Introspect(args) => {
            let token = resolve_token(args.token, std::io::stdin().lock())?;
            let channel = connect(&options.endpoint).await?;
            let response = TokenServiceClient::new(channel)
                .introspect_token(v1::IntrospectTokenRequest {
                    tenant: args.tenant,
                    client_id: args.client_id,
                    client_secret: args.client_secret,
                    token,
                })
                .await?
                .into_inner();
            match format {
                OutputFormat::Text if !response.active => emit("active: false\n"),
                OutputFormat::Text => emit(&to_text(&response)?),
                OutputFormat::Json => print(format, &response),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::AdminCommand as Command;
    use crate::testing::Cli;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tollgate").chain(args.iter().copied()))
    }

    fn token_command(args: &[&str]) -> anyhow::Result<TokenSubcommand> {
        match parse(args)?.command {
            Command::Token(command) => Ok(command),
            other => anyhow::bail!("not a token command: {other:?}"),
        }
    }

    fn revocation(args: &[&str]) -> anyhow::Result<Revocation> {
        let mut line = vec!["token", "revoke", "--tenant", "acme"];
        line.extend_from_slice(args);
        match token_command(&line)? {
            TokenSubcommand::Revoke(args) => args.into_revocation(),
            other => anyhow::bail!("not token revoke: {other:?}"),
        }
    }

    fn admin(target: Target) -> Revocation {
        Revocation::Admin(v1::RevokeTokensRequest {
            tenant: "acme".to_owned(),
            target: Some(target),
        })
    }

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
        let TokenSubcommand::Issue(args) = &command else {
            anyhow::bail!("not token issue");
        };
        assert_eq!(args.scopes, ["archive:read", "archive:write"]);
        assert_eq!(args.client_secret, "tgsec_hidden");
        assert!(!format!("{command:?}").contains("tgsec_hidden"));
        Ok(())
    }

    #[test]
    fn revoke_with_the_apps_own_credentials() -> anyhow::Result<()> {
        let revocation = revocation(&[
            "--token",
            "a.b.c",
            "--client-id",
            "c1",
            "--client-secret",
            "tgsec_hidden",
        ])?;
        assert_eq!(
            revocation,
            Revocation::Token(v1::RevokeTokenRequest {
                tenant: "acme".to_owned(),
                client_id: "c1".to_owned(),
                client_secret: "tgsec_hidden".to_owned(),
                token: "a.b.c".to_owned(),
            })
        );
        let debug = format!("{revocation:?}");
        assert!(!debug.contains("tgsec_hidden"), "{debug}");
        assert!(!debug.contains("a.b.c"), "{debug}");
        Ok(())
    }

    #[test]
    fn revoke_admin_forms() -> anyhow::Result<()> {
        assert_eq!(
            revocation(&["--jti", "j1"])?,
            admin(Target::Jti("j1".to_owned()))
        );
        assert_eq!(
            revocation(&["--secret-id", "sec_1"])?,
            admin(Target::SecretId("sec_1".to_owned()))
        );
        assert_eq!(
            revocation(&["--app", "c1"])?,
            admin(Target::ClientId("c1".to_owned()))
        );
        assert_eq!(revocation(&["--all"])?, admin(Target::All(true)));
        Ok(())
    }

    #[test]
    fn revoke_takes_exactly_one_target() {
        for args in [
            &[][..],
            &["--jti", "j1", "--all"][..],
            &["--secret-id", "s", "--app", "c1"][..],
            &["--app", "c1", "--all"][..],
            &["--jti", "j1", "--secret-id", "s"][..],
            &[
                "--token",
                "a.b.c",
                "--client-id",
                "c1",
                "--client-secret",
                "s",
                "--jti",
                "j1",
            ][..],
            // --token needs the app's client id and secret …
            &["--token", "a.b.c", "--client-secret", "s"][..],
            &["--token", "a.b.c", "--client-id", "c1"][..],
            // … and --client-id belongs to --token only.
            &["--client-id", "c1", "--all"][..],
            &["--client-id", "c1", "--client-secret", "s"][..],
            &["--jti"][..],
        ] {
            let mut line = vec!["token", "revoke", "--tenant", "acme"];
            line.extend_from_slice(args);
            let error = parse(&line).err();
            assert_eq!(
                error.map(|error| error.exit_code()),
                Some(2),
                "{args:?} should be a usage error"
            );
        }
        assert_eq!(
            parse(&["token", "revoke", "--all"])
                .err()
                .map(|error| error.exit_code()),
            Some(2),
            "--tenant is required"
        );
    }

    #[test]
    fn introspect_arguments_and_redacted_debug() -> anyhow::Result<()> {
        let command = token_command(&[
            "token",
            "introspect",
            "--tenant",
            "acme",
            "--client-id",
            "rs",
            "--client-secret",
            "tgsec_hidden",
            "--token",
            "-",
        ])?;
        let TokenSubcommand::Introspect(args) = &command else {
            anyhow::bail!("not token introspect");
        };
        assert_eq!(args.token, "-");
        assert_eq!(args.client_secret, "tgsec_hidden");
        assert!(!format!("{command:?}").contains("tgsec_hidden"));
        for missing in ["--client-id", "--client-secret", "--token", "--tenant"] {
            let mut line = vec![
                "token",
                "introspect",
                "--tenant",
                "acme",
                "--client-id",
                "rs",
                "--client-secret",
                "s",
                "--token",
                "t",
            ];
            let at = line.iter().position(|arg| *arg == missing).unwrap_or(0);
            line.drain(at..at + 2);
            assert_eq!(
                parse(&line).err().map(|error| error.exit_code()),
                Some(2),
                "without {missing}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_dash_reads_the_token_from_standard_input() -> anyhow::Result<()> {
        assert_eq!(resolve_token("a.b.c".to_owned(), &b"ignored"[..])?, "a.b.c");
        assert_eq!(resolve_token("-".to_owned(), &b"  a.b.c\n"[..])?, "a.b.c");
        for input in [&b""[..], b"\n  \n", b"a.b.c\nd.e.f\n"] {
            assert!(resolve_token("-".to_owned(), input).is_err(), "{input:?}");
        }
        let long = vec![b'a'; 64 * 1024 + 1];
        assert!(resolve_token("-".to_owned(), long.as_slice()).is_err());
        Ok(())
    }
}
