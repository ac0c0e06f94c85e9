//! Black-box tests of the real `cosmian_vm_proxy` binary: swtpm with a simulated boot and an IMA
//! log (one swtpm per proxy process), the simulated TEE with its CA pre-generated, a tiny HTTP
//! backend that records what it saw (PROXY v2 header included), and real clients (curl,
//! openssl s_client).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn plain_tls_clients_reach_the_backend_through_a_server_proxy() {
    let machine = Machine::new("plain");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[listen_args(backend.addr), machine.attester_args()]),
    );
    let url = format!("https://127.0.0.1:{}/hello", server.addr.port());

    // curl: TLS 1.3 with the RA-TLS certificate (self-signed: -k), ALPN http/1.1.
    let out = curl(&["-k", &url]);
    assert!(out.status.success(), "curl: {out:?}");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.starts_with("GET /hello HTTP/1.1\r\n"), "{body}");
    let seen = backend.seen();
    let conn = seen
        .iter()
        .find(|s| {
            s.heads
                .iter()
                .any(|h| h.contains("/hello"))
        })
        .unwrap();
    let pp = ProxyV2::parse(
        conn.proxy_header
            .as_deref()
            .expect("a PROXY v2 header"),
    );
    assert_eq!(pp.src.ip().to_string(), "127.0.0.1");
    assert_eq!(pp.dst, server.addr);
    assert_eq!(pp.tlv(0x01), Some(&b"http/1.1"[..]), "ALPN TLV");
    assert_eq!(
        pp.tlv(0xE1),
        Some(&b"none"[..]),
        "a plain client is not attested"
    );
    assert!(pp.tlv(0xE0).is_none());
    let ssl = pp.tlv(0x20).expect("PP2_TYPE_SSL");
    assert_eq!(ssl[0] & 1, 1, "PP2_CLIENT_SSL");

    // openssl s_client, TLS 1.3, no ALPN.
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-tls1_3", "-connect"])
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is required");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /openssl HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // -quiet keeps the connection open after stdin ends; read the answer, then stop it.
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).contains("GET /openssl") {
                break;
            }
        }
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(got.contains("GET /openssl HTTP/1.1"), "{got}");
    let seen = backend.seen();
    let conn = seen
        .iter()
        .find(|s| {
            s.heads
                .iter()
                .any(|h| h.contains("/openssl"))
        })
        .unwrap();
    let pp = ProxyV2::parse(conn.proxy_header.as_deref().unwrap());
    assert!(pp.tlv(0x01).is_none(), "no ALPN offered, none selected");

    // Operations.
    assert!(server.metric("cosmian_proxy_handshakes_total{outcome=\"plain\"}") >= 2);
    assert!(server.metric("cosmian_proxy_bytes_total{direction=\"up\"}") > 0);
    let status: serde_json::Value = serde_json::from_str(&server.get("/status")).unwrap();
    assert_eq!(status["ok"], true, "{status}");
    assert!(
        status["evidence_age_secs"]
            .as_u64()
            .unwrap()
            < 600,
        "{status}"
    );

    // SIGTERM: stop accepting, drain, exit 0.
    let mut server = server;
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = server.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting");
}

