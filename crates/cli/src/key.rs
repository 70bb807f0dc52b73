//! `tollgate key …`: `KeyService`, a tenant's signing keys.

use clap::Subcommand;
use tollgate_proto::v1;

use super::GlobalOptions;
use super::auth::AdminSession;
use super::output::print;

/// The longest `--propagation-delay` the server accepts: one day.
const MAX_PROPAGATION_DELAY_SECONDS: i64 = 86_400;

/// The key verbs.
#[derive(Debug, Subcommand)]
pub enum KeySubcommand {
    /// Rotates a tenant's signing keys and prints them.
    ///
    /// Adds a new key per algorithm in use, published in the JWKS at once and signing after
    /// the propagation delay. The key it replaces stops signing then and stays published
    /// until every token it signed has expired.
    Rotate {
        /// The tenant whose keys to rotate.
        #[arg(long)]
        tenant: String,
        /// Seconds between publishing the new key and signing with it (at most 86400).
        /// Default: the server's TOLLGATE_KEY_PROPAGATION_SECONDS (the JWKS max-age). 0 signs
        /// with it at once; verifiers holding a cached JWKS may then refuse tokens until they
        /// fetch it again.
        #[arg(
            long,
            value_name = "SECS",
            value_parser = clap::value_parser!(i64).range(0..=MAX_PROPAGATION_DELAY_SECONDS)
        )]
        propagation_delay: Option<i64>,
    },
    /// Lists a tenant's signing keys with their states and dates.
    ///
    /// Newest first. States: `pending` (published, not signing yet), `active` (signing),
    /// `retiring` (published so its tokens verify, no longer signing), `retired` (no longer
    /// published).
    List {
        /// The tenant whose keys to list.
        #[arg(long)]
        tenant: String,
    },
}

/// Runs a `key` command.
pub async fn run(options: &GlobalOptions, command: KeySubcommand) -> anyhow::Result<()> {
    let format = options.output;
    let session = AdminSession::open(options).await?;
    let mut client = session.keys();
    match command {
        KeySubcommand::Rotate {
            tenant,
            propagation_delay,
        } => {
            let response = client
                .rotate_signing_key(v1::RotateSigningKeyRequest {
                    tenant,
                    propagation_delay_seconds: propagation_delay,
                })
                .await?
                .into_inner();
            print(format, &response)
        }
        KeySubcommand::List { tenant } => {
            let response = client
                .list_keys(v1::ListKeysRequest { tenant })
                .await?
                .into_inner();
            print(format, &response)
        }
    }
}
