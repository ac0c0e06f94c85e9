//! The batch cache: the verdict on a batch's shared evidence (one TEE report, one TPM quote, the
//! logs) is computed once and reused for every other session of the batch.
//!
//! The key is SHA-256 over (label, digest of the shared evidence, policy digest). The shared
//! evidence covers everything the TEE and TPM checks read: the report, the quote, the logs, the
//! AK, the issue time, the tree size and the root. What differs per session (its binding claims
//! and inclusion proof) is never cached: every session still checks its own role, key,
//! challenge, exporter and proof, and the proof must lead to the root the cached verdict covered.
//! Only trusted verdicts are stored, so a forged batch cannot poison the cache for the genuine
//! one; entries live [`BATCH_CACHE_TTL_SECS`] (a batch's sessions arrive within a generation
//! time of each other) and the oldest goes first when the cache is full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::claims::Claims;
use crate::eventlog::claims::EventLogClaims;
use crate::time::UnixTime;
use crate::verdict::Check;

use super::claims::ImaDeferred;

/// How long a shared verdict is reused, in seconds.
pub const BATCH_CACHE_TTL_SECS: u64 = 60;

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

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<[u8; 32], (Arc<SharedVerdict>, u64)>,
    order: VecDeque<[u8; 32]>,
}

/// A bounded map from (shared evidence, policy) to trusted shared verdicts.
#[derive(Debug)]
pub struct BatchCache {
    inner: Mutex<Inner>,
    capacity: usize,
    hits: std::sync::atomic::AtomicU64,
}

impl Default for BatchCache {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl BatchCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many verifications reused a cached shared verdict.
    pub fn hits(&self) -> u64 {
        self.hits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn get(&self, key: &[u8; 32], now: UnixTime) -> Option<Arc<SharedVerdict>> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (verdict, stored) = inner.map.get(key)?;
        if now.as_secs().saturating_sub(*stored) > BATCH_CACHE_TTL_SECS || *stored > now.as_secs() {
            return None;
        }
        self.hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(verdict.clone())
    }

    /// Store a trusted shared verdict (an untrusted one is ignored).
    pub(crate) fn put(&self, key: [u8; 32], verdict: Arc<SharedVerdict>, now: UnixTime) {
        if !verdict.is_trusted() {
            return;
        }
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if inner
            .map
            .insert(key, (verdict, now.as_secs()))
            .is_none()
        {
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
}

/// A cache and the digest of the policy it is consulted under (the other half of its key).
#[derive(Debug, Clone, Copy)]
pub struct BatchCacheRef<'a> {
    pub cache: &'a BatchCache,
    pub policy_digest: [u8; 32],
}

impl BatchCacheRef<'_> {
    pub(crate) fn key(&self, shared_digest: &[u8; 32]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"ratls-batch-verdict-v1\0");
        ctx.update(shared_digest);
        ctx.update(&self.policy_digest);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}
