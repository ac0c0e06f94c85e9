//! `tee = "auto"`: find out which TEE this machine has, and say why.
//!
//! Looked at in this order (the first that answers wins):
//!
//! 1. Azure confidential VMs: the vTPM holds the paravisor's HCL report at NV index
//!    [`AZURE_HCL_NV_INDEX`]. It comes first because on Azure the paravisor owns the report
//!    data, so the guest's own SEV-SNP/TDX interfaces (when visible at all) cannot bind our
//!    claims. Reading NV needs the TPM stack, so the caller passes a probe
//!    ([`DetectPaths::azure_probe`]); without one this step is skipped and says so.
//! 2. configfs-tsm ([`DEFAULT_REPORT_DIR`]): a probe entry is created, its `provider` read
//!    (`sev_guest` → SEV-SNP, `tdx_guest` → TDX) and the entry removed.
//! 3. `/dev/sev-guest` → SEV-SNP through the device (attester `SevGuest`, feature `sev-guest`).
//! 4. `/dev/tdx_guest` alone is reported as an error: TDX quotes need configfs-tsm.
//!
//! The simulated TEE is never picked: it has to be asked for.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::snp_guest::SEV_GUEST_DEVICE;
use super::tsm::{
    ConfigfsKernel, ConfigfsTsm, DEFAULT_REPORT_DIR, PROVIDER_SEV_GUEST, PROVIDER_TDX_GUEST,
};
use super::{AttestError, TeeKind};

/// Azure's vTPM NV index holding the HCL report.
pub const AZURE_HCL_NV_INDEX: u32 = 0x0140_0001;

/// The TDX guest device.
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Answers whether the vTPM holds an HCL report at [`AZURE_HCL_NV_INDEX`]: `Some(AzureSnp)` or
/// `Some(AzureTdx)` (from the HCL report's type) when it does, `None` when it does not.
pub type AzureProbe = dyn Fn() -> Option<TeeKind> + Send + Sync;

/// Where [`detect`] looks; every path is configurable so tests can point it at fixtures.
#[derive(Clone)]
pub struct DetectPaths {
    /// configfs-tsm's report directory ([`DEFAULT_REPORT_DIR`]).
    pub tsm_report: PathBuf,
    /// The emulated kernel for a `tsm_report` fixture (see [`ConfigfsTsm::with_kernel`]).
    pub tsm_kernel: Option<Arc<dyn ConfigfsKernel>>,
    /// `/dev/sev-guest`.
    pub sev_guest: PathBuf,
    /// `/dev/tdx_guest`.
    pub tdx_guest: PathBuf,
    /// Asks the vTPM for Azure's HCL report; `None` skips the Azure step.
    pub azure_probe: Option<Arc<AzureProbe>>,
}

impl Default for DetectPaths {
    fn default() -> Self {
        Self {
            tsm_report: PathBuf::from(DEFAULT_REPORT_DIR),
            tsm_kernel: None,
            sev_guest: PathBuf::from(SEV_GUEST_DEVICE),
            tdx_guest: PathBuf::from(TDX_GUEST_DEVICE),
            azure_probe: None,
        }
    }
}

impl fmt::Debug for DetectPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectPaths")
            .field("tsm_report", &self.tsm_report)
            .field("tsm_kernel", &self.tsm_kernel)
            .field("sev_guest", &self.sev_guest)
            .field("tdx_guest", &self.tdx_guest)
            .field("azure_probe", &self.azure_probe.is_some())
            .finish()
    }
}

impl DetectPaths {
    /// The standard paths under `root` (`root/sys/kernel/config/tsm/report`,
    /// `root/dev/sev-guest`, `root/dev/tdx_guest`), for fixtures.
    pub fn under(root: &Path) -> Self {
        let rel = |p: &str| root.join(p.trim_start_matches('/'));
        Self {
            tsm_report: rel(DEFAULT_REPORT_DIR),
            sev_guest: rel(SEV_GUEST_DEVICE),
            tdx_guest: rel(TDX_GUEST_DEVICE),
            ..Self::default()
        }
    }

    pub fn with_tsm_kernel(mut self, kernel: Arc<dyn ConfigfsKernel>) -> Self {
        self.tsm_kernel = Some(kernel);
        self
    }

    pub fn with_azure_probe(
        mut self,
        probe: impl Fn() -> Option<TeeKind> + Send + Sync + 'static,
    ) -> Self {
        self.azure_probe = Some(Arc::new(probe));
        self
    }

    /// The configfs-tsm interface these paths name.
    pub fn configfs_tsm(&self) -> ConfigfsTsm {
        let tsm = ConfigfsTsm::new(self.tsm_report.clone());
        match &self.tsm_kernel {
            Some(kernel) => tsm.with_kernel(kernel.clone()),
            None => tsm,
        }
    }
}

