//! Attacks on `cosmian_vm_agent` and the `cosmian_vm` CLI, performed against the real binaries
//! (swtpm, the simulated TEE). Each test names the step or status that stops its attack; the
//! table in `docs/threat-model.md` (section 7) lists them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratls::binding::{BindingClaims, Role};
use ratls::bundle::Bundle;
use ratls::tls::cert::{self, der_octet_string_encode};
use ratls::tls::fresh::{self, Challenge};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::UnixTime;
use ratls_attacks::{
    bin, call, connect, failed_steps, read_reply, request, runtime, stranger, text, Vm,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: not JSON: {}", text(out)))
}

/// The policy a verifier of this VM's agent uses (the simulated root trusted).
fn agent_policy(vm: &Vm) -> AttestationPolicy {
    let mut p = AttestationPolicy::new(ratls::Policy::default(), Role::agent());
    let ark = std::fs::read(vm.data().join("sim/ark.pem")).unwrap();
    ratls::tls::danger::trust_simulated_root(&mut p, &ark);
    p
}

/// Fresh evidence from the agent over the attacker's own session, with the attacker's challenge.
async fn evidence_on_own_session(addr: SocketAddr, challenge: &Challenge) -> Vec<u8> {
    let mut s = connect(addr, None).await;
    let body = format!(
        r#"{{"challenge": "{}"}}"#,
        hex::encode(challenge.as_bytes())
    );
    let r = request(&mut s, "POST", "/api/v1/evidence", body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.body
}

/// A relay with its own TLS key in front of `agent`: terminates TLS from the victim, opens its
/// own TLS session to the agent, copies the plaintext both ways, and records what the victim
/// sent.
fn start_relay(
    rt: &tokio::runtime::Runtime,
    agent: SocketAddr,
) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(ratls::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    );
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = recorded.clone();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (config, rec) = (config.clone(), rec.clone());
            tokio::spawn(async move {
                let Ok(victim) = tokio_rustls::TlsAcceptor::from(config)
                    .accept(tcp)
                    .await
                else {
                    return;
                };
                let upstream = connect(agent, None).await;
                let (mut vr, mut vw) = tokio::io::split(victim);
                let (mut ur, mut uw) = tokio::io::split(upstream);
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = vr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        rec.lock()
                            .unwrap()
                            .extend_from_slice(&buf[..n]);
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let _ = tokio::io::copy(&mut ur, &mut vw).await;
                up.abort();
            });
        }
    });
    (addr, recorded)
}

