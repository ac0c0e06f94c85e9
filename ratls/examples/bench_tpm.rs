//! Time `ratls::tpm::verify` on the real GCE vTPM quote (SHA-256 bank), and the parsers.
//!
//! `cargo run --release -p ratls --example bench_tpm` (needs the real test data tree; set
//! `COSMIAN_REAL_TESTDATA` if it is not at `../shared/testdata/real`).

#![allow(clippy::indexing_slicing)] // Only serde_json::Value indexing, which yields Null instead of panicking.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ratls::digest::HashAlg;
use ratls::hexfmt::decode;
use ratls::tpm::{self, Attest, PcrValues, Public, QuoteInput, Signature, TpmPolicy};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_tpm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn time<T>(label: &str, iterations: u32, mut f: impl FnMut() -> T) {
    for _ in 0..iterations / 10 {
        std::hint::black_box(f());
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(f());
    }
    let per_op = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("{label:<40} {per_op:>10.2} µs/op ({iterations} iterations)");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::var_os("COSMIAN_REAL_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/real")
        });
    let dir = root.join("tpm/gce-shielded-vm-go-tpm-tools");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("derived-quotes.json"))?)?;
    let ak = std::fs::read(dir.join("derived-ak_pub.tpmt"))?;
    let quote = json["quotes"]
        .as_array()
        .and_then(|qs| {
            qs.iter()
                .find(|q| q["pcr_bank"] == "sha256")
        })
        .ok_or("no sha256 quote in derived-quotes.json")?;
    let text = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or("not a string")
    };
    let attest = decode(&text(&quote["tpms_attest_hex"])?)?;
    let signature = decode(&text(&quote["tpmt_signature_hex"])?)?;
    let nonce = decode(&text(&json["nonce_hex"])?)?;
    let pcrs_doc = serde_json::json!({ "sha256": quote["pcrs"] }).to_string();
    let pcrs = PcrValues::from_json(&pcrs_doc)?;
    let name = ratls::hexfmt::hex(Public::parse(&ak)?.name());
    let policy = TpmPolicy {
        ak_name: Some(name),
        ..TpmPolicy::default()
    };
    let input = QuoteInput {
        attest: &attest,
        signature: &signature,
        ak_public: &ak,
        nonce: Some(nonce),
        pcrs: Some(pcrs),
    };
    let verdict = tpm::verify(&input, &policy);
    print!("{verdict}");
    if !verdict.is_trusted() {
        return Err("the GCE quote did not verify".into());
    }
    time("Attest::parse", 200_000, || Attest::parse(&attest));
    time("Signature::parse", 200_000, || Signature::parse(&signature));
    time("Public::parse", 200_000, || Public::parse(&ak));
    time("Public::name (SHA-256)", 200_000, || {
        Public::parse(&ak).map(|p| p.name())
    });
    time("pcrDigest recompute (24 x SHA-256)", 200_000, || {
        HashAlg::Sha256.digest_all(
            input
                .pcrs
                .iter()
                .flat_map(|p| p.banks.values())
                .flat_map(|b| b.values())
                .map(Vec::as_slice),
        )
    });
    time("tpm::verify (GCE sha256, RSA-2048)", 20_000, || {
        tpm::verify(&input, &policy)
    });
    Ok(())
}
