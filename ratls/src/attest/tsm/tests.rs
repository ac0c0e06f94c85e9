//! Unit tests for the configfs-tsm protocol on directory fixtures: a temporary directory stands
//! in for `/sys/kernel/config/tsm/report` and [`EmulatedTsm`] (wrapped below to inject races
//! and errors) plays the kernel. The real SNP report and TDX quote are in
//! `ratls/tests/real_tsm.rs`.

use std::sync::atomic::AtomicU32;

use super::*;
use crate::snp::REPORT_LEN;

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ratls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entries(base: &Path) -> Vec<PathBuf> {
    fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// An outblob that shows what it was made from.
fn echo(inblob: &[u8], privlevel: Option<u32>) -> Vec<u8> {
    let mut out = b"report for ".to_vec();
    out.extend_from_slice(inblob);
    if let Some(level) = privlevel {
        out.extend_from_slice(format!(" at {level}").as_bytes());
    }
    out
}

fn fixture(kernel: Arc<dyn ConfigfsKernel>) -> (TempDir, ConfigfsTsm) {
    let dir = TempDir::new("tsm");
    let tsm = ConfigfsTsm::new(dir.path().to_path_buf()).with_kernel(kernel);
    (dir, tsm)
}

/// A report that parses: version 2, zero but for `report_data` and `vmpl`.
fn snp_report(report_data: &[u8], vmpl: u32) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    r[0..4].copy_from_slice(&2u32.to_le_bytes());
    r[0x30..0x34].copy_from_slice(&vmpl.to_le_bytes());
    r[0x50..0x90].copy_from_slice(report_data);
    r
}

/// Another writer on our entry: before the first `n` outblob reads it writes its own inblob.
#[derive(Debug)]
struct Racer {
    inner: EmulatedTsm,
    races: AtomicU32,
}

impl ConfigfsKernel for Racer {
    fn created(&self, entry: &Path) -> io::Result<()> {
        self.inner.created(entry)
    }

    fn written(&self, entry: &Path, attr: &str) -> io::Result<()> {
        self.inner.written(entry, attr)
    }

    fn reading(&self, entry: &Path, attr: &str) -> io::Result<()> {
        if attr == "outblob"
            && self
                .races
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            fs::write(entry.join("inblob"), [0xee; 64])?;
            self.inner.written(entry, "inblob")?;
        }
        self.inner.reading(entry, attr)
    }

    fn removing(&self, entry: &Path) -> io::Result<()> {
        self.inner.removing(entry)
    }
}

/// Fails one hook with an errno, as the kernel would fail the system call.
#[derive(Debug)]
struct Faulty {
    inner: EmulatedTsm,
    hook: &'static str,
    attr: &'static str,
    errno: i32,
}

impl Faulty {
    fn fail(&self, hook: &str, attr: &str) -> io::Result<()> {
        if hook == self.hook && attr == self.attr {
            Err(io::Error::from_raw_os_error(self.errno))
        } else {
            Ok(())
        }
    }
}

impl ConfigfsKernel for Faulty {
    fn created(&self, entry: &Path) -> io::Result<()> {
        self.fail("created", "")?;
        self.inner.created(entry)
    }

    fn written(&self, entry: &Path, attr: &str) -> io::Result<()> {
        self.fail("written", attr)?;
        self.inner.written(entry, attr)
    }

    fn reading(&self, entry: &Path, attr: &str) -> io::Result<()> {
        self.fail("reading", attr)?;
        self.inner.reading(entry, attr)
    }

    fn removing(&self, entry: &Path) -> io::Result<()> {
        self.fail("removing", "")?;
        self.inner.removing(entry)
    }
}

#[test]
fn report_follows_the_protocol_and_removes_the_entry() {
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_TDX_GUEST, echo));
    let (dir, tsm) = fixture(kernel.clone());
    let inblob = [0x42; 64];
    let report = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests(inblob),
            None,
        )
        .unwrap();
    assert_eq!(report.provider, "tdx_guest");
    assert_eq!(report.outblob, echo(&inblob, None));
    assert_eq!(report.auxblob, None);
    assert_eq!(report.generation, 1, "one write");
    assert_eq!(kernel.reports(), 1);
    assert!(entries(dir.path()).is_empty(), "entry removed");

    // The next request gets a fresh entry and a fresh report.
    let report = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([7; 64]),
            None,
        )
        .unwrap();
    assert_eq!(report.outblob, echo(&[7; 64], None));
    assert_eq!(report.generation, 1);
    assert_eq!(kernel.reports(), 2);
}

