//! Continuous re-attestation with the real binaries: an app's TCP connection goes through a
//! client-mode proxy (attesting itself, `--reattest-interval 1`, `--snapshot` of the server
//! machine, `--audit-log`) and a server-mode proxy (`--require-attested-client`) to an echo
//! server. The connection stays open and usable across re-attestations, each of which carries
//! only the IMA entries added since the last one; when an unknown file is measured on the
//! server machine, the next re-attestation rejects it, the connection is closed, and the audit
//! log has the rejection naming the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ratls::audit::{Decision, Record};
use ratls::digest::HashAlg;
use ratls::ima::Log;
use ratls::snapshot::{FileSet, Snapshot, SNAPSHOT_VERSION};
use ratls_attacks::{sim_policy_args, ProxyMachine, ProxyProcess, TempDir};
use ratls_harness::{open_tpm, sim_ca, ImaSimulator};

/// A TCP echo server on a free port (one thread per connection).
fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A snapshot approving exactly the files the machine's IMA log measured so far.
fn snapshot_of(machine: &ProxyMachine, path: &Path) {
    let log = Log::parse(&std::fs::read(machine.dir.0.join("ima.log")).unwrap()).unwrap();
    let mut files = FileSet::new(HashAlg::Sha256);
    files.add_ima_log(&log);
    assert!(!files.is_empty());
    let snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        created_at: "2026-12-03T00:00:00Z".into(),
        platform: "sim".into(),
        simulated: true,
        policy: ratls::Policy::default(),
        files,
        agent_spki_sha256: None,
        metadata: BTreeMap::new(),
        boot_events: Vec::new(),
    };
    std::fs::write(path, snapshot.to_json()).unwrap();
}

fn round_trip(conn: &mut TcpStream, text: &str) {
    conn.write_all(text.as_bytes()).unwrap();
    let mut back = vec![0u8; text.len()];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(String::from_utf8_lossy(&back), text);
}

fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    ratls::audit::scan(dir, |r| out.push(r.clone())).unwrap();
    out
}

