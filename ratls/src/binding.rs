//! Binding claims: what ties TEE evidence, a TPM quote and a TLS key together.
//!
//! The attester and the verifier both compute one canonical, domain-separated encoding of
//! (label, role, SHA-256 of the TLS SubjectPublicKeyInfo, SHA-256 of the TPM AK public area,
//! issue time, challenge, TLS exporter value) and hash it:
//!
//! - the TEE report's 64-byte `report_data` = SHA-512(encoding);
//! - the TPM quote's `qualifyingData` = SHA-256(encoding).
//!
//! So the AK is bound to the TEE (a vTPM outside the TEE cannot stand in), and the TLS key is bound
//! to both (a TLS key outside the VM cannot be used). The verifier recomputes the encoding from
//! values it knows itself (the SPKI of the TLS peer it is talking to, the AK it verified, the
//! challenge it chose, the exporter of its own session); it never takes a hash from the attester.
//!
//! ## Encoding (version 1)
//!
//! ```text
//! "cosmian-vm-attest-v1" 0x00               domain label, NUL-terminated
//! then, in this order, one TLV per field:   tag (u8) | length (u16 big-endian) | value
//!   0x01 role           UTF-8, e.g. "agent", "server", "client" (1..=32 bytes)
//!   0x02 spki_sha256    32 bytes
//!   0x03 ak_sha256      32 bytes, or empty when there is no TPM
//!   0x04 issued_at      8 bytes, u64 big-endian seconds since the Unix epoch
//!   0x05 challenge      empty (none) or 32 bytes
//!   0x06 exporter       empty (none) or 32 bytes
//! ```
//!
//! Every field is always present (empty when absent), so two different sets of claims can never
//! encode to the same bytes.
//!
//! ## What the TEE and the TPM may sign
//!
//! The attesters (`TeeAttester`, `TpmAttester` in the attestation layer) take a [`ReportData`] /
//! [`QualifyingData`], never plain bytes, and those types have exactly three constructors:
//!
//! - [`BindingClaims::report_data`] / [`BindingClaims::qualifying_data`]: the binding digests
//!   above, over claims the attester filled in itself (its own key, its own AK, its own session's
//!   exporter);
//! - [`ReportData::for_raw_nonce`] / [`QualifyingData::for_raw_nonce`]: a caller's nonce, hashed
//!   under another domain label ([`RAW_LABEL`]). Its pre-image starts with `cosmian-vm-raw-v1\0`
//!   where a binding's starts with `cosmian-vm-attest-v1\0`, so producing a binding digest this
//!   way means finding a SHA-512 (or SHA-256) collision between two different pre-images.
//!
//! - [`BatchClaims::report_data`] / [`BatchClaims::qualifying_data`]: the root of a Merkle tree
//!   whose leaves are sessions' binding claims ([`batch_leaf`]), under its own label
//!   ([`BATCH_LABEL`]); see "Batches" below.
//!
//! No code path, in this crate or outside it, can therefore make the TEE or the TPM sign bytes a
//! caller chose: the most a caller obtains is evidence over a hash it cannot steer onto a
//! binding digest (which is what lets a relay pass verification with its own key).
//!
//! ## Batches (fresh mode)
//!
//! Sessions that ask for fresh evidence while the TEE and the TPM are busy share the next report
//! and quote. Each session is a leaf of an RFC 6962 Merkle tree ([`crate::merkle`]):
//!
//! ```text
//! leaf data = "cosmian-vm-batch-leaf-v1" 0x00
//!             0x01 role | 0x02 spki_sha256 | 0x05 challenge | 0x06 exporter   (TLVs as above)
//! leaf hash = SHA-256(0x00 || leaf data)        node = SHA-256(0x01 || left || right)
//! ```
//!
//! and the TEE and the TPM sign the tree:
//!
//! ```text
//! "cosmian-vm-batch-v1" 0x00
//!   0x03 ak_sha256   32 bytes, or empty       0x07 tree_size   8 bytes, u64 big-endian
//!   0x04 issued_at   8 bytes                  0x08 root        32 bytes
//! ```
//!
//! `report_data` = SHA-512 and `qualifyingData` = SHA-256 of that encoding. A session's evidence
//! carries the shared report and quote plus its inclusion proof; the verifier computes the leaf
//! from its own values (its role, the key it saw, its challenge, its exporter), so a proof only
//! ever vouches for the session that recomputes it. Three labels, three pre-image shapes: a batch
//! digest is never a single-session binding digest nor a raw nonce's.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::HashAlg;

/// The domain-separation label, version 1.
pub const LABEL: &[u8] = b"cosmian-vm-attest-v1\0";

/// The domain-separation label of raw nonces ([`ReportData::for_raw_nonce`]): never a prefix of
/// [`LABEL`], nor [`LABEL`] of it.
pub const RAW_LABEL: &[u8] = b"cosmian-vm-raw-v1\0";

