//! The evidence bundle: one versioned CBOR structure holding whatever evidence the platform has,
//! wrapped as a CMW (draft-ietf-rats-msg-wrap, CBOR array form). The byte layout is documented in
//! `docs/wire-format.md`.
//!
//! - [`Bundle::to_cmw`] / [`Bundle::from_cmw`] encode and decode (size-capped, typed errors);
//! - [`attest::produce`](crate::attest::produce) (the attester side) builds one from the
//!   attesters' evidence;
//! - [`verify`](self::verify::verify) checks a bundle against a policy and what the verifier
//!   itself knows (TLS key, challenge, exporter, time).

mod cache;
pub(crate) mod claims;
mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub use self::cache::{BatchCache, BatchCacheRef, BATCH_CACHE_TTL_SECS};
pub use self::claims::{BatchInfo, BindingLevel, Freshness, ImaDeferred};
pub use self::verify::{
    verify, verify_bundle, CollateralSource, Expectations, Requirements, DEFAULT_MAX_AGE_SECS,
    DEFAULT_MAX_SKEW_SECS,
};
use crate::binding::{BatchClaims, BindingClaims, QualifyingData, ReportData};
pub use crate::claims::BundleClaims;
use crate::digest::HashAlg;
use crate::verdict::Platform;

/// The CMW media type of a bundle.
pub const MEDIA_TYPE: &str = "application/vnd.cosmian-vm.evidence-bundle+cbor; v=1";

/// The bundle format version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Largest encoded bundle we accept or produce (a fresh bundle may carry a long IMA log).
pub const MAX_BUNDLE_LEN: usize = 32 * 1024 * 1024;

/// Largest bundle that may go into a certificate extension: keeps RA-TLS certificates well under
/// rustls' 64 KiB handshake-message limit (the IMA log then travels outside, as a digest here).
pub const MAX_CERT_BUNDLE_LEN: usize = 48 * 1024;

/// Everything an attested endpoint presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub version: u32,
    pub tee: Option<TeeEvidence>,
    pub tpm: Option<TpmEvidence>,
    pub ima: Option<ImaEvidence>,
    pub binding: BindingClaims,
    /// The firmware's TCG event log of the boot (`binary_bios_measurements`), replayed against
    /// the quoted PCRs 0–9 (`boot.eventlog`). Optional and absent from the encoding when there
    /// is none, so bundles without it are byte-for-byte what they were before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogEvidence>,
    /// Batched fresh evidence: the TEE report and the TPM quote sign the root of a Merkle tree
    /// of sessions ([`BatchClaims`]) instead of `binding` itself,
    /// and this is `binding`'s place in that tree. Absent for evidence made for one session or
    /// one certificate (and then absent from the encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchProof>,
}

/// Where one session's binding claims sit in a batch (`docs/wire-format.md`, "Batches").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchProof {
    /// How many sessions the batch holds (signed, with the root).
    pub size: u64,
    /// This session's leaf index.
    pub index: u64,
    /// The tree's root, as signed (32 bytes).
    pub root: ByteBuf,
    /// The inclusion proof: sibling hashes of 32 bytes, leaf level first.
    pub path: Vec<ByteBuf>,
}

impl BatchProof {
    /// The largest path decoded: [`MAX_TREE_SIZE`](crate::merkle::MAX_TREE_SIZE) leaves need 16.
    pub const MAX_PATH: usize = 64;
}

