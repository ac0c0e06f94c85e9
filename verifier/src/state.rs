//! `cosmian_vm verify`'s memory between runs: for the VM's TPM (by AK hash), the clock
//! information of the last quote that verified, in `<snapshot>.last-verify.json` (written
//! atomically). The next verification of the same VM compares its quote's counters with it
//! (`tpm.counters`):
//!
//! - resetCount higher: the VM rebooted (that many TPM resets) since; reported, still passing;
//! - resetCount lower, or the same resetCount with restartCount lower, or the same counts with
//!   the clock lower: the TPM state went back (rolled back, or old evidence replayed): fails;
//! - another AK: another TPM (or a re-provisioned VM): noted, and the state starts over.
//!
//! The snapshot itself never pins the counters (a reboot must not break verification). An AK in
//! the owner hierarchy sees resetCount and restartCount obfuscated (each plus a constant of the
//! key): they are compared by their difference modulo 2^32, which the obfuscation keeps.

use std::path::{Path, PathBuf};

use ratls::tpm::TpmClaims;
use ratls::{Check, UnixTime};
use serde::{Deserialize, Serialize};

pub const STEP: ratls::Step = ratls::Step::TPM_COUNTERS;
const VERSION: u32 = 1;
/// A state file larger than this is not ours.
const MAX_STATE_LEN: u64 = 64 * 1024;

/// The TPM clock information of one quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub reset_count: u32,
    pub restart_count: u32,
    /// TPMS_CLOCK_INFO.clock, milliseconds.
    pub clock: u64,
}

impl Counters {
    pub fn of(claims: &TpmClaims) -> Self {
        Self {
            reset_count: claims.reset_count,
            restart_count: claims.restart_count,
            clock: claims.clock,
        }
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resetCount {}, restartCount {}, clock {}",
            self.reset_count, self.restart_count, self.clock
        )
    }
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastVerify {
    pub version: u32,
    /// SHA-256 of the AK public area the quote was verified with (hex).
    pub ak_sha256: String,
    #[serde(flatten)]
    pub counters: Counters,
    /// When that verification ran (seconds since the epoch) …
    pub verified_at: u64,
    /// … and the same as RFC 3339 text, for people reading the file.
    pub verified_at_text: String,
}

impl LastVerify {
    pub fn new(ak_sha256: &str, counters: Counters, at: UnixTime) -> Self {
        Self {
            version: VERSION,
            ak_sha256: ak_sha256.to_owned(),
            counters,
            verified_at: at.as_secs(),
            verified_at_text: at.to_string(),
        }
    }

    fn when(&self) -> String {
        UnixTime::from_secs(self.verified_at).to_string()
    }
}

/// `<snapshot>.last-verify.json`, beside the snapshot.
pub fn path_for(snapshot: &Path) -> PathBuf {
    let mut name = snapshot
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".last-verify.json");
    snapshot.with_file_name(name)
}

/// Read the state file: `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<LastVerify>, String> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(meta) if meta.len() > MAX_STATE_LEN => {
            return Err(format!(
                "{}: {} bytes, more than a state file ({MAX_STATE_LEN})",
                path.display(),
                meta.len()
            ))
        }
        Ok(_) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    let state: LastVerify = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a state file: {e}", path.display()))?;
    if state.version != VERSION {
        return Err(format!(
            "{}: state version {}, this cosmian_vm reads version {VERSION}",
            path.display(),
            state.version
        ));
    }
    Ok(Some(state))
}

/// Write the state file atomically (mode 0644: nothing secret in it).
pub fn store(path: &Path, state: &LastVerify) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    json.push(b'\n');
    ratls::fsutil::write_atomic(path, &json, ratls::fsutil::PUBLIC_MODE)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What the comparison with the last verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// No earlier verification recorded.
    First,
    /// The last verification was of another TPM: noted, the state starts over.
    OtherAk { previous_ak: String, since: String },
    /// Same boot (restartCount may have grown: the TPM resumed from a saved state).
    SameBoot { resumes: u32, since: String },
    /// resetCount grew: `reboots` TPM resets (reboots) since `since`.
    Rebooted { reboots: u32, since: String },
    /// The counters went back: `why` names which, with both values.
    Rollback { why: String },
}

