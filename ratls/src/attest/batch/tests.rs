use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use super::*;
use crate::attest::{TeeAttester, TeeKind};
use crate::binding::{batch_leaf, BatchClaims, ReportData, Role};
use crate::bundle::TeeEvidence;

/// A TEE that takes `delay` per report, counts its reports, and puts report_data where a
/// quote would be (enough to check what it was asked to sign).
#[derive(Debug)]
struct SlowTee {
    delay: Duration,
    reports: AtomicUsize,
    panic: bool,
}

impl TeeAttester for SlowTee {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        assert!(!self.panic, "the TEE driver crashed");
        std::thread::sleep(self.delay);
        self.reports
            .fetch_add(1, Ordering::SeqCst);
        Ok(TeeEvidence::Tdx {
            quote: serde_bytes::ByteBuf::from(report_data.as_bytes().to_vec()),
            collateral: None,
        })
    }
}

fn batcher(delay_ms: u64, panic: bool) -> (Arc<SlowTee>, Batcher) {
    let tee = Arc::new(SlowTee {
        delay: Duration::from_millis(delay_ms),
        reports: AtomicUsize::new(0),
        panic,
    });
    let attester = Attester::new(Some(tee.clone()), None, None);
    (tee, Batcher::new(Arc::new(attester)))
}

fn session(i: u8) -> BindingClaims {
    BindingClaims {
        role: Role::server(),
        spki_sha256: [i; 32],
        ak_sha256: None,
        issued_at: 0,
        challenge: Some([i.wrapping_add(1); 32]),
        exporter: Some([i.wrapping_add(2); 32]),
    }
}

/// Every bundle's proof leads from its own session's leaf to the root the TEE signed.
fn check(bundle: &Bundle, asked: &BindingClaims) -> u64 {
    let proof = bundle
        .batch
        .as_ref()
        .expect("a batched bundle");
    let path: Vec<[u8; 32]> = proof
        .path
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    let root =
        crate::merkle::root_from_path(&batch_leaf(asked), proof.index, proof.size, &path).unwrap();
    assert_eq!(root.as_slice(), proof.root.as_slice());
    let signed = BatchClaims {
        ak_sha256: None,
        issued_at: bundle.binding.issued_at,
        tree_size: proof.size,
        root,
    };
    let Some(TeeEvidence::Tdx { quote, .. }) = &bundle.tee else {
        panic!("no TEE evidence")
    };
    assert_eq!(quote.as_slice(), signed.report_data().as_bytes());
    assert_eq!(bundle.binding.challenge, asked.challenge);
    proof.size
}

type Joined = std::thread::Result<Result<Bundle, AttestError>>;

fn run_concurrently(b: &Batcher, n: u8) -> Vec<Result<Bundle, AttestError>> {
    run_joined(b, n)
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

fn run_joined(b: &Batcher, n: u8) -> Vec<Joined> {
    let barrier = Barrier::new(usize::from(n));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    b.produce(session(i))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect()
    })
}

#[test]
fn a_lone_session_is_a_tree_of_one() {
    let (tee, b) = batcher(0, false);
    let bundle = b.produce(session(7)).unwrap();
    assert_eq!(check(&bundle, &session(7)), 1);
    assert!(bundle
        .batch
        .as_ref()
        .unwrap()
        .path
        .is_empty());
    assert_eq!(tee.reports.load(Ordering::SeqCst), 1);
    assert_eq!(
        b.stats(),
        BatchStats {
            batches: 1,
            sessions: 1,
            largest: 1
        }
    );
}

#[test]
fn concurrent_sessions_share_reports() {
    let (tee, b) = batcher(50, false);
    let results = run_concurrently(&b, 32);
    for (i, r) in results.iter().enumerate() {
        check(r.as_ref().unwrap(), &session(i as u8));
    }
    // The first caller leads alone or with a few; everyone else waits for the next batch.
    let reports = tee.reports.load(Ordering::SeqCst);
    assert!(reports < 8, "{reports} reports for 32 sessions");
    let stats = b.stats();
    assert_eq!(stats.sessions, 32);
    assert_eq!(stats.batches, reports as u64);
    assert!(stats.largest >= 4);
}

#[test]
fn max_batch_bounds_the_tree() {
    let (tee, b) = batcher(20, false);
    let b = b.with_max_batch(1);
    let results = run_concurrently(&b, 6);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(check(r.as_ref().unwrap(), &session(i as u8)), 1);
    }
    assert_eq!(tee.reports.load(Ordering::SeqCst), 6);
    assert_eq!(b.stats().largest, 1);
}

#[test]
fn a_panicking_device_fails_its_batch_and_the_next_batch_still_runs() {
    let (_, b) = batcher(0, true);
    let results = run_joined(&b, 4);
    // The leaders' threads unwind; every other session of their batches gets an error.
    let leaders = results
        .iter()
        .filter(|r| r.is_err())
        .count();
    assert!(leaders >= 1);
    for r in results
        .iter()
        .filter_map(|r| r.as_ref().ok())
    {
        let e = r.as_ref().unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }
    // Not wedged: the next caller leads again (and unwinds the same way, promptly).
    let again = std::thread::scope(|s| s.spawn(|| b.produce(session(1))).join());
    assert!(again.is_err());
    assert_eq!(b.stats().batches, 0);
}

#[test]
fn a_bundle_claims_the_digests_its_report_signed() {
    let (_, b) = batcher(0, false);
    for bundle in run_concurrently(&b, 3) {
        let bundle = bundle.unwrap();
        let Some(TeeEvidence::Tdx { quote, .. }) = &bundle.tee else {
            panic!("no TEE evidence")
        };
        // Batched: the batch's digests, not the session's own binding digests.
        assert_eq!(quote.as_slice(), bundle.claimed_digests().0.as_bytes());
        assert_ne!(bundle.claimed_digests().0, bundle.binding.report_data());
    }
    let single = b
        .attester()
        .produce(session(9), true)
        .unwrap();
    let Some(TeeEvidence::Tdx { quote, .. }) = &single.tee else {
        panic!("no TEE evidence")
    };
    assert_eq!(quote.as_slice(), single.claimed_digests().0.as_bytes());
    assert_eq!(single.claimed_digests().1, single.binding.qualifying_data());
}
