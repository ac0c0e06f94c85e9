use super::chain::decode_pem_chain;
use super::quote::{MAX_QUOTE_LEN, MAX_SIGNATURE_DATA_LEN};
use super::verify::{check_tcb_status, dcap_error_step, policy_value};
use super::*;
use crate::time::UnixTime;
use crate::verdict::Claims;
use crate::verdict::Step;

/// A hand-built quote whose every field holds a recognisable value. Signatures are junk: these
/// tests are about the layout.
#[derive(Clone)]
struct Builder {
    version: u16,
    att_key_type: u16,
    tee_type: u32,
    /// v5 body descriptor: (type, size).
    descriptor: Option<(u16, u32)>,
    body_len: usize,
    td_attributes: [u8; 8],
    cert_type: u16,
    inner_type: u16,
    auth_data: Vec<u8>,
    pem: Vec<u8>,
    /// Junk appended inside the QE certification data.
    inner_junk: usize,
    trailing: usize,
}

impl Builder {
    fn v4() -> Self {
        Self {
            version: 4,
            att_key_type: 2,
            tee_type: 0x81,
            descriptor: None,
            body_len: 584,
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            cert_type: 6,
            inner_type: 5,
            auth_data: (0..32).collect(),
            pem: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\0".to_vec(),
            inner_junk: 0,
            trailing: 0,
        }
    }

    fn v5_td15() -> Self {
        Self {
            version: 5,
            descriptor: Some((3, 648)),
            body_len: 648,
            ..Self::v4()
        }
    }

    fn v5_td10() -> Self {
        Self {
            version: 5,
            descriptor: Some((2, 584)),
            ..Self::v4()
        }
    }

    /// Body bytes: field `i` of the TD report filled with `i + 1` (td_attributes as set).
    fn body(&self) -> Vec<u8> {
        let sizes: &[usize] = &[
            16, 48, 48, 8, 8, 8, 48, 48, 48, 48, 48, 48, 48, 48, 64, 16, 48,
        ];
        let mut body = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            if i == 4 {
                body.extend_from_slice(&self.td_attributes);
            } else {
                body.extend(std::iter::repeat_n(i as u8 + 1, *size));
            }
        }
        body.truncate(self.body_len);
        body
    }

    fn build(&self) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&self.version.to_le_bytes());
        q.extend_from_slice(&self.att_key_type.to_le_bytes());
        q.extend_from_slice(&self.tee_type.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&[0x93; 16]);
        q.extend_from_slice(&[0xee; 20]);
        if let Some((ty, size)) = self.descriptor {
            q.extend_from_slice(&ty.to_le_bytes());
            q.extend_from_slice(&size.to_le_bytes());
        }
        q.extend(self.body());

        let mut qe = Vec::new();
        qe.extend(std::iter::repeat_n(0x51, 384));
        qe.extend(std::iter::repeat_n(0x52, 64));
        qe.extend_from_slice(&(self.auth_data.len() as u16).to_le_bytes());
        qe.extend_from_slice(&self.auth_data);
        qe.extend_from_slice(&self.inner_type.to_le_bytes());
        qe.extend_from_slice(&(self.pem.len() as u32).to_le_bytes());
        qe.extend_from_slice(&self.pem);
        qe.extend(std::iter::repeat_n(0xab, self.inner_junk));

        let mut sig = Vec::new();
        sig.extend(std::iter::repeat_n(0x61, 64));
        sig.extend(std::iter::repeat_n(0x62, 64));
        sig.extend_from_slice(&self.cert_type.to_le_bytes());
        sig.extend_from_slice(&(qe.len() as u32).to_le_bytes());
        sig.extend(qe);

        q.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        q.extend(sig);
        q.extend(std::iter::repeat_n(0, self.trailing));
        q
    }
}

