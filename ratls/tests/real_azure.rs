//! Azure confidential VM evidence captured on a real Genoa host (trustee's `az-snp-vtpm` test
//! data, `$COSMIAN_REAL_TESTDATA/sev-snp/genoa-azure-vtpm-trustee`, see its README): the HCL
//! report verifies end to end, SNP report → runtime-data hash → HCLAkPub → vTPM quote.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use ratls::azure::{
    self, AzureClaims, AzurePolicy, HclReport, HwReport, ReportType, RuntimeData, VtpmQuote,
};
use ratls::bundle::{self, Bundle, Expectations, Requirements, TeeEvidence, TpmEvidence};
use ratls::digest::HashAlg;
use ratls::hexfmt::{decode, hex};
use ratls::snp::CertInput;
use ratls::tpm::{PcrValues, Public};
use ratls::{Claims, Platform, Policy, UnixTime, Verdict};
use ratls_test::{read_real, real_testdata, Mutations};

const AZURE: &str = "sev-snp/genoa-azure-vtpm-trustee";
/// The quote's extraData (README).
const NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";
const VM_UNIQUE_ID: &str = "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC";
const REPORT_DATA_HEAD: &str = "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f";

struct Sample {
    hcl: Vec<u8>,
    certs: CertInput,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
}

impl Sample {
    fn quote(&self) -> VtpmQuote<'_> {
        VtpmQuote {
            attest: &self.attest,
            signature: &self.signature,
            pcrs: Some(self.pcrs.clone()),
        }
    }
}

fn bytes_of(value: &serde_json::Value) -> Vec<u8> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect()
}

/// Everything from `evidence-genoa.json` (the VCEK too), plus the Genoa ASK/ARK.
fn sample(dir: &Path) -> Sample {
    let evidence: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "evidence-genoa.json")).unwrap();
    let mut pcrs = PcrValues::default();
    for (i, value) in evidence["quote"]["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        pcrs.insert(HashAlg::Sha256, u8::try_from(i).unwrap(), bytes_of(value));
    }
    let hcl = bytes_of(&evidence["report"]);
    assert_eq!(hcl, read_real(dir, "derived-hcl-report.bin"));
    Sample {
        hcl,
        certs: CertInput {
            vcek: Some(
                evidence["vcek"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            ),
            vlek: None,
            chain: Some(read_real(dir, "ask_ark_genoa.pem")),
            crl: None,
        },
        attest: bytes_of(&evidence["quote"]["message"]),
        signature: bytes_of(&evidence["quote"]["signature"]),
        pcrs,
    }
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn now() -> UnixTime {
    at("2026-01-01T00:00:00Z")
}

fn nonce() -> Vec<u8> {
    decode(NONCE).unwrap()
}

fn verify(s: &Sample, hcl: &[u8], quote: Option<&VtpmQuote<'_>>, nonce: Option<&[u8]>) -> Verdict {
    azure::verify_snp(hcl, &s.certs, quote, &Policy::default(), now(), nonce)
}

fn claims(v: &Verdict) -> &AzureClaims {
    match &v.claims {
        Claims::Azure(c) => c,
        other => panic!("unexpected claims {other:?}"),
    }
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.failures()
        .map(|c| c.step.as_str())
        .collect()
}

#[test]
fn hcl_report_parses_as_the_readme_says() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let r = HclReport::parse(&s.hcl).unwrap();
    assert_eq!(r.header.version, 2);
    assert_eq!(r.header.report_size, 2436);
    assert_eq!(r.header.request_type, 2);
    assert_eq!(r.header.status, 0);
    assert_eq!(r.report_type(), ReportType::Snp);
    let h = r.runtime_header;
    assert_eq!(
        (h.data_size, h.version, h.hash, h.var_data_size),
        (1220, 1, HashAlg::Sha256, 1200)
    );
    assert_eq!(r.var_data, &s.hcl[0x4D4..0x4D4 + 1200]);
    assert_eq!(r.padding, 2600 - 2436);
    let HwReport::Snp(snp) = &r.hw_report else {
        panic!("not an SNP report")
    };
    assert_eq!(
        snp.as_bytes(),
        &read_real(&dir, "derived-snp-report.bin")[..]
    );
    assert_eq!(snp.vmpl, 0);
    assert!(r.runtime_data_bound());
    assert_eq!(hex(r.var_data_digest()), REPORT_DATA_HEAD);

    let data: RuntimeData = r.runtime_data().unwrap();
    assert_eq!(data.kids(), ["HCLAkPub", "HCLEkPub"]);
    assert_eq!(data.vm_configuration.vm_unique_id, VM_UNIQUE_ID);
    assert!(data.vm_configuration.secure_boot);
    assert!(data.vm_configuration.tpm_enabled);
    assert_eq!(data.vm_configuration.tpm_persisted, Some(true));
    assert_eq!(data.vm_configuration.console_enabled, Some(true));
    assert_eq!(data.user_data.as_deref(), Some("0".repeat(128).as_str()));
    assert_eq!(
        data.vm_configuration_members["root-cert-thumbprint"],
        "6nZZnYaJc4KqUZ_yvA-mucFdYNouvlPnITnNMXsHl-0"
    );
    let ak = data.ak_public().unwrap();
    assert_eq!(ak.type_name(), "rsa-2048");
    assert!(ak.is_restricted_signing());
    let ek = data
        .key(azure::EK_KID)
        .unwrap()
        .rsa_public()
        .unwrap();
    assert!(!azure::same_rsa_key(&ak, &ek));

    // inspect: the same, without verifying.
    let c = azure::inspect(&s.hcl).unwrap();
    assert_eq!(c.report_type, ReportType::Snp);
    assert_eq!(c.runtime_data_digest, REPORT_DATA_HEAD);
    let rd = c.runtime_data.unwrap();
    assert_eq!(rd.vm_unique_id, VM_UNIQUE_ID);
    assert_eq!(rd.ak_type.as_deref(), Some("rsa-2048"));
    assert!(matches!(c.tee, Some(Claims::Snp(_))));
}

