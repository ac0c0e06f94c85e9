//! The TCG DICE tagged-evidence extension as "Interoperable RA-TLS" uses it.

use std::collections::BTreeMap;

use ciborium::Value;

pub use super::claims::DiceClaims;
use super::FormatError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;

/// Intel TEE quote: SGX ECDSA v3, SGX or TDX v4/v5 (IANA CBOR tag 60000).
pub const TAG_INTEL_TEE_QUOTE: u64 = 60000;
/// Intel TEE report: a TDX report or SGX report type 2 (IANA CBOR tag 60001).
pub const TAG_INTEL_TEE_REPORT: u64 = 60001;
/// Legacy SGX report made by EREPORT (IANA CBOR tag 60002).
pub const TAG_INTEL_SGX_LEGACY_REPORT: u64 = 60002;
/// rats-tls' Intel TEE quote tag from before the IANA registration (`0x1a7501`, "rats01").
pub const TAG_RATS_TLS_INTEL_TEE_QUOTE: u64 = 0x1a_7501;
/// rats-tls' Intel TEE report tag from before the IANA registration.
pub const TAG_RATS_TLS_INTEL_TEE_REPORT: u64 = 0x1a_7502;
/// rats-tls' legacy SGX report tag from before the IANA registration.
pub const TAG_RATS_TLS_SGX_LEGACY_REPORT: u64 = 0x1a_7503;
/// AMD SEV-SNP attestation report (rats-tls / rats-rs private tag, not IANA-registered).
pub const TAG_SEV_SNP: u64 = 0x1a_7504;
/// AMD SEV (pre-SNP) report (rats-tls private tag).
pub const TAG_SEV: u64 = 0x1a_7505;
/// Hygon CSV report (rats-tls private tag).
pub const TAG_CSV: u64 = 0x1a_7506;
/// Evidence made by the Confidential Containers attestation agent (rats-rs private tag).
pub const TAG_COCO_EVIDENCE: u64 = 0xC0_C000;
/// A token from the Confidential Containers attestation service (rats-rs private tag).
pub const TAG_COCO_TOKEN: u64 = 0xC0_C001;

/// The claims-buffer entry that binds the TLS key.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// The optional claims-buffer entry carrying a nonce (pre-session freshness).
pub const CLAIM_NONCE: &str = "nonce";

/// Most claims a claims buffer may hold.
const MAX_CLAIMS: usize = 64;
/// Most nesting CBOR may have here (the deepest legitimate item is two levels down).
const MAX_DEPTH: usize = 8;

const WHAT: &str = "TCG DICE tagged evidence";
const WHAT_CLAIMS: &str = "DICE claims buffer";
const WHAT_HASH: &str = "DICE pubkey-hash";

/// What the tag says the evidence bytes are, and whether this crate verifies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EvidenceFormat {
    /// An Intel ECDSA quote (SGX or TDX: the quote header tells).
    IntelQuote,
    /// A raw SEV-SNP attestation report.
    SevSnpReport,
    /// Known, but not something a remote verifier can check here; the text says why.
    Unsupported(&'static str),
}

