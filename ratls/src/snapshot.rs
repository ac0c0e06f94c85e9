//! Snapshots: what a VM looked like when its owner approved it, and the checks that compare a
//! later verdict and IMA log against it.
//!
//! A snapshot is versioned JSON. It holds the verification [`Policy`] derived from verified
//! evidence (the TEE's launch measurement and policy bits, the TPM's boot PCRs 0–9 and AK) and
//! the set of approved files (path → digests, from the IMA log and the agent's filesystem walk).
//! PCR 10 and the IMA log's length are deliberately not pinned: they grow as the machine runs
//! and start again at each boot; every entry past `boot_aggregate` is instead compared with the
//! approved files, so a reboot verifies without a new snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, EventLogEvidence, TeeEvidence};
use crate::eventlog::{BootEvent, EventLog, BOOT_PCRS};
use crate::hexfmt::hex;
pub use crate::ima::files::{measured_files, FileSet, MeasuredFile};
use crate::ima::{Log, IMA_PCR};
use crate::policy::Policy;
use crate::time::UnixTime;
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Verdict};

/// The snapshot format version this crate writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Largest snapshot file accepted (a full distribution is ~100k files, ~15 MiB of JSON).
pub const MAX_SNAPSHOT_LEN: usize = 256 * 1024 * 1024;

/// An approved machine state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: String,
    /// `sev-snp`, `tdx`, `azure-snp`, `azure-tdx`, `sim`, or `none`.
    pub platform: String,
    /// The evidence came from the simulated TEE: verifying against this snapshot still needs
    /// the simulated root, and says SIMULATED.
    pub simulated: bool,
    /// What verification enforces (measurements, boot PCRs, AK pin).
    pub policy: Policy,
    /// The approved files.
    pub files: FileSet,
    /// SHA-256 of the agent's TLS key (SubjectPublicKeyInfo), lower-case hex: `verify` checks
    /// that the agent still serves this key (`snapshot.agent_key`). The key is generated once
    /// inside the VM's encrypted storage and only the certificate around it rotates, so a
    /// different key means another agent installation (or a container made anew).
    #[serde(default)]
    pub agent_spki_sha256: Option<String>,
    /// Free-form facts (agent URL, host name), for people, not checks.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The measured events of boot PCRs 0–9 from the firmware event log, in log order, when
    /// the evidence carried one (`snapshot.boot_events` compares a later boot's with them).
    /// Empty for snapshots of machines without an event log, and in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_events: Vec<BootEvent>,
}

/// Why a snapshot cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("the evidence was not trusted, so it cannot be snapshotted: {0}")]
    Untrusted(String),
    #[error("snapshot of {size} bytes exceeds the {limit}-byte cap")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    #[error("unsupported snapshot version {presented} (supported: {supported})")]
    Version { presented: u32, supported: u32 },
}