#[test]
fn genoa_sample_verifies_end_to_end() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let nonce = nonce();
    let v = verify(&s, &s.hcl, Some(&s.quote()), Some(&nonce));
    assert!(v.is_trusted(), "{v}");
    assert_eq!(v.platform, Platform::AzureSnp);
    let steps: Vec<&str> = v
        .checks
        .iter()
        .map(|c| c.step.as_str())
        .collect();
    for step in [
        "azure.parse",
        "tee.chain.ark",
        "tee.chain.ask",
        "tee.chain.vcek",
        "tee.signature",
        "tee.tcb",
        "tee.chip_id",
        "tee.policy.vmpl",
        "azure.runtime_data",
        "azure.ak",
        "azure.policy.secure_boot",
        "tpm.signature",
        "tpm.ak",
        "tpm.qualifying_data",
        "tpm.pcr_digest",
    ] {
        assert!(steps.contains(&step), "{step} missing: {v}");
    }
    // Order: hardware report, then runtime data, then AK, then the quote.
    let pos = |s: &str| {
        steps
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    assert!(pos("tee.signature") < pos("azure.runtime_data"));
    assert!(pos("azure.runtime_data") < pos("azure.ak"));
    assert!(pos("azure.ak") < pos("tpm.signature"));
    assert!(v
        .check("tpm.signature")
        .unwrap()
        .detail
        .contains("raw RSASSA"));
    assert!(v
        .check("tpm.ak")
        .unwrap()
        .detail
        .contains("HCLAkPub"));
    assert_eq!(
        v.check("tpm.qualifying_data")
            .unwrap()
            .presented,
        NONCE
    );

    let c = claims(&v);
    assert_eq!(c.report_type, ReportType::Snp);
    let rd = c.runtime_data.as_ref().unwrap();
    assert_eq!(rd.vm_unique_id, VM_UNIQUE_ID);
    assert!(rd.secure_boot && rd.tpm_enabled);
    assert_eq!(rd.keys, ["HCLAkPub", "HCLEkPub"]);
    let Some(Claims::Snp(snp)) = &c.tee else {
        panic!("no SNP claims")
    };
    assert_eq!(
        snp.measurement,
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae"
    );
    assert!(snp
        .report_data
        .starts_with(REPORT_DATA_HEAD));
    let Some(Claims::Tpm(tpm)) = &c.tpm else {
        panic!("no TPM claims")
    };
    assert_eq!(tpm.extra_data, NONCE);
    assert_eq!(
        tpm.pcr_digest,
        "2b30a66d715a7801b86d7912b710838bd3bd8d9aeec7c7135563f938cf8b3399"
    );
    // The claims serialize (the CLI prints them).
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["platform"], "azure-snp");
    assert_eq!(json["claims"]["runtime_data"]["vm_unique_id"], VM_UNIQUE_ID);
    assert_eq!(json["claims"]["tee"]["vmpl"], 0);

    // Without a quote: the report and the AK are vouched for, nothing else is claimed.
    let v = verify(&s, &s.hcl, None, None);
    assert!(v.is_trusted(), "{v}");
    assert!(v.check("tpm.signature").is_none());
    assert!(v
        .check("azure.ak")
        .unwrap()
        .detail
        .contains("no vTPM quote"));
    // A nonce without a quote to carry it is a failure, not a silent pass.
    let v = verify(&s, &s.hcl, None, Some(&nonce));
    assert_eq!(failed(&v), ["tpm.qualifying_data"]);
    // No nonce: recorded, freshness not established.
    let v = verify(&s, &s.hcl, Some(&s.quote()), None);
    assert!(v.is_trusted(), "{v}");
    assert!(v
        .check("tpm.qualifying_data")
        .unwrap()
        .detail
        .contains("freshness not established"));
}

