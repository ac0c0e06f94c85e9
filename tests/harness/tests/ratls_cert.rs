//! RA-TLS certificate mode on real parts: swtpm (AK, quotes), the simulated TEE, the IMA
//! simulator, real rustls handshakes in memory and over loopback, and `openssl s_client` as a
//! plain TLS client. A mutual attested handshake passes; each attack fails at its named step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ratls::attest::sim::SimTee;
use ratls::attest::{AttestError, Attester};
use ratls::binding::Role;
use ratls::bundle::{self, BindingLevel, Freshness};
use ratls::tls::cert::{self, der_octet_string_encode, CertParams, IssueError, IssuedCert};
use ratls::tls::{
    danger, AttestationPolicy, AttestationRejected, AttestedClientVerifier, AttestedServerVerifier,
    CertSource, Mode, RotatingCert,
};
use ratls::{Claims, Policy, UnixTime, Verdict};
use ratls_harness::{sim_ca, TestMachine};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

fn manifest(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn machine(label: &str, tee: SimTee) -> Option<TestMachine> {
    let files = [manifest("Cargo.toml"), manifest("src/lib.rs")];
    let refs: Vec<&Path> = files
        .iter()
        .map(|p| p.as_path())
        .collect();
    TestMachine::start(label, Some(tee), &refs).unwrap()
}

fn sim_tee() -> SimTee {
    SimTee::new(sim_ca()).unwrap()
}

fn policy(role: Role) -> AttestationPolicy {
    let mut p = AttestationPolicy::new(Policy::default(), role);
    danger::trust_simulated_root(&mut p, sim_ca().ark_der());
    p
}

fn params(role: Role) -> CertParams {
    CertParams::new(
        role,
        "vm.example",
        vec!["vm.example".into(), "127.0.0.1".into()],
    )
}

fn issue(m: &TestMachine, role: Role, now: UnixTime) -> IssuedCert {
    cert::issue(&m.attester, &params(role), now).unwrap()
}

/// A certificate and key (any, not necessarily attested) served as is.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified(cert_der: Vec<u8>, key_pkcs8: Vec<u8>) -> Arc<Fixed> {
    let key = ratls::tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key_pkcs8.into()))
        .unwrap();
    Arc::new(Fixed(Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert_der)],
        key,
    ))))
}

fn fixed_issued(issued: &IssuedCert) -> Arc<Fixed> {
    certified(
        issued.cert_der.to_vec(),
        issued
            .key_der
            .secret_pkcs8_der()
            .to_vec(),
    )
}

/// A side's handshake error, with our verifier's refusal behind it when it was one.
#[derive(Debug)]
struct Failed {
    error: rustls::Error,
    rejected: Option<Arc<AttestationRejected>>,
}

/// Run a handshake in memory (with a rejection slot open around it); return the client's and
/// the server's errors, if any.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
) -> (
    ClientConnection,
    ServerConnection,
    Option<Failed>,
    Option<Failed>,
) {
    let (h, slot) = ratls::tls::catch_rejection(|| {
        ratls_test::tls::handshake(Arc::new(client), Arc::new(server), "vm.example")
    });
    let failed = |error: rustls::Error| Failed {
        rejected: AttestationRejected::from_rustls(&error, &slot),
        error,
    };
    (
        h.client,
        h.server,
        h.outcome.client_error.map(failed),
        h.outcome.server_error.map(failed),
    )
}

fn client_config(
    verifier: &Arc<AttestedServerVerifier>,
    client_cert: Option<Arc<Fixed>>,
) -> ClientConfig {
    ratls::tls::client_config(
        verifier.clone(),
        client_cert.map(|c| c as Arc<dyn rustls::client::ResolvesClientCert>),
        Vec::new(),
    )
    .unwrap()
}

