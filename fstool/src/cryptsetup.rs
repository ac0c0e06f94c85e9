//! The `cryptsetup` binary. Secrets go to it on stdin (`--key-file -`) or through files in a
//! [`PrivateDir`]; never on its command line. Its stderr is relayed in errors (it never echoes
//! key material).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::header;
use crate::secret::Secret;

/// Key-derivation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// cryptsetup's default for passwords (argon2id, benchmarked to ~2 s on this machine).
    Default,
    /// PBKDF2-SHA512 with 1000 iterations: for a 512-bit random key (the TPM keyslot), where
    /// stretching adds nothing (systemd-cryptenroll does the same for TPM2 keyslots); and,
    /// through the hidden test-only flag, for passwords in tests.
    Minimal,
}

impl Kdf {
    fn args(self) -> Vec<OsString> {
        match self {
            Self::Default => Vec::new(),
            Self::Minimal => ["--pbkdf", "pbkdf2", "--hash", "sha512"]
                .into_iter()
                .chain(["--pbkdf-force-iterations", "1000"])
                .map(OsString::from)
                .collect(),
        }
    }
}

/// `cryptsetup` on `PATH`, else in `/usr/sbin` or `/sbin` (a non-root `PATH` lacks them).
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("cryptsetup"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/cryptsetup", "/sbin/cryptsetup"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("cryptsetup"))
}

/// Run `cryptsetup ARGS`, feeding `stdin` (a secret) when given.
fn run(what: &'static str, args: &[OsString], stdin: Option<&Secret>) -> Result<Output> {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Error::io(
            format!("run cryptsetup (install Debian's cryptsetup-bin) for {what}"),
            e,
        )
    })?;
    if let (Some(secret), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failing write (cryptsetup exited early) shows up in its status below.
        let _ = pipe.write_all(secret.bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for cryptsetup {what}"), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Cryptsetup {
            what,
            status: output.status.code().map_or_else(
                || "killed by a signal".to_owned(),
                |c| format!("exit code {c}"),
            ),
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim()
                .to_owned(),
        })
    }
}

fn args<const N: usize>(items: [&dyn AsRef<std::ffi::OsStr>; N]) -> Vec<OsString> {
    items
        .iter()
        .map(|s| s.as_ref().to_os_string())
        .collect()
}

/// The keyslot area encryption of every keyslot this tool adds (the allow-list in
/// [`crate::header`] accepts exactly this).
fn keyslot_cipher_args() -> Vec<OsString> {
    let bits = (header::KEYSLOT_KEY_BYTES * 8).to_string();
    args([
        &"--keyslot-cipher",
        &header::KEYSLOT_CIPHER,
        &"--keyslot-key-size",
        &bits,
    ])
}

/// `luksFormat --type luks2` with `password` in keyslot 0. Every encryption parameter is
/// explicit (not cryptsetup's build-time default), and is exactly what the allow-list in
/// [`crate::header`] accepts: `aes-xts-plain64`, a 512-bit volume key, 4096-byte sectors, no
/// integrity, data at 16 MiB.
pub fn format(location: &Path, password: &Secret, kdf: Kdf) -> Result<()> {
    let key_bits = (header::VOLUME_KEY_BYTES * 8).to_string();
    let sector = header::SECTOR_SIZE.to_string();
    // --offset counts 512-byte sectors.
    let offset = (header::DATA_OFFSET / 512).to_string();
    let mut a = args([
        &"luksFormat",
        &"--type",
        &"luks2",
        &"--batch-mode",
        &"--cipher",
        &header::SEGMENT_CIPHER,
        &"--key-size",
        &key_bits,
        &"--sector-size",
        &sector,
        &"--offset",
        &offset,
        &"--key-slot",
        &"0",
        &"--key-file",
        &"-",
    ]);
    a.extend(keyslot_cipher_args());
    a.extend(kdf.args());
    a.push(location.into());
    run("luksFormat", &a, Some(password)).map(drop)
}

/// `luksAddKey`: `new_key` into keyslot `slot`, unlocking with `existing` (stdin); the new
/// key goes through a 0600 file in a [`PrivateDir`].
pub fn add_key(
    location: &Path,
    existing: &Secret,
    new_key: &Secret,
    slot: u32,
    kdf: Kdf,
) -> Result<()> {
    let mut dir = PrivateDir::new()?;
    let key_file = dir.write_secret("new-key", new_key)?;
    let slot = slot.to_string();
    let mut a = args([
        &"luksAddKey",
        &"--batch-mode",
        &"--key-file",
        &"-",
        &"--new-key-slot",
        &slot,
    ]);
    a.extend(keyslot_cipher_args());
    a.extend(kdf.args());
    a.push(location.into());
    a.push(key_file.into());
    run("luksAddKey", &a, Some(existing)).map(drop)
}

