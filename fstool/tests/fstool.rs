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

/// The seal: the only LUKS2 token of `image`, of type `cosmian-tpm2`; no seal file next to it.
fn read_seal(image: &Path) -> serde_json::Value {
    let tokens = luks_json(image)["tokens"].clone();
    let tokens = tokens.as_object().unwrap();
    assert_eq!(tokens.len(), 1, "expected one token: {tokens:?}");
    let (_, token) = tokens.iter().next().unwrap();
    assert_eq!(token["type"], "cosmian-tpm2");
    assert_eq!(
        token["keyslots"],
        serde_json::json!([token["keyslot"].to_string()])
    );
    assert!(
        !PathBuf::from(format!("{}.tpm.json", image.display())).exists(),
        "a new container has no seal file"
    );
    token.clone()
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
        status.contains("seal: LUKS2 token 0 (type cosmian-tpm2) in the container's header"),
        "{status}"
    );
    assert!(
        status.contains("token 0: type \"cosmian-tpm2\""),
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
        err.contains(
            "the TPM did not release the key: the current sha256 PCRs 0,1,2,3,4,5,6,7,8,9 are \
             not those the key was sealed to (policy digest sealed "
        ),
        "{err}"
    );
    assert!(
        err.contains("changed since sealing: PCR 7) — the boot chain changed."),
        "{err}"
    );
    let sealed_digest = seal["policy_digest"].as_str().unwrap();
    assert!(
        err.contains(&format!("sealed {sealed_digest}, current ")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`cosmian_fstool reseal --location {loc} --password -`"
        )),
        "{err}"
    );

    // Another boot (other firmware/kernel): every boot PCR differs.
    swtpm.restart();
    boot(&swtpm, "boot B");
    let tcti = swtpm.tcti();
    let err = env.fails(&["test-key", "--location", loc, "--tpm", &tcti], None, 4);
    assert!(
        err.contains("changed since sealing: PCR 0,1,2,3,4,5,6,7,8,9)"),
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
    assert!(err.contains("the TPM did not release the key"), "{err}");
    assert!(
        err.contains(&format!(
            "`cosmian_fstool open --location {loc} --name fstool_test --password -`"
        )),
        "{err}"
    );

    // The password is the recovery path.
    let out = env.ok(&["test-key", "--location", loc, "--password", "-"], pw());
    assert!(out.contains("the password opens"), "{out}");

    // reseal needs the right password, and changes nothing without it.
    let before = read_seal(&image);
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
    assert_eq!(read_seal(&image), before);
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
        err.contains("changed since sealing: PCR 0,1,2,3,4,5,6,7,8,9)"),
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
        err.contains("the current sha256 PCRs 7 are not") && err.contains("since sealing: PCR 7)"),
        "{err}"
    );
    assert_eq!(keyslots(&image), ["0", "1"]);

    env.assert_no_secrets();
}

// The forged-header (cipher_null, capi:, other ciphers, key and sector sizes) and fail-closed
// boot attacks are in tests/attacks.rs.

/// A loop device over `image`, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(image: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup -f --show {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .to_owned(),
        )
    }

    fn path(&self) -> &str {
        &self.0
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

/// A zeroed image file of `mib` MiB attached to a loop device.
fn blank_disk(env: &Env, name: &str, mib: u64) -> (PathBuf, Loop) {
    let image = env.path(name);
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(mib << 20).unwrap();
    drop(file);
    let dev = Loop::attach(&image);
    (image, dev)
}

/// device-mapper works here (root, dm_mod loaded): `cryptsetup open` can map.
fn have_device_mapper() -> bool {
    let ok = Command::new("dmsetup")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n*** device-mapper is not available here: the mapping and mounting steps are \
             checked up to `cryptsetup open` only ***\n"
        );
    }
    ok
}

