//! `tollgate app …`: `AppService`: apps, their secrets (rotation, revocation) and blocking.

use clap::Subcommand;
use tollgate_proto::v1;

use super::auth::AdminSession;
use super::flags::parse_grant;
use super::output::{self, print, print_deleted, print_done};
use super::{GlobalOptions, ListArgs, collect_pages};

/// The longest `--overlap` of `app rotate-secret`: thirty days, as the server allows.
pub(super) const MAX_OVERLAP_SECONDS: i64 = 30 * 86_400;
/// The largest `--rate-limit` the server accepts.
pub(super) const MAX_RATE_LIMIT: i64 = 1_000_000;

/// The value parser of `--rate-limit`: requests per second, 0 for the server default.
pub(super) fn rate_limit_parser() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(0..=MAX_RATE_LIMIT)
}

/// The app verbs.
#[derive(Debug, Subcommand)]
pub enum AppSubcommand {
    /// Creates an app and prints it with its client secret (shown only this once).
    Create {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// Free-text description.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// An API the app may get tokens for, with its scopes there:
        /// AUDIENCE=SCOPE[,SCOPE...], or AUDIENCE= for none. The audience ends at the last
        /// `=`. Repeat for each API.
        #[arg(long = "grant", value_name = "AUDIENCE=SCOPES", value_parser = parse_grant)]
        grants: Vec<v1::Grant>,
    },
    /// Shows an app.
    Get {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
    },
    /// Lists a tenant's apps by client id.
    List {
        /// The tenant whose apps to list.
        #[arg(long)]
        tenant: String,
        /// Paging.
        #[command(flatten)]
        list: ListArgs,
    },
    /// Changes an app; options not given are left as they are.
    Update {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// New human-readable name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Replaces ALL the app's grants with these (AUDIENCE=SCOPE[,SCOPE...], the audience
        /// ending at the last `=`); repeat for each API.
        #[arg(
            long = "grant",
            value_name = "AUDIENCE=SCOPES",
            value_parser = parse_grant,
            conflicts_with = "clear_grants"
        )]
        grants: Vec<v1::Grant>,
        /// Removes every grant of the app.
        #[arg(long)]
        clear_grants: bool,
        /// Blocks the app: it gets no tokens until unblocked (same as `app block`).
        #[arg(long, conflicts_with = "unblock")]
        block: bool,
        /// With --block: also revokes every token the app holds now.
        #[arg(long, requires = "block", conflicts_with = "unblock")]
        revoke_tokens: bool,
        /// Unblocks the app (same as `app unblock`).
        #[arg(long)]
        unblock: bool,
        /// Token requests per second the app may make (bursts of twice that); 0 returns to
        /// the server default (TOLLGATE_APP_RATE_LIMIT).
        #[arg(long, value_name = "N", value_parser = rate_limit_parser())]
        rate_limit: Option<i64>,
    },
    /// Blocks an app: it gets no tokens until unblocked (`app update --block`).
    ///
    /// Its token requests fail with `invalid_client` from the next request, on every
    /// instance. Tokens it already holds stay valid until they expire unless --revoke-tokens
    /// is given.
    Block {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// Also revokes every token the app holds now.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Unblocks an app (`app update --unblock`).
    ///
    /// It gets tokens again from the next request. Tokens revoked while it was blocked stay
    /// revoked.
    Unblock {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
    },
    /// Gives an app a new client secret, shown only this once; the old one works on for the
    /// overlap.
    ///
    /// Prints the new secret and the app's secrets. The secrets the app had keep working for
    /// the overlap, so the new one can be deployed first. An app has at most two live
    /// secrets: revoke one first if it has two.
    RotateSecret {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// How long the current secret keeps working, in seconds (at most 2592000, 30 days);
        /// 0 ends it now. Default: 86400 (one day).
        #[arg(
            long,
            value_name = "SECS",
            value_parser = clap::value_parser!(i64).range(0..=MAX_OVERLAP_SECONDS)
        )]
        overlap: Option<i64>,
    },
    /// Ends one of an app's client secrets now, optionally with the tokens it obtained.
    ///
    /// With --revoke-tokens, also revokes every token the secret obtained: the tokens whose
    /// `sid` claim is the secret's id.
    RevokeSecret {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// The secret's id, as `app secrets` lists it.
        #[arg(long, value_name = "SID")]
        secret_id: String,
        /// Also revokes every token this secret obtained.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Lists an app's client secrets (ids and dates, never values).
    ///
    /// Newest first, with each secret's id (the `sid` claim of the tokens it obtains),
    /// creation, end, last use (to within about a minute) and whether it works now.
    #[command(visible_alias = "list-secrets")]
    Secrets {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
    },
    /// Deletes an app with its secrets and grants.
    Delete {
        /// The tenant that owns the app.
        #[arg(long)]
        tenant: String,
        /// The app's client id.
        #[arg(long, value_name = "ID")]
        client_id: String,
    },
}