#[test]
fn privlevel_is_written_and_counted() {
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo).with_privlevel());
    let (dir, tsm) = fixture(kernel);
    let report = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([1; 64]),
            Some(2),
        )
        .unwrap();
    assert_eq!(report.outblob, echo(&[1; 64], Some(2)));
    assert_eq!(report.generation, 2, "privlevel and inblob");

    // The kernel refuses a level above 3 with EINVAL: an I/O error, entry still removed.
    let err = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([1; 64]),
            Some(4),
        )
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::Io { what: "configfs-tsm privlevel", error, .. } if error.raw_os_error() == Some(22)),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn privlevel_on_a_provider_without_it_is_unavailable() {
    let (dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_TDX_GUEST, echo)));
    let err = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([1; 64]),
            Some(0),
        )
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable { why, .. } if why.contains("tdx_guest")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn auxblob_is_returned_when_present_and_non_empty() {
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo).with_auxblob(vec![1, 2, 3]));
    let (_dir, tsm) = fixture(kernel);
    assert_eq!(
        tsm.report(
            &crate::binding::ReportData::from_raw_for_tests([1; 64]),
            None
        )
        .unwrap()
        .auxblob,
        Some(vec![1, 2, 3])
    );
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo).with_auxblob(Vec::new()));
    let (_dir, tsm) = fixture(kernel);
    assert_eq!(
        tsm.report(
            &crate::binding::ReportData::from_raw_for_tests([1; 64]),
            None
        )
        .unwrap()
        .auxblob,
        None
    );
}

#[test]
fn a_concurrent_writer_makes_the_request_start_over() {
    let inblob = [0x11; 64];
    let racer = Arc::new(Racer {
        inner: EmulatedTsm::new(PROVIDER_SEV_GUEST, echo),
        races: AtomicU32::new(1),
    });
    let (dir, tsm) = fixture(racer.clone());
    let report = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests(inblob),
            None,
        )
        .unwrap();
    assert_eq!(
        report.outblob,
        echo(&inblob, None),
        "the blob for our inblob, not the racer's"
    );
    assert_eq!(report.generation, 3, "ours, the racer's, ours again");
    assert_eq!(
        racer.inner.reports(),
        2,
        "one report for the racer, one for us"
    );
    assert!(entries(dir.path()).is_empty());

    // A writer that never stops: bounded retries, then an error naming the conflict.
    racer
        .races
        .store(MAX_ATTEMPTS, Ordering::SeqCst);
    let err = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests(inblob),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::BadResponse { what: "configfs-tsm generation", why } if why.contains("another writer")),
        "{err}"
    );
    assert_eq!(racer.races.load(Ordering::SeqCst), 0);
    assert!(entries(dir.path()).is_empty(), "removed after the failure");
}

#[test]
fn kernel_errors_are_mapped_and_the_entry_is_always_removed() {
    // (hook, attribute, errno, expected mapping)
    let cases: [(&str, &str, i32, &str); 7] = [
        ("reading", "outblob", 16, "rate-limited"), // EBUSY
        ("reading", "outblob", 11, "rate-limited"), // EAGAIN
        ("written", "inblob", 16, "rate-limited"),  // too many writes without a read
        ("reading", "auxblob", 5, "io"),            // EIO
        ("reading", "provider", 6, "unavailable"),  // ENXIO: provider unregistered
        ("reading", "generation", 13, "io"),        // EACCES
        ("created", "", 6, "unavailable"),          // ENXIO on mkdir
    ];
    for (hook, attr, errno, expected) in cases {
        let kernel = Arc::new(Faulty {
            inner: EmulatedTsm::new(PROVIDER_SEV_GUEST, echo).with_auxblob(vec![9]),
            hook,
            attr,
            errno,
        });
        let (dir, tsm) = fixture(kernel);
        let err = tsm
            .report(
                &crate::binding::ReportData::from_raw_for_tests([3; 64]),
                None,
            )
            .unwrap_err();
        let kind = match &err {
            AttestError::RateLimited {
                retry_after_ms: RETRY_AFTER_MS,
                ..
            } => "rate-limited",
            AttestError::Io { error, .. } if error.raw_os_error() == Some(errno) => "io",
            AttestError::Unavailable { .. } => "unavailable",
            _ => "other",
        };
        assert_eq!(kind, expected, "{hook} {attr} errno {errno}: {err}");
        assert!(
            entries(dir.path()).is_empty(),
            "{hook} {attr}: entry left behind"
        );
    }
}

