//! Claims: what the evidence *says*, by platform. Whether it can be believed is what a
//! [`Verdict`](crate::Verdict)'s checks decide.
//!
//! Claims are model types: they sit below the verdict that carries them and below every
//! verifier that fills them in. Each platform keeps its own claims next to it (`snp::claims`,
//! `tdx::claims`, `tpm::claims`, `ima::claims`, `eventlog::claims`, `azure::claims`,
//! `bundle::claims`, `foreign::claims`), and those modules name nothing above the wire types
//! they read. This module holds the [`Claims`] enum over them, and the three composite claims
//! that nest the claims of the evidence they combine ([`AzureClaims`], [`BundleClaims`],
//! [`ForeignClaims`]), which the enum and they name in a loop, so they live together.

use serde::Serialize;

use crate::azure::claims::RuntimeClaims;
use crate::azure::report::{HclReport, HwReport, ReportType};
use crate::bundle::claims::{BatchInfo, BindingLevel, Freshness, ImaDeferred};
use crate::digest::HashAlg;
use crate::eventlog::claims::EventLogClaims;
use crate::foreign::claims::{DiceClaims, ForeignBinding, ForeignKind};
use crate::hexfmt::hex;
use crate::ima::claims::ImaClaims;
use crate::snp::claims::SnpClaims;
use crate::tdx::claims::TdxClaims;
use crate::tpm::claims::TpmClaims;

/// Claims read from the evidence, by platform. Claims are what the evidence *says*; whether it
/// can be believed is what the checks decide.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Claims {
    Azure(Box<AzureClaims>),
    Bundle(Box<BundleClaims>),
    /// Evidence read from another project's RA-TLS certificate extension.
    Foreign(Box<ForeignClaims>),
    Ima(ImaClaims),
    None {},
    Snp(Box<SnpClaims>),
    Tdx(Box<TdxClaims>),
    Tpm(Box<TpmClaims>),
}

/// What an HCL report says. Hex is lower case.
#[derive(Debug, Clone, Serialize)]
pub struct AzureClaims {
    /// `snp` or `tdx`.
    pub report_type: ReportType,
    /// The HCL header's version.
    pub hcl_version: u32,
    /// The runtime-data header's version.
    pub runtime_data_version: u32,
    /// The hash of the runtime data in `report_data` (`sha256`, `sha384`, `sha512`).
    pub runtime_data_hash: HashAlg,
    /// That hash of the runtime data (hex).
    pub runtime_data_digest: String,
    /// What the runtime data says, when it parsed.
    pub runtime_data: Option<RuntimeClaims>,
    /// The hardware report's claims (SEV-SNP; for TDX those of the quote, when one was given).
    pub tee: Option<Claims>,
    /// The vTPM quote's claims, when one was given.
    pub tpm: Option<Claims>,
}

impl AzureClaims {
    /// The claims a parsed report makes, before anything is verified.
    pub fn from_report(report: &HclReport<'_>) -> Self {
        let tee = match &report.hw_report {
            HwReport::Snp(snp) => Some(Claims::Snp(Box::new(SnpClaims::from_report(snp, None)))),
            HwReport::Tdx(_) => None,
        };
        Self {
            report_type: report.report_type(),
            hcl_version: report.header.version,
            runtime_data_version: report.runtime_header.version,
            runtime_data_hash: report.runtime_header.hash,
            runtime_data_digest: hex(report.var_data_digest()),
            runtime_data: report
                .runtime_data()
                .ok()
                .as_ref()
                .map(RuntimeClaims::from_runtime_data),
            tee,
            tpm: None,
        }
    }
}

/// What a bundle verdict adds to the per-platform claims.
#[derive(Debug, Clone, Serialize)]
pub struct BundleClaims {
    pub tee_kind: Option<String>,
    pub tee: Option<Claims>,
    pub tpm: Option<Claims>,
    pub ima: Option<Claims>,
    pub role: String,
    pub spki_sha256: String,
    pub ak_sha256: Option<String>,
    pub issued_at: u64,
    pub binding: Option<BindingLevel>,
    pub freshness: Option<Freshness>,
    /// SHA-256 of the CMW bytes (the verdict-cache key).
    pub evidence_sha256: String,
    /// Set when IMA was not checked because the log travels separately and the verifier
    /// deferred it ([`Expectations::defer_ima_log`](crate::bundle::Expectations::defer_ima_log)): how much of the log the quote covers and
    /// its SHA-256 (lower-case hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ima_deferred: Option<ImaDeferred>,
    /// What the firmware event log says, when the bundle carried one that parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogClaims>,
    /// Set when the bundle carries only the event log's digest and no log was given: its
    /// length and SHA-256 (the log was not replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_log_deferred: Option<ImaDeferred>,
    /// Set when the evidence was batched: one TEE report and one TPM quote for `size`
    /// sessions, this one at `index`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
}

/// What a foreign-evidence verdict reports.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignClaims {
    pub kind: Option<ForeignKind>,
    pub oid: Option<String>,
    /// What the value turned out to hold, e.g. `bare SEV-SNP report`.
    pub format: Option<String>,
    /// The binding the evidence reached: the format's, or [`ForeignBinding::None`].
    pub binding: ForeignBinding,
    pub binding_label: &'static str,
    /// Whether a challenge the verifier chose was found in the evidence.
    pub challenge_checked: bool,
    /// The TEE report_data, hex.
    pub report_data: Option<String>,
    /// The DICE extension's tag and claims.
    pub dice: Option<DiceClaims>,
    /// The TEE verifier's own claims.
    pub tee: Option<Claims>,
}
