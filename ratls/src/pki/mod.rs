//! X.509 certificates for the TEE verifiers: parse once, check with typed errors, verify every
//! signature with `ring`.
//!
//! A [`Cert`] is parsed by x509-parser exactly once, in [`Cert::from_der`]; what the checks need
//! (names, validity, basicConstraints, keyUsage, extensions, the signed bytes, the signature and
//! the subject key) is copied out then, so no check re-parses. The checks:
//!
//! | method | what it checks |
//! |--------|----------------|
//! | [`Cert::check_validity`] | `notBefore <= now <= notAfter` |
//! | [`Cert::verify_signed_by`] | outer signatureAlgorithm = TBS signature field; the algorithm is one of [`SignatureAlgorithm`] and fits the issuer's key; the signature verifies |
//! | [`Cert::check_chains_to`] | issuer name = parent's subject name (DER, byte for byte); the parent is a CA (basicConstraints cA) allowed to sign certificates (keyCertSign, when keyUsage is present); neither carries a critical extension we do not process |
//! | [`Cert::check_issued_by`] | [`check_chains_to`](Cert::check_chains_to) and [`verify_signed_by`](Cert::verify_signed_by) |
//! | [`Cert::check_key_usage_digital_signature`] | keyUsage, when present, allows digitalSignature |
//! | [`verify_chain`] | root pinned by SHA-256, every certificate valid, every link issued by the next, pathLenConstraint |
//!
//! Every failure is a [`CertError`] naming the certificate (its subject common name) and carrying
//! what was expected and what was presented.