#[test]
fn a_report_whose_entry_cannot_be_removed_is_an_error() {
    let kernel = Arc::new(Faulty {
        inner: EmulatedTsm::new(PROVIDER_SEV_GUEST, echo),
        hook: "removing",
        attr: "",
        errno: 16,
    });
    let (_dir, tsm) = fixture(kernel);
    let err = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([3; 64]),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::RateLimited {
                what: "configfs-tsm entry removal",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_or_malformed_attributes_are_bad_responses() {
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, |_, _| {
        Vec::new()
    })));
    assert!(matches!(
        tsm.report(
            &crate::binding::ReportData::from_raw_for_tests([3; 64]),
            None
        ),
        Err(AttestError::BadResponse {
            what: "configfs-tsm outblob",
            ..
        })
    ));
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, |_, _| {
        vec![0; MAX_BLOB_LEN + 1]
    })));
    assert!(matches!(
        tsm.report(
            &crate::binding::ReportData::from_raw_for_tests([3; 64]),
            None
        ),
        Err(AttestError::BadResponse {
            what: "configfs-tsm outblob",
            ..
        })
    ));
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new("bad name\u{7f}", echo)));
    assert!(matches!(
        tsm.report(
            &crate::binding::ReportData::from_raw_for_tests([3; 64]),
            None
        ),
        Err(AttestError::BadResponse {
            what: "configfs-tsm provider",
            ..
        })
    ));
}

#[test]
fn without_the_kernel_a_plain_directory_fails_cleanly() {
    // What `ConfigfsTsm` sees on a directory that is not configfs: no attributes.
    let dir = TempDir::new("tsm-plain");
    let tsm = ConfigfsTsm::new(dir.path().to_path_buf());
    let err = tsm
        .report(
            &crate::binding::ReportData::from_raw_for_tests([0; 64]),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::Io { what: "configfs-tsm provider", error, .. } if error.kind() == io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());

    let missing = ConfigfsTsm::new(dir.path().join("no/such/dir"));
    assert!(matches!(
        missing.report(
            &crate::binding::ReportData::from_raw_for_tests([0; 64]),
            None
        ),
        Err(AttestError::Unavailable {
            what: "configfs-tsm",
            ..
        })
    ));
    assert!(matches!(
        missing.provider(),
        Err(AttestError::Unavailable { .. })
    ));
}

