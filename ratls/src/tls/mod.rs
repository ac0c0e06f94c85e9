//! RA-TLS: TLS connections that prove what runs behind them.
//!
//! Two modes, and every verdict says which one it reached (`docs/threat-model.md` says what
//! each guarantees):
//!
//! - **Certificate mode** ([`Mode::Certificate`]). The endpoint's RA-TLS certificate
//!   ([`cert`]) carries an evidence bundle bound to the certificate's key and issue time, in a
//!   non-critical id-pe-cmw extension. Any TLS client can connect; ours verify the evidence
//!   during the handshake ([`AttestedServerVerifier`], [`AttestedClientVerifier`]), with
//!   verdicts cached. Binding = key, freshness = time window. The certificate rotates in the
//!   background ([`RotatingCert`], feature `issue`): handshakes never wait for a TPM or TEE.
//! - **Fresh mode** ([`fresh`]). After a TLS 1.3 handshake, the verifier sends a challenge and
//!   the attester answers with evidence bound to
//!   `TLS-Exporter("EXPORTER-cosmian-vm-attest-v1-<role>", challenge, 32)` of this very
//!   session. Binding = session, freshness = challenge. Either side may ask, both may. The
//!   exchange is framed and runs before application bytes; peers negotiate it with the ALPN
//!   [`ALPN_ATTEST`].
//!
//! Attested configurations ([`client_config`], [`server_config`]) are TLS 1.3 only (exporters),
//! and have session resumption and 0-RTT off: a resumed session would carry no new evidence.
//!
//! Options that weaken verification live in [`danger`].

pub mod cache;
pub mod cert;
pub mod danger;
pub mod fresh;
mod policy;
mod rejection;
#[cfg(feature = "issue")]
mod resolver;
mod verifier;

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ResolvesServerCert};
use rustls::{ClientConfig, CommonState, ServerConfig};

pub use self::policy::AttestationPolicy;
pub use self::rejection::{
    catch_rejection, certificate_error, AttestationRejected, CatchRejection, RejectionSlot,
};
#[cfg(feature = "issue")]
pub use self::resolver::{AttesterSource, CertSource, RotatingCert, RotationStatus};
pub use self::verifier::{AttestedClientVerifier, AttestedServerVerifier, Mode};
use crate::time::UnixTime;
use crate::verdict::Verdict;

/// The ALPN protocol id of the fresh attestation exchange (version 1).
pub const ALPN_ATTEST: &[u8] = b"cosmian-attest/1";

/// The crypto provider every configuration here uses: rustls' `ring` provider, passed explicitly
/// (no process-wide default, no second provider).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that verifies the server with `verifier`, presents `client_cert` when
/// given (mutual attestation), offers `alpn`, speaks TLS 1.3 only, and never resumes a session
/// or sends early data.
pub fn client_config(
    verifier: Arc<AttestedServerVerifier>,
    client_cert: Option<Arc<dyn ResolvesClientCert>>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    config.alpn_protocols = alpn;
    Ok(config)
}

/// A server configuration serving `cert` (a [`RotatingCert`] or any resolver), verifying client
/// certificates with `client_verifier` when given, offering `alpn`, TLS 1.3 only, with no
/// session tickets, no session cache and no early data.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: Vec<Vec<u8>>,
) -> Result<ServerConfig, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.alpn_protocols = alpn;
    Ok(config)
}

/// The verdict a certificate-mode server verifier reached for this connection's peer.
pub fn peer_verdict(conn: &CommonState, verifier: &AttestedServerVerifier) -> Option<Arc<Verdict>> {
    let cert = conn.peer_certificates()?.first()?;
    verifier.verdict_for(cert, UnixTime::now())
}

/// The verdict a certificate-mode client verifier reached for this connection's peer.
pub fn client_peer_verdict(
    conn: &CommonState,
    verifier: &AttestedClientVerifier,
) -> Option<Arc<Verdict>> {
    let cert = conn.peer_certificates()?.first()?;
    verifier.verdict_for(cert, UnixTime::now())
}

#[cfg(test)]
mod tests;
