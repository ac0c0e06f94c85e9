//! Unit tests on synthetic HCL reports (TDX variant: a TD report has no signature to forge); the
//! real Genoa sample is exercised in `tests/real_azure.rs`.

use super::report::{HEADER_LEN, RUNTIME_HEADER_OFFSET, VAR_DATA_OFFSET};
use super::*;
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::verdict::{Claims, Platform};

/// A 2048-bit modulus (top bit set) and its base64url form.
fn modulus(seed: u8) -> Vec<u8> {
    let mut n: Vec<u8> = (0..256u16)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
        })
        .collect();
    n[0] |= 0x80;
    n
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn runtime_json(extra_vm_config: &str) -> String {
    format!(
        r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"{}"}},{{"kid":"HCLEkPub","key_ops":["encrypt"],"kty":"RSA","e":"AQAB","n":"{}"}}],"vm-configuration":{{"console-enabled":false,"secure-boot":true,"tpm-enabled":true,"vmUniqueId":"11111111-2222-3333-4444-555555555555"{extra_vm_config}}},"user-data":"00"}}"#,
        b64url(&modulus(1)),
        b64url(&modulus(2))
    )
}

/// A TDREPORT_STRUCT with the given report_data and recognisable measurements.
fn td_report(report_data: &[u8; 64]) -> Vec<u8> {
    let mut td = vec![0u8; 1024];
    td[0] = 0x81;
    td[16..32].fill(0x11); // cpu_svn
    td[128..192].copy_from_slice(report_data);
    td[256 + 24..256 + 72].fill(0x5e); // mr_seam
    td[512 + 16..512 + 64].fill(0x7d); // mr_td
    td
}

