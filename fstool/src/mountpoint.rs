//! The mount point `mount-at-boot` mounts the container on.
//!
//! Before the container is mounted, its mount point is a plain directory of the VM's root file
//! system. Anything in it did not come from the encrypted container: files the host placed
//! there, or that a program wrote while the container was not mounted (an agent started
//! without its data disk writes its TLS key there). Mounting over them would hide them but
//! leave them unencrypted, and a non-empty mount point is a sign that something already ran
//! without the container. So `mount-at-boot` accepts only:
//!
//! - no mount point yet (it is created, mode 0700);
//! - an empty directory that is not a mount point;
//! - a directory on which the container's own `/dev/mapper/NAME` is already mounted (a second
//!   run, e.g. the agent's start after the boot unit): nothing to do.
//!
//! Anything else (a non-empty directory, a symbolic link, a file, another file system mounted
//! there) is refused, naming the path and what was found.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing there yet: `mount-at-boot` creates the directory.
    Absent,
    /// An empty directory, not a mount point.
    Empty,
    /// The container (`device`) is already mounted there.
    Ours,
}

/// How many entries of a non-empty mount point the refusal names.
const NAMED_ENTRIES: usize = 5;

/// `major:minor` of a Linux `dev_t`.
fn dev_name(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major}:{minor}")
}

/// The state of `mountpoint`, or why `mount-at-boot` refuses it. `device` is the container's
/// `/dev/mapper/NAME`.
pub fn check(mountpoint: &Path, device: &Path) -> Result<State> {
    let meta = match mountpoint.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Absent),
        Err(e) => return Err(Error::io(format!("stat {}", mountpoint.display()), e)),
    };
    let kind = meta.file_type();
    if kind.is_symlink() || !kind.is_dir() {
        return Err(Error::Usage(format!(
            "the mount point {} is a {}: expected a directory (or nothing, which is created); \
             refusing to mount there",
            mountpoint.display(),
            if kind.is_symlink() {
                "symbolic link"
            } else {
                "file, not a directory"
            }
        )));
    }
    let parent = match mountpoint.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => mountpoint,
    };
    let parent_dev = std::fs::metadata(parent)
        .map_err(|e| Error::io(format!("stat {}", parent.display()), e))?
        .dev();
    let device_rdev = std::fs::metadata(device)
        .ok()
        .map(|m| m.rdev());
    let entries = if meta.dev() == parent_dev {
        list(mountpoint)?
    } else {
        Vec::new()
    };
    classify(
        mountpoint,
        device,
        meta.dev(),
        parent_dev,
        device_rdev,
        &entries,
    )
}

/// The names in `dir`, sorted.
fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("list {}", dir.display()), e))?
        .map(|entry| {
            entry
                .map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .map_err(|e| Error::io(format!("list {}", dir.display()), e))
        })
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// The decision, from what [`check`] found: the directory's device `dev`, its parent's
/// `parent_dev` (a different one: something is mounted there), the container device's
/// `device_rdev` (when it exists) and the directory's entries.
fn classify(
    mountpoint: &Path,
    device: &Path,
    dev: u64,
    parent_dev: u64,
    device_rdev: Option<u64>,
    entries: &[String],
) -> Result<State> {
    if dev != parent_dev {
        if device_rdev == Some(dev) {
            return Ok(State::Ours);
        }
        return Err(Error::Usage(format!(
            "the mount point {} is already a mount point of another file system (device {}), \
             expected nothing mounted there or the container's {} ({}): refusing to mount over \
             it",
            mountpoint.display(),
            dev_name(dev),
            device.display(),
            device_rdev.map_or_else(|| "not open".to_owned(), dev_name)
        )));
    }
    if !entries.is_empty() {
        let mut named: Vec<String> = entries
            .iter()
            .take(NAMED_ENTRIES)
            .map(|n| format!("{n:?}"))
            .collect();
        if entries.len() > NAMED_ENTRIES {
            named.push(format!("and {} more", entries.len() - NAMED_ENTRIES));
        }
        return Err(Error::Usage(format!(
            "the mount point {} is not empty (expected an empty directory, found {} entries: \
             {}): refusing to mount the container over files that did not come from it (they \
             were written unencrypted, by the host or by something that ran without the \
             container); inspect and remove them first",
            mountpoint.display(),
            entries.len(),
            named.join(", ")
        )));
    }
    Ok(State::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MP: &str = "/var/lib/cosmian_vm/data";
    const DEV: &str = "/dev/mapper/cosmian_vm_data";

    fn run(dev: u64, parent: u64, rdev: Option<u64>, entries: &[&str]) -> Result<State> {
        let entries: Vec<String> = entries
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        classify(Path::new(MP), Path::new(DEV), dev, parent, rdev, &entries)
    }

    #[test]
    fn empty_and_already_ours_are_accepted() {
        assert_eq!(run(2049, 2049, None, &[]).ok(), Some(State::Empty));
        // dm-0 (253:0) mounted there, and it is the container's device.
        assert_eq!(run(0xfd00, 2049, Some(0xfd00), &[]).ok(), Some(State::Ours));
    }

    #[test]
    fn pre_seeded_directory_is_refused() {
        let err = run(2049, 2049, None, &["key.pem", "cert.pem"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(MP) && err.contains("not empty") && err.contains("\"key.pem\""),
            "{err}"
        );
        let many: Vec<String> = (0..8)
            .map(|i| format!("f{i}"))
            .collect();
        let many: Vec<&str> = many
            .iter()
            .map(String::as_str)
            .collect();
        let err = run(2049, 2049, None, &many)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("8 entries") && err.contains("and 3 more"),
            "{err}"
        );
        // Pre-seeded files count even when the container's device exists (already open).
        assert!(run(2049, 2049, Some(0xfd00), &["x"]).is_err());
    }

    #[test]
    fn another_file_system_is_refused() {
        let err = run(0xfd01, 2049, Some(0xfd00), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("device 253:1") && err.contains("253:0") && err.contains(DEV),
            "{err}"
        );
        let err = run(0x0800_0001, 2049, None, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not open"), "{err}");
    }
}
