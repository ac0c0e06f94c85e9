//! Group `reattest`: what continuous re-attestation of live connections costs (issue 16), next
//! to what it replaces.
//!
//! - The IMA delta, on a synthetic boot of 100 000 measured files plus 10 new ones: the
//!   verifier replays the 10 from its anchor (`ima::verify_delta`) instead of the whole log
//!   (`ima::verify_anchored`, the reference: what a new connection, or a verifier without an
//!   anchor, checks); the attester cuts the tail past the anchor (`Log::parse` + `tail`).
//! - Live sessions on loopback TCP with the real pieces (swtpm, the simulated TEE, the 200-entry
//!   IMA log, `tls::server_config`, the fresh exchange, `fresh::live::run`): one re-attestation
//!   round trip on an open connection (new challenge, report + quote, delta, verification,
//!   RESULT), next to the reference of opening a new fresh connection (TCP + TLS handshake +
//!   exchange with the whole log) that a verifier would otherwise need for the same freshness.
//!   Then 64 live connections re-attesting at once: the batcher shares reports and quotes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{Attester, Batcher, ImaFile};
use ratls::binding::Role;
use ratls::digest::HashAlg;
use ratls::ima::{self, ImaPolicy, Log, ReplayMode, Template};
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::{self, live, FreshOptions, LiveOptions, SelfAttestation};
use ratls::tls::{
    danger, AttestationPolicy, AttestedServerVerifier, Mode, RotatingCert, ALPN_ATTEST,
};
use ratls::tpm::PcrValues;
use ratls::Policy;

use crate::{measure, Measurement};

const SERVER_NAME: &str = "bench.attested";
const BASE: usize = 100_000;
const NEW: usize = 10;

fn push(log: &mut Log, path: &str) {
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &HashAlg::Sha256.digest(path.as_bytes()),
        path.as_bytes(),
        &[],
    )
    .expect("entry");
}

fn quote(log: &Log, boot: &[Vec<u8>]) -> PcrValues {
    let mut pcrs = PcrValues::default();
    for (i, v) in boot.iter().enumerate() {
        pcrs.insert(HashAlg::Sha256, u8::try_from(i).expect("pcr"), v.clone());
    }
    pcrs.insert(
        HashAlg::Sha256,
        10,
        log.replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash),
    );
    pcrs
}

/// The delta against the whole log, on 100 000 + 10 entries.
fn delta(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let boot: Vec<Vec<u8>> = (0..10u8)
        .map(|i| vec![i + 1; 32])
        .collect();
    let mut log = Log::new(HashAlg::Sha1);
    let aggregate = HashAlg::Sha256.digest_all(boot.iter().map(Vec::as_slice));
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &aggregate,
        b"boot_aggregate",
        &[],
    )
    .expect("boot_aggregate");
    for i in 0..BASE {
        push(&mut log, &format!("/usr/lib/x86_64-linux-gnu/file-{i}.so"));
    }
    let first_pcrs = quote(&log, &boot);
    let first_bytes = log.to_binary();
    let first = ima::verify_anchored(
        &first_bytes,
        ima::quoted_pcr10(&first_pcrs),
        ima::ImaQuote::Present(&first_pcrs),
        &ImaPolicy::default(),
    );
    assert!(first.is_trusted(), "{first}");
    let anchor = match &first.claims {
        ratls::Claims::Ima(c) => c
            .anchor
            .as_deref()
            .cloned()
            .expect("anchored"),
        _ => panic!("IMA claims"),
    };
    for i in 0..NEW {
        push(&mut log, &format!("/opt/app/new-{i}"));
    }
    let pcrs = quote(&log, &boot);
    let whole = log.to_binary();
    let from = usize::try_from(anchor.entries).expect("index");
    let tail = log.tail(from).to_binary();
    eprintln!(
        "reattest: whole log {} entries = {} bytes; delta {} entries = {} bytes",
        log.len(),
        whole.len(),
        NEW,
        tail.len()
    );
    let n_full = scale(10).max(2);
    let n_delta = scale(20_000).max(100);
    vec![
        measure(
            &format!("reattest: IMA, the whole log replayed and checked ({} entries, {} bytes): a new connection's cost, the reference", log.len(), whole.len()),
            n_full,
            log.len() as u64,
            "entries",
            || {
                let v = ima::verify_anchored(
                    &whole,
                    ima::quoted_pcr10(&pcrs),
                    ima::ImaQuote::Present(&pcrs),
                    &ImaPolicy::default(),
                );
                assert!(v.is_trusted());
            },
        ),
        measure(
            &format!("reattest: IMA delta, {NEW} new entries ({} bytes) replayed from the anchor after {} (ima::verify_delta)", tail.len(), anchor.entries),
            n_delta,
            NEW as u64,
            "entries",
            || {
                let v = ima::verify_delta(&tail, anchor.entries, &anchor, &pcrs, &ImaPolicy::default());
                assert!(v.is_trusted());
            },
        ),
        measure(
            &format!("reattest: attester, the delta cut from the whole {}-entry log by walking the record headers (Log::binary_tail)", log.len()),
            scale(200).max(4),
            log.len() as u64,
            "entries",
            || Log::binary_tail(&whole, from).expect("a binary log").to_vec(),
        ),
        measure(
            &format!("reattest: attester, reference: the same cut by parsing the {}-entry log (Log::parse + tail + to_binary)", log.len()),
            n_full,
            log.len() as u64,
            "entries",
            || {
                let parsed = Log::parse(&whole).expect("log");
                parsed.tail(from).to_binary()
            },
        ),
    ]
}

