//! `cosmian_vm`: the user's command line for verifying confidential VMs.
//!
//! Offline: `cosmian_vm evidence verify|inspect`. With the VM's agent (`--url`): `snapshot`,
//! `verify`, `app`, `secret`, `owner enroll`, each over one TLS connection whose fresh evidence
//! is verified before anything else is sent. Any RA-TLS endpoint: `connect`.

#![forbid(unsafe_code)]

mod agent;
mod audit;
mod cli;
mod collateral;
mod connect;
mod doc_examples;
mod evidence;
mod files;
mod net;
mod output;
mod save;
mod state;
mod vm;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Warnings and notes (`cosmian_vm: WARNING: …`) and ratls' events, filtered by `RUST_LOG`.
    let args = cli::Cli::parse();
    ratls::diag::init_with(
        "cosmian_vm",
        ratls::diag::Style::Cli,
        ratls::diag::Verbosity::from_flags(args.global.quiet, args.global.verbose),
    );
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            // The command's outcome (exit 2), not a log event: the same `error: …` line scripts
            // and docs show, whatever `RUST_LOG` says.
            eprintln!("error: {e}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

/// Run a parsed command line. `Err` is a usage problem, an unreadable input or a network error
/// (exit 2); verification outcomes are exit codes (0 trusted, 1 rejected).
fn run(args: cli::Cli) -> Result<ExitCode, cli::UsageError> {
    use cli::Command;
    args.validate()?;
    let global = &args.global;
    match &args.command {
        Command::Evidence(cli::EvidenceCommand::Verify(a)) => evidence::verify(a, global),
        Command::Evidence(cli::EvidenceCommand::Inspect(a)) => evidence::inspect(a, global.json),
        Command::Snapshot(a) => vm::block_on(vm::snapshot(global, a)),
        Command::Verify(a) if a.fleet.is_some() => vm::block_on_threads(vm::fleet(global, a)),
        Command::Verify(a) => vm::block_on(vm::verify(global, a)),
        Command::App(a) => vm::block_on(vm::app(global, a)),
        Command::Secret(cli::SecretCommand::Put(a)) => vm::block_on(vm::secret_put(global, a)),
        Command::Owner(cli::OwnerCommand::Enroll(a)) => vm::block_on(vm::owner_enroll(global, a)),
        Command::Connect(a) => vm::block_on(connect::connect(global, a)),
        Command::Audit(cli::AuditCommand::Query(a)) => audit::query(a, global.json),
        Command::Audit(cli::AuditCommand::Verify(a)) => audit::verify(a, global.json),
    }
}
