//! `create` (and the seed form without a subcommand): a new image file or a whole blank block
//! device, formatted, checked, optionally TPM-sealed; undone on failure.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{seal_path, write_back, PASSWORD_SLOT, SEAL_TOKEN_ID, TPM_KEY_LEN, TPM_SLOT};
use crate::cli::CreateArgs;
use crate::container;
use crate::cryptsetup::{self, Kdf};
use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::header::Metadata;
use crate::seal;
use crate::secret::{read_password, Secret};
use crate::size;

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
                    tracing::error!(path = %path.display(), "{e}");
                }
            }
        }
    }
}

pub fn create(args: CreateArgs, kdf: Kdf) -> Result<()> {
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
