//! SEV-SNP report parsing and verification on arbitrary bytes: typed errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = ratls::snp::AttestationReport::parse(data) {
        let _ = ratls::snp::SnpClaims::from_report(&report, None);
    }
    let _ = ratls::snp::AttestationReport::parse_raw(data);
    let _ = ratls::snp::inspect(data);
    let certs = ratls::snp::CertInput {
        vcek: Some(data.to_vec()),
        ..Default::default()
    };
    let verdict = ratls::snp::verify_bytes(
        data,
        &certs,
        &Default::default(),
        ratls::UnixTime::from_secs(1_750_000_000),
    );
    assert!(!verdict.is_trusted());
});
