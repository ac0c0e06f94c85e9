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

use crate::time::UnixTime;

mod algorithm;
mod cert;
mod chain;
mod crl;
mod der;
#[cfg(test)]
mod tests;

pub use self::algorithm::{KeyAlgorithm, SignatureAlgorithm};
pub use self::cert::Cert;
pub use self::chain::verify_chain;
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
