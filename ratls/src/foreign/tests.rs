//! Tests of foreign evidence: certificates built at test time with rcgen carrying real evidence
//! (SEV-SNP, TDX), simulated evidence (feature `sim`) and synthetic SGX quotes, in Cosmian's and
//! the TCG DICE layouts.

use ciborium::Value;
use rcgen::{date_time_ymd, CertificateParams, CustomExtension, DnType, KeyPair, PublicKeyData};

use super::*;
use crate::snp::REPORT_LEN;

const SEV: &[u64] = &[1, 2, 840, 113_741, 1337, 7];
const SGX: &[u64] = &[1, 2, 840, 113_741, 1337, 6];
const TDX: &[u64] = &[1, 2, 840, 113_741, 1337, 8];
const DICE: &[u64] = &[2, 23, 133, 5, 4, 9];

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ext(oid: &[u64], value: &[u8], critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, value.to_vec());
    ext.set_criticality(critical);
    ext
}

/// A self-signed certificate for `key`, valid 2020..2040, carrying `exts`.
fn cert(key: &KeyPair, exts: Vec<CustomExtension>) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["attested.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "foreign tests");
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params.custom_extensions = exts;
    params
        .self_signed(key)
        .unwrap()
        .der()
        .to_vec()
}

fn cert_with(key: &KeyPair, oid: &[u64], value: &[u8]) -> Vec<u8> {
    cert(key, vec![ext(oid, value, false)])
}

/// Cosmian's report_data for `key`: SHA-256 of the uncompressed SEC1 point, then `extra`.
fn cosmian_report_data(key: &KeyPair, extra: [u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&crate::digest::sha256(key.public_key_raw()));
    out[32..].copy_from_slice(&extra);
    out
}

/// bincode of `sev_quote::Quote { report, certs }` with `(CertType index, DER)` entries.
fn cosmian_quote(report: &[u8], certs: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = report.to_vec();
    out.extend_from_slice(&(certs.len() as u64).to_le_bytes());
    for (kind, der) in certs {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(der.len() as u64).to_le_bytes());
        out.extend_from_slice(der);
    }
    out
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

/// A claims buffer: pubkey-hash `[alg, hash]`, then an optional nonce and custom claims.
fn claims_buffer(alg_id: u64, hash: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    let hash_entry = cbor(&Value::Array(vec![
        Value::Integer(alg_id.into()),
        Value::Bytes(hash.to_vec()),
    ]));
    let mut map = vec![(Value::Text("pubkey-hash".into()), Value::Bytes(hash_entry))];
    if let Some(nonce) = nonce {
        map.push((Value::Text("nonce".into()), Value::Bytes(nonce.to_vec())));
    }
    map.push((
        Value::Text("key_0".into()),
        Value::Bytes(b"value_0".to_vec()),
    ));
    cbor(&Value::Map(map))
}

fn spki_claims(key: &KeyPair) -> Vec<u8> {
    claims_buffer(
        1,
        &crate::digest::sha256(&key.subject_public_key_info()),
        None,
    )
}

fn dice_value(tag: u64, evidence: &[u8], claims: &[u8]) -> Vec<u8> {
    cbor(&Value::Tag(
        tag,
        Box::new(Value::Array(vec![
            Value::Bytes(evidence.to_vec()),
            Value::Bytes(claims.to_vec()),
        ])),
    ))
}

/// report_data binding a DICE claims buffer.
fn dice_report_data(claims: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&crate::digest::sha256(claims));
    out
}

/// A structurally valid (unsigned) SGX ECDSA quote v3 carrying `report_data`.
fn sgx_quote(report_data: &[u8; 64]) -> Vec<u8> {
    let mut q = vec![0u8; 48 + 384 + 4 + 64];
    q[0..2].copy_from_slice(&3u16.to_le_bytes());
    q[2..4].copy_from_slice(&2u16.to_le_bytes());
    q[48 + 320..48 + 384].copy_from_slice(report_data);
    q
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.failures()
        .map(|c| c.step.as_str())
        .collect()
}

fn check<'a>(v: &'a Verdict, step: &str) -> &'a Check {
    v.check(step)
        .unwrap_or_else(|| panic!("no step {step} in\n{v}"))
}

fn foreign(v: &Verdict) -> &ForeignClaims {
    match &v.claims {
        Claims::Foreign(c) => c,
        other => panic!("unexpected claims {other:?}"),
    }
}

fn policy() -> Policy {
    Policy::default()
}

/// The 2023 Milan sample's TCB (3/0/8/115) is below AMD's default floor for Milan: the tests
/// that verify it as genuine accept that TCB explicitly.
fn milan_2023() -> Policy {
    let mut policy = Policy::default();
    policy.snp.min_tcb = Some(crate::snp::MinTcb {
        fmc: None,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    });
    policy
}

// --- Finding extensions ------------------------------------------------------------------

