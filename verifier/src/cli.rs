//! Command-line definitions.

use std::fmt;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Exit code: every check passed.
pub const EXIT_TRUSTED: u8 = 0;
/// Exit code: a check failed (malformed evidence included).
pub const EXIT_REJECTED: u8 = 1;
/// Exit code: usage error, unreadable file, network error or a request the agent refused.
pub const EXIT_USAGE: u8 = 2;

const EXIT_CODES: &str = "Exit codes: 0 every check passed (verified); 1 a check failed (the \
                          evidence, a file, an application key or the certificate chain was \
                          rejected; malformed evidence included); 2 usage error, unreadable \
                          file, network or TLS error, or a request the agent refused.";

#[derive(Debug, Parser)]
#[command(
    name = "cosmian_vm",
    version,
    about = "Verify confidential VMs: TEE hardware, TPM quotes and IMA logs",
    long_about = "Verify confidential VMs: TEE hardware, TPM quotes and IMA logs.\n\n\
                  Talks to the VM's cosmian_vm_agent over one TLS connection per command: the \
                  agent's fresh evidence is bound to that very TLS session (exporter), verified, \
                  and only then are admin calls sent on the same connection.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts (before or after the subcommand).
#[derive(Debug, Args)]
pub struct Global {
    /// The agent: https://HOST or https://HOST:PORT (port 5555, the agent's default, when
    /// omitted).
    #[arg(long, global = true, value_name = "URL", env = "COSMIAN_VM_URL")]
    pub url: Option<String>,
    /// Accept an agent certificate without a WebPKI chain (a self-signed RA-TLS certificate).
    /// This only drops the "who" check: the fresh evidence must still bind the key.
    #[arg(long, global = true)]
    pub allow_insecure_tls: bool,
    /// Extra root certificates (PEM) for the WebPKI check, on top of Mozilla's.
    #[arg(
        long,
        global = true,
        value_name = "PEM",
        conflicts_with = "allow_insecure_tls"
    )]
    pub ca_cert: Option<PathBuf>,
    /// Print one JSON object instead of the human summary (and no progress display).
    #[arg(long, global = true)]
    pub json: bool,
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// DANGER: trust evidence from the simulated TEE whose ARK is FILE. Such verdicts say
    /// SIMULATED and prove nothing about hardware.
    #[arg(long, global = true, value_name = "FILE")]
    pub insecure_sim_root: Option<PathBuf>,
    /// The owner's client certificate (PEM) for admin calls; default
    /// ~/.config/cosmian_vm/owner.pem when present.
    #[arg(long, global = true, value_name = "FILE", requires = "owner_key")]
    pub owner_cert: Option<PathBuf>,
    /// The owner's private key (PEM); default ~/.config/cosmian_vm/owner.key when present.
    #[arg(long, global = true, value_name = "FILE", requires = "owner_cert")]
    pub owner_key: Option<PathBuf>,
    /// Seconds to wait for the network (connect, each request).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Where AMD/Intel collateral fetched for verification is cached (default
    /// ~/.cache/cosmian_vm/collateral). Items are kept until their nextUpdate/notAfter.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "COSMIAN_VM_COLLATERAL_DIR",
        help_heading = "Collateral"
    )]
    pub collateral_dir: Option<PathBuf>,
    /// Fetch no collateral: use only the cache and the files given (--vcek, --collateral ...);
    /// evidence lacking collateral then fails at collateral.vcek / collateral.tdx.
    #[arg(
        long,
        global = true,
        env = "COSMIAN_VM_OFFLINE",
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Collateral"
    )]
    pub offline: bool,
    /// AMD Key Distribution Service base URL (VCEKs, CRLs).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "COSMIAN_VM_KDS_URL",
        default_value = ratls::collateral::DEFAULT_KDS_URL,
        help_heading = "Collateral"
    )]
    pub kds_url: String,
    /// Intel PCS v4 or your PCCS base URL (TDX TCB info, QE identity, PCK CRL).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "COSMIAN_VM_PCS_URL",
        default_value = ratls::collateral::DEFAULT_PCS_URL,
        help_heading = "Collateral"
    )]
    pub pcs_url: String,
    /// Where Intel's SGX root CA CRL is fetched when the PCS does not serve it (a PCCS does, at
    /// /sgx/certification/v4/rootcacrl).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = ratls::collateral::DEFAULT_INTEL_ROOT_CRL_URL,
        help_heading = "Collateral"
    )]
    pub intel_root_crl_url: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check evidence files offline (no agent, no network).
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Verify the agent's evidence, then record the VM's approved state (TEE, boot PCRs, files)
    /// into a snapshot file.
    #[command(after_help = EXIT_CODES)]
    Snapshot(SnapshotArgs),
    /// Verify the VM against a snapshot: fresh evidence bound to this session, TEE, TPM, every
    /// file IMA measured since boot, and optionally that applications' TLS keys are the VM's.
    #[command(after_help = EXIT_CODES)]
    Verify(AgentVerifyArgs),
    /// Configure and control the application inside the VM (owner certificate required).
    #[command(subcommand)]
    App(AppCommand),
    /// Send secrets into the VM's application storage (owner certificate required).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Enrol an owner certificate with the agent (the first caller wins).
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Verify any RA-TLS endpoint by simply connecting to it.
    #[command(after_help = EXIT_CODES)]
    Connect(ConnectArgs),
    /// Search and check an audit log (`cosmian_vm_proxy --audit-log`): which sessions were
    /// accepted from which machines, TCBs and measurements.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the records matching every condition given (all records without any).
    #[command(
        after_help = "Exit codes: 0 at least one record matches; 1 none matches; 2 usage                             error or unreadable log. A broken hash chain is reported on stderr                             (`audit verify` fails on it)."
    )]
    Query(AuditQueryArgs),
    /// Check the log's hash chain and sequence: no record edited, removed or inserted.
    #[command(
        after_help = "Exit codes: 0 intact; 1 a record was edited, removed, inserted or                             does not parse; 2 unreadable log."
    )]
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub log: AuditLogArg,
    /// A head kept outside the directory, `SEQ:SHA256` (the proxy logs `audit log head: …`
    /// every minute): fails when that record is gone or differs, which is how records removed
    /// from the end show.
    #[arg(long, value_name = "SEQ:SHA256")]
    pub head: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditLogArg {
    /// The audit log directory (the proxy's --audit-log).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/cosmian_vm_proxy/audit"
    )]
    pub log: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    #[command(flatten)]
    pub log: AuditLogArg,
    /// Records at or after this time (a date such as 2026-11-01, UTC, or RFC 3339).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Records before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// SEV-SNP sessions whose reported TCB has some named component below its value, e.g.
    /// `bl=7,snp=15` (components: bl, tee, snp, ucode, fmc): the machines a TCB recall that
    /// these versions fix concerns.
    #[arg(long, value_name = "LIST")]
    pub tcb_below: Option<String>,
    /// The launch measurement (SEV-SNP MEASUREMENT, TDX MRTD), hex.
    #[arg(long, value_name = "HEX")]
    pub measurement: Option<String>,
    /// The SEV-SNP chip id, hex.
    #[arg(long, value_name = "HEX")]
    pub chip_id: Option<String>,
    /// TDX: an Intel advisory of the matched TCB level, e.g. INTEL-SA-00837.
    #[arg(long, value_name = "ID")]
    pub advisory: Option<String>,
    /// Only accepted or only rejected attestations.
    #[arg(long, value_name = "DECISION", value_parser = ["accepted", "rejected"])]
    pub decision: Option<String>,
    /// One connection, by the id the proxy gave it (PROXY v2 / X-Attestation-Connection-Id).
    #[arg(long, value_name = "ID")]
    pub connection_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Where to write the snapshot.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "cosmian_vm.snapshot"
    )]
    pub output: PathBuf,
    /// A JSON policy the evidence must also satisfy (e.g. a minimum TCB); it becomes the
    /// snapshot's base policy, under the values pinned from the evidence.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Milliseconds between progress polls of the agent's snapshot job.
    #[arg(long, value_name = "MS", default_value_t = 300, hide = true)]
    pub poll_ms: u64,
}

