//! `cosmian_vm snapshot | verify | app | secret | owner enroll | connect` against an in-test
//! agent stand-in built from the real parts: swtpm with an AK and a measured boot, the
//! simulated TEE, the IMA simulator, a rotating RA-TLS certificate (role agent) and a tiny
//! HTTP/1.1 server implementing the endpoints of `docs/agent-api.md` the CLI uses. The CLI is
//! the real binary; the evidence is produced for the exporter computed on the server's side
//! of each session, exactly as the agent must.
//!
//! The server is a stand-in for the real agent (built separately): the CLI side only relies on
//! the API document, so an end-to-end test against `cosmian_vm_agent` can reuse the
//! `cosmian_vm` invocations below unchanged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratls::attest::sim::SimTee;
use ratls::attest::Attester;
use ratls::binding::{BindingClaims, Role};
use ratls::digest::HashAlg;
use ratls::snapshot::{FileSet, Snapshot};
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::{self, FreshOptions, SelfAttestation};
use ratls::tls::{RotatingCert, ALPN_ATTEST};
use ratls::UnixTime;
use ratls_harness::{sim_ca, TestMachine};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// The agent stand-in

/// What the stand-in saw and holds.
#[derive(Debug, Default)]
struct State {
    connections: AtomicUsize,
    /// `METHOD path` of every request, in order.
    requests: Mutex<Vec<String>>,
    owner: Mutex<Option<String>>,
    /// Admin uploads: path → body.
    uploads: Mutex<BTreeMap<String, Vec<u8>>>,
    snapshot_polls: AtomicUsize,
}

/// The enrolment token the stand-in agent "printed".
const FAKE_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The stand-in agent's one snapshot job id.
const FAKE_JOB: &str = "feedfacefeedfacefeedfacefeedface";

struct FakeAgent {
    port: u16,
    cert: RotatingCert,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeAgent {
    fn start(attester: Arc<Attester>, walk_root: PathBuf) -> Self {
        let cert = RotatingCert::from_attester(
            attester.clone(),
            CertParams::new(Role::agent(), "localhost", vec!["localhost".into()]),
            Duration::from_secs(3600),
        )
        .unwrap();
        let config = ratls::tls::server_config(
            Arc::new(cert.clone()),
            Some(ratls::tls::danger::AnyClientCert::new()),
            Vec::new(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (st, c) = (state.clone(), cert.clone());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                st.connections
                    .fetch_add(1, Ordering::SeqCst);
                let (acceptor, st, c, a, w) = (
                    acceptor.clone(),
                    st.clone(),
                    c.clone(),
                    attester.clone(),
                    walk_root.clone(),
                );
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, &st, &c, &a, &w).await;
                    }
                });
            }
        });
        Self {
            port,
            cert,
            state,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .unwrap()
            .clone()
    }
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Read one HTTP/1.1 request (Content-Length bodies only); `None` at end of stream.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<HttpRequest> {
    loop {
        if let Some(end) = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
            let mut len = 0usize;
            for line in lines {
                let (k, v) = line.split_once(':')?;
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
                assert!(
                    !k.eq_ignore_ascii_case("transfer-encoding"),
                    "the CLI sends Content-Length bodies"
                );
            }
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 16384];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Some(HttpRequest { method, path, body });
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: u16, content_type: &str, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
}

async fn respond_json<S: AsyncWrite + Unpin>(s: &mut S, status: u16, v: &Value) {
    respond(s, status, "application/json", v.to_string().as_bytes()).await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(HashAlg::Sha256.digest(bytes))
}

