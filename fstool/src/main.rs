//! `cosmian_fstool`: a LUKS2 container image (through `cryptsetup`) whose key can be sealed in
//! the TPM under a PCR policy, so that only an unchanged machine unlocks it at boot; the
//! password keyslot stays the recovery path. See `docs/fstool.md`.
//!
//! Secrets (the password, the sealed key) never appear on a command line, in output or in
//! logs: they reach `cryptsetup` on stdin or through 0600 files in a 0700 directory that is
//! wiped and removed, and they are zeroed in memory when dropped.

#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod container;
mod cryptsetup;
mod error;
mod files;
mod header;
mod mountpoint;
mod seal;
mod secret;
mod size;

use clap::Parser;

use crate::cli::{Cli, Cmd};
use crate::cryptsetup::Kdf;
use crate::error::Result;

fn main() {
    // `cosmian_fstool: WARNING: …` / `cosmian_fstool: error: …` on stderr; `RUST_LOG` adds
    // ratls' TPM events.
    let cli = Cli::parse();
    ratls::diag::init_with(
        "cosmian_fstool",
        ratls::diag::Style::Cli,
        ratls::diag::Verbosity::from_flags(cli.quiet, cli.verbose),
    );
    if let Err(error) = run(cli) {
        tracing::error!("{error}");
        std::process::exit(error.exit_code());
    }
}

/// The global flags, then the command.
fn run(cli: Cli) -> Result<()> {
    if let Some(uid) = cli.secret_owner_uid {
        files::set_secret_owner(uid)?;
    }
    let kdf = if cli.fast_kdf_for_tests {
        tracing::warn!(
            flag = "--fast-kdf-for-tests",
            "--fast-kdf-for-tests: weak password key derivation (tests only)"
        );
        Kdf::Minimal
    } else {
        Kdf::Default
    };
    match cli.command {
        None => cmd::create::create(cli.create, kdf),
        Some(Cmd::Create(args)) => cmd::create::create(args, kdf),
        Some(Cmd::Open(args)) => cmd::open::open(args),
        Some(Cmd::Close { name }) => cmd::open::close(&name),
        Some(Cmd::Status { location }) => cmd::status::status(&location),
        Some(Cmd::Reseal(args)) => cmd::reseal::reseal(args),
        Some(Cmd::TestKey(args)) => cmd::open::test_key(args),
        Some(Cmd::MountAtBoot(args)) => cmd::mount::mount_at_boot(args),
    }
}
