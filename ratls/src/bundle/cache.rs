//! The batch cache: the verdict on a batch's shared evidence (one TEE report, one TPM quote, the
//! logs) is computed once and reused for every other session of the batch.
//!
//! An entry is found by SHA-256 over (label, the signed batch claims: AK, issue time, tree size,
//! root; policy digest) and used only when the session presents the very same shared evidence
//! (the report, the quote, the logs), compared byte for byte: the cached verdict is the verdict
//! on exactly these bytes, found without hashing them again (a byte comparison of the ~30 KB a
//! batch shares costs a few microseconds, a hash of them tens). What differs per session (its
//! binding claims and inclusion proof) is never cached: every session still checks its own
//! role, key, challenge, exporter and proof, and the proof must lead to the root the cached
//! verdict covered. Only trusted verdicts are stored, so a forged batch cannot poison the cache
//! for the genuine one (a session presenting other bytes under a cached root is verified in
//! full and never replaces the entry). A batch's sessions reach the verifier together: the
//! first verifies, the others wait for its verdict instead of repeating it. Entries live [`BATCH_CACHE_TTL_SECS`] (a batch's
//! sessions arrive within a generation time of each other) and the oldest goes first when the
//! cache is full.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{EventLogEvidence, ImaEvidence, TeeEvidence, TpmEvidence};
use crate::binding::BatchClaims;
use crate::claims::Claims;
use crate::eventlog::claims::EventLogClaims;
use crate::time::UnixTime;
use crate::verdict::Check;

use super::claims::ImaDeferred;

/// How long a shared verdict is reused, in seconds.
pub const BATCH_CACHE_TTL_SECS: u64 = 60;

/// What every session of a batch carries alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedEvidence {
    pub tee: Option<TeeEvidence>,
    pub tpm: Option<TpmEvidence>,
    pub ima: Option<ImaEvidence>,
    pub event_log: Option<EventLogEvidence>,
}

/// The verdict on a batch's shared evidence: the checks of the TEE, the TPM, the event log and
/// IMA, and what they found.
#[derive(Debug, Clone)]
pub(crate) struct SharedVerdict {
    pub checks: Vec<Check>,
    pub simulated: bool,
    pub tee: Option<Claims>,
    pub tpm: Option<Claims>,
    pub ima: Option<Claims>,
    pub event_log: Option<EventLogClaims>,
    pub ima_deferred: Option<ImaDeferred>,
    pub event_log_deferred: Option<ImaDeferred>,
}

impl SharedVerdict {
    pub fn is_trusted(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// A cached batch: its shared evidence and the verdict on it.
pub(crate) type Entry = (SharedEvidence, SharedVerdict);

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<[u8; 32], (Arc<Entry>, u64)>,
    order: VecDeque<[u8; 32]>,
    /// Keys a verification is running for: the batch's other sessions, which arrive together,
    /// wait for it instead of each verifying the same evidence.
    pending: HashSet<[u8; 32]>,
}

/// How long a session waits for another session's verification of the same batch before it
/// verifies on its own.
const PENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A bounded map from (shared evidence, policy) to trusted shared verdicts.
#[derive(Debug)]
pub struct BatchCache {
    inner: Mutex<Inner>,
    /// Signalled when a pending verification ends.
    ready: Condvar,
    capacity: usize,
    hits: std::sync::atomic::AtomicU64,
}

impl Default for BatchCache {
    /// 256 entries: a few megabytes of shared evidence at most, and more batches than a
    /// verifier sees within [`BATCH_CACHE_TTL_SECS`] from one attester.
    fn default() -> Self {
        Self::new(256)
    }
}

impl BatchCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many verifications reused a cached shared verdict.
    pub fn hits(&self) -> u64 {
        self.hits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a thread panicked holding it; every change is a single
        // insertion or removal, so the map stays consistent.
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared verdict under `key` when it is recent and `same` says its evidence is the one
    /// presented (then `true`: it came from the cache); otherwise `verify()`'s, stored when
    /// trusted. When another session of the batch is verifying it already, wait for that
    /// verification (at most [`PENDING_WAIT`]) rather than repeat it.
    pub(crate) fn get_or_verify(
        &self,
        key: [u8; 32],
        now: UnixTime,
        same: impl Fn(&SharedEvidence) -> bool,
        verify: impl FnOnce() -> Entry,
    ) -> (Arc<Entry>, bool) {
        let recent = |stored: u64| {
            now.as_secs().saturating_sub(stored) <= BATCH_CACHE_TTL_SECS && stored <= now.as_secs()
        };
        let deadline = std::time::Instant::now() + PENDING_WAIT;
        let mut inner = self.lock();
        let mut ours = false;
        loop {
            if let Some((entry, stored)) = inner.map.get(&key) {
                if recent(*stored) && same(&entry.0) {
                    self.hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return (entry.clone(), true);
                }
                // Other bytes under a cached root: verified on their own, never stored.
                break;
            }
            if !inner.pending.contains(&key) {
                inner.pending.insert(key);
                ours = true;
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .ready
                .wait_timeout(inner, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(inner);
        let pending = Pending {
            cache: self,
            key: ours.then_some(key),
        };
        let entry = Arc::new(verify());
        if ours && entry.1.is_trusted() {
            let mut inner = self.lock();
            inner
                .map
                .insert(key, (entry.clone(), now.as_secs()));
            inner.order.push_back(key);
            while inner.map.len() > self.capacity {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        drop(pending);
        (entry, false)
    }
}

/// Clears a pending mark and wakes the waiters when the verification ends (also when it
/// panicked: they then verify on their own).
struct Pending<'a> {
    cache: &'a BatchCache,
    key: Option<[u8; 32]>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.lock().pending.remove(&key);
            self.cache.ready.notify_all();
        }
    }
}

/// A cache and the digest of the policy it is consulted under (the other half of its key).
#[derive(Debug, Clone, Copy)]
pub struct BatchCacheRef<'a> {
    pub cache: &'a BatchCache,
    pub policy_digest: [u8; 32],
}

impl BatchCacheRef<'_> {
    pub(crate) fn key(&self, batch: &BatchClaims) -> [u8; 32] {
        self.key_labelled(b"ratls-batch-verdict-v1\0", batch)
    }

    fn key_labelled(&self, label: &[u8], batch: &BatchClaims) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(label);
        ctx.update(&batch.encode());
        ctx.update(&self.policy_digest);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The key of the verdict on a batch's shared evidence without its IMA part (sessions
    /// that carry an IMA delta, checked on their own): never the key of a verdict that
    /// includes a whole log.
    pub(crate) fn key_without_ima(&self, batch: &BatchClaims) -> [u8; 32] {
        self.key_labelled(b"ratls-batch-verdict-without-ima-v1\0", batch)
    }
}
