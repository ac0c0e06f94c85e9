//! Helpers shared by the test suites of every crate in the workspace.
//!
//! - [`real_testdata`]: where the evidence captured on real hardware lives
//!   (`COSMIAN_REAL_TESTDATA`, default `<workspace>/../shared/testdata/real`). It is read in place,
//!   never copied into the repository. When it is missing, tests fail under `CI=true` and
//!   otherwise print a loud SKIPPED line.
//! - [`Mutations`]: deterministic truncations, bit flips, byte overwrites and oversized variants
//!   of a sample, for "never panics, always a typed error" tests.
//! - [`collateral_server::Server`]: a local AMD KDS / Intel PCS v4 serving the real captured
//!   collateral at the real paths (hyper), for the collateral-plane tests.
//! - [`tls`]: in-memory rustls handshakes (connections or `tokio-rustls` streams), for the TLS
//!   tests and the handshake benchmarks.
//! - [`swtpm::Swtpm`]: a real software TPM per test, on a free port pair, killed on drop. The
//!   helpers that need `ratls` itself (the IMA simulator) live in the dev-only crate
//!   `ratls-harness` (`tests/harness/`), since `ratls` dev-depends on this crate.

#![allow(clippy::panic, clippy::indexing_slicing)] // Test-only code: failing a test by panicking is its job.

use std::path::PathBuf;

pub mod collateral_server;
pub mod swtpm;
pub mod tls;

/// The environment variable that points at the real-evidence tree.
pub const REAL_TESTDATA_ENV: &str = "COSMIAN_REAL_TESTDATA";

/// Whether we run under CI (`CI=true`), where missing prerequisites fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The root of the real-evidence tree, whether or not it exists.
pub fn real_testdata_root() -> PathBuf {
    match std::env::var_os(REAL_TESTDATA_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/real"),
    }
}

/// `sub` under the real-evidence tree, or `None` (with a loud SKIPPED message) when it is absent.
///
/// # Panics
/// Under CI (`CI=true`) a missing tree fails the test.
pub fn real_testdata(sub: &str) -> Option<PathBuf> {
    let dir = real_testdata_root().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if in_ci() {
        panic!(
            "real test data {} is missing; CI requires it (set {REAL_TESTDATA_ENV})",
            dir.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: real test data {} not found (set {REAL_TESTDATA_ENV}) ***\n",
        dir.display()
    );
    None
}

/// Read a file under the real-evidence tree.
///
/// # Panics
/// When the file cannot be read (the directory was already found, so this is a broken tree).
pub fn read_real(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A small deterministic PRNG (SplitMix64) so mutation runs reproduce exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }
}

/// Deterministic variants of a valid sample: every truncation point (strided for big inputs),
/// single bit flips, random overwrites of 1–8 bytes with extreme values, length-field style
/// `0xff` runs, and oversized inputs (junk appended, the sample repeated).
#[derive(Debug)]
pub struct Mutations {
    variants: Vec<(String, Vec<u8>)>,
}

impl Mutations {
    /// About `budget` variants of `sample` (at least every truncation of the first 64 bytes).
    pub fn of(sample: &[u8], seed: u64, budget: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut variants = Vec::new();
        let len = sample.len();
        // Truncations: the whole head densely, then strided.
        let stride = (len / (budget / 4).max(1)).max(1);
        let mut cut = 0;
        while cut < len {
            variants.push((format!("truncated to {cut}"), sample[..cut].to_vec()));
            cut += if cut < 64 { 1 } else { stride };
        }
        // Single bit flips.
        for _ in 0..budget / 4 {
            let mut v = sample.to_vec();
            if len > 0 {
                let at = rng.below(len);
                let bit = rng.below(8);
                v[at] ^= 1 << bit;
                variants.push((format!("bit {bit} of byte {at} flipped"), v));
            }
        }
        // Overwrites with extreme values (length fields, counts, type tags).
        for _ in 0..budget / 4 {
            let mut v = sample.to_vec();
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below(8);
                let fill = match rng.below(4) {
                    0 => 0x00,
                    1 => 0xff,
                    2 => 0x7f,
                    _ => 0x80,
                };
                for b in v.iter_mut().skip(at).take(n) {
                    *b = fill;
                }
                variants.push((format!("{n} bytes at {at} set to {fill:#04x}"), v));
            }
        }
        // Oversized.
        let mut junk = sample.to_vec();
        junk.extend((0..65_536).map(|i| (i * 31 % 251) as u8));
        variants.push(("64 KiB of junk appended".into(), junk));
        let mut zeros = sample.to_vec();
        zeros.resize(len + 1_048_576, 0);
        variants.push(("1 MiB of zeros appended".into(), zeros));
        variants.push(("sample repeated 4 times".into(), sample.repeat(4)));
        variants.push(("all 0xff, 4x length".into(), vec![0xff; len.max(1) * 4]));
        variants.push(("empty".into(), Vec::new()));
        Self { variants }
    }

    pub fn count(&self) -> usize {
        self.variants.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.variants
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
    }
}
