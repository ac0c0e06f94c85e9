//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Certificates for an attested VM: ACME (Let's Encrypt) and RA-TLS.
#[derive(Debug, Parser)]
#[command(name = "cosmian_certtool", version, about)]
pub struct Cli {
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get a certificate from an ACME CA (Let's Encrypt by default). The key is generated here
    /// and written only into --output (key.pem, mode 0600) with the full chain (cert.pem).
    Acme(AcmeArgs),
    /// Renew the certificate in --output when less than a third of its lifetime is left (or
    /// always with --force), with the settings and the account saved by `acme`.
    Renew(RenewArgs),
    /// RA-TLS certificates: generate one from this machine's attesters, verify one offline,
    /// fetch a server's chain.
    #[command(subcommand)]
    Ratls(RatlsCommand),
}

/// How the CA's challenges are answered (at most one; HTTP-01 on 0.0.0.0:80 by default).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct ChallengeArgs {
    /// Answer HTTP-01 challenges with a server of our own on ADDR (e.g. 0.0.0.0:80; the CA
    /// connects to port 80 of each domain).
    #[arg(long = "http-01", value_name = "ADDR")]
    pub http_01: Option<String>,
    /// DNS-01: print the TXT record to set for each domain and wait for Enter on stdin.
    #[arg(long = "dns-01-manual")]
    pub dns_01_manual: bool,
    /// DNS-01 through a command: run `sh -c CMD` with CERTTOOL_DNS_NAME (the record name, with
    /// a trailing dot), CERTTOOL_DNS_VALUE (the TXT value) and CERTTOOL_DOMAIN in its
    /// environment; it must set the record and exit 0.
    #[arg(long = "dns-01-hook", value_name = "CMD")]
    pub dns_01_hook: Option<String>,
}

#[derive(Debug, Args)]
pub struct AcmeArgs {
    /// A domain name for the certificate (repeat for several; the first is the subject).
    #[arg(long = "domain", value_name = "NAME", required = true)]
    pub domains: Vec<String>,
    /// The account's contact address.
    #[arg(long, value_name = "ADDR")]
    pub email: String,
    /// The ACME directory URL (default: Let's Encrypt production).
    #[arg(long, value_name = "URL", conflicts_with = "staging")]
    pub directory: Option<String>,
    /// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
    #[arg(long)]
    pub staging: bool,
    #[command(flatten)]
    pub challenge: ChallengeArgs,
    /// Where key.pem, cert.pem, account.json and settings.json go (created with mode 0700).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Trust this CA certificate (PEM) for the ACME server's own TLS, instead of the system
    /// roots: for a private ACME server such as pebble.
    #[arg(long = "root-ca", value_name = "PEM")]
    pub root_ca: Option<PathBuf>,
    /// How long to wait for the CA to validate the challenges, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The directory `acme` wrote (cert.pem, key.pem, account.json, settings.json).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Renew even if more than a third of the lifetime is left.
    #[arg(long)]
    pub force: bool,
    /// Answer the challenges differently than the saved settings say.
    #[command(flatten)]
    pub challenge: ChallengeArgs,
    /// How long to wait for the CA to validate the challenges, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum RatlsCommand {
    /// Issue an RA-TLS certificate (self-signed, ECDSA P-256) whose evidence binds its key.
    Generate(GenerateArgs),
    /// Verify an RA-TLS certificate offline and print the step verdict (exit 0 TRUSTED, 1
    /// REJECTED, 2 error).
    Verify(VerifyArgs),
    /// Save a TLS server's certificate chain as PEM. Only fetches: nothing is verified.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A subjectAltName (DNS name or IP address; repeat for several).
    #[arg(long = "san", value_name = "NAME", required = true)]
    pub sans: Vec<String>,
    /// The subject CN (default: the first SAN).
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub days: u64,
    /// Where cert.pem (0644) and key.pem (0600) go.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The TEE: auto, none, sev-snp, tdx, azure-snp, azure-tdx, or sim (the simulated TEE: for
    /// tests only, its evidence proves nothing).
    #[arg(long, value_name = "TEE", default_value = "auto")]
    pub tee: String,
    /// The TPM: a device path or TCTI (device:/dev/tpmrm0, swtpm:host=…,port=…), or none.
    #[arg(long, value_name = "TCTI", default_value = "/dev/tpmrm0")]
    pub tpm: String,
    /// The IMA log (binary format); none to leave IMA out.
    #[arg(
        long = "ima-log",
        value_name = "FILE",
        default_value = "/sys/kernel/security/ima/binary_runtime_measurements"
    )]
    pub ima_log: PathBuf,
    /// The simulated TEE's CA directory (--tee sim; generated there when missing).
    #[arg(
        long = "sim-dir",
        value_name = "DIR",
        default_value = "/var/lib/cosmian_vm/sim"
    )]
    pub sim_dir: PathBuf,
    /// The role the evidence is bound to (server, client, agent).
    #[arg(long, value_name = "ROLE", default_value = "server")]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate (PEM or DER; the first certificate of a PEM chain is checked).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A JSON policy the evidence must satisfy (sections "snp", "tdx", "tpm", "ima").
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// DANGER: trust evidence from the simulated TEE whose ARK is FILE. Such verdicts say
    /// SIMULATED and prove nothing about hardware.
    #[arg(long = "insecure-sim-root", value_name = "FILE")]
    pub insecure_sim_root: Option<PathBuf>,
    /// The role the evidence must be bound to.
    #[arg(long, value_name = "ROLE", default_value = "server")]
    pub role: String,
    /// The oldest evidence accepted, in seconds.
    #[arg(long = "max-age", value_name = "SECS", default_value_t = 24 * 3600)]
    pub max_age: u64,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// AMD KDS base URL: the VCEK and CRL SEV-SNP evidence lacks
    /// [default: `https://kdsintf.amd.com`].
    #[arg(long, value_name = "URL", help_heading = "Collateral")]
    pub kds_url: Option<String>,
    /// Intel PCS v4 or PCCS base URL: the collateral a TDX quote lacks
    /// [default: `https://api.trustedservices.intel.com`].
    #[arg(long, value_name = "URL", help_heading = "Collateral")]
    pub pcs_url: Option<String>,
    /// Intel's SGX root CA CRL when the PCS does not serve it.
    #[arg(long, value_name = "URL", help_heading = "Collateral")]
    pub intel_root_crl_url: Option<String>,
    /// Where fetched collateral is cached [default: ~/.cache/cosmian_vm/collateral].
    #[arg(long, value_name = "DIR", help_heading = "Collateral")]
    pub collateral_dir: Option<PathBuf>,
    /// Fetch no collateral: the cache only.
    #[arg(long, help_heading = "Collateral")]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The server (HOST:PORT; PORT defaults to 443).
    #[arg(value_name = "HOST:PORT")]
    pub target: String,
    /// Write the chain here (PEM, mode 0644) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The name to send in SNI (default: HOST).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}