fn server_config(
    cert: Arc<dyn rustls::server::ResolvesServerCert>,
    verifier: Option<&Arc<AttestedClientVerifier>>,
) -> ServerConfig {
    ratls::tls::server_config(
        cert,
        verifier.map(|v| v.clone() as Arc<dyn rustls::server::danger::ClientCertVerifier>),
        Vec::new(),
    )
    .unwrap()
}

/// The step a rustls error names.
#[track_caller]
fn rejected_step(e: &Option<Failed>) -> String {
    let e = e
        .as_ref()
        .expect("the handshake should have failed");
    let r = e
        .rejected
        .as_ref()
        .unwrap_or_else(|| panic!("not an attestation refusal: {}", e.error));
    // The message names the step, the expected and the presented values.
    let text = r.to_string();
    assert!(
        text.contains(r.step().as_str()) && text.contains("expected") && text.contains("presented"),
        "{text}"
    );
    r.step().as_str().to_owned()
}

/// Certificate-mode verification of a server certificate: the step it fails at.
#[track_caller]
fn cert_mode_fails_at(server_cert: Arc<Fixed>, policy: AttestationPolicy, step: &str) {
    let verifier = Arc::new(AttestedServerVerifier::new(policy, Mode::Certificate));
    let (_, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(server_cert, None),
    );
    assert_eq!(rejected_step(&cerr), step);
}

fn bundle_claims(v: &Verdict) -> &bundle::BundleClaims {
    match &v.claims {
        Claims::Bundle(b) => b,
        other => panic!("not bundle claims: {other:?}"),
    }
}

#[test]
fn mutual_attested_handshake_passes_and_the_verdicts_are_retrievable() {
    let Some(server_vm) = machine("server vm", sim_tee()) else {
        return;
    };
    let Some(client_vm) = machine("client vm", sim_tee()) else {
        return;
    };
    let now = UnixTime::now();
    let server_cert = issue(&server_vm, Role::server(), now);
    let client_cert = issue(&client_vm, Role::client(), now);
    // Well under rustls' 64 KiB handshake-message limit.
    assert!(
        server_cert.cert_der.len() < 32 * 1024,
        "{} bytes",
        server_cert.cert_der.len()
    );

    let server_verifier = Arc::new(AttestedServerVerifier::new(
        policy(Role::server()),
        Mode::Certificate,
    ));
    let client_verifier = Arc::new(AttestedClientVerifier::new(
        policy(Role::client()),
        Mode::Certificate,
    ));
    let (c, s, cerr, serr) = handshake(
        client_config(&server_verifier, Some(fixed_issued(&client_cert))),
        server_config(fixed_issued(&server_cert), Some(&client_verifier)),
    );
    assert!(
        cerr.is_none() && serr.is_none(),
        "client: {cerr:?}, server: {serr:?}"
    );
    assert!(!c.is_handshaking() && !s.is_handshaking());

    let v = ratls::tls::peer_verdict(&c, &server_verifier)
        .expect("the client has the server's verdict");
    assert!(v.is_trusted() && v.simulated, "{v}");
    let claims = bundle_claims(&v);
    assert_eq!(claims.role, "server");
    assert_eq!(claims.binding, Some(BindingLevel::Key));
    assert!(matches!(
        claims.freshness,
        Some(Freshness::TimeWindow { .. })
    ));
    // The IMA log does not travel in the certificate: the verdict says it is still to be seen.
    let deferred = claims
        .ima_deferred
        .as_ref()
        .expect("IMA deferred in certificate mode");
    assert_eq!(
        deferred.len,
        std::fs::metadata(&server_vm.ima_log)
            .unwrap()
            .len()
    );
    for step in [
        "cert.evidence",
        "cert.validity",
        "binding.spki",
        "binding.freshness",
        "tee.signature",
        "binding.report_data",
        "tpm.qualifying_data",
        "tpm.signature",
    ] {
        assert!(v.passed(step), "{step}: {v}");
    }

    let v = ratls::tls::client_peer_verdict(&s, &client_verifier)
        .expect("the server has the client's verdict");
    assert!(v.is_trusted(), "{v}");
    assert_eq!(bundle_claims(&v).role, "client");

    // A second handshake is served from the cache (same certificate, same policy).
    assert_eq!(server_verifier.cache().len(), 1);
    let (_, _, cerr, serr) = handshake(
        client_config(&server_verifier, Some(fixed_issued(&client_cert))),
        server_config(fixed_issued(&server_cert), Some(&client_verifier)),
    );
    assert!(cerr.is_none() && serr.is_none());
    assert_eq!(server_verifier.cache().len(), 1);

    // The deferred IMA check, completed with the log fetched separately; a log that is not
    // the quoted one fails.
    let evidence = cert::read_evidence(&server_cert.cert_der).unwrap();
    let pol = policy(Role::server());
    let log = server_vm.ima_log_bytes();
    let mut expect = pol.expectations(evidence.cert.spki_der(), UnixTime::now());
    expect.ima_log = Some(&log);
    let full = bundle::verify(&evidence.cmw, pol.policy(), &expect);
    assert!(
        full.is_trusted() && full.passed("ima.log_digest") && full.passed("ima.replay"),
        "{full}"
    );
    server_vm
        .measure(&manifest("tests/ratls_cert.rs"))
        .unwrap();
    let mut other = server_vm.ima_log_bytes();
    other[100] ^= 1;
    expect.ima_log = Some(&other);
    let bad = bundle::verify(&evidence.cmw, pol.policy(), &expect);
    assert!(!bad.passed("ima.log_digest"), "{bad}");
}

