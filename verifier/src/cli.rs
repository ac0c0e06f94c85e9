//! Command-line definitions.

use std::fmt;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Exit code: every check passed.
pub const EXIT_TRUSTED: u8 = 0;
/// Exit code: a check failed (malformed evidence included).
pub const EXIT_REJECTED: u8 = 1;
/// Exit code: usage error or unreadable file.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "cosmian_vm",
    version,
    about = "Verify confidential VMs: TEE hardware, TPM quotes and IMA logs",
    after_help = "Exit codes: 0 every check passed; 1 a check failed (malformed evidence \
                  included); 2 usage error or unreadable file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check evidence files offline (no agent, no network).
    #[command(subcommand)]
    Evidence(EvidenceCommand),
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Verify one piece of evidence and print the step-by-step verdict.
    Verify(Box<VerifyArgs>),
    /// Detect the kind of an evidence file and print what it claims (verifies nothing).
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("evidence").required(true).multiple(true).args(["snp_report", "tdx_quote", "tpm_quote", "ima_log", "azure_hcl", "bundle"])),
    group(ArgGroup::new("snp_source").args(["snp_report", "azure_hcl"])),
    after_help = "Exit codes: 0 every check passed; 1 a check failed (malformed evidence \
                  included); 2 usage error or unreadable file."
)]
pub struct VerifyArgs {
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Verify as of this time (RFC 3339, e.g. 2025-07-01T00:00:00Z) instead of now; old
    /// evidence needs it because certificates and collateral expire.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// A JSON policy with optional sections "snp", "tdx", "tpm", "ima" (unknown keys rejected).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// An SEV-SNP attestation report (1184 raw bytes, or hex text).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["tdx_quote", "tpm_quote", "ima_log", "azure_hcl"],
        help_heading = "SEV-SNP"
    )]
    pub snp_report: Option<PathBuf>,
    /// The VCEK certificate (DER or PEM), for --snp-report or --azure-hcl.
    #[arg(
        long,
        value_name = "FILE",
        requires = "snp_source",
        conflicts_with = "vlek",
        help_heading = "SEV-SNP"
    )]
    pub vcek: Option<PathBuf>,
    /// The VLEK certificate (DER or PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "snp_report",
        help_heading = "SEV-SNP"
    )]
    pub vlek: Option<PathBuf>,
    /// ASK (or ASVK) then ARK, PEM, as AMD KDS serves them; default: the built-in chain.
    #[arg(
        long,
        value_name = "PEM",
        requires = "snp_source",
        help_heading = "SEV-SNP"
    )]
    pub cert_chain: Option<PathBuf>,

    /// An Azure CVM's HCL report (vTPM NV index 0x01400001): SEV-SNP (with --vcek) or TDX
    /// (with --tdx-quote and --collateral); the vTPM AK comes from it, so a --tpm-quote needs
    /// no --ak-public.
    #[arg(long, value_name = "FILE", help_heading = "Azure")]
    pub azure_hcl: Option<PathBuf>,

    /// An Intel TDX quote (v4 or v5).
    #[arg(
        long,
        value_name = "FILE",
        requires = "collateral",
        help_heading = "TDX"
    )]
    pub tdx_quote: Option<PathBuf>,
    /// Intel PCS collateral (JSON: tcb_info, qe_identity, CRLs, issuer chains, signatures).
    #[arg(
        long,
        value_name = "JSON",
        requires = "tdx_quote",
        help_heading = "TDX"
    )]
    pub collateral: Option<PathBuf>,

    /// A TPMS_ATTEST quote structure (raw or hex).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tpm_signature",
        help_heading = "TPM"
    )]
    pub tpm_quote: Option<PathBuf>,
    /// The TPMT_SIGNATURE over the quote, or the raw RSASSA signature of an Azure vTPM (raw or
    /// hex).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tpm_quote",
        help_heading = "TPM"
    )]
    pub tpm_signature: Option<PathBuf>,
    /// The attestation key's TPMT_PUBLIC or TPM2B_PUBLIC (raw or hex); not with --azure-hcl.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tpm_quote",
        conflicts_with = "azure_hcl",
        help_heading = "TPM"
    )]
    pub ak_public: Option<PathBuf>,
    /// The nonce the quote's qualifying data must equal (hex).
    #[arg(long, value_name = "HEX", requires = "tpm_quote", help_heading = "TPM")]
    pub nonce: Option<String>,
    /// The quoted PCR values, JSON {"sha256": {"0": "hex", ...}}; needed to check pcrDigest.
    #[arg(
        long,
        value_name = "JSON",
        requires = "tpm_quote",
        help_heading = "TPM"
    )]
    pub pcrs: Option<PathBuf>,

    /// A Linux IMA measurement log (binary_runtime_measurements or ASCII).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["tdx_quote", "tpm_quote", "azure_hcl"],
        help_heading = "IMA"
    )]
    pub ima_log: Option<PathBuf>,
    /// The quoted PCR 10 value the log must replay to (some prefix of it).
    #[arg(long, value_name = "HEX", requires = "ima_log", help_heading = "IMA")]
    pub pcr10: Option<String>,
    /// The PCR bank of --pcr10 (default: implied by its length).
    #[arg(long, value_name = "BANK", requires = "pcr10", value_parser = ["sha1", "sha256", "sha384", "sha512"], help_heading = "IMA")]
    pub bank: Option<String>,

    /// An evidence bundle (CMW-wrapped CBOR, as the agent and RA-TLS certificates carry it).
    #[arg(
        long,
        value_name = "FILE",
        requires = "spki",
        help_heading = "Evidence bundle"
    )]
    pub bundle: Option<PathBuf>,
    /// The TLS key the bundle must be bound to: a certificate (PEM or DER) or a DER
    /// SubjectPublicKeyInfo.
    #[arg(
        long,
        value_name = "FILE",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub spki: Option<PathBuf>,
    /// The role the evidence must be bound to.
    #[arg(
        long,
        value_name = "ROLE",
        default_value = "agent",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub role: String,
    /// The challenge the verifier sent (fresh mode, 32 bytes hex).
    #[arg(
        long,
        value_name = "HEX",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub challenge: Option<String>,
    /// The verifier's TLS exporter value for the session (fresh mode, 32 bytes hex).
    #[arg(
        long,
        value_name = "HEX",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub exporter: Option<String>,
    /// Oldest evidence accepted, in seconds (certificate mode).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 86_400,
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub max_age: u64,
    /// The IMA log, when the bundle carries only its digest.
    #[arg(
        long,
        value_name = "FILE",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub separate_ima_log: Option<PathBuf>,
    /// DANGER: trust evidence from the simulated TEE whose ARK is FILE. Such verdicts say
    /// SIMULATED and prove nothing about hardware.
    #[arg(
        long,
        value_name = "FILE",
        requires = "bundle",
        help_heading = "Evidence bundle"
    )]
    pub insecure_sim_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// The evidence file: an SEV-SNP report, a TDX quote, an Azure HCL report, a TPM quote or an
    /// IMA log.
    pub file: PathBuf,
}

/// A problem with the command line or its inputs (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
