//! TDX verification on real quotes and Intel PCS collateral (Phala dcap-qvl samples, see the
//! READMEs next to them): a v4 quote that is UpToDate inside its collateral window, and a v5
//! (TD 1.5) quote whose platform matches no TCB level.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use ratls::digest::HashAlg;
use ratls::tdx::{self, Collateral, Quote, TdxClaims, TdxPolicy};
use ratls::{Claims, UnixTime, Verdict};
use ratls_test::{read_real, real_testdata, Mutations};

const V4: &str = "tdx/v4-emr-phala-collateral";
const V5: &str = "tdx/v5-td15-phala-collateral";

const V4_NOW: &str = "2025-07-01T00:00:00Z";
const V5_NOW: &str = "2026-03-01T00:00:00Z";

/// Where the v4 quote's signature data ends; the 70 bytes after it are tolerated padding.
const V4_QUOTE_END: usize = 4936;

struct Sample {
    quote: Vec<u8>,
    collateral: Vec<u8>,
    dir: PathBuf,
}

fn sample(sub: &str, quote: &str) -> Option<Sample> {
    let dir = real_testdata(sub)?;
    Some(Sample {
        quote: read_real(&dir, quote),
        collateral: read_real(&dir, "collateral.json"),
        dir,
    })
}

fn v4() -> Option<Sample> {
    sample(V4, "tdx_quote.bin")
}

fn v5() -> Option<Sample> {
    sample(V5, "tdx_quote_v5.bin")
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn claims(v: &Verdict) -> &TdxClaims {
    match &v.claims {
        Claims::Tdx(c) => c,
        other => panic!("no TDX claims: {other:?}"),
    }
}

fn first_failure(v: &Verdict) -> &str {
    v.first_failure()
        .unwrap_or_else(|| panic!("no failure:\n{v}"))
        .step
        .as_str()
}

/// Offset of `part` inside `whole` (both from the same buffer).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

const OWN_CRYPTO_STEPS: [&str; 4] = [
    "tee.pck_chain",
    "tee.qe_report.signature",
    "tee.qe_report.binding",
    "tee.signature",
];

#[test]
fn pinned_root_is_the_intel_sgx_root_ca() {
    let Some(s) = v4() else { return };
    let root = read_real(&s.dir, "intel_sgx_root_ca.der");
    assert_eq!(HashAlg::Sha256.digest(&root), tdx::INTEL_SGX_ROOT_CA_SHA256);
}

#[test]
fn v4_is_trusted_inside_its_collateral_window() {
    let Some(s) = v4() else { return };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
    assert!(v.is_trusted(), "{v}");
    let steps: Vec<&str> = v
        .checks
        .iter()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "tee.parse",
            "tee.collateral.parse",
            "tee.pck_chain",
            "tee.qe_report.signature",
            "tee.qe_report.binding",
            "tee.signature",
            "tee.collateral",
            "tee.tcb",
            "tee.policy.debug",
        ]
    );
    let c = claims(&v);
    assert_eq!(c.version, 4);
    assert_eq!(c.body_type, "td1.0");
    assert_eq!(
        c.mr_td,
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        c.rtmr0,
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
    );
    assert_eq!(
        c.rtmr1,
        "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
    );
    assert_eq!(
        c.rtmr2,
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
    );
    assert_eq!(c.rtmr3, "00".repeat(48));
    assert_eq!(c.mr_config_id, "00".repeat(48));
    assert_eq!(c.mr_owner, "00".repeat(48));
    assert_eq!(c.mr_owner_config, "00".repeat(48));
    assert_eq!(c.mr_signer_seam, "00".repeat(48));
    assert_eq!(
        c.report_data,
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    assert_eq!(c.tee_tcb_svn, "06010300000000000000000000000000");
    assert!(c.mr_seam.starts_with("5b38e33a"));
    assert!(c.mr_seam.ends_with("207b00c1"));
    // 0x10000000 (SEPT_VE_DISABLE), little endian; DEBUG off.
    assert_eq!(c.td_attributes, "0x10000000");
    assert!(!c.debug);
    // 0x602E7, little endian.
    assert_eq!(c.xfam, "0x602e7");
    assert_eq!(c.tcb_status.as_deref(), Some("UpToDate"));
    assert!(c.advisory_ids.is_empty());
    assert_eq!(c.fmspc.as_deref(), Some("b0c06f000000"));
    assert_eq!(c.trailing_bytes, 70);
    assert_eq!(c.tee_tcb_svn2, None);
}

