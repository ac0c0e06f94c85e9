use super::*;
use crate::snp::floors;

fn blank_report(version: u32) -> Vec<u8> {
    let mut raw = vec![0u8; REPORT_LEN];
    raw[..4].copy_from_slice(&version.to_le_bytes());
    raw
}

#[test]
fn parses_minimal_reports_of_each_version() {
    for version in [2u32, 3, 4, 5] {
        let mut raw = blank_report(version);
        raw[0x188] = 0x19;
        raw[0x189] = 0x11;
        raw[0x1F8] = 7;
        let report = AttestationReport::parse(&raw).unwrap();
        assert_eq!(report.version, version);
        assert_eq!(report.cpuid.is_some(), version >= 3);
        assert_eq!(report.launch_mit_vector, (version >= 5).then_some(7));
    }
}

#[test]
fn rejects_wrong_sizes_versions_and_padding() {
    assert!(matches!(
        AttestationReport::parse(&blank_report(1)),
        Err(crate::ParseError::Unsupported {
            field: "version",
            ..
        })
    ));
    assert!(matches!(
        AttestationReport::parse(&blank_report(2)[..100]),
        Err(crate::ParseError::Truncated { .. })
    ));
    let mut long = blank_report(2);
    long.push(0);
    assert!(matches!(
        AttestationReport::parse(&long),
        Err(crate::ParseError::TrailingBytes { count: 1, .. })
    ));
    let mut bad_pad = blank_report(2);
    bad_pad[0x2A0 + 60] = 1;
    assert!(matches!(
        AttestationReport::parse(&bad_pad),
        Err(crate::ParseError::InvalidValue {
            field: "signature.r",
            ..
        })
    ));
}

#[test]
fn hex_text_is_accepted() {
    let raw = blank_report(3);
    let text = format!("{}\n", hex::encode_upper(&raw));
    assert_eq!(
        AttestationReport::parse(text.as_bytes()).unwrap(),
        AttestationReport::parse(&raw).unwrap()
    );
}

#[test]
fn tcb_layouts() {
    let tcb = RawTcb(0x7308_0000_0000_0003);
    assert_eq!(
        tcb.decode(false),
        TcbVersion {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115
        }
    );
    let turin = RawTcb(u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 5])).decode(true);
    assert_eq!(
        (
            turin.fmc,
            turin.bootloader,
            turin.tee,
            turin.snp,
            turin.microcode
        ),
        (Some(1), 2, 3, 4, 5)
    );
}

#[test]
fn no_certificate_means_rejected() {
    let v = verify_bytes(
        &blank_report(2),
        &CertInput::default(),
        &SnpPolicy::default(),
        crate::UnixTime::now(),
    );
    assert!(!v.is_trusted());
    assert!(!v.passed("tee.chain.vcek"));
    assert!(!v.passed("tee.signature"));
}

#[test]
fn builtin_anchors_match_their_pins() {
    for product in Product::ALL {
        let ark = crate::pki::Cert::from_der_or_pem(product.ark_pem()).unwrap();
        assert_eq!(ark.fingerprint(), product.ark_fingerprint(), "{product}");
        ark.verify_signed_by(&ark).unwrap();
        for vlek in [false, true] {
            let mid = crate::pki::Cert::from_der_or_pem(product.intermediate_pem(vlek)).unwrap();
            mid.verify_signed_by(&ark).unwrap();
            assert_eq!(Product::from_common_name(&mid.subject_cn()), Some(product));
        }
    }
}

#[test]
fn id_block_pins_need_the_id_or_author_key() {
    use crate::policy::{Policy, PolicyError};
    for (json, fields) in [
        (r#"{"snp": {"family_id": "00"}}"#, vec!["family_id"]),
        (r#"{"snp": {"image_id": "00"}}"#, vec!["image_id"]),
        (r#"{"snp": {"min_guest_svn": 1}}"#, vec!["min_guest_svn"]),
        (
            r#"{"snp": {"family_id": "00", "image_id": "00", "min_guest_svn": 0}}"#,
            vec!["family_id", "image_id", "min_guest_svn"],
        ),
    ] {
        let error = Policy::from_json(json)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "snp: {} pinned without id_key_digest or author_key_digest",
                fields.join(", ")
            )),
            "{error}"
        );
        let policy: Policy = serde_json::from_str(json).unwrap();
        assert_eq!(
            policy.validate(),
            Err(PolicyError::IdBlockWithoutKey { fields })
        );
    }
    for json in [
        r#"{"snp": {"family_id": "00", "min_guest_svn": 1, "id_key_digest": "00"}}"#,
        r#"{"snp": {"image_id": "00", "author_key_digest": "00"}}"#,
        r#"{"snp": {"measurement": "00"}}"#,
        "{}",
    ] {
        assert!(Policy::from_json(json).is_ok(), "{json}");
    }
}