/// TEE evidence, by platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum TeeEvidence {
    /// An SEV-SNP report (1184 bytes) and, when known, the VCEK or VLEK certificate and the
    /// ASK/ARK chain (DER or PEM).
    SevSnp {
        report: ByteBuf,
        vcek: Option<ByteBuf>,
        vlek: Option<ByteBuf>,
        chain: Option<ByteBuf>,
        /// AMD's CRL for the product (KDS), when the attester or the collateral plane has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crl: Option<ByteBuf>,
    },
    /// A TDX quote (v4/v5) and, when the attester has it, the PCS collateral (JSON).
    Tdx {
        quote: ByteBuf,
        collateral: Option<ByteBuf>,
    },
    /// Azure CVM on SEV-SNP: the HCL report (SNP report + runtime data carrying the vTPM AK).
    AzureSnp {
        hcl_report: ByteBuf,
        vcek: Option<ByteBuf>,
        chain: Option<ByteBuf>,
        /// AMD's CRL for the product (KDS), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crl: Option<ByteBuf>,
    },
    /// Azure CVM on TDX: the HCL report (TD report + runtime data); the quote comes from the host.
    AzureTdx {
        hcl_report: ByteBuf,
        quote: Option<ByteBuf>,
        collateral: Option<ByteBuf>,
    },
    /// The simulated TEE: an SEV-SNP-format report signed by a simulated VCEK whose chain ends at
    /// a simulated ARK. Trusted only when the verifier is given that ARK; verdicts say SIMULATED.
    Sim {
        report: ByteBuf,
        vcek: ByteBuf,
        chain: ByteBuf,
    },
}

impl TeeEvidence {
    /// The certificates an SEV-SNP report comes with (plain, simulated, or inside an Azure HCL
    /// report), as the SNP verifier takes them; `None` for TDX evidence.
    pub fn snp_certs(&self) -> Option<crate::snp::CertInput> {
        let owned = |b: &Option<ByteBuf>| b.as_ref().map(|b| b.to_vec());
        match self {
            Self::SevSnp {
                vcek,
                vlek,
                chain,
                crl,
                ..
            } => Some(crate::snp::CertInput {
                vcek: owned(vcek),
                vlek: owned(vlek),
                chain: owned(chain),
                crl: owned(crl),
            }),
            Self::AzureSnp {
                vcek, chain, crl, ..
            } => Some(crate::snp::CertInput {
                vcek: owned(vcek),
                vlek: None,
                chain: owned(chain),
                crl: owned(crl),
            }),
            Self::Sim { vcek, chain, .. } => Some(crate::snp::CertInput {
                vcek: Some(vcek.to_vec()),
                vlek: None,
                chain: Some(chain.to_vec()),
                crl: None,
            }),
            Self::Tdx { .. } | Self::AzureTdx { .. } => None,
        }
    }

    /// The platform name (`sev-snp`, `tdx`, `azure-snp`, `azure-tdx`, `sim`).
    pub fn kind(&self) -> Platform {
        match self {
            Self::SevSnp { .. } => Platform::SevSnp,
            Self::Tdx { .. } => Platform::Tdx,
            Self::AzureSnp { .. } => Platform::AzureSnp,
            Self::AzureTdx { .. } => Platform::AzureTdx,
            Self::Sim { .. } => Platform::Simulated,
        }
    }
}

/// A TPM quote with what is needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// `TPMS_ATTEST`.
    pub attest: ByteBuf,
    /// `TPMT_SIGNATURE` (or a raw RSASSA signature on Azure).
    pub signature: ByteBuf,
    /// The AK's `TPMT_PUBLIC`.
    pub ak_public: ByteBuf,
    /// The quoted PCR values by bank and index.
    pub pcrs: BTreeMap<HashAlg, BTreeMap<u8, ByteBuf>>,
    /// The EK certificate read from NV, when present (DER).
    pub ek_cert: Option<ByteBuf>,
}

impl TpmEvidence {
    /// The PCR values in the form the TPM verifier takes.
    pub fn pcr_values(&self) -> crate::tpm::PcrValues {
        let mut values = crate::tpm::PcrValues::default();
        for (bank, pcrs) in &self.pcrs {
            for (index, value) in pcrs {
                values.insert(*bank, *index, value.to_vec());
            }
        }
        values
    }
}

/// The IMA log, or (in certificates) how much of it the quote covered and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ImaEvidence {
    /// The binary measurement log.
    Log(ByteBuf),
    /// The log travels elsewhere: the first `len` bytes of it hash to `sha256`.
    Digest { len: u64, sha256: ByteBuf },
    /// A re-attestation's delta: the binary log entries from index `from` on (all PCRs), for a
    /// verifier that checked the entries before (`Expectations::ima_anchor`).
    Delta { from: u64, log: ByteBuf },
}

