//! What a foreign-evidence verdict reports: which convention the extension follows, the binding
//! it reaches and what a DICE extension claims. Model types that sit below the verdict; the
//! [`ForeignClaims`](crate::foreign::ForeignClaims) that hold them live with
//! [`Claims`](crate::Claims).

use std::collections::BTreeMap;

use serde::Serialize;

/// Cosmian's extension for a raw Intel SGX quote.
pub const COSMIAN_SGX_OID: &str = "1.2.840.113741.1337.6";
/// Cosmian's extension for an AMD SEV-SNP report (bare, or with its certificate table).
pub const COSMIAN_SEV_OID: &str = "1.2.840.113741.1337.7";
/// Cosmian's extension for a raw Intel TDX quote.
pub const COSMIAN_TDX_OID: &str = "1.2.840.113741.1337.8";
/// tcg-dice-tagged-evidence (TCG DICE Attestation Architecture), as Interoperable RA-TLS uses it.
pub const TCG_DICE_TAGGED_EVIDENCE_OID: &str = "2.23.133.5.4.9";

/// Which foreign convention an extension follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForeignKind {
    /// Cosmian 1.2.840.113741.1337.7: an SEV-SNP report.
    CosmianSevSnp,
    /// Cosmian 1.2.840.113741.1337.6: an SGX quote.
    CosmianSgx,
    /// Cosmian 1.2.840.113741.1337.8: a TDX quote.
    CosmianTdx,
    /// TCG DICE tagged evidence 2.23.133.5.4.9.
    TcgDiceTagged,
}

impl ForeignKind {
    /// Every kind, in the order [`find`](crate::foreign::find) reports them.
    pub const ALL: [Self; 4] = [
        Self::CosmianSgx,
        Self::CosmianSevSnp,
        Self::CosmianTdx,
        Self::TcgDiceTagged,
    ];

    /// The extension OID, dotted.
    pub fn oid(self) -> &'static str {
        match self {
            Self::CosmianSevSnp => COSMIAN_SEV_OID,
            Self::CosmianSgx => COSMIAN_SGX_OID,
            Self::CosmianTdx => COSMIAN_TDX_OID,
            Self::TcgDiceTagged => TCG_DICE_TAGGED_EVIDENCE_OID,
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CosmianSevSnp => "Cosmian SEV-SNP report",
            Self::CosmianSgx => "Cosmian SGX quote",
            Self::CosmianTdx => "Cosmian TDX quote",
            Self::TcgDiceTagged => "TCG DICE tagged evidence",
        }
    }

    /// The binding this convention defines.
    pub fn binding(self) -> ForeignBinding {
        match self {
            Self::TcgDiceTagged => ForeignBinding::DiceClaimsKeyHash,
            Self::CosmianSevSnp | Self::CosmianSgx | Self::CosmianTdx => {
                ForeignBinding::CosmianKeyHash
            }
        }
    }
}

impl core::fmt::Display for ForeignKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a format's binding gives, at best (when every binding step passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForeignBinding {
    /// Cosmian: report_data = SHA-256(SEC1 P-256 key) ‖ 32 bytes of extra data. Binds the TLS
    /// key; fresh only as far as the certificate's validity (or a challenge the verifier chose,
    /// when the extra data is one).
    CosmianKeyHash,
    /// DICE: report_data = SHA-256(claims buffer) ‖ 0³², the claims buffer's pubkey-hash =
    /// H(SPKI DER). Binds the TLS key; fresh only as far as the certificate's validity (or a
    /// nonce claim the verifier chose).
    DiceClaimsKeyHash,
    /// Nothing ties the evidence to this certificate's key (no evidence, or a binding step
    /// failed).
    None,
}

impl ForeignBinding {
    /// A one-line human description of what the binding gives and does not.
    pub fn label(&self) -> &'static str {
        match self {
            Self::CosmianKeyHash => {
                "key (Cosmian raw quote: report_data = SHA-256(SEC1 public key) || 32 bytes \
                 extra data); no freshness beyond the certificate unless the extra data is a \
                 challenge the verifier chose; no session binding; no TPM/IMA"
            }
            Self::DiceClaimsKeyHash => {
                "key (TCG DICE tagged evidence: report_data = SHA-256(claims buffer), \
                 pubkey-hash = hash of the SubjectPublicKeyInfo); no freshness beyond the \
                 certificate unless the nonce claim is a challenge the verifier chose; no \
                 session binding; no TPM/IMA"
            }
            Self::None => "none: nothing ties the evidence to this certificate's key",
        }
    }
}

/// What a DICE verdict reports about the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiceClaims {
    /// The CBOR tag and what it names.
    pub tag: u64,
    pub tag_name: String,
    /// The `pubkey-hash` claim: the hash algorithm (`sha256`, `sha384`, `sha512`) and value.
    pub pubkey_hash_alg: Option<String>,
    pub pubkey_hash: Option<String>,
    /// The `nonce` claim, when present.
    pub nonce: Option<String>,
    /// SHA-256 of the claims buffer (what the TEE report_data carries).
    pub claims_buffer_sha256: String,
    /// The other claims, name → hex value. They are *not* bound to anything the verifier
    /// checked beyond being inside the hashed claims buffer.
    pub custom: BTreeMap<String, String>,
}
