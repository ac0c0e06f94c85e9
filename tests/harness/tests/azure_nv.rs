//! `AzureTee` against a fixture mimicking the Azure vTPM on swtpm: NV index 0x01400001 holding an
//! HCL report (owner read/write), user data at 0x01400002, the AK at 0x81000003; and the whole
//! Azure machine through `AttesterConfig::open` (the quote made with the paravisor's RSA AK).
//!
//! swtpm caps NV indices at 2048 bytes and the real Genoa report (trustee's sample) is 2600, so
//! the fixture holds the real report with a shorter runtime data: the real SEV-SNP report, the
//! real runtime data without its `HCLEkPub` key (about 2020 bytes in all, then zero padding to
//! 2048).
//! The full 2600-byte sample verifies end to end in `ratls/tests/real_azure.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use ratls::attest::azure::{AzureTee, AK_HANDLE, HCL_REPORT_NV_INDEX, USER_DATA_NV_INDEX};
use ratls::attest::config::{AttesterConfig, ConfigError, Note, TeeChoice};
use ratls::attest::detect::TeeInterface;
use ratls::attest::tpm::{ReconnectingTpm, AK_MISSING, DEFAULT_AK_HANDLE, RECONNECT_INTERVAL};
use ratls::attest::{AttestError, TeeAttester, TeeKind, TpmAttester};
use ratls::azure::{self, HclReport, HwReport, ReportType};
use ratls::binding::ReportData;
use ratls::binding::{BindingClaims, QualifyingData, Role};
use ratls::bundle::TeeEvidence;
use ratls::digest::HashAlg;
use ratls::tpm::{self, QuoteInput, TpmPolicy};
use ratls::{Policy, UnixTime};
use ratls_harness::azure_vtpm::{azure_ak, define_and_write_nv, read_nv, SWTPM_NV_INDEX_MAX};
use ratls_harness::{azure_vtpm, Swtpm, TssTpm};
use ratls_test::{read_real, real_testdata};

const AZURE: &str = "sev-snp/genoa-azure-vtpm-trustee";

