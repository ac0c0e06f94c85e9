//! The audit log: every attestation a verifier accepted or rejected, appended to a local store
//! that survives crashes, and queried after a vendor advisory ("which sessions did we accept
//! from machines now known bad?"). `docs/audit.md` has the format and why it is built this way.
//!
//! - **Format**: JSON Lines in segment files `audit-<first seq, 16 digits>.jsonl` of one
//!   directory (mode 0700, files 0600); a new segment starts when the current one passes its
//!   size limit. Nothing here deletes a segment: pruning is the operator's decision.
//! - **Durable before use**: [`AuditLog::append`] returns only once the record is on disk
//!   (`fdatasync`); a verifier lets a connection proceed only after that, so a connection that
//!   reached the application always has its record, also after `kill -9` or a power cut.
//! - **Group commit**: one writer thread takes every record waiting, writes them in one
//!   `write`, syncs once and answers them all: the cost of a sync is shared under load.
//! - **Tamper-evident**: each record carries `prev`, the SHA-256 of the line before it (64
//!   zeros for the first); [`scan`] reports any break of the chain.
//! - **Crash recovery**: a line cut short by a crash was never acknowledged; opening the log
//!   truncates it (and says so) before appending.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::time::UnixTime;
use crate::verdict::{Outcome, Verdict};

/// The record format version.
pub const RECORD_VERSION: u32 = 1;

/// The default size at which a new segment starts.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The longest line [`scan`] reads; records are far smaller (their texts are cut at 2 KiB).
pub const MAX_LINE: usize = 64 << 10;

/// The longest free text kept in a record (reasons, expected and presented values).
const MAX_TEXT: usize = 2048;

/// The most records one group commit writes.
const MAX_GROUP: usize = 4096;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An SEV-SNP TCB version (the report's `reported_tcb`: the one its VCEK is derived for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

/// Whether the verifier let the peer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accepted,
    Rejected,
}

impl core::fmt::Display for Decision {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        })
    }
}

