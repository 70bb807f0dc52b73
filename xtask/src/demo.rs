//! `cargo xtask demo`: the seed scenario against a real `tollgate serve`, start to finish.
//!
//! Builds `tollgate` and `tollgate-demo` (debug), starts `tollgate serve` in a temporary
//! data dir on free loopback ports with issuers at `http://127.0.0.1:<http port>/t/<tenant>/`
//! (so the SDK discovers metadata, JWKS and token endpoint from the exact `iss`), waits until
//! it is ready, then runs `tollgate-demo`: tenant `acme`, the API
//! `https://archive.example.com/`, the apps, the storage API, the archiver and the reader
//! (see `crates/demo`). Its narrative is the output. Exits 0 only if every step behaved;
//! the server is stopped (SIGTERM, then SIGKILL) and the directory removed on every path but
//! a kill of xtask itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{KillOnDrop, Server, TempDir, tail, target_dir};

const USAGE: &str = "usage: cargo xtask demo [--no-build]

Runs the archive scenario against a throwaway Tollgate: builds tollgate and tollgate-demo
(debug), starts `tollgate serve` on free loopback ports in a temporary directory, creates
tenant acme, the API https://archive.example.com/ (archive:read, archive:write) and its apps,
starts a storage API protected by tollgate-verify, and calls it as an archiver (writes) and a
reader (reads; a write is refused with 403 insufficient_scope) with tollgate-client.

  --no-build   use the debug binaries already built";

/// The longest the scenario may take (it takes about a second).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// `cargo xtask demo …`.
pub fn demo(args: &[String]) -> anyhow::Result<()> {
    let mut build = true;
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => {
                eprintln!("{USAGE}");
                bail!("unknown option {other}");
            }
        }
    }
    if build {
        super::cargo(&[
            "build",
            "--package",
            "tollgate",
            "--package",
            "tollgate-demo",
        ])?;
    }
    let debug = target_dir()?.join("debug");
    let (tollgate, scenario) = (debug.join("tollgate"), debug.join("tollgate-demo"));
    for binary in [&tollgate, &scenario] {
        if !binary.is_file() {
            bail!("{} is missing; run without --no-build", binary.display());
        }
    }

    let work = TempDir::create_named("tollgate-demo")?;
    let data_dir = work.path.join("data");
    let mut server = Server::start(
        &tollgate,
        &data_dir,
        &work.path,
        None,
        None,
        Some("http://{http_addr}/t/{tenant}/"),
    )?;
    println!("== Tollgate demo: the archive scenario ==");
    println!(
        "tollgate serve (pid {}): gRPC {}, HTTP {}, issuers {}/t/<tenant>/, data in {}",
        server.pid,
        server.grpc_url,
        server.http_url,
        server.http_url,
        data_dir.display()
    );
    let outcome = server
        .wait_ready(&data_dir)
        .and_then(|()| run_scenario(&scenario, &server.grpc_url, &data_dir));
    let stopped = server.stop();
    if outcome.is_err() {
        eprintln!(
            "--- last lines of the server log ---\n{}",
            tail(&work.path.join("server.log"), 30)
        );
    }
    outcome?;
    stopped?;
    println!(
        "== demo passed; server stopped, {} removed ==",
        work.path.display()
    );
    Ok(())
}

/// Runs `tollgate-demo` against the server, its output straight to ours.
fn run_scenario(
    scenario: &std::path::Path,
    grpc_url: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut command = Command::new(scenario);
    // Only this run's settings: no TOLLGATE_* (such as TOLLGATE_ENDPOINT) from the caller.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOLLGATE_") {
            command.env_remove(name);
        }
    }
    let child = command
        .arg("--grpc-url")
        .arg(grpc_url)
        .arg("--admin-credentials")
        .arg(data_dir.join("admin-credentials.json"))
        .arg("--tenant")
        .arg("acme")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", scenario.display()))?;
    let status = KillOnDrop(child).wait_until(Instant::now() + SCENARIO_LIMIT)?;
    if !status.success() {
        bail!("the scenario did not behave ({status})");
    }
    Ok(())
}
