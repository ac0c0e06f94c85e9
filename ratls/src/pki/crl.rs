//! X.509 certificate revocation lists (RFC 5280 section 5): parsed once by x509-parser, the
//! signature verified with `ring` under the issuer certificate's key like a certificate's.

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::algorithm::{signature_algorithm, supported_list, SignatureAlgorithm};
use super::cert::Name;
use super::der::{pem_blocks, serial_magnitude};
use super::{Cert, CertError};
use crate::time::UnixTime;

/// Largest CRL we agree to parse (AMD's KDS CRLs are a few KiB).
pub const MAX_CRL_LEN: usize = 1024 * 1024;

/// Critical CRL (entry) extensions whose meaning does not change which serials are revoked:
/// CRL number, authority key identifier, reason code, invalidity date.
const HANDLED_CRITICAL: [&str; 4] = ["2.5.29.20", "2.5.29.35", "2.5.29.21", "2.5.29.24"];

/// A parsed CRL: what the checks need, copied out once.
#[derive(Clone)]
pub struct Crl {
    issuer: Name,
    this_update: i64,
    next_update: Option<i64>,
    /// Serial magnitudes of the revoked certificates (see [`Cert::serial`]).
    revoked: Vec<Vec<u8>>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    algorithm: Result<SignatureAlgorithm, String>,
    algorithm_matches_tbs: bool,
}

impl core::fmt::Debug for Crl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer.cn)
            .field("this_update", &self.this_update())
            .field("next_update", &self.next_update())
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

impl Crl {
    /// Parse a DER CRL, or the one `X509 CRL` block of a PEM text.
    pub fn from_der_or_pem(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CRL_LEN {
            return Err(CertError::TooLarge {
                what: "CRL",
                size: bytes.len(),
                limit: MAX_CRL_LEN,
            });
        }
        if !bytes
            .windows(11)
            .any(|w| w == b"-----BEGIN ")
        {
            return Self::from_der(bytes);
        }
        let blocks = pem_blocks(bytes)?;
        let mut crls = blocks
            .iter()
            .filter(|b| b.tag() == "X509 CRL");
        match (crls.next(), crls.next()) {
            (Some(block), None) => Self::from_der(block.contents()),
            (None, _) => Err(CertError::Pem {
                reason: "no X509 CRL block".into(),
            }),
            (Some(_), Some(_)) => Err(CertError::Pem {
                reason: "more than one X509 CRL block".into(),
            }),
        }
    }

    /// Parse one DER CRL (no trailing bytes, no unused bits in the signature).
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CRL_LEN {
            return Err(CertError::TooLarge {
                what: "CRL",
                size: der.len(),
                limit: MAX_CRL_LEN,
            });
        }
        let parse = |reason: String| CertError::CrlParse { reason };
        // x509-parser reads the outer tag leniently: require a universal SEQUENCE here and for
        // the TBSCertList.
        if der.first() != Some(&0x30) {
            return Err(parse("CertificateList is not a DER SEQUENCE".into()));
        }
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(parse(format!("{} trailing bytes", rest.len())));
        }
        if crl.signature_value.unused_bits != 0 {
            return Err(parse("signature BIT STRING has unused bits".into()));
        }
        let tbs = &crl.tbs_cert_list;
        if tbs.as_ref().first() != Some(&0x30) {
            return Err(parse("TBSCertList is not a DER SEQUENCE".into()));
        }
        // RFC 5280 5.2/5.3: a CRL with a critical extension we do not process must not be used
        // (a delta CRL indicator, an issuing distribution point, an indirect CRL's
        // certificateIssuer would each change what the list means).
        let entry_extensions = crl
            .iter_revoked_certificates()
            .flat_map(|r| r.extensions().iter());
        if let Some(ext) = tbs
            .extensions()
            .iter()
            .chain(entry_extensions)
            .find(|e| e.critical && !HANDLED_CRITICAL.contains(&e.oid.to_id_string().as_str()))
        {
            return Err(parse(format!(
                "unhandled critical extension {}",
                ext.oid.to_id_string()
            )));
        }
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| serial_magnitude(r.raw_serial()))
            .collect();
        Ok(Self {
            issuer: Name::of(&tbs.issuer),
            this_update: tbs.this_update.timestamp(),
            next_update: tbs.next_update.map(|t| t.timestamp()),
            revoked,
            tbs: tbs.as_ref().to_vec(),
            signature: crl.signature_value.data.to_vec(),
            algorithm: signature_algorithm(&crl.signature_algorithm),
            algorithm_matches_tbs: crl.signature_algorithm == tbs.signature,
        })
    }

    /// The issuer's name (RFC 4514 text).
    pub fn issuer_name(&self) -> String {
        self.issuer.text()
    }

    /// Whether the issuer name is, DER byte for byte, `cert`'s subject name.
    pub fn issued_by_name(&self, cert: &Cert) -> bool {
        self.issuer.der == cert.subject.der
    }

    /// thisUpdate (clamped at 0).
    pub fn this_update(&self) -> UnixTime {
        UnixTime::from_secs(u64::try_from(self.this_update).unwrap_or(0))
    }

    /// nextUpdate, when the CRL has one.
    pub fn next_update(&self) -> Option<UnixTime> {
        self.next_update
            .map(|t| UnixTime::from_secs(u64::try_from(t).unwrap_or(0)))
    }

    /// Whether `now` lies in `thisUpdate <= now < nextUpdate`; a CRL without nextUpdate is never
    /// current (nothing says when it stops describing the issuer's revocations).
    pub fn is_current(&self, now: UnixTime) -> bool {
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.this_update <= at
            && self
                .next_update
                .is_some_and(|next| at < next)
    }

    /// How many certificates the CRL lists.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// Whether the certificate with this serial magnitude (see [`Cert::serial`]) is listed.
    pub fn lists(&self, serial: &[u8]) -> bool {
        let serial = serial_magnitude(serial);
        self.revoked.contains(&serial)
    }

    /// Verify that `issuer`'s key signed this CRL (the outer signatureAlgorithm must equal the
    /// signed one, RFC 5280 5.1.1.2).
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let subject = format!("CRL of {}", self.issuer.cn);
        if !self.algorithm_matches_tbs {
            return Err(CertError::AlgorithmMismatch { subject });
        }
        let algorithm = match &self.algorithm {
            Ok(a) => *a,
            Err(presented) => {
                return Err(CertError::UnsupportedAlgorithm {
                    subject,
                    presented: presented.clone(),
                    supported: supported_list(&SignatureAlgorithm::ALL),
                })
            }
        };
        let Some(ring_alg) = algorithm.ring(&issuer.key_algorithm) else {
            return Err(CertError::UnsupportedAlgorithm {
                presented: format!(
                    "{algorithm} by {}'s {} key",
                    issuer.subject.cn, issuer.key_algorithm
                ),
                subject,
                supported: supported_list(&SignatureAlgorithm::ALL),
            });
        };
        ring::signature::UnparsedPublicKey::new(ring_alg, &issuer.key)
            .verify(&self.tbs, &self.signature)
            .map_err(|_| CertError::BadSignature {
                subject,
                issuer: issuer.subject.cn.clone(),
            })
    }
}
