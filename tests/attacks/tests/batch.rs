//! Batched fresh evidence with the real binaries: many `cosmian_vm connect --fresh` at once
//! against the real `cosmian_vm_proxy` (swtpm + the simulated TEE) share a few TEE reports and
//! TPM quotes, each verdict still bound to its own session; and a server that tampers with its
//! batched evidence is refused by the real CLI, exit 1, naming the step
//! (`docs/threat-model.md`, section 7).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls::binding::Role;
use ratls::bundle::{BatchProof, Bundle, MAX_BUNDLE_LEN};
use ratls::tls::cert::CertParams;
use ratls::tls::fresh::{Answer, Challenge, FrameDecoder, Message};
use ratls::tls::{RotatingCert, ALPN_ATTEST};
use ratls::UnixTime;
use ratls_attacks::{bin, text, ProxyMachine, ProxyProcess, TempDir};
use ratls_harness::{sim_ca, TestMachine};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 32;

/// The real proxy in server mode on a booted swtpm with an IMA log and the simulated TEE.
struct ProxyVm {
    // Field order: the proxy stops before its swtpm.
    proxy: ProxyProcess,
    machine: ProxyMachine,
}

impl ProxyVm {
    fn start(backend: SocketAddr, extra: &[&str]) -> Self {
        let machine = ProxyMachine::new("batch-proxy", &sim_ca());
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--target".into(),
            backend.to_string(),
        ];
        args.extend(machine.attester_args());
        // A hardware TEE report takes tens of milliseconds (a TDX quote through the QGS about
        // 40 ms); the simulated one a fraction of a millisecond.
        args.extend(["--sim-latency".into(), "40".into()]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self {
            proxy: ProxyProcess::start("server", &args),
            machine,
        }
    }

    /// The batch sizes the proxy logged (one line per TEE report + TPM quote).
    fn batches(&self) -> Vec<usize> {
        self.proxy
            .lines()
            .iter()
            .filter_map(|l| {
                l.split("one TEE report and one TPM quote for ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// A backend that accepts and closes (the CLI's `connect` stops after the exchange).
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    addr
}

/// A plain TCP relay that holds every connection until `n` are open, then forwards them all
/// at once: a start line, so the `n` clients reach the proxy together whatever their process
/// start-up times (TLS runs end to end through it).
fn starting_gate(target: SocketAddr, n: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            held.push(conn);
            if held.len() == n {
                for client in held.drain(..) {
                    let upstream = TcpStream::connect(target).unwrap();
                    pump(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    pump(upstream, client);
                }
            }
        }
    });
    addr
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// `cosmian_vm connect ADDR --fresh`, trusting the simulated root in `ark` (and the self-signed
/// RA-TLS certificate: the evidence in it is what is verified).
fn connect_fresh(ark: &Path, addr: SocketAddr) -> Child {
    Command::new(bin("cosmian_vm"))
        .env("HOME", std::env::temp_dir())
        .env_remove("XDG_CONFIG_HOME")
        .args(["--allow-insecure-tls", "--insecure-sim-root"])
        .arg(ark)
        .args(["connect", &addr.to_string(), "--fresh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn thirty_two_concurrent_connect_fresh_pass_and_share_fewer_than_eight_quotes() {
    let proxy = ProxyVm::start(backend(), &[]);
    let gate = starting_gate(proxy.proxy.addr, CLIENTS);
    let ark = proxy.machine.ark();
    let children: Vec<Child> = (0..CLIENTS)
        .map(|_| connect_fresh(&ark, gate))
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut evidence = std::collections::BTreeSet::new();
    for out in &outputs {
        let all = text(out);
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(
            all.contains("TRUSTED") && all.contains("SIMULATED"),
            "{all}"
        );
        assert!(all.contains("batched: session "), "{all}");
        assert!(all.contains("binding.batch_inclusion"), "{all}");
        evidence.insert(
            all.lines()
                .find(|l| l.contains("binding.exporter"))
                .unwrap()
                .to_owned(),
        );
    }
    // Each session verified its own exporter.
    assert_eq!(evidence.len(), CLIENTS, "{evidence:?}");
    // Counted on the attester side: one log line per TEE report + TPM quote.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.batches().iter().sum::<usize>() < CLIENTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let batches = proxy.batches();
    eprintln!("batch sizes: {batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), CLIENTS, "{batches:?}");
    assert!(
        batches.len() < 8,
        "{} quotes for {CLIENTS} sessions: {batches:?}",
        batches.len()
    );
}

#[test]
fn max_batch_bounds_every_batch_of_the_real_proxy() {
    const N: usize = 8;
    let proxy = ProxyVm::start(backend(), &["--max-batch", "2"]);
    let gate = starting_gate(proxy.proxy.addr, N);
    let ark = proxy.machine.ark();
    let children: Vec<Child> = (0..N)
        .map(|_| connect_fresh(&ark, gate))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.batches().iter().sum::<usize>() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let batches = proxy.batches();
    assert_eq!(batches.iter().sum::<usize>(), N, "{batches:?}");
    assert!(batches.iter().all(|&n| n <= 2), "{batches:?}");
    // Sessions did queue together: some batch was full.
    assert!(batches.contains(&2), "{batches:?}");
}

// ---- A server that tampers with its batched evidence, against the real CLI ----

/// Serves `machine`'s RA-TLS certificate with ALPN cosmian-attest/1 and answers every REQUEST
/// with genuine batched evidence (the asker's honest claims and three other sessions) that
/// `tamper` then rewrites.
fn tampering_server(
    rt: &tokio::runtime::Runtime,
    machine: &TestMachine,
    tamper: Tamper,
) -> SocketAddr {
    let cert = RotatingCert::from_attester(
        machine.attester.clone(),
        CertParams::new(Role::server(), "localhost", vec!["localhost".into()]),
        Duration::from_secs(3600),
    )
    .unwrap();
    let config =
        ratls::tls::server_config(Arc::new(cert.clone()), None, vec![ALPN_ATTEST.to_vec()])
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let attester = machine.attester.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, attester, cert) = (acceptor.clone(), attester.clone(), cert.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Message::Request(Some(asked)) = recv(&mut tls).await else {
                    return;
                };
                send(&mut tls, &Message::Request(None)).await;
                let honest = Answer::new(asked, Role::server(), &cert)
                    .unwrap()
                    .bind(tls.get_ref().1, UnixTime::now())
                    .unwrap()
                    .into_claims();
                let mut sessions = vec![honest];
                for _ in 0..3 {
                    let mut other = sessions[0].clone();
                    other.challenge = Some(*Challenge::new().unwrap().as_bytes());
                    other.exporter = Some(*Challenge::new().unwrap().as_bytes());
                    sessions.push(other);
                }
                let cmw = tokio::task::spawn_blocking(move || {
                    let mut bundles = attester
                        .produce_batch(sessions, UnixTime::now().as_secs())
                        .unwrap();
                    let mut victim = bundles.remove(0);
                    tamper(&mut victim, &bundles);
                    victim.to_cmw()
                })
                .await
                .unwrap();
                send(&mut tls, &Message::Evidence(cmw)).await;
                let _ = recv(&mut tls).await;
            });
        }
    });
    addr
}

async fn send<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, m: &Message) {
    let _ = s
        .write_all(&m.encode(MAX_BUNDLE_LEN).unwrap())
        .await;
    let _ = s.flush().await;
}

