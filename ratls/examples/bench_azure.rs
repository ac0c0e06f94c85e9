//! Timing of Azure HCL report verification on the real Genoa sample: parse, runtime data and AK,
//! the whole verification without and with the vTPM quote, and the SEV-SNP part alone for
//! reference. Run with `cargo run --release -p ratls --example bench_azure [iterations]`
//! (reads `$COSMIAN_REAL_TESTDATA`, default `../shared/testdata/real`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratls::azure::{self, HclReport, VtpmQuote};
use ratls::digest::HashAlg;
use ratls::snp::CertInput;
use ratls::tpm::PcrValues;
use ratls::{Policy, UnixTime};

fn time<T>(name: &str, iterations: u32, mut f: impl FnMut() -> T) {
    // One warm-up run (built-in anchors, lazy statics).
    std::hint::black_box(f());
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(f());
    }
    let per: Duration = start.elapsed() / iterations.max(1);
    println!("{name:<44} {per:>12.2?} per operation ({iterations} runs)");
}

/// The byte array at JSON pointer `at`.
fn bytes_at(doc: &serde_json::Value, at: &str) -> Result<Vec<u8>, String> {
    bytes(
        doc.pointer(at)
            .ok_or(format!("no {at}"))?,
    )
}

fn bytes(v: &serde_json::Value) -> Result<Vec<u8>, String> {
    v.as_array()
        .ok_or("not an array")?
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| "not a byte".to_owned())
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(Ok(2000), |a| a.parse())?;
    let root = std::env::var_os("COSMIAN_REAL_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/real"),
        PathBuf::from,
    );
    let dir = root.join("sev-snp/genoa-azure-vtpm-trustee");
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("evidence-genoa.json"))?)?;
    let hcl = bytes_at(&evidence, "/report")?;
    let attest = bytes_at(&evidence, "/quote/message")?;
    let signature = bytes_at(&evidence, "/quote/signature")?;
    let mut pcrs = PcrValues::default();
    for (i, v) in evidence
        .pointer("/quote/pcrs")
        .and_then(serde_json::Value::as_array)
        .ok_or("no PCRs")?
        .iter()
        .enumerate()
    {
        pcrs.insert(HashAlg::Sha256, u8::try_from(i)?, bytes(v)?);
    }
    let certs = CertInput {
        vcek: Some(
            evidence
                .pointer("/vcek")
                .and_then(serde_json::Value::as_str)
                .ok_or("no VCEK")?
                .as_bytes()
                .to_vec(),
        ),
        vlek: None,
        chain: Some(std::fs::read(dir.join("ask_ark_genoa.pem"))?),
    };
    let nonce = ratls::hexfmt::decode(
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
    )?;
    let now = UnixTime::parse_rfc3339("2026-01-01T00:00:00Z")?;
    let policy = Policy::default();
    let quote = VtpmQuote {
        attest: &attest,
        signature: &signature,
        pcrs: Some(pcrs),
    };
    let check = azure::verify_snp(&hcl, &certs, Some(&quote), &policy, now, Some(&nonce));
    if !check.is_trusted() {
        return Err(format!("the sample does not verify:\n{check}").into());
    }

    time("HclReport::parse", iterations, || {
        HclReport::parse(&hcl).is_ok()
    });
    let parsed = HclReport::parse(&hcl)?;
    time("runtime data: hash binding", iterations, || {
        parsed.runtime_data_bound()
    });
    time("runtime data: JSON + HCLAkPub", iterations, || {
        parsed
            .runtime_data()
            .and_then(|d| d.ak_public())
            .is_ok()
    });
    time(
        "snp::verify_bytes (the SNP report alone)",
        iterations,
        || {
            let snp = hcl.get(0x20..0x4C0).unwrap_or_default();
            ratls::snp::verify_bytes(snp, &certs, &policy.snp, now).is_trusted()
        },
    );
    time("azure::verify_snp, no quote", iterations, || {
        azure::verify_snp(&hcl, &certs, None, &policy, now, None).is_trusted()
    });
    time("azure::verify_snp, with the vTPM quote", iterations, || {
        azure::verify_snp(&hcl, &certs, Some(&quote), &policy, now, Some(&nonce)).is_trusted()
    });
    Ok(())
}
