//! `cosmian_fstool`: a LUKS2 container image (through `cryptsetup`) whose key can be sealed in
//! the TPM under a PCR policy, so that only an unchanged machine unlocks it at boot; the
//! password keyslot stays the recovery path. See `docs/fstool.md`.
//!
//! Secrets (the password, the sealed key) never appear on a command line, in output or in
//! logs: they reach `cryptsetup` on stdin or through 0600 files in a 0700 directory that is
//! wiped and removed, and they are zeroed in memory when dropped.

#![forbid(unsafe_code)]

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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Parser, Subcommand};

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
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a LUKS2 container image file (refuses to overwrite), optionally TPM-sealed.
    Create(CreateArgs),
    /// Unlock (TPM, or the password with --password) and map it as /dev/mapper/NAME.
    Open(OpenArgs),
    /// Unmap /dev/mapper/NAME.
    Close {
        #[arg(long)]
        name: String,
    },
    /// Show the LUKS header summary, the cipher_null check and the TPM seal (no secrets).
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
    /// What the boot unit runs: refuse a cipher_null header, unseal, open, mount (and make an
    /// ext4 file system on first use).
    MountAtBoot(MountArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Container size: bytes, or with a K, M, G or T suffix (powers of 1024), e.g. 500M, 2G.
    #[arg(long)]
    size: Option<String>,
    /// The container image file to create (must not exist).
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

/// `<location>.tpm.json`.
fn seal_path(location: &Path) -> PathBuf {
    let mut name = OsString::from(location.as_os_str());
    name.push(".tpm.json");
    PathBuf::from(name)
}

fn load_seal(location: &Path) -> Result<Option<SealedKey>> {
    let path = seal_path(location);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Other(format!("{} is not a valid seal file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn require_seal(location: &Path) -> Result<SealedKey> {
    load_seal(location)?.ok_or_else(|| {
        Error::Usage(format!(
            "{} not found: the container is not TPM-sealed (use --password -, or seal it with \
             `cosmian_fstool reseal`)",
            seal_path(location).display()
        ))
    })
}

fn write_seal(location: &Path, sealed: &SealedKey) -> Result<()> {
    let json = serde_json::to_vec_pretty(sealed)
        .map_err(|e| Error::Other(format!("cannot encode the seal file: {e}")))?;
    files::write_atomic(&seal_path(location), &json)
}

/// Removes what `create` made unless disarmed.
struct Undo(Vec<PathBuf>);

impl Drop for Undo {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn create(args: CreateArgs, kdf: Kdf) -> Result<()> {
    let (Some(size), Some(location)) = (args.size.as_deref(), args.location) else {
        return Err(Error::Usage(
            "--size and --location are required (e.g. `cosmian_fstool --size 500M --location \
             /var/lib/cosmian_vm/container --password -`); see --help"
                .into(),
        ));
    };
    let size = size::parse_size(size)?;
    let pcrs = seal::parse_pcrs(&args.pcrs)?;
    if location.symlink_metadata().is_ok() {
        return Err(Error::Usage(format!(
            "{} already exists: refusing to overwrite it",
            location.display()
        )));
    }
    if args.tpm_seal
        && seal_path(&location)
            .symlink_metadata()
            .is_ok()
    {
        return Err(Error::Usage(format!(
            "{} already exists: refusing to overwrite it",
            seal_path(&location).display()
        )));
    }
    let password = read_password(args.password.as_deref(), true)?;

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&location)
        .map_err(|e| Error::io(format!("create {}", location.display()), e))?;
    let mut undo = Undo(vec![location.clone()]);
    file.set_len(size)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("size {}", location.display()), e))?;
    drop(file);
    cryptsetup::format(&location, &password, kdf)?;
    // What create made must pass the very check every other command applies: a cryptsetup
    // that ignored a parameter fails here, not at the next boot.
    Metadata::parse(&cryptsetup::dump_json(&location)?)?.check_safe(&location)?;
    println!(
        "created LUKS2 container {} ({size} bytes); the password is in keyslot {PASSWORD_SLOT}",
        location.display()
    );
    if args.tpm_seal {
        let key = Secret::random(TPM_KEY_LEN)?;
        // Seal first: a TPM failure then leaves no keyslot without a seal.
        let sealed = seal::seal(&args.tpm.tcti, &pcrs, &key, TPM_SLOT)?;
        cryptsetup::add_key(&location, &password, &key, TPM_SLOT, Kdf::Minimal)?;
        Metadata::parse(&cryptsetup::dump_json(&location)?)?.check_safe(&location)?;
        undo.0.push(seal_path(&location));
        write_seal(&location, &sealed)?;
        println!(
            "sealed a random key in the TPM (keyslot {TPM_SLOT}) under sha256 PCRs {}; seal \
             file {}; the password stays the recovery path",
            seal::pcr_list(&pcrs),
            seal_path(&location).display()
        );
    }
    undo.0.clear();
    Ok(())
}

/// The container must exist and be a file. A missing one is an error, never a reason to
/// create one or to go on without it: the host can delete the image, and whatever runs next
/// would write to the unencrypted directory under the mount point.
fn require_container(location: &Path) -> Result<()> {
    match std::fs::metadata(location) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::Usage(format!(
            "the container {} is not a file: expected the LUKS2 image file cosmian_fstool \
             created",
            location.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "the container {} does not exist: refusing to go on without it (it is never \
             created here: a missing container may have been deleted, and the data would then \
             be written unencrypted); restore it, or create it with `cosmian_fstool create`",
            location.display()
        ))),
        Err(e) => Err(Error::io(
            format!("stat the container {}", location.display()),
            e,
        )),
    }
}