/// The largest raw nonce [`ReportData::for_raw_nonce`] takes.
pub const MAX_RAW_NONCE: usize = 1024;

/// The 64 bytes a TEE report carries as `report_data`. Only this module makes one: from binding
/// claims, or from a raw nonce under [`RAW_LABEL`] (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReportData([u8; 64]);

impl ReportData {
    /// SHA-512([`RAW_LABEL`] ‖ u16 length ‖ nonce): evidence over a caller's nonce that can never
    /// equal a binding digest. `None` when the nonce is empty or over [`MAX_RAW_NONCE`] bytes.
    pub fn for_raw_nonce(nonce: &[u8]) -> Option<Self> {
        raw_preimage(nonce).map(|pre| report_data_of(&pre))
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Test vectors only (unit tests of this crate): arbitrary bytes.
    #[cfg(test)]
    pub(crate) fn from_raw_for_tests(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for ReportData {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ReportData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReportData({})", crate::hexfmt::hex(self.0))
    }
}

/// The 32 bytes a TPM quote carries as `extraData` (qualifying data). Made like [`ReportData`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QualifyingData([u8; 32]);

impl QualifyingData {
    /// SHA-256([`RAW_LABEL`] ‖ u16 length ‖ nonce); see [`ReportData::for_raw_nonce`].
    pub fn for_raw_nonce(nonce: &[u8]) -> Option<Self> {
        raw_preimage(nonce).map(|pre| Self(crate::digest::sha256(&pre)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for QualifyingData {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for QualifyingData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QualifyingData({})", crate::hexfmt::hex(self.0))
    }
}

fn raw_preimage(nonce: &[u8]) -> Option<Vec<u8>> {
    if nonce.is_empty() || nonce.len() > MAX_RAW_NONCE {
        return None;
    }
    let len = u16::try_from(nonce.len()).ok()?;
    let mut pre = Vec::with_capacity(RAW_LABEL.len() + 2 + nonce.len());
    pre.extend_from_slice(RAW_LABEL);
    pre.extend_from_slice(&len.to_be_bytes());
    pre.extend_from_slice(nonce);
    Some(pre)
}

/// Whether `challenge` looks like the output of a random generator: not all zero, and at least
/// [`MIN_DISTINCT_CHALLENGE_BYTES`] distinct byte values (32 random bytes have fewer than that
/// with probability below 2^-83). A verifier that sends a constant or counter challenge gets
/// no freshness from it, so attesters refuse such challenges instead of lending them a signature.
pub fn challenge_is_random_looking(challenge: &[u8; NONCE_LEN]) -> bool {
    let mut distinct = challenge.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() >= MIN_DISTINCT_CHALLENGE_BYTES
}

/// See [`challenge_is_random_looking`].
pub const MIN_DISTINCT_CHALLENGE_BYTES: usize = 12;

/// Length of challenges and exporter values.
pub const NONCE_LEN: usize = 32;

/// The TLS exporter label for a role: `EXPORTER-cosmian-vm-attest-v1-<role>`.
pub fn exporter_label(role: &Role) -> String {
    format!("EXPORTER-cosmian-vm-attest-v1-{}", role.as_str())
}

/// Who produced the evidence; part of the hash, so evidence made for one role cannot be replayed
/// as another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// The agent's API endpoint.
    pub fn agent() -> Self {
        Self("agent".into())
    }

    /// A TLS server (the proxy in server mode, an attested app).
    pub fn server() -> Self {
        Self("server".into())
    }

    /// A TLS client proving itself (mutual attestation).
    pub fn client() -> Self {
        Self("client".into())
    }

    /// A role name: 1 to 32 bytes of `[a-z0-9-]`.
    pub fn new(name: &str) -> Result<Self, BindingError> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(BindingError::InvalidRole(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Role {
    type Error = BindingError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Role> for String {
    fn from(role: Role) -> Self {
        role.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why binding claims are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    #[error("invalid role {0:?}: 1 to 32 bytes of a-z, 0-9 and '-'")]
    InvalidRole(String),
}

/// The claims evidence is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingClaims {
    pub role: Role,
    /// SHA-256 of the TLS key's DER SubjectPublicKeyInfo.
    #[serde(with = "serde_bytes_array")]
    pub spki_sha256: [u8; 32],
    /// SHA-256 of the TPM AK's `TPMT_PUBLIC`; `None` without a TPM.
    #[serde(with = "serde_opt_bytes_array")]
    pub ak_sha256: Option<[u8; 32]>,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    /// The verifier's challenge (fresh mode).
    #[serde(with = "serde_opt_bytes_array")]
    pub challenge: Option<[u8; NONCE_LEN]>,
    /// TLS-Exporter(label(role), challenge, 32) of the session (fresh mode).
    #[serde(with = "serde_opt_bytes_array")]
    pub exporter: Option<[u8; NONCE_LEN]>,
}

impl BindingClaims {
    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LABEL.len() + 6 * 3 + 32 * 4 + 40);
        out.extend_from_slice(LABEL);
        tlv(&mut out, 0x01, self.role.as_str().as_bytes());
        tlv(&mut out, 0x02, &self.spki_sha256);
        tlv(&mut out, 0x03, opt(&self.ak_sha256));
        tlv(&mut out, 0x04, &self.issued_at.to_be_bytes());
        tlv(&mut out, 0x05, opt(&self.challenge));
        tlv(&mut out, 0x06, opt(&self.exporter));
        out
    }

    /// The TEE report_data: SHA-512 of the encoding.
    pub fn report_data(&self) -> ReportData {
        report_data_of(&self.encode())
    }

    /// The TPM qualifyingData: SHA-256 of the encoding.
    pub fn qualifying_data(&self) -> QualifyingData {
        QualifyingData(crate::digest::sha256(&self.encode()))
    }
}

/// The domain-separation label of a batch's signed claims ([`BatchClaims`]).
pub const BATCH_LABEL: &[u8] = b"cosmian-vm-batch-v1\0";

/// The domain-separation label of a batch leaf ([`batch_leaf`]).
pub const BATCH_LEAF_LABEL: &[u8] = b"cosmian-vm-batch-leaf-v1\0";

/// The leaf data of one session in a batch: [`BATCH_LEAF_LABEL`], then the session's role, key,
/// challenge and exporter as TLVs (the AK and the issue time are the batch's, in [`BatchClaims`]).
pub fn batch_leaf_data(claims: &BindingClaims) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_LEAF_LABEL.len() + 4 * 3 + 32 * 4);
    out.extend_from_slice(BATCH_LEAF_LABEL);
    tlv(&mut out, 0x01, claims.role.as_str().as_bytes());
    tlv(&mut out, 0x02, &claims.spki_sha256);
    tlv(&mut out, 0x05, opt(&claims.challenge));
    tlv(&mut out, 0x06, opt(&claims.exporter));
    out
}

/// The Merkle leaf hash of one session: SHA-256(`0x00` ‖ [`batch_leaf_data`]).
pub fn batch_leaf(claims: &BindingClaims) -> crate::merkle::Hash {
    crate::merkle::leaf_hash(&batch_leaf_data(claims))
}

/// What a batch's TEE report and TPM quote sign: the tree of its sessions and what they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchClaims {
    /// SHA-256 of the TPM AK's `TPMT_PUBLIC`; `None` without a TPM.
    pub ak_sha256: Option<[u8; 32]>,
    /// Seconds since the Unix epoch (every session of the batch carries it).
    pub issued_at: u64,
    /// How many sessions (leaves) the tree holds.
    pub tree_size: u64,
    /// The tree's root ([`crate::merkle`]).
    pub root: crate::merkle::Hash,
}

impl BatchClaims {
    /// The canonical encoding (module documentation, "Batches").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BATCH_LABEL.len() + 4 * 3 + 32 * 2 + 16);
        out.extend_from_slice(BATCH_LABEL);
        tlv(&mut out, 0x03, opt(&self.ak_sha256));
        tlv(&mut out, 0x04, &self.issued_at.to_be_bytes());
        tlv(&mut out, 0x07, &self.tree_size.to_be_bytes());
        tlv(&mut out, 0x08, &self.root);
        out
    }

    /// The TEE report_data: SHA-512 of the encoding.
    pub fn report_data(&self) -> ReportData {
        report_data_of(&self.encode())
    }

    /// The TPM qualifyingData: SHA-256 of the encoding.
    pub fn qualifying_data(&self) -> QualifyingData {
        QualifyingData(crate::digest::sha256(&self.encode()))
    }
}

/// SHA-256 of a DER SubjectPublicKeyInfo (or any public-key bytes).
pub fn spki_sha256(spki_der: &[u8]) -> [u8; 32] {
    crate::digest::sha256(spki_der)
}

/// SHA-512 of a binding or batch encoding, as report_data.
fn report_data_of(encoding: &[u8]) -> ReportData {
    let mut out = [0u8; 64];
    out.copy_from_slice(&HashAlg::Sha512.digest(encoding));
    ReportData(out)
}

/// An optional 32-byte value as a TLV value: empty when absent.
fn opt(value: &Option<[u8; 32]>) -> &[u8] {
    value
        .as_ref()
        .map_or(&[][..], |v| &v[..])
}

fn tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    // Invariant: every value is at most 32 bytes (roles are capped at 32, hashes and nonces are
    // 32, the time is 8), so the length always fits a u16.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.push(tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Serde for `[u8; 32]` as a CBOR/JSON byte string.
mod serde_bytes_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&v[..], s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
    }
}

