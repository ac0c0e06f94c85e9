//! `cosmian_vm verify --fleet` with the real binaries: 20 agents on swtpm (simulated TEE), one
//! of which ran a file its snapshot does not know, one inventory entry whose "agent" accepts TCP
//! and never answers; the table, the JSON, the exit code and the Prometheus metrics (parsed by
//! the `prometheus_client` Python package) name exactly the failing VMs and their steps. Then
//! `--watch`: an agent stopped between rounds is reported unreachable, its change logged, and
//! SIGTERM ends the command with the last round's exit code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratls_attacks::{bin, text, TempDir, Vm};

const VMS: usize = 20;
const TAMPERED: usize = 7;
/// Entries whose endpoint never answers (each fails at `fleet.timeout` after 3 s).
const STALLED: usize = 4;

fn cli(home: &Path, ark: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("cosmian_vm"));
    cmd.env("HOME", home)
        .env_remove("COSMIAN_VM_URL")
        .args(["--allow-insecure-tls", "--insecure-sim-root"])
        .arg(ark)
        .args(args);
    cmd
}

/// Parse `metrics` with the Prometheus project's own Python client parser; returns
/// `family sample{labels} value` lines, sorted.
fn prometheus_parse(metrics: &Path) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out.append(f"{family.name} {family.type} {s.name}{{{labels}}} {s.value:g}")
print("\n".join(sorted(out)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(metrics)
        .output()
        .expect("python3 (scripts/setup.sh installs prometheus_client)");
    assert!(
        out.status.success(),
        "the metrics do not parse as Prometheus text format (or prometheus_client is missing: \
         scripts/setup.sh installs it): {}",
        text(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sample<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

fn append(path: &Path) -> std::fs::File {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_fleet_of_twenty_agents_names_the_tampered_and_the_stalled_vm_and_their_steps() {
    // One after the other: the TPM set-up of the harness is not meant for threads.
    let vms: Vec<Vm> = (0..VMS)
        .map(|i| Vm::start(&format!("fleet{i}"), ""))
        .collect();
    let snapshots: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = vms
            .iter()
            .map(|vm| s.spawn(move || vm.snapshot().1))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    // VM 7 runs something its snapshot does not know.
    let evil = vms[TAMPERED].dir.0.join("app/evil.sh");
    std::fs::write(&evil, "#!/bin/sh\necho owned\n").unwrap();
    vms[TAMPERED].measure(&evil);
    // "Agents" that accept TCP connections and never answer: four inventory entries on one
    // listener, which records when it accepted each connection (the pool's concurrency shows
    // in how close together they come).
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in stalled.incoming().flatten() {
                accepted
                    .lock()
                    .unwrap()
                    .push(Instant::now());
                held.push(conn);
            }
        });
    }

    let dir = TempDir::new("fleet");
    let mut inventory = String::from("[defaults]\nconcurrency = 8\ntimeout = 3\n\n");
    for (i, (vm, snap)) in vms.iter().zip(&snapshots).enumerate() {
        let _ = write!(
            inventory,
            "[[vm]]\nname = \"vm-{i:02}\"\nurl = \"https://{}\"\nsnapshot = \"{}\"\n\n",
            vm.addr,
            snap.display()
        );
    }
    for i in 1..=STALLED {
        let _ = write!(
            inventory,
            "[[vm]]\nname = \"stalled-{i}\"\nurl = \"https://{stalled_addr}\"\nsnapshot = \"{}\"\n\n",
            snapshots[0].display()
        );
    }
    let inv = dir.0.join("fleet.toml");
    std::fs::write(&inv, &inventory).unwrap();
    let metrics = dir.0.join("fleet.prom");
    let ark = vms[0].data().join("sim/ark.pem");
    let home = dir.0.join("home");

    // One round, the table.
    let out = cli(&home, &ark, &["verify", "--fleet"])
        .arg(&inv)
        .arg("--metrics")
        .arg(&metrics)
        .output()
        .unwrap();
    let table = text(&out);
    eprintln!("{table}");
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains(&format!(
            "{} of {} VMs verified, {} failed",
            VMS - 1,
            VMS + STALLED,
            1 + STALLED
        )),
        "{table}"
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(&format!("{name} "))
            })
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_owned()
    };
    let tampered = row(&format!("vm-{TAMPERED:02}"));
    assert!(tampered.contains("FAILED"), "{tampered}");
    assert!(tampered.contains("ima.unknown_file"), "{tampered}");
    assert!(tampered.contains("evil.sh"), "{tampered}");
    for i in 1..=STALLED {
        let stalled_row = row(&format!("stalled-{i}"));
        assert!(stalled_row.contains("TIMEOUT"), "{stalled_row}");
        assert!(stalled_row.contains("fleet.timeout"), "{stalled_row}");
    }
    for i in (0..VMS).filter(|i| *i != TAMPERED) {
        assert!(row(&format!("vm-{i:02}")).contains("verified"), "vm-{i:02}");
    }
    assert!(
        table.contains(&format!(
            "failed: vm-{TAMPERED:02} (ima.unknown_file), stalled-1 (fleet.timeout), stalled-2 \
             (fleet.timeout), stalled-3 (fleet.timeout), stalled-4 (fleet.timeout)"
        )),
        "{table}"
    );
    // Concurrency: the four stalled entries were all in flight at once (one after the other,
    // each would have come only after the previous one's 3 s deadline).
    {
        let accepted = accepted.lock().unwrap();
        assert!(accepted.len() >= STALLED, "{accepted:?}");
        let spread = accepted[STALLED - 1] - accepted[0];
        assert!(
            spread < Duration::from_secs(3),
            "the stalled entries were not verified concurrently: {spread:?} between the first and \
             the last connection"
        );
    }

    // The metrics, through a real Prometheus parser.
    let lines = prometheus_parse(&metrics);
    let verified = sample(&lines, "cosmian_vm_fleet_vm_verified gauge");
    assert_eq!(verified.len(), VMS + STALLED, "{lines:#?}");
    assert_eq!(
        verified
            .iter()
            .filter(|l| l.ends_with(" 1"))
            .count(),
        VMS - 1,
        "{verified:#?}"
    );
    let failed = sample(&lines, "cosmian_vm_fleet_vm_failed_step gauge");
    assert_eq!(
        failed,
        vec![
            format!("cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{{result=failed,step=ima.unknown_file,vm=vm-{TAMPERED:02}}} 1"),
            "cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{result=timeout,step=fleet.timeout,vm=stalled-1} 1".to_owned(),
            "cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{result=timeout,step=fleet.timeout,vm=stalled-2} 1".to_owned(),
            "cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{result=timeout,step=fleet.timeout,vm=stalled-3} 1".to_owned(),
            "cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{result=timeout,step=fleet.timeout,vm=stalled-4} 1".to_owned(),
        ],
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"cosmian_vm_fleet_rounds counter cosmian_vm_fleet_rounds_total{} 1".to_owned()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"cosmian_vm_fleet_vms gauge cosmian_vm_fleet_vms{result=failed} 5".to_owned()
        ),
        "{lines:#?}"
    );
    // Per-VM state: each VM's TPM counters in its own file.
    for i in 0..VMS {
        let state = dir
            .0
            .join(format!("fleet.toml.state/vm-{i:02}.last-verify.json"));
        assert_eq!(state.exists(), i != TAMPERED, "{}", state.display());
    }

    // JSON: every VM, the failing ones with their step and the failed checks' values.
    let out = cli(&home, &ark, &["--json", "verify", "--fleet"])
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verified"], VMS - 1);
    assert_eq!(json["failed"], 1 + STALLED);
    let vm = &json["vms"][TAMPERED];
    assert_eq!(vm["name"], format!("vm-{TAMPERED:02}"));
    assert_eq!(vm["result"], "failed");
    assert_eq!(vm["step"], "ima.unknown_file");
    assert_eq!(vm["simulated"], true);
    assert!(
        vm["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["presented"]
                .as_str()
                .unwrap_or("")
                .contains("evil.sh")
                || c["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("evil.sh")),
        "{vm}"
    );
    assert_eq!(json["vms"][VMS]["result"], "timeout");

    // --watch: rounds every second; an agent stopped after the first round turns unreachable,
    // the change is logged, SIGTERM ends it with the last round's code.
    let watch_metrics = dir.0.join("watch.prom");
    let watch_out = dir.0.join("watch.out");
    let mut child = Killed(
        cli(
            &home,
            &ark,
            &["verify", "--no-state", "--watch", "1", "--fleet"],
        )
        .arg(&inv)
        .arg("--metrics")
        .arg(&watch_metrics)
        // Both in append mode: each write lands at the end, none overwrites the other's.
        .stdout(Stdio::from(append(&watch_out)))
        .stderr(Stdio::from(append(&watch_out)))
        .spawn()
        .unwrap(),
    );
    let rounds = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(text) = std::fs::read_to_string(&watch_metrics) {
                let n = text
                    .lines()
                    .find_map(|l| l.strip_prefix("cosmian_vm_fleet_rounds_total "))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                if n >= want {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no round {want} in time");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    rounds(1);
    let mut vms = vms;
    vms[3].stop_agent();
    let after = {
        let text = std::fs::read_to_string(&watch_metrics).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("cosmian_vm_fleet_rounds_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    // The round running while the agent stopped may still have seen it: wait for one more.
    rounds(after + 2);
    let lines = prometheus_parse(&watch_metrics);
    assert!(
        lines.contains(&"cosmian_vm_fleet_vm_failed_step gauge cosmian_vm_fleet_vm_failed_step{result=unreachable,step=network,vm=vm-03} 1".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "cosmian_vm_fleet_vm_failures counter cosmian_vm_fleet_vm_failures_total{url="
        ) && l.contains(&format!("vm=vm-{TAMPERED:02}"))
            && !l.ends_with(" 0")
            && !l.ends_with(" 1")),
        "the tampered VM failed in every round: {lines:#?}"
    );
    let pid = child.0.id();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    let log = std::fs::read_to_string(&watch_out).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("vm-03: verified -> unreachable at network"),
        "{log}"
    );
}
