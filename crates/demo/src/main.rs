//! `tollgate-demo`: runs the archive scenario ([`tollgate_demo::run_scenario`]) against a
//! running Tollgate and prints what happens; exits 0 only if everything behaved.
//! `cargo xtask demo` starts a throwaway server and runs this.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tollgate_demo::{AdminCredentials, ScenarioConfig, run_scenario};

/// Runs the archive scenario against a running Tollgate: creates the tenant, its API and
/// apps, starts a storage API protected by tollgate-verify, and calls it as an archiver
/// (write) and a reader (read) with tollgate-client. The server's issuer URLs must be
/// reachable from here, e.g. `TOLLGATE_ISSUER_TEMPLATE='http://127.0.0.1:8080/t/{tenant}/'`.
#[derive(Debug, Parser)]
#[command(name = "tollgate-demo", version)]
struct Args {
    /// Tollgate's gRPC API.
    #[arg(
        long,
        env = "TOLLGATE_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    grpc_url: String,
    /// The system admin's credentials, as `tollgate serve` writes them.
    #[arg(long, default_value = "tollgate-data/admin-credentials.json")]
    admin_credentials: PathBuf,
    /// The tenant to create; it must not exist yet.
    #[arg(long, default_value = "acme")]
    tenant: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Only trouble is logged (a revocation stream interrupted, keys that cannot be fetched):
    // the narrative is the output.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo FAILED: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.admin_credentials)
        .with_context(|| format!("cannot read {}", args.admin_credentials.display()))?;
    let admin: AdminCredentials = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not admin credentials",
            args.admin_credentials.display()
        )
    })?;
    let config = ScenarioConfig {
        grpc_url: args.grpc_url,
        admin,
        tenant: args.tenant,
    };
    run_scenario(&config, |line| println!("{line}")).await?;
    Ok(())
}
