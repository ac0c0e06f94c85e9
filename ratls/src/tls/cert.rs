//! RA-TLS certificates: an evidence bundle bound to the certificate's own key, carried in a
//! non-critical id-pe-cmw extension (1.3.6.1.5.5.7.1.35, draft-ietf-rats-msg-wrap).
//!
//! The extension's value is the CMW's `cbor` alternative: a DER OCTET STRING holding the
//! CBOR-array CMW of the bundle (`docs/wire-format.md`). The bundle's binding claims carry
//! SHA-256 of the certificate's SubjectPublicKeyInfo and the issue time; the TEE report_data and
//! the TPM qualifyingData hash them, so the evidence cannot be moved to a certificate with
//! another key. The IMA log does not travel in the certificate: the bundle carries the length
//! of the log the quote covers and its SHA-256.
//!
//! [`read_evidence`] is for verifiers; [`issue`] (feature `issue`) for attesters.

use crate::bundle::MAX_CERT_BUNDLE_LEN;
use crate::pki::{Cert, CertError, MAX_RATLS_CERT_LEN};
use crate::verdict::Check;
use crate::verdict::Step;

/// id-pe-cmw: the X.509 extension for conceptual message wrappers.
pub const CMW_EXTENSION_OID: &str = "1.3.6.1.5.5.7.1.35";

/// The same OID as arcs (for certificate builders).
pub const CMW_EXTENSION_OID_ARCS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 35];

/// The evidence a certificate carries, with the certificate facts the verifier needs.
#[derive(Debug)]
pub struct CertEvidence {
    pub cert: Cert,
    /// The CMW bytes (the bundle), taken out of the extension's OCTET STRING.
    pub cmw: Vec<u8>,
}

/// Why a certificate carries no usable evidence: each names the step it fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertEvidenceError {
    #[error("cert.parse: {0}")]
    Parse(#[from] CertError),
    #[error(
        "cert.evidence: no id-pe-cmw ({CMW_EXTENSION_OID}) extension in the certificate{}",
        foreign_hint(.foreign)
    )]
    Missing { foreign: Vec<String> },
    #[error(
        "cert.extension.critical: the evidence extension is marked critical (RA-TLS evidence must \
         be non-critical so that plain TLS clients accept the certificate)"
    )]
    Critical,
    #[error(
        "cert.extension.size: evidence extension of {size} bytes exceeds the {limit}-byte cap"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("cert.extension.format: {0}")]
    Format(String),
    #[error("cert.critical: unhandled critical extension(s) {0:?}")]
    UnhandledCritical(Vec<String>),
}

fn foreign_hint(foreign: &[String]) -> String {
    if foreign.is_empty() {
        String::new()
    } else {
        format!(
            " (it carries other RA-TLS formats: {}; see ratls::foreign)",
            foreign.join(", ")
        )
    }
}

impl CertEvidenceError {
    /// The step this error fails.
    pub fn step(&self) -> Step {
        match self {
            Self::Parse(_) => Step::CERT_PARSE,
            Self::Missing { .. } => Step::CERT_EVIDENCE,
            Self::Critical => Step::CERT_EXTENSION_CRITICAL,
            Self::TooLarge { .. } => Step::CERT_EXTENSION_SIZE,
            Self::Format(_) => Step::CERT_EXTENSION_FORMAT,
            Self::UnhandledCritical(_) => Step::CERT_CRITICAL,
        }
    }

    /// This error as a failed check.
    pub fn to_check(&self) -> Check {
        let expected = match self {
            Self::Parse(_) => "a DER X.509 certificate".to_owned(),
            Self::Missing { .. } => format!("an id-pe-cmw ({CMW_EXTENSION_OID}) extension"),
            Self::Critical => "a non-critical evidence extension".to_owned(),
            Self::TooLarge { limit, .. } => format!("at most {limit} bytes"),
            Self::Format(_) => "OCTET STRING { CMW (CBOR) }".to_owned(),
            Self::UnhandledCritical(_) => "no critical extension we do not process".to_owned(),
        };
        let presented = match self {
            Self::Parse(_) => "unparseable".to_owned(),
            Self::Missing { .. } => "none".to_owned(),
            Self::Critical => "critical".to_owned(),
            Self::TooLarge { size, .. } => format!("{size} bytes"),
            Self::Format(_) => "malformed".to_owned(),
            Self::UnhandledCritical(oids) => oids.join(", "),
        };
        Check::fail(self.step(), expected, presented, self.to_string())
    }
}

