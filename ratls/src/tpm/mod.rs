//! TPM 2.0 quotes: `TPMS_ATTEST` + `TPMT_SIGNATURE` + the attestation key's `TPMT_PUBLIC`.
//!
//! [`verify`] parses the three inputs in pure Rust ([`structures`]) and checks, each as a named
//! step of the [`Verdict`](crate::Verdict):
//!
//! | step | what |
//! | --- | --- |
//! | `tpm.parse` | the quote, the signature and the AK parse (a failure names the input) |
//! | `tpm.magic` | `TPM_GENERATED_VALUE` (0xff544347) |
//! | `tpm.type` | `TPM_ST_ATTEST_QUOTE` (0x8018) |
//! | `tpm.signature` | the signature over the `TPMS_ATTEST` bytes under the AK (RSASSA, RSAPSS with any salt length: recovered from the signature as EMSA-PSS-VERIFY allows, since TPMs sign with the largest salt that fits, ECDSA P-256/P-384), scheme consistent with the AK |
//! | `tpm.ak` | the AK is a restricted signing key with fixedTPM, fixedParent and sensitiveDataOrigin, and matches the policy's pin if any |
//! | `tpm.qualifying_data` | `extraData` equals the expected nonce |
//! | `tpm.pcr_selection` | the quoted banks/PCRs equal the policy's, and the presented PCR values cover exactly them |
//! | `tpm.pcr_digest` | `pcrDigest` equals the hash of the presented PCR values |
//! | `tpm.policy.pcrs` | PCR values the policy pins (only when it pins some) |
//! | `tpm.clock` | the clock, reset/restart counters and safe flag, recorded |
//!
//! The verifier is stateless: it reports `resetCount`/`restartCount` in the claims and leaves
//! "never go back" to the caller that keeps history. An AK that the policy does not pin passes
//! `tpm.ak` with a detail saying so: the caller must bind it to a TEE report (Azure, GCE) or pin
//! it, since otherwise the quote proves only possession of the presented key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::HashAlg;

pub(crate) mod claims;
pub mod pss;
pub mod structures;
mod verify;

pub use self::claims::{TpmClaims, TpmKeyClaims};
pub use self::structures::{Attest, Attested, PcrSelection, Public, QuoteInfo, Signature};
pub use self::verify::{inspect_attest, verify};

/// What the TPM verifier requires beyond a valid signature. The default pins nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmPolicy {
    /// The exact PCR selection a quote must have, by bank (`{"sha256": [0, 1, 7]}`); `None`
    /// accepts whatever the quote selected.
    pub pcr_selection: Option<BTreeMap<HashAlg, Vec<u8>>>,
    /// The AK's name (hex: nameAlg ‖ digest), e.g. `000bf175…`.
    pub ak_name: Option<String>,
    /// SHA-256 of the AK's `TPMT_PUBLIC` bytes (hex).
    pub ak_sha256: Option<String>,
    /// PCR values the quote must carry, by bank and index (hex).
    pub pcrs: BTreeMap<HashAlg, BTreeMap<u8, String>>,
}

impl TpmPolicy {
    /// Whether the policy pins the AK (by name or by SHA-256). Without a pin `tpm.ak` passes
    /// with a note, and the quote is only as good as the AK's binding to a TEE report.
    pub fn pins_ak(&self) -> bool {
        self.ak_name.is_some() || self.ak_sha256.is_some()
    }
}

/// PCR values presented with a quote, by bank and PCR index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrValues {
    pub banks: BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>,
}

/// Why a PCR values document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcrValuesError {
    #[error("PCR values: not JSON of the form {{\"sha256\": {{\"0\": \"hex\", …}}}}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("PCR values: unknown bank {0:?} (expected sha1, sha256, sha384 or sha512)")]
    UnknownBank(String),
    #[error("PCR values: bank {bank}: invalid PCR index {index:?} (expected 0..=63)")]
    Index { bank: HashAlg, index: String },
    #[error("PCR values: {bank} PCR {index}: invalid hex: {error}")]
    Hex {
        bank: HashAlg,
        index: u8,
        error: ::hex::FromHexError,
    },
    #[error("PCR values: {bank} PCR {index}: {len} bytes, a {bank} value is {expected}")]
    Length {
        bank: HashAlg,
        index: u8,
        len: usize,
        expected: usize,
    },
}

impl PcrValues {
    /// The highest PCR index a quote can select (`sizeofSelect` ≤ 8).
    pub const MAX_INDEX: u8 = 63;

    /// Read `{"sha256": {"0": "hex", "1": "hex", …}, "sha1": {…}}`.
    pub fn from_json(text: &str) -> Result<Self, PcrValuesError> {
        let doc: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(text)?;
        let mut out = Self::default();
        for (bank_name, values) in doc {
            let bank: HashAlg = bank_name
                .parse()
                .map_err(|_| PcrValuesError::UnknownBank(bank_name.clone()))?;
            for (index_text, value) in values {
                let index = index_text
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|i| *i <= Self::MAX_INDEX)
                    .ok_or_else(|| PcrValuesError::Index {
                        bank,
                        index: index_text.clone(),
                    })?;
                let bytes = crate::hexfmt::decode(&value).map_err(|error| PcrValuesError::Hex {
                    bank,
                    index,
                    error,
                })?;
                if bytes.len() != bank.digest_len() {
                    return Err(PcrValuesError::Length {
                        bank,
                        index,
                        len: bytes.len(),
                        expected: bank.digest_len(),
                    });
                }
                out.insert(bank, index, bytes);
            }
        }
        Ok(out)
    }

    /// Set one PCR value.
    pub fn insert(&mut self, bank: HashAlg, index: u8, value: Vec<u8>) {
        self.banks
            .entry(bank)
            .or_default()
            .insert(index, value);
    }

    /// One PCR value.
    pub fn value(&self, bank: HashAlg, index: u8) -> Option<&[u8]> {
        self.banks
            .get(&bank)
            .and_then(|b| b.get(&index))
            .map(Vec::as_slice)
    }

    /// As hex, by bank name (the claims form).
    pub fn to_hex_map(&self) -> BTreeMap<String, BTreeMap<u8, String>> {
        self.banks
            .iter()
            .map(|(bank, values)| {
                let values = values
                    .iter()
                    .map(|(i, v)| (*i, crate::hexfmt::hex(v)))
                    .collect();
                (bank.name().to_owned(), values)
            })
            .collect()
    }
}

/// The inputs of [`verify`]: the three byte strings a TPM quote consists of, the nonce the
/// verifier sent, and the PCR values the attester presented.
#[derive(Debug, Clone)]
pub struct QuoteInput<'a> {
    /// `TPMS_ATTEST` (or `TPM2B_ATTEST`).
    pub attest: &'a [u8],
    /// `TPMT_SIGNATURE`, or a raw RSASSA signature the size of the AK modulus (Azure vTPM).
    pub signature: &'a [u8],
    /// The AK's `TPMT_PUBLIC` (or `TPM2B_PUBLIC`).
    pub ak_public: &'a [u8],
    /// The expected `extraData`; `None` records it without checking freshness.
    pub nonce: Option<Vec<u8>>,
    /// The PCR values the quote is claimed to cover; `None` fails `tpm.pcr_digest`.
    pub pcrs: Option<PcrValues>,
}

#[cfg(test)]
mod tests;
