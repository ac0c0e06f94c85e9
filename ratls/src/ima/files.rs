//! Approved files ([`FileSet`]: path → digests) and the check of an IMA log's measurements
//! against them: what a snapshot approves, what `cosmian_vm verify` and a proxy given
//! `--snapshot` compare every measured file with (a whole log, or the delta of a
//! re-attestation).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Log, IMA_PCR};
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::verdict::{Check, Step};

/// Approved files: path → digests (lower-case hex) in `hash_alg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSet {
    pub hash_alg: HashAlg,
    pub files: BTreeMap<String, BTreeSet<String>>,
    /// Path prefixes the filesystem walk skipped (for the record).
    #[serde(default)]
    pub excludes: Vec<String>,
}

impl FileSet {
    pub fn new(hash_alg: HashAlg) -> Self {
        Self {
            hash_alg,
            files: BTreeMap::new(),
            excludes: Vec::new(),
        }
    }

    /// Approve `digest` for `path`.
    pub fn insert(&mut self, path: impl Into<String>, digest: &[u8]) {
        self.files
            .entry(path.into())
            .or_default()
            .insert(hex(digest));
    }

    /// Add every IMA measurement of `log` (PCR 10, past `boot_aggregate`, in this set's
    /// algorithm) to the set.
    pub fn add_ima_log(&mut self, log: &Log) {
        self.add_ima_log_covered(log, usize::MAX);
    }

    /// [`FileSet::add_ima_log`] limited to the first `covered` PCR-10 entries (the quoted
    /// prefix, `ImaClaims::quote_prefix`): entries after it are vouched for by nobody (measured
    /// after the quote, or appended by anyone with root), so a snapshot does not approve them.
    pub fn add_ima_log_covered(&mut self, log: &Log, covered: usize) {
        for entry in measured_files_in(log, covered) {
            if entry.algo == self.hash_alg.name() {
                self.insert(entry.path, &entry.digest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Compare every file IMA measured since boot (PCR 10 entries past `boot_aggregate`) with
    /// the approved files: one `ima.unknown_file` check per path never approved, one
    /// `ima.changed_file` per approved path measured with another digest, or a single passing
    /// `ima.files` check. Entries in another algorithm than the snapshot's are failures too
    /// (`ima.file_hash_alg`): an unverifiable file is not an approved one.
    ///
    /// Every entry of the log is compared, including those past the prefix the quoted PCR 10
    /// covers: they are unverified (anyone with root can append some), but an extra entry can
    /// only add a failure here. Nothing here is evidence that the log covers anything: that is
    /// `ima.coverage`, which counts only the measurements inside the quoted prefix, and a log
    /// with no measurement passes `ima.files` with "0 measurements".
    pub fn check(&self, log: &Log) -> Vec<Check> {
        let mut checks = Vec::new();
        let mut seen = 0usize;
        let alg = self.hash_alg.name();
        for entry in measured_files(log) {
            seen += 1;
            if entry.algo != alg {
                checks.push(Check::fail(
                    Step::IMA_FILE_HASH_ALG,
                    format!("{alg} file digests (the snapshot's)"),
                    format!("{}: {}", entry.path, entry.algo),
                    "the IMA policy's hash algorithm differs from the snapshot's",
                ));
                continue;
            }
            let digest = hex(&entry.digest);
            match self.files.get(&entry.path) {
                None => checks.push(Check::fail(
                    Step::IMA_UNKNOWN_FILE,
                    "only files in the snapshot",
                    format!("{} {alg}:{digest}", entry.path),
                    "a file measured since boot that the snapshot does not know",
                )),
                Some(approved) if !approved.contains(&digest) => checks.push(Check::fail(
                    Step::IMA_CHANGED_FILE,
                    format!(
                        "{} {alg}:{}",
                        entry.path,
                        approved
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ),
                    format!("{} {alg}:{digest}", entry.path),
                    "a file the snapshot knows, measured with other content",
                )),
                Some(_) => {}
            }
        }
        if checks.is_empty() {
            checks.push(Check::pass(
                Step::IMA_FILES,
                format!("only the snapshot's {} files", self.len()),
                format!("{seen} measurements, all approved"),
            )
            .with_detail(
                "every PCR-10 entry of the log compared, including any past the quoted prefix; \
                 how much the quote covers is ima.coverage's to judge",
            ));
        }
        checks
    }
}

/// One measured file of an IMA log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredFile {
    pub path: String,
    pub algo: String,
    pub digest: Vec<u8>,
}

/// The files an IMA log measured into PCR 10 since boot: every entry but `boot_aggregate` and
/// violations (which the IMA verifier judges on their own). Paths are shown escaped (a newline
/// in a name cannot forge a line).
pub fn measured_files(log: &Log) -> Vec<MeasuredFile> {
    measured_files_in(log, usize::MAX)
}

/// [`measured_files`] among the first `covered` PCR-10 entries of `log`.
fn measured_files_in(log: &Log, covered: usize) -> Vec<MeasuredFile> {
    log.entries()
        .iter()
        .filter(|e| e.pcr() == IMA_PCR)
        .take(covered)
        .filter(|e| !e.is_violation() && e.path() != b"boot_aggregate")
        .map(|e| MeasuredFile {
            path: e.path_display().to_string(),
            algo: if e.file_digest_algo().is_empty() {
                // `ima` template: SHA-1 without a prefix.
                "sha1".to_owned()
            } else {
                e.file_digest_algo().to_owned()
            },
            digest: e.file_digest().to_vec(),
        })
        .collect()
}