/// Compare the quote's counters with the state recorded for `ak_sha256`.
pub fn compare(last: Option<&LastVerify>, ak_sha256: &str, now: &Counters) -> Comparison {
    let Some(last) = last else {
        return Comparison::First;
    };
    if last.ak_sha256 != ak_sha256 {
        return Comparison::OtherAk {
            previous_ak: last.ak_sha256.clone(),
            since: last.when(),
        };
    }
    let before = &last.counters;
    let since = last.when();
    match step(before.reset_count, now.reset_count) {
        Step::Up(reboots) => return Comparison::Rebooted { reboots, since },
        Step::Down => {
            return Comparison::Rollback {
                why: format!(
                    "resetCount {} is lower than the {} verified at {since}",
                    now.reset_count, before.reset_count
                ),
            }
        }
        Step::Same => {}
    }
    let resumes = match step(before.restart_count, now.restart_count) {
        Step::Down => {
            return Comparison::Rollback {
                why: format!(
                    "restartCount {} is lower than the {} verified at {since} (same resetCount \
                     {})",
                    now.restart_count, before.restart_count, now.reset_count
                ),
            }
        }
        Step::Up(n) => n,
        Step::Same => 0,
    };
    if resumes == 0 && now.clock < before.clock {
        return Comparison::Rollback {
            why: format!(
                "clock {} is lower than the {} verified at {since} (same resetCount {} and \
                 restartCount {})",
                now.clock, before.clock, now.reset_count, now.restart_count
            ),
        };
    }
    Comparison::SameBoot { resumes, since }
}

/// How a 32-bit TPM counter moved. A quote signed by a key outside the endorsement and
/// platform hierarchies (an AK under the owner's SRK) carries resetCount and restartCount
/// **obfuscated**: each plus a constant derived from the key (TPM 2.0 Part 1, "Obfuscation"),
/// so only their differences modulo 2^32 mean something. A difference below 2^31 is an
/// increase; a larger one is a decrease.
enum Step {
    Same,
    Up(u32),
    Down,
}

fn step(before: u32, now: u32) -> Step {
    match now.wrapping_sub(before) {
        0 => Step::Same,
        delta if delta < 1 << 31 => Step::Up(delta),
        _ => Step::Down,
    }
}

impl Comparison {
    /// The `tpm.counters` check.
    pub fn check(&self, last: Option<&LastVerify>, now: &Counters) -> Check {
        let expected = match last {
            Some(last) => format!(
                "counters not below the last verification's ({}, at {})",
                last.counters,
                last.when()
            ),
            None => "counters recorded for the next verification".to_owned(),
        };
        let presented = now.to_string();
        match self {
            Self::Rollback { why } => Check::fail(
                STEP,
                expected,
                presented,
                format!("{why}: the TPM state was rolled back or this evidence is a replay"),
            ),
            other => Check::pass(STEP, expected, presented).with_detail(other.note()),
        }
    }

    /// The human sentence for the output.
    pub fn note(&self) -> String {
        match self {
            Self::First => "first verification of this VM's TPM: counters recorded".into(),
            Self::OtherAk { previous_ak, since } => format!(
                "another TPM than at the last verification ({since}, AK {}): state started over",
                short(previous_ak)
            ),
            Self::SameBoot { resumes: 0, since } => {
                format!("no reboot since the last verification ({since})")
            }
            Self::SameBoot { resumes, since } => format!(
                "no reboot since the last verification ({since}); the TPM resumed {resumes} \
                 time(s) from a saved state"
            ),
            Self::Rebooted { reboots, since } => format!(
                "the VM rebooted {reboots} time{} since the last verification ({since})",
                if *reboots == 1 { "" } else { "s" }
            ),
            Self::Rollback { why } => why.clone(),
        }
    }

    /// The `reboot` member of the JSON report.
    pub fn reboot(&self) -> Option<Reboot> {
        match self {
            Self::Rebooted { reboots, since } => Some(Reboot {
                reboots: *reboots,
                since: since.clone(),
                message: self.note(),
            }),
            _ => None,
        }
    }
}

/// `"reboot": {"reboots": 2, "since": "…", "message": "the VM rebooted 2 times since …"}`.
#[derive(Debug, Clone, Serialize)]
pub struct Reboot {
    pub reboots: u32,
    pub since: String,
    pub message: String,
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "aa11";

    fn c(reset_count: u32, restart_count: u32, clock: u64) -> Counters {
        Counters {
            reset_count,
            restart_count,
            clock,
        }
    }

    fn last(counters: Counters) -> LastVerify {
        LastVerify::new(AK, counters, UnixTime::from_secs(1_750_000_000))
    }

