//! X.509 certificate helpers shared by the TEE verifiers: parse, check a signature against an
//! issuer's key, check validity windows. Parsing is x509-parser; every signature goes through
//! `ring`.

use core::fmt;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    Oid, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::prelude::FromDer;

use crate::time::UnixTime;

/// Largest certificate we agree to parse (AMD's RSA-4096 certificates are ~1.4 KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// A parsed certificate that keeps its DER.
pub struct Cert {
    der: Vec<u8>,
    // Invariant: `parsed` borrows from nothing (x509-parser borrows the input), so we re-parse on
    // demand from `der`, which is cheap next to a signature check, instead of self-referencing.
}

/// Why a certificate step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(pub String);

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Cert {
    /// Parse DER (rejecting trailing bytes and oversized input).
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CERT_LEN {
            return Err(CertError(format!(
                "certificate of {} bytes exceeds the {MAX_CERT_LEN}-byte limit",
                der.len()
            )));
        }
        let (rest, _) = X509Certificate::from_der(der)
            .map_err(|e| CertError(format!("not a DER X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(CertError(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        Ok(Self { der: der.to_vec() })
    }

    /// Parse one certificate given as DER or PEM.
    pub fn from_der_or_pem(bytes: &[u8]) -> Result<Self, CertError> {
        let mut all = Self::many_from_der_or_pem(bytes)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(CertError(format!("expected one certificate, found {n}"))),
        }
    }

    /// Parse every certificate of a PEM bundle, or a single DER certificate.
    pub fn many_from_der_or_pem(bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        let is_pem = bytes
            .windows(11)
            .any(|w| w == b"-----BEGIN ");
        if !is_pem {
            return Self::from_der(bytes).map(|c| vec![c]);
        }
        // A NUL byte may terminate PEM chains embedded in quotes.
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(bytes.len());
        let text = bytes.get(..end).unwrap_or_default();
        let blocks = pem::parse_many(text).map_err(|e| CertError(format!("invalid PEM: {e}")))?;
        let certs: Vec<Self> = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Self::from_der(b.contents()))
            .collect::<Result<_, _>>()?;
        if certs.is_empty() {
            return Err(CertError("no CERTIFICATE block in PEM input".into()));
        }
        Ok(certs)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn fingerprint(&self) -> String {
        crate::hexfmt::hex(crate::digest::HashAlg::Sha256.digest(&self.der))
    }

    /// Run `f` over the parsed certificate.
    pub fn with<R>(&self, f: impl FnOnce(&X509Certificate<'_>) -> R) -> Result<R, CertError> {
        X509Certificate::from_der(&self.der)
            .map(|(_, cert)| f(&cert))
            .map_err(|e| CertError(format!("certificate no longer parses: {e}")))
    }

    /// The subject's common name, or the whole subject when there is no CN.
    pub fn subject_cn(&self) -> String {
        self.with(|c| common_name(c.subject()))
            .unwrap_or_default()
    }

    /// The issuer's common name.
    pub fn issuer_cn(&self) -> String {
        self.with(|c| common_name(c.issuer()))
            .unwrap_or_default()
    }

    /// Whether `now` lies inside the validity window; the error names the window.
    pub fn check_validity(&self, now: UnixTime) -> Result<(), CertError> {
        let (not_before, not_after) = self.with(|c| {
            (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            )
        })?;
        let now_i = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now_i < not_before || now_i > not_after {
            return Err(CertError(format!(
                "{} valid {}..{}, now {now}",
                self.subject_cn(),
                fmt_ts(not_before),
                fmt_ts(not_after)
            )));
        }
        Ok(())
    }

    /// Verify that `issuer`'s key signed this certificate.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let (tbs, outer_matches_tbs, sig_oid, sig_params_ok, sig) = self.with(|c| {
            (
                c.tbs_certificate.as_ref().to_vec(),
                c.signature_algorithm == c.tbs_certificate.signature,
                c.signature_algorithm
                    .algorithm
                    .clone()
                    .to_owned(),
                pss_params_are_sha384(c),
                c.signature_value.data.to_vec(),
            )
        })?;
        // RFC 5280 4.1.1.2: the unsigned outer algorithm must equal the signed one in the TBS.
        if !outer_matches_tbs {
            return Err(CertError(format!(
                "{}: signatureAlgorithm differs from the TBS signature field",
                self.subject_cn()
            )));
        }
        let (key_alg_oid, spk) = issuer.with(|c| {
            (
                c.public_key()
                    .algorithm
                    .algorithm
                    .to_owned(),
                c.public_key()
                    .subject_public_key
                    .data
                    .to_vec(),
            )
        })?;
        let alg = signature_algorithm(&sig_oid, sig_params_ok, &key_alg_oid, spk.len())?;
        UnparsedPublicKey::new(alg, &spk)
            .verify(&tbs, &sig)
            .map_err(|_| {
                CertError(format!(
                    "signature of {} does not verify under the key of {}",
                    self.subject_cn(),
                    issuer.subject_cn()
                ))
            })
    }

    /// The subject public key bytes (RSAPublicKey DER for RSA, the SEC1 point for EC).
    pub fn subject_public_key(&self) -> Result<Vec<u8>, CertError> {
        self.with(|c| {
            c.public_key()
                .subject_public_key
                .data
                .to_vec()
        })
    }

    /// The raw value of a non-critical extension by dotted OID.
    pub fn extension_value(&self, oid: &str) -> Result<Option<Vec<u8>>, CertError> {
        self.with(|c| {
            c.extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == oid)
                .map(|e| e.value.to_vec())
        })
    }
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("subject_cn", &self.subject_cn())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_owned))
        .unwrap_or_else(|| name.to_string())
}

