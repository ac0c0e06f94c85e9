//! The benchmark cases, each next to its reference cost.

use ratls::pki::Cert;
use ratls::snp::{self, AttestationReport, CertInput, SnpPolicy};
use ratls::UnixTime;
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};

use crate::{measure, Measurement};

fn real(sub: &str) -> std::path::PathBuf {
    ratls_test::real_testdata(sub)
        .unwrap_or_else(|| panic!("benchmarks need the real evidence ({sub})"))
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).expect("valid time")
}

/// Every group of measurements.
pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Vec<Measurement>> {
    vec![snp(scale)]
}

fn snp(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let dir = real("sev-snp/milan-vcek-virtee");
    let report = ratls_test::read_real(&dir, "report_milan.hex");
    let certs = CertInput {
        vcek: Some(ratls_test::read_real(&dir, "vcek_milan.der")),
        chain: Some(ratls_test::read_real(&dir, "cert_chain_milan")),
        ..Default::default()
    };
    let policy = SnpPolicy::default();
    let now = at("2026-01-01T00:00:00Z");
    assert!(snp::verify_bytes(&report, &certs, &policy, now).is_trusted());

    let parsed = AttestationReport::parse(&report).expect("report parses");
    let vcek = Cert::from_der_or_pem(
        certs
            .vcek
            .as_deref()
            .unwrap_or_default(),
    )
    .expect("vcek");
    let chain = Cert::many_from_der_or_pem(
        certs
            .chain
            .as_deref()
            .unwrap_or_default(),
    )
    .expect("chain");
    let (ask, ark) = (&chain[0], &chain[1]);
    let key = vcek.subject_public_key().expect("key");
    let n = scale(2000);
    vec![
        measure(
            "snp: verify Milan report + VCEK/ASK/ARK chain (full verdict)",
            n,
            1,
            "op",
            || snp::verify_bytes(&report, &certs, &policy, now),
        ),
        measure(
            "snp: reference: the same 3 RSA-PSS-4096 + 1 ECDSA-P384 verifications, bare ring",
            n,
            1,
            "op",
            || {
                let a = ark.verify_signed_by(ark).is_ok();
                let b = ask.verify_signed_by(ark).is_ok();
                let c = vcek.verify_signed_by(ask).is_ok();
                let d = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &key)
                    .verify(parsed.signed_bytes(), &parsed.signature_fixed())
                    .is_ok();
                a && b && c && d
            },
        ),
        measure("snp: parse report only", scale(200_000), 1, "op", || {
            AttestationReport::parse(&report).is_ok()
        }),
    ]
}
