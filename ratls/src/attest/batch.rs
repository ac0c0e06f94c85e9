//! One TEE report and one TPM quote for every session that asks while the devices are busy.
//!
//! Fresh evidence is bound to each session's TLS exporter, so it cannot be made ahead of time;
//! but a TEE report or a TPM quote takes 20 to 100 ms on real hardware and the device serves one
//! at a time. A [`Batcher`] queues the sessions that ask while a report and quote are being
//! made; as soon as the devices are free, the next caller in line becomes the leader and makes
//! one report and one quote over the Merkle root of everything queued
//! ([`produce_batch`](super::produce_batch)), then hands every session its bundle and inclusion
//! proof. There is no fixed timer: a lone session is served at once (a tree of one), and under
//! load a batch starts as soon as the previous one ends, up to [`Batcher::with_max_batch`]
//! sessions, after waiting at most half of the previous generation time for the clients
//! the previous batch answered to come back (see `Batcher::gather`).
//!
//! Leader/follower on one mutex and condition variable: callers are already on blocking threads
//! (`spawn_blocking`), so no thread of our own is needed and nothing outlives the callers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{AttestError, Attester};
use crate::binding::BindingClaims;
use crate::bundle::Bundle;
use crate::time::UnixTime;

/// The default upper bound on sessions per batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// The longest a new leader waits for the previous batch's sessions to come back.
const MAX_GATHER: Duration = Duration::from_millis(25);

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
    /// A leader is waiting for the rest of the previous batch's sessions (see `gather`).
    gathering: bool,
    next_ticket: u64,
    /// At the end of the previous batch: how many sessions were active (those it answered and
    /// those already queued for the next) and how long it took.
    last: Option<(usize, Duration)>,
    /// The previous gathering waited in vain: the next leader does not wait.
    skip_gather: bool,
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
    /// Signalled on each arrival while a leader gathers.
    arrival: Condvar,
}

impl Batcher {
    /// A batcher over `attester`, at most [`DEFAULT_MAX_BATCH`] sessions per batch.
    pub fn new(attester: Arc<Attester>) -> Self {
        Self {
            attester,
            max_batch: DEFAULT_MAX_BATCH,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            arrival: Condvar::new(),
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
        if state.gathering {
            self.arrival.notify_one();
        }
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result;
            }
            if !state.busy {
                state.busy = true;
                state = self.gather(state);
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

    /// Under load, clients whose sessions a batch answered come back together (their next
    /// connections), a few milliseconds after it ends, while the sessions queued during it are
    /// already waiting: starting at once splits the clients into two cohorts that each wait
    /// for the other's batch, two generation times per connection. So a new leader waits until
    /// as many sessions are queued as were active when the previous batch ended (answered plus
    /// queued), at most half of the previous generation time and [`MAX_GATHER`]; when a
    /// wait was in vain (clients that do not come back), the next leader does not wait. At low
    /// load (a lone session, or a queue already that long) nobody waits.
    fn gather<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let Some((expected, took)) = state.last else {
            return state;
        };
        if state.skip_gather {
            state.skip_gather = false;
            return state;
        }
        let expected = expected.min(self.max_batch);
        if state.queue.len() >= expected {
            return state;
        }
        let deadline = Instant::now() + (took / 2).min(MAX_GATHER);
        state.gathering = true;
        while state.queue.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .arrival
                .wait_timeout(state, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        state.gathering = false;
        state.skip_gather = state.queue.len() < expected;
        state
    }

    /// Make one report and quote for `batch` (without the lock), then publish every result and
    /// wake the waiters (one of whom leads the next batch).
    fn lead(&self, batch: Vec<(u64, BindingClaims)>) {
        let mut leader = Leader {
            batcher: self,
            tickets: batch.iter().map(|(t, _)| *t).collect(),
            results: None,
            started: Instant::now(),
        };
        let n = batch.len();
        let sessions: Vec<BindingClaims> = batch
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let started = Instant::now();
        let produced = self
            .attester
            .produce_batch(sessions, UnixTime::now().as_secs());
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
    started: Instant,
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
        state.last = Some((
            self.tickets.len() + state.queue.len(),
            self.started.elapsed(),
        ));
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
