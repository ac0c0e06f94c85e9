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
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    let path = Config::path(config.as_deref());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cosmian_vm_agent: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let preinit = std::env::var("COSMIAN_VM_PREINIT").map_or(true, |v| v.trim() != "0");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cosmian_vm_agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cosmian_vm_agent::run(config, preinit));
    // Blocking tasks (a snapshot walk being cancelled) get a moment, not forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cosmian_vm_agent: {e}");
            ExitCode::FAILURE
        }
    }
}
