//! A measured-file simulator for hosts without IMA (features `tpm` + `sim`: the demo and the tests
//! run it on swtpm): real `ima-ng` records in the kernel's binary
//! format, appended to a file, with PCR 10 extended in the TPM the way a current kernel does it.
//!
//! What the kernel (5.8 and later) does, and this simulator reproduces:
//!
//! - The first record is `boot_aggregate`: with the `sha256` bank, SHA-256 over PCRs 0–9 of that
//!   bank read from the TPM (`ima_calc_boot_aggregate`: PCRs 0–7, plus 8–9 for every bank but
//!   SHA-1 since 5.8), recorded as `d-ng = "sha256:" ‖ 0 ‖ digest`, `n-ng = "boot_aggregate"`.
//! - Each record's template data is `ima-ng`: `u32le len ‖ "sha256:\0" ‖ file digest`, then
//!   `u32le len ‖ path ‖ 0`.
//! - `binary_runtime_measurements` stores `u32le pcr ‖ SHA-1(template data) ‖ u32le name len ‖
//!   "ima-ng" ‖ u32le data len ‖ data` (the SHA-1 template hash, as that export does).
//! - PCR 10 is extended per bank with that bank's hash of the template data: SHA-1 in `sha1`,
//!   SHA-256 in `sha256`.
//! - The record is added to the list before the TPM is extended, so a reader never sees a PCR
//!   value the list does not explain (a quote may cover a prefix of the list).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attest::tpm::TssTpm;
use crate::attest::{AttestError, ImaSource};
use crate::digest::HashAlg;
use crate::ima::{Log, Template, IMA_PCR};

/// The PCRs `boot_aggregate` covers for a non-SHA-1 bank (kernel 5.8+).
pub const BOOT_AGGREGATE_PCRS: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// Appends `ima-ng` records to a file and extends PCR 10 of a TPM. See the module docs.
#[derive(Debug)]
pub struct ImaSimulator<'t> {
    tpm: &'t TssTpm,
    path: PathBuf,
    log: Log,
    boot_aggregate: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
    move |error| AttestError::Io {
        what: "simulated IMA log",
        path: path.display().to_string(),
        error: Arc::new(error),
    }
}

impl<'t> ImaSimulator<'t> {
    /// Start a new boot's log at `log_path` (truncated): compute `boot_aggregate` from the
    /// TPM's sha256 PCRs 0–9 and record it.
    pub fn new(log_path: impl Into<PathBuf>, tpm: &'t TssTpm) -> Result<Self, AttestError> {
        let path = log_path.into();
        File::create(&path).map_err(io(&path))?;
        let pcrs = tpm.read_pcrs(&[HashAlg::Sha256], &BOOT_AGGREGATE_PCRS)?;
        let bank = pcrs
            .get(&HashAlg::Sha256)
            .ok_or(AttestError::BadResponse {
                what: "TPM",
                why: "no sha256 PCR values".into(),
            })?;
        let boot_aggregate = HashAlg::Sha256.digest_all(bank.values().map(Vec::as_slice));
        let mut sim = Self {
            tpm,
            path,
            log: Log::new(HashAlg::Sha1),
            boot_aggregate: boot_aggregate.clone(),
        };
        sim.measure(b"boot_aggregate", &boot_aggregate)?;
        Ok(sim)
    }

    /// Continue the log at `log_path` (written by [`new`](Self::new) earlier in this boot).
    pub fn resume(log_path: impl Into<PathBuf>, tpm: &'t TssTpm) -> Result<Self, AttestError> {
        let path = log_path.into();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let log = Log::parse(&bytes).map_err(|e| AttestError::BadResponse {
            what: "simulated IMA log",
            why: e.to_string(),
        })?;
        let boot_aggregate = log
            .entries()
            .first()
            .map(|e| e.file_digest().to_vec())
            .unwrap_or_default();
        Ok(Self {
            tpm,
            path,
            log,
            boot_aggregate,
        })
    }

