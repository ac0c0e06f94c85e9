//! The owner: the one client key allowed to call the admin endpoints.
//!
//! It is set in one of three ways, and never by "first caller wins":
//!
//! 1. `owner_certificate` or `owner_spki_sha256` in `agent.toml` (provisioning, e.g. cloud-init
//!    user data); it wins over everything else and cannot be changed over the network;
//! 2. otherwise, while no owner is recorded, the agent makes a one-time **enrolment token** at
//!    start (128 random bits), prints it to its log (the journal / console) and writes it to
//!    `<secure_dir>/enrolment-token` (0600). `POST /api/v1/owner` must carry it, over a session
//!    whose evidence the CLI verified first; the token is consumed by the first success;
//! 3. the enrolled owner is recorded in `<secure_dir>/owner.json`, inside the encrypted
//!    container when one is configured, so the host cannot swap it on the unencrypted disk.
//!
//! Wrong tokens are counted: past [`MAX_FAILURES`] in a [`FAILURE_WINDOW`], enrolment answers
//! 429 until the window ends (a 128-bit token is not guessable anyway; this keeps the log and
//! the CPU quiet).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fsutil::{write_atomic_owned, SECRET_MODE};

/// Wrong enrolment tokens tolerated per window.
pub const MAX_FAILURES: u32 = 20;

/// The window wrong tokens are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The token file's name under the secure directory.
pub const TOKEN_FILE: &str = "enrolment-token";

/// The owner record's name under the secure directory.
pub const OWNER_FILE: &str = "owner.json";

/// `owner.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerFile {
    owner_spki_sha256: String,
}

/// Why an enrolment was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum EnrolError {
    /// 409: an owner exists (configured or enrolled).
    AlreadyEnrolled,
    /// 400: the request carried no token.
    MissingToken,
    /// 403: the token is not the one this agent printed.
    BadToken,
    /// 429: too many wrong tokens lately.
    TooManyFailures { retry_after: Duration },
    /// 500.
    Internal(String),
}

#[derive(Debug)]
struct Failures {
    window_start: Instant,
    count: u32,
}

