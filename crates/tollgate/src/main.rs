//! The `tollgate` binary: parses the command line and runs it; see [`tollgate::cli`].
//!
//! Exit status: 0 on success, 1 on failure (`error: …` on standard error), 2 on a usage
//! error.

use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{Cli, describe_error, run};

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