/// One connection's client side: the verdict, and the live session when `live`.
struct Client {
    rechecks: tokio::sync::mpsc::UnboundedReceiver<live::Recheck>,
    _app: tokio::io::DuplexStream,
}

/// The attested server: answers the exchange, offers live sessions, and sends `payload` bytes
/// to each client (through the live session when there is one), then closes.
async fn server(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    me: SelfAttestation,
    payload: usize,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, me) = (acceptor.clone(), me.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut opts = FreshOptions::new().attest_self(me);
            opts.live = Some(LiveOptions {
                min_peer_interval: Duration::ZERO,
                ..LiveOptions::answering()
            });
            let Ok(out) = fresh::server_exchange(&mut tls, &opts).await else {
                return;
            };
            if out.live {
                let (mut near, far) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let _ = send(&mut near, payload).await;
                });
                let _ = live::run(tls, far, &opts, None, None).await;
            } else {
                let _ = send(&mut tls, payload).await;
            }
        });
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, payload: usize) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if payload == 0 {
        return Ok(());
    }
    let chunk = vec![0x5a; 64 * 1024];
    let mut left = payload;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).await?;
        left -= n;
    }
    w.shutdown().await
}

/// Bytes through one connection, plain (the stream after the exchange) or live (DATA frames
/// through `fresh::live::run`): the cost of framing the application's bytes.
async fn throughput(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    policy: &AttestationPolicy,
    live_session: bool,
    payload: usize,
) {
    use tokio::io::AsyncReadExt;
    // Live, with no re-attestation during the transfer.
    let every = live_session.then_some(Duration::from_secs(3600));
    let (mut tls, opts, out) = open(addr, connector, policy, every).await;
    assert_eq!(out.live, live_session);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    if live_session {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(async move { live::run(tls, far, &opts, None, None).await });
        loop {
            let n = near.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n;
        }
        drop(near);
        let _ = session.await;
    } else {
        loop {
            let n = tls.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got += n;
        }
    }
    assert_eq!(got, payload);
}

type ClientTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// TCP, TLS, the exchange (asking for live sessions re-attesting `every` when given).
async fn open(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    policy: &AttestationPolicy,
    every: Option<Duration>,
) -> (ClientTls, FreshOptions, fresh::FreshOutcome) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect");
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut opts = FreshOptions::new().verify_peer(policy.clone());
    opts.live = every.map(LiveOptions::every);
    let out = fresh::client_exchange(&mut tls, &opts)
        .await
        .expect("exchange");
    (tls, opts, out)
}

async fn connect(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    policy: &AttestationPolicy,
    every: Option<Duration>,
) -> Option<Client> {
    let (tls, opts, out) = open(addr, connector, policy, every).await;
    let verdict = out.peer_verdict.expect("verdict");
    assert!(verdict.is_trusted(), "{verdict}");
    if !out.live {
        return None;
    }
    let (tx, rechecks) = tokio::sync::mpsc::unbounded_channel();
    let (near, far) = tokio::io::duplex(64 * 1024);
    let anchor = live::ima_anchor(&verdict);
    tokio::spawn(async move { live::run(tls, far, &opts, anchor, Some(tx)).await });
    Some(Client {
        rechecks,
        _app: near,
    })
}