#[test]
fn evidence_copied_into_a_certificate_with_another_key_fails_at_binding_spki() {
    let Some(vm) = machine("copy vm", sim_tee()) else {
        return;
    };
    let genuine = issue(&vm, Role::server(), UnixTime::now());
    let policy = policy(Role::server());

    // The genuine certificate passes, and its verdict is cached.
    let verifier = Arc::new(AttestedServerVerifier::new(
        policy.clone(),
        Mode::Certificate,
    ));
    let (_, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(fixed_issued(&genuine), None),
    );
    assert!(cerr.is_none(), "{cerr:?}");

    // The attacker's certificate: its own key, the genuine extension copied byte for byte.
    let evidence = cert::read_evidence(&genuine.cert_der).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["vm.example".to_owned()]).unwrap();
    p.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &cert::CMW_EXTENSION_OID_ARCS,
            der_octet_string_encode(&evidence.cmw),
        ));
    let forged = p.self_signed(&key).unwrap();
    let forged = certified(forged.der().to_vec(), key.serialize_der());

    // Even with the genuine verdict in the same verifier's cache.
    let (_, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(forged.clone(), None),
    );
    assert_eq!(rejected_step(&cerr), "binding.spki");
    cert_mode_fails_at(forged, policy, "binding.spki");
}

#[test]
fn a_certificate_older_than_the_max_age_fails_at_binding_freshness() {
    let Some(vm) = machine("old vm", sim_tee()) else {
        return;
    };
    let two_days_ago = UnixTime::from_secs(UnixTime::now().as_secs() - 2 * 24 * 3600);
    let old = issue(&vm, Role::server(), two_days_ago);
    cert_mode_fails_at(
        fixed_issued(&old),
        policy(Role::server()),
        "binding.freshness",
    );
    // A policy that accepts three days takes it.
    let lenient = policy(Role::server()).with_max_age(Duration::from_secs(3 * 24 * 3600));
    let verifier = Arc::new(AttestedServerVerifier::new(lenient, Mode::Certificate));
    let (_, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(fixed_issued(&old), None),
    );
    assert!(cerr.is_none(), "{cerr:?}");
}

