//! Development tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting check, `tidy`, clippy with warnings denied, then the whole test suite
//!   (the server's `hostile` suite last, on its own, one test at a time). This is the README's
//!   test command and what `.ci/run` calls. PostgreSQL suites run when
//!   `TOLLGATE_TEST_POSTGRES_URL` is set and skip loudly otherwise (with
//!   `TOLLGATE_REQUIRE_BACKENDS=1` a skip fails the run).
//! - `bench tokens`: builds the server and `tollgate-bench` in release, runs the token
//!   benchmarks against a temporary server on loopback and prints the report behind the
//!   performance targets; see [`bench`] and `cargo xtask bench tokens --help`.
//! - `tidy`: every file opens with `//!`, the crate dependency arrows equal the table in
//!   ARCHITECTURE.md, and only `tollgate-keys` (and the crates listed there, with their
//!   reasons) uses ring; see [`tidy`]. `tidy --print-table` prints the table for the tree as
//!   it is.
//! - `demo`: builds the server and `tollgate-demo`, runs the archive scenario against a
//!   throwaway `tollgate serve` and prints its narrative; see [`demo`].

// Build tooling: deadlines for the processes it runs and timings it reports are real time.
#![allow(clippy::disallowed_methods)]

mod bench;
mod demo;
mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "bench" => bench::bench(&args[1..]),
        "demo" => demo::demo(&args[1..]),
        "tidy" => match args.get(1).map(String::as_str) {
            None => tidy::tidy(),
            Some("--print-table") => tidy::print_table(),
            Some(other) => bail!("unknown option {other} (cargo xtask tidy [--print-table])"),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask ci | cargo xtask tidy [--print-table] | \
                 cargo xtask bench tokens [options] | cargo xtask demo"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    eprintln!("$ cargo xtask tidy");
    tidy::tidy()?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test_workspace()
}

/// The server's `hostile` suite floods a real server for tens of seconds and measures its
/// memory, descriptors and a legitimate client's latency: it runs after everything else, one
/// test at a time, so that it neither loads the machine under the timing-sensitive suites
/// nor shares it with another flood.
const HOSTILE_FILTER: &str = "hostile::";

/// `cargo test --workspace` without the hostile suite, then the hostile suite alone, echoing
/// their output, then one closing line with the totals of every test binary
/// (`N passed, M failed`), so the run ends on the whole count rather than on the last
/// binary's (often a doc-test run with nothing in it).
fn test_workspace() -> anyhow::Result<()> {
    let mut totals = TestTotals::default();
    let everything_else = run_tests(
        &["test", "--workspace", "--", "--skip", HOSTILE_FILTER],
        &mut totals,
    )?;
    let hostile = run_tests(
        &[
            "test",
            "--package",
            "tollgate",
            "--test",
            "it",
            "--",
            HOSTILE_FILTER,
            "--test-threads=1",
        ],
        &mut totals,
    )?;
    println!("{}, {} skipped", totals.summary(), totals.ignored);
    for (what, status) in [
        ("cargo test --workspace", everything_else),
        ("hostile suite", hostile),
    ] {
        if !status.success() {
            bail!("{what} failed with {status}");
        }
    }
    if totals.passed == 0 {
        bail!("cargo test --workspace ran no test");
    }
    Ok(())
}

/// Runs `cargo <args>`, echoing its standard output and adding its `test result:` lines to
/// `totals`.
fn run_tests(args: &[&str], totals: &mut TestTotals) -> anyhow::Result<std::process::ExitStatus> {
    use std::io::{BufRead, BufReader, Write};

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cargo}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        totals.add(&line);
        writeln!(out, "{line}")?;
    }
    Ok(child.wait()?)
}

/// Sums libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(result) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in result.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }

    fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
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

#[cfg(test)]
mod ci_tests {
    use super::TestTotals;

    #[test]
    fn totals_sum_every_binary() {
        let mut totals = TestTotals::default();
        for line in [
            "test result: ok. 27 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.04s",
            "running 3 tests",
            "test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            totals.add(line);
        }
        assert_eq!(
            totals,
            TestTotals {
                passed: 32,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(totals.summary(), "32 passed, 2 failed");
    }
}