/// Wait for `n` trusted re-attestations of `client`.
async fn rechecks(client: &mut Client, n: u64) {
    for _ in 0..n {
        let r = client
            .rechecks
            .recv()
            .await
            .expect("the session re-attests");
        assert!(r.verdict.is_trusted(), "{}", r.verdict);
    }
}

/// The verifier's work per check, without I/O: a re-attestation's evidence (report, quote, IMA
/// delta from the anchor) next to a new connection's (report, quote, whole log).
fn verification(
    scale: &dyn Fn(u64) -> u64,
    batcher: &Batcher,
    cert: &RotatingCert,
    policy: &AttestationPolicy,
) -> Vec<Measurement> {
    let spki = cert.current_spki();
    let challenge = fresh::Challenge::new().expect("random");
    let exporter = [0x42; 32];
    let request = fresh::EvidenceRequest {
        challenge: *challenge.as_bytes(),
        spki_sha256: ratls::binding::spki_sha256(&spki),
    };
    let bound = || {
        fresh::Answer::new(request, Role::server(), cert)
            .expect("answer")
            .bind_exporter(exporter, ratls::UnixTime::now())
    };
    let whole = bound()
        .produce(batcher, ratls::bundle::MAX_BUNDLE_LEN)
        .expect("evidence");
    let verify_with = |cmw: &[u8], anchor: Option<&ima::ImaAnchor>, cached: bool| {
        let mut expect = policy.expectations(&spki, ratls::UnixTime::now());
        if !cached {
            expect.batch_cache = None;
        }
        expect.challenge = Some(*challenge.as_bytes());
        expect.exporter = Some(exporter);
        expect.ima_anchor = anchor;
        let v = ratls::bundle::verify(cmw, policy.policy(), &expect);
        assert!(v.is_trusted(), "{v}");
        v
    };
    let verify = |cmw: &[u8], anchor: Option<&ima::ImaAnchor>| verify_with(cmw, anchor, false);
    let anchor = live::ima_anchor(&verify(&whole, None)).expect("anchored");
    let delta = bound()
        .produce_delta(batcher, ratls::bundle::MAX_BUNDLE_LEN, anchor.entries)
        .expect("evidence");
    let n = scale(400).max(10);
    // The first session of the batch fills the cache of its shared part.
    verify_with(&delta, Some(&anchor), true);
    vec![
        measure(
            &format!("reattest: verifier, a new connection's evidence verified in full ({} bytes: report, quote, whole 200-entry log)", whole.len()),
            n,
            1,
            "checks",
            || verify(&whole, None),
        ),
        measure(
            &format!("reattest: verifier, a re-attestation's evidence verified in full ({} bytes: report, quote, IMA delta from the anchor)", delta.len()),
            n,
            1,
            "checks",
            || verify(&delta, Some(&anchor)),
        ),
        measure(
            "reattest: verifier, the same with the batch's shared verdict cached (another session of the batch verified it): binding, proof, IMA delta",
            n,
            1,
            "checks",
            || {
                let v = verify_with(&delta, Some(&anchor), true);
                assert!(matches!(&v.claims, ratls::Claims::Bundle(b) if b.batch.as_ref().is_some_and(|b| b.shared_verdict_cached)));
            },
        ),
    ]
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let mut rows = delta(scale);
    let Some(crate::tls::BenchTpm {
        tpm,
        log_path,
        swtpm: _swtpm,
    }) = crate::tls::bench_tpm("reattest")
    else {
        return rows;
    };
    let ca = Arc::new(SimCa::generate().expect("sim CA"));
    let attester = Arc::new(Attester::new(
        Some(Arc::new(SimTee::new(ca.clone()).expect("sim TEE"))),
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
    let alpn = vec![ALPN_ATTEST.to_vec()];
    let server_config = ratls::tls::server_config(Arc::new(cert.clone()), None, alpn.clone())
        .expect("server config");
    let batcher = Arc::new(Batcher::new(attester.clone()));
    let me = SelfAttestation {
        batcher: batcher.clone(),
        role: Role::server(),
        keys: Arc::new(cert.clone()),
    };
    let verifier = AttestedServerVerifier::new(policy.clone(), Mode::Fresh);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        ratls::tls::client_config(Arc::new(verifier), None, alpn).expect("client config"),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(256)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    rt.spawn(server(listener, acceptor.clone(), me.clone(), 0));

    rows.extend(verification(scale, &batcher, &cert, &policy));

    let n = scale(40).max(4);
    // The reference: a new fresh connection per check.
    let reconnect = rt.block_on(async {
        let _ = connect(addr, &connector, &policy, None).await;
        let start = Instant::now();
        for _ in 0..n {
            let _ = connect(addr, &connector, &policy, None).await;
        }
        start.elapsed()
    });
    rows.push(Measurement {
        name: "reattest: reference, a new fresh connection per check (TCP + TLS 1.3 handshake + exchange: report, quote, whole 200-entry log)".into(),
        iterations: n,
        elapsed: reconnect,
        units_per_iter: 1,
        unit: "checks",
        memory_bytes: None,
    });
    // One live connection re-attested back to back (interval 0: the next request as soon as
    // the previous answer verified).
    let live_one = rt.block_on(async {
        let mut client = connect(addr, &connector, &policy, Some(Duration::ZERO))
            .await
            .expect("live");
        rechecks(&mut client, 1).await;
        let start = Instant::now();
        rechecks(&mut client, n).await;
        start.elapsed()
    });
    rows.push(Measurement {
        name: "reattest: one live connection, a re-attestation round trip (REATTEST, report + quote, IMA delta, verification, RESULT) on the open session".into(),
        iterations: n,
        elapsed: live_one,
        units_per_iter: 1,
        unit: "checks",
        memory_bytes: None,
    });
    // 64 live connections re-attesting at once: the batcher shares reports and quotes.
    let conns = 64u64;
    let before = batcher.stats();
    let per = scale(10).max(2);
    let many = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(
                connect(addr, &connector, &policy, Some(Duration::ZERO))
                    .await
                    .expect("live"),
            );
        }
        for c in &mut clients {
            rechecks(c, 1).await;
        }
        let start = Instant::now();
        let waits: Vec<_> = clients
            .into_iter()
            .map(|mut c| tokio::spawn(async move { rechecks(&mut c, per).await }))
            .collect();
        for w in waits {
            w.await.expect("client");
        }
        start.elapsed()
    });
    let after = batcher.stats();
    let reports = after
        .batches
        .saturating_sub(before.batches)
        .max(1);
    let sessions = after
        .sessions
        .saturating_sub(before.sessions);
    // Bulk bytes: the plain stream after the exchange, then a live session's DATA frames.
    let payload = usize::try_from(scale(256).max(8)).unwrap_or(8) * 1024 * 1024;
    let bulk = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let bulk_addr = bulk.local_addr().expect("address");
    rt.spawn(server(bulk, acceptor, me, payload));
    // Rounds interleaved, after one warm-up transfer of each.
    let mut elapsed = [Duration::ZERO; 2];
    let rounds = 3u64;
    for round in 0..=rounds {
        for (i, live_session) in [false, true].into_iter().enumerate() {
            let took = rt.block_on(async {
                let start = Instant::now();
                throughput(bulk_addr, &connector, &policy, live_session, payload).await;
                start.elapsed()
            });
            if round > 0 {
                elapsed[i] += took;
            }
        }
    }
    for (live_session, elapsed) in [false, true].into_iter().zip(elapsed) {
        rows.push(Measurement {
            name: format!(
                "reattest: {} MiB server to client on one attested connection (including its exchange), {}",
                payload >> 20,
                if live_session {
                    "live session (DATA frames through fresh::live::run)"
                } else {
                    "reference: the plain stream after the exchange"
                }
            ),
            iterations: rounds,
            elapsed,
            units_per_iter: u64::try_from(payload >> 20).unwrap_or(1),
            unit: "MiB",
            memory_bytes: None,
        });
    }
    rows.push(Measurement {
        name: format!(
            "reattest: {conns} live connections re-attesting back to back ({:.1} sessions per report + quote)",
            sessions as f64 / reports as f64
        ),
        iterations: conns * per,
        elapsed: many,
        units_per_iter: 1,
        unit: "checks",
        memory_bytes: None,
    });
    rows
}