fn losetup_works() -> bool {
    let ok = Command::new("losetup")
        .arg("-f")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "losetup -f fails; CI requires loop devices");
        eprintln!("\n*** SKIPPED: no free loop device (losetup -f) ***\n");
    }
    ok
}

fn is_mountpoint(path: &Path) -> bool {
    Command::new("mountpoint")
        .arg("-q")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts and closes whatever a test mapped, on drop.
struct Mapped {
    mountpoint: PathBuf,
    names: Vec<&'static str>,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if is_mountpoint(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg(&self.mountpoint)
                .status();
        }
        for name in &self.names {
            if Path::new("/dev/mapper")
                .join(name)
                .exists()
            {
                let _ = Command::new("cryptsetup")
                    .args(["close", name])
                    .status();
            }
        }
    }
}

#[test]
fn block_device_token_pcr_change_recovery_and_reseal() {
    if !have_cryptsetup() || !losetup_works() {
        return;
    }
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let mut env = Env::new("blockdev");
    boot(&swtpm, "boot A");
    let tcti = swtpm.tcti();
    let (_image, disk) = blank_disk(&env, "disk.img", 48);
    let dev = disk.path();

    // --size is for image files only.
    let err = env.fails(
        &[
            "create",
            "--size",
            "48M",
            "--location",
            dev,
            "--password",
            "-",
        ],
        pw(),
        2,
    );
    assert!(
        err.contains(&format!("--size 48M given with the block device {dev}"))
            && err.contains("expected no --size"),
        "{err}"
    );

    let out = env.ok(
        &[
            "create",
            "--location",
            dev,
            "--tpm-seal",
            "--password",
            "-",
            "--tpm",
            &tcti,
            "--fast-kdf-for-tests",
        ],
        pw(),
    );
    assert!(
        out.contains(&format!(
            "created LUKS2 container {dev} (block device, {} bytes)",
            48u64 << 20
        )),
        "{out}"
    );
    assert!(
        out.contains("the seal is in LUKS2 token 0 (type cosmian-tpm2) of the header"),
        "{out}"
    );
    let dev_path = Path::new(dev);
    assert_eq!(keyslots(dev_path), ["0", "1"]);
    let token = read_seal(dev_path);
    assert_eq!(token["keyslot"], 1);
    assert!(!Path::new(&format!("{dev}.tpm.json")).exists());

    let status = env.ok(&["status", "--location", dev], None);
    assert!(
        status.contains(&format!("location: {dev} (block device)")),
        "{status}"
    );
    assert!(
        status.contains(&format!("size: {} bytes", 48u64 << 20)),
        "{status}"
    );
    assert!(status.contains("seal: LUKS2 token 0"), "{status}");
    assert!(status.contains("header check: ok"), "{status}");
    let out = env.ok(&["test-key", "--location", dev, "--tpm", &tcti], None);
    assert!(out.contains("the TPM-unsealed key opens"), "{out}");

    // A formatted (non-blank) device is never formatted again.
    let err = env.fails(
        &[
            "create",
            "--location",
            dev,
            "--password",
            "-",
            "--fast-kdf-for-tests",
        ],
        pw(),
        2,
    );
    assert!(
        err.contains(&format!(
            "refusing to format {dev}: expected a blank device"
        )) && err.contains("found a LUKS header"),
        "{err}"
    );
    assert_eq!(keyslots(dev_path), ["0", "1"]);

    let have_dm = have_device_mapper();
    let mountpoint = env.path("mnt");
    let mp = mountpoint.to_str().unwrap().to_owned();
    let _mapped = Mapped {
        mountpoint: mountpoint.clone(),
        names: vec!["fstool_test_dev"],
    };
    let mount_args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "mount-at-boot",
            "--location",
            dev,
            "--mountpoint",
            &mp,
            "--name",
            "fstool_test_dev",
            "--tpm",
            &tcti,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };

    // The boot chain changes: mount-at-boot fails with exit 4 and the recovery advice, before
    // anything is mapped or the mount point created.
    extend_pcr(&swtpm, 4);
    let args = mount_args(&[]);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .collect();
    let err = env.fails(&args, None, 4);
    assert!(
        err.contains(
            "the TPM did not release the key: the current sha256 PCRs 0,1,2,3,4,5,6,7,8,9 are \
             not those the key was sealed to"
        ) && err.contains("changed since sealing: PCR 4) — the boot chain changed."),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`cosmian_fstool open --location {dev} --name fstool_test_dev --password -`"
        )) && err.contains(&format!(
            "`cosmian_fstool reseal --location {dev} --password -`"
        )),
        "{err}"
    );
    assert!(!mountpoint.exists(), "the mount point was created");

    // The recovery path: mount-at-boot --password - goes without the TPM.
    let args = mount_args(&["--password", "-", "--new"]);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .collect();
    if have_dm {
        let out = env.ok(&args, pw());
        assert!(
            out.contains("made an ext4 file system") && out.contains("unlocked with the password"),
            "{out}"
        );
        assert!(is_mountpoint(&mountpoint));
        let out = env.ok(&args, pw());
        assert!(out.contains("nothing to do"), "{out}");
        assert!(Command::new("umount")
            .arg(&mountpoint)
            .status()
            .unwrap()
            .success());
        env.ok(&["close", "--name", "fstool_test_dev"], None);
    } else {
        // Past the TPM, it stops at the mapping only.
        let err = env.fails(&args, pw(), 1);
        assert!(
            err.contains("cryptsetup open failed") && err.contains("device-mapper"),
            "{err}"
        );
        assert!(!err.contains("TPM"), "{err}");
    }

    // After the intended change: reseal, and the TPM path works again.
    let out = env.ok(
        &[
            "reseal",
            "--location",
            dev,
            "--password",
            "-",
            "--tpm",
            &tcti,
        ],
        pw(),
    );
    assert!(
        out.contains("resealed: a fresh key in keyslot 2")
            && out.contains("the seal is in LUKS2 token 0")
            && out.contains("removed the previous TPM keyslot 1"),
        "{out}"
    );
    assert_eq!(keyslots(dev_path), ["0", "2"]);
    assert_eq!(read_seal(dev_path)["keyslot"], 2);
    env.ok(&["test-key", "--location", dev, "--tpm", &tcti], None);
    let args = mount_args(&[]);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .collect();
    if have_dm {
        // The file system made above is kept (no second mkfs).
        let out = env.ok(&args, None);
        assert!(
            out.contains("unlocked with the TPM-unsealed key")
                && !out.contains("made an ext4 file system"),
            "{out}"
        );
        let out = env.ok(&args, None);
        assert!(out.contains("nothing to do"), "{out}");
        // Open but not mounted: mount-at-boot only mounts (no unseal: a dead TPM is fine).
        assert!(Command::new("umount")
            .arg(&mountpoint)
            .status()
            .unwrap()
            .success());
        let dead = mount_args(&[]);
        let dead: Vec<String> = dead
            .into_iter()
            .map(|a| {
                if a == tcti {
                    "swtpm:host=127.0.0.1,port=9".to_owned()
                } else {
                    a
                }
            })
            .collect();
        let dead: Vec<&str> = dead
            .iter()
            .map(String::as_str)
            .collect();
        let out = env.ok(&dead, None);
        assert!(
            out.contains("is already open on") && out.contains("mounting it (no unlock needed)"),
            "{out}"
        );
        assert!(is_mountpoint(&mountpoint));
    } else {
        let err = env.fails(&args, None, 1);
        assert!(err.contains("device-mapper"), "{err}");
    }
    swtpm.restart();
    env.assert_no_secrets();
}

