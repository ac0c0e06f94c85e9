//! What a TPM quote says: [`TpmClaims`], a model type that sits below the verdict (which
//! carries it).

use std::collections::BTreeMap;

use serde::Serialize;

/// What a TPM quote says (whether it can be believed is what the checks decide).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TpmClaims {
    /// `quote`, or another attestation type's name (`certify`, …) or id.
    pub attest_type: String,
    /// `qualifiedSigner` (hex).
    pub qualified_signer: String,
    /// `extraData` (hex): the nonce for a quote.
    pub extra_data: String,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    /// `firmwareVersion` as 16 hex digits.
    pub firmware_version: String,
    /// The selected PCRs by bank name.
    pub pcr_selection: BTreeMap<String, Vec<u8>>,
    /// `pcrDigest` (hex).
    pub pcr_digest: String,
    /// The AK's name and type and the signature scheme, when they parsed (serialized inline:
    /// `ak_name`, `ak_type`, `signature_scheme`). Boxed to keep [`crate::Claims`] small.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub key: Option<Box<TpmKeyClaims>>,
    /// The presented PCR values by bank name and index (hex), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<BTreeMap<String, BTreeMap<u8, String>>>,
}

/// The key-related part of [`TpmClaims`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TpmKeyClaims {
    /// The AK's name (hex), when the AK parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ak_name: Option<String>,
    /// `rsa-2048`, `ecc-p256`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ak_type: Option<String>,
    /// `rsassa-sha256`, `ecdsa-sha256`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
}
