//! TEE evidence through configfs-tsm, the kernel's common attestation-report interface
//! (Linux 6.7 and later, `CONFIG_TSM_REPORTS`): [`ConfigfsTsm`] speaks the protocol,
//! [`SnpTsm`] and [`TdxTsm`] are the attesters on top of it.
//!
//! No feature is needed: it is plain file I/O under `/sys/kernel/config/tsm/report`
//! ([`DEFAULT_REPORT_DIR`], configurable).
//!
//! # The protocol ([`ConfigfsTsm::report`])
//!
//! 1. `mkdir <base>/<unique name>`: the kernel populates the entry with its attributes;
//! 2. read `provider` (`sev_guest`, `tdx_guest`) and `generation`;
//! 3. write the 64 bytes of `inblob`, and `privlevel` when asked (SEV-SNP's VMPL);
//! 4. read `outblob` (the report or quote: the kernel generates it on this read) and `auxblob`
//!    when the provider has one (SEV-SNP: the host's certificate table);
//! 5. read `generation` again: each write bumps it by one, so it must have moved by exactly the
//!    number of our writes. Otherwise another writer used the entry between our write and our
//!    read (the kernel's documented conflict check) and the blobs may not be for our `inblob`:
//!    start again from 2, at most [`MAX_ATTEMPTS`] times;
//! 6. `rmdir` the entry, also when something failed.
//!
//! `EBUSY` and `EAGAIN` (the kernel or the host throttling report requests) become
//! [`AttestError::RateLimited`]; a missing base directory or `ENXIO` (no TSM provider
//! registered) becomes [`AttestError::Unavailable`].
//!
//! # Fixtures
//!
//! A plain directory does what configfs does for reads and writes, but not configfs' side
//! effects: populating a new entry, bumping `generation`, producing `outblob`. A
//! [`ConfigfsKernel`] plugged in with [`ConfigfsTsm::with_kernel`] plays that part at the exact
//! points where the kernel acts, while every byte still goes through real files;
//! [`EmulatedTsm`] is a ready-made one. The real kernel needs none.

mod emulator;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use serde_bytes::ByteBuf;

pub use self::emulator::EmulatedTsm;
use super::snp_guest;
use super::{AttestError, TeeAttester, TeeKind};
use crate::binding::ReportData;
use crate::bundle::TeeEvidence;
use crate::hexfmt::hex;
use crate::tdx::Quote;

/// Where the kernel mounts configfs-tsm's report directory.
pub const DEFAULT_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// `provider` of AMD SEV-SNP guests.
pub const PROVIDER_SEV_GUEST: &str = "sev_guest";
/// `provider` of Intel TDX guests.
pub const PROVIDER_TDX_GUEST: &str = "tdx_guest";
/// How many times [`ConfigfsTsm::report`] starts over when `generation` shows a concurrent
/// writer.
pub const MAX_ATTEMPTS: u32 = 4;
/// Largest `outblob`/`auxblob` we read: the kernel's own cap (`TSM_REPORT_OUTBLOB_MAX`, 32 KiB).
pub const MAX_BLOB_LEN: usize = 32 * 1024;
/// Largest `provider`/`generation` text we read.
const MAX_TEXT_LEN: usize = 256;
/// What [`AttestError::RateLimited`] asks callers to wait.
pub const RETRY_AFTER_MS: u64 = 1_000;
/// Linux `ENXIO` (asm-generic, every architecture): no TSM provider is registered.
const ENXIO: i32 = 6;

/// What one report request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// The format of `outblob`: [`PROVIDER_SEV_GUEST`], [`PROVIDER_TDX_GUEST`], …
    pub provider: String,
    /// The report (SEV-SNP) or quote (TDX).
    pub outblob: Vec<u8>,
    /// Supplemental data when the provider has some (SEV-SNP: the host's certificate table);
    /// `None` when the attribute is absent or empty.
    pub auxblob: Option<Vec<u8>>,
    /// The entry's `generation` after the blobs were read.
    pub generation: u64,
}

/// The kernel's side of configfs-tsm, for directories that stand in for configfs (tests,
/// demos). Each hook runs at the point where the kernel would act; an error it returns is what
/// the corresponding system call would have failed with.
pub trait ConfigfsKernel: Send + Sync + fmt::Debug {
    /// After `mkdir`: populate the entry's attribute files.
    fn created(&self, entry: &Path) -> io::Result<()>;
    /// After the attribute `attr` was written (and closed).
    fn written(&self, entry: &Path, attr: &str) -> io::Result<()>;
    /// Before the attribute `attr` is opened for reading.
    fn reading(&self, entry: &Path, attr: &str) -> io::Result<()>;
    /// Before `rmdir`: the kernel drops the attributes with the entry.
    fn removing(&self, entry: &Path) -> io::Result<()>;
}

