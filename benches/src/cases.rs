//! The benchmark cases. Each of ours sits next to a reference measured in the same run: the bare
//! cryptography the step cannot avoid, or the upstream library we build on.

use ratls::digest::HashAlg;
use ratls::ima::{self, ImaPolicy, Log, ReplayMode};
use ratls::pki::Cert;
use ratls::snp::{self, AttestationReport, CertInput, SnpPolicy};
use ratls::tdx::{self, Collateral, TdxPolicy};
use ratls::tpm::{self, PcrValues, QuoteInput, TpmPolicy};
use ratls::UnixTime;
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
};

use crate::{measure, Measurement};

fn real(sub: &str) -> std::path::PathBuf {
    ratls_test::real_testdata(sub)
        .unwrap_or_else(|| panic!("benchmarks need the real evidence ({sub})"))
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).expect("valid time")
}

/// The groups, in run order.
pub const GROUPS: [&str; 14] = [
    "snp",
    "tdx",
    "collateral",
    "tpm",
    "ima",
    "azure",
    "tpm-attester",
    "bundle",
    "tls",
    "walk",
    "batch",
    "audit",
    "reattest",
    "fleet",
];

/// A group: runs its cases at the given scale.
type Group = fn(&dyn Fn(u64) -> u64) -> Vec<Measurement>;

/// The groups named in `only` (every group when empty).
pub fn run(scale: &dyn Fn(u64) -> u64, only: &[String]) -> Vec<Vec<Measurement>> {
    let group: [Group; 14] = [
        snp,
        tdx,
        crate::collateral::run,
        tpm,
        ima,
        azure,
        tpm_attester,
        bundle,
        crate::tls::run,
        crate::walk::run,
        crate::batch::run,
        crate::audit::run,
        crate::reattest::run,
        crate::fleet::run,
    ];
    GROUPS
        .iter()
        .zip(group)
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == *name))
        .map(|(_, run)| run(scale))
        .collect()
}

fn snp(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let dir = real("sev-snp/milan-vcek-virtee");
    let report = ratls_test::read_real(&dir, "report_milan.hex");
    let certs = CertInput {
        vcek: Some(ratls_test::read_real(&dir, "vcek_milan.der")),
        chain: Some(ratls_test::read_real(&dir, "cert_chain_milan")),
        ..Default::default()
    };
    // The 2023 sample's TCB is below AMD's default floor for Milan: accepted explicitly.
    let policy = SnpPolicy {
        min_tcb: Some(snp::MinTcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        }),
        ..SnpPolicy::default()
    };
    let now = at("2026-01-01T00:00:00Z");
    assert!(snp::verify_bytes(&report, &certs, &policy, now).is_trusted());

    let parsed = AttestationReport::parse(&report).expect("report parses");
    let vcek = Cert::from_der_or_pem(
        certs
            .vcek
            .as_deref()
            .unwrap_or_default(),
    )
    .expect("vcek");
    let chain = Cert::many_from_der_or_pem(
        certs
            .chain
            .as_deref()
            .unwrap_or_default(),
    )
    .expect("chain");
    let (ask, ark) = (&chain[0], &chain[1]);
    let key = vcek.subject_public_key().expect("key");
    let n = scale(2000);
    vec![
        measure(
            "snp: verify Milan report, VCEK + ASK/ARK chain given (full verdict)",
            n,
            1,
            "op",
            || snp::verify_bytes(&report, &certs, &policy, now),
        ),
        measure(
            "snp: reference: VCEK signature by ASK + report ECDSA-P384 signature, bare ring",
            n,
            1,
            "op",
            || {
                vcek.verify_signed_by(ask).is_ok()
                    && UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &key)
                        .verify(parsed.signed_bytes(), &parsed.signature_fixed())
                        .is_ok()
            },
        ),
        measure(
            "snp: reference: the whole chain re-verified (3 RSA-PSS-4096), bare ring",
            n,
            1,
            "op",
            || {
                ark.verify_signed_by(ark).is_ok()
                    && ask.verify_signed_by(ark).is_ok()
                    && vcek.verify_signed_by(ask).is_ok()
            },
        ),
        measure("snp: parse report only", scale(100_000), 1, "op", || {
            AttestationReport::parse(&report).is_ok()
        }),
    ]
}