#[test]
fn find_lists_each_foreign_extension_with_its_criticality() {
    let k = key();
    let der = cert(
        &k,
        vec![
            ext(SEV, b"sev", false),
            ext(DICE, b"dice", true),
            ext(TDX, b"tdx", false),
        ],
    );
    let found = find(&der).unwrap();
    let summary: Vec<_> = found
        .iter()
        .map(|e| (e.kind, e.oid.as_str(), e.critical, e.value.as_slice()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                ForeignKind::CosmianSevSnp,
                COSMIAN_SEV_OID,
                false,
                &b"sev"[..]
            ),
            (ForeignKind::CosmianTdx, COSMIAN_TDX_OID, false, &b"tdx"[..]),
            (
                ForeignKind::TcgDiceTagged,
                TCG_DICE_TAGGED_EVIDENCE_OID,
                true,
                &b"dice"[..]
            ),
        ]
    );
    // Several evidence extensions: which one binds the key is ambiguous.
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(failed(&v), ["foreign.extension"]);
    assert!(check(&v, "foreign.extension")
        .presented
        .contains(COSMIAN_SEV_OID));
    assert!(!v.is_trusted());
}

#[test]
fn kinds_name_their_oids_and_bindings() {
    for kind in ForeignKind::ALL {
        assert_eq!(
            ForeignKind::ALL
                .iter()
                .filter(|k| k.oid() == kind.oid())
                .count(),
            1
        );
        assert_ne!(kind.binding(), ForeignBinding::None);
        assert!(kind
            .binding()
            .label()
            .starts_with("key ("));
        assert!(kind
            .binding()
            .label()
            .contains("no TPM/IMA"));
    }
    assert!(ForeignBinding::None
        .label()
        .starts_with("none"));
}

#[test]
fn a_certificate_without_foreign_evidence_is_rejected() {
    let k = key();
    let der = cert(&k, vec![]);
    assert_eq!(find(&der).unwrap(), []);
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(failed(&v), ["foreign.extension"]);
    assert_eq!(check(&v, "foreign.extension").presented, "none");
    assert_eq!(v.platform, Platform::Unknown);
    assert_eq!(foreign(&v).binding, ForeignBinding::None);
}

#[test]
fn a_critical_evidence_extension_is_refused() {
    let k = key();
    let claims = spki_claims(&k);
    let value = dice_value(
        dice::TAG_INTEL_TEE_QUOTE,
        &sgx_quote(&dice_report_data(&claims)),
        &claims,
    );
    let der = cert(&k, vec![ext(DICE, &value, true)]);
    let found = find(&der).unwrap();
    assert!(found[0].critical);
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(failed(&v), ["foreign.extension"]);
    let c = check(&v, "foreign.extension");
    assert!(c.presented.contains("critical"), "{c}");
    assert!(c.detail.contains("non-critical"), "{c}");
}

#[test]
fn oversized_extensions_and_certificates_are_refused() {
    let k = key();
    // Over the extension cap, under the certificate cap.
    let big = vec![0x5a; MAX_EXTENSION_LEN + 1];
    let der = cert_with(&k, SEV, &big);
    assert!(der.len() <= MAX_CERT_LEN);
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(failed(&v), ["foreign.extension"]);
    assert!(check(&v, "foreign.extension")
        .detail
        .contains("size cap"));
    // Over the certificate cap: a typed error from `find`, a failed step from `verify`.
    let huge = vec![0x5a; MAX_CERT_LEN];
    let der = cert_with(&k, DICE, &huge);
    assert!(matches!(
        find(&der),
        Err(CertError::TooLarge { limit, .. }) if limit == MAX_CERT_LEN
    ));
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(failed(&v), ["foreign.certificate"]);
}

#[test]
fn an_expired_certificate_fails_validity() {
    let k = key();
    let der = cert_with(&k, SGX, &sgx_quote(&[0; 64]));
    let v = verify(&der, &policy(), at("2041-01-01T00:00:00Z"), None);
    assert!(!check(&v, "foreign.validity").ok);
}

// --- Cosmian layouts ---------------------------------------------------------------------

#[test]
fn the_cosmian_key_bytes_are_the_uncompressed_point() {
    let k = key();
    let der = cert_with(&k, SGX, &sgx_quote(&[0; 64]));
    let c = Cert::from_der(&der).unwrap();
    let point = cosmian::key_bytes(&c).unwrap();
    assert_eq!(point, k.public_key_raw());
    assert_eq!(point.len(), 65);
    assert_eq!(point[0], 0x04);
    // Not the SPKI DER: that is DICE's input.
    assert_ne!(point, c.spki_der());
    assert_eq!(c.spki_der(), k.subject_public_key_info());
    // Cosmian only defines P-256.
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let der = cert_with(&p384, SGX, &sgx_quote(&[0; 64]));
    let err = cosmian::key_bytes(&Cert::from_der(&der).unwrap()).unwrap_err();
    assert!(err.contains("P-256"), "{err}");
}

