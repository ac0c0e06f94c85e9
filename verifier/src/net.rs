//! The network side: endpoint parsing, TLS client configurations (WebPKI roots, the owner's
//! client certificate) and one TLS connection per command.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ratls::tls::{
    AttestationPolicy, AttestationRejected, AttestedServerVerifier, CatchRejection, Mode,
    RejectionSlot,
};
use ratls::Verdict;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::cli::{Global, UsageError};

/// A TLS endpoint: host name or IP address, and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// The port `cosmian_vm_agent` listens on by default (`agent.toml`: `port = 5555`).
pub const AGENT_PORT: u16 = 5555;

impl Target {
    /// `https://HOST[:PORT]` (an optional trailing `/`); without a port, the agent's default
    /// port ([`AGENT_PORT`]), so `--url https://my_app.dev` reaches an agent installed with
    /// its defaults, as in the Cosmian VM documentation.
    pub fn from_url(url: &str) -> Result<Self, UsageError> {
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(UsageError(format!(
                "--url {url}: expected https://HOST[:PORT] (the agent speaks HTTPS only)"
            )));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(UsageError(format!(
                "--url {url}: expected https://HOST[:PORT] with no path, query or user"
            )));
        }
        Self::parse(rest, AGENT_PORT).map_err(|e| UsageError(format!("--url {url}: {e}")))
    }

    /// `HOST[:PORT]`, `[IPv6][:PORT]` or a bare IPv6 address; `default_port` when none is given.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err("unclosed '[' in the host".into());
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("unexpected {after:?} after the host")),
                },
            }
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("bad port {p:?} (1-65535)")),
                Ok(n) => n,
            },
            None => default_port,
        };
        ServerName::try_from(host.to_owned()).map_err(|_| format!("bad host name {host:?}"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The name TLS verifies (and sends as SNI when it is a DNS name).
    pub fn server_name(&self) -> Result<ServerName<'static>, UsageError> {
        ServerName::try_from(self.host.clone())
            .map_err(|_| UsageError(format!("bad host name {:?}", self.host)))
    }

    /// `host:port` as the HTTP Host header wants it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// How the agent's (or an endpoint's) certificate chain is checked, and network timeouts.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `None`: `--allow-insecure-tls` (no WebPKI); otherwise the WebPKI verifier.
    webpki: Option<Arc<dyn ServerCertVerifier>>,
    pub timeout: Duration,
}

impl TlsSettings {
    pub fn from_global(global: &Global) -> Result<Self, UsageError> {
        let webpki = if global.allow_insecure_tls {
            None
        } else {
            Some(webpki_verifier(global.ca_cert.as_deref())?)
        };
        Ok(Self {
            webpki,
            timeout: Duration::from_secs(global.timeout.max(1)),
        })
    }

    /// An evidence verifier in `mode` for `policy`, with the WebPKI check on top unless
    /// `--allow-insecure-tls`.
    pub fn server_verifier(
        &self,
        policy: AttestationPolicy,
        mode: Mode,
    ) -> Arc<AttestedServerVerifier> {
        let verifier = AttestedServerVerifier::new(policy, mode);
        Arc::new(match &self.webpki {
            Some(inner) => verifier.with_webpki(inner.clone()),
            None => verifier,
        })
    }
}

/// Mozilla's roots (webpki-roots) plus the PEM certificates of `extra`.
fn webpki_verifier(extra: Option<&Path>) -> Result<Arc<dyn ServerCertVerifier>, UsageError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        let certs = read_pem_certs(path)?;
        if certs.is_empty() {
            return Err(UsageError(format!(
                "--ca-cert {}: no CERTIFICATE in it",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| UsageError(format!("--ca-cert {}: {e}", path.display())))?;
        }
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        ratls::tls::provider(),
    )
    .build()
    .map_err(|e| UsageError(format!("WebPKI verifier: {e}")))?;
    Ok(verifier)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, UsageError> {
    let bytes = crate::evidence::read(path)?;
    let blocks = pem::parse_many(&bytes)
        .map_err(|e| UsageError(format!("{}: not PEM: {e}", path.display())))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect())
}

/// The owner's client certificate, presented on every handshake of the command.
#[derive(Debug)]
pub struct OwnerIdentity(Arc<CertifiedKey>);