fn tdx(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let dir = real("tdx/v4-emr-phala-collateral");
    let quote = ratls_test::read_real(&dir, "tdx_quote.bin");
    let collateral_json = ratls_test::read_real(&dir, "collateral.json");
    let collateral = Collateral::from_json(&collateral_json).expect("collateral parses");
    let policy = TdxPolicy::default();
    let now = at("2025-07-01T00:00:00Z");
    assert!(tdx::verify(&quote, &collateral, &policy, now).is_trusted());
    let dcap = dcap_qvl::verify::QuoteVerifier::new_prod();
    assert!(dcap
        .verify(&quote, collateral.as_dcap(), now.as_secs())
        .is_ok());
    let n = scale(2000);
    vec![
        measure(
            "tdx: verify v4 quote, collateral pre-parsed (full verdict)",
            n,
            1,
            "op",
            || tdx::verify(&quote, &collateral, &policy, now),
        ),
        measure(
            "tdx: verify v4 quote, collateral JSON parsed each time",
            n,
            1,
            "op",
            || tdx::verify_bytes(&quote, &collateral_json, &policy, now),
        ),
        measure(
            "tdx: reference: dcap-qvl QuoteVerifier::verify alone (same quote and collateral)",
            n,
            1,
            "op",
            || dcap.verify(&quote, collateral.as_dcap(), now.as_secs()),
        ),
    ]
}

fn tpm(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let dir = real("tpm/gce-shielded-vm-go-tpm-tools");
    let quotes: serde_json::Value =
        serde_json::from_slice(&ratls_test::read_real(&dir, "derived-quotes.json")).expect("json");
    let q = quotes["quotes"]
        .as_array()
        .expect("quotes")
        .iter()
        .find(|q| q["pcr_bank"] == "sha256")
        .expect("sha256 quote");
    let attest = hex::decode(
        q["tpms_attest_hex"]
            .as_str()
            .unwrap_or_default(),
    )
    .expect("hex");
    let signature = hex::decode(
        q["tpmt_signature_hex"]
            .as_str()
            .unwrap_or_default(),
    )
    .expect("hex");
    let ak = ratls_test::read_real(&dir, "derived-ak_pub.tpmt");
    let pcrs = PcrValues::from_json(&serde_json::json!({ "sha256": q["pcrs"] }).to_string())
        .expect("pcrs");
    let input = QuoteInput {
        attest: &attest,
        signature: &signature,
        ak_public: &ak,
        nonce: Some(vec![0x90, 0x09]),
        pcrs: Some(pcrs),
    };
    let policy = TpmPolicy::default();
    assert!(tpm::verify(&input, &policy).is_trusted());
    let public = tpm::Public::parse(&ak).expect("ak");
    let tpm::structures::PublicKey::Rsa { modulus, .. } = public.key else {
        panic!("the GCE AK is RSA");
    };
    // The signature value is the last 256 bytes of the TPMT_SIGNATURE.
    let raw_sig = signature[signature.len() - 256..].to_vec();
    let key = RsaPublicKeyComponents {
        n: modulus,
        e: vec![1, 0, 1],
    };
    assert!(key
        .verify(&RSA_PKCS1_2048_8192_SHA256, &attest, &raw_sig)
        .is_ok());
    let n = scale(20_000);
    vec![
        measure(
            "tpm: verify GCE quote (RSA-2048, 24 PCRs, nonce) (full verdict)",
            n,
            1,
            "op",
            || tpm::verify(&input, &policy),
        ),
        measure(
            "tpm: reference: the RSASSA-2048 signature alone, bare ring",
            n,
            1,
            "op",
            || key.verify(&RSA_PKCS1_2048_8192_SHA256, &attest, &raw_sig),
        ),
    ]
}

