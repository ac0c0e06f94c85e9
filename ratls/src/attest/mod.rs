//! The attester side: traits every evidence source implements, and the sources themselves behind
//! features that only add (`tpm`, `sim`, `sev-guest`, `azure`; configfs-tsm and securityfs readers
//! are plain file I/O and always present).
//!
//! | module | attester | feature |
//! | --- | --- | --- |
//! | [`tsm`] | `SnpTsm`, `TdxTsm`: SEV-SNP and TDX through configfs-tsm | none |
//! | [`snp_guest`] | `SevGuest`: SEV-SNP through `/dev/sev-guest` (the host's certificate table parser is always present) | `sev-guest` |
//! | `sim` | `SimTee`: the simulated TEE | `sim` |
//! | `tpm` | `TssTpm`: TPM quotes through tss-esapi | `tpm` |
//!
//! [`detect`] implements `tee = "auto"`; `config` (feature `tpm`) opens a whole machine's
//! attesters from configuration (`AttesterConfig`).
//!
//! Verification never depends on anything in this module being compiled in: the types here are
//! what an attester produces, the [`bundle`](crate::bundle) module is what travels, and the
//! verifiers only parse bytes.

use core::fmt;
use std::sync::Arc;

// One attester set-up from configuration (the agent's, the proxy's, certtool's).
mod batch;
#[cfg(feature = "tpm")]
pub mod config;
pub mod detect;
mod produce;
// The IMA simulator and a simulated boot on a (software) TPM, for the demo and the tests.
#[cfg(all(feature = "tpm", feature = "sim"))]
pub mod ima_sim;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snp_guest;
pub mod tsm;

pub use self::batch::{BatchStats, Batcher, DEFAULT_MAX_BATCH};
pub use self::produce::{produce, produce_batch, Sources, DEFAULT_PCRS};
use crate::binding::{QualifyingData, ReportData};
use crate::bundle::{TeeEvidence, TpmEvidence};
use crate::digest::HashAlg;

// The TPM attester through tss-esapi (feature `tpm`; links libtss2).
#[cfg(feature = "tpm")]
pub mod tpm;

// The Azure CVM attester: the HCL report from the vTPM (feature `azure`, implies `tpm`).
#[cfg(feature = "azure")]
pub mod azure;

/// Which TEE an attester speaks for: one of [`Platform::TEES`](crate::verdict::Platform::TEES) (the verdict's platform type,
/// so an attester's kind and a verdict's platform are one enum).
pub type TeeKind = crate::verdict::Platform;

/// Produces TEE evidence (an SEV-SNP report, a TDX quote, an Azure HCL report).
///
/// Implementations block (device ioctls, configfs, TPM NV reads): async callers run them with
/// `spawn_blocking` or on a dedicated thread.
pub trait TeeAttester: Send + Sync + fmt::Debug {
    fn kind(&self) -> TeeKind;

    /// Evidence whose 64-byte report data is `report_data`.
    ///
    /// `report_data` is a [`ReportData`]: a binding digest or a domain-separated raw nonce, never
    /// bytes a caller chose (see [`crate::binding`]).
    ///
    /// Platforms whose report data is owned by a paravisor (Azure) return
    /// `binds_report_data() == false` and ignore it; the binding then goes through the TPM
    /// quote's qualifying data.
    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError>;

    /// Whether [`attest`](Self::attest) puts `report_data` into the signed report.
    fn binds_report_data(&self) -> bool {
        true
    }
}

/// Produces TPM quotes with an attestation key.
///
/// Blocking, like [`TeeAttester`].
pub trait TpmAttester: Send + Sync + fmt::Debug {
    /// The AK's `TPMT_PUBLIC`.
    fn ak_public(&self) -> Result<Vec<u8>, AttestError>;

    /// Quote `pcrs` in each of `banks` with `qualifying_data` (a binding digest or a
    /// domain-separated raw nonce: [`crate::binding`]), returning the quote, its signature, the
    /// AK public area and the quoted PCR values.
    fn quote(
        &self,
        qualifying_data: &QualifyingData,
        banks: &[HashAlg],
        pcrs: &[u8],
    ) -> Result<TpmEvidence, AttestError>;
}

/// Reads the IMA measurement log (binary form).
pub trait ImaSource: Send + Sync + fmt::Debug {
    fn read_log(&self) -> Result<Vec<u8>, AttestError>;
}

/// The IMA log in a file: securityfs on a real machine
/// (`/sys/kernel/security/ima/binary_runtime_measurements`), or any file for hosts without IMA.
#[derive(Debug, Clone)]
pub struct ImaFile(pub std::path::PathBuf);

impl ImaFile {
    /// The kernel's binary log.
    pub const SECURITYFS: &'static str = "/sys/kernel/security/ima/binary_runtime_measurements";
}

impl ImaSource for ImaFile {
    fn read_log(&self) -> Result<Vec<u8>, AttestError> {
        std::fs::read(&self.0).map_err(|e| AttestError::Io {
            what: "IMA log",
            path: self.0.display().to_string(),
            error: Arc::new(e),
        })
    }
}