#[test]
fn v4_inspect_matches_the_verified_claims_without_a_tcb_status() {
    let Some(s) = v4() else { return };
    let inspected = tdx::inspect(&s.quote).unwrap();
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
    let mut verified = claims(&v).clone();
    assert_eq!(inspected.tcb_status, None);
    verified.tcb_status = None;
    assert_eq!(inspected, verified);
}

#[test]
fn v4_cached_collateral_gives_the_same_verdict() {
    let Some(s) = v4() else { return };
    let collateral = Collateral::from_json(&s.collateral).unwrap();
    let policy = TdxPolicy::default();
    let a = tdx::verify(&s.quote, &collateral, &policy, at(V4_NOW));
    let b = tdx::verify_bytes(&s.quote, &s.collateral, &policy, at(V4_NOW));
    assert_eq!(a.checks, b.checks);
    assert!(a.is_trusted());
}

#[test]
fn v4_outside_its_window_is_rejected() {
    let Some(s) = v4() else { return };
    let policy = TdxPolicy::default();
    // After the collateral expired (the PCK chain itself is still valid in 2030).
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &policy, at("2030-01-01T00:00:00Z"));
    assert!(!v.is_trusted());
    assert!(first_failure(&v).starts_with("tee.collateral"), "{v}");
    for step in OWN_CRYPTO_STEPS {
        assert!(v.passed(step), "{step}:\n{v}");
    }
    // Before the collateral was issued.
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &policy, at("2025-06-01T00:00:00Z"));
    assert!(!v.is_trusted());
    assert!(first_failure(&v).starts_with("tee.collateral"), "{v}");
    // After the PCK leaf expired (2032-02-06).
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &policy, at("2033-01-01T00:00:00Z"));
    assert_eq!(first_failure(&v), "tee.pck_chain", "{v}");
    // Before the PCK leaf was issued (2025-02-06).
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &policy, at("2025-01-01T00:00:00Z"));
    assert_eq!(first_failure(&v), "tee.pck_chain", "{v}");
}

#[test]
fn v5_parses_as_td15_with_the_readme_values() {
    let Some(s) = v5() else { return };
    let q = Quote::parse(&s.quote).unwrap();
    assert_eq!(q.header.version, 5);
    assert_eq!(q.body_type, tdx::BodyType::Td15);
    assert_eq!(q.trailing_bytes, 0);
    let c = tdx::inspect(&s.quote).unwrap();
    assert_eq!(c.body_type, "td1.5");
    assert_eq!(
        c.mr_td,
        "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
    );
    assert_eq!(
        c.report_data,
        format!(
            "d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728{}",
            "00".repeat(32)
        )
    );
    for rtmr in [&c.rtmr0, &c.rtmr1, &c.rtmr2, &c.rtmr3] {
        assert_eq!(*rtmr, "00".repeat(48));
    }
    assert_eq!(c.tee_tcb_svn, "07010300000000000000000000000000");
    assert_eq!(
        c.tee_tcb_svn2.as_deref(),
        Some("0d010300000000000000000000000000")
    );
    assert_eq!(c.mr_service_td, Some("00".repeat(48)));
    assert!(c.mr_seam.starts_with("49b66faa"));
    assert_eq!(c.td_attributes, "0x10000000");
    assert_eq!(c.xfam, "0x618e7");
    assert_eq!(c.fmspc.as_deref(), Some("90c06f000000"));
    assert_eq!(c.tcb_status, None);
}

