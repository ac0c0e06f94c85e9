//! TPM 2.0 quotes captured on real platforms: a Google Compute Engine Shielded VM vTPM
//! (go-tpm-tools test attestations) and an Azure SEV-SNP confidential VM vTPM (trustee).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use ratls::digest::HashAlg;
use ratls::hexfmt::{decode, hex};
use ratls::tpm::{self, Attest, PcrValues, Public, QuoteInput, Signature, TpmPolicy};
use ratls::Verdict;
use ratls_test::{read_real, real_testdata, Mutations};

const GCE: &str = "tpm/gce-shielded-vm-go-tpm-tools";
const AZURE: &str = "sev-snp/genoa-azure-vtpm-trustee";
const GCE_AK_NAME: &str = "000bf175bdb57297b2b289973f819863d6c9d09c236725676914f4248c9a2404c2a4";

struct GceQuote {
    bank: HashAlg,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
}

struct Gce {
    ak: Vec<u8>,
    nonce: Vec<u8>,
    quotes: Vec<GceQuote>,
}

fn gce(dir: &Path) -> Gce {
    let json: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "derived-quotes.json")).unwrap();
    let nonce = decode(json["nonce_hex"].as_str().unwrap()).unwrap();
    let quotes = json["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let bank: HashAlg = q["pcr_bank"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut pcrs = PcrValues::default();
            for (index, value) in q["pcrs"].as_object().unwrap() {
                pcrs.insert(
                    bank,
                    index.parse().unwrap(),
                    decode(value.as_str().unwrap()).unwrap(),
                );
            }
            GceQuote {
                bank,
                attest: decode(q["tpms_attest_hex"].as_str().unwrap()).unwrap(),
                signature: decode(
                    q["tpmt_signature_hex"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap(),
                pcrs,
            }
        })
        .collect();
    Gce {
        ak: read_real(dir, "derived-ak_pub.tpmt"),
        nonce,
        quotes,
    }
}

fn input<'a>(g: &'a Gce, q: &'a GceQuote) -> QuoteInput<'a> {
    QuoteInput {
        attest: &q.attest,
        signature: &q.signature,
        ak_public: &g.ak,
        nonce: Some(g.nonce.clone()),
        pcrs: Some(q.pcrs.clone()),
    }
}

fn sha256_quote(g: &Gce) -> &GceQuote {
    g.quotes
        .iter()
        .find(|q| q.bank == HashAlg::Sha256)
        .unwrap()
}

fn failed_steps(v: &Verdict) -> Vec<&str> {
    v.failures()
        .map(|c| c.step.as_str())
        .collect()
}

fn tpm_claims(v: &Verdict) -> serde_json::Value {
    serde_json::to_value(&v.claims).unwrap()
}

#[test]
fn gce_quotes_verify_with_readme_claims() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    assert_eq!(g.quotes.len(), 3);
    let banks: Vec<HashAlg> = g
        .quotes
        .iter()
        .map(|q| q.bank)
        .collect();
    assert_eq!(banks, [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384]);

    let ak = Public::parse(&g.ak).unwrap();
    assert_eq!(hex(ak.name()), GCE_AK_NAME);
    assert_eq!(ak.object_attributes, 0x0005_0072);
    // fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign: what `tpm.ak` requires.
    assert!(ak.ak_attribute_problems().is_empty());
    assert_eq!(ak.type_name(), "rsa-2048");

    let policy = TpmPolicy {
        ak_name: Some(GCE_AK_NAME.into()),
        ak_sha256: Some(hex(HashAlg::Sha256.digest(&g.ak))),
        ..TpmPolicy::default()
    };
    for q in &g.quotes {
        let v = tpm::verify(&input(&g, q), &policy);
        assert!(v.is_trusted(), "{} bank:\n{v}", q.bank);
        for step in [
            "tpm.parse",
            "tpm.magic",
            "tpm.type",
            "tpm.signature",
            "tpm.ak",
            "tpm.qualifying_data",
            "tpm.pcr_selection",
            "tpm.pcr_digest",
            "tpm.clock",
        ] {
            assert!(v.passed(step), "{step} in {v}");
        }
        let c = tpm_claims(&v);
        assert_eq!(c["attest_type"], "quote");
        assert_eq!(c["extra_data"], "9009");
        assert_eq!(c["reset_count"], 10);
        assert_eq!(c["restart_count"], 0);
        assert_eq!(c["safe"], true);
        assert_eq!(c["firmware_version"], "2016051100162800");
        assert_eq!(c["ak_name"], GCE_AK_NAME);
        assert_eq!(c["ak_type"], "rsa-2048");
        assert_eq!(c["signature_scheme"], "rsassa-sha256");
        let all: Vec<u8> = (0..24).collect();
        assert_eq!(c["pcr_selection"][q.bank.name()], serde_json::json!(all));
        assert_eq!(
            c["pcrs"][q.bank.name()]["0"],
            hex(q.pcrs.value(q.bank, 0).unwrap())
        );
        // README: pcrDigest is SHA-256 (the signing hash) for every bank.
        let concat: Vec<u8> = (0..24u8)
            .flat_map(|i| {
                q.pcrs
                    .value(q.bank, i)
                    .unwrap()
                    .to_vec()
            })
            .collect();
        assert_eq!(c["pcr_digest"], hex(HashAlg::Sha256.digest(&concat)));

        let sig = Signature::parse(&q.signature).unwrap();
        assert_eq!(sig.to_bytes(), q.signature);
        let attest = Attest::parse(&q.attest).unwrap();
        assert_eq!(attest.to_bytes(), q.attest);
    }
    let sha256 = sha256_quote(&g);
    assert_eq!(
        hex(sha256
            .pcrs
            .value(HashAlg::Sha256, 0)
            .unwrap()),
        "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf"
    );
}