#[test]
fn changed_runtime_data_fails_at_azure_runtime_data() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let nonce = nonce();
    // One character of vmUniqueId: still valid JSON, no longer the hashed runtime data.
    let mut hcl = s.hcl.clone();
    let var = 0x4D4..0x4D4 + 1200;
    let at = var.start
        + s.hcl[var.clone()]
            .windows(8)
            .position(|w| w == b"390CBCF5")
            .unwrap();
    hcl[at] = b'4';
    let v = verify(&s, &hcl, Some(&s.quote()), Some(&nonce));
    assert!(!v.is_trusted());
    assert_eq!(
        failed(&v)[..3],
        ["azure.runtime_data", "azure.ak", "azure.policy.secure_boot"]
    );
    assert!(v.passed("tee.signature"), "the SNP report itself is intact");
    assert!(v
        .check("tpm.signature")
        .is_some_and(|c| !c.ok && c.detail.starts_with("not run")));
    // What the hardware report does not vouch for is not claimed.
    assert!(claims(&v).runtime_data.is_none());

    // Every byte of the runtime data matters.
    for i in [0, 1, 100, 600, 1199] {
        let mut hcl = s.hcl.clone();
        hcl[0x4D4 + i] ^= 0x01;
        let v = verify(&s, &hcl, Some(&s.quote()), Some(&nonce));
        assert_eq!(failed(&v)[0], "azure.runtime_data", "byte {i}");
    }
    // The hardware report's report_data: the signature breaks first.
    let mut hcl = s.hcl.clone();
    hcl[0x20 + 0x50] ^= 0x80;
    let v = verify(&s, &hcl, Some(&s.quote()), Some(&nonce));
    assert!(failed(&v).contains(&"tee.signature"));
    assert!(failed(&v).contains(&"azure.runtime_data"));
}

