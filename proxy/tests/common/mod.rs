//! Shared fixtures of the proxy's black-box tests: swtpm machines, the proxy process, a
//! recording HTTP backend, curl.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ratls_harness::{open_tpm, sim_ca, simulate_boot, ImaSimulator, Swtpm};

pub const BIN: &str = env!("CARGO_BIN_EXE_cosmian_vm_proxy");

// ---------------------------------------------------------------------------------------------
// Fixtures

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cosmian-proxy-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One attested machine: swtpm after a simulated boot, an IMA log, the sim CA in a directory.
pub struct Machine {
    pub dir: TempDir,
    pub swtpm: Swtpm,
}

impl Machine {
    pub fn new(tag: &str) -> Self {
        ratls_test::swtpm::quiet_tss();
        let swtpm = Swtpm::start().expect("swtpm is required for the proxy tests");
        let dir = TempDir::new(tag);
        {
            let tpm = open_tpm(&swtpm).unwrap();
            simulate_boot(&tpm, tag).unwrap();
            let mut ima = ImaSimulator::new(dir.path("ima.log"), &tpm).unwrap();
            ima.measure_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .unwrap();
        }
        sim_ca()
            .to_pem_files(&dir.path("sim"))
            .unwrap();
        Self { dir, swtpm }
    }

    /// The attester flags for a proxy on this machine.
    pub fn attester_args(&self) -> Vec<String> {
        vec![
            "--tee".into(),
            "sim".into(),
            "--sim-dir".into(),
            self.dir
                .path("sim")
                .display()
                .to_string(),
            "--tpm".into(),
            self.swtpm.tcti(),
            "--ima-log".into(),
            self.dir
                .path("ima.log")
                .display()
                .to_string(),
        ]
    }
}

/// A policy file and the sim root, in `dir`.
pub fn policy_args(dir: &TempDir, name: &str, json: &str) -> Vec<String> {
    let policy = dir.path(name);
    std::fs::write(&policy, json).unwrap();
    let ark = dir.path("ark.pem");
    std::fs::write(&ark, sim_ca().ark_pem()).unwrap();
    vec![
        "--policy".into(),
        policy.display().to_string(),
        "--insecure-sim-root".into(),
        ark.display().to_string(),
    ]
}

/// What the backend saw on one connection.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub proxy_header: Option<Vec<u8>>,
    pub heads: Vec<String>,
}

/// A tiny HTTP/1.1 backend: optional PROXY v2 header, then keep-alive requests (no bodies),
/// each answered `200 OK` with the head it received as the body.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let all = all.clone();
                std::thread::spawn(move || serve_backend(sock, &all));
            }
        });
        Self { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn serve_backend(mut sock: TcpStream, all: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut seen = Seen::default();
    let mut header_done = false;
    let index = {
        let mut all = all.lock().unwrap();
        all.push(Seen::default());
        all.len() - 1
    };
    loop {
        if !header_done && buf.len() >= 16 {
            if buf[..12] == PP2_SIGNATURE {
                let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
                if buf.len() >= 16 + len {
                    seen.proxy_header = Some(buf.drain(..16 + len).collect());
                    header_done = true;
                }
            } else {
                header_done = true;
            }
        }
        if header_done {
            if let Some(end) = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                let head = String::from_utf8_lossy(&head).into_owned();
                seen.heads.push(head.clone());
                all.lock().unwrap()[index] = seen.clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}",
                    head.len()
                );
                if sock.write_all(resp.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => {
                all.lock().unwrap()[index] = seen;
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub const PP2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A parsed PROXY v2 header: addresses and TLVs.
#[derive(Debug)]
pub struct ProxyV2 {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyV2 {
    pub fn parse(h: &[u8]) -> Self {
        assert_eq!(h[..12], PP2_SIGNATURE);
        assert_eq!(h[12], 0x21, "version 2, command PROXY");
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
        let body = &h[16..];
        let (src, dst, rest) = match h[13] {
            0x11 => {
                let ip = |o: usize| {
                    std::net::Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3])
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                (
                    SocketAddr::from((ip(0), port(8))),
                    SocketAddr::from((ip(4), port(10))),
                    &body[12..],
                )
            }
            other => panic!("unexpected family {other:#x}"),
        };
        let mut tlvs = Vec::new();
        let mut r = rest;
        while !r.is_empty() {
            let kind = r[0];
            let l = u16::from_be_bytes([r[1], r[2]]) as usize;
            tlvs.push((kind, r[3..3 + l].to_vec()));
            r = &r[3 + l..];
        }
        Self { src, dst, tlvs }
    }

    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// A running proxy; killed on drop. Its stderr is collected.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub status: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(mode: &str, args: &[String]) -> Self {
        let mut child = Command::new(BIN)
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
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            let mode = mode.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{mode} proxy] {line}");
                    if let Some(rest) = line.split("status on http://").nth(1) {
                        let addr = rest
                            .split('/')
                            .next()
                            .unwrap()
                            .to_owned();
                        let _ = tx.send(("status", addr));
                    }
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest
                            .split(',')
                            .next()
                            .unwrap()
                            .to_owned();
                        let _ = tx.send(("listen", addr));
                    }
                    log.lock().unwrap().push(line);
                }
                let _ = tx.send(("exit", String::new()));
            });
        }
        let mut status = None;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("status", a)) => status = Some(a.parse().unwrap()),
                Ok(("listen", a)) => {
                    return Self {
                        child,
                        addr: a.parse().unwrap(),
                        status,
                        log,
                    }
                }
                Ok(_) | Err(_) => {
                    let _ = child.kill();
                    panic!("the {mode} proxy did not start: {:?}", log.lock().unwrap());
                }
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn get(&self, path: &str) -> String {
        let addr = self
            .status
            .expect("started with --status");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .unwrap()
            .1
            .to_owned()
    }

    pub fn metric(&self, line_prefix: &str) -> u64 {
        self.get("/metrics")
            .lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn listen_args(target: SocketAddr) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        target.to_string(),
        "--status".into(),
        "127.0.0.1:0".into(),
    ]
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl is required (scripts/setup.sh installs it)")
}

pub fn cat(parts: &[Vec<String>]) -> Vec<String> {
    parts.concat()
}