#[test]
fn provider_probe_creates_and_removes_an_entry() {
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo));
    let (dir, tsm) = fixture(kernel.clone());
    assert_eq!(tsm.provider().unwrap(), "sev_guest");
    assert_eq!(kernel.reports(), 0, "a probe asks for no report");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn concurrent_requests_use_their_own_entries() {
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo));
    let (dir, tsm) = fixture(kernel.clone());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let tsm = &tsm;
                s.spawn(move || {
                    for j in 0..5u8 {
                        let inblob = [i * 16 + j; 64];
                        let report = tsm
                            .report(
                                &crate::binding::ReportData::from_raw_for_tests(inblob),
                                None,
                            )
                            .unwrap();
                        assert_eq!(report.outblob, echo(&inblob, None));
                        assert_eq!(report.generation, 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(kernel.reports(), 40);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn io_errors_map_to_typed_errors() {
    let path = Path::new("/sys/kernel/config/tsm/report/x/outblob");
    let mapped = |errno| {
        map_io(
            "configfs-tsm outblob",
            path,
            io::Error::from_raw_os_error(errno),
        )
    };
    assert!(matches!(mapped(16), AttestError::RateLimited { .. })); // EBUSY
    assert!(matches!(mapped(11), AttestError::RateLimited { .. })); // EAGAIN / EWOULDBLOCK
    assert!(matches!(mapped(6), AttestError::Unavailable { .. })); // ENXIO
    for errno in [1, 2, 5, 13, 22, 27] {
        // EPERM, ENOENT, EIO, EACCES, EINVAL, EFBIG (report over the kernel's cap)
        match mapped(errno) {
            AttestError::Io {
                what,
                path: p,
                error,
            } => {
                assert_eq!(what, "configfs-tsm outblob");
                assert_eq!(p, path.display().to_string());
                assert_eq!(error.raw_os_error(), Some(errno));
            }
            other => panic!("errno {errno}: {other}"),
        }
    }
}

#[test]
fn snp_tsm_checks_the_report_it_is_given() {
    let patched =
        |inblob: &[u8], privlevel: Option<u32>| snp_report(inblob, privlevel.unwrap_or(0));
    let kernel = Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, patched).with_privlevel());
    let (dir, tsm) = fixture(kernel);
    let rd = [0x3c; 64];
    let snp = SnpTsm::new(tsm.clone());
    assert_eq!(snp.kind(), TeeKind::SevSnp);
    match snp
        .attest(&crate::binding::ReportData::from_raw_for_tests(rd))
        .unwrap()
    {
        TeeEvidence::SevSnp { report, vcek, .. } => {
            assert_eq!(report.as_slice(), &snp_report(&rd, 0)[..]);
            assert_eq!(vcek, None, "no auxblob, no certificates");
        }
        other => panic!("{other:?}"),
    }
    // VMPL 2 through privlevel, and the report says so.
    match SnpTsm::new(tsm.clone())
        .with_vmpl(2)
        .attest(&crate::binding::ReportData::from_raw_for_tests(rd))
        .unwrap()
    {
        TeeEvidence::SevSnp { report, .. } => assert_eq!(report[0x30], 2),
        other => panic!("{other:?}"),
    }
    assert!(entries(dir.path()).is_empty());

    // Firmware that ignores the VMPL, or the report data.
    let kernel = Arc::new(
        EmulatedTsm::new(PROVIDER_SEV_GUEST, |inblob, _| snp_report(inblob, 0)).with_privlevel(),
    );
    let (_dir, tsm) = fixture(kernel);
    assert!(matches!(
        SnpTsm::new(tsm).with_vmpl(1).attest(&crate::binding::ReportData::from_raw_for_tests(rd)),
        Err(AttestError::BadResponse { why, .. }) if why.contains("VMPL 0")
    ));
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, |_, _| {
        snp_report(&[0; 64], 0)
    })));
    assert!(matches!(
        SnpTsm::new(tsm).attest(&crate::binding::ReportData::from_raw_for_tests(rd)),
        Err(AttestError::BadResponse { why, .. }) if why.contains("report_data")
    ));

    // On a TDX machine.
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_TDX_GUEST, echo)));
    assert!(matches!(
        SnpTsm::new(tsm).attest(&crate::binding::ReportData::from_raw_for_tests(rd)),
        Err(AttestError::Unavailable { why, .. }) if why.contains("tdx_guest")
    ));
}

#[test]
fn tdx_tsm_refuses_what_is_not_a_quote() {
    let rd = [0x3c; 64];
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_TDX_GUEST, echo)));
    let tdx = TdxTsm::new(tsm);
    assert_eq!(tdx.kind(), TeeKind::Tdx);
    assert!(matches!(
        tdx.attest(&crate::binding::ReportData::from_raw_for_tests(rd)),
        Err(AttestError::BadResponse {
            what: "TDX quote",
            ..
        })
    ));
    let (_dir, tsm) = fixture(Arc::new(EmulatedTsm::new(PROVIDER_SEV_GUEST, echo)));
    assert!(matches!(
        TdxTsm::new(tsm).attest(&crate::binding::ReportData::from_raw_for_tests(rd)),
        Err(AttestError::Unavailable { why, .. }) if why.contains("sev_guest")
    ));
}
