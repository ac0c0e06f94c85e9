//! The audit log with the real binaries: a client-mode `cosmian_vm_proxy --audit-log` in front
//! of attested servers (swtpm + the simulated TEE) keeps every verdict through a `kill -9`
//! under load, the real `cosmian_vm audit query` finds exactly the sessions of a recalled TCB,
//! and `cosmian_vm audit verify` notices an edited record (`docs/audit.md`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratls::attest::sim::{SimCa, SimTcb};
use ratls::audit::{Decision, Record};
use ratls_attacks::{bin, ProxyMachine, ProxyProcess, TempDir};
use ratls_harness::sim_ca;

/// A backend that reads a request head (after the PROXY v2 header the server proxy sends)
/// and answers `200 OK`, closing.
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen
                    .windows(4)
                    .any(|w| w == b"\r\n\r\n")
                {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    addr
}

/// A server-mode proxy on its own machine whose simulated TEE is at `ca`'s TCB.
fn server(tag: &str, ca: &SimCa, backend: SocketAddr) -> (ProxyProcess, ProxyMachine) {
    let machine = ProxyMachine::new(tag, ca);
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        backend.to_string(),
    ];
    args.extend(machine.attester_args());
    (ProxyProcess::start("server", &args), machine)
}

/// A client-mode proxy verifying `target` (fresh exchange) against an empty policy and the
/// simulated root `ark`, logging to `audit`, giving the app a PROXY v2 header.
fn client(target: SocketAddr, ark: &Path, audit: &Path, dir: &TempDir) -> ProxyProcess {
    let policy = dir.0.join("policy.json");
    std::fs::write(&policy, "{}").unwrap();
    ProxyProcess::start(
        "client",
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--target".into(),
            target.to_string(),
            "--policy".into(),
            policy.display().to_string(),
            "--insecure-sim-root".into(),
            ark.display().to_string(),
            "--metadata".into(),
            "proxy-v2".into(),
            "--audit-log".into(),
            audit.display().to_string(),
        ],
    )
}

/// One app connection through the client proxy: the PROXY v2 header it receives first (sent
/// only once the verdict is in the audit log) names the connection; then one request. The
/// connection id, if the header arrived.
fn app_connection(proxy: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(proxy).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut fixed = [0u8; 16];
    s.read_exact(&mut fixed).ok()?;
    assert_eq!(
        &fixed[..12],
        b"\r\n\r\n\0\r\nQUIT\n",
        "a PROXY v2 signature"
    );
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    let id = connection_id(&body);
    // The rest of the path still works: request, answer.
    let _ = s.write_all(b"GET /audited HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Some(id)
}

/// The connection id in our attestation TLV (0xE0) of a PROXY v2 body (after the addresses).
fn connection_id(body: &[u8]) -> String {
    // TCP over IPv4: 12 bytes of addresses, then TLVs.
    let mut at = 12;
    while at + 3 <= body.len() {
        let kind = body[at];
        let len = usize::from(u16::from_be_bytes([body[at + 1], body[at + 2]]));
        let value = &body[at + 3..at + 3 + len];
        if kind == 0xE0 {
            let summary: serde_json::Value = serde_json::from_slice(value).unwrap();
            return summary["connection_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no connection_id in {summary}"))
                .to_owned();
        }
        at += 3 + len;
    }
    panic!("no attestation TLV in the PROXY v2 header")
}

fn records(dir: &Path) -> Vec<Record> {
    let mut all = Vec::new();
    let report = ratls::audit::scan(dir, |r| all.push(r.clone())).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    all
}

fn cli(args: &[&str]) -> Output {
    Command::new(bin("cosmian_vm"))
        .env("HOME", std::env::temp_dir())
        .args(args)
        .output()
        .unwrap()
}

fn query(log: &Path, extra: &[&str]) -> (i32, BTreeSet<String>) {
    let log = log.display().to_string();
    let mut args = vec!["--json", "audit", "query", "--log", log.as_str()];
    args.extend(extra);
    let out = cli(&args);
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["chain_intact"], true, "{json}");
    let ids = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["connection_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect::<BTreeSet<_>>();
    assert_eq!(json["matched"].as_u64().unwrap() as usize, ids.len());
    (code, ids)
}

