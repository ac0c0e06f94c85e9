//! The snapshot job's filesystem walk: every regular file under the roots, minus the excludes,
//! hashed with SHA-256 in parallel, streaming (a file is never read whole into memory), with
//! progress counters another thread can read.
//!
//! How it runs: the calling thread discovers files (depth first, `readdir` file types only, no
//! `stat` per file) and feeds their paths through a bounded queue to `threads` hashing workers,
//! each streaming its files through one [`BUFFER_SIZE`] buffer into ring's SHA-256.
//!
//! What it records, and what it does not:
//! - regular files only. Symbolic links are neither followed nor hashed (a link to a directory
//!   cannot make a loop); FIFOs, sockets and device nodes are ignored (never opened for a read
//!   that could block). Files are opened with `O_NOFOLLOW | O_NONBLOCK` and checked again with
//!   `fstat`, so a file swapped for a link or a FIFO between discovery and hashing is skipped,
//!   not followed and not waited on.
//! - an exclude is a path prefix (whole components) that the walk never enters. Only excludes
//!   strictly below a root apply to it: the default `/tmp` does not stop a walk of `/tmp/app`.
//!   The excludes that applied are listed in [`FileSet::excludes`].
//! - files that vanish or cannot be read mid-walk, and directories that cannot be listed, are
//!   counted as skipped, not errors. A root that is missing or unreadable is an error.
//! - paths are absolute, below the canonical roots (symbolic links in a root are resolved, as
//!   IMA's own paths are) and rendered exactly as IMA paths are in
//!   [`ratls::snapshot::measured_files`] ([`ratls::ima::Escaped`]: printable ASCII as is,
//!   every other byte escaped), so a walked path and an IMA-measured path of the same file are
//!   the same string, whatever bytes the name holds.
//! - a root inside another root (and not inside one of its excludes) is walked once.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use ratls::digest::HashAlg;
use ratls::ima::Escaped;
use ratls::snapshot::FileSet;

#[cfg(test)]
mod tests;

/// What a walk of `/` leaves out by default: kernel and runtime filesystems, scratch and
/// variable data. Only those under a root matter.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var",
    "/lost+found",
];

/// Read buffer per hashing worker.
pub const BUFFER_SIZE: usize = 128 * 1024;

/// Paths queued per worker between discovery and hashing.
const QUEUE_PER_WORKER: usize = 256;

/// What to walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Directories (or single regular files) to walk.
    pub roots: Vec<PathBuf>,
    /// Path prefixes never entered (see the module documentation).
    pub excludes: Vec<PathBuf>,
    /// Hashing workers (0 counts as 1).
    pub threads: usize,
}

impl WalkOptions {
    /// `roots` with [`DEFAULT_EXCLUDES`] and one worker per available CPU.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            excludes: DEFAULT_EXCLUDES
                .iter()
                .map(PathBuf::from)
                .collect(),
            threads: thread::available_parallelism().map_or(1, NonZeroUsize::get),
        }
    }
}

/// Live counters of a walk, readable from another thread while it runs ([`Progress::snapshot`]).
/// `files_total` grows as discovery finds regular files; `files_done` and `bytes_done` count
/// files hashed; `skipped` counts files that vanished or could not be read and directories that
/// could not be listed. When the walk returns they equal its [`WalkStats`], and
/// `files_done + (skipped files) == files_total`. [`walk`] resets them when it starts.
#[derive(Debug, Default)]
pub struct Progress {
    files_done: AtomicU64,
    files_total: AtomicU64,
    bytes_done: AtomicU64,
    skipped: AtomicU64,
}

