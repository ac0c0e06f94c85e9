//! `cosmian_vm_proxy`: a sidecar that puts mutually attested TLS in front of any app.
//!
//! `server` mode terminates TLS with this machine's RA-TLS certificate (or a given one), answers
//! fresh attestation challenges, optionally requires clients to attest too, and forwards to the
//! target with the verified peer's attestation as PROXY v2 TLVs or HTTP headers. `client` mode is
//! a local plaintext listener whose connections go out over TLS to a server that must prove
//! itself. See `docs/proxy.md`.

#![forbid(unsafe_code)]

mod machine;
mod meta;
mod metrics;
mod opts;
mod proxy;
mod relay;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::opts::{Cli, Command, Side};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ratls::diag::init_with(
        "cosmian_vm_proxy",
        ratls::diag::Style::Daemon,
        ratls::diag::Verbosity::from_flags(cli.quiet, cli.verbose),
    );
    run(cli)
}

/// Check the settings (exit 2 on a usage error), then serve on a multi-threaded runtime until
/// SIGTERM or SIGINT.
fn run(cli: Cli) -> ExitCode {
    let (side, flags) = match cli.command {
        Command::Server(f) => (Side::Server, f),
        Command::Client(f) => (Side::Client, f),
    };
    let settings = match opts::settings(side, flags) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                tracing::error!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    ratls::net::run_daemon(Duration::from_secs(1), proxy::run(settings))
}
