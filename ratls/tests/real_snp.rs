//! SEV-SNP verification against reports captured on real AMD hardware
//! (`$COSMIAN_REAL_TESTDATA/sev-snp`, see the READMEs there for the expected conclusions).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use ratls::snp::{self, AttestationReport, CertInput, SnpPolicy};
use ratls::{Claims, UnixTime};
use ratls_test::{read_real, real_testdata, Mutations};

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn milan(dir: &Path) -> (Vec<u8>, CertInput) {
    (
        read_real(dir, "report_milan.hex"),
        CertInput {
            vcek: Some(read_real(dir, "vcek_milan.der")),
            chain: Some(read_real(dir, "cert_chain_milan")),
            ..Default::default()
        },
    )
}

fn genoa(dir: &Path) -> (Vec<u8>, CertInput) {
    let evidence: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "evidence-genoa.json")).unwrap();
    let vcek = evidence["vcek"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    (
        read_real(dir, "derived-snp-report.bin"),
        CertInput {
            vcek: Some(vcek),
            chain: Some(read_real(dir, "ask_ark_genoa.pem")),
            ..Default::default()
        },
    )
}

/// The 2023 Milan sample (bootloader 3, TEE 0, SNP 8, microcode 115) is below AMD's default
/// floor for Milan: tests that verify it as genuine accept its TCB explicitly.
fn milan_2023() -> SnpPolicy {
    SnpPolicy {
        min_tcb: Some(snp::MinTcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        }),
        ..Default::default()
    }
}

fn claims(v: &ratls::Verdict) -> &snp::SnpClaims {
    match &v.claims {
        Claims::Snp(c) => c,
        other => panic!("unexpected claims {other:?}"),
    }
}

#[test]
fn milan_vcek_report_verifies_with_readme_claims() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report, certs) = milan(&dir);
    let v = snp::verify_bytes(&report, &certs, &milan_2023(), at("2026-01-01T00:00:00Z"));
    assert!(v.is_trusted(), "{v}");
    for step in [
        "tee.parse",
        "tee.chain.ark",
        "tee.chain.ask",
        "tee.chain.vcek",
        "tee.chain.validity",
        "tee.signing_key",
        "tee.signature",
        "tee.tcb",
        "tee.chip_id",
        "tee.product",
        "tee.policy.debug",
        "tee.policy.vmpl",
    ] {
        assert!(v.passed(step), "{step} missing or failed:\n{v}");
    }
    assert!(v
        .check("tee.chain.ark")
        .unwrap()
        .presented
        .contains("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"));
    let c = claims(&v);
    assert_eq!(c.version, 2);
    assert_eq!(c.product, Some(snp::Product::Milan));
    assert_eq!(c.guest_svn, 0);
    assert_eq!(c.policy, "0x30000");
    assert!(!c.debug_allowed);
    assert_eq!(c.vmpl, 0);
    assert_eq!(c.signing_key, "vcek");
    assert_eq!(c.platform_info, "0x1");
    assert_eq!(
        c.measurement,
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        c.report_data,
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    assert!(c.chip_id.starts_with("d49554ec"));
    assert!(c.chip_id.ends_with("d541eb6"));
    assert_eq!(c.reported_tcb_raw, "0x7308000000000003");
    let t = c.reported_tcb;
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (3, 0, 8, 115));
    assert_eq!(c.current_tcb, t);
    assert_eq!(c.committed_tcb, t);
    assert_eq!(c.launch_tcb, t);
    assert_eq!(c.firmware, "1.52 build 4");
}

#[test]
fn milan_2023_is_below_the_default_floor() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report, certs) = milan(&dir);
    let now = at("2026-01-01T00:00:00Z");
    let v = snp::verify_bytes(&report, &certs, &SnpPolicy::default(), now);
    assert!(!v.is_trusted(), "{v}");
    let failed: Vec<&str> = v
        .failures()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(failed, ["tee.tcb"], "{v}");
    let tcb = v.check("tee.tcb").unwrap();
    assert!(
        tcb.expected
            .contains("AMD floor for Milan from AMD-SB-3019 (2025-02-03)"),
        "{tcb:?}"
    );
    assert_eq!(
        tcb.presented,
        "reported_tcb bootloader 3, tee 0, snp 8, microcode 115"
    );
    assert!(tcb.detail.contains("below"), "{tcb:?}");

    // An explicit min_tcb replaces the floor, and says so.
    let v = snp::verify_bytes(&report, &certs, &milan_2023(), now);
    assert!(v.is_trusted(), "{v}");
    assert!(v
        .check("tee.tcb")
        .unwrap()
        .expected
        .contains("policy min_tcb"));
    // tcb_floor "none" turns the floor off.
    let none = SnpPolicy {
        tcb_floor: snp::TcbFloor::None,
        ..Default::default()
    };
    let v = snp::verify_bytes(&report, &certs, &none, now);
    assert!(v.is_trusted(), "{v}");
    assert!(v
        .check("tee.tcb")
        .unwrap()
        .expected
        .contains("tcb_floor"));
    // Launch TCB against the same minimum.
    let launch = SnpPolicy {
        check_launch_tcb: true,
        ..milan_2023()
    };
    let v = snp::verify_bytes(&report, &certs, &launch, now);
    assert!(v.passed("tee.policy.launch_tcb"), "{v}");
    let launch_newer = SnpPolicy {
        check_launch_tcb: true,
        min_tcb: Some(snp::MinTcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 116,
        }),
        ..Default::default()
    };
    let v = snp::verify_bytes(&report, &certs, &launch_newer, now);
    assert!(!v.passed("tee.policy.launch_tcb"), "{v}");
    // SMT: the Milan platform has SMT_EN (platform_info 0x1) and the guest allows SMT.
    let smt = SnpPolicy {
        require_smt_off: true,
        ..milan_2023()
    };
    let v = snp::verify_bytes(&report, &certs, &smt, now);
    let check = v.check("tee.policy.smt").unwrap();
    assert!(!check.ok && check.presented.contains("SMT ON"), "{check:?}");
}