#[test]
fn another_ak_fails_tpm_signature() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    // A quote from another vTPM (a GCE Shielded VM): its TPMT_SIGNATURE cannot verify under
    // the HCL's AK.
    if let Some(gce) = real_testdata("tpm/gce-shielded-vm-go-tpm-tools") {
        let json: serde_json::Value =
            serde_json::from_slice(&read_real(&gce, "derived-quotes.json")).unwrap();
        let q = json["quotes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["pcr_bank"] == "sha256")
            .unwrap();
        let attest = decode(q["tpms_attest_hex"].as_str().unwrap()).unwrap();
        let signature = decode(
            q["tpmt_signature_hex"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let mut pcrs = PcrValues::default();
        for (index, value) in q["pcrs"].as_object().unwrap() {
            pcrs.insert(
                HashAlg::Sha256,
                index.parse().unwrap(),
                decode(value.as_str().unwrap()).unwrap(),
            );
        }
        let quote = VtpmQuote {
            attest: &attest,
            signature: &signature,
            pcrs: Some(pcrs),
        };
        let v = verify(&s, &s.hcl, Some(&quote), None);
        assert_eq!(failed(&v), ["tpm.signature"], "{v}");
    }

    // The Azure quote presented with another AK (the vTPM's EK as if it were the AK), in a
    // bundle: the quote does not verify, and the AK is not the one the HCL report vouches for.
    let data = HclReport::parse(&s.hcl)
        .unwrap()
        .runtime_data()
        .unwrap();
    let ek = data
        .key(azure::EK_KID)
        .unwrap()
        .rsa_public()
        .unwrap();
    let ak = data.ak_public().unwrap();
    let run = |ak_public: &Public| {
        let b = azure_bundle(&s, ak_public.as_bytes());
        bundle::verify_bundle(&b, &Policy::default(), &expectations())
    };
    let v = run(&ek);
    let f = failed(&v);
    assert!(f.contains(&"binding.ak_tee"), "{v}");
    assert!(f.contains(&"tpm.signature"), "{v}");

    // With the right AK, the TEE part, the AK binding and the quote signature all pass; only the
    // qualifying data fails (the real quote's nonce is trustee's, not our binding hash).
    let v = run(&ak);
    assert_eq!(v.platform, Platform::AzureSnp);
    assert!(v.passed("azure.runtime_data"));
    assert!(v.passed("azure.ak"));
    assert!(v.passed("binding.ak_tee"), "{v}");
    assert!(v.passed("tpm.signature"), "{v}");
    assert!(v.passed("tpm.pcr_digest"), "{v}");
    assert!(v.check("binding.report_data").is_none());
    assert_eq!(failed(&v), ["tpm.qualifying_data"], "{v}");

    // A bundle without TPM evidence is not bound on Azure.
    let mut b = azure_bundle(&s, ak.as_bytes());
    b.tpm = None;
    let v = bundle::verify_bundle(&b, &Policy::default(), &expectations());
    assert!(v
        .check("binding.ak_tee")
        .is_some_and(|c| !c.ok && c.presented == "no TPM evidence"));
}

const SPKI: &[u8] = b"a TLS key's SubjectPublicKeyInfo";

fn expectations() -> Expectations<'static> {
    let requirements = Box::leak(Box::new(Requirements::new(ratls::binding::Role::agent())));
    requirements.require_ima = false;
    Expectations::new(requirements, SPKI, now())
}

fn azure_bundle(s: &Sample, ak_public: &[u8]) -> Bundle {
    let mut pcrs = std::collections::BTreeMap::new();
    for (bank, values) in &s.pcrs.banks {
        pcrs.insert(
            *bank,
            values
                .iter()
                .map(|(i, v)| (*i, v.clone().into()))
                .collect(),
        );
    }
    Bundle {
        version: bundle::VERSION,
        tee: Some(TeeEvidence::AzureSnp {
            hcl_report: s.hcl.clone().into(),
            vcek: s.certs.vcek.clone().map(Into::into),
            chain: s.certs.chain.clone().map(Into::into),
            crl: None,
        }),
        tpm: Some(TpmEvidence {
            attest: s.attest.clone().into(),
            signature: s.signature.clone().into(),
            ak_public: ak_public.to_vec().into(),
            pcrs,
            ek_cert: None,
        }),
        ima: None,
        event_log: None,
        batch: None,
        binding: ratls::binding::BindingClaims {
            role: ratls::binding::Role::agent(),
            spki_sha256: ratls::binding::spki_sha256(SPKI),
            ak_sha256: Some(ratls::binding::spki_sha256(ak_public)),
            issued_at: now().as_secs(),
            challenge: None,
            exporter: None,
        },
    }
}

#[test]
fn wrong_nonce_fails_tpm_qualifying_data() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let mut nonce = nonce();
    nonce[0] ^= 1;
    let v = verify(&s, &s.hcl, Some(&s.quote()), Some(&nonce));
    assert_eq!(failed(&v), ["tpm.qualifying_data"]);
    // Changed PCR values: the digest no longer matches.
    let mut quote = s.quote();
    let mut pcrs = s.pcrs.clone();
    pcrs.insert(HashAlg::Sha256, 10, vec![0; 32]);
    quote.pcrs = Some(pcrs);
    let v = verify(&s, &s.hcl, Some(&quote), Some(&self::nonce()));
    assert_eq!(failed(&v), ["tpm.pcr_digest"]);
}

