//! Group `batch`: fresh attestation at certificate-mode speed (issue 15).
//!
//! One attested server (swtpm, the simulated TEE behind a wrapper that takes 40 ms per report,
//! as hardware does, and a 200-entry IMA log) on loopback TCP, and 64 clients (then 128 and
//! 256) that each open new connections back to back for a fixed time, through the same code the proxy runs
//! (`tls::server_config`, `fresh::server_exchange` / `client_exchange`). Three modes, in one
//! run, rounds interleaved:
//!
//! - certificate mode: the evidence is in the RA-TLS certificate, verified once and cached by
//!   every client (`AttestedServerVerifier`, `Mode::Certificate`);
//! - batched fresh mode: each connection runs the exporter-bound exchange; sessions asking while
//!   a report is made share the next one (`Batcher`, up to 256 per batch);
//! - naive fresh mode: the same, one report and quote per session (`with_max_batch(1)`).
//!
//! Each connection counts when the client has its verdict and the server's first byte; its
//! latency is from the TCP connect to then. Also timed: one session's verification of batched
//! evidence when the batch's shared verdict is cached (proof + binding), next to a full one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{AttestError, Attester, Batcher, ImaFile, TeeAttester, TeeKind};
use ratls::binding::{BindingClaims, ReportData, Role};
use ratls::bundle::TeeEvidence;
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::{self, Challenge, FixedKey, FreshOptions, SelfAttestation};
use ratls::tls::{
    danger, AttestationPolicy, AttestedServerVerifier, Mode, RotatingCert, ALPN_ATTEST,
};
use ratls::{Policy, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{measure, Measurement};

const CLIENTS: usize = 64;
/// The most clients of the sweep (every waiting session holds a blocking thread of the runtime).
const MAX_CLIENTS: usize = 256;
const LATENCY: Duration = Duration::from_millis(40);
const SERVER_NAME: &str = "bench.attested";

/// The simulated TEE, taking `delay` per report (a hardware report or quote: tens of ms).
#[derive(Debug)]
struct SlowTee {
    inner: SimTee,
    delay: Duration,
}

impl TeeAttester for SlowTee {
    fn kind(&self) -> TeeKind {
        self.inner.kind()
    }

    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        std::thread::sleep(self.delay);
        self.inner.attest(report_data)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Certificate,
    Batched,
    Naive,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Certificate => {
                "certificate mode (evidence in the RA-TLS certificate, verdict cached)"
            }
            Self::Batched => {
                "batched fresh mode (exporter-bound evidence, one report + quote per batch)"
            }
            Self::Naive => "naive fresh mode (one report + quote per connection)",
        }
    }
}

/// What one mode achieved in one round.
#[derive(Default, Clone)]
struct Run {
    connections: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    batches: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let Some(crate::tls::BenchTpm {
        tpm,
        log_path,
        swtpm: _swtpm,
    }) = crate::tls::bench_tpm("batch")
    else {
        return Vec::new();
    };
    let ca = Arc::new(SimCa::generate().expect("sim CA"));
    let slow = SlowTee {
        inner: SimTee::new(ca.clone()).expect("sim TEE"),
        delay: LATENCY,
    };
    let attester = Arc::new(Attester::new(
        Some(Arc::new(slow)),
        Some(tpm.clone()),
        Some(Arc::new(ImaFile(log_path))),
    ));
    let cert = RotatingCert::from_attester(
        attester.clone(),
        CertParams::new(Role::server(), SERVER_NAME, vec![SERVER_NAME.to_owned()]),
        Duration::from_secs(3600),
    )
    .expect("RA-TLS certificate");
    let mut policy = AttestationPolicy::for_server(Policy::default());
    danger::trust_simulated_root(&mut policy, ca.ark_der());