use core::fmt;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{Class, Oid, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{KeyUsage, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use crate::codec::Reader;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::time::UnixTime;

mod crl;
#[cfg(test)]
mod tests;

pub use self::crl::{Crl, MAX_CRL_LEN};

/// Largest certificate we agree to parse (AMD's RSA-4096 certificates are ~1.6 KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Largest RA-TLS certificate we agree to parse: the evidence extension is capped at 48 KiB and
/// the whole certificate must fit rustls' 64 KiB handshake-message limit.
pub const MAX_RATLS_CERT_LEN: usize = 60 * 1024;
/// Largest certificate input (a DER certificate or a PEM bundle) we agree to look at.
pub const MAX_BUNDLE_LEN: usize = 256 * 1024;
/// Most certificates a PEM bundle may hold.
pub const MAX_BUNDLE_CERTS: usize = 16;

/// Why a certificate, or a link between two, was refused.
///
/// `subject` is always the common name of the certificate the failure is about (its whole
/// subject name when it has no CN).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The input is larger than this module accepts.
    #[error("{what} of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A PEM bundle holds more certificates than this module accepts.
    #[error("PEM bundle of {count} certificates exceeds the limit of {limit}")]
    TooMany { count: usize, limit: usize },
    /// The bytes are not a DER X.509 certificate, or one of its fields is malformed.
    #[error("not a valid DER X.509 certificate: {reason}")]
    Parse { reason: String },
    /// The bytes are not a DER X.509 certificate revocation list.
    #[error("not a valid DER X.509 CRL: {reason}")]
    CrlParse { reason: String },
    /// Bytes follow the certificate's outer SEQUENCE.
    #[error("{count} trailing bytes after the certificate")]
    TrailingBytes { count: usize },
    /// The PEM text is malformed (bad base64, an unterminated or mismatched block, headers).
    #[error("invalid PEM: {reason}")]
    Pem { reason: String },
    /// Another number of certificates than the caller asked for.
    #[error("expected {expected} certificate(s), found {found}")]
    Count { expected: usize, found: usize },
    /// `now` is before notBefore.
    #[error(
        "{subject}: not valid before {not_before}, now is {now} (valid {not_before} .. {not_after})"
    )]
    NotYetValid {
        subject: String,
        not_before: UnixTime,
        not_after: UnixTime,
        now: UnixTime,
    },
    /// `now` is after notAfter.
    #[error("{subject}: expired on {not_after}, now is {now} (valid {not_before} .. {not_after})")]
    Expired {
        subject: String,
        not_before: UnixTime,
        not_after: UnixTime,
        now: UnixTime,
    },
    /// The unsigned outer signatureAlgorithm differs from the signed one in the TBS
    /// (RFC 5280 4.1.1.2).
    #[error(
        "{subject}: signatureAlgorithm differs from the signature field of the TBS certificate"
    )]
    AlgorithmMismatch { subject: String },
    /// The signature algorithm is not one we verify, does not fit the issuer's key, or is not
    /// one the caller allows.
    #[error("{subject}: unsupported signature algorithm {presented} (supported: {supported})")]
    UnsupportedAlgorithm {
        subject: String,
        presented: String,
        supported: String,
    },
    /// The subject public key is of a kind we cannot verify with.
    #[error(
        "{subject}: unsupported public key algorithm {presented} (supported: EC P-256, EC P-384, \
         RSA)"
    )]
    UnsupportedKey { subject: String, presented: String },
    /// The signature does not verify under the issuer's key.
    #[error("{subject}: signature does not verify under the key of {issuer}")]
    BadSignature { subject: String, issuer: String },
    /// The issuer name is not (byte for byte) the subject name of the offered parent.
    #[error(
        "{subject}: issuer name [{issuer_name}] is not the subject name [{parent_subject}] of the \
         certificate offered as its issuer"
    )]
    IssuerMismatch {
        subject: String,
        issuer_name: String,
        parent_subject: String,
    },
    /// A certificate used as an issuer is not a CA (basicConstraints absent or cA FALSE).
    #[error("{subject}: not a CA certificate (basicConstraints cA is not TRUE)")]
    NotACa { subject: String },
    /// keyUsage is present and lacks the bit the use needs.
    #[error("{subject}: key usage does not allow {needed}")]
    KeyUsage {
        subject: String,
        needed: &'static str,
    },
    /// More intermediates below a CA than its pathLenConstraint allows.
    #[error(
        "{subject}: pathLenConstraint {limit} exceeded by {below} intermediate certificate(s) \
         below it"
    )]
    PathLength {
        subject: String,
        limit: u32,
        below: usize,
    },
    /// A critical extension this module does not process (RFC 5280 4.2: must be refused).
    #[error("{subject}: unhandled critical extension {oid}")]
    UnhandledCriticalExtension { subject: String, oid: String },
    /// A chain was given without any issuer.
    #[error("{subject}: no issuer certificate given")]
    MissingIssuer { subject: String },
    /// The root of a chain is not one of the pinned roots.
    #[error("root {subject} (SHA-256 {presented}) is not a pinned root (pinned: {pinned})")]
    UntrustedRoot {
        subject: String,
        presented: String,
        pinned: String,
    },
}

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
    fn ring(self, key: &KeyAlgorithm) -> Option<&'static dyn VerificationAlgorithm> {
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
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    subject: Name,
    issuer: Name,
    not_before: i64,
    not_after: i64,
    /// basicConstraints: `None` when absent, else (cA, pathLenConstraint).
    basic_constraints: Option<(bool, Option<u32>)>,
    key_usage: Option<KeyUsage>,
    extensions: Vec<Extension>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// The signature algorithm, or a description of the unsupported one.
    algorithm: Result<SignatureAlgorithm, String>,
    /// The outer signatureAlgorithm and the TBS signature field are the same DER.
    algorithm_matches_tbs: bool,
    key_algorithm: KeyAlgorithm,
    key: Vec<u8>,
    /// The DER SubjectPublicKeyInfo (what binding claims hash).
    spki: Vec<u8>,
    /// The serial number's big-endian magnitude, leading zero bytes removed (serial 0 is empty).
    serial: Vec<u8>,
}

#[derive(Clone)]
struct Name {
    der: Vec<u8>,
    cn: String,
}

#[derive(Clone)]
struct Extension {
    /// The OID's DER contents (turned into dotted text only for error messages).
    oid: Vec<u8>,
    critical: bool,
    value: Vec<u8>,
}

