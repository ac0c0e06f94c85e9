//! One attester set-up from configuration, shared by the agent, the proxy and certtool
//! (feature `tpm`; the simulated TEE, `/dev/sev-guest` and Azure need their own features).
//!
//! [`AttesterConfig`] says what the machine should attest with; [`AttesterConfig::open`] opens
//! it and returns an [`OpenedMachine`]: the [`Attester`], the TPM (for health reports), the TEE
//! that was selected and how it is reached, and [`Note`]s the caller prints with its own prefix.
//!
//! # Which TEE
//!
//! | `tee` | attester |
//! | --- | --- |
//! | `auto` | [`detect`](super::detect): Azure vTPM, configfs-tsm, `/dev/sev-guest`, else an error (never `sim`) |
//! | `none` | no TEE: TPM-only evidence |
//! | `sev-snp` | configfs-tsm when it answers with provider `sev_guest`, else `/dev/sev-guest` (feature `sev-guest`) |
//! | `tdx` | configfs-tsm (there is no other TDX interface here) |
//! | `azure-snp`, `azure-tdx` | the HCL report in vTPM NV; the TPM quotes with the paravisor's AK |
//! | `sim` | the simulated TEE (feature `sim`; its evidence proves nothing) |
//!
//! # Which attestation key
//!
//! [`AttesterConfig::ak_handle`] `None` means [`DEFAULT_AK_HANDLE`] (0x81010002, created on first
//! use), except on Azure: there the quote must come from the paravisor's AK at
//! `attest::azure::AK_HANDLE` (0x81000003), the key the HCL report's runtime data vouches for,
//! so the verifier's `binding.ak_tee` holds. That key is provisioned by Azure: it is loaded,
//! never created, and its absence is [`ConfigError::AzureAkMissing`]. The paravisor owns the
//! report data there (`binds_report_data() == false`), so the binding claims reach the evidence
//! through the quote's qualifying data (see [`crate::attest::produce`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::detect::{detect_interface, DetectPaths, Detection, TeeInterface};
use super::snp_guest::SEV_GUEST_DEVICE;
use super::tpm::{ReconnectingTpm, AK_MISSING, DEFAULT_AK_HANDLE};
use super::tsm::{SnpTsm, TdxTsm, PROVIDER_SEV_GUEST};
use super::{
    AttestError, Attester, EventLogFile, ImaFile, ImaSource, TeeAttester, TeeKind, TpmAttester,
};

/// The TPM device used when none is configured.
pub const DEFAULT_TPM_DEVICE: &str = "/dev/tpmrm0";

/// The TCTI prefixes accepted as they are by [`tcti_of`].
pub const TCTI_PREFIXES: [&str; 4] = ["device:", "swtpm:", "mssim:", "tabrmd"];

/// The persistent handle of the paravisor's AK on Azure (`attest::azure::AK_HANDLE`).
pub const AZURE_AK_HANDLE: u32 = 0x8100_0003;

#[cfg(feature = "azure")]
const _: () = assert!(AZURE_AK_HANDLE == super::azure::AK_HANDLE);

/// `tee = ...`: detect, nothing, or a named TEE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeChoice {
    /// Detect ([`super::detect`]); the simulated TEE is never picked.
    Auto,
    /// No TEE attester: TPM-only evidence (or, for the proxy, no attesters at all).
    None,
    Kind(TeeKind),
}

impl TeeChoice {
    /// Every accepted spelling, for messages.
    pub const EXPECTED: &'static str = "auto, none, sev-snp, tdx, azure-snp, azure-tdx or sim";
}

impl fmt::Display for TeeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::None => f.write_str("none"),
            Self::Kind(kind) => f.write_str(kind.name()),
        }
    }
}

impl core::str::FromStr for TeeChoice {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            other => TeeKind::from_tee_name(other)
                .map(Self::Kind)
                .map_err(|_| ConfigError::UnknownTee {
                    given: other.to_owned(),
                }),
        }
    }
}