/// `luksKillSlot`: remove keyslot `slot`, authorised by `password` (which must open another
/// slot).
pub fn kill_slot(location: &Path, password: &Secret, slot: u32) -> Result<()> {
    let slot = slot.to_string();
    let a = args([
        &"luksKillSlot",
        &"--batch-mode",
        &"--key-file",
        &"-",
        &location,
        &slot,
    ]);
    run("luksKillSlot", &a, Some(password)).map(drop)
}

/// `open --test-passphrase`: whether `key` opens the container (in keyslot `slot` when
/// given), reading the header from `header` when given. No device-mapper needed.
pub fn test_key(
    location: &Path,
    header: Option<&Path>,
    key: &Secret,
    slot: Option<u32>,
) -> Result<()> {
    let mut a = args([&"open", &"--test-passphrase", &"--key-file", &"-"]);
    if let Some(slot) = slot {
        a.push("--key-slot".into());
        a.push(slot.to_string().into());
    }
    if let Some(header) = header {
        a.push("--header".into());
        a.push(header.into());
    }
    a.push(location.into());
    run("open --test-passphrase", &a, Some(key)).map(drop)
}

/// `open`: map the container as `/dev/mapper/NAME` (needs device-mapper and root).
pub fn open(location: &Path, header: Option<&Path>, name: &str, key: &Secret) -> Result<()> {
    let mut a = args([&"open", &"--type", &"luks2", &"--key-file", &"-"]);
    if let Some(header) = header {
        a.push("--header".into());
        a.push(header.into());
    }
    a.push(location.into());
    a.push(name.into());
    run("open", &a, Some(key)).map(drop)
}

/// `close NAME`.
pub fn close(name: &str) -> Result<()> {
    run("close", &args([&"close", &name]), None).map(drop)
}

/// `luksDump --dump-json-metadata`: the LUKS2 JSON metadata (no key material).
pub fn dump_json(location: &Path) -> Result<String> {
    let out = run(
        "luksDump",
        &args([&"luksDump", &"--dump-json-metadata", &location]),
        None,
    )?;
    String::from_utf8(out.stdout)
        .map_err(|_| Error::Other("cryptsetup luksDump printed non-UTF-8 JSON".into()))
}

/// `luksUUID`.
pub fn uuid(location: &Path) -> Result<String> {
    let out = run("luksUUID", &args([&"luksUUID", &location]), None)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .to_owned())
}

/// `luksHeaderBackup` into `dir`: a private copy (mode 0600, in the 0700 directory) of the
/// header, so the header that is checked is the very one `cryptsetup open --header` (or
/// `reseal`) then uses (no swap in between).
pub fn header_copy(location: &Path, dir: &PrivateDir) -> Result<PathBuf> {
    let copy = dir.path_for("header");
    run(
        "luksHeaderBackup",
        &args([
            &"luksHeaderBackup",
            &"--batch-mode",
            &location,
            &"--header-backup-file",
            &copy,
        ]),
        None,
    )?;
    // cryptsetup makes the backup read-only (0400): reseal changes keyslots in it.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod 0600 {}", copy.display()), e))?;
    Ok(copy)
}

/// `luksHeaderRestore`: write the header (metadata and keyslot areas) of `backup` over that of
/// `location`, in place; the data area is not touched.
pub fn header_restore(location: &Path, backup: &Path) -> Result<()> {
    run(
        "luksHeaderRestore",
        &args([
            &"luksHeaderRestore",
            &"--batch-mode",
            &location,
            &"--header-backup-file",
            &backup,
        ]),
        None,
    )
    .map(drop)
}

/// `token import --token-id ID [--token-replace]`: the token JSON (not secret: the sealed blob
/// is encrypted by the TPM) on stdin, into the header at `location` (the private copy).
pub fn token_import(location: &Path, token_id: u32, json: &[u8], replace: bool) -> Result<()> {
    let id = token_id.to_string();
    let mut a = args([
        &"token",
        &"import",
        &"--json-file",
        &"-",
        &"--token-id",
        &id,
    ]);
    if replace {
        a.push("--token-replace".into());
    }
    a.push(location.into());
    run("token import", &a, Some(&Secret::new(json.to_vec()))).map(drop)
}

/// `status NAME`: the active mapping's description (type, cipher, device, loop file, ...).
pub fn status(name: &str) -> Result<String> {
    let out = run("status", &args([&"status", &name]), None)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