/// Runs an `app` command.
pub async fn run(options: &GlobalOptions, command: AppSubcommand) -> anyhow::Result<()> {
    let format = options.output;
    let session = AdminSession::open(options).await?;
    let mut client = session.apps();
    match command {
        AppSubcommand::Create {
            tenant,
            name,
            description,
            grants,
        } => {
            let response = client
                .create_app(v1::CreateAppRequest {
                    tenant,
                    name,
                    description: description.unwrap_or_default(),
                    grants,
                })
                .await?
                .into_inner();
            print(format, &response)?;
            output::secret_shown_once(format);
            Ok(())
        }
        AppSubcommand::Get { tenant, client_id } => {
            let app = client
                .get_app(v1::GetAppRequest { tenant, client_id })
                .await?
                .into_inner();
            print(format, &app)
        }
        AppSubcommand::List { tenant, list } => {
            let page_size = list.page_size.unwrap_or_default();
            let (apps, next_page_token) = collect_pages(&list, |page_token| {
                let mut client = client.clone();
                let tenant = tenant.clone();
                async move {
                    let page = client
                        .list_apps(v1::ListAppsRequest {
                            tenant,
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.apps, page.next_page_token))
                }
            })
            .await?;
            print(
                format,
                &v1::ListAppsResponse {
                    apps,
                    next_page_token,
                },
            )
        }
        AppSubcommand::Update {
            tenant,
            client_id,
            name,
            description,
            grants,
            clear_grants,
            block,
            revoke_tokens,
            unblock,
            rate_limit,
        } => {
            let grants = (clear_grants || !grants.is_empty()).then_some(v1::GrantList { grants });
            let blocked = match (block, unblock) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let app = client
                .update_app(v1::UpdateAppRequest {
                    tenant,
                    client_id,
                    name,
                    description,
                    grants,
                    blocked,
                    revoke_tokens,
                    rate_limit_per_second: rate_limit,
                })
                .await?
                .into_inner();
            print(format, &app)
        }
        AppSubcommand::Block {
            tenant,
            client_id,
            revoke_tokens,
        } => {
            let app = client
                .update_app(set_blocked(tenant, client_id, true, revoke_tokens))
                .await?
                .into_inner();
            print(format, &app)
        }
        AppSubcommand::Unblock { tenant, client_id } => {
            let app = client
                .update_app(set_blocked(tenant, client_id, false, false))
                .await?
                .into_inner();
            print(format, &app)
        }
        AppSubcommand::RotateSecret {
            tenant,
            client_id,
            overlap,
        } => {
            let response = client
                .rotate_secret(v1::RotateSecretRequest {
                    tenant,
                    client_id,
                    overlap_seconds: overlap,
                })
                .await?
                .into_inner();
            print(format, &response)?;
            output::secret_shown_once(format);
            Ok(())
        }
        AppSubcommand::RevokeSecret {
            tenant,
            client_id,
            secret_id,
            revoke_tokens,
        } => {
            let response = client
                .revoke_secret(v1::RevokeSecretRequest {
                    tenant: tenant.clone(),
                    client_id: client_id.clone(),
                    secret_id: secret_id.clone(),
                    revoke_tokens,
                })
                .await?
                .into_inner();
            let tokens = if revoke_tokens {
                " and every token it obtained"
            } else {
                ""
            };
            print_done(
                format,
                &response,
                &format!(
                    "revoked secret {secret_id} of app {client_id} of tenant {tenant}{tokens}"
                ),
            )
        }
        AppSubcommand::Secrets { tenant, client_id } => {
            let response = client
                .list_secrets(v1::ListSecretsRequest { tenant, client_id })
                .await?
                .into_inner();
            print(format, &response)
        }
        AppSubcommand::Delete { tenant, client_id } => {
            let response = client
                .delete_app(v1::DeleteAppRequest {
                    tenant: tenant.clone(),
                    client_id: client_id.clone(),
                })
                .await?
                .into_inner();
            print_deleted(
                format,
                &response,
                &format!("app {client_id} of tenant {tenant}"),
            )
        }
    }
}

/// The `UpdateApp` request of `app block` and `app unblock`: only the block state changes.
fn set_blocked(
    tenant: String,
    client_id: String,
    blocked: bool,
    revoke_tokens: bool,
) -> v1::UpdateAppRequest {
    v1::UpdateAppRequest {
        tenant,
        client_id,
        blocked: Some(blocked),
        revoke_tokens,
        ..Default::default()
    }
}
