//! Unit tests on hand-built TPM structures, signed at test time with keys `ring` generates (and,
//! when `openssl` is on PATH, an RSA key it generates: `ring` cannot make RSA keys).

use std::collections::BTreeMap;

use ring::rand::SystemRandom;
use ring::signature::{self as rs, EcdsaKeyPair, KeyPair, RsaKeyPair};

use super::structures::*;
use super::*;
use crate::codec::ParseError;
use crate::hexfmt::hex;
use crate::verdict::Verdict;

// ---------------------------------------------------------------------------------------------
// Builders.

fn pcr_value(bank: HashAlg, index: u8) -> Vec<u8> {
    vec![index.wrapping_mul(7).wrapping_add(1); bank.digest_len()]
}

/// `bank → indices` as a selection (3-byte bitmaps) and the matching PCR values.
fn selection(banks: &[(HashAlg, &[u8])]) -> (Vec<PcrSelection>, PcrValues) {
    let mut sel = Vec::new();
    let mut values = PcrValues::default();
    for (bank, indices) in banks {
        let mut select = vec![0u8; 3];
        for i in *indices {
            select[usize::from(*i / 8)] |= 1 << (i % 8);
            values.insert(*bank, *i, pcr_value(*bank, *i));
        }
        sel.push(PcrSelection {
            hash_alg: bank.tpm_alg_id(),
            select,
        });
    }
    (sel, values)
}

/// The pcrDigest a TPM computes: `hash` over the values in selection order.
fn digest_of(sel: &[PcrSelection], values: &PcrValues, hash: HashAlg) -> Vec<u8> {
    let mut parts = Vec::new();
    for s in sel {
        for i in s.indices() {
            parts.extend_from_slice(
                values
                    .value(s.bank().unwrap(), i)
                    .unwrap(),
            );
        }
    }
    hash.digest(&parts)
}

fn attest(attest_type: u16, extra: &[u8], attested: Attested) -> Attest {
    Attest {
        magic: TPM_GENERATED_VALUE,
        attest_type,
        qualified_signer: [&[0x00, 0x0b][..], &[0xaa; 32]].concat(),
        extra_data: extra.to_vec(),
        clock_info: ClockInfo {
            clock: 123_456,
            reset_count: 3,
            restart_count: 1,
            safe: 1,
        },
        firmware_version: 0x2016_0511_0016_2800,
        attested,
    }
}

fn quote(extra: &[u8], sel: Vec<PcrSelection>, pcr_digest: Vec<u8>) -> Attest {
    attest(
        TPM_ST_ATTEST_QUOTE,
        extra,
        Attested::Quote(QuoteInfo {
            pcr_select: sel,
            pcr_digest,
        }),
    )
}

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

fn scheme_bytes(scheme: Option<(u16, u16)>) -> Vec<u8> {
    match scheme {
        None => TPM_ALG_NULL.to_be_bytes().to_vec(),
        Some((alg, hash)) => [alg.to_be_bytes(), hash.to_be_bytes()].concat(),
    }
}

fn ecc_ak(curve_id: u16, scheme: Option<(u16, u16)>, attrs: u32, x: &[u8], y: &[u8]) -> Vec<u8> {
    [
        &TPM_ALG_ECC.to_be_bytes()[..],
        &0x000bu16.to_be_bytes(),
        &attrs.to_be_bytes(),
        &tpm2b(&[]),
        &TPM_ALG_NULL.to_be_bytes(),
        &scheme_bytes(scheme),
        &curve_id.to_be_bytes(),
        &TPM_ALG_NULL.to_be_bytes(),
        &tpm2b(x),
        &tpm2b(y),
    ]
    .concat()
}

fn rsa_ak(scheme: Option<(u16, u16)>, attrs: u32, n: &[u8], exponent: u32) -> Vec<u8> {
    [
        &TPM_ALG_RSA.to_be_bytes()[..],
        &0x000bu16.to_be_bytes(),
        &attrs.to_be_bytes(),
        &tpm2b(&[]),
        &TPM_ALG_NULL.to_be_bytes(),
        &scheme_bytes(scheme),
        &((n.len() * 8) as u16).to_be_bytes(),
        &exponent.to_be_bytes(),
        &tpm2b(n),
    ]
    .concat()
}

struct EcKey {
    pair: EcdsaKeyPair,
    curve: EccCurve,
}