impl OwnerIdentity {
    /// Load a PEM certificate (chain) and its PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, UsageError> {
        let certs = read_pem_certs(cert)?;
        if certs.is_empty() {
            return Err(UsageError(format!(
                "{}: no CERTIFICATE in it",
                cert.display()
            )));
        }
        let key_bytes = crate::evidence::read(key)?;
        let block = pem::parse(&key_bytes)
            .map_err(|e| UsageError(format!("{}: not a PEM private key: {e}", key.display())))?;
        let der = match block.tag() {
            "PRIVATE KEY" => PrivateKeyDer::Pkcs8(block.into_contents().into()),
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.into_contents().into()),
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.into_contents().into()),
            other => {
                return Err(UsageError(format!(
                    "{}: a {other:?} PEM block is not a private key",
                    key.display()
                )))
            }
        };
        let signing = ratls::tls::provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| UsageError(format!("{}: unusable private key: {e}", key.display())))?;
        let certified = CertifiedKey::new(certs, signing);
        certified.keys_match().map_err(|e| {
            UsageError(format!(
                "{} and {} do not go together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        Ok(Self(Arc::new(certified)))
    }

    /// SHA-256 of the certificate's SubjectPublicKeyInfo: the identity the agent records.
    pub fn spki_sha256(&self) -> Option<String> {
        let cert = self.0.cert.first()?;
        let parsed = ratls::pki::Cert::from_der(cert).ok()?;
        Some(ratls::hexfmt::hex(ratls::binding::spki_sha256(
            parsed.spki_der(),
        )))
    }
}

impl ResolvesClientCert for OwnerIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Why a TLS connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The peer's certificate was rejected (WebPKI, or its evidence in certificate mode): a
    /// verification failure (exit 1).
    Rejected(Arc<Verdict>),
    /// Anything else (exit 2).
    Other(String),
}

impl ConnectError {
    pub fn other(e: impl std::fmt::Display) -> Self {
        Self::Other(e.to_string())
    }
}

/// Open a TCP connection to `target` and run the TLS handshake with `config`.
pub async fn connect(
    target: &Target,
    config: ClientConfig,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let name = target
        .server_name()
        .map_err(|e| ConnectError::Other(e.0))?;
    let addr = (target.host.as_str(), target.port);
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ConnectError::Other(format!(
                "cannot connect to {target}: {e}"
            )))
        }
        Err(_) => {
            return Err(ConnectError::Other(format!(
                "cannot connect to {target}: no answer within {timeout:?}"
            )))
        }
    };
    let _ = tcp.set_nodelay(true);
    tracing::debug!(
        "connected to {target} ({})",
        tcp.peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    );
    let connector = TlsConnector::from(Arc::new(config));
    // The slot receives the verifier's verdict if it refuses the server's certificate.
    let handshake = CatchRejection::new(connector.connect(name, tcp));
    match tokio::time::timeout(timeout, handshake).await {
        Ok((Ok(s), _)) => {
            let tls = s.get_ref().1;
            tracing::debug!(
                "TLS with {target}: {:?}, {:?}, ALPN {:?}",
                tls.protocol_version(),
                tls.negotiated_cipher_suite()
                    .map(|c| c.suite()),
                tls.alpn_protocol()
                    .map(String::from_utf8_lossy)
            );
            Ok(s)
        }
        Ok((Err(e), slot)) => Err(handshake_error(target, &e, &slot)),
        Err(_) => Err(ConnectError::Other(format!(
            "TLS handshake with {target}: no answer within {timeout:?}"
        ))),
    }
}

fn handshake_error(target: &Target, e: &std::io::Error, slot: &RejectionSlot) -> ConnectError {
    if let Some(rejected) = AttestationRejected::from_io(e, slot) {
        return ConnectError::Rejected(rejected.verdict.clone());
    }
    ConnectError::Other(format!("TLS handshake with {target}: {e}"))
}

/// A client configuration for `verifier`, presenting `owner` when given, offering `alpn`.
pub fn client_config(
    verifier: Arc<AttestedServerVerifier>,
    owner: Option<Arc<OwnerIdentity>>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, UsageError> {
    ratls::tls::client_config(
        verifier,
        owner.map(|o| o as Arc<dyn ResolvesClientCert>),
        alpn,
    )
    .map_err(|e| UsageError(format!("TLS configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_default_ports_and_ipv6() {
        let t = Target::from_url("https://vm.example.com:5555/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("vm.example.com", 5555));
        // Without a port: the agent's default, as the agent's own configuration has it.
        assert_eq!(
            Target::from_url("https://vm.example.com")
                .unwrap()
                .port,
            AGENT_PORT
        );
        let agent_default = include_str!("../../agent/packaging/agent.toml");
        assert!(agent_default.contains(&format!("\nport = {AGENT_PORT}\n")));
        let t = Target::parse("[::1]:8443", 443).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.authority(), "[::1]:8443");
        assert_eq!(Target::parse("::1", 443).unwrap().port, 443);
        assert_eq!(
            Target::parse("127.0.0.1", 8443)
                .unwrap()
                .port,
            8443
        );
        for bad in [
            "http://vm:80",
            "vm:80",
            "https://vm:0",
            "https://vm:99999",
            "https://vm/api",
            "https://:80",
            "https://user@vm",
        ] {
            assert!(Target::from_url(bad).is_err(), "{bad} accepted");
        }
    }
}