/// The configfs-tsm report interface under one base directory.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    base: PathBuf,
    kernel: Option<Arc<dyn ConfigfsKernel>>,
}

impl Default for ConfigfsTsm {
    fn default() -> Self {
        Self::new(PathBuf::from(DEFAULT_REPORT_DIR))
    }
}

/// Entry names: process id, a per-process sequence number and a random suffix, so concurrent
/// requests (threads, processes, a stale entry left by a crashed agent) never share an entry.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl ConfigfsTsm {
    /// The report directory at `base` (normally [`DEFAULT_REPORT_DIR`]).
    pub fn new(base: PathBuf) -> Self {
        Self { base, kernel: None }
    }

    /// Let `kernel` play the kernel's part on a plain directory (see the module documentation).
    pub fn with_kernel(mut self, kernel: Arc<dyn ConfigfsKernel>) -> Self {
        self.kernel = Some(kernel);
        self
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The provider's name, from a probe entry created and removed again.
    pub fn provider(&self) -> Result<String, AttestError> {
        let entry = self.create_entry()?;
        let result = self
            .hook(|k| k.created(&entry), "configfs-tsm entry", &entry)
            .and_then(|()| self.read_provider(&entry));
        finish(result, self.remove_entry(&entry))
    }

    /// One report for `inblob`, at `privlevel` when given (SEV-SNP: the VMPL; providers without
    /// the attribute refuse it with [`AttestError::Unavailable`]).
    pub fn report(
        &self,
        inblob: &ReportData,
        privlevel: Option<u32>,
    ) -> Result<TsmReport, AttestError> {
        let entry = self.create_entry()?;
        let result = self
            .hook(|k| k.created(&entry), "configfs-tsm entry", &entry)
            .and_then(|()| self.generate(&entry, inblob.as_bytes(), privlevel));
        finish(result, self.remove_entry(&entry))
    }

    fn generate(
        &self,
        entry: &Path,
        inblob: &[u8; 64],
        privlevel: Option<u32>,
    ) -> Result<TsmReport, AttestError> {
        let provider = self.read_provider(entry)?;
        let mut moved = (0, 0, 0);
        for _ in 0..MAX_ATTEMPTS {
            let before = self.read_generation(entry)?;
            let mut writes = 0u64;
            if let Some(level) = privlevel {
                self.write_attr(entry, "privlevel", format!("{level}\n").as_bytes())
                    .map_err(|e| match e {
                        AttestError::Io { error, .. }
                            if error.kind() == io::ErrorKind::NotFound =>
                        {
                            AttestError::Unavailable {
                                what: "configfs-tsm privlevel",
                                why: format!("provider {provider} takes no privilege level"),
                            }
                        }
                        other => other,
                    })?;
                writes += 1;
            }
            self.write_attr(entry, "inblob", inblob)?;
            writes += 1;
            let outblob = self.read_attr(entry, "outblob")?;
            let auxblob = self.read_optional_attr(entry, "auxblob")?;
            let after = self.read_generation(entry)?;
            if before.checked_add(writes) == Some(after) {
                if outblob.is_empty() {
                    return Err(AttestError::BadResponse {
                        what: "configfs-tsm outblob",
                        why: format!("{} is empty", entry.join("outblob").display()),
                    });
                }
                return Ok(TsmReport {
                    provider,
                    outblob,
                    auxblob: auxblob.filter(|a| !a.is_empty()),
                    generation: after,
                });
            }
            moved = (before, after, writes);
        }
        let (before, after, writes) = moved;
        Err(AttestError::BadResponse {
            what: "configfs-tsm generation",
            why: format!(
                "another writer used {} in each of {MAX_ATTEMPTS} attempts (the last time \
                 generation went from {before} to {after}, our writes account for {writes})",
                entry.display()
            ),
        })
    }

    fn create_entry(&self) -> Result<PathBuf, AttestError> {
        let rng = SystemRandom::new();
        let mut last = None;
        for _ in 0..3 {
            let mut suffix = [0u8; 8];
            rng.fill(&mut suffix)
                .map_err(|_| AttestError::Unavailable {
                    what: "configfs-tsm entry",
                    why: "the system random generator failed".into(),
                })?;
            let name = format!(
                "ratls-{}-{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed),
                hex(suffix)
            );
            let entry = self.base.join(name);
            match fs::create_dir(&entry) {
                Ok(()) => return Ok(entry),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(AttestError::Unavailable {
                        what: "configfs-tsm",
                        why: format!(
                            "{} does not exist (no CONFIG_TSM_REPORTS, configfs not mounted, or \
                             not a confidential guest)",
                            self.base.display()
                        ),
                    })
                }
                Err(e) => return Err(map_io("configfs-tsm entry", &entry, e)),
            }
        }
        Err(AttestError::Io {
            what: "configfs-tsm entry",
            path: self.base.display().to_string(),
            error: Arc::new(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists))),
        })
    }

    fn remove_entry(&self, entry: &Path) -> Result<(), AttestError> {
        self.hook(|k| k.removing(entry), "configfs-tsm entry removal", entry)?;
        fs::remove_dir(entry).map_err(|e| map_io("configfs-tsm entry removal", entry, e))
    }

    fn hook(
        &self,
        f: impl FnOnce(&dyn ConfigfsKernel) -> io::Result<()>,
        what: &'static str,
        path: &Path,
    ) -> Result<(), AttestError> {
        match &self.kernel {
            Some(kernel) => f(kernel.as_ref()).map_err(|e| map_io(what, path, e)),
            None => Ok(()),
        }
    }

    fn read_provider(&self, entry: &Path) -> Result<String, AttestError> {
        let text = self.read_text(entry, "provider", "configfs-tsm provider")?;
        let name = text.trim_end_matches('\n');
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic())
        {
            return Err(AttestError::BadResponse {
                what: "configfs-tsm provider",
                why: format!("{name:?} is not a provider name"),
            });
        }
        Ok(name.to_owned())
    }

    fn read_generation(&self, entry: &Path) -> Result<u64, AttestError> {
        let text = self.read_text(entry, "generation", "configfs-tsm generation")?;
        text.trim_end_matches('\n')
            .parse()
            .map_err(|_| AttestError::BadResponse {
                what: "configfs-tsm generation",
                why: format!("{text:?} is not a number"),
            })
    }

    fn read_text(
        &self,
        entry: &Path,
        attr: &str,
        what: &'static str,
    ) -> Result<String, AttestError> {
        let bytes = self.read_capped(entry, attr, what, MAX_TEXT_LEN)?;
        String::from_utf8(bytes).map_err(|_| AttestError::BadResponse {
            what,
            why: "not UTF-8 text".into(),
        })
    }

    fn read_attr(&self, entry: &Path, attr: &'static str) -> Result<Vec<u8>, AttestError> {
        self.read_capped(entry, attr, blob_what(attr), MAX_BLOB_LEN)
    }

    /// `None` when the provider does not have the attribute.
    fn read_optional_attr(
        &self,
        entry: &Path,
        attr: &'static str,
    ) -> Result<Option<Vec<u8>>, AttestError> {
        match self.read_attr(entry, attr) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(AttestError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn read_capped(
        &self,
        entry: &Path,
        attr: &str,
        what: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, AttestError> {
        let path = entry.join(attr);
        self.hook(|k| k.reading(entry, attr), what, &path)?;
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| {
                f.take(
                    u64::try_from(limit)
                        .unwrap_or(u64::MAX)
                        .saturating_add(1),
                )
                .read_to_end(&mut bytes)
            })
            .map_err(|e| map_io(what, &path, e))?;
        if bytes.len() > limit {
            return Err(AttestError::BadResponse {
                what,
                why: format!("{} holds more than {limit} bytes", path.display()),
            });
        }
        Ok(bytes)
    }

    /// One `write` then `close`: configfs applies a binary attribute when it is closed.
    fn write_attr(&self, entry: &Path, attr: &str, bytes: &[u8]) -> Result<(), AttestError> {
        let what = match attr {
            "inblob" => "configfs-tsm inblob",
            _ => "configfs-tsm privlevel",
        };
        let path = entry.join(attr);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| map_io(what, &path, e))?;
        self.hook(|k| k.written(entry, attr), what, &path)
    }
}

