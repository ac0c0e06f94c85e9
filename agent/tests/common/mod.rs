//! Shared by the agent's black-box tests: start the real binary and wait until it listens.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Start `cosmian_vm_agent --config CONF` (its stderr echoed with an `[agent]` prefix) and
/// return it with the address it printed (`port = 0` picks a free port).
#[allow(clippy::unwrap_used, clippy::panic)]
pub fn spawn_agent(conf: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmian_vm_agent"))
        .arg("--config")
        .arg(conf)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[agent] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let addr = loop {
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
            Err(_) => {
                let status = child.try_wait().unwrap();
                panic!("the agent did not start listening (exit status {status:?})");
            }
        }
    };
    (child, addr)
}
