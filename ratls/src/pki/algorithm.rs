//! The signature and key algorithms a certificate may use, read from its AlgorithmIdentifiers.

use core::fmt;

use ring::signature::{self, VerificationAlgorithm};
use x509_parser::asn1_rs::{Class, Tag};
use x509_parser::x509::AlgorithmIdentifier;

use crate::codec::Reader;
use crate::hexfmt::hex;

use super::der::*;

/// A certificate signature algorithm this module verifies (the curve or the RSA modulus size
/// comes from the issuer's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ecdsa-with-SHA256 (parameters absent).
    EcdsaSha256,
    /// ecdsa-with-SHA384 (parameters absent).
    EcdsaSha384,
    /// sha256WithRSAEncryption (parameters NULL or absent, RFC 4055 5).
    RsaPkcs1Sha256,
    /// sha384WithRSAEncryption (parameters NULL or absent).
    RsaPkcs1Sha384,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, salt length 48 (AMD's chain).
    RsaPssSha384,
}

impl SignatureAlgorithm {
    pub const ALL: [Self; 5] = [
        Self::EcdsaSha256,
        Self::EcdsaSha384,
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPssSha384,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaSha256 => "ecdsa-with-SHA256",
            Self::EcdsaSha384 => "ecdsa-with-SHA384",
            Self::RsaPkcs1Sha256 => "sha256WithRSAEncryption",
            Self::RsaPkcs1Sha384 => "sha384WithRSAEncryption",
            Self::RsaPssSha384 => "RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48)",
        }
    }

    /// The `ring` verification algorithm for this signature under a key of kind `key`.
    pub(super) fn ring(self, key: &KeyAlgorithm) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match (self, key) {
            (Self::EcdsaSha256, KeyAlgorithm::EcP256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Self::EcdsaSha256, KeyAlgorithm::EcP384) => &signature::ECDSA_P384_SHA256_ASN1,
            (Self::EcdsaSha384, KeyAlgorithm::EcP256) => &signature::ECDSA_P256_SHA384_ASN1,
            (Self::EcdsaSha384, KeyAlgorithm::EcP384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Self::RsaPkcs1Sha256, KeyAlgorithm::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Self::RsaPkcs1Sha384, KeyAlgorithm::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Self::RsaPssSha384, KeyAlgorithm::Rsa) => &signature::RSA_PSS_2048_8192_SHA384,
            _ => return None,
        })
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of a subject public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// id-ecPublicKey on prime256v1.
    EcP256,
    /// id-ecPublicKey on secp384r1.
    EcP384,
    /// rsaEncryption or id-RSASSA-PSS.
    Rsa,
    /// Anything else: the algorithm OID (and curve OID for other EC keys).
    Other(String),
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcP256 => f.write_str("EC P-256"),
            Self::EcP384 => f.write_str("EC P-384"),
            Self::Rsa => f.write_str("RSA"),
            Self::Other(oid) => write!(f, "{oid}"),
        }
    }
}

/// A parsed certificate: its DER and everything the checks read from it.
pub(super) const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
pub(super) const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
pub(super) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(super) const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
pub(super) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
pub(super) const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
pub(super) const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
pub(super) const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(super) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

