//! The walk on real temporary trees, checked against the real `find` and `sha256sum` binaries.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A fresh directory (canonical path), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("walk-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(fs::canonicalize(&path).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ratls_test::Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bytes_name(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// The test tree. Holds the socket's listener so the socket exists for the whole test.
struct Tree {
    dir: TempDir,
    _socket: UnixListener,
}

/// Nested directories, an empty file, a 5 MiB file, files at the buffer boundary, names with
/// non-UTF-8 bytes, non-ASCII UTF-8, a backslash, a newline and a space; symbolic links to a
/// file, to a directory, to the root (a loop) and to nothing; a FIFO; a socket; `excluded/`
/// (excluded by the tests) next to `excluded2/` (not excluded: prefixes are whole components).
fn tree(tag: &str) -> Tree {
    let dir = TempDir::new(tag);
    let root = &dir.0;
    write(&root.join("a/b/c/deep.txt"), b"deep\n");
    write(&root.join("a/one.txt"), b"one\n");
    write(&root.join("a/b/two.bin"), &random_bytes(2, 70_000));
    write(&root.join("empty"), b"");
    write(&root.join("big"), &random_bytes(5, 5 * 1024 * 1024 + 123));
    write(&root.join("exact-buffer"), &random_bytes(6, BUFFER_SIZE));
    write(
        &root.join("buffer-plus-one"),
        &random_bytes(7, BUFFER_SIZE + 1),
    );
    write(&bytes_name(root, b"bad\xffname"), b"not utf-8\n");
    write(&bytes_name(root, "caf\u{e9}".as_bytes()), b"accent\n");
    write(&root.join("back\\slash"), b"backslash\n");
    write(&root.join("new\nline"), b"newline\n");
    write(&root.join("sp ace"), b"space\n");
    write(&root.join("excluded/secret.txt"), b"secret\n");
    write(&root.join("excluded/deeper/secret2.txt"), b"secret2\n");
    write(&root.join("excluded2/kept.txt"), b"kept\n");
    symlink(root.join("big"), root.join("link-to-file")).unwrap();
    symlink(root.join("a"), root.join("link-to-dir")).unwrap();
    symlink(".", root.join("a/b/loop")).unwrap();
    symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    let status = Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let socket = UnixListener::bind(root.join("socket")).unwrap();
    Tree {
        dir,
        _socket: socket,
    }
}

/// What `find -type f` (pruning `excluded`) and `sha256sum` say: escaped path → hex digest.
fn reference(root: &Path, prune: &[&str]) -> BTreeMap<String, String> {
    let mut find = Command::new("find");
    find.arg(root);
    for p in prune {
        find.arg("-path")
            .arg(root.join(p))
            .arg("-prune")
            .arg("-o");
    }
    let found = find
        .args(["-type", "f", "-print0"])
        .output()
        .unwrap();
    assert!(found.status.success());
    let files: Vec<&OsStr> = found
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(OsStr::from_bytes)
        .collect();
    assert!(!files.is_empty());
    // `-z`: NUL-terminated records, names unescaped.
    let sums = Command::new("sha256sum")
        .arg("-z")
        .arg("--")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stderr)
    );
    let mut out = BTreeMap::new();
    for record in sums
        .stdout
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
    {
        let (hex, rest) = record.split_at(64);
        assert_eq!(&rest[..2], b"  ", "text-mode separator");
        out.insert(
            Escaped(&rest[2..]).to_string(),
            String::from_utf8(hex.to_vec()).unwrap(),
        );
    }
    assert_eq!(out.len(), files.len());
    out
}

/// The walk's file set as escaped path → the one hex digest.
fn digests(files: &FileSet) -> BTreeMap<String, String> {
    files
        .files
        .iter()
        .map(|(path, set)| {
            assert_eq!(set.len(), 1, "{path}");
            (path.clone(), set.iter().next().unwrap().clone())
        })
        .collect()
}

/// Run the walk on another thread and fail (instead of hanging) if it does not finish.
fn walk_with_timeout(
    opts: WalkOptions,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<WalkResult, WalkError> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(walk(&opts, &progress, &cancel));
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the walk hung")
}