#[test]
fn block_device_with_content_is_never_formatted() {
    if !have_cryptsetup() || !losetup_works() {
        return;
    }
    let mut env = Env::new("nonblank");
    let (image, disk) = blank_disk(&env, "disk.img", 40);
    // An ext4 file system.
    let mkfs = Command::new("mke2fs")
        .args(["-t", "ext4", "-q", "-F"])
        .arg(disk.path())
        .status()
        .unwrap();
    assert!(mkfs.success());
    let before = std::fs::read(&image).unwrap();
    let err = env.fails(
        &["create", "--location", disk.path(), "--password", "-"],
        pw(),
        2,
    );
    assert!(
        err.contains(
            "expected a blank device (its first 16 MiB, the LUKS2 header area, all zero), found"
        ),
        "{err}"
    );
    // One non-zero byte in the first 4 KiB (a partition table's signature).
    let (image2, disk2) = blank_disk(&env, "disk2.img", 40);
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(disk2.path())
            .unwrap();
        f.seek(SeekFrom::Start(510)).unwrap();
        f.write_all(&[0x55, 0xaa]).unwrap();
        f.sync_all().unwrap();
    }
    let err = env.fails(
        &["create", "--location", disk2.path(), "--password", "-"],
        pw(),
        2,
    );
    assert!(
        err.contains("found data (the first non-zero byte is at offset 510)"),
        "{err}"
    );
    // Too small for LUKS2.
    let (_image3, disk3) = blank_disk(&env, "disk3.img", 20);
    let err = env.fails(
        &["create", "--location", disk3.path(), "--password", "-"],
        pw(),
        2,
    );
    assert!(
        err.contains("expected a device of at least 33554432 bytes")
            && err.contains(&format!("found {} bytes", 20u64 << 20)),
        "{err}"
    );
    drop(disk);
    drop(disk2);
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the ext4 disk was changed"
    );
    assert!(std::fs::read(&image2)
        .unwrap()
        .iter()
        .skip(512)
        .all(|b| *b == 0));
    // Anything that is neither a file nor a block device is refused as a container.
    let err = env.fails(&["status", "--location", "/dev/null"], None, 2);
    assert!(
        err.contains(
            "the container /dev/null is a character device: expected the LUKS2 image \
                      file or the block device"
        ),
        "{err}"
    );
    env.assert_no_secrets();
}