/// One attestation, as logged. Hex is lower case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    /// Position in the log, from 1, without gaps (set by the writer).
    pub seq: u64,
    /// When the verdict was reached, seconds since the Unix epoch.
    pub time: u64,
    /// The verifier's identifier of the connection (also given to the application).
    pub connection_id: String,
    /// The peer: its address, or the target's name on the client side.
    pub peer: String,
    /// Who verified: e.g. `cosmian_vm_proxy server`.
    pub verifier: String,
    pub decision: Decision,
    /// The failed step (rejections), e.g. `ima.unknown_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `sev-snp`, `tdx`, ... (`unknown` when the evidence never parsed).
    pub platform: String,
    pub simulated: bool,
    /// The role the peer attested as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip_id: Option<String>,
    /// TDX: the PCK certificate's FMSPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmspc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_tcb: Option<Tcb>,
    /// TDX: TEE_TCB_SVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn: Option<String>,
    /// TDX: the TCB status against Intel's collateral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
    /// SEV-SNP MEASUREMENT, TDX MRTD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
    pub policy_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    /// For a re-attestation of a live connection: which one (1, 2, ...); absent for the
    /// verdict that opened the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattestation: Option<u64>,
    /// SHA-256 of the previous line (its bytes and newline); 64 zeros for the first record.
    pub prev: String,
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Record {
    /// A record of `verdict` (trusted: accepted; otherwise rejected at its first failed step).
    pub fn from_verdict(
        verdict: &Verdict,
        policy_sha256: &[u8; 32],
        peer: &str,
        connection_id: &str,
        verifier: &str,
    ) -> Self {
        let mut record = Self::bare(policy_sha256, peer, connection_id, verifier);
        record.decision = match verdict.outcome() {
            Outcome::Trusted => Decision::Accepted,
            Outcome::Rejected => Decision::Rejected,
        };
        record.platform = verdict.platform.to_string();
        record.simulated = verdict.simulated;
        if let Some(failed) = verdict.first_failure() {
            record.step = Some(failed.step.to_string());
            record.expected = Some(cut(&failed.expected));
            record.presented = Some(cut(&failed.presented));
            record.reason = Some(cut(&failed.detail));
        }
        let bundle = match &verdict.claims {
            Claims::Bundle(b) => {
                record.role = Some(b.role.clone());
                record.evidence_sha256 = Some(b.evidence_sha256.clone());
                record.batch_size = b.batch.as_ref().map(|b| b.size);
                b.tee.as_ref()
            }
            other => Some(other),
        };
        if let Some(tee) = bundle {
            record.fill_tee(tee);
        }
        record
    }

    /// A refusal with no verdict behind it (a name check, an exchange the peer broke off).
    pub fn refusal(
        step: Option<&str>,
        reason: &str,
        policy_sha256: &[u8; 32],
        peer: &str,
        connection_id: &str,
        verifier: &str,
    ) -> Self {
        let mut record = Self::bare(policy_sha256, peer, connection_id, verifier);
        record.step = step.map(str::to_owned);
        record.reason = Some(cut(reason));
        record
    }

    fn bare(policy_sha256: &[u8; 32], peer: &str, connection_id: &str, verifier: &str) -> Self {
        Self {
            v: RECORD_VERSION,
            seq: 0,
            time: UnixTime::now().as_secs(),
            connection_id: cut(connection_id),
            peer: cut(peer),
            verifier: cut(verifier),
            decision: Decision::Rejected,
            step: None,
            expected: None,
            presented: None,
            reason: None,
            platform: "unknown".into(),
            simulated: false,
            role: None,
            chip_id: None,
            fmspc: None,
            reported_tcb: None,
            tee_tcb_svn: None,
            tcb_status: None,
            advisory_ids: Vec::new(),
            measurement: None,
            evidence_sha256: None,
            policy_sha256: hex::encode(policy_sha256),
            batch_size: None,
            reattestation: None,
            prev: String::new(),
        }
    }

    fn fill_tee(&mut self, tee: &Claims) {
        match tee {
            Claims::Snp(s) => {
                self.chip_id = Some(s.chip_id.clone());
                self.measurement = Some(s.measurement.clone());
                let t = s.reported_tcb;
                self.reported_tcb = Some(Tcb {
                    fmc: t.fmc,
                    bootloader: t.bootloader,
                    tee: t.tee,
                    snp: t.snp,
                    microcode: t.microcode,
                });
            }
            Claims::Tdx(t) => {
                self.measurement = Some(t.mr_td.clone());
                self.fmspc = t.fmspc.clone();
                self.tee_tcb_svn = Some(t.tee_tcb_svn.clone());
                self.tcb_status = t.tcb_status.clone();
                self.advisory_ids = t.advisory_ids.clone();
            }
            Claims::Azure(a) => {
                if let Some(inner) = &a.tee {
                    self.fill_tee(inner);
                }
            }
            _ => {}
        }
    }
}

/// Why the audit log could not be opened, written or read. Names the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {what}: {error}")]
    Io {
        path: String,
        what: &'static str,
        error: String,
    },
    #[error("audit log {path}: {why}")]
    Corrupt { path: String, why: String },
    #[error("audit log: the writer stopped ({0}); nothing is logged until the proxy restarts")]
    Stopped(String),
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl Fn(std::io::Error) -> AuditError + 'a {
    move |e| AuditError::Io {
        path: path.display().to_string(),
        what,
        error: e.to_string(),
    }
}

/// The segment files of `dir`, in order.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir, "listing"))? {
        let entry = entry.map_err(io(dir, "listing"))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_prefix("audit-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

fn segment_name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("audit-{first_seq:016}.jsonl"))
}

struct Job {
    record: Record,
    done: mpsc::SyncSender<Result<u64, AuditError>>,
}

/// An open audit log: cheap to share (`Arc`); appends from any thread.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Dropping the log lets the writer finish what it holds and release the directory's lock.
impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    prev: String,
    segment_bytes: u64,
    failed: Option<String>,
    /// Held for the writer's lifetime (`File::try_lock`): released when the process ends.
    lock: Option<File>,
    /// When the chain's head was last logged (for an operator to keep outside the directory).
    head_logged: Option<std::time::Instant>,
}

