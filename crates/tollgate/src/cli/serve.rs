//! `tollgate serve` and `tollgate migrate`.

use std::future::Future;
use std::io::IsTerminal;

use anyhow::Context;

use crate::config::{Config, GatewayArgs, GatewayOnlyConfig, ServeArgs};
use crate::server::{self, Listeners};

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::from_args(args)?;
    let shutdown = shutdown_signal()?;
    let listeners = Listeners::bind(&config).await?;
    server::serve(config, listeners, shutdown).await
}

/// Runs the HTTP gateway alone until SIGINT or SIGTERM.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = GatewayOnlyConfig::from_args(args)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on TOLLGATE_HTTP_ADDR {}", config.http_addr))?;
    server::serve_gateway(config, listener, shutdown).await
}

/// Connects to the database, applies pending migrations and says so.
pub async fn migrate(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let default_database = args.database_url.is_none();
    let config = Config::from_args(args)?;
    let store = server::open_store(&config).await?;
    let backend = store.backend_name();
    store.close().await.context("cannot close the database")?;
    // The URL is not echoed: it may hold a password.
    let database = if default_database {
        format!(
            "the {backend} database {}",
            config.data_dir.join("tollgate.db").display()
        )
    } else {
        format!("the {backend} database of TOLLGATE_DATABASE_URL")
    };
    super::output::emit(&format!(
        "Applied all pending migrations: {database} is up to date.\n"
    ))
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`). A log line that cannot
/// be written (standard error is a pipe nobody reads any more) is dropped: the server keeps
/// serving.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only if a subscriber is already installed, which is then kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Otherwise a failed write is reported with `eprintln!` to the same standard
        // error, which panics when that is a closed pipe.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Completes on the first SIGINT or SIGTERM. A second signal exits at once, without
/// waiting for the drain.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "shutting down; send it again to exit at once"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
    })
}

/// Completes on the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