impl EcKey {
    fn new(curve: EccCurve) -> Self {
        let rng = SystemRandom::new();
        let alg = match curve {
            EccCurve::P256 => &rs::ECDSA_P256_SHA256_FIXED_SIGNING,
            EccCurve::P384 => &rs::ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self { pair, curve }
    }

    fn ak(&self, scheme: Option<(u16, u16)>, attrs: u32) -> Vec<u8> {
        let point = self.pair.public_key().as_ref();
        let size = self.curve.coordinate_len();
        ecc_ak(
            self.curve.curve_id(),
            scheme,
            attrs,
            &point[1..=size],
            &point[1 + size..],
        )
    }

    fn hash(&self) -> HashAlg {
        match self.curve {
            EccCurve::P256 => HashAlg::Sha256,
            EccCurve::P384 => HashAlg::Sha384,
        }
    }

    /// A TPMT_SIGNATURE (ECDSA) over `message`.
    fn sign(&self, message: &[u8]) -> Signature {
        let fixed = self
            .pair
            .sign(&SystemRandom::new(), message)
            .unwrap();
        let (r, s) = fixed
            .as_ref()
            .split_at(self.curve.coordinate_len());
        Signature {
            scheme: SigScheme::Ecdsa,
            hash: self.hash(),
            value: SigValue::Ecc {
                r: r.to_vec(),
                s: s.to_vec(),
            },
        }
    }
}

/// A complete, valid ECDSA quote: (attest bytes, signature bytes, AK bytes, PCR values).
struct Fixture {
    attest: Vec<u8>,
    signature: Vec<u8>,
    ak: Vec<u8>,
    pcrs: PcrValues,
    nonce: Vec<u8>,
}

impl Fixture {
    fn ecdsa(curve: EccCurve) -> Self {
        let key = EcKey::new(curve);
        let nonce = b"fresh nonce 0123456789".to_vec();
        let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[0, 1, 2, 7, 10])]);
        let digest = digest_of(&sel, &pcrs, key.hash());
        let attest = quote(&nonce, sel, digest).to_bytes();
        let signature = key.sign(&attest).to_bytes();
        let scheme = Some((TPM_ALG_ECDSA, key.hash().tpm_alg_id()));
        Self {
            attest,
            signature,
            ak: key.ak(scheme, AK_ATTRIBUTES),
            pcrs,
            nonce,
        }
    }

    fn input(&self) -> QuoteInput<'_> {
        QuoteInput {
            attest: &self.attest,
            signature: &self.signature,
            ak_public: &self.ak,
            nonce: Some(self.nonce.clone()),
            pcrs: Some(self.pcrs.clone()),
        }
    }

    fn verify(&self) -> Verdict {
        verify(&self.input(), &TpmPolicy::default())
    }
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.failures()
        .map(|c| c.step.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ECDSA.

#[test]
fn ecdsa_p256_quote_verifies() {
    let f = Fixture::ecdsa(EccCurve::P256);
    let v = f.verify();
    assert!(v.is_trusted(), "{v}");
    let steps: Vec<&str> = v
        .checks
        .iter()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "tpm.parse",
            "tpm.magic",
            "tpm.type",
            "tpm.signature",
            "tpm.ak",
            "tpm.qualifying_data",
            "tpm.pcr_selection",
            "tpm.pcr_digest",
            "tpm.clock"
        ]
    );
    let claims = serde_json::to_value(&v.claims).unwrap();
    assert_eq!(claims["ak_type"], "ecc-p256");
    assert_eq!(claims["signature_scheme"], "ecdsa-sha256");
    assert_eq!(claims["attest_type"], "quote");
    assert_eq!(claims["reset_count"], 3);
    assert_eq!(claims["restart_count"], 1);
    assert_eq!(claims["safe"], true);
    assert_eq!(claims["clock"], 123_456);
    assert_eq!(claims["firmware_version"], "2016051100162800");
    assert_eq!(claims["extra_data"], hex(&f.nonce));
    assert_eq!(
        claims["pcr_selection"]["sha256"],
        serde_json::json!([0, 1, 2, 7, 10])
    );
    assert_eq!(
        claims["pcrs"]["sha256"]["7"],
        hex(pcr_value(HashAlg::Sha256, 7))
    );
    let ak = Public::parse(&f.ak).unwrap();
    assert_eq!(claims["ak_name"], hex(ak.name()));
    assert!(v
        .check("tpm.ak")
        .unwrap()
        .detail
        .contains("not pinned"));
}

#[test]
fn ecdsa_p384_quote_verifies() {
    let f = Fixture::ecdsa(EccCurve::P384);
    let v = f.verify();
    assert!(v.is_trusted(), "{v}");
    let claims = serde_json::to_value(&v.claims).unwrap();
    assert_eq!(claims["ak_type"], "ecc-p384");
    assert_eq!(claims["signature_scheme"], "ecdsa-sha384");
}

#[test]
fn ecdsa_short_or_zero_padded_r_s_verify() {
    // TPMs may send r/s without (or with extra) leading zeros: both must verify.
    let key = EcKey::new(EccCurve::P256);
    let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[0])]);
    let digest = digest_of(&sel, &pcrs, HashAlg::Sha256);
    let attest = quote(b"n", sel, digest).to_bytes();
    let mut sig = key.sign(&attest);
    if let SigValue::Ecc { r, s } = &mut sig.value {
        r.insert(0, 0);
        let stripped = s.iter().position(|b| *b != 0).unwrap();
        s.drain(..stripped);
    }
    let sig = sig.to_bytes();
    let ak = key.ak(None, AK_ATTRIBUTES);
    let v = verify(
        &QuoteInput {
            attest: &attest,
            signature: &sig,
            ak_public: &ak,
            nonce: Some(b"n".to_vec()),
            pcrs: Some(pcrs),
        },
        &TpmPolicy::default(),
    );
    assert!(v.is_trusted(), "{v}");
}

