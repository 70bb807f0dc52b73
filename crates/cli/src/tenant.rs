//! `tollgate tenant …`: `TenantService`.

use clap::Subcommand;
use tollgate_proto::v1;

use super::app::rate_limit_parser;
use super::auth::AdminSession;
use super::output::{self, print, print_deleted};
use super::{GlobalOptions, ListArgs, collect_pages};

/// The signing algorithms `--alg` accepts.
pub(super) const ALGORITHMS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

/// The tenant verbs.
#[derive(Debug, Subcommand)]
pub enum TenantSubcommand {
    /// Creates a tenant with its signing key, Management API and admin app, and prints the
    /// admin app's credentials (the client secret is shown only this once).
    Create {
        /// The tenant's name: a DNS label such as `acme`.
        name: String,
        /// Human-readable name (default: NAME).
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Default signing algorithm of the tenant's tokens (default ES256).
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS)]
        alg: Option<String>,
    },
    /// Shows a tenant.
    Get {
        /// The tenant's name.
        name: String,
    },
    /// Lists tenants by name.
    List(ListArgs),
    /// Changes a tenant's display name, default signing algorithm or rate limit.
    Update {
        /// The tenant's name.
        name: String,
        /// New human-readable name.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// New default signing algorithm; takes effect for the next token.
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS)]
        alg: Option<String>,
        /// Token requests per second across all the tenant's apps (bursts of twice that);
        /// 0 returns to the server default (TOLLGATE_TENANT_RATE_LIMIT).
        #[arg(long, value_name = "N", value_parser = rate_limit_parser())]
        rate_limit: Option<i64>,
    },
    /// Deletes a tenant with everything it owns.
    Delete {
        /// The tenant's name.
        name: String,
    },
}

/// Runs a `tenant` command.
pub async fn run(options: &GlobalOptions, command: TenantSubcommand) -> anyhow::Result<()> {
    let format = options.output;
    let session = AdminSession::open(options).await?;
    let mut client = session.tenants();
    match command {
        TenantSubcommand::Create {
            name,
            display_name,
            alg,
        } => {
            let response = client
                .create_tenant(v1::CreateTenantRequest {
                    name,
                    display_name: display_name.unwrap_or_default(),
                    signing_alg: alg.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print(format, &response)?;
            output::secret_shown_once(format);
            Ok(())
        }
        TenantSubcommand::Get { name } => {
            let tenant = client
                .get_tenant(v1::GetTenantRequest { name })
                .await?
                .into_inner();
            print(format, &tenant)
        }
        TenantSubcommand::List(args) => {
            let page_size = args.page_size.unwrap_or_default();
            let (tenants, next_page_token) = collect_pages(&args, |page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_tenants(v1::ListTenantsRequest {
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.tenants, page.next_page_token))
                }
            })
            .await?;
            print(
                format,
                &v1::ListTenantsResponse {
                    tenants,
                    next_page_token,
                },
            )
        }
        TenantSubcommand::Update {
            name,
            display_name,
            alg,
            rate_limit,
        } => {
            let tenant = client
                .update_tenant(v1::UpdateTenantRequest {
                    name,
                    display_name,
                    signing_alg: alg,
                    rate_limit_per_second: rate_limit,
                })
                .await?
                .into_inner();
            print(format, &tenant)
        }
        TenantSubcommand::Delete { name } => {
            let response = client
                .delete_tenant(v1::DeleteTenantRequest { name: name.clone() })
                .await?
                .into_inner();
            print_deleted(format, &response, &format!("tenant {name}"))
        }
    }
}
