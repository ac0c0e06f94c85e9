//! Options that weaken verification. Each one is here, and only here, so that a reviewer can
//! find every use with one search.

use super::policy::AttestationPolicy;

/// Trust evidence from the simulated TEE whose chain ends at `ark` (DER or PEM): what the CLI's
/// `--insecure-sim-root FILE` does.
///
/// **Never in production.** Simulated reports are signed by a key generated on the machine
/// being "attested"; they prove nothing about the hardware. Every verdict reached this way says
/// SIMULATED.
pub fn trust_simulated_root(policy: &mut AttestationPolicy, ark: &[u8]) {
    *policy = policy
        .clone()
        .with_insecure_sim_root(ark);
}

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The handshake signature algorithms of this crate's provider (ring).
fn algorithms() -> WebPkiSupportedAlgorithms {
    super::provider().signature_verification_algorithms
}

/// A server-certificate verifier that accepts **any** certificate chain and records it (leaf
/// first). It still checks the handshake signature, so the server did hold the key of the leaf
/// it presented. For fetching a chain to inspect or verify afterwards (`cosmian_certtool ratls
/// fetch`) and for tests that play an attacker; never for a connection that carries data.
#[derive(Debug, Default)]
pub struct RecordAnyServerCert {
    seen: Mutex<Option<Vec<CertificateDer<'static>>>>,
}

impl RecordAnyServerCert {
    pub fn new() -> Self {
        Self::default()
    }

    /// The chain the server presented, if the handshake got that far.
    pub fn chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for RecordAnyServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// A client-certificate verifier that offers client authentication without requiring it and
/// accepts any certificate that parses (self-signed, no chain, no validity window), checking
/// the handshake signature: a client that presents a certificate proves it holds the key, and
/// the key (SHA-256 of its SPKI) is the identity. What the agent uses for its owner.
#[derive(Debug, Default)]
pub struct AnyClientCert;

impl AnyClientCert {
    pub fn new() -> Arc<Self> {
        Arc::new(Self)
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        crate::pki::Cert::from_der(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}