/// A container sealed before the token existed: its seal in `<location>.tpm.json`. It still
/// opens through the TPM, and `reseal` moves the seal into the header and removes the file.
#[test]
fn legacy_seal_file_still_opens_and_reseal_migrates_it() {
    if !have_cryptsetup() {
        return;
    }
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let mut env = Env::new("legacy");
    boot(&swtpm, "boot A");
    let tcti = swtpm.tcti();
    let image = env.path("container");
    let loc = image.to_str().unwrap().to_owned();
    let loc = loc.as_str();
    env.ok(
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
    // Make it legacy: the token's content into the file, the token out of the header.
    let mut token = read_seal(&image);
    let object = token.as_object_mut().unwrap();
    object.remove("type");
    object.remove("keyslots");
    let legacy = PathBuf::from(format!("{loc}.tpm.json"));
    std::fs::write(&legacy, serde_json::to_vec_pretty(&token).unwrap()).unwrap();
    let out = Command::new("cryptsetup")
        .args(["token", "remove", "--token-id", "0", loc])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(luks_json(&image)["tokens"]
        .as_object()
        .unwrap()
        .is_empty());

    let status = env.ok(&["status", "--location", loc], None);
    assert!(
        status.contains(&format!(
            "seal: legacy seal file {} (not in the header: `cosmian_fstool reseal` moves it there)",
            legacy.display()
        )),
        "{status}"
    );
    let out = env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    assert!(out.contains("the TPM-unsealed key opens"), "{out}");

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
    assert!(
        out.contains("resealed: a fresh key in keyslot 2")
            && out.contains(&format!(
                "removed the legacy seal file {} (the seal is now in the header)",
                legacy.display()
            ))
            && out.contains("removed the previous TPM keyslot 1"),
        "{out}"
    );
    assert!(!legacy.exists());
    assert_eq!(read_seal(&image)["keyslot"], 2);
    assert_eq!(keyslots(&image), ["0", "2"]);
    env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    let status = env.ok(&["status", "--location", loc], None);
    assert!(status.contains("seal: LUKS2 token 0"), "{status}");

    // A foreign token type next to ours (a keyring token: cryptsetup would look the
    // passphrase up in the kernel keyring): every command refuses the header (exit 3).
    let out =
        Command::new("cryptsetup")
            .args([
                "token",
                "import",
                "--json-file",
                "-",
                "--token-id",
                "5",
                loc,
            ])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(
                    br#"{"type":"luks2-keyring","keyslots":["0"],"key_description":"k"}"#,
                )?;
                child.wait_with_output()
            })
            .unwrap();
    assert!(out.status.success());
    for args in [
        vec!["status", "--location", loc],
        vec!["test-key", "--location", loc, "--tpm", &tcti],
    ] {
        let err = env.fails(&args, None, 3);
        assert!(
            err.contains(
                "token 5: expected type \"cosmian-tpm2\" (the only token cosmian_fstool writes), \
                 presented \"luks2-keyring\""
            ) && err.contains("tokens: expected at most one"),
            "{err}"
        );
    }
    env.assert_no_secrets();
}

