//! `ratls-bench`: how fast the verification core is on real hardware evidence, measured side by
//! side with a reference cost in the same run (the bare cryptography, or the upstream library we
//! build on), so the figures mean something on any machine. When swtpm and tpm2-tools are
//! installed, the TPM attester group also times our quote path against `tpm2_quote` on the same
//! swtpm, and the `tls` group times RA-TLS handshakes (sim TEE + swtpm evidence) next to plain
//! rustls ones, in memory, with memory per connection measured in child processes. The `walk`
//! group times the agent's snapshot walk against `sha256sum` on the same files.
//!
//! ```text
//! cargo run --release -p ratls-bench -- [--multiplier F] [--group NAME]...
//! ```
//!
//! `--multiplier` scales every iteration count (CI smoke-runs with 0.05); `--group` runs only the
//! named groups (snp, tdx, collateral, tpm, ima, azure, tpm-attester, bundle, tls, walk, batch, audit,
//! reattest). Results go to
//! stdout as a table; `docs/benchmarks.md` records the method and the latest figures.
//! `--memory-probe` is internal: the `tls` group runs its memory measurements in child processes
//! of this binary.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // Benchmark code: missing data means nothing to measure.

mod audit;
mod batch;
mod cases;
mod collateral;
mod fleet;
mod reattest;
mod tls;
mod walk;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One measured operation.
#[derive(Debug)]
pub struct Measurement {
    pub name: String,
    pub iterations: u64,
    pub elapsed: Duration,
    /// Work units per iteration (e.g. IMA entries), for a throughput column.
    pub units_per_iter: u64,
    pub unit: &'static str,
    /// Not a timing: bytes per unit (memory rows).
    pub memory_bytes: Option<f64>,
}

impl Measurement {
    pub fn per_op(&self) -> Duration {
        self.elapsed / u32::try_from(self.iterations.max(1)).unwrap_or(u32::MAX)
    }

    pub fn units_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        (self.iterations * self.units_per_iter) as f64 / secs
    }
}

/// Run `f` `iterations` times (after a short warm-up) and time it.
pub fn measure<T>(
    name: &str,
    iterations: u64,
    units_per_iter: u64,
    unit: &'static str,
    mut f: impl FnMut() -> T,
) -> Measurement {
    for _ in 0..iterations.div_ceil(10).min(50) {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    Measurement {
        name: name.to_owned(),
        iterations,
        elapsed: start.elapsed(),
        units_per_iter,
        unit,
        memory_bytes: None,
    }
}

fn main() -> ExitCode {
    let mut multiplier = 1.0f64;
    let mut groups = Vec::new();
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("--memory-probe") {
        return match tls::memory_probe(all.get(1..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let mut args = all.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--group" => match args.next() {
                Some(g) if cases::GROUPS.contains(&g.as_str()) => groups.push(g),
                _ => {
                    eprintln!("--group needs one of {}", cases::GROUPS.join(", "));
                    return ExitCode::from(2);
                }
            },
            "--multiplier" => {
                multiplier = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|m: &f64| *m > 0.0)
                    .unwrap_or_else(|| {
                        eprintln!("--multiplier needs a positive number");
                        std::process::exit(2)
                    });
            }
            "--help" | "-h" => {
                println!("usage: ratls-bench [--multiplier F] [--group NAME]...");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let scale = |n: u64| ((n as f64 * multiplier) as u64).max(1);
    let groups = cases::run(&scale, &groups);
    println!("| benchmark | iterations | time per op | throughput |");
    println!("| --- | ---: | ---: | ---: |");
    for group in &groups {
        for m in group {
            if let Some(bytes) = m.memory_bytes {
                println!(
                    "| {} | {} | | {:.1} KiB per connection |",
                    m.name,
                    m.iterations,
                    bytes / 1024.0
                );
                continue;
            }
            let throughput = if m.units_per_iter > 1 || m.unit != "op" {
                format!("{:.0} {}/s", m.units_per_sec(), m.unit)
            } else {
                format!("{:.0} op/s", m.units_per_sec())
            };
            println!(
                "| {} | {} | {:.1} µs | {throughput} |",
                m.name,
                m.iterations,
                m.per_op().as_secs_f64() * 1e6
            );
        }
    }
    ExitCode::SUCCESS
}
