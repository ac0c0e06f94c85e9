//! A parsed certificate and its accessors.

use core::fmt;

use x509_parser::asn1_rs::Oid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{KeyUsage, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::codec::Reader;
use crate::digest::HashAlg;
use crate::hexfmt::hex;

use super::algorithm::*;
use super::der::*;
use super::{CertError, MAX_BUNDLE_CERTS, MAX_BUNDLE_LEN, MAX_CERT_LEN};

#[derive(Clone)]
pub struct Cert {
    pub(super) der: Vec<u8>,
    pub(super) subject: Name,
    pub(super) issuer: Name,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// basicConstraints: `None` when absent, else (cA, pathLenConstraint).
    pub(super) basic_constraints: Option<(bool, Option<u32>)>,
    pub(super) key_usage: Option<KeyUsage>,
    pub(super) extensions: Vec<Extension>,
    pub(super) tbs: Vec<u8>,
    pub(super) signature: Vec<u8>,
    /// The signature algorithm, or a description of the unsupported one.
    pub(super) algorithm: Result<SignatureAlgorithm, String>,
    /// The outer signatureAlgorithm and the TBS signature field are the same DER.
    pub(super) algorithm_matches_tbs: bool,
    pub(super) key_algorithm: KeyAlgorithm,
    pub(super) key: Vec<u8>,
    /// The DER SubjectPublicKeyInfo (what binding claims hash).
    pub(super) spki: Vec<u8>,
    /// The serial number's big-endian magnitude, leading zero bytes removed (serial 0 is empty).
    pub(super) serial: Vec<u8>,
}

#[derive(Clone)]
pub(super) struct Name {
    pub(super) der: Vec<u8>,
    pub(super) cn: String,
}

#[derive(Clone)]
pub(super) struct Extension {
    /// The OID's DER contents (turned into dotted text only for error messages).
    pub(super) oid: Vec<u8>,
    pub(super) critical: bool,
    pub(super) value: Vec<u8>,
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
            serial: serial_magnitude(cert.raw_serial()),
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
        serial_text(&self.serial)
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
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("subject_cn", &self.subject.cn)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl Name {
    pub(super) fn of(name: &X509Name<'_>) -> Self {
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
    pub(super) fn text(&self) -> String {
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
pub(super) const HANDLED_CRITICAL: [&[u8]; 2] = [OID_BASIC_CONSTRAINTS, OID_KEY_USAGE];

// DER contents of the OIDs we compare.
pub(super) const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
pub(super) const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