/// A TPM named by a device path or a TCTI string, as a TCTI string: `/dev/tpmrm0` becomes
/// `device:/dev/tpmrm0`; `device:…`, `swtpm:…`, `mssim:…` and `tabrmd…` stay as they are.
pub fn tcti_of(device: &str) -> Result<String, ConfigError> {
    if device.starts_with('/') {
        Ok(format!("device:{device}"))
    } else if TCTI_PREFIXES
        .iter()
        .any(|p| device.starts_with(p))
    {
        Ok(device.to_owned())
    } else {
        Err(ConfigError::BadTpm {
            given: device.to_owned(),
        })
    }
}

/// The simulated TEE's options (`tee = "sim"` only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// The directory holding the simulated CA (`ark.pem`, …), generated there when missing.
    pub dir: Option<PathBuf>,
    /// Reports carry the debug bit in the guest policy (negative tests only).
    pub debug: bool,
    /// Each report takes this long, as on hardware (`SimTee::with_latency`; tests and
    /// benchmarks of batching).
    pub latency: Option<std::time::Duration>,
}

/// What the machine attests with. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct AttesterConfig {
    pub tee: TeeChoice,
    /// The TPM's TCTI string ([`tcti_of`] maps a device path); `None`: no TPM (TEE-only
    /// evidence; not possible on Azure, whose report is read from the vTPM).
    pub tpm_tcti: Option<String>,
    /// The AK's persistent handle; `None`: [`DEFAULT_AK_HANDLE`], or [`AZURE_AK_HANDLE`] on Azure
    /// (see [`AttesterConfig::ak_handle_for`]).
    pub ak_handle: Option<u32>,
    /// The IMA log (binary); `None`: evidence without IMA, on purpose. A path that does not exist
    /// is a warning.
    pub ima_log: Option<PathBuf>,
    /// The firmware event log; `None`: not carried. A path that does not exist is a warning.
    pub event_log: Option<PathBuf>,
    pub sim: SimOptions,
    /// configfs-tsm's report directory, `/dev/sev-guest` and `/dev/tdx_guest` (overridable for
    /// tests), and the Azure probe (filled in by [`open`](Self::open) from `tpm_tcti` when
    /// unset). The `sev` crate always opens `/dev/sev-guest` itself: `sev_guest` steers only the
    /// decision.
    pub paths: DetectPaths,
}

impl AttesterConfig {
    /// `tee`, the TPM at [`DEFAULT_TPM_DEVICE`], the kernel's IMA log, no event log, the kernel's
    /// paths.
    pub fn new(tee: TeeChoice) -> Self {
        Self {
            tee,
            tpm_tcti: Some(format!("device:{DEFAULT_TPM_DEVICE}")),
            ak_handle: None,
            ima_log: Some(PathBuf::from(ImaFile::SECURITYFS)),
            event_log: None,
            sim: SimOptions::default(),
            paths: DetectPaths::default(),
        }
    }

    /// The AK handle for a machine whose TEE is `tee`, and whether the key must already exist
    /// (Azure's) rather than be created when missing.
    pub fn ak_handle_for(&self, tee: Option<TeeKind>) -> Result<(u32, AkOrigin), ConfigError> {
        match (tee, self.ak_handle) {
            (Some(TeeKind::AzureSnp | TeeKind::AzureTdx), None) => {
                Ok((AZURE_AK_HANDLE, AkOrigin::Platform))
            }
            (Some(kind @ (TeeKind::AzureSnp | TeeKind::AzureTdx)), Some(handle)) => {
                if handle == AZURE_AK_HANDLE {
                    Ok((handle, AkOrigin::Platform))
                } else {
                    Err(ConfigError::AzureAkHandle { tee: kind, handle })
                }
            }
            (_, Some(handle)) => Ok((handle, AkOrigin::Ours)),
            (_, None) => Ok((DEFAULT_AK_HANDLE, AkOrigin::Ours)),
        }
    }

    /// The detection paths with the Azure probe on `tpm_tcti` when none was given.
    fn probe_paths(&self) -> DetectPaths {
        let paths = self.paths.clone();
        if paths.azure_probe.is_some() {
            return paths;
        }
        #[cfg(feature = "azure")]
        if let Some(tcti) = self.tpm_tcti.clone() {
            return paths.with_azure_probe(move || {
                super::azure::AzureTee::open(&tcti)
                    .ok()
                    .map(|t| t.kind())
            });
        }
        paths
    }