/// Wait until the proxy logged a line containing `needle`.
fn wait_for_line(proxy: &ProxyProcess, needle: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = proxy
            .lines()
            .into_iter()
            .find(|l| l.contains(needle))
        {
            return line;
        }
        assert!(
            start.elapsed() < within,
            "no line with {needle:?} within {within:?}: {:#?}",
            proxy.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unknown_file_closes_a_live_mutually_attested_connection_and_is_audited() {
    let server_machine = ProxyMachine::new("live-server", &sim_ca());
    let client_machine = ProxyMachine::new("live-client", &sim_ca());
    let work = TempDir::new("live");
    let echo = echo_server();
    let snapshot = work.0.join("server.snapshot");
    snapshot_of(&server_machine, &snapshot);
    let audit = work.0.join("audit");

    let mut server_args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        echo.to_string(),
        "--require-attested-client".into(),
        "--metadata".into(),
        "none".into(),
    ];
    server_args.extend(server_machine.attester_args());
    server_args.extend(sim_policy_args(&work, "clients.json", client_machine.ark()));
    let server = ProxyProcess::start("server", &server_args);
    let mut client_args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--target".into(),
        server.addr.to_string(),
        "--attest-self".into(),
        "--metadata".into(),
        "none".into(),
        "--snapshot".into(),
        snapshot.display().to_string(),
        "--reattest-interval".into(),
        "1".into(),
        "--reattest-timeout".into(),
        "20".into(),
        "--audit-log".into(),
        audit.display().to_string(),
    ];
    client_args.extend(client_machine.attester_args());
    client_args.extend(sim_policy_args(&work, "server.json", server_machine.ark()));
    let client = ProxyProcess::start("client", &client_args);

    // A connection through both proxies: mutually attested, then live.
    let mut conn = TcpStream::connect(client.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    round_trip(&mut conn, "hello through two attested proxies\n");

    // It stays open and usable across re-attestations; once the first one anchored the log
    // the others carry no IMA entry at all (nothing new was measured).
    let second = wait_for_line(&client, "re-attestation 2 of", Duration::from_secs(30));
    assert!(
        second.contains("trusted; 0 IMA entries from entry"),
        "{second}"
    );
    round_trip(&mut conn, "still open after two re-attestations\n");
    let before = records(&audit);
    let opened = &before[0];
    assert_eq!(opened.decision, Decision::Accepted, "{opened:?}");
    assert_eq!(opened.reattestation, None);
    let rechecks: Vec<&Record> = before
        .iter()
        .filter(|r| r.reattestation.is_some())
        .collect();
    assert!(rechecks.len() >= 2, "{before:#?}");
    assert!(
        rechecks
            .iter()
            .all(|r| r.decision == Decision::Accepted && r.connection_id == opened.connection_id),
        "{before:#?}"
    );

    // An approved file measured again (the simulator records it anew): the next re-attestation
    // carries exactly that one entry, and passes.
    let approved = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let entries_before = Log::parse(&std::fs::read(server_machine.dir.0.join("ima.log")).unwrap())
        .unwrap()
        .len();
    {
        let tpm = open_tpm(&server_machine.swtpm).unwrap();
        ImaSimulator::resume(server_machine.dir.0.join("ima.log"), &tpm)
            .unwrap()
            .measure_file(&approved)
            .unwrap();
    }
    let one = wait_for_line(
        &client,
        &format!("trusted; 1 IMA entries from entry {entries_before}"),
        Duration::from_secs(30),
    );
    eprintln!("{one}");
    wait_for_line(
        &client,
        &format!("trusted; 0 IMA entries from entry {}", entries_before + 1),
        Duration::from_secs(30),
    );
    round_trip(&mut conn, "still open after an approved file\n");

    // Something the snapshot does not know runs on the server machine.
    let intruder = work.0.join("intruder.sh");
    std::fs::write(&intruder, "#!/bin/sh\necho pwned\n").unwrap();
    let measured = Instant::now();
    {
        let tpm = open_tpm(&server_machine.swtpm).unwrap();
        ImaSimulator::resume(server_machine.dir.0.join("ima.log"), &tpm)
            .unwrap()
            .measure_file(&intruder)
            .unwrap();
    }

    // Within the interval (plus the answer's time) the connection is closed.
    let mut buf = [0u8; 64];
    let closed = loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break measured.elapsed(),
            Ok(_) => {}
        }
    };
    assert!(
        closed < Duration::from_secs(15),
        "closed {closed:?} after the file was measured"
    );
    eprintln!("live connection closed {closed:?} after the unknown file was measured");

    // The audit log holds the rejection, naming the file, for this very connection.
    let line = wait_for_line(
        &client,
        "failed at ima.unknown_file",
        Duration::from_secs(10),
    );
    assert!(line.contains("intruder.sh"), "{line}");
    // (The proxy logs the line, then the record reaches the disk: wait for it.)
    let start = Instant::now();
    let (after, rejected) = loop {
        let after = records(&audit);
        if let Some(r) = after
            .iter()
            .find(|r| r.decision == Decision::Rejected && r.reattestation.is_some())
        {
            break (after.clone(), r.clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no rejected re-attestation: {after:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after
        .iter()
        .all(|r| r.connection_id == opened.connection_id));
    assert_eq!(rejected.connection_id, opened.connection_id);
    assert_eq!(
        rejected.step.as_deref(),
        Some("ima.unknown_file"),
        "{rejected:?}"
    );
    assert!(
        rejected
            .presented
            .as_deref()
            .is_some_and(|p| p.contains("intruder.sh")),
        "{rejected:?}"
    );

    // A new connection is refused at once: its exchange sees the same file.
    let mut again = TcpStream::connect(client.addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = again.write_all(b"anyone?\n");
    assert!(
        matches!(again.read(&mut buf), Ok(0) | Err(_)),
        "a new connection to the changed server must be refused"
    );
}