#[test]
fn http_headers_mode_strips_client_sent_attestation_headers() {
    let machine = Machine::new("headers");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            machine.attester_args(),
            vec!["--metadata".into(), "http-headers".into()],
        ]),
    );
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    // Two requests on one connection (keep-alive), both with forged headers.
    let out = curl(&[
        "-k",
        "-H",
        "X-Attestation-Verdict: trusted",
        "-H",
        "x-attestation-measurement: forged",
        &format!("{base}/one"),
        &format!("{base}/two"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let seen = backend.seen();
    let conn = seen
        .iter()
        .find(|s| s.heads.len() == 2)
        .expect("one keep-alive connection");
    assert!(conn.proxy_header.is_none());
    for head in &conn.heads {
        assert!(head.contains("X-Attestation-Verdict: none\r\n"), "{head}");
        assert!(
            !head.contains("trusted") && !head.contains("forged"),
            "{head}"
        );
    }
}

#[test]
fn mutual_mode_client_proxy_reaches_backend_with_attestation_tlvs() {
    let server_machine = Machine::new("mutual-server");
    let client_machine = Machine::new("mutual-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            server_machine.attester_args(),
            vec!["--require-attested-client".into()],
            policy_args(&server_machine.dir, "clients.json", "{}"),
        ]),
    );
    let client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            vec!["--attest-self".into()],
            client_machine.attester_args(),
            policy_args(&client_machine.dir, "server.json", "{}"),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/attested", client.addr.port())]);
    assert!(out.status.success(), "{out:?}\n{}", server.log());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("GET /attested HTTP/1.1"));

    let seen = backend.seen();
    let conn = seen
        .iter()
        .find(|s| {
            s.heads
                .iter()
                .any(|h| h.contains("/attested"))
        })
        .unwrap();
    let pp = ProxyV2::parse(conn.proxy_header.as_deref().unwrap());
    assert_eq!(pp.tlv(0x01), Some(&b"cosmian-attest/1"[..]));
    assert_eq!(pp.tlv(0xE1), Some(&b"trusted"[..]));
    let ssl = pp.tlv(0x20).unwrap();
    assert_eq!(
        ssl[0] & 2,
        2,
        "PP2_CLIENT_CERT_CONN: the client presented a certificate"
    );
    let summary: serde_json::Value = serde_json::from_slice(pp.tlv(0xE0).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "trusted", "{summary}");
    assert_eq!(summary["platform"], "sev-snp", "{summary}");
    assert_eq!(summary["binding"], "session", "{summary}");
    assert_eq!(summary["freshness"], "challenge", "{summary}");
    assert_eq!(summary["role"], "client", "{summary}");
    assert_eq!(summary["simulated"], true, "{summary}");
    assert_eq!(
        summary["measurement"],
        hex_of(&ratls::attest::sim::SimTee::default_measurement()),
        "{summary}"
    );
    assert_eq!(
        summary["policy_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        summary["evidence_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // A plain TLS client (no certificate, no attestation) is refused.
    let out = curl(&[
        "-k",
        &format!("https://127.0.0.1:{}/plain", server.addr.port()),
    ]);
    assert!(
        !out.status.success(),
        "an unattested client got through: {out:?}"
    );
    // The proxy records the refusal after curl may already have returned: wait for it.
    assert!(server.wait_log("refused 127.0.0.1:"), "{}", server.log());
    assert!(server.metric("cosmian_proxy_handshakes_total{outcome=\"refused_unattested\"}") >= 1);

    // A client-mode proxy that does not attest itself is refused too (it presents no
    // certificate); the app sees the connection close without an answer.
    let lazy = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "server2.json", "{}"),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/lazy", lazy.addr.port())]);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(!backend.seen().iter().any(|s| s
        .heads
        .iter()
        .any(|h| h.contains("/lazy"))));
    assert!(client.metric("cosmian_proxy_handshakes_total{outcome=\"attested\"}") >= 1);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn client_mode_refuses_a_server_that_fails_the_policy_and_names_the_step() {
    let server_machine = Machine::new("bad-server");
    let debug_machine = Machine::new("debug-server");
    let client_machine = Machine::new("strict-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[listen_args(backend.addr), server_machine.attester_args()]),
    );

    // Wrong measurement.
    let pinned = format!(r#"{{"snp": {{"measurement": "{}"}}}}"#, "ab".repeat(48));
    let client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "pinned.json", &pinned),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/nope", client.addr.port())]);
    assert!(out.stdout.is_empty(), "{out:?}");
    let needle = format!(
        "rejected {}: attestation rejected at tee.policy.measurement: expected",
        server.addr
    );
    assert!(client.wait_log(&needle), "{}", client.log());
    assert!(client.log().contains("presented "), "{}", client.log());
    assert_eq!(
        client.metric("cosmian_proxy_rejections_total{step=\"tee.policy.measurement\"}"),
        1
    );

    // Debug guest policy.
    let debug_server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            debug_machine.attester_args(),
            vec!["--sim-debug".into()],
        ]),
    );
    let client2 = Proxy::start(
        "client",
        &cat(&[
            listen_args(debug_server.addr),
            policy_args(&client_machine.dir, "default.json", "{}"),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/debug", client2.addr.port())]);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        client2.wait_log("attestation rejected at tee.policy.debug: expected"),
        "{}",
        client2.log()
    );
    assert!(!backend.seen().iter().any(|s| s
        .heads
        .iter()
        .any(|h| h.contains("/nope") || h.contains("/debug"))));

    // The same client policy accepts the healthy server (the refusals were about the evidence).
    let client3 = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "default2.json", "{}"),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/ok", client3.addr.port())]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("GET /ok"),
        "{out:?}"
    );
}