impl Progress {
    /// The counters now.
    pub fn snapshot(&self) -> ProgressView {
        ProgressView {
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for counter in [
            &self.files_done,
            &self.files_total,
            &self.bytes_done,
            &self.skipped,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A copy of [`Progress`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgressView {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub skipped: u64,
}

/// A finished walk.
#[derive(Debug)]
pub struct WalkResult {
    /// Path → SHA-256 of every regular file hashed, with the excludes that applied.
    pub files: FileSet,
    pub stats: WalkStats,
}

/// What a finished walk did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WalkStats {
    /// Regular files hashed.
    pub files: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Files that vanished or could not be read, directories that could not be listed.
    pub skipped: u64,
    /// Wall-clock time of the walk.
    pub seconds: f64,
}

/// Why a walk produced no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    #[error("no walk roots given")]
    NoRoots,
    /// A root is missing or cannot be read.
    #[error("walk root {}: {source}", path.display())]
    Root { path: PathBuf, source: io::Error },
    /// A root is neither a directory nor a regular file.
    #[error("walk root {} is neither a directory nor a regular file", path.display())]
    RootType { path: PathBuf },
    /// The cancel flag was set before the walk finished.
    #[error("the walk was cancelled")]
    Cancelled,
    /// A hashing thread could not be started or did not finish.
    #[error("walk thread failed: {0}")]
    Thread(String),
}

/// Walk `opts.roots` and hash every regular file found (see the module documentation), on
/// `opts.threads` workers. Blocks until done; `progress` is updated as it goes and `cancel` is
/// checked between directory entries and between file chunks.
pub fn walk(
    opts: &WalkOptions,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<WalkResult, WalkError> {
    let start = Instant::now();
    let plan = plan(opts)?;
    progress.reset();
    let threads = opts.threads.max(1);
    let (tx, rx) = sync_channel::<PathBuf>(threads.saturating_mul(QUEUE_PER_WORKER));
    let rx = Mutex::new(rx);

    let (discovered, hashed) = thread::scope(|scope| {
        let mut workers = Vec::with_capacity(threads);
        let mut spawn_error = None;
        for i in 0..threads {
            let rx = &rx;
            match thread::Builder::new()
                .name(format!("walk-hash-{i}"))
                .spawn_scoped(scope, move || hash_worker(rx, progress, cancel))
            {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    spawn_error = Some(WalkError::Thread(e.to_string()));
                    break;
                }
            }
        }
        let discovered = match spawn_error {
            // Dropping the sender ends the workers already started.
            Some(e) => Err(e),
            None => Ok(discover(&plan, &tx, progress, cancel)),
        };
        drop(tx);
        let mut hashed = Vec::with_capacity(workers.len());
        for worker in workers {
            match worker.join() {
                Ok(h) => hashed.push(h),
                Err(_) => {
                    return (
                        discovered,
                        Err(WalkError::Thread("hashing worker panicked".into())),
                    )
                }
            }
        }
        (discovered, Ok(hashed))
    });
    let skipped_dirs = discovered?;
    let hashed = hashed?;
    if cancel.load(Ordering::Relaxed) {
        return Err(WalkError::Cancelled);
    }

    let mut files = FileSet::new(HashAlg::Sha256);
    files.excludes = plan.applied_excludes;
    let mut stats = WalkStats {
        files: 0,
        bytes: 0,
        skipped: skipped_dirs,
        seconds: 0.0,
    };
    for worker in hashed {
        stats.files += worker.files.len() as u64;
        stats.bytes += worker.bytes;
        stats.skipped += worker.skipped;
        for (path, digest) in worker.files {
            files.insert(path, &digest);
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(WalkResult { files, stats })
}

/// The roots to walk, each with the excludes that apply to it.
#[derive(Debug)]
struct Plan {
    roots: Vec<Root>,
    /// Every exclude that applies to some root, as recorded in the file set.
    applied_excludes: Vec<String>,
}

#[derive(Debug)]
struct Root {
    path: PathBuf,
    is_dir: bool,
    /// Excludes strictly below `path`. Discovery checks each entry before entering it, so an
    /// entry is excluded exactly when it equals one of these.
    excludes: Vec<PathBuf>,
}

impl Root {
    fn excludes_path(&self, path: &Path) -> bool {
        self.excludes.iter().any(|e| e == path)
    }

    /// Whether the walk of `self` reaches `path` (below it and not under one of its excludes).
    fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.path)
            && !self
                .excludes
                .iter()
                .any(|e| path.starts_with(e))
    }
}

fn plan(opts: &WalkOptions) -> Result<Plan, WalkError> {
    if opts.roots.is_empty() {
        return Err(WalkError::NoRoots);
    }
    // Each exclude as written (made absolute and lexically clean) and, when it exists and
    // differs, canonical.
    let cwd = std::env::current_dir().ok();
    let mut excludes: Vec<PathBuf> = Vec::new();
    for e in &opts.excludes {
        let absolute = match (e.is_absolute(), &cwd) {
            (true, _) => e.clone(),
            (false, Some(cwd)) => cwd.join(e),
            (false, None) => continue,
        };
        let clean = lexical_clean(&absolute);
        if let Ok(canonical) = fs::canonicalize(&clean) {
            if canonical != clean && !excludes.contains(&canonical) {
                excludes.push(canonical);
            }
        }
        if !excludes.contains(&clean) {
            excludes.push(clean);
        }
    }

    let mut roots: Vec<Root> = Vec::new();
    for given in &opts.roots {
        let path = fs::canonicalize(given).map_err(|source| WalkError::Root {
            path: given.clone(),
            source,
        })?;
        let meta = fs::metadata(&path).map_err(|source| WalkError::Root {
            path: given.clone(),
            source,
        })?;
        let is_dir = meta.is_dir();
        if is_dir {
            // Unreadable root: an error, not a skip.
            fs::read_dir(&path).map_err(|source| WalkError::Root {
                path: given.clone(),
                source,
            })?;
        } else if !meta.is_file() {
            return Err(WalkError::RootType {
                path: given.clone(),
            });
        }
        let below: Vec<PathBuf> = excludes
            .iter()
            .filter(|e| e.starts_with(&path) && **e != path)
            .cloned()
            .collect();
        roots.push(Root {
            path,
            is_dir,
            excludes: below,
        });
    }
    // Walk each part of the tree once: drop a root another root's walk reaches.
    let mut kept: Vec<Root> = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let covered = roots
            .iter()
            .enumerate()
            .any(|(j, other)| {
                j != i
                && other.covers(&root.path)
                // Of two identical roots keep the first.
                && (other.path != root.path || j < i)
            });
        if !covered {
            kept.push(Root {
                path: root.path.clone(),
                is_dir: root.is_dir,
                excludes: root.excludes.clone(),
            });
        }
    }
    let mut applied: Vec<String> = kept
        .iter()
        .flat_map(|r| r.excludes.iter())
        .map(|e| display(e))
        .collect();
    applied.sort();
    applied.dedup();
    Ok(Plan {
        roots: kept,
        applied_excludes: applied,
    })
}

/// `path` with `.` dropped and `..` applied lexically (no file system access).
fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A path as IMA's `path_display` renders it.
fn display(path: &Path) -> String {
    Escaped(path.as_os_str().as_bytes()).to_string()
}

/// Find the regular files under the plan's roots and queue them. Returns the number of
/// directories that could not be listed (or entries that could not be typed).
fn discover(
    plan: &Plan,
    tx: &SyncSender<PathBuf>,
    progress: &Progress,
    cancel: &AtomicBool,
) -> u64 {
    let mut skipped = 0u64;
    let skip = |skipped: &mut u64| {
        *skipped += 1;
        Progress::add(&progress.skipped, 1);
    };
    for root in &plan.roots {
        if !root.is_dir {
            Progress::add(&progress.files_total, 1);
            if tx.send(root.path.clone()).is_err() {
                return skipped;
            }
            continue;
        }
        let mut stack = vec![root.path.clone()];
        while let Some(dir) = stack.pop() {
            if cancel.load(Ordering::Relaxed) {
                return skipped;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(_) => {
                    skip(&mut skipped);
                    continue;
                }
            };
            for entry in entries {
                if cancel.load(Ordering::Relaxed) {
                    return skipped;
                }
                let Ok(entry) = entry else {
                    // The directory went away or failed mid-listing.
                    skip(&mut skipped);
                    break;
                };
                let path = entry.path();
                if root.excludes_path(&path) {
                    continue;
                }
                // The entry's own type (`d_type`, or `lstat`): links are links, never followed.
                let Ok(kind) = entry.file_type() else {
                    skip(&mut skipped);
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    // A file not everyone may read (e.g. /etc/shadow, SSH host keys, an app's
                    // 0600 password file) is not opened: as root, the open would make IMA log
                    // its SHA-256 in the public measurement log (docs/ima.md). Such a file is
                    // approved through the IMA log when the program that uses it reads it.
                    let private = entry
                        .metadata()
                        .map_or(true, |m| m.permissions().mode() & 0o004 == 0);
                    if private {
                        skip(&mut skipped);
                        continue;
                    }
                    Progress::add(&progress.files_total, 1);
                    if tx.send(path).is_err() {
                        return skipped;
                    }
                }
            }
        }
    }
    skipped
}

/// What one worker hashed.
#[derive(Debug, Default)]
struct Hashed {
    files: Vec<(String, Vec<u8>)>,
    bytes: u64,
    skipped: u64,
}

/// Hash queued files until the queue closes. Once cancelled, drains the queue without hashing
/// (so discovery never blocks on a full queue).
fn hash_worker(rx: &Mutex<Receiver<PathBuf>>, progress: &Progress, cancel: &AtomicBool) -> Hashed {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut out = Hashed::default();
    loop {
        // Nothing panics while holding the lock; a poisoned lock still guards a valid receiver.
        let next = rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(path) = next else {
            return out;
        };
        if cancel.load(Ordering::Relaxed) {
            continue;
        }
        match hash_file(&path, &mut buf, cancel) {
            Ok(Some((digest, len))) => {
                out.bytes += len;
                out.files.push((display(&path), digest));
                Progress::add(&progress.bytes_done, len);
                Progress::add(&progress.files_done, 1);
            }
            Ok(None) => {} // cancelled mid-file
            Err(_) => {
                out.skipped += 1;
                Progress::add(&progress.skipped, 1);
            }
        }
    }
}

/// SHA-256 and length of the regular file at `path`, streamed through `buf`; `None` when
/// cancelled part-way. Fails if the path no longer names a regular file.
fn hash_file(
    path: &Path,
    buf: &mut [u8],
    cancel: &AtomicBool,
) -> io::Result<Option<(Vec<u8>, u64)>> {
    // O_NOFOLLOW: a link swapped in is not followed. O_NONBLOCK: a FIFO swapped in does not
    // block the open (and fstat then rejects it). O_NOCTTY: a terminal never becomes ours.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no longer a regular file",
        ));
    }
    let mut hasher = HashAlg::Sha256.hasher();
    let mut len = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    Ok(Some((hasher.finish(), len)))
}