#[test]
fn policy_pins_the_vm_and_secure_boot() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let run = |azure: AzurePolicy| {
        let policy = Policy {
            azure,
            ..Policy::default()
        };
        azure::verify_snp(&s.hcl, &s.certs, None, &policy, now(), None)
    };
    let v = run(AzurePolicy {
        vm_unique_id: Some(VM_UNIQUE_ID.to_ascii_lowercase()),
        ..AzurePolicy::default()
    });
    assert!(v.is_trusted(), "{v}");
    assert!(v.passed("azure.policy.vm_unique_id"));
    let v = run(AzurePolicy {
        vm_unique_id: Some("00000000-0000-0000-0000-000000000000".into()),
        ..AzurePolicy::default()
    });
    assert_eq!(failed(&v), ["azure.policy.vm_unique_id"]);
    // The Azure policy section reads from JSON and refuses unknown keys.
    let p = Policy::from_json(r#"{"azure": {"allow_secure_boot_off": true}}"#).unwrap();
    assert!(p.azure.allow_secure_boot_off);
    assert!(Policy::from_json(r#"{"azure": {"secure_boot": false}}"#).is_err());
    // The SNP policy applies to the embedded report (a wrong VMPL, a measurement pin).
    let policy = Policy {
        snp: ratls::snp::SnpPolicy {
            vmpl: 1,
            ..Default::default()
        },
        ..Policy::default()
    };
    let v = azure::verify_snp(&s.hcl, &s.certs, None, &policy, now(), None);
    assert_eq!(failed(&v), ["tee.policy.vmpl"]);
    // Expired VCEK (2032) names the chain step.
    let v = azure::verify_snp(
        &s.hcl,
        &s.certs,
        None,
        &Policy::default(),
        at("2033-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(failed(&v)[0], "tee.chain.validity");
    // The TDX entry point refuses an SNP HCL report at azure.parse.
    let v = azure::verify_tdx(&s.hcl, None, None, &Policy::default(), now(), None);
    assert_eq!(failed(&v), ["azure.parse"]);
    assert!(v
        .check("azure.parse")
        .unwrap()
        .detail
        .contains("azure-snp"));
}

/// A trusted verdict only for the original report, or for it with less of the NV index's zero
/// padding (the only bytes without meaning).
fn same_report(original: &[u8], variant: &[u8]) -> bool {
    variant.len() >= 2436 && original.starts_with(variant)
}

#[test]
fn mutations_never_panic_and_never_trust_changed_bytes() {
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let s = sample(&dir);
    let nonce = nonce();
    let mut parsed = 0;
    let mut trusted = 0;
    let mutations = Mutations::of(&s.hcl, 0xa2_0e_4c_1a, 2000);
    for (what, bytes) in mutations.iter() {
        if let Ok(r) = HclReport::parse(bytes) {
            parsed += 1;
            let _ = r.runtime_data();
            let _ = r.runtime_data_bound();
        }
        let _ = azure::inspect(bytes);
        let v = verify(&s, bytes, Some(&s.quote()), Some(&nonce));
        if v.is_trusted() {
            trusted += 1;
            assert!(same_report(&s.hcl, bytes), "{what}: trusted: {v}");
        }
        // A report that does not parse is rejected at its first step.
        if HclReport::parse(bytes).is_err() {
            assert_eq!(v.checks[0].step, "azure.parse", "{what}");
            assert!(!v.checks[0].ok, "{what}");
        }
    }
    assert!(
        parsed > 0 && trusted > 0,
        "parsed {parsed}, trusted {trusted}"
    );
    eprintln!(
        "{} mutations: {parsed} parsed, {trusted} trusted (padding truncations)",
        mutations.count()
    );

    // The quote's bytes under the HCL's AK: only the original verifies.
    for (what, bytes) in Mutations::of(&s.attest, 0x9a7e, 500).iter() {
        let quote = VtpmQuote {
            attest: bytes,
            ..s.quote()
        };
        let v = verify(&s, &s.hcl, Some(&quote), Some(&nonce));
        assert!(
            !v.is_trusted() || bytes == s.attest.as_slice(),
            "{what}: {v}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Azure TDX: no real HCL sample exists, so an HCL report is built around the TD report body of a
// real TDX quote; the quote verifies, the TD report matches it, and the (synthetic) runtime data
// is, rightly, not vouched for by that quote's report_data.

/// A `TDREPORT_STRUCT` with the values a quote's TD report body carries.
fn td_report_from(q: &ratls::tdx::TdReport) -> Vec<u8> {
    let mut td = vec![0u8; 1024];
    let mut put = |at: usize, bytes: &[u8]| td[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &[0x81, 0, 0, 0]);
    put(128, &q.report_data);
    put(256, &[0xff; 8]);
    put(264, &q.tee_tcb_svn);
    put(280, &q.mr_seam);
    put(328, &q.mr_signer_seam);
    put(376, &q.seam_attributes);
    put(512, &q.td_attributes);
    put(520, &q.xfam);
    put(528, &q.mr_td);
    put(576, &q.mr_config_id);
    put(624, &q.mr_owner);
    put(672, &q.mr_owner_config);
    for (i, rtmr) in q.rtmr.iter().enumerate() {
        put(720 + 48 * i, rtmr);
    }
    if let Some(t) = &q.td15 {
        put(384, &t.tee_tcb_svn2);
        put(912, &t.mr_service_td);
    }
    td
}

fn tdx_hcl(td: &[u8], var: &[u8]) -> Vec<u8> {
    let var_len = u32::try_from(var.len()).unwrap();
    let mut out = b"HCLA".to_vec();
    for v in [2u32, 0x4D4 + var_len, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(td);
    out.resize(0x4C0, 0);
    for v in [20 + var_len, 1, 4, 1, var_len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(var);
    out
}

#[test]
fn azure_tdx_trusts_the_td_report_only_through_a_matching_quote() {
    let Some(tdx_dir) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let quote = read_real(&tdx_dir, "tdx_quote.bin");
    let collateral = read_real(&tdx_dir, "collateral.json");
    let parsed = ratls::tdx::Quote::parse(&quote).unwrap();
    // Genuine runtime data (from the SNP sample): its hash is not the quote's report_data.
    let var = HclReport::parse(&read_real(&dir, "derived-hcl-report.bin"))
        .unwrap()
        .var_data
        .to_vec();
    let when = at("2025-07-01T00:00:00Z");
    let td_quote = azure::TdQuote {
        quote: &quote,
        collateral: Some(&collateral),
    };
    let run = |hcl: &[u8], tq: Option<&azure::TdQuote<'_>>| {
        azure::verify_tdx(hcl, tq, None, &Policy::default(), when, None)
    };

    let hcl = tdx_hcl(&td_report_from(&parsed.report), &var);
    let v = run(&hcl, Some(&td_quote));
    assert_eq!(v.platform, Platform::AzureTdx);
    for step in [
        "azure.parse",
        "azure.td_quote",
        "tee.signature",
        "tee.tcb",
        "azure.td_report",
    ] {
        assert!(v.passed(step), "{step}: {v}");
    }
    assert_eq!(
        failed(&v),
        ["azure.runtime_data", "azure.ak", "azure.policy.secure_boot"],
        "{v}"
    );
    assert!(matches!(
        claims(&v).tee,
        Some(Claims::Tdx(ref c)) if c.tcb_status.as_deref() == Some("UpToDate")
    ));

    // Without the quote: fails closed.
    let v = run(&hcl, None);
    assert!(failed(&v).contains(&"azure.td_quote"));

    // A TD report that is not the quoted one: named field by field.
    let mut td = td_report_from(&parsed.report);
    td[528] ^= 1; // mr_td
    td[720] ^= 1; // rtmr0
    let v = run(&tdx_hcl(&td, &var), Some(&td_quote));
    let check = v.check("azure.td_report").unwrap();
    assert!(!check.ok);
    assert!(check.detail.contains("mr_td, rtmr0"), "{}", check.detail);
    let mut td = td_report_from(&parsed.report);
    td[128] ^= 1; // report_data
    td[912] = 1; // servtd_hash on a TD 1.0 quote
    let v = run(&tdx_hcl(&td, &var), Some(&td_quote));
    let detail = &v
        .check("azure.td_report")
        .unwrap()
        .detail;
    assert!(
        detail.contains("report_data") && detail.contains("servtd_hash"),
        "{detail}"
    );

    // Without collateral the quote cannot be verified.
    let v = run(
        &hcl,
        Some(&azure::TdQuote {
            quote: &quote,
            collateral: None,
        }),
    );
    assert!(failed(&v).contains(&"tee.collateral.parse"));
    assert!(v.passed("azure.td_report"));
}

/// On Azure TDX the agent's evidence gets the host's quote over the paravisor's TD report from
/// Azure's quote endpoint, and the quote's Intel collateral, through the collateral plane
/// (`WithCollateral`); both then verify as above. A local server stands in for Azure's
/// `acc/tdquote` and Intel PCS (the real quote and the real PCS responses).
#[cfg(feature = "collateral")]
#[test]
fn azure_tdx_agent_evidence_gets_the_host_quote_and_its_collateral() {
    use std::sync::Arc;

    use base64::Engine as _;
    use ratls::attest::{AttestError, TeeAttester, TeeKind};
    use ratls::binding::ReportData;
    use ratls::collateral::{CollateralClient, CollateralConfig, WithCollateral};
    use ratls_test::collateral_server::{serve_tdx, Server};

    let Some(tdx_dir) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let Some(dir) = real_testdata(AZURE) else {
        return;
    };
    let server = Server::start();
    let sample = serve_tdx(&server, &tdx_dir);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    server.route(
        "/acc/tdquote",
        vec![],
        serde_json::to_vec(&serde_json::json!({ "quote": b64.encode(&sample.quote) })).unwrap(),
    );
    let parsed = ratls::tdx::Quote::parse(&sample.quote).unwrap();
    let var = HclReport::parse(&read_real(&dir, "derived-hcl-report.bin"))
        .unwrap()
        .var_data
        .to_vec();
    let hcl = tdx_hcl(&td_report_from(&parsed.report), &var);

    #[derive(Debug)]
    struct Paravisor(Vec<u8>);
    impl TeeAttester for Paravisor {
        fn kind(&self) -> TeeKind {
            TeeKind::AzureTdx
        }
        fn attest(&self, _: &ReportData) -> Result<TeeEvidence, AttestError> {
            Ok(TeeEvidence::AzureTdx {
                hcl_report: self.0.clone().into(),
                quote: None,
                collateral: None,
            })
        }
        fn binds_report_data(&self) -> bool {
            false
        }
    }
    let client = CollateralClient::new(CollateralConfig {
        kds_url: server.url(),
        pcs_url: server.url(),
        intel_root_crl_url: format!("{}/IntelSGXRootCA.der", server.url()),
        azure_tdquote_url: format!("{}/acc/tdquote", server.url()),
        cache_dir: None,
        ..CollateralConfig::default()
    });
    let tee = WithCollateral::new(Arc::new(Paravisor(hcl.clone())), Arc::new(client));
    assert!(!tee.binds_report_data());
    let evidence = tee
        .attest(&ReportData::for_raw_nonce(b"azure-tdx").unwrap())
        .unwrap();
    let TeeEvidence::AzureTdx {
        quote: Some(quote),
        collateral: Some(collateral),
        ..
    } = &evidence
    else {
        panic!("no quote or collateral: {evidence:?}")
    };
    assert_eq!(quote.as_slice(), &sample.quote[..]);
    assert_eq!(server.hits("/acc/tdquote"), 1);
    let td_quote = azure::TdQuote {
        quote,
        collateral: Some(collateral),
    };
    let v = azure::verify_tdx(
        &hcl,
        Some(&td_quote),
        None,
        &Policy::default(),
        at("2025-07-01T00:00:00Z"),
        None,
    );
    for step in [
        "azure.td_quote",
        "tee.signature",
        "tee.tcb",
        "azure.td_report",
    ] {
        assert!(v.passed(step), "{step}: {v}");
    }
}
