//! `cosmian_vm_agent [--config FILE] [run]`: the agent daemon. See `docs/agent-api.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cosmian_vm_agent::config::Config;

/// The Cosmian VM agent: serves attested evidence, snapshots, app configuration and secrets
/// over RA-TLS.
#[derive(Debug, Parser)]
#[command(name = "cosmian_vm_agent", version)]
struct Cli {
    /// The configuration file (default: $COSMIAN_VM_AGENT_CONF, else /etc/cosmian_vm/agent.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT (the default).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ratls::diag::init_with(
        "cosmian_vm_agent",
        ratls::diag::Style::Daemon,
        ratls::diag::Verbosity::from_flags(cli.quiet, cli.verbose),
    );
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    let path = Config::path(config.as_deref());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %path.display(), "configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let preinit = std::env::var("COSMIAN_VM_PREINIT").map_or(true, |v| v.trim() != "0");
    // Blocking tasks (a snapshot walk being cancelled) get a moment, not forever.
    ratls::net::run_daemon(
        std::time::Duration::from_secs(5),
        cosmian_vm_agent::run(config, preinit),
    )
}