/// Parse a certificate (at most [`MAX_RATLS_CERT_LEN`] bytes) and take out its evidence:
/// present, non-critical, at most [`MAX_CERT_BUNDLE_LEN`] bytes, an OCTET STRING around the CMW,
/// and no other critical extension we do not process.
pub fn read_evidence(cert_der: &[u8]) -> Result<CertEvidence, CertEvidenceError> {
    let cert = Cert::from_der_with_limit(cert_der, MAX_RATLS_CERT_LEN)?;
    let Some((critical, value)) = cert.extension(CMW_EXTENSION_OID) else {
        // The evidence formats we read (`crate::foreign`) but do not carry ourselves.
        let foreign = crate::foreign::ForeignKind::ALL
            .iter()
            .map(|kind| kind.oid())
            .filter(|oid| cert.extension(oid).is_some())
            .map(str::to_owned)
            .collect();
        return Err(CertEvidenceError::Missing { foreign });
    };
    if critical {
        return Err(CertEvidenceError::Critical);
    }
    // The OCTET STRING header is at most 4 bytes at these sizes.
    if value.len() > MAX_CERT_BUNDLE_LEN + 4 {
        return Err(CertEvidenceError::TooLarge {
            size: value.len(),
            limit: MAX_CERT_BUNDLE_LEN,
        });
    }
    let cmw = der_octet_string(value).map_err(CertEvidenceError::Format)?;
    if cmw.len() > MAX_CERT_BUNDLE_LEN {
        return Err(CertEvidenceError::TooLarge {
            size: cmw.len(),
            limit: MAX_CERT_BUNDLE_LEN,
        });
    }
    let unhandled = cert.unhandled_critical_extensions(&[
        // Handled by name matching (WebPKI mode) or irrelevant to a self-issued leaf.
        "2.5.29.17", // subjectAltName
        "2.5.29.37", // extendedKeyUsage
    ]);
    if !unhandled.is_empty() {
        return Err(CertEvidenceError::UnhandledCritical(unhandled));
    }
    let cmw = cmw.to_vec();
    Ok(CertEvidence { cert, cmw })
}

/// The contents of one DER OCTET STRING spanning all of `der` (definite, minimal length).
pub fn der_octet_string(der: &[u8]) -> Result<&[u8], String> {
    let mut r = crate::codec::Reader::new("OCTET STRING", der);
    let err = |e: crate::codec::ParseError| e.to_string();
    let tag = r.u8("OCTET STRING tag").map_err(err)?;
    if tag != 0x04 {
        return Err(format!(
            "expected an OCTET STRING (tag 0x04), found tag {tag:#04x}"
        ));
    }
    let first = r
        .u8("OCTET STRING length")
        .map_err(err)?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81 => {
            let b = r
                .u8("OCTET STRING length")
                .map_err(err)?;
            if b < 0x80 {
                return Err("non-minimal DER length".into());
            }
            usize::from(b)
        }
        0x82 => {
            let b = r
                .u16_be("OCTET STRING length")
                .map_err(err)?;
            if b < 0x100 {
                return Err("non-minimal DER length".into());
            }
            usize::from(b)
        }
        0x83 => {
            let hi = r
                .u8("OCTET STRING length")
                .map_err(err)?;
            let lo = r
                .u16_be("OCTET STRING length")
                .map_err(err)?;
            if hi == 0 {
                return Err("non-minimal DER length".into());
            }
            (usize::from(hi) << 16) | usize::from(lo)
        }
        _ => {
            return Err(format!(
                "unsupported DER length form {first:#04x} (indefinite or over 16 MiB)"
            ))
        }
    };
    let body = r
        .take(len, "OCTET STRING contents")
        .map_err(err)?;
    r.finish().map_err(err)?;
    Ok(body)
}

