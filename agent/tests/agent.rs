//! Black-box tests of the real `cosmian_vm_agent` binary: swtpm with a simulated boot and an IMA
//! log written by the IMA simulator, the simulated TEE (its CA pre-generated into the agent's
//! data directory), and rustls clients speaking HTTP/1.1 by hand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use ratls::binding::Role;
use ratls::bundle::BindingLevel;
use ratls::tls::fresh::{exporter, verify_response, Challenge};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{Claims, Policy, UnixTime};
use ratls_harness::{open_tpm, sim_ca, simulate_boot, ImaSimulator, Swtpm};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------------
// The agent process

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        // Not under /tmp: the walk excludes it by default.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cosmian-agent-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Agent {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
    ima_log: PathBuf,
    measured: PathBuf,
    // Last: the agent talks to it until it is killed.
    _swtpm: Swtpm,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// swtpm + boot + IMA log, the sim CA in data_dir/sim, and the agent started on a free port.
    fn start(tag: &str) -> Self {
        ratls_test::swtpm::quiet_tss();
        let swtpm = Swtpm::start().expect("swtpm is required for the agent tests");
        let dir = TempDir::new(tag);
        let root = dir.0.join("data");
        std::fs::create_dir_all(&root).unwrap();
        let ima_log = root.join("ima.log");
        let measured = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        {
            let tpm = open_tpm(&swtpm).unwrap();
            simulate_boot(&tpm, tag).unwrap();
            let mut ima = ImaSimulator::new(&ima_log, &tpm).unwrap();
            ima.measure_file(&measured).unwrap();
            ima.measure_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
                .unwrap();
        }
        sim_ca()
            .to_pem_files(&root.join("sim"))
            .unwrap();
        let tree = dir.0.join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("a.txt"), b"hello\n").unwrap();
        std::fs::write(tree.join("sub/b.bin"), [0u8; 1000]).unwrap();
        let conf = root.join("agent.toml");
        std::fs::write(
            &conf,
            format!(
                r#"
[agent]
host = "127.0.0.1"
port = 0
tpm_device = "{tcti}"
data_dir = "{root}"
tee = "sim"
ima_log = "{ima}"
rotation_period_secs = 3600
snapshot_roots = ["{tree}"]

[app]
service_type = "standalone"
service_name = "sleeper"
app_storage = "app"
command = ["sleep", "600"]
"#,
                tcti = swtpm.tcti(),
                root = root.display(),
                ima = ima_log.display(),
                tree = tree.display(),
            ),
        )
        .unwrap();
        let (child, addr) = common::spawn_agent(&conf);
        Self {
            child,
            addr,
            dir,
            ima_log,
            measured,
            _swtpm: swtpm,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }
}

// ---------------------------------------------------------------------------------------------
// The client side

fn agent_policy() -> AttestationPolicy {
    let mut policy = AttestationPolicy::new(Policy::default(), Role::agent());
    ratls::tls::danger::trust_simulated_root(&mut policy, sim_ca().ark_der());
    policy
}

#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A self-signed client certificate (a user's identity).
fn identity(name: &str) -> Arc<ClientCert> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = ratls::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .unwrap();
    Arc::new(ClientCert(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    ))))
}