#[test]
fn a_wrong_role_fails_at_binding_role() {
    let Some(vm) = machine("role vm", sim_tee()) else {
        return;
    };
    // Evidence made for a client certificate, presented by a server.
    let as_client = issue(&vm, Role::client(), UnixTime::now());
    cert_mode_fails_at(
        fixed_issued(&as_client),
        policy(Role::server()),
        "binding.role",
    );
}

#[test]
fn a_debug_policy_tee_fails_at_tee_policy_debug() {
    let tee = sim_tee().with_policy(SimTee::DEFAULT_POLICY | SimTee::POLICY_DEBUG);
    let Some(vm) = machine("debug vm", tee) else {
        return;
    };
    let c = issue(&vm, Role::server(), UnixTime::now());
    cert_mode_fails_at(fixed_issued(&c), policy(Role::server()), "tee.policy.debug");
}

#[test]
fn a_pcr_mismatch_fails_at_tpm_policy_pcrs() {
    let Some(vm) = machine("pcr vm", sim_tee()) else {
        return;
    };
    let c = issue(&vm, Role::server(), UnixTime::now());
    let p = policy(Role::server());
    let mut pcrs = p.policy().clone();
    pcrs.tpm
        .pcrs
        .entry(ratls::digest::HashAlg::Sha256)
        .or_default()
        .insert(7, "00".repeat(32));
    let p = p.with_policy(pcrs);
    cert_mode_fails_at(fixed_issued(&c), p, "tpm.policy.pcrs");
}

#[test]
fn missing_evidence_parts_and_binding_claims_fail_at_their_steps() {
    let Some(vm) = machine("parts vm", sim_tee()) else {
        return;
    };
    // No TPM: the bundle has no quote (and so no AK claim), which the policy requires.
    let no_tpm = Attester::new(vm.attester.tee.clone(), None, vm.attester.ima.clone());
    let c = cert::issue(&no_tpm, &params(Role::server()), UnixTime::now()).unwrap();
    cert_mode_fails_at(fixed_issued(&c), policy(Role::server()), "bundle.tpm");

    // A quote whose binding claims omit the AK hash: the AK is not bound.
    let c = issue(&vm, Role::server(), UnixTime::now());
    let mut b = c.bundle.clone();
    b.binding.ak_sha256 = None;
    let forged = reissue_with_bundle(&c, &b);
    cert_mode_fails_at(forged, policy(Role::server()), "binding.ak");
}

/// The certificate of `c` (same key) with another bundle in the extension.
fn reissue_with_bundle(c: &IssuedCert, b: &bundle::Bundle) -> Arc<Fixed> {
    let key = rcgen::KeyPair::try_from(c.key_der.secret_pkcs8_der()).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["vm.example".to_owned()]).unwrap();
    p.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &cert::CMW_EXTENSION_OID_ARCS,
            der_octet_string_encode(&b.to_cmw()),
        ));
    let der = p
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    certified(der, c.key_der.secret_pkcs8_der().to_vec())
}

/// A certificate for `key` with an evidence extension of the given content and criticality.
fn with_extension(content: Vec<u8>, critical: bool) -> Arc<Fixed> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["vm.example".to_owned()]).unwrap();
    let mut ext = rcgen::CustomExtension::from_oid_content(&cert::CMW_EXTENSION_OID_ARCS, content);
    ext.set_criticality(critical);
    p.custom_extensions.push(ext);
    let der = p
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    certified(der, key.serialize_der())
}

