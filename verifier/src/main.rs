//! `cosmian_vm`: the user's command line for verifying confidential VMs.
//!
//! Today it verifies evidence offline (`cosmian_vm evidence verify|inspect`); the agent-facing
//! commands (`snapshot`, `verify`, `app`, …) come with the agent.

#![forbid(unsafe_code)]

mod cli;
mod evidence;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

/// Run a parsed command line. `Err` is a usage problem or an unreadable input (exit 2);
/// verification outcomes are exit codes (0 trusted, 1 rejected).
fn run(args: cli::Cli) -> Result<ExitCode, cli::UsageError> {
    match args.command {
        cli::Command::Evidence(cli::EvidenceCommand::Verify(args)) => evidence::verify(&args),
        cli::Command::Evidence(cli::EvidenceCommand::Inspect(args)) => evidence::inspect(&args),
    }
}