/// `--secret-owner-uid` (and COSMIAN_FSTOOL_SECRET_UID): the key file cryptsetup reads is owned
/// by that uid when cryptsetup reads it (a wrapper first on PATH records its owner).
#[test]
fn secret_files_are_given_to_the_secret_owner_uid() {
    if !have_cryptsetup() {
        return;
    }
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let mut env = Env::new("owner");
    boot(&swtpm, "boot A");
    let tcti = swtpm.tcti();
    let real = [
        "/usr/sbin/cryptsetup",
        "/sbin/cryptsetup",
        "/usr/bin/cryptsetup",
    ]
    .iter()
    .find(|p| Path::new(p).is_file())
    .unwrap();
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = env.path("owners");
    // luksAddKey's last argument is the new key file.
    std::fs::write(
        bin.join("cryptsetup"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = luksAddKey ]; then\n  for last; do :; done\n  \
             stat -c '%u %a' \"$last\" >> {record}\nfi\nexec {real} \"$@\"\n",
            record = record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("cryptsetup"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path_env = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, flag) in [("a", true), ("b", false)] {
        let image = env.path(name);
        let mut cmd = Command::new(BIN);
        cmd.args(["create", "--size", "32M", "--location"])
            .arg(&image)
            .args([
                "--tpm-seal",
                "--tpm",
                &tcti,
                "--password",
                "-",
                "--fast-kdf-for-tests",
            ])
            .env("PATH", &path_env)
            .env("TMPDIR", env.root.join("tmp"))
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if flag {
            cmd.args(["--secret-owner-uid", "60990"]);
        } else {
            cmd.env("COSMIAN_FSTOOL_SECRET_UID", "60990");
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let owners = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        owners, "60990 600\n60990 600\n",
        "owner and mode of the key files"
    );
    // Without it, root keeps them.
    std::fs::remove_file(&record).unwrap();
    let image = env.path("c");
    let mut child = Command::new(BIN)
        .args(["create", "--size", "32M", "--location"])
        .arg(&image)
        .args([
            "--tpm-seal",
            "--tpm",
            &tcti,
            "--password",
            "-",
            "--fast-kdf-for-tests",
        ])
        .env("PATH", &path_env)
        .env("TMPDIR", env.root.join("tmp"))
        .env("TSS2_LOG", "all+none")
        .env_remove("COSMIAN_FSTOOL_SECRET_UID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(child
        .wait_with_output()
        .unwrap()
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "0 600\n");
    let left: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    env.outputs.clear();
}
