//! Atomic file writes: `ratls::fsutil`, shared by every tool of the workspace.

pub use ratls::fsutil::{create_dir, write_atomic, write_atomic_owned, PUBLIC_MODE, SECRET_MODE};