#[test]
fn every_verdict_survives_kill_9_under_load_and_the_tcb_query_finds_exactly_its_sessions() {
    // Two machines: one at a TCB a recall concerns (bootloader 6, SNP 14), one patched.
    let old_ca = SimCa::generate_with_tcb(SimTcb {
        bootloader: 6,
        tee: 0,
        snp: 14,
        microcode: 84,
    })
    .unwrap();
    let new_ca = sim_ca();
    let backend = backend();
    let (old_server, old_machine) = server("audit-old", &old_ca, backend);
    let (new_server, new_machine) = server("audit-new", &new_ca, backend);
    let work = TempDir::new("audit");
    let log = work.0.join("audit");

    // Load through a client proxy verifying the old machine, then kill -9 in the middle of it.
    let mut proxy = client(old_server.addr, &old_machine.ark(), &log, &work);
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (seen, stop, addr) = (seen.clone(), stop.clone(), proxy.addr);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match app_connection(addr) {
                        Some(id) => seen.lock().unwrap().push(id),
                        None => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().len() < 60 {
        assert!(Instant::now() < deadline, "too few connections under load");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let seen: BTreeSet<String> = seen
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    let after_kill = records(&log);
    let accepted: BTreeSet<String> = after_kill
        .iter()
        .filter(|r| r.decision == Decision::Accepted)
        .map(|r| r.connection_id.clone())
        .collect();
    let missing: Vec<_> = seen.difference(&accepted).collect();
    eprintln!(
        "kill -9 under load: the app saw {} attested connections, the audit log holds {} \
         accepted verdicts ({} records)",
        seen.len(),
        accepted.len(),
        after_kill.len()
    );
    assert!(missing.is_empty(), "verdicts lost by kill -9: {missing:?}");
    assert!(accepted.len() >= seen.len());
    for r in &after_kill {
        assert_eq!(r.platform, "sev-snp", "{r:?}");
        assert!(r.simulated);
        assert_eq!(r.peer, old_server.addr.to_string());
        assert_eq!(
            r.reported_tcb
                .map(|t| (t.bootloader, t.snp)),
            Some((6, 14))
        );
        assert_eq!(
            r.evidence_sha256
                .as_ref()
                .map(String::len),
            Some(64)
        );
        assert_eq!(r.policy_sha256.len(), 64);
        assert_eq!(r.role.as_deref(), Some("server"));
    }

    // The same log, reopened after the crash, takes the patched machine's sessions.
    let new_ids: BTreeSet<String> = {
        let proxy = client(new_server.addr, &new_machine.ark(), &log, &work);
        (0..5)
            .map(|_| app_connection(proxy.addr).expect("a connection to the patched machine"))
            .collect()
    };
    // And a refusal: the old machine against the patched machine's root.
    {
        let proxy = client(old_server.addr, &new_machine.ark(), &log, &work);
        assert_eq!(app_connection(proxy.addr), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !records(&log)
            .iter()
            .any(|r| r.decision == Decision::Rejected)
        {
            assert!(Instant::now() < deadline, "no rejection logged");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let all = records(&log);
    let old_accepted: BTreeSet<String> = all
        .iter()
        .filter(|r| r.decision == Decision::Accepted && r.peer == old_server.addr.to_string())
        .map(|r| r.connection_id.clone())
        .collect();
    assert!(new_ids
        .iter()
        .all(|id| !old_accepted.contains(id)));
    assert_eq!(
        all.last().unwrap().seq as usize,
        all.len(),
        "no gap in the sequence"
    );

    // The advisory question, through the real CLI.
    let (code, ids) = query(
        &log,
        &["--tcb-below", "bl=7,snp=15", "--decision", "accepted"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        ids, old_accepted,
        "exactly the old machine's accepted sessions"
    );
    assert!(ids.is_superset(&seen));
    let (_, ids) = query(&log, &["--tcb-below", "snp=20"]);
    assert!(ids.is_superset(&old_accepted) && ids.is_disjoint(&new_ids));
    let (code, ids) = query(&log, &["--tcb-below", "ucode=1"]);
    assert_eq!(
        (code, ids.len()),
        (1, 0),
        "no machine has microcode below 1"
    );
    let (code, ids) = query(&log, &["--since", "2026-01-01", "--decision", "accepted"]);
    assert_eq!(code, 0);
    assert_eq!(
        ids,
        old_accepted
            .union(&new_ids)
            .cloned()
            .collect()
    );
    let rejected = cli(&[
        "--json",
        "audit",
        "query",
        "--log",
        &log.display().to_string(),
        "--decision",
        "rejected",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&rejected.stdout).unwrap();
    let step = json["records"][0]["step"]
        .as_str()
        .unwrap();
    assert!(
        step.starts_with("tee."),
        "the rejection names its step: {json}"
    );

    // An edited record is noticed.
    let verify = |log: &Path| cli(&["audit", "verify", "--log", &log.display().to_string()]);
    let out = verify(&log);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Records removed from the end: the chain alone cannot tell, a head kept elsewhere can.
    let json = cli(&[
        "--json",
        "audit",
        "verify",
        "--log",
        &log.display().to_string(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let head = format!(
        "{}:{}",
        report["head"]["seq"],
        report["head"]["sha256"]
            .as_str()
            .unwrap()
    );
    let last = ratls::audit::segments(&log)
        .unwrap()
        .pop()
        .unwrap();
    let saved = std::fs::read_to_string(&last).unwrap();
    let mut lines: Vec<&str> = saved.lines().collect();
    lines.pop();
    std::fs::write(&last, lines.join("\n") + "\n").unwrap();
    assert_eq!(
        verify(&log).status.code(),
        Some(0),
        "the chain alone cannot see it"
    );
    let out = cli(&[
        "audit",
        "verify",
        "--log",
        &log.display().to_string(),
        "--head",
        &head,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("records were removed from its end"),
        "{out:?}"
    );
    std::fs::write(&last, saved).unwrap();
    let segment = ratls::audit::segments(&log)
        .unwrap()
        .remove(0);
    let text = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(
        &segment,
        text.replacen("\"bootloader\":6", "\"bootloader\":9", 1),
    )
    .unwrap();
    let out = verify(&log);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("chain broken at seq 2"),
        "{out:?}"
    );
}
