//! Timing of the simulated TEE: chain generation, storage round trip, report signing, and the
//! verification of a simulated report. Run with
//! `cargo run --release -p ratls --features sim --example bench_sim [generations] [reports]`.

use std::sync::Arc;
use std::time::Instant;

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::TeeAttester;
use ratls::snp::{self, CertInput, SnpPolicy};
use ratls::time::UnixTime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let generations: u32 = args
        .next()
        .map_or(Ok(3), |a| a.parse())?;
    let reports: u32 = args
        .next()
        .map_or(Ok(1000), |a| a.parse())?;

    let mut times = Vec::new();
    let mut ca = None;
    for _ in 0..generations.max(1) {
        let start = Instant::now();
        ca = Some(SimCa::generate()?);
        times.push(start.elapsed());
    }
    times.sort();
    let total: std::time::Duration = times.iter().sum();
    println!(
        "SimCa::generate: {} runs, min {:?}, median {:?}, max {:?}, mean {:?}",
        times.len(),
        times
            .first()
            .copied()
            .unwrap_or_default(),
        times
            .get(times.len() / 2)
            .copied()
            .unwrap_or_default(),
        times
            .last()
            .copied()
            .unwrap_or_default(),
        total / u32::try_from(times.len()).unwrap_or(1),
    );
    let ca = Arc::new(ca.ok_or("no CA")?);

    let dir = std::env::temp_dir().join(format!("ratls-bench-sim-{}", std::process::id()));
    let start = Instant::now();
    ca.to_pem_files(&dir)?;
    let saved = start.elapsed();
    let start = Instant::now();
    let loaded = SimCa::load(&dir)?;
    let load = start.elapsed();
    std::fs::remove_dir_all(&dir)?;
    println!("SimCa::to_pem_files: {saved:?}; SimCa::load (with chain check): {load:?}");
    drop(loaded);

    let tee = SimTee::new(ca.clone())?;
    let report_data = ratls::binding::ReportData::for_raw_nonce(b"bench").ok_or("nonce")?;
    let start = Instant::now();
    let mut report = Vec::new();
    for _ in 0..reports.max(1) {
        report = tee.report(&report_data)?;
    }
    println!(
        "SimTee::report: {:?} per report ({reports} reports)",
        start.elapsed() / reports.max(1)
    );
    let start = Instant::now();
    for _ in 0..reports.max(1) {
        std::hint::black_box(tee.attest(&report_data)?);
    }
    println!(
        "SimTee::attest (report + VCEK + PEM chain): {:?} per call",
        start.elapsed() / reports.max(1)
    );

    let certs = CertInput {
        vcek: Some(ca.vcek_der().to_vec()),
        vlek: None,
        chain: Some(ca.chain_pem().into_bytes()),
        crl: None,
    };
    let root = ca.ark_pem();
    let now = UnixTime::now();
    let policy = SnpPolicy::default();
    let n = (reports / 10).max(1);
    let start = Instant::now();
    for _ in 0..n {
        let verdict = snp::verify_simulated(&report, &certs, &policy, now, Some(root.as_bytes()));
        if !verdict.is_trusted() {
            return Err(format!("simulated report rejected: {verdict}").into());
        }
    }
    println!(
        "snp::verify_simulated (given chain, 3 RSA-4096 + 1 P-384 verifications): {:?} per report",
        start.elapsed() / n
    );
    Ok(())
}