impl Cert {
    /// Parse one DER certificate, rejecting oversized input, trailing bytes, duplicate
    /// extensions, malformed basicConstraints / keyUsage and bit strings with unused bits.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        Self::from_der_with_limit(der, MAX_CERT_LEN)
    }

    /// [`from_der`](Self::from_der) with another size cap, for certificates that legitimately
    /// carry more than the AMD/Intel ones: RA-TLS certificates with evidence inside (rustls
    /// refuses handshake messages over 64 KiB, and the strict framing walk reads lengths up to
    /// 65535, so a larger `limit` refuses such certificates as malformed).
    pub fn from_der_with_limit(der: &[u8], limit: usize) -> Result<Self, CertError> {
        if der.len() > limit {
            return Err(CertError::TooLarge {
                what: "certificate",
                size: der.len(),
                limit,
            });
        }
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(CertError::TrailingBytes { count: rest.len() });
        }
        let framing = Framing::of(der)
            .filter(|f| f.tbs == cert.tbs_certificate.as_ref())
            .ok_or_else(|| CertError::Parse {
                reason: "not strict DER: expected Certificate ::= SEQUENCE { TBSCertificate \
                         SEQUENCE { [0] version, serial, AlgorithmIdentifier, .. }, \
                         AlgorithmIdentifier, BIT STRING }"
                    .into(),
            })?;
        Self::extract(der, &cert, &framing)
    }

    /// Parse one certificate given as DER or PEM.
    pub fn from_der_or_pem(bytes: &[u8]) -> Result<Self, CertError> {
        let mut all = Self::many_from_der_or_pem(bytes)?;
        let found = all.len();
        match all.pop() {
            Some(cert) if found == 1 => Ok(cert),
            _ => Err(CertError::Count { expected: 1, found }),
        }
    }

    /// Parse a single DER certificate, or every CERTIFICATE block of a PEM bundle.
    ///
    /// PEM is recognised by a `-----BEGIN ` line. Text around the blocks is ignored (RFC 7468
    /// explanatory text), as are trailing NUL bytes (PEM chains embedded in quotes end with
    /// one) and blocks of other types; an unterminated or mismatched block, a block with
    /// headers, bad base64, or a certificate with trailing bytes is an error.
    pub fn many_from_der_or_pem(bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(CertError::TooLarge {
                what: "certificate input",
                size: bytes.len(),
                limit: MAX_BUNDLE_LEN,
            });
        }
        if !bytes
            .windows(11)
            .any(|w| w == b"-----BEGIN ")
        {
            return Self::from_der(bytes).map(|c| vec![c]);
        }
        let mut text = bytes;
        while let Some(head) = text.strip_suffix(&[0]) {
            text = head;
        }
        let blocks = pem_blocks(text)?;
        let certs: Vec<&pem::Pem> = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .collect();
        if certs.len() > MAX_BUNDLE_CERTS {
            return Err(CertError::TooMany {
                count: certs.len(),
                limit: MAX_BUNDLE_CERTS,
            });
        }
        if certs.is_empty() {
            return Err(CertError::Count {
                expected: 1,
                found: 0,
            });
        }
        certs
            .into_iter()
            .map(|b| Self::from_der(b.contents()))
            .collect()
    }

    fn extract(
        der: &[u8],
        cert: &X509Certificate<'_>,
        framing: &Framing<'_>,
    ) -> Result<Self, CertError> {
        let tbs = &cert.tbs_certificate;
        let subject = Name::of(tbs.subject());
        let malformed = |reason: String| CertError::Parse {
            reason: format!("{}: {reason}", subject.cn),
        };

        let mut extensions = Vec::with_capacity(tbs.extensions().len());
        let mut basic_constraints = None;
        let mut key_usage = None;
        for (i, ext) in tbs.extensions().iter().enumerate() {
            let oid = ext.oid.as_bytes();
            let duplicate = tbs
                .extensions()
                .iter()
                .take(i)
                .any(|e| e.oid == ext.oid);
            if duplicate {
                return Err(malformed(format!(
                    "duplicate extension {}",
                    ext.oid.to_id_string()
                )));
            }
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    basic_constraints = Some((bc.ca, bc.path_len_constraint));
                }
                ParsedExtension::KeyUsage(ku) => key_usage = Some(*ku),
                _ if oid == OID_BASIC_CONSTRAINTS || oid == OID_KEY_USAGE => {
                    return Err(malformed(format!(
                        "malformed extension {}",
                        ext.oid.to_id_string()
                    )));
                }
                _ => {}
            }
            extensions.push(Extension {
                oid: oid.to_vec(),
                critical: ext.critical,
                value: ext.value.to_vec(),
            });
        }

        if cert.signature_value.unused_bits != 0 {
            return Err(malformed("signature BIT STRING has unused bits".into()));
        }
        let spki = cert.public_key();
        if spki.subject_public_key.unused_bits != 0 {
            return Err(malformed(
                "subjectPublicKey BIT STRING has unused bits".into(),
            ));
        }

        Ok(Self {
            der: der.to_vec(),
            issuer: Name::of(tbs.issuer()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            basic_constraints,
            key_usage,
            extensions,
            tbs: framing.tbs.to_vec(),
            signature: cert.signature_value.data.to_vec(),
            algorithm: signature_algorithm(&cert.signature_algorithm),
            algorithm_matches_tbs: framing.algorithm == framing.tbs_algorithm,
            key_algorithm: key_algorithm(&spki.algorithm),
            key: spki.subject_public_key.data.to_vec(),
            spki: spki.raw.to_vec(),
            serial: crl::serial_magnitude(cert.raw_serial()),
            subject,
        })
    }

    /// The serial number as a big-endian magnitude without leading zero bytes (empty for the
    /// serial 0 that AMD's Milan VCEKs carry).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The serial number in lower-case hex (`0` for serial 0).
    pub fn serial_hex(&self) -> String {
        crl::serial_text(&self.serial)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (dst, src) in out
            .iter_mut()
            .zip(HashAlg::Sha256.digest(&self.der))
        {
            *dst = src;
        }
        out
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn fingerprint(&self) -> String {
        hex(self.sha256())
    }

    /// The subject's common name, or the whole subject when there is no CN.
    pub fn subject_cn(&self) -> String {
        self.subject.cn.clone()
    }

    /// The issuer's common name, or the whole issuer name when there is no CN.
    pub fn issuer_cn(&self) -> String {
        self.issuer.cn.clone()
    }

    /// The subject name as text (`CN=…, O=…`).
    pub fn subject_name(&self) -> String {
        self.subject.text()
    }

    /// The issuer name as text.
    pub fn issuer_name(&self) -> String {
        self.issuer.text()
    }

    /// Whether the issuer name equals the subject name.
    pub fn is_self_issued(&self) -> bool {
        self.issuer.der == self.subject.der
    }

    /// basicConstraints cA.
    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints, Some((true, _)))
    }

    /// basicConstraints pathLenConstraint, on a CA.
    pub fn path_len_constraint(&self) -> Option<u32> {
        match self.basic_constraints {
            Some((true, limit)) => limit,
            _ => None,
        }
    }

    /// The signature algorithm of this certificate.
    pub fn signature_algorithm(&self) -> Result<SignatureAlgorithm, CertError> {
        self.algorithm
            .clone()
            .map_err(|presented| CertError::UnsupportedAlgorithm {
                subject: self.subject.cn.clone(),
                presented,
                supported: supported_list(&SignatureAlgorithm::ALL),
            })
    }

    /// The signature algorithm, refused unless it is one of `allowed`.
    pub fn check_signature_algorithm(
        &self,
        allowed: &[SignatureAlgorithm],
    ) -> Result<SignatureAlgorithm, CertError> {
        let algorithm = self.signature_algorithm()?;
        if allowed.contains(&algorithm) {
            return Ok(algorithm);
        }
        Err(CertError::UnsupportedAlgorithm {
            subject: self.subject.cn.clone(),
            presented: algorithm.name().to_owned(),
            supported: supported_list(allowed),
        })
    }

    /// The kind of the subject public key.
    pub fn key_algorithm(&self) -> &KeyAlgorithm {
        &self.key_algorithm
    }

    /// The subject public key bytes (RSAPublicKey DER for RSA, the SEC1 point for EC), when
    /// the key is of a kind this module knows ([`KeyAlgorithm::Other`] is refused).
    pub fn subject_public_key(&self) -> Result<&[u8], CertError> {
        match &self.key_algorithm {
            KeyAlgorithm::Other(presented) => Err(CertError::UnsupportedKey {
                subject: self.subject.cn.clone(),
                presented: presented.clone(),
            }),
            _ => Ok(&self.key),
        }
    }

    /// The raw value (the extnValue contents) of an extension by dotted OID.
    pub fn extension_value(&self, oid: &str) -> Option<&[u8]> {
        self.extension(oid)
            .map(|(_, value)| value)
    }

    /// An extension by dotted OID: whether it is marked critical, and its raw value (the
    /// extnValue contents).
    pub fn extension(&self, oid: &str) -> Option<(bool, &[u8])> {
        let oid = oid_der(oid)?;
        self.extensions
            .iter()
            .find(|e| e.oid == oid)
            .map(|e| (e.critical, e.value.as_slice()))
    }

    /// The dotted OIDs of critical extensions other than those in `handled` and the ones this
    /// module processes itself (basicConstraints, keyUsage).
    pub fn unhandled_critical_extensions(&self, handled: &[&str]) -> Vec<String> {
        let handled: Vec<Vec<u8>> = handled
            .iter()
            .filter_map(|o| oid_der(o))
            .collect();
        self.extensions
            .iter()
            .filter(|e| {
                e.critical
                    && !HANDLED_CRITICAL.contains(&e.oid.as_slice())
                    && !handled.contains(&e.oid)
            })
            .map(|e| Oid::new(e.oid.as_slice().into()).to_id_string())
            .collect()
    }

    /// The validity window (notBefore, notAfter), in seconds since the epoch (clamped at 0).
    pub fn validity(&self) -> (UnixTime, UnixTime) {
        let t = |v: i64| UnixTime::from_secs(u64::try_from(v).unwrap_or(0));
        (t(self.not_before), t(self.not_after))
    }

    /// Whether `now` lies inside the validity window (both ends inclusive).
    pub fn check_validity(&self, now: UnixTime) -> Result<(), CertError> {
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let window = |t: i64| UnixTime::from_secs(u64::try_from(t).unwrap_or(0));
        if at < self.not_before {
            return Err(CertError::NotYetValid {
                subject: self.subject.cn.clone(),
                not_before: window(self.not_before),
                not_after: window(self.not_after),
                now,
            });
        }
        if at > self.not_after {
            return Err(CertError::Expired {
                subject: self.subject.cn.clone(),
                not_before: window(self.not_before),
                not_after: window(self.not_after),
                now,
            });
        }
        Ok(())
    }

    /// Verify that `issuer`'s key signed this certificate.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        // RFC 5280 4.1.1.2: the unsigned outer algorithm must equal the signed one in the TBS.
        if !self.algorithm_matches_tbs {
            return Err(CertError::AlgorithmMismatch {
                subject: self.subject.cn.clone(),
            });
        }
        let algorithm = self.signature_algorithm()?;
        let Some(ring_alg) = algorithm.ring(&issuer.key_algorithm) else {
            return Err(CertError::UnsupportedAlgorithm {
                subject: self.subject.cn.clone(),
                presented: format!(
                    "{algorithm} by {}'s {} key",
                    issuer.subject.cn, issuer.key_algorithm
                ),
                supported: supported_list(&SignatureAlgorithm::ALL),
            });
        };
        UnparsedPublicKey::new(ring_alg, &issuer.key)
            .verify(&self.tbs, &self.signature)
            .map_err(|_| CertError::BadSignature {
                subject: self.subject.cn.clone(),
                issuer: issuer.subject.cn.clone(),
            })
    }

    /// The structural half of [`check_issued_by`](Self::check_issued_by), without the
    /// signature: this certificate's issuer name is `parent`'s subject name (DER, byte for
    /// byte), `parent` may sign certificates, and neither has an unhandled critical extension.
    pub fn check_chains_to(&self, parent: &Cert) -> Result<(), CertError> {
        self.check_critical_extensions()?;
        parent.check_critical_extensions()?;
        if self.issuer.der != parent.subject.der {
            return Err(CertError::IssuerMismatch {
                subject: self.subject.cn.clone(),
                issuer_name: self.issuer.text(),
                parent_subject: parent.subject.text(),
            });
        }
        parent.check_may_sign_certificates()
    }

    /// `parent` issued this certificate: [`check_chains_to`](Self::check_chains_to), then
    /// [`verify_signed_by`](Self::verify_signed_by). A self-signed root passes itself.
    pub fn check_issued_by(&self, parent: &Cert) -> Result<(), CertError> {
        self.check_chains_to(parent)?;
        self.verify_signed_by(parent)
    }

    /// keyUsage, when present, includes digitalSignature (for a key that signs evidence).
    pub fn check_key_usage_digital_signature(&self) -> Result<(), CertError> {
        match self.key_usage {
            Some(ku) if !ku.digital_signature() => Err(CertError::KeyUsage {
                subject: self.subject.cn.clone(),
                needed: "digitalSignature",
            }),
            _ => Ok(()),
        }
    }

    /// Every critical extension is one this module processes (basicConstraints, keyUsage).
    pub fn check_critical_extensions(&self) -> Result<(), CertError> {
        match self
            .extensions
            .iter()
            .find(|e| e.critical && !HANDLED_CRITICAL.contains(&e.oid.as_slice()))
        {
            Some(e) => Err(CertError::UnhandledCriticalExtension {
                subject: self.subject.cn.clone(),
                oid: Oid::new(e.oid.as_slice().into()).to_id_string(),
            }),
            None => Ok(()),
        }
    }

    /// basicConstraints cA is TRUE and keyUsage, when present, includes keyCertSign.
    fn check_may_sign_certificates(&self) -> Result<(), CertError> {
        if !self.is_ca() {
            return Err(CertError::NotACa {
                subject: self.subject.cn.clone(),
            });
        }
        match self.key_usage {
            Some(ku) if !ku.key_cert_sign() => Err(CertError::KeyUsage {
                subject: self.subject.cn.clone(),
                needed: "keyCertSign",
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("subject_cn", &self.subject.cn)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Verify `leaf ← issuers[0] ← … ← issuers[last]`, where the last issuer is the root and
/// must have one of the `pinned_root_sha256` DER hashes, at time `now`. Returns the root's
/// SHA-256.
///
/// In order: the root is pinned; every certificate (root included) is valid at `now`; every
/// link passes [`Cert::check_chains_to`] and the pathLenConstraint of every issuer holds
/// (self-issued intermediates not counted, RFC 5280 6.1.4); then every signature verifies. The
/// root's self-signature is not checked: its exact bytes are pinned.
pub fn verify_chain(
    leaf: &Cert,
    issuers: &[Cert],
    pinned_root_sha256: &[[u8; 32]],
    now: UnixTime,
) -> Result<[u8; 32], CertError> {
    let Some(root) = issuers.last() else {
        return Err(CertError::MissingIssuer {
            subject: leaf.subject.cn.clone(),
        });
    };
    let root_sha256 = root.sha256();
    if !pinned_root_sha256.contains(&root_sha256) {
        return Err(CertError::UntrustedRoot {
            subject: root.subject.cn.clone(),
            presented: hex(root_sha256),
            pinned: pinned_root_sha256
                .iter()
                .map(hex)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let chain = || core::iter::once(leaf).chain(issuers);
    for cert in chain() {
        cert.check_validity(now)?;
    }
    for (child, parent) in chain().zip(issuers) {
        child.check_chains_to(parent)?;
    }
    for (depth, parent) in issuers.iter().enumerate() {
        let Some(limit) = parent.path_len_constraint() else {
            continue;
        };
        let below = issuers
            .iter()
            .take(depth)
            .filter(|c| !c.is_self_issued())
            .count();
        if below > usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(CertError::PathLength {
                subject: parent.subject.cn.clone(),
                limit,
                below,
            });
        }
    }
    for (child, parent) in chain().zip(issuers) {
        child.verify_signed_by(parent)?;
    }
    Ok(root_sha256)
}

impl Name {
    fn of(name: &X509Name<'_>) -> Self {
        let cn = name
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| name.to_string(), str::to_owned);
        Self {
            der: name.as_raw().to_vec(),
            cn,
        }
    }

    /// The name as text, decoded again from its DER (only error paths need it).
    fn text(&self) -> String {
        match X509Name::from_der(&self.der) {
            Ok((_, name)) => name.to_string(),
            Err(_) => format!("DER {}", hex(&self.der)),
        }
    }
}

/// The raw parts of `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
/// signatureValue }`, read with strict DER framing. x509-parser is lenient with the unsigned
/// outer layer (it accepts, for one, an outer SEQUENCE tagged in another class), so this walk
/// makes sure no byte outside the signed TBS can change without the certificate being refused:
/// the outer algorithm must then equal the TBS one byte for byte, and the signature verify.
struct Framing<'a> {
    /// The TBSCertificate TLV: the signed bytes.
    tbs: &'a [u8],
    /// The outer signatureAlgorithm TLV.
    algorithm: &'a [u8],
    /// The TBSCertificate signature TLV.
    tbs_algorithm: &'a [u8],
}

impl<'a> Framing<'a> {
    fn of(der: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new("Certificate", der);
        let (_, body) = der_tlv_raw(&mut r, TAG_SEQUENCE)?;
        r.finish().ok()?;
        let mut r = Reader::new("Certificate", body);
        let (tbs, tbs_body) = der_tlv_raw(&mut r, TAG_SEQUENCE)?;
        let (algorithm, _) = der_tlv_raw(&mut r, TAG_SEQUENCE)?;
        let signature = der_tlv(&mut r, TAG_BIT_STRING)?;
        r.finish().ok()?;
        if signature.first() != Some(&0) {
            return None;
        }
        let mut t = Reader::new("TBSCertificate", tbs_body);
        if t.peek(1, "tag").ok()? == [TAG_VERSION] {
            der_tlv(&mut t, TAG_VERSION)?;
        }
        der_tlv(&mut t, TAG_INTEGER)?;
        let (tbs_algorithm, _) = der_tlv_raw(&mut t, TAG_SEQUENCE)?;
        Some(Self {
            tbs,
            algorithm,
            tbs_algorithm,
        })
    }
}

/// The critical extensions this module processes.
const HANDLED_CRITICAL: [&[u8]; 2] = [OID_BASIC_CONSTRAINTS, OID_KEY_USAGE];

// DER contents of the OIDs we compare.
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

fn supported_list(algorithms: &[SignatureAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters of an AlgorithmIdentifier, as far as the algorithms we know care.
enum Params<'a> {
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
fn signature_algorithm(alg: &AlgorithmIdentifier<'_>) -> Result<SignatureAlgorithm, String> {
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
fn key_algorithm(alg: &AlgorithmIdentifier<'_>) -> KeyAlgorithm {
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
fn pss_is_sha384(params: &[u8]) -> bool {
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
fn is_sha384_alg_id(tlv: &[u8]) -> bool {
    let Some(body) = der_only(tlv, TAG_SEQUENCE) else {
        return false;
    };
    let mut r = Reader::new("AlgorithmIdentifier", body);
    let oid_ok = der_tlv(&mut r, TAG_OID) == Some(OID_SHA384);
    let params_ok = r.is_empty() || (der_tlv(&mut r, TAG_NULL) == Some(&[]) && r.is_empty());
    oid_ok && params_ok
}

/// The contents of `bytes` when they are exactly one TLV with this tag.
fn der_only(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new("DER value", bytes);
    let contents = der_tlv(&mut r, tag)?;
    r.finish().ok()?;
    Some(contents)
}

/// The contents of one DER TLV with the given tag.
fn der_tlv<'a>(r: &mut Reader<'a>, tag: u8) -> Option<&'a [u8]> {
    der_tlv_raw(r, tag).map(|(_, contents)| contents)
}

/// One DER TLV with the given tag and a minimally encoded definite length below 64 KiB
/// (certificates are capped at [`MAX_CERT_LEN`]): the whole TLV and its contents.
fn der_tlv_raw<'a>(r: &mut Reader<'a>, tag: u8) -> Option<(&'a [u8], &'a [u8])> {
    let mut header = r.clone();
    if header.u8("tag").ok()? != tag {
        return None;
    }
    let len = match header.u8("length").ok()? {
        n if n < 0x80 => usize::from(n),
        0x81 => match header.u8("length").ok()? {
            n if n >= 0x80 => usize::from(n),
            _ => return None,
        },
        0x82 => match header.u16_be("length").ok()? {
            n if n >= 0x100 => usize::from(n),
            _ => return None,
        },
        _ => return None,
    };
    let header_len = header
        .offset()
        .checked_sub(r.offset())?;
    let tlv = r
        .take(header_len.checked_add(len)?, "value")
        .ok()?;
    Some((tlv, tlv.get(header_len..)?))
}

/// The DER contents of a dotted OID (`1.2.840.10045.4.3.2`), or `None` if it is not one.
fn oid_der(dotted: &str) -> Option<Vec<u8>> {
    let mut arcs = dotted
        .split('.')
        .map(|a| a.parse::<u64>().ok());
    let (first, second) = (arcs.next()??, arcs.next()??);
    if first > 2 || (first < 2 && second > 39) {
        return None;
    }
    let mut out = Vec::with_capacity(dotted.len());
    for arc in core::iter::once(
        first
            .checked_mul(40)?
            .checked_add(second),
    )
    .chain(arcs)
    {
        let arc = arc?;
        let groups = (1..10)
            .take_while(|i| arc >> (7 * i) != 0)
            .count();
        for i in (0..=groups).rev() {
            let byte = u8::try_from((arc >> (7 * i)) & 0x7f).ok()?;
            out.push(if i == 0 { byte } else { byte | 0x80 });
        }
    }
    Some(out)
}

/// How many `-----BEGIN ` and `-----END ` markers `text` holds.
fn pem_markers(text: &[u8]) -> (usize, usize) {
    let (mut begins, mut ends) = (0, 0);
    let mut rest = text;
    // Look at dashes only: PEM text is mostly base64.
    while let Some(at) = rest.iter().position(|&b| b == b'-') {
        let tail = rest.get(at..).unwrap_or_default();
        if tail.starts_with(b"-----BEGIN ") {
            begins += 1;
        } else if tail.starts_with(b"-----END ") {
            ends += 1;
        }
        rest = tail.get(1..).unwrap_or_default();
    }
    (begins, ends)
}

/// The PEM blocks of `text`, refusing any `-----BEGIN`/`-----END` line that does not belong to
/// a complete block (the `pem` crate silently drops an unterminated block) and blocks with
/// RFC 1421 headers (never valid for certificates, RFC 7468 2).
fn pem_blocks(text: &[u8]) -> Result<Vec<pem::Pem>, CertError> {
    let blocks = pem::parse_many(text).map_err(|e| CertError::Pem {
        reason: e.to_string(),
    })?;
    let (begins, ends) = pem_markers(text);
    if begins != blocks.len() || ends != blocks.len() {
        return Err(CertError::Pem {
            reason: format!(
                "{begins} BEGIN and {ends} END lines but {} complete blocks",
                blocks.len()
            ),
        });
    }
    if let Some(block) = blocks
        .iter()
        .find(|b| b.headers().iter().next().is_some())
    {
        return Err(CertError::Pem {
            reason: format!("{} block with headers", block.tag()),
        });
    }
    Ok(blocks)
}
