//! `AttesterConfig` parsing, TCTI mapping, AK handle choice, and `select`/`open` on fixture roots
//! (a temporary directory with `sys/kernel/config/tsm/report` played by [`EmulatedTsm`] and
//! `dev/sev-guest`, `dev/tdx_guest` as plain files). No TPM here (`tpm_tcti: None`); the TPM and
//! Azure paths run on swtpm in `tests/harness/tests/azure_nv.rs`.

use std::fs;
use std::path::Path;

use super::*;
use crate::attest::tsm::tests::TempDir;
use crate::attest::tsm::{EmulatedTsm, PROVIDER_TDX_GUEST};
use crate::binding::{BindingClaims, Role};
use crate::bundle::TeeEvidence;

fn touch(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"").unwrap();
}

/// A report that parses: version 2, zero but for `report_data` and `vmpl` 0.
fn snp_report(inblob: &[u8], _privlevel: Option<u32>) -> Vec<u8> {
    let mut r = vec![0u8; crate::snp::REPORT_LEN];
    r[0..4].copy_from_slice(&2u32.to_le_bytes());
    r[0x50..0x90].copy_from_slice(inblob);
    r
}

/// A config on an empty fixture root: no TPM, no IMA log, the Azure probe answering nothing.
fn config(tee: TeeChoice) -> (TempDir, AttesterConfig) {
    let dir = TempDir::new("attester-config");
    let mut cfg = AttesterConfig::new(tee);
    cfg.tpm_tcti = None;
    cfg.ima_log = None;
    cfg.paths = DetectPaths::under(dir.path()).with_azure_probe(|| None);
    (dir, cfg)
}

fn with_configfs(cfg: &mut AttesterConfig, provider: &str) {
    fs::create_dir_all(&cfg.paths.tsm_report).unwrap();
    cfg.paths = cfg
        .paths
        .clone()
        .with_tsm_kernel(Arc::new(EmulatedTsm::new(provider, snp_report)));
}

fn binding() -> BindingClaims {
    BindingClaims {
        role: Role::server(),
        spki_sha256: [7; 32],
        ak_sha256: None,
        issued_at: 1_700_000_000,
        challenge: None,
        exporter: None,
    }
}