    let mut rows = verification(scale, &attester, &cert, &policy);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_CLIENTS * 2 + 8)
        .enable_all()
        .build()
        .expect("runtime");
    let secs = (scale(20) as f64 / 4.0).clamp(0.5, 5.0);
    let window = Duration::from_secs_f64(secs);
    let rounds = if scale(20) >= 20 { 3 } else { 1 };
    // The case (64 clients, the three modes), then more clients than the generation
    // latency needs to stop being the limit (Little's law: clients / latency).
    let cases: [(usize, Kind); 7] = [
        (CLIENTS, Kind::Certificate),
        (CLIENTS, Kind::Batched),
        (CLIENTS, Kind::Naive),
        (128, Kind::Certificate),
        (128, Kind::Batched),
        (MAX_CLIENTS, Kind::Certificate),
        (MAX_CLIENTS, Kind::Batched),
    ];
    let mut totals: Vec<(usize, Kind, Run)> = cases
        .into_iter()
        .map(|(n, k)| (n, k, Run::default()))
        .collect();
    for round in 0..rounds {
        for (clients, kind, total) in totals.iter_mut() {
            // The naive mode is latency-bound at ~25 connections/s: a shorter window says as much.
            let w = if *kind == Kind::Naive {
                window.min(Duration::from_secs(2))
            } else {
                window
            };
            let r = rt.block_on(one_mode(*kind, *clients, &attester, &cert, &policy, w));
            eprintln!(
                "batch: round {round}: {clients} clients, {}: {} connections in {:.2} s, {} batches",
                kind.label(),
                r.connections,
                r.elapsed.as_secs_f64(),
                r.batches
            );
            total.connections += r.connections;
            total.elapsed += r.elapsed;
            total.batches += r.batches;
            total.latencies.extend(r.latencies);
        }
    }
    let rate = |r: &Run| r.connections as f64 / r.elapsed.as_secs_f64().max(1e-9);
    for (_, _, total) in totals.iter_mut() {
        total.latencies.sort();
    }
    for (clients, kind, total) in &totals {
        let cert = totals
            .iter()
            .find(|(n, k, _)| n == clients && *k == Kind::Certificate)
            .map(|(_, _, r)| r)
            .expect("a certificate-mode case per client count");
        let p50 = percentile(&total.latencies, 0.5);
        let p99 = percentile(&total.latencies, 0.99);
        let added =
            |p: f64| percentile(&total.latencies, p).saturating_sub(percentile(&cert.latencies, p));
        rows.push(Measurement {
            name: format!(
                "batch: {clients} clients, new connections, {}: p50 {:.1} ms, p99 {:.1} ms{}",
                kind.label(),
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                if *kind == Kind::Certificate {
                    String::new()
                } else {
                    format!(
                        "; {:.2}x the certificate-mode rate; added p50 {:.1} ms = {:.2}x and p99 {:.1} ms = {:.2}x the {} ms generation latency; {:.1} sessions per report",
                        rate(total) / rate(cert).max(1e-9),
                        added(0.5).as_secs_f64() * 1e3,
                        added(0.5).as_secs_f64() / LATENCY.as_secs_f64(),
                        added(0.99).as_secs_f64() * 1e3,
                        added(0.99).as_secs_f64() / LATENCY.as_secs_f64(),
                        LATENCY.as_millis(),
                        total.connections as f64 / total.batches.max(1) as f64
                    )
                }
            ),
            iterations: total.connections,
            elapsed: total.elapsed,
            units_per_iter: 1,
            unit: "conn",
            memory_bytes: None,
        });
    }
    rows
}

/// One mode for `window`: a server on loopback and `clients` clients connecting back to back.
async fn one_mode(
    kind: Kind,
    clients: usize,
    attester: &Arc<Attester>,
    cert: &RotatingCert,
    policy: &AttestationPolicy,
    window: Duration,
) -> Run {
    let fresh = kind != Kind::Certificate;
    let alpn = if fresh {
        vec![ALPN_ATTEST.to_vec()]
    } else {
        Vec::new()
    };
    let server_config = ratls::tls::server_config(Arc::new(cert.clone()), None, alpn.clone())
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let batcher = Arc::new(Batcher::new(attester.clone()).with_max_batch(match kind {
        Kind::Naive => 1,
        _ => ratls::attest::DEFAULT_MAX_BATCH,
    }));
    let me = SelfAttestation {
        batcher: batcher.clone(),
        role: Role::server(),
        keys: Arc::new(cert.clone()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (acceptor, me) = (acceptor.clone(), me.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if fresh {
                        let opts = FreshOptions::new().attest_self(me);
                        if fresh::server_exchange(&mut tls, &opts)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                });
            }
        })
    };
    // One policy (and so one verdict cache and one batch cache) shared by all the clients.
    let policy = policy
        .clone()
        .with_max_age(Duration::from_secs(3600));
    let verifier = AttestedServerVerifier::new(
        policy.clone(),
        if fresh {
            Mode::Fresh
        } else {
            Mode::Certificate
        },
    );
    let client_config =
        Arc::new(ratls::tls::client_config(Arc::new(verifier), None, alpn).expect("client config"));
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (connector, name, policy, latencies) = (
            connector.clone(),
            name.clone(),
            policy.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("connect");
                let _ = tcp.set_nodelay(true);
                let mut tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .expect("handshake");
                if fresh {
                    let opts = FreshOptions::new().verify_peer(policy.clone());
                    let outcome = fresh::client_exchange(&mut tls, &opts)
                        .await
                        .expect("fresh exchange");
                    let v = outcome.peer_verdict.expect("a verdict");
                    assert!(v.is_trusted(), "{v}");
                }
                let mut ok = [0u8; 2];
                tls.read_exact(&mut ok)
                    .await
                    .expect("the server's first bytes");
                mine.push(t0.elapsed());
            }
            latencies
                .lock()
                .expect("latencies")
                .extend(mine);
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::net::TcpStream::connect(addr).await;
    let _ = server.await;
    let latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    Run {
        connections: latencies.len() as u64,
        elapsed,
        latencies,
        batches: batcher.stats().batches,
    }
}