impl AuditLog {
    /// Open (or create) the log in `dir`, recovering from a crash, and start its writer.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, AuditError> {
        let existed = dir.is_dir();
        crate::fsutil::create_dir(dir, 0o700).map_err(io(dir, "creating the directory"))?;
        if !existed {
            // The new directory's entry must survive a power cut with the first records.
            if let Some(parent) = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io(parent, "syncing the parent directory"))?;
            }
        }
        // One writer per directory: a second would fork the chain.
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "opening the lock file"))?;
        lock.try_lock()
            .map_err(|e| AuditError::Io {
                path: lock_path.display().to_string(),
                what: "locking (another process is writing this audit log)",
                error: e.to_string(),
            })?;
        let mut writer = Writer::recover(dir, segment_bytes.max(4096))?;
        writer.lock = Some(lock);
        let (jobs, rx) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(&rx))
            .map_err(io(dir, "starting the writer thread"))?;
        Ok(Self {
            dir: dir.to_owned(),
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append `record` and return its sequence number once it is on disk. Blocking (a disk
    /// sync, shared with the records written at the same time): async callers use
    /// `spawn_blocking`.
    pub fn append(&self, record: Record) -> Result<u64, AuditError> {
        let (done, answer) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(|| AuditError::Stopped("the log is closing".into()))?
            .send(Job { record, done })
            .map_err(|_| AuditError::Stopped("the writer thread ended".into()))?;
        answer
            .recv()
            .map_err(|_| AuditError::Stopped("the writer thread ended".into()))?
    }
}

impl Writer {
    fn recover(dir: &Path, segment_bytes: u64) -> Result<Self, AuditError> {
        let existing = segments(dir)?;
        let Some(last) = existing.last() else {
            let path = segment_name(dir, 1);
            let file = create_segment(dir, &path)?;
            return Ok(Self {
                dir: dir.to_owned(),
                file,
                path,
                len: 0,
                next_seq: 1,
                prev: GENESIS.into(),
                segment_bytes,
                failed: None,
                lock: None,
                head_logged: None,
            });
        };
        let path = last.clone();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path, "opening"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io(&path, "reading"))?;
        let complete = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                "audit log {}: dropping a record cut short by a crash ({} bytes, never \
                 acknowledged)",
                path.display(),
                bytes.len() - complete
            );
            file.set_len(complete as u64)
                .map_err(io(&path, "truncating a torn record"))?;
            file.sync_all()
                .map_err(io(&path, "syncing"))?;
            file.seek(SeekFrom::End(0))
                .map_err(io(&path, "seeking"))?;
        }
        let body = bytes
            .get(..complete)
            .unwrap_or_default();
        let (next_seq, prev) = match last_line(body) {
            Some((start, line)) => {
                let record: Record =
                    serde_json::from_slice(line).map_err(|e| AuditError::Corrupt {
                        path: path.display().to_string(),
                        why: format!(
                            "the last record (byte {start}) does not parse ({e}); move the \
                             file aside to start a new chain"
                        ),
                    })?;
                (
                    next(&path, record.seq)?,
                    hex::encode(crate::digest::sha256(line)),
                )
            }
            None => {
                // An empty segment (a crash or a failed sync right after it was created): the
                // chain and the sequence continue from the segment before it, if any.
                let before = existing
                    .len()
                    .checked_sub(2)
                    .and_then(|i| existing.get(i));
                match before {
                    Some(before) => last_record(before)?,
                    None => (1, GENESIS.into()),
                }
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            file,
            path,
            len: complete as u64,
            next_seq,
            prev,
            segment_bytes,
            failed: None,
            lock: None,
            head_logged: None,
        })
    }

    fn run(&mut self, jobs: &mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let result = self.write(&mut group);
            for (i, job) in group.into_iter().enumerate() {
                let answer = match &result {
                    Ok(first_seq) => Ok(first_seq + i as u64),
                    Err(e) => Err(e.clone()),
                };
                // The caller may have gone (its connection closed): nothing to tell it.
                let _ = job.done.send(answer);
            }
        }
    }

    /// Write `group` and sync: the first record's sequence number.
    fn write(&mut self, group: &mut [Job]) -> Result<u64, AuditError> {
        if let Some(why) = &self.failed {
            return Err(AuditError::Stopped(why.clone()));
        }
        let first_seq = self.next_seq;
        let mut out = Vec::with_capacity(group.len() * 768);
        let mut prev = self.prev.clone();
        for (i, job) in group.iter_mut().enumerate() {
            job.record.seq = first_seq + i as u64;
            job.record.prev = prev;
            let start = out.len();
            serde_json::to_writer(&mut out, &job.record).map_err(|e| AuditError::Io {
                path: self.path.display().to_string(),
                what: "encoding a record",
                error: e.to_string(),
            })?;
            out.push(b'\n');
            prev = hex::encode(crate::digest::sha256(out.get(start..).unwrap_or_default()));
        }
        let written = self
            .file
            .write_all(&out)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of the group may be on disk: stop rather than append after a torn line;
            // the next start truncates it.
            let e = io(&self.path, "writing")(e);
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.len += out.len() as u64;
        self.next_seq += group.len() as u64;
        self.prev = prev;
        if self.len >= self.segment_bytes {
            let path = segment_name(&self.dir, self.next_seq);
            match create_segment(&self.dir, &path) {
                Ok(file) => {
                    self.file = file;
                    self.path = path;
                    self.len = 0;
                }
                // Keep appending to the full segment; the next group tries again. A file
                // created before the failure is removed so that no empty segment names a
                // sequence number the full one goes on to use.
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    tracing::warn!("audit log: starting a new segment: {e}");
                }
            }
        }
        let due = self
            .head_logged
            .is_none_or(|t| t.elapsed() >= HEAD_LOG_INTERVAL);
        if due {
            self.head_logged = Some(std::time::Instant::now());
            tracing::info!(
                seq = self.next_seq - 1,
                sha256 = %self.prev,
                "audit log head: seq {} sha256 {} (keep it elsewhere: `cosmian_vm audit verify \
                 --head {}:{}` then proves no later record was removed)",
                self.next_seq - 1,
                self.prev,
                self.next_seq - 1,
                self.prev
            );
        }
        Ok(first_seq)
    }
}

