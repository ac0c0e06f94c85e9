//! The attack suite's helpers: a whole VM (swtpm with a simulated boot and IMA log, the real
//! `cosmian_vm_agent` binary with the simulated TEE), the real `cosmian_vm` CLI binary, and an
//! attacker's TLS client (any server certificate accepted, any client certificate presented).
//!
//! Every test in `tests/` performs one attack and asserts the named step or HTTP status that
//! stops it; `docs/threat-model.md` (section 7) maps attack → step → test.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations
)]

use ratls::tls::danger::RecordAnyServerCert;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratls_harness::{open_tpm, sim_ca, simulate_boot, ImaSimulator, Swtpm};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A binary of this workspace, built beside the test (`cargo build --workspace`), or in
/// `$COSMIAN_BIN_DIR` when set (the benchmark binary points it at `target/release`).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("COSMIAN_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(path.exists(), "{} is missing", path.display());
        return path;
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace --all-targets)",
        path.display()
    );
    path
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cosmian-attack-{tag}-{}-{}",
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

/// A VM: swtpm (booted, IMA measuring the app), and the real agent on it (simulated TEE).
pub struct Vm {
    agent: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    pub swtpm: Swtpm,
    pub dir: TempDir,
    extra: String,
    /// The `[app]` section of agent.toml.
    app: String,
}

/// The `[app]` section `Vm::start` gives the agent: a standalone app it spawns itself.
pub const STANDALONE_APP: &str = r#"[app]
service_type = "standalone"
service_name = "my_app"
app_storage = "app"
command = ["sleep", "600"]
"#;

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

impl Vm {
    /// A booted machine with its agent; `extra` goes into `[agent]` of agent.toml.
    pub fn start(tag: &str, extra: &str) -> Self {
        Self::start_with_app(tag, extra, STANDALONE_APP)
    }

    /// As [`Vm::start`], with `app` as agent.toml's `[app]` section. The agent runs in the VM's
    /// directory (its working directory: `supervisorctl` finds `./supervisord.conf` there).
    pub fn start_with_app(tag: &str, extra: &str, app: &str) -> Self {
        ratls_test::swtpm::quiet_tss();
        let dir = TempDir::new(tag);
        let d = &dir.0;
        std::fs::create_dir_all(d.join("app")).unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        std::fs::write(d.join("app/my_app.sh"), "#!/bin/sh\necho my app\n").unwrap();
        sim_ca()
            .to_pem_files(&d.join("data/sim"))
            .unwrap();
        let swtpm = Swtpm::start().expect("swtpm is required (scripts/setup.sh)");
        {
            let tpm = open_tpm(&swtpm).unwrap();
            simulate_boot(&tpm, "attack firmware").unwrap();
            let mut ima = ImaSimulator::new(d.join("ima.log"), &tpm).unwrap();
            ima.measure_file(&d.join("app/my_app.sh"))
                .unwrap();
        }
        let mut vm = Self {
            agent: None,
            addr: "127.0.0.1:1".parse().unwrap(),
            log: Arc::new(Mutex::new(String::new())),
            swtpm,
            dir,
            extra: extra.to_owned(),
            app: app.to_owned(),
        };
        vm.start_agent();
        vm
    }

