//! `cosmian_vm_sim`: stand-ins for the firmware and the kernel on a machine without them, for
//! the demo and tests on swtpm. It never runs on a real confidential VM: there the firmware
//! measures the boot and the kernel's IMA measures files.
//!
//! - `boot --tpm TCTI [--label L] [--event-log FILE [--cmdline C]]`: extend PCRs 0–9 as firmware
//!   would (a new label, a new boot), and write the firmware event log of it (PCR 9: the kernel
//!   command line and initrd, tagged as the Linux EFI stub does);
//! - `ima-init --tpm TCTI --log FILE`: start a boot's IMA log with its `boot_aggregate`;
//! - `measure --tpm TCTI --log FILE PATH...`: measure files (ima-ng records + PCR 10 extends),
//!   as the kernel does when a program runs;
//! - `ca --dir DIR`: create (or load) the simulated TEE's CA in DIR, as `tee = "sim"` does in
//!   `<data_dir>/sim`, so a test can give the guest a CA whose ARK it already knows.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ratls::attest::ima_sim::{simulate_boot, simulate_boot_with_event_log, ImaSimulator};
use ratls::attest::tpm::{TssTpm, DEFAULT_AK_HANDLE};

#[derive(Parser)]
#[command(
    name = "cosmian_vm_sim",
    version,
    about = "Simulated firmware and IMA measurements on a software TPM (demo and tests only)"
)]
struct Cli {
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Extend PCRs 0–9 as firmware would.
    Boot {
        /// TCTI of the TPM, e.g. `swtpm:host=127.0.0.1,port=2321`.
        #[arg(long)]
        tpm: String,
        #[arg(long, default_value = "cosmian vm demo")]
        label: String,
        /// Also write the boot's firmware event log (crypto-agile, sha1 + sha256) to FILE.
        #[arg(long, value_name = "FILE")]
        event_log: Option<PathBuf>,
        /// The kernel command line measured into PCR 9 (with --event-log).
        #[arg(
            long,
            requires = "event_log",
            default_value = "console=ttyS0 initrd=initrd"
        )]
        cmdline: String,
    },
    /// Start a new IMA log (truncating FILE) with this boot's boot_aggregate.
    ImaInit {
        #[arg(long)]
        tpm: String,
        #[arg(long)]
        log: PathBuf,
    },
    /// Measure files into the IMA log and PCR 10.
    Measure {
        #[arg(long)]
        tpm: String,
        #[arg(long)]
        log: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Create (or load) the simulated TEE's CA in DIR; prints the path of its ARK.
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    let open = |tcti: &str| TssTpm::open(tcti, DEFAULT_AK_HANDLE).map_err(|e| e.to_string());
    match cli.command {
        Command::Boot {
            tpm,
            label,
            event_log,
            cmdline,
        } => match event_log {
            Some(path) => simulate_boot_with_event_log(&open(&tpm)?, &label, &cmdline, &path)
                .map_err(|e| e.to_string()),
            None => simulate_boot(&open(&tpm)?, &label).map_err(|e| e.to_string()),
        },
        Command::ImaInit { tpm, log } => {
            let tpm = open(&tpm)?;
            ImaSimulator::new(&log, &tpm)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Command::Measure { tpm, log, paths } => {
            let tpm = open(&tpm)?;
            let mut ima = ImaSimulator::resume(&log, &tpm).map_err(|e| e.to_string())?;
            for path in paths {
                let digest = ima
                    .measure_file(&path)
                    .map_err(|e| e.to_string())?;
                println!(
                    "measured {} sha256:{}",
                    path.display(),
                    ratls::hexfmt::hex(digest)
                );
            }
            Ok(())
        }
        Command::Ca { dir } => {
            ratls::attest::sim::SimCa::load_or_generate(&dir).map_err(|e| e.to_string())?;
            println!("{}", dir.join("ark.pem").display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ratls::diag::init_with(
        "cosmian_vm_sim",
        ratls::diag::Style::Cli,
        ratls::diag::Verbosity::from_flags(cli.quiet, cli.verbose),
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