#[test]
fn gce_inspect_reads_the_header() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let c = tpm::inspect_attest(&sha256_quote(&g).attest).unwrap();
    assert_eq!(c.attest_type, "quote");
    assert_eq!(c.extra_data, "9009");
    assert_eq!(c.reset_count, 10);
    assert_eq!(c.restart_count, 0);
    assert!(c.safe);
    assert_eq!(c.firmware_version, "2016051100162800");
    assert_eq!(c.pcr_selection["sha256"], (0..24).collect::<Vec<u8>>());
    assert!(c.key.is_none());
    assert!(c.pcrs.is_none());
}

#[test]
fn gce_wrong_nonce_fails_qualifying_data() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);
    let mut i = input(&g, q);
    i.nonce = Some(vec![0x90, 0x10]);
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert_eq!(failed_steps(&v), ["tpm.qualifying_data"], "{v}");
    let c = v.check("tpm.qualifying_data").unwrap();
    assert_eq!(c.expected, "9010");
    assert_eq!(c.presented, "9009");

    // No nonce: recorded, passes, says freshness is not established.
    i.nonce = None;
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert!(v.is_trusted(), "{v}");
    let c = v.check("tpm.qualifying_data").unwrap();
    assert_eq!(c.presented, "9009");
    assert!(c
        .detail
        .contains("freshness not established"));
}

#[test]
fn gce_changed_pcr_fails_pcr_digest() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    for q in &g.quotes {
        let mut i = input(&g, q);
        let pcrs = i.pcrs.as_mut().unwrap();
        let mut seven = pcrs.value(q.bank, 7).unwrap().to_vec();
        seven[0] ^= 1;
        pcrs.insert(q.bank, 7, seven);
        let v = tpm::verify(&i, &TpmPolicy::default());
        assert_eq!(failed_steps(&v), ["tpm.pcr_digest"], "{v}");
    }
}

#[test]
fn gce_flipped_signature_fails_signature() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);
    let mut sig = q.signature.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x80;
    let mut i = input(&g, q);
    i.signature = &sig;
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert_eq!(failed_steps(&v), ["tpm.signature"], "{v}");

    // The signature of another bank's quote does not verify this one.
    let other = &g.quotes[0];
    let mut i = input(&g, q);
    i.signature = &other.signature;
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert_eq!(failed_steps(&v), ["tpm.signature"], "{v}");
}

#[test]
fn gce_ak_pinned_to_another_name_fails_ak() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);
    let mut other = GCE_AK_NAME.to_owned();
    other.replace_range(10..12, "00");
    let policy = TpmPolicy {
        ak_name: Some(other),
        ..TpmPolicy::default()
    };
    let v = tpm::verify(&input(&g, q), &policy);
    assert_eq!(failed_steps(&v), ["tpm.ak"], "{v}");

    let policy = TpmPolicy {
        ak_sha256: Some("00".repeat(32)),
        ..TpmPolicy::default()
    };
    let v = tpm::verify(&input(&g, q), &policy);
    assert_eq!(failed_steps(&v), ["tpm.ak"], "{v}");

    // Upper-case pins match.
    let policy = TpmPolicy {
        ak_name: Some(GCE_AK_NAME.to_ascii_uppercase()),
        ..TpmPolicy::default()
    };
    assert!(tpm::verify(&input(&g, q), &policy).is_trusted());
}