/// DER OCTET STRING around `contents`.
pub fn der_octet_string_encode(contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 5);
    out.push(0x04);
    // Invariant: the shifts below keep only the low byte, so the casts never truncate data.
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xffff => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(feature = "issue")]
pub use self::issue::{issue, issue_signed_by, issue_with_key, CertParams, IssueError, IssuedCert};

#[cfg(feature = "issue")]
mod issue {
    use std::sync::Arc;
    use std::time::Duration;

    use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, PublicKeyData};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::sign::CertifiedKey;

    use super::{der_octet_string_encode, CMW_EXTENSION_OID_ARCS};
    use crate::attest::{AttestError, Attester};
    use crate::binding::{BindingClaims, Role};
    use crate::bundle::{Bundle, MAX_CERT_BUNDLE_LEN};
    use crate::time::UnixTime;

    /// What to put in an RA-TLS certificate besides the evidence.
    #[derive(Debug, Clone)]
    pub struct CertParams {
        /// The role the evidence is bound to (`server`, `client`, `agent`).
        pub role: Role,
        /// Subject CN (the VM's host name by default).
        pub common_name: String,
        /// DNS names and IP addresses for the subjectAltName extension.
        pub sans: Vec<String>,
        /// Validity from the issue time. Verifiers bound the evidence's age separately.
        pub validity: Duration,
    }

    impl CertParams {
        pub fn new(role: Role, common_name: impl Into<String>, sans: Vec<String>) -> Self {
            Self {
                role,
                common_name: common_name.into(),
                sans,
                validity: Duration::from_secs(7 * 24 * 3600),
            }
        }
    }

    /// An issued RA-TLS certificate with its private key.
    pub struct IssuedCert {
        pub cert_der: CertificateDer<'static>,
        /// The private key, PKCS#8 DER. Generated in this process; never leaves it unless the
        /// caller writes it out.
        pub key_der: PrivatePkcs8KeyDer<'static>,
        /// The DER SubjectPublicKeyInfo the evidence binds.
        pub spki_der: Vec<u8>,
        pub bundle: Bundle,
        pub issued_at: UnixTime,
    }

    impl core::fmt::Debug for IssuedCert {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("IssuedCert")
                .field("cert_len", &self.cert_der.len())
                .field("issued_at", &self.issued_at)
                .field("key", &"<redacted>")
                .finish()
        }
    }

    impl IssuedCert {
        /// The certificate and key as rustls serves them, with `provider`'s key loader.
        pub fn certified_key(
            &self,
            provider: &rustls::crypto::CryptoProvider,
        ) -> Result<Arc<CertifiedKey>, rustls::Error> {
            let key = provider
                .key_provider
                .load_private_key(PrivateKeyDer::Pkcs8(self.key_der.clone_key()))?;
            Ok(Arc::new(CertifiedKey::new(
                vec![self.cert_der.clone()],
                key,
            )))
        }

        /// The certificate as PEM.
        pub fn cert_pem(&self) -> String {
            pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.to_vec()))
        }

        /// The private key as PEM (PKCS#8). Secret: write it with mode 0600.
        pub fn key_pem(&self) -> String {
            pem::encode(&pem::Pem::new(
                "PRIVATE KEY",
                self.key_der.secret_pkcs8_der().to_vec(),
            ))
        }
    }

    /// Why a certificate could not be issued.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum IssueError {
        #[error("evidence: {0}")]
        Attest(#[from] AttestError),
        #[error("certificate: {0}")]
        Cert(#[from] rcgen::Error),
        #[error(
            "the evidence bundle is {size} bytes; a certificate carries at most {limit} (rustls \
             refuses handshake messages over 64 KiB)"
        )]
        TooLarge { size: usize, limit: usize },
        #[error("the issue time {0} is outside the certificate date range")]
        Time(UnixTime),
    }

    /// Leave out of a certificate what verifiers do not need from it: every byte is kept in
    /// memory by each peer for the life of each connection. The EK certificate is not used by
    /// the bundle verifier; AMD's ASK/ASVK and ARK are built into the verifier, so a genuine
    /// SEV-SNP report needs only its VCEK or VLEK.
    fn slim(bundle: &mut Bundle) {
        if let Some(tpm) = bundle.tpm.as_mut() {
            tpm.ek_cert = None;
        }
        if let Some(crate::bundle::TeeEvidence::SevSnp {
            vcek, vlek, chain, ..
        }) = bundle.tee.as_mut()
        {
            if vcek.is_some() || vlek.is_some() {
                *chain = None;
            }
        }
    }

    /// Generate an ECDSA P-256 key in this process and issue a self-signed RA-TLS certificate
    /// whose evidence binds it. Blocking (TPM and TEE calls).
    pub fn issue(
        attester: &Attester,
        params: &CertParams,
        now: UnixTime,
    ) -> Result<IssuedCert, IssueError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        issue_with_key(attester, params, key, now)
    }

    /// [`issue`] with a given key pair.
    pub fn issue_with_key(
        attester: &Attester,
        params: &CertParams,
        key: KeyPair,
        now: UnixTime,
    ) -> Result<IssuedCert, IssueError> {
        build(attester, params, key, now, None)
    }

    /// [`issue`], signed by a CA (`issuer`) instead of self-signed: verifiers can then add a
    /// WebPKI check ("who") on top of the evidence ("what").
    pub fn issue_signed_by(
        attester: &Attester,
        params: &CertParams,
        issuer: &rcgen::Issuer<'_, KeyPair>,
        now: UnixTime,
    ) -> Result<IssuedCert, IssueError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        build(attester, params, key, now, Some(issuer))
    }

    fn build(
        attester: &Attester,
        params: &CertParams,
        key: KeyPair,
        now: UnixTime,
        issuer: Option<&rcgen::Issuer<'_, KeyPair>>,
    ) -> Result<IssuedCert, IssueError> {
        let spki_der = key.subject_public_key_info();
        let binding = BindingClaims {
            role: params.role.clone(),
            spki_sha256: crate::binding::spki_sha256(&spki_der),
            ak_sha256: None,
            issued_at: now.as_secs(),
            challenge: None,
            exporter: None,
        };
        let mut bundle = attester.produce(binding, false)?;
        slim(&mut bundle);
        let cmw = bundle.to_cmw();
        if cmw.len() > MAX_CERT_BUNDLE_LEN {
            return Err(IssueError::TooLarge {
                size: cmw.len(),
                limit: MAX_CERT_BUNDLE_LEN,
            });
        }
        let mut cp = CertificateParams::new(params.sans.clone())?;
        cp.distinguished_name
            .push(DnType::CommonName, params.common_name.clone());
        let start = i64::try_from(now.as_secs()).map_err(|_| IssueError::Time(now))?;
        let end = start
            .checked_add(i64::try_from(params.validity.as_secs()).unwrap_or(i64::MAX))
            .ok_or(IssueError::Time(now))?;
        cp.not_before =
            time::OffsetDateTime::from_unix_timestamp(start).map_err(|_| IssueError::Time(now))?;
        cp.not_after =
            time::OffsetDateTime::from_unix_timestamp(end).map_err(|_| IssueError::Time(now))?;
        cp.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        cp.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        // Non-critical (the default): plain TLS clients must accept the certificate.
        cp.custom_extensions
            .push(CustomExtension::from_oid_content(
                &CMW_EXTENSION_OID_ARCS,
                der_octet_string_encode(&cmw),
            ));
        let cert = match issuer {
            Some(issuer) => cp.signed_by(&key, issuer)?,
            None => cp.self_signed(&key)?,
        };
        Ok(IssuedCert {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            spki_der,
            bundle,
            issued_at: now,
        })
    }
}