#[test]
fn the_cosmian_certificate_table_parses() {
    let report = vec![0u8; REPORT_LEN];
    let bare = SevQuote::parse(&report).unwrap();
    assert!(!bare.with_table);
    let value = cosmian_quote(&report, &[(1, b"ark"), (3, b"vcek"), (2, b"ask")]);
    let q = SevQuote::parse(&value).unwrap();
    assert!(q.with_table);
    assert_eq!(q.cert(CertType::Vcek), Some(&b"vcek"[..]));
    assert_eq!(q.cert(CertType::Ask), Some(&b"ask"[..]));
    assert_eq!(q.cert(CertType::Ark), Some(&b"ark"[..]));
    assert_eq!(q.cert(CertType::Vlek), None);
    // An empty table is the bincode of `certs: vec![]`.
    let empty = cosmian_quote(&report, &[]);
    assert!(SevQuote::parse(&empty)
        .unwrap()
        .certs
        .is_empty());
    // OTHER carries a 16-byte GUID.
    let mut other = report.clone();
    other.extend_from_slice(&1u64.to_le_bytes());
    other.extend_from_slice(&6u32.to_le_bytes());
    other.extend_from_slice(&16u64.to_le_bytes());
    other.extend_from_slice(&[7; 16]);
    other.extend_from_slice(&2u64.to_le_bytes());
    other.extend_from_slice(b"xy");
    assert_eq!(
        SevQuote::parse(&other).unwrap().certs,
        [(CertType::Other, &b"xy"[..])]
    );
    // Refused: unknown type, trailing bytes, short report, absurd counts and lengths.
    let bad_type = cosmian_quote(&report, &[(7, b"x")]);
    assert!(matches!(
        SevQuote::parse(&bad_type),
        Err(ParseError::InvalidValue {
            field: "cert_type",
            ..
        })
    ));
    let mut trailing = value.clone();
    trailing.push(0);
    assert!(matches!(
        SevQuote::parse(&trailing),
        Err(ParseError::TrailingBytes { .. })
    ));
    assert!(matches!(
        SevQuote::parse(&report[..REPORT_LEN - 1]),
        Err(ParseError::Truncated {
            field: "report",
            ..
        })
    ));
    let mut many = report.clone();
    many.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        SevQuote::parse(&many),
        Err(ParseError::TooLarge { .. })
    ));
    let mut long = report.clone();
    long.extend_from_slice(&1u64.to_le_bytes());
    long.extend_from_slice(&3u32.to_le_bytes());
    long.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        SevQuote::parse(&long),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn a_cosmian_sgx_quote_is_read_but_unsupported() {
    let k = key();
    let der = cert_with(&k, SGX, &sgx_quote(&cosmian_report_data(&k, [0; 32])));
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(v.platform, Platform::Sgx);
    assert!(check(&v, "foreign.format").ok);
    assert!(check(&v, "binding.spki").ok, "{v}");
    assert!(check(&v, "binding.challenge").ok, "{v}");
    assert_eq!(failed(&v), ["tee.supported", "binding.level"]);
    assert!(check(&v, "tee.supported")
        .detail
        .contains("no SGX quote verifier"));
    assert!(check(&v, "binding.level")
        .detail
        .contains("tee.supported"));
    assert_eq!(foreign(&v).binding, ForeignBinding::None);
    // Not an SGX quote at all.
    let der = cert_with(&k, SGX, b"\x05\x00\x00\x00");
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert!(!check(&v, "foreign.format").ok);
}

fn milan() -> Option<(Vec<u8>, Vec<u8>, Vec<Cert>)> {
    let dir = ratls_test::real_testdata("sev-snp/milan-vcek-virtee")?;
    let hex_report = ratls_test::read_real(&dir, "report_milan.hex");
    let report = crate::hexfmt::decode(core::str::from_utf8(&hex_report).unwrap()).unwrap();
    assert_eq!(report.len(), REPORT_LEN);
    let vcek = ratls_test::read_real(&dir, "vcek_milan.der");
    let chain =
        Cert::many_from_der_or_pem(&ratls_test::read_real(&dir, "cert_chain_milan")).unwrap();
    Some((report, vcek, chain))
}

/// The README's report_data of the Milan report.
const MILAN_REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";

/// The TEE steps reach the README's conclusion; the binding fails (the report was not made for
/// our key) and says which hashes differ.
fn assert_real_milan_tee_ok_binding_fails(v: &Verdict, k: &KeyPair) {
    for step in [
        "tee.parse",
        "tee.chain.ark",
        "tee.chain.ask",
        "tee.chain.vcek",
        "tee.signing_key",
        "tee.signature",
        "tee.tcb",
        "tee.chip_id",
        "tee.policy.debug",
        "tee.policy.vmpl",
    ] {
        assert!(check(v, step).ok, "{step} in\n{v}");
    }
    let spki = check(v, "binding.spki");
    assert!(!spki.ok);
    assert!(spki
        .expected
        .contains(&hex(crate::digest::sha256(k.public_key_raw()))));
    assert_eq!(spki.presented, MILAN_REPORT_DATA[..64]);
    let challenge = check(v, "binding.challenge");
    assert!(!challenge.ok);
    assert_eq!(challenge.presented, MILAN_REPORT_DATA[64..]);
    assert!(challenge
        .detail
        .contains("did not choose"));
    assert_eq!(
        failed(v),
        ["binding.spki", "binding.challenge", "binding.level"]
    );
    assert!(!v.simulated);
    let c = foreign(v);
    assert_eq!(c.binding, ForeignBinding::None);
    assert_eq!(c.report_data.as_deref(), Some(MILAN_REPORT_DATA));
    match c.tee.as_ref() {
        Some(Claims::Snp(snp)) => {
            assert_eq!(snp.measurement, "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f");
            assert_eq!(snp.policy, "0x30000");
        }
        other => panic!("unexpected TEE claims {other:?}"),
    }
}

