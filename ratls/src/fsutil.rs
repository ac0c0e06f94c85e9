//! Atomic file writes, shared by every tool of the workspace: a temporary file created next to
//! the final name (exclusive, with the final mode from the start), written, fsynced, renamed over
//! the final name, then the directory fsynced. Readers see the old file or the new one, never
//! half of one, and a crash leaves at worst a stray temporary file, never a truncated target.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Mode of secrets and keys.
pub const SECRET_MODE: u32 = 0o600;

/// Mode of public files (certificates).
pub const PUBLIC_MODE: u32 = 0o644;

/// Create `dir` and its missing parents with `mode` (existing directories are left as they are).
pub fn create_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    #[cfg(not(unix))]
    let _ = mode;
    builder.create(dir)
}

/// Write `bytes` to `path` atomically with permissions `mode`; missing parent directories are
/// created with mode 0700.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], the file owned by `owner` (a uid) from before its first byte is written:
/// secrets go to the uid the IMA policy does not measure (`agent/packaging/ima-policy`), so
/// their digests never reach the measurement log. Changing the owner needs root (or
/// CAP_CHOWN); the error is returned, nothing is written then.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<u32>,
) -> std::io::Result<()> {
    let mut staged = stage(path, bytes, mode, owner)?;
    staged.commit()?;
    sync_dir(parent(path))
}

/// Write several files together: each is staged (temporary file written and fsynced) first, and
/// only when all are staged are they renamed over their final names, in order, then their
/// directories are fsynced. A failure before the renames leaves every final name untouched (a
/// certificate and its key never end up from two different issuances).
pub fn write_all_atomic(files: &[(&Path, &[u8], u32)]) -> std::io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes, mode) in files {
        // A failure drops (and removes) the files staged so far.
        staged.push(stage(path, bytes, *mode, None)?);
    }
    for s in &mut staged {
        s.commit()?;
    }
    for (path, _, _) in files {
        sync_dir(parent(path))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// Directories can be opened and synced on Unix; elsewhere the rename is what we have.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A temporary file written and fsynced next to its final name; removed on drop unless renamed.
struct Staged {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    done: bool,
}

impl Staged {
    fn commit(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn stage(path: &Path, bytes: &[u8], mode: u32, owner: Option<u32>) -> std::io::Result<Staged> {
    let dir = parent(path);
    create_dir(dir, 0o700)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            )
        })?;
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{name}.tmp.{}.{}.{attempt}",
            std::process::id(),
            nanos()
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        match options.open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    // From here on, dropping `staged` removes the temporary file.
    let staged = Staged {
        tmp,
        path: path.to_path_buf(),
        done: false,
    };
    // The umask may have narrowed the mode at creation: set it exactly.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    #[cfg(unix)]
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), None)?;
    }
    #[cfg(not(unix))]
    let _ = owner;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(staged)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_atomically_with_the_exact_mode_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("ratls-fsutil-{}", std::process::id()));
        let path = dir.join("sub/secret");
        write_atomic(&path, b"one", SECRET_MODE).unwrap();
        write_atomic(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        assert!(write_atomic(Path::new("/"), b"x", PUBLIC_MODE).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn several_files_are_renamed_only_when_all_are_written() {
        let dir = std::env::temp_dir().join(format!("ratls-fsutil-all-{}", std::process::id()));
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        write_all_atomic(&[(&cert, b"c1", PUBLIC_MODE), (&key, b"k1", SECRET_MODE)]).unwrap();
        // The second file cannot be staged (its "parent" is a file): nothing changes.
        let bad = cert.join("x");
        assert!(
            write_all_atomic(&[(&key, b"k2", SECRET_MODE), (&bad, b"x", SECRET_MODE)]).is_err()
        );
        assert_eq!(std::fs::read(&key).unwrap(), b"k1");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["cert.pem", "key.pem"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_owned_write_gives_the_file_to_the_uid() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("ratls-fsutil-owned-{}", std::process::id()));
        let path = dir.join("secret");
        // Another uid needs root (CI runs as root); otherwise give it to ourselves.
        let me = std::fs::metadata("/proc/self")
            .unwrap()
            .uid();
        let uid = if me == 0 { 60990 } else { me };
        write_atomic_owned(&path, b"s", SECRET_MODE, Some(uid)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