#[test]
fn ecdsa_wrong_message_key_or_scheme_fails_signature() {
    let f = Fixture::ecdsa(EccCurve::P256);

    // Another key.
    let other = EcKey::new(EccCurve::P256).ak(None, AK_ATTRIBUTES);
    let v = verify(
        &QuoteInput {
            ak_public: &other,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.signature"], "{v}");

    // AK scheme says SHA-384, the signature uses SHA-256.
    let key = EcKey::new(EccCurve::P256);
    let ak = key.ak(Some((TPM_ALG_ECDSA, 0x000c)), AK_ATTRIBUTES);
    let sig = key.sign(&f.attest).to_bytes();
    let v = verify(
        &QuoteInput {
            ak_public: &ak,
            signature: &sig,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.signature"], "{v}");
    assert!(v
        .check("tpm.signature")
        .unwrap()
        .detail
        .contains("scheme"));

    // An ECDSA signature under an RSA AK.
    let rsa = rsa_ak(None, AK_ATTRIBUTES, &[0xc5; 256], 0);
    let v = verify(
        &QuoteInput {
            ak_public: &rsa,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.signature"], "{v}");

    // ECDSA with SHA-512 is not accepted.
    let mut sig = Signature::parse(&f.signature).unwrap();
    sig.hash = HashAlg::Sha512;
    let sig = sig.to_bytes();
    let v = verify(
        &QuoteInput {
            signature: &sig,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert!(!v.passed("tpm.signature"), "{v}");
}

#[test]
fn der_encoding_of_ecdsa_signatures_is_what_ring_expects() {
    let key = EcKey::new(EccCurve::P256);
    let msg = b"message";
    for _ in 0..16 {
        let sig = key.sign(msg);
        let SigValue::Ecc { r, s } = &sig.value else {
            unreachable!()
        };
        let der = super::verify::der_ecdsa(r, s);
        let point = key.pair.public_key().as_ref();
        rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_ASN1, point)
            .verify(msg, &der)
            .unwrap();
    }
    assert_eq!(super::verify::left_pad(&[0, 0, 1], 2), Some(vec![0, 1]));
    assert_eq!(super::verify::left_pad(&[1, 2, 3], 2), None);
}

// ---------------------------------------------------------------------------------------------
// RSA (keys from openssl when available; ring cannot generate RSA keys).

fn openssl_rsa_key() -> Option<RsaKeyPair> {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
        ])
        .output();
    match out {
        // OpenSSL 3 writes a DER RSAPrivateKey here; older versions a PKCS#8 PrivateKeyInfo.
        Ok(o) if o.status.success() => Some(
            RsaKeyPair::from_der(&o.stdout)
                .or_else(|_| RsaKeyPair::from_pkcs8(&o.stdout))
                .unwrap(),
        ),
        _ => {
            eprintln!("\n*** SKIPPED: openssl not on PATH, no RSA signing test ***\n");
            None
        }
    }
}

fn rsa_signature(key: &RsaKeyPair, scheme: SigScheme, message: &[u8]) -> Vec<u8> {
    let padding: &dyn rs::RsaEncoding = match scheme {
        SigScheme::RsaPss => &rs::RSA_PSS_SHA256,
        _ => &rs::RSA_PKCS1_SHA256,
    };
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(padding, &SystemRandom::new(), message, &mut sig)
        .unwrap();
    sig
}

#[test]
fn rsassa_and_rsapss_quotes_verify_with_an_openssl_key() {
    let Some(key) = openssl_rsa_key() else { return };
    let components = rs::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let (sel, pcrs) = selection(&[(HashAlg::Sha1, &[0, 1]), (HashAlg::Sha256, &[0, 1])]);
    let digest = digest_of(&sel, &pcrs, HashAlg::Sha256);
    let attest = quote(b"nonce", sel, digest).to_bytes();

    for (scheme, ak_scheme) in [
        (SigScheme::RsaSsa, None),
        (SigScheme::RsaPss, None),
        (SigScheme::RsaSsa, Some((TPM_ALG_RSASSA, 0x000b))),
        (SigScheme::RsaPss, Some((TPM_ALG_RSAPSS, 0x000b))),
    ] {
        let ak = rsa_ak(ak_scheme, AK_ATTRIBUTES, &components.n, 0);
        let raw = rsa_signature(&key, scheme, &attest);
        let sig = Signature {
            scheme,
            hash: HashAlg::Sha256,
            value: SigValue::Rsa(raw.clone()),
        }
        .to_bytes();
        let i = QuoteInput {
            attest: &attest,
            signature: &sig,
            ak_public: &ak,
            nonce: Some(b"nonce".to_vec()),
            pcrs: Some(pcrs.clone()),
        };
        let v = verify(&i, &TpmPolicy::default());
        assert!(v.is_trusted(), "{scheme:?} {ak_scheme:?}: {v}");
        let claims = serde_json::to_value(&v.claims).unwrap();
        assert_eq!(claims["ak_type"], "rsa-2048");
        assert_eq!(
            claims["signature_scheme"],
            format!("{}-sha256", scheme.name())
        );

        // The raw form is accepted for RSASSA only (NULL or RSASSA AK scheme).
        let v = verify(
            &QuoteInput {
                signature: &raw,
                ..i.clone()
            },
            &TpmPolicy::default(),
        );
        assert_eq!(
            v.is_trusted(),
            scheme == SigScheme::RsaSsa,
            "raw {scheme:?} {ak_scheme:?}: {v}"
        );
    }

    // A PSS signature under an RSASSA AK, and the reverse: scheme mismatch.
    for (scheme, ak_scheme) in [
        (SigScheme::RsaPss, TPM_ALG_RSASSA),
        (SigScheme::RsaSsa, TPM_ALG_RSAPSS),
    ] {
        let ak = rsa_ak(Some((ak_scheme, 0x000b)), AK_ATTRIBUTES, &components.n, 0);
        let sig = Signature {
            scheme,
            hash: HashAlg::Sha256,
            value: SigValue::Rsa(rsa_signature(&key, scheme, &attest)),
        }
        .to_bytes();
        let v = verify(
            &QuoteInput {
                attest: &attest,
                signature: &sig,
                ak_public: &ak,
                nonce: None,
                pcrs: Some(pcrs.clone()),
            },
            &TpmPolicy::default(),
        );
        assert_eq!(failed(&v), ["tpm.signature"], "{v}");
    }
}

#[test]
fn small_rsa_keys_fail_with_a_clear_detail() {
    let mut n = vec![0xc1; 128];
    n[127] |= 1;
    let ak = rsa_ak(None, AK_ATTRIBUTES, &n, 0);
    let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[0])]);
    let digest = digest_of(&sel, &pcrs, HashAlg::Sha256);
    let attest = quote(b"", sel, digest).to_bytes();
    let sig = Signature {
        scheme: SigScheme::RsaSsa,
        hash: HashAlg::Sha256,
        value: SigValue::Rsa(vec![0x42; 128]),
    }
    .to_bytes();
    let v = verify(
        &QuoteInput {
            attest: &attest,
            signature: &sig,
            ak_public: &ak,
            nonce: None,
            pcrs: Some(pcrs),
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.signature"], "{v}");
    let c = v.check("tpm.signature").unwrap();
    assert!(
        c.detail.contains("1024 bits") && c.detail.contains("2048"),
        "{c}"
    );
}

// ---------------------------------------------------------------------------------------------
// AK attributes and pins.

#[test]
fn ak_must_be_restricted_signing_and_match_pins() {
    let key = EcKey::new(EccCurve::P256);
    let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[0])]);
    let digest = digest_of(&sel, &pcrs, HashAlg::Sha256);
    let attest = quote(b"", sel, digest).to_bytes();
    let sig = key.sign(&attest).to_bytes();
    let run = |attrs: u32, policy: &TpmPolicy| {
        let ak = key.ak(None, attrs);
        verify(
            &QuoteInput {
                attest: &attest,
                signature: &sig,
                ak_public: &ak,
                nonce: None,
                pcrs: Some(pcrs.clone()),
            },
            policy,
        )
    };
    let none = TpmPolicy::default();
    assert!(run(AK_ATTRIBUTES, &none).is_trusted());
    // Not restricted: it could sign a forged TPMS_ATTEST.
    assert_eq!(
        failed(&run(AK_ATTRIBUTES & !TPMA_OBJECT_RESTRICTED, &none)),
        ["tpm.ak"]
    );
    // Not a signing key.
    assert_eq!(
        failed(&run(AK_ATTRIBUTES & !TPMA_OBJECT_SIGN, &none)),
        ["tpm.ak"]
    );
    // A decryption key too.
    assert_eq!(
        failed(&run(AK_ATTRIBUTES | TPMA_OBJECT_DECRYPT, &none)),
        ["tpm.ak"]
    );

    // Not generated in the TPM, or duplicable: each of fixedTPM, fixedParent and
    // sensitiveDataOrigin is required, and a failure names what is missing.
    for (bit, name) in [
        (TPMA_OBJECT_FIXED_TPM, "fixedTPM"),
        (TPMA_OBJECT_FIXED_PARENT, "fixedParent"),
        (TPMA_OBJECT_SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    ] {
        assert_eq!(bit & AK_ATTRIBUTES, bit, "{name}");
        let v = run(AK_ATTRIBUTES & !bit, &none);
        assert_eq!(failed(&v), ["tpm.ak"], "{v}");
        let c = v.check("tpm.ak").unwrap();
        assert!(c.expected.contains("0x00050032"), "{c:?}");
        assert!(c.expected.contains(name), "{c:?}");
        assert_eq!(
            c.presented,
            format!("attributes 0x{:08x}", AK_ATTRIBUTES & !bit)
        );
        assert!(
            c.detail
                .contains(&format!("{name} clear")),
            "{c:?}"
        );
    }
    let v = run(
        AK_ATTRIBUTES & !(TPMA_OBJECT_FIXED_TPM | TPMA_OBJECT_SENSITIVE_DATA_ORIGIN),
        &none,
    );
    let c = v.check("tpm.ak").unwrap();
    assert!(
        c.detail
            .contains("fixedTPM clear, sensitiveDataOrigin clear"),
        "{c:?}"
    );
    assert_eq!(
        Public::parse(&key.ak(None, AK_ATTRIBUTES | TPMA_OBJECT_DECRYPT))
            .unwrap()
            .ak_attribute_problems(),
        ["decrypt set"]
    );

    let ak = Public::parse(&key.ak(None, AK_ATTRIBUTES)).unwrap();
    assert!(ak.ak_attribute_problems().is_empty());
    let pinned = TpmPolicy {
        ak_name: Some(hex(ak.name())),
        ak_sha256: Some(hex(HashAlg::Sha256.digest(ak.as_bytes()))),
        ..TpmPolicy::default()
    };
    assert!(run(AK_ATTRIBUTES, &pinned).is_trusted());
    // The name covers the attributes: the same key with other attributes has another name.
    let v = run(AK_ATTRIBUTES | 1 << 10, &pinned);
    assert_eq!(failed(&v), ["tpm.ak"], "{v}");
    let bad_hex = TpmPolicy {
        ak_name: Some("not hex".into()),
        ..TpmPolicy::default()
    };
    assert_eq!(failed(&run(AK_ATTRIBUTES, &bad_hex)), ["tpm.ak"]);
}

// ---------------------------------------------------------------------------------------------
// Quote contents.

#[test]
fn pcr_digest_follows_the_quote_selection_order() {
    let key = EcKey::new(EccCurve::P256);
    let ak = key.ak(None, AK_ATTRIBUTES);
    // sha256 first, then sha1: not the bank order of a BTreeMap.
    let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[3, 1]), (HashAlg::Sha1, &[0, 16, 23])]);
    let good = digest_of(&sel, &pcrs, HashAlg::Sha256);
    let mut sorted = sel.clone();
    sorted.reverse();
    let wrong_order = digest_of(&sorted, &pcrs, HashAlg::Sha256);
    assert_ne!(good, wrong_order);
    for (digest, trusted) in [(good, true), (wrong_order, false)] {
        let attest = quote(b"", sel.clone(), digest).to_bytes();
        let sig = key.sign(&attest).to_bytes();
        let v = verify(
            &QuoteInput {
                attest: &attest,
                signature: &sig,
                ak_public: &ak,
                nonce: None,
                pcrs: Some(pcrs.clone()),
            },
            &TpmPolicy::default(),
        );
        assert_eq!(v.is_trusted(), trusted, "{v}");
        if !trusted {
            assert_eq!(failed(&v), ["tpm.pcr_digest"]);
        }
    }
}