fn ima(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let dir = real("ima/ibmtss-vtpm-binary");
    let one = ratls_test::read_real(&dir, "sha256.log");
    // ~100k entries: the real 362-entry log concatenated.
    let copies = 277;
    let bytes = one.repeat(copies);
    let log = Log::parse(&bytes).expect("log parses");
    let entries = u64::try_from(log.len()).unwrap_or(0);
    let bank = HashAlg::Sha256;
    let pcr10 = log.replay(bank, ReplayMode::PerBankTemplateHash);
    let quote = Some((bank, pcr10));
    assert!(ima::verify_bytes(&bytes, quote.clone(), &ImaPolicy::default()).is_trusted());
    let template_data: Vec<Vec<u8>> = log
        .entries()
        .iter()
        .map(|e| e.template_data().to_vec())
        .collect();
    let n = scale(40).max(2);
    vec![
        measure(
            "ima: verify_bytes ~100k-entry log vs quoted sha256 PCR 10 (full verdict, 4-bank claims)",
            n,
            entries,
            "entries",
            || ima::verify_bytes(&bytes, quote.clone(), &ImaPolicy::default()),
        ),
        measure("ima: parse only", n, entries, "entries", || {
            Log::parse(&bytes).is_ok()
        }),
        measure(
            "ima: replay sha256 bank (parsed log)",
            n,
            entries,
            "entries",
            || log.replay(bank, ReplayMode::PerBankTemplateHash),
        ),
        measure(
            "ima: reference: bare ring sha256 of each template data + extend",
            n,
            entries,
            "entries",
            || {
                let mut pcr = vec![0u8; 32];
                for data in &template_data {
                    let digest = bank.digest(data);
                    bank.extend(&mut pcr, &digest);
                }
                pcr
            },
        ),
    ]
}

