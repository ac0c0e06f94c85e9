//! Shared by the certtool integration tests: Debian's `pebble` and `pebble-challtestsrv` on
//! loopback, and running the tool.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cosmian_certtool");

pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "certtool-acme-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(bin).is_file()))
}

/// pebble + pebble-challtestsrv, killed on drop.
pub struct Pebble {
    pub dir: PathBuf,
    pub acme_port: u16,
    pub mgmt_port: u16,
    pub chall_mgmt_port: u16,
    /// The port pebble's VA connects to for HTTP-01 (the tool must answer there).
    pub http_port: u16,
    pub ca_pem: String,
    pub children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    pub fn start(name: &str) -> Option<Self> {
        if !have("pebble") || !have("pebble-challtestsrv") {
            assert!(
                !ratls_test::in_ci(),
                "pebble is not installed (scripts/setup.sh installs it); CI=true: failing"
            );
            eprintln!("SKIPPED: pebble / pebble-challtestsrv not installed");
            return None;
        }
        let dir = scratch(name);
        // Pebble's own TLS certificate, for localhost and 127.0.0.1, from a CA of ours.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test pebble TLS CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("tls-cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls-key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls-ca.pem"), ca_cert.pem()).unwrap();

        let (acme_port, mgmt_port, http_port, tls_port) =
            (free_port(), free_port(), free_port(), free_port());
        let (dns_port, chall_mgmt_port) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.join("tls-cert.pem"),
            "privateKey": dir.join("tls-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = |n: &str| Stdio::from(std::fs::File::create(dir.join(n)).unwrap());
        let chall = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt_port}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let p = Self {
            ca_pem: ca_cert.pem(),
            dir,
            acme_port,
            mgmt_port,
            chall_mgmt_port,
            http_port,
            children: vec![chall, pebble],
        };
        for port in [acme_port, mgmt_port, chall_mgmt_port] {
            let deadline = Instant::now() + Duration::from_secs(15);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "pebble did not listen on {port}; logs in {}",
                    p.dir.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(p)
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    pub fn tls_ca_file(&self) -> PathBuf {
        self.dir.join("tls-ca.pem")
    }

    /// The root that signs pebble's issued certificates (management API `/roots/0`).
    pub fn issuing_root(&self) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        for c in ratls::pki::Cert::many_from_der_or_pem(self.ca_pem.as_bytes()).unwrap() {
            roots
                .add(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                .unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", self.mgmt_port)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut rsp = Vec::new();
        let _ = tls.read_to_end(&mut rsp);
        let text = String::from_utf8(rsp).unwrap();
        assert!(
            text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let root = ratls::pki::Cert::from_der_or_pem(body.as_bytes()).unwrap();
        root.der().to_vec()
    }
}

/// POST a JSON body to challtestsrv's management API (plain HTTP).
pub fn chall_post(port: u16, path: &str, body: &str) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        tcp,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut rsp = String::new();
    let _ = tcp.read_to_string(&mut rsp);
    assert!(
        rsp.starts_with("HTTP/1.0 200") || rsp.starts_with("HTTP/1.1 200"),
        "{rsp}"
    );
}

pub fn certtool(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
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

pub fn acme_args<'a>(
    p: &'a Pebble,
    out: &'a str,
    domain: &'a str,
    extra: &[&'a str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "acme".into(),
        "--domain".into(),
        domain.into(),
        "--email".into(),
        "test@example.com".into(),
        "--directory".into(),
        p.directory(),
        "--root-ca".into(),
        p.tls_ca_file().display().to_string(),
        "--output".into(),
        out.into(),
        "--timeout".into(),
        "30".into(),
    ];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

pub fn run(args: &[String]) -> Output {
    certtool(
        &args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
}

/// The leaf and the chain in `dir/cert.pem`: for `domain`, with the key in `dir/key.pem`,
/// chaining to `root`.
pub fn check_issued(dir: &Path, domain: &str, root_der: &[u8]) -> Vec<u8> {
    let key_meta = std::fs::metadata(dir.join("key.pem")).unwrap();
    assert_eq!(key_meta.permissions().mode() & 0o777, 0o600, "key.pem mode");
    let key_pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256, "P-256 key");
    let chain =
        ratls::pki::Cert::many_from_der_or_pem(&std::fs::read(dir.join("cert.pem")).unwrap())
            .unwrap();
    let leaf = &chain[0];
    assert_eq!(
        leaf.spki_der(),
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
        "cert.pem's leaf is for key.pem"
    );
    // The SAN, through rustls' WebPKI verifier with pebble's root as the only trust anchor:
    // this checks the chain, the name and the validity in one go.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root_der.to_vec()))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let intermediates: Vec<_> = chain[1..]
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(
            &rustls::pki_types::CertificateDer::from(leaf.der().to_vec()),
            &intermediates,
            &rustls::pki_types::ServerName::try_from(domain.to_owned()).unwrap(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
    // And not for another name.
    assert!(verifier
        .verify_server_cert(
            &rustls::pki_types::CertificateDer::from(leaf.der().to_vec()),
            &intermediates,
            &rustls::pki_types::ServerName::try_from("other.example").unwrap(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .is_err());
    leaf.der().to_vec()
}
