//! The PCK certificate chain carried in the quote: PCK leaf ← PCK CA ← Intel SGX Root CA.
//!
//! Verified here with x509-parser (structure) and ring (ECDSA P-256/SHA-256 signatures): the
//! root is pinned by the SHA-256 of its DER, every certificate must be valid at the verification
//! time, each issuer's subject must equal the child's issuer, the two issuers must be CAs allowed
//! to sign certificates, and each signature must verify. Revocation (the PCK CRL and the Root CA
//! CRL) is checked with the rest of the collateral.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::parse_der;

use crate::digest::HashAlg;
use crate::hexfmt::hex;
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

/// DER of OID 1.2.840.113741.1.13.1 (Intel SGX extensions).
const SGX_EXTENSION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
/// DER of OID 1.2.840.113741.1.13.1.4 (FMSPC).
const FMSPC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x04];
/// DER of OID 1.2.840.10045.4.3.2 (ecdsa-with-SHA256).
const ECDSA_WITH_SHA256_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// Why the PCK chain was refused.
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
    #[error("{cert}: malformed X.509 certificate: {reason}")]
    Malformed { cert: &'static str, reason: String },
    #[error("root CA is not the pinned Intel SGX Root CA (SHA-256 {presented})")]
    RootNotPinned { presented: String },
    #[error("{cert}: not valid at {now} (valid {not_before} .. {not_after})")]
    Validity {
        cert: &'static str,
        now: UnixTime,
        not_before: UnixTime,
        not_after: UnixTime,
    },
    #[error("{cert}: issuer name does not match the subject of the {issuer}")]
    IssuerMismatch {
        cert: &'static str,
        issuer: &'static str,
    },
    #[error("{cert}: not a CA certificate allowed to sign certificates")]
    NotCa { cert: &'static str },
    #[error("PCK leaf: key usage does not allow digital signatures")]
    LeafKeyUsage,
    #[error("{cert}: signature algorithm is not ecdsa-with-SHA256")]
    Algorithm { cert: &'static str },
    #[error("{cert}: signature by the {issuer} is invalid")]
    Signature {
        cert: &'static str,
        issuer: &'static str,
    },
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
    let ders = match decode_pem_chain(pem) {
        Ok(ders) => ders,
        Err(e) => {
            return ChainOutcome {
                result: Err(e),
                leaf_key: None,
                fmspc: None,
            }
        }
    };
    let mut certs = Vec::with_capacity(CHAIN_LEN);
    for (der, name) in ders.iter().zip(CERT_NAMES) {
        match parse_cert(der, name) {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                let leaf = certs.first();
                return ChainOutcome {
                    result: Err(e),
                    leaf_key: leaf.map(public_key),
                    fmspc: leaf.and_then(fmspc),
                };
            }
        }
    }
    let leaf = certs.first();
    ChainOutcome {
        leaf_key: leaf.map(public_key),
        fmspc: leaf.and_then(fmspc),
        result: verify_parsed(&ders, &certs, now),
    }
}

/// The FMSPC of the PCK leaf, read without verifying anything (for `inspect`).
pub(crate) fn leaf_fmspc(pem: &[u8]) -> Option<[u8; 6]> {
    let ders = decode_pem_chain(pem).ok()?;
    let leaf = parse_cert(ders.first()?, "PCK leaf").ok()?;
    fmspc(&leaf)
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

fn parse_cert<'a>(der: &'a [u8], cert: &'static str) -> Result<X509Certificate<'a>, ChainError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], parsed)) => Ok(parsed),
        Ok((rest, _)) => Err(ChainError::Malformed {
            cert,
            reason: format!("{} trailing bytes", rest.len()),
        }),
        Err(e) => Err(ChainError::Malformed {
            cert,
            reason: e.to_string(),
        }),
    }
}

fn public_key(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.public_key()
        .subject_public_key
        .data
        .to_vec()
}

/// The FMSPC (6 bytes) from the Intel SGX extension of a PCK certificate.
fn fmspc(cert: &X509Certificate<'_>) -> Option<[u8; 6]> {
    let ext = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid.as_bytes() == SGX_EXTENSION_OID)?;
    let (_, sgx) = parse_der(ext.value).ok()?;
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

fn verify_parsed(
    ders: &[Vec<u8>],
    certs: &[X509Certificate<'_>],
    now: UnixTime,
) -> Result<String, ChainError> {
    let [leaf, ca, root] = certs else {
        return Err(ChainError::CertCount(certs.len()));
    };
    let root_fp = HashAlg::Sha256.digest(
        ders.get(2)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    );
    if root_fp != INTEL_SGX_ROOT_CA_SHA256 {
        return Err(ChainError::RootNotPinned {
            presented: hex(&root_fp),
        });
    }
    for (cert, name) in certs.iter().zip(CERT_NAMES) {
        check_validity(cert, name, now)?;
    }
    match leaf.key_usage() {
        Ok(None) => {}
        Ok(Some(ku)) if ku.value.digital_signature() => {}
        _ => return Err(ChainError::LeafKeyUsage),
    }
    check_signed_by(leaf, "PCK leaf", ca, "PCK CA")?;
    check_signed_by(ca, "PCK CA", root, "root CA")?;
    Ok(hex(&root_fp))
}

fn check_validity(
    cert: &X509Certificate<'_>,
    name: &'static str,
    now: UnixTime,
) -> Result<(), ChainError> {
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if at < not_before || at > not_after {
        let secs = |t: i64| UnixTime::from_secs(u64::try_from(t).unwrap_or(0));
        return Err(ChainError::Validity {
            cert: name,
            now,
            not_before: secs(not_before),
            not_after: secs(not_after),
        });
    }
    Ok(())
}

fn check_signed_by(
    cert: &X509Certificate<'_>,
    cert_name: &'static str,
    issuer: &X509Certificate<'_>,
    issuer_name: &'static str,
) -> Result<(), ChainError> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(ChainError::IssuerMismatch {
            cert: cert_name,
            issuer: issuer_name,
        });
    }
    let may_sign = issuer.is_ca()
        && match issuer.key_usage() {
            Ok(None) => true,
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            Err(_) => false,
        };
    if !may_sign {
        return Err(ChainError::NotCa { cert: issuer_name });
    }
    if cert
        .signature_algorithm
        .algorithm
        .as_bytes()
        != ECDSA_WITH_SHA256_OID
        || cert
            .tbs_certificate
            .signature
            .algorithm
            .as_bytes()
            != ECDSA_WITH_SHA256_OID
    {
        return Err(ChainError::Algorithm { cert: cert_name });
    }
    let key = issuer
        .public_key()
        .subject_public_key
        .data
        .as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .map_err(|_| ChainError::Signature {
            cert: cert_name,
            issuer: issuer_name,
        })
}