#[test]
fn milan_verifies_with_the_builtin_chain() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report, mut certs) = milan(&dir);
    certs.chain = None;
    let v = snp::verify_bytes(&report, &certs, &milan_2023(), at("2026-01-01T00:00:00Z"));
    assert!(v.is_trusted(), "{v}");
    assert_eq!(v.check("tee.chain.ark").unwrap().detail, "chain built in");
}

#[test]
fn genoa_azure_report_verifies_with_readme_claims() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    let (report, certs) = genoa(&dir);
    let v = snp::verify_bytes(
        &report,
        &certs,
        &SnpPolicy::default(),
        at("2026-01-01T00:00:00Z"),
    );
    assert!(v.is_trusted(), "{v}");
    // Genoa's floor (microcode 72) is met by microcode 84.
    assert!(v
        .check("tee.tcb")
        .unwrap()
        .expected
        .contains("AMD floor for Genoa from AMD-SB-3019"));
    let c = claims(&v);
    assert_eq!(c.version, 3);
    assert_eq!(c.product, Some(snp::Product::Genoa));
    assert_eq!(
        c.cpuid
            .map(|c| (c.family, c.model, c.stepping)),
        Some((0x19, 0x11, 0x01))
    );
    assert_eq!(c.guest_svn, 0x1000B);
    assert_eq!(c.policy, "0x3001f");
    assert!(!c.debug_allowed);
    assert_eq!(c.vmpl, 0);
    assert_eq!(c.platform_info, "0x24");
    assert_eq!(
        c.measurement,
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae"
    );
    assert_eq!(
        c.report_data,
        format!(
            "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f{}",
            "0".repeat(64)
        )
    );
    assert!(c.family_id.starts_with("01232000"));
    assert_eq!(c.image_id, format!("02{}", "0".repeat(30)));
    assert!(c.id_key_digest.starts_with("942fd93e"));
    assert!(c.id_key_digest.ends_with("56af4177"));
    assert!(c.chip_id.starts_with("0506ffba"));
    assert!(c.chip_id.ends_with("aaea4ad1"));
    assert_eq!(c.reported_tcb_raw, "0x541700000000000a");
    let t = c.reported_tcb;
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (10, 0, 23, 84));
    assert_eq!(c.firmware, "1.55 build 40");
    // report_data = SHA-256(var_data) of the HCL report around it.
    let hcl = read_real(&dir, "derived-hcl-report.bin");
    let var_data_len = u32::from_le_bytes(hcl[0x4D0..0x4D4].try_into().unwrap()) as usize;
    let var_data = &hcl[0x4D4..0x4D4 + var_data_len];
    assert_eq!(
        &c.report_data[..64],
        hex::encode(ratls::digest::HashAlg::Sha256.digest(var_data))
    );
}

#[test]
fn policy_pins_and_refusals_name_the_step() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report, certs) = milan(&dir);
    let now = at("2026-01-01T00:00:00Z");
    let check = |policy: SnpPolicy, step: &str| {
        let v = snp::verify_bytes(&report, &certs, &policy, now);
        assert!(!v.is_trusted(), "{step}: {v}");
        let failed = v.first_failure().unwrap();
        assert_eq!(failed.step, step, "{v}");
        failed.clone()
    };
    let f = check(
        SnpPolicy {
            measurement: Some("00".repeat(48)),
            ..milan_2023()
        },
        "tee.policy.measurement",
    );
    assert!(f.presented.starts_with("7a1e5c26"));
    check(
        SnpPolicy {
            vmpl: 1,
            ..milan_2023()
        },
        "tee.policy.vmpl",
    );
    check(
        SnpPolicy {
            min_tcb: Some(snp::MinTcb {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 9,
                microcode: 115,
            }),
            ..milan_2023()
        },
        "tee.policy.min_tcb",
    );
    check(
        SnpPolicy {
            products: vec![snp::Product::Genoa],
            ..milan_2023()
        },
        "tee.policy.product",
    );
    check(
        SnpPolicy {
            host_data: Some("zz".into()),
            ..milan_2023()
        },
        "tee.policy.host_data",
    );
    // A matching pin passes.
    let v = snp::verify_bytes(
        &report,
        &certs,
        &SnpPolicy {
            measurement: Some(
                "7A1E5C266C0108DBC9BB94FA926951320940915D0AAFB42464BD88B579EA158D3E1A0DC39B2C60BD95B9C480CD81841F"
                    .into(),
            ),
            ..milan_2023()
        },
        now,
    );
    assert!(v.is_trusted(), "{v}");
}