/// The firmware event log, or (in a certificate it would not fit in) its length and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum EventLogEvidence {
    /// The TCG PC Client event log (crypto-agile or legacy SHA-1).
    Log(ByteBuf),
    /// The log travels elsewhere: its `len` bytes hash to `sha256`.
    Digest { len: u64, sha256: ByteBuf },
}

impl EventLogEvidence {
    /// The digest form of `log`.
    pub fn digest_of(log: &[u8]) -> Self {
        Self::Digest {
            len: u64::try_from(log.len()).unwrap_or(u64::MAX),
            sha256: ByteBuf::from(HashAlg::Sha256.digest(log)),
        }
    }
}

/// Why a bundle could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("evidence bundle of {size} bytes exceeds the {limit}-byte cap")]
    TooLarge { size: usize, limit: usize },
    #[error("not a CMW: {0}")]
    NotCmw(String),
    #[error("unexpected CMW type {presented:?} (expected {expected:?})")]
    WrongType {
        expected: &'static str,
        presented: String,
    },
    #[error("malformed evidence bundle: {0}")]
    Malformed(String),
    #[error("unsupported evidence bundle version {presented} (supported: {supported})")]
    UnsupportedVersion { presented: u32, supported: u32 },
}

/// The CMW CBOR-array form: `[type, value]`.
#[derive(Serialize, Deserialize)]
struct Cmw(String, ByteBuf);

impl Bundle {
    /// CBOR encoding of the bundle itself.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Invariant: serialising plain structs, maps and byte strings into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    /// The bundle wrapped as a CMW: CBOR `[MEDIA_TYPE, bstr(bundle)]`.
    pub fn to_cmw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = ciborium::into_writer(
            &Cmw(MEDIA_TYPE.to_owned(), ByteBuf::from(self.to_cbor())),
            &mut out,
        );
        out
    }

    /// Decode a CMW-wrapped bundle, refusing anything over `limit` bytes.
    pub fn from_cmw(bytes: &[u8], limit: usize) -> Result<Self, BundleError> {
        if bytes.len() > limit {
            return Err(BundleError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let cmw: Cmw = decode_exact(bytes).map_err(BundleError::NotCmw)?;
        if cmw.0 != MEDIA_TYPE {
            return Err(BundleError::WrongType {
                expected: MEDIA_TYPE,
                presented: cmw.0,
            });
        }
        let bundle: Bundle = decode_exact(&cmw.1).map_err(BundleError::Malformed)?;
        if bundle.version != VERSION {
            return Err(BundleError::UnsupportedVersion {
                presented: bundle.version,
                supported: VERSION,
            });
        }
        Ok(bundle)
    }

    /// What this bundle says its TEE report (`report_data`) and TPM quote (`qualifyingData`)
    /// sign: the digests of its binding claims, or, for batched evidence, of the batch its
    /// proof names (its AK hash and issue time, the proof's tree size and root; a root that is
    /// not 32 bytes reads as zeros). Taken from the bundle, not checked: verification recomputes
    /// them from the verifier's own values. This is what an offline check of the quote or the
    /// report alone compares with (`cosmian_vm verify --save-evidence`).
    pub fn claimed_digests(&self) -> (ReportData, QualifyingData) {
        match &self.batch {
            None => (self.binding.report_data(), self.binding.qualifying_data()),
            Some(proof) => {
                let batch = BatchClaims {
                    ak_sha256: self.binding.ak_sha256,
                    issued_at: self.binding.issued_at,
                    tree_size: proof.size,
                    root: proof
                        .root
                        .as_slice()
                        .try_into()
                        .unwrap_or([0u8; 32]),
                };
                (batch.report_data(), batch.qualifying_data())
            }
        }
    }

    /// SHA-256 of the CMW encoding: the evidence digest verdict caches are keyed by.
    pub fn digest(&self) -> [u8; 32] {
        crate::digest::sha256(&self.to_cmw())
    }
}

/// Decode one CBOR item and reject trailing bytes.
fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader).map_err(|e| e.to_string())?;
    if reader.is_empty() {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes", reader.len()))
    }
}

#[cfg(test)]
mod tests;