/// Reads the firmware's TCG event log (binary form) of this boot.
pub trait EventLogSource: Send + Sync + fmt::Debug {
    fn read_event_log(&self) -> Result<Vec<u8>, AttestError>;
}

/// The firmware event log in a file: securityfs on a real machine
/// (`/sys/kernel/security/tpm0/binary_bios_measurements`), or any file.
#[derive(Debug, Clone)]
pub struct EventLogFile(pub std::path::PathBuf);

impl EventLogFile {
    /// The kernel's export of the firmware event log.
    pub const SECURITYFS: &'static str = "/sys/kernel/security/tpm0/binary_bios_measurements";
}

impl EventLogSource for EventLogFile {
    fn read_event_log(&self) -> Result<Vec<u8>, AttestError> {
        std::fs::read(&self.0).map_err(|e| AttestError::Io {
            what: "firmware event log",
            path: self.0.display().to_string(),
            error: Arc::new(e),
        })
    }
}

/// Why an attester could not produce evidence.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The platform does not have this source (no device, no configfs entry, no TPM).
    #[error("{what} is not available on this machine: {why}")]
    Unavailable { what: &'static str, why: String },
    /// The firmware or host asked us to retry later (SEV-SNP guest requests are throttled).
    #[error("{what} is rate-limited; retry after {retry_after_ms} ms")]
    RateLimited {
        what: &'static str,
        retry_after_ms: u64,
    },
    /// Reading or writing a file failed.
    #[error("{what}: {path}: {error}")]
    Io {
        what: &'static str,
        path: String,
        error: Arc<std::io::Error>,
    },
    /// The device returned something we cannot use.
    #[error("{what} returned unusable data: {why}")]
    BadResponse { what: &'static str, why: String },
    /// A backend (TPM stack, TEE driver) failed; opaque on purpose.
    #[error("{what} failed: {error}")]
    Backend {
        what: &'static str,
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The finished bundle would exceed the size cap.
    #[error("evidence bundle of {size} bytes exceeds the {limit}-byte cap")]
    TooLarge { size: usize, limit: usize },
}

/// The evidence sources of one machine, owned and shareable across threads: what the RA-TLS
/// certificate issuer, the rotating resolver and the fresh-mode responder produce bundles from.
#[derive(Debug, Clone)]
pub struct Attester {
    pub tee: Option<Arc<dyn TeeAttester>>,
    pub tpm: Option<Arc<dyn TpmAttester>>,
    pub ima: Option<Arc<dyn ImaSource>>,
    /// The firmware event log, carried so the verifier can replay PCRs 0–9 event by event.
    pub event_log: Option<Arc<dyn EventLogSource>>,
    /// PCR banks to quote.
    pub banks: Vec<HashAlg>,
    /// PCRs to quote (boot PCRs 0–9 and IMA's PCR 10 by default).
    pub pcrs: Vec<u8>,
}

impl Attester {
    /// A machine with these sources, quoting PCRs 0–10 in the sha256 bank.
    pub fn new(
        tee: Option<Arc<dyn TeeAttester>>,
        tpm: Option<Arc<dyn TpmAttester>>,
        ima: Option<Arc<dyn ImaSource>>,
    ) -> Self {
        Self {
            tee,
            tpm,
            ima,
            event_log: None,
            banks: vec![HashAlg::Sha256],
            pcrs: DEFAULT_PCRS.to_vec(),
        }
    }

    /// The same machine, also carrying the firmware event log read from `source`.
    pub fn with_event_log(mut self, source: Arc<dyn EventLogSource>) -> Self {
        self.event_log = Some(source);
        self
    }

    /// Produce a bundle bound to `binding`, carrying the IMA log itself (`ima_inline`, fresh
    /// mode) or only its length and digest (certificates), and the firmware event log when
    /// there is a source (inline, or a digest when a certificate would not fit it). Blocking.
    pub fn produce(
        &self,
        binding: crate::binding::BindingClaims,
        ima_inline: bool,
    ) -> Result<crate::bundle::Bundle, AttestError> {
        produce(&self.sources(ima_inline), binding)
    }

    /// One report and one quote for all of `sessions` ([`produce_batch`]; fresh mode, logs
    /// inline), issued at `issued_at`. Endpoints go through a [`Batcher`], which decides who
    /// shares a batch; this is the production itself. Blocking.
    pub fn produce_batch(
        &self,
        sessions: Vec<crate::binding::BindingClaims>,
        issued_at: u64,
    ) -> Result<Vec<crate::bundle::Bundle>, AttestError> {
        produce_batch(&self.sources(true), sessions, issued_at)
    }

    /// These sources, borrowed for one production.
    pub fn sources(&self, ima_inline: bool) -> Sources<'_> {
        Sources {
            tee: self.tee.as_deref(),
            tpm: self.tpm.as_deref(),
            ima: self.ima.as_deref(),
            event_log: self.event_log.as_deref(),
            banks: &self.banks,
            pcrs: &self.pcrs,
            ima_inline,
        }
    }
}