fn opts(roots: Vec<PathBuf>, excludes: Vec<PathBuf>, threads: usize) -> WalkOptions {
    let mut opts = WalkOptions::new(roots);
    opts.excludes.extend(excludes);
    opts.threads = threads;
    opts
}

#[test]
fn matches_sha256sum_and_records_only_regular_files() {
    let tree = tree("main");
    let root = tree.dir.0.clone();
    let expected = reference(&root, &["excluded"]);
    let progress = Arc::new(Progress::default());
    let result = walk_with_timeout(
        opts(vec![root.clone()], vec![root.join("excluded")], 2),
        progress.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();

    let got = digests(&result.files);
    assert_eq!(got, expected);
    assert_eq!(result.files.hash_alg, HashAlg::Sha256);

    let r = display(&root);
    // Names as IMA shows them: every byte outside printable ASCII escaped.
    for name in [
        "bad\\xffname",
        "caf\\xc3\\xa9",
        "back\\\\slash",
        "new\\nline",
        "sp ace",
        "empty",
        "a/b/c/deep.txt",
        "excluded2/kept.txt",
    ] {
        assert!(
            got.contains_key(&format!("{r}/{name}")),
            "{name} missing: {got:?}"
        );
    }
    assert_eq!(
        got[&format!("{r}/empty")],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Links, the FIFO, the socket and the excluded tree: nothing recorded.
    for absent in [
        "link-to-file",
        "link-to-dir/one.txt",
        "a/b/loop/c/deep.txt",
        "dangling",
        "fifo",
        "socket",
        "excluded/secret.txt",
        "excluded/deeper/secret2.txt",
    ] {
        assert!(
            !got.contains_key(&format!("{r}/{absent}")),
            "{absent} recorded"
        );
    }
    assert!(got
        .keys()
        .all(|p| p.starts_with(&format!("{r}/"))));
    // Only the exclude under the root is recorded (the defaults do not contain it).
    assert_eq!(result.files.excludes, vec![format!("{r}/excluded")]);

    let sizes: u64 = walk_sizes(&root, &expected);
    assert_eq!(result.stats.files, expected.len() as u64);
    assert_eq!(result.stats.bytes, sizes);
    assert!(sizes > 5 * 1024 * 1024);
    assert_eq!(result.stats.skipped, 0);
    assert!(result.stats.seconds > 0.0);
    assert_eq!(
        progress.snapshot(),
        ProgressView {
            files_done: result.stats.files,
            files_total: result.stats.files,
            bytes_done: result.stats.bytes,
            skipped: 0,
        }
    );
}

/// Sum of the sizes of the files named in `expected` (found again with `find -printf %s`).
fn walk_sizes(root: &Path, expected: &BTreeMap<String, String>) -> u64 {
    let out = Command::new("find")
        .arg(root)
        .args(["-path"])
        .arg(root.join("excluded"))
        .args(["-prune", "-o", "-type", "f", "-printf", "%s\\n"])
        .output()
        .unwrap();
    let sizes: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), expected.len());
    sizes.iter().sum()
}

