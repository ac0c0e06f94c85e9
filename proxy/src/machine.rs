//! This machine's attesters (TEE, TPM, IMA) from the settings, and the certificates the proxy
//! presents: a rotating RA-TLS certificate, or a given certificate reloaded on SIGHUP.
//!
//! The attesters are opened by the library's one set-up (`ratls::attest::config`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ratls::attest::config::{AttesterConfig, ConfigError};
use ratls::attest::Attester;
use ratls::binding::Role;
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::KeyHolder;
use ratls::tls::RotatingCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Open the TPM, the IMA log and the TEE; print what was opened and the warnings.
pub fn open_attester(a: &AttesterConfig) -> Result<Arc<Attester>, String> {
    let opened = a.open().map_err(|e| match e {
        ConfigError::NoTeeDetected { .. } => format!("--tee auto: {e}; name the TEE with --tee"),
        ConfigError::Tpm { .. } => format!("--tpm: {e}"),
        e => format!("--tee {}: {e}", a.tee),
    })?;
    opened.log_notes();
    Ok(opened.attester)
}

/// A rotating RA-TLS certificate for `role`.
pub fn rotating(
    attester: &Arc<Attester>,
    role: Role,
    period: std::time::Duration,
) -> Result<RotatingCert, String> {
    let host = ratls::attest::config::hostname();
    let mut sans = vec![host.clone()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !sans.iter().any(|s| s == extra) {
            sans.push(extra.to_owned());
        }
    }
    let params = CertParams::new(role, host, sans);
    RotatingCert::from_attester(attester.clone(), params, period)
        .map_err(|e| format!("issuing the RA-TLS certificate: {e}"))
}

/// How many previous keys a reloaded certificate still answers fresh challenges for.
const KEPT_KEYS: usize = 4;

/// A given certificate (e.g. Let's Encrypt), reloadable. The fresh evidence binds its key.
#[derive(Debug)]
pub struct FileCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    recent: Mutex<VecDeque<[u8; 32]>>,
}

impl FileCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, String> {
        let (key, spki) = load_pair(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(key),
            recent: Mutex::new(VecDeque::from([spki])),
        })
    }

    /// Re-read both files; on any error the served certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let (key, spki) = load_pair(&self.cert_path, &self.key_path)?;
        *self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.front() != Some(&spki) {
            recent.push_front(spki);
            recent.truncate(KEPT_KEYS);
        }
        Ok(())
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl KeyHolder for FileCert {
    fn holds(&self, spki_sha256: &[u8; 32]) -> bool {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(spki_sha256)
    }
}

/// The certificate chain and key, checked to go together; and SHA-256 of the leaf's SPKI.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<(Arc<CertifiedKey>, [u8; 32]), String> {
    let pem_bytes =
        std::fs::read(cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let chain = ratls::pki::Cert::many_from_der_or_pem(&pem_bytes)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{}: no certificate", cert_path.display()))?;
    let spki = ratls::digest::sha256(leaf.spki_der());
    let key_pem = std::fs::read(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
    let chain_der = chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let certified =
        CertifiedKey::from_der(chain_der, key, &ratls::tls::provider()).map_err(|e| {
            format!(
                "{} and {} do not go together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    Ok((Arc::new(certified), spki))
}