#[test]
fn a_critical_or_oversized_evidence_extension_is_refused() {
    let Some(vm) = machine("ext vm", sim_tee()) else {
        return;
    };
    let c = issue(&vm, Role::server(), UnixTime::now());
    let cmw = c.bundle.to_cmw();
    cert_mode_fails_at(
        with_extension(der_octet_string_encode(&cmw), true),
        policy(Role::server()),
        "cert.extension.critical",
    );
    // 50 KiB of evidence: over the 48 KiB cap, still under the 64 KiB handshake limit.
    let big = vec![0xa5u8; 50 * 1024];
    cert_mode_fails_at(
        with_extension(der_octet_string_encode(&big), false),
        policy(Role::server()),
        "cert.extension.size",
    );
    // Not an OCTET STRING, and not a bundle.
    cert_mode_fails_at(
        with_extension(vec![0x0c, 0x01, b'x'], false),
        policy(Role::server()),
        "cert.extension.format",
    );
    cert_mode_fails_at(
        with_extension(der_octet_string_encode(b"not cbor"), false),
        policy(Role::server()),
        "bundle.parse",
    );
    // No evidence at all: a plain certificate.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let plain = rcgen::CertificateParams::new(vec!["vm.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    cert_mode_fails_at(
        certified(plain.der().to_vec(), key.serialize_der()),
        policy(Role::server()),
        "cert.evidence",
    );
}

#[test]
fn the_simulated_tee_is_not_trusted_without_the_sim_root() {
    let Some(vm) = machine("nosim vm", sim_tee()) else {
        return;
    };
    let c = issue(&vm, Role::server(), UnixTime::now());
    let strict = AttestationPolicy::new(Policy::default(), Role::server());
    cert_mode_fails_at(fixed_issued(&c), strict, "tee.chain.ark");
}

/// Issues through the machine's attester, but fails from the second call on when told to.
#[derive(Debug)]
struct Flaky {
    attester: Arc<Attester>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
}

