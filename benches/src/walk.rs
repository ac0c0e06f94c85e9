//! The `walk` group: the agent's snapshot walk (`cosmian_vm_agent::walk`) next to GNU
//! `sha256sum` over the same files, in the same run.
//!
//! The tree: `scale(2000)` files in nested directories (about 50 a directory), sizes drawn from a
//! fixed mix (70 % 1–16 KiB, 20 % 16–256 KiB, 10 % 256 KiB–1 MiB; ~195 MiB at multiplier 1),
//! pseudo-random contents, written to a fresh directory under the temp dir.
//!
//! Nothing is dropped from the page cache: after the tree is written, one warm-up pass of every
//! case reads it all, so every timed pass reads from the page cache and the figures are the CPU
//! cost of listing, reading and hashing. The warm-up also checks that our digests equal
//! `sha256sum`'s for every file. Cases then run interleaved (order rotated each repetition)
//! so that each sees the same machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cosmian_vm_agent::walk::{walk, Progress, WalkOptions};
use ratls::digest::HashAlg;
use ratls::ima::Escaped;

use crate::Measurement;

/// Timed passes of each case.
const REPETITIONS: u64 = 7;

/// Parallel hashing: our workers, and `xargs -P`.
const THREADS: usize = 2;

struct Tree {
    dir: PathBuf,
    files: u64,
    bytes: u64,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build_tree(files: u64) -> Tree {
    let dir = std::env::temp_dir().join(format!("ratls-bench-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = std::fs::canonicalize(&dir).expect("canonical temp dir");
    let mut rng = ratls_test::Rng::new(0x5a1c);
    let mut block = vec![0u8; 1 << 20];
    for chunk in block.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let mut bytes = 0u64;
    for i in 0..files {
        let kib = match rng.below(10) {
            0..=6 => 1 + rng.below(16),
            7 | 8 => 16 + rng.below(240),
            _ => 256 + rng.below(768),
        };
        let len = kib * 1024;
        let sub = dir.join(format!("d{}/e{}", (i / 50) % 8, i / 50));
        std::fs::create_dir_all(&sub).expect("mkdir");
        // A different slice of the random block for each file, so no two files are equal.
        let start = rng.below((1 << 20) - len + 1);
        std::fs::write(sub.join(format!("f{i}")), &block[start..start + len]).expect("write");
        bytes += len as u64;
    }
    Tree { dir, files, bytes }
}

/// `find DIR -type f -print0 | xargs -0 [-P N -n 64] sha256sum`, output captured.
fn sha256sum(dir: &Path, parallel: Option<usize>) -> Vec<u8> {
    let xargs = match parallel {
        Some(n) => format!("xargs -0 -P{n} -n 64 sha256sum"),
        None => "xargs -0 sha256sum".to_owned(),
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("find \"$1\" -type f -print0 | {xargs}"))
        .arg("sh")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "find | xargs sha256sum failed");
    out.stdout
}

fn ours(dir: &Path, threads: usize) -> BTreeMap<String, String> {
    let mut opts = WalkOptions::new(vec![dir.to_path_buf()]);
    opts.threads = threads;
    let result = walk(&opts, &Progress::default(), &AtomicBool::new(false)).expect("walk");
    assert_eq!(result.stats.skipped, 0);
    result
        .files
        .files
        .into_iter()
        .map(|(path, digests)| {
            (
                path,
                digests
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// `sha256sum` text output as path → digest (names in the tree need no escaping).
fn parse_sums(out: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let (hex, path) = l
                .split_once("  ")
                .expect("sha256sum line");
            (path.to_owned(), hex.to_owned())
        })
        .collect()
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    for tool in ["sh", "find", "xargs", "sha256sum"] {
        if ratls_test::swtpm::on_path(tool).is_none() {
            assert!(!ratls_test::in_ci(), "CI must have {tool}");
            eprintln!("walk: {tool} not installed; group SKIPPED");
            return Vec::new();
        }
    }
    let tree = build_tree(scale(2000));
    let dir = tree.dir.clone();
    let mb = tree.bytes as f64 / 1e6;

    // Warm-up: every case once (the whole tree is now in the page cache), and the same digests.
    let reference = parse_sums(&sha256sum(&dir, Some(THREADS)));
    assert_eq!(reference.len() as u64, tree.files);
    assert_eq!(parse_sums(&sha256sum(&dir, None)), reference);
    let mine = ours(&dir, THREADS);
    assert_eq!(mine, reference, "our digests differ from sha256sum's");
    assert!(mine
        .keys()
        .all(|p| *p == Escaped(p.as_bytes()).to_string()));
    assert_eq!(ours(&dir, 1), reference);

    // The same bytes hashed from memory, one thread: the ceiling without any file I/O.
    let sizes: Vec<usize> = walk_sizes(&dir);
    let block = vec![0x5au8; 1 << 20];

    type Case<'a> = (String, Box<dyn Fn() + 'a>);
    let cases: Vec<Case> = vec![
        (
            format!("ours: `walk`, {THREADS} hashing threads"),
            Box::new(|| {
                std::hint::black_box(ours(&dir, THREADS));
            }),
        ),
        (
            format!("reference: find -print0 piped to xargs -0 -P{THREADS} -n 64 sha256sum ({THREADS} processes)"),
            Box::new(|| {
                std::hint::black_box(sha256sum(&dir, Some(THREADS)));
            }),
        ),
        (
            "ours: `walk`, 1 hashing thread".to_owned(),
            Box::new(|| {
                std::hint::black_box(ours(&dir, 1));
            }),
        ),
        (
            "reference: find -print0 piped to xargs -0 sha256sum (1 process)".to_owned(),
            Box::new(|| {
                std::hint::black_box(sha256sum(&dir, None));
            }),
        ),
        (
            "reference: ring SHA-256 of the same sizes from memory, 1 thread (no file I/O)".to_owned(),
            Box::new(|| {
                for &len in &sizes {
                    std::hint::black_box(HashAlg::Sha256.digest(&block[..len]));
                }
            }),
        ),
    ];
    let mut elapsed = vec![Duration::ZERO; cases.len()];
    for rep in 0..REPETITIONS as usize {
        for k in 0..cases.len() {
            let i = (k + rep) % cases.len();
            let t = Instant::now();
            (cases[i].1)();
            elapsed[i] += t.elapsed();
        }
    }
    let rate = |i: usize| mb * REPETITIONS as f64 / elapsed[i].as_secs_f64();
    let (ours2, sum2, ours1, sum1) = (rate(0), rate(1), rate(2), rate(3));
    let files = tree.files;
    cases
        .iter()
        .zip(&elapsed)
        .enumerate()
        .map(|(i, ((name, _), &elapsed))| {
            let extra = match i {
                0 => format!(" — {:.2}× the {THREADS} sha256sum processes", ours2 / sum2),
                2 => format!(" — {:.2}× the single sha256sum", ours1 / sum1),
                _ => String::new(),
            };
            Measurement {
                name: format!(
                    "walk: {name} ({files} files, {mb:.0} MB, page cache warm: {:.0} MB/s){extra}",
                    rate(i)
                ),
                iterations: REPETITIONS,
                elapsed,
                units_per_iter: tree.files,
                unit: "files",
                memory_bytes: None,
            }
        })
        .collect()
}

/// The size of every file under `dir`.
fn walk_sizes(dir: &Path) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(meta.len() as usize);
            }
        }
    }
    out
}
