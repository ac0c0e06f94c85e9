//! Files this CLI writes: atomically (temp file in the same directory, fsync, rename, fsync of
//! the directory), secrets with mode 0600.

use std::path::{Path, PathBuf};

use crate::cli::UsageError;

/// Write `bytes` to `path` atomically with permission bits `mode` (`ratls::fsutil`).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), UsageError> {
    ratls::fsutil::write_atomic(path, bytes, mode)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))
}

/// `$XDG_CONFIG_HOME/cosmian_vm`, else `$HOME/.config/cosmian_vm`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("cosmian_vm"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(
        PathBuf::from(home)
            .join(".config")
            .join("cosmian_vm"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_the_mode() {
        let dir = std::env::temp_dir().join(format!("cosmian_vm_files_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("secret.key")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
