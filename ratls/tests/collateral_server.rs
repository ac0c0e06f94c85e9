//! The collateral plane against a local HTTP server (hyper) that serves the real captured
//! responses at the real AMD KDS and Intel PCS v4 paths, with the real headers: the PCS bodies
//! (`{"tcbInfo":…,"signature":…}`, `{"enclaveIdentity":…}`) and the URL-encoded issuer-chain
//! headers are rebuilt byte for byte from the signed objects in the TDX samples'
//! `collateral.json`; the VCEKs are AMD's certificates from the SEV-SNP samples.
//!
//! The server counts requests, and can answer 429 with `Retry-After`, stall, or send too much.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ratls::bundle::TeeEvidence;
use ratls::collateral::{CollateralClient, CollateralConfig};
use ratls::snp::{AttestationReport, CertInput, SnpPolicy};
use ratls::tdx::TdxPolicy;
use ratls::{UnixTime, Verdict};
use ratls_test::collateral_server::{
    milan_vcek_path, serve_milan, serve_tdx, Server, Tdx, PCK_CRL_PATH, QE_PATH, ROOT_CRL_PATH,
    TCB_PATH,
};
use ratls_test::{read_real, real_testdata};
use serde_bytes::ByteBuf;

const TDX_V4: &str = "tdx/v4-emr-phala-collateral";
const MILAN: &str = "sev-snp/milan-vcek-virtee";
const GENOA_AZURE: &str = "sev-snp/genoa-azure-vtpm-trustee";
const TDX_NOW: &str = "2025-07-01T00:00:00Z";