/// What a tag names.
pub(super) fn tag_format(tag: u64) -> Option<(&'static str, EvidenceFormat)> {
    Some(match tag {
        TAG_INTEL_TEE_QUOTE => ("Intel TEE quote (IANA 60000)", EvidenceFormat::IntelQuote),
        TAG_RATS_TLS_INTEL_TEE_QUOTE => (
            "Intel TEE quote (rats-tls tag 0x1a7501, pre-IANA)",
            EvidenceFormat::IntelQuote,
        ),
        TAG_SEV_SNP => (
            "SEV-SNP report (rats-tls tag 0x1a7504)",
            EvidenceFormat::SevSnpReport,
        ),
        TAG_INTEL_TEE_REPORT | TAG_RATS_TLS_INTEL_TEE_REPORT => (
            "Intel TEE report",
            EvidenceFormat::Unsupported(
                "a TDX or SGX type-2 report is MACed for the local platform, not signed: only a \
                 quote can be verified remotely",
            ),
        ),
        TAG_INTEL_SGX_LEGACY_REPORT | TAG_RATS_TLS_SGX_LEGACY_REPORT => (
            "legacy SGX report",
            EvidenceFormat::Unsupported(
                "an EREPORT is MACed for a local enclave, not signed: only a quote can be \
                 verified remotely",
            ),
        ),
        TAG_SEV => (
            "AMD SEV (pre-SNP) report",
            EvidenceFormat::Unsupported("pre-SNP SEV reports are not verified by this crate"),
        ),
        TAG_CSV => (
            "Hygon CSV report",
            EvidenceFormat::Unsupported("Hygon CSV reports are not verified by this crate"),
        ),
        TAG_COCO_EVIDENCE => (
            "Confidential Containers evidence",
            EvidenceFormat::Unsupported(
                "CoCo evidence is checked by a CoCo attestation service, not by this crate",
            ),
        ),
        TAG_COCO_TOKEN => (
            "Confidential Containers attestation token",
            EvidenceFormat::Unsupported(
                "a CoCo token is a statement by an attestation service this crate does not trust",
            ),
        ),
        _ => return None,
    })
}

/// `tag([ bstr evidence, bstr claims-buffer ])`, the extension value.
#[derive(Debug)]
pub(super) struct Tagged {
    pub tag: u64,
    pub evidence: Vec<u8>,
    pub claims_buffer: Vec<u8>,
}

/// The claims buffer: a CBOR map of text names to byte strings.
#[derive(Debug)]
pub(super) struct ClaimsBuffer {
    pub pubkey_hash_alg: HashAlg,
    pub pubkey_hash: Vec<u8>,
    pub nonce: Option<Vec<u8>>,
    /// Every other claim (their values are not interpreted).
    pub custom: BTreeMap<String, Vec<u8>>,
}

