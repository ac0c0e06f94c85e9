//! The collateral plane: verifying with collateral the plane completes from its warm cache, next
//! to verifying with the same collateral given (the cost before the plane existed), and the cold
//! fetch from a local KDS/PCS (the real captured responses at the real paths) printed beside.

use std::time::Duration;

use ratls::bundle::TeeEvidence;
use ratls::collateral::{CollateralClient, CollateralConfig};
use ratls::snp::{self, CertInput, SnpPolicy};
use ratls::tdx::{self, TdxPolicy};
use ratls::UnixTime;
use ratls_test::collateral_server::{serve_milan, serve_tdx, Server};
use serde_bytes::ByteBuf;

use crate::{measure, Measurement};

fn real(sub: &str) -> std::path::PathBuf {
    ratls_test::real_testdata(sub)
        .unwrap_or_else(|| panic!("benchmarks need the real evidence ({sub})"))
}

fn config(server: &Server, cache: Option<std::path::PathBuf>) -> CollateralConfig {
    CollateralConfig {
        kds_url: server.url(),
        pcs_url: server.url(),
        intel_root_crl_url: format!("{}/IntelSGXRootCA.der", server.url()),
        cache_dir: cache,
        timeout: Duration::from_secs(5),
        ..CollateralConfig::default()
    }
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let tdx_dir = real("tdx/v4-emr-phala-collateral");
    let snp_dir = real("sev-snp/milan-vcek-virtee");
    let server = Server::start();
    let sample = serve_tdx(&server, &tdx_dir);
    let given = ratls_test::read_real(&tdx_dir, "collateral.json");
    let report = serve_milan(&server, &snp_dir);
    let vcek = ratls_test::read_real(&snp_dir, "vcek_milan.der");
    let cache = std::env::temp_dir().join(format!("ratls-bench-collateral-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let tdx_now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").expect("time");
    let snp_now = UnixTime::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let tdx_policy = TdxPolicy::default();
    let snp_policy = SnpPolicy::default();
    let warm = CollateralClient::new(config(&server, Some(cache.clone())));

    let tdx_with = |client: &CollateralClient| {
        let mut tee = TeeEvidence::Tdx {
            quote: ByteBuf::from(sample.quote.clone()),
            collateral: None,
        };
        let steps = client.complete(&mut tee, tdx_now);
        let TeeEvidence::Tdx {
            quote,
            collateral: Some(c),
        } = &tee
        else {
            panic!("no collateral: {steps:?}")
        };
        tdx::verify_bytes(quote, c, &tdx_policy, tdx_now)
    };
    let snp_with = |client: &CollateralClient| {
        let mut tee = TeeEvidence::SevSnp {
            report: ByteBuf::from(report.clone()),
            vcek: None,
            vlek: None,
            chain: None,
            crl: None,
        };
        client.complete(&mut tee, snp_now);
        let (TeeEvidence::SevSnp { report, .. }, Some(certs)) = (&tee, tee.snp_certs()) else {
            panic!("not SEV-SNP")
        };
        snp::verify_bytes(report, &certs, &snp_policy, snp_now)
    };
    assert!(tdx_with(&warm).is_trusted(), "collateral plane TDX verdict");
    assert!(snp_with(&warm).passed("tee.signature"));
    let n = scale(400);
    let cold_n = scale(100);
    let results = vec![
        measure(
            "collateral: tdx verify, collateral JSON given (before the plane)",
            n,
            1,
            "op",
            || tdx::verify_bytes(&sample.quote, &given, &tdx_policy, tdx_now),
        ),
        measure(
            "collateral: tdx verify, collateral from the plane's warm cache",
            n,
            1,
            "op",
            || tdx_with(&warm),
        ),
        measure(
            "collateral: tdx verify, cold fetch of 4 items from a local PCS (no cache)",
            cold_n,
            1,
            "op",
            || tdx_with(&CollateralClient::new(config(&server, None))),
        ),
        measure(
            "collateral: snp verify, VCEK given (before the plane)",
            n,
            1,
            "op",
            || {
                snp::verify_bytes(
                    &report,
                    &CertInput {
                        vcek: Some(vcek.clone()),
                        ..Default::default()
                    },
                    &snp_policy,
                    snp_now,
                )
            },
        ),
        measure(
            "collateral: snp verify, VCEK from the plane's warm cache",
            n,
            1,
            "op",
            || snp_with(&warm),
        ),
        measure(
            "collateral: snp verify, cold fetch of the VCEK from a local KDS (no cache)",
            cold_n,
            1,
            "op",
            || snp_with(&CollateralClient::new(config(&server, None))),
        ),
    ];
    let _ = std::fs::remove_dir_all(&cache);
    results
}