/// Serde for `Option<[u8; 32]>`.
mod serde_opt_bytes_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(serde_bytes::Bytes::new(&bytes[..])),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let bytes: Option<serde_bytes::ByteBuf> = Deserialize::deserialize(d)?;
        bytes
            .map(|b| {
                <[u8; 32]>::try_from(b.as_slice())
                    .map_err(|_| serde::de::Error::invalid_length(b.len(), &"32 bytes"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> BindingClaims {
        BindingClaims {
            role: Role::agent(),
            spki_sha256: [1; 32],
            ak_sha256: Some([2; 32]),
            issued_at: 1_700_000_000,
            challenge: Some([3; 32]),
            exporter: None,
        }
    }

    #[test]
    fn every_field_changes_both_hashes() {
        let base = claims();
        let variants = [
            BindingClaims {
                role: Role::server(),
                ..base.clone()
            },
            BindingClaims {
                spki_sha256: [9; 32],
                ..base.clone()
            },
            BindingClaims {
                ak_sha256: None,
                ..base.clone()
            },
            BindingClaims {
                issued_at: base.issued_at + 1,
                ..base.clone()
            },
            BindingClaims {
                challenge: None,
                ..base.clone()
            },
            BindingClaims {
                exporter: Some([3; 32]),
                ..base.clone()
            },
        ];
        for v in &variants {
            assert_ne!(v.report_data(), base.report_data(), "{v:?}");
            assert_ne!(v.qualifying_data(), base.qualifying_data(), "{v:?}");
        }
    }

    #[test]
    fn encoding_is_stable() {
        // A change here breaks every deployed verifier: bump the label instead.
        let enc = claims().encode();
        assert!(enc.starts_with(b"cosmian-vm-attest-v1\0\x01\x00\x05agent\x02\x00\x20"));
        assert_eq!(
            enc.len(),
            21 + (3 + 5) + (3 + 32) * 2 + (3 + 8) + (3 + 32) + 3
        );
        assert_eq!(
            exporter_label(&Role::client()),
            "EXPORTER-cosmian-vm-attest-v1-client"
        );
    }

    #[test]
    fn batch_encodings_are_stable_and_separated() {
        let c = claims();
        let data = batch_leaf_data(&c);
        assert!(data.starts_with(b"cosmian-vm-batch-leaf-v1\0\x01\x00\x05agent\x02\x00\x20"));
        assert_eq!(data.len(), 25 + (3 + 5) + (3 + 32) + (3 + 32) + 3);
        // The leaf ignores the AK and the time (the batch's), and sees every other field.
        let same = BindingClaims {
            ak_sha256: None,
            issued_at: 1,
            ..c.clone()
        };
        assert_eq!(batch_leaf(&same), batch_leaf(&c));
        for other in [
            BindingClaims {
                role: Role::server(),
                ..c.clone()
            },
            BindingClaims {
                spki_sha256: [8; 32],
                ..c.clone()
            },
            BindingClaims {
                challenge: Some([4; 32]),
                ..c.clone()
            },
            BindingClaims {
                exporter: Some([5; 32]),
                ..c.clone()
            },
        ] {
            assert_ne!(batch_leaf(&other), batch_leaf(&c), "{other:?}");
        }
        let batch = BatchClaims {
            ak_sha256: Some([2; 32]),
            issued_at: 1_700_000_000,
            tree_size: 3,
            root: [7; 32],
        };
        let enc = batch.encode();
        assert!(enc.starts_with(b"cosmian-vm-batch-v1\0\x03\x00\x20"));
        assert_eq!(enc.len(), 20 + (3 + 32) + (3 + 8) * 2 + (3 + 32));
        for other in [
            BatchClaims {
                ak_sha256: None,
                ..batch
            },
            BatchClaims {
                issued_at: 1,
                ..batch
            },
            BatchClaims {
                tree_size: 4,
                ..batch
            },
            BatchClaims {
                root: [6; 32],
                ..batch
            },
        ] {
            assert_ne!(other.report_data(), batch.report_data());
            assert_ne!(other.qualifying_data(), batch.qualifying_data());
        }
        // Three labels, none a prefix of another.
        for (a, b) in [
            (LABEL, BATCH_LABEL),
            (RAW_LABEL, BATCH_LABEL),
            (LABEL, RAW_LABEL),
        ] {
            assert!(!a.starts_with(b) && !b.starts_with(a));
        }
    }

    #[test]
    fn roles_are_validated() {
        assert!(Role::new("proxy-1").is_ok());
        for bad in ["", "Agent", "a b", &"x".repeat(33)] {
            assert!(Role::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Role>("\"BAD\"").is_err());
    }
}
