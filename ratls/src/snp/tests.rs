use super::*;

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