fn unsupported_field(err: &ParseError) -> &'static str {
    match err {
        ParseError::Unsupported { field, .. } => field,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn parses_a_v4_quote_field_by_field() {
    let bytes = Builder::v4().build();
    let q = Quote::parse(&bytes).unwrap();
    assert_eq!(q.header.version, 4);
    assert_eq!(q.header.qe_vendor_id, [0x93; 16]);
    assert_eq!(q.header.user_data, [0xee; 20]);
    assert_eq!(q.body_type, BodyType::Td10);
    assert_eq!(q.signed.len(), 48 + 584);
    let r = &q.report;
    assert_eq!(r.tee_tcb_svn, [1; 16]);
    assert_eq!(r.mr_seam, [2; 48]);
    assert_eq!(r.mr_signer_seam, [3; 48]);
    assert_eq!(r.seam_attributes, [4; 8]);
    assert_eq!(r.td_attributes, [0, 0, 0, 0x10, 0, 0, 0, 0]);
    assert_eq!(r.xfam, [6; 8]);
    assert_eq!(r.mr_td, [7; 48]);
    assert_eq!(r.mr_config_id, [8; 48]);
    assert_eq!(r.mr_owner, [9; 48]);
    assert_eq!(r.mr_owner_config, [10; 48]);
    assert_eq!(r.rtmr, [[11; 48], [12; 48], [13; 48], [14; 48]]);
    assert_eq!(r.report_data, [15; 64]);
    assert!(r.td15.is_none());
    assert!(!r.debug());
    let s = &q.signature_data;
    assert_eq!(s.signature, [0x61; 64]);
    assert_eq!(s.attestation_key, [0x62; 64]);
    assert_eq!(s.qe_report.raw, &[0x51; 384][..]);
    assert_eq!(s.qe_report.report_data, [0x51; 64]);
    assert_eq!(s.qe_report.isv_svn, 0x5151);
    assert_eq!(s.qe_report_signature, [0x52; 64]);
    assert_eq!(s.qe_auth_data, (0..32).collect::<Vec<u8>>().as_slice());
    assert!(s.pck_chain_pem.ends_with(b"-----\n\0"));
    assert_eq!(q.trailing_bytes, 0);
}

#[test]
fn parses_v5_td15_and_td10_bodies() {
    let bytes = Builder::v5_td15().build();
    let q = Quote::parse(&bytes).unwrap();
    assert_eq!(q.body_type, BodyType::Td15);
    assert_eq!(q.signed.len(), 48 + 6 + 648);
    let td15 = q.report.td15.as_ref().unwrap();
    assert_eq!(td15.tee_tcb_svn2, [16; 16]);
    assert_eq!(td15.mr_service_td, [17; 48]);

    let bytes = Builder::v5_td10().build();
    let q = Quote::parse(&bytes).unwrap();
    assert_eq!(q.body_type, BodyType::Td10);
    assert_eq!(q.signed.len(), 48 + 6 + 584);
    assert!(q.report.td15.is_none());
}

#[test]
fn counts_trailing_bytes_after_the_signature_data() {
    let bytes = Builder {
        trailing: 70,
        ..Builder::v4()
    }
    .build();
    assert_eq!(
        Quote::parse(&bytes)
            .unwrap()
            .trailing_bytes,
        70
    );
    assert_eq!(inspect(&bytes).unwrap().trailing_bytes, 70);
}

#[test]
fn rejects_trailing_bytes_inside_the_signature_data() {
    let bytes = Builder {
        inner_junk: 3,
        ..Builder::v4()
    }
    .build();
    assert!(matches!(
        Quote::parse(&bytes),
        Err(ParseError::TrailingBytes { count: 3, .. })
    ));
}

#[test]
fn rejects_each_unsupported_value() {
    for version in [0u16, 1, 3, 6, 0xffff] {
        let b = Builder {
            version,
            ..Builder::v4()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "version"
        );
    }
    for att_key_type in [0u16, 1, 3] {
        let b = Builder {
            att_key_type,
            ..Builder::v4()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "att_key_type"
        );
    }
    for tee_type in [0u32, 0x80, 0x82] {
        let b = Builder {
            tee_type,
            ..Builder::v4()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "tee_type"
        );
    }
    for body_type in [0u16, 1, 4, 0xffff] {
        let b = Builder {
            descriptor: Some((body_type, 648)),
            ..Builder::v5_td15()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "body_type"
        );
    }
    for cert_type in [1u16, 5, 7] {
        let b = Builder {
            cert_type,
            ..Builder::v4()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "certification_data_type"
        );
    }
    for inner_type in [1u16, 3, 4, 6] {
        let b = Builder {
            inner_type,
            ..Builder::v4()
        };
        assert_eq!(
            unsupported_field(&Quote::parse(&b.build()).unwrap_err()),
            "pck_certification_data_type"
        );
    }
}

#[test]
fn rejects_a_body_size_that_does_not_match_the_body_type() {
    for (ty, size) in [(3u16, 584u32), (2, 648), (3, 0), (2, u32::MAX)] {
        let b = Builder {
            descriptor: Some((ty, size)),
            ..Builder::v5_td15()
        };
        assert!(
            matches!(
                Quote::parse(&b.build()),
                Err(ParseError::InvalidValue {
                    field: "body_size",
                    ..
                })
            ),
            "type {ty} size {size}"
        );
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    for b in [Builder::v4(), Builder::v5_td15()] {
        let bytes = b.build();
        for cut in 0..bytes.len() {
            let err = Quote::parse(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ParseError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn caps_sizes() {
    // Signature data length beyond the cap.
    let mut bytes = Builder::v4().build();
    let at = 48 + 584;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Quote::parse(&bytes),
        Err(ParseError::TooLarge {
            field: "signature_data",
            limit: MAX_SIGNATURE_DATA_LEN,
            ..
        })
    ));
    // A whole quote beyond the cap.
    let huge = Builder {
        trailing: MAX_QUOTE_LEN,
        ..Builder::v4()
    }
    .build();
    assert!(matches!(
        Quote::parse(&huge),
        Err(ParseError::TooLarge { field: "quote", .. })
    ));
    assert!(inspect(&huge).is_err());
}

#[test]
fn inspect_reports_the_claims_in_lower_case_hex() {
    let bytes = Builder {
        td_attributes: [0x01, 0, 0, 0x10, 0, 0, 0, 0],
        ..Builder::v5_td15()
    }
    .build();
    let claims = inspect(&bytes).unwrap();
    assert_eq!(claims.version, 5);
    assert_eq!(claims.body_type, "td1.5");
    assert_eq!(claims.mr_td, "07".repeat(48));
    assert_eq!(claims.rtmr0, "0b".repeat(48));
    assert_eq!(claims.rtmr3, "0e".repeat(48));
    assert_eq!(claims.report_data, "0f".repeat(64));
    assert_eq!(claims.td_attributes, "0x10000001");
    assert!(claims.debug);
    assert_eq!(claims.xfam, "0x606060606060606");
    assert_eq!(
        claims.tee_tcb_svn2.as_deref(),
        Some("10".repeat(16).as_str())
    );
    assert_eq!(
        claims.mr_service_td.as_deref(),
        Some("11".repeat(48).as_str())
    );
    assert_eq!(claims.tcb_status, None);
    assert!(claims.advisory_ids.is_empty());
    // The junk PEM has no parsable leaf.
    assert_eq!(claims.fmspc, None);
}

#[test]
fn a_synthetic_quote_is_rejected_at_every_crypto_step() {
    let bytes = Builder {
        td_attributes: [0x01, 0, 0, 0x10, 0, 0, 0, 0],
        ..Builder::v4()
    }
    .build();
    let v = verify_bytes(
        &bytes,
        b"{}",
        &TdxPolicy::default(),
        UnixTime::from_secs(1_750_000_000),
    );
    assert!(!v.is_trusted());
    assert!(v.passed("tee.parse"));
    for step in [
        "tee.collateral.parse",
        "tee.pck_chain",
        "tee.qe_report.signature",
        "tee.qe_report.binding",
        "tee.signature",
        "tee.collateral",
        "tee.tcb",
        "tee.policy.debug",
    ] {
        let check = v
            .check(step)
            .unwrap_or_else(|| panic!("{step} missing:\n{v}"));
        assert!(!check.ok, "{step} passed:\n{v}");
    }
    assert!(matches!(v.claims, Claims::Tdx(_)));
}

#[test]
fn a_parse_failure_stops_at_tee_parse() {
    let v = verify_bytes(
        b"nope",
        b"{}",
        &TdxPolicy::default(),
        UnixTime::from_secs(0),
    );
    assert!(!v.is_trusted());
    assert_eq!(v.checks.len(), 1);
    assert_eq!(v.first_failure().unwrap().step, "tee.parse");
}

#[test]
fn policy_defaults_are_strict_and_unknown_keys_are_refused() {
    let policy = TdxPolicy::default();
    assert_eq!(policy.allowed_tcb_statuses, vec!["UpToDate".to_owned()]);
    assert!(!policy.allow_debug);
    let parsed: TdxPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, policy);
    let parsed: TdxPolicy = serde_json::from_str(
        r#"{"allowed_tcb_statuses":["UpToDate","SWHardeningNeeded"],"mr_td":"00"}"#,
    )
    .unwrap();
    assert_eq!(parsed.allowed_tcb_statuses.len(), 2);
    assert_eq!(parsed.mr_td.as_deref(), Some("00"));
    assert!(serde_json::from_str::<TdxPolicy>(r#"{"mrtd":"00"}"#).is_err());
    let aggregate = crate::Policy::from_json(r#"{"tdx":{"allow_debug":true}}"#).unwrap();
    assert!(aggregate.tdx.allow_debug);
}

#[test]
fn policy_values_are_compared_and_bad_hex_names_the_field() {
    let actual = [0xabu8; 48];
    assert!(policy_value(Step::TEE_POLICY_MR_TD, "mr_td", None, &actual).is_none());
    let ok = policy_value(
        Step::TEE_POLICY_MR_TD,
        "mr_td",
        Some(&"AB".repeat(48)),
        &actual,
    )
    .unwrap();
    assert!(ok.ok);
    assert_eq!(ok.expected, "ab".repeat(48));
    let wrong = policy_value(
        Step::TEE_POLICY_MR_TD,
        "mr_td",
        Some(&"ac".repeat(48)),
        &actual,
    )
    .unwrap();
    assert!(!wrong.ok);
    assert_eq!(wrong.presented, "ab".repeat(48));
    for bad in ["zz", "abab", &"ab".repeat(49)] {
        let check = policy_value(Step::TEE_POLICY_RTMR1, "rtmr1", Some(bad), &actual).unwrap();
        assert!(!check.ok);
        assert!(check.detail.contains("rtmr1"), "{check}");
    }
}

#[test]
fn tcb_status_is_checked_by_name() {
    let mut policy = TdxPolicy::default();
    assert!(check_tcb_status(&policy, "UpToDate", &[]).ok);
    assert!(!check_tcb_status(&policy, "SWHardeningNeeded", &[]).ok);
    policy.allowed_tcb_statuses = vec!["UpToDate".into(), "SWHardeningNeeded".into()];
    let check = check_tcb_status(&policy, "SWHardeningNeeded", &["INTEL-SA-00615".into()]);
    assert!(check.ok);
    assert!(check.detail.contains("INTEL-SA-00615"));
    policy.allowed_tcb_statuses = vec!["UpToDate".into(), "UptoDate".into()];
    let check = check_tcb_status(&policy, "UpToDate", &[]);
    assert!(!check.ok);
    assert!(check.detail.contains("UptoDate"));
    policy.allowed_tcb_statuses = Vec::new();
    assert!(!check_tcb_status(&policy, "UpToDate", &[]).ok);
}

#[test]
fn dcap_errors_map_to_the_most_specific_step() {
    let cases = [
        ("No matching TCB level found", "tee.tcb"),
        (
            "Failed to evaluate the current TDX TCB (TEE_TCB_SVN2): No matching TCB level found",
            "tee.tcb",
        ),
        ("TCB status is invalid: Revoked", "tee.tcb"),
        ("TCBInfo expired", "tee.collateral.tcb_info"),
        (
            "Signature is invalid for tcb_info in quote_collateral",
            "tee.collateral.tcb_info",
        ),
        ("Fmspc mismatch", "tee.collateral.tcb_info"),
        ("QE Identity expired", "tee.collateral.qe_identity"),
        (
            "QE MRSIGNER mismatch: expected A, got B",
            "tee.collateral.qe_identity",
        ),
        (
            "QE report validation failed: Debug mode is enabled",
            "tee.collateral.qe_identity",
        ),
        ("Failed to parse PCK CRL: BadDer", "tee.collateral.crl"),
        (
            "Failed to verify certificate chain: CertRevoked",
            "tee.collateral.crl",
        ),
        (
            "CrlExpired { time: 1, next_update: 0 }",
            "tee.collateral.crl",
        ),
        ("SEPT_VE_DISABLE is not enabled", "tee.td_attributes"),
        ("ISV enclave report signature is invalid", "tee.collateral"),
        (
            "Failed to verify certificate chain: CertExpired",
            "tee.collateral",
        ),
        ("", "tee.collateral"),
    ];
    for (message, step) in cases {
        assert_eq!(dcap_error_step(message), step, "{message}");
    }
}

#[test]
fn pck_chain_pem_must_be_canonical() {
    let certs: Vec<Vec<u8>> = (1..=3u8)
        .map(|i| vec![i; 100 + usize::from(i)])
        .collect();
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let canonical: String = certs
        .iter()
        .map(|c| pem::encode_config(&pem::Pem::new("CERTIFICATE", c.clone()), config))
        .collect();
    assert_eq!(decode_pem_chain(canonical.as_bytes()).unwrap(), certs);
    let with_nul = format!("{canonical}\0");
    assert_eq!(decode_pem_chain(with_nul.as_bytes()).unwrap(), certs);

    let variants = [
        format!("{canonical}\0\0"),
        format!("{canonical}\n"),
        format!("junk{canonical}"),
        canonical.replace('\n', "\r\n"),
        canonical.replacen("-----\n-----", "-----\n\n-----", 1),
        canonical.replacen('\n', "\x0b", 2),
        canonical.replacen("CERTIFICATE", "X509 CERTIFICATE", 2),
    ];
    for v in &variants {
        assert!(decode_pem_chain(v.as_bytes()).is_err(), "{v:?}");
    }
    let two: String = certs[..2]
        .iter()
        .map(|c| pem::encode_config(&pem::Pem::new("CERTIFICATE", c.clone()), config))
        .collect();
    assert_eq!(
        decode_pem_chain(two.as_bytes()),
        Err(ChainError::CertCount(2))
    );
}

#[test]
fn body_type_names() {
    assert_eq!(BodyType::Td10.to_string(), "td1.0");
    assert_eq!(BodyType::Td15.name(), "td1.5");
    assert_eq!(BodyType::Td15.body_len(), 648);
}
