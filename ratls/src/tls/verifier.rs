//! rustls certificate verifiers that check a peer's evidence during the handshake.
//!
//! [`AttestedServerVerifier`] (for clients) and [`AttestedClientVerifier`] (for servers) check the
//! TLS handshake signature as usual and, in [`Mode::Certificate`], the evidence bundle carried in
//! the peer's RA-TLS certificate: bound to the certificate's key, issued within the policy's
//! maximum age, and satisfying the policy (TEE, TPM PCRs; IMA is deferred to when the log is
//! fetched, since it does not travel in certificates). An optional inner verifier adds the WebPKI
//! identity check ("who" on top of "what").
//!
//! Trusted verdicts are cached (see [`cache`](super::cache)), so a repeat handshake with the same
//! certificate costs one SHA-256 of it. The verdict of a connection is retrievable afterwards
//! with [`AttestedServerVerifier::verdict_for`] / [`AttestedClientVerifier::verdict_for`]
//! (or [`peer_verdict`](super::peer_verdict)).
//!
//! A refusal fails the handshake with the certificate error of its first failed step, so the peer
//! receives a meaningful alert ([`certificate_error`](super::certificate_error)); the verdict
//! goes to the rejection slot the caller opened around the handshake
//! ([`AttestationRejected::from_rustls`](super::AttestationRejected::from_rustls)).
//!
//! In [`Mode::Fresh`] the handshake only checks the TLS signature (and WebPKI when configured):
//! the caller must run the post-handshake exchange ([`fresh`](super::fresh)) before trusting the
//! connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime as TlsTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::cache::{cache_key, VerdictCache};
use super::cert::read_evidence;
use super::policy::AttestationPolicy;
use super::rejection::AttestationRejected;
use crate::time::UnixTime;
use crate::verdict::Step;
use crate::verdict::{Check, Platform, Verdict};

/// Which evidence a verifier checks during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The evidence in the peer's RA-TLS certificate: binding = key, freshness = time window.
    Certificate,
    /// Only the TLS signature (and WebPKI when configured); the post-handshake exchange must
    /// follow: binding = session, freshness = challenge.
    Fresh,
}

/// What both verifiers share: policy, cache, crypto provider.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) policy: AttestationPolicy,
    pub(crate) cache: VerdictCache,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) mode: Mode,
}

impl Core {
    fn new(policy: AttestationPolicy, provider: Arc<CryptoProvider>, mode: Mode) -> Self {
        Self {
            policy,
            cache: VerdictCache::default(),
            provider,
            mode,
        }
    }

    /// Verify the evidence of a peer certificate at `now`, through the cache.
    pub(crate) fn verify_cert(
        &self,
        cert_der: &[u8],
        now: UnixTime,
    ) -> Result<Arc<Verdict>, AttestationRejected> {
        let key = cache_key(cert_der, &self.policy.digest());
        let max_age = self.policy.max_age().as_secs();
        let skew = self.policy.max_skew().as_secs();
        if let Some(v) = self.cache.get(&key, now, max_age, skew) {
            return Ok(v);
        }
        let (verdict, validity) = self.verify_uncached(cert_der, now);
        let verdict = Arc::new(verdict);
        if verdict.is_trusted() {
            // Invariant: a trusted verdict came from a certificate that parsed (validity window)
            // and a bundle that parsed, so its claims hold the issue time.
            if let (Some(issued_at), Some(validity)) = (issued_at_of(&verdict), validity) {
                self.cache
                    .insert(key, verdict.clone(), issued_at, validity);
            }
            Ok(verdict)
        } else {
            Err(AttestationRejected { verdict })
        }
    }

    /// The cached verdict for a certificate, if any.
    pub(crate) fn cached(&self, cert_der: &[u8], now: UnixTime) -> Option<Arc<Verdict>> {
        let key = cache_key(cert_der, &self.policy.digest());
        self.cache.get(
            &key,
            now,
            self.policy.max_age().as_secs(),
            self.policy.max_skew().as_secs(),
        )
    }

    /// The verdict, and the certificate's validity window (seconds) when it parsed.
    fn verify_uncached(&self, cert_der: &[u8], now: UnixTime) -> (Verdict, Option<(u64, u64)>) {
        let evidence = match read_evidence(cert_der) {
            Ok(e) => e,
            Err(e) => {
                let mut v = Verdict::new(Platform::Unknown);
                v.push(e.to_check());
                return (v, None);
            }
        };
        let (not_before, not_after) = evidence.cert.validity();
        let mut head = vec![Check::pass(
            Step::CERT_EVIDENCE,
            format!(
                "a non-critical id-pe-cmw extension of at most {} bytes",
                crate::bundle::MAX_CERT_BUNDLE_LEN
            ),
            format!("{} bytes", evidence.cmw.len()),
        )];
        let validity = match evidence.cert.check_validity(now) {
            Ok(()) => Check::pass(
                Step::CERT_VALIDITY,
                "inside the certificate's validity window",
                now.to_string(),
            ),
            Err(e) => Check::fail(
                Step::CERT_VALIDITY,
                "inside the certificate's validity window",
                now.to_string(),
                e.to_string(),
            ),
        };
        head.push(validity);
        let mut expect = self
            .policy
            .expectations(evidence.cert.spki_der(), now);
        expect.defer_ima_log = true;
        let mut v = crate::bundle::verify(&evidence.cmw, self.policy.policy(), &expect);
        head.append(&mut v.checks);
        let claims = core::mem::replace(&mut v.claims, crate::verdict::Claims::None {});
        let mut out = Verdict::new(v.platform);
        out.simulated = v.simulated;
        out.extend(head);
        out.claims = claims;
        (out, Some((not_before.as_secs(), not_after.as_secs())))
    }