/// How an agent session is verified before anything is sent on it.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The snapshot the VM must match (from `cosmian_vm snapshot`).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// DANGER: send without verifying the agent's evidence first.
    #[arg(long, conflicts_with = "snapshot")]
    pub skip_verification: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["snapshot", "fleet"])))]
pub struct AgentVerifyArgs {
    /// The snapshot the VM must match (from `cosmian_vm snapshot`).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// An application endpoint HOST or HOST:PORT (port 443 by default) whose TLS key must be the
    /// VM's: the agent's key, or an RA-TLS certificate from the same TPM. Repeatable.
    #[arg(long, value_name = "HOST[:PORT]", conflicts_with = "fleet")]
    pub application: Vec<String>,
    /// Verify every VM of an inventory (TOML or JSON: `[[vm]]` entries with name, url,
    /// snapshot and optional applications; see docs/fleet.md) concurrently, print a table (or
    /// --json) and exit 1 if any VM failed. --url is ignored: each VM has its own.
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    pub fleet: Option<PathBuf>,
    /// How many VMs are verified at once [default: the inventory's, else 16].
    #[arg(long, value_name = "N", requires = "fleet", help_heading = "Fleet")]
    pub concurrency: Option<usize>,
    /// Seconds one VM's whole verification may take before it fails at `fleet.timeout`
    /// [default: the inventory's, else 60].
    #[arg(long, value_name = "SECS", requires = "fleet", help_heading = "Fleet")]
    pub vm_timeout: Option<u64>,
    /// Write Prometheus text-format metrics (per VM and for the fleet) to FILE after each round
    /// (atomically: a scraper's textfile collector never reads half a file).
    #[arg(long, value_name = "FILE", requires = "fleet", help_heading = "Fleet")]
    pub metrics: Option<PathBuf>,
    /// Verify again every SECS seconds until interrupted (SIGINT/SIGTERM), logging each VM whose
    /// result changed; the exit code is the last round's.
    #[arg(long, value_name = "SECS", requires = "fleet", help_heading = "Fleet")]
    pub watch: Option<u64>,
    /// Also write the fresh evidence to DIR: the bundle (evidence.cmw) and its parts as the
    /// files `cosmian_vm evidence verify` takes (TPM quote, signature, AK, PCRs, nonce, EK
    /// certificate, IMA log, event log, TEE report), whatever the verdict. With --fleet, each
    /// VM's in DIR/NAME.
    #[arg(long, value_name = "DIR")]
    pub save_evidence: Option<PathBuf>,
    /// Keep no state between verifications: neither read nor write
    /// `<snapshot>.last-verify.json` (the TPM counters of the last verified quote, used to
    /// report reboots and to refuse a TPM whose counters went back: step `tpm.counters`). With
    /// --fleet the state is per VM, in `<inventory>.state/NAME.last-verify.json`.
    #[arg(long)]
    pub no_state: bool,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Upload the application's configuration file; the agent writes it and restarts the app.
    Init(AppInitArgs),
    /// Start the application's service.
    Start(SessionArgs),
    /// Stop the application's service.
    Stop(SessionArgs),
    /// Restart the application's service.
    Restart(SessionArgs),
}

