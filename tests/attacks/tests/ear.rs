//! Signed attestation results with the real binaries: curl → client-mode proxy (attesting
//! itself) → server-mode proxy `--ear-jwks` → the example app `ear_app`, which trusts a request
//! only with an EAR for its own connection. Replayed (another connection's), expired, re-signed
//! and edited results are refused by the app naming the step (`docs/ear.md`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ratls_attacks::{bin, sim_policy_args, ProxyMachine, ProxyProcess, TempDir};
use ratls_harness::sim_ca;

/// The example app, started on a free port.
struct App {
    child: Child,
    addr: SocketAddr,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn app(jwks: &std::path::Path) -> App {
    let exe = bin("cosmian_vm_proxy")
        .parent()
        .unwrap()
        .join("examples/ear_app");
    assert!(
        exe.exists(),
        "{} missing: cargo build --workspace --all-targets",
        exe.display()
    );
    let mut child = Command::new(exe)
        .arg("127.0.0.1:0")
        .arg(jwks)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ear_app listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    App { child, addr }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is required (scripts/setup.sh installs it)")
}

/// The body and status code of a curl run.
fn answer(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.to_owned())
}

/// The EAR in the app's 200 answer (the example echoes it).
fn token_of(body: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["ear"].as_str().unwrap().to_owned()
}

#[test]
fn the_app_verifies_its_ear_and_refuses_replayed_expired_and_forged_ones() {
    let server_machine = ProxyMachine::new("ear-server", &sim_ca());
    let client_machine = ProxyMachine::new("ear-client", &sim_ca());
    let work = TempDir::new("ear");
    let jwks = work.0.join("jwks.json");
    // The app reads the JWKS per connection; the proxy writes it at start.
    let app = app(&jwks);
    let mut server_args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        app.addr.to_string(),
        "--require-attested-client".into(),
        "--metadata".into(),
        "http-headers".into(),
        "--ear-jwks".into(),
        jwks.display().to_string(),
        "--ear-ttl".into(),
        "3".into(),
    ];
    server_args.extend(server_machine.attester_args());
    server_args.extend(sim_policy_args(&work, "clients.json", client_machine.ark()));
    let server = ProxyProcess::start("server", &server_args);
    assert!(jwks.exists(), "the proxy wrote its JWKS at start");
    let mut client_args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        server.addr.to_string(),
        "--attest-self".into(),
    ];
    client_args.extend(client_machine.attester_args());
    client_args.extend(sim_policy_args(&work, "server.json", server_machine.ark()));
    let client = ProxyProcess::start("client", &client_args);
    let through = format!("http://127.0.0.1:{}/", client.addr.port());
    let direct = format!("http://{}/", app.addr);

    // Through the proxies: the app verifies the EAR of its connection.
    let (body, code) = answer(&curl(&[&through]));
    assert_eq!(code, "200", "{body}");
    let verified: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(verified["verified"], true, "{body}");
    assert_eq!(verified["platform"], "sev-snp", "{body}");
    assert_eq!(verified["simulated"], true, "{body}");
    assert_eq!(
        verified["status"], "warning",
        "simulated evidence is never affirming: {body}"
    );
    let token = token_of(&body);
    // A client cannot smuggle its own EAR through the proxy: the proxy replaces ours.
    let (body, code) = answer(&curl(&[
        "-H",
        &format!("X-Attestation-EAR: {token}"),
        &through,
    ]));
    assert_eq!(code, "200", "{body}");
    assert_ne!(token_of(&body), token, "a fresh EAR per connection");

    // Straight to the app's port, bypassing the proxy: no header, a replayed one, edited ones.
    let (body, code) = answer(&curl(&[&direct]));
    assert_eq!(
        (code.as_str(), body.contains("no X-Attestation-EAR")),
        ("401", true),
        "{body}"
    );
    let with = |t: &str| answer(&curl(&["-H", &format!("X-Attestation-EAR: {t}"), &direct]));
    let (body, code) = with(&token);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("EAR rejected at ear.connection"), "{body}");
    // A signature bit flipped.
    let mut bad_sig = token.clone().into_bytes();
    let at = bad_sig.len() - 10;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let (body, code) = with(&String::from_utf8(bad_sig).unwrap());
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("EAR rejected at ear.signature"), "{body}");
    // The same appraisal signed by another key: under its own kid, then under ours.
    let attacker = ratls::ear::EarSigner::generate(ratls::ear::VerifierId {
        developer: "attacker".into(),
        build: "1".into(),
    })
    .unwrap();
    let payload = B64
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims: ratls::ear::EarClaims = serde_json::from_slice(&payload).unwrap();
    let forged = attacker
        .sign(
            claims.appraisal().unwrap().clone(),
            ratls::UnixTime::now(),
            60,
        )
        .unwrap();
    let (body, code) = with(&forged);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("EAR rejected at ear.kid"), "{body}");
    let ours_header = token.split('.').next().unwrap();
    let rest: Vec<&str> = forged.split('.').skip(1).collect();
    let (body, code) = with(&format!("{ours_header}.{}", rest.join(".")));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("EAR rejected at ear.signature"), "{body}");
    // Expired: the same token once its 3 s are over.
    std::thread::sleep(Duration::from_secs(4));
    let (body, code) = with(&token);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("EAR rejected at ear.expiry"), "{body}");
}