#[test]
fn attack_agent_raw_tee_and_tpm_quote_oracles_are_gone() {
    let vm = Vm::start("oracle", "");
    runtime().block_on(async {
        // The nonce an attacker would want signed: the report_data of a binding to its own key.
        for (path, nonce) in [
            ("/api/v1/quote/tee", "aa".repeat(64)),
            ("/api/v1/quote/tpm", "bb".repeat(32)),
        ] {
            let body = format!(r#"{{"nonce": "{nonce}"}}"#);
            let r = call(vm.addr, None, "POST", path, body.as_bytes()).await;
            assert_eq!(r.status, 410, "{path}");
            // Even the owner gets nothing signed there.
            let r = call(vm.addr, Some(stranger()), "GET", path, b"").await;
            assert_eq!(r.status, 410, "{path}");
        }
    });
}

#[test]
fn attack_agent_relay_with_its_own_key_cannot_pass_verify_or_receive_a_secret() {
    let vm = Vm::start("relay", "");
    let (home, snap) = vm.snapshot();
    let snap = snap.to_str().unwrap().to_owned();
    let rt = runtime();
    let (relay, recorded) = start_relay(&rt, vm.addr);
    let relay_url = format!("https://{relay}");
    // verify through the relay: refused at the binding of the TLS key.
    let out = vm.cli_at(
        &relay_url,
        &home,
        &["--json", "verify", "--snapshot", &snap],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let steps = failed_steps(&json(&out));
    assert!(steps.contains(&"binding.spki".to_owned()), "{steps:?}");
    assert!(steps.contains(&"binding.exporter".to_owned()), "{steps:?}");
    // secret put through the relay: nothing is sent.
    let secret = vm.dir.0.join("secret.txt");
    std::fs::write(&secret, "relay-must-not-see-this").unwrap();
    let out = vm.cli_at(
        &relay_url,
        &home,
        &[
            "secret",
            "put",
            "db",
            secret.to_str().unwrap(),
            "--snapshot",
            &snap,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was sent"), "{}", text(&out));
    let seen = recorded.lock().unwrap().clone();
    assert!(
        !String::from_utf8_lossy(&seen).contains("relay-must-not-see-this"),
        "the relay received the secret"
    );
    assert!(!vm
        .data()
        .join("app/secrets/db")
        .exists());
    // Directly, the same commands pass: the snapshot and the owner are fine.
    let out = vm.cli(&home, &["verify", "--snapshot", &snap]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn attack_agent_evidence_from_another_session_fails_at_binding_exporter_and_spki() {
    let vm = Vm::start("divert", "");
    let policy = agent_policy(&vm);
    runtime().block_on(async {
        // The victim's session (to an attacker key would be worse; here to the agent itself).
        let victim = connect(vm.addr, None).await;
        let challenge = Challenge::new().unwrap();
        let exporter =
            fresh::exporter(victim.get_ref().1, &Role::agent(), challenge.as_bytes()).unwrap();
        let spki = fresh::peer_spki(victim.get_ref().1).unwrap();
        // The attacker asks on its own session, with the victim's challenge, and replays it.
        let cmw = evidence_on_own_session(vm.addr, &challenge).await;
        let v = fresh::verify_response(&cmw, &policy, &spki, &challenge, exporter, UnixTime::now());
        assert!(!v.is_trusted());
        assert_eq!(v.first_failure().unwrap().step, "binding.exporter", "{v}");
        // Presented by a relay with its own key: the key binding fails too.
        let v = fresh::verify_response(
            &cmw,
            &policy,
            b"the relay's own SubjectPublicKeyInfo",
            &challenge,
            exporter,
            UnixTime::now(),
        );
        assert_eq!(v.first_failure().unwrap().step, "binding.spki", "{v}");
        // A replay of the same answer with another challenge: binding.challenge.
        let other = Challenge::new().unwrap();
        let v = fresh::verify_response(&cmw, &policy, &spki, &other, exporter, UnixTime::now());
        assert!(v
            .failures()
            .any(|c| c.step == "binding.challenge"));
    });
}

#[test]
fn attack_agent_forged_certificate_mode_certificate_from_an_outside_key() {
    let vm = Vm::start("forge", "");
    let (home, snap) = vm.snapshot();
    let rt = runtime();
    // The agent's genuine RA-TLS certificate, its evidence copied into the attacker's own.
    let genuine = rt.block_on(async {
        let s = connect(vm.addr, None).await;
        s.get_ref()
            .1
            .peer_certificates()
            .unwrap()[0]
            .to_vec()
    });
    let evidence = cert::read_evidence(&genuine).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &cert::CMW_EXTENSION_OID_ARCS,
            der_octet_string_encode(&evidence.cmw),
        ));
    let forged = p.self_signed(&key).unwrap();
    // Checked by the library's certificate-mode verifier: binding.spki.
    let rejected = AttestedServerVerifier::new(agent_policy(&vm), Mode::Certificate)
        .verify_certificate(forged.der(), UnixTime::now())
        .unwrap_err();
    assert_eq!(rejected.step(), "binding.spki");
    // Served by a plain TLS server: `connect` and `verify --application` refuse it.
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(ratls::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![forged.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    );
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let mut b = [0u8; 1];
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
                }
            });
        }
    });
    let target = addr.to_string();
    let out = vm.cli(&home, &["--json", "connect", &target, "--role", "agent"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("binding.spki"), "{}", text(&out));
    let out = vm.cli(
        &home,
        &[
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--application",
            &target,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("binding.spki"), "{}", text(&out));
}

#[test]
fn attack_agent_foreign_ak_swapped_into_genuine_evidence_fails_at_binding() {
    let vm = Vm::start("foreign-ak", "");
    let policy = agent_policy(&vm);
    // A second machine: the attacker's own TPM with other PCRs.
    let other = ratls_harness::Swtpm::start().expect("swtpm");
    let other_tpm = ratls_harness::open_tpm(&other).unwrap();
    ratls_harness::simulate_boot(&other_tpm, "attacker firmware").unwrap();
    runtime().block_on(async {
        let s = connect(vm.addr, None).await;
        let challenge = Challenge::new().unwrap();
        let exporter =
            fresh::exporter(s.get_ref().1, &Role::agent(), challenge.as_bytes()).unwrap();
        let spki = fresh::peer_spki(s.get_ref().1).unwrap();
        let mut sr = s;
        let body = format!(
            r#"{{"challenge": "{}"}}"#,
            hex::encode(challenge.as_bytes())
        );
        let r = request(&mut sr, "POST", "/api/v1/evidence", body.as_bytes()).await;
        assert_eq!(r.status, 200);
        let genuine = Bundle::from_cmw(&r.body, ratls::bundle::MAX_BUNDLE_LEN).unwrap();
        // The attacker quotes its own TPM over the binding with its own AK hash.
        use ratls::attest::TpmAttester;
        let ak = other_tpm.ak_public().unwrap();
        let mut binding: BindingClaims = genuine.binding.clone();
        binding.ak_sha256 = Some(ratls::digest::sha256(&ak));
        let quote = other_tpm
            .quote(
                &binding.qualifying_data(),
                &[ratls::digest::HashAlg::Sha256],
                &ratls::attest::DEFAULT_PCRS,
            )
            .unwrap();
        let mut forged = genuine.clone();
        forged.tpm = Some(quote);
        forged.binding = binding;
        let v = fresh::verify_response(
            &forged.to_cmw(),
            &policy,
            &spki,
            &challenge,
            exporter,
            UnixTime::now(),
        );
        assert!(!v.is_trusted());
        // The TEE report binds the agent's AK hash, not the attacker's.
        assert_eq!(
            v.first_failure().unwrap().step,
            "binding.report_data",
            "{v}"
        );
        // Keeping the genuine AK hash but the attacker's quote: binding.ak.
        let mut forged = genuine.clone();
        forged.tpm = Some(
            other_tpm
                .quote(
                    &genuine.binding.qualifying_data(),
                    &[ratls::digest::HashAlg::Sha256],
                    &ratls::attest::DEFAULT_PCRS,
                )
                .unwrap(),
        );
        let v = fresh::verify_response(
            &forged.to_cmw(),
            &policy,
            &spki,
            &challenge,
            exporter,
            UnixTime::now(),
        );
        assert_eq!(v.first_failure().unwrap().step, "binding.ak", "{v}");
    });
}

#[test]
fn attack_agent_weak_challenges_are_refused() {
    let vm = Vm::start("weak-challenge", "");
    runtime().block_on(async {
        let mut counter = "00".repeat(31);
        counter.push_str("01");
        for (challenge, why) in [
            ("00".repeat(32), "all zero"),
            (counter, "a counter"),
            ("0102".repeat(16), "two distinct bytes"),
            ("aa".to_owned(), "one byte"),
            ("ab".repeat(33), "33 bytes"),
        ] {
            let body = format!(r#"{{"challenge": "{challenge}"}}"#);
            let r = call(vm.addr, None, "POST", "/api/v1/evidence", body.as_bytes()).await;
            assert_eq!(r.status, 400, "{why}");
            assert!(r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("challenge:"));
        }
    });
}

#[test]
fn attack_agent_unauthenticated_snapshot_job() {
    let vm = Vm::start("snapshot-job", "");
    runtime().block_on(async {
        // Strangers can neither start nor read a walk (file names and digests of the VM).
        let r = call(vm.addr, None, "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 401);
        let r = call(vm.addr, Some(stranger()), "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 403);
        let guess = format!("/api/v1/snapshot/{}", "00".repeat(16));
        let r = call(vm.addr, Some(stranger()), "GET", &guess, b"").await;
        assert_eq!(r.status, 403);
        let r = call(vm.addr, None, "GET", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 401);
    });
}

#[test]
fn attack_agent_snapshot_result_is_served_once_and_only_to_its_job() {
    let vm = Vm::start("snapshot-once", "");
    let home = vm.enrolled_owner();
    let owner = vm.owner_identity(&home);
    runtime().block_on(async {
        let r = call(
            vm.addr,
            Some(owner.clone()),
            "POST",
            "/api/v1/snapshot",
            b"",
        )
        .await;
        assert_eq!(r.status, 202);
        let job = r.json()["job"]
            .as_str()
            .unwrap()
            .to_owned();
        // Another id (a guess, or a stale one) gets nothing, even for the owner.
        let r = call(
            vm.addr,
            Some(owner.clone()),
            "GET",
            &format!("/api/v1/snapshot/{}", "11".repeat(16)),
            b"",
        )
        .await;
        assert_eq!(r.status, 404);
        let path = format!("/api/v1/snapshot/{job}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = call(vm.addr, Some(owner.clone()), "GET", &path, b"").await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 202);
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Served once: a later request for the same job (a file deleted since, say) gets 404.
        let r = call(vm.addr, Some(owner.clone()), "GET", &path, b"").await;
        assert_eq!(r.status, 404);
    });
}

#[test]
fn attack_agent_owner_enrolment_race_without_the_token() {
    let vm = Vm::start("enrol-race", "");
    runtime().block_on(async {
        let attacker = stranger();
        // First caller no longer wins: no token → 400, a guessed token → 403.
        let r = call(
            vm.addr,
            Some(attacker.clone()),
            "POST",
            "/api/v1/owner",
            b"",
        )
        .await;
        assert_eq!(r.status, 400);
        for _ in 0..20 {
            let body = format!(r#"{{"token": "{}"}}"#, hex::encode(rand16()));
            let r = call(
                vm.addr,
                Some(attacker.clone()),
                "POST",
                "/api/v1/owner",
                body.as_bytes(),
            )
            .await;
            assert_eq!(r.status, 403);
        }
        // Then throttled, even with the right token (it stays valid for the real owner later).
        let body = format!(r#"{{"token": "{}"}}"#, vm.token());
        let r = call(
            vm.addr,
            Some(attacker.clone()),
            "POST",
            "/api/v1/owner",
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 429);
        assert!(r
            .head
            .to_ascii_lowercase()
            .contains("retry-after"));
        let health = call(vm.addr, None, "GET", "/api/v1/health", b"").await;
        assert_eq!(health.json()["owner"], "awaiting enrolment");
    });
    assert!(vm
        .log()
        .contains("enrolment with a wrong token"));
}

fn rand16() -> [u8; 16] {
    *Challenge::new()
        .unwrap()
        .as_bytes()
        .first_chunk::<16>()
        .unwrap()
}

#[test]
fn attack_agent_slow_body_is_cut_off() {
    let vm = Vm::start("slow-body", "");
    let home = vm.enrolled_owner();
    let owner = vm.owner_identity(&home);
    runtime().block_on(async {
        // Headers of a 1 MiB upload, a few bytes, then nothing.
        let mut s = connect(vm.addr, Some(owner)).await;
        s.write_all(
            b"PUT /api/v1/secrets/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\nabc",
        )
        .await
        .unwrap();
        s.flush().await.unwrap();
        let started = Instant::now();
        let reply = read_reply(&mut s).await;
        let waited = started.elapsed();
        assert_eq!(reply.status, 408, "{}", reply.head);
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        let r = call(vm.addr, None, "GET", "/api/v1/health", b"").await;
        assert_eq!(r.status, 200);
    });
    assert!(!vm
        .data()
        .join("app/secrets/slow")
        .exists());
}

#[test]
fn attack_agent_memory_exhaustion_with_stalled_16_mib_uploads() {
    let vm = Vm::start("memory", "");
    let home = vm.enrolled_owner();
    let owner = vm.owner_identity(&home);
    let before = vm.rss_kib();
    runtime().block_on(async {
        let mut held = Vec::new();
        let mut statuses = Vec::new();
        // 30 strangers and 30 owner uploads, each declaring 16 MiB and sending 1 MiB.
        for i in 0..60 {
            let client = if i % 2 == 0 {
                None
            } else {
                Some(owner.clone())
            };
            let mut s = connect(vm.addr, client).await;
            let path = if i % 2 == 0 {
                "/api/v1/evidence".to_owned()
            } else {
                format!("/api/v1/secrets/big{i}")
            };
            let head = format!(
                "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                16 * 1024 * 1024
            )
            .replace("PUT /api/v1/evidence", "POST /api/v1/evidence");
            s.write_all(head.as_bytes())
                .await
                .unwrap();
            let chunk = vec![b'x'; 1024 * 1024];
            // The write may fail once the agent answered and closed.
            let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await;
            held.push(s);
        }
        // The agent stays small and answers health at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = vm.rss_kib();
        // The best of five answers (the test machine runs other suites at the same time).
        let mut health_time = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let r = call(vm.addr, None, "GET", "/api/v1/health", b"").await;
            health_time = health_time.min(started.elapsed());
            assert_eq!(r.status, 200);
        }
        assert!(health_time < Duration::from_millis(100), "{health_time:?}");
        assert!(
            rss < 200 * 1024,
            "agent RSS {rss} KiB under 60 stalled uploads (before: {before} KiB)"
        );
        // Strangers were refused by the evidence body cap (413); owner uploads past the
        // buffered-bytes budget got 503.
        for mut s in held {
            let r = tokio::time::timeout(Duration::from_secs(40), read_reply(&mut s)).await;
            if let Ok(r) = r {
                statuses.push(r.status);
            }
        }
        assert!(statuses.contains(&413), "{statuses:?}");
        assert!(statuses.contains(&503), "{statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| [408, 413, 503].contains(s)),
            "{statuses:?}"
        );
    });
}

#[test]
fn attack_agent_connection_flood_from_one_address() {
    let vm = Vm::start(
        "flood",
        "max_connections_per_peer = 8\nhandshake_timeout_secs = 5",
    );
    runtime().block_on(async {
        // 40 idle TCP connections from 127.0.0.1: 8 held (until the handshake timeout), the
        // rest closed at once, well before the handshake timeout could close anything.
        let started = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(
                TcpStream::connect(vm.addr)
                    .await
                    .unwrap(),
            );
        }
        let mut is_closed = [false; 40];
        while is_closed.iter().filter(|c| **c).count() < 32 {
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "only {} of 40 closed at once",
                is_closed.iter().filter(|c| **c).count()
            );
            for (s, closed) in idle
                .iter_mut()
                .zip(is_closed.iter_mut())
            {
                if *closed {
                    continue;
                }
                let mut b = [0u8; 1];
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(10), s.read(&mut b)).await
                {
                    *closed = true;
                }
            }
        }
        // Another address is still served while 127.0.0.1 is at its limit.
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap())
            .unwrap();
        let tcp = sock.connect(vm.addr).await.unwrap();
        let mut s =
            tokio_rustls::TlsConnector::from(Arc::new(ratls_attacks::attacker_config(None)))
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
        let r = request(&mut s, "GET", "/api/v1/health", b"").await;
        assert_eq!(r.status, 200);
        assert!(
            r.json()["refused"]["peer_connections"]
                .as_u64()
                .unwrap()
                >= 32
        );
        // The held ones are closed by the handshake timeout.
        tokio::time::sleep(Duration::from_secs(6)).await;
        for s in &mut idle {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
            assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
        }
    });
}

#[test]
fn attack_agent_evidence_flood_from_one_address() {
    let vm = Vm::start("evidence-flood", "");
    runtime().block_on(async {
        // Sessions first, so the requests arrive together.
        let mut sessions = Vec::new();
        for _ in 0..12 {
            sessions.push(connect(vm.addr, None).await);
        }
        let mut tasks = Vec::new();
        for mut s in sessions {
            tasks.push(tokio::spawn(async move {
                let challenge = Challenge::new().unwrap();
                let body = format!(
                    r#"{{"challenge": "{}"}}"#,
                    hex::encode(challenge.as_bytes())
                );
                request(&mut s, "POST", "/api/v1/evidence", body.as_bytes())
                    .await
                    .status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        // One production at a time per address: the others are told to come back.
        assert!(statuses.contains(&200), "{statuses:?}");
        assert!(statuses.contains(&429), "{statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| *s == 200 || *s == 429),
            "{statuses:?}"
        );
        // The IMA log (megabytes on a real machine) is read under the same slots.
        let mut sessions = Vec::new();
        for _ in 0..12 {
            sessions.push(connect(vm.addr, None).await);
        }
        let mut tasks = Vec::new();
        for mut s in sessions {
            tasks.push(tokio::spawn(async move {
                let r = request(&mut s, "GET", "/api/v1/ima/binary", b"").await;
                (r.status, r.body.len())
            }));
        }
        let mut reads = Vec::new();
        for t in tasks {
            reads.push(t.await.unwrap());
        }
        assert!(
            reads
                .iter()
                .any(|(s, n)| *s == 200 && *n > 0),
            "{reads:?}"
        );
        assert!(
            reads
                .iter()
                .all(|(s, _)| *s == 200 || *s == 429),
            "{reads:?}"
        );
    });
}

#[test]
fn attack_agent_tpm_outage_degrades_then_recovers() {
    let mut vm = Vm::start("tpm-restart", "");
    let rt = runtime();
    let evidence = |addr| async move {
        let c = Challenge::new().unwrap();
        let body = format!(r#"{{"challenge": "{}"}}"#, hex::encode(c.as_bytes()));
        call(addr, None, "POST", "/api/v1/evidence", body.as_bytes()).await
    };
    // The TPM goes away (its process dies).
    let pid = vm.swtpm.pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    rt.block_on(async {
        // Evidence fails with a clear status, and health says degraded, naming the TPM.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = evidence(vm.addr).await;
            assert_ne!(r.status, 200, "evidence without a TPM");
            let h = call(vm.addr, None, "GET", "/api/v1/health", b"").await;
            assert_eq!(h.status, 200);
            let h = h.json();
            if h["status"] == "degraded" && h["ok"] == false {
                assert!(
                    h["tpm"]
                        .as_str()
                        .unwrap()
                        .starts_with("unavailable"),
                    "{h}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "health never said degraded: {h}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // The TPM comes back on the same port; the agent reconnects by itself.
    let port = vm.swtpm.port();
    vm.swtpm.restart();
    assert_eq!(vm.swtpm.port(), port, "swtpm came back on its port");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = call(vm.addr, None, "GET", "/api/v1/health", b"")
                .await
                .json();
            let r = evidence(vm.addr).await;
            if r.status == 200 && h["status"] == "ok" {
                break;
            }
            assert!(
                [500, 503].contains(&r.status),
                "{} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            assert!(
                Instant::now() < deadline,
                "the agent did not recover:\n{}",
                vm.log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

#[test]
fn attack_cli_edited_snapshot_that_pins_nothing_is_refused() {
    let vm = Vm::start("edited-snapshot", "");
    let (home, snap) = vm.snapshot();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    for (pin, edit) in [
        (
            "policy.snp.measurement",
            Box::new(|v: &mut serde_json::Value| {
                v["policy"]["snp"]["measurement"] = serde_json::Value::Null;
            }) as Box<dyn Fn(&mut serde_json::Value)>,
        ),
        (
            "policy.tpm.ak_sha256",
            Box::new(|v: &mut serde_json::Value| {
                v["policy"]["tpm"]["ak_sha256"] = serde_json::Value::Null;
            }),
        ),
        (
            "policy.tpm.pcrs",
            Box::new(|v: &mut serde_json::Value| {
                v["policy"]["tpm"]["pcrs"] = serde_json::json!({});
            }),
        ),
        (
            "agent_spki_sha256",
            Box::new(|v: &mut serde_json::Value| {
                v.as_object_mut()
                    .unwrap()
                    .remove("agent_spki_sha256");
            }),
        ),
    ] {
        let mut edited = original.clone();
        edit(&mut edited);
        let path = vm.dir.0.join("edited.snapshot");
        std::fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
        let out = vm.cli(
            &home,
            &["--json", "verify", "--snapshot", path.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{pin}: {}", text(&out));
        let v = json(&out);
        // (Without the agent key, `snapshot.agent_key` has nothing to compare with either.)
        assert_eq!(
            failed_steps(&v)
                .first()
                .map(String::as_str),
            Some("snapshot.pins"),
            "{pin}"
        );
        assert!(
            v["snapshot_checks"][0]["presented"]
                .as_str()
                .unwrap()
                .contains(pin),
            "{pin}: {}",
            v["snapshot_checks"][0]
        );
    }
}

#[test]
fn attack_agent_container_made_anew_changes_the_key_and_verify_names_it() {
    let mut vm = Vm::start("new-key", "");
    let (home, snap) = vm.snapshot();
    // The host replaces the VM's storage: a new TLS key (and a new, empty owner record).
    vm.stop_agent();
    std::fs::remove_file(vm.data().join("data/key.pem")).unwrap();
    std::fs::remove_file(vm.data().join("data/cert.pem")).unwrap();
    vm.start_agent();
    let out = vm.cli(
        &home,
        &["--json", "verify", "--snapshot", snap.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failed_steps(&json(&out)), ["snapshot.agent_key"]);
}

#[test]
fn attack_agent_certificate_evidence_cannot_stand_in_for_fresh_evidence() {
    // Replay of old evidence: the certificate's (time-window) bundle offered as the answer to
    // a fresh challenge fails at binding.challenge and binding.exporter.
    let vm = Vm::start("cert-as-fresh", "");
    let policy = agent_policy(&vm);
    runtime().block_on(async {
        let s = connect(vm.addr, None).await;
        let cert_der = s
            .get_ref()
            .1
            .peer_certificates()
            .unwrap()[0]
            .to_vec();
        let spki = fresh::peer_spki(s.get_ref().1).unwrap();
        let challenge = Challenge::new().unwrap();
        let exporter =
            fresh::exporter(s.get_ref().1, &Role::agent(), challenge.as_bytes()).unwrap();
        let evidence = cert::read_evidence(&cert_der).unwrap();
        let v = fresh::verify_response(
            &evidence.cmw,
            &policy,
            &spki,
            &challenge,
            exporter,
            UnixTime::now(),
        );
        let steps: Vec<_> = v
            .failures()
            .map(|c| c.step.as_str().to_owned())
            .collect();
        assert!(steps.contains(&"binding.challenge".to_owned()), "{steps:?}");
        assert!(steps.contains(&"binding.exporter".to_owned()), "{steps:?}");
    });
}

/// `--quiet` and `--verbose` on every binary; on the CLI, mutually exclusive,
/// `--quiet` drops the warnings (the insecure simulated root's) but not the result, `-v` adds
/// debug events.
#[test]
fn every_binary_takes_quiet_and_verbose_and_the_cli_honours_them() {
    for name in [
        "cosmian_vm",
        "cosmian_vm_agent",
        "cosmian_vm_proxy",
        "cosmian_certtool",
        "cosmian_fstool",
        "cosmian_vm_sim",
    ] {
        let help = Command::new(bin(name))
            .arg("--help")
            .output()
            .unwrap();
        let help = text(&help);
        assert!(
            help.contains("--quiet") && help.contains("--verbose"),
            "{name}: {help}"
        );
    }
    let vm = Vm::start("verbosity", "");
    let home = vm.dir.0.join("home");
    let run = |flags: &[&str]| {
        let out = Command::new(bin("cosmian_vm"))
            .env("HOME", &home)
            .env_remove("RUST_LOG")
            .args(flags)
            .args([
                "--url",
                &format!("https://{}", vm.addr),
                "--allow-insecure-tls",
            ])
            .arg("--insecure-sim-root")
            .arg(vm.data().join("sim/ark.pem"))
            .args(["connect", &vm.addr.to_string(), "--role", "agent"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("WARNING: --insecure-sim-root"), "{stderr}");
    let (quiet_code, quiet_stdout, quiet_stderr) = run(&["--quiet"]);
    assert_eq!(quiet_code, Some(0));
    assert_eq!(quiet_stderr, "", "--quiet printed on stderr");
    assert_eq!(quiet_stdout, stdout, "--quiet changed the result");
    let (both, _, both_stderr) = run(&["--quiet", "--verbose"]);
    assert_eq!(both, Some(2), "{both_stderr}");
    assert!(both_stderr.contains("cannot be used with"), "{both_stderr}");
    let (verbose_code, _, verbose_stderr) = run(&["-vv"]);
    assert_eq!(verbose_code, Some(0));
    assert!(
        verbose_stderr.lines().count() > stderr.lines().count(),
        "-vv said no more than the default:\n{verbose_stderr}"
    );
}