    /// Which TEE, through which interface, and why: what [`open`](Self::open) opens. Touches
    /// nothing but the detection paths (and, for `auto`, the vTPM's NV through the Azure probe).
    pub fn select(&self) -> Result<Option<Selection>, ConfigError> {
        let kind = match self.tee {
            TeeChoice::None => return Ok(None),
            TeeChoice::Auto => {
                let found = detect_interface(&self.probe_paths()).map_err(|e| match e {
                    AttestError::Unavailable { why, .. } => ConfigError::NoTeeDetected { why },
                    other => ConfigError::NoTeeDetected {
                        why: other.to_string(),
                    },
                })?;
                return Ok(Some(Selection::detected(found)));
            }
            TeeChoice::Kind(kind) => kind,
        };
        let selection = |interface, why: String| {
            Ok(Some(Selection {
                kind,
                interface,
                why,
                detected: false,
            }))
        };
        match kind {
            TeeKind::Simulated => selection(TeeInterface::Simulated, "asked for".into()),
            TeeKind::AzureSnp | TeeKind::AzureTdx => selection(
                TeeInterface::AzureVtpm,
                "the HCL report in vTPM NV index 0x01400001".into(),
            ),
            TeeKind::Tdx => {
                let base = &self.paths.tsm_report;
                if base.is_dir() {
                    selection(
                        TeeInterface::ConfigfsTsm,
                        format!("configfs-tsm at {}", base.display()),
                    )
                } else {
                    Err(ConfigError::TdxNeedsConfigfs {
                        tsm_report: base.clone(),
                    })
                }
            }
            TeeKind::SevSnp => self.select_sev_snp(),
            // Not a TEE (`TeeChoice::Kind` holds one of `Platform::TEES` when parsed).
            other => Err(ConfigError::UnknownTee {
                given: other.name().to_owned(),
            }),
        }
    }

    /// `tee = "sev-snp"`: configfs-tsm when it answers with provider `sev_guest`, else
    /// `/dev/sev-guest` when it exists.
    fn select_sev_snp(&self) -> Result<Option<Selection>, ConfigError> {
        let base = &self.paths.tsm_report;
        let configfs = if base.is_dir() {
            match self.paths.configfs_tsm().provider() {
                Ok(p) if p == PROVIDER_SEV_GUEST => {
                    return Ok(Some(Selection {
                        kind: TeeKind::SevSnp,
                        interface: TeeInterface::ConfigfsTsm,
                        why: format!("configfs-tsm at {} (provider {p})", base.display()),
                        detected: false,
                    }))
                }
                Ok(p) => format!(
                    "configfs-tsm at {} has provider {p}, not {PROVIDER_SEV_GUEST}",
                    base.display()
                ),
                Err(e) => format!("configfs-tsm at {}: {e}", base.display()),
            }
        } else {
            format!("no configfs-tsm at {}", base.display())
        };
        if self.paths.sev_guest.exists() {
            Ok(Some(Selection {
                kind: TeeKind::SevSnp,
                interface: TeeInterface::SevGuestDevice,
                why: format!("{} ({configfs})", self.paths.sev_guest.display()),
                detected: false,
            }))
        } else {
            Err(ConfigError::SevSnpUnavailable {
                why: format!("{configfs}; no {}", self.paths.sev_guest.display()),
            })
        }
    }