#[test]
fn tampering_is_caught_at_the_named_step() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report_hex, certs) = milan(&dir);
    let raw = hex::decode(
        String::from_utf8(report_hex)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let now = at("2026-01-01T00:00:00Z");
    let policy = milan_2023();

    // One measurement byte changed: the signature no longer verifies.
    let mut m = raw.clone();
    m[0x90] ^= 1;
    let v = snp::verify_bytes(&m, &certs, &policy, now);
    assert_eq!(v.first_failure().unwrap().step, "tee.signature", "{v}");

    // Debug bit set: signature and debug policy both fail.
    let mut d = raw.clone();
    d[0x08 + 2] |= 1 << 3; // policy bit 19
    let v = snp::verify_bytes(&d, &certs, &policy, now);
    assert!(!v.passed("tee.signature"));
    assert!(!v.passed("tee.policy.debug"));
    assert!(v
        .check("tee.policy.debug")
        .unwrap()
        .presented
        .contains("ALLOWED"));

    // Time outside the VCEK window.
    let v = snp::verify_bytes(&raw, &certs, &policy, at("2031-01-01T00:00:00Z"));
    assert_eq!(v.first_failure().unwrap().step, "tee.chain.validity", "{v}");

    // The Genoa chain does not sign the Milan VCEK.
    if let Some(genoa_dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") {
        let wrong = CertInput {
            chain: Some(read_real(&genoa_dir, "ask_ark_genoa.pem")),
            ..certs.clone()
        };
        let v = snp::verify_bytes(&raw, &wrong, &policy, now);
        assert_eq!(v.first_failure().unwrap().step, "tee.chain.vcek", "{v}");
        // And the Genoa VCEK does not sign the Milan report (chain resolved by issuer).
        let (_, genoa_certs) = genoa(&genoa_dir);
        let v = snp::verify_bytes(
            &raw,
            &CertInput {
                chain: None,
                ..genoa_certs
            },
            &policy,
            now,
        );
        assert!(!v.passed("tee.signature"), "{v}");
        assert!(!v.passed("tee.tcb"), "{v}");
        assert!(!v.passed("tee.chip_id"), "{v}");
    }

    // An ARK that is not pinned: the ASK put in the ARK's place.
    let chain = String::from_utf8(certs.chain.clone().unwrap()).unwrap();
    let ask_end = chain
        .find("-----END CERTIFICATE-----")
        .unwrap()
        + 25;
    let ask = &chain[..ask_end];
    let fake_chain = format!("{ask}\n{ask}\n");
    let v = snp::verify_bytes(
        &raw,
        &CertInput {
            chain: Some(fake_chain.into_bytes()),
            ..certs.clone()
        },
        &policy,
        now,
    );
    assert_eq!(v.first_failure().unwrap().step, "tee.chain.ark", "{v}");

    // Report claims VLEK signing while a VCEK is given.
    let mut k = raw.clone();
    k[0x48] |= 1 << 2;
    let v = snp::verify_bytes(&k, &certs, &policy, now);
    assert!(!v.passed("tee.signing_key"), "{v}");
}

#[test]
fn mutated_reports_never_panic_and_never_pass() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let (report_hex, certs) = milan(&dir);
    let raw = hex::decode(
        String::from_utf8(report_hex)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let now = at("2026-01-01T00:00:00Z");
    let mutations = Mutations::of(&raw, 0x5e5, 1500);
    let mut parse_errors = 0;
    for (what, bytes) in mutations.iter() {
        let parsed = AttestationReport::parse(bytes);
        parse_errors += usize::from(parsed.is_err());
        let v = snp::verify_bytes(bytes, &certs, &milan_2023(), now);
        if v.is_trusted() {
            // The unsigned tail must be zero, so only the original bytes can be trusted.
            assert_eq!(bytes.len(), raw.len(), "{what}");
            assert_eq!(bytes, raw.as_slice(), "{what} was trusted");
        }
    }
    assert!(parse_errors > 100, "{parse_errors}");
    // Mutated certificates are never trusted.
    let vcek = certs.vcek.clone().unwrap();
    for (what, bytes) in Mutations::of(&vcek, 7, 600).iter() {
        let v = snp::verify_bytes(
            &raw,
            &CertInput {
                vcek: Some(bytes.to_vec()),
                ..certs.clone()
            },
            &milan_2023(),
            now,
        );
        assert!(
            !v.is_trusted() || bytes == vcek.as_slice(),
            "mutated VCEK trusted: {what}"
        );
    }
}