/// How often the writer logs the chain's head (seq and hash of the last record).
const HEAD_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The sequence number after `seq`, or the log is corrupt.
fn next(path: &Path, seq: u64) -> Result<u64, AuditError> {
    seq.checked_add(1)
        .ok_or_else(|| AuditError::Corrupt {
            path: path.display().to_string(),
            why: format!("the last record's seq {seq} has no successor"),
        })
}

fn create_segment(dir: &Path, path: &Path) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options
        .append(true)
        .read(true)
        .create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(io(path, "creating a segment"))?;
    file.sync_all()
        .map_err(io(path, "syncing"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "syncing the directory"))?;
    Ok(file)
}

/// The next sequence number and the chain hash after the last record of a full segment.
fn last_record(path: &Path) -> Result<(u64, String), AuditError> {
    let bytes = std::fs::read(path).map_err(io(path, "reading"))?;
    let corrupt = |why: String| AuditError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    let (start, line) = last_line(&bytes).ok_or_else(|| {
        corrupt("a segment before the last does not end with a whole record".into())
    })?;
    let record: Record = serde_json::from_slice(line).map_err(|e| {
        corrupt(format!(
            "the last record (byte {start}) does not parse ({e})"
        ))
    })?;
    Ok((
        next(path, record.seq)?,
        hex::encode(crate::digest::sha256(line)),
    ))
}

/// The last line of `bytes` (which end with a newline, or are empty) and where it starts.
fn last_line(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n")?;
    let start = body
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Some((start, bytes.get(start..)?))
}

