//! Timing of the configfs-tsm and SEV-SNP guest code that runs on our side of the kernel: one
//! `ConfigfsTsm::report` round trip on a temporary-directory fixture (mkdir, the attribute
//! reads and writes, rmdir; the emulated kernel adds its own file writes, and on a real guest the
//! firmware or quoting enclave dominates), the host certificate table parser, and the SNP/TDX
//! evidence checks, on the real Genoa report and certificates (`$COSMIAN_REAL_TESTDATA`, or
//! `../shared/testdata/real`; the TDX line runs when the quote is there too). Run with
//! `cargo run --release -p ratls --example bench_tsm [iterations]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls::attest::snp_guest::{self, CertTable};
use ratls::attest::tsm::{self, ConfigfsTsm, EmulatedTsm, SnpTsm, PROVIDER_SEV_GUEST};
use ratls::attest::TeeAttester;

fn time(label: &str, iterations: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let each: Duration = start.elapsed() / iterations.max(1);
    println!("{label}: {each:?} per operation ({iterations} runs)");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(Ok(2000), |a| a.parse())?;
    let real = ratls_test::real_testdata_root();
    let genoa = real.join("sev-snp/genoa-azure-vtpm-trustee");
    let tdx_dir = real.join("tdx/v4-emr-phala-collateral");

    let report = std::fs::read(genoa.join("derived-snp-report.bin"))?;
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(genoa.join("evidence-genoa.json"))?)?;
    let vcek = pem::parse(
        evidence
            .get("vcek")
            .and_then(|v| v.as_str())
            .ok_or("no vcek")?,
    )?;
    let chain = pem::parse_many(std::fs::read(genoa.join("ask_ark_genoa.pem"))?)?;
    let (ask, ark) = match chain.as_slice() {
        [ask, ark] => (ask.contents().to_vec(), ark.contents().to_vec()),
        _ => return Err("ask_ark_genoa.pem: expected two certificates".into()),
    };
    let table = CertTable::vcek_chain(vcek.contents().to_vec(), ask, ark).encode();

    let mut report_data = [0u8; 64];
    report_data.copy_from_slice(
        report
            .get(0x50..0x90)
            .ok_or("short report")?,
    );

    time("CertTable::parse (VCEK+ASK+ARK)", iterations, || {
        let _ = std::hint::black_box(CertTable::parse(&table));
    });
    time("snp_guest::evidence (report + table)", iterations, || {
        let _ = std::hint::black_box(snp_guest::evidence(
            &report_data,
            report.clone(),
            None,
            Some(&table),
        ));
    });
    if let Ok(quote) = std::fs::read(tdx_dir.join("tdx_quote.bin")) {
        let mut rd = [0u8; 64];
        rd.copy_from_slice(
            quote
                .get(568..632)
                .ok_or("short quote")?,
        );
        time("tsm::tdx_evidence", iterations, || {
            let _ = std::hint::black_box(tsm::tdx_evidence(&rd, quote.clone()));
        });
    }

    let dir = std::env::temp_dir().join(format!("ratls-bench-tsm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let served = report.clone();
    let kernel = EmulatedTsm::new(PROVIDER_SEV_GUEST, move |inblob, _| {
        let mut r = served.clone();
        if let Some(rd) = r.get_mut(0x50..0x90) {
            rd.copy_from_slice(inblob);
        }
        r
    })
    .with_auxblob(table.clone());
    let tsm = ConfigfsTsm::new(dir.clone()).with_kernel(Arc::new(kernel));
    let snp = SnpTsm::new(tsm.clone());
    let rounds = iterations.min(500);
    let rd = ratls::binding::ReportData::for_raw_nonce(b"bench").ok_or("nonce")?;
    time("ConfigfsTsm::report on a tmp-dir fixture", rounds, || {
        let _ = std::hint::black_box(tsm.report(&rd, None));
    });
    time("SnpTsm::attest on a tmp-dir fixture", rounds, || {
        let _ = std::hint::black_box(snp.attest(&rd));
    });
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
