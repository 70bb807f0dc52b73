//! `tollgate app …`: `AppService`.

use clap::Subcommand;
use tollgate_proto::v1;

use super::auth::AdminSession;
use super::flags::parse_grant;
use super::output::{self, print, print_deleted};
use super::{GlobalOptions, ListArgs, collect_pages};

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
        /// Blocks the app: it gets no tokens until unblocked.
        #[arg(long, conflicts_with = "unblock")]
        block: bool,
        /// Unblocks the app.
        #[arg(long)]
        unblock: bool,
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
            unblock,
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
                })
                .await?
                .into_inner();
            print(format, &app)
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