    /// Open the TEE, the TPM, the IMA log and the event log. Blocking (TPM commands, configfs).
    pub fn open(&self) -> Result<OpenedMachine, ConfigError> {
        let selection = self.select()?;
        let mut notes = Vec::new();
        if let Some(s) = &selection {
            notes.push(Note::Info(s.describe()));
        }
        let kind = selection.as_ref().map(|s| s.kind);
        if kind == Some(TeeKind::Simulated) {
            if !cfg!(feature = "sim") {
                return Err(ConfigError::SimNotBuilt);
            }
            if self.sim.dir.is_none() {
                return Err(ConfigError::SimNeedsDir);
            }
        }
        let (ak_handle, origin) = self.ak_handle_for(kind)?;

        // The TPM first: on Azure the TEE reads its report through the same connection.
        let tpm = match &self.tpm_tcti {
            Some(tcti) => Some(Arc::new(self.open_tpm(tcti, ak_handle, origin)?)),
            None => None,
        };
        if let Some(tpm) = &tpm {
            notes.push(Note::Info(match origin {
                AkOrigin::Platform => format!(
                    "TPM on {}: quoting with the platform's attestation key at {ak_handle:#010x} \
                     (loaded; never created here)",
                    tpm.tcti()
                ),
                AkOrigin::Ours => format!(
                    "TPM on {}: attestation key at {ak_handle:#010x} {}",
                    tpm.tcti(),
                    if tpm.ak_created() {
                        "created (first start)"
                    } else {
                        "loaded"
                    }
                ),
            }));
        }
        let tee = match &selection {
            Some(s) => Some(self.open_tee(s, tpm.as_ref())?),
            None => None,
        };
        if let (Some(TeeKind::Simulated), Some(dir)) = (kind, &self.sim.dir) {
            notes.push(Note::Warning(format!(
                "!!! SIMULATED TEE !!! tee = sim: reports are signed by a key generated on this \
                 machine ({}) and prove NOTHING about the hardware. For tests only.{}",
                dir.join("ark.pem").display(),
                if self.sim.debug {
                    " Guest policy: DEBUG."
                } else {
                    ""
                }
            )));
        }
        if tee.is_none() && tpm.is_none() {
            return Err(ConfigError::NoAttester);
        }

        let ima: Option<Arc<dyn ImaSource>> = match &self.ima_log {
            Some(path) if path.exists() => Some(Arc::new(ImaFile(path.clone()))),
            Some(path) => {
                notes.push(Note::Warning(format!(
                    "no IMA log at {}: evidence will carry none, and verifiers that require IMA \
                     will refuse it",
                    path.display()
                )));
                None
            }
            None => None,
        };
        let mut attester = Attester::new(
            tee,
            tpm.clone()
                .map(|t| t as Arc<dyn TpmAttester>),
            ima,
        );
        match &self.event_log {
            Some(path) if path.exists() => {
                attester = attester.with_event_log(Arc::new(EventLogFile(path.clone())));
            }
            Some(path) => notes.push(Note::Warning(format!(
                "no firmware event log at {}: evidence will carry none (boot PCRs are still \
                 quoted; snapshots record no boot events)",
                path.display()
            ))),
            None => {}
        }
        Ok(OpenedMachine {
            attester: Arc::new(attester),
            tpm,
            tee: selection,
            ak_handle: self
                .tpm_tcti
                .as_ref()
                .map(|_| ak_handle),
            notes,
        })
    }

    fn open_tpm(
        &self,
        tcti: &str,
        ak_handle: u32,
        origin: AkOrigin,
    ) -> Result<ReconnectingTpm, ConfigError> {
        let tpm_error = |error| ConfigError::Tpm {
            tcti: tcti.to_owned(),
            ak_handle,
            error,
        };
        match origin {
            AkOrigin::Ours => ReconnectingTpm::open(tcti, ak_handle).map_err(tpm_error),
            AkOrigin::Platform => match ReconnectingTpm::open_existing(tcti, ak_handle) {
                Ok(tpm) => Ok(tpm),
                Err(AttestError::Unavailable { what, why }) if what == AK_MISSING => {
                    // Say first when this is not an Azure CVM at all.
                    #[cfg(feature = "azure")]
                    if let Err(error) = super::azure::AzureTee::open(tcti) {
                        return Err(self.azure_error(error));
                    }
                    Err(ConfigError::AzureAkMissing {
                        tcti: tcti.to_owned(),
                        handle: ak_handle,
                        why,
                    })
                }
                Err(error) => Err(tpm_error(error)),
            },
        }
    }

    #[cfg(feature = "azure")]
    fn azure_error(&self, error: AttestError) -> ConfigError {
        ConfigError::Tee {
            kind: match self.tee {
                TeeChoice::Kind(kind) => kind,
                _ => TeeKind::AzureSnp,
            },
            interface: TeeInterface::AzureVtpm,
            error,
        }
    }