/// The owner state (see the module documentation).
#[derive(Debug)]
pub struct Owner {
    configured: Option<[u8; 32]>,
    enrolled: Mutex<Option<[u8; 32]>>,
    /// SHA-256 of the pending enrolment token, while there is no owner.
    token: Mutex<Option<[u8; 32]>>,
    dir: PathBuf,
    failures: Mutex<Failures>,
    /// The uid the agent's files here are given to (IMA does not measure its files).
    file_uid: Option<u32>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a plain read or assignment: a poisoned lock holds usable data.
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Owner {
    /// The configured owner, the one recorded in `dir/owner.json`, and — when there is neither —
    /// a new enrolment token, printed and written to `dir/enrolment-token`.
    pub fn load(configured: Option<[u8; 32]>, dir: &Path) -> Result<Self, String> {
        Self::load_with(configured, dir, None)
    }

    /// [`Owner::load`], the owner record and the token file given to `file_uid` (the uid the
    /// IMA policy does not measure: the record is agent state that changes at enrolment, and
    /// the token a secret).
    pub fn load_with(
        configured: Option<[u8; 32]>,
        dir: &Path,
        file_uid: Option<u32>,
    ) -> Result<Self, String> {
        let path = dir.join(OWNER_FILE);
        if let (Some(uid), true) = (file_uid, path.exists()) {
            // Before reading it: a record written as root's must not be measured now.
            crate::fsutil::give_to(&path, uid)?;
        }
        let enrolled = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: OwnerFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Some(hex32(&file.owner_spki_sha256).ok_or_else(|| {
                    format!(
                        "{}: owner_spki_sha256 is not 32 bytes of hex",
                        path.display()
                    )
                })?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let owner = Self {
            configured,
            enrolled: Mutex::new(enrolled),
            token: Mutex::new(None),
            dir: dir.to_path_buf(),
            failures: Mutex::new(Failures {
                window_start: Instant::now(),
                count: 0,
            }),
            file_uid,
        };
        let token_path = dir.join(TOKEN_FILE);
        match owner.current() {
            Some(spki) => {
                // A token left over from before the enrolment is useless: remove it.
                let _ = std::fs::remove_file(&token_path);
                let spki = hex::encode(spki);
                tracing::info!(
                    spki = %spki,
                    "owner: SPKI SHA-256 {spki} ({})",
                    if configured.is_some() {
                        "configured in agent.toml"
                    } else {
                        "enrolled"
                    }
                );
            }
            None => {
                let token = new_token()?;
                write_atomic_owned(
                    &token_path,
                    format!("{token}\n").as_bytes(),
                    SECRET_MODE,
                    file_uid,
                )
                .map_err(|e| format!("writing {}: {e}", token_path.display()))?;
                *lock(&owner.token) = Some(ratls::digest::sha256(token.as_bytes()));
                tracing::info!(
                    path = %token_path.display(),
                    "no owner yet. One-time enrolment token: {token} (also in \
                     {}, mode 0600). Enrol from your machine with `cosmian_vm owner enroll \
                     --token {token}`, which verifies this VM before sending it.",
                    token_path.display()
                );
            }
        }
        Ok(owner)
    }

    /// The owner's SPKI hash, if there is one.
    pub fn current(&self) -> Option<[u8; 32]> {
        self.configured
            .or(*lock(&self.enrolled))
    }

    /// Enrol `spki` with `token`.
    pub fn enrol(&self, spki: [u8; 32], token: Option<&str>) -> Result<(), EnrolError> {
        if self.current().is_some() {
            return Err(EnrolError::AlreadyEnrolled);
        }
        {
            let mut f = lock(&self.failures);
            if f.window_start.elapsed() >= FAILURE_WINDOW {
                f.window_start = Instant::now();
                f.count = 0;
            }
            if f.count >= MAX_FAILURES {
                return Err(EnrolError::TooManyFailures {
                    retry_after: FAILURE_WINDOW.saturating_sub(f.window_start.elapsed()),
                });
            }
        }
        let token = token.ok_or(EnrolError::MissingToken)?;
        let mut pending = lock(&self.token);
        let mut enrolled = lock(&self.enrolled);
        if enrolled.is_some() {
            return Err(EnrolError::AlreadyEnrolled);
        }
        // Hashes compared, so the comparison's timing says nothing about the token.
        let presented = ratls::digest::sha256(token.trim().as_bytes());
        if *pending != Some(presented) {
            let mut f = lock(&self.failures);
            f.count += 1;
            return Err(EnrolError::BadToken);
        }
        let body = serde_json::to_vec_pretty(&OwnerFile {
            owner_spki_sha256: hex::encode(spki),
        })
        .map_err(|e| EnrolError::Internal(e.to_string()))?;
        let path = self.dir.join(OWNER_FILE);
        write_atomic_owned(&path, &body, SECRET_MODE, self.file_uid)
            .map_err(|e| EnrolError::Internal(format!("cannot record the owner: {e}")))?;
        *enrolled = Some(spki);
        *pending = None;
        if let Err(e) = std::fs::remove_file(self.dir.join(TOKEN_FILE)) {
            tracing::warn!("WARNING: could not remove the used enrolment token: {e}");
        }
        Ok(())
    }

    /// Whether an enrolment token is waiting to be used.
    pub fn awaiting_enrolment(&self) -> bool {
        lock(&self.token).is_some()
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// 16 random bytes, lower-case hex.
fn new_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("agent-owner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn enrolment_needs_the_printed_token_and_consumes_it() {
        let d = dir("token");
        let owner = Owner::load(None, &d).unwrap();
        let token = std::fs::read_to_string(d.join(TOKEN_FILE)).unwrap();
        assert_eq!(token.trim().len(), 32);
        assert_eq!(owner.enrol([1; 32], None), Err(EnrolError::MissingToken));
        assert_eq!(
            owner.enrol([1; 32], Some("00000000000000000000000000000000")),
            Err(EnrolError::BadToken)
        );
        assert_eq!(owner.current(), None);
        owner
            .enrol([2; 32], Some(&token))
            .unwrap();
        assert_eq!(owner.current(), Some([2; 32]));
        assert!(!d.join(TOKEN_FILE).exists(), "the token is consumed");
        assert_eq!(
            owner.enrol([3; 32], Some(&token)),
            Err(EnrolError::AlreadyEnrolled)
        );
        // A restart keeps the owner and makes no token.
        let again = Owner::load(None, &d).unwrap();
        assert_eq!(again.current(), Some([2; 32]));
        assert!(!again.awaiting_enrolment());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_configured_owner_wins_and_no_token_is_made() {
        let d = dir("configured");
        let owner = Owner::load(Some([7; 32]), &d).unwrap();
        assert!(!d.join(TOKEN_FILE).exists());
        assert_eq!(owner.current(), Some([7; 32]));
        assert_eq!(
            owner.enrol([1; 32], Some("x")),
            Err(EnrolError::AlreadyEnrolled)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn wrong_tokens_are_throttled() {
        let d = dir("throttle");
        let owner = Owner::load(None, &d).unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(owner.enrol([1; 32], Some("bad")), Err(EnrolError::BadToken));
        }
        let token = std::fs::read_to_string(d.join(TOKEN_FILE)).unwrap();
        assert!(matches!(
            owner.enrol([1; 32], Some(&token)),
            Err(EnrolError::TooManyFailures { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
