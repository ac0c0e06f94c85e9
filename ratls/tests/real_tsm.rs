//! The configfs-tsm attesters on the real evidence: a temporary directory stands in for
//! `/sys/kernel/config/tsm/report` and an emulated kernel serves, as `outblob`, the SEV-SNP
//! report captured on an AMD Genoa machine and the TDX quote captured on an Emerald Rapids
//! machine (`$COSMIAN_REAL_TESTDATA`, read in place), and as `auxblob` a certificate table
//! holding the real Genoa VCEK, ASK and ARK.
//!
//! Their report data cannot equal a fresh `inblob`, so the attesters must refuse them as they
//! are; patched to carry our `inblob` they pass the attester's checks (which only parse), and
//! verification then fails at `tee.signature`: the attester never pretends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ratls::attest::snp_guest::{self, CertEntry, CertTable, GUID_ARK, GUID_ASK, GUID_VCEK};
use ratls::attest::tsm::{
    ConfigfsTsm, EmulatedTsm, SnpTsm, TdxTsm, PROVIDER_SEV_GUEST, PROVIDER_TDX_GUEST,
};
use ratls::attest::{AttestError, TeeAttester};
use ratls::binding::ReportData;
use ratls::bundle::TeeEvidence;
use ratls::snp::{self, CertInput, SnpPolicy};
use ratls::tdx::{self, TdxPolicy};
use ratls::UnixTime;
use ratls_test::{read_real, real_testdata, Mutations};

/// SEV-SNP `report_data`.
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
/// TDX quote v4: 48-byte header, then the TD report's `report_data` at 520.
const TDX_REPORT_DATA: std::ops::Range<usize> = 568..632;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ratls-real-tsm-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .is_none()
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

struct Genoa {
    report: Vec<u8>,
    vcek_der: Vec<u8>,
    ask_der: Vec<u8>,
    ark_der: Vec<u8>,
}

fn genoa(dir: &Path) -> Genoa {
    let evidence: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "evidence-genoa.json")).unwrap();
    let vcek = pem::parse(evidence["vcek"].as_str().unwrap()).unwrap();
    let chain = pem::parse_many(read_real(dir, "ask_ark_genoa.pem")).unwrap();
    assert_eq!(chain.len(), 2);
    Genoa {
        report: read_real(dir, "derived-snp-report.bin"),
        vcek_der: vcek.contents().to_vec(),
        ask_der: chain[0].contents().to_vec(),
        ark_der: chain[1].contents().to_vec(),
    }
}

/// The certificate table a host would hand the guest: VCEK, ASK, ARK (DER), page-padded.
fn host_table(g: &Genoa) -> Vec<u8> {
    let entry = |guid, data: &[u8]| CertEntry {
        guid,
        data: data.to_vec(),
    };
    let mut table = CertTable {
        entries: vec![
            entry(GUID_VCEK, &g.vcek_der),
            entry(GUID_ASK, &g.ask_der),
            entry(GUID_ARK, &g.ark_der),
        ],
    }
    .encode();
    table.resize(table.len().next_multiple_of(4096), 0);
    table
}

fn snp_fixture(kernel: EmulatedTsm) -> (TempDir, SnpTsm) {
    let dir = TempDir::new("snp");
    let tsm = ConfigfsTsm::new(dir.0.clone()).with_kernel(Arc::new(kernel.with_privlevel()));
    (dir, SnpTsm::new(tsm))
}

fn certs(evidence: &TeeEvidence) -> CertInput {
    match evidence {
        TeeEvidence::SevSnp {
            vcek, vlek, chain, ..
        } => CertInput {
            vcek: vcek.as_ref().map(|b| b.to_vec()),
            vlek: vlek.as_ref().map(|b| b.to_vec()),
            chain: chain.as_ref().map(|b| b.to_vec()),
            crl: None,
        },
        other => panic!("not SEV-SNP evidence: {other:?}"),
    }
}

#[test]
fn snp_real_report_with_other_report_data_is_refused() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    let g = genoa(&dir);
    let real = g.report.clone();
    let (fixture, snp) = snp_fixture(
        EmulatedTsm::new(PROVIDER_SEV_GUEST, move |_, _| real.clone()).with_auxblob(host_table(&g)),
    );
    let asked = ReportData::for_raw_nonce(b"other report data").unwrap();
    let err = snp.attest(&asked).unwrap_err();
    assert!(
        matches!(&err, AttestError::BadResponse { what: "SEV-SNP report", why } if why.contains("report_data") && why.contains(&hex::encode(asked.as_bytes()))),
        "{err}"
    );
    assert!(is_empty(&fixture.0), "entry removed");
}

