//! RA-TLS attacks on the library itself: a real machine (swtpm with a simulated boot and IMA
//! log, the simulated TEE) producing real evidence, and real TLS sessions on loopback. Each
//! test names the step or the TLS failure that stops its attack.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use ratls::attest::sim::SimTee;
use ratls::binding::{BindingClaims, Role};
use ratls::bundle::{self, Bundle, ImaEvidence};
use ratls::tls::cert::{CertParams, CMW_EXTENSION_OID_ARCS};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode, RotatingCert};
use ratls::UnixTime;
use ratls_attacks::{attacker_config, runtime, TempDir};
use ratls_harness::{sim_ca, TestMachine};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn machine(tag: &str) -> (TestMachine, TempDir) {
    let dir = TempDir::new(tag);
    let files: Vec<_> = (0..4)
        .map(|i| {
            let f = dir.0.join(format!("prog{i}"));
            std::fs::write(&f, format!("#!/bin/sh\necho {i}\n")).unwrap();
            f
        })
        .collect();
    let refs: Vec<&std::path::Path> = files
        .iter()
        .map(|f| f.as_path())
        .collect();
    let m = TestMachine::start(tag, Some(SimTee::new(sim_ca()).unwrap()), &refs)
        .unwrap()
        .expect("swtpm is required");
    (m, dir)
}

fn expectations(spki: &[u8], ark: &[u8]) -> bundle::Expectations<'static> {
    let spki: &'static [u8] = Box::leak(spki.to_vec().into_boxed_slice());
    let requirements = Box::leak(Box::new(bundle::Requirements::new(Role::server())));
    requirements.insecure_sim_root = Some(ark.to_vec());
    bundle::Expectations::new(requirements, spki, UnixTime::now())
}

/// The byte ranges of the entries of a binary `ima-ng` log (little-endian, SHA-1 template hash).
fn entries(log: &[u8]) -> Vec<std::ops::Range<usize>> {
    let u32_at = |at: usize| u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let start = at;
        at += 4 + 20; // pcr, template hash
        let name = u32_at(at);
        at += 4 + name;
        let data = u32_at(at);
        at += 4 + data;
        out.push(start..at);
    }
    out
}

#[test]
fn attack_ima_log_truncated_reordered_or_spliced() {
    let (m, _dir) = machine("ima-tamper");
    let spki = b"the attester's SubjectPublicKeyInfo".to_vec();
    let binding = BindingClaims {
        role: Role::server(),
        spki_sha256: ratls::binding::spki_sha256(&spki),
        ak_sha256: None,
        issued_at: UnixTime::now().as_secs(),
        challenge: None,
        exporter: None,
    };
    let genuine = m
        .attester
        .produce(binding, true)
        .unwrap();
    let ca = sim_ca();
    let ark = ca.ark_der().to_vec();
    let policy = ratls::Policy::default();
    let expect = expectations(&spki, &ark);
    let v = bundle::verify_bundle(&genuine, &policy, &expect);
    assert!(v.is_trusted(), "{v}");
    let Some(ImaEvidence::Log(log)) = &genuine.ima else {
        panic!("no inline log")
    };
    let ranges = entries(log);
    assert!(ranges.len() >= 5, "boot_aggregate + 4 files");
    let with_log = |bytes: Vec<u8>| {
        let mut b: Bundle = genuine.clone();
        b.ima = Some(ImaEvidence::Log(bytes.into()));
        let v = bundle::verify_bundle(&b, &policy, &expect);
        assert!(!v.is_trusted());
        v.first_failure().unwrap().step
    };
    // Truncated: the last measurement (the one that would betray a program) dropped.
    let last = ranges.last().unwrap().clone();
    let step = with_log(log[..last.start].to_vec());
    assert_eq!(step, "ima.replay", "truncated");
    // Reordered: two measurements swapped.
    let (a, b) = (ranges[1].clone(), ranges[2].clone());
    let mut reordered = log[..a.start].to_vec();
    reordered.extend_from_slice(&log[b.clone()]);
    reordered.extend_from_slice(&log[a.clone()]);
    reordered.extend_from_slice(&log[b.end..]);
    assert_eq!(with_log(reordered), "ima.replay", "reordered");
    // Spliced: a measurement dropped from the middle.
    let mut spliced = log[..a.start].to_vec();
    spliced.extend_from_slice(&log[a.end..]);
    assert_eq!(with_log(spliced), "ima.replay", "spliced");
    // Cut mid-entry: a parse failure, never a panic.
    let cut = with_log(log[..log.len() - 3].to_vec());
    assert!(cut.as_str().starts_with("ima."), "{cut}");
}

