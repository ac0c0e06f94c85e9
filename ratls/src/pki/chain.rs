//! The checks on a certificate and on the links of a chain: validity, signatures, issuer and
//! CA constraints, and whole pinned chains.

use ring::signature::UnparsedPublicKey;
use x509_parser::asn1_rs::Oid;

use crate::hexfmt::hex;
use crate::time::UnixTime;

use super::algorithm::*;
use super::cert::*;
use super::{Cert, CertError};

impl Cert {
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