#[test]
fn v5_is_rejected_at_tcb_with_every_signature_valid() {
    let Some(s) = v5() else { return };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &TdxPolicy::default(), at(V5_NOW));
    assert!(!v.is_trusted());
    assert_eq!(first_failure(&v), "tee.tcb", "{v}");
    assert_eq!(v.failures().count(), 1, "{v}");
    let tcb = v.check("tee.tcb").unwrap();
    assert!(tcb
        .presented
        .contains("No matching TCB level"));
    for step in
        OWN_CRYPTO_STEPS
            .iter()
            .chain(&["tee.parse", "tee.collateral.parse", "tee.policy.debug"])
    {
        assert!(v.passed(*step), "{step}:\n{v}");
    }
    assert_eq!(claims(&v).tcb_status, None);
    // Allowing every status does not help: no level matched at all.
    let lenient = TdxPolicy {
        allowed_tcb_statuses: tdx::TCB_STATUSES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &lenient, at(V5_NOW));
    assert_eq!(first_failure(&v), "tee.tcb");
}

#[test]
fn a_flipped_body_byte_breaks_the_quote_signature() {
    let Some(s) = v4() else { return };
    for at_byte in [48, 48 + 200, 48 + 583, 0, 20] {
        let mut quote = s.quote.clone();
        quote[at_byte] ^= 0x01;
        let v = tdx::verify_bytes(&quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
        assert!(!v.is_trusted());
        if at_byte < 8 {
            // Version / key type / TEE type: the parser refuses the quote.
            assert_eq!(first_failure(&v), "tee.parse", "{v}");
            continue;
        }
        let sig = v.check("tee.signature").unwrap();
        assert!(!sig.ok, "byte {at_byte}:\n{v}");
        assert_eq!(first_failure(&v), "tee.signature", "{v}");
        assert!(v.passed("tee.pck_chain"));
        assert!(v.passed("tee.qe_report.signature"));
        assert!(v.passed("tee.qe_report.binding"));
    }
}

#[test]
fn changed_qe_auth_data_or_attestation_key_breaks_the_binding() {
    let Some(s) = v4() else { return };
    let q = Quote::parse(&s.quote).unwrap();
    let auth = offset_in(&s.quote, q.signature_data.qe_auth_data);
    // The attestation key follows the signature-data length (4) and the quote signature (64).
    let key_at = q.signed.len() + 4 + 64;
    assert_eq!(
        &s.quote[key_at..key_at + 64],
        &q.signature_data.attestation_key
    );

    let mut quote = s.quote.clone();
    quote[auth + 5] ^= 0x80;
    let v = tdx::verify_bytes(&quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.qe_report.binding", "{v}");
    assert!(v.passed("tee.signature"));
    assert!(v.passed("tee.qe_report.signature"));

    let mut quote = s.quote.clone();
    quote[key_at + 10] ^= 0x01;
    let v = tdx::verify_bytes(&quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
    assert!(
        !v.check("tee.qe_report.binding")
            .unwrap()
            .ok
    );
    assert!(!v.check("tee.signature").unwrap().ok);
}

#[test]
fn measurement_policy_is_enforced() {
    let Some(s) = v4() else { return };
    let c = tdx::inspect(&s.quote).unwrap();
    let exact = TdxPolicy {
        mr_td: Some(c.mr_td.to_uppercase()),
        rtmr0: Some(c.rtmr0.clone()),
        rtmr1: Some(c.rtmr1.clone()),
        rtmr2: Some(c.rtmr2.clone()),
        rtmr3: Some(c.rtmr3.clone()),
        report_data: Some(c.report_data.clone()),
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &exact, at(V4_NOW));
    assert!(v.is_trusted(), "{v}");
    for step in [
        "tee.policy.mr_td",
        "tee.policy.rtmr0",
        "tee.policy.rtmr1",
        "tee.policy.rtmr2",
        "tee.policy.rtmr3",
        "tee.policy.report_data",
    ] {
        assert!(v.passed(step), "{step}");
    }

    let wrong = TdxPolicy {
        mr_td: Some("00".repeat(48)),
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &wrong, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.policy.mr_td");
    assert_eq!(v.failures().count(), 1);
    let check = v.check("tee.policy.mr_td").unwrap();
    assert_eq!(check.expected, "00".repeat(48));
    assert_eq!(check.presented, c.mr_td);

    let bad_hex = TdxPolicy {
        rtmr2: Some("xyz".into()),
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &bad_hex, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.policy.rtmr2");
    assert!(v
        .check("tee.policy.rtmr2")
        .unwrap()
        .detail
        .contains("rtmr2"));
}

#[test]
fn tcb_statuses_are_allowed_by_name() {
    let Some(s) = v4() else { return };
    let only_sw = TdxPolicy {
        allowed_tcb_statuses: vec!["SWHardeningNeeded".into()],
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&s.quote, &s.collateral, &only_sw, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.tcb");
    assert_eq!(v.check("tee.tcb").unwrap().presented, "UpToDate");

    let both = TdxPolicy {
        allowed_tcb_statuses: vec!["SWHardeningNeeded".into(), "UpToDate".into()],
        ..TdxPolicy::default()
    };
    assert!(tdx::verify_bytes(&s.quote, &s.collateral, &both, at(V4_NOW)).is_trusted());

    let json: TdxPolicy =
        serde_json::from_str(r#"{"allowed_tcb_statuses":["OutOfDate","UpToDate"]}"#).unwrap();
    assert!(tdx::verify_bytes(&s.quote, &s.collateral, &json, at(V4_NOW)).is_trusted());
}

#[test]
fn a_debug_td_is_refused_unless_allowed() {
    let Some(s) = v4() else { return };
    let mut quote = s.quote.clone();
    // td_attributes: header 48 + tee_tcb_svn 16 + mr_seam 48 + mr_signer_seam 48 + seam_attributes 8.
    let td_attributes = 48 + 16 + 48 + 48 + 8;
    assert_eq!(quote[td_attributes + 3], 0x10);
    quote[td_attributes] |= 0x01;
    let v = tdx::verify_bytes(&quote, &s.collateral, &TdxPolicy::default(), at(V4_NOW));
    assert!(!v.is_trusted());
    let debug = v.check("tee.policy.debug").unwrap();
    assert!(!debug.ok, "{v}");
    assert_eq!(debug.presented, "debug on");
    assert!(!v.check("tee.signature").unwrap().ok);
    assert!(claims(&v).debug);

    let allow = TdxPolicy {
        allow_debug: true,
        ..TdxPolicy::default()
    };
    let v = tdx::verify_bytes(&quote, &s.collateral, &allow, at(V4_NOW));
    assert!(v.passed("tee.policy.debug"));
    assert!(!v.is_trusted(), "the signature still fails");
}

#[test]
fn tampered_collateral_is_refused_at_the_right_step() {
    let Some(s) = v4() else { return };
    let original: serde_json::Value = serde_json::from_slice(&s.collateral).unwrap();
    let policy = TdxPolicy::default();
    let tamper = |field: &str, from: &str, to: &str| {
        let mut value = original.clone();
        let text = value[field]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains(from), "{field} lacks {from}");
        value[field] = serde_json::Value::String(text.replacen(from, to, 1));
        serde_json::to_vec(&value).unwrap()
    };

    let json = tamper("tcb_info", "UpToDate", "OutOfDate");
    let v = tdx::verify_bytes(&s.quote, &json, &policy, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.collateral.tcb_info", "{v}");

    let json = tamper("qe_identity", "UpToDate", "OutOfDate");
    let v = tdx::verify_bytes(&s.quote, &json, &policy, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.collateral.qe_identity", "{v}");

    let mut value = original.clone();
    value["pck_crl"] = value["root_ca_crl"].clone();
    let v = tdx::verify_bytes(
        &s.quote,
        &serde_json::to_vec(&value).unwrap(),
        &policy,
        at(V4_NOW),
    );
    assert!(!v.is_trusted());
    assert!(first_failure(&v).starts_with("tee.collateral"), "{v}");

    // The v5 collateral is for another FMSPC.
    let Some(other) = v5() else { return };
    let v = tdx::verify_bytes(&s.quote, &other.collateral, &policy, at(V4_NOW));
    assert!(!v.is_trusted());
    assert!(first_failure(&v).starts_with("tee.collateral"), "{v}");

    let v = tdx::verify_bytes(&s.quote, &s.collateral[..100], &policy, at(V4_NOW));
    assert_eq!(first_failure(&v), "tee.collateral.parse");
    assert!(!v.passed("tee.collateral"));
    assert!(!v.passed("tee.tcb"));
}

/// Whether `variant` differs from `sample` only in the tolerated trailing bytes.
fn same_signed_content(sample: &[u8], end: usize, variant: &[u8]) -> bool {
    variant.len() >= end && variant[..end] == sample[..end]
}

fn mutate_and_verify(s: &Sample, now: UnixTime, end: usize, seed: u64) {
    let policy = TdxPolicy::default();
    let collateral = Collateral::from_json(&s.collateral).unwrap();
    let mutations = Mutations::of(&s.quote, seed, 2000);
    let mut trusted = 0;
    for (what, bytes) in mutations.iter() {
        let parsed = Quote::parse(bytes);
        let inspected = tdx::inspect(bytes);
        assert_eq!(parsed.is_ok(), inspected.is_ok(), "{what}");
        let v = tdx::verify_bytes(bytes, &s.collateral, &policy, now);
        let cached = tdx::verify(bytes, &collateral, &policy, now);
        assert_eq!(v.checks, cached.checks, "{what}");
        if parsed.is_err() {
            assert_eq!(first_failure(&v), "tee.parse", "{what}");
        }
        if v.is_trusted() {
            trusted += 1;
            assert!(
                bytes == s.quote.as_slice() || same_signed_content(&s.quote, end, bytes),
                "{what} was trusted:\n{v}"
            );
        }
    }
    eprintln!("{} variants, {trusted} trusted", mutations.count());
}

#[test]
fn v4_mutations_never_panic_and_are_trusted_only_when_unchanged() {
    let Some(s) = v4() else { return };
    mutate_and_verify(&s, at(V4_NOW), V4_QUOTE_END, 0x7d5_0004);
}

#[test]
fn v5_mutations_never_panic_and_are_never_trusted() {
    let Some(s) = v5() else { return };
    let len = s.quote.len();
    mutate_and_verify(&s, at(V5_NOW), len + 1, 0x7d5_0005);
}

#[test]
fn collateral_mutations_never_panic_and_never_forge_the_signed_parts() {
    let Some(s) = v4() else { return };
    let original = Collateral::from_json(&s.collateral).unwrap();
    let policy = TdxPolicy::default();
    let mutations = Mutations::of(&s.collateral, 0x7d5_c011, 400);
    let mut trusted = 0;
    for (what, json) in mutations.iter() {
        let v = tdx::verify_bytes(&s.quote, json, &policy, at(V4_NOW));
        if v.is_trusted() {
            trusted += 1;
            // Only encodings that carry the same signed content may pass (hex case, PEM layout).
            let parsed = Collateral::from_json(json).unwrap();
            let (a, b) = (parsed.as_dcap(), original.as_dcap());
            assert_eq!(a.tcb_info, b.tcb_info, "{what}");
            assert_eq!(a.qe_identity, b.qe_identity, "{what}");
            assert_eq!(a.tcb_info_signature, b.tcb_info_signature, "{what}");
            assert_eq!(a.qe_identity_signature, b.qe_identity_signature, "{what}");
            assert_eq!(a.pck_crl, b.pck_crl, "{what}");
            assert_eq!(a.root_ca_crl, b.root_ca_crl, "{what}");
        }
    }
    eprintln!(
        "{} collateral variants, {trusted} trusted",
        mutations.count()
    );
}
