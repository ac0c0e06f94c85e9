//! The rotating RA-TLS certificate: handshakes never wait for a TPM or TEE call.
//!
//! [`RotatingCert`] holds the current attested key and certificate behind a lock that handshakes
//! only read (an `Arc` clone). A background thread re-attests on a timer, or when asked
//! ([`RotatingCert::rotate_now`]): it generates a new key, produces evidence bound to it, issues
//! the certificate and swaps it in atomically. A failed re-attestation keeps the current
//! certificate and is reported in [`RotatingCert::status`].
//!
//! It serves both sides: as a [`ResolvesServerCert`] for servers and as a [`ResolvesClientCert`]
//! for clients proving themselves (mutual attestation). The fresh-mode responder asks it which
//! keys it holds ([`RotatingCert::holds_spki`]) so it never binds evidence to a key it does not
//! own.

use core::fmt;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use serde::Serialize;

use super::cert::{issue, CertParams, IssueError, IssuedCert};
use crate::attest::Attester;
use crate::hexfmt::hex;
use crate::time::UnixTime;

/// How many previous keys stay known to the fresh-mode responder after a rotation (a
/// connection established just before a swap still asks about the key it saw).
const KEPT_KEYS: usize = 4;

/// Produces a new certificate: [`issue`] from an [`Attester`] by default; tests and benchmarks
/// plug in their own.
pub trait CertSource: Send + Sync + fmt::Debug {
    /// Issue a certificate at `now`. Blocking.
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError>;
}

/// The standard source: a fresh key and evidence from the machine's attesters.
#[derive(Debug)]
pub struct AttesterSource {
    pub attester: Arc<Attester>,
    pub params: CertParams,
}

impl CertSource for AttesterSource {
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError> {
        issue(&self.attester, &self.params, now)
    }
}

/// What the current certificate is and how rotation went.
#[derive(Debug, Clone, Serialize)]
pub struct RotationStatus {
    /// When the served certificate's evidence was produced.
    pub issued_at: UnixTime,
    /// SHA-256 of the served certificate's SubjectPublicKeyInfo (hex).
    pub spki_sha256: String,
    /// SHA-256 of the served evidence bundle (hex).
    pub evidence_sha256: String,
    /// Successful rotations since start (the first issuance counts).
    pub rotations: u64,
    /// Failed re-attestations since start.
    pub failures: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last attempt (successful or not) finished.
    pub last_attempt: UnixTime,
}

struct Current {
    key: Arc<CertifiedKey>,
    spki_der: Vec<u8>,
}

struct Inner {
    current: RwLock<Arc<Current>>,
    recent: Mutex<VecDeque<[u8; 32]>>,
    status: Mutex<RotationStatus>,
    source: Box<dyn CertSource>,
    provider: Arc<CryptoProvider>,
    /// Serialises rotations (timer, on demand, blocking).
    rotating: Mutex<()>,
    signal: Arc<Signal>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signal.stop();
    }
}

#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    cond: Condvar,
}

#[derive(Default)]
struct SignalState {
    rotate: bool,
    stop: bool,
}

impl Signal {
    fn stop(&self) {
        lock(&self.state).stop = true;
        self.cond.notify_all();
    }

    fn rotate(&self) {
        lock(&self.state).rotate = true;
        self.cond.notify_all();
    }

    /// Wait up to `period` for a signal; true when the worker should stop.
    fn wait(&self, period: Duration) -> bool {
        let guard = lock(&self.state);
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, period, |s| !s.rotate && !s.stop)
            .unwrap_or_else(PoisonError::into_inner);
        guard.rotate = false;
        guard.stop
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a plain assignment: a poisoned lock holds consistent data.
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A certificate that rotates in the background. Cheap to clone (shared state); the background
/// thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct RotatingCert {
    inner: Arc<Inner>,
}

impl fmt::Debug for RotatingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingCert")
            .field("status", &self.status())
            .finish()
    }
}

impl RotatingCert {
    /// Issue the first certificate now (blocking: this is the only time a caller waits for the
    /// attesters), then re-attest every `period` on a background thread.
    pub fn start(source: Box<dyn CertSource>, period: Duration) -> Result<Self, IssueError> {
        Self::start_with_provider(source, period, super::provider())
    }