/// What [`scan`] found besides the records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub segments: usize,
    pub records: u64,
    /// The last segment ends with a record cut short by a crash (never acknowledged).
    pub torn_tail: bool,
    /// Breaks of the hash chain or of the sequence, unreadable lines: each names the file and
    /// line. Empty for an intact log.
    pub problems: Vec<String>,
    /// The last record's seq and the SHA-256 of its line: what to keep outside the directory
    /// to detect later that records were removed from the end ([`scan_expecting`]).
    pub head: Option<Head>,
}

/// A point of the chain: a record's seq and the SHA-256 of its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    pub sha256: String,
}

impl Head {
    /// Parse `SEQ:SHA256` (as the proxy logs it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (seq, sha256) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected SEQ:SHA256"))?;
        let seq = seq
            .trim()
            .parse()
            .map_err(|e| format!("{text:?}: seq: {e}"))?;
        let sha256 = sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!("{text:?}: expected 64 hex digits after the colon"));
        }
        Ok(Self { seq, sha256 })
    }
}

/// Read every record of the log in `dir`, in order, checking the chain; `each` sees every
/// record that parses.
pub fn scan(dir: &Path, each: impl FnMut(&Record)) -> Result<ScanReport, AuditError> {
    scan_expecting(dir, None, each)
}

/// [`scan`], also checking that the chain still holds `head` (a seq and line hash kept outside
/// the directory, e.g. from the proxy's log): records removed from the end, which the chain
/// alone cannot show, are reported.
pub fn scan_expecting(
    dir: &Path,
    head: Option<&Head>,
    mut each: impl FnMut(&Record),
) -> Result<ScanReport, AuditError> {
    let mut head_seen = false;
    let files = segments(dir)?;
    let mut report = ScanReport {
        segments: files.len(),
        ..ScanReport::default()
    };
    let mut prev = GENESIS.to_owned();
    let mut expect_seq = 1u64;
    let last_index = files.len().saturating_sub(1);
    for (index, path) in files.iter().enumerate() {
        let file = File::open(path).map_err(io(path, "opening"))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(io(path, "reading"))?;
            if n == 0 {
                break;
            }
            number += 1;
            let at = format!("{}:{number}", path.display());
            if line.last() != Some(&b'\n') {
                if line.len() > MAX_LINE {
                    report
                        .problems
                        .push(format!("{at}: a line longer than {MAX_LINE} bytes"));
                    skip_line(&mut reader).map_err(io(path, "reading"))?;
                    prev = String::new();
                    continue;
                }
                if index == last_index {
                    report.torn_tail = true;
                } else {
                    report
                        .problems
                        .push(format!("{at}: a record cut short inside the log"));
                }
                break;
            }
            let digest = hex::encode(crate::digest::sha256(&line));
            match serde_json::from_slice::<Record>(&line) {
                Ok(record) => {
                    if record.prev != prev {
                        report.problems.push(format!(
                            "{at}: chain broken at seq {}: expected prev {prev}, presented {}",
                            record.seq, record.prev
                        ));
                    }
                    if record.seq != expect_seq {
                        report.problems.push(format!(
                            "{at}: sequence broken: expected seq {expect_seq}, presented {}",
                            record.seq
                        ));
                    }
                    expect_seq = record.seq.saturating_add(1);
                    report.records += 1;
                    if let Some(h) = head.filter(|h| h.seq == record.seq) {
                        head_seen = true;
                        if h.sha256 != digest {
                            report.problems.push(format!(
                                "{at}: seq {} is not the record kept elsewhere: expected sha256 \
                                 {}, presented {digest}",
                                record.seq, h.sha256
                            ));
                        }
                    }
                    report.head = Some(Head {
                        seq: record.seq,
                        sha256: digest.clone(),
                    });
                    each(&record);
                }
                Err(e) => report
                    .problems
                    .push(format!("{at}: not a record ({e})")),
            }
            prev = digest;
        }
    }
    if let (Some(h), false) = (head, head_seen) {
        report.problems.push(format!(
            "record seq {} (sha256 {}) kept elsewhere is not in the log: records were removed \
             from its end (the last one is seq {})",
            h.seq,
            h.sha256,
            report
                .head
                .as_ref()
                .map_or(0, |x| x.seq)
        ));
    }
    Ok(report)
}