async fn serve(
    mut tls: TlsStream<tokio::net::TcpStream>,
    state: &State,
    cert: &RotatingCert,
    attester: &Arc<Attester>,
    walk_root: &Path,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut tls, &mut buf).await {
        state
            .requests
            .lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        let client = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| {
                let cert = ratls::pki::Cert::from_der(c).unwrap();
                sha256_hex(cert.spki_der())
            });
        let admin = || match (&client, state.owner.lock().unwrap().as_ref()) {
            (None, _) => Err(401),
            (Some(c), Some(o)) if c == o => Ok(()),
            _ => Err(403),
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/v1/evidence") => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let challenge: [u8; 32] = hex::decode(body["challenge"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                // This session's exporter, from the server's side.
                let exporter =
                    fresh::exporter(tls.get_ref().1, &Role::agent(), &challenge).unwrap();
                let binding = BindingClaims {
                    role: Role::agent(),
                    spki_sha256: ratls::binding::spki_sha256(&cert.current_spki()),
                    ak_sha256: None,
                    issued_at: UnixTime::now().as_secs(),
                    challenge: Some(challenge),
                    exporter: Some(exporter),
                };
                let a = attester.clone();
                let cmw = tokio::task::spawn_blocking(move || a.produce(binding, true))
                    .await
                    .unwrap()
                    .unwrap()
                    .to_cmw();
                respond(&mut tls, 200, "application/cbor", &cmw).await;
            }
            ("POST", "/api/v1/snapshot") => {
                if let Err(code) = admin() {
                    respond_json(&mut tls, code, &json!({"error": "not the owner"})).await;
                    continue;
                }
                let progress = json!({"job": FAKE_JOB, "state": "running", "files_done": 0, "files_total": 0, "bytes_done": 0});
                respond_json(&mut tls, 202, &progress).await;
            }
            ("GET", path) if path.starts_with("/api/v1/snapshot/") => {
                if let Err(code) = admin() {
                    respond_json(&mut tls, code, &json!({"error": "not the owner"})).await;
                    continue;
                }
                if path != format!("/api/v1/snapshot/{FAKE_JOB}") {
                    respond_json(&mut tls, 404, &json!({"error": "no such job"})).await;
                    continue;
                }
                // One progress answer, then the result.
                if state
                    .snapshot_polls
                    .fetch_add(1, Ordering::SeqCst)
                    .is_multiple_of(2)
                {
                    let progress = json!({"state": "running", "files_done": 1, "files_total": 2, "bytes_done": 10});
                    respond_json(&mut tls, 202, &progress).await;
                } else {
                    let mut files = FileSet::new(HashAlg::Sha256);
                    for entry in std::fs::read_dir(walk_root).unwrap() {
                        let path = entry.unwrap().path();
                        if path.is_file() {
                            let digest = HashAlg::Sha256.digest(&std::fs::read(&path).unwrap());
                            files.insert(path.display().to_string(), &digest);
                        }
                    }
                    let result = json!({"files": files, "walked": {"files": files.len(), "bytes": 0, "skipped": 0, "seconds": 0.0}});
                    respond_json(&mut tls, 200, &result).await;
                }
            }
            ("POST", "/api/v1/owner") => {
                let token = serde_json::from_slice::<Value>(&req.body)
                    .ok()
                    .and_then(|v| v["token"].as_str().map(str::to_owned));
                let (status, answer) = {
                    let mut owner = state.owner.lock().unwrap();
                    match (&client, owner.is_some(), token.as_deref()) {
                        (None, _, _) => (401, json!({"error": "no client certificate"})),
                        (Some(_), true, _) => (409, json!({"error": "an owner exists"})),
                        (Some(_), false, None) => (400, json!({"error": "no token"})),
                        (Some(c), false, Some(FAKE_TOKEN)) => {
                            *owner = Some(c.clone());
                            (201, json!({"owner_spki_sha256": c}))
                        }
                        (Some(_), false, Some(_)) => (403, json!({"error": "wrong token"})),
                    }
                };
                respond_json(&mut tls, status, &answer).await;
            }
            ("POST", path) if path.starts_with("/api/v1/app/") => {
                if let Err(code) = admin() {
                    respond_json(&mut tls, code, &json!({"error": "not the owner"})).await;
                    continue;
                }
                state
                    .uploads
                    .lock()
                    .unwrap()
                    .insert(path.to_owned(), req.body.clone());
                let answer = if path.ends_with("/init") {
                    json!({"written": "/var/lib/cosmian_vm/app/app.conf", "restarted": true})
                } else {
                    json!({"service": "app", "action": path.rsplit('/').next().unwrap()})
                };
                respond_json(&mut tls, 200, &answer).await;
            }
            ("PUT", path) if path.starts_with("/api/v1/secrets/") => {
                if let Err(code) = admin() {
                    respond_json(&mut tls, code, &json!({"error": "not the owner"})).await;
                    continue;
                }
                state
                    .uploads
                    .lock()
                    .unwrap()
                    .insert(path.to_owned(), req.body.clone());
                respond_json(&mut tls, 200, &json!({"written": path})).await;
            }
            _ => respond_json(&mut tls, 404, &json!({"error": "unknown path"})).await,
        }
    }
}