#[derive(Debug, Args)]
pub struct AppInitArgs {
    /// The application's configuration file (any bytes).
    #[arg(long, value_name = "FILE")]
    pub conf: PathBuf,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write FILE's bytes as secret NAME (mode 0600 in the VM's secrets directory).
    Put(SecretPutArgs),
}

#[derive(Debug, Args)]
pub struct SecretPutArgs {
    /// The secret's name: 1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.'.
    pub name: String,
    /// The file holding the secret.
    pub file: PathBuf,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Create the owner key and certificate (unless they exist) and enrol them with the agent.
    Enroll(OwnerEnrollArgs),
}

#[derive(Debug, Args)]
pub struct OwnerEnrollArgs {
    /// The one-time enrolment token the agent printed at its first start (journal, console,
    /// or `<data_dir>/enrolment-token` in the VM). Sent only after the agent's evidence verified.
    #[arg(long, value_name = "TOKEN", env = "COSMIAN_VM_ENROLL_TOKEN")]
    pub token: Option<String>,
    /// Where to keep owner.pem and owner.key (default ~/.config/cosmian_vm).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A JSON policy the evidence must satisfy when no --snapshot is given.
    #[arg(long, value_name = "FILE", conflicts_with = "snapshot")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The endpoint, HOST:PORT (port 443 when omitted).
    #[arg(value_name = "HOST:PORT")]
    pub target: String,
    /// A JSON policy the evidence must satisfy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The role the endpoint's evidence must be bound to.
    #[arg(long, value_name = "ROLE", default_value = "server")]
    pub role: String,
    /// Negotiate ALPN cosmian-attest/1 and ask for fresh evidence bound to this session,
    /// instead of checking the evidence in the certificate.
    #[arg(long)]
    pub fresh: bool,
    /// Oldest certificate evidence accepted, in seconds (certificate mode).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 86_400,
        conflicts_with = "fresh"
    )]
    pub max_age: u64,
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
    /// Verify as of this time (RFC 3339, e.g. 2025-07-01T00:00:00Z) instead of now; old
    /// evidence needs it because certificates and collateral expire.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// A JSON policy with optional sections "snp", "tdx", "tpm", "ima" (unknown keys rejected).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The report data an SEV-SNP report or TDX quote must carry (64 bytes, hex): the value you
    /// asked the TEE for, which is what makes the evidence fresh.
    #[arg(long, value_name = "HEX")]
    pub report_data: Option<String>,
    /// Accept SEV-SNP/TDX/TPM evidence without --report-data / --nonce: the `freshness` step
    /// then passes as WAIVED instead of failing (the evidence may be a replay of an old one).
    #[arg(long)]
    pub no_freshness: bool,

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
    /// AMD's CRL for the report's product (DER or PEM, as KDS serves
    /// /vcek/v1/{product}/crl); fetched from --kds-url when not given.
    #[arg(
        long,
        value_name = "FILE",
        requires = "snp_source",
        help_heading = "SEV-SNP"
    )]
    pub crl: Option<PathBuf>,
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

    /// An Intel TDX quote (v4 or v5). Its collateral is --collateral, else fetched from
    /// --pcs-url (or the cache).
    #[arg(long, value_name = "FILE", help_heading = "TDX")]
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

    /// The firmware's TCG event log (binary_bios_measurements), replayed against the quoted
    /// PCRs 0-9 of --tpm-quote/--pcrs (step boot.eventlog).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tpm_quote",
        conflicts_with = "azure_hcl",
        help_heading = "TPM"
    )]
    pub event_log: Option<PathBuf>,

    /// A Linux IMA measurement log (binary_runtime_measurements or ASCII). With --tpm-quote it
    /// is anchored in the quoted PCR 10 (sha256 bank, else sha1) and its boot_aggregate is
    /// recomputed from the quoted PCRs 0-9 (0-7 for sha1); either fails when --pcrs lacks those
    /// PCRs. Without --tpm-quote boot_aggregate is not anchored (only --pcr10 anchors the
    /// replay).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["tdx_quote", "azure_hcl"],
        help_heading = "IMA"
    )]
    pub ima_log: Option<PathBuf>,
    /// The quoted PCR 10 value the log must replay to (some prefix of it); with --tpm-quote the
    /// quote's own PCR 10 is used instead.
    #[arg(
        long,
        value_name = "HEX",
        requires = "ima_log",
        conflicts_with = "tpm_quote",
        help_heading = "IMA"
    )]
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
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The evidence file: an SEV-SNP report, a TDX quote, an Azure HCL report, a TPM quote or an
    /// IMA log.
    pub file: PathBuf,
}

