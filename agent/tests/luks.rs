//! The agent's first start with a LUKS container configured: the real agent runs the real
//! `cosmian_fstool` (cryptsetup on an image file, the key sealed in swtpm). This machine has no
//! device-mapper, so mounting fails and the agent must refuse to start (never writing keys to
//! the unencrypted directory); where device-mapper exists the container is mounted instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratls_harness::{open_tpm, simulate_boot, Swtpm};

#[test]
fn first_start_creates_the_sealed_container_and_never_runs_unmounted() {
    let agent_bin = Path::new(env!("CARGO_BIN_EXE_cosmian_vm_agent"));
    let fstool = agent_bin.with_file_name("cosmian_fstool");
    assert!(
        fstool.exists(),
        "{} is missing: cargo build --workspace first",
        fstool.display()
    );
    ratls_test::swtpm::quiet_tss();
    let swtpm = Swtpm::start().expect("swtpm is required");
    simulate_boot(&open_tpm(&swtpm).unwrap(), "luks").unwrap();
    let dir = std::env::temp_dir().join(format!("cosmian-vm-luks-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(dir.join("recovery.pw"), "correct horse battery staple").unwrap();
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
ima_log = "{data}/no-ima.log"
luks_size = "32M"
luks_recovery_password_file = "{pw}"
fstool = "{fstool}"
"#,
            tcti = swtpm.tcti(),
            data = data.display(),
            pw = dir.join("recovery.pw").display(),
            fstool = fstool.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(agent_bin)
        .arg("--config")
        .arg(&conf)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Either it exits (no device-mapper) or it gets past the mount and listens.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if data.join("data/key.pem").exists() {
            break None;
        }
        assert!(
            Instant::now() < deadline,
            "the agent neither exited nor started"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let container = data.join("container");
    assert!(container.exists(), "the container was not created");
    // The seal travels in the container's LUKS2 header (token of type cosmian-tpm2).
    let dump = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(&container)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("\"cosmian-tpm2\""),
        "the key was not sealed in the TPM: no cosmian-tpm2 token in {dump}"
    );
    assert!(!data.join("container.tpm.json").exists());
    // The recovery password file asked for the container; once used it is gone from the disk
    // the host can read.
    assert!(
        !dir.join("recovery.pw").exists(),
        "the recovery password file was left on the root disk"
    );
    match status {
        Some(status) => {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(!status.success(), "{stderr}");
            assert!(stderr.contains("mount-at-boot failed"), "{stderr}");
            assert!(
                !stderr.contains("correct horse"),
                "the recovery password was printed"
            );
            // Nothing secret was written outside the container.
            assert!(!data.join("data/key.pem").exists());
            // The sealed key still opens the container (cryptsetup --test-passphrase).
            let out = Command::new(&fstool)
                .args(["test-key", "--location"])
                .arg(&container)
                .env("COSMIAN_FSTOOL_TPM", swtpm.tcti())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            // device-mapper here: the key went into the mounted container.
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
            assert!(
                mounts.contains(&data.join("data").display().to_string()),
                "{mounts}"
            );
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("umount")
                .arg(data.join("data"))
                .status();
            let _ = Command::new(&fstool)
                .args(["close", "--name", "cosmian_vm_data"])
                .status();
        }
    }
    // The host deletes the container: with no recovery password file asking for a new one,
    // the agent refuses to start (it never makes a new, empty container over lost data).
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_file(&container).unwrap();
    let out = Command::new(agent_bin)
        .arg("--config")
        .arg(&conf)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is missing") && stderr.contains("refusing to start"),
        "{stderr}"
    );
    assert!(!container.exists(), "a new container was made");
    assert!(!data.join("data/key.pem").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
