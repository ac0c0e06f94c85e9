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
    let (side, flags) = match cli.command {
        Command::Server(f) => (Side::Server, f),
        Command::Client(f) => (Side::Client, f),
    };
    let settings = match opts::settings(side, flags) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("cosmian_vm_proxy: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cosmian_vm_proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(proxy::run(settings));
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cosmian_vm_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
