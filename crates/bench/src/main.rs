//! `tollgate-bench`: load generator for Tollgate's token endpoints.
//!
//! - `setup` creates tenants (each with an API and an app) through the management API and
//!   writes the apps' credentials to a fixture file.
//! - `run` asks for tokens over gRPC or HTTP, closed loop (maximum throughput) or open loop
//!   at a fixed rate (latency at a given load), round robin over the credentials, and
//!   reports throughput, latency percentiles and, given the server's pid, the server's CPU
//!   time per token. The last line on standard output is a `RESULT key=value …` line for
//!   scripts (`cargo xtask bench tokens` reads it); the rest goes to standard error.
//!
//! Only loopback targets are accepted, and every load loop is bounded by time and by count.

// A load generator measures real latency and paces real requests.
#![allow(clippy::disallowed_methods)]

mod client;
mod fixture;
mod load;
mod setup;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::client::{Client, HttpClient, Mode, Prepared};
use crate::fixture::Credential;
use crate::load::{LoadSpec, Outcome};
use crate::setup::SetupSpec;

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    version,
    about = "Load generator for Tollgate's token endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create tenants, each with an API and an app, and write the apps' credentials to a
    /// fixture file.
    Setup(SetupArgs),
    /// Load the token endpoint and report throughput, latency and server CPU per token.
    Run(RunArgs),
}

#[derive(Args)]
struct SetupArgs {
    /// The server's gRPC API.
    #[arg(
        long,
        env = "TOLLGATE_BENCH_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    grpc_url: String,
    /// The system tenant's admin credentials (`<data dir>/admin-credentials.json`).
    #[arg(long)]
    admin_credentials: PathBuf,
    /// How many tenants to create.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tenants: u32,
    /// Tenants created concurrently.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Tenant names are `<prefix>-<number>`.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// The tenants' signing algorithm.
    #[arg(long, default_value = "ES256")]
    signing_alg: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout_secs: u64,
    /// The fixture file to write (JSON lines, mode 0600; must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Which endpoint to load.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The server's gRPC API.
    #[arg(
        long,
        env = "TOLLGATE_BENCH_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    grpc_url: String,
    /// The server's HTTP gateway.
    #[arg(
        long,
        env = "TOLLGATE_BENCH_HTTP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    http_url: String,
    /// Credentials from a fixture file written by `setup`.
    #[arg(long, conflicts_with_all = ["tenant", "client_id", "client_secret", "audience"])]
    fixture: Option<PathBuf>,
    /// With `--fixture`: use its first this many credentials (one per tenant), round robin.
    #[arg(long, default_value_t = 1, requires = "fixture", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tenants: u32,
    /// Without `--fixture`: the app's tenant.
    #[arg(long, required_unless_present = "fixture")]
    tenant: Option<String>,
    /// Without `--fixture`: the app's client id.
    #[arg(long, required_unless_present = "fixture")]
    client_id: Option<String>,
    /// Without `--fixture`: the app's client secret.
    #[arg(
        long,
        env = "TOLLGATE_BENCH_CLIENT_SECRET",
        hide_env_values = true,
        required_unless_present = "fixture"
    )]
    client_secret: Option<String>,
    /// Without `--fixture`: the API to ask tokens for.
    #[arg(long, required_unless_present = "fixture")]
    audience: Option<String>,
    /// Requests in flight: one client each (HTTP: one keep-alive connection each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// gRPC only: HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    connections: u32,
    /// Uncounted warm-up, seconds.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Measurement, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// At most this many counted requests (the warm-up has the same cap).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    max_requests: u64,
    /// Open loop at this many requests per second; without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// A request not answered within this many milliseconds fails.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
    /// The server's process id, to measure its CPU time during the run (Linux `/proc`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for this run, echoed in the result.
    #[arg(long, default_value = "-")]
    label: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_cli(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Setup(args) => setup(args).await,
        Command::Run(args) => run(args).await,
    }
}

