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

pub mod report;
mod runtime;
mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::report::{
    looks_like_hcl, HclHeader, HclReport, HwReport, ReportType, RuntimeDataHeader, TdReport,
    MAX_HCL_LEN,
};
pub use self::runtime::{base64url_decode, Jwk, RuntimeData, VmConfiguration, AK_KID, EK_KID};
pub use self::verify::{same_rsa_key, verify_snp, verify_tdx, TdQuote, VtpmQuote};
pub(crate) use self::verify::{verify_snp_with_ak, verify_tdx_with_ak};
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::structures::PublicKey;
use crate::tpm::Public;
use crate::verdict::Claims;

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

/// What the runtime data says.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeClaims {
    pub vm_unique_id: String,
    pub secure_boot: bool,
    pub tpm_enabled: bool,
    pub tpm_persisted: Option<bool>,
    pub console_enabled: Option<bool>,
    /// The last 64 bytes written to NV index 0x01400002 (hex), when present.
    pub user_data: Option<String>,
    /// The `kid` of every key (`HCLAkPub`, `HCLEkPub`).
    pub keys: Vec<String>,
    /// `rsa-2048`, …, when `HCLAkPub` is usable.
    pub ak_type: Option<String>,
    /// SHA-256 of the `TPMT_PUBLIC` this crate builds from `HCLAkPub` (what the TPM policy's
    /// `ak_sha256` pins when a quote is verified here). The vTPM's own `TPMT_PUBLIC` for the same
    /// key has other attributes, so its hash differs: compare keys with `ak_fingerprint`.
    pub ak_sha256: Option<String>,
    /// SHA-256 of the AK's RSA modulus (big-endian, no leading zeros): the same for every
    /// encoding of the key.
    pub ak_fingerprint: Option<String>,
    /// Every `vm-configuration` member as given (Microsoft adds some over time).
    pub vm_configuration: BTreeMap<String, serde_json::Value>,
}

impl RuntimeClaims {
    /// The claims of parsed runtime data.
    pub fn from_runtime_data(data: &RuntimeData) -> Self {
        let ak = data.ak_public().ok();
        Self {
            vm_unique_id: data
                .vm_configuration
                .vm_unique_id
                .clone(),
            secure_boot: data.vm_configuration.secure_boot,
            tpm_enabled: data.vm_configuration.tpm_enabled,
            tpm_persisted: data.vm_configuration.tpm_persisted,
            console_enabled: data.vm_configuration.console_enabled,
            user_data: data.user_data.clone(),
            keys: data.kids(),
            ak_type: ak.as_ref().map(Public::type_name),
            ak_sha256: ak
                .as_ref()
                .map(|k| hex(HashAlg::Sha256.digest(k.as_bytes()))),
            ak_fingerprint: ak.as_ref().and_then(ak_fingerprint),
            vm_configuration: data.vm_configuration_members.clone(),
        }
    }
}

/// SHA-256 of an RSA key's modulus without leading zeros (hex); `None` for an ECC key.
pub fn ak_fingerprint(key: &Public) -> Option<String> {
    match &key.key {
        PublicKey::Rsa { modulus, .. } => {
            let n = crate::tpm::structures::strip_leading_zeros(modulus);
            Some(hex(HashAlg::Sha256.digest(n)))
        }
        PublicKey::Ecc { .. } => None,
    }
}

impl AzureClaims {
    /// The claims a parsed report makes, before anything is verified.
    pub fn from_report(report: &HclReport<'_>) -> Self {
        let tee = match &report.hw_report {
            HwReport::Snp(snp) => Some(Claims::Snp(Box::new(crate::snp::SnpClaims::from_report(
                snp, None,
            )))),
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

/// Parse an HCL report and return what it claims, verifying nothing.
pub fn inspect(hcl: &[u8]) -> Result<AzureClaims, ParseError> {
    HclReport::parse(hcl).map(|r| AzureClaims::from_report(&r))
}

#[cfg(test)]
mod tests;