impl Snapshot {
    /// A snapshot of the machine that produced `bundle`, whose trusted verdict is `verdict`
    /// (verify first: this refuses untrusted verdicts), with the approved `files`.
    pub fn from_evidence(
        verdict: &Verdict,
        bundle: &Bundle,
        files: FileSet,
        now: UnixTime,
    ) -> Result<Self, SnapshotError> {
        if !verdict.is_trusted() {
            let why = verdict
                .first_failure()
                .map_or_else(|| "no check ran".to_owned(), ToString::to_string);
            return Err(SnapshotError::Untrusted(why));
        }
        let mut policy = Policy::default();
        let Claims::Bundle(claims) = &verdict.claims else {
            return Err(SnapshotError::Untrusted(
                "not an evidence-bundle verdict".into(),
            ));
        };
        let platform = bundle
            .tee
            .as_ref()
            .map_or("none".to_owned(), |t| t.kind().to_string());
        match (&bundle.tee, &claims.tee) {
            (
                Some(TeeEvidence::SevSnp { .. } | TeeEvidence::Sim { .. }),
                Some(Claims::Snp(snp)),
            ) => {
                policy.snp.measurement = Some(snp.measurement.clone());
                policy.snp.host_data = Some(snp.host_data.clone());
                policy.snp.id_key_digest = Some(snp.id_key_digest.clone());
                policy.snp.vmpl = snp.vmpl;
                policy.snp.min_guest_svn = Some(snp.guest_svn);
            }
            (Some(TeeEvidence::Tdx { .. }), Some(Claims::Tdx(tdx))) => {
                policy.tdx.mr_td = Some(tdx.mr_td.clone());
                policy.tdx.rtmr0 = Some(tdx.rtmr0.clone());
                policy.tdx.rtmr1 = Some(tdx.rtmr1.clone());
                policy.tdx.rtmr2 = Some(tdx.rtmr2.clone());
            }
            // Azure: the paravisor's measurement is pinned by Azure's own policy checks; the
            // snapshot pins the vTPM's boot PCRs and AK below.
            _ => {}
        }
        if let Some(tpm) = &bundle.tpm {
            policy.tpm.ak_sha256 = Some(hex(crate::digest::sha256(&tpm.ak_public)));
            for (bank, pcrs) in &tpm.pcrs {
                for (index, value) in pcrs {
                    // PCR 10 (IMA) grows at run time: its log is compared file by file instead.
                    if u32::from(*index) != IMA_PCR {
                        policy
                            .tpm
                            .pcrs
                            .entry(*bank)
                            .or_default()
                            .insert(*index, hex(value));
                    }
                }
            }
        }
        // The event log replayed to the quoted boot PCRs (`boot.eventlog`, part of the trusted
        // verdict), so its events are the ones those PCR values stand for.
        let boot_events = match &bundle.event_log {
            Some(EventLogEvidence::Log(bytes)) => EventLog::parse(bytes)
                .ok()
                .and_then(|log| log.boot_events())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(Self {
            version: SNAPSHOT_VERSION,
            created_at: now.to_string(),
            platform,
            simulated: verdict.simulated,
            policy,
            files,
            agent_spki_sha256: Some(claims.spki_sha256.clone()),
            metadata: BTreeMap::new(),
            boot_events,
        })
    }

    /// `snapshot.boot_events`: when this snapshot recorded boot events, the presented event log
    /// (`None`: the evidence carried none) has the same measured events in every PCR 0–9. A
    /// failure names, for the first differing PCR, the event's index within that PCR, its type,
    /// its description and the expected and presented SHA-256 digests; the detail lists the
    /// first difference of every differing PCR. `None` when the snapshot recorded no events.
    ///
    /// The presented log must also have passed `boot.eventlog` (replay against the quote) for
    /// its events to mean anything; the evidence verdict holds that step.
    pub fn check_boot_events(&self, presented: Option<&[u8]>) -> Option<Check> {
        const STEP: Step = Step::SNAPSHOT_BOOT_EVENTS;
        if self.boot_events.is_empty() {
            return None;
        }
        let expected_all = format!(
            "the snapshot's {} boot events in PCRs 0-9",
            self.boot_events.len()
        );
        let Some(bytes) = presented else {
            return Some(Check::fail(
                STEP,
                "an event log (the snapshot recorded the boot's events)",
                "no event log in the evidence",
                "the agent no longer sends the firmware event log (agent.toml `event_log`)",
            ));
        };
        let events = match EventLog::parse(bytes) {
            Ok(log) => log.boot_events(),
            Err(e) => {
                return Some(Check::fail(
                    STEP,
                    expected_all,
                    "malformed event log",
                    e.to_string(),
                ))
            }
        };
        let Some(events) = events else {
            return Some(Check::fail(
                STEP,
                expected_all,
                "an event log without sha256 digests",
                "the snapshot recorded sha256 digests; this log has none to compare",
            ));
        };
        let mut differences = Vec::new();
        for pcr in BOOT_PCRS {
            let want: Vec<&BootEvent> = self
                .boot_events
                .iter()
                .filter(|e| e.pcr == pcr)
                .collect();
            let got: Vec<&BootEvent> = events
                .iter()
                .filter(|e| e.pcr == pcr)
                .collect();
            if let Some(difference) = first_difference(pcr, &want, &got) {
                differences.push(difference);
            }
        }
        let Some((expected, presented)) = differences
            .first()
            .map(|d| (d.expected.clone(), d.presented.clone()))
        else {
            return Some(Check::pass(
                STEP,
                expected_all,
                format!("the same {} events", events.len()),
            ));
        };
        let detail = differences
            .iter()
            .map(|d| d.sentence.clone())
            .collect::<Vec<_>>()
            .join("; ");
        Some(Check::fail(STEP, expected, presented, detail))
    }

    /// What this snapshot must pin for a verification against it to mean anything, as one
    /// `snapshot.pins` check: the TEE's launch measurement (SEV-SNP `measurement`, TDX `mr_td`;
    /// not on Azure, whose paravisor Azure pins), the TPM AK, the boot PCRs 0–9 in at least one
    /// bank, and the agent's key. A snapshot file edited to drop a pin (which would let another
    /// machine pass) fails here, naming what is missing.
    pub fn check_pins(&self) -> Check {
        let mut missing = Vec::new();
        match self.platform.as_str() {
            "sev-snp" | "sim" => {
                if self.policy.snp.measurement.is_none() {
                    missing.push("policy.snp.measurement".to_owned());
                }
            }
            "tdx" => {
                if self.policy.tdx.mr_td.is_none() {
                    missing.push("policy.tdx.mr_td".to_owned());
                }
            }
            "azure-snp" | "azure-tdx" => {}
            other => missing.push(format!("a TEE platform (the snapshot says {other:?})")),
        }
        if self.policy.tpm.ak_sha256.is_none() {
            missing.push("policy.tpm.ak_sha256".to_owned());
        }
        let boot_pinned = self
            .policy
            .tpm
            .pcrs
            .values()
            .any(|pcrs| (0u8..=9).all(|i| pcrs.contains_key(&i)));
        if !boot_pinned {
            missing.push("policy.tpm.pcrs 0-9 (in one bank)".to_owned());
        }
        if self.agent_spki_sha256.is_none() {
            missing.push("agent_spki_sha256".to_owned());
        }
        let expected = "measurement, AK, boot PCRs 0-9 and agent key pinned";
        if missing.is_empty() {
            Check::pass(Step::SNAPSHOT_PINS, expected, "all pinned")
        } else {
            Check::fail(
                Step::SNAPSHOT_PINS,
                expected,
                format!("missing {}", missing.join(", ")),
                "this snapshot would let other machines pass; take a new one with `cosmian_vm \
                 snapshot` instead of editing it",
            )
        }
    }

    /// `snapshot.agent_key`: the agent serves the key the snapshot recorded (`spki_sha256`,
    /// lower-case hex, of the key on this very session).
    pub fn check_agent_key(&self, spki_sha256: &str) -> Check {
        let expected = self
            .agent_spki_sha256
            .clone()
            .unwrap_or_else(|| "a recorded agent key".to_owned());
        let ok = self.agent_spki_sha256.as_deref() == Some(spki_sha256);
        let check = Check::expect(Step::SNAPSHOT_AGENT_KEY, ok, expected, spki_sha256);
        if ok {
            check
        } else {
            check.with_detail(
                "the agent's TLS key is not the one snapshotted: another installation, or its \
                 encrypted container was made anew; take a new snapshot only if you know why",
            )
        }
    }

    pub fn to_json(&self) -> String {
        // Invariant: plain data always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_LEN {
            return Err(SnapshotError::TooLarge {
                size: bytes.len(),
                limit: MAX_SNAPSHOT_LEN,
            });
        }
        let s: Self =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if s.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version {
                presented: s.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        s.policy
            .validate()
            .map_err(|e| SnapshotError::Malformed(format!("policy: {e}")))?;
        Ok(s)
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
    pub fn check_ima(&self, log: &Log) -> Vec<Check> {
        self.files.check(log)
    }
}

/// The first difference between the snapshot's and the presented events of one PCR.
struct Difference {
    expected: String,
    presented: String,
    sentence: String,
}

fn first_difference(pcr: u32, want: &[&BootEvent], got: &[&BootEvent]) -> Option<Difference> {
    let label = |index: usize, e: &BootEvent| {
        let mut text = format!("PCR {pcr} event {index} {}", e.event_type);
        if !e.description.is_empty() {
            text.push_str(&format!(" '{}'", e.description));
        }
        text
    };
    let count = want.len().max(got.len());
    (0..count).find_map(|index| match (want.get(index), got.get(index)) {
        (Some(w), Some(g)) if w.sha256 == g.sha256 && w.event_type == g.event_type => None,
        (Some(w), Some(g)) => {
            let what = if w.event_type == g.event_type {
                label(index, w)
            } else {
                format!("{} (presented: {})", label(index, w), g.event_type)
            };
            Some(Difference {
                expected: format!("{} sha256 {}", label(index, w), w.sha256),
                presented: format!("{} sha256 {}", label(index, g), g.sha256),
                sentence: format!(
                    "{what}: expected sha256 {} presented {}",
                    w.sha256, g.sha256
                ),
            })
        }
        (Some(w), None) => Some(Difference {
            expected: format!("{} sha256 {}", label(index, w), w.sha256),
            presented: format!("PCR {pcr}: no event {index}"),
            sentence: format!(
                "{}: expected sha256 {} presented no such event (PCR {pcr} has {} events, the \
                 snapshot {})",
                label(index, w),
                w.sha256,
                got.len(),
                want.len()
            ),
        }),
        (None, Some(g)) => Some(Difference {
            expected: format!("PCR {pcr}: {} events", want.len()),
            presented: format!("{} sha256 {}", label(index, g), g.sha256),
            sentence: format!(
                "{}: an extra event the snapshot does not have, sha256 {}",
                label(index, g),
                g.sha256
            ),
        }),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use crate::ima::Template;

    fn log(files: &[(&str, &[u8])]) -> Log {
        let mut log = Log::new(HashAlg::Sha1);
        log.push(
            IMA_PCR,
            Template::ImaNg,
            Some("sha256"),
            &[0u8; 32],
            b"boot_aggregate",
            &[],
        )
        .unwrap();
        for (path, content) in files {
            log.push(
                IMA_PCR,
                Template::ImaNg,
                Some("sha256"),
                &HashAlg::Sha256.digest(content),
                path.as_bytes(),
                &[],
            )
            .unwrap();
        }
        log
    }

    #[test]
    fn approved_files_pass_and_unknown_or_changed_ones_are_named() {
        let approved = log(&[("/usr/bin/app", b"v1"), ("/etc/app.conf", b"conf")]);
        let mut files = FileSet::new(HashAlg::Sha256);
        files.add_ima_log(&approved);
        assert_eq!(files.len(), 2);
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: "now".into(),
            platform: "sim".into(),
            simulated: true,
            policy: Policy::default(),
            files,
            agent_spki_sha256: None,
            metadata: BTreeMap::new(),
            boot_events: Vec::new(),
        };
        let checks = snap.check_ima(&approved);
        assert!(checks.len() == 1 && checks[0].ok && checks[0].step == Step::IMA_FILES);

        let later = log(&[
            ("/usr/bin/app", b"v2"),
            ("/etc/app.conf", b"conf"),
            ("/tmp/evil", b"x"),
        ]);
        let checks = snap.check_ima(&later);
        let failed: Vec<_> = checks
            .iter()
            .map(|c| (c.step.as_str(), c.ok))
            .collect();
        assert_eq!(
            failed,
            [("ima.changed_file", false), ("ima.unknown_file", false)]
        );
        assert!(checks[1]
            .presented
            .contains("/tmp/evil"));
        assert!(checks[0]
            .presented
            .contains(&hex(HashAlg::Sha256.digest(b"v2"))));

        // JSON round trip, and strict parsing.
        let json = snap.to_json();
        assert_eq!(Snapshot::from_json(json.as_bytes()).unwrap(), snap);
        let bad = json.replacen("\"version\": 1", "\"version\": 9", 1);
        assert!(matches!(
            Snapshot::from_json(bad.as_bytes()),
            Err(SnapshotError::Version { .. })
        ));
        let mut unkeyed = snap.clone();
        unkeyed.policy.snp.min_guest_svn = Some(1);
        unkeyed.policy.snp.id_key_digest = None;
        assert!(matches!(
            Snapshot::from_json(unkeyed.to_json().as_bytes()),
            Err(SnapshotError::Malformed(m)) if m.contains("min_guest_svn pinned without")
        ));
        let unknown = json.replacen("{", "{\"extra\": 1,", 1);
        assert!(matches!(
            Snapshot::from_json(unknown.as_bytes()),
            Err(SnapshotError::Malformed(_))
        ));
    }

    /// An OVMF-like boot: PCR 0 firmware, PCR 7 SecureBoot, PCR 9 the EFI stub's two tags with
    /// the command line's and the initrd's digests.
    fn boot_log(cmdline: &str, extra_pcr9: bool) -> Vec<u8> {
        use crate::eventlog::{tagged_event, EventType, LogBuilder};
        let mut log = LogBuilder::new(&[HashAlg::Sha1, HashAlg::Sha256]);
        log.measure(0, EventType::S_CRTM_VERSION, b"firmware 1.0");
        log.measure(7, EventType::EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot");
        for (tag, text, content) in [
            (0x8F3B_22ED, "LOADED_IMAGE::LoadOptions", cmdline.as_bytes()),
            (0x8F3B_22EC, "Linux initrd", b"initrd".as_slice()),
        ] {
            let digests: Vec<_> = [HashAlg::Sha1, HashAlg::Sha256]
                .iter()
                .map(|&b| (b, b.digest(content)))
                .collect();
            log.event(9, EventType::EVENT_TAG, &digests, &tagged_event(tag, text));
        }
        if extra_pcr9 {
            log.measure(9, EventType::IPL, b"something else");
        }
        log.into_bytes()
    }

    fn snapshot_with_events(log: &[u8]) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: "now".into(),
            platform: "sim".into(),
            simulated: true,
            policy: Policy::default(),
            files: FileSet::new(HashAlg::Sha256),
            agent_spki_sha256: None,
            metadata: BTreeMap::new(),
            boot_events: EventLog::parse(log)
                .unwrap()
                .boot_events()
                .unwrap(),
        }
    }

    #[test]
    fn boot_events_are_compared_event_by_event() {
        let a = boot_log("console=ttyS0 initrd=initrd", false);
        let snap = snapshot_with_events(&a);
        assert_eq!(snap.boot_events.len(), 4);
        assert_eq!(snap.boot_events[2].description, "LOADED_IMAGE::LoadOptions");

        // The same boot passes.
        let check = snap
            .check_boot_events(Some(&a))
            .unwrap();
        assert!(check.ok, "{check}");

        // A changed kernel command line: PCR 9 event 0 named, both digests shown.
        let b = boot_log("console=ttyS0 init=/bin/sh initrd=initrd", false);
        let check = snap
            .check_boot_events(Some(&b))
            .unwrap();
        assert!(!check.ok);
        assert_eq!(check.step, Step::SNAPSHOT_BOOT_EVENTS);
        let want = hex(HashAlg::Sha256.digest(b"console=ttyS0 initrd=initrd"));
        let got = hex(HashAlg::Sha256.digest(b"console=ttyS0 init=/bin/sh initrd=initrd"));
        assert_eq!(
            check.detail,
            format!(
                "PCR 9 event 0 EV_EVENT_TAG 'LOADED_IMAGE::LoadOptions': expected sha256 {want} \
                 presented {got}"
            )
        );
        assert_eq!(
            check.expected,
            format!("PCR 9 event 0 EV_EVENT_TAG 'LOADED_IMAGE::LoadOptions' sha256 {want}")
        );
        assert!(check.presented.ends_with(&got), "{check}");

        // An extra event.
        let c = boot_log("console=ttyS0 initrd=initrd", true);
        let check = snap
            .check_boot_events(Some(&c))
            .unwrap();
        assert!(!check.ok);
        assert!(
            check
                .detail
                .starts_with("PCR 9 event 2 EV_IPL"),
            "{check}"
        );
        assert!(check.detail.contains("extra event"), "{check}");
        // A missing one (the other way round).
        let check = snapshot_with_events(&c)
            .check_boot_events(Some(&a))
            .unwrap();
        assert!(
            check
                .detail
                .contains("presented no such event"),
            "{check}"
        );

        // No event log presented.
        let check = snap.check_boot_events(None).unwrap();
        assert!(!check.ok);
        assert!(check.expected.contains("an event log"), "{check}");
        // Malformed.
        assert!(
            !snap
                .check_boot_events(Some(&[1, 2]))
                .unwrap()
                .ok
        );
        // A snapshot without events: no step.
        let mut old = snap.clone();
        old.boot_events.clear();
        assert!(old.check_boot_events(None).is_none());

        // JSON: round trip; old snapshots without the key still load.
        let json = snap.to_json();
        assert!(json.contains("\"boot_events\""));
        assert_eq!(Snapshot::from_json(json.as_bytes()).unwrap(), snap);
        let old_json = old.to_json();
        assert!(!old_json.contains("boot_events"));
        assert_eq!(Snapshot::from_json(old_json.as_bytes()).unwrap(), old);
    }
}
