//! Issue 5's acceptance run with real processes: the `cosmian_vm_agent` binary, the `cosmian_vm`
//! CLI binary, swtpm (with a simulated boot and the IMA simulator) and the simulated TEE.
//!
//! snapshot → verify passes; a newly measured file makes verify fail naming it; a reboot (swtpm
//! restarted, PCRs reset and re-measured, a new IMA log) verifies without a new snapshot; so does
//! an agent restart; `--application` against a server with another key fails; admin calls are
//! refused without the owner certificate and land atomically in app_storage with it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::Duration;

mod common;

use ratls_harness::{open_tpm, sim_ca, simulate_boot, ImaSimulator, Swtpm};

/// The CLI binary, built beside the agent (`cargo build --workspace` builds both).
fn cli_bin() -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_cosmian_vm_agent"));
    let cli = agent.with_file_name("cosmian_vm");
    assert!(
        cli.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        cli.display()
    );
    cli
}

/// The scenarios run one at a time: each drives a whole machine (swtpm, agent, CLI processes),
/// and two at once on 2 cores only add contention.
static ONE_MACHINE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Agent {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The apps' files measured at every boot.
fn app_files(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join("app/my_app.sh"), dir.join("app/my_app.json")]
}

/// A boot: PCRs 0–9 (the same firmware every time), then a new IMA log measuring the apps.
fn boot(swtpm: &Swtpm, dir: &Path) {
    let tpm = open_tpm(swtpm).unwrap();
    simulate_boot(&tpm, "e2e firmware").unwrap();
    let mut ima = ImaSimulator::new(dir.join("ima.log"), &tpm).unwrap();
    for f in app_files(dir) {
        ima.measure_file(&f).unwrap();
    }
}

fn measure(swtpm: &Swtpm, dir: &Path, file: &Path) {
    let tpm = open_tpm(swtpm).unwrap();
    ImaSimulator::resume(dir.join("ima.log"), &tpm)
        .unwrap()
        .measure_file(file)
        .unwrap();
}

fn start_agent(swtpm: &Swtpm, dir: &Path) -> Agent {
    start_agent_with(swtpm, dir, "")
}

/// [`start_agent`] with extra `[agent]` lines.
fn start_agent_with(swtpm: &Swtpm, dir: &Path, extra: &str) -> Agent {
    let data = dir.join("data");
    let conf = dir.join("agent.toml");
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

[app]
service_type = "standalone"
service_name = "my_app"
app_storage = "app"
command = ["sleep", "600"]
"#,
            tcti = swtpm.tcti(),
            data = data.display(),
            ima = dir.join("ima.log").display(),
            app = dir.join("app").display(),
            extra = extra,
        ),
    )
    .unwrap();
    let (child, addr) = common::spawn_agent(&conf);
    Agent { child, addr }
}

/// Run the CLI against the agent; HOME points into the test directory so no real owner
/// identity is picked up.
fn cli(dir: &Path, agent: &Agent, args: &[&str]) -> Output {
    cli_as(dir, &dir.join("home"), agent, args)
}

/// [`cli`] with another HOME (another user's owner identity, or none).
fn cli_as(dir: &Path, home: &Path, agent: &Agent, args: &[&str]) -> Output {
    let out = Command::new(cli_bin())
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .args([
            "--url",
            &format!("https://{}", agent.addr),
            "--allow-insecure-tls",
        ])
        .arg("--insecure-sim-root")
        .arg(dir.join("data/sim/ark.pem"))
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

/// `cosmian_vm owner enroll --token T` with the token the agent wrote at its first start
/// (genuineness check first: no snapshot exists yet).
fn enroll(dir: &Path, agent: &Agent) -> Output {
    let token = std::fs::read_to_string(dir.join("data/enrolment-token")).unwrap();
    cli(dir, agent, &["owner", "enroll", "--token", token.trim()])
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A TLS server with its own (non-attested) key, answering one connection at a time.
fn other_server() -> SocketAddr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    serve(cert.der().to_vec(), key.serialize_der())
}

/// A TLS server with this certificate and key (PKCS#8 DER).
fn serve(cert_der: Vec<u8>, key_der: Vec<u8>) -> SocketAddr {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(ratls::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert_der.into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 1];
            let _ = tls.read(&mut buf);
            let _ = tls.flush();
        }
    });
    addr
}

