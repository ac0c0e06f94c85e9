//! `cosmian_certtool ratls generate|verify|fetch`, the real binary: evidence from swtpm (a
//! simulated boot and IMA log) and the simulated TEE, verified offline; a chain fetched from a
//! real rustls server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ratls_harness::{open_tpm, sim_ca, simulate_boot, ImaSimulator, Swtpm};

const BIN: &str = env!("CARGO_BIN_EXE_cosmian_certtool");

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "certtool-ratls-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn certtool(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "$ cosmian_certtool {}\n-- status {:?}\n-- stdout\n{}\n-- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn generate_on_swtpm_with_the_simulated_tee_then_verify() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let dir = scratch("generate");
    let ima_log = dir.join("ima.log");
    {
        // Boot and IMA measurements; the TPM client is closed before the tool opens the TPM.
        let tpm = open_tpm(&swtpm).unwrap();
        simulate_boot(&tpm, "certtool firmware").unwrap();
        let mut ima = ImaSimulator::new(&ima_log, &tpm).unwrap();
        ima.measure_file(Path::new(BIN))
            .unwrap();
    }
    let sim_dir = dir.join("sim");
    sim_ca().to_pem_files(&sim_dir).unwrap();
    let out = dir.join("out");
    let tcti = swtpm.tcti();
    let o = certtool(&[
        "ratls",
        "generate",
        "--san",
        "vm.example.com",
        "--san",
        "127.0.0.1",
        "--days",
        "2",
        "--tee",
        "sim",
        "--tpm",
        &tcti,
        "--ima-log",
        ima_log.to_str().unwrap(),
        "--sim-dir",
        sim_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SIMULATED TEE"));
    let key_mode = std::fs::metadata(out.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let cert_pem = std::fs::read(out.join("cert.pem")).unwrap();
    let cert = ratls::pki::Cert::from_der_or_pem(&cert_pem).unwrap();
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(out.join("key.pem")).unwrap()).unwrap();
    assert_eq!(
        cert.spki_der(),
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
    let evidence = ratls::tls::cert::read_evidence(cert.der()).unwrap();
    assert!(!evidence.cmw.is_empty());
    let (nb, na) = cert.validity();
    assert_eq!(na.as_secs() - nb.as_secs(), 2 * 86_400);

    let cert_file = out.join("cert.pem");
    let cert_s = cert_file.to_str().unwrap();
    let ark = sim_dir.join("ark.pem");
    let ark_s = ark.to_str().unwrap();

    // Trusted with the simulated root (and the verdict says SIMULATED).
    let o = certtool(&["ratls", "verify", cert_s, "--insecure-sim-root", ark_s]);
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("TRUSTED") && stdout.contains("SIMULATED"),
        "{stdout}"
    );

    // JSON output.
    let o = certtool(&[
        "ratls",
        "verify",
        cert_s,
        "--insecure-sim-root",
        ark_s,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{v}"
    );

    // Without it, the simulated ARK is not a trusted root.
    let o = certtool(&["ratls", "verify", cert_s]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("REJECTED") && stdout.contains("tee.chain.ark"),
        "{stdout}"
    );

    // Bound to role server: a verifier expecting a client refuses it.
    let o = certtool(&[
        "ratls",
        "verify",
        cert_s,
        "--insecure-sim-root",
        ark_s,
        "--role",
        "client",
    ]);
    assert_eq!(o.status.code(), Some(1));

    // Not a certificate: exit 2.
    let o = certtool(&["ratls", "verify", out.join("key.pem").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn generate_refuses_bad_input() {
    let dir = scratch("bad");
    let o = certtool(&[
        "ratls",
        "generate",
        "--san",
        "x",
        "--tee",
        "none",
        "--tpm",
        "none",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no attester"));
    let o = certtool(&["ratls", "generate", "--san", "x", "--tee", "quantum"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn tee_selection_refuses_clearly_and_never_simulates() {
    let dir = scratch("tee-selection");
    let out = dir.to_str().unwrap();
    // No TEE on this machine: auto is refused (and says the simulation is never picked).
    let no_tee = [
        "/sys/kernel/config/tsm/report",
        "/dev/sev-guest",
        "/dev/tdx_guest",
    ]
    .iter()
    .all(|p| !Path::new(p).exists());
    if no_tee {
        let o = certtool(&[
            "ratls", "generate", "--san", "x", "--tee", "auto", "--tpm", "none", "--out", out,
        ]);
        assert_eq!(o.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("--tee auto") && stderr.contains("never picked automatically"),
            "{stderr}"
        );
    }
    // Azure needs the vTPM.
    let o = certtool(&[
        "ratls",
        "generate",
        "--san",
        "x",
        "--tee",
        "azure-snp",
        "--tpm",
        "none",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("it needs --tpm"));
    // A TPM that is not an Azure vTPM: said so, and no key is created at 0x81000003.
    if let Some(swtpm) = Swtpm::start() {
        let tcti = swtpm.tcti();
        let o = certtool(&[
            "ratls",
            "generate",
            "--san",
            "x",
            "--tee",
            "azure-snp",
            "--tpm",
            &tcti,
            "--out",
            out,
        ]);
        assert_eq!(o.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("not an Azure confidential VM"), "{stderr}");
        assert!(matches!(
            ratls_harness::TssTpm::open_existing(&tcti, 0x8100_0003),
            Err(ratls::attest::AttestError::Unavailable { .. })
        ));
    }
    assert!(std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn fetch_saves_the_exact_chain() {
    // A CA, an intermediate and a leaf; the server presents leaf + intermediate.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let int_key = rcgen::KeyPair::generate().unwrap();
    let mut int_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    int_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    int_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fetch test intermediate");
    let int_cert = int_params
        .signed_by(&int_key, &ca)
        .unwrap();
    let int = rcgen::Issuer::new(int_params, int_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["fetch.example.com".into()])
        .unwrap()
        .signed_by(&leaf_key, &int)
        .unwrap();
    let chain = vec![leaf.der().clone(), int_cert.der().clone()];

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        chain.clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    rt.spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });

    let dir = scratch("fetch");
    let out = dir.join("chain.pem");
    let target = format!("127.0.0.1:{port}");
    let o = certtool(&[
        "ratls",
        "fetch",
        &target,
        "--sni",
        "fetch.example.com",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOT verified"));
    let saved = ratls::pki::Cert::many_from_der_or_pem(&std::fs::read(&out).unwrap()).unwrap();
    let saved: Vec<&[u8]> = saved.iter().map(|c| c.der()).collect();
    let want: Vec<&[u8]> = chain
        .iter()
        .map(|c| c.as_ref())
        .collect();
    assert_eq!(saved, want, "the exact chain, in order");

    // Stdout without --out.
    let o = certtool(&["ratls", "fetch", &target]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    // Nobody listening: exit 1, a clear error.
    drop(rt);
    let o = certtool(&["ratls", "fetch", &target, "--timeout", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("connecting to"));
}