fn attested_server(m: &TestMachine) -> (Arc<rustls::ServerConfig>, RotatingCert) {
    let cert = RotatingCert::from_attester(
        m.attester.clone(),
        CertParams::new(Role::server(), "localhost", vec!["localhost".into()]),
        Duration::from_secs(3600),
    )
    .unwrap();
    let config =
        ratls::tls::server_config(Arc::new(cert.clone()), None, vec![b"x".to_vec()]).unwrap();
    (Arc::new(config), cert)
}

#[test]
fn attack_tls12_and_resumption_on_attested_sessions() {
    let (m, _dir) = machine("tls-downgrade");
    let (config, _cert) = attested_server(&m);
    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"hello").await;
                    let _ = s.flush().await;
                    let mut b = [0u8; 1];
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
                }
            });
        }
    });
    rt.block_on(async {
        // A real client that speaks only TLS 1.2 (no exporter binding possible): refused.
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", "-tls1_2", "-connect", &addr.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("openssl is required (scripts/setup.sh)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "TLS 1.2 accepted: {text}");
        assert!(
            text.contains("alert protocol version") || text.contains("wrong version"),
            "{text}"
        );
        assert!(
            !text.contains("hello"),
            "application bytes over TLS 1.2: {text}"
        );
        // Resumption: the client keeps tickets and offers them; the attested server issues
        // none and keeps no cache, so every handshake is full (its exporter its own).
        let mut client = attacker_config(None);
        client.alpn_protocols = vec![b"x".to_vec()];
        client.resumption = rustls::client::Resumption::in_memory_sessions(16);
        let client = Arc::new(client);
        for round in 0..3 {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .unwrap();
            let mut s = tokio_rustls::TlsConnector::from(client.clone())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            let kind = s.get_ref().1.handshake_kind();
            assert!(
                matches!(
                    kind,
                    Some(
                        rustls::HandshakeKind::Full
                            | rustls::HandshakeKind::FullWithHelloRetryRequest
                    )
                ),
                "round {round}: {kind:?}"
            );
        }
    });
}

fn policy() -> AttestationPolicy {
    let mut p = AttestationPolicy::for_server(ratls::Policy::default());
    ratls::tls::danger::trust_simulated_root(&mut p, sim_ca().ark_der());
    p
}

#[test]
fn attack_oversized_certificate() {
    // 70 KiB of padding in a non-critical extension: over the 60 KiB cap that keeps RA-TLS
    // certificates under rustls' 64 KiB handshake-message limit.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 99999, 1],
            vec![0x04; 70 * 1024],
        ));
    let der = p
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    assert!(der.len() > 60 * 1024);
    let rejected = AttestedServerVerifier::new(policy(), Mode::Certificate)
        .verify_certificate(&der, UnixTime::now())
        .unwrap_err();
    assert_eq!(rejected.step(), "cert.parse", "{rejected}");
}

#[test]
fn attack_critical_unknown_extension() {
    // A certificate carrying genuine-looking evidence plus a critical extension we do not
    // process: a verifier that skipped it could be made to ignore a constraint.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let mut ext =
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 2], vec![0x05, 0x00]);
    ext.set_criticality(true);
    p.custom_extensions.push(ext);
    p.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &CMW_EXTENSION_OID_ARCS,
            ratls::tls::cert::der_octet_string_encode(b"not evidence"),
        ));
    let der = p
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    let rejected = AttestedServerVerifier::new(policy(), Mode::Certificate)
        .verify_certificate(&der, UnixTime::now())
        .unwrap_err();
    assert_eq!(rejected.step(), "cert.critical", "{rejected}");
}
