//! `tollgate api …`: `ApiService`.

use clap::Subcommand;
use tollgate_domain::TokenLifetime;
use tollgate_proto::v1;

use super::auth::AdminSession;
use super::flags::parse_scope_definition;
use super::output::{print, print_deleted};
use super::tenant::ALGORITHMS;
use super::{GlobalOptions, ListArgs, collect_pages};

/// The API verbs.
#[derive(Debug, Subcommand)]
pub enum ApiSubcommand {
    /// Creates an API (an audience tokens can be issued for).
    Create {
        /// The tenant that owns the API.
        #[arg(long)]
        tenant: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// The audience of the API's tokens, e.g. `https://archive.example.com/`.
        #[arg(long, value_name = "URL")]
        identifier: String,
        /// A scope the API defines, as VALUE or VALUE=DESCRIPTION (the value ends at the
        /// first `=`); repeat for each scope.
        #[arg(long = "scope", value_name = "SCOPE[=DESCRIPTION]", value_parser = parse_scope_definition)]
        scopes: Vec<v1::ScopeDefinition>,
        /// Lifetime of the API's tokens in seconds (default 3600).
        #[arg(long, value_name = "SECS", value_parser = ttl_parser())]
        ttl: Option<i64>,
        /// Signing algorithm of the API's tokens (default: the tenant's).
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS)]
        alg: Option<String>,
    },
    /// Shows an API.
    Get {
        /// The tenant that owns the API.
        #[arg(long)]
        tenant: String,
        /// The API's identifier.
        #[arg(long, value_name = "URL")]
        identifier: String,
    },
    /// Lists a tenant's APIs by identifier.
    List {
        /// The tenant whose APIs to list.
        #[arg(long)]
        tenant: String,
        /// Paging.
        #[command(flatten)]
        list: ListArgs,
    },
    /// Changes an API; options not given are left as they are.
    Update {
        /// The tenant that owns the API.
        #[arg(long)]
        tenant: String,
        /// The API's identifier.
        #[arg(long, value_name = "URL")]
        identifier: String,
        /// New human-readable name.
        #[arg(long)]
        name: Option<String>,
        /// Replaces ALL the API's scopes with these (VALUE or VALUE=DESCRIPTION); grants
        /// keep only scopes the API still defines.
        #[arg(
            long = "scope",
            value_name = "SCOPE[=DESCRIPTION]",
            value_parser = parse_scope_definition,
            conflicts_with = "clear_scopes"
        )]
        scopes: Vec<v1::ScopeDefinition>,
        /// Removes every scope of the API.
        #[arg(long)]
        clear_scopes: bool,
        /// New token lifetime in seconds.
        #[arg(long, value_name = "SECS", value_parser = ttl_parser())]
        ttl: Option<i64>,
        /// New signing algorithm of the API's tokens.
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS, conflicts_with = "default_alg")]
        alg: Option<String>,
        /// Signs the API's tokens with the tenant's default algorithm again.
        #[arg(long)]
        default_alg: bool,
    },
    /// Deletes an API and every grant on it.
    Delete {
        /// The tenant that owns the API.
        #[arg(long)]
        tenant: String,
        /// The API's identifier.
        #[arg(long, value_name = "URL")]
        identifier: String,
    },
}

fn ttl_parser() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(TokenLifetime::MIN_SECONDS..=TokenLifetime::MAX_SECONDS)
}

/// Runs an `api` command.
pub async fn run(options: &GlobalOptions, command: ApiSubcommand) -> anyhow::Result<()> {
    let format = options.output;
    let session = AdminSession::open(options).await?;
    let mut client = session.apis();
    match command {
        ApiSubcommand::Create {
            tenant,
            name,
            identifier,
            scopes,
            ttl,
            alg,
        } => {
            let api = client
                .create_api(v1::CreateApiRequest {
                    tenant,
                    name,
                    identifier,
                    scopes,
                    token_lifetime_seconds: ttl.unwrap_or_default(),
                    signing_alg: alg.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print(format, &api)
        }
        ApiSubcommand::Get { tenant, identifier } => {
            let api = client
                .get_api(v1::GetApiRequest { tenant, identifier })
                .await?
                .into_inner();
            print(format, &api)
        }
        ApiSubcommand::List { tenant, list } => {
            let page_size = list.page_size.unwrap_or_default();
            let (apis, next_page_token) = collect_pages(&list, |page_token| {
                let mut client = client.clone();
                let tenant = tenant.clone();
                async move {
                    let page = client
                        .list_apis(v1::ListApisRequest {
                            tenant,
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.apis, page.next_page_token))
                }
            })
            .await?;
            print(
                format,
                &v1::ListApisResponse {
                    apis,
                    next_page_token,
                },
            )
        }
        ApiSubcommand::Update {
            tenant,
            identifier,
            name,
            scopes,
            clear_scopes,
            ttl,
            alg,
            default_alg,
        } => {
            let scopes =
                (clear_scopes || !scopes.is_empty()).then_some(v1::ScopeDefinitionList { scopes });
            let signing_alg = if default_alg {
                Some(String::new())
            } else {
                alg
            };
            let api = client
                .update_api(v1::UpdateApiRequest {
                    tenant,
                    identifier,
                    name,
                    scopes,
                    token_lifetime_seconds: ttl,
                    signing_alg,
                })
                .await?
                .into_inner();
            print(format, &api)
        }
        ApiSubcommand::Delete { tenant, identifier } => {
            let response = client
                .delete_api(v1::DeleteApiRequest {
                    tenant: tenant.clone(),
                    identifier: identifier.clone(),
                })
                .await?
                .into_inner();
            print_deleted(
                format,
                &response,
                &format!("API {identifier} of tenant {tenant}"),
            )
        }
    }
}