pub(super) fn supported_list(algorithms: &[SignatureAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters of an AlgorithmIdentifier, as far as the algorithms we know care.
pub(super) enum Params<'a> {
    Absent,
    Null,
    /// The contents of a SEQUENCE.
    Sequence(&'a [u8]),
    Other,
}

impl<'a> Params<'a> {
    fn of(alg: &AlgorithmIdentifier<'a>) -> Self {
        let Some(p) = alg.parameters.as_ref() else {
            return Self::Absent;
        };
        let universal = p.header.class() == Class::Universal;
        match (universal, p.header.tag(), p.header.is_constructed()) {
            (true, Tag::Null, false) if p.data.is_empty() => Self::Null,
            (true, Tag::Sequence, true) => Self::Sequence(p.data),
            _ => Self::Other,
        }
    }
}

/// Identify a certificate's signatureAlgorithm, parameters included; `Err` describes an
/// unsupported one.
pub(super) fn signature_algorithm(
    alg: &AlgorithmIdentifier<'_>,
) -> Result<SignatureAlgorithm, String> {
    let params = Params::of(alg);
    let found = match (alg.algorithm.as_bytes(), params) {
        (OID_ECDSA_SHA256, Params::Absent) => Some(SignatureAlgorithm::EcdsaSha256),
        (OID_ECDSA_SHA384, Params::Absent) => Some(SignatureAlgorithm::EcdsaSha384),
        (OID_RSA_SHA256, Params::Absent | Params::Null) => Some(SignatureAlgorithm::RsaPkcs1Sha256),
        (OID_RSA_SHA384, Params::Absent | Params::Null) => Some(SignatureAlgorithm::RsaPkcs1Sha384),
        (OID_RSASSA_PSS, Params::Sequence(params)) if pss_is_sha384(params) => {
            Some(SignatureAlgorithm::RsaPssSha384)
        }
        _ => None,
    };
    found.ok_or_else(|| {
        let params = match alg.parameters.as_ref() {
            None => "absent".to_owned(),
            Some(p) => format!("tag {} contents {}", p.header.tag().0, hex(p.data)),
        };
        format!("{} (parameters {params})", alg.algorithm.to_id_string())
    })
}

/// The kind of a subjectPublicKeyInfo algorithm.
pub(super) fn key_algorithm(alg: &AlgorithmIdentifier<'_>) -> KeyAlgorithm {
    let oid = alg.algorithm.as_bytes();
    if oid == OID_RSA_ENCRYPTION || oid == OID_RSASSA_PSS {
        return KeyAlgorithm::Rsa;
    }
    if oid == OID_EC_PUBLIC_KEY {
        let curve = alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve.as_ref().map(|c| c.as_bytes()) {
            Some(OID_P256) => KeyAlgorithm::EcP256,
            Some(OID_P384) => KeyAlgorithm::EcP384,
            _ => KeyAlgorithm::Other(format!(
                "id-ecPublicKey on curve {}",
                curve.map_or_else(|| "(not a named curve)".to_owned(), |c| c.to_id_string())
            )),
        };
    }
    KeyAlgorithm::Other(alg.algorithm.to_id_string())
}

/// RSASSA-PSS-params (RFC 4055 3.1) naming exactly what `ring`'s RSA_PSS_2048_8192_SHA384
/// verifies: hashAlgorithm SHA-384, maskGenAlgorithm MGF1 with SHA-384, saltLength 48, and
/// trailerField 1 (absent, or present as AMD encodes it). `params` is the SEQUENCE contents.
pub(super) fn pss_is_sha384(params: &[u8]) -> bool {
    let parse = || -> Option<()> {
        let mut r = Reader::new("RSASSA-PSS-params", params);
        // [0] hashAlgorithm: required, the default is SHA-1.
        if !is_sha384_alg_id(der_tlv(&mut r, 0xa0)?) {
            return None;
        }
        // [1] maskGenAlgorithm: MGF1 with SHA-384.
        let mgf = der_only(der_tlv(&mut r, 0xa1)?, TAG_SEQUENCE)?;
        let mut mgf = Reader::new("MGF1", mgf);
        if der_tlv(&mut mgf, TAG_OID)? != OID_MGF1 || !is_sha384_alg_id(mgf.rest()) {
            return None;
        }
        // [2] saltLength: 48 (the default, 20, is not what ring checks).
        if der_only(der_tlv(&mut r, 0xa2)?, TAG_INTEGER)? != [48] {
            return None;
        }
        // [3] trailerField: 1 when present.
        if !r.is_empty() && der_only(der_tlv(&mut r, 0xa3)?, TAG_INTEGER)? != [1] {
            return None;
        }
        r.finish().ok()
    };
    parse().is_some()
}

/// `AlgorithmIdentifier { sha384, NULL or absent }`, as one complete TLV.
pub(super) fn is_sha384_alg_id(tlv: &[u8]) -> bool {
    let Some(body) = der_only(tlv, TAG_SEQUENCE) else {
        return false;
    };
    let mut r = Reader::new("AlgorithmIdentifier", body);
    let oid_ok = der_tlv(&mut r, TAG_OID) == Some(OID_SHA384);
    let params_ok = r.is_empty() || (der_tlv(&mut r, TAG_NULL) == Some(&[]) && r.is_empty());
    oid_ok && params_ok
}
