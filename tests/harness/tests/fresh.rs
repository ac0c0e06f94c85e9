//! Fresh mode end to end: real TLS 1.3 sessions (tokio-rustls over in-memory pipes) between
//! machines made of a swtpm with an AK, the simulated TEE and the IMA simulator. Honest peers
//! pass (server only, mutual); each attack fails at its named step. Malicious peers are written
//! with the sans-IO core (`ratls::tls::fresh::{Message, FrameDecoder, exporter, ...}`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{Attester, ImaFile};
use ratls::binding::Role;
use ratls::bundle::{BindingLevel, BundleClaims, Freshness, MAX_BUNDLE_LEN};
use ratls::digest::HashAlg;
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::{
    self, client_exchange, respond, server_exchange, Answer, Challenge, EvidenceRequest, FixedKey,
    FrameDecoder, FreshError, FreshOptions, FreshOutcome, Message, SelfAttestation,
};
use ratls::tls::{
    AttestationPolicy, AttestedClientVerifier, AttestedServerVerifier, Mode, RotatingCert,
    ALPN_ATTEST,
};
use ratls::{Claims, Policy, UnixTime, Verdict};
use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

type Client = tokio_rustls::client::TlsStream<DuplexStream>;
type Server = tokio_rustls::server::TlsStream<DuplexStream>;

fn sim_ca() -> Arc<SimCa> {
    static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
    CA.get_or_init(|| Arc::new(SimCa::generate().unwrap()))
        .clone()
}

/// One attested machine: swtpm + AK + measured boot + IMA log, the simulated TEE, and a
/// rotating RA-TLS certificate.
struct Machine {
    // Field order matters: everything using the TPM goes before the swtpm process.
    cert: RotatingCert,
    attester: Arc<Attester>,
    role: Role,
    log: PathBuf,
    _swtpm: Swtpm,
}

impl Machine {
    fn new(label: &str, tee: SimTee, role: Role) -> Self {
        let swtpm = Swtpm::start().expect("swtpm is required for the fresh-mode tests");
        let tpm = Arc::new(open_tpm(&swtpm).unwrap());
        simulate_boot(&tpm, label).unwrap();
        let log = swtpm.state_dir().join("ima.log");
        {
            let mut ima = ImaSimulator::new(&log, &tpm).unwrap();
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            for file in ["Cargo.toml", "src/lib.rs", "tests/fresh.rs"] {
                ima.measure_file(&root.join(file))
                    .unwrap();
            }
        }
        let attester = Arc::new(Attester::new(
            Some(Arc::new(tee)),
            Some(tpm),
            Some(Arc::new(ImaFile(log.clone()))),
        ));
        let cert = RotatingCert::from_attester(
            attester.clone(),
            CertParams::new(role.clone(), "localhost", vec!["localhost".into()]),
            Duration::from_secs(3600),
        )
        .unwrap();
        Self {
            cert,
            attester,
            role,
            log,
            _swtpm: swtpm,
        }
    }

    fn honest(label: &str, role: Role) -> Self {
        Self::new(label, SimTee::new(sim_ca()).unwrap(), role)
    }

    /// Answers requests about its own certificate key, as its own role.
    fn attestation(&self) -> SelfAttestation {
        SelfAttestation::new(
            self.attester.clone(),
            self.role.clone(),
            Arc::new(self.cert.clone()),
        )
    }
}

fn trusting(mut policy: AttestationPolicy) -> AttestationPolicy {
    ratls::tls::danger::trust_simulated_root(&mut policy, sim_ca().ark_der());
    policy
}

fn server_policy() -> AttestationPolicy {
    trusting(AttestationPolicy::for_server(Policy::default()))
}

fn opts() -> FreshOptions {
    let mut o = FreshOptions::new();
    o.timeout = Duration::from_secs(60);
    o
}