#[test]
fn a_real_milan_report_in_a_cosmian_extension_is_genuine_but_not_bound_to_our_key() {
    let Some((report, vcek, _)) = milan() else {
        return;
    };
    let k = key();
    let der = cert_with(&k, SEV, &report);
    let now = at("2025-01-01T00:00:00Z");
    // The bare report: the VCEK is not in the certificate, so it must come from the caller.
    let v = verify(&der, &milan_2023(), now, None);
    let chain = check(&v, "tee.chain.vcek");
    assert!(!chain.ok);
    assert_eq!(chain.presented, "none carried, none given");
    assert!(chain.detail.contains("AMD KDS"), "{chain}");
    assert!(!check(&v, "tee.signature").ok);
    assert!(!v.is_trusted());
    assert_eq!(
        foreign(&v).format.as_deref(),
        Some("bare SEV-SNP report (no certificates)")
    );

    let mut inputs = Inputs::new(now);
    inputs.vcek = Some(&vcek);
    let v = verify_with(&der, &milan_2023(), &inputs);
    assert_eq!(v.platform, Platform::SevSnp);
    assert_real_milan_tee_ok_binding_fails(&v, &k);
}

#[test]
fn a_real_milan_report_with_its_certificate_table_needs_no_vcek_from_the_caller() {
    let Some((report, vcek, chain)) = milan() else {
        return;
    };
    let k = key();
    let (ask, ark) = (chain[0].der(), chain[1].der());
    let value = cosmian_quote(&report, &[(1, ark), (3, &vcek), (2, ask)]);
    let der = cert_with(&k, SEV, &value);
    let v = verify(&der, &milan_2023(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(
        check(&v, "foreign.format").presented,
        "sev_quote::Quote with certificates [ARK, VCEK, ASK]"
    );
    assert_real_milan_tee_ok_binding_fails(&v, &k);
    // A carried ARK that is not AMD's is refused (the ARK stays pinned).
    let fake_ark = cert(&key(), vec![]);
    let value = cosmian_quote(&report, &[(1, &fake_ark), (3, &vcek), (2, ask)]);
    let v = verify(
        &cert_with(&k, SEV, &value),
        &milan_2023(),
        at("2025-01-01T00:00:00Z"),
        None,
    );
    assert!(!check(&v, "tee.chain.ark").ok);
}

fn tdx_v4() -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = ratls_test::real_testdata("tdx/v4-emr-phala-collateral")?;
    Some((
        ratls_test::read_real(&dir, "tdx_quote.bin"),
        ratls_test::read_real(&dir, "collateral.json"),
    ))
}

#[test]
fn a_real_tdx_quote_in_a_cosmian_extension_needs_collateral() {
    let Some((quote, collateral)) = tdx_v4() else {
        return;
    };
    let k = key();
    let der = cert_with(&k, TDX, &quote);
    let now = at("2025-07-01T00:00:00Z");
    // Without collateral: the signatures are checked, the TCB cannot be.
    let v = verify(&der, &policy(), now, None);
    assert_eq!(v.platform, Platform::Tdx);
    for step in ["tee.pck_chain", "tee.qe_report.signature", "tee.signature"] {
        assert!(check(&v, step).ok, "{step} in\n{v}");
    }
    let c = check(&v, "tee.collateral.parse");
    assert!(!c.ok);
    assert_eq!(c.presented, "no collateral given");
    assert!(c
        .detail
        .contains("Intel PCS collateral"));
    assert!(!check(&v, "tee.tcb").ok);
    // With collateral: genuine and UpToDate, but not made for our key.
    let mut inputs = Inputs::new(now);
    inputs.tdx_collateral = Some(&collateral);
    let v = verify_with(&der, &policy(), &inputs);
    for step in [
        "tee.collateral",
        "tee.tcb",
        "tee.signature",
        "tee.policy.debug",
    ] {
        assert!(check(&v, step).ok, "{step} in\n{v}");
    }
    assert_eq!(
        failed(&v),
        ["binding.spki", "binding.challenge", "binding.level"]
    );
    assert!(check(&v, "binding.spki")
        .presented
        .starts_with("9a9d48e7f6799642"));
}

// --- TCG DICE tagged evidence ------------------------------------------------------------

#[test]
fn dice_claims_buffers_parse_and_refuse_bad_shapes() {
    let hash = [0x11; 32];
    let c = ClaimsBuffer::parse(&claims_buffer(1, &hash, Some(b"n0nce"))).unwrap();
    assert_eq!(c.pubkey_hash_alg, crate::digest::HashAlg::Sha256);
    assert_eq!(c.pubkey_hash, hash);
    assert_eq!(c.nonce.as_deref(), Some(&b"n0nce"[..]));
    assert_eq!(c.custom.keys().collect::<Vec<_>>(), ["key_0"]);
    let c = ClaimsBuffer::parse(&claims_buffer(7, &[0; 48], None)).unwrap();
    assert_eq!(c.pubkey_hash_alg, crate::digest::HashAlg::Sha384);
    let c = ClaimsBuffer::parse(&claims_buffer(8, &[0; 64], None)).unwrap();
    assert_eq!(c.pubkey_hash_alg, crate::digest::HashAlg::Sha512);
    // Wrong algorithm, wrong length, missing pubkey-hash, non-byte values, duplicates.
    assert!(ClaimsBuffer::parse(&claims_buffer(2, &[0; 32], None)).is_err());
    assert!(ClaimsBuffer::parse(&claims_buffer(1, &[0; 31], None)).is_err());
    let no_hash = cbor(&Value::Map(vec![(
        Value::Text("nonce".into()),
        Value::Bytes(vec![1]),
    )]));
    assert!(matches!(
        ClaimsBuffer::parse(&no_hash),
        Err(FormatError::Shape { expected, .. }) if expected.contains("pubkey-hash")
    ));
    let text_value = cbor(&Value::Map(vec![(
        Value::Text("pubkey-hash".into()),
        Value::Text("x".into()),
    )]));
    assert!(ClaimsBuffer::parse(&text_value).is_err());
    let entry = cbor(&Value::Array(vec![1.into(), Value::Bytes(vec![0; 32])]));
    let dup = cbor(&Value::Map(vec![
        (
            Value::Text("pubkey-hash".into()),
            Value::Bytes(entry.clone()),
        ),
        (Value::Text("pubkey-hash".into()), Value::Bytes(entry)),
    ]));
    assert!(matches!(
        ClaimsBuffer::parse(&dup),
        Err(FormatError::Shape {
            expected: "each claim once",
            ..
        })
    ));
    // Deep nesting is refused, not recursed into.
    let mut deep = Value::Bytes(vec![]);
    for _ in 0..64 {
        deep = Value::Array(vec![deep]);
    }
    assert!(matches!(
        ClaimsBuffer::parse(&cbor(&deep)),
        Err(FormatError::Cbor { .. })
    ));
    let mut trailing = claims_buffer(1, &hash, None);
    trailing.push(0);
    assert!(ClaimsBuffer::parse(&trailing).is_err());
}

#[test]
fn dice_tagged_values_parse_and_refuse_bad_shapes() {
    let t = Tagged::parse(&dice_value(60000, b"quote", b"claims")).unwrap();
    assert_eq!(
        (t.tag, t.evidence.as_slice(), t.claims_buffer.as_slice()),
        (60000, &b"quote"[..], &b"claims"[..])
    );
    // rats-rs' own test vector: 60000([h'01020304', h'05060708']).
    let t = Tagged::parse(&::hex::decode("d9ea608244010203044405060708").unwrap()).unwrap();
    assert_eq!(t.tag, 60000);
    assert_eq!(t.evidence, [1, 2, 3, 4]);
    let untagged = cbor(&Value::Array(vec![
        Value::Bytes(vec![]),
        Value::Bytes(vec![]),
    ]));
    assert!(Tagged::parse(&untagged).is_err());
    let three = cbor(&Value::Tag(
        60000,
        Box::new(Value::Array(vec![
            Value::Bytes(vec![]),
            Value::Bytes(vec![]),
            Value::Bytes(vec![]),
        ])),
    ));
    assert!(matches!(
        Tagged::parse(&three),
        Err(FormatError::Shape { presented, .. }) if presented.contains('3')
    ));
    let text = cbor(&Value::Tag(
        60000,
        Box::new(Value::Array(vec![
            Value::Text("q".into()),
            Value::Bytes(vec![]),
        ])),
    ));
    assert!(Tagged::parse(&text).is_err());
    assert!(Tagged::parse(&[]).is_err());
}

#[test]
fn a_dice_sgx_quote_is_bound_but_unsupported() {
    let k = key();
    let claims = spki_claims(&k);
    let value = dice_value(
        dice::TAG_INTEL_TEE_QUOTE,
        &sgx_quote(&dice_report_data(&claims)),
        &claims,
    );
    let der = cert_with(&k, DICE, &value);
    let v = verify(&der, &policy(), at("2025-01-01T00:00:00Z"), None);
    assert_eq!(v.platform, Platform::Sgx);
    for step in [
        "foreign.format",
        "binding.report_data",
        "binding.spki",
        "binding.challenge",
    ] {
        assert!(check(&v, step).ok, "{step} in\n{v}");
    }
    assert_eq!(failed(&v), ["tee.supported", "binding.level"]);
    let c = foreign(&v);
    assert_eq!(c.kind, Some(ForeignKind::TcgDiceTagged));
    let dice = c.dice.as_ref().unwrap();
    assert_eq!(dice.tag, 60000);
    assert_eq!(dice.pubkey_hash_alg.as_deref(), Some("sha256"));
    assert_eq!(dice.custom["key_0"], hex(b"value_0"));
    assert_eq!(
        dice.claims_buffer_sha256,
        hex(crate::digest::sha256(&claims))
    );

    // The same evidence in a certificate with another key: the pubkey-hash gives it away.
    let other = key();
    let v = verify(
        &cert_with(&other, DICE, &value),
        &policy(),
        at("2025-01-01T00:00:00Z"),
        None,
    );
    let spki = check(&v, "binding.spki");
    assert!(!spki.ok);
    assert_eq!(
        spki.presented,
        hex(crate::digest::sha256(&k.subject_public_key_info()))
    );
    assert!(spki
        .expected
        .contains(&hex(crate::digest::sha256(
            &other.subject_public_key_info()
        ))));
    // Claims swapped for ones naming the other key: the report_data gives it away.
    let forged = spki_claims(&other);
    let value = dice_value(
        dice::TAG_INTEL_TEE_QUOTE,
        &sgx_quote(&dice_report_data(&claims)),
        &forged,
    );
    let v = verify(
        &cert_with(&other, DICE, &value),
        &policy(),
        at("2025-01-01T00:00:00Z"),
        None,
    );
    assert!(check(&v, "binding.spki").ok);
    assert!(!check(&v, "binding.report_data").ok);
}

#[test]
fn dice_nonces_must_be_the_verifiers_challenge() {
    let k = key();
    let spki_hash = crate::digest::sha256(&k.subject_public_key_info());
    let claims = claims_buffer(1, &spki_hash, Some(b"chosen by someone"));
    let value = dice_value(
        dice::TAG_INTEL_TEE_QUOTE,
        &sgx_quote(&dice_report_data(&claims)),
        &claims,
    );
    let der = cert_with(&k, DICE, &value);
    let now = at("2025-01-01T00:00:00Z");
    let v = verify(&der, &policy(), now, None);
    let c = check(&v, "binding.challenge");
    assert!(!c.ok);
    assert!(c.detail.contains("did not choose"));
    let mut inputs = Inputs::new(now);
    inputs.challenge = Some(b"chosen by someone");
    let v = verify_with(&der, &policy(), &inputs);
    assert!(check(&v, "binding.challenge").ok);
    inputs.challenge = Some(b"another challenge");
    let v = verify_with(&der, &policy(), &inputs);
    assert!(!check(&v, "binding.challenge").ok);
    // A challenge the evidence does not carry.
    let der = cert_with(
        &k,
        DICE,
        &dice_value(
            dice::TAG_INTEL_TEE_QUOTE,
            &sgx_quote(&dice_report_data(&spki_claims(&k))),
            &spki_claims(&k),
        ),
    );
    let v = verify_with(&der, &policy(), &inputs);
    assert!(!check(&v, "binding.challenge").ok);
}

#[test]
fn dice_tags_are_named_and_unknown_ones_refused() {
    let k = key();
    let claims = spki_claims(&k);
    let now = at("2025-01-01T00:00:00Z");
    let v = verify(
        &cert_with(&k, DICE, &dice_value(0x1234, b"x", &claims)),
        &policy(),
        now,
        None,
    );
    let c = check(&v, "foreign.format");
    assert!(!c.ok);
    assert!(
        c.detail
            .contains("unknown CBOR tag 4660"),
        "{c}"
    );
    assert_eq!(foreign(&v).dice.as_ref().map(|d| d.tag), Some(0x1234));
    for (tag, name) in [
        (dice::TAG_INTEL_TEE_REPORT, "Intel TEE report"),
        (dice::TAG_INTEL_SGX_LEGACY_REPORT, "legacy SGX report"),
        (dice::TAG_CSV, "Hygon CSV report"),
        (
            dice::TAG_COCO_TOKEN,
            "Confidential Containers attestation token",
        ),
    ] {
        let v = verify(
            &cert_with(&k, DICE, &dice_value(tag, b"x", &claims)),
            &policy(),
            now,
            None,
        );
        let c = check(&v, "tee.supported");
        assert!(!c.ok);
        assert_eq!(c.presented, name);
        assert!(!v.is_trusted());
    }
}

#[test]
fn a_real_milan_report_under_a_dice_tag_is_genuine_and_names_our_key_but_is_not_bound() {
    let Some((report, vcek, _)) = milan() else {
        return;
    };
    let k = key();
    let claims = spki_claims(&k);
    let der = cert_with(&k, DICE, &dice_value(dice::TAG_SEV_SNP, &report, &claims));
    let mut inputs = Inputs::new(at("2025-01-01T00:00:00Z"));
    inputs.vcek = Some(&vcek);
    let v = verify_with(&der, &milan_2023(), &inputs);
    assert_eq!(v.platform, Platform::SevSnp);
    for step in [
        "tee.chain.vcek",
        "tee.signature",
        "tee.tcb",
        "binding.spki",
        "binding.challenge",
    ] {
        assert!(check(&v, step).ok, "{step} in\n{v}");
    }
    let rd = check(&v, "binding.report_data");
    assert!(!rd.ok);
    assert_eq!(rd.presented, MILAN_REPORT_DATA);
    assert_eq!(failed(&v), ["binding.report_data", "binding.level"]);
    // A report of the wrong size under the SNP tag.
    let der = cert_with(
        &k,
        DICE,
        &dice_value(dice::TAG_SEV_SNP, &report[..100], &claims),
    );
    let v = verify_with(&der, &milan_2023(), &inputs);
    assert!(!check(&v, "tee.parse").ok);
}

#[test]
fn a_real_tdx_quote_under_the_iana_tag_goes_to_the_tdx_verifier() {
    let Some((quote, collateral)) = tdx_v4() else {
        return;
    };
    let k = key();
    let claims = spki_claims(&k);
    let der = cert_with(
        &k,
        DICE,
        &dice_value(dice::TAG_INTEL_TEE_QUOTE, &quote, &claims),
    );
    let mut inputs = Inputs::new(at("2025-07-01T00:00:00Z"));
    inputs.tdx_collateral = Some(&collateral);
    let v = verify_with(&der, &policy(), &inputs);
    assert_eq!(v.platform, Platform::Tdx);
    assert!(check(&v, "tee.tcb").ok, "{v}");
    assert!(check(&v, "binding.spki").ok);
    assert_eq!(failed(&v), ["binding.report_data", "binding.level"]);
}

// --- Never a panic, never trusted --------------------------------------------------------

fn assert_never_trusted(oid: &[u64], sample: &[u8], seed: u64) {
    let k = key();
    let now = at("2025-01-01T00:00:00Z");
    let mutations = ratls_test::Mutations::of(sample, seed, 200);
    assert!(mutations.count() > 100);
    for (name, value) in mutations.iter() {
        let der = cert_with(&k, oid, value);
        let v = verify(&der, &policy(), now, None);
        assert!(!v.is_trusted(), "{name}: trusted\n{v}");
        assert!(v.first_failure().is_some(), "{name}");
        match find(&der) {
            Ok(found) => assert_eq!(found.len(), 1, "{name}"),
            Err(e) => assert!(matches!(e, CertError::TooLarge { .. }), "{name}: {e}"),
        }
    }
}

#[test]
fn mutated_cosmian_sev_values_never_panic_and_never_pass() {
    let k = key();
    let mut report = vec![0u8; REPORT_LEN];
    report[0] = 2;
    report[0x50..0x90].copy_from_slice(&cosmian_report_data(&k, [0; 32]));
    assert_never_trusted(SEV, &report, 1);
    let table = cosmian_quote(&report, &[(3, &cert(&k, vec![])), (2, b"ask"), (1, b"ark")]);
    assert_never_trusted(SEV, &table, 2);
}

#[test]
fn mutated_dice_values_never_panic_and_never_pass() {
    let k = key();
    let claims = claims_buffer(
        1,
        &crate::digest::sha256(&k.subject_public_key_info()),
        Some(b"n"),
    );
    let mut report = vec![0u8; REPORT_LEN];
    report[0] = 3;
    report[0x50..0x90].copy_from_slice(&dice_report_data(&claims));
    assert_never_trusted(DICE, &dice_value(dice::TAG_SEV_SNP, &report, &claims), 3);
    assert_never_trusted(
        DICE,
        &dice_value(
            dice::TAG_INTEL_TEE_QUOTE,
            &sgx_quote(&dice_report_data(&claims)),
            &claims,
        ),
        4,
    );
}

#[test]
fn mutated_cosmian_quotes_and_certificates_never_panic() {
    let k = key();
    assert_never_trusted(SGX, &sgx_quote(&cosmian_report_data(&k, [0; 32])), 5);
    if let Some((quote, _)) = tdx_v4() {
        let mutations = ratls_test::Mutations::of(&quote, 6, 64);
        for (name, value) in mutations.iter() {
            let v = verify(
                &cert_with(&k, TDX, value),
                &policy(),
                at("2025-07-01T00:00:00Z"),
                None,
            );
            assert!(!v.is_trusted(), "{name}");
        }
    }
    // Whole certificates, mutated: a typed error or a failed step.
    let der = cert_with(&k, SGX, &sgx_quote(&[0; 64]));
    for (name, bytes) in ratls_test::Mutations::of(&der, 7, 200).iter() {
        let _ = find(bytes);
        let v = verify(bytes, &policy(), at("2025-01-01T00:00:00Z"), None);
        assert!(!v.is_trusted(), "{name}");
    }
}

// --- The simulated TEE -------------------------------------------------------------------

#[cfg(feature = "sim")]
mod sim {
    use std::sync::{Arc, OnceLock};

    use super::*;
    use crate::attest::sim::{SimCa, SimTee};

    fn ca() -> Arc<SimCa> {
        static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
        CA.get_or_init(|| Arc::new(SimCa::generate().unwrap()))
            .clone()
    }

    fn report(report_data: &[u8; 64]) -> Vec<u8> {
        SimTee::new(ca())
            .unwrap()
            .report(&crate::binding::ReportData::from_raw_for_tests(
                *report_data,
            ))
            .unwrap()
    }

    fn with_table(report: &[u8]) -> Vec<u8> {
        let ca = ca();
        cosmian_quote(
            report,
            &[(1, ca.ark_der()), (2, ca.ask_der()), (3, ca.vcek_der())],
        )
    }

    #[test]
    fn a_cosmian_sim_report_for_the_certificate_key_is_trusted_as_simulated() {
        let k = key();
        let value = with_table(&report(&cosmian_report_data(&k, [0; 32])));
        let der = cert_with(&k, SEV, &value);
        let root = ca().ark_pem();
        let v = verify(&der, &policy(), UnixTime::now(), Some(root.as_bytes()));
        assert!(v.is_trusted(), "{v}");
        assert!(v.simulated);
        assert!(v.to_string().contains("SIMULATED"));
        assert_eq!(v.platform, Platform::SevSnp);
        let c = foreign(&v);
        assert_eq!(c.binding, ForeignBinding::CosmianKeyHash);
        assert_eq!(c.binding_label, ForeignBinding::CosmianKeyHash.label());
        assert!(!c.challenge_checked);
        let level = check(&v, "binding.level");
        assert_eq!(level.presented, ForeignBinding::CosmianKeyHash.label());

        // Without the simulated root, it is not trusted.
        let v = verify(&der, &policy(), UnixTime::now(), None);
        assert!(!v.is_trusted());
        assert!(!check(&v, "tee.chain.ark").ok);
        // The same evidence in a certificate with another key.
        let v = verify(
            &cert_with(&key(), SEV, &value),
            &policy(),
            UnixTime::now(),
            Some(root.as_bytes()),
        );
        assert_eq!(failed(&v), ["binding.spki", "binding.level"]);
    }

    #[test]
    fn a_bare_cosmian_sim_report_needs_the_vcek_from_the_caller() {
        let k = key();
        let der = cert_with(&k, SEV, &report(&cosmian_report_data(&k, [0; 32])));
        let root = ca().ark_pem();
        let (ca, chain) = (ca(), ca().chain_pem());
        let mut inputs = Inputs::new(UnixTime::now());
        inputs.insecure_sim_root = Some(root.as_bytes());
        let v = verify_with(&der, &policy(), &inputs);
        assert!(!check(&v, "tee.chain.vcek").ok);
        inputs.vcek = Some(ca.vcek_der());
        inputs.snp_chain = Some(chain.as_bytes());
        let v = verify_with(&der, &policy(), &inputs);
        assert!(v.is_trusted(), "{v}");
    }

    #[test]
    fn cosmian_extra_data_is_a_challenge_only_when_the_verifier_chose_it() {
        let k = key();
        let challenge = [0xc5; 32];
        let value = with_table(&report(&cosmian_report_data(&k, challenge)));
        let der = cert_with(&k, SEV, &value);
        let root = ca().ark_pem();
        let mut inputs = Inputs::new(UnixTime::now());
        inputs.insecure_sim_root = Some(root.as_bytes());
        let v = verify_with(&der, &policy(), &inputs);
        assert_eq!(failed(&v), ["binding.challenge", "binding.level"]);
        inputs.challenge = Some(&challenge);
        let v = verify_with(&der, &policy(), &inputs);
        assert!(v.is_trusted(), "{v}");
        assert!(foreign(&v).challenge_checked);
        inputs.challenge = Some(&[0xc6; 32]);
        assert!(!verify_with(&der, &policy(), &inputs).is_trusted());
    }

    #[test]
    fn a_dice_sim_report_for_the_certificate_key_is_trusted_as_simulated() {
        let k = key();
        let claims = spki_claims(&k);
        let value = dice_value(
            dice::TAG_SEV_SNP,
            &report(&dice_report_data(&claims)),
            &claims,
        );
        let der = cert_with(&k, DICE, &value);
        let root = ca().ark_pem();
        let (ca, chain) = (ca(), ca().chain_pem());
        let mut inputs = Inputs::new(UnixTime::now());
        inputs.insecure_sim_root = Some(root.as_bytes());
        inputs.vcek = Some(ca.vcek_der());
        inputs.snp_chain = Some(chain.as_bytes());
        let v = verify_with(&der, &policy(), &inputs);
        assert!(v.is_trusted(), "{v}");
        assert!(v.simulated);
        let c = foreign(&v);
        assert_eq!(c.binding, ForeignBinding::DiceClaimsKeyHash);
        assert_eq!(
            c.format.as_deref(),
            Some("SEV-SNP report (rats-tls tag 0x1a7504)")
        );
        // A debug-policy report fails the policy step, whatever the binding.
        let debug = SimTee::new(ca.clone())
            .unwrap()
            .with_policy(0x3_0000 | (1 << 19))
            .report(&crate::binding::ReportData::from_raw_for_tests(
                dice_report_data(&claims),
            ))
            .unwrap();
        let der = cert_with(&k, DICE, &dice_value(dice::TAG_SEV_SNP, &debug, &claims));
        let v = verify_with(&der, &policy(), &inputs);
        assert_eq!(failed(&v), ["tee.policy.debug", "binding.level"]);
    }
}