#[test]
fn snapshot_verify_reboot_restart_application_and_admin_calls() {
    let _one = ONE_MACHINE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = Dir(std::env::temp_dir().join(format!("cosmian-vm-e2e-{}", std::process::id())));
    let d = dir.0.clone();
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::create_dir_all(d.join("home")).unwrap();
    std::fs::write(d.join("app/my_app.sh"), "#!/bin/sh\necho my app\n").unwrap();
    std::fs::write(d.join("app/my_app.json"), "{\"listen\": 8080}\n").unwrap();
    sim_ca()
        .to_pem_files(&d.join("data/sim"))
        .unwrap();
    ratls_test::swtpm::quiet_tss();
    let mut swtpm = Swtpm::start().expect("swtpm is required");
    boot(&swtpm, &d);
    let agent = start_agent(&swtpm, &d);
    let snap = d.join("cosmian_vm.snapshot");
    let snap_arg = snap.to_str().unwrap();

    // The snapshot is the owner's: refused before enrolment, then enrol, snapshot, verify.
    let out = cli(&d, &agent, &["snapshot", "-o", snap_arg]);
    assert_ne!(code(&out), 0, "{}", text(&out));
    assert!(!snap.exists());
    let out = enroll(&d, &agent);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cli(&d, &agent, &["snapshot", "-o", snap_arg]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(snap.exists());
    let out = cli(&d, &agent, &["verify", "--snapshot", snap_arg]);
    assert_eq!(code(&out), 0, "{}", text(&out));

    // --application: the agent's own endpoint passes; a server with another key fails.
    let own = agent.addr.to_string();
    let out = cli(
        &d,
        &agent,
        &["verify", "--snapshot", snap_arg, "--application", &own],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let other = other_server().to_string();
    let out = cli(
        &d,
        &agent,
        &["verify", "--snapshot", snap_arg, "--application", &other],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains(&other), "{}", text(&out));

    // Admin calls: refused to another user (no owner certificate, then a stranger's whose
    // enrolment the agent refused); nothing written.
    let conf = d.join("app.json");
    std::fs::write(&conf, "{\"greeting\": \"hello\"}\n").unwrap();
    let conf_arg = conf.to_str().unwrap();
    let stranger = d.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    let out = cli_as(
        &d,
        &stranger,
        &agent,
        &["app", "init", "--conf", conf_arg, "--snapshot", snap_arg],
    );
    assert_ne!(code(&out), 0, "{}", text(&out));
    let out = cli_as(
        &d,
        &stranger,
        &agent,
        &[
            "owner",
            "enroll",
            "--token",
            "00112233445566778899aabbccddeeff",
        ],
    );
    assert_ne!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("already enrolled"), "{}", text(&out));
    let out = cli_as(
        &d,
        &stranger,
        &agent,
        &["app", "init", "--conf", conf_arg, "--snapshot", snap_arg],
    );
    assert_ne!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert!(!d.join("data/app/app.conf").exists());
    // The owner's calls land.
    let out = cli(
        &d,
        &agent,
        &["app", "init", "--conf", conf_arg, "--snapshot", snap_arg],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        std::fs::read(d.join("data/app/app.conf")).unwrap(),
        std::fs::read(&conf).unwrap()
    );
    let secret = d.join("secret.txt");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let out = cli(
        &d,
        &agent,
        &[
            "secret",
            "put",
            "db_password",
            secret.to_str().unwrap(),
            "--snapshot",
            snap_arg,
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!text(&out).contains("s3cr3t-value"), "a secret was printed");
    let written = d.join("data/app/secrets/db_password");
    assert_eq!(std::fs::read(&written).unwrap(), b"s3cr3t-value");
    assert_eq!(
        std::fs::metadata(&written)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // An unexpected program runs: verify fails and names it with its hash.
    let evil = d.join("unexpected.sh");
    std::fs::write(&evil, "#!/bin/sh\necho not in the snapshot\n").unwrap();
    measure(&swtpm, &d, &evil);
    let out = cli(&d, &agent, &["verify", "--snapshot", snap_arg]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("unexpected.sh") && text(&out).contains("ima.unknown_file"));

    // A reboot: swtpm restarted (PCRs reset), the same firmware measured again, a new IMA log
    // with only the approved apps; the agent restarted with the machine. No new snapshot.
    drop(agent);
    swtpm.restart();
    boot(&swtpm, &d);
    let agent = start_agent(&swtpm, &d);
    let out = cli(&d, &agent, &["verify", "--snapshot", snap_arg]);
    assert_eq!(code(&out), 0, "after a reboot: {}", text(&out));

    // The agent alone restarted.
    drop(agent);
    let agent = start_agent(&swtpm, &d);
    let out = cli(&d, &agent, &["verify", "--snapshot", snap_arg]);
    assert_eq!(code(&out), 0, "after an agent restart: {}", text(&out));
}

#[test]
fn a_given_certificate_is_bound_by_the_fresh_evidence_and_apps_serving_it_pass() {
    let _one = ONE_MACHINE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // What `cosmian_certtool acme --output DIR` leaves (a plain certificate and its key), dropped
    // where the agent's ssl_certificate / ssl_private_key point.
    let dir =
        Dir(std::env::temp_dir().join(format!("cosmian-vm-e2e-given-{}", std::process::id())));
    let d = dir.0.clone();
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::create_dir_all(d.join("home")).unwrap();
    std::fs::create_dir_all(d.join("given")).unwrap();
    std::fs::write(d.join("app/my_app.sh"), "#!/bin/sh\necho my app\n").unwrap();
    std::fs::write(d.join("app/my_app.json"), "{}\n").unwrap();
    sim_ca()
        .to_pem_files(&d.join("data/sim"))
        .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["my-app.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.join("given/cert.pem"), cert.pem()).unwrap();
    std::fs::write(d.join("given/key.pem"), key.serialize_pem()).unwrap();
    ratls_test::swtpm::quiet_tss();
    let swtpm = Swtpm::start().expect("swtpm is required");
    boot(&swtpm, &d);
    let agent = start_agent_with(
        &swtpm,
        &d,
        &format!(
            "ssl_certificate = \"{}\"\nssl_private_key = \"{}\"",
            d.join("given/cert.pem").display(),
            d.join("given/key.pem").display()
        ),
    );
    let snap = d.join("cosmian_vm.snapshot");
    let snap_arg = snap.to_str().unwrap();
    let out = enroll(&d, &agent);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cli(&d, &agent, &["snapshot", "-o", snap_arg]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // An app serving the same certificate and key: bound by the agent's fresh evidence.
    let app = serve(cert.der().to_vec(), key.serialize_der()).to_string();
    let out = cli(
        &d,
        &agent,
        &["verify", "--snapshot", snap_arg, "--application", &app],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Another key is not.
    let other = other_server().to_string();
    let out = cli(
        &d,
        &agent,
        &["verify", "--snapshot", snap_arg, "--application", &other],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
}