/// A TLS 1.3 session with ALPN cosmian-attest/1: `server` serves its certificate; `client`
/// presents its own when given (mutual). Both sides check only the TLS signatures during the
/// handshake (fresh mode).
async fn connect(server: &Machine, client: Option<&Machine>) -> (Client, Server) {
    let client_verifier = client.map(|_| {
        Arc::new(AttestedClientVerifier::new(
            trusting(AttestationPolicy::for_client(Policy::default())),
            Mode::Fresh,
        )) as Arc<dyn rustls::server::danger::ClientCertVerifier>
    });
    let server_config = ratls::tls::server_config(
        Arc::new(server.cert.clone()),
        client_verifier,
        vec![ALPN_ATTEST.to_vec()],
    )
    .unwrap();
    let client_config = ratls::tls::client_config(
        Arc::new(AttestedServerVerifier::new(server_policy(), Mode::Fresh)),
        client.map(|c| Arc::new(c.cert.clone()) as Arc<dyn rustls::client::ResolvesClientCert>),
        vec![ALPN_ATTEST.to_vec()],
    )
    .unwrap();
    let (c, s) = ratls_test::tls::duplex(
        Arc::new(client_config),
        Arc::new(server_config),
        "localhost",
    )
    .await;
    (c.unwrap(), s.unwrap())
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, m: &Message) {
    s.write_all(&m.encode(MAX_BUNDLE_LEN).unwrap())
        .await
        .unwrap();
    s.flush().await.unwrap();
}

async fn recv<S: AsyncRead + Unpin>(s: &mut S) -> Message {
    let mut d = FrameDecoder::new(MAX_BUNDLE_LEN);
    loop {
        let mut buf = vec![0; d.want()];
        s.read_exact(&mut buf).await.unwrap();
        if let (_, Some(m)) = d.feed(&buf).unwrap() {
            return m;
        }
    }
}

fn claims(v: &Verdict) -> &BundleClaims {
    match &v.claims {
        Claims::Bundle(c) => c,
        other => panic!("not bundle claims: {other:?}"),
    }
}

#[track_caller]
fn assert_fresh_and_trusted(v: &Verdict) {
    assert!(v.is_trusted(), "{v}");
    assert!(v.simulated);
    for step in [
        "binding.role",
        "binding.spki",
        "binding.challenge",
        "binding.exporter",
        "binding.report_data",
        "tpm.qualifying_data",
        "ima.replay",
    ] {
        assert!(v.passed(step), "{step}:\n{v}");
    }
    let c = claims(v);
    assert_eq!(c.binding, Some(BindingLevel::Session));
    assert_eq!(c.freshness, Some(Freshness::Challenge));
    assert!(c.ima.is_some(), "IMA log checked inline");
    assert!(c.ima_deferred.is_none());
}

/// The verifier's error: rejected at `step`.
#[track_caller]
fn assert_rejected_at(result: Result<FreshOutcome, FreshError>, step: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.rejected_step(), Some(step), "{err}");
    let v = err.verdict().unwrap();
    assert!(!v.is_trusted());
    assert!(!v.check(step).unwrap().ok, "{v}");
    assert!(err.to_string().contains(step), "{err}");
}

