//! Timing loop for the IMA verifier: parse, replay of one bank, and full `verify_bytes` over a
//! ~100k-entry binary log (the real 362-entry IBM TSS log concatenated, or a synthesized log when
//! the real evidence is absent).
//!
//! `cargo run --release -p ratls --example bench_ima [entries]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ratls::digest::HashAlg;
use ratls::ima::{self, ImaPolicy, Log, ReplayMode, Template};

fn main() {
    let target: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let (bytes, source) = big_log(target);
    let log = Log::parse(&bytes).unwrap();
    let entries = log.len();
    let bank = log.template_hash_alg();
    let pcr10 = log.replay(bank, ReplayMode::PerBankTemplateHash);
    println!(
        "IMA log: {entries} entries, {} bytes, template hashes in {bank} ({source})",
        bytes.len()
    );

    time("parse (auto-detect)", entries, || {
        Log::parse(&bytes).unwrap();
    });
    time(&format!("parse (known {bank})"), entries, || {
        Log::parse_binary(&bytes, Some(bank)).unwrap();
    });
    for replay_bank in HashAlg::ALL {
        time(
            &format!("replay {replay_bank} (parsed log)"),
            entries,
            || {
                log.replay(replay_bank, ReplayMode::PerBankTemplateHash);
            },
        );
    }
    time("match_prefix sha256 (parsed log)", entries, || {
        log.match_prefix(HashAlg::Sha256, ReplayMode::PerBankTemplateHash, &[1; 32]);
    });
    let quote = Some((bank, pcr10));
    time(
        "verify_bytes (parse + all checks + 4-bank claims)",
        entries,
        || {
            let verdict = ima::verify_bytes(&bytes, quote.clone(), &ImaPolicy::default());
            assert!(verdict.is_trusted(), "{verdict}");
        },
    );
    time("inspect", entries, || {
        ima::inspect(&bytes).unwrap();
    });
}

/// Run `f` until at least a second has passed (and at least 3 times); print the best run.
fn time(label: &str, entries: usize, mut f: impl FnMut()) {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut runs = 0;
    while runs < 3 || total < Duration::from_secs(1) {
        let start = Instant::now();
        f();
        let elapsed = start.elapsed();
        best = best.min(elapsed);
        total += elapsed;
        runs += 1;
    }
    let per_second = entries as f64 / best.as_secs_f64();
    println!(
        "{label:<55} {:>9.2} ms  {:>12.0} entries/s  ({runs} runs)",
        best.as_secs_f64() * 1e3,
        per_second
    );
}

/// About `target` entries: the real log repeated, or synthesized ima-sig entries.
fn big_log(target: usize) -> (Vec<u8>, &'static str) {
    let real = ratls_test::real_testdata_root().join("ima/ibmtss-vtpm-binary/sha256.log");
    if let Ok(one) = std::fs::read(&real) {
        let per = Log::parse(&one).unwrap().len();
        let copies = target.div_ceil(per).max(1);
        return (one.repeat(copies), "real sha256.log concatenated");
    }
    let mut log = Log::new(HashAlg::Sha256);
    log.push(
        10,
        Template::ImaSig,
        Some("sha256"),
        &[7; 32],
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    for i in 1..target {
        let digest = HashAlg::Sha256.digest(&i.to_le_bytes());
        let path = format!("/usr/lib/x86_64-linux-gnu/lib{i}.so.1");
        let sig: &[u8] = if i % 17 == 0 { &[3; 264] } else { &[] };
        log.push(
            10,
            Template::ImaSig,
            Some("sha256"),
            &digest,
            path.as_bytes(),
            sig,
        )
        .unwrap();
    }
    (log.to_binary(), "synthesized ima-sig entries")
}