fn blob_what(attr: &str) -> &'static str {
    match attr {
        "outblob" => "configfs-tsm outblob",
        "auxblob" => "configfs-tsm auxblob",
        _ => "configfs-tsm attribute",
    }
}

/// The request's result, unless it succeeded and the entry could not be removed: a leaked entry
/// holds kernel memory and must be seen. On failure the first error wins.
fn finish<T>(
    result: Result<T, AttestError>,
    removed: Result<(), AttestError>,
) -> Result<T, AttestError> {
    match (result, removed) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) | (Err(e), _) => Err(e),
    }
}

/// `EBUSY`/`EAGAIN` → [`AttestError::RateLimited`], `ENXIO` → [`AttestError::Unavailable`],
/// anything else → [`AttestError::Io`].
pub fn map_io(what: &'static str, path: &Path, e: io::Error) -> AttestError {
    match e.kind() {
        io::ErrorKind::ResourceBusy | io::ErrorKind::WouldBlock => AttestError::RateLimited {
            what,
            retry_after_ms: RETRY_AFTER_MS,
        },
        _ if e.raw_os_error() == Some(ENXIO) => AttestError::Unavailable {
            what,
            why: format!("{}: no TSM provider is registered ({e})", path.display()),
        },
        _ => AttestError::Io {
            what,
            path: path.display().to_string(),
            error: Arc::new(e),
        },
    }
}

