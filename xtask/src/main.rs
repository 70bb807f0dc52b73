//! Development tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting check, clippy with warnings denied, then the whole test suite. This is
//!   the README's test command and what `.ci/run` calls. PostgreSQL suites run when
//!   `TOLLGATE_TEST_POSTGRES_URL` is set and skip loudly otherwise (with
//!   `TOLLGATE_REQUIRE_BACKENDS=1` a skip fails the run).
//! - `bench tokens`: builds the server and `tollgate-bench` in release, runs the token
//!   benchmarks against a temporary server on loopback and prints the report behind the
//!   performance targets; see [`bench`] and `cargo xtask bench tokens --help`.

mod bench;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "bench" => bench::bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask ci | cargo xtask bench tokens [options]");
            bail!("unknown task {task:?}")
        }
    }
}

fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace"])?;
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}