    fn open_tee(
        &self,
        s: &Selection,
        tpm: Option<&Arc<ReconnectingTpm>>,
    ) -> Result<Arc<dyn TeeAttester>, ConfigError> {
        let kind = s.kind;
        let failed = |error| ConfigError::Tee {
            kind,
            interface: s.interface,
            error,
        };
        match s.interface {
            TeeInterface::ConfigfsTsm => Ok(match kind {
                TeeKind::Tdx => Arc::new(TdxTsm::new(self.paths.configfs_tsm())),
                _ => Arc::new(SnpTsm::new(self.paths.configfs_tsm())),
            }),
            TeeInterface::SevGuestDevice => {
                #[cfg(all(feature = "sev-guest", target_os = "linux"))]
                {
                    super::snp_guest::SevGuest::open()
                        .map(|t| Arc::new(t) as Arc<dyn TeeAttester>)
                        .map_err(failed)
                }
                #[cfg(not(all(feature = "sev-guest", target_os = "linux")))]
                {
                    let _ = failed;
                    Err(ConfigError::NotBuilt {
                        what: "the SEV-SNP guest device (/dev/sev-guest)",
                        feature: "sev-guest",
                    })
                }
            }
            TeeInterface::AzureVtpm => {
                let tpm = tpm.ok_or(ConfigError::AzureNeedsTpm { tee: kind })?;
                #[cfg(feature = "azure")]
                {
                    let tee = super::azure::AzureTee::open_shared(tpm.clone()).map_err(failed)?;
                    if tee.kind() != kind {
                        return Err(ConfigError::AzureKindMismatch {
                            asked: kind,
                            found: tee.kind(),
                        });
                    }
                    Ok(Arc::new(tee))
                }
                #[cfg(not(feature = "azure"))]
                {
                    let _ = (tpm, failed);
                    Err(ConfigError::NotBuilt {
                        what: "the Azure attester",
                        feature: "azure",
                    })
                }
            }
            TeeInterface::Simulated => {
                #[cfg(feature = "sim")]
                {
                    self.open_sim().map_err(failed)
                }
                #[cfg(not(feature = "sim"))]
                {
                    let _ = failed;
                    Err(ConfigError::SimNotBuilt)
                }
            }
        }
    }

    #[cfg(feature = "sim")]
    fn open_sim(&self) -> Result<Arc<dyn TeeAttester>, AttestError> {
        use super::sim::{SimCa, SimTee};
        let dir = self
            .sim
            .dir
            .as_deref()
            .ok_or_else(|| AttestError::Unavailable {
                what: "simulated TEE",
                why: "no directory for its CA".into(),
            })?;
        let ca = SimCa::load_or_generate(dir)?;
        let mut tee = SimTee::new(Arc::new(ca))?;
        if self.sim.debug {
            tee = tee.with_policy(SimTee::DEFAULT_POLICY | SimTee::POLICY_DEBUG);
        }
        if let Some(latency) = self.sim.latency {
            tee = tee.with_latency(latency);
        }
        Ok(Arc::new(tee))
    }
}

/// Whose attestation key the TPM quotes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AkOrigin {
    /// Ours: created at the handle when missing.
    Ours,
    /// The platform's (Azure's paravisor): it must exist; never created.
    Platform,
}

/// The TEE [`AttesterConfig::select`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub kind: TeeKind,
    pub interface: TeeInterface,
    /// Why (what was found, what was looked at).
    pub why: String,
    /// Found by `tee = "auto"`.
    pub detected: bool,
}

impl Selection {
    fn detected(d: Detection) -> Self {
        Self {
            kind: d.kind,
            interface: d.interface,
            why: d.why,
            detected: true,
        }
    }

    /// One line for the log: `TEE detected: …` or `TEE: sev-snp through …`.
    pub fn describe(&self) -> String {
        if self.interface == TeeInterface::Simulated {
            format!("TEE: {} (the simulated TEE, asked for)", self.kind)
        } else if self.detected {
            format!(
                "TEE detected: {} (through {})",
                self.why,
                self.interface.name()
            )
        } else {
            format!(
                "TEE: {} through {}: {}",
                self.kind,
                self.interface.name(),
                self.why
            )
        }
    }
}

/// Something the binary should tell its operator after opening ([`OpenedMachine::log_notes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    /// Print it as `WARNING: …`.
    Warning(String),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Info(text) => f.write_str(text),
            Self::Warning(text) => write!(f, "WARNING: {text}"),
        }
    }
}

