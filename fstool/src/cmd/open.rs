//! `open`, `close` and `test-key`: unlock (the TPM-unsealed key, or the recovery password)
//! and map the container, unmap it, or only check the key.

use super::{checked_header, dm_hint, unlock_key};
use crate::cli::{KeyArgs, OpenArgs};
use crate::cryptsetup;
use crate::error::{Error, Result};
use crate::files::PrivateDir;

pub fn open(args: OpenArgs) -> Result<()> {
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

/// Unmap `/dev/mapper/NAME`.
pub fn close(name: &str) -> Result<()> {
    cryptsetup::close(name)?;
    println!("closed /dev/mapper/{name}");
    Ok(())
}

pub fn test_key(args: KeyArgs) -> Result<()> {
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