fn config(server: &Server, cache: &Path) -> CollateralConfig {
    CollateralConfig {
        kds_url: server.url(),
        pcs_url: server.url(),
        intel_root_crl_url: format!("{}{ROOT_CRL_PATH}", server.url()),
        thim_url: format!("{}/metadata/THIM/amd/certification", server.url()),
        cache_dir: Some(cache.to_owned()),
        timeout: Duration::from_secs(3),
        max_retry_wait: Duration::from_secs(5),
        ..CollateralConfig::default()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ratls-collateral-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn snp_evidence(report: Vec<u8>) -> TeeEvidence {
    TeeEvidence::SevSnp {
        report: ByteBuf::from(report),
        vcek: None,
        vlek: None,
        chain: None,
        crl: None,
    }
}

fn tdx_evidence(t: &Tdx) -> TeeEvidence {
    TeeEvidence::Tdx {
        quote: ByteBuf::from(t.quote.clone()),
        collateral: None,
    }
}

fn complete(client: &CollateralClient, tee: &mut TeeEvidence, now: UnixTime) -> Vec<ratls::Check> {
    client.complete(tee, now)
}

fn tdx_verdict(tee: &TeeEvidence, now: UnixTime) -> Verdict {
    let TeeEvidence::Tdx { quote, collateral } = tee else {
        panic!("not TDX")
    };
    ratls::tdx::verify_bytes(
        quote,
        collateral.as_ref().unwrap(),
        &TdxPolicy::default(),
        now,
    )
}

#[test]
fn a_tdx_quote_verifies_with_only_the_pcs_url_then_from_the_cache() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    let cache = temp_dir("tdx");
    let now = at(TDX_NOW);

    let client = CollateralClient::new(config(&server, &cache));
    let mut tee = tdx_evidence(&t);
    let checks = complete(&client, &mut tee, now);
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    assert_eq!(checks[0].step, "collateral.tdx");
    let v = tdx_verdict(&tee, now);
    assert!(v.is_trusted(), "{v}");

    // What was assembled is exactly what PCS served: the sample's signed objects and chains.
    let TeeEvidence::Tdx {
        collateral: Some(json),
        ..
    } = &tee
    else {
        panic!()
    };
    let built: serde_json::Value = serde_json::from_slice(json).unwrap();
    for field in [
        "tcb_info",
        "tcb_info_signature",
        "tcb_info_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
        "qe_identity_issuer_chain",
        "pck_crl_issuer_chain",
        "pck_crl",
        "root_ca_crl",
    ] {
        assert_eq!(built[field], t.collateral[field], "{field}");
    }
    for path in [TCB_PATH, QE_PATH, PCK_CRL_PATH, ROOT_CRL_PATH] {
        assert_eq!(server.hits(path), 1, "{path}");
    }
    assert_eq!(client.stats(), (4, 0));
    // The base URL is not Intel's, so the PCCS root CA CRL path was asked first (404 here, as
    // on Intel's PCS) before the CRL distribution point.
    assert_eq!(server.hits("/sgx/certification/v4/rootcacrl"), 1);
    assert_eq!(server.total_hits(), 5);

    // A second verifier with the same cache asks the server nothing.
    let second = CollateralClient::new(config(&server, &cache));
    let mut tee = tdx_evidence(&t);
    let checks = complete(&second, &mut tee, now);
    assert!(
        checks[0].ok && checks[0].presented.contains("cache"),
        "{checks:?}"
    );
    assert!(tdx_verdict(&tee, now).is_trusted());
    assert_eq!(server.total_hits(), 5);
    assert_eq!(second.stats(), (0, 4));

    // Offline, the cache is enough.
    let offline = CollateralClient::new(CollateralConfig {
        offline: true,
        ..config(&server, &cache)
    });
    let mut tee = tdx_evidence(&t);
    assert!(complete(&offline, &mut tee, now)[0].ok);
    assert!(tdx_verdict(&tee, now).is_trusted());
    assert_eq!(server.total_hits(), 5);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn an_expired_or_expiring_cache_entry_is_refetched() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    let cache = temp_dir("expiry");
    let now = at(TDX_NOW);
    let client = CollateralClient::new(config(&server, &cache));
    assert!(complete(&client, &mut tdx_evidence(&t), now)[0].ok);
    assert_eq!(server.hits(TCB_PATH), 1);

    // The TCB info's nextUpdate (2025-07-19T10:16:03Z) has passed: refetched.
    let later = at("2025-07-20T00:00:00Z");
    let mut tee = tdx_evidence(&t);
    let checks = complete(&client, &mut tee, later);
    assert!(checks[0].ok, "{checks:?}");
    assert_eq!(server.hits(TCB_PATH), 2);
    // (The refetched copy is the same, so verifying as of then fails on its validity window.)
    assert!(!tdx_verdict(&tee, later).is_trusted());

    // Within refresh_ahead of nextUpdate: refetched too.
    let ahead = CollateralClient::new(CollateralConfig {
        refresh_ahead: Duration::from_secs(40 * 24 * 3600),
        ..config(&server, &cache)
    });
    assert!(complete(&ahead, &mut tdx_evidence(&t), now)[0].ok);
    assert_eq!(server.hits(TCB_PATH), 3);

    // A refresh that fails falls back on the still-valid cached copy.
    server.remove(TCB_PATH);
    let mut tee = tdx_evidence(&t);
    let checks = complete(&ahead, &mut tee, now);
    assert!(
        checks[0].ok
            && checks[0]
                .presented
                .contains("refresh failed"),
        "{checks:?}"
    );
    assert!(tdx_verdict(&tee, now).is_trusted());
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    server.throttle(TCB_PATH, 2);
    let cache = temp_dir("429");
    let client = CollateralClient::new(config(&server, &cache));
    let started = Instant::now();
    let mut tee = tdx_evidence(&t);
    let checks = complete(&client, &mut tee, at(TDX_NOW));
    assert!(checks[0].ok, "{checks:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(server.hits(TCB_PATH), 3);
    assert!(tdx_verdict(&tee, at(TDX_NOW)).is_trusted());

    // A Retry-After beyond what the verifier waits fails at once, naming the URL.
    server.throttle(QE_PATH, 9);
    let impatient = CollateralClient::new(CollateralConfig {
        max_retry_wait: Duration::ZERO,
        cache_dir: None,
        ..config(&server, &cache)
    });
    let checks = complete(&impatient, &mut tdx_evidence(&t), at(TDX_NOW));
    assert!(!checks[0].ok);
    assert!(
        checks[0].detail.contains("429") && checks[0].detail.contains(QE_PATH),
        "{checks:?}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn offline_with_an_empty_cache_fails_at_a_named_step() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let Some(milan_dir) = real_testdata(MILAN) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    let report = serve_milan(&server, &milan_dir);
    let cache = temp_dir("offline");
    let client = CollateralClient::new(CollateralConfig {
        offline: true,
        ..config(&server, &cache)
    });
    let mut tee = tdx_evidence(&t);
    let checks = complete(&client, &mut tee, at(TDX_NOW));
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].step, "collateral.tdx");
    assert!(!checks[0].ok);
    assert!(checks[0].detail.contains("offline"), "{checks:?}");

    let mut tee = snp_evidence(report);
    let checks = complete(&client, &mut tee, UnixTime::now());
    assert_eq!(checks[0].step, "collateral.vcek");
    assert!(
        !checks[0].ok && checks[0].detail.contains("offline"),
        "{checks:?}"
    );
    assert_eq!(server.total_hits(), 0);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_tampered_collateral_byte_fails_at_the_signature_step() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    let (headers, body) = server.get(TCB_PATH).unwrap();
    let body = String::from_utf8(body).unwrap();
    // One byte of the signed TCB info: a TCB level's date.
    assert!(body.contains("\"tcbDate\":\"2024-03-13"));
    let tampered = body.replacen("\"tcbDate\":\"2024-03-13", "\"tcbDate\":\"2024-03-14", 1);
    server.route(TCB_PATH, headers, tampered.into_bytes());
    let cache = temp_dir("tamper");
    let client = CollateralClient::new(config(&server, &cache));
    let mut tee = tdx_evidence(&t);
    assert!(complete(&client, &mut tee, at(TDX_NOW))[0].ok);
    let v = tdx_verdict(&tee, at(TDX_NOW));
    assert!(!v.is_trusted());
    assert_eq!(
        v.first_failure().unwrap().step,
        "tee.collateral.tcb_info",
        "{v}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn oversized_and_slow_responses_are_cut_off() {
    let Some(dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let t = serve_tdx(&server, &dir);
    server.route(PCK_CRL_PATH, vec![], vec![0x30; 3 * 1024 * 1024]);
    let client = CollateralClient::new(CollateralConfig {
        cache_dir: None,
        ..config(&server, Path::new("/nonexistent"))
    });
    let checks = complete(&client, &mut tdx_evidence(&t), at(TDX_NOW));
    assert!(!checks[0].ok);
    assert!(checks[0].detail.contains("larger than"), "{checks:?}");
    // The same client does not ask again for a while (FAILURE_TTL): a proxy verifying many
    // peers must not hammer the service.
    let before = server.hits(PCK_CRL_PATH);
    serve_tdx(&server, &dir);
    let checks = complete(&client, &mut tdx_evidence(&t), at(TDX_NOW));
    assert!(!checks[0].ok && checks[0].detail.contains("larger than"));
    assert_eq!(server.hits(PCK_CRL_PATH), before);

    // A stalled response is cut off by the timeout (a new client: nothing remembered).
    let client = CollateralClient::new(CollateralConfig {
        cache_dir: None,
        ..config(&server, Path::new("/nonexistent"))
    });
    server.stall(QE_PATH, 6);
    let started = Instant::now();
    let checks = complete(&client, &mut tdx_evidence(&t), at(TDX_NOW));
    assert!(!checks[0].ok);
    assert!(started.elapsed() < Duration::from_secs(6), "not cut off");
    assert!(checks[0].detail.contains(QE_PATH), "{checks:?}");
}

#[test]
fn an_snp_report_gets_its_vcek_from_kds() {
    let Some(dir) = real_testdata(MILAN) else {
        return;
    };
    let server = Server::start();
    let report = serve_milan(&server, &dir);
    let cache = temp_dir("snp");
    let now = at("2026-01-01T00:00:00Z");
    let client = CollateralClient::new(config(&server, &cache));
    let mut tee = snp_evidence(report.clone());
    let checks = complete(&client, &mut tee, now);
    assert_eq!(checks[0].step, "collateral.vcek");
    assert!(checks[0].ok, "{checks:?}");
    let TeeEvidence::SevSnp { vcek, .. } = &tee else {
        panic!()
    };
    assert_eq!(
        vcek.as_deref().unwrap(),
        &read_real(&dir, "vcek_milan.der")[..]
    );
    assert_eq!(server.hits(&milan_vcek_path(&report)), 1);
    // No CRL is served here: asked for, not required by the default policy.
    assert_eq!(server.hits("/vcek/v1/Milan/crl"), 1);

    let v = ratls::snp::verify_bytes(
        &report,
        &CertInput {
            vcek: vcek.as_ref().map(|b| b.to_vec()),
            ..Default::default()
        },
        &SnpPolicy::default(),
        now,
    );
    for step in [
        "tee.signature",
        "tee.chain.vcek",
        "tee.chain.ask",
        "tee.chain.ark",
        "tee.chip_id",
        "tee.tcb",
    ] {
        assert!(
            v.check(step).is_some_and(|c| c.ok) || step == "tee.tcb",
            "{step}: {v}"
        );
    }
    assert!(v.passed("tee.signature"), "{v}");

    // The VCEK is cached by chip and TCB: a second verifier asks only for the CRL again.
    let second = CollateralClient::new(config(&server, &cache));
    let mut tee = snp_evidence(report.clone());
    assert!(complete(&second, &mut tee, now)[0].ok);
    assert_eq!(server.hits(&milan_vcek_path(&report)), 1);

    // A tampered VCEK byte (in its signature) fails the chain.
    let mut der = read_real(&dir, "vcek_milan.der");
    let last = der.len() - 5;
    der[last] ^= 1;
    server.route(&milan_vcek_path(&report), vec![], der.clone());
    let fresh = CollateralClient::new(CollateralConfig {
        cache_dir: None,
        ..config(&server, &cache)
    });
    let mut tee = snp_evidence(report.clone());
    assert!(complete(&fresh, &mut tee, now)[0].ok);
    let TeeEvidence::SevSnp { report, vcek, .. } = &tee else {
        panic!()
    };
    let v = ratls::snp::verify_bytes(
        report,
        &CertInput {
            vcek: vcek.as_ref().map(|b| b.to_vec()),
            ..Default::default()
        },
        &SnpPolicy::default(),
        now,
    );
    assert!(!v.is_trusted());
    assert_eq!(v.first_failure().unwrap().step, "tee.chain.vcek", "{v}");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn an_azure_hcl_report_gets_the_genoa_vcek_from_kds() {
    let Some(dir) = real_testdata(GENOA_AZURE) else {
        return;
    };
    let server = Server::start();
    let hcl = read_real(&dir, "derived-hcl-report.bin");
    let snp = AttestationReport::parse(&read_real(&dir, "derived-snp-report.bin")).unwrap();
    // README: TCB BL 10, TEE 0, SNP 23, microcode 84; a v3 report (CPUID says Genoa).
    let path = format!(
        "/vcek/v1/Genoa/{}?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=84",
        hex::encode(snp.chip_id)
    );
    let vcek_der = pem::parse(read_real(&dir, "vcek-genoa.pem"))
        .unwrap()
        .into_contents();
    server.route(&path, vec![], vcek_der.clone());
    let cache = temp_dir("azure");
    let client = CollateralClient::new(config(&server, &cache));
    let mut tee = TeeEvidence::AzureSnp {
        hcl_report: ByteBuf::from(hcl),
        vcek: None,
        chain: None,
        crl: None,
    };
    let checks = complete(&client, &mut tee, at("2026-01-01T00:00:00Z"));
    assert!(checks[0].ok, "{checks:?}");
    let TeeEvidence::AzureSnp { vcek, .. } = &tee else {
        panic!()
    };
    assert_eq!(vcek.as_deref().unwrap(), &vcek_der[..]);
    assert_eq!(server.hits(&path), 1);
    assert_eq!(server.hits("/vcek/v1/Milan/crl"), 0);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn azure_thim_serves_the_vcek_inside_the_vm() {
    let Some(dir) = real_testdata(GENOA_AZURE) else {
        return;
    };
    let server = Server::start();
    let vcek = String::from_utf8(read_real(&dir, "vcek-genoa.pem")).unwrap();
    let chain = String::from_utf8(read_real(&dir, "ask_ark_genoa.pem")).unwrap();
    let body = serde_json::json!({
        "cacheControl": "86400",
        "vcekCert": vcek,
        "certificateChain": chain,
        "tcbm": "541700000000000A",
    });
    server.route(
        "/metadata/THIM/amd/certification",
        vec![],
        serde_json::to_vec(&body).unwrap(),
    );
    let cache = temp_dir("thim");
    let client = CollateralClient::new(config(&server, &cache));
    let got = client
        .thim_vcek(UnixTime::now())
        .unwrap();
    assert_eq!(got.vcek, vcek.as_bytes());
    assert_eq!(got.chain, chain.as_bytes());
    assert_eq!(got.tcbm, "541700000000000A");
    // Cached: no second request.
    client
        .thim_vcek(UnixTime::now())
        .unwrap();
    assert_eq!(server.hits("/metadata/THIM/amd/certification"), 1);
    std::fs::remove_dir_all(&cache).unwrap();
}

/// Peers choose the evidence a verifier completes: made-up chip ids must not turn the verifier
/// into a KDS hammer (a download budget), and a TDX quote must carry a PCK chain that verifies to
/// Intel's root before anything is fetched for it.
#[test]
fn peers_cannot_make_the_verifier_fetch_at_will() {
    let Some(milan_dir) = real_testdata(MILAN) else {
        return;
    };
    let Some(tdx_dir) = real_testdata(TDX_V4) else {
        return;
    };
    let server = Server::start();
    let report = serve_milan(&server, &milan_dir);
    let client = CollateralClient::new(CollateralConfig {
        max_fetches_per_minute: 4,
        cache_dir: None,
        ..config(&server, Path::new("/nonexistent"))
    });
    let now = at("2026-01-01T00:00:00Z");
    let fake = |n: u8| {
        let mut r = report.clone();
        r[0x1A0] ^= n; // another chip id: KDS knows no such chip
        snp_evidence(r)
    };
    // A v2 report is looked up as Milan, then Genoa: two downloads each.
    for n in [1, 2] {
        let checks = complete(&client, &mut fake(n), now);
        assert!(
            !checks[0].ok && checks[0].detail.contains("404"),
            "{checks:?}"
        );
    }
    assert_eq!(server.total_hits(), 4);
    let checks = complete(&client, &mut fake(3), now);
    assert_eq!(checks[0].step, "collateral.vcek");
    assert!(
        !checks[0].ok && checks[0].detail.contains("budget"),
        "{checks:?}"
    );
    assert_eq!(
        server.total_hits(),
        4,
        "the budget was spent: nothing asked"
    );

    // A TDX quote whose PCK chain was tampered with: nothing fetched, a named failure.
    let t = serve_tdx(&server, &tdx_dir);
    let fresh = CollateralClient::new(CollateralConfig {
        cache_dir: None,
        ..config(&server, Path::new("/nonexistent"))
    });
    let begin = t
        .quote
        .windows(27)
        .position(|w| w == b"-----BEGIN CERTIFICATE-----")
        .unwrap();
    let mut quote = t.quote.clone();
    let at_byte = begin + 28 + 400; // inside the leaf's base64
    quote[at_byte] = if quote[at_byte] == b'A' { b'B' } else { b'A' };
    let before = server.total_hits();
    let mut tee = TeeEvidence::Tdx {
        quote: ByteBuf::from(quote),
        collateral: None,
    };
    let checks = complete(&fresh, &mut tee, at(TDX_NOW));
    assert_eq!(checks[0].step, "collateral.tdx");
    assert!(!checks[0].ok, "{checks:?}");
    assert!(
        checks[0]
            .expected
            .contains("Intel SGX root"),
        "{checks:?}"
    );
    assert_eq!(server.total_hits(), before);
}

#[test]
fn in_memory_maps_are_bounded() {
    use ratls::collateral::MAX_MEMO_ENTRIES;
    let map = std::sync::Mutex::new(std::collections::HashMap::new());
    for i in 0..=MAX_MEMO_ENTRIES {
        ratls::collateral::bounded_insert(&map, i, ());
    }
    let len = map.lock().unwrap().len();
    assert!((1..=MAX_MEMO_ENTRIES).contains(&len), "{len}");
}