/// What [`AttesterConfig::open`] opened.
#[derive(Debug)]
pub struct OpenedMachine {
    pub attester: Arc<Attester>,
    /// The TPM (also in `attester`), for its health; `None` without a TPM.
    pub tpm: Option<Arc<ReconnectingTpm>>,
    /// The TEE and how it is reached; `None` for `tee = "none"`.
    pub tee: Option<Selection>,
    /// The AK's handle, when there is a TPM.
    pub ak_handle: Option<u32>,
    /// What the binary should tell its operator, in order ([`OpenedMachine::log_notes`]).
    pub notes: Vec<Note>,
}

impl OpenedMachine {
    /// The TEE's kind, if any.
    pub fn tee_kind(&self) -> Option<TeeKind> {
        self.tee.as_ref().map(|s| s.kind)
    }

    /// Log the notes, in order: information at `info`, warnings at `warn` (their text still
    /// starts with `WARNING:`).
    pub fn log_notes(&self) {
        for note in &self.notes {
            match note {
                Note::Info(text) => tracing::info!("{text}"),
                Note::Warning(_) => tracing::warn!("{note}"),
            }
        }
    }
}

/// This machine's host name, the CN of its RA-TLS certificates: the kernel's, else
/// `/etc/hostname`, else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Why the attesters cannot be set up. Every message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("unknown TEE {given:?}: expected {}", TeeChoice::EXPECTED)]
    UnknownTee { given: String },
    #[error(
        "{given:?} is neither a device path (/dev/tpmrm0) nor a TCTI string (device:PATH, \
         swtpm:host=H,port=P, mssim:host=H,port=P, tabrmd)"
    )]
    BadTpm { given: String },
    #[error("TEE auto-detection found none it can use: {why}")]
    NoTeeDetected { why: String },
    #[error(
        "tee = sev-snp: neither interface is there ({why}); an SEV-SNP guest needs configfs-tsm \
         (Linux 6.7+, CONFIG_TSM_REPORTS) or the sev-guest driver ({SEV_GUEST_DEVICE})"
    )]
    SevSnpUnavailable { why: String },
    #[error(
        "tee = tdx: no configfs-tsm at {}: TDX quotes need configfs-tsm (Linux 6.7+, \
         CONFIG_TSM_REPORTS, with configfs mounted)", tsm_report.display()
    )]
    TdxNeedsConfigfs { tsm_report: PathBuf },
    #[error(
        "tee = sim: this build has no simulated TEE (built without the `sim` feature); name the \
         machine's real TEE"
    )]
    SimNotBuilt,
    #[error("tee = sim needs a directory for the simulated CA")]
    SimNeedsDir,
    #[error("{what} is not in this build (cargo feature `{feature}`)")]
    NotBuilt {
        what: &'static str,
        feature: &'static str,
    },
    #[error("tee = {tee}: the HCL report is read from the vTPM, so a TPM is needed")]
    AzureNeedsTpm { tee: TeeKind },
    #[error(
        "tee = {tee}: ak_handle {handle:#010x} cannot be used: on Azure the quote must come from \
         the paravisor's attestation key at {AZURE_AK_HANDLE:#010x} (the HCL report vouches for \
         it); leave ak_handle unset"
    )]
    AzureAkHandle { tee: TeeKind, handle: u32 },
    #[error(
        "the Azure paravisor's attestation key is missing: {why}. On an Azure confidential VM \
         the paravisor provisions it at {handle:#010x}; it is not created here, since a key of \
         ours would not be the one the HCL report vouches for (is this an Azure CVM, and is \
         {tcti} its vTPM?)"
    )]
    AzureAkMissing {
        tcti: String,
        handle: u32,
        why: String,
    },
    #[error("tee = {asked} but the vTPM's HCL report says {found}: use tee = {found} (or auto)")]
    AzureKindMismatch { asked: TeeKind, found: TeeKind },
    #[error("TEE {kind} through {}: {error}", interface.name())]
    Tee {
        kind: TeeKind,
        interface: TeeInterface,
        error: AttestError,
    },
    #[error("TPM on {tcti} (attestation key at {ak_handle:#010x}): {error}")]
    Tpm {
        tcti: String,
        ak_handle: u32,
        error: AttestError,
    },
    #[error("no attester: no TEE (tee = none) and no TPM leave nothing to attest with")]
    NoAttester,
}

#[cfg(test)]
mod tests;
