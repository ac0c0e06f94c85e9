//! `cosmian_fstool` as a real process: `cryptsetup` on real LUKS2 image files (no
//! device-mapper needed: `open --test-passphrase`), swtpm as the TPM. The password keyslot uses
//! the hidden test-only `--fast-kdf-for-tests` (PBKDF2, 1000 iterations).
//!
//! Under `CI=true` nothing skips: a missing cryptsetup or swtpm fails the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ratls_harness::{open_tpm, simulate_boot, Swtpm};

const BIN: &str = env!("CARGO_BIN_EXE_cosmian_fstool");
const PASSWORD: &str = "correct horse battery staple 42";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// cryptsetup is installed; else SKIPPED, or a failure under CI=true.
fn have_cryptsetup() -> bool {
    let found = [
        "/usr/sbin/cryptsetup",
        "/sbin/cryptsetup",
        "/usr/bin/cryptsetup",
    ]
    .iter()
    .any(|p| Path::new(p).is_file());
    if !found {
        assert!(
            !in_ci(),
            "cryptsetup not found; CI requires it (apt-get install cryptsetup-bin, scripts/setup.sh)"
        );
        eprintln!(
            "\n*** SKIPPED: cryptsetup is not installed (apt-get install cryptsetup-bin) ***\n"
        );
    }
    found
}

/// A scratch directory with `work/` (containers) and `tmp/` (the tool's TMPDIR, which must be
/// empty after every run), and every output the tool printed.
struct Env {
    root: PathBuf,
    outputs: Vec<String>,
}

impl Env {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("fstool-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("work")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        Self {
            root,
            outputs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }

    /// Run the tool with `stdin` (nothing when `None`).
    fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .env("TMPDIR", self.root.join("tmp"))
            .env("TSS2_LOG", "all+none")
            .env_remove("COSMIAN_FSTOOL_TPM")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            // The tool may exit before reading (a refusal): a broken pipe is fine.
            let _ = child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        // Only what the tool printed is kept for the secret check (one test puts the password
        // on the command line on purpose).
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ cosmian_fstool {}\n{text}", args.join(" "));
        self.outputs.push(text);
        let leftovers: Vec<_> = std::fs::read_dir(self.root.join("tmp"))
            .unwrap()
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
        out
    }

    fn ok(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args`, expects exit `code`, returns stderr.
    fn fails(&mut self, args: &[&str], stdin: Option<&str>, code: i32) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        stderr
    }

    /// No output ever contained the password or anything like a hex-encoded 64-byte key.
    fn assert_no_secrets(&self) {
        for text in &self.outputs {
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
            let longest_hex = text
                .split(|c: char| !c.is_ascii_hexdigit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(longest_hex < 128, "something key-sized leaked: {text}");
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn pw() -> Option<&'static str> {
    Some(PASSWORD)
}

/// The LUKS2 JSON metadata of `image`, straight from cryptsetup.
fn luks_json(image: &Path) -> serde_json::Value {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keyslots(image: &Path) -> Vec<String> {
    let mut ids: Vec<String> = luks_json(image)["keyslots"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ids.sort();
    ids
}

#[test]
fn create_refuses_overwrite_and_argv_passwords() {
    if !have_cryptsetup() {
        return;
    }
    let mut env = Env::new("overwrite");
    let existing = env.path("existing");
    std::fs::write(&existing, b"keep me").unwrap();
    let loc = existing.to_str().unwrap();
    let err = env.fails(
        &["--size", "32M", "--location", loc, "--password", "-"],
        pw(),
        2,
    );
    assert!(err.contains("refusing to overwrite"), "{err}");
    let err = env.fails(
        &[
            "create",
            "--size",
            "32M",
            "--location",
            loc,
            "--password",
            "-",
        ],
        pw(),
        2,
    );
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    // A stale seal file blocks a sealed create, and no container is left behind.
    let fresh = env.path("fresh");
    std::fs::write(env.path("fresh.tpm.json"), b"{}").unwrap();
    let err = env.fails(
        &[
            "create",
            "--tpm-seal",
            "--size",
            "32M",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
        ],
        pw(),
        2,
    );
    assert!(err.contains("fresh.tpm.json already exists"), "{err}");
    assert!(!fresh.exists());
    std::fs::remove_file(env.path("fresh.tpm.json")).unwrap();

    // A password on the command line is refused (and not repeated); bad sizes too.
    let err = env.fails(
        &[
            "--size",
            "32M",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            PASSWORD,
        ],
        None,
        2,
    );
    assert!(err.contains("only `-`"), "{err}");
    let err = env.fails(
        &[
            "--size",
            "1.5G",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
        ],
        pw(),
        2,
    );
    assert!(err.contains("invalid size"), "{err}");
    let err = env.fails(
        &["--size", "32M", "--location", fresh.to_str().unwrap()],
        None,
        2,
    );
    assert!(err.contains("--password -"), "{err}");
    assert!(!fresh.exists());

    // The seed form: a real LUKS2 container that the password (only) opens.
    let out = env.ok(
        &[
            "--size",
            "40M",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
            "--fast-kdf-for-tests",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.contains("created LUKS2 container"), "{out}");
    let meta = std::fs::metadata(&fresh).unwrap();
    assert_eq!(meta.len(), 40 << 20);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(keyslots(&fresh), ["0"]);
    let status = env.ok(&["status", "--location", fresh.to_str().unwrap()], None);
    assert!(status.contains("format: LUKS2"), "{status}");
    assert!(status.contains("tpm: not sealed"), "{status}");
    assert!(status.contains("header check: ok"), "{status}");
    env.ok(
        &[
            "test-key",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
        ],
        pw(),
    );
    let err = env.fails(
        &[
            "test-key",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
        ],
        Some("wrong"),
        1,
    );
    assert!(err.contains("does not open"), "{err}");
    let err = env.fails(
        &["test-key", "--location", fresh.to_str().unwrap()],
        None,
        2,
    );
    assert!(err.contains("not TPM-sealed"), "{err}");
    env.fails(
        &[
            "create",
            "--size",
            "32M",
            "--location",
            fresh.to_str().unwrap(),
            "--password",
            "-",
        ],
        pw(),
        2,
    );
    env.assert_no_secrets();
}

/// Extend sha256 PCR `pcr` with tpm2-tools (a real process on the same TPM).
fn extend_pcr(swtpm: &Swtpm, pcr: u8) {
    let out = swtpm
        .command("tpm2_pcrextend")
        .arg(format!("{pcr}:sha256={}", "ab".repeat(32)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn boot(swtpm: &Swtpm, label: &str) {
    // The TssTpm connection is dropped at the end of the statement: swtpm serves one client.
    simulate_boot(&open_tpm(swtpm).unwrap(), label).unwrap();
}

fn read_seal(image: &Path) -> serde_json::Value {
    let path = PathBuf::from(format!("{}.tpm.json", image.display()));
    let mode = std::fs::metadata(&path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "seal file mode");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn tpm_seal_pcr_change_recovery_and_reseal() {
    if !have_cryptsetup() {
        return;
    }
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let mut env = Env::new("tpm");
    let image = env.path("container");
    let loc = image.to_str().unwrap().to_owned();
    let loc = loc.as_str();
    boot(&swtpm, "boot A");

    let tcti = swtpm.tcti();
    let out = env.ok(
        &[
            "create",
            "--size",
            "32M",
            "--location",
            loc,
            "--password",
            "-",
            "--tpm-seal",
            "--tpm",
            &tcti,
            "--fast-kdf-for-tests",
        ],
        pw(),
    );
    assert!(
        out.contains("sealed a random key in the TPM (keyslot 1)"),
        "{out}"
    );
    assert_eq!(keyslots(&image), ["0", "1"]);
    let seal = read_seal(&image);
    assert_eq!(seal["keyslot"], 1);
    assert_eq!(
        seal["pcrs"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    );
    assert_eq!(seal["pcr_bank"], "sha256");
    // The TPM keyslot needs no stretching (512 random bits); the password's is the test KDF.
    let json = luks_json(&image);
    assert_eq!(json["keyslots"]["1"]["kdf"]["hash"], "sha512");

    let out = env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    assert!(out.contains("the TPM-unsealed key opens"), "{out}");
    let out = env.ok(&["unseal-check", "--location", loc, "--tpm", &tcti], None);
    assert!(out.contains("the TPM-unsealed key opens"), "{out}");
    let status = env.ok(&["status", "--location", loc], None);
    assert!(
        status.contains("tpm: sealed in keyslot 1, sha256 PCRs 0,1,2,3,4,5,6,7,8,9"),
        "{status}"
    );
    assert!(
        status.contains("keyslot 1: luks2 cipher aes-xts-plain64 kdf pbkdf2 [TPM-sealed key]"),
        "{status}"
    );

    // A reboot with the same measurements: still unseals.
    swtpm.restart();
    boot(&swtpm, "boot A");
    let tcti = swtpm.tcti();
    env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);

    // One boot PCR changes: the TPM refuses, and the error names the policy and the PCR.
    extend_pcr(&swtpm, 7);
    let err = env.fails(&["test-key", "--location", loc, "--tpm", &tcti], None, 4);
    assert!(
        err.contains("PCR policy (sha256 PCRs 0,1,2,3,4,5,6,7,8,9)"),
        "{err}"
    );
    assert!(err.contains("changed since sealing: PCR 7."), "{err}");
    assert!(err.contains("reseal"), "{err}");

    // Another boot (other firmware/kernel): every boot PCR differs.
    swtpm.restart();
    boot(&swtpm, "boot B");
    let tcti = swtpm.tcti();
    let err = env.fails(&["test-key", "--location", loc, "--tpm", &tcti], None, 4);
    assert!(
        err.contains("changed since sealing: PCR 0,1,2,3,4,5,6,7,8,9."),
        "{err}"
    );
    // open goes through the same unseal: it fails on the policy before any mapping.
    let err = env.fails(
        &[
            "open",
            "--location",
            loc,
            "--name",
            "fstool_test",
            "--tpm",
            &tcti,
        ],
        None,
        4,
    );
    assert!(err.contains("PCR policy"), "{err}");

    // The password is the recovery path.
    let out = env.ok(&["test-key", "--location", loc, "--password", "-"], pw());
    assert!(out.contains("the password opens"), "{out}");

    // reseal needs the right password, and changes nothing without it.
    let before = std::fs::read(format!("{loc}.tpm.json")).unwrap();
    let err = env.fails(
        &[
            "reseal",
            "--location",
            loc,
            "--password",
            "-",
            "--tpm",
            &tcti,
        ],
        Some("wrong"),
        2,
    );
    assert!(err.contains("the password does not open"), "{err}");
    assert_eq!(std::fs::read(format!("{loc}.tpm.json")).unwrap(), before);
    assert_eq!(keyslots(&image), ["0", "1"]);

    // reseal under the new PCRs: the TPM path works again, the old TPM keyslot is gone.
    let out = env.ok(
        &[
            "reseal",
            "--location",
            loc,
            "--password",
            "-",
            "--tpm",
            &tcti,
        ],
        pw(),
    );
    assert!(out.contains("resealed: a fresh key in keyslot 2"), "{out}");
    assert!(out.contains("removed the previous TPM keyslot 1"), "{out}");
    assert_eq!(keyslots(&image), ["0", "2"]);
    let seal = read_seal(&image);
    assert_eq!(seal["keyslot"], 2);
    env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    env.ok(&["test-key", "--location", loc, "--password", "-"], pw());

    // The new seal is bound to boot B: a boot-A machine is refused.
    swtpm.restart();
    boot(&swtpm, "boot A");
    let tcti = swtpm.tcti();
    let err = env.fails(&["test-key", "--location", loc, "--tpm", &tcti], None, 4);
    assert!(
        err.contains("changed since sealing: PCR 0,1,2,3,4,5,6,7,8,9."),
        "{err}"
    );

    // A narrower policy by choice: PCR 7 only. Other PCRs may then change.
    let out = env.ok(
        &[
            "reseal",
            "--location",
            loc,
            "--password",
            "-",
            "--pcrs",
            "7",
            "--tpm",
            &tcti,
        ],
        pw(),
    );
    assert!(out.contains("under sha256 PCRs 7"), "{out}");
    extend_pcr(&swtpm, 4);
    env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    extend_pcr(&swtpm, 7);
    let err = env.fails(&["test-key", "--location", loc, "--tpm", &tcti], None, 4);
    assert!(
        err.contains("(sha256 PCRs 7)") && err.contains("PCR 7."),
        "{err}"
    );
    assert_eq!(keyslots(&image), ["0", "1"]);

    env.assert_no_secrets();
}

// The forged-header (cipher_null, capi:, other ciphers, key and sector sizes) and fail-closed
// boot attacks are in tests/attacks.rs.