#[test]
fn snp_patched_report_carries_the_host_certs_and_fails_at_the_signature() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    let g = genoa(&dir);
    let real = g.report.clone();
    let (fixture, snp) = snp_fixture(
        EmulatedTsm::new(PROVIDER_SEV_GUEST, move |inblob, _| {
            let mut report = real.clone();
            report[SNP_REPORT_DATA].copy_from_slice(inblob);
            report
        })
        .with_auxblob(host_table(&g)),
    );
    let asked = ReportData::for_raw_nonce(b"patched report").unwrap();
    let report_data = *asked.as_bytes();
    let evidence = snp.attest(&asked).unwrap();
    assert!(is_empty(&fixture.0));

    let TeeEvidence::SevSnp {
        report,
        vcek,
        vlek,
        chain,
        ..
    } = &evidence
    else {
        panic!("{evidence:?}");
    };
    assert_eq!(&report[SNP_REPORT_DATA], &report_data[..]);
    assert_eq!(vcek.as_ref().map(|v| v.as_slice()), Some(&g.vcek_der[..]));
    assert_eq!(vlek, &None);
    let chain = pem::parse_many(chain.as_deref().unwrap()).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].contents(), &g.ask_der[..], "ASK first");
    assert_eq!(chain[1].contents(), &g.ark_der[..], "then ARK");

    // The certificates the attester extracted verify the real report...
    let now = at("2026-01-01T00:00:00Z");
    let original = snp::verify_bytes(&g.report, &certs(&evidence), &SnpPolicy::default(), now);
    assert!(
        original.is_trusted(),
        "{:?}",
        original.failures().collect::<Vec<_>>()
    );
    // ...and the patched one, which the attester accepted, fails at the signature only.
    let patched = snp::verify_bytes(report, &certs(&evidence), &SnpPolicy::default(), now);
    assert!(!patched.is_trusted());
    let failed: Vec<&str> = patched
        .failures()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(failed, ["tee.signature"], "{patched:?}");
    for step in [
        "tee.parse",
        "tee.chain.ark",
        "tee.chain.ask",
        "tee.chain.vcek",
    ] {
        assert!(patched.passed(step), "{step}");
    }
}

#[test]
fn snp_host_table_mutations_never_panic() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    let g = genoa(&dir);
    let sample = host_table(&g);
    let mut report = g.report.clone();
    let report_data = [0x17; 64];
    report[SNP_REPORT_DATA].copy_from_slice(&report_data);
    let mutations = Mutations::of(&sample, 0x5eed_7ab1e, 2000);
    let mut with_vcek = 0;
    for (what, bytes) in mutations.iter() {
        let _ = CertTable::parse(bytes);
        match snp_guest::evidence(&report_data, report.clone(), None, Some(bytes)) {
            Ok(TeeEvidence::SevSnp { vcek, .. }) => {
                if let Some(vcek) = vcek {
                    with_vcek += 1;
                    // Whatever comes out as a VCEK is one X.509 certificate.
                    ratls::pki::Cert::from_der(&vcek).unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
            Ok(other) => panic!("{what}: {other:?}"),
            Err(AttestError::BadResponse { .. }) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
    assert!(with_vcek > 0, "some variants keep a usable table");
}

fn tdx_fixture(quote: Vec<u8>, patch: bool) -> (TempDir, TdxTsm) {
    let dir = TempDir::new("tdx");
    let kernel = EmulatedTsm::new(PROVIDER_TDX_GUEST, move |inblob, _| {
        let mut quote = quote.clone();
        if patch {
            quote[TDX_REPORT_DATA].copy_from_slice(inblob);
        }
        quote
    });
    let tsm = ConfigfsTsm::new(dir.0.clone()).with_kernel(Arc::new(kernel));
    (dir, TdxTsm::new(tsm))
}

#[test]
fn tdx_real_quote_with_other_report_data_is_refused() {
    let Some(dir) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let (fixture, tdx) = tdx_fixture(read_real(&dir, "tdx_quote.bin"), false);
    let err = tdx
        .attest(&ReportData::for_raw_nonce(b"other report data").unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::BadResponse { what: "TDX quote", why } if why.contains("report_data")),
        "{err}"
    );
    assert!(is_empty(&fixture.0));
}

#[test]
fn tdx_patched_quote_is_returned_and_fails_at_the_signature() {
    let Some(dir) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let quote = read_real(&dir, "tdx_quote.bin");
    let collateral = read_real(&dir, "collateral.json");
    let (fixture, tdx) = tdx_fixture(quote.clone(), true);
    let asked = ReportData::for_raw_nonce(b"patched quote").unwrap();
    let report_data = *asked.as_bytes();
    let evidence = tdx.attest(&asked).unwrap();
    assert!(is_empty(&fixture.0));
    let TeeEvidence::Tdx {
        quote: patched,
        collateral: None,
    } = &evidence
    else {
        panic!("{evidence:?}");
    };
    assert_eq!(&patched[TDX_REPORT_DATA], &report_data[..]);
    assert_eq!(patched.len(), quote.len());

    let now = at("2025-07-01T00:00:00Z");
    assert!(tdx::verify_bytes(&quote, &collateral, &TdxPolicy::default(), now).is_trusted());
    let v = tdx::verify_bytes(patched, &collateral, &TdxPolicy::default(), now);
    assert_eq!(
        v.first_failure()
            .map(|c| c.step.as_str()),
        Some("tee.signature"),
        "{v:?}"
    );
    assert!(v.passed("tee.pck_chain") && v.passed("tee.qe_report.signature"));
}