fn fmt_ts(secs: i64) -> String {
    u64::try_from(secs)
        .map(|s| UnixTime::from_secs(s).to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// RSASSA-PSS parameters must name SHA-384 (AMD's chain); we check the hash OID appears and
/// let ring enforce salt length = hash length and MGF1 with the same hash.
fn pss_params_are_sha384(cert: &X509Certificate<'_>) -> bool {
    const SHA384_OID_DER: &[u8] = &[
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
    ];
    cert.signature_algorithm
        .parameters
        .as_ref()
        .map(|p| {
            p.data
                .windows(SHA384_OID_DER.len())
                .any(|w| w == SHA384_OID_DER)
        })
        .unwrap_or(false)
}

fn signature_algorithm(
    sig: &Oid<'_>,
    pss_sha384: bool,
    key: &Oid<'_>,
    key_len: usize,
) -> Result<&'static dyn VerificationAlgorithm, CertError> {
    let key = key.to_id_string();
    // The curve follows from the uncompressed point's size: 65 bytes P-256, 97 bytes P-384.
    let p256 = key == OID_EC_PUBLIC_KEY && key_len == 65;
    let p384 = key == OID_EC_PUBLIC_KEY && key_len == 97;
    let rsa = key == OID_RSA_ENCRYPTION || key == OID_RSASSA_PSS;
    let alg: Option<&'static dyn VerificationAlgorithm> = if *sig == OID_PKCS1_RSASSAPSS && rsa {
        pss_sha384.then_some(&signature::RSA_PSS_2048_8192_SHA384)
    } else if *sig == OID_PKCS1_SHA256WITHRSA && rsa {
        Some(&signature::RSA_PKCS1_2048_8192_SHA256)
    } else if *sig == OID_PKCS1_SHA384WITHRSA && rsa {
        Some(&signature::RSA_PKCS1_2048_8192_SHA384)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA256 && p256 {
        Some(&signature::ECDSA_P256_SHA256_ASN1)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA256 && p384 {
        Some(&signature::ECDSA_P384_SHA256_ASN1)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA384 && p256 {
        Some(&signature::ECDSA_P256_SHA384_ASN1)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA384 && p384 {
        Some(&signature::ECDSA_P384_SHA384_ASN1)
    } else {
        None
    };
    alg.ok_or_else(|| {
        CertError(format!(
            "unsupported signature algorithm {} with key algorithm {key}{}",
            sig.to_id_string(),
            if *sig == OID_PKCS1_RSASSAPSS {
                " (RSASSA-PSS parameters must be SHA-384)"
            } else {
                ""
            }
        ))
    })
}
