//! DANGER: a TLS server-certificate verifier that accepts ANY certificate.
//!
//! It exists for one purpose only: `ratls fetch` saves the chain a server presents, so that it
//! can be inspected or verified afterwards (`ratls verify`, `cosmian_vm`). Nothing is sent over
//! a connection made with it and nothing read from it is trusted: the tool records the chain,
//! closes the connection and says that the chain was not verified. It still checks the
//! handshake signature, so the server did hold the key of the leaf it presented. Never use it
//! for a connection that carries data.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts every server certificate and records the chain it saw (leaf first).
#[derive(Debug)]
pub struct RecordAnyChain {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Vec<CertificateDer<'static>>>>,
}

impl RecordAnyChain {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            seen: Mutex::new(None),
        }
    }

    /// The chain the server presented, if the handshake got that far.
    pub fn chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.seen.lock().ok()?.clone()
    }
}

impl ServerCertVerifier for RecordAnyChain {
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
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self
                .provider
                .signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self
                .provider
                .signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