/// An HCL report around `hw` (1184 bytes) with runtime data `var`, report type and hash type.
fn hcl(hw: &[u8], var: &[u8], report_type: u32, padding: usize) -> Vec<u8> {
    let var_len = u32::try_from(var.len()).unwrap();
    let mut out = b"HCLA".to_vec();
    for v in [2u32, 0x4D4 + var_len, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(hw);
    out.resize(0x4C0, 0);
    for v in [20 + var_len, 1, report_type, 1, var_len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(var);
    out.resize(out.len() + padding, 0);
    out
}

/// The real Genoa report, its runtime data without `HCLEkPub`, padded to swtpm's largest index.
fn genoa_fixture() -> Option<Vec<u8>> {
    let dir = real_testdata(AZURE)?;
    let real = read_real(&dir, "derived-hcl-report.bin");
    let parsed = HclReport::parse(&real).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(parsed.var_data).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == "HCLAkPub");
    let var = serde_json::to_vec(&doc).unwrap();
    let mut bytes = hcl(&real[0x20..0x4C0], &var, 2, 0);
    assert!(bytes.len() <= SWTPM_NV_INDEX_MAX, "{} bytes", bytes.len());
    bytes.resize(SWTPM_NV_INDEX_MAX, 0);
    Some(bytes)
}

/// A TDX-type report (a bare TD report) whose runtime data carries `user_data` (hex).
fn tdx_fixture(user_data: &[u8; 64]) -> Vec<u8> {
    let var = serde_json::json!({
        "keys": [{"kid": "HCLAkPub", "kty": "RSA", "e": "AQAB", "n": "wAEC"}],
        "vm-configuration": {"secure-boot": true, "tpm-enabled": true, "vmUniqueId": "x"},
        "user-data": hex::encode_upper(user_data),
    })
    .to_string();
    let mut td = vec![0u8; 1184];
    td[0] = 0x81;
    td[128..160].copy_from_slice(&HashAlg::Sha256.digest(var.as_bytes()));
    hcl(&td, var.as_bytes(), 4, 100)
}

#[test]
fn the_hcl_report_is_read_from_nv_in_chunks() {
    let Some(fixture) = genoa_fixture() else {
        return;
    };
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    azure_vtpm(&swtpm, &fixture).unwrap();
    // swtpm's NV_Read buffer is 1024 bytes: two reads for the 2048-byte index.
    let tee = AzureTee::open(&swtpm.tcti()).unwrap();
    assert_eq!(tee.kind(), TeeKind::AzureSnp);
    assert!(!tee.binds_report_data());
    assert_eq!(tee.read_report().unwrap(), fixture);
    let evidence = tee
        .attest(&ReportData::for_raw_nonce(b"azure").unwrap())
        .unwrap();
    let TeeEvidence::AzureSnp {
        hcl_report,
        vcek,
        chain,
        ..
    } = &evidence
    else {
        panic!("not azure-snp: {evidence:?}")
    };
    assert_eq!(hcl_report.as_slice(), fixture.as_slice());
    assert!(vcek.is_none() && chain.is_none());

    let parsed = HclReport::parse(hcl_report).unwrap();
    assert_eq!(parsed.report_type(), ReportType::Snp);
    assert_eq!(
        parsed.padding,
        SWTPM_NV_INDEX_MAX - 0x4D4 - parsed.var_data.len()
    );
    let data = parsed.runtime_data().unwrap();
    assert_eq!(data.kids(), ["HCLAkPub"]);
    let HwReport::Snp(snp) = &parsed.hw_report else {
        panic!("not SNP")
    };
    let dir = real_testdata(AZURE).unwrap();
    assert_eq!(snp.as_bytes(), read_real(&dir, "derived-snp-report.bin"));

    // The genuine SNP report verifies; the shortened runtime data is, rightly, not vouched for.
    let evidence: serde_json::Value =
        serde_json::from_slice(&read_real(&dir, "evidence-genoa.json")).unwrap();
    let certs = ratls::snp::CertInput {
        vcek: Some(
            evidence["vcek"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
        vlek: None,
        chain: Some(read_real(&dir, "ask_ark_genoa.pem")),
        crl: None,
    };
    let now = UnixTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let v = azure::verify_snp(hcl_report, &certs, None, &Policy::default(), now, None);
    assert!(v.passed("azure.parse"), "{v}");
    assert!(v.passed("tee.signature"), "{v}");
    assert!(!v.passed("azure.runtime_data"), "{v}");
}

#[test]
fn no_nv_index_is_unavailable_and_garbage_is_refused() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    match AzureTee::open(&swtpm.tcti()) {
        Err(AttestError::Unavailable { why, .. }) => {
            assert!(why.contains("0x01400001"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    define_and_write_nv(&swtpm, HCL_REPORT_NV_INDEX, 1500, &[0u8; 1500]).unwrap();
    match AzureTee::open(&swtpm.tcti()) {
        Err(AttestError::BadResponse { why, .. }) => assert!(why.contains("HCL report"), "{why}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
    // No TPM at all.
    assert!(matches!(
        AzureTee::open("swtpm:host=127.0.0.1,port=1"),
        Err(AttestError::Unavailable { .. })
    ));
}

#[test]
fn user_data_is_written_to_0x01400002_and_awaited() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let asked = ReportData::for_raw_nonce(b"user data").unwrap();
    let user_data = *asked.as_bytes();
    let fixture = tdx_fixture(&user_data);
    azure_vtpm(&swtpm, &fixture).unwrap();
    {
        let tee = AzureTee::open(&swtpm.tcti())
            .unwrap()
            .with_user_data(true)
            .with_refresh_timeout(Duration::from_millis(50));
        assert_eq!(tee.kind(), TeeKind::AzureTdx);
        // The (fixture's) report carries this user data: accepted at once.
        let evidence = tee.attest(&asked).unwrap();
        let TeeEvidence::AzureTdx {
            hcl_report, quote, ..
        } = &evidence
        else {
            panic!("not azure-tdx: {evidence:?}")
        };
        assert_eq!(hcl_report.as_slice(), fixture.as_slice());
        assert!(quote.is_none());
        // Other user data: written, but nothing refreshes the fixture's report.
        let other = ReportData::for_raw_nonce(b"other user data").unwrap();
        match tee.attest(&other) {
            Err(AttestError::BadResponse { why, .. }) => {
                assert!(why.contains("did not refresh"), "{why}");
            }
            other => panic!("expected BadResponse, got {other:?}"),
        }
    }
    // The index was defined (64 bytes) and holds the last user data.
    let last = *ReportData::for_raw_nonce(b"other user data")
        .unwrap()
        .as_bytes();
    assert_eq!(read_nv(&swtpm, USER_DATA_NV_INDEX).unwrap(), last);
    // Without the option nothing is written.
    {
        let tee = AzureTee::open(&swtpm.tcti()).unwrap();
        tee.attest(&ReportData::for_raw_nonce(b"not written").unwrap())
            .unwrap();
    }
    assert_eq!(read_nv(&swtpm, USER_DATA_NV_INDEX).unwrap(), last);
}

#[test]
fn the_ak_is_read_at_0x81000003() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    azure_vtpm(&swtpm, &tdx_fixture(&[0; 64])).unwrap();
    {
        let tee = AzureTee::open(&swtpm.tcti()).unwrap();
        assert!(matches!(
            tee.ak_public(),
            Err(AttestError::Unavailable { .. })
        ));
    }
    // Azure provisions the AK there; here TssTpm creates one at that handle.
    let ak = {
        let tpm = TssTpm::open(&swtpm.tcti(), AK_HANDLE).unwrap();
        tpm.ak_public().unwrap()
    };
    let tee = AzureTee::open(&swtpm.tcti()).unwrap();
    assert_eq!(tee.ak_public().unwrap(), ak);
}

/// An SNP-type HCL report: a version-2 SEV-SNP report (zero but for its report data, the hash of
/// the runtime data) and runtime data naming an `HCLAkPub`.
fn snp_fixture() -> Vec<u8> {
    let var = serde_json::json!({
        "keys": [{"kid": "HCLAkPub", "kty": "RSA", "e": "AQAB", "n": "wAEC"}],
        "vm-configuration": {"secure-boot": true, "tpm-enabled": true, "vmUniqueId": "x"},
    })
    .to_string();
    let mut hw = vec![0u8; 1184];
    hw[0..4].copy_from_slice(&2u32.to_le_bytes());
    hw[0x50..0x70].copy_from_slice(&HashAlg::Sha256.digest(var.as_bytes()));
    hcl(&hw, var.as_bytes(), 2, 0)
}

fn binding() -> BindingClaims {
    BindingClaims {
        role: Role::server(),
        spki_sha256: [9; 32],
        ak_sha256: None,
        issued_at: 1_800_000_000,
        challenge: None,
        exporter: None,
    }
}

fn azure_config(swtpm: &Swtpm, tee: TeeChoice) -> AttesterConfig {
    let mut cfg = AttesterConfig::new(tee);
    cfg.tpm_tcti = Some(swtpm.tcti());
    cfg.ima_log = None;
    cfg
}

/// Whether anything is persisted at `handle` (without creating anything).
fn persisted(swtpm: &Swtpm, handle: u32) -> bool {
    match TssTpm::open_existing(&swtpm.tcti(), handle) {
        Ok(_) => true,
        Err(AttestError::Unavailable { what, .. }) if what == AK_MISSING => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn attester_config_on_azure_quotes_with_the_paravisors_ak() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let fixture = snp_fixture();
    azure_vtpm(&swtpm, &fixture).unwrap();
    let ak = azure_ak(&swtpm).unwrap();
    for tee in [TeeChoice::Kind(TeeKind::AzureSnp), TeeChoice::Auto] {
        let machine = azure_config(&swtpm, tee)
            .open()
            .unwrap();
        let selected = machine.tee.clone().unwrap();
        assert_eq!(
            (selected.kind, selected.interface),
            (TeeKind::AzureSnp, TeeInterface::AzureVtpm)
        );
        assert_eq!(machine.ak_handle, Some(AK_HANDLE));
        let notes: Vec<String> = machine
            .notes
            .iter()
            .map(Note::to_string)
            .collect();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("platform's attestation key at 0x81000003")),
            "{notes:?}"
        );
        if tee == TeeChoice::Auto {
            assert!(notes[0].starts_with("TEE detected: azure-snp"), "{notes:?}");
        }

        let claims = binding();
        let bundle = machine
            .attester
            .produce(claims.clone(), false)
            .unwrap();
        let TeeEvidence::AzureSnp { hcl_report, .. } = bundle.tee.as_ref().unwrap() else {
            panic!("not azure-snp: {:?}", bundle.tee)
        };
        assert_eq!(hcl_report.as_slice(), fixture.as_slice());
        let quote = bundle.tpm.as_ref().unwrap();
        assert_eq!(
            quote.ak_public.as_slice(),
            ak.as_slice(),
            "the paravisor's AK"
        );
        let mut bound = claims;
        bound.ak_sha256 = Some(ratls::digest::sha256(&ak));
        assert_eq!(bundle.binding, bound);
        // The paravisor owns report_data: the claims travel in the quote's qualifying data.
        let verdict = tpm::verify(
            &QuoteInput {
                attest: &quote.attest,
                signature: &quote.signature,
                ak_public: &ak,
                nonce: Some(
                    bound
                        .qualifying_data()
                        .as_bytes()
                        .to_vec(),
                ),
                pcrs: Some(quote.pcr_values()),
            },
            &TpmPolicy::default(),
        );
        assert!(verdict.is_trusted(), "{verdict}");
        drop(machine);
    }
    assert!(
        !persisted(&swtpm, DEFAULT_AK_HANDLE),
        "no AK of ours created"
    );
}

#[test]
fn attester_config_on_azure_without_the_paravisors_ak_creates_nothing() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    // Not an Azure CVM at all: said so.
    let err = azure_config(&swtpm, TeeChoice::Kind(TeeKind::AzureSnp))
        .open()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not an Azure confidential VM"),
        "{err}"
    );
    // The HCL report but no key at 0x81000003.
    azure_vtpm(&swtpm, &snp_fixture()).unwrap();
    for tee in [TeeChoice::Kind(TeeKind::AzureSnp), TeeChoice::Auto] {
        let err = azure_config(&swtpm, tee)
            .open()
            .unwrap_err();
        let ConfigError::AzureAkMissing { handle, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*handle, AK_HANDLE);
        let text = err.to_string();
        assert!(
            text.contains("0x81000003") && text.contains("not created here"),
            "{text}"
        );
    }
    // An AK handle other than the paravisor's is refused before anything is opened.
    let mut other = azure_config(&swtpm, TeeChoice::Kind(TeeKind::AzureSnp));
    other.ak_handle = Some(DEFAULT_AK_HANDLE);
    assert!(matches!(
        other.open(),
        Err(ConfigError::AzureAkHandle { .. })
    ));
    // A mismatching kind is refused.
    azure_ak(&swtpm).unwrap();
    let err = azure_config(&swtpm, TeeChoice::Kind(TeeKind::AzureTdx))
        .open()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::AzureKindMismatch { .. }),
        "{err}"
    );
    // Nothing was created but the key this test provisioned.
    assert!(persisted(&swtpm, AK_HANDLE));
    assert!(!persisted(&swtpm, DEFAULT_AK_HANDLE));
}

#[test]
fn the_paravisors_ak_is_not_recreated_on_reconnection() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    azure_ak(&swtpm).unwrap();
    let tcti = swtpm.tcti();
    let tpm = ReconnectingTpm::open_existing(&tcti, AK_HANDLE).unwrap();
    let nonce = QualifyingData::for_raw_nonce(b"reconnect").unwrap();
    tpm.quote(&nonce, &[HashAlg::Sha256], &[0])
        .unwrap();
    // A reboot during which the key goes away (a re-provisioned vTPM, say).
    swtpm.restart();
    if swtpm.tcti() != tcti {
        eprintln!("SKIPPED: swtpm came back on another port");
        return;
    }
    TssTpm::open_existing(&tcti, AK_HANDLE)
        .unwrap()
        .remove_ak()
        .unwrap();
    // The dead connection fails and is dropped; the next attempt reconnects without creating.
    assert!(tpm
        .quote(&nonce, &[HashAlg::Sha256], &[0])
        .is_err());
    std::thread::sleep(RECONNECT_INTERVAL + Duration::from_millis(100));
    match tpm.quote(&nonce, &[HashAlg::Sha256], &[0]) {
        Err(AttestError::Unavailable { why, .. }) => {
            assert!(why.contains("never created here"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    drop(tpm);
    assert!(
        !persisted(&swtpm, AK_HANDLE),
        "nothing created at 0x81000003"
    );
}