fn expect_provider(
    report: &TsmReport,
    expected: &str,
    what: &'static str,
) -> Result<(), AttestError> {
    if report.provider == expected {
        Ok(())
    } else {
        Err(AttestError::Unavailable {
            what,
            why: format!(
                "the configfs-tsm provider is {}, not {expected}",
                report.provider
            ),
        })
    }
}

/// SEV-SNP reports through configfs-tsm (provider `sev_guest`), with the host's certificates
/// from `auxblob` when it supplies them.
#[derive(Debug, Clone)]
pub struct SnpTsm {
    tsm: ConfigfsTsm,
    vmpl: Option<u32>,
}

impl SnpTsm {
    pub fn new(tsm: ConfigfsTsm) -> Self {
        Self { tsm, vmpl: None }
    }

    /// Write `privlevel` (the VMPL) and check the report says it; by default the attribute is
    /// left alone and the kernel uses its floor (0 for a guest without an SVSM).
    pub fn with_vmpl(mut self, vmpl: u32) -> Self {
        self.vmpl = Some(vmpl);
        self
    }

    pub fn tsm(&self) -> &ConfigfsTsm {
        &self.tsm
    }
}

impl TeeAttester for SnpTsm {
    fn kind(&self) -> TeeKind {
        TeeKind::SevSnp
    }

    /// The report must parse and carry `report_data` (and the VMPL when one was asked for);
    /// `auxblob` must be a well-formed certificate table. Nothing is verified here.
    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        let report = self
            .tsm
            .report(report_data, self.vmpl)?;
        let report_data = report_data.as_bytes();
        expect_provider(&report, PROVIDER_SEV_GUEST, "SEV-SNP through configfs-tsm")?;
        snp_guest::evidence(
            report_data,
            report.outblob,
            self.vmpl,
            report.auxblob.as_deref(),
        )
    }
}

/// TDX quotes through configfs-tsm (provider `tdx_guest`). The PCS collateral is not fetched
/// here (`collateral: None`).
#[derive(Debug, Clone)]
pub struct TdxTsm {
    tsm: ConfigfsTsm,
}

impl TdxTsm {
    pub fn new(tsm: ConfigfsTsm) -> Self {
        Self { tsm }
    }

    pub fn tsm(&self) -> &ConfigfsTsm {
        &self.tsm
    }
}

impl TeeAttester for TdxTsm {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        let report = self.tsm.report(report_data, None)?;
        expect_provider(&report, PROVIDER_TDX_GUEST, "TDX through configfs-tsm")?;
        tdx_evidence(report_data.as_bytes(), report.outblob)
    }
}

/// Check a quote the kernel returned for `report_data` and wrap it as evidence: it must parse
/// (v4/v5, ECDSA P-256) and carry `report_data`. Nothing is verified here.
pub fn tdx_evidence(report_data: &[u8; 64], quote: Vec<u8>) -> Result<TeeEvidence, AttestError> {
    let parsed = Quote::parse(&quote).map_err(|e| AttestError::BadResponse {
        what: "TDX quote",
        why: e.to_string(),
    })?;
    if parsed.report.report_data != *report_data {
        return Err(AttestError::BadResponse {
            what: "TDX quote",
            why: format!(
                "report_data {} is not the requested {}",
                hex(parsed.report.report_data),
                hex(report_data)
            ),
        });
    }
    Ok(TeeEvidence::Tdx {
        quote: ByteBuf::from(quote),
        collateral: None,
    })
}

#[cfg(test)]
pub(crate) mod tests;
