//! `detect` on fixture roots: a temporary directory holding `sys/kernel/config/tsm/report`
//! (with an emulated kernel) and `dev/sev-guest`, `dev/tdx_guest` as plain files.

use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::attest::tsm::tests::TempDir;
use crate::attest::tsm::EmulatedTsm;

fn root() -> (TempDir, DetectPaths) {
    let dir = TempDir::new("detect");
    let paths = DetectPaths::under(dir.path());
    (dir, paths)
}

fn with_configfs(paths: DetectPaths, provider: &str) -> DetectPaths {
    fs::create_dir_all(&paths.tsm_report).unwrap();
    let kernel = EmulatedTsm::new(provider, |_, _| Vec::new());
    paths.with_tsm_kernel(Arc::new(kernel))
}

fn touch(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"").unwrap();
}

fn unavailable(result: Result<(TeeKind, String), AttestError>) -> String {
    match result {
        Err(AttestError::Unavailable { why, .. }) => why,
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_paths_are_the_kernels() {
    let paths = DetectPaths::default();
    assert_eq!(paths.tsm_report, Path::new("/sys/kernel/config/tsm/report"));
    assert_eq!(paths.sev_guest, Path::new("/dev/sev-guest"));
    assert_eq!(paths.tdx_guest, Path::new("/dev/tdx_guest"));
    let under = DetectPaths::under(Path::new("/fixture"));
    assert_eq!(
        under.tsm_report,
        Path::new("/fixture/sys/kernel/config/tsm/report")
    );
    assert_eq!(under.sev_guest, Path::new("/fixture/dev/sev-guest"));
}

#[test]
fn nothing_found_says_what_was_looked_for() {
    let (_dir, paths) = root();
    let why = unavailable(detect(&paths));
    for needle in [
        "0x01400001",
        "not probed",
        "configfs-tsm",
        "sev-guest",
        "tdx_guest",
        "sim",
    ] {
        assert!(why.contains(needle), "{needle} missing from: {why}");
    }
    let why = unavailable(detect(&paths.with_azure_probe(|| None)));
    assert!(
        why.contains("no HCL report at vTPM NV index 0x01400001"),
        "{why}"
    );
}

#[test]
fn configfs_tsm_provider_decides() {
    let (dir, paths) = root();
    let (kind, why) = detect(&with_configfs(paths.clone(), "sev_guest")).unwrap();
    assert_eq!(kind, TeeKind::SevSnp);
    assert!(why.contains("provider sev_guest"), "{why}");
    let d = detect_interface(&with_configfs(paths.clone(), "tdx_guest")).unwrap();
    assert_eq!(
        (d.kind, d.interface),
        (TeeKind::Tdx, TeeInterface::ConfigfsTsm)
    );
    assert!(
        fs::read_dir(&paths.tsm_report)
            .unwrap()
            .next()
            .is_none(),
        "probe entries removed"
    );

    // configfs-tsm wins over the device when both are there.
    touch(&paths.sev_guest);
    let d = detect_interface(&with_configfs(paths.clone(), "sev_guest")).unwrap();
    assert_eq!(d.interface, TeeInterface::ConfigfsTsm);

    // A provider this crate does not speak: fall through to the devices.
    let d = detect_interface(&with_configfs(paths.clone(), "arm_cca_guest")).unwrap();
    assert_eq!(
        (d.kind, d.interface),
        (TeeKind::SevSnp, TeeInterface::SevGuestDevice)
    );
    assert!(d.why.contains("arm_cca_guest"), "{}", d.why);
    drop(dir);
}

#[test]
fn configfs_without_a_provider_falls_back_to_the_device() {
    let (_dir, paths) = root();
    // The directory exists but nothing answers (a plain directory: no `provider` attribute).
    fs::create_dir_all(&paths.tsm_report).unwrap();
    touch(&paths.sev_guest);
    let d = detect_interface(&paths).unwrap();
    assert_eq!(
        (d.kind, d.interface),
        (TeeKind::SevSnp, TeeInterface::SevGuestDevice)
    );
    assert!(d.why.contains("sev-guest exists"), "{}", d.why);
    assert!(d.why.contains("configfs-tsm at"), "{}", d.why);
}

#[test]
fn tdx_device_without_configfs_is_an_error_that_says_why() {
    let (_dir, paths) = root();
    touch(&paths.tdx_guest);
    let why = unavailable(detect(&paths));
    assert!(why.contains("need configfs-tsm"), "{why}");
}

#[test]
fn azure_probe_comes_first() {
    let (_dir, paths) = root();
    touch(&paths.sev_guest);
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let paths = with_configfs(paths, "sev_guest").with_azure_probe(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(TeeKind::AzureSnp)
    });
    let d = detect_interface(&paths).unwrap();
    assert_eq!(
        (d.kind, d.interface),
        (TeeKind::AzureSnp, TeeInterface::AzureVtpm)
    );
    assert!(d.why.contains("0x01400001"), "{}", d.why);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let tdx = detect(
        &paths
            .clone()
            .with_azure_probe(|| Some(TeeKind::AzureTdx)),
    )
    .unwrap();
    assert_eq!(tdx.0, TeeKind::AzureTdx);

    // A probe answering something that is not Azure is ignored, and said so.
    let (kind, why) = detect(&paths.with_azure_probe(|| Some(TeeKind::Simulated))).unwrap();
    assert_eq!(kind, TeeKind::SevSnp);
    assert!(why.contains("not an Azure TEE"), "{why}");
}

#[test]
fn this_machine_is_detected_without_panicking() {
    // No TEE here; whatever the answer, it is a typed result with a reason.
    match detect(&DetectPaths::default()) {
        Ok((kind, why)) => assert!(!why.is_empty(), "{kind}"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
