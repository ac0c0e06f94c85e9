//! Attacks on `cosmian_fstool` by whoever controls the disk (the host of a confidential VM),
//! each run for real: the forged LUKS2 headers are real cryptsetup headers (the JSON metadata
//! rewritten, both header copies' SHA-256 checksums recomputed, and `cryptsetup luksDump`
//! shown to read the forgery back), and every entry point that reads, trusts or changes the
//! header (`status`, `test-key` with the password and with the TPM, `open`, `mount-at-boot`,
//! `reseal`) is run as a real process and must refuse, naming the forged value.
//!
//! Nothing here skips: a missing cryptsetup, swtpm or systemd-analyze fails the test
//! (scripts/setup.sh installs them).

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
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cosmian_fstool");
const PASSWORD: &str = "attack test password 1234";
/// A TCTI nothing listens on: the header checks must come before any TPM use.
const DEAD_TCTI: &str = "swtpm:host=127.0.0.1,port=9";

/// The real cryptsetup binary; its absence fails the test.
fn cryptsetup_bin() -> PathBuf {
    [
        "/usr/sbin/cryptsetup",
        "/sbin/cryptsetup",
        "/usr/bin/cryptsetup",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("cryptsetup is required (apt-get install cryptsetup-bin; scripts/setup.sh)")
}

fn cryptsetup(args: &[&str]) -> Output {
    Command::new(cryptsetup_bin())
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap()
}

/// A scratch directory: `work/` for images, `tmp/` for the tool's TMPDIR (empty after every
/// run: no header copy or key file left behind).
struct Env {
    root: PathBuf,
}

impl Env {
    fn new(name: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("fstool-attack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("work")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        Self { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>, path_env: Option<&str>) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("TMPDIR", self.root.join("tmp"))
            .env("TSS2_LOG", "all+none")
            .env_remove("COSMIAN_FSTOOL_TPM")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = path_env {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            // A refusal may come before stdin is read: a broken pipe is fine.
            let _ = child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "$ cosmian_fstool {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let left: Vec<_> = std::fs::read_dir(self.root.join("tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
        out
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_with(args, stdin, None)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A password-only container made by the tool itself, with a (dummy) seal file so that the
    /// TPM paths get as far as they can.
    fn genuine(&self, name: &str) -> PathBuf {
        let image = self.path(name);
        self.ok(
            &[
                "create",
                "--size",
                "32M",
                "--location",
                image.to_str().unwrap(),
                "--password",
                "-",
                "--fast-kdf-for-tests",
            ],
            Some(PASSWORD),
        );
        std::fs::write(format!("{}.tpm.json", image.display()), b"{}").unwrap();
        image
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn luks_json(image: &Path) -> Value {
    let out = cryptsetup(&["luksDump", "--dump-json-metadata", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "cryptsetup rejects {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn luks_dump_text(image: &Path) -> String {
    let out = cryptsetup(&["luksDump", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "cryptsetup rejects {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rewrite the LUKS2 JSON metadata of `image` with `edit`, in both header copies, with their
/// checksums recomputed. The LUKS2 on-disk format: a 4096-byte binary header (magic, version,
/// `hdr_size` big-endian at byte 8, …, the checksum at byte 448, 64 bytes) followed by the JSON
/// area (zero-padded) up to `hdr_size`; the secondary copy starts at `hdr_size`. The checksum
/// (`sha256`) covers the whole `hdr_size` bytes with the checksum field zeroed.
fn forge(image: &Path, edit: &dyn Fn(&mut Value)) {
    let mut bytes = std::fs::read(image).unwrap();
    assert_eq!(&bytes[0..6], b"LUKS\xba\xbe", "primary magic");
    let hdr_size = usize::try_from(u64::from_be_bytes(bytes[8..16].try_into().unwrap())).unwrap();
    assert_eq!(
        &bytes[hdr_size..hdr_size + 6],
        b"SKUL\xba\xbe",
        "secondary magic"
    );
    for offset in [0, hdr_size] {
        let header = &mut bytes[offset..offset + hdr_size];
        let csum_alg = &header[72..104];
        assert!(csum_alg.starts_with(b"sha256\0"), "checksum algorithm");
        let json_area = &header[4096..];
        let end = json_area
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(json_area.len());
        let mut json: Value = serde_json::from_slice(&json_area[..end]).unwrap();
        edit(&mut json);
        let text = serde_json::to_vec(&json).unwrap();
        assert!(text.len() < hdr_size - 4096, "forged JSON too large");
        let area = &mut header[4096..];
        area.fill(0);
        area[..text.len()].copy_from_slice(&text);
        header[448..512].fill(0);
        let sum = ring::digest::digest(&ring::digest::SHA256, header);
        header[448..448 + 32].copy_from_slice(sum.as_ref());
    }
    std::fs::write(image, bytes).unwrap();
}

/// Every entry point refuses `image` with exit status 3, naming `needle` (the forged value);
/// nothing is unsealed, mapped, mounted, created or written.
fn refused_everywhere(env: &Env, image: &Path, needle: &str) {
    let loc = image.to_str().unwrap();
    let before = std::fs::read(image).unwrap();
    let seal_before = std::fs::read(format!("{loc}.tpm.json")).unwrap();
    let mountpoint = env.path("mnt");
    let mp = mountpoint.to_str().unwrap();
    let cases: [(&str, Vec<&str>, Option<&str>); 6] = [
        ("status", vec!["status", "--location", loc], None),
        (
            "test-key (password)",
            vec!["test-key", "--location", loc, "--password", "-"],
            Some(PASSWORD),
        ),
        (
            "test-key (TPM)",
            vec!["test-key", "--location", loc, "--tpm", DEAD_TCTI],
            None,
        ),
        (
            "open",
            vec![
                "open",
                "--location",
                loc,
                "--name",
                "fstool_attack",
                "--password",
                "-",
            ],
            Some(PASSWORD),
        ),
        (
            "mount-at-boot",
            vec![
                "mount-at-boot",
                "--location",
                loc,
                "--mountpoint",
                mp,
                "--name",
                "fstool_attack",
                "--tpm",
                DEAD_TCTI,
            ],
            None,
        ),
        (
            "reseal",
            vec![
                "reseal",
                "--location",
                loc,
                "--password",
                "-",
                "--tpm",
                DEAD_TCTI,
            ],
            Some(PASSWORD),
        ),
    ];
    for (what, args, stdin) in cases {
        let out = env.run(&args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{what} must refuse the forged header (exit 3): {stderr}"
        );
        assert!(
            stderr.contains("the LUKS2 header is not the encryption cosmian_fstool creates")
                && stderr.contains(needle),
            "{what}: the refusal must name {needle}: {stderr}"
        );
        assert!(
            stderr.contains("expected") && stderr.contains("presented"),
            "{what}: expected vs presented: {stderr}"
        );
        assert!(!stderr.contains("TPM:"), "{what} reached the TPM: {stderr}");
        if what == "status" {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("header check: UNSAFE, refused"), "{stdout}");
        }
    }
    assert_eq!(
        std::fs::read(image).unwrap(),
        before,
        "the container was changed"
    );
    assert_eq!(
        std::fs::read(format!("{loc}.tpm.json")).unwrap(),
        seal_before,
        "the seal file was changed"
    );
    assert!(!mountpoint.exists(), "the mount point was created");
}

/// Forge one header of a fresh genuine container with `edit`, check that cryptsetup reads the
/// forgery (`luks_dump_shows` in `cryptsetup luksDump`), then run every entry point.
fn forged_header_refused(
    name: &str,
    edit: &dyn Fn(&mut Value),
    luks_dump_shows: &str,
    needle: &str,
) {
    let env = Env::new(name);
    let image = env.genuine("container");
    forge(&image, edit);
    let dump = luks_dump_text(&image);
    assert!(
        dump.contains(luks_dump_shows),
        "cryptsetup does not read the forgery ({luks_dump_shows}):\n{dump}"
    );
    refused_everywhere(&env, &image, needle);
}

fn set_segment_cipher(cipher: &'static str) -> impl Fn(&mut Value) {
    move |j: &mut Value| j["segments"]["0"]["encryption"] = Value::from(cipher)
}

#[test]
fn attack_fstool_segment_capi_cipher_null() {
    // Keeps the real keyslots; dm-crypt would get an empty key: the disk in clear.
    forged_header_refused(
        "capi-null",
        &set_segment_cipher("capi:ecb(cipher_null)-plain"),
        "cipher: capi:ecb(cipher_null)-plain",
        "segment 0: expected cipher \"aes-xts-plain64\", presented \"capi:ecb(cipher_null)-plain\"",
    );
}

#[test]
fn attack_fstool_segment_aes_xts_null_iv() {
    // The same IV for every sector: equal plaintext blocks at equal offsets show.
    forged_header_refused(
        "xts-null",
        &set_segment_cipher("aes-xts-null"),
        "cipher: aes-xts-null",
        "presented \"aes-xts-null\"",
    );
}

#[test]
fn attack_fstool_segment_cipher_null_ecb() {
    forged_header_refused(
        "null-ecb",
        &set_segment_cipher("cipher_null-ecb"),
        "cipher: cipher_null-ecb",
        "presented \"cipher_null-ecb\"",
    );
}

#[test]
fn attack_fstool_segment_aes_cbc_plain() {
    // A weaker mode (malleable CBC, predictable plain IV) than the one create makes.
    forged_header_refused(
        "cbc-plain",
        &set_segment_cipher("aes-cbc-plain"),
        "cipher: aes-cbc-plain",
        "presented \"aes-cbc-plain\"",
    );
}

#[test]
fn attack_fstool_volume_key_size_256_bits() {
    // AES-128-XTS instead of AES-256-XTS: the keyslot says the volume key has 32 bytes.
    forged_header_refused(
        "key-size",
        &|j: &mut Value| j["keyslots"]["0"]["key_size"] = Value::from(32),
        "Key:        256 bits",
        "keyslot 0: expected volume key_size 64 (bytes, 512 bits), presented 32",
    );
}

#[test]
fn attack_fstool_segment_sector_size_512() {
    forged_header_refused(
        "sector",
        &|j: &mut Value| j["segments"]["0"]["sector_size"] = Value::from(512),
        "sector: 512 [bytes]",
        "segment 0: expected sector_size 4096, presented 512",
    );
}

#[test]
fn attack_fstool_segment_integrity_added() {
    forged_header_refused(
        "integrity",
        &|j: &mut Value| {
            j["segments"]["0"]["integrity"] = serde_json::json!({
                "type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"
            });
        },
        "integrity: hmac(sha256)",
        "segment 0: expected no \"integrity\" field",
    );
}

#[test]
fn attack_fstool_second_segment_cipher_null() {
    // Segment 0 stays genuine but ends after 4 MiB; segment 1, in clear, covers the rest.
    forged_header_refused(
        "second-segment",
        &|j: &mut Value| {
            let mut second = j["segments"]["0"].clone();
            j["segments"]["0"]["size"] = Value::from("4194304");
            second["offset"] = Value::from("20971520");
            second["encryption"] = Value::from("cipher_null-ecb");
            j["segments"]["1"] = second;
            j["digests"]["0"]["segments"] = serde_json::json!(["0", "1"]);
        },
        "cipher: cipher_null-ecb",
        "segment 1: expected only segment \"0\"",
    );
}

#[test]
fn attack_fstool_keyslot_area_cipher_null() {
    // A keyslot whose area is not encrypted opens with any passphrase (the host's volume key).
    forged_header_refused(
        "slot-null",
        &|j: &mut Value| {
            j["keyslots"]["0"]["area"]["encryption"] = Value::from("cipher_null-ecb");
        },
        "Cipher:     cipher_null-ecb",
        "keyslot 0: expected area cipher \"aes-xts-plain64\", presented \"cipher_null-ecb\"",
    );
}

#[test]
fn attack_fstool_keyslot_area_capi_cipher_null() {
    forged_header_refused(
        "slot-capi",
        &|j: &mut Value| {
            j["keyslots"]["0"]["area"]["encryption"] = Value::from("capi:ecb(cipher_null)-plain");
        },
        "Cipher:     capi:ecb(cipher_null)-plain",
        "presented \"capi:ecb(cipher_null)-plain\"",
    );
}

#[test]
fn attack_fstool_allow_discards_flag() {
    // Persistent discards would show the host which blocks are in use.
    forged_header_refused(
        "discards",
        &|j: &mut Value| j["config"]["flags"] = serde_json::json!(["allow-discards"]),
        "Flags:       \tallow-discards",
        "config: expected no flags, presented [\"allow-discards\"]",
    );
}

#[test]
fn attack_fstool_foreign_token_type() {
    // A token of another tool (its plugin, or a keyring lookup, might act on it): refused.
    forged_header_refused(
        "foreign-token",
        &|j: &mut Value| {
            j["tokens"]["1"] = serde_json::json!({"type": "systemd-tpm2", "keyslots": ["0"]});
        },
        "1: systemd-tpm2",
        "token 1: expected type \"cosmian-tpm2\" (the only token cosmian_fstool writes), \
         presented \"systemd-tpm2\"",
    );
}

/// The host edits our token to weaken the policy (PCR 7 only, a PCR it can reproduce): the
/// sealed object's authPolicy is inside the TPM-protected blob, so the TPM refuses (exit 4,
/// naming both digests); the header check still passes and the password still opens. Editing
/// the token can only deny the TPM path.
#[test]
fn attack_fstool_token_policy_weakened_by_host() {
    let env = Env::new("token-edit");
    let swtpm = Swtpm::start().expect("swtpm is required (scripts/setup.sh)");
    simulate_boot(&open_tpm(&swtpm).unwrap(), "token-edit").unwrap();
    let tcti = swtpm.tcti();
    let image = env.path("container");
    let loc = image.to_str().unwrap();
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
        Some(PASSWORD),
    );
    let sealed_digest = luks_json(&image)["tokens"]["0"]["policy_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    forge(&image, &|j: &mut Value| {
        j["tokens"]["0"]["pcrs"] = serde_json::json!([7]);
        j["tokens"]["0"]["policy_digest"] = Value::from("00".repeat(32));
    });
    assert_eq!(
        luks_json(&image)["tokens"]["0"]["pcrs"],
        serde_json::json!([7])
    );
    let out = env.run(&["test-key", "--location", loc, "--tpm", &tcti], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the TPM did not release the key: the current sha256 PCRs 7 are not")
            && stderr.contains(&format!("policy digest sealed {sealed_digest}, current ")),
        "the sealed digest comes from the blob, not the edited record: {stderr}"
    );
    let status = env.ok(&["status", "--location", loc], None);
    assert!(status.contains("header check: ok"), "{status}");
    env.ok(
        &["test-key", "--location", loc, "--password", "-"],
        Some(PASSWORD),
    );
    drop(swtpm);
}

/// The control: the genuine container passes every check the attacks fail (so a refusal above
/// is about the forged value, not about everything), and stops only where it must.
#[test]
fn attack_fstool_control_genuine_container_accepted() {
    let env = Env::new("genuine");
    let image = env.genuine("container");
    let loc = image.to_str().unwrap();
    let json = luks_json(&image);
    assert_eq!(json["segments"]["0"]["encryption"], "aes-xts-plain64");
    assert_eq!(json["segments"]["0"]["sector_size"], 4096);
    assert_eq!(json["keyslots"]["0"]["key_size"], 64);
    let out = env.run(&["status", "--location", loc], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The dummy seal file makes status report it, but the header check passes.
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("header check: ok"), "{stdout}");
    env.ok(
        &["test-key", "--location", loc, "--password", "-"],
        Some(PASSWORD),
    );
    // mount-at-boot passes the header and mount point checks and stops at the (dummy) seal.
    let out = env.run(
        &[
            "mount-at-boot",
            "--location",
            loc,
            "--mountpoint",
            env.path("mnt").to_str().unwrap(),
            "--tpm",
            DEAD_TCTI,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a valid seal file"), "{stderr}");
    // A header forged back to exactly the genuine values is accepted again (the checksum
    // rewrite alone is not what the tool refuses).
    forge(&image, &|j: &mut Value| {
        j["segments"]["0"]["encryption"] = Value::from("aes-xts-plain64");
    });
    env.ok(
        &["test-key", "--location", loc, "--password", "-"],
        Some(PASSWORD),
    );
}

#[test]
fn attack_fstool_missing_container_mount_at_boot() {
    let env = Env::new("missing");
    let image = env.path("container");
    let mountpoint = env.path("mnt");
    std::fs::write(format!("{}.tpm.json", image.display()), b"{}").unwrap();
    for args in [
        vec![
            "mount-at-boot",
            "--location",
            image.to_str().unwrap(),
            "--mountpoint",
            mountpoint.to_str().unwrap(),
            "--tpm",
            DEAD_TCTI,
        ],
        vec!["status", "--location", image.to_str().unwrap()],
        vec![
            "test-key",
            "--location",
            image.to_str().unwrap(),
            "--tpm",
            DEAD_TCTI,
        ],
    ] {
        let out = env.run(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "the container {} does not exist: refusing to go on without it",
                image.display()
            )),
            "{stderr}"
        );
    }
    assert!(!image.exists(), "a container was created");
    assert!(!mountpoint.exists(), "the mount point was created");
}

#[test]
fn attack_fstool_preseeded_mountpoint() {
    let env = Env::new("preseed");
    let image = env.genuine("container");
    let mountpoint = env.path("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    // What the host (or an agent run without the container) left in the clear.
    std::fs::write(mountpoint.join("key.pem"), b"host-chosen key").unwrap();
    let out = env.run(
        &[
            "mount-at-boot",
            "--location",
            image.to_str().unwrap(),
            "--mountpoint",
            mountpoint.to_str().unwrap(),
            "--tpm",
            DEAD_TCTI,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the mount point {} is not empty",
            mountpoint.display()
        )) && stderr.contains("\"key.pem\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("seal"),
        "stopped before the seal: {stderr}"
    );
    assert_eq!(
        std::fs::read(mountpoint.join("key.pem")).unwrap(),
        b"host-chosen key"
    );

    // A symbolic link (to an empty directory elsewhere) and a file are refused too.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let file = env.path("file");
    std::fs::write(&file, b"").unwrap();
    for (path, what) in [(&link, "symbolic link"), (&file, "file, not a directory")] {
        let out = env.run(
            &[
                "mount-at-boot",
                "--location",
                image.to_str().unwrap(),
                "--mountpoint",
                path.to_str().unwrap(),
                "--tpm",
                DEAD_TCTI,
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("is a {what}")), "{stderr}");
    }
}

/// The host swaps the container's header right after `reseal` took its private copy (a
/// `cryptsetup` wrapper first on PATH does it at the moment the copy is made). The swapped-in
/// header is one the host can open with the password the VM is about to use (standing for a
/// `cipher_null` keyslot, which opens with any passphrase): had `reseal` run `luksAddKey` on
/// the container, the new TPM keyslot would wrap the host's volume key. It must instead work
/// on its checked copy and write that back: afterwards the container has the original UUID and
/// volume key digest, and the TPM key opens it.
#[test]
fn attack_fstool_reseal_header_swap_after_check() {
    let env = Env::new("toctou");
    let swtpm = Swtpm::start().expect("swtpm is required (scripts/setup.sh)");
    simulate_boot(&open_tpm(&swtpm).unwrap(), "toctou").unwrap();
    let tcti = swtpm.tcti();
    let image = env.path("container");
    let loc = image.to_str().unwrap();
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
        Some(PASSWORD),
    );
    let original = luks_json(&image);
    let original_uuid = String::from_utf8(cryptsetup(&["luksUUID", loc]).stdout).unwrap();

    // The host's header: its own container, its own volume key.
    let evil = env.path("evil");
    env.ok(
        &[
            "create",
            "--size",
            "32M",
            "--location",
            evil.to_str().unwrap(),
            "--password",
            "-",
            "--fast-kdf-for-tests",
        ],
        Some(PASSWORD),
    );
    let evil_header = env.path("evil.header");
    let out = cryptsetup(&[
        "luksHeaderBackup",
        "--batch-mode",
        evil.to_str().unwrap(),
        "--header-backup-file",
        evil_header.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let evil_uuid =
        String::from_utf8(cryptsetup(&["luksUUID", evil.to_str().unwrap()]).stdout).unwrap();
    assert_ne!(evil_uuid, original_uuid);

    // The wrapper: after the first luksHeaderBackup (fstool's private copy), the host writes
    // its header over the container's.
    let bin_dir = env.path("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let marker = env.path("swapped");
    let wrapper = bin_dir.join("cryptsetup");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{real} \"$@\"\nrc=$?\nif [ \"$1\" = luksHeaderBackup ] && [ ! -e {marker} ]; then\n  \
             touch {marker}\n  dd if={evil} of={container} conv=notrunc status=none\nfi\nexit $rc\n",
            real = cryptsetup_bin().display(),
            marker = marker.display(),
            evil = evil_header.display(),
            container = image.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path_env = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let out = env.run_with(
        &[
            "reseal",
            "--location",
            loc,
            "--password",
            "-",
            "--tpm",
            &tcti,
        ],
        Some(PASSWORD),
        Some(&path_env),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "the header swap did not happen");
    assert!(
        stdout.contains("resealed: a fresh key in keyslot 2"),
        "{stdout}"
    );

    // The container has the checked header back, with the new TPM keyslot in it.
    let uuid = String::from_utf8(cryptsetup(&["luksUUID", loc]).stdout).unwrap();
    assert_eq!(uuid, original_uuid, "the host's header survived the reseal");
    let after = luks_json(&image);
    assert_eq!(
        after["digests"]["0"]["digest"], original["digests"]["0"]["digest"],
        "the volume key changed"
    );
    let mut slots: Vec<&String> = after["keyslots"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    slots.sort();
    assert_eq!(slots, ["0", "2"]);
    // Both ways in open the original volume.
    let out = env.ok(&["test-key", "--location", loc, "--tpm", &tcti], None);
    assert!(out.contains("the TPM-unsealed key opens"), "{out}");
    env.ok(
        &["test-key", "--location", loc, "--password", "-"],
        Some(PASSWORD),
    );
    drop(swtpm);
}

/// The units fail closed: no `ConditionPathExists` (a missing container is a failure, not a
/// skip), and the agent requires and is ordered after the mount unit, and checks the mount
/// point is mounted before starting. `systemd-analyze verify` checks both units.
#[test]
fn attack_fstool_boot_unit_fail_closed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mount_unit_path = root.join("fstool/packaging/cosmian_fstool_mount.service");
    let agent_unit_path = root.join("agent/packaging/cosmian_vm_agent.service");
    let mount_unit = std::fs::read_to_string(&mount_unit_path).unwrap();
    let agent_unit = std::fs::read_to_string(&agent_unit_path).unwrap();
    let directives = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .map(str::to_owned)
            .collect()
    };
    let mount = directives(&mount_unit);
    let agent = directives(&agent_unit);
    assert!(
        !mount
            .iter()
            .any(|l| l.starts_with("Condition")),
        "a Condition turns a deleted container into a silent skip: {mount:?}"
    );
    assert!(
        mount
            .iter()
            .any(|l| l.starts_with("ExecStart=/usr/sbin/cosmian_fstool mount-at-boot")),
        "{mount:?}"
    );
    assert!(mount
        .iter()
        .any(|l| l == "Before=cosmian_vm_agent.service"));
    let has = |key: &str, unit: &str| {
        agent.iter().any(|l| {
            l.strip_prefix(key)
                .is_some_and(|v| v.split_whitespace().any(|u| u == unit))
        })
    };
    assert!(
        has("Requires=", "cosmian_fstool_mount.service"),
        "{agent:?}"
    );
    assert!(has("After=", "cosmian_fstool_mount.service"), "{agent:?}");
    assert!(
        agent
            .iter()
            .any(|l| l == "ExecStartPre=/usr/bin/mountpoint -q /var/lib/cosmian_vm/data"),
        "{agent:?}"
    );

    // systemd-analyze verify on a scratch root: the distribution's units (targets), stubs for
    // the programs the units run, and every unit the packages install (these two, the agent's
    // tmpfs and the proxy's).
    let tmp_unit =
        std::fs::read_to_string(root.join("agent/packaging/var-lib-cosmian_vm-tmp.mount")).unwrap();
    let proxy_unit =
        std::fs::read_to_string(root.join("proxy/packaging/cosmian_vm_proxy.service")).unwrap();
    assert!(has("Wants=", "var-lib-cosmian_vm-tmp.mount"), "{agent:?}");
    assert!(has("After=", "var-lib-cosmian_vm-tmp.mount"), "{agent:?}");
    let proxy = directives(&proxy_unit);
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("systemd-analyze is required (Debian systemd; scripts/setup.sh)");
    let env = Env::new("units");
    let sysroot = env.path("root");
    let unit_dir = sysroot.join("etc/systemd/system");
    std::fs::create_dir_all(&unit_dir).unwrap();
    std::fs::create_dir_all(sysroot.join("usr/lib/systemd")).unwrap();
    let cp = Command::new("cp")
        .arg("-r")
        .arg("/usr/lib/systemd/system")
        .arg(sysroot.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(cp.success());
    for line in mount
        .iter()
        .chain(agent.iter())
        .chain(proxy.iter())
    {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.starts_with("Exec") {
            continue;
        }
        let program = value
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .next()
            .unwrap();
        let stub = sysroot.join(program.trim_start_matches('/'));
        std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
        std::fs::write(&stub, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let units = [
        ("cosmian_fstool_mount.service", &mount_unit),
        ("cosmian_vm_agent.service", &agent_unit),
        ("var-lib-cosmian_vm-tmp.mount", &tmp_unit),
        ("cosmian_vm_proxy.service", &proxy_unit),
    ];
    for (name, text) in units {
        std::fs::write(unit_dir.join(name), text).unwrap();
    }
    let out = Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", sysroot.display()))
        .args(
            units
                .iter()
                .map(|(name, _)| unit_dir.join(name)),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