#[test]
fn policy_json_rejects_unknown_keys() {
    assert!(serde_json::from_str::<SnpPolicy>(r#"{"allow_debugg": true}"#).is_err());
    let p: SnpPolicy = serde_json::from_str(r#"{"vmpl": 2, "products": ["Genoa"]}"#).unwrap();
    assert_eq!(p.vmpl, 2);
    assert!(!p.allow_debug);
}

/// `tee.crl` on the simulated chain: CRLs built by the simulated CA (signed by its ARK, or not).
#[cfg(feature = "sim")]
mod crl {
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, SystemTime};

    use crate::attest::sim::{SimCa, SimTee};
    use crate::binding::ReportData;
    use crate::snp::{CertInput, SnpPolicy};
    use crate::time::UnixTime;
    use crate::verdict::{Claims, Verdict};

    const HOUR: Duration = Duration::from_secs(3600);

    fn ca() -> Arc<SimCa> {
        static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
        CA.get_or_init(|| Arc::new(SimCa::generate().unwrap()))
            .clone()
    }

    fn report() -> Vec<u8> {
        static REPORT: OnceLock<Vec<u8>> = OnceLock::new();
        REPORT
            .get_or_init(|| {
                SimTee::new(ca())
                    .unwrap()
                    .report(&ReportData::from_raw_for_tests([7; 64]))
                    .unwrap()
            })
            .clone()
    }

    fn verify_policy(crl: Option<Vec<u8>>, policy: &SnpPolicy) -> Verdict {
        let ca = ca();
        let certs = CertInput {
            vcek: Some(ca.vcek_der().to_vec()),
            vlek: None,
            chain: Some(ca.chain_pem().into_bytes()),
            crl,
        };
        let root = ca.ark_pem();
        crate::snp::verify_simulated(
            &report(),
            &certs,
            policy,
            UnixTime::now(),
            Some(root.as_bytes()),
        )
    }

    fn verify(crl: Option<Vec<u8>>) -> Verdict {
        verify_policy(crl, &SnpPolicy::default())
    }

    fn revocation(v: &Verdict) -> String {
        match &v.claims {
            Claims::Snp(c) => c.revocation.clone(),
            other => panic!("not SNP claims: {other:?}"),
        }
    }

    fn current(revoked: &[&[u8]]) -> Vec<u8> {
        let now = SystemTime::now();
        ca().crl(revoked, now - HOUR, now + 24 * HOUR)
            .unwrap()
    }

    fn crl_failure(v: &Verdict) -> &crate::verdict::Check {
        assert!(!v.is_trusted(), "{v}");
        let check = v
            .check("tee.crl")
            .expect("a tee.crl check");
        assert!(!check.ok, "{v}");
        assert_eq!(
            v.first_failure()
                .map(|c| c.step.as_str()),
            Some("tee.crl"),
            "{v}"
        );
        check
    }

    #[test]
    fn no_crl_is_not_checked_unless_required() {
        let v = verify(None);
        assert!(v.is_trusted(), "{v}");
        assert!(v.check("tee.crl").is_none());
        assert_eq!(revocation(&v), "not checked: no CRL");

        let required = SnpPolicy {
            require_crl: true,
            ..SnpPolicy::default()
        };
        let v = verify_policy(None, &required);
        let check = crl_failure(&v);
        assert!(check.expected.contains("CRL for Genoa"), "{check:?}");
        assert_eq!(check.presented, "no CRL given");
    }

    #[test]
    fn empty_crl_passes_and_is_claimed() {
        let v = verify(Some(current(&[])));
        assert!(v.is_trusted(), "{v}");
        assert!(v.passed("tee.crl"));
        assert!(
            revocation(&v).starts_with("checked: CRL of "),
            "{}",
            revocation(&v)
        );
        // PEM is accepted too.
        let pem = pem::encode(&pem::Pem::new("X509 CRL", current(&[])));
        assert!(verify(Some(pem.into_bytes())).is_trusted());
        // A CRL listing someone else passes.
        let v = verify(Some(current(&[&[0x12, 0x34]])));
        assert!(v.is_trusted(), "{v}");
    }

    #[test]
    fn revoked_vcek_or_ask_fails() {
        let ca = ca();
        let vcek = ca.vcek_serial().unwrap();
        let v = verify(Some(current(&[&vcek])));
        let check = crl_failure(&v);
        assert!(
            check
                .presented
                .contains("REVOKED: VCEK"),
            "{check:?}"
        );
        assert!(
            check
                .expected
                .contains(&crate::hexfmt::hex(&vcek)),
            "{check:?}"
        );
        assert!(revocation(&v).starts_with("REVOKED"));

        let ask = ca.ask_serial().unwrap();
        let v = verify(Some(current(&[&[1], &ask])));
        let check = crl_failure(&v);
        assert!(check.presented.contains("REVOKED: ASK"), "{check:?}");
    }

    #[test]
    fn tampered_expired_or_forged_crls_fail() {
        // One signature byte flipped (the signature is the last bytes of the DER).
        let mut tampered = current(&[]);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let check = crl_failure(&verify(Some(tampered))).clone();
        assert!(
            check
                .detail
                .contains("signature does not verify"),
            "{check:?}"
        );

        // Expired: nextUpdate in the past.
        let now = SystemTime::now();
        let expired = ca()
            .crl(&[], now - 48 * HOUR, now - HOUR)
            .unwrap();
        let check = crl_failure(&verify(Some(expired))).clone();
        assert!(check.presented.contains("nextUpdate"), "{check:?}");
        // Not yet valid.
        let future = ca()
            .crl(&[], now + HOUR, now + 48 * HOUR)
            .unwrap();
        crl_failure(&verify(Some(future)));

        // Signed by another key (the ASK's) under the ARK's name.
        let forged = ca()
            .crl_signed_by_ask(&[], now - HOUR, now + HOUR)
            .unwrap();
        let check = crl_failure(&verify(Some(forged))).clone();
        assert!(check.detail.contains("does not verify"), "{check:?}");
    }

    #[test]
    fn garbage_and_truncated_crls_fail_cleanly() {
        let good = current(&[]);
        for bad in [
            Vec::new(),
            b"not a CRL".to_vec(),
            good[..good.len() / 2].to_vec(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_vec(),
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec(),
        ] {
            let v = verify(Some(bad.clone()));
            let check = crl_failure(&v);
            assert!(!check.detail.is_empty(), "{check:?}");
            assert_eq!(revocation(&v), "not checked: the CRL was refused");
        }
        // Every truncation and single-byte corruption: no panic, never trusted.
        for cut in (0..good.len()).step_by(7) {
            assert!(!verify(Some(good[..cut].to_vec())).is_trusted());
        }
        for i in (0..good.len()).step_by(13) {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            assert!(!verify(Some(bad)).is_trusted(), "byte {i}");
        }
    }
}

/// AMD's Milan VCEKs carry serial 0 (an INTEGER 0 encoded as one zero byte); a CRL listing
/// serial 0 must match them, and one listing another serial must not.
#[cfg(feature = "sim")]
#[test]
fn serial_zero_matches_on_crls() {
    use std::time::{Duration, SystemTime};
    let Some(dir) = ratls_test::real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let vcek =
        crate::pki::Cert::from_der_or_pem(&std::fs::read(dir.join("vcek_milan.der")).unwrap())
            .unwrap();
    assert_eq!(vcek.serial(), b"");
    assert_eq!(vcek.serial_hex(), "0");
    let ca = crate::attest::sim::SimCa::generate().unwrap();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let zero = crate::pki::Crl::from_der(
        &ca.crl(&[&[]], now - hour, now + hour)
            .unwrap(),
    )
    .unwrap();
    assert!(zero.lists(vcek.serial()));
    assert!(zero.lists(&[0]));
    let other = crate::pki::Crl::from_der(
        &ca.crl(&[&[1]], now - hour, now + hour)
            .unwrap(),
    )
    .unwrap();
    assert!(!other.lists(vcek.serial()));
    assert!(other.lists(&[0, 1]));
}

#[test]
fn builtin_floors_parse_and_name_their_source() {
    let all = floors::all().unwrap();
    for product in Product::ALL {
        assert!(all.iter().any(|f| f.product == product), "{product}");
    }
    let milan = floors::floor(Product::Milan)
        .unwrap()
        .unwrap();
    assert_eq!(
        milan.describe(),
        "AMD floor for Milan from AMD-SB-3019 (2025-02-03)"
    );
    assert!(milan.min_tcb.unwrap().microcode > 115);
    // The simulated TEE's default TCB (Genoa 10/0/23/84) is above Genoa's floor.
    let genoa = floors::floor(Product::Genoa)
        .unwrap()
        .unwrap()
        .min_tcb
        .unwrap();
    assert!(genoa.microcode <= 84 && genoa.snp <= 23 && genoa.bootloader <= 10);
}

#[test]
fn policy_knobs_parse_and_unknown_flags_are_refused() {
    let p: SnpPolicy = serde_json::from_str(
        r#"{"tcb_floor": "none", "check_launch_tcb": false, "require_smt_off": true,
            "require_single_socket": true, "require_ciphertext_hiding": true,
            "platform_info_required": ["ECC_EN", "ALIAS_CHECK_COMPLETE"],
            "platform_info_forbidden": ["RAPL_DIS"], "require_crl": true}"#,
    )
    .unwrap();
    assert_eq!(p.tcb_floor, TcbFloor::None);
    assert!(serde_json::from_str::<SnpPolicy>(r#"{"platform_info_required": ["SMT"]}"#).is_err());
    assert!(serde_json::from_str::<SnpPolicy>(r#"{"tcb_floor": "off"}"#).is_err());
    // check_launch_tcb without any minimum is refused when loaded.
    let err =
        crate::Policy::from_json(r#"{"snp": {"tcb_floor": "none", "check_launch_tcb": true}}"#)
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("check_launch_tcb"),
        "{err}"
    );
    assert!(crate::Policy::from_json(r#"{"snp": {"check_launch_tcb": true}}"#).is_ok());
    assert_eq!(
        PlatformFlag::describe(0x25),
        "SMT_EN|ECC_EN|ALIAS_CHECK_COMPLETE"
    );
    assert_eq!(PlatformFlag::describe(0), "none");
}

/// The platform knobs on the simulated TEE (PLATFORM_INFO 0x25: SMT_EN, ECC_EN,
/// ALIAS_CHECK_COMPLETE; guest policy 0x30000: SMT allowed, not single-socket).
#[cfg(feature = "sim")]
#[test]
fn platform_knobs_on_the_simulated_tee() {
    use crate::attest::sim::{SimCa, SimTee};
    use crate::binding::ReportData;
    use std::sync::Arc;

    let ca = Arc::new(SimCa::generate().unwrap());
    let certs = CertInput {
        vcek: Some(ca.vcek_der().to_vec()),
        vlek: None,
        chain: Some(ca.chain_pem().into_bytes()),
        crl: None,
    };
    let root = ca.ark_pem();
    let report = |policy: u64| {
        SimTee::new(ca.clone())
            .unwrap()
            .with_policy(policy)
            .report(&ReportData::from_raw_for_tests([1; 64]))
            .unwrap()
    };
    let verify = |raw: &[u8], policy: &SnpPolicy| {
        crate::snp::verify_simulated(
            raw,
            &certs,
            policy,
            crate::time::UnixTime::now(),
            Some(root.as_bytes()),
        )
    };
    let default = report(SimTee::DEFAULT_POLICY);
    let v = verify(&default, &SnpPolicy::default());
    assert!(v.is_trusted(), "{v}");
    assert!(v
        .check("tee.tcb")
        .unwrap()
        .expected
        .contains("AMD floor for Genoa"));

    let strict = SnpPolicy {
        check_launch_tcb: true,
        require_smt_off: true,
        require_single_socket: true,
        require_ciphertext_hiding: true,
        platform_info_required: vec![PlatformFlag::ECC_EN, PlatformFlag::TSME_EN],
        platform_info_forbidden: vec![PlatformFlag::SMT_EN],
        ..SnpPolicy::default()
    };
    let v = verify(&default, &strict);
    let failed: Vec<&str> = v
        .failures()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "tee.policy.smt",
            "tee.policy.single_socket",
            "tee.policy.ciphertext_hiding",
            "tee.policy.platform_info"
        ],
        "{v}"
    );
    assert!(v.passed("tee.policy.launch_tcb"));
    let info = v
        .check("tee.policy.platform_info")
        .unwrap();
    assert!(info.detail.contains("missing TSME_EN"), "{info:?}");
    assert!(
        info.detail
            .contains("forbidden but set SMT_EN"),
        "{info:?}"
    );
    assert!(info.presented.contains("0x25"), "{info:?}");

    // A guest policy with SMT forbidden (bit 16 clear), single socket (20) and ciphertext
    // hiding (24) satisfies those three.
    let hardened = report((SimTee::DEFAULT_POLICY & !(1 << 16)) | (1 << 20) | (1 << 24));
    let relaxed = SnpPolicy {
        platform_info_required: vec![PlatformFlag::ECC_EN],
        platform_info_forbidden: vec![PlatformFlag::RAPL_DIS],
        ..strict
    };
    let v = verify(&hardened, &relaxed);
    assert!(v.is_trusted(), "{v}");
}