/// One session's verification of batched evidence: with the batch's shared verdict cached
/// (proof, binding, cache lookup), and in full (every signature), on bundles of one batch of 64.
fn verification(
    scale: &dyn Fn(u64) -> u64,
    attester: &Arc<Attester>,
    cert: &RotatingCert,
    policy: &AttestationPolicy,
) -> Vec<Measurement> {
    let current = cert.current();
    let leaf = current
        .cert
        .first()
        .expect("a certificate");
    let spki = ratls::pki::Cert::from_der(leaf)
        .expect("our certificate parses")
        .spki_der()
        .to_vec();
    let keys = FixedKey::from_spki_der(&spki);
    let sessions: Vec<(Challenge, [u8; 32], BindingClaims)> = (0..64)
        .map(|_| {
            let challenge = Challenge::new().expect("random");
            let exporter = *Challenge::new()
                .expect("random")
                .as_bytes();
            let request = fresh::EvidenceRequest {
                challenge: *challenge.as_bytes(),
                spki_sha256: keys.spki_sha256,
            };
            let claims = fresh::Answer::new(request, Role::server(), &keys)
                .expect("answer")
                .bind_exporter(exporter, UnixTime::now())
                .into_claims();
            (challenge, exporter, claims)
        })
        .collect();
    let bundles = attester
        .produce_batch(
            sessions
                .iter()
                .map(|(_, _, c)| c.clone())
                .collect(),
            UnixTime::now().as_secs(),
        )
        .expect("a batch");
    let cmws: Vec<Vec<u8>> = bundles
        .iter()
        .map(|b| b.to_cmw())
        .collect();
    let now = UnixTime::now();
    let cached_policy = policy.clone();
    let verify = |policy: &AttestationPolicy, i: usize| {
        let (challenge, exporter, _) = &sessions[i];
        let v = fresh::verify_response(&cmws[i], policy, &spki, challenge, *exporter, now);
        assert!(v.is_trusted(), "{v}");
        v
    };
    // The first session of the batch fills the cache.
    verify(&cached_policy, 0);
    let mut i = 0;
    let n = scale(2000).max(64);
    let cached = measure(
        &format!(
            "batch: one session's verification, batch verdict cached (decode {} B, binding, inclusion proof of 6 hashes, cache lookup)",
            cmws[1].len()
        ),
        n,
        1,
        "sessions",
        || {
            i = i % 63 + 1;
            verify(&cached_policy, i)
        },
    );
    assert!(cached_policy.batch_cache().hits() >= n);
    let mut j = 0;
    let full = measure(
        "batch: one session's verification, in full (no cache: TEE chain and signature, TPM quote, IMA replay)",
        scale(200).max(10),
        1,
        "sessions",
        || {
            j = (j + 1) % 64;
            let (challenge, exporter, _) = &sessions[j];
            let mut expect = policy.expectations(&spki, now);
            expect.challenge = Some(*challenge.as_bytes());
            expect.exporter = Some(*exporter);
            expect.batch_cache = None;
            let v = ratls::bundle::verify(&cmws[j], policy.policy(), &expect);
            assert!(v.is_trusted(), "{v}");
            v
        },
    );
    let proof = bundles[1]
        .batch
        .clone()
        .expect("batched");
    let path: Vec<[u8; 32]> = proof
        .path
        .iter()
        .map(|h| {
            h.as_slice()
                .try_into()
                .expect("32 bytes")
        })
        .collect();
    let claims = sessions[1].2.clone();
    let alone = measure(
        "batch: inclusion proof and batch binding alone (leaf, 6 node hashes, report_data and qualifying data of the root)",
        scale(20000).max(100),
        1,
        "sessions",
        || {
            let leaf = ratls::binding::batch_leaf(&claims);
            let root = ratls::merkle::root_from_path(&leaf, proof.index, proof.size, &path)
                .expect("a proof");
            let batch = ratls::binding::BatchClaims {
                ak_sha256: bundles[1].binding.ak_sha256,
                issued_at: bundles[1].binding.issued_at,
                tree_size: proof.size,
                root,
            };
            (batch.report_data(), batch.qualifying_data())
        },
    );
    let decode = measure(
        "batch: reference: decoding the session's bundle alone (Bundle::from_cmw)",
        n,
        1,
        "sessions",
        || {
            ratls::bundle::Bundle::from_cmw(&cmws[1], ratls::bundle::MAX_BUNDLE_LEN)
                .expect("a bundle")
        },
    );
    let hash = measure(
        "batch: reference: SHA-256 of the session's bundle bytes (the evidence digest in the verdict)",
        n,
        1,
        "sessions",
        || ratls::digest::sha256(&cmws[1]),
    );
    vec![alone, decode, hash, cached, full]
}