#[test]
fn thread_counts_agree() {
    let tree = tree("threads");
    let root = tree.dir.0.clone();
    let mut sets = Vec::new();
    for threads in [1, 3, 8] {
        let result = walk_with_timeout(
            opts(vec![root.clone()], vec![], threads),
            Arc::new(Progress::default()),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        sets.push(result.files);
    }
    // Without the exclude, `excluded/` is walked.
    assert!(sets[0]
        .files
        .contains_key(&format!("{}/excluded/deeper/secret2.txt", display(&root))));
    assert_eq!(sets[0], sets[1]);
    assert_eq!(sets[0], sets[2]);
}

/// A file that vanished, or was replaced by a FIFO or a link after discovery, is skipped: not an
/// error, not followed, and the FIFO never blocks the worker.
#[test]
fn raced_entries_are_skipped() {
    let dir = TempDir::new("race");
    let root = &dir.0;
    write(&root.join("real"), b"real\n");
    symlink(root.join("real"), root.join("now-a-link")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(root.join("now-a-fifo"))
        .status()
        .unwrap()
        .success());
    fs::create_dir(root.join("now-a-dir")).unwrap();

    let (tx, rx) = sync_channel(16);
    for name in ["vanished", "now-a-link", "now-a-fifo", "now-a-dir", "real"] {
        tx.send(root.join(name)).unwrap();
    }
    drop(tx);
    let rx = Mutex::new(rx);
    let progress = Progress::default();
    let cancel = AtomicBool::new(false);
    let (done_tx, done_rx) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let _ = done_tx.send(hash_worker(&rx, &progress, &cancel));
        });
        let hashed = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker hung");
        assert_eq!(hashed.skipped, 4);
        assert_eq!(hashed.files.len(), 1);
        assert_eq!(hashed.files[0].0, display(&root.join("real")));
        assert_eq!(hashed.bytes, 5);
    });
    assert_eq!(progress.snapshot().skipped, 4);
    assert_eq!(progress.snapshot().files_done, 1);
}

/// An unlistable directory is skipped (counted), not an error. Root ignores permissions, so
/// there the directory is listed: the assertion follows who runs the test.
#[test]
fn unlistable_directory_is_skipped_unless_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("perm");
    let root = &dir.0;
    write(&root.join("open/a"), b"a");
    write(&root.join("closed/b"), b"b");
    fs::set_permissions(root.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let readable = fs::read_dir(root.join("closed")).is_ok();
    let result = walk_with_timeout(
        opts(vec![root.clone()], vec![], 2),
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    );
    fs::set_permissions(root.join("closed"), fs::Permissions::from_mode(0o755)).unwrap();
    let result = result.unwrap();
    if readable {
        assert_eq!(result.stats.files, 2);
        assert_eq!(result.stats.skipped, 0);
    } else {
        assert_eq!(result.stats.files, 1);
        assert_eq!(result.stats.skipped, 1);
    }
}

/// A file not everyone may read is never opened (the open, as root, would put its SHA-256 in
/// the public IMA log): counted as skipped, absent from the result.
#[test]
fn files_not_everyone_may_read_are_not_opened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("private");
    let root = &dir.0;
    write(&root.join("public.conf"), b"listen=80");
    write(&root.join("password"), b"hunter2");
    write(&root.join("group-only"), b"x");
    fs::set_permissions(root.join("password"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("group-only"), fs::Permissions::from_mode(0o640)).unwrap();
    let result = walk_with_timeout(
        opts(vec![root.clone()], vec![], 2),
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert_eq!(result.stats.files, 1);
    assert_eq!(result.stats.skipped, 2);
    let names: Vec<&String> = result.files.files.keys().collect();
    assert_eq!(names, [&display(&root.join("public.conf"))]);
}

#[test]
fn cancelled_before_start() {
    let tree = tree("cancel-before");
    let progress = Arc::new(Progress::default());
    let err = walk_with_timeout(
        opts(vec![tree.dir.0.clone()], vec![], 2),
        progress.clone(),
        Arc::new(AtomicBool::new(true)),
    )
    .unwrap_err();
    assert!(matches!(err, WalkError::Cancelled), "{err}");
    assert_eq!(progress.snapshot().files_done, 0);
}

#[test]
fn cancelled_midway_stops_early() {
    let dir = TempDir::new("cancel-mid");
    let chunk = random_bytes(9, 1024 * 1024);
    let count = 200u64;
    for i in 0..count {
        write(&dir.0.join(format!("d{}/f{i}", i % 7)), &chunk);
    }
    let progress = Arc::new(Progress::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let (p, c) = (progress.clone(), cancel.clone());
    let canceller = thread::spawn(move || {
        // Cancel once the first file is hashed: the walk is running.
        while p.snapshot().files_done == 0 {
            thread::yield_now();
        }
        c.store(true, Ordering::Relaxed);
    });
    let err = walk_with_timeout(
        opts(vec![dir.0.clone()], vec![], 1),
        progress.clone(),
        cancel,
    )
    .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, WalkError::Cancelled), "{err}");
    let seen = progress.snapshot();
    assert!(seen.files_done >= 1);
    assert!(seen.files_done < count, "{seen:?}");
}

