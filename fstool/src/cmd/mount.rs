//! `mount-at-boot`: what the boot unit runs; check the header, unlock, open, make the file
//! system on first use (`--new`), mount. Idempotent.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{checked_header, dm_hint, unlock_key};
use crate::cli::MountArgs;
use crate::container::{self, Kind};
use crate::cryptsetup;
use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::mountpoint;

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
pub fn mount_at_boot(args: MountArgs) -> Result<()> {
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
    ratls::fsutil::create_dir(mountpoint, 0o700)
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