/// Consume the rest of a line without holding it.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// A TCB component [`Query::tcb_below`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbPart {
    Bootloader,
    Tee,
    Snp,
    Microcode,
    Fmc,
}

impl TcbPart {
    fn of(self, tcb: &Tcb) -> Option<u8> {
        match self {
            Self::Bootloader => Some(tcb.bootloader),
            Self::Tee => Some(tcb.tee),
            Self::Snp => Some(tcb.snp),
            Self::Microcode => Some(tcb.microcode),
            Self::Fmc => tcb.fmc,
        }
    }
}

/// Parse `bl=7,snp=15` (names: `bl`/`bootloader`, `tee`, `snp`, `ucode`/`microcode`, `fmc`).
pub fn parse_tcb_below(text: &str) -> Result<Vec<(TcbPart, u8)>, String> {
    let mut parts = Vec::new();
    for item in text
        .split(',')
        .filter(|s| !s.trim().is_empty())
    {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected NAME=VALUE, e.g. bl=7,snp=15"))?;
        let part = match name
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "bl" | "bootloader" => TcbPart::Bootloader,
            "tee" => TcbPart::Tee,
            "snp" => TcbPart::Snp,
            "ucode" | "microcode" => TcbPart::Microcode,
            "fmc" => TcbPart::Fmc,
            other => {
                return Err(format!(
                    "{other:?}: not a TCB component (bl, tee, snp, ucode, fmc)"
                ))
            }
        };
        let value = value
            .trim()
            .parse::<u8>()
            .map_err(|e| format!("{item:?}: {e} (a TCB component is 0 to 255)"))?;
        parts.push((part, value));
    }
    if parts.is_empty() {
        return Err("no TCB component given, e.g. bl=7,snp=15".into());
    }
    Ok(parts)
}

/// Parse `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<UnixTime, String> {
    let date_only = ::time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = ::time::Date::parse(text, date_only) {
        let secs = date
            .midnight()
            .assume_utc()
            .unix_timestamp();
        return u64::try_from(secs)
            .map(UnixTime::from_secs)
            .map_err(|_| format!("{text:?} is before 1970"));
    }
    UnixTime::parse_rfc3339(text).map_err(|e| format!("{e} (or a date such as 2026-11-01)"))
}

/// Which records a query selects: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// SEV-SNP: some named component of the reported TCB is below its value (a TCB recall
    /// fixed in these versions). Records without an SEV-SNP TCB do not match.
    pub tcb_below: Vec<(TcbPart, u8)>,
    /// The launch measurement (hex, any case).
    pub measurement: Option<String>,
    pub chip_id: Option<String>,
    /// TDX: an advisory id of the matched TCB level, e.g. `INTEL-SA-00837`.
    pub advisory: Option<String>,
    pub decision: Option<Decision>,
    pub connection_id: Option<String>,
}

impl Query {
    pub fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| {
                have.as_ref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(w))
            })
        };
        self.since
            .is_none_or(|t| r.time >= t.as_secs())
            && self
                .until
                .is_none_or(|t| r.time < t.as_secs())
            && (self.tcb_below.is_empty()
                || r.reported_tcb.is_some_and(|tcb| {
                    self.tcb_below
                        .iter()
                        .any(|(part, min)| part.of(&tcb).is_some_and(|v| v < *min))
                }))
            && eq(&self.measurement, &r.measurement)
            && eq(&self.chip_id, &r.chip_id)
            && self.advisory.as_ref().is_none_or(|a| {
                r.advisory_ids
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(a))
            })
            && self
                .decision
                .is_none_or(|d| d == r.decision)
            && self
                .connection_id
                .as_ref()
                .is_none_or(|c| *c == r.connection_id)
    }
}

#[cfg(test)]
mod tests;