#[test]
fn unknown_bank_and_non_quote_types_fail_by_name() {
    let key = EcKey::new(EccCurve::P256);
    let ak = key.ak(None, AK_ATTRIBUTES);
    let run = |a: Attest, pcrs: Option<PcrValues>| {
        let attest = a.to_bytes();
        let sig = key.sign(&attest).to_bytes();
        verify(
            &QuoteInput {
                attest: &attest,
                signature: &sig,
                ak_public: &ak,
                nonce: None,
                pcrs,
            },
            &TpmPolicy::default(),
        )
    };

    // SM3_256 bank (0x0012) with PCRs selected.
    let sm3 = vec![PcrSelection {
        hash_alg: 0x0012,
        select: vec![1, 0, 0],
    }];
    let v = run(quote(b"", sm3, vec![0; 32]), Some(PcrValues::default()));
    assert_eq!(failed(&v), ["tpm.pcr_selection", "tpm.pcr_digest"], "{v}");
    // An SM3 entry that selects nothing is ignored.
    let (mut sel, pcrs) = selection(&[(HashAlg::Sha256, &[4])]);
    sel.push(PcrSelection {
        hash_alg: 0x0012,
        select: vec![0, 0, 0],
    });
    let digest = digest_of(&sel[..1], &pcrs, HashAlg::Sha256);
    let v = run(quote(b"", sel, digest), Some(pcrs));
    assert!(v.is_trusted(), "{v}");

    // TPM2_Certify output (0x8017): parsed, signature valid, refused at tpm.type.
    let certify = attest(0x8017, b"", Attested::Other(vec![1, 2, 3, 4]));
    let reparsed = Attest::parse(&certify.to_bytes()).unwrap();
    assert_eq!(reparsed, certify);
    let v = run(certify, None);
    assert!(v.passed("tpm.signature"), "{v}");
    assert!(!v.passed("tpm.type"));
    let c = v.check("tpm.type").unwrap();
    assert_eq!(c.expected, "quote (8018)");
    assert_eq!(c.presented, "certify (8017)");
    assert!(!v.passed("tpm.pcr_digest"));
}