/// A private copy of the header (`luksHeaderBackup` into the 0700 `dir`), checked against the
/// allow-list in [`header`]: every later `cryptsetup` call for this command uses this copy
/// (`--header`, or the copy as the device), never the container's header again.
fn checked_header(location: &Path, dir: &PrivateDir) -> Result<PathBuf> {
    require_container(location)?;
    let header = cryptsetup::header_copy(location, dir)?;
    Metadata::parse(&cryptsetup::dump_json(&header)?)?.check_safe(location)?;
    Ok(header)
}

/// The key to unlock with: the password (`--password`), else the TPM-unsealed key and its
/// keyslot.
fn unlock_key(args: &KeyArgs) -> Result<(Secret, Option<u32>, &'static str)> {
    if args.password.is_some() {
        let password = read_password(args.password.as_deref(), false)?;
        Ok((password, None, "the password"))
    } else {
        let sealed = require_seal(&args.location)?;
        let key = seal::unseal(&args.tpm.tcti, &sealed)?;
        Ok((key, Some(sealed.keyslot), "the TPM-unsealed key"))
    }
}

fn test_key(args: KeyArgs) -> Result<()> {
    let dir = PrivateDir::new()?;
    let header = checked_header(&args.location, &dir)?;
    let (key, slot, what) = unlock_key(&args)?;
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
    let header = checked_header(&args.key.location, &dir)?;
    let (key, _, what) = unlock_key(&args.key)?;
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
    require_container(location)?;
    // One read of the header: everything below describes the same copy.
    let dir = PrivateDir::new()?;
    let header = cryptsetup::header_copy(location, &dir)?;
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    let uuid = cryptsetup::uuid(&header)?;
    let size = std::fs::metadata(location)
        .map(|m| m.len())
        .map_err(|e| Error::io(format!("stat {}", location.display()), e))?;
    // A broken seal file is reported, not fatal: status is the diagnostic command.
    let seal_result = load_seal(location);
    let sealed = seal_result
        .as_ref()
        .ok()
        .and_then(Option::as_ref);
    println!("location: {}", location.display());
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
            Some(s) if id.parse() == Ok(s.keyslot) => " [TPM-sealed key]",
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
    let reasons = meta.unsafe_reasons();
    if reasons.is_empty() {
        println!(
            "header check: ok (exactly what cosmian_fstool creates: segment {}, {}-bit key, \
             {}-byte sectors, no integrity; keyslots {})",
            header::SEGMENT_CIPHER,
            header::VOLUME_KEY_BYTES * 8,
            header::SECTOR_SIZE,
            header::KEYSLOT_CIPHER
        );
    } else {
        println!("header check: UNSAFE, refused: {}", reasons.join("; "));
    }
    match (sealed, &seal_result) {
        (Some(s), _) => {
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
            println!("seal file: {}", seal_path(location).display());
        }
        (None, Err(e)) => println!("tpm: {e}"),
        (None, Ok(_)) => println!("tpm: not sealed (password only)"),
    }
    meta.check_safe(location)
}

