//! One TEE report and one TPM quote for every session that asks while the devices are busy.
//!
//! Fresh evidence is bound to each session's TLS exporter, so it cannot be made ahead of time;
//! but a TEE report or a TPM quote takes 20 to 100 ms on real hardware and the device serves one
//! at a time. A [`Batcher`] queues the sessions that ask while a report and quote are being
//! made; as soon as the devices are free, the next caller in line becomes the leader and makes
//! one report and one quote over the Merkle root of everything queued
//! ([`produce_batch`](super::produce_batch)), then hands every session its bundle and inclusion
//! proof. There is no timer: a lone session is served at once (a tree of one), and under load a
//! batch closes exactly when the previous one ends, up to [`Batcher::with_max_batch`] sessions.
//!
//! Leader/follower on one mutex and condition variable: callers are already on blocking threads
//! (`spawn_blocking`), so no thread of our own is needed and nothing outlives the callers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{AttestError, Attester};
use crate::binding::BindingClaims;
use crate::bundle::Bundle;
use crate::time::UnixTime;

/// The default upper bound on sessions per batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// What a [`Batcher`] has done since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches produced: TEE reports (and TPM quotes) made.
    pub batches: u64,
    /// Sessions answered.
    pub sessions: u64,
    /// The most sessions one batch answered.
    pub largest: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(u64, BindingClaims)>,
    done: HashMap<u64, Result<Bundle, AttestError>>,
    busy: bool,
    next_ticket: u64,
    stats: BatchStats,
}

/// Batches fresh-evidence requests over one machine's [`Attester`] (module documentation).
/// Share one per machine (`Arc`): two batchers on the same devices would each wait for them.
#[derive(Debug)]
pub struct Batcher {
    attester: Arc<Attester>,
    max_batch: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Batcher {
    /// A batcher over `attester`, at most [`DEFAULT_MAX_BATCH`] sessions per batch.
    pub fn new(attester: Arc<Attester>) -> Self {
        Self {
            attester,
            max_batch: DEFAULT_MAX_BATCH,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }
    }

    /// At most `max` sessions per batch (at least 1: `1` makes one report and quote per session,
    /// the unbatched behaviour; capped at [`MAX_TREE_SIZE`](crate::merkle::MAX_TREE_SIZE)).
    pub fn with_max_batch(mut self, max: usize) -> Self {
        let cap = usize::try_from(crate::merkle::MAX_TREE_SIZE).unwrap_or(usize::MAX);
        self.max_batch = max.clamp(1, cap);
        self
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The machine's evidence sources.
    pub fn attester(&self) -> &Arc<Attester> {
        &self.attester
    }

    pub fn stats(&self) -> BatchStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked while holding it; the state stays
        // consistent (every change is a single insertion or removal).
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fresh evidence for `binding` (the session's role, key, challenge and exporter; the AK
    /// and the issue time are the batch's): waits for the batch in progress, if any, then is
    /// answered by the next one. Blocking (TPM, TEE): async callers use `spawn_blocking`.
    pub fn produce(&self, binding: BindingClaims) -> Result<Bundle, AttestError> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket = state.next_ticket.wrapping_add(1);
        state.queue.push_back((ticket, binding));
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result;
            }
            if !state.busy {
                state.busy = true;
                let n = state.queue.len().min(self.max_batch);
                let batch: Vec<_> = state.queue.drain(..n).collect();
                drop(state);
                self.lead(batch);
                state = self.lock();
                continue;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Make one report and quote for `batch` (without the lock), then publish every result and
    /// wake the waiters (one of whom leads the next batch).
    fn lead(&self, batch: Vec<(u64, BindingClaims)>) {
        let mut leader = Leader {
            batcher: self,
            tickets: batch.iter().map(|(t, _)| *t).collect(),
            results: None,
        };
        let n = batch.len();
        let sessions: Vec<BindingClaims> = batch
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let started = std::time::Instant::now();
        let produced = super::produce_batch(
            &super::Sources {
                tee: self.attester.tee.as_deref(),
                tpm: self.attester.tpm.as_deref(),
                ima: self.attester.ima.as_deref(),
                event_log: self.attester.event_log.as_deref(),
                banks: &self.attester.banks,
                pcrs: &self.attester.pcrs,
                ima_inline: true,
            },
            sessions,
            UnixTime::now().as_secs(),
        );
        match &produced {
            Ok(_) => tracing::info!(
                sessions = n,
                ms = started.elapsed().as_millis() as u64,
                "fresh evidence: one TEE report and one TPM quote for {n} session(s)"
            ),
            Err(e) => tracing::warn!(
                sessions = n,
                "fresh evidence for {n} session(s) failed: {e}"
            ),
        }
        leader.results = Some(match produced {
            Ok(bundles) => bundles.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); n],
        });
    }
}

/// Publishes a batch's results when dropped, also when producing it panicked (then every session
/// of the batch gets an error instead of waiting forever).
struct Leader<'a> {
    batcher: &'a Batcher,
    tickets: Vec<u64>,
    results: Option<Vec<Result<Bundle, AttestError>>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let results = match self.results.take() {
            Some(results) if results.len() == self.tickets.len() => results,
            other => {
                let why = if other.is_some() {
                    "the batch produced a bundle count other than its session count"
                } else {
                    "producing the batch's evidence panicked"
                };
                vec![
                    Err(AttestError::BadResponse {
                        what: "batch",
                        why: why.into(),
                    });
                    self.tickets.len()
                ]
            }
        };
        let mut state = self.batcher.lock();
        let n = self.tickets.len() as u64;
        if results.iter().all(Result::is_ok) {
            state.stats.batches += 1;
            state.stats.sessions += n;
            state.stats.largest = state.stats.largest.max(n);
        }
        for (ticket, result) in self.tickets.drain(..).zip(results) {
            state.done.insert(ticket, result);
        }
        state.busy = false;
        drop(state);
        self.batcher.wake.notify_all();
    }
}

#[cfg(test)]
mod tests;
