//! The commands, one module each, and what they share: the header discipline (a checked
//! private copy, [`checked_header`], written back with [`write_back`]), where the seal is
//! ([`load_seal`]) and how the key is obtained ([`unlock_key`]).

pub mod create;
pub mod mount;
pub mod open;
pub mod reseal;
pub mod status;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::container::{self, Kind};
use crate::cryptsetup;
use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::header::Metadata;
use crate::seal::{self, SealedKey};
use crate::secret::{read_password, Secret};

/// The TPM-sealed key: 64 random bytes (a 512-bit passphrase for its keyslot).
pub const TPM_KEY_LEN: usize = 64;
/// The password's keyslot in a container this tool creates.
pub const PASSWORD_SLOT: u32 = 0;
/// The TPM keyslot in a container this tool creates.
pub const TPM_SLOT: u32 = 1;

/// The token id `create` writes the seal to.
pub const SEAL_TOKEN_ID: u32 = 0;

/// `<location>.tpm.json`: where versions before the LUKS2 token kept the seal of a file
/// container (still read when the header has no token; `reseal` moves it into the header).
pub fn seal_path(location: &Path) -> PathBuf {
    let mut name = OsString::from(location.as_os_str());
    name.push(".tpm.json");
    PathBuf::from(name)
}

/// Where a seal was found.
#[derive(Debug, Clone)]
pub enum SealSource {
    /// The `cosmian-tpm2` LUKS2 token with this id, in the (checked copy of the) header.
    Token(String),
    /// A legacy `<location>.tpm.json` next to a file container.
    LegacyFile(PathBuf),
}

impl SealSource {
    pub fn describe(&self) -> String {
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
pub fn load_seal(
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

pub fn require_seal(location: &Path, kind: Kind, meta: &Metadata) -> Result<SealedKey> {
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
pub fn recovery_hint(error: Error, location: &Path, name: Option<&str>) -> Error {
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

/// A private copy of the header (`luksHeaderBackup` into the 0700 `dir`), checked against the
/// allow-list in [`crate::header`]: every later `cryptsetup` call for this command uses this
/// copy (`--header`, or the copy as the device), never the container's header again. Returns
/// the copy, its metadata (where the seal token is read from) and what the container is.
pub fn checked_header(location: &Path, dir: &PrivateDir) -> Result<(PathBuf, Metadata, Kind)> {
    let kind = container::require(location)?;
    let header = cryptsetup::header_copy(location, dir)?;
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    meta.check_safe(location)?;
    Ok((header, meta, kind))
}

/// The key to unlock with: the password (`--password`), else the TPM-unsealed key.
pub fn unlock_key(
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

pub fn dm_hint(error: Error) -> Error {
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

/// Check the private header copy once more, write it over the container's header
/// (`luksHeaderRestore`), flush, and read it back: the container must now start with exactly
/// the checked bytes.
pub fn write_back(location: &Path, header: &Path) -> Result<()> {
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