impl DiceClaims {
    pub(super) fn new(tagged: &Tagged, claims: Option<&ClaimsBuffer>) -> Self {
        Self {
            tag: tagged.tag,
            tag_name: tag_format(tagged.tag).map_or_else(|| "unknown".into(), |(n, _)| n.into()),
            pubkey_hash_alg: claims.map(|c| c.pubkey_hash_alg.name().to_owned()),
            pubkey_hash: claims.map(|c| hex(&c.pubkey_hash)),
            nonce: claims.and_then(|c| c.nonce.as_ref().map(hex)),
            claims_buffer_sha256: hex(crate::digest::sha256(&tagged.claims_buffer)),
            custom: claims
                .map(|c| {
                    c.custom
                        .iter()
                        .map(|(k, v)| (k.clone(), hex(v)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Tagged {
    pub(super) fn parse(value: &[u8]) -> Result<Self, FormatError> {
        let item = decode_exact(WHAT, value)?;
        let Value::Tag(tag, inner) = item else {
            return Err(shape(WHAT, "a CBOR tag", &item));
        };
        let Value::Array(items) = *inner else {
            return Err(shape(WHAT, "a tagged array of two byte strings", &inner));
        };
        match <[Value; 2]>::try_from(items) {
            Ok([Value::Bytes(evidence), Value::Bytes(claims_buffer)]) => Ok(Self {
                tag,
                evidence,
                claims_buffer,
            }),
            Ok([a, b]) => Err(FormatError::Shape {
                what: WHAT,
                expected: "[bstr evidence, bstr claims-buffer]",
                presented: format!("[{}, {}]", kind(&a), kind(&b)),
            }),
            Err(items) => Err(FormatError::Shape {
                what: WHAT,
                expected: "an array of 2 items",
                presented: format!("an array of {} items", items.len()),
            }),
        }
    }
}

impl ClaimsBuffer {
    /// `{ "pubkey-hash": bstr(CBOR [hash-alg-id, bstr hash]), ? "nonce": bstr, * tstr => bstr }`.
    pub(super) fn parse(buf: &[u8]) -> Result<Self, FormatError> {
        let item = decode_exact(WHAT_CLAIMS, buf)?;
        let Value::Map(entries) = item else {
            return Err(shape(
                WHAT_CLAIMS,
                "a map of text names to byte strings",
                &item,
            ));
        };
        if entries.len() > MAX_CLAIMS {
            return Err(FormatError::TooLarge {
                what: WHAT_CLAIMS,
                field: "claims",
                size: entries.len(),
                limit: MAX_CLAIMS,
            });
        }
        let mut claims = BTreeMap::new();
        for (name, value) in entries {
            let (Value::Text(name), Value::Bytes(value)) = (&name, &value) else {
                return Err(FormatError::Shape {
                    what: WHAT_CLAIMS,
                    expected: "text name => byte string value",
                    presented: format!("{} => {}", kind(&name), kind(&value)),
                });
            };
            if claims
                .insert(name.clone(), value.clone())
                .is_some()
            {
                return Err(FormatError::Shape {
                    what: WHAT_CLAIMS,
                    expected: "each claim once",
                    presented: format!("{name:?} twice"),
                });
            }
        }
        let Some(hash_entry) = claims.remove(CLAIM_PUBKEY_HASH) else {
            return Err(FormatError::Shape {
                what: WHAT_CLAIMS,
                expected: "a \"pubkey-hash\" claim",
                presented: format!("claims {:?}", claims.keys().collect::<Vec<_>>()),
            });
        };
        let (pubkey_hash_alg, pubkey_hash) = parse_hash_entry(&hash_entry)?;
        let nonce = claims.remove(CLAIM_NONCE);
        Ok(Self {
            pubkey_hash_alg,
            pubkey_hash,
            nonce,
            custom: claims,
        })
    }
}

/// A CoSWID `hash-entry`: `[ hash-alg-id (IANA Named Information), bstr hash ]`. The
/// interoperable profile requires sha-256 (1), sha-384 (7) and sha-512 (8).
fn parse_hash_entry(bytes: &[u8]) -> Result<(HashAlg, Vec<u8>), FormatError> {
    let item = decode_exact(WHAT_HASH, bytes)?;
    let Value::Array(items) = item else {
        return Err(shape(WHAT_HASH, "[hash-alg-id, bstr hash]", &item));
    };
    let [Value::Integer(id), Value::Bytes(hash)] = items.as_slice() else {
        return Err(FormatError::Shape {
            what: WHAT_HASH,
            expected: "[hash-alg-id, bstr hash]",
            presented: format!(
                "[{}]",
                items
                    .iter()
                    .map(kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let alg = match i128::from(*id) {
        1 => HashAlg::Sha256,
        7 => HashAlg::Sha384,
        8 => HashAlg::Sha512,
        other => {
            return Err(FormatError::Shape {
                what: WHAT_HASH,
                expected: "hash-alg-id 1 (sha-256), 7 (sha-384) or 8 (sha-512)",
                presented: other.to_string(),
            })
        }
    };
    if hash.len() != alg.digest_len() {
        return Err(FormatError::Shape {
            what: WHAT_HASH,
            expected: "a hash as long as its algorithm's digest",
            presented: format!("{} bytes for {}", hash.len(), alg.name()),
        });
    }
    Ok((alg, hash.clone()))
}

/// Decode exactly one CBOR item (depth-limited), refusing trailing bytes.
fn decode_exact(what: &'static str, bytes: &[u8]) -> Result<Value, FormatError> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|e| FormatError::Cbor {
            what,
            reason: e.to_string(),
        })?;
    if !reader.is_empty() {
        return Err(FormatError::Shape {
            what,
            expected: "one CBOR item",
            presented: format!("{} trailing bytes", reader.len()),
        });
    }
    Ok(value)
}

fn shape(what: &'static str, expected: &'static str, presented: &Value) -> FormatError {
    FormatError::Shape {
        what,
        expected,
        presented: kind(presented).into(),
    }
}

/// The CBOR major kind of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Tag(..) => "tag",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "other",
    }
}
