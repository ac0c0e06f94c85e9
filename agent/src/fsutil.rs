//! Atomic file writes (`ratls::fsutil`, shared by every tool of the workspace), and handing a
//! file to the uid IMA does not measure.

pub use ratls::fsutil::{create_dir, write_atomic, write_atomic_owned, PUBLIC_MODE, SECRET_MODE};

use std::path::Path;

/// Give `path` to `uid` (the unmeasured uid) without opening it: IMA measures at open, by the
/// owner it sees then, so this runs before any read. A symbolic link is refused: following it
/// would give away (and then read) whatever file it points to.
pub fn give_to(path: &Path, uid: u32) -> Result<(), String> {
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(format!(
            "{} is a symbolic link: expected a regular file (refusing to follow it)",
            path.display()
        ));
    }
    std::os::unix::fs::lchown(path, Some(uid), None).map_err(|e| {
        format!(
            "giving {} to the unmeasured uid {uid} (agent.unmeasured_uid): {e}",
            path.display()
        )
    })
}