#[test]
fn root_errors() {
    let dir = TempDir::new("roots");
    let progress = Progress::default();
    let cancel = AtomicBool::new(false);
    let err = walk(&opts(vec![], vec![], 1), &progress, &cancel).unwrap_err();
    assert!(matches!(err, WalkError::NoRoots), "{err}");
    let missing = dir.0.join("missing");
    let err = walk(&opts(vec![missing.clone()], vec![], 1), &progress, &cancel).unwrap_err();
    match err {
        WalkError::Root { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other}"),
    }
    assert!(Command::new("mkfifo")
        .arg(dir.0.join("fifo"))
        .status()
        .unwrap()
        .success());
    let err = walk(
        &opts(vec![dir.0.join("fifo")], vec![], 1),
        &progress,
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, WalkError::RootType { .. }), "{err}");
}

/// A root may be a file, or reached through a link (recorded under its real path, as IMA
/// records paths); a root inside another root is walked once, unless the outer one excludes it.
#[test]
fn file_roots_linked_roots_and_overlaps() {
    let tree = tree("overlap");
    let root = tree.dir.0.clone();
    let r = display(&root);
    let progress = Progress::default();
    let cancel = AtomicBool::new(false);

    let one = walk(
        &opts(vec![root.join("link-to-file")], vec![], 1),
        &progress,
        &cancel,
    )
    .unwrap();
    assert_eq!(one.stats.files, 1);
    assert!(one
        .files
        .files
        .contains_key(&format!("{r}/big")));

    let linked = walk(
        &opts(vec![root.join("link-to-dir")], vec![], 2),
        &progress,
        &cancel,
    )
    .unwrap();
    assert!(linked
        .files
        .files
        .contains_key(&format!("{r}/a/one.txt")));
    assert_eq!(linked.stats.files, 3); // one.txt, b/two.bin, b/c/deep.txt (b/loop not followed)

    let all = reference(&root, &["excluded"]).len() as u64;
    let twice = walk(
        &opts(
            vec![
                root.clone(),
                root.join("a"),
                root.clone(),
                root.join("a/b/c"),
            ],
            vec![root.join("excluded")],
            2,
        ),
        &progress,
        &cancel,
    )
    .unwrap();
    assert_eq!(twice.stats.files, all);
    assert_eq!(progress.snapshot().files_total, all);

    // Explicitly asking for an excluded directory walks it (and nothing twice).
    let explicit = walk(
        &opts(
            vec![root.clone(), root.join("excluded/deeper")],
            vec![root.join("excluded")],
            2,
        ),
        &progress,
        &cancel,
    )
    .unwrap();
    assert_eq!(explicit.stats.files, all + 1);
    assert!(explicit
        .files
        .files
        .contains_key(&format!("{r}/excluded/deeper/secret2.txt")));
    assert!(!explicit
        .files
        .files
        .contains_key(&format!("{r}/excluded/secret.txt")));
}

#[test]
fn default_excludes_apply_below_roots_only() {
    let opts = WalkOptions::new(vec![PathBuf::from("/")]);
    assert!(opts.threads >= 1);
    assert_eq!(opts.excludes.len(), DEFAULT_EXCLUDES.len());
    let plan = plan(&opts).unwrap();
    for e in DEFAULT_EXCLUDES {
        if Path::new(e).exists() {
            assert!(
                plan.applied_excludes
                    .iter()
                    .any(|a| a == e),
                "{e}"
            );
        }
    }
    // A root inside a default exclude is walked (its files are there), and nothing above the
    // root is recorded as an exclude.
    let dir = TempDir::new("defaults");
    write(&dir.0.join("x"), b"x");
    let result = walk(
        &WalkOptions::new(vec![dir.0.clone()]),
        &Progress::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(result.stats.files, 1);
    assert!(result.files.excludes.is_empty());
}