/// How the detected TEE is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeInterface {
    /// configfs-tsm: `SnpTsm` or `TdxTsm`.
    ConfigfsTsm,
    /// `/dev/sev-guest`: `SevGuest` (feature `sev-guest`).
    SevGuestDevice,
    /// The vTPM's HCL report (the Azure attester).
    AzureVtpm,
    /// The simulated TEE (`SimTee`, feature `sim`): only when asked for, never detected.
    Simulated,
}

impl TeeInterface {
    /// How the interface is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConfigfsTsm => "configfs-tsm",
            Self::SevGuestDevice => "/dev/sev-guest",
            Self::AzureVtpm => "the Azure vTPM (HCL report in NV)",
            Self::Simulated => "the simulated TEE",
        }
    }
}

/// What [`detect_interface`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: TeeKind,
    pub interface: TeeInterface,
    /// One sentence for the log: what was found, and what was looked at before.
    pub why: String,
}

/// The TEE this machine has and why it was picked (for the agent's log).
pub fn detect(paths: &DetectPaths) -> Result<(TeeKind, String), AttestError> {
    detect_interface(paths).map(|d| (d.kind, d.why))
}

/// [`detect`], also saying through which interface the TEE is reached.
pub fn detect_interface(paths: &DetectPaths) -> Result<Detection, AttestError> {
    let mut looked = Vec::new();

    match &paths.azure_probe {
        Some(probe) => match probe() {
            Some(kind @ (TeeKind::AzureSnp | TeeKind::AzureTdx)) => {
                return Ok(Detection {
                    kind,
                    interface: TeeInterface::AzureVtpm,
                    why: format!(
                        "{kind}: the vTPM holds Azure's HCL report at NV index \
                         {AZURE_HCL_NV_INDEX:#010x} (an Azure confidential VM, whose paravisor \
                         owns the report data)"
                    ),
                })
            }
            Some(other) => looked.push(format!(
                "the Azure probe answered {other}, which is not an Azure TEE (ignored)"
            )),
            None => looked.push(format!(
                "no HCL report at vTPM NV index {AZURE_HCL_NV_INDEX:#010x}"
            )),
        },
        None => looked.push(format!(
            "vTPM NV index {AZURE_HCL_NV_INDEX:#010x} not probed (no TPM probe given)"
        )),
    }

    let base = &paths.tsm_report;
    if base.is_dir() {
        match paths.configfs_tsm().provider() {
            Ok(provider) if provider == PROVIDER_SEV_GUEST || provider == PROVIDER_TDX_GUEST => {
                let kind = if provider == PROVIDER_SEV_GUEST {
                    TeeKind::SevSnp
                } else {
                    TeeKind::Tdx
                };
                return Ok(Detection {
                    kind,
                    interface: TeeInterface::ConfigfsTsm,
                    why: format!(
                        "{kind}: configfs-tsm at {} has provider {provider} ({})",
                        base.display(),
                        looked.join("; ")
                    ),
                });
            }
            Ok(provider) => looked.push(format!(
                "configfs-tsm at {} has provider {provider}, which this crate does not speak",
                base.display()
            )),
            Err(e) => looked.push(format!("configfs-tsm at {}: {e}", base.display())),
        }
    } else {
        looked.push(format!("no configfs-tsm at {}", base.display()));
    }

    if paths.sev_guest.exists() {
        let feature = if cfg!(feature = "sev-guest") {
            ""
        } else {
            "; this build lacks the `sev-guest` feature its attester needs"
        };
        return Ok(Detection {
            kind: TeeKind::SevSnp,
            interface: TeeInterface::SevGuestDevice,
            why: format!(
                "sev-snp: {} exists ({}){feature}",
                paths.sev_guest.display(),
                looked.join("; ")
            ),
        });
    }
    looked.push(format!("no {}", paths.sev_guest.display()));

    if paths.tdx_guest.exists() {
        return Err(AttestError::Unavailable {
            what: "TEE auto-detection",
            why: format!(
                "{} exists but TDX quotes need configfs-tsm (Linux 6.7+, CONFIG_TSM_REPORTS) \
                 ({})",
                paths.tdx_guest.display(),
                looked.join("; ")
            ),
        });
    }
    looked.push(format!("no {}", paths.tdx_guest.display()));

    Err(AttestError::Unavailable {
        what: "TEE auto-detection",
        why: format!(
            "no TEE found: {}; the simulated TEE is never picked automatically (ask for \
             tee = \"sim\")",
            looked.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests;
