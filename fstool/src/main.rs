//! `cosmian_fstool`: a LUKS2 container image (through `cryptsetup`) whose key can be sealed in
//! the TPM under a PCR policy, so that only an unchanged machine unlocks it at boot; the
//! password keyslot stays the recovery path. See `docs/fstool.md`.
//!
//! Secrets (the password, the sealed key) never appear on a command line, in output or in
//! logs: they reach `cryptsetup` on stdin or through 0600 files in a 0700 directory that is
//! wiped and removed, and they are zeroed in memory when dropped.

#![forbid(unsafe_code)]

mod container;
mod cryptsetup;
mod error;
mod files;
mod header;
mod mountpoint;
mod seal;
mod secret;
mod size;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Parser, Subcommand};

use crate::container::Kind;
use crate::cryptsetup::Kdf;
use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::header::Metadata;
use crate::seal::SealedKey;
use crate::secret::{read_password, Secret};

/// The TPM-sealed key: 64 random bytes (a 512-bit passphrase for its keyslot).
const TPM_KEY_LEN: usize = 64;
/// The password's keyslot in a container this tool creates.
const PASSWORD_SLOT: u32 = 0;
/// The TPM keyslot in a container this tool creates.
const TPM_SLOT: u32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "cosmian_fstool",
    version,
    about = "Create and open a LUKS2 container whose key is sealed in the TPM",
    long_about = "Create and open a LUKS2 container whose key is sealed in the TPM.\n\n\
        `cosmian_fstool --size 500M --location PATH --password -` (the seed form) is \
        `cosmian_fstool create ...`. Passwords are read from stdin with `--password -`, or \
        prompted for without echo on a terminal; never taken from the command line.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    create: CreateArgs,
    /// TEST ONLY: PBKDF2 with 1000 iterations for the password keyslot, so tests run fast.
    /// Never use it for a real container: it makes the password cheap to brute-force.
    #[arg(long, global = true, hide = true)]
    fast_kdf_for_tests: bool,
    /// Give every temporary secret file (the key files handed to cryptsetup) to this uid right
    /// after creating it, before anything reads it: the recommended IMA policy does not measure
    /// files owned by the agent's unmeasured uid (60990), so the key's SHA-256 never reaches
    /// the IMA log.
    #[arg(
        long,
        global = true,
        env = "COSMIAN_FSTOOL_SECRET_UID",
        value_name = "UID"
    )]
    secret_owner_uid: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a LUKS2 container: a new image file, or a whole blank block device (refuses to
    /// overwrite either), optionally TPM-sealed (the seal goes into a LUKS2 token).
    Create(CreateArgs),
    /// Unlock (TPM, or the password with --password) and map it as /dev/mapper/NAME.
    Open(OpenArgs),
    /// Unmap /dev/mapper/NAME.
    Close {
        #[arg(long)]
        name: String,
    },
    /// Show the LUKS header summary, the header check and where the TPM seal is (no secrets).
    Status {
        #[arg(long)]
        location: PathBuf,
    },
    /// After an intended change of the PCRs: seal a fresh key under the current PCRs,
    /// replacing the TPM keyslot (authorised by the password).
    Reseal(ResealArgs),
    /// Check the key without mapping anything (`cryptsetup open --test-passphrase`): the
    /// TPM-unsealed key, or the password with --password.
    #[command(name = "test-key", alias = "unseal-check")]
    TestKey(KeyArgs),
    /// What the boot unit runs: check the header, unseal (or use the recovery password with
    /// --password -), open, mount (and make an ext4 file system on first use). Idempotent.
    MountAtBoot(MountArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Container image file size: bytes, or with a K, M, G or T suffix (powers of 1024), e.g.
    /// 500M, 2G. Required for a file; refused for a block device (used whole).
    #[arg(long)]
    size: Option<String>,
    /// The container: an image file to create (must not exist), or a blank block device to
    /// format (its first 4 KiB all zero; symbolic links such as /dev/disk/by-id/... followed).
    #[arg(long)]
    location: Option<PathBuf>,
    /// `-`: read the password from stdin (nothing else is accepted).
    #[arg(long, value_name = "-")]
    password: Option<String>,
    /// Also seal a random key in the TPM (second keyslot) under a PCR policy.
    #[arg(long)]
    tpm_seal: bool,
    /// The SHA-256 PCRs of the policy.
    #[arg(long, default_value = "0,1,2,3,4,5,6,7,8,9")]
    pcrs: String,
    #[command(flatten)]
    tpm: TpmArg,
}

#[derive(Debug, Args)]
struct TpmArg {
    /// The TPM (TCTI): device:/dev/tpmrm0, swtpm:host=H,port=P, mssim:...
    #[arg(long = "tpm", env = "COSMIAN_FSTOOL_TPM", default_value = seal::DEFAULT_TCTI)]
    tcti: String,
}

#[derive(Debug, Args)]
struct KeyArgs {
    #[arg(long)]
    location: PathBuf,
    /// `-`: use the password from stdin instead of the TPM (the recovery path).
    #[arg(long, value_name = "-")]
    password: Option<String>,
    #[command(flatten)]
    tpm: TpmArg,
}

#[derive(Debug, Args)]
struct OpenArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The device-mapper name (/dev/mapper/NAME).
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
struct ResealArgs {
    #[arg(long)]
    location: PathBuf,
    /// `-`: read the password from stdin (prompted for on a terminal when omitted).
    #[arg(long, value_name = "-")]
    password: Option<String>,
    /// The SHA-256 PCRs of the new policy (default: those of the current seal, else 0–9).
    #[arg(long)]
    pcrs: Option<String>,
    #[command(flatten)]
    tpm: TpmArg,
}

#[derive(Debug, Args)]
struct MountArgs {
    #[arg(long, default_value = "/var/lib/cosmian_vm/container")]
    location: PathBuf,
    #[arg(long, default_value = "/var/lib/cosmian_vm/data")]
    mountpoint: PathBuf,
    #[arg(long, default_value = "cosmian_vm_data")]
    name: String,
    /// `-`: the recovery path: open with the password from stdin instead of the TPM.
    #[arg(long, value_name = "-")]
    password: Option<String>,
    /// The container was created just now: make its ext4 file system. Without this flag an
    /// opened container that holds no file system is refused (its data area was damaged or
    /// altered, e.g. by the host flipping ciphertext bits; formatting it would erase the VM's
    /// state and hand the host a new, empty container).
    #[arg(long)]
    new: bool,
    #[command(flatten)]
    tpm: TpmArg,
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("cosmian_fstool: error: {error}");
        std::process::exit(error.exit_code());
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(uid) = cli.secret_owner_uid {
        files::set_secret_owner(uid)?;
    }
    let kdf = if cli.fast_kdf_for_tests {
        eprintln!(
            "cosmian_fstool: WARNING: --fast-kdf-for-tests: weak password key derivation \
             (tests only)"
        );
        Kdf::Minimal
    } else {
        Kdf::Default
    };
    match cli.command {
        None => create(cli.create, kdf),
        Some(Cmd::Create(args)) => create(args, kdf),
        Some(Cmd::Open(args)) => open(args),
        Some(Cmd::Close { name }) => {
            cryptsetup::close(&name)?;
            println!("closed /dev/mapper/{name}");
            Ok(())
        }
        Some(Cmd::Status { location }) => status(&location),
        Some(Cmd::Reseal(args)) => reseal(args),
        Some(Cmd::TestKey(args)) => test_key(args),
        Some(Cmd::MountAtBoot(args)) => mount_at_boot(args),
    }
}

/// `<location>.tpm.json`: where versions before the LUKS2 token kept the seal of a file
/// container (still read when the header has no token; `reseal` moves it into the header).
fn seal_path(location: &Path) -> PathBuf {
    let mut name = OsString::from(location.as_os_str());
    name.push(".tpm.json");
    PathBuf::from(name)
}

/// Where a seal was found.
#[derive(Debug, Clone)]
enum SealSource {
    /// The `cosmian-tpm2` LUKS2 token with this id, in the (checked copy of the) header.
    Token(String),
    /// A legacy `<location>.tpm.json` next to a file container.
    LegacyFile(PathBuf),
}

impl SealSource {
    fn describe(&self) -> String {
        match self {
            Self::Token(id) => format!(
                "LUKS2 token {id} (type {}) in the container's header",
                seal::TOKEN_TYPE
            ),
            Self::LegacyFile(path) => format!(
                "legacy seal file {} (not in the header: `cosmian_fstool reseal` moves it there)",
                path.display()
            ),
        }
    }
}

/// The seal: the `cosmian-tpm2` token of `meta` (the checked header copy), else, for a file
/// container only, a legacy `<location>.tpm.json`.
fn load_seal(
    location: &Path,
    kind: Kind,
    meta: &Metadata,
) -> Result<Option<(SealedKey, SealSource)>> {
    if let Some((id, token)) = meta.seal_token() {
        let sealed = SealedKey::from_token(id, token)?;
        return Ok(Some((sealed, SealSource::Token(id.to_owned()))));
    }
    if kind != Kind::File {
        return Ok(None);
    }
    let path = seal_path(location);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(|sealed| Some((sealed, SealSource::LegacyFile(path.clone()))))
            .map_err(|e| Error::Other(format!("{} is not a valid seal file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn require_seal(location: &Path, kind: Kind, meta: &Metadata) -> Result<SealedKey> {
    let legacy = if kind == Kind::File {
        format!(" and there is no legacy {}", seal_path(location).display())
    } else {
        String::new()
    };
    load_seal(location, kind, meta)?
        .map(|(sealed, _)| sealed)
        .ok_or_else(|| {
            Error::Usage(format!(
                "the container {} is not TPM-sealed: its LUKS2 header has no {} token{legacy} \
                 (use --password -, or seal it with `cosmian_fstool reseal --location {} \
                 --password -`)",
                location.display(),
                seal::TOKEN_TYPE,
                location.display()
            ))
        })
}

/// The recovery advice of a PCR policy failure, with the real location and mapping name.
fn recovery_hint(error: Error, location: &Path, name: Option<&str>) -> Error {
    match error {
        Error::PcrPolicy(mut failure) => {
            failure.recovery = format!(
                "Open with the recovery password (`cosmian_fstool open --location {loc} --name \
                 {name} --password -`{boot}), or after an intended change run `cosmian_fstool \
                 reseal --location {loc} --password -`",
                loc = location.display(),
                name = name.unwrap_or("NAME"),
                boot = if name.is_some() {
                    ", or `cosmian_fstool mount-at-boot ... --password -`"
                } else {
                    ""
                },
            );
            Error::PcrPolicy(failure)
        }
        other => other,
    }
}

/// Undoes what `create` made unless disarmed: removes the new file, or zeroes the header area
/// of the formatted device (blank again).
enum Undo {
    Nothing,
    RemoveFile(PathBuf),
    WipeDevice(PathBuf),
}

impl Undo {
    fn disarm(&mut self) {
        let previous = std::mem::replace(self, Self::Nothing);
        std::mem::forget(previous);
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        match self {
            Self::Nothing => {}
            Self::RemoveFile(path) => {
                let _ = std::fs::remove_file(path);
            }
            Self::WipeDevice(path) => {
                if let Err(e) = container::wipe_header_area(path) {
                    eprintln!("cosmian_fstool: error: {e}");
                }
            }
        }
    }
}

fn create(args: CreateArgs, kdf: Kdf) -> Result<()> {
    let Some(location) = args.location else {
        return Err(Error::Usage(
            "--location is required, and --size for an image file (e.g. `cosmian_fstool --size \
             500M --location /var/lib/cosmian_vm/container --password -`, or `cosmian_fstool \
             create --location /dev/vdb --tpm-seal --password -`); see --help"
                .into(),
        ));
    };
    let pcrs = seal::parse_pcrs(&args.pcrs)?;
    let is_device = std::fs::metadata(&location).is_ok_and(|m| m.file_type().is_block_device());
    let tpm = args
        .tpm_seal
        .then_some((&args.tpm.tcti, &pcrs[..]));
    let mut undo;
    if is_device {
        if let Some(size) = &args.size {
            return Err(Error::Usage(format!(
                "--size {size} given with the block device {}: a device is formatted whole \
                 (expected no --size; it is used for image files only)",
                location.display()
            )));
        }
        let size = container::check_blank_device(&location)?;
        let password = read_password(args.password.as_deref(), true)?;
        cryptsetup::format(&location, &password, kdf)?;
        // Armed only once luksFormat succeeded: it refuses a device in use, which must then
        // not be wiped either.
        undo = Undo::WipeDevice(location.clone());
        finish_create(
            &location,
            &password,
            tpm,
            &format!("block device, {size} bytes"),
        )?;
    } else {
        let Some(size) = args.size.as_deref() else {
            return Err(Error::Usage(format!(
                "--size is required to create the image file {} (e.g. --size 500M); a block \
                 device is used whole",
                location.display()
            )));
        };
        let size = size::parse_size(size)?;
        if location.symlink_metadata().is_ok() {
            return Err(Error::Usage(format!(
                "{} already exists and is not a block device: refusing to overwrite it",
                location.display()
            )));
        }
        // A container without a token would take a leftover seal file for its own.
        if seal_path(&location)
            .symlink_metadata()
            .is_ok()
        {
            return Err(Error::Usage(format!(
                "{} already exists: refusing to create {} next to it (a legacy seal file is \
                 read as the seal of a container without a token); remove it first",
                seal_path(&location).display(),
                location.display()
            )));
        }
        let password = read_password(args.password.as_deref(), true)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&location)
            .map_err(|e| Error::io(format!("create {}", location.display()), e))?;
        undo = Undo::RemoveFile(location.clone());
        file.set_len(size)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("size {}", location.display()), e))?;
        drop(file);
        cryptsetup::format(&location, &password, kdf)?;
        finish_create(&location, &password, tpm, &format!("{size} bytes"))?;
    }
    undo.disarm();
    Ok(())
}

/// After `luksFormat`: the header discipline of every other command (a private copy, checked,
/// the password shown to open keyslot 0 of that copy, every change made to the copy and then
/// written back), so that a host rewriting a device between two steps is caught or overwritten.
fn finish_create(
    location: &Path,
    password: &Secret,
    tpm: Option<(&String, &[u8])>,
    described: &str,
) -> Result<()> {
    let dir = PrivateDir::new()?;
    let header = cryptsetup::header_copy(location, &dir)?;
    // What create made must pass the very check every other command applies: a cryptsetup
    // that ignored a parameter fails here, not at the next boot.
    Metadata::parse(&cryptsetup::dump_json(&header)?)?.check_safe(location)?;
    cryptsetup::test_key(&header, None, password, Some(PASSWORD_SLOT)).map_err(|e| {
        Error::Other(format!(
            "the header read back from {} after luksFormat is not the one just made (expected \
             the password to open keyslot {PASSWORD_SLOT}, it does not): {e}",
            location.display()
        ))
    })?;
    println!(
        "created LUKS2 container {} ({described}); the password is in keyslot {PASSWORD_SLOT}",
        location.display()
    );
    let Some((tcti, pcrs)) = tpm else {
        return Ok(());
    };
    let key = Secret::random(TPM_KEY_LEN)?;
    // Seal first: a TPM failure then leaves no keyslot without a seal.
    let sealed = seal::seal(tcti, pcrs, &key, TPM_SLOT)?;
    cryptsetup::add_key(&header, password, &key, TPM_SLOT, Kdf::Minimal)?;
    drop(key);
    cryptsetup::token_import(&header, SEAL_TOKEN_ID, &sealed.to_token()?, false)?;
    write_back(location, &header)?;
    println!(
        "sealed a random key in the TPM (keyslot {TPM_SLOT}) under sha256 PCRs {}; the seal is \
         in LUKS2 token {SEAL_TOKEN_ID} (type {}) of the header; the password stays the \
         recovery path",
        seal::pcr_list(pcrs),
        seal::TOKEN_TYPE
    );
    Ok(())
}

/// A private copy of the header (`luksHeaderBackup` into the 0700 `dir`), checked against the
/// allow-list in [`header`]: every later `cryptsetup` call for this command uses this copy
/// (`--header`, or the copy as the device), never the container's header again. Returns the
/// copy, its metadata (where the seal token is read from) and what the container is.
fn checked_header(location: &Path, dir: &PrivateDir) -> Result<(PathBuf, Metadata, Kind)> {
    let kind = container::require(location)?;
    let header = cryptsetup::header_copy(location, dir)?;
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    meta.check_safe(location)?;
    Ok((header, meta, kind))
}

/// The key to unlock with: the password (`--password`), else the TPM-unsealed key.
fn unlock_key(
    location: &Path,
    password: Option<&str>,
    tcti: &str,
    kind: Kind,
    meta: &Metadata,
    name: Option<&str>,
) -> Result<(Secret, Option<u32>, &'static str)> {
    if password.is_some() {
        Ok((read_password(password, false)?, None, "the password"))
    } else {
        let sealed = require_seal(location, kind, meta)?;
        let key = seal::unseal(tcti, &sealed).map_err(|e| recovery_hint(e, location, name))?;
        Ok((key, Some(sealed.keyslot), "the TPM-unsealed key"))
    }
}

fn test_key(args: KeyArgs) -> Result<()> {
    let dir = PrivateDir::new()?;
    let (header, meta, kind) = checked_header(&args.location, &dir)?;
    let (key, slot, what) = unlock_key(
        &args.location,
        args.password.as_deref(),
        &args.tpm.tcti,
        kind,
        &meta,
        None,
    )?;
    cryptsetup::test_key(&args.location, Some(&header), &key, slot).map_err(|e| {
        Error::Other(format!(
            "{what} does not open {}: {e}",
            args.location.display()
        ))
    })?;
    println!("ok: {what} opens {}", args.location.display());
    Ok(())
}

fn dm_hint(error: Error) -> Error {
    match error {
        Error::Cryptsetup {
            what,
            status,
            stderr,
        } if stderr.contains("device-mapper") => Error::Cryptsetup {
            what,
            status,
            stderr: format!(
                "{stderr} (device-mapper is not available here, or this is not root: \
                 `cosmian_fstool test-key` checks the key without mapping)"
            ),
        },
        other => other,
    }
}

fn open(args: OpenArgs) -> Result<()> {
    let dir = PrivateDir::new()?;
    let (header, meta, kind) = checked_header(&args.key.location, &dir)?;
    let (key, _, what) = unlock_key(
        &args.key.location,
        args.key.password.as_deref(),
        &args.key.tpm.tcti,
        kind,
        &meta,
        Some(&args.name),
    )?;
    cryptsetup::open(&args.key.location, Some(&header), &args.name, &key).map_err(dm_hint)?;
    println!(
        "opened {} as /dev/mapper/{} with {what}",
        args.key.location.display(),
        args.name
    );
    Ok(())
}

/// Prints the summary, then fails (exit 3) when the header is not what `create` makes: a
/// script or a person checking the exit status sees the refusal.
fn status(location: &Path) -> Result<()> {
    let kind = container::require(location)?;
    // One read of the header: everything below describes the same copy.
    let dir = PrivateDir::new()?;
    let header = cryptsetup::header_copy(location, &dir)?;
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    let uuid = cryptsetup::uuid(&header)?;
    let size = container::size(location)?;
    // A broken seal is reported, not fatal: status is the diagnostic command.
    let seal_result = load_seal(location, kind, &meta);
    let sealed = seal_result
        .as_ref()
        .ok()
        .and_then(Option::as_ref);
    println!("location: {} ({})", location.display(), kind.describe());
    println!("size: {size} bytes");
    println!("format: LUKS2, UUID {uuid}");
    for (id, seg) in &meta.segments {
        println!(
            "segment {id}: {} {}",
            seg.kind,
            seg.encryption
                .as_deref()
                .unwrap_or("(no cipher)")
        );
    }
    for (id, slot) in &meta.keyslots {
        let role = match sealed {
            Some((s, _)) if id.parse() == Ok(s.keyslot) => " [TPM-sealed key]",
            _ => "",
        };
        println!(
            "keyslot {id}: {} cipher {} kdf {}{role}",
            slot.kind,
            slot.area
                .as_ref()
                .and_then(|a| a.encryption.as_deref())
                .unwrap_or("(none)"),
            slot.kdf
                .as_ref()
                .map_or("(none)", |k| k.kind.as_str()),
        );
    }
    for (id, token) in &meta.tokens {
        println!(
            "token {id}: type {}",
            token
                .get("type")
                .map_or_else(|| "(none)".to_owned(), ToString::to_string)
        );
    }
    let reasons = meta.unsafe_reasons();
    if reasons.is_empty() {
        println!(
            "header check: ok (exactly what cosmian_fstool creates: segment {}, {}-bit key, \
             {}-byte sectors, no integrity; keyslots {}; tokens: {} only)",
            header::SEGMENT_CIPHER,
            header::VOLUME_KEY_BYTES * 8,
            header::SECTOR_SIZE,
            header::KEYSLOT_CIPHER,
            seal::TOKEN_TYPE
        );
    } else {
        println!("header check: UNSAFE, refused: {}", reasons.join("; "));
    }
    match (sealed, &seal_result) {
        (Some((s, source)), _) => {
            let present = meta.keyslot_ids().contains(&s.keyslot);
            println!(
                "tpm: sealed in keyslot {}{}, {} PCRs {}, policy digest {}",
                s.keyslot,
                if present {
                    ""
                } else {
                    " (MISSING from the header)"
                },
                s.pcr_bank,
                seal::pcr_list(&s.pcrs),
                s.policy_digest
            );
            println!("seal: {}", source.describe());
        }
        (None, Err(e)) => println!("tpm: {e}"),
        (None, Ok(_)) => println!("tpm: not sealed (password only)"),
    }
    meta.check_safe(location)
}

/// The token id `create` writes the seal to.
const SEAL_TOKEN_ID: u32 = 0;

/// Time of check and time of use: the host can rewrite the container's header at any moment.
/// If `reseal` checked the container's header and then ran `luksAddKey` on the container, the
/// host could swap in, between the two, a header whose keyslot hands out a volume key of its
/// choosing (a `cipher_null` keyslot opens with any passphrase); `luksAddKey` would then wrap
/// *that* key under the fresh TPM key, and the host, putting back a clean-looking header with
/// this new keyslot, would get a container the VM unlocks at boot with a key the host knows.
/// So the header is read once (`luksHeaderBackup` into a private 0700 directory, the copy
/// 0600), checked, and every step after that (the password check, `luksAddKey`, the token,
/// `luksKillSlot`) works on that private copy, which only this process can change. The copy
/// is checked again and then written back over the container's header (`luksHeaderRestore`),
/// and read back to confirm it landed. Whatever the host wrote to the container's header in
/// the meantime is overwritten by the checked copy.
///
/// The write-back is in place, not temp + rename: the container may be open (a loop device
/// holds its inode, and a rename would leave the mounted file system writing to an unlinked
/// file), and a copy of the whole image would double its size on disk. It replaces only the
/// header area, and it is crash-safe for recovery: the password keyslot's bytes and JSON are
/// the same before and after, and LUKS2 keeps two checksummed header copies, so whatever a
/// torn write leaves, the password still opens the container. The new keyslot and the token
/// that points at it land in one write-back; the previous TPM keyslot is removed in a second
/// write-back only after that, so the TPM path also survives a crash at any point (the old
/// seal and slot, or the new ones). A legacy seal file is removed once the token is on disk.
fn reseal(args: ResealArgs) -> Result<()> {
    let location = &args.location;
    let dir = PrivateDir::new()?;
    let (header, meta, kind) = checked_header(location, &dir)?;
    let password = read_password(args.password.as_deref(), false)?;
    cryptsetup::test_key(&header, None, &password, None).map_err(|e| {
        Error::Usage(format!(
            "the password does not open {}: {e}",
            location.display()
        ))
    })?;
    // A broken seal is what reseal repairs: it is replaced, not fatal.
    let old = match load_seal(location, kind, &meta) {
        Ok(old) => old,
        Err(e) => {
            eprintln!("cosmian_fstool: warning: the current seal is unusable and is replaced: {e}");
            None
        }
    };
    let pcrs = match (&args.pcrs, &old) {
        (Some(text), _) => seal::parse_pcrs(text)?,
        (None, Some((old, _))) => old.pcrs.clone(),
        (None, None) => seal::DEFAULT_PCRS.to_vec(),
    };
    let slot = meta.free_keyslot().ok_or_else(|| {
        Error::Other(format!(
            "{} has no free keyslot (expected at most 31 in use, found 32)",
            location.display()
        ))
    })?;
    let (token_id, replace) = match meta.seal_token() {
        Some((id, _)) => (
            id.parse::<u32>().map_err(|_| {
                Error::Other(format!(
                    "the seal token id {id:?} of {} is not a number",
                    location.display()
                ))
            })?,
            true,
        ),
        None => (SEAL_TOKEN_ID, false),
    };
    let key = Secret::random(TPM_KEY_LEN)?;
    let sealed = seal::seal(&args.tpm.tcti, &pcrs, &key, slot)?;
    cryptsetup::add_key(&header, &password, &key, slot, Kdf::Minimal)?;
    drop(key);
    cryptsetup::token_import(&header, token_id, &sealed.to_token()?, replace)?;
    write_back(location, &header)?;
    println!(
        "resealed: a fresh key in keyslot {slot} under sha256 PCRs {}; the seal is in LUKS2 \
         token {token_id} (type {}) of the header",
        seal::pcr_list(&pcrs),
        seal::TOKEN_TYPE
    );
    if kind == Kind::File {
        let legacy = seal_path(location);
        if legacy.symlink_metadata().is_ok() {
            std::fs::remove_file(&legacy).map_err(|e| {
                Error::io(
                    format!("remove the legacy seal file {}", legacy.display()),
                    e,
                )
            })?;
            println!(
                "removed the legacy seal file {} (the seal is now in the header)",
                legacy.display()
            );
        }
    }
    if let Some((old, _)) = old {
        let old_slot = old.keyslot;
        // Never remove the slot the password itself opens.
        let is_password_slot =
            cryptsetup::test_key(&header, None, &password, Some(old_slot)).is_ok();
        if old_slot != slot && meta.keyslot_ids().contains(&old_slot) && !is_password_slot {
            cryptsetup::kill_slot(&header, &password, old_slot)?;
            write_back(location, &header)?;
            println!("removed the previous TPM keyslot {old_slot}");
        }
    }
    Ok(())
}

/// Check the private header copy once more, write it over the container's header
/// (`luksHeaderRestore`), flush, and read it back: the container must now start with exactly
/// the checked bytes.
fn write_back(location: &Path, header: &Path) -> Result<()> {
    use std::io::Read as _;
    Metadata::parse(&cryptsetup::dump_json(header)?)?.check_safe(location)?;
    let expected =
        std::fs::read(header).map_err(|e| Error::io(format!("read {}", header.display()), e))?;
    cryptsetup::header_restore(location, header)?;
    let mut file = std::fs::File::open(location)
        .map_err(|e| Error::io(format!("open {}", location.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", location.display()), e))?;
    let mut actual = vec![0u8; expected.len()];
    file.read_exact(&mut actual)
        .map_err(|e| Error::io(format!("read back the header of {}", location.display()), e))?;
    if actual != expected {
        return Err(Error::Other(format!(
            "after luksHeaderRestore the header of {} is not the checked copy written to it \
             (expected its first {} bytes to match; something else is writing to it)",
            location.display(),
            expected.len()
        )));
    }
    Ok(())
}

/// Whether `/dev/mapper/NAME` is already open on this container (then it is only mounted);
/// an error when it is open on something else, or not with the encryption `create` makes.
fn already_open(name: &str, location: &Path, kind: Kind) -> Result<bool> {
    let device = PathBuf::from("/dev/mapper").join(name);
    if device.symlink_metadata().is_err() {
        return Ok(false);
    }
    let status = container::parse_status(&cryptsetup::status(name)?);
    match container::mapping_mismatch(&status, location, kind, name)? {
        None => Ok(true),
        Some(why) if why.contains("not the encryption") => Err(Error::UnsafeHeader {
            location: location.to_path_buf(),
            why,
        }),
        Some(why) => Err(Error::Usage(why)),
    }
}

/// Idempotent: (a) the container already mounted there: nothing to do; (b) already open
/// (`/dev/mapper/NAME` maps this container) but not mounted: mount it, no unlock; (c)
/// otherwise unlock (the TPM, or the recovery password with `--password -`), open, mount.
fn mount_at_boot(args: MountArgs) -> Result<()> {
    let dir = PrivateDir::new()?;
    // The container check and the header check come first: nothing is unsealed for a missing
    // container or a header that is not what `create` makes.
    let (header, meta, kind) = checked_header(&args.location, &dir)?;
    let device = PathBuf::from("/dev/mapper").join(&args.name);
    if mountpoint::check(&args.mountpoint, &device)? == mountpoint::State::Ours {
        println!(
            "{} is already mounted at {} ({}): nothing to do",
            args.location.display(),
            args.mountpoint.display(),
            device.display()
        );
        return Ok(());
    }
    let opened_here = if already_open(&args.name, &args.location, kind)? {
        println!(
            "{} is already open on {} but not mounted: mounting it (no unlock needed)",
            device.display(),
            args.location.display()
        );
        None
    } else {
        let (key, _, what) = unlock_key(
            &args.location,
            args.password.as_deref(),
            &args.tpm.tcti,
            kind,
            &meta,
            Some(&args.name),
        )?;
        cryptsetup::open(&args.location, Some(&header), &args.name, &key).map_err(dm_hint)?;
        drop(key);
        Some(what)
    };
    let result = make_fs_and_mount(&device, &args.mountpoint, args.new);
    if result.is_err() && opened_here.is_some() {
        let _ = cryptsetup::close(&args.name);
    }
    result?;
    println!(
        "mounted {} at {} ({}{})",
        args.location.display(),
        args.mountpoint.display(),
        device.display(),
        opened_here.map_or_else(String::new, |what| format!(", unlocked with {what}"))
    );
    Ok(())
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<std::process::ExitStatus> {
    Command::new(program)
        .args(args)
        .status()
        .map_err(|e| Error::io(format!("run {program}"), e))
}

/// Make an ext4 file system when the container is new (`--new`) and the opened device holds
/// none yet (no ext superblock magic, read directly, since the guest's busybox `blkid` has no
/// `-p`), then mount it (`mke2fs` and `mount` stay external programs). An existing container
/// without a file system is refused, never formatted.
fn make_fs_and_mount(device: &Path, mountpoint: &Path, new: bool) -> Result<()> {
    let has_fs = container::has_ext_magic(device)?;
    if !has_fs && !new {
        return Err(Error::Usage(format!(
            "{} holds no ext4 file system: expected the one made when the container was \
             created. Its data area was damaged or altered (a host can flip ciphertext bits), \
             so it is not formatted here: that would erase this VM's state. If the container was \
             created just now and its first mount was interrupted, mount it with `--new`.",
            device.display()
        )));
    }
    if !has_fs {
        let mkfs = tool(
            "mke2fs",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-q".as_ref(),
                device.as_os_str(),
            ],
        )?;
        if !mkfs.success() {
            return Err(Error::Other(format!(
                "mke2fs -t ext4 {} failed ({mkfs}; expected exit status 0)",
                device.display()
            )));
        }
        println!(
            "made an ext4 file system on {} (first use)",
            device.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(mountpoint)
        .map_err(|e| Error::io(format!("create {}", mountpoint.display()), e))?;
    let mount = tool(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            device.as_os_str(),
            mountpoint.as_os_str(),
        ],
    )?;
    if !mount.success() {
        return Err(Error::Other(format!(
            "mount -t ext4 {} {} failed ({mount}; expected exit status 0)",
            device.display(),
            mountpoint.display()
        )));
    }
    Ok(())
}
