//! The `tollgate` binary: parses the command line and runs it; see [`tollgate::commands`].
//!
//! Exit status: 0 on success, 1 on failure (`error: …` on standard error), 2 on a usage
//! error. A reader that closed standard output early (`tollgate audit export | head -1`)
//! ends the command with status 0 and no message; a closed standard error never panics.

use std::process::ExitCode;

use clap::Parser;
use tollgate::commands::{Cli, run};
use tollgate_cli::{describe_error, is_output_closed, note};

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
        // The reader of standard output went away: it has what it wanted.
        Err(error) if is_output_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            note(format_args!("error: {}", describe_error(&error)));
            ExitCode::FAILURE
        }
    }
}
