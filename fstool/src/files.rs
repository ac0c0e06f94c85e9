//! Files: [`PrivateDir`], a 0700
//! directory for the key files and header copies handed to `cryptsetup`, wiped and removed on
//! drop.
//!
//! IMA: the recommended policy (`agent/packaging/ima-policy`) measures every regular file root
//! reads, except on pseudo and volatile file systems (tmpfs among them, but not ramfs) and
//! except files owned by the agent's unmeasured uid (60990). A key file that `cryptsetup` (root)
//! reads on a measured file system would put its SHA-256 in the IMA log, which anyone can fetch.
//! So [`PrivateDir`] prefers `/run` (tmpfs on systemd systems and in the guest initramfs, and
//! writable by root only) over `/dev/shm` and `/tmp` (on the guest's ramfs root, `/tmp` is
//! measured), and with [`set_secret_owner`] (`--secret-owner-uid`) every secret file is chowned
//! to that uid right after it is created, before anything is written to it or reads it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A random hex name suffix.
fn random_suffix() -> Result<String> {
    Ok(hex::encode(Secret::random(8)?.bytes()))
}

/// The uid every secret file is given (`--secret-owner-uid`), set once by `main`.
static SECRET_OWNER: OnceLock<u32> = OnceLock::new();

/// Every secret file written from now on is chowned to `uid` before it is written or read
/// (the IMA policy does not measure files this uid owns).
pub fn set_secret_owner(uid: u32) -> Result<()> {
    SECRET_OWNER
        .set(uid)
        .map_err(|previous| {
            Error::Other(format!(
                "the secret owner uid is already set (to {previous}), cannot set it to {uid}"
            ))
        })
}

/// Where private directories go, in order: `$TMPDIR` when set (only there), else `/run`
/// (root-only tmpfs: not measured by IMA, never on disk), `/dev/shm` (tmpfs), the system temp
/// directory. The first one a directory can be created in is used.
fn bases() -> Vec<PathBuf> {
    match std::env::var_os("TMPDIR") {
        Some(dir) if !dir.is_empty() => vec![PathBuf::from(dir)],
        _ => ["/run", "/dev/shm"]
            .into_iter()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .chain(std::iter::once(std::env::temp_dir()))
            .collect(),
    }
}

/// A fresh 0700 directory for files `cryptsetup` reads secrets from: under `$TMPDIR` when set,
/// else the first of `/run`, `/dev/shm` and the system temp directory it can be created in
/// (see the module documentation for why). On drop the secret files are overwritten with zeros
/// and the directory is removed.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    secret_files: Vec<(PathBuf, usize)>,
}

impl PrivateDir {
    pub fn new() -> Result<Self> {
        let name = format!("cosmian_fstool-{}-{}", std::process::id(), random_suffix()?);
        let mut failures = Vec::new();
        for base in bases() {
            let path = base.join(&name);
            match DirBuilder::new()
                .mode(0o700)
                .create(&path)
            {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        secret_files: Vec::new(),
                    })
                }
                Err(e) => failures.push(format!("{}: {e}", path.display())),
            }
        }
        Err(Error::Other(format!(
            "cannot create a private directory for the key files (tried {})",
            failures.join("; ")
        )))
    }

    /// A path inside the directory that does not exist yet.
    pub fn path_for(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write `secret` to a new 0600 file `name` in the directory.
    pub fn write_secret(&mut self, name: &str, secret: &Secret) -> Result<PathBuf> {
        let path = self.path.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        self.secret_files
            .push((path.clone(), secret.bytes().len()));
        if let Some(uid) = SECRET_OWNER.get() {
            std::os::unix::fs::fchown(&file, Some(*uid), None).map_err(|e| {
                Error::io(
                    format!(
                        "chown {} to the secret owner uid {uid} (--secret-owner-uid)",
                        path.display()
                    ),
                    e,
                )
            })?;
        }
        file.write_all(secret.bytes())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        for (path, len) in &self.secret_files {
            if let Ok(mut file) = OpenOptions::new()
                .write(true)
                .open(path)
            {
                let _ = file.write_all(&vec![0u8; *len]);
                let _ = file.sync_all();
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn private_dir_modes_and_cleanup() -> Result<()> {
        let mut dir = PrivateDir::new()?;
        let root = dir.path.clone();
        let file = dir.write_secret("k", &Secret::new(b"abc".to_vec()))?;
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&root), Some(0o700));
        assert_eq!(mode(&file), Some(0o600));
        drop(dir);
        assert!(!root.exists());
        Ok(())
    }
}
