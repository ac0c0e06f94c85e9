//! The command line: `cosmian_fstool [create flags]` (the seed form) or one of the
//! subcommands, with the global test and secret-owner flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ratls::attest::tpm::DEFAULT_TCTI;

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
pub struct Cli {
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub create: CreateArgs,
    /// TEST ONLY: PBKDF2 with 1000 iterations for the password keyslot, so tests run fast.
    /// Never use it for a real container: it makes the password cheap to brute-force.
    #[arg(long, global = true, hide = true)]
    pub fast_kdf_for_tests: bool,
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
    pub secret_owner_uid: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
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
pub struct CreateArgs {
    /// Container image file size: bytes, or with a K, M, G or T suffix (powers of 1024), e.g.
    /// 500M, 2G. Required for a file; refused for a block device (used whole).
    #[arg(long)]
    pub size: Option<String>,
    /// The container: an image file to create (must not exist), or a blank block device to
    /// format (its first 4 KiB all zero; symbolic links such as /dev/disk/by-id/... followed).
    #[arg(long)]
    pub location: Option<PathBuf>,
    /// `-`: read the password from stdin (nothing else is accepted).
    #[arg(long, value_name = "-")]
    pub password: Option<String>,
    /// Also seal a random key in the TPM (second keyslot) under a PCR policy.
    #[arg(long)]
    pub tpm_seal: bool,
    /// The SHA-256 PCRs of the policy.
    #[arg(long, default_value = "0,1,2,3,4,5,6,7,8,9")]
    pub pcrs: String,
    #[command(flatten)]
    pub tpm: TpmArg,
}

#[derive(Debug, Args)]
pub struct TpmArg {
    /// The TPM (TCTI): device:/dev/tpmrm0, swtpm:host=H,port=P, mssim:...
    #[arg(long = "tpm", env = "COSMIAN_FSTOOL_TPM", default_value = DEFAULT_TCTI)]
    pub tcti: String,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[arg(long)]
    pub location: PathBuf,
    /// `-`: use the password from stdin instead of the TPM (the recovery path).
    #[arg(long, value_name = "-")]
    pub password: Option<String>,
    #[command(flatten)]
    pub tpm: TpmArg,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// The device-mapper name (/dev/mapper/NAME).
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ResealArgs {
    #[arg(long)]
    pub location: PathBuf,
    /// `-`: read the password from stdin (prompted for on a terminal when omitted).
    #[arg(long, value_name = "-")]
    pub password: Option<String>,
    /// The SHA-256 PCRs of the new policy (default: those of the current seal, else 0–9).
    #[arg(long)]
    pub pcrs: Option<String>,
    #[command(flatten)]
    pub tpm: TpmArg,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    #[arg(long, default_value = "/var/lib/cosmian_vm/container")]
    pub location: PathBuf,
    #[arg(long, default_value = "/var/lib/cosmian_vm/data")]
    pub mountpoint: PathBuf,
    #[arg(long, default_value = "cosmian_vm_data")]
    pub name: String,
    /// `-`: the recovery path: open with the password from stdin instead of the TPM.
    #[arg(long, value_name = "-")]
    pub password: Option<String>,
    /// The container was created just now: make its ext4 file system. Without this flag an
    /// opened container that holds no file system is refused (its data area was damaged or
    /// altered, e.g. by the host flipping ciphertext bits; formatting it would erase the VM's
    /// state and hand the host a new, empty container).
    #[arg(long)]
    pub new: bool,
    #[command(flatten)]
    pub tpm: TpmArg,
}
