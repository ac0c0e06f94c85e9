//! Atomic file writes: a temporary file in the same directory, written, fsynced, renamed over
//! the final name, then the directory fsynced. Readers see the old file or the new one, never
//! half of one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of secrets and keys.
pub const SECRET_MODE: u32 = 0o600;

/// Mode of public files (certificates).
pub const PUBLIC_MODE: u32 = 0o644;

/// Create `dir` and its missing parents with `mode` (existing directories are left as they are).
pub fn create_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
}

/// Write `bytes` to `path` atomically with permissions `mode`; missing parent directories are
/// created with mode 0700.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut staged = stage(path, bytes, mode)?;
    staged.commit()?;
    sync_parent(path)
}

/// Write several files together: each is staged (temporary file written and fsynced) first, and
/// only when all are staged are they renamed over their final names, in order, then the
/// directories are fsynced. A failure before the renames leaves every final name untouched.
pub fn write_all_atomic(files: &[(&Path, &[u8], u32)]) -> std::io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes, mode) in files {
        // A failure drops (and removes) the files staged so far.
        staged.push(stage(path, bytes, *mode)?);
    }
    for s in &mut staged {
        s.commit()?;
    }
    for (path, _, _) in files {
        sync_parent(path)?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    File::open(parent(path))?.sync_all()
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

fn stage(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<Staged> {
    let dir = parent(path);
    create_dir(dir, 0o700)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{name}.tmp.{}.{}.{attempt}",
            std::process::id(),
            nanos()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let staged = Staged {
        tmp,
        path: path.to_path_buf(),
        done: false,
    };
    // The umask may have narrowed the mode at creation: set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
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