async fn recv<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Message {
    let mut d = FrameDecoder::new(MAX_BUNDLE_LEN);
    loop {
        let mut buf = vec![0; d.want()];
        if s.read_exact(&mut buf).await.is_err() {
            return Message::Request(None);
        }
        if let (_, Some(m)) = d.feed(&buf).unwrap() {
            return m;
        }
    }
}

/// How a tampering server rewrites the asker's bundle, given the batch's other bundles.
type Tamper = fn(&mut Bundle, &[Bundle]);

fn proof(b: &mut Bundle) -> &mut BatchProof {
    b.batch.as_mut().unwrap()
}

#[test]
fn tampered_batch_proofs_are_refused_by_the_real_cli_with_exit_1_naming_the_step() {
    let machine = TestMachine::start(
        "batch tamper",
        Some(ratls::attest::sim::SimTee::new(sim_ca()).unwrap()),
        &[Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .as_path()],
    )
    .unwrap()
    .expect("swtpm is required (scripts/setup.sh)");
    let dir = TempDir::new("batch-tamper");
    let ark = dir.0.join("ark.pem");
    std::fs::write(&ark, sim_ca().ark_pem()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases: [(&str, Tamper, &str); 6] = [
        ("untampered", |_, _| {}, ""),
        (
            "another session's proof",
            |v, others| v.batch = others[1].batch.clone(),
            "binding.batch_inclusion",
        ),
        (
            "a wrong leaf index",
            |v, _| proof(v).index = 2,
            "binding.batch_inclusion",
        ),
        (
            "a truncated path",
            |v, _| {
                proof(v).path.pop();
            },
            "binding.batch_proof",
        ),
        (
            "a root the report did not sign",
            |v, _| {
                let leaf = ratls::binding::batch_leaf(&v.binding);
                let tree = ratls::merkle::Tree::new(&[leaf, [9u8; 32]]).unwrap();
                let p = proof(v);
                p.size = 2;
                p.index = 0;
                p.root = ByteBuf::from(tree.root().to_vec());
                p.path = tree
                    .path(0)
                    .unwrap()
                    .iter()
                    .map(|h| ByteBuf::from(h.to_vec()))
                    .collect();
            },
            "binding.report_data",
        ),
        (
            "another tree size",
            |v, _| proof(v).size = 3,
            "binding.report_data",
        ),
    ];
    for (what, tamper, step) in cases {
        let addr = tampering_server(&rt, &machine, tamper);
        let out = connect_fresh(&ark, addr)
            .wait_with_output()
            .unwrap();
        let all = text(&out);
        eprintln!("--- {what}:\n{all}");
        if step.is_empty() {
            assert_eq!(out.status.code(), Some(0), "{what}: {all}");
            assert!(all.contains("batched: session 1 of 4"), "{what}: {all}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{what}: {all}");
        assert!(all.contains("REJECTED"), "{what}: {all}");
        let failed = all
            .lines()
            .find(|l| l.contains(step))
            .unwrap_or_else(|| panic!("{what}: {step} not named: {all}"));
        assert!(failed.contains("FAIL"), "{what}: {failed}");
    }
}
