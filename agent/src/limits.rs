//! What strangers can make the agent hold: connections (in all and per IP address), buffered
//! request bytes, and evidence productions (each one a TEE report and a TPM quote, tens of
//! milliseconds of a device that serialises them). Over a limit the agent answers at once (a
//! closed connection, `503` or `429` with `Retry-After`) and keeps serving everyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections only count: a poisoned lock still holds usable counters.
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Counts per IP address, with a guard that gives the slot back on drop.
#[derive(Debug)]
struct PerPeer {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerPeer {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// One slot of one IP address; given back on drop.
#[derive(Debug)]
pub struct PeerSlot {
    owner: Arc<PerPeer>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.owner.counts);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Why a connection or a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection slot is taken.
    Connections,
    /// This IP address has all its connection slots.
    PeerConnections,
    /// The buffered-bytes budget is spent.
    Buffer,
    /// Every evidence slot is taken.
    Evidence,
    /// This IP address already has an evidence production running.
    PeerEvidence,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::PeerConnections => "peer_connections",
            Self::Buffer => "buffer",
            Self::Evidence => "evidence",
            Self::PeerEvidence => "peer_evidence",
        }
    }
}

/// A connection's slots (global and per IP address).
#[derive(Debug)]
pub struct ConnectionSlot {
    _global: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// An evidence production's slots.
#[derive(Debug)]
pub struct EvidenceSlot {
    _global: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// Buffered request bytes, held until the request is done.
#[derive(Debug)]
pub struct BufferSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// The limits and their current use.
#[derive(Debug)]
pub struct Limiter {
    pub limits: Limits,
    connections: Arc<Semaphore>,
    peer_connections: Arc<PerPeer>,
    buffer: Arc<Semaphore>,
    evidence: Arc<Semaphore>,
    peer_evidence: Arc<PerPeer>,
    refused: [AtomicU64; 5],
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            peer_connections: PerPeer::new(limits.max_connections_per_peer),
            buffer: Arc::new(Semaphore::new(limits.max_buffered_bytes)),
            evidence: Arc::new(Semaphore::new(limits.max_evidence_in_flight)),
            peer_evidence: PerPeer::new(1),
            refused: Default::default(),
            limits,
        }
    }

    fn refuse<T>(&self, why: Refusal) -> Result<T, Refusal> {
        if let Some(counter) = self.refused.get(why as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(why)
    }

    /// A slot for a new connection from `ip`.
    pub fn connection(&self, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let Ok(global) = self
            .connections
            .clone()
            .try_acquire_owned()
        else {
            return self.refuse(Refusal::Connections);
        };
        let Some(peer) = self.peer_connections.try_take(ip) else {
            return self.refuse(Refusal::PeerConnections);
        };
        Ok(ConnectionSlot {
            _global: global,
            _peer: peer,
        })
    }

    /// A slot for one evidence production for `ip`.
    pub fn evidence(&self, ip: IpAddr) -> Result<EvidenceSlot, Refusal> {
        let Ok(global) = self
            .evidence
            .clone()
            .try_acquire_owned()
        else {
            return self.refuse(Refusal::Evidence);
        };
        let Some(peer) = self.peer_evidence.try_take(ip) else {
            return self.refuse(Refusal::PeerEvidence);
        };
        Ok(EvidenceSlot {
            _global: global,
            _peer: peer,
        })
    }

    /// Reserve `bytes` of the buffered-bytes budget.
    pub fn buffer(&self, bytes: usize) -> Result<BufferSlot, Refusal> {
        if bytes == 0 {
            return Ok(BufferSlot(None));
        }
        let Ok(n) = u32::try_from(bytes) else {
            return self.refuse(Refusal::Buffer);
        };
        match self
            .buffer
            .clone()
            .try_acquire_many_owned(n)
        {
            Ok(permit) => Ok(BufferSlot(Some(permit))),
            Err(_) => self.refuse(Refusal::Buffer),
        }
    }

    /// Grow `slot` by `bytes`.
    pub fn grow(&self, slot: &mut BufferSlot, bytes: usize) -> Result<(), Refusal> {
        let more = self.buffer(bytes)?;
        match (&mut slot.0, more.0) {
            (Some(have), Some(more)) => have.merge(more),
            (none @ None, more) => *none = more,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// How many times each limit refused something, by [`Refusal::name`].
    pub fn refusals(&self) -> serde_json::Map<String, serde_json::Value> {
        [
            Refusal::Connections,
            Refusal::PeerConnections,
            Refusal::Buffer,
            Refusal::Evidence,
            Refusal::PeerEvidence,
        ]
        .into_iter()
        .map(|r| {
            let n = self
                .refused
                .get(r as usize)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            (r.name().to_owned(), serde_json::Value::from(n))
        })
        .collect()
    }

    /// Open connections now.
    pub fn open_connections(&self) -> usize {
        self.limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn per_peer_and_global_limits_release_on_drop() {
        let limiter = Limiter::new(Limits {
            max_connections: 3,
            max_connections_per_peer: 2,
            ..Limits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limiter.connection(a).unwrap();
        let _a2 = limiter.connection(a).unwrap();
        assert_eq!(limiter.connection(a).unwrap_err(), Refusal::PeerConnections);
        let _b1 = limiter.connection(b).unwrap();
        assert_eq!(limiter.connection(b).unwrap_err(), Refusal::Connections);
        drop(a1);
        let _b2 = limiter.connection(b).unwrap();
        assert_eq!(limiter.refusals()["connections"], 1);
        assert_eq!(limiter.refusals()["peer_connections"], 1);
    }

    #[test]
    fn one_evidence_per_peer_and_a_byte_budget() {
        let limiter = Limiter::new(Limits {
            max_buffered_bytes: 100,
            ..Limits::default()
        });
        let a: IpAddr = "::1".parse().unwrap();
        let e = limiter.evidence(a).unwrap();
        assert_eq!(limiter.evidence(a).unwrap_err(), Refusal::PeerEvidence);
        drop(e);
        let _e = limiter.evidence(a).unwrap();
        let mut slot = limiter.buffer(60).unwrap();
        assert_eq!(limiter.buffer(50).unwrap_err(), Refusal::Buffer);
        limiter.grow(&mut slot, 40).unwrap();
        assert_eq!(limiter.grow(&mut slot, 1).unwrap_err(), Refusal::Buffer);
        drop(slot);
        let _ = limiter.buffer(100).unwrap();
    }
}