/// An HCL report over a TD report whose report_data is `H(var_data)` (hash type `hash_type`).
fn tdx_hcl(var: &[u8], hash_type: u32, padding: usize) -> Vec<u8> {
    let hash = match hash_type {
        1 => HashAlg::Sha256,
        2 => HashAlg::Sha384,
        _ => HashAlg::Sha512,
    };
    let mut report_data = [0u8; 64];
    for (d, s) in report_data
        .iter_mut()
        .zip(hash.digest(var))
    {
        *d = s;
    }
    let mut out = Vec::new();
    let var_len = u32::try_from(var.len()).unwrap();
    out.extend_from_slice(b"HCLA");
    for v in [2u32, 0x4D4 + var_len, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend(td_report(&report_data));
    out.resize(RUNTIME_HEADER_OFFSET, 0);
    for v in [20 + var_len, 1, 4, hash_type, var_len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(var);
    out.resize(out.len() + padding, 0);
    out
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn field_of(e: &ParseError) -> &'static str {
    match e {
        ParseError::InvalidValue { field, .. }
        | ParseError::Unsupported { field, .. }
        | ParseError::TooLarge { field, .. }
        | ParseError::Truncated { field, .. } => field,
        ParseError::TrailingBytes { .. } => "trailing",
    }
}

#[test]
fn a_synthetic_tdx_report_parses() {
    let json = runtime_json("");
    let bytes = tdx_hcl(json.as_bytes(), 1, 100);
    let r = HclReport::parse(&bytes).unwrap();
    assert_eq!(r.report_type(), ReportType::Tdx);
    assert_eq!(r.var_data, json.as_bytes());
    assert_eq!(r.padding, 100);
    assert_eq!(
        usize::try_from(r.header.report_size).unwrap(),
        VAR_DATA_OFFSET + json.len()
    );
    let HwReport::Tdx(td) = &r.hw_report else {
        panic!("not TDX")
    };
    assert_eq!(td.mr_td, [0x7d; 48]);
    assert_eq!(td.mr_seam, [0x5e; 48]);
    assert_eq!(td.cpu_svn, [0x11; 16]);
    assert!(r.runtime_data_bound());
    assert!(looks_like_hcl(&bytes));
    assert!(!looks_like_hcl(b"HCL"));
}

#[test]
fn every_hash_type_fills_its_part_of_report_data() {
    let json = runtime_json("");
    for (hash_type, len) in [(1, 32), (2, 48), (3, 64)] {
        let bytes = tdx_hcl(json.as_bytes(), hash_type, 0);
        let r = HclReport::parse(&bytes).unwrap();
        let expected = r.expected_report_data();
        assert_eq!(r.var_data_digest().len(), len);
        assert_eq!(&expected[..len], r.var_data_digest().as_slice());
        assert!(expected[len..].iter().all(|b| *b == 0));
        assert!(r.runtime_data_bound(), "hash type {hash_type}");
    }
    // SHA-256 of the runtime data with a non-zero tail is not bound.
    let mut bytes = tdx_hcl(json.as_bytes(), 1, 0);
    bytes[HEADER_LEN + 128 + 40] = 1;
    assert!(!HclReport::parse(&bytes)
        .unwrap()
        .runtime_data_bound());
}

#[test]
fn malformed_headers_name_the_field() {
    let json = runtime_json("");
    let good = tdx_hcl(json.as_bytes(), 1, 16);
    let var_len = u32::try_from(json.len()).unwrap();
    type Mutate = fn(&mut Vec<u8>, u32);
    let cases: [(&str, Mutate); 16] = [
        ("signature", |b, _| b[3] = b'B'),
        ("version", |b, _| put_u32(b, 4, 1)),
        ("report_size", |b, n| put_u32(b, 8, 0x4D4 + n + 1)),
        ("request_type", |b, _| put_u32(b, 12, 1)),
        ("status", |b, _| put_u32(b, 16, 5)),
        ("reserved", |b, _| b[31] = 1),
        ("runtime_data.data_size", |b, n| put_u32(b, 0x4C0, n)),
        ("runtime_data.version", |b, _| put_u32(b, 0x4C4, 3)),
        ("runtime_data.report_type", |b, _| put_u32(b, 0x4C8, 3)),
        ("runtime_data.hash_type", |b, _| put_u32(b, 0x4CC, 0)),
        ("runtime_data.var_data_size", |b, _| {
            put_u32(b, 0x4D0, u32::MAX)
        }),
        ("padding", |b, _| *b.last_mut().unwrap() = 1),
        ("hw_report.padding", |b, _| b[HEADER_LEN + 1100] = 1),
        ("report_type", |b, _| b[HEADER_LEN] = 0x00),
        ("reserved1", |b, _| b[HEADER_LEN + 5] = 1),
        ("td_info.reserved", |b, _| b[HEADER_LEN + 1023] = 1),
    ];
    for (field, mutate) in cases {
        let mut bytes = good.clone();
        mutate(&mut bytes, var_len);
        let e = HclReport::parse(&bytes).unwrap_err();
        assert_eq!(field_of(&e), field, "{e}");
    }
    // Truncated anywhere before the end of the runtime data.
    for cut in [
        0,
        3,
        31,
        32,
        1000,
        RUNTIME_HEADER_OFFSET + 10,
        good.len() - 17,
    ] {
        let e = HclReport::parse(&good[..cut]).unwrap_err();
        assert!(matches!(e, ParseError::Truncated { .. }), "{cut}: {e}");
    }
    // Too large as a whole.
    let mut huge = good.clone();
    huge.resize(MAX_HCL_LEN + 1, 0);
    assert!(matches!(
        HclReport::parse(&huge),
        Err(ParseError::TooLarge { .. })
    ));
    // A var_data_size that fits the cap but not the input.
    let mut bytes = good.clone();
    put_u32(&mut bytes, 0x4D0, var_len + 1000);
    put_u32(&mut bytes, 0x4C0, 20 + var_len + 1000);
    put_u32(&mut bytes, 8, 0x4D4 + var_len + 1000);
    assert!(matches!(
        HclReport::parse(&bytes),
        Err(ParseError::Truncated {
            field: "var_data",
            ..
        })
    ));
}

#[test]
fn runtime_data_requires_what_it_uses_and_tolerates_the_rest() {
    let data = RuntimeData::parse(runtime_json(r#","new-member":{"x":[1,2]}"#).as_bytes()).unwrap();
    assert_eq!(data.kids(), ["HCLAkPub", "HCLEkPub"]);
    assert_eq!(data.vm_configuration_members.len(), 5);
    assert_eq!(
        data.vm_configuration_members["new-member"],
        serde_json::json!({"x": [1, 2]})
    );
    assert_eq!(data.vm_configuration.console_enabled, Some(false));
    assert_eq!(data.vm_configuration.tpm_persisted, None);
    let ak = data.ak_public().unwrap();
    assert_eq!(ak.type_name(), "rsa-2048");
    let claims = RuntimeClaims::from_runtime_data(&data);
    assert_eq!(
        claims.ak_fingerprint.unwrap(),
        hex(HashAlg::Sha256.digest(&modulus(1)))
    );
    // Unknown top-level members too.
    let text = runtime_json("").replacen('{', r#"{"future":true,"#, 1);
    assert!(RuntimeData::parse(text.as_bytes()).is_ok());

    let refuse = |text: String, why: &str| {
        let e = RuntimeData::parse(text.as_bytes())
            .and_then(|d| d.ak_public().map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    };
    refuse(
        runtime_json("").replace("\"vmUniqueId\"", "\"vmId\""),
        "vmUniqueId",
    );
    refuse(
        runtime_json("").replace("\"secure-boot\":true,", ""),
        "secure-boot",
    );
    refuse(runtime_json("").replace("\"keys\"", "\"kees\""), "keys");
    refuse(runtime_json("").replace("HCLAkPub", "HCLOther"), "HCLAkPub");
    refuse(
        runtime_json("").replace("HCLEkPub", "HCLAkPub"),
        "exactly one",
    );
    refuse(
        runtime_json(r#","secure-boot":false"#),
        "duplicate field `secure-boot`",
    );
    refuse(runtime_json("").replacen("\"RSA\"", "\"EC\"", 1), "RSA");
    refuse(
        runtime_json("").replacen("\"e\":\"AQAB\",", "", 1),
        "missing",
    );
    refuse(
        runtime_json("").replacen("AQAB", "AQAB=", 1),
        "unpadded base64url",
    );
    refuse(format!("{} x", runtime_json("")), "trailing");
    refuse("\u{feff}{}".into(), "expected");
    refuse("[]".into(), "a JSON object");
    refuse(
        r#"{"keys":[["HCLAkPub","RSA"]],"vm-configuration":{}}"#.into(),
        "JWKs",
    );
    refuse(
        r#"{"keys":[],"vm-configuration":[true,true,"x"]}"#.into(),
        "a JSON object",
    );
}

#[test]
fn base64url_is_strict() {
    assert_eq!(base64url_decode("AQAB", "e").unwrap(), [1, 0, 1]);
    assert_eq!(base64url_decode("", "e").unwrap(), Vec::<u8>::new());
    assert_eq!(base64url_decode("-_8", "e").unwrap(), [0xfb, 0xff]);
    for n in [0usize, 1, 2, 3, 4, 255, 256, 257] {
        let bytes: Vec<u8> = (0..n)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        assert_eq!(base64url_decode(&b64url(&bytes), "n").unwrap(), bytes);
    }
    for bad in ["A", "AQAB=", "AQ+B", "AQ/B", "AQ B", "AB", "AQAC_"] {
        assert!(base64url_decode(bad, "n").is_err(), "{bad}");
    }
    // Non-canonical: unused bits set ("AR" and "AQ" would both decode to [1]).
    assert!(base64url_decode("AR", "n").is_err());
    assert_eq!(base64url_decode("AQ", "n").unwrap(), [1]);
}

#[test]
fn tdx_without_a_quote_fails_closed_at_td_quote() {
    let json = runtime_json("");
    let bytes = tdx_hcl(json.as_bytes(), 1, 0);
    let v = verify_tdx(&bytes, None, None, &Policy::default(), now(), None);
    assert_eq!(v.platform, Platform::AzureTdx);
    assert!(!v.is_trusted());
    let failed: Vec<&str> = v
        .failures()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(failed, ["azure.td_quote"]);
    for step in [
        "azure.parse",
        "azure.runtime_data",
        "azure.ak",
        "azure.policy.secure_boot",
    ] {
        assert!(v.passed(step), "{step}: {v}");
    }
    // The AK would be vouched for by the TD report's report_data, if the report were trusted.
    let (_, ak) = verify_tdx_with_ak(&bytes, None, None, &Policy::default(), now(), None);
    let ak = ak.unwrap();
    assert!(same_rsa_key(
        &ak,
        &crate::tpm::Public::from_rsa_components(&modulus(1), &[1, 0, 1]).unwrap()
    ));

    // A quote that does not parse: the TDX steps fail, azure.td_report is not run.
    let td = TdQuote {
        quote: b"not a quote",
        collateral: None,
    };
    let v = verify_tdx(&bytes, Some(&td), None, &Policy::default(), now(), None);
    assert!(v
        .check("azure.td_report")
        .is_some_and(|c| !c.ok && c.detail.starts_with("not run")));
    assert!(!v.passed("tee.collateral.parse"));

    // The SNP entry point refuses a TDX report.
    let v = verify_snp(
        &bytes,
        &crate::snp::CertInput::default(),
        None,
        &Policy::default(),
        now(),
        None,
    );
    assert_eq!(v.checks.len(), 1);
    assert!(!v.passed("azure.parse"));
    assert!(v.checks[0].detail.contains("azure-tdx"));
}

#[test]
fn secure_boot_off_is_refused_unless_allowed() {
    let json = runtime_json("").replace("\"secure-boot\":true", "\"secure-boot\":false");
    let bytes = tdx_hcl(json.as_bytes(), 2, 0);
    let v = verify_tdx(&bytes, None, None, &Policy::default(), now(), None);
    assert!(!v.passed("azure.policy.secure_boot"));
    let lenient = Policy {
        azure: AzurePolicy {
            allow_secure_boot_off: true,
            vm_unique_id: None,
        },
        ..Policy::default()
    };
    let v = verify_tdx(&bytes, None, None, &lenient, now(), None);
    assert!(v.passed("azure.policy.secure_boot"));
}

#[test]
fn unbound_runtime_data_is_neither_used_nor_claimed() {
    let json = runtime_json("");
    let mut bytes = tdx_hcl(json.as_bytes(), 1, 0);
    // Another vmUniqueId of the same length: valid JSON, no longer hashed into report_data.
    let at = VAR_DATA_OFFSET + json.find("11111111").unwrap();
    bytes[at] = b'2';
    let nonce = [7u8; 32];
    let quote = VtpmQuote {
        attest: &[],
        signature: &[],
        pcrs: None,
    };
    let (v, ak) = verify_tdx_with_ak(
        &bytes,
        None,
        Some(&quote),
        &Policy::default(),
        now(),
        Some(&nonce),
    );
    assert!(ak.is_none());
    for step in [
        "azure.runtime_data",
        "azure.ak",
        "azure.policy.secure_boot",
        "tpm.signature",
    ] {
        assert!(v.check(step).is_some_and(|c| !c.ok), "{step}: {v}");
    }
    let Claims::Azure(c) = &v.claims else {
        panic!("no Azure claims")
    };
    assert!(c.runtime_data.is_none());
    // inspect reports what the (unverified) report says.
    let c = inspect(&bytes).unwrap();
    assert_eq!(
        c.runtime_data.unwrap().vm_unique_id,
        "21111111-2222-3333-4444-555555555555"
    );
}

#[test]
fn same_rsa_key_ignores_the_encoding() {
    let n = modulus(1);
    let a = crate::tpm::Public::from_rsa_components(&n, &[1, 0, 1]).unwrap();
    let mut padded = vec![0u8];
    padded.extend_from_slice(&n);
    let b = crate::tpm::Public::from_rsa_components(&padded, &[0, 1, 0, 1]).unwrap();
    assert!(same_rsa_key(&a, &b));
    let c = crate::tpm::Public::from_rsa_components(&n, &[3]).unwrap();
    assert!(!same_rsa_key(&a, &c));
    let d = crate::tpm::Public::from_rsa_components(&modulus(2), &[1, 0, 1]).unwrap();
    assert!(!same_rsa_key(&a, &d));
}

fn now() -> UnixTime {
    UnixTime::from_secs(1_750_000_000)
}

use crate::hexfmt::hex;
use crate::policy::Policy;
use crate::time::UnixTime;