/// A verifying client against an honest server_exchange with `me`; returns both results.
async fn run_against(
    server: &Machine,
    me: SelfAttestation,
    policy: AttestationPolicy,
) -> (
    Result<FreshOutcome, FreshError>,
    Result<FreshOutcome, FreshError>,
) {
    let (mut c, mut s) = connect(server, None).await;
    let client_opts = opts().verify_peer(policy);
    let server_opts = opts().attest_self(me);
    tokio::join!(
        client_exchange(&mut c, &client_opts),
        server_exchange(&mut s, &server_opts)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_fresh_attestation_passes_and_application_bytes_follow() {
    let server = Machine::honest("server", Role::server());
    let (mut c, mut s) = connect(&server, None).await;
    let client_opts = opts().verify_peer(server_policy());
    let server_opts = opts().attest_self(server.attestation());
    let (a, b) = tokio::join!(
        async {
            let out = client_exchange(&mut c, &client_opts).await;
            c.write_all(b"GET /").await.unwrap();
            c.flush().await.unwrap();
            out
        },
        server_exchange(&mut s, &server_opts)
    );
    let a = a.unwrap();
    let b = b.unwrap();
    assert_fresh_and_trusted(a.peer_verdict.as_ref().unwrap());
    assert_eq!(a.we_were_accepted, None);
    assert!(b.peer_verdict.is_none());
    assert_eq!(b.we_were_accepted, Some(true));
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"GET /");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_fresh_attestation_passes() {
    let server = Machine::honest("server", Role::server());
    let client = Machine::honest("client", Role::client());
    let (mut c, mut s) = connect(&server, Some(&client)).await;
    let client_opts = opts()
        .verify_peer(server_policy())
        .attest_self(client.attestation());
    let server_opts = opts()
        .verify_peer(trusting(AttestationPolicy::for_client(Policy::default())))
        .attest_self(server.attestation());
    let (a, b) = tokio::join!(
        client_exchange(&mut c, &client_opts),
        server_exchange(&mut s, &server_opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for out in [&a, &b] {
        assert_fresh_and_trusted(out.peer_verdict.as_ref().unwrap());
        assert_eq!(out.we_were_accepted, Some(true));
    }
    assert_eq!(claims(a.peer_verdict.as_ref().unwrap()).role, "server");
    assert_eq!(claims(b.peer_verdict.as_ref().unwrap()).role, "client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_relayed_from_another_session_fails_at_binding_exporter() {
    // The relay holds the server's key (the same rotating certificate) and forwards the
    // victim's challenge to the genuine server over a second session: the evidence answers the
    // right challenge for the right key, but is bound to the other session's exporter.
    let server = Machine::honest("server", Role::server());
    let (mut victim, mut relay_as_server) = connect(&server, None).await;
    let (mut relay_as_client, mut genuine) = connect(&server, None).await;

    let victim_opts = opts().verify_peer(server_policy());
    let genuine_opts = opts().attest_self(server.attestation());
    let relay = async {
        let Message::Request(Some(asked)) = recv(&mut relay_as_server).await else {
            panic!("the victim asks for evidence");
        };
        send(&mut relay_as_server, &Message::Request(None)).await;
        send(&mut relay_as_client, &Message::Request(Some(asked))).await;
        assert_eq!(recv(&mut relay_as_client).await, Message::Request(None));
        let evidence = recv(&mut relay_as_client).await;
        assert!(matches!(evidence, Message::Evidence(_)));
        send(
            &mut relay_as_client,
            &Message::Result {
                ok: true,
                message: String::new(),
            },
        )
        .await;
        send(&mut relay_as_server, &evidence).await;
        recv(&mut relay_as_server).await
    };
    let (victim_result, genuine_result, verdict_sent) = tokio::join!(
        client_exchange(&mut victim, &victim_opts),
        server_exchange(&mut genuine, &genuine_opts),
        relay
    );
    assert_eq!(genuine_result.unwrap().we_were_accepted, Some(true));
    assert_rejected_at(victim_result, "binding.exporter");
    match verdict_sent {
        Message::Result { ok: false, message } => {
            assert!(message.contains("binding.exporter"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// A malicious server: reads the victim's REQUEST, then answers with evidence whose binding
/// `tamper` rewrote before production (real TPM, TEE and IMA evidence, signed over it).
async fn malicious_server(
    server: &Machine,
    tamper: impl FnOnce(&mut Server, &EvidenceRequest) -> ratls::binding::BindingClaims,
) -> Result<FreshOutcome, FreshError> {
    let (mut c, mut s) = connect(server, None).await;
    let victim_opts = opts().verify_peer(server_policy());
    let attester = server.attester.clone();
    let attacker = async {
        let Message::Request(Some(asked)) = recv(&mut s).await else {
            panic!("the victim asks for evidence");
        };
        send(&mut s, &Message::Request(None)).await;
        let binding = tamper(&mut s, &asked);
        let cmw = tokio::task::spawn_blocking(move || respond(&attester, binding, MAX_BUNDLE_LEN))
            .await
            .unwrap()
            .unwrap();
        send(&mut s, &Message::Evidence(cmw)).await;
        recv(&mut s).await
    };
    let (result, sent) = tokio::join!(client_exchange(&mut c, &victim_opts), attacker);
    assert!(
        matches!(sent, Message::Result { ok: false, .. }),
        "{sent:?}"
    );
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_not_chosen_by_the_verifier_fails_at_binding_challenge() {
    let server = Machine::honest("server", Role::server());
    let result = malicious_server(&server, |s, asked| {
        // Pre-computed evidence for a challenge of the attester's choosing, exporter and all.
        let own = Challenge::new().unwrap();
        let mine = EvidenceRequest {
            challenge: *own.as_bytes(),
            spki_sha256: asked.spki_sha256,
        };
        let exporter = fresh::exporter(&**s.get_ref().1, &Role::server(), own.as_bytes()).unwrap();
        Answer::new(mine, Role::server(), &server.cert)
            .unwrap()
            .bind_exporter(exporter, UnixTime::now())
            .into_claims()
    })
    .await;
    assert_rejected_at(result, "binding.challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attester_that_omits_the_exporter_fails_at_binding_exporter() {
    let server = Machine::honest("server", Role::server());
    let result = malicious_server(&server, |_, asked| {
        let mut b = Answer::new(*asked, Role::server(), &server.cert)
            .unwrap()
            .bind_exporter([0; 32], UnixTime::now())
            .into_claims();
        b.exporter = None;
        b
    })
    .await;
    assert_rejected_at(result, "binding.exporter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_under_the_wrong_role_label_fails_at_binding_role() {
    // A TLS server attesting as a client (exporter label ...-client): the verifier expects
    // `server` and computes its exporter with the server label.
    let server = Machine::honest("server", Role::server());
    let mut me = server.attestation();
    me.role = Role::client();
    let (client, server_result) = run_against(&server, me, server_policy()).await;
    assert_rejected_at(client, "binding.role");
    let err = server_result.unwrap_err();
    assert!(matches!(err, FreshError::PeerRejectedUs(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("the peer rejected our evidence: attestation rejected at binding.role"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_asked_about_a_key_it_does_not_hold_declines() {
    let server = Machine::honest("server", Role::server());
    let mut me = server.attestation();
    me.keys = Arc::new(FixedKey::from_spki_der(b"a key this server does not serve"));
    let (client, server_result) = run_against(&server, me, server_policy()).await;
    let err = client.unwrap_err();
    assert!(
        matches!(&err, FreshError::PeerDeclined(reason) if reason.contains("does not hold the key")),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("fresh.declined"),
        "{err}"
    );
    assert!(matches!(
        server_result.unwrap_err(),
        FreshError::WeDeclined(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_policy_tee_fails_at_tee_policy_debug() {
    let tee = SimTee::new(sim_ca())
        .unwrap()
        .with_policy(SimTee::DEFAULT_POLICY | SimTee::POLICY_DEBUG);
    let server = Machine::new("server", tee, Role::server());
    let (client, server_result) = run_against(&server, server.attestation(), server_policy()).await;
    assert_rejected_at(client, "tee.policy.debug");
    assert!(
        matches!(server_result.unwrap_err(), FreshError::PeerRejectedUs(m) if m.contains("tee.policy.debug"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcr_other_than_the_pinned_value_fails_at_tpm_policy_pcrs() {
    let server = Machine::honest("server", Role::server());
    let mut policy = Policy::default();
    policy.tpm.pcrs = BTreeMap::from([(
        HashAlg::Sha256,
        BTreeMap::from([(
            0u8,
            hex::encode(HashAlg::Sha256.digest(b"another firmware")),
        )]),
    )]);
    let policy = trusting(AttestationPolicy::for_server(policy));
    let (client, _) = run_against(&server, server.attestation(), policy).await;
    assert_rejected_at(client, "tpm.policy.pcrs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ima_log_that_does_not_match_the_quote_fails_at_ima_template_hash() {
    // The policy has no IMA reference set to mismatch; what a verifier can catch is a log that
    // is not what the TPM measured: one file digest altered on disk after measurement.
    let server = Machine::honest("server", Role::server());
    let mut log = std::fs::read(&server.log).unwrap();
    let parsed = ratls::ima::Log::parse(&log).unwrap();
    let digest = parsed.entries()[2]
        .file_digest()
        .to_vec();
    let at = log
        .windows(digest.len())
        .position(|w| w == digest)
        .unwrap();
    log[at] ^= 1;
    std::fs::write(&server.log, &log).unwrap();
    let (client, _) = run_against(&server, server.attestation(), server_policy()).await;
    assert_rejected_at(client, "ima.template_hash");
}

// ---- Batched evidence: one report and one quote for many sessions (issue 15) ----

/// Sessions at once against one server: they share its batcher (one TEE report and one TPM
/// quote per batch) and the client side shares one policy (one verification of each batch's
/// shared evidence, cached for the others). Every session still gets its own verdict, bound to
/// its own exporter and challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_quotes_and_each_is_bound_to_its_own_session() {
    const SESSIONS: usize = 16;
    // A report takes 40 ms, as on hardware (the simulated one takes well under a millisecond,
    // which would leave little to share).
    let tee = SimTee::new(sim_ca())
        .unwrap()
        .with_latency(Duration::from_millis(40));
    let server = Arc::new(Machine::new("server", tee, Role::server()));
    let me = server.attestation();
    let policy = server_policy();
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let (server, me, policy) = (server.clone(), me.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            let (client, served) = run_against(&server, me, policy).await;
            assert_eq!(served.unwrap().we_were_accepted, Some(true));
            client.unwrap().peer_verdict.unwrap()
        }));
    }
    let mut sizes = Vec::new();
    let mut exporters = std::collections::BTreeSet::new();
    for t in tasks {
        let v = t.await.unwrap();
        assert_fresh_and_trusted(&v);
        for step in ["binding.batch_proof", "binding.batch_inclusion"] {
            assert!(v.passed(step), "{step}:\n{v}");
        }
        let batch = claims(&v)
            .batch
            .clone()
            .expect("batched");
        assert!(batch.index < batch.size);
        sizes.push(batch.size);
        exporters.insert(claims(&v).evidence_sha256.clone());
    }
    // Every session's evidence differs (its own binding and proof) ...
    assert_eq!(exporters.len(), SESSIONS);
    // ... and they came from fewer reports and quotes than sessions.
    let stats = me.batcher.stats();
    assert_eq!(stats.sessions, SESSIONS as u64);
    assert!(
        stats.batches < SESSIONS as u64 / 2,
        "{} batches for {SESSIONS} sessions (sizes {sizes:?})",
        stats.batches
    );
    assert!(sizes.iter().any(|&s| s > 1), "{sizes:?}");
    // The verifier checked each batch's shared evidence once and reused the verdict.
    assert!(policy.batch_cache().hits() > 0, "sizes {sizes:?}");
}

/// A malicious server that answers the victim with genuine batched evidence (real TEE, TPM and
/// IMA evidence over a batch holding the victim's honest claims and three other sessions), with
/// the victim's bundle rewritten by `tamper` (given the other sessions' bundles).
async fn malicious_batch(
    server: &Machine,
    tamper: impl FnOnce(&mut ratls::bundle::Bundle, &[ratls::bundle::Bundle]) + Send + 'static,
) -> Result<FreshOutcome, FreshError> {
    let (mut c, mut s) = connect(server, None).await;
    let victim_opts = opts().verify_peer(server_policy());
    let attester = server.attester.clone();
    let attacker = async {
        let Message::Request(Some(asked)) = recv(&mut s).await else {
            panic!("the victim asks for evidence");
        };
        send(&mut s, &Message::Request(None)).await;
        let victim = Answer::new(asked, Role::server(), &server.cert)
            .unwrap()
            .bind(&**s.get_ref().1, UnixTime::now())
            .unwrap()
            .into_claims();
        let mut sessions = vec![victim];
        for _ in 0..3 {
            let mut other = sessions[0].clone();
            other.challenge = Some(*Challenge::new().unwrap().as_bytes());
            other.exporter = Some(*Challenge::new().unwrap().as_bytes());
            sessions.push(other);
        }
        let cmw = tokio::task::spawn_blocking(move || {
            let mut bundles = attester
                .produce_batch(sessions, UnixTime::now().as_secs())
                .unwrap();
            let mut victim = bundles.remove(0);
            tamper(&mut victim, &bundles);
            victim.to_cmw()
        })
        .await
        .unwrap();
        send(&mut s, &Message::Evidence(cmw)).await;
        recv(&mut s).await
    };
    let (result, sent) = tokio::join!(client_exchange(&mut c, &victim_opts), attacker);
    if result.is_err() {
        assert!(
            matches!(sent, Message::Result { ok: false, .. }),
            "{sent:?}"
        );
    }
    result
}

fn proof(b: &mut ratls::bundle::Bundle) -> &mut ratls::bundle::BatchProof {
    b.batch.as_mut().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untampered_batch_of_four_passes_with_its_size_in_the_verdict() {
    let server = Machine::honest("server", Role::server());
    let outcome = malicious_batch(&server, |_, _| {})
        .await
        .unwrap();
    let v = outcome.peer_verdict.unwrap();
    assert_fresh_and_trusted(&v);
    let batch = claims(&v).batch.clone().unwrap();
    assert_eq!((batch.size, batch.index), (4, 0));
    assert!(!batch.shared_verdict_cached);
    assert!(ratls::summary::verdict_head(&v).contains("batched: session 1 of 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sessions_proof_fails_at_binding_batch_inclusion() {
    let server = Machine::honest("server", Role::server());
    let result = malicious_batch(&server, |victim, others| {
        victim.batch = others[0].batch.clone();
    })
    .await;
    assert_rejected_at(result, "binding.batch_inclusion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_leaf_index_fails_at_binding_batch_inclusion() {
    let server = Machine::honest("server", Role::server());
    let result = malicious_batch(&server, |victim, _| {
        proof(victim).index = 1;
    })
    .await;
    assert_rejected_at(result, "binding.batch_inclusion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_path_and_an_index_outside_the_tree_fail_at_binding_batch_proof() {
    let server = Machine::honest("server", Role::server());
    let result = malicious_batch(&server, |victim, _| {
        proof(victim).path.pop();
    })
    .await;
    assert_rejected_at(result, "binding.batch_proof");
    let result = malicious_batch(&server, |victim, _| {
        proof(victim).index = 4;
    })
    .await;
    assert_rejected_at(result, "binding.batch_proof");
    let result = malicious_batch(&server, |victim, _| {
        proof(victim).path[0] = serde_bytes::ByteBuf::from(vec![0u8; 31]);
    })
    .await;
    assert_rejected_at(result, "binding.batch_proof");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_the_report_did_not_sign_fails_at_binding_report_data() {
    let server = Machine::honest("server", Role::server());
    // A tree of the attacker's own that does hold the victim's leaf: the proof checks out, but
    // the TEE signed another root.
    let result = malicious_batch(&server, |victim, _| {
        let leaf = ratls::binding::batch_leaf(&victim.binding);
        let tree = ratls::merkle::Tree::new(&[leaf, [7u8; 32]]).unwrap();
        let p = proof(victim);
        p.size = 2;
        p.index = 0;
        p.root = serde_bytes::ByteBuf::from(tree.root().to_vec());
        p.path = tree
            .path(0)
            .unwrap()
            .iter()
            .map(|h| serde_bytes::ByteBuf::from(h.to_vec()))
            .collect();
    })
    .await;
    assert_rejected_at(result, "binding.report_data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_size_other_than_the_signed_one_fails_at_binding_report_data() {
    let server = Machine::honest("server", Role::server());
    // Leaf 0 has the same path in trees of 3 and 4 leaves: only the signed size tells them apart.
    let result = malicious_batch(&server, |victim, _| {
        proof(victim).size = 3;
    })
    .await;
    assert_rejected_at(result, "binding.report_data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_evidence_stripped_of_its_proof_fails_at_binding_report_data() {
    let server = Machine::honest("server", Role::server());
    // The report signed a batch root, not this session's claims: without the proof, the
    // verifier expects the single-session digest (another domain label) and the report differs.
    let result = malicious_batch(&server, |victim, _| {
        victim.batch = None;
    })
    .await;
    assert_rejected_at(result, "binding.report_data");
}