    pub fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// Write agent.toml and start the agent; wait until it listens.
    pub fn start_agent(&mut self) {
        let d = &self.dir.0;
        let conf = d.join("agent.toml");
        std::fs::write(
            &conf,
            format!(
                r#"[agent]
host = "127.0.0.1"
port = 0
tpm_device = "{tcti}"
data_dir = "{data}"
tee = "sim"
ima_log = "{ima}"
snapshot_roots = ["{app}"]
{extra}

{app_section}"#,
                tcti = self.swtpm.tcti(),
                data = d.join("data").display(),
                ima = d.join("ima.log").display(),
                app = d.join("app").display(),
                extra = self.extra,
                app_section = self.app,
            ),
        )
        .unwrap();
        let mut child = Command::new(bin("cosmian_vm_agent"))
            .current_dir(d)
            .arg("--config")
            .arg(&conf)
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock()
                    .unwrap()
                    .push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        self.addr = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("cosmian_vm_agent: listening on ") {
                        break rest
                            .split_whitespace()
                            .next()
                            .unwrap()
                            .parse()
                            .unwrap();
                    }
                }
                Err(_) => panic!(
                    "the agent did not start listening ({:?}):\n{}",
                    child.try_wait(),
                    self.log()
                ),
            }
        };
        self.agent = Some(child);
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The agent's resident memory, in KiB (`/proc/PID/status` VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.agent.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// The one-time enrolment token the agent wrote at start.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data().join("enrolment-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Measure one more file into the IMA log (something ran in the VM).
    pub fn measure(&self, file: &Path) {
        let tpm = open_tpm(&self.swtpm).unwrap();
        ImaSimulator::resume(self.dir.0.join("ima.log"), &tpm)
            .unwrap()
            .measure_file(file)
            .unwrap();
    }

    /// The real CLI against this VM's agent, as the user whose HOME is `home`.
    pub fn cli(&self, home: &Path, args: &[&str]) -> Output {
        self.cli_at(&format!("https://{}", self.addr), home, args)
    }

    /// The real CLI against `url` (a relay, say), trusting this VM's simulated root.
    pub fn cli_at(&self, url: &str, home: &Path, args: &[&str]) -> Output {
        std::fs::create_dir_all(home).unwrap();
        let out = Command::new(bin("cosmian_vm"))
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COSMIAN_VM_ENROLL_TOKEN")
            .args(["--url", url, "--allow-insecure-tls", "--insecure-sim-root"])
            .arg(self.data().join("sim/ark.pem"))
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "$ cosmian_vm {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The owner's HOME (`owner enroll` done there with the agent's token).
    pub fn enrolled_owner(&self) -> PathBuf {
        let home = self.dir.0.join("home");
        let out = self.cli(&home, &["owner", "enroll", "--token", &self.token()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        home
    }

    /// Enrol the owner and take a snapshot; returns (owner HOME, snapshot path).
    pub fn snapshot(&self) -> (PathBuf, PathBuf) {
        let home = self.enrolled_owner();
        let snap = self.dir.0.join("vm.snapshot");
        let out = self.cli(&home, &["snapshot", "-o", snap.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        (home, snap)
    }

    /// The owner's client identity (a certificate and key), after `enrolled_owner`.
    pub fn owner_identity(&self, home: &Path) -> Arc<CertifiedKey> {
        let dir = home.join(".config/cosmian_vm");
        identity_from_pem(
            &std::fs::read(dir.join("owner.pem")).unwrap(),
            &std::fs::read(dir.join("owner.key")).unwrap(),
        )
    }
}

/// stdout + stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh self-signed P-256 client identity (a stranger, or an attacker).
pub fn stranger() -> Arc<CertifiedKey> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["stranger".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    identity_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

pub fn identity_from_pem(cert: &[u8], key: &[u8]) -> Arc<CertifiedKey> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    Arc::new(CertifiedKey::from_der(certs, key, &ratls::tls::provider()).unwrap())
}

#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS 1.3 client config accepting any server and presenting `client` when given.
pub fn attacker_config(client: Option<Arc<CertifiedKey>>) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(ratls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordAnyServerCert::new()));
    let mut config = match client {
        Some(c) => builder.with_client_cert_resolver(Arc::new(Present(c))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A TLS connection to `addr`.
pub async fn connect(addr: SocketAddr, client: Option<Arc<CertifiedKey>>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(attacker_config(client)))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request (Connection: close) on `stream`, and its answer.
pub async fn request<S>(stream: &mut S, method: &str, path: &str, body: &[u8]) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    read_reply(stream).await
}

/// Read a whole `Connection: close` answer.
pub async fn read_reply<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Reply {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// `method path` with `body` on a new connection to `addr`.
pub async fn call(
    addr: SocketAddr,
    client: Option<Arc<CertifiedKey>>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Reply {
    let mut s = connect(addr, client).await;
    request(&mut s, method, path, body).await
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The first failed step of a CLI's `--json` verdict output (`checks` at the top, or under
/// `evidence`, then `snapshot` and `files`).
pub fn failed_steps(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for list in [
        &v["checks"],
        &v["evidence"]["checks"],
        &v["verification"]["evidence"]["checks"],
        &v["snapshot_checks"],
        &v["verification"]["snapshot_checks"],
        &v["files"],
    ] {
        if let Some(checks) = list.as_array() {
            for c in checks {
                if c["ok"] == false {
                    out.push(
                        c["step"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned(),
                    );
                }
            }
        }
    }
    out
}

/// A machine for a proxy: swtpm after a simulated boot, an IMA log measuring this crate's
/// `Cargo.toml`, and the simulated CA `ca` in `dir/sim` (`attester_args` points a proxy at them).
pub struct ProxyMachine {
    pub dir: TempDir,
    pub swtpm: Swtpm,
}

impl ProxyMachine {
    pub fn new(tag: &str, ca: &ratls::attest::sim::SimCa) -> Self {
        ratls_test::swtpm::quiet_tss();
        let dir = TempDir::new(tag);
        let swtpm = Swtpm::start().expect("swtpm is required (scripts/setup.sh)");
        {
            let tpm = open_tpm(&swtpm).unwrap();
            simulate_boot(&tpm, tag).unwrap();
            let mut ima = ImaSimulator::new(dir.0.join("ima.log"), &tpm).unwrap();
            ima.measure_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .unwrap();
        }
        ca.to_pem_files(&dir.0.join("sim"))
            .unwrap();
        Self { dir, swtpm }
    }

    /// The attester flags of a proxy on this machine (simulated TEE, swtpm, IMA log).
    pub fn attester_args(&self) -> Vec<String> {
        vec![
            "--tee".into(),
            "sim".into(),
            "--sim-dir".into(),
            self.dir
                .0
                .join("sim")
                .display()
                .to_string(),
            "--tpm".into(),
            self.swtpm.tcti(),
            "--ima-log".into(),
            self.dir
                .0
                .join("ima.log")
                .display()
                .to_string(),
        ]
    }

    /// This machine's simulated ARK (what a verifier's `--insecure-sim-root` names).
    pub fn ark(&self) -> PathBuf {
        self.dir.0.join("sim/ark.pem")
    }
}

/// The flags of a proxy that verifies its peer against the empty policy `{}` (written to
/// `dir/name`), trusting the simulated TEE whose ARK is `ark`.
pub fn sim_policy_args(dir: &TempDir, name: &str, ark: PathBuf) -> Vec<String> {
    let path = dir.0.join(name);
    std::fs::write(&path, "{}").unwrap();
    vec![
        "--policy".into(),
        path.display().to_string(),
        "--insecure-sim-root".into(),
        ark.display().to_string(),
    ]
}

/// The real `cosmian_vm_proxy` in `mode` (`server`, `client`), started with `args`; its
/// stderr is kept (and echoed). Killed with SIGKILL when dropped.
pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ProxyProcess {
    pub fn start(mode: &str, args: &[String]) -> Self {
        let mut child = Command::new(bin("cosmian_vm_proxy"))
            .arg(mode)
            .args(args)
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            let mode = mode.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{mode} proxy] {line}");
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let _ = tx.send(
                            rest.split(',')
                                .next()
                                .unwrap()
                                .to_owned(),
                        );
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("the {mode} proxy did not start: {:?}", log.lock().unwrap())
            }
        };
        Self { child, addr, log }
    }

    /// Every line the proxy logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
