//! The verdict cache: a trusted verdict is reused for the same evidence, the same TLS key and the
//! same policy, as long as the evidence is still within the policy's maximum age.
//!
//! The key is SHA-256 over (SHA-256 of the whole certificate, policy digest). The certificate
//! digest covers the evidence digest and the key it is bound to: keying by the evidence alone
//! would be wrong, since a certificate with another key carrying a copy of the same extension
//! must be verified (and rejected at `binding.spki`), not served the verdict of the original. It
//! also makes a cache hit cheap: one hash of the certificate bytes, no parsing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::time::UnixTime;
use crate::verdict::Verdict;

/// A cache key.
pub type CacheKey = [u8; 32];

/// The cache key for a certificate (its DER) under a policy (its digest).
pub fn cache_key(cert_der: &[u8], policy_digest: &[u8; 32]) -> CacheKey {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"ratls-verdict-v1\0");
    ctx.update(&crate::digest::sha256(cert_der));
    ctx.update(policy_digest);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[derive(Debug)]
struct Entry {
    verdict: Arc<Verdict>,
    /// The evidence's issue time: the entry is only served while it is within the maximum age.
    issued_at: u64,
    /// The certificate's validity window.
    not_before: u64,
    not_after: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<CacheKey, Entry>,
    order: VecDeque<CacheKey>,
}

/// A bounded map from [`CacheKey`] to trusted verdicts (oldest insertion evicted first).
#[derive(Debug)]
pub struct VerdictCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for VerdictCache {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// The verdict for `key`, if cached, its evidence is at most `max_age_secs` old and not more
    /// than `max_skew_secs` in the future at `now`, and `now` is inside the certificate's
    /// validity window.
    pub fn get(
        &self,
        key: &CacheKey,
        now: UnixTime,
        max_age_secs: u64,
        max_skew_secs: u64,
    ) -> Option<Arc<Verdict>> {
        let inner = self.lock();
        let entry = inner.map.get(key)?;
        let now = now.as_secs();
        let fresh = now.saturating_sub(entry.issued_at) <= max_age_secs
            && entry.issued_at <= now.saturating_add(max_skew_secs)
            && (entry.not_before..=entry.not_after).contains(&now);
        fresh.then(|| entry.verdict.clone())
    }

    /// Cache a verdict about evidence issued at `issued_at` in a certificate valid over
    /// `validity` (seconds); only trusted verdicts are kept.
    pub fn insert(
        &self,
        key: CacheKey,
        verdict: Arc<Verdict>,
        issued_at: u64,
        validity: (u64, u64),
    ) {
        if !verdict.is_trusted() {
            return;
        }
        let entry = Entry {
            verdict,
            issued_at,
            not_before: validity.0,
            not_after: validity.1,
        };
        let mut inner = self.lock();
        if inner.map.insert(key, entry).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// How many verdicts are cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget everything (after a policy reload, say).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent (every mutation is a
        // single insert/remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
