//! Files: atomic writes (temp + fsync + rename, mode 0600) and [`PrivateDir`], a 0700
//! directory for the key files and header copies handed to `cryptsetup`, wiped and removed on
//! drop.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A random hex name suffix.
fn random_suffix() -> Result<String> {
    Ok(hex::encode(Secret::random(8)?.bytes()))
}

/// Write `bytes` to `path` atomically with mode 0600: a temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        random_suffix()?
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// A fresh 0700 directory for files `cryptsetup` reads secrets from. It lives under `$TMPDIR`
/// when set, else `/dev/shm` (memory, never on disk) when present, else the system temp dir.
/// On drop the secret files are overwritten with zeros and the directory is removed.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    secret_files: Vec<(PathBuf, usize)>,
}

impl PrivateDir {
    pub fn new() -> Result<Self> {
        let base = match std::env::var_os("TMPDIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            _ => std::env::temp_dir(),
        };
        let path = base.join(format!(
            "cosmian_fstool-{}-{}",
            std::process::id(),
            random_suffix()?
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(Self {
            path,
            secret_files: Vec::new(),
        })
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

    #[test]
    fn atomic_write_is_0600_and_replaces() -> Result<()> {
        let dir = PrivateDir::new()?;
        let target = dir.path_for("out.json");
        write_atomic(&target, b"one")?;
        write_atomic(&target, b"two")?;
        assert_eq!(std::fs::read(&target).ok(), Some(b"two".to_vec()));
        let mode = std::fs::metadata(&target).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let entries = std::fs::read_dir(&dir.path)
            .map(|d| d.count())
            .ok();
        assert_eq!(entries, Some(1), "temp files left behind");
        Ok(())
    }
}