    /// Measure a real file: SHA-256 of its contents (streamed), recorded under its path.
    /// Returns the file digest.
    pub fn measure_file(&mut self, file: &Path) -> Result<Vec<u8>, AttestError> {
        let mut input = File::open(file).map_err(io(file))?;
        let mut hasher = HashAlg::Sha256.hasher();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut buf).map_err(io(file))?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        let digest = hasher.finish();
        self.measure(file.as_os_str().as_bytes(), &digest)?;
        Ok(digest)
    }

    /// Record `path` with the SHA-256 file digest `digest`, then extend PCR 10.
    pub fn measure(&mut self, path: &[u8], digest: &[u8]) -> Result<(), AttestError> {
        let bad = |e: crate::ParseError| AttestError::BadResponse {
            what: "IMA record",
            why: e.to_string(),
        };
        // The record alone, in the binary export's form, appended to the file.
        let mut one = Log::new(HashAlg::Sha1);
        let entry = one
            .push(IMA_PCR, Template::ImaNg, Some("sha256"), digest, path, &[])
            .map_err(bad)?;
        let sha1 = entry.template_digest(HashAlg::Sha1);
        let sha256 = entry.template_digest(HashAlg::Sha256);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        file.write_all(&one.to_binary())
            .map_err(io(&self.path))?;
        self.log
            .push(IMA_PCR, Template::ImaNg, Some("sha256"), digest, path, &[])
            .map_err(bad)?;
        let pcr = u8::try_from(IMA_PCR).unwrap_or(10);
        self.tpm.extend_pcr(
            pcr,
            &[
                (HashAlg::Sha1, sha1.as_slice()),
                (HashAlg::Sha256, sha256.as_slice()),
            ],
        )
    }

    /// The log so far.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This boot's `boot_aggregate` (SHA-256 over sha256 PCRs 0–9).
    pub fn boot_aggregate(&self) -> &[u8] {
        &self.boot_aggregate
    }

    /// The log in binary form (what the file holds).
    pub fn to_binary(&self) -> Vec<u8> {
        self.log.to_binary()
    }
}

impl ImaSource for ImaSimulator<'_> {
    fn read_log(&self) -> Result<Vec<u8>, AttestError> {
        std::fs::read(&self.path).map_err(io(&self.path))
    }
}

/// Extend PCRs 0–9 in the sha1 and sha256 banks with digests of `"<label> pcr <i>"`, standing
/// in for firmware, boot loader and kernel measurements (a different label gives a different
/// boot). For swtpm only: on a real machine the firmware does this.
pub fn simulate_boot(tpm: &TssTpm, label: &str) -> Result<(), AttestError> {
    for pcr in 0u8..10 {
        let event = format!("{label} pcr {pcr}");
        let sha1 = HashAlg::Sha1.digest(event.as_bytes());
        let sha256 = HashAlg::Sha256.digest(event.as_bytes());
        tpm.extend_pcr(
            pcr,
            &[
                (HashAlg::Sha1, sha1.as_slice()),
                (HashAlg::Sha256, sha256.as_slice()),
            ],
        )?;
    }
    Ok(())
}

/// [`simulate_boot`] that also writes the firmware event log of the boot to `event_log` (a
/// crypto-agile log with sha1 and sha256 digests), as OVMF and the Linux EFI stub would: PCRs
/// 0–8 get one `EV_EFI_ACTION` event `"<label> pcr <i>"` each (the same extends as
/// [`simulate_boot`]); PCR 9 gets the stub's two `EV_EVENT_TAG` events,
/// `LOADED_IMAGE::LoadOptions` with the digest of `cmdline` (UTF-16LE plus a NUL, as the stub
/// measures it) and `Linux initrd` with the digest of `"<label> initrd"`. A different
/// `cmdline` therefore changes PCR 9 only. For swtpm only.
pub fn simulate_boot_with_event_log(
    tpm: &TssTpm,
    label: &str,
    cmdline: &str,
    event_log: &Path,
) -> Result<(), AttestError> {
    use crate::eventlog::{tagged_event, EventType, LogBuilder};

    const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];
    let mut log = LogBuilder::new(&BANKS);
    let extend = |pcr: u8, digests: &[(HashAlg, Vec<u8>)]| {
        let pairs: Vec<(HashAlg, &[u8])> = digests
            .iter()
            .map(|(bank, digest)| (*bank, digest.as_slice()))
            .collect();
        tpm.extend_pcr(pcr, &pairs)
    };
    for pcr in 0u8..9 {
        let event = format!("{label} pcr {pcr}");
        let digests = log.measure(u32::from(pcr), EventType::EFI_ACTION, event.as_bytes());
        extend(pcr, &digests)?;
    }
    let mut options: Vec<u8> = cmdline
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    options.extend([0, 0]);
    let initrd = format!("{label} initrd");
    for (id, tag, content) in [
        (0x8F3B_22ED, "LOADED_IMAGE::LoadOptions", options.as_slice()),
        (0x8F3B_22EC, "Linux initrd", initrd.as_bytes()),
    ] {
        let digests: Vec<(HashAlg, Vec<u8>)> = BANKS
            .iter()
            .map(|&bank| (bank, bank.digest(content)))
            .collect();
        log.event(9, EventType::EVENT_TAG, &digests, &tagged_event(id, tag));
        extend(9, &digests)?;
    }
    crate::fsutil::write_atomic(event_log, log.as_bytes(), crate::fsutil::PUBLIC_MODE)
        .map_err(io(event_log))
}