#[test]
fn gce_policy_pcrs_and_selection() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);
    let pcr0 = "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf";
    let pcr7 = "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793";
    let policy: TpmPolicy = serde_json::from_str(&format!(
        r#"{{"pcrs": {{"sha256": {{"0": "{pcr0}", "7": "{}"}}}},
            "pcr_selection": {{"sha256": [{}]}}}}"#,
        pcr7.to_ascii_uppercase(),
        (0..24)
            .map(|i: u8| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ))
    .unwrap();
    let v = tpm::verify(&input(&g, q), &policy);
    assert!(v.is_trusted(), "{v}");
    assert!(v.passed("tpm.policy.pcrs"));

    // A PCR value mismatch names the PCR.
    let mut bad = policy.clone();
    bad.pcrs
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .insert(4, "11".repeat(32));
    let v = tpm::verify(&input(&g, q), &bad);
    assert_eq!(failed_steps(&v), ["tpm.policy.pcrs"], "{v}");
    let c = v.check("tpm.policy.pcrs").unwrap();
    assert!(c.detail.contains("sha256 PCR 4"), "{c}");
    assert_eq!(c.expected, format!("sha256:4={}", "11".repeat(32)));
    assert_eq!(
        c.presented,
        "sha256:4=d690bdac2aa8b73a1d718cb91990df07d0747b07ea57b3b2d0f0d511f0d90491"
    );

    // A policy PCR in a bank the quote did not cover fails too.
    let mut bad = policy.clone();
    bad.pcrs
        .insert(HashAlg::Sha1, BTreeMap::from([(0, "00".repeat(20))]));
    let v = tpm::verify(&input(&g, q), &bad);
    assert_eq!(failed_steps(&v), ["tpm.policy.pcrs"], "{v}");

    // A different selection than the policy's.
    let mut bad = policy.clone();
    bad.pcr_selection = Some(BTreeMap::from([(
        HashAlg::Sha256,
        vec![0, 1, 2, 3, 4, 5, 6, 7],
    )]));
    let v = tpm::verify(&input(&g, q), &bad);
    assert_eq!(failed_steps(&v), ["tpm.pcr_selection"], "{v}");
    let mut bad = policy;
    bad.pcr_selection = Some(BTreeMap::from([(HashAlg::Sha1, (0..24).collect())]));
    let v = tpm::verify(&input(&g, q), &bad);
    assert_eq!(failed_steps(&v), ["tpm.pcr_selection"], "{v}");
}

#[test]
fn gce_missing_or_extra_pcr_values_fail() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);

    // None at all: the digest cannot be checked, fail closed.
    let mut i = input(&g, q);
    i.pcrs = None;
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert_eq!(failed_steps(&v), ["tpm.pcr_digest"], "{v}");
    assert!(v
        .check("tpm.pcr_digest")
        .unwrap()
        .detail
        .contains("PCR values"));

    // One missing: named.
    let mut i = input(&g, q);
    i.pcrs
        .as_mut()
        .unwrap()
        .banks
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .remove(&23);
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert!(!v.is_trusted());
    let c = v.check("tpm.pcr_selection").unwrap();
    assert!(!c.ok && c.detail.contains("missing for 23"), "{c}");
    assert!(!v.passed("tpm.pcr_digest"));

    // Values of another bank: extra.
    let mut i = input(&g, q);
    i.pcrs
        .as_mut()
        .unwrap()
        .insert(HashAlg::Sha1, 0, vec![0; 20]);
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert_eq!(failed_steps(&v), ["tpm.pcr_selection"], "{v}");
    assert!(v
        .check("tpm.pcr_selection")
        .unwrap()
        .detail
        .contains("sha1 PCR values given for 0"));
}

#[test]
fn gce_pcr_values_from_cli_json() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let json: serde_json::Value =
        serde_json::from_slice(&read_real(&dir, "derived-quotes.json")).unwrap();
    let q = &json["quotes"][1];
    let doc = serde_json::json!({ q["pcr_bank"].as_str().unwrap(): q["pcrs"] }).to_string();
    let pcrs = PcrValues::from_json(&doc).unwrap();
    assert_eq!(&pcrs, &sha256_quote(&g).pcrs);
    let mut i = input(&g, sha256_quote(&g));
    i.pcrs = Some(pcrs);
    assert!(tpm::verify(&i, &TpmPolicy::default()).is_trusted());
}