    fn verify_signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self
            .provider
            .signature_verification_algorithms;
        if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn issued_at_of(v: &Verdict) -> Option<u64> {
    match &v.claims {
        crate::verdict::Claims::Bundle(b) => Some(b.issued_at),
        _ => None,
    }
}

fn to_unix(now: TlsTime) -> UnixTime {
    UnixTime::from_secs(now.as_secs())
}

/// Verifies a TLS server's evidence (use in a client config).
#[derive(Debug, Clone)]
pub struct AttestedServerVerifier {
    core: Arc<Core>,
    webpki: Option<Arc<dyn ServerCertVerifier>>,
}

impl AttestedServerVerifier {
    /// A verifier in `mode` with the ring provider.
    pub fn new(policy: AttestationPolicy, mode: Mode) -> Self {
        Self::with_provider(policy, mode, super::provider())
    }

    pub fn with_provider(
        policy: AttestationPolicy,
        mode: Mode,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            core: Arc::new(Core::new(policy, provider, mode)),
            webpki: None,
        }
    }

    /// Also require the certificate to pass `inner` (a WebPKI verifier with the roots and name
    /// checks of your choice): "who" on top of "what". Its failure is reported as `cert.webpki`.
    pub fn with_webpki(mut self, inner: Arc<dyn ServerCertVerifier>) -> Self {
        self.webpki = Some(inner);
        self
    }

    pub fn policy(&self) -> &AttestationPolicy {
        &self.core.policy
    }

    pub fn mode(&self) -> Mode {
        self.core.mode
    }

    /// Verify a certificate's evidence outside a handshake (the verdict is cached).
    pub fn verify_certificate(
        &self,
        cert_der: &[u8],
        now: UnixTime,
    ) -> Result<Arc<Verdict>, AttestationRejected> {
        self.core.verify_cert(cert_der, now)
    }

    /// The trusted verdict this verifier reached for `end_entity` (the peer certificate of a
    /// connection it verified), while still fresh.
    pub fn verdict_for(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Option<Arc<Verdict>> {
        self.core.cached(end_entity, now)
    }

    /// The verdict cache.
    pub fn cache(&self) -> &VerdictCache {
        &self.core.cache
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: TlsTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(inner) = &self.webpki {
            inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| webpki_rejection(&e).into_rustls())?;
        }
        if self.core.mode == Mode::Certificate {
            self.core
                .verify_cert(end_entity, to_unix(now))
                .map_err(AttestationRejected::into_rustls)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core
            .verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core
            .verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.schemes()
    }
}

fn webpki_rejection(e: &rustls::Error) -> AttestationRejected {
    let mut v = Verdict::new(Platform::Unknown);
    v.push(Check::fail(
        Step::CERT_WEBPKI,
        "a certificate chain to a trusted root, valid for the name",
        "rejected",
        e.to_string(),
    ));
    AttestationRejected {
        verdict: Arc::new(v),
    }
}

/// Verifies a TLS client's evidence (use in a server config): mutual attestation.
#[derive(Debug, Clone)]
pub struct AttestedClientVerifier {
    core: Arc<Core>,
    webpki: Option<Arc<dyn ClientCertVerifier>>,
}

impl AttestedClientVerifier {
    /// A verifier in `mode` with the ring provider. Client certificates are mandatory.
    pub fn new(policy: AttestationPolicy, mode: Mode) -> Self {
        Self::with_provider(policy, mode, super::provider())
    }

    pub fn with_provider(
        policy: AttestationPolicy,
        mode: Mode,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            core: Arc::new(Core::new(policy, provider, mode)),
            webpki: None,
        }
    }

    /// Also require the client certificate to pass `inner` (reported as `cert.webpki`).
    pub fn with_webpki(mut self, inner: Arc<dyn ClientCertVerifier>) -> Self {
        self.webpki = Some(inner);
        self
    }

    pub fn policy(&self) -> &AttestationPolicy {
        &self.core.policy
    }

    pub fn mode(&self) -> Mode {
        self.core.mode
    }

    /// Verify a certificate's evidence outside a handshake (the verdict is cached).
    pub fn verify_certificate(
        &self,
        cert_der: &[u8],
        now: UnixTime,
    ) -> Result<Arc<Verdict>, AttestationRejected> {
        self.core.verify_cert(cert_der, now)
    }

    /// The trusted verdict this verifier reached for `end_entity`, while still fresh.
    pub fn verdict_for(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Option<Arc<Verdict>> {
        self.core.cached(end_entity, now)
    }

    pub fn cache(&self) -> &VerdictCache {
        &self.core.cache
    }
}

impl ClientCertVerifier for AttestedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.webpki {
            Some(inner) => inner.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: TlsTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(inner) = &self.webpki {
            inner
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|e| webpki_rejection(&e).into_rustls())?;
        }
        if self.core.mode == Mode::Certificate {
            self.core
                .verify_cert(end_entity, to_unix(now))
                .map_err(AttestationRejected::into_rustls)?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core
            .verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core
            .verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.schemes()
    }
}