impl CertSource for Flaky {
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError> {
        std::thread::sleep(self.delay);
        if self
            .fail
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(IssueError::Attest(AttestError::Unavailable {
                what: "TPM",
                why: "unplugged for the test".into(),
            }));
        }
        cert::issue(&self.attester, &params(Role::server()), now)
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn rotation_swaps_atomically_and_a_failed_reattestation_keeps_the_old_certificate() {
    let Some(vm) = machine("rotate vm", sim_tee()) else {
        return;
    };
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = Flaky {
        attester: vm.attester.clone(),
        fail: fail.clone(),
        delay: Duration::from_millis(0),
    };
    // A long period: rotations here happen on demand.
    let rotating = RotatingCert::start(Box::new(source), Duration::from_secs(3600)).unwrap();
    let first = rotating.current_spki();
    let first_hash = ratls::digest::sha256(&first);
    assert_eq!(rotating.status().rotations, 1);

    let verifier = Arc::new(AttestedServerVerifier::new(
        policy(Role::server()),
        Mode::Certificate,
    ));
    let serve = |r: &RotatingCert| server_config(Arc::new(r.clone()), None);
    let (c, _, cerr, _) = handshake(client_config(&verifier, None), serve(&rotating));
    assert!(cerr.is_none(), "{cerr:?}");
    let served = c.peer_certificates().unwrap()[0].clone();

    rotating.rotate_now();
    wait_for("a rotation", || rotating.status().rotations == 2);
    let second = rotating.current_spki();
    assert_ne!(first, second, "a rotation brings a new key");
    assert!(
        rotating.holds_spki(&first_hash) && rotating.holds_spki(&ratls::digest::sha256(&second))
    );
    let (c, _, cerr, _) = handshake(client_config(&verifier, None), serve(&rotating));
    assert!(cerr.is_none(), "{cerr:?}");
    assert_ne!(
        c.peer_certificates().unwrap()[0],
        served,
        "the new certificate is served"
    );

    // The attesters fail: the certificate stays, the failure is reported, handshakes go on.
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = rotating.rotate_blocking().unwrap_err();
    assert!(err.to_string().contains("unplugged"), "{err}");
    let status = rotating.status();
    assert_eq!((status.rotations, status.failures), (2, 1));
    assert!(status
        .last_error
        .as_deref()
        .unwrap()
        .contains("unplugged"));
    assert_eq!(rotating.current_spki(), second);
    let (_, _, cerr, _) = handshake(client_config(&verifier, None), serve(&rotating));
    assert!(cerr.is_none(), "{cerr:?}");

    // Back to health: the next rotation clears the error.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    rotating.rotate_blocking().unwrap();
    assert!(rotating.status().last_error.is_none());
}

#[test]
fn handshakes_do_not_wait_for_a_slow_attester() {
    let Some(vm) = machine("slow vm", sim_tee()) else {
        return;
    };
    let source = Flaky {
        attester: vm.attester.clone(),
        fail: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        delay: Duration::from_millis(400),
    };
    let rotating = RotatingCert::start(Box::new(source), Duration::from_millis(10)).unwrap();
    let verifier = Arc::new(AttestedServerVerifier::new(
        policy(Role::server()),
        Mode::Certificate,
    ));
    // While the background thread is (nearly always) inside a 400 ms issuance, handshakes
    // complete: resolving the certificate never calls the attester. No timing assertion: the
    // proof is that 20 handshakes finish while rotations keep running.
    for _ in 0..20 {
        let (_, _, cerr, _) = handshake(
            client_config(&verifier, None),
            server_config(Arc::new(rotating.clone()), None),
        );
        assert!(cerr.is_none(), "{cerr:?}");
    }
}

#[test]
fn openssl_s_client_completes_a_handshake_and_its_certificate_verifies() {
    if !ratls_test::swtpm::require("openssl", "openssl") {
        return;
    }
    let Some(vm) = machine("openssl vm", sim_tee()) else {
        return;
    };
    let rotating = RotatingCert::from_attester(
        vm.attester.clone(),
        params(Role::server()),
        Duration::from_secs(3600),
    )
    .unwrap();
    let config = Arc::new(server_config(Arc::new(rotating.clone()), None));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut line = [0u8; 5];
        tls.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"ping\n");
        tls.write_all(b"pong\n").unwrap();
        tls.flush().unwrap();
    });
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-showcerts",
            "-servername",
            "vm.example",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("pong"),
        "openssl s_client output:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TLSv1.3"), "{stdout}");

    // The certificate openssl received, verified offline with our verifier.
    let pems = pem::parse_many(stdout.as_bytes()).unwrap();
    let leaf = pems
        .iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .expect("a certificate in the output");
    assert_eq!(leaf.contents(), rotating.current().cert[0].as_ref());
    let verifier = AttestedServerVerifier::new(policy(Role::server()), Mode::Certificate);
    let v = verifier
        .verify_certificate(leaf.contents(), UnixTime::now())
        .unwrap();
    assert!(
        v.is_trusted() && v.passed("binding.spki") && v.passed("tee.signature"),
        "{v}"
    );
}

#[test]
fn webpki_identity_on_top_of_evidence_who_and_what() {
    let Some(vm) = machine("webpki vm", sim_tee()) else {
        return;
    };
    // A CA the client trusts for names ("who").
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_cert.der().clone())
        .unwrap();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        ratls::tls::provider(),
    )
    .build()
    .unwrap();
    let verifier = Arc::new(
        AttestedServerVerifier::new(policy(Role::server()), Mode::Certificate).with_webpki(webpki),
    );

    // CA-signed and attested: both checks pass.
    let signed = cert::issue_signed_by(
        &vm.attester,
        &params(Role::server()),
        &issuer,
        UnixTime::now(),
    )
    .unwrap();
    let (c, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(fixed_issued(&signed), None),
    );
    assert!(cerr.is_none(), "{cerr:?}");
    assert!(ratls::tls::peer_verdict(&c, &verifier)
        .unwrap()
        .is_trusted());

    // Attested but self-signed: the identity check fails first, and says so.
    let self_signed = issue(&vm, Role::server(), UnixTime::now());
    let (_, _, cerr, _) = handshake(
        client_config(&verifier, None),
        server_config(fixed_issued(&self_signed), None),
    );
    assert_eq!(rejected_step(&cerr), "cert.webpki");
}