// ---------------------------------------------------------------------------------------------
// Azure vTPM (SEV-SNP Genoa): raw RSASSA signature, AK from the HCL report's JWK.

const AZURE_NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";

fn base64url(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => break,
            _ => panic!("not base64url: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

struct Azure {
    attest: Vec<u8>,
    signature: Vec<u8>,
    ak: Public,
    pcrs: PcrValues,
}

fn azure(dir: &Path) -> Azure {
    let hcl = read_real(dir, "derived-hcl-report.bin");
    // Runtime-data header at 0x4C0: data_size, version, report_type, hash_type, var_data_size
    // (u32 LE each), then var_data (JSON) at 0x4D4.
    let var_size = u32::from_le_bytes(hcl[0x4D0..0x4D4].try_into().unwrap()) as usize;
    let var_data = &hcl[0x4D4..0x4D4 + var_size];
    let doc: serde_json::Value = serde_json::from_slice(var_data).unwrap();
    let jwk = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "HCLAkPub")
        .unwrap();
    let n = base64url(jwk["n"].as_str().unwrap());
    let e = base64url(jwk["e"].as_str().unwrap());
    assert_eq!(n.len(), 256);
    assert_eq!(e, [1, 0, 1]);
    let ak = Public::from_rsa_components(&n, &e).unwrap();

    let evidence: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "evidence-genoa.json")).unwrap();
    let mut pcrs = PcrValues::default();
    for (i, value) in evidence["quote"]["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        pcrs.insert(HashAlg::Sha256, i as u8, bytes);
    }
    Azure {
        attest: read_real(dir, "derived-tpms_attest.bin"),
        signature: read_real(dir, "derived-tpm_signature.bin"),
        ak,
        pcrs,
    }
}

#[test]
fn azure_quote_parses_as_readme_says() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let a = azure(&dir);
    let c = tpm::inspect_attest(&a.attest).unwrap();
    assert_eq!(c.attest_type, "quote");
    assert_eq!(c.extra_data, AZURE_NONCE);
    assert_eq!(c.pcr_selection.len(), 1);
    assert_eq!(c.pcr_selection["sha256"], (0..24).collect::<Vec<u8>>());
    assert_eq!(
        c.pcr_digest,
        "2b30a66d715a7801b86d7912b710838bd3bd8d9aeec7c7135563f938cf8b3399"
    );
    assert!(
        Signature::parse(&a.signature).is_err(),
        "a raw signature is not a TPMT_SIGNATURE"
    );
}

