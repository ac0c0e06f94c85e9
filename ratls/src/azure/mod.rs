//! Azure confidential VMs: the HCL report (an SEV-SNP or TDX report whose `report_data` hashes
//! the paravisor's runtime data) and the vTPM attestation key it vouches for.
//!
//! On Azure the paravisor (HCL) runs below the guest at VMPL 0 and owns the hardware report's
//! `report_data`: it fills it with `H(runtime data)`, and the runtime data (JSON) carries the vTPM
//! attestation key (`HCLAkPub`). The chain of trust is therefore
//! hardware report → runtime-data hash → AK → vTPM quote, and the verifier's own nonce (or the
//! binding of a TLS key) goes into the quote's `qualifyingData`.
//!
//! - [`HclReport::parse`] reads the report (layout in [`report`]), [`RuntimeData`] its JSON;
//! - [`verify_snp`] / [`verify_tdx`] check it step by step; [`inspect`] only parses.
//!
//! | step | what it checks |
//! | --- | --- |
//! | `azure.parse` | the HCL report parses (see [`report`]: "HCLA", version 2, AK-certificate request, status 0, sizes consistent, reserved and padding zero) and carries the expected hardware report |
//! | `tee.*` (SEV-SNP) | every SEV-SNP step of [`snp::verify`](crate::snp::verify) on the embedded report, VMPL 0 by default (the paravisor requests it) |
//! | `azure.td_quote`, `tee.*` (TDX), `azure.td_report` | TDX: a quote over the TD report is required (fails closed without one); the quote is verified by [`tdx::verify_bytes`](crate::tdx::verify_bytes) and its TD report body must equal the HCL's TD report (report_data, MRTD, RTMRs, attributes, XFAM, MRSEAM, …) |
//! | `azure.runtime_data` | `report_data` = `H(var_data)` ‖ zeros (H = SHA-256, SHA-384 or SHA-512 as the header says), and the runtime data is JSON with the members this crate needs |
//! | `azure.ak` | the runtime data holds exactly one `HCLAkPub` RSA key, which becomes the TPM AK |
//! | `azure.policy.secure_boot` | the runtime data says secure boot is on (unless the policy allows it off) |
//! | `azure.policy.vm_unique_id` | the `vmUniqueId` the policy pins, when it pins one |
//! | `tpm.*` | when a vTPM quote is given: every step of [`tpm::verify`](crate::tpm::verify) with the HCL's AK (Azure signs with a raw RSASSA signature), `tpm.qualifying_data` against the expected nonce |
//!
//! Without a quote, a trusted verdict vouches for the hardware report and the AK only (which is
//! what the evidence bundle needs: it verifies the quote itself, and checks `binding.ak_tee`).

pub(crate) mod claims;
pub mod report;
mod runtime;
mod verify;

use serde::{Deserialize, Serialize};

pub use self::claims::RuntimeClaims;
pub use self::report::{
    looks_like_hcl, HclHeader, HclReport, HwReport, ReportType, RuntimeDataHeader, TdReport,
    MAX_HCL_LEN,
};
pub use self::runtime::{
    ak_fingerprint, base64url_decode, Jwk, RuntimeData, VmConfiguration, AK_KID, EK_KID,
};
pub use self::verify::{same_rsa_key, verify_snp, verify_tdx, TdQuote, VtpmQuote};
pub(crate) use self::verify::{verify_snp_with_ak, verify_tdx_with_ak};
pub use crate::claims::AzureClaims;
use crate::codec::ParseError;

/// What an Azure CVM's runtime data must say beyond being genuine. The default is strict: secure
/// boot on, any VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzurePolicy {
    /// Accept a VM whose runtime data says secure boot is off.
    pub allow_secure_boot_off: bool,
    /// The `vmUniqueId` the runtime data must carry (compared without regard to case).
    pub vm_unique_id: Option<String>,
}

/// Parse an HCL report and return what it claims, verifying nothing.
pub fn inspect(hcl: &[u8]) -> Result<AzureClaims, ParseError> {
    HclReport::parse(hcl).map(|r| AzureClaims::from_report(&r))
}

#[cfg(test)]
mod tests;