impl Cli {
    /// The combinations clap cannot see (a global flag against a subcommand's), one precise
    /// message each.
    pub fn validate(&self) -> Result<(), UsageError> {
        if let Command::Owner(OwnerCommand::Enroll(a)) = &self.command {
            if a.out.is_some() && self.global.owner_cert.is_some() {
                return Err(UsageError(
                    "owner enroll: --out DIR creates (or reuses) the identity in DIR;                      --owner-cert/--owner-key enrol an existing one: give one or the other"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A problem with the command line, its inputs or the network (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let cli = Cli::try_parse_from(std::iter::once("cosmian_vm").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.validate().map_err(|e| e.0)?;
        Ok(cli)
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = parse(&[
            "--url",
            "https://vm:5555",
            "--allow-insecure-tls",
            "snapshot",
        ])
        .unwrap();
        assert!(a.global.allow_insecure_tls);
        assert_eq!(a.global.url.as_deref(), Some("https://vm:5555"));
        let Command::Snapshot(s) = &a.command else {
            panic!("not snapshot")
        };
        assert_eq!(s.output, PathBuf::from("cosmian_vm.snapshot"));
        let a = parse(&["verify", "--snapshot", "s", "--json", "--url", "https://vm"]).unwrap();
        assert!(a.global.json);
        let Command::Verify(v) = &a.command else {
            panic!("not verify")
        };
        assert!(v.application.is_empty());
        let a = parse(&[
            "verify",
            "--snapshot",
            "s",
            "--application",
            "a:1",
            "--application",
            "b",
        ])
        .unwrap();
        let Command::Verify(v) = &a.command else {
            panic!("not verify")
        };
        assert_eq!(v.application, ["a:1", "b"]);
        // The offline commands keep their flags, --json included.
        let a = parse(&["evidence", "inspect", "--json", "f"]).unwrap();
        assert!(a.global.json);
    }

    #[test]
    fn conflicting_or_incomplete_flags_are_refused() {
        for (args, why) in [
            (&["verify"][..], "verify needs --snapshot"),
            (
                &["--owner-cert", "c", "app", "start", "--snapshot", "s"][..],
                "cert without key",
            ),
            (
                &["--owner-key", "k", "app", "start", "--snapshot", "s"][..],
                "key without cert",
            ),
            (
                &["--allow-insecure-tls", "--ca-cert", "ca", "snapshot"][..],
                "--ca-cert means WebPKI, --allow-insecure-tls none",
            ),
            (
                &["app", "restart", "--snapshot", "s", "--skip-verification"][..],
                "verify or skip, not both",
            ),
            (
                &["app", "init", "--snapshot", "s"][..],
                "app init needs --conf",
            ),
            (&["secret", "put", "name"][..], "secret put needs a file"),
            (
                &[
                    "--owner-cert",
                    "c",
                    "--owner-key",
                    "k",
                    "owner",
                    "enroll",
                    "--out",
                    "d",
                ][..],
                "--out generates a new identity; --owner-cert gives one",
            ),
            (
                &["owner", "enroll", "--policy", "p", "--snapshot", "s"][..],
                "the snapshot is the policy",
            ),
            (
                &["connect", "h:1", "--fresh", "--max-age", "5"][..],
                "max age is for certificates",
            ),
            (&["connect"][..], "connect needs a target"),
            (
                &["snapshot", "--application", "a"][..],
                "--application is for verify",
            ),
        ] {
            assert!(parse(args).is_err(), "accepted {args:?} ({why})");
        }
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("Exit codes: 0"), "{help}");
        for sub in ["snapshot", "verify", "connect"] {
            let mut cmd = Cli::command();
            let help = cmd
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("Exit codes: 0"), "{sub}: {help}");
        }
    }
}