/// A TLS server presenting `config`'s certificate that accepts connections and closes them
/// (what `--application` and `connect` need); with `fresh`, it answers the fresh exchange.
fn tls_endpoint(
    runtime: &tokio::runtime::Runtime,
    config: rustls::ServerConfig,
    fresh: Option<SelfAttestation>,
) -> u16 {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, fresh) = (acceptor.clone(), fresh.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    if let Some(me) = fresh {
                        let opts = FreshOptions::new().attest_self(me);
                        let _ = fresh::server_exchange(&mut tls, &opts).await;
                    }
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}

/// A plain TLS server with its own self-signed key (not the VM's).
fn foreign_config() -> rustls::ServerConfig {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    rustls::ServerConfig::builder_with_provider(ratls::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The CLI

struct Cli {
    home: PathBuf,
    dir: PathBuf,
    ark: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        self.run_home(&self.home, args)
    }

    fn run_home(&self, home: &Path, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_cosmian_vm"))
            .args(args)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COSMIAN_VM_URL")
            .output()
            .expect("run cosmian_vm");
        eprintln!(
            "$ cosmian_vm {}\n-> {:?}\nstdout:\n{}stderr:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .join(name)
            .display()
            .to_string()
    }

    fn ark(&self) -> String {
        self.ark.display().to_string()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cosmian_vm_agent_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The whole workflow on one machine (swtpm and the simulated CA are slow to set up).
#[test]
fn snapshot_verify_applications_and_admin_calls() {
    let dir = temp_dir("main");
    let walk = dir.join("walk");
    std::fs::create_dir_all(&walk).unwrap();
    std::fs::write(walk.join("app.bin"), b"the approved application\n").unwrap();
    std::fs::write(walk.join("app.conf"), b"port = 8443\n").unwrap();
    let tee = SimTee::new(sim_ca()).unwrap();
    let Some(machine) = TestMachine::start("cli", Some(tee), &[&walk.join("app.bin")]).unwrap()
    else {
        eprintln!("SKIPPED: swtpm is not installed (CI=true makes this a failure)");
        return;
    };
    let agent = FakeAgent::start(machine.attester.clone(), walk.clone());
    let ark = dir.join("sim_ark.der");
    std::fs::write(&ark, sim_ca().ark_der()).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = Cli {
        home,
        dir: dir.clone(),
        ark,
    };
    let url = agent.url();
    let snap = cli.path("vm.snapshot");
    let base = [
        "--url",
        url.as_str(),
        "--allow-insecure-tls",
        "--insecure-sim-root",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(cli.ark()))
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let run = |extra: &[&str]| {
        let args = with(extra);
        cli.run(
            &args
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    };

    // --- owner enroll: refused without the simulated root (nothing sent), without WebPKI, and
    // without the token; then enrolled with the token, the key 0600 under ~/.config/cosmian_vm.
    let out = cli.run(&[
        "--url",
        &url,
        "--allow-insecure-tls",
        "owner",
        "enroll",
        "--token",
        FAKE_TOKEN,
    ]);
    assert_eq!(code(&out), 1, "the simulated TEE is not trusted by default");
    assert!(agent
        .state
        .owner
        .lock()
        .unwrap()
        .is_none());
    // Without --allow-insecure-tls the self-signed RA-TLS certificate fails WebPKI.
    let out = cli.run(&[
        "--url",
        &url,
        "--insecure-sim-root",
        &cli.ark(),
        "owner",
        "enroll",
        "--token",
        FAKE_TOKEN,
    ]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("cert.webpki"), "{}", stdout(&out));
    let out = run(&["owner", "enroll"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    assert!(agent
        .state
        .owner
        .lock()
        .unwrap()
        .is_none());
    let out = run(&["owner", "enroll", "--token", FAKE_TOKEN]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = cli
        .home
        .join(".config/cosmian_vm/owner.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let owner_pem = std::fs::read(
        cli.home
            .join(".config/cosmian_vm/owner.pem"),
    )
    .unwrap();
    let owner_spki = sha256_hex(
        ratls::pki::Cert::from_der_or_pem(&owner_pem)
            .unwrap()
            .spki_der(),
    );
    assert_eq!(
        agent
            .state
            .owner
            .lock()
            .unwrap()
            .as_deref(),
        Some(owner_spki.as_str())
    );
    let out = run(&["owner", "enroll", "--token", FAKE_TOKEN]);
    assert_eq!(code(&out), 2, "the second enrolment is refused (409)");
    assert!(stderr(&out).contains("already enrolled"));

    // --- snapshot: the owner's; refused to another user before connecting; then written.
    let nobody = dir.join("nobody");
    std::fs::create_dir_all(&nobody).unwrap();
    let out = cli.run_home(
        &nobody,
        &with(&["snapshot", "-o", &snap])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("owner enroll"), "{}", stderr(&out));
    assert!(!Path::new(&snap).exists());
    let out = run(&["snapshot", "-o", &snap]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("SIMULATED"));
    let snapshot = Snapshot::from_json(&std::fs::read(&snap).unwrap()).unwrap();
    assert!(snapshot.simulated);
    assert_eq!(snapshot.platform, "sim");
    let agent_spki = sha256_hex(&agent.cert.current_spki());
    assert_eq!(
        snapshot.agent_spki_sha256.as_deref(),
        Some(agent_spki.as_str())
    );
    assert_eq!(snapshot.metadata["agent_url"], url);
    for name in ["app.bin", "app.conf"] {
        let path = walk.join(name).display().to_string();
        assert!(
            snapshot.files.files.contains_key(&path),
            "{path} not in the snapshot"
        );
    }
    assert!(
        snapshot
            .policy
            .snp
            .measurement
            .is_some(),
        "the TEE measurement is pinned"
    );
    assert!(!snapshot.policy.tpm.pcrs.is_empty(), "boot PCRs are pinned");
    assert!(
        agent
            .requests()
            .contains(&format!("GET /api/v1/snapshot/{FAKE_JOB}")),
        "progress polled"
    );

    // --- verify passes (human and JSON).
    let out = run(&["verify", "--snapshot", &snap]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.starts_with("VERIFIED"), "{text}");
    for group in ["binding", "tpm", "ima", "files"] {
        assert!(
            text.contains(&format!("  {group}")),
            "no {group} line: {text}"
        );
    }
    let out = run(&["--json", "verify", "--snapshot", &snap]);
    assert_eq!(code(&out), 0);
    let v = json_out(&out);
    assert_eq!(v["result"], "verified");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["evidence"]["claims"]["binding"], "session");
    assert_eq!(v["agent_spki_sha256"], agent_spki);
    tpm_counters_state(&run, &snap, &v);
    // The snapshot of a simulated TEE needs the simulated root to verify.
    let out = cli.run(&[
        "--url",
        &url,
        "--allow-insecure-tls",
        "verify",
        "--snapshot",
        &snap,
    ]);
    assert_eq!(code(&out), 1);

    // --- --application: the agent's own key, an RA-TLS certificate from the same TPM, and a
    // server with another key.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let foreign_port = tls_endpoint(&rt, foreign_config(), None);
    let app_cert = RotatingCert::from_attester(
        machine.attester.clone(),
        CertParams::new(Role::server(), "localhost", vec!["localhost".into()]),
        Duration::from_secs(3600),
    )
    .unwrap();
    let ratls_config =
        ratls::tls::server_config(Arc::new(app_cert.clone()), None, vec![ALPN_ATTEST.to_vec()])
            .unwrap();
    let fresh_me = SelfAttestation::new(
        machine.attester.clone(),
        Role::server(),
        Arc::new(app_cert.clone()),
    );
    let ratls_port = tls_endpoint(&rt, ratls_config.clone(), None);
    let fresh_port = tls_endpoint(&rt, ratls_config, Some(fresh_me));
    let agent_app = format!("127.0.0.1:{}", agent.port);
    let ratls_app = format!("127.0.0.1:{ratls_port}");
    let foreign_app = format!("127.0.0.1:{foreign_port}");
    let out = run(&[
        "verify",
        "--snapshot",
        &snap,
        "--application",
        &agent_app,
        "--application",
        &ratls_app,
    ]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("the agent's own key"));
    assert!(stdout(&out).contains("from the same TPM"));
    let out = run(&["verify", "--snapshot", &snap, "--application", &foreign_app]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let foreign_line = text
        .lines()
        .find(|l| l.contains(&foreign_app))
        .unwrap_or_else(|| panic!("{foreign_app} not named: {text}"));
    assert!(
        foreign_line.contains("FAILED") && foreign_line.contains(&agent_spki),
        "{foreign_line}"
    );
    let out = run(&[
        "--json",
        "verify",
        "--snapshot",
        &snap,
        "--application",
        &foreign_app,
    ]);
    let v = json_out(&out);
    assert_eq!(v["result"], "failed");
    assert_eq!(v["applications"][0]["ok"], false);
    assert_eq!(v["applications"][0]["agent_spki_sha256"], agent_spki);
    assert_ne!(v["applications"][0]["app_spki_sha256"], Value::Null);

    // --- connect: certificate mode and fresh mode against the RA-TLS endpoint; the foreign one fails.
    let out = run(&["connect", &ratls_app]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("SIMULATED"));
    let out = run(&["--json", "connect", &fresh_app(fresh_port), "--fresh"]);
    assert_eq!(code(&out), 0);
    assert_eq!(json_out(&out)["claims"]["binding"], "session");
    let out = run(&["connect", &ratls_app, "--role", "agent"]);
    assert_eq!(code(&out), 1, "role server evidence is not agent evidence");
    let out = run(&["connect", &foreign_app]);
    assert_eq!(code(&out), 1);

    // --- admin calls: refused before any request without --snapshot / --skip-verification.
    let conf = dir.join("app.json");
    std::fs::write(&conf, b"{\"key\": \"value\"}").unwrap();
    let conf_s = conf.display().to_string();
    let before = agent
        .state
        .connections
        .load(Ordering::SeqCst);
    let out = run(&["app", "init", "--conf", &conf_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--snapshot"), "{}", stderr(&out));
    // Without an owner certificate: refused before connecting too.
    let out = cli.run_home(
        &nobody,
        &with(&["app", "init", "--conf", &conf_s, "--snapshot", &snap])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("owner enroll"), "{}", stderr(&out));
    assert_eq!(
        agent
            .state
            .connections
            .load(Ordering::SeqCst),
        before,
        "a request was sent"
    );

    // (owner enroll ran first, above.)
    // app init / secret put with the owner certificate (default location).
    let out = run(&["app", "init", "--conf", &conf_s, "--snapshot", &snap]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        agent.state.uploads.lock().unwrap()["/api/v1/app/init"],
        std::fs::read(&conf).unwrap()
    );
    let secret = dir.join("db.secret");
    std::fs::write(&secret, b"s3cr3t-value").unwrap();
    let out = run(&[
        "secret",
        "put",
        "db.password",
        &secret.display().to_string(),
        "--snapshot",
        &snap,
    ]);
    assert_eq!(code(&out), 0);
    assert!(
        !stdout(&out).contains("s3cr3t") && !stderr(&out).contains("s3cr3t"),
        "secret printed"
    );
    assert_eq!(
        agent.state.uploads.lock().unwrap()["/api/v1/secrets/db.password"],
        b"s3cr3t-value"
    );
    let out = run(&["--json", "app", "restart", "--snapshot", &snap]);
    assert_eq!(code(&out), 0);
    assert_eq!(json_out(&out)["response"]["action"], "restart");
    // Another key is not the owner: the agent's 403 is reported.
    let other = dir.join("other");
    let out = cli.run_home(
        &other,
        &with(&[
            "owner",
            "enroll",
            "--out",
            &other.display().to_string(),
            "--skip-verification",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("WARNING: --skip-verification"));
    let (oc, ok) = (
        other
            .join("owner.pem")
            .display()
            .to_string(),
        other
            .join("owner.key")
            .display()
            .to_string(),
    );
    let out = run(&[
        "--owner-cert",
        &oc,
        "--owner-key",
        &ok,
        "app",
        "stop",
        "--snapshot",
        &snap,
    ]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    // --- an unexpected program runs: verify fails naming it; admin calls are refused.
    let evil = dir.join("evil.sh");
    std::fs::write(&evil, b"#!/bin/sh\necho pwned\n").unwrap();
    machine.measure(&evil).unwrap();
    let out = run(&["verify", "--snapshot", &snap]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.starts_with("FAILED"), "{text}");
    let evil_s = evil.display().to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&evil_s))
        .unwrap_or_else(|| panic!("{evil_s} not named: {text}"));
    assert!(line.contains("ima.unknown_file"), "{line}");
    assert!(
        line.contains(&sha256_hex(&std::fs::read(&evil).unwrap())),
        "no hash: {line}"
    );
    let out = run(&["--json", "verify", "--snapshot", &snap]);
    let v = json_out(&out);
    assert_eq!(v["result"], "failed");
    assert!(v["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["step"] == "ima.unknown_file"
            && c["presented"]
                .as_str()
                .unwrap()
                .contains(&evil_s)));
    let uploads_before = agent
        .state
        .uploads
        .lock()
        .unwrap()
        .len();
    let out = run(&["app", "init", "--conf", &conf_s, "--snapshot", &snap]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("nothing was sent"));
    assert_eq!(
        agent
            .state
            .uploads
            .lock()
            .unwrap()
            .len(),
        uploads_before
    );
    assert_eq!(
        agent
            .requests()
            .last()
            .map(String::as_str),
        Some("POST /api/v1/evidence"),
        "only the evidence was asked for"
    );

    std::fs::remove_dir_all(&dir).ok();
}

/// `<snapshot>.last-verify.json`: written by the verifications above, compared with the next
/// quote's counters (`tpm.counters`), never updated by a failed verification, ignored with
/// `--no-state`. The earlier state is edited to stand for an earlier boot, a later TPM state
/// (a roll-back) and another TPM.
fn tpm_counters_state(run: &dyn Fn(&[&str]) -> Output, snap: &str, last_json: &Value) {
    let state_path = PathBuf::from(format!("{snap}.last-verify.json"));
    let read_state = || -> Value {
        serde_json::from_slice(&std::fs::read(&state_path).expect("state file written")).unwrap()
    };
    let state = read_state();
    let tpm = &last_json["evidence"]["claims"]["tpm"];
    assert_eq!(state["reset_count"], tpm["reset_count"], "{state}");
    assert_eq!(state["restart_count"], tpm["restart_count"]);
    assert_eq!(
        state["ak_sha256"],
        last_json["evidence"]["claims"]["ak_sha256"]
    );
    // The JSON verification above was the second: same boot.
    assert!(
        last_json["tpm_state"]
            .as_str()
            .unwrap()
            .starts_with("no reboot since the last verification"),
        "{}",
        last_json["tpm_state"]
    );
    assert!(last_json.get("reboot").is_none());
    let counters = last_json["snapshot_checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "tpm.counters")
        .expect("a tpm.counters check");
    assert_eq!(counters["ok"], true);
    let reset = state["reset_count"].as_u64().unwrap();
    let clock = state["clock"].as_u64().unwrap();
    let write = |edit: &dyn Fn(&mut Value)| {
        let mut s = state.clone();
        edit(&mut s);
        std::fs::write(&state_path, s.to_string()).unwrap();
    };

    // A later clock in the same boot: rolled back (or replayed), named with both values; the
    // state file is left as it was.
    write(&|s| s["clock"] = (clock + 1_000_000_000).into());
    let out = run(&["--json", "verify", "--snapshot", snap]);
    assert_eq!(code(&out), 1);
    let v = json_out(&out);
    assert_eq!(v["first_failure"]["step"], "tpm.counters", "{v}");
    let detail = v["first_failure"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail.contains(&format!("{}", clock + 1_000_000_000)),
        "{detail}"
    );
    assert!(
        detail.contains("rolled back or this evidence is a replay"),
        "{detail}"
    );
    assert_eq!(read_state()["clock"], clock + 1_000_000_000);
    // A higher resetCount recorded: rolled back.
    write(&|s| s["reset_count"] = (reset + 1).into());
    let out = run(&["verify", "--snapshot", snap]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("rejected at tpm.counters"),
        "{}",
        stdout(&out)
    );
    // --no-state: neither read nor written.
    let out = run(&["--json", "verify", "--no-state", "--snapshot", snap]);
    assert_eq!(code(&out), 0);
    assert_eq!(json_out(&out)["tpm_state"], "not kept (--no-state)");
    assert_eq!(read_state()["reset_count"], reset + 1);
    // Another TPM recorded: noted, and the state starts over with this one.
    write(&|s| s["ak_sha256"] = "00".repeat(32).into());
    let out = run(&["--json", "verify", "--snapshot", snap]);
    assert_eq!(code(&out), 0);
    let v = json_out(&out);
    assert!(v["tpm_state"]
        .as_str()
        .unwrap()
        .contains("another TPM"));
    assert_eq!(read_state()["ak_sha256"], state["ak_sha256"]);
    // An earlier boot recorded: the VM rebooted since; reported, still verified.
    if reset == 0 {
        eprintln!("resetCount is 0 on this swtpm: the reboot case is covered by the unit tests");
    } else {
        write(&|s| {
            s["reset_count"] = (reset - 1).into();
            s["clock"] = (clock + 5).into();
            s["restart_count"] = 7.into();
        });
        let out = run(&["--json", "verify", "--snapshot", snap]);
        assert_eq!(code(&out), 0);
        let v = json_out(&out);
        assert_eq!(v["reboot"]["reboots"], 1, "{v}");
        assert!(v["reboot"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the VM rebooted 1 time since the last verification ("));
        let out = run(&["verify", "--snapshot", snap]);
        assert_eq!(code(&out), 0);
        assert!(
            stdout(&out).contains("tpm state: no reboot since"),
            "{}",
            stdout(&out)
        );
    }
    // A state file that is not one: fails closed, says what to do.
    std::fs::write(&state_path, b"not json").unwrap();
    let out = run(&["--json", "verify", "--snapshot", snap]);
    assert_eq!(code(&out), 1);
    let v = json_out(&out);
    assert_eq!(v["first_failure"]["step"], "tpm.counters");
    assert!(v["first_failure"]["detail"]
        .as_str()
        .unwrap()
        .contains("--no-state"));
    std::fs::remove_file(&state_path).unwrap();
    let out = run(&["--json", "verify", "--snapshot", snap]);
    assert_eq!(code(&out), 0);
    assert!(json_out(&out)["tpm_state"]
        .as_str()
        .unwrap()
        .starts_with("first verification"));
}

fn fresh_app(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Network and input errors exit 2 with one clear message, and never panic.
#[test]
fn usage_and_network_errors_exit_2() {
    let dir = temp_dir("usage");
    let cli = Cli {
        home: dir.clone(),
        dir: dir.clone(),
        ark: dir.join("none"),
    };
    // A closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let snap = cli.path("missing.snapshot");
    for (args, needle) in [
        (vec!["snapshot"], "--url"),
        (vec!["--url", "http://vm", "snapshot"], "HTTPS only"),
        (
            vec![
                "--url",
                &url,
                "--allow-insecure-tls",
                "owner",
                "enroll",
                "--token",
                FAKE_TOKEN,
            ],
            "cannot connect",
        ),
        (
            // (the enrolment above left an owner identity in HOME)
            vec!["--url", &url, "snapshot", "-o", &snap],
            "cannot connect",
        ),
        (
            vec!["--url", &url, "verify", "--snapshot", &snap],
            "missing.snapshot",
        ),
        (
            vec![
                "--url",
                &url,
                "secret",
                "put",
                "../x",
                "f",
                "--snapshot",
                "s",
            ],
            "secret name",
        ),
        (vec!["--url", &url, "app", "start"], "refusing"),
        (vec!["connect", "127.0.0.1:0"], "bad port"),
    ] {
        let out = cli.run(&args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    // --help documents the exit codes.
    let out = cli.run(&["verify", "--help"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("Exit codes: 0"));
    std::fs::remove_dir_all(&dir).ok();
}