#[test]
fn rotation_under_load_loses_no_request() {
    let server_machine = Machine::new("rot-server");
    let client_machine = Machine::new("rot-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[listen_args(backend.addr), server_machine.attester_args()]),
    );
    let client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "server.json", "{}"),
        ]),
    );
    let url = format!("http://127.0.0.1:{}/r", client.addr.port());
    let before: serde_json::Value = serde_json::from_str(&server.get("/status")).unwrap();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let codes = {
        let done = done.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            // 20 connections × 10 keep-alive requests: new connections and live ones.
            for _ in 0..20 {
                let mut args = vec!["-w", "%{http_code}\n"];
                for _ in 0..10 {
                    args.extend(["-o", "/dev/null", url.as_str()]);
                }
                let out = curl(&args);
                codes.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(str::to_owned),
                );
            }
            done.store(true, Ordering::Relaxed);
            codes
        })
    };
    let mut hups = 0;
    while !done.load(Ordering::Relaxed) && hups < 6 {
        std::thread::sleep(Duration::from_millis(300));
        server.signal("HUP");
        hups += 1;
    }
    let codes = codes.join().unwrap();
    assert_eq!(codes.len(), 200, "{codes:?}");
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    assert!(hups >= 2, "the load finished before the rotations");
    assert!(server.wait_log("SIGHUP"), "{}", server.log());
    // The rotations happened (background re-attestation) and live connections kept going.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after: serde_json::Value = serde_json::from_str(&server.get("/status")).unwrap();
        if after["rotations"].as_u64() > before["rotations"].as_u64() {
            assert_eq!(after["ok"], true, "{after}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rotation after SIGHUP: {after}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        client.metric("cosmian_proxy_handshakes_total{outcome=\"attested\"}"),
        20
    );
}

#[test]
fn a_given_certificate_is_served_and_a_broken_reload_keeps_it() {
    let machine = Machine::new("static");
    let backend = Backend::start();
    let cert = machine.dir.path("cert.pem");
    let key = machine.dir.path("key.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=static.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is required")
        .success();
    assert!(ok);
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            machine.attester_args(),
            vec![
                "--cert".into(),
                cert.display().to_string(),
                "--key".into(),
                key.display().to_string(),
            ],
        ]),
    );
    let url = format!("https://127.0.0.1:{}/static", server.addr.port());
    let out = curl(&["-k", "-v", &url]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CN=static.test"),
        "{out:?}"
    );

    std::fs::write(&key, "not a key").unwrap();
    server.signal("HUP");
    assert!(
        server.wait_log("certificate reload failed"),
        "{}",
        server.log()
    );
    let out = curl(&["-k", "-v", &url]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CN=static.test"));
    let status: serde_json::Value = serde_json::from_str(&server.get("/status")).unwrap();
    assert_eq!(status["ok"], false, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("key.pem"),
        "{status}"
    );
    assert_eq!(server.metric("cosmian_proxy_reload_failures_total"), 1);
}

#[test]
fn flag_conflicts_are_reported_together_before_start() {
    let out = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "192.0.2.1:80",
            "--cert",
            "c.pem",
            "--policy",
            "p.json",
            "--attest-self",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--attest-self applies to client mode only",
        "192.0.2.1 is not a loopback address; add --unsafe-target",
        "--cert needs --key",
        "--policy in server mode needs --require-attested-client",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.lines().count() >= 4, "{err}");

    let dir = TempDir::new("config");
    let conf = dir.path("proxy.toml");
    std::fs::write(
        &conf,
        "listen = \"127.0.0.1:0\"\ntarget = \"127.0.0.1:1\"\nrequire-atested-client = true\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("require-atested-client"), "{err}");

    // Flags win over the file, and the file's values are checked like flags.
    std::fs::write(
        &conf,
        "listen = \"127.0.0.1:0\"\ntarget = \"192.0.2.1:80\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["client", "--config"])
        .arg(&conf)
        .args(["--target", "127.0.0.1:9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("client mode needs --policy"), "{err}");
    assert!(!err.contains("192.0.2.1"), "the flag did not win: {err}");
}

#[test]
fn certificate_mode_client_accepts_fresh_enough_evidence_and_refuses_stale() {
    let server_machine = Machine::new("cert-server");
    let client_machine = Machine::new("cert-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[listen_args(backend.addr), server_machine.attester_args()]),
    );
    let started = Instant::now();
    let cert_args = |max_age: &str, name: &str| {
        cat(&[
            listen_args(server.addr),
            vec![
                "--mode".into(),
                "certificate".into(),
                "--max-age".into(),
                max_age.into(),
            ],
            policy_args(&client_machine.dir, name, "{}"),
        ])
    };
    let client = Proxy::start("client", &cert_args("3600", "p1.json"));
    for i in 0..3 {
        let out = curl(&[&format!("http://127.0.0.1:{}/cert{i}", client.addr.port())]);
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&format!("GET /cert{i}")),
            "{out:?}\n{}",
            client.log()
        );
    }
    assert_eq!(
        client.metric("cosmian_proxy_handshakes_total{outcome=\"attested\"}"),
        3
    );

    // The server's certificate evidence is older than the client accepts.
    let strict = Proxy::start("client", &cert_args("1", "p2.json"));
    if let Some(wait) = Duration::from_millis(2500).checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
    let out = curl(&[&format!("http://127.0.0.1:{}/stale", strict.addr.port())]);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        strict.wait_log("attestation rejected at binding.freshness: expected"),
        "{}",
        strict.log()
    );
    assert_eq!(
        strict.metric("cosmian_proxy_rejections_total{step=\"binding.freshness\"}"),
        1
    );
}
