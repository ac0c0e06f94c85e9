//! The PCK certificate chain carried in the quote: PCK leaf ← PCK CA ← Intel SGX Root CA.
//!
//! The certificate checks are [`crate::pki`]'s: [`pki::verify_chain`] pins the root by the
//! SHA-256 of its DER, checks every validity window at the verification time, that each
//! issuer's subject equals the child's issuer, that both issuers are CAs allowed to sign
//! certificates, their path length constraints, and every signature. On top of that, TDX
//! requires ecdsa-with-SHA256 signatures, a PCK leaf whose key usage allows digital signatures,
//! and the PEM chain in canonical form; and reads the FMSPC from the leaf's SGX extension.
//! Revocation (the PCK CRL and the Root CA CRL) is checked with the rest of the collateral.

use x509_parser::der_parser::parse_der;

use crate::hexfmt::hex;
use crate::pki::{self, Cert, CertError, SignatureAlgorithm};
use crate::time::UnixTime;

/// SHA-256 of the DER of the Intel SGX Root CA (CN=Intel SGX Root CA, valid 2018-05-21 ..
/// 2049-12-31), the only root a PCK chain may end in.
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// The number of certificates in a PCK chain: leaf, PCK (Platform or Processor) CA, root.
const CHAIN_LEN: usize = 3;
const CERT_NAMES: [&str; CHAIN_LEN] = ["PCK leaf", "PCK CA", "root CA"];

/// OID of the Intel SGX extensions.
const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";
/// DER of OID 1.2.840.113741.1.13.1.4 (FMSPC).
const FMSPC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x04];

/// Why the PCK chain was refused: its PEM form, or one of its certificates ([`CertError`]
/// names the certificate by its subject and carries the evidence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("PCK chain PEM: {0}")]
    Pem(String),
    #[error(
        "PCK chain PEM is not in canonical form (CERTIFICATE blocks only, LF line endings, \
         64-column base64, nothing between or after the blocks but one optional NUL)"
    )]
    NonCanonicalPem,
    #[error("PCK chain has {0} certificates; expected 3 (PCK leaf, PCK CA, Intel SGX Root CA)")]
    CertCount(usize),
    /// A certificate of the chain did not parse.
    #[error("{cert}: {error}")]
    Malformed {
        cert: &'static str,
        error: CertError,
    },
    /// A certificate or a link of the chain was refused.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// What checking the chain produced: the verdict on the chain, and what could be read from the
/// leaf even if the chain failed (the caller decides what an untrusted leaf key is worth).
#[derive(Debug, Clone)]
pub(crate) struct ChainOutcome {
    /// `Ok(root fingerprint hex)` when the whole chain verified.
    pub result: Result<String, ChainError>,
    /// The PCK leaf public key (SEC1 uncompressed point), when the leaf parsed.
    pub leaf_key: Option<Vec<u8>>,
    /// The FMSPC from the leaf's SGX extension, when present.
    pub fmspc: Option<[u8; 6]>,
}

/// Check the PCK chain carried in the quote at time `now`.
pub(crate) fn check_pck_chain(pem: &[u8], now: UnixTime) -> ChainOutcome {
    let mut certs = Vec::with_capacity(CHAIN_LEN);
    let result = parse_chain(pem, &mut certs).and_then(|()| verify_parsed(&certs, now));
    let leaf = certs.first();
    ChainOutcome {
        result,
        leaf_key: leaf
            .and_then(|c| c.subject_public_key().ok())
            .map(<[u8]>::to_vec),
        fmspc: leaf.and_then(fmspc),
    }
}

/// The FMSPC of the PCK leaf, read without verifying anything (for `inspect`).
pub(crate) fn leaf_fmspc(pem: &[u8]) -> Option<[u8; 6]> {
    let ders = decode_pem_chain(pem).ok()?;
    fmspc(&Cert::from_der(ders.first()?).ok()?)
}

/// Parse the chain into `certs`, leaving there the certificates that parsed before an error
/// (the caller still reads the leaf key and FMSPC from them).
fn parse_chain(pem: &[u8], certs: &mut Vec<Cert>) -> Result<(), ChainError> {
    for (der, cert) in decode_pem_chain(pem)?
        .iter()
        .zip(CERT_NAMES)
    {
        certs.push(Cert::from_der(der).map_err(|error| ChainError::Malformed { cert, error })?);
    }
    Ok(())
}

/// Decode the PEM chain, insisting on the canonical encoding so that no two byte strings
/// carry the same chain.
pub(super) fn decode_pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let text = pem.strip_suffix(&[0]).unwrap_or(pem);
    let blocks = pem::parse_many(text).map_err(|e| ChainError::Pem(e.to_string()))?;
    if blocks.len() != CHAIN_LEN {
        return Err(ChainError::CertCount(blocks.len()));
    }
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut canonical = String::with_capacity(text.len());
    for block in &blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(ChainError::NonCanonicalPem);
        }
        canonical.push_str(&pem::encode_config(block, config));
    }
    if canonical.as_bytes() != text {
        return Err(ChainError::NonCanonicalPem);
    }
    Ok(blocks
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect())
}

/// The FMSPC (6 bytes) from the Intel SGX extension of a PCK certificate.
fn fmspc(cert: &Cert) -> Option<[u8; 6]> {
    let (_, sgx) = parse_der(cert.extension_value(SGX_EXTENSION_OID)?).ok()?;
    sgx.as_sequence()
        .ok()?
        .iter()
        .find_map(|entry| {
            let pair = entry.as_sequence().ok()?;
            let oid = pair.first()?.as_oid().ok()?;
            if oid.as_bytes() != FMSPC_OID {
                return None;
            }
            <[u8; 6]>::try_from(pair.get(1)?.as_slice().ok()?).ok()
        })
}

/// Root pinned, validity, links and signatures ([`pki::verify_chain`]); then what TDX adds:
/// ecdsa-with-SHA256 on the leaf and the PCK CA, and a leaf key allowed to sign.
fn verify_parsed(certs: &[Cert], now: UnixTime) -> Result<String, ChainError> {
    let [leaf, issuers @ ..] = certs else {
        return Err(ChainError::CertCount(0));
    };
    if certs.len() != CHAIN_LEN {
        return Err(ChainError::CertCount(certs.len()));
    }
    let root = pki::verify_chain(leaf, issuers, &[INTEL_SGX_ROOT_CA_SHA256], now)?;
    for cert in certs.iter().take(CHAIN_LEN - 1) {
        cert.check_signature_algorithm(&[SignatureAlgorithm::EcdsaSha256])?;
    }
    leaf.check_key_usage_digital_signature()?;
    Ok(hex(root))
}
