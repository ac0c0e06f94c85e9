//! Group `fleet`: `cosmian_vm verify --fleet` over many agents on loopback, next to the same
//! VMs verified one `cosmian_vm verify` process after the other (what a shell loop over an
//! inventory does). Each VM is a real `cosmian_vm_agent` (release build, simulated TEE) on its
//! own swtpm with a simulated boot and IMA log, with its own snapshot.
//!
//! Needs the release binaries beside this one: `cargo build --release -p cosmian_vm -p
//! cosmian_vm_agent` (scripts/test.sh builds them).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ratls_attacks::{TempDir, Vm};

use crate::Measurement;

/// The inventory's concurrency (the CLI's default).
const CONCURRENCY: usize = 16;

fn row(name: String, vms: u64, elapsed: Duration) -> Measurement {
    Measurement {
        name,
        iterations: vms,
        elapsed,
        units_per_iter: 1,
        unit: "VMs",
        memory_bytes: None,
    }
}

fn cli(ark: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(ratls_attacks::bin("cosmian_vm"));
    cmd.env("HOME", home)
        .env_remove("COSMIAN_VM_URL")
        .args(["--allow-insecure-tls", "--insecure-sim-root"])
        .arg(ark);
    cmd
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let release = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| d.join("cosmian_vm").exists() && d.join("cosmian_vm_agent").exists())
        .unwrap_or_else(|| {
            panic!(
                "group fleet needs cosmian_vm and cosmian_vm_agent beside ratls-bench: cargo \
                 build --release -p cosmian_vm -p cosmian_vm_agent"
            )
        });
    std::env::set_var("COSMIAN_BIN_DIR", &release);
    let n = usize::try_from(scale(100).max(2)).unwrap_or(2);
    let start = Instant::now();
    let vms: Vec<Vm> = (0..n)
        .map(|i| Vm::start(&format!("bench-fleet{i}"), ""))
        .collect();
    let snapshots: Vec<_> = vms
        .iter()
        .map(|vm| vm.snapshot().1)
        .collect();
    eprintln!(
        "fleet: {n} agents on swtpm started and snapshotted in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let dir = TempDir::new("bench-fleet");
    let home = dir.0.join("home");
    let ark = vms[0].data().join("sim/ark.pem");
    let mut inventory = format!("[defaults]\nconcurrency = {CONCURRENCY}\n\n");
    for (i, (vm, snap)) in vms.iter().zip(&snapshots).enumerate() {
        let _ = write!(
            inventory,
            "[[vm]]\nname = \"vm-{i:03}\"\nurl = \"https://{}\"\nsnapshot = \"{}\"\n\n",
            vm.addr,
            snap.display()
        );
    }
    let inv = dir.0.join("fleet.toml");
    std::fs::write(&inv, inventory).expect("write the inventory");

    // The reference: one process per VM, one after the other.
    let started = Instant::now();
    for (vm, snap) in vms.iter().zip(&snapshots) {
        let out = cli(&ark, &home)
            .args([
                "--url",
                &format!("https://{}", vm.addr),
                "verify",
                "--no-state",
            ])
            .arg("--snapshot")
            .arg(snap)
            .output()
            .expect("run cosmian_vm");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let single = started.elapsed();

    // The fleet, a few rounds.
    let rounds = scale(5).clamp(1, 5);
    let started = Instant::now();
    for _ in 0..rounds {
        let out = cli(&ark, &home)
            .args(["verify", "--no-state", "--fleet"])
            .arg(&inv)
            .output()
            .expect("run cosmian_vm verify --fleet");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let fleet = started.elapsed() / u32::try_from(rounds).unwrap_or(1);
    let n64 = n as u64;
    vec![
        row(
            format!("fleet: {n} VMs, one `cosmian_vm verify` process each, in a row (reference)"),
            n64,
            single,
        ),
        row(
            format!("fleet: {n} VMs, one `cosmian_vm verify --fleet` (concurrency {CONCURRENCY})"),
            n64,
            fleet,
        ),
    ]
}
