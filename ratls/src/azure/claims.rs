//! What an Azure CVM's runtime data says: [`RuntimeClaims`], a model type that sits below the
//! verdict; the [`AzureClaims`](crate::azure::AzureClaims) that hold it live with
//! [`Claims`](crate::Claims).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::azure::runtime::{ak_fingerprint, RuntimeData};
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::structures::Public;

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