    #[test]
    fn comparisons() {
        let before = last(c(5, 2, 1000));
        assert_eq!(compare(None, AK, &c(5, 2, 1000)), Comparison::First);
        let same = compare(Some(&before), AK, &c(5, 2, 1500));
        assert!(
            matches!(same, Comparison::SameBoot { resumes: 0, .. }),
            "{same:?}"
        );
        assert!(
            same.check(Some(&before), &c(5, 2, 1500))
                .ok
        );
        // Same clock: still the same boot (the session's freshness rules out a replay).
        assert!(matches!(
            compare(Some(&before), AK, &c(5, 2, 1000)),
            Comparison::SameBoot { .. }
        ));
        // A resume: restartCount up, clock may be anything.
        assert!(matches!(
            compare(Some(&before), AK, &c(5, 3, 10)),
            Comparison::SameBoot { resumes: 1, .. }
        ));
        // Reboots: resetCount up, restartCount and clock may be lower.
        let rebooted = compare(Some(&before), AK, &c(7, 0, 3));
        assert_eq!(
            rebooted,
            Comparison::Rebooted {
                reboots: 2,
                since: "2025-06-15T15:06:40Z".into()
            }
        );
        assert_eq!(
            rebooted.note(),
            "the VM rebooted 2 times since the last verification (2025-06-15T15:06:40Z)"
        );
        assert!(
            rebooted
                .check(Some(&before), &c(7, 0, 3))
                .ok
        );
        assert_eq!(rebooted.reboot().unwrap().reboots, 2);
        assert!(compare(Some(&before), AK, &c(6, 0, 0))
            .note()
            .contains("rebooted 1 time since"));
        // Roll-backs.
        for (now, names) in [
            (c(4, 9, 99_999), ["resetCount 4", "5"]),
            (c(5, 1, 99_999), ["restartCount 1", "2"]),
            (c(5, 2, 999), ["clock 999", "1000"]),
        ] {
            let cmp = compare(Some(&before), AK, &now);
            let check = cmp.check(Some(&before), &now);
            assert!(!check.ok, "{now}");
            assert_eq!(check.step, STEP);
            for name in names {
                assert!(check.detail.contains(name), "{check:?}");
            }
            assert!(check
                .expected
                .contains("resetCount 5, restartCount 2, clock 1000"));
            assert_eq!(check.presented, now.to_string());
            assert!(cmp.reboot().is_none());
        }
        // Obfuscated counters (plus a per-key constant) may wrap around: differences count.
        let high = last(c(u32::MAX, u32::MAX - 1, 1000));
        assert_eq!(
            compare(Some(&high), AK, &c(1, 3, 0)),
            Comparison::Rebooted {
                reboots: 2,
                since: "2025-06-15T15:06:40Z".into()
            }
        );
        assert!(matches!(
            compare(Some(&high), AK, &c(u32::MAX, 2, 0)),
            Comparison::SameBoot { resumes: 4, .. }
        ));
        assert!(matches!(
            compare(Some(&last(c(0, 0, 0))), AK, &c(u32::MAX, 0, 0)),
            Comparison::Rollback { .. }
        ));
        // Another TPM: noted, passes, starts over.
        let other = compare(Some(&before), "bb22", &c(0, 0, 0));
        assert!(matches!(other, Comparison::OtherAk { .. }));
        assert!(
            other
                .check(Some(&before), &c(0, 0, 0))
                .ok
        );
        assert!(other.note().contains("another TPM"));
    }

    #[test]
    fn state_file_round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("cosmian_vm_state_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let snapshot = dir.join("vm.snapshot");
        let path = path_for(&snapshot);
        assert_eq!(path, dir.join("vm.snapshot.last-verify.json"));
        assert_eq!(load(&path), Ok(None));
        let state = last(c(1, 2, 3));
        store(&path, &state).unwrap();
        assert_eq!(load(&path), Ok(Some(state)));
        std::fs::write(&path, b"{\"version\": 1}").unwrap();
        assert!(load(&path).is_err());
        std::fs::write(&path, vec![b' '; 70_000]).unwrap();
        assert!(load(&path)
            .unwrap_err()
            .contains("bytes"));
        let mut future = serde_json::to_value(last(c(1, 2, 3))).unwrap();
        future["version"] = 2.into();
        std::fs::write(&path, future.to_string()).unwrap();
        assert!(load(&path)
            .unwrap_err()
            .contains("version 2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
