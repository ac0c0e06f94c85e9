//! `cosmian_certtool`: certificates for an attested VM.
//!
//! - `acme`: a certificate from Let's Encrypt (or any RFC 8555 CA) through `instant-acme`, with
//!   the key generated in this process and written only into `--output`; HTTP-01 served by the
//!   tool itself, or DNS-01 (manual or through a hook); `renew` when a third of the lifetime is
//!   left.
//! - `ratls generate|verify|fetch`: RA-TLS certificates from this machine's attesters, offline
//!   verification with the step verdict, and saving a server's chain.
//!
//! Exit codes: 0 success (or TRUSTED for `ratls verify`), 1 the operation failed (ACME order
//! refused, verdict REJECTED), 2 bad input or an error before the operation could run.
//! See `docs/certtool.md`.

#![forbid(unsafe_code)]

mod acme;
mod cli;
mod http01;
mod ratls_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, RatlsCommand};

/// Exit code of a successful run (`ratls verify`: TRUSTED).
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed operation (ACME order refused; `ratls verify`: REJECTED).
pub const EXIT_FAILED: u8 = 1;
/// Exit code of bad input or an error before the operation could run.
pub const EXIT_USAGE: u8 = 2;

/// Why a command stopped: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input or a local error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// The operation itself failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ratls::diag::init_with(
        "cosmian_certtool",
        ratls::diag::Style::Daemon,
        ratls::diag::Verbosity::from_flags(cli.quiet, cli.verbose),
    );
    run(cli)
}

/// Run the command on a two-thread runtime: its exit code, the error (if any) printed first.
fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cosmian_certtool: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("cosmian_certtool: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The command's own exit code, or why it stopped.
async fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Acme(args) => acme::run_acme(args).await,
        Command::Renew(args) => acme::run_renew(args).await,
        Command::Ratls(RatlsCommand::Generate(args)) => ratls_cmd::generate(&args),
        Command::Ratls(RatlsCommand::Verify(args)) => ratls_cmd::verify(&args),
        Command::Ratls(RatlsCommand::Fetch(args)) => ratls_cmd::fetch(&args).await,
    }
}