    /// [`start`](Self::start) from an [`Attester`] and certificate parameters.
    pub fn from_attester(
        attester: Arc<Attester>,
        params: CertParams,
        period: Duration,
    ) -> Result<Self, IssueError> {
        Self::start(Box::new(AttesterSource { attester, params }), period)
    }

    pub fn start_with_provider(
        source: Box<dyn CertSource>,
        period: Duration,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, IssueError> {
        let now = UnixTime::now();
        let issued = source.issue(now)?;
        let current = load(&issued, &provider)?;
        let spki = crate::digest::sha256(&current.spki_der);
        let status = RotationStatus {
            issued_at: issued.issued_at,
            spki_sha256: hex(spki),
            evidence_sha256: hex(issued.bundle.digest()),
            rotations: 1,
            failures: 0,
            last_error: None,
            last_attempt: now,
        };
        let signal = Arc::new(Signal::default());
        let inner = Arc::new(Inner {
            current: RwLock::new(Arc::new(current)),
            recent: Mutex::new(VecDeque::from([spki])),
            status: Mutex::new(status),
            source,
            provider,
            rotating: Mutex::new(()),
            signal: signal.clone(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("ratls-rotate".into())
            .spawn(move || worker(&weak, &signal, period))
            .map_err(|e| {
                IssueError::Attest(crate::attest::AttestError::Backend {
                    what: "certificate rotation thread",
                    error: Arc::new(e),
                })
            })?;
        Ok(Self { inner })
    }

    /// The certificate and key served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.read().key.clone()
    }

    /// The DER SubjectPublicKeyInfo of the key served now.
    pub fn current_spki(&self) -> Vec<u8> {
        self.read().spki_der.clone()
    }

    /// Whether `spki_sha256` is the current key or one of the few before it.
    pub fn holds_spki(&self, spki_sha256: &[u8; 32]) -> bool {
        lock(&self.inner.recent).contains(spki_sha256)
    }

    /// Ask the background thread to re-attest now; returns at once.
    pub fn rotate_now(&self) {
        self.inner.signal.rotate();
    }

    /// Re-attest on this thread (blocking) and swap on success; on failure the current
    /// certificate stays and the error is returned and recorded.
    pub fn rotate_blocking(&self) -> Result<(), IssueError> {
        self.inner.rotate()
    }

    pub fn status(&self) -> RotationStatus {
        lock(&self.inner.status).clone()
    }

    fn read(&self) -> Arc<Current> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn load(issued: &IssuedCert, provider: &CryptoProvider) -> Result<Current, IssueError> {
    let key = issued
        .certified_key(provider)
        .map_err(|e| {
            IssueError::Attest(crate::attest::AttestError::Backend {
                what: "loading the new certificate key",
                error: Arc::new(e),
            })
        })?;
    Ok(Current {
        key,
        spki_der: issued.spki_der.clone(),
    })
}

impl Inner {
    fn rotate(&self) -> Result<(), IssueError> {
        let _one_at_a_time = lock(&self.rotating);
        let now = UnixTime::now();
        let result = self
            .source
            .issue(now)
            .and_then(|issued| load(&issued, &self.provider).map(|c| (issued, c)));
        let mut status = lock(&self.status);
        status.last_attempt = UnixTime::now();
        match result {
            Ok((issued, current)) => {
                let spki = crate::digest::sha256(&current.spki_der);
                {
                    let mut recent = lock(&self.recent);
                    recent.push_front(spki);
                    recent.truncate(KEPT_KEYS);
                }
                *self
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(current);
                status.issued_at = issued.issued_at;
                status.spki_sha256 = hex(spki);
                status.evidence_sha256 = hex(issued.bundle.digest());
                status.rotations += 1;
                status.last_error = None;
                Ok(())
            }
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

fn worker(inner: &Weak<Inner>, signal: &Signal, period: Duration) {
    loop {
        if signal.wait(period) {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // A failure is recorded in the status (and logged); the current certificate stays.
        if let Err(e) = inner.rotate() {
            tracing::warn!(
                "WARNING: re-issuing the RA-TLS certificate failed, still serving the previous \
                 one: {e}"
            );
        }
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for RotatingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