#[test]
fn azure_quote_verifies_with_raw_signature_and_jwk_ak() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let a = azure(&dir);
    assert_eq!(
        hex(a
            .pcrs
            .value(HashAlg::Sha256, 0)
            .unwrap()),
        "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338"
    );
    assert_eq!(
        hex(a
            .pcrs
            .value(HashAlg::Sha256, 10)
            .unwrap()),
        "e8bab51283f76e8c1185caf458b44eb5ce01b21f25bddb28ef39499b1502919e"
    );
    let ak_bytes = a.ak.as_bytes().to_vec();
    let i = QuoteInput {
        attest: &a.attest,
        signature: &a.signature,
        ak_public: &ak_bytes,
        nonce: Some(decode(AZURE_NONCE).unwrap()),
        pcrs: Some(a.pcrs.clone()),
    };
    let v = tpm::verify(&i, &TpmPolicy::default());
    assert!(v.is_trusted(), "{v}");
    assert!(v
        .check("tpm.signature")
        .unwrap()
        .detail
        .contains("raw RSASSA signature (Azure vTPM format)"));
    let c = tpm_claims(&v);
    assert_eq!(c["signature_scheme"], "rsassa-sha256");
    assert_eq!(c["ak_type"], "rsa-2048");

    // A flipped bit in the raw signature fails the signature step only.
    let mut sig = a.signature.clone();
    sig[17] ^= 4;
    let v = tpm::verify(
        &QuoteInput {
            signature: &sig,
            ..i.clone()
        },
        &TpmPolicy::default(),
    );
    assert_eq!(failed_steps(&v), ["tpm.signature"], "{v}");

    // A raw signature of the wrong size is not accepted as raw.
    let v = tpm::verify(
        &QuoteInput {
            signature: &a.signature[1..],
            ..i.clone()
        },
        &TpmPolicy::default(),
    );
    assert!(!v.is_trusted());
    assert!(!v.passed("tpm.parse"));
    assert!(!v.passed("tpm.signature"));

    // Under a GCE-style AK whose scheme is RSAPSS the raw form is refused.
    let mut pss = ak_bytes.clone();
    // type, nameAlg, attributes, authPolicy(empty), symmetric NULL, scheme at offset 12.
    assert_eq!(&pss[12..14], &[0x00, 0x10]);
    pss.splice(12..14, [0x00, 0x16, 0x00, 0x0b]);
    Public::parse(&pss).unwrap();
    let v = tpm::verify(
        &QuoteInput {
            ak_public: &pss,
            ..i.clone()
        },
        &TpmPolicy::default(),
    );
    assert!(!v.is_trusted());
    assert!(!v.passed("tpm.parse"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Mutations: never a panic, never trusted unless unchanged.

#[test]
fn gce_mutations_never_panic_and_never_trust_changed_bytes() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let g = gce(&dir);
    let q = sha256_quote(&g);
    let ak_name = hex(Public::parse(&g.ak).unwrap().name());
    let pinned = TpmPolicy {
        ak_name: Some(ak_name),
        ..TpmPolicy::default()
    };
    let original_key = Public::parse(&g.ak).unwrap().key;

    let mut counted = 0;
    for (what, bytes) in Mutations::of(&q.attest, 0x7e57_a77e, 2000).iter() {
        let _ = Attest::parse(bytes);
        let _ = tpm::inspect_attest(bytes);
        let v = tpm::verify(
            &QuoteInput {
                attest: bytes,
                ..input(&g, q)
            },
            &TpmPolicy::default(),
        );
        assert!(
            !v.is_trusted() || bytes == q.attest.as_slice(),
            "attest {what}: {v}"
        );
        counted += 1;
    }
    for (what, bytes) in Mutations::of(&q.signature, 0x5167, 2000).iter() {
        let _ = Signature::parse(bytes);
        let v = tpm::verify(
            &QuoteInput {
                signature: bytes,
                ..input(&g, q)
            },
            &TpmPolicy::default(),
        );
        assert!(
            !v.is_trusted() || bytes == q.signature.as_slice(),
            "signature {what}: {v}"
        );
        counted += 1;
    }
    for (what, bytes) in Mutations::of(&g.ak, 0xa4, 2000).iter() {
        let parsed = Public::parse(bytes);
        let i = QuoteInput {
            ak_public: bytes,
            ..input(&g, q)
        };
        // Pinned: only the original AK bytes are trusted.
        let v = tpm::verify(&i, &pinned);
        assert!(
            !v.is_trusted() || bytes == g.ak.as_slice(),
            "AK {what}: {v}"
        );
        // Unpinned: a changed AK can pass only if it is the same key, still restricted signing
        // (e.g. a flipped fixedTPM bit): the signature proves possession of that key.
        let v = tpm::verify(&i, &TpmPolicy::default());
        if v.is_trusted() && bytes != g.ak.as_slice() {
            let p = parsed.unwrap();
            assert_eq!(p.key, original_key, "AK {what}");
            assert!(p.is_restricted_signing(), "AK {what}");
        }
        counted += 1;
    }
    assert!(counted > 3000);
}

#[test]
fn azure_mutations_never_panic_and_never_trust_changed_bytes() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let a = azure(&dir);
    let ak_bytes = a.ak.as_bytes().to_vec();
    let base = QuoteInput {
        attest: &a.attest,
        signature: &a.signature,
        ak_public: &ak_bytes,
        nonce: Some(decode(AZURE_NONCE).unwrap()),
        pcrs: Some(a.pcrs.clone()),
    };
    for (what, bytes) in Mutations::of(&a.attest, 0xa2, 1000).iter() {
        let v = tpm::verify(
            &QuoteInput {
                attest: bytes,
                ..base.clone()
            },
            &TpmPolicy::default(),
        );
        assert!(
            !v.is_trusted() || bytes == a.attest.as_slice(),
            "attest {what}: {v}"
        );
    }
    for (what, bytes) in Mutations::of(&a.signature, 0xa3, 1000).iter() {
        let v = tpm::verify(
            &QuoteInput {
                signature: bytes,
                ..base.clone()
            },
            &TpmPolicy::default(),
        );
        assert!(
            !v.is_trusted() || bytes == a.signature.as_slice(),
            "signature {what}: {v}"
        );
    }
}