async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let admin = fixture::read_credential(&args.admin_credentials)?;
    let channel = client::grpc_channels(&args.grpc_url, 1)
        .await?
        .pop()
        .context("no channel")?;
    let spec = SetupSpec {
        tenants: args.tenants as usize,
        prefix: args.prefix,
        signing_alg: args.signing_alg,
        concurrency: args.concurrency as usize,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    eprintln!(
        "creating {} tenants, each with an API and an app ({} at a time)…",
        spec.tenants, spec.concurrency
    );
    let started = Instant::now();
    let credentials = setup::create_tenants(channel, admin, &spec).await?;
    let seconds = started.elapsed().as_secs_f64();
    fixture::write_fixture(&args.out, &credentials)?;
    eprintln!(
        "created {} tenants in {seconds:.1} s ({:.0} tenants/s); credentials in {}",
        credentials.len(),
        credentials.len() as f64 / seconds,
        args.out.display()
    );
    println!(
        "SETUP tenants={} seconds={seconds:.3} tenants_per_s={:.1}",
        credentials.len(),
        credentials.len() as f64 / seconds
    );
    Ok(())
}

fn seconds(value: f64, what: &str, max: f64) -> anyhow::Result<Duration> {
    if !(0.0..=max).contains(&value) {
        bail!("--{what} must be between 0 and {max} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let spec = LoadSpec {
        warmup: seconds(args.warmup, "warmup", 600.0)?,
        duration: seconds(args.duration, "duration", 3600.0)?,
        max_requests: args.max_requests,
        rate: match args.rate {
            Some(rate) if !(1.0..=1_000_000.0).contains(&rate) => {
                bail!("--rate must be between 1 and 1000000 requests per second")
            }
            rate => rate,
        },
        timeout: Duration::from_millis(args.timeout_ms),
    };
    if spec.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let credentials = match &args.fixture {
        Some(path) => fixture::read_fixture(path, Some(args.tenants as usize))?,
        None => vec![Credential {
            tenant: args.tenant.clone().context("--tenant is required")?,
            client_id: args.client_id.clone().context("--client-id is required")?,
            client_secret: args
                .client_secret
                .clone()
                .context("--client-secret is required")?,
            audience: args.audience.clone().context("--audience is required")?,
        }],
    };
    let tenant_count = credentials.len();
    let prepared = Arc::new(
        credentials
            .iter()
            .map(Prepared::new)
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    drop(credentials);

    let concurrency = args.concurrency as usize;
    let clients = match args.mode {
        Mode::Grpc => {
            let channels = client::grpc_channels(&args.grpc_url, args.connections as usize).await?;
            (0..concurrency)
                .map(|index| {
                    let channel = channels[index % channels.len()].clone();
                    Client::Grpc(
                        tollgate_proto::v1::token_service_client::TokenServiceClient::new(channel),
                    )
                })
                .collect::<Vec<_>>()
        }
        Mode::Http => {
            let mut clients = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let mut client = HttpClient::new(&args.http_url).await?;
                client.connect().await?;
                clients.push(Client::Http(client));
            }
            clients
        }
    };
    let connections = match args.mode {
        Mode::Grpc => (args.connections as usize).min(concurrency).max(1),
        Mode::Http => concurrency,
    };
    let load = match spec.rate {
        Some(rate) => format!("open loop at {rate:.0}/s"),
        None => "closed loop".to_owned(),
    };
    eprintln!(
        "{}: {} {load}, {concurrency} in flight at most over {connections} connections, {tenant_count} tenant(s); warm-up {:.0} s, measuring {:.0} s",
        args.label,
        args.mode.as_str(),
        spec.warmup.as_secs_f64(),
        spec.duration.as_secs_f64()
    );
    let timeout = spec.timeout;
    let clients = load::prime(clients, Arc::clone(&prepared), timeout).await?;
    let outcome = load::run(clients, prepared, &spec, args.server_pid).await?;
    print_outcome(&args, &spec, connections, tenant_count, &outcome);
    Ok(())
}

fn print_outcome(
    args: &RunArgs,
    spec: &LoadSpec,
    connections: usize,
    tenants: usize,
    outcome: &Outcome,
) {
    let report = &outcome.report;
    let window = outcome.window.as_secs_f64();
    let tokens_per_second = if window > 0.0 {
        report.ok as f64 / window
    } else {
        0.0
    };
    // An empty histogram has no percentiles: "-" rather than a misleading 0.
    let some = report.ok > 0;
    let quantile = |histogram: &hdrhistogram::Histogram<u64>, q: f64| {
        if some {
            histogram.value_at_quantile(q).to_string()
        } else {
            "-".to_owned()
        }
    };
    let (p50, p90, p99, p999, max) = (
        quantile(&report.service, 0.50),
        quantile(&report.service, 0.90),
        quantile(&report.service, 0.99),
        quantile(&report.service, 0.999),
        quantile(&report.service, 1.0),
    );
    let mean = if some {
        format!("{:.1}", report.service.mean())
    } else {
        "-".to_owned()
    };
    let per_server_cpu = outcome
        .server_cpu_seconds
        .filter(|cpu| *cpu > 0.0)
        .map(|cpu| report.ok as f64 / cpu);
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_owned(), |value| format!("{value:.digits$}"))
    };
    let open = spec.rate.is_some();

    eprintln!(
        "  {} tokens in {window:.2} s = {tokens_per_second:.0} tokens/s; {} errors",
        report.ok,
        report.error_count()
    );
    eprintln!(
        "  latency µs: p50 {p50}  p90 {p90}  p99 {p99}  p99.9 {p999}  max {max}  mean {mean}"
    );
    if open {
        eprintln!(
            "  from due time µs: p50 {}  p99 {}  max {}; {} requests started >{} ms late, {} not sent",
            quantile(&report.scheduled, 0.5),
            quantile(&report.scheduled, 0.99),
            quantile(&report.scheduled, 1.0),
            report.late,
            stats::LATE_THRESHOLD.as_millis(),
            outcome.unsent
        );
    }
    // What neither the server nor this process used: other processes on the machine.
    let other_cpu = outcome.server_cpu_seconds.map(|server| {
        (outcome.machine_busy_seconds - server - outcome.client_cpu_seconds).max(0.0)
    });
    eprintln!(
        "  CPU s: server {}  load generator {:.2}  anything else {}; tokens per server CPU second {}",
        optional(outcome.server_cpu_seconds, 2),
        outcome.client_cpu_seconds,
        optional(other_cpu, 2),
        optional(per_server_cpu, 0)
    );
    if let Some(error) = &report.first_error {
        eprintln!("  first error: {error}");
    }
    let error_kinds = if report.errors.is_empty() {
        "-".to_owned()
    } else {
        report
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind}:{count}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let label: String = args.label.split_whitespace().collect::<Vec<_>>().join("_");
    println!(
        "RESULT label={label} mode={} load={} rate={} concurrency={} connections={connections} tenants={tenants} \
         requests={} errors={} error_kinds={error_kinds} seconds={window:.3} tokens_per_s={tokens_per_second:.1} \
         p50_us={p50} p90_us={p90} p99_us={p99} p999_us={p999} max_us={max} mean_us={mean} \
         sched_p50_us={} sched_p99_us={} late={} unsent={} \
         server_cpu_s={} client_cpu_s={:.3} machine_busy_cpu_s={:.3} other_cpu_s={} \
         tokens_per_server_cpu_s={} server_rss_kib={}",
        args.mode.as_str(),
        if open { "open" } else { "closed" },
        optional(spec.rate, 0),
        args.concurrency,
        report.ok,
        report.error_count(),
        if open {
            quantile(&report.scheduled, 0.5)
        } else {
            "-".to_owned()
        },
        if open {
            quantile(&report.scheduled, 0.99)
        } else {
            "-".to_owned()
        },
        report.late,
        outcome.unsent,
        optional(outcome.server_cpu_seconds, 3),
        outcome.client_cpu_seconds,
        outcome.machine_busy_seconds,
        optional(other_cpu, 3),
        optional(per_server_cpu, 1),
        outcome
            .server_rss_kib
            .map_or_else(|| "-".to_owned(), |kib| kib.to_string()),
    );
}