/// Time of check and time of use: the host can rewrite the container's header at any moment.
/// If `reseal` checked the container's header and then ran `luksAddKey` on the container, the
/// host could swap in, between the two, a header whose keyslot hands out a volume key of its
/// choosing (a `cipher_null` keyslot opens with any passphrase); `luksAddKey` would then wrap
/// *that* key under the fresh TPM key, and the host, putting back a clean-looking header with
/// this new keyslot, would get a container the VM unlocks at boot with a key the host knows.
/// So the header is read once (`luksHeaderBackup` into a private 0700 directory, the copy
/// 0600), checked, and every step after that (the password check, `luksAddKey`,
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
/// torn write leaves, the password still opens the container. The seal file is written
/// (atomically) only once the header holding its keyslot is on disk, and the previous TPM
/// keyslot is removed in a second write-back only after that, so the TPM path also survives a
/// crash at any point (the old seal and slot, or the new ones).
fn reseal(args: ResealArgs) -> Result<()> {
    let location = &args.location;
    let dir = PrivateDir::new()?;
    let header = checked_header(location, &dir)?;
    let password = read_password(args.password.as_deref(), false)?;
    cryptsetup::test_key(&header, None, &password, None).map_err(|e| {
        Error::Usage(format!(
            "the password does not open {}: {e}",
            location.display()
        ))
    })?;
    let old = load_seal(location)?;
    let pcrs = match (&args.pcrs, &old) {
        (Some(text), _) => seal::parse_pcrs(text)?,
        (None, Some(old)) => old.pcrs.clone(),
        (None, None) => seal::DEFAULT_PCRS.to_vec(),
    };
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    let slot = meta
        .free_keyslot()
        .ok_or_else(|| Error::Other(format!("{} has no free keyslot", location.display())))?;
    let key = Secret::random(TPM_KEY_LEN)?;
    let sealed = seal::seal(&args.tpm.tcti, &pcrs, &key, slot)?;
    cryptsetup::add_key(&header, &password, &key, slot, Kdf::Minimal)?;
    drop(key);
    write_back(location, &header)?;
    write_seal(location, &sealed)?;
    println!(
        "resealed: a fresh key in keyslot {slot} under sha256 PCRs {}",
        seal::pcr_list(&pcrs)
    );
    if let Some(old) = old {
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

fn mount_at_boot(args: MountArgs) -> Result<()> {
    let dir = PrivateDir::new()?;
    // The container check and the header check come first: nothing is unsealed for a missing
    // container or a header that is not what `create` makes.
    let header = checked_header(&args.location, &dir)?;
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
    let sealed = require_seal(&args.location)?;
    let key = seal::unseal(&args.tpm.tcti, &sealed)?;
    cryptsetup::open(&args.location, Some(&header), &args.name, &key).map_err(dm_hint)?;
    drop(key);
    let result = make_fs_and_mount(&device, &args.mountpoint);
    if result.is_err() {
        let _ = cryptsetup::close(&args.name);
    }
    result?;
    println!(
        "mounted {} at {}",
        args.location.display(),
        args.mountpoint.display()
    );
    Ok(())
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<std::process::ExitStatus> {
    Command::new(program)
        .args(args)
        .status()
        .map_err(|e| Error::io(format!("run {program}"), e))
}

/// `mkfs.ext4` when the device holds no file system yet (first boot), then mount it.
fn make_fs_and_mount(device: &Path, mountpoint: &Path) -> Result<()> {
    // blkid -p: exit 2 when no signature is found.
    let probe = tool("blkid", &["-p".as_ref(), device.as_os_str()])?;
    if probe.code() == Some(2) {
        let mkfs = tool("mkfs.ext4", &["-q".as_ref(), device.as_os_str()])?;
        if !mkfs.success() {
            return Err(Error::Other(format!(
                "mkfs.ext4 {} failed",
                device.display()
            )));
        }
    } else if !probe.success() {
        return Err(Error::Other(format!(
            "blkid -p {} failed",
            device.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(mountpoint)
        .map_err(|e| Error::io(format!("create {}", mountpoint.display()), e))?;
    let mount = tool("mount", &[device.as_os_str(), mountpoint.as_os_str()])?;
    if !mount.success() {
        return Err(Error::Other(format!(
            "mount {} {} failed",
            device.display(),
            mountpoint.display()
        )));
    }
    Ok(())
}
