//! Time TDX verification on the real v4 sample.
//!
//! `cargo run --release -p ratls --example bench_tdx [iterations]`
//!
//! Prints the time per call of the whole verification (with the collateral JSON parsed on each
//! call, and with it parsed once), and of its parts, so the split is visible: the quote parse,
//! the collateral parse, `inspect`, dcap-qvl's collateral verification alone, and one ring
//! ECDSA P-256 verification (the unit most steps are made of).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use ratls::tdx::{self, Collateral, Quote, TdxPolicy};
use ratls::UnixTime;

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), if available: unlike wall
/// time, it does not count the time other processes held the CPU.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn time<T>(name: &str, iterations: u32, mut f: impl FnMut() -> T) {
    for _ in 0..iterations / 10 {
        black_box(f());
    }
    let cpu_start = cpu_ns();
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    let cpu = cpu_start
        .zip(cpu_ns())
        .map(|(a, b)| (b - a) as f64 / 1e3 / f64::from(iterations));
    match cpu {
        Some(cpu) => println!("{name:<48} {wall:>8.1} µs wall {cpu:>8.1} µs cpu"),
        None => println!("{name:<48} {wall:>8.1} µs wall"),
    }
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("iterations"))
        .unwrap_or(2000);
    let Some(dir) = ratls_test::real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let quote = ratls_test::read_real(&dir, "tdx_quote.bin");
    let json = ratls_test::read_real(&dir, "collateral.json");
    let now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let policy = TdxPolicy::default();
    let collateral = Collateral::from_json(&json).unwrap();
    assert!(tdx::verify(&quote, &collateral, &policy, now).is_trusted());

    println!("TDX v4 sample, {iterations} iterations (release build expected)");
    time(
        "verify_bytes (collateral JSON parsed per call)",
        iterations,
        || tdx::verify_bytes(&quote, &json, &policy, now),
    );
    time("verify (pre-parsed Collateral)", iterations, || {
        tdx::verify(&quote, &collateral, &policy, now)
    });
    println!("parts:");
    time(
        "  own checks only (collateral JSON refused)",
        iterations,
        || tdx::verify_bytes(&quote, b"{}", &policy, now),
    );
    time("  Quote::parse", iterations, || {
        Quote::parse(&quote).map(|q| q.trailing_bytes)
    });
    time("  inspect (parse + PEM + leaf X.509)", iterations, || {
        tdx::inspect(&quote)
    });
    time("  Collateral::from_json", iterations, || {
        Collateral::from_json(&json)
    });
    time("  dcap-qvl QuoteVerifier::verify alone", iterations, || {
        dcap_qvl::verify::QuoteVerifier::new_prod()
            .allow_debug(true)
            .verify(&quote, collateral.as_dcap(), now.as_secs())
            .map(|r| r.status)
    });
    let parsed = Quote::parse(&quote).unwrap();
    let sig = &parsed.signature_data;
    let mut key = vec![0x04];
    key.extend_from_slice(&sig.attestation_key);
    time("  one ring ECDSA P-256 verify", iterations, || {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &key)
            .verify(parsed.signed, &sig.signature)
            .is_ok()
    });
}