#[test]
fn malformed_inputs_fail_closed_with_every_step_recorded() {
    let f = Fixture::ecdsa(EccCurve::P256);
    let policy = TpmPolicy {
        pcrs: BTreeMap::from([(HashAlg::Sha256, BTreeMap::from([(0, "00".repeat(32))]))]),
        ..TpmPolicy::default()
    };
    let v = verify(
        &QuoteInput {
            attest: &[],
            signature: &[],
            ak_public: &[],
            nonce: None,
            pcrs: None,
        },
        &policy,
    );
    assert!(!v.is_trusted());
    assert_eq!(v.checks.len(), 10, "{v}");
    assert!(v.checks.iter().all(|c| !c.ok), "{v}");
    let parse = v.check("tpm.parse").unwrap();
    for input in ["quote (TPMS_ATTEST)", "signature", "AK (TPMT_PUBLIC)"] {
        assert!(parse.detail.contains(input), "{parse}");
    }
    assert_eq!(v.check("tpm.magic").unwrap().presented, "none (truncated)");

    // A wrong magic is named as such.
    let mut bad = f.attest.clone();
    bad[0] = 0xfe;
    let v = verify(
        &QuoteInput {
            attest: &bad,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    let magic = v.check("tpm.magic").unwrap();
    assert!(!magic.ok);
    assert_eq!(magic.expected, "ff544347");
    assert_eq!(magic.presented, "fe544347");
    assert!(matches!(
        Attest::parse(&bad),
        Err(ParseError::InvalidValue { field: "magic", .. })
    ));
    // Only the signature of the other input parsed; the signature over the bad bytes fails.
    assert!(!v.passed("tpm.signature"));
}

#[test]
fn tpm2b_wrappers_are_accepted() {
    let f = Fixture::ecdsa(EccCurve::P256);
    let attest = tpm2b(&f.attest);
    let ak = tpm2b(&f.ak);
    let v = verify(
        &QuoteInput {
            attest: &attest,
            ak_public: &ak,
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert!(v.is_trusted(), "{v}");
    assert_eq!(
        Public::parse(&ak).unwrap().name(),
        Public::parse(&f.ak).unwrap().name()
    );
    assert_eq!(
        Attest::parse(&attest).unwrap(),
        Attest::parse(&f.attest).unwrap()
    );
}

#[test]
fn qualifying_data_and_policy_pcrs() {
    let f = Fixture::ecdsa(EccCurve::P256);
    let v = verify(
        &QuoteInput {
            nonce: Some(b"stale".to_vec()),
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.qualifying_data"]);
    assert_eq!(
        v.check("tpm.qualifying_data")
            .unwrap()
            .expected,
        hex(b"stale")
    );

    let good = hex(pcr_value(HashAlg::Sha256, 7));
    let policy: TpmPolicy = serde_json::from_str(&format!(
        r#"{{"pcrs": {{"sha256": {{"7": "{good}"}}}}, "pcr_selection": {{"sha256": [0, 1, 2, 7, 10]}}}}"#
    ))
    .unwrap();
    assert!(verify(&f.input(), &policy).is_trusted());
    let mut bad = policy.clone();
    bad.pcrs
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .insert(2, "zz".into());
    let v = verify(&f.input(), &bad);
    assert_eq!(failed(&v), ["tpm.policy.pcrs"]);
    assert!(v
        .check("tpm.policy.pcrs")
        .unwrap()
        .detail
        .contains("sha256 PCR 2"));
    // No PCR values: both the digest and the policy fail.
    let v = verify(
        &QuoteInput {
            pcrs: None,
            ..f.input()
        },
        &policy,
    );
    assert_eq!(failed(&v), ["tpm.pcr_digest", "tpm.policy.pcrs"]);
    // A PCR value of the wrong length.
    let mut pcrs = f.pcrs.clone();
    pcrs.insert(HashAlg::Sha256, 0, vec![0; 20]);
    let v = verify(
        &QuoteInput {
            pcrs: Some(pcrs),
            ..f.input()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed(&v), ["tpm.pcr_selection", "tpm.pcr_digest"]);
}

// ---------------------------------------------------------------------------------------------
// Parsers.

#[test]
fn attest_parser_caps_and_trailing_bytes() {
    let (sel, _) = selection(&[(HashAlg::Sha256, &[0])]);
    let a = quote(&[7; 64], sel.clone(), vec![1; 32]);
    let bytes = a.to_bytes();
    assert_eq!(Attest::parse(&bytes).unwrap(), a);

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Attest::parse(&trailing),
        Err(ParseError::TrailingBytes { .. })
    ));

    let too_long = quote(&[7; 65], sel.clone(), vec![1; 32]).to_bytes();
    assert!(matches!(
        Attest::parse(&too_long),
        Err(ParseError::TooLarge {
            field: "extraData",
            ..
        })
    ));

    let wide = quote(
        b"",
        vec![PcrSelection {
            hash_alg: 0x000b,
            select: vec![0; 9],
        }],
        vec![],
    )
    .to_bytes();
    assert!(matches!(
        Attest::parse(&wide),
        Err(ParseError::TooLarge { .. })
    ));

    let many = quote(b"", vec![sel[0].clone(); 17], vec![]).to_bytes();
    assert!(matches!(
        Attest::parse(&many),
        Err(ParseError::TooLarge {
            field: "pcrSelect.count",
            ..
        })
    ));

    for cut in 0..bytes.len() {
        assert!(
            matches!(
                Attest::parse(&bytes[..cut]),
                Err(ParseError::Truncated { .. })
            ),
            "{cut}"
        );
    }
    assert!(matches!(
        Attest::parse(&vec![0xff; MAX_ATTEST_SIZE + 1]),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn pcr_selection_bitmaps() {
    let s = PcrSelection {
        hash_alg: 0x000b,
        select: vec![0x81, 0x00, 0x01, 0x80],
    };
    assert_eq!(s.indices(), [0, 7, 16, 31]);
    assert_eq!(s.bank(), Some(HashAlg::Sha256));
    let unknown = PcrSelection {
        hash_alg: 0x0012,
        select: vec![],
    };
    assert_eq!(unknown.bank_name(), "0x0012");
    // Hand-built oversized bitmaps do not overflow.
    let huge = PcrSelection {
        hash_alg: 0x000b,
        select: vec![0xff; 300],
    };
    assert_eq!(huge.indices().len(), 256);
    assert_eq!(huge.indices().last(), Some(&255));
}

#[test]
fn signature_parser() {
    let sig = Signature {
        scheme: SigScheme::Ecdsa,
        hash: HashAlg::Sha256,
        value: SigValue::Ecc {
            r: vec![1; 32],
            s: vec![2; 32],
        },
    };
    let bytes = sig.to_bytes();
    assert_eq!(Signature::parse(&bytes).unwrap(), sig);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Signature::parse(&trailing),
        Err(ParseError::TrailingBytes { .. })
    ));
    // RSAES (an encryption scheme) and HMAC are not signature schemes here.
    for alg in [0x0015u16, 0x0005] {
        let mut b = bytes.clone();
        b[..2].copy_from_slice(&alg.to_be_bytes());
        assert!(matches!(
            Signature::parse(&b),
            Err(ParseError::Unsupported {
                field: "sigAlg",
                ..
            })
        ));
    }
    let mut b = bytes.clone();
    b[2..4].copy_from_slice(&0x0012u16.to_be_bytes());
    assert!(matches!(
        Signature::parse(&b),
        Err(ParseError::Unsupported { field: "hash", .. })
    ));
    let huge = [&[0x00, 0x14, 0x00, 0x0b, 0x04, 0x01][..], &[0; 1025]].concat();
    assert!(matches!(
        Signature::parse(&huge),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn public_parser() {
    let key = EcKey::new(EccCurve::P256);
    let ak = key.ak(Some((TPM_ALG_ECDSA, 0x000b)), AK_ATTRIBUTES);
    let p = Public::parse(&ak).unwrap();
    assert_eq!(p.as_bytes(), ak.as_slice());
    assert_eq!(p.name_alg, HashAlg::Sha256);
    assert_eq!(
        p.scheme,
        Some(KeyScheme {
            alg: TPM_ALG_ECDSA,
            hash: Some(0x000b),
            count: None
        })
    );
    assert_eq!(p.name()[..2], [0x00, 0x0b]);
    assert_eq!(p.name()[2..], HashAlg::Sha256.digest(&ak)[..]);
    assert!(p.is_restricted_signing());

    let mut trailing = ak.clone();
    trailing.push(0);
    assert!(matches!(
        Public::parse(&trailing),
        Err(ParseError::TrailingBytes { .. })
    ));
    // P-521 is not supported.
    let p521 = ecc_ak(0x0005, None, AK_ATTRIBUTES, &[1; 66], &[2; 66]);
    assert!(matches!(
        Public::parse(&p521),
        Err(ParseError::Unsupported {
            field: "parameters.curveID",
            ..
        })
    ));
    // KEYEDHASH objects are not keys we verify with.
    let mut keyed = ak.clone();
    keyed[..2].copy_from_slice(&0x0008u16.to_be_bytes());
    assert!(matches!(
        Public::parse(&keyed),
        Err(ParseError::Unsupported { field: "type", .. })
    ));
    // keyBits must match the modulus.
    let mut rsa = rsa_ak(None, AK_ATTRIBUTES, &[0xc1; 256], 0);
    assert!(Public::parse(&rsa).is_ok());
    rsa[14..16].copy_from_slice(&1024u16.to_be_bytes());
    assert!(matches!(
        Public::parse(&rsa),
        Err(ParseError::InvalidValue {
            field: "unique.rsa",
            ..
        })
    ));
    // A symmetric definition and an ECDAA scheme (hash + count) parse.
    let with_sym = [
        &TPM_ALG_ECC.to_be_bytes()[..],
        &0x000bu16.to_be_bytes(),
        &AK_ATTRIBUTES.to_be_bytes(),
        &tpm2b(&[9; 32]),
        &[0x00, 0x06, 0x00, 0x80, 0x00, 0x43],
        &[0x00, 0x1a, 0x00, 0x0b, 0x00, 0x01],
        &TPM_ECC_NIST_P256.to_be_bytes(),
        &[0x00, 0x20, 0x00, 0x0b],
        &tpm2b(&[1; 32]),
        &tpm2b(&[2; 32]),
    ]
    .concat();
    let p = Public::parse(&with_sym).unwrap();
    assert_eq!(
        p.symmetric,
        Some(SymDef {
            alg: 6,
            key_bits: 128,
            mode: 0x43
        })
    );
    assert_eq!(p.scheme.unwrap().count, Some(1));
    assert_eq!(
        p.key,
        PublicKey::Ecc {
            curve: EccCurve::P256,
            kdf: Some((0x0020, 0x000b)),
            x: vec![1; 32],
            y: vec![2; 32]
        }
    );
    for cut in 0..with_sym.len() {
        assert!(Public::parse(&with_sym[..cut]).is_err());
    }
}

#[test]
fn rsa_public_from_components() {
    let n = [&[0u8, 0][..], &[0xc3; 256]].concat();
    let p = Public::from_rsa_components(&n, &[1, 0, 1]).unwrap();
    assert_eq!(p.type_name(), "rsa-2048");
    assert_eq!(p.object_attributes, AK_ATTRIBUTES);
    assert!(p.is_restricted_signing());
    assert_eq!(p.scheme, None);
    assert_eq!(
        p.key,
        PublicKey::Rsa {
            key_bits: 2048,
            exponent: 0,
            modulus: vec![0xc3; 256]
        }
    );
    assert_eq!(Public::parse(p.as_bytes()).unwrap(), p);
    let p3 = Public::from_rsa_components(&n, &[0, 3]).unwrap();
    assert!(matches!(p3.key, PublicKey::Rsa { exponent: 3, .. }));
    assert!(Public::from_rsa_components(&n, &[1, 0, 0, 0, 1]).is_err());
    assert!(Public::from_rsa_components(&n, &[]).is_err());
    assert!(Public::from_rsa_components(&[0, 0], &[3]).is_err());
    assert!(Public::from_rsa_components(&[1; 1025], &[3]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Policy and PCR value documents.

#[test]
fn pcr_values_json() {
    let text = format!(
        r#"{{"sha256": {{"0": "{}", "10": "{}"}}, "SHA1": {{"23": "{}"}}}}"#,
        "AB".repeat(32),
        "00".repeat(32),
        "ff".repeat(20)
    );
    let p = PcrValues::from_json(&text).unwrap();
    assert_eq!(p.value(HashAlg::Sha256, 0), Some(&[0xab; 32][..]));
    assert_eq!(p.value(HashAlg::Sha1, 23), Some(&[0xff; 20][..]));
    assert_eq!(p.to_hex_map()["sha256"][&10], "00".repeat(32));

    for bad in [
        r#"{"md5": {"0": "00"}}"#.to_owned(),
        format!(r#"{{"sha256": {{"64": "{}"}}}}"#, "00".repeat(32)),
        format!(r#"{{"sha256": {{"x": "{}"}}}}"#, "00".repeat(32)),
        r#"{"sha256": {"0": "zz"}}"#.to_owned(),
        format!(r#"{{"sha256": {{"0": "{}"}}}}"#, "00".repeat(20)),
        "[1, 2]".to_owned(),
    ] {
        assert!(PcrValues::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn policy_json_is_strict() {
    let p: TpmPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(p, TpmPolicy::default());
    assert!(serde_json::from_str::<TpmPolicy>(r#"{"ak_nmae": "00"}"#).is_err());
    let p: TpmPolicy = serde_json::from_str(
        r#"{"ak_name": "000b00", "pcr_selection": {"sha1": [0, 1]}, "pcrs": {"sha384": {"3": "00"}}}"#,
    )
    .unwrap();
    assert_eq!(p.pcr_selection.unwrap()[&HashAlg::Sha1], [0, 1]);
    assert_eq!(p.pcrs[&HashAlg::Sha384][&3], "00");
    assert!(crate::policy::Policy::from_json(r#"{"tpm": {"ak_sha256": "00"}}"#).is_ok());
}

#[test]
fn inspect_reports_without_verifying() {
    let f = Fixture::ecdsa(EccCurve::P256);
    let c = inspect_attest(&f.attest).unwrap();
    assert_eq!(c.attest_type, "quote");
    assert_eq!(c.extra_data, hex(&f.nonce));
    assert!(c.key.is_none());
    let json = serde_json::to_value(&c).unwrap();
    assert!(json.get("ak_name").is_none());
    assert!(json.get("pcrs").is_none());
    assert!(inspect_attest(&[1, 2, 3]).is_err());
}

/// A quote signed as genuine TPMs sign RSASSA-PSS (the largest salt that fits), and in FIPS
/// mode (salt = hash length), and with no salt: every one verifies through `tpm.signature`;
/// the same signature over another quote does not.
#[test]
fn rsapss_quotes_verify_whatever_the_salt_length() {
    use super::pss::tests::{key, public, sign};
    let (sel, pcrs) = selection(&[(HashAlg::Sha256, &[0, 1])]);
    for bits in [2048, 3072] {
        let key = key(bits);
        let (n, _) = public(key);
        let em_len = (bits - 1).div_ceil(8);
        for (hash, alg_id) in [(HashAlg::Sha256, 0x000b), (HashAlg::Sha384, 0x000c)] {
            // pcrDigest is computed with the signing hash.
            let digest = digest_of(&sel, &pcrs, hash);
            let attest = quote(b"nonce", sel.clone(), digest.clone()).to_bytes();
            let other = quote(b"other", sel.clone(), digest).to_bytes();
            let ak = rsa_ak(Some((TPM_ALG_RSAPSS, alg_id)), AK_ATTRIBUTES, &n, 0);
            let max = em_len - hash.digest_len() - 2;
            for salt in [0, hash.digest_len(), max] {
                let value = sign(key, hash, salt, &attest);
                let sig = Signature {
                    scheme: SigScheme::RsaPss,
                    hash,
                    value: SigValue::Rsa(value),
                }
                .to_bytes();
                let input = QuoteInput {
                    attest: &attest,
                    signature: &sig,
                    ak_public: &ak,
                    nonce: Some(b"nonce".to_vec()),
                    pcrs: Some(pcrs.clone()),
                };
                let v = verify(&input, &TpmPolicy::default());
                assert!(v.is_trusted(), "{bits} {hash:?} salt {salt}: {v}");
                let v = verify(
                    &QuoteInput {
                        attest: &other,
                        nonce: Some(b"other".to_vec()),
                        ..input.clone()
                    },
                    &TpmPolicy::default(),
                );
                assert_eq!(failed(&v), ["tpm.signature"], "{v}");
                let detail = &v.check("tpm.signature").unwrap().detail;
                assert!(detail.contains("RSASSA-PSS"), "{detail}");
            }
        }
    }
}
