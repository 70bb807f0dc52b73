//! The `tollgate` binary: parses the command line and runs it; see [`tollgate::cli`].
//!
//! Exit status: 0 on success, 1 on failure (`error: …` on standard error), 2 on a usage
//! error.

use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{Cli, describe_error, run};

/// The process's allocator. Under token load glibc's malloc and free took about 14 % of the
/// server's CPU (a token request allocates and frees across the runtime's threads and the
/// audit writer); mimalloc's per-thread heaps make that cheaper. Measured with
/// `cargo xtask bench tokens` (see ARCHITECTURE.md, Decisions).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe_error(&error));
            ExitCode::FAILURE
        }
    }
}