#[test]
fn tee_choice_parses_every_name_and_says_what_it_expects() {
    for (text, choice) in [
        ("auto", TeeChoice::Auto),
        ("none", TeeChoice::None),
        ("sev-snp", TeeChoice::Kind(TeeKind::SevSnp)),
        ("tdx", TeeChoice::Kind(TeeKind::Tdx)),
        ("azure-snp", TeeChoice::Kind(TeeKind::AzureSnp)),
        ("azure-tdx", TeeChoice::Kind(TeeKind::AzureTdx)),
        ("sim", TeeChoice::Kind(TeeKind::Simulated)),
    ] {
        assert_eq!(text.parse::<TeeChoice>().unwrap(), choice);
        assert_eq!(choice.to_string(), text);
    }
    for bad in ["", "SEV-SNP", "snp", "quantum", "auto "] {
        let err = bad.parse::<TeeChoice>().unwrap_err();
        assert!(matches!(err, ConfigError::UnknownTee { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("auto, none, sev-snp, tdx, azure-snp, azure-tdx or sim"),
            "{err}"
        );
    }
}

#[test]
fn tcti_mapping() {
    assert_eq!(tcti_of("/dev/tpmrm0").unwrap(), "device:/dev/tpmrm0");
    assert_eq!(tcti_of("/dev/tpm0").unwrap(), "device:/dev/tpm0");
    for passed in [
        "device:/dev/tpmrm0",
        "swtpm:host=127.0.0.1,port=2321",
        "mssim:host=localhost,port=2321",
        "tabrmd",
        "tabrmd:bus_name=com.intel.tss2.Tabrmd",
    ] {
        assert_eq!(tcti_of(passed).unwrap(), passed);
    }
    for bad in ["", "tpmrm0", "dev/tpmrm0", "none", "libtpms"] {
        let err = tcti_of(bad).unwrap_err();
        assert!(matches!(err, ConfigError::BadTpm { .. }), "{err}");
        assert!(err.to_string().contains("/dev/tpmrm0"), "{err}");
    }
    assert_eq!(
        AttesterConfig::new(TeeChoice::Auto)
            .tpm_tcti
            .as_deref(),
        Some("device:/dev/tpmrm0")
    );
}

#[test]
fn ak_handle_choice() {
    let mut cfg = AttesterConfig::new(TeeChoice::Auto);
    assert_eq!(DEFAULT_AK_HANDLE, 0x8101_0002);
    assert_eq!(AZURE_AK_HANDLE, 0x8100_0003);
    for tee in [
        None,
        Some(TeeKind::SevSnp),
        Some(TeeKind::Tdx),
        Some(TeeKind::Simulated),
    ] {
        assert_eq!(
            cfg.ak_handle_for(tee).unwrap(),
            (DEFAULT_AK_HANDLE, AkOrigin::Ours)
        );
    }
    for azure in [TeeKind::AzureSnp, TeeKind::AzureTdx] {
        assert_eq!(
            cfg.ak_handle_for(Some(azure)).unwrap(),
            (AZURE_AK_HANDLE, AkOrigin::Platform)
        );
    }
    cfg.ak_handle = Some(0x8101_0042);
    assert_eq!(
        cfg.ak_handle_for(Some(TeeKind::SevSnp))
            .unwrap(),
        (0x8101_0042, AkOrigin::Ours)
    );
    let err = cfg
        .ak_handle_for(Some(TeeKind::AzureSnp))
        .unwrap_err();
    assert!(matches!(err, ConfigError::AzureAkHandle { .. }), "{err}");
    assert!(err.to_string().contains("0x81000003"), "{err}");
    cfg.ak_handle = Some(AZURE_AK_HANDLE);
    assert_eq!(
        cfg.ak_handle_for(Some(TeeKind::AzureTdx))
            .unwrap(),
        (AZURE_AK_HANDLE, AkOrigin::Platform)
    );
}

#[test]
fn auto_finds_configfs_tsm_snp_and_opens_it() {
    let (_dir, mut cfg) = config(TeeChoice::Auto);
    with_configfs(&mut cfg, PROVIDER_SEV_GUEST);
    let machine = cfg.open().unwrap();
    let tee = machine.tee.clone().unwrap();
    assert_eq!(
        (tee.kind, tee.interface, tee.detected),
        (TeeKind::SevSnp, TeeInterface::ConfigfsTsm, true)
    );
    assert!(
        matches!(&machine.notes[0], Note::Info(t) if t.starts_with("TEE detected: sev-snp")),
        "{:?}",
        machine.notes
    );
    assert!(machine.tpm.is_none() && machine.ak_handle.is_none());
    // The evidence comes from the (emulated) kernel, bound to the claims.
    let bundle = machine
        .attester
        .produce(binding(), false)
        .unwrap();
    let Some(TeeEvidence::SevSnp { report, .. }) = &bundle.tee else {
        panic!("{:?}", bundle.tee)
    };
    assert_eq!(&report[0x50..0x90], binding().report_data().as_bytes());
}

#[test]
fn auto_finds_configfs_tsm_tdx() {
    let (_dir, mut cfg) = config(TeeChoice::Auto);
    with_configfs(&mut cfg, PROVIDER_TDX_GUEST);
    let tee = cfg.select().unwrap().unwrap();
    assert_eq!(
        (tee.kind, tee.interface),
        (TeeKind::Tdx, TeeInterface::ConfigfsTsm)
    );
    let machine = cfg.open().unwrap();
    assert_eq!(
        machine
            .attester
            .tee
            .as_ref()
            .map(|t| t.kind()),
        Some(TeeKind::Tdx)
    );
}

#[test]
fn auto_with_only_the_sev_guest_device_chooses_sev_guest() {
    let (_dir, cfg) = config(TeeChoice::Auto);
    touch(&cfg.paths.sev_guest);
    let tee = cfg.select().unwrap().unwrap();
    assert_eq!(
        (tee.kind, tee.interface),
        (TeeKind::SevSnp, TeeInterface::SevGuestDevice)
    );
    assert!(
        tee.describe()
            .contains("through /dev/sev-guest"),
        "{tee:?}"
    );
    // Opening goes to `SevGuest` (the `sev` crate opens the kernel's /dev/sev-guest, which this
    // machine does not have), or says the build lacks it: never another attester.
    let err = cfg.open().unwrap_err();
    #[cfg(feature = "sev-guest")]
    {
        if !Path::new(SEV_GUEST_DEVICE).exists() {
            let ConfigError::Tee {
                kind,
                interface,
                error,
            } = &err
            else {
                panic!("{err}")
            };
            assert_eq!(
                (*kind, *interface),
                (TeeKind::SevSnp, TeeInterface::SevGuestDevice)
            );
            assert!(matches!(error, AttestError::Unavailable { .. }), "{err}");
            assert!(
                err.to_string()
                    .contains("/dev/sev-guest"),
                "{err}"
            );
        }
    }
    #[cfg(not(feature = "sev-guest"))]
    assert!(
        matches!(
            err,
            ConfigError::NotBuilt {
                feature: "sev-guest",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sev_snp_prefers_configfs_and_falls_back_to_the_device() {
    let (_dir, mut cfg) = config(TeeChoice::Kind(TeeKind::SevSnp));
    // Neither: a clear error naming both.
    let err = cfg.select().unwrap_err();
    assert!(
        matches!(err, ConfigError::SevSnpUnavailable { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("configfs-tsm") && text.contains("sev-guest"),
        "{text}"
    );
    // The device only.
    touch(&cfg.paths.sev_guest);
    let tee = cfg.select().unwrap().unwrap();
    assert_eq!(tee.interface, TeeInterface::SevGuestDevice);
    assert!(!tee.detected);
    assert!(
        tee.describe()
            .starts_with("TEE: sev-snp through /dev/sev-guest"),
        "{}",
        tee.describe()
    );
    assert!(tee.why.contains("no configfs-tsm"), "{}", tee.why);
    // configfs-tsm with another provider: the device.
    with_configfs(&mut cfg, PROVIDER_TDX_GUEST);
    let tee = cfg.select().unwrap().unwrap();
    assert_eq!(tee.interface, TeeInterface::SevGuestDevice);
    assert!(tee.why.contains("provider tdx_guest"), "{}", tee.why);
    // configfs-tsm with sev_guest wins.
    with_configfs(&mut cfg, PROVIDER_SEV_GUEST);
    let tee = cfg.select().unwrap().unwrap();
    assert_eq!(tee.interface, TeeInterface::ConfigfsTsm);
    assert!(cfg.open().is_ok());
}

#[test]
fn auto_with_only_the_tdx_device_is_refused_and_says_why() {
    let (_dir, cfg) = config(TeeChoice::Auto);
    touch(&cfg.paths.tdx_guest);
    let err = cfg.open().unwrap_err();
    assert!(matches!(err, ConfigError::NoTeeDetected { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("TDX quotes need configfs-tsm"),
        "{err}"
    );
    // tee = tdx without configfs-tsm: the same reason.
    let mut tdx = cfg.clone();
    tdx.tee = TeeChoice::Kind(TeeKind::Tdx);
    let err = tdx.open().unwrap_err();
    assert!(matches!(err, ConfigError::TdxNeedsConfigfs { .. }), "{err}");
}

#[test]
fn auto_with_nothing_is_refused_and_never_simulated() {
    let (dir, mut cfg) = config(TeeChoice::Auto);
    cfg.sim.dir = Some(dir.path().join("sim"));
    let err = cfg.open().unwrap_err();
    assert!(matches!(err, ConfigError::NoTeeDetected { .. }), "{err}");
    let text = err.to_string();
    for needle in ["found none", "no TEE found", "never picked automatically"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!dir.path().join("sim").exists(), "no simulated CA made");
}

#[test]
fn none_without_a_tpm_is_no_attester() {
    let (_dir, cfg) = config(TeeChoice::None);
    assert!(cfg.select().unwrap().is_none());
    assert!(matches!(cfg.open(), Err(ConfigError::NoAttester)));
}

#[test]
fn azure_without_a_tpm_is_refused() {
    let (_dir, cfg) = config(TeeChoice::Kind(TeeKind::AzureSnp));
    let err = cfg.open().unwrap_err();
    assert!(matches!(err, ConfigError::AzureNeedsTpm { .. }), "{err}");
}

#[test]
fn missing_logs_are_warnings() {
    let (dir, mut cfg) = config(TeeChoice::Auto);
    with_configfs(&mut cfg, PROVIDER_SEV_GUEST);
    cfg.ima_log = Some(dir.path().join("no-ima"));
    cfg.event_log = Some(dir.path().join("no-eventlog"));
    let machine = cfg.open().unwrap();
    let warnings: Vec<String> = machine
        .notes
        .iter()
        .filter(|n| matches!(n, Note::Warning(_)))
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("WARNING: no IMA log at"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("no firmware event log"),
        "{warnings:?}"
    );
    assert!(machine.attester.ima.is_none() && machine.attester.event_log.is_none());

    fs::write(dir.path().join("no-ima"), b"").unwrap();
    fs::write(dir.path().join("no-eventlog"), b"").unwrap();
    let machine = cfg.open().unwrap();
    assert!(!machine
        .notes
        .iter()
        .any(|n| matches!(n, Note::Warning(_))));
    assert!(machine.attester.ima.is_some() && machine.attester.event_log.is_some());
}

#[test]
fn sim_is_only_what_was_asked_and_says_so() {
    let (dir, mut cfg) = config(TeeChoice::Kind(TeeKind::Simulated));
    #[cfg(feature = "sim")]
    {
        assert!(matches!(cfg.open(), Err(ConfigError::SimNeedsDir)));
        cfg.sim.dir = Some(dir.path().join("sim"));
        cfg.sim.debug = true;
        let machine = cfg.open().unwrap();
        let tee = machine.tee.clone().unwrap();
        assert_eq!(
            (tee.kind, tee.interface),
            (TeeKind::Simulated, TeeInterface::Simulated)
        );
        let warning = machine
            .notes
            .iter()
            .find(|n| matches!(n, Note::Warning(_)))
            .unwrap()
            .to_string();
        assert!(warning.contains("!!! SIMULATED TEE !!!"), "{warning}");
        assert!(warning.contains("DEBUG"), "{warning}");
        assert!(dir.path().join("sim/ark.pem").exists());
    }
    #[cfg(not(feature = "sim"))]
    {
        cfg.sim.dir = Some(dir.path().join("sim"));
        let err = cfg.open().unwrap_err();
        assert!(matches!(err, ConfigError::SimNotBuilt), "{err}");
        assert!(
            err.to_string()
                .contains("this build has no simulated TEE"),
            "{err}"
        );
    }
}
