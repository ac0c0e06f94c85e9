//! TEMPORARY stand-in for `walk.rs` (written by another helper) so this crate compiles before it
//! lands: the same API, a simple sequential walk. Delete this file and point `crate::job` at
//! `crate::walk` when the real one is merged.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ratls::digest::HashAlg;
use ratls::snapshot::FileSet;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub roots: Vec<PathBuf>,
    pub excludes: Vec<PathBuf>,
    pub threads: usize,
}

impl WalkOptions {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            excludes: ["/proc", "/sys", "/dev", "/run", "/tmp", "/var"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            threads: 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Progress {
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    skipped: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub skipped: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressView {
        ProgressView {
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: 0,
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WalkStats {
    pub files: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub seconds: f64,
}

#[derive(Debug)]
pub struct WalkResult {
    pub files: FileSet,
    pub stats: WalkStats,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("walk cancelled")]
    Cancelled,
}

pub fn walk(
    opts: &WalkOptions,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<WalkResult, WalkError> {
    let start = std::time::Instant::now();
    let mut files = FileSet::new(HashAlg::Sha256);
    files.excludes = opts
        .excludes
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut stack: Vec<PathBuf> = opts.roots.clone();
    while let Some(path) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            return Err(WalkError::Cancelled);
        }
        if opts
            .excludes
            .iter()
            .any(|e| path.starts_with(e))
        {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            progress
                .skipped
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&path) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            match hash(&path) {
                Some((d, n)) => {
                    files.insert(path.display().to_string(), &d);
                    progress
                        .files_done
                        .fetch_add(1, Ordering::Relaxed);
                    progress
                        .bytes_done
                        .fetch_add(n, Ordering::Relaxed);
                }
                None => {
                    progress
                        .skipped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let v = progress.snapshot();
    Ok(WalkResult {
        files,
        stats: WalkStats {
            files: v.files_done,
            bytes: v.bytes_done,
            skipped: v.skipped,
            seconds: start.elapsed().as_secs_f64(),
        },
    })
}

fn hash(path: &Path) -> Option<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = HashAlg::Sha256.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(buf.get(..n)?);
    }
    Some((h.finish(), total))
}