/// Our TPM quote path against `tpm2_quote` on the same swtpm, AK and PCRs. Runs only when swtpm
/// and tpm2-tools are installed.
fn tpm_attester(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    use ratls::attest::TpmAttester;
    use ratls_harness::{open_tpm, simulate_boot, Swtpm, BOOT_AND_IMA_PCRS, DEFAULT_AK_HANDLE};
    use ratls_test::swtpm::{available, on_path};

    if !available() || on_path("tpm2_quote").is_none() {
        assert!(
            !ratls_test::in_ci(),
            "CI must have swtpm and tpm2-tools (scripts/setup.sh)"
        );
        eprintln!("tpm attester: swtpm or tpm2-tools not installed; group SKIPPED");
        return Vec::new();
    }
    let swtpm = Swtpm::start().expect("swtpm starts");
    let tpm = open_tpm(&swtpm).expect("TPM opens");
    simulate_boot(&tpm, "bench").expect("PCRs extended");
    let nonce = ratls::binding::QualifyingData::for_raw_nonce(b"bench").expect("nonce");
    let banks = [HashAlg::Sha256];
    let evidence = tpm
        .quote(&nonce, &banks, &BOOT_AND_IMA_PCRS)
        .expect("quote");
    let input = QuoteInput {
        attest: &evidence.attest,
        signature: &evidence.signature,
        ak_public: &evidence.ak_public,
        nonce: Some(nonce.as_bytes().to_vec()),
        pcrs: Some(evidence.pcr_values()),
    };
    assert!(tpm::verify(&input, &TpmPolicy::default()).is_trusted());

    let dir = swtpm.state_dir().to_path_buf();
    let list = format!(
        "sha256:{}",
        BOOT_AND_IMA_PCRS
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let nonce_hex = hex::encode(nonce.as_bytes());
    let tpm2_quote = || {
        let status = swtpm
            .command("tpm2_quote")
            .args([
                "-c",
                &format!("{DEFAULT_AK_HANDLE:#x}"),
                "-l",
                &list,
                "-q",
                &nonce_hex,
            ])
            .arg("-m")
            .arg(dir.join("q.msg"))
            .arg("-s")
            .arg(dir.join("q.sig"))
            .arg("-o")
            .arg(dir.join("q.pcrs"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("tpm2_quote runs");
        assert!(status.success(), "tpm2_quote failed");
    };
    tpm2_quote();
    let n = scale(400).max(5);
    let spawns = scale(100).max(3);
    let mut rows = vec![
        measure(
            "tpm attester: TssTpm::quote, PCRs 0-10 sha256 (quote + PCR_Read x2 + pcrDigest check), swtpm",
            n,
            1,
            "op",
            || tpm.quote(&nonce, &banks, &BOOT_AND_IMA_PCRS).expect("quote"),
        ),
        measure(
            "tpm attester: reference: tpm2_quote CLI, same swtpm, AK and PCRs (-m -s -o, one process per quote)",
            spawns,
            1,
            "op",
            tpm2_quote,
        ),
        measure(
            "tpm attester: reference: `tpm2_quote --version` (process spawn + libtss2 loading, no TPM work)",
            spawns,
            1,
            "op",
            || {
                std::process::Command::new("tpm2_quote")
                    .arg("--version")
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("tpm2_quote runs")
            },
        ),
        measure(
            "tpm attester: TssTpm::open, persistent AK present (connect, find + read AK, EK cert from NV)",
            scale(100).max(3),
            1,
            "op",
            || open_tpm(&swtpm).expect("open"),
        ),
    ];
    drop(tpm);
    rows.push(measure(
        "tpm attester: AK re-creation (remove_ak + TssTpm::open: SRK, create, load, EvictControl)",
        scale(40).max(2),
        1,
        "op",
        || {
            open_tpm(&swtpm)
                .expect("open")
                .remove_ak()
                .expect("remove");
            let tpm = open_tpm(&swtpm).expect("open");
            assert!(tpm.ak_created());
            tpm
        },
    ));
    rows
}

/// A whole evidence bundle on swtpm + the simulated TEE + a 200-entry IMA log: generation
/// (TEE report, TPM quote, log read, CBOR) and verification (every step), side by side with the
/// TPM quote alone and the SNP-format report alone.
fn bundle(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    use std::sync::Arc;

    use ratls::attest::sim::{SimCa, SimTee};
    use ratls::attest::{Sources, DEFAULT_PCRS};
    use ratls::attest::{TeeAttester, TpmAttester};
    use ratls::binding::{spki_sha256, BindingClaims, Role};
    use ratls::bundle::{self as b, Expectations, Requirements};
    use ratls::Policy;
    use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm};

    if !ratls_test::swtpm::available() {
        assert!(
            !ratls_test::in_ci(),
            "CI must have swtpm (scripts/setup.sh)"
        );
        eprintln!("bundle: swtpm not installed; group SKIPPED");
        return Vec::new();
    }
    let swtpm = Swtpm::start().expect("swtpm starts");
    let tpm = open_tpm(&swtpm).expect("TPM opens");
    simulate_boot(&tpm, "bench").expect("PCRs extended");
    let log_path = swtpm.state_dir().join("ima.log");
    let mut ima = ImaSimulator::new(&log_path, &tpm).expect("IMA simulator");
    for i in 0..200u32 {
        let digest = HashAlg::Sha256.digest(&i.to_le_bytes());
        ima.measure(format!("/usr/bin/tool-{i}").as_bytes(), &digest)
            .expect("measure");
    }
    let ca = Arc::new(SimCa::generate().expect("sim CA"));
    let tee = SimTee::new(ca.clone()).expect("sim TEE");
    let spki = b"bench TLS key SubjectPublicKeyInfo";
    let now = UnixTime::now();
    let claims = BindingClaims {
        role: Role::agent(),
        spki_sha256: spki_sha256(spki),
        ak_sha256: None,
        issued_at: now.as_secs(),
        challenge: Some([1; 32]),
        exporter: Some([2; 32]),
    };
    let sources = Sources {
        tee: Some(&tee),
        tpm: Some(&tpm),
        ima: Some(&ima),
        event_log: None,
        banks: &[HashAlg::Sha256],
        pcrs: &DEFAULT_PCRS,
        ima_inline: true,
    };
    let produce = || ratls::attest::produce(&sources, claims.clone()).expect("bundle");
    let cmw = produce().to_cmw();
    let mut requirements = Requirements::new(Role::agent());
    requirements.insecure_sim_root = Some(ca.ark_der().to_vec());
    let mut expect = Expectations::new(&requirements, spki, now);
    expect.challenge = Some([1; 32]);
    expect.exporter = Some([2; 32]);
    let policy = Policy::default();
    let verdict = b::verify(&cmw, &policy, &expect);
    assert!(verdict.is_trusted(), "{verdict}");
    let n = scale(400).max(5);
    vec![
        measure(
            "bundle: produce (sim report + TPM quote PCRs 0-10 + 201-entry IMA log + CBOR), swtpm",
            n,
            1,
            "op",
            || produce().to_cmw(),
        ),
        measure(
            "bundle: reference: the TPM quote alone (TssTpm::quote), same swtpm",
            n,
            1,
            "op",
            || {
                tpm.quote(
                    &ratls::binding::QualifyingData::for_raw_nonce(b"bench").expect("nonce"),
                    &[HashAlg::Sha256],
                    &DEFAULT_PCRS,
                )
                .expect("quote")
            },
        ),
        measure(
            "bundle: reference: the simulated SNP report alone (SimTee::attest)",
            n,
            1,
            "op",
            || {
                tee.attest(&ratls::binding::ReportData::for_raw_nonce(b"bench").expect("rd"))
                    .expect("report")
            },
        ),
        measure(
            "bundle: verify (decode, binding, sim chain + report, TPM quote, IMA replay)",
            n,
            1,
            "op",
            || b::verify(&cmw, &policy, &expect),
        ),
    ]
}

/// The Azure HCL report end to end (SNP report -> runtime data -> HCLAkPub -> vTPM quote), next
/// to the embedded SNP report verified alone.
fn azure(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    use ratls::azure::{self, HclReport, VtpmQuote};
    use ratls::Policy;

    let dir = real("sev-snp/genoa-azure-vtpm-trustee");
    let evidence: serde_json::Value =
        serde_json::from_slice(&ratls_test::read_real(&dir, "evidence-genoa.json")).expect("json");
    let bytes = |at: &str| -> Vec<u8> {
        evidence
            .pointer(at)
            .and_then(serde_json::Value::as_array)
            .expect("byte array")
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .expect("byte")
            })
            .collect()
    };
    let hcl = bytes("/report");
    let attest = bytes("/quote/message");
    let signature = bytes("/quote/signature");
    let mut pcrs = PcrValues::default();
    let count = evidence
        .pointer("/quote/pcrs")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        pcrs.insert(
            HashAlg::Sha256,
            u8::try_from(i).expect("PCR index"),
            bytes(&format!("/quote/pcrs/{i}")),
        );
    }
    let certs = CertInput {
        vcek: evidence
            .pointer("/vcek")
            .and_then(serde_json::Value::as_str)
            .map(|v| v.as_bytes().to_vec()),
        vlek: None,
        chain: Some(ratls_test::read_real(&dir, "ask_ark_genoa.pem")),
        crl: None,
    };
    let nonce = hex::decode(
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
    )
    .expect("hex");
    let now = at("2026-01-01T00:00:00Z");
    let policy = Policy::default();
    let quote = VtpmQuote {
        attest: &attest,
        signature: &signature,
        pcrs: Some(pcrs),
    };
    assert!(azure::verify_snp(&hcl, &certs, Some(&quote), &policy, now, Some(&nonce)).is_trusted());
    let parsed = HclReport::parse(&hcl).expect("HCL report parses");
    let snp_report = hcl
        .get(0x20..0x4C0)
        .unwrap_or_default()
        .to_vec();
    let n = scale(2000);
    vec![
        measure("azure: HclReport::parse", scale(200_000), 1, "op", || {
            HclReport::parse(&hcl).is_ok()
        }),
        measure(
            "azure: runtime-data JSON + HCLAkPub -> TPM AK",
            scale(200_000),
            1,
            "op",
            || {
                parsed
                    .runtime_data()
                    .and_then(|d| d.ak_public())
                    .is_ok()
            },
        ),
        measure(
            "azure: verify_snp with the vTPM quote (full verdict)",
            n,
            1,
            "op",
            || azure::verify_snp(&hcl, &certs, Some(&quote), &policy, now, Some(&nonce)),
        ),
        measure(
            "azure: reference: snp::verify_bytes on the embedded report alone",
            n,
            1,
            "op",
            || snp::verify_bytes(&snp_report, &certs, &policy.snp, now),
        ),
    ]
}