async fn connect(addr: SocketAddr, client: Option<Arc<ClientCert>>) -> TlsStream<TcpStream> {
    let verifier = Arc::new(AttestedServerVerifier::new(agent_policy(), Mode::Fresh));
    let config = ratls::tls::client_config(
        verifier,
        client.map(|c| c as Arc<dyn ResolvesClientCert>),
        vec![b"http/1.1".to_vec()],
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn request_bytes(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

async fn read_reply(mut stream: impl tokio::io::AsyncRead + Unpin) -> Reply {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)));
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().to_owned())
    }) {
        body.truncate(len.parse().unwrap());
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// One request on its own connection.
async fn call(
    addr: SocketAddr,
    client: Option<Arc<ClientCert>>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Reply {
    let mut s = connect(addr, client).await;
    s.write_all(&request_bytes(method, path, body))
        .await
        .unwrap();
    s.flush().await.unwrap();
    read_reply(s).await
}

/// `POST /api/v1/owner` as `owner`, with the one-time token the agent wrote at start.
async fn enrol(agent: &Agent, owner: Arc<ClientCert>) -> Reply {
    let token = std::fs::read_to_string(agent.data_dir().join("enrolment-token")).unwrap();
    let body = format!(r#"{{"token": "{}"}}"#, token.trim());
    call(
        agent.addr,
        Some(owner),
        "POST",
        "/api/v1/owner",
        body.as_bytes(),
    )
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn certificate_evidence_and_ima() {
    let agent = Agent::start("evidence");
    runtime().block_on(async {
        // The served certificate: its own evidence verifies (certificate mode, role agent).
        let s = connect(agent.addr, None).await;
        let cert: CertificateDer<'static> = s
            .get_ref()
            .1
            .peer_certificates()
            .unwrap()[0]
            .clone()
            .into_owned();
        let cert_mode = AttestedServerVerifier::new(agent_policy(), Mode::Certificate);
        let verdict = cert_mode
            .verify_certificate(&cert, UnixTime::now())
            .unwrap_or_else(|e| panic!("certificate evidence rejected: {e}"));
        assert!(verdict.is_trusted(), "{verdict}");
        assert!(verdict.simulated);
        let spki = ratls::pki::Cert::from_der(&cert)
            .unwrap()
            .spki_der()
            .to_vec();
        // The certificate file is the served certificate.
        let pem = std::fs::read(agent.data_dir().join("data/cert.pem")).unwrap();
        assert_eq!(
            ratls::pki::Cert::from_der_or_pem(&pem)
                .unwrap()
                .der(),
            cert.as_ref()
        );
        let key = std::fs::metadata(agent.data_dir().join("data/key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        drop(s);

        // Health names the served key.
        let health = call(agent.addr, None, "GET", "/api/v1/health", b"").await;
        assert_eq!(health.status, 200);
        let h = health.json();
        assert_eq!(h["ok"], true);
        assert_eq!(h["tee"], "sim");
        assert_eq!(h["spki_sha256"], hex::encode(ratls::digest::sha256(&spki)));

        // Fresh evidence, bound to this session.
        let challenge = Challenge::new().unwrap();
        let mut s = connect(agent.addr, None).await;
        let mine = exporter(s.get_ref().1, &Role::agent(), challenge.as_bytes()).unwrap();
        let body = format!(
            r#"{{"challenge": "{}"}}"#,
            hex::encode(challenge.as_bytes())
        );
        s.write_all(&request_bytes("POST", "/api/v1/evidence", body.as_bytes()))
            .await
            .unwrap();
        let reply = read_reply(s).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(reply
            .headers
            .contains("application/cbor"));
        let policy = agent_policy();
        let v = verify_response(
            &reply.body,
            &policy,
            &spki,
            &challenge,
            mine,
            UnixTime::now(),
        );
        assert!(v.is_trusted(), "{v}");
        match &v.claims {
            Claims::Bundle(c) => assert_eq!(c.binding, Some(BindingLevel::Session)),
            other => panic!("{other:?}"),
        }
        // Another session's exporter (same challenge) does not verify.
        let other = connect(agent.addr, None).await;
        let theirs = exporter(other.get_ref().1, &Role::agent(), challenge.as_bytes()).unwrap();
        assert_ne!(theirs, mine);
        let v = verify_response(
            &reply.body,
            &policy,
            &spki,
            &challenge,
            theirs,
            UnixTime::now(),
        );
        assert!(!v.is_trusted());
        assert_eq!(
            v.first_failure()
                .map(|c| c.step.as_str()),
            Some("binding.exporter"),
            "{v}"
        );

        // The IMA log, binary and ASCII.
        let bin = call(agent.addr, None, "GET", "/api/v1/ima/binary", b"").await;
        assert_eq!(bin.status, 200);
        assert_eq!(bin.body, std::fs::read(&agent.ima_log).unwrap());
        let ascii = call(agent.addr, None, "GET", "/api/v1/ima/ascii", b"").await;
        assert_eq!(ascii.status, 200);
        let text = String::from_utf8(ascii.body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains(" ima-ng sha256:") && lines[0].ends_with("boot_aggregate"));
        let digest = hex::encode(ratls::digest::sha256(
            &std::fs::read(&agent.measured).unwrap(),
        ));
        assert!(
            lines[1].ends_with(&format!("sha256:{digest} {}", agent.measured.display())),
            "{}",
            lines[1]
        );

        // The raw quote endpoints are gone: nothing signs caller-chosen bytes.
        for path in ["/api/v1/quote/tee", "/api/v1/quote/tpm"] {
            let r = call(agent.addr, None, "POST", path, br#"{"nonce": "0102"}"#).await;
            assert_eq!(r.status, 410, "{path}");
            assert!(r.json()["error"]
                .as_str()
                .unwrap()
                .contains("/api/v1/evidence"));
        }
    });
}

/// Direct children of `pid` running `comm`.
fn children(pid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = &stat[stat.find('(').unwrap() + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if name == comm && fields[0] != "Z" && fields[1] == pid.to_string() {
            out.push(
                entry
                    .file_name()
                    .to_string_lossy()
                    .parse()
                    .unwrap(),
            );
        }
    }
    out
}

#[test]
fn owner_app_and_secrets() {
    let agent = Agent::start("owner");
    let owner = identity("owner");
    let stranger = identity("stranger");
    runtime().block_on(async {
        let a = agent.addr;
        // Before any owner: no certificate → 401; a certificate but no owner → 403.
        let r = call(a, None, "POST", "/api/v1/app/init", b"x").await;
        assert_eq!(r.status, 401);
        let r = call(a, None, "PUT", "/api/v1/secrets/db", b"x").await;
        assert_eq!(r.status, 401);
        let r = call(a, Some(stranger.clone()), "PUT", "/api/v1/secrets/db", b"x").await;
        assert_eq!(r.status, 403);
        // Enrolment: no certificate → 401; no token → 400; a wrong token → 403; the token
        // printed at start → 201; again → 409.
        let r = call(a, None, "POST", "/api/v1/owner", b"").await;
        assert_eq!(r.status, 401);
        let r = call(a, Some(stranger.clone()), "POST", "/api/v1/owner", b"").await;
        assert_eq!(r.status, 400);
        let r = call(
            a,
            Some(stranger.clone()),
            "POST",
            "/api/v1/owner",
            br#"{"token": "00112233445566778899aabbccddeeff"}"#,
        )
        .await;
        assert_eq!(r.status, 403);
        let r = enrol(&agent, owner.clone()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let enrolled = r.json()["owner_spki_sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = call(
            a,
            Some(stranger.clone()),
            "POST",
            "/api/v1/owner",
            br#"{"token": "00112233445566778899aabbccddeeff"}"#,
        )
        .await;
        assert_eq!(r.status, 409);
        assert!(!agent
            .data_dir()
            .join("enrolment-token")
            .exists());
        let file = std::fs::read_to_string(agent.data_dir().join("owner.json")).unwrap();
        assert!(file.contains(&enrolled));
        // A non-owner certificate → 403, nothing written.
        let r = call(a, Some(stranger.clone()), "PUT", "/api/v1/secrets/db", b"x").await;
        assert_eq!(r.status, 403);
        let r = call(
            a,
            Some(stranger.clone()),
            "POST",
            "/api/v1/app/restart",
            b"",
        )
        .await;
        assert_eq!(r.status, 403);
        let secret_path = agent.data_dir().join("app/secrets/db");
        assert!(!secret_path.exists());

        // The owner: secret written with mode 0600 and the exact content.
        let secret: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let r = call(a, Some(owner.clone()), "PUT", "/api/v1/secrets/db", &secret).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["written"], secret_path.display().to_string());
        assert_eq!(std::fs::read(&secret_path).unwrap(), secret);
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Bad secret names → 400.
        for name in [".hidden", "a%2Fb", &"x".repeat(65)] {
            let r = call(
                a,
                Some(owner.clone()),
                "PUT",
                &format!("/api/v1/secrets/{name}"),
                b"x",
            )
            .await;
            assert_eq!(r.status, 400, "{name}");
        }

        // The standalone app runs under the agent; app init writes app.conf and restarts it.
        let agent_pid = agent.child.id();
        let before = children(agent_pid, "sleep");
        assert_eq!(before.len(), 1, "{before:?}");
        let conf = br#"{"setting": 42}"#;
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/app/init", conf).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["restarted"], true);
        let conf_path = agent.data_dir().join("app/app.conf");
        assert_eq!(std::fs::read(&conf_path).unwrap(), conf);
        let after = children(agent_pid, "sleep");
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(before, after, "app init restarted the app");
        // stop → none; start → one; restart → a new pid.
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/app/stop", b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["action"], "stop");
        assert!(children(agent_pid, "sleep").is_empty());
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/app/start", b"").await;
        assert_eq!(r.status, 200);
        let started = children(agent_pid, "sleep");
        assert_eq!(started.len(), 1);
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/app/restart", b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["service"], "sleeper");
        let restarted = children(agent_pid, "sleep");
        assert_eq!(restarted.len(), 1);
        assert_ne!(started, restarted);

        // Snapshot delete is admin too.
        let r = call(a, None, "DELETE", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 401);
        let r = call(a, Some(stranger.clone()), "DELETE", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 403);
        let r = call(a, Some(owner.clone()), "DELETE", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 204);
    });
}

#[test]
fn snapshot_job() {
    let agent = Agent::start("snapshot");
    let owner = identity("owner");
    runtime().block_on(async {
        let a = agent.addr;
        // Owner-only: strangers can neither start nor read it.
        let r = call(a, None, "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 401);
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 403, "no owner enrolled yet");
        let r = enrol(&agent, owner.clone()).await;
        assert_eq!(r.status, 201);
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let job = r.json()["job"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/v1/snapshot/{job}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let result = loop {
            let r = call(a, Some(owner.clone()), "GET", &path, b"").await;
            match r.status {
                200 => break r.json(),
                202 => assert_eq!(r.json()["state"], "running"),
                other => panic!(
                    "GET snapshot: {other}: {}",
                    String::from_utf8_lossy(&r.body)
                ),
            }
            assert!(Instant::now() < deadline, "the snapshot job did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let files = &result["files"]["files"];
        let tree = agent.dir.0.join("tree");
        let a_txt = tree.join("a.txt").display().to_string();
        assert_eq!(
            files[&a_txt][0],
            hex::encode(ratls::digest::sha256(b"hello\n")),
            "{result}"
        );
        assert!(files[&tree
            .join("sub/b.bin")
            .display()
            .to_string()]
            .is_array());
        // IMA-measured files are in the set too.
        let measured = agent.measured.display().to_string();
        assert_eq!(
            files[&measured][0],
            hex::encode(ratls::digest::sha256(
                &std::fs::read(&agent.measured).unwrap()
            ))
        );
        assert!(
            result["walked"]["files"]
                .as_u64()
                .unwrap()
                >= 2
        );
        // Served once: the same id again is 404, and a new POST walks again.
        let r = call(a, Some(owner.clone()), "GET", &path, b"").await;
        assert_eq!(r.status, 404);
        let r = call(a, Some(owner.clone()), "POST", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 202);
        let second = r.json()["job"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(second, job);
        // Deleted by the owner → 404.
        let r = call(a, Some(owner.clone()), "DELETE", "/api/v1/snapshot", b"").await;
        assert_eq!(r.status, 204);
        let r = call(
            a,
            Some(owner.clone()),
            "GET",
            &format!("/api/v1/snapshot/{second}"),
            b"",
        )
        .await;
        assert_eq!(r.status, 404);
    });
}

#[test]
fn bad_requests_then_sigterm() {
    let mut agent = Agent::start("limits");
    runtime().block_on(async {
        let a = agent.addr;
        // 20 MiB body: 413, written while the reply is read.
        let s = connect(a, None).await;
        let (reader, mut writer) = tokio::io::split(s);
        let big = vec![b'x'; 20 * 1024 * 1024];
        let writing = tokio::spawn(async move {
            let _ = writer
                .write_all(&request_bytes("POST", "/api/v1/evidence", &big))
                .await;
            writer
        });
        let reply = read_reply(reader).await;
        assert_eq!(reply.status, 413);
        assert!(reply.json()["error"].as_str().unwrap().contains("limit"));
        let _ = writing.await;
        // A streamed (chunked) oversize body without Content-Length: 413 too.
        let mut s = connect(a, None).await;
        let head = "POST /api/v1/evidence HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        let (reader, mut writer) = tokio::io::split(s);
        let writing = tokio::spawn(async move {
            let chunk = vec![b'y'; 1024 * 1024];
            for _ in 0..20 {
                if writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
                    || writer.write_all(&chunk).await.is_err()
                    || writer.write_all(b"\r\n").await.is_err()
                {
                    break;
                }
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        });
        let reply = read_reply(reader).await;
        assert_eq!(reply.status, 413);
        let _ = writing.await;
        // Still serving.
        let r = call(a, None, "GET", "/api/v1/health", b"").await;
        assert_eq!(r.status, 200);

        for (method, path, body, status) in [
            ("POST", "/api/v1/evidence", &b"{not json"[..], 400),
            ("POST", "/api/v1/evidence", br#"{"challenge": "zz"}"#, 400),
            ("POST", "/api/v1/evidence", br#"{"challenge": "0011"}"#, 400),
            ("POST", "/api/v1/evidence", &[b'{'; 5000][..], 413),
            ("POST", "/api/v1/quote/tee", br#"{"nonce": ""}"#, 410),
            ("POST", "/api/v1/quote/tpm", br#"{"nonce": "00", "pcrs": [24]}"#, 410),
            ("GET", "/api/v1/nope", b"", 404),
            ("GET", "/", b"", 404),
            ("GET", "/api/v1/evidence", b"", 405),
            ("POST", "/api/v1/health", b"", 405),
            ("GET", "/api/v1/secrets/x", b"", 405),
        ] {
            let r = call(a, None, method, path, body).await;
            assert_eq!(r.status, status, "{method} {path}");
            assert!(r.json()["error"].is_string(), "{method} {path}");
        }
        let r = call(a, None, "GET", "/api/v1/health", b"").await;
        assert_eq!(r.status, 200);
    });
    // SIGTERM: a clean exit with status 0, and the standalone app is stopped.
    let pid = agent.child.id();
    assert_eq!(children(pid, "sleep").len(), 1);
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A SIGTERM sent while the agent starts, by a parent that ignores SIGTERM (a shell as a
/// guest's init: the ignore is inherited until a handler is set), still stops it once it is up.
/// The handler used to be set only when the server loop first ran: such a signal was lost and
/// the agent never stopped (seen in the QEMU guest).
#[test]
fn a_sigterm_during_start_from_a_parent_that_ignores_it_still_stops_the_agent() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut agent = Agent::start("sigterm-early");
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let conf = agent.data_dir().join("agent.toml");
    let mut child = Command::new("sh")
        .args(["-c", "trap '' TERM; exec \"$0\" --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_cosmian_vm_agent"))
        .arg(&conf)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line the agent prints comes from run(), after the runtime started.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("cosmian_vm_agent:"), "{first}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::spawn(move || for _ in lines {});
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not stop on a SIGTERM sent while it started");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}
