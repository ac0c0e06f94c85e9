//! The verification policy: what each verifier requires beyond genuineness.
//!
//! A policy file is JSON with one optional section per platform (`snp`, `tdx`, `tpm`, `ima`,
//! `azure`); unknown keys are rejected so a typo cannot silently relax a check. The defaults are
//! strict (no debug, VMPL 0, only an UpToDate TDX TCB, Azure secure boot on).
//!
//! ```json
//! { "snp": { "measurement": "7a1e…", "allow_debug": false },
//!   "tdx": { "allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"] } }
//! ```

use serde::{Deserialize, Serialize};

use crate::azure::AzurePolicy;
use crate::ima::ImaPolicy;
use crate::snp::SnpPolicy;
use crate::tdx::TdxPolicy;
use crate::tpm::TpmPolicy;

/// What every verifier requires, by platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub snp: SnpPolicy,
    pub tdx: TdxPolicy,
    pub tpm: TpmPolicy,
    pub ima: ImaPolicy,
    pub azure: AzurePolicy,
}

/// The largest policy file read.
pub const MAX_POLICY_FILE: u64 = 4 * 1024 * 1024;

/// Why a policy file could not be loaded: `{path}: {why}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct PolicyFileError {
    pub path: String,
    pub why: String,
}

/// A policy that parses but cannot be enforced as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// SEV-SNP ID-block fields pinned without the ID or author key: the host chooses the ID
    /// block, so these pins prove nothing on their own.
    #[error(
        "snp: {} pinned without id_key_digest or author_key_digest: the host chooses the ID \
         block, so these values prove nothing unless the key that signed it is pinned too",
        fields.join(", ")
    )]
    IdBlockWithoutKey { fields: Vec<&'static str> },
    /// `check_launch_tcb` with no minimum to compare with (`tcb_floor` "none", no `min_tcb`).
    #[error(
        "snp: check_launch_tcb needs a minimum TCB: set min_tcb, or keep tcb_floor \"default\""
    )]
    LaunchTcbWithoutMinimum,
}

impl Policy {
    /// Parse a JSON policy document and [`validate`](Policy::validate) it.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let policy: Self = serde_json::from_str(text)?;
        policy
            .validate()
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(policy)
    }

    /// Read and parse the policy file at `path` (at most [`MAX_POLICY_FILE`] bytes): the one
    /// way every binary loads `--policy FILE`. Errors name the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, PolicyFileError> {
        let error = |why: String| PolicyFileError {
            path: path.display().to_string(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
        if meta.len() > MAX_POLICY_FILE {
            return Err(error(format!(
                "{} bytes, more than the {MAX_POLICY_FILE}-byte limit for a policy",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::from_json(&text).map_err(|e| error(e.to_string()))
    }

    /// Refuse a policy whose pins cannot mean what they say: SEV-SNP `family_id`, `image_id` or
    /// `min_guest_svn` without `id_key_digest` or `author_key_digest`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fields = self.snp.unauthenticated_id_block_pins();
        if !fields.is_empty() {
            return Err(PolicyError::IdBlockWithoutKey { fields });
        }
        if self.snp.check_launch_tcb
            && self.snp.min_tcb.is_none()
            && self.snp.tcb_floor == crate::snp::TcbFloor::None
        {
            return Err(PolicyError::LaunchTcbWithoutMinimum);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn from_file_names_the_file_in_every_error() {
        let dir = std::env::temp_dir().join(format!("ratls-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.json");
        std::fs::write(&ok, br#"{"snp": {"vmpl": 0}}"#).unwrap();
        assert_eq!(Policy::from_file(&ok).unwrap().snp.vmpl, 0);

        let missing = dir.join("missing.json");
        let e = Policy::from_file(&missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&missing.display().to_string()),
            "{e}"
        );

        let unknown = dir.join("unknown.json");
        std::fs::write(&unknown, br#"{"snp": {"no_such_key": 1}}"#).unwrap();
        let e = Policy::from_file(&unknown)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown.json") && e.contains("no_such_key"),
            "{e}"
        );

        let id_block = dir.join("id_block.json");
        std::fs::write(&id_block, br#"{"snp": {"image_id": "00"}}"#).unwrap();
        let e = Policy::from_file(&id_block)
            .unwrap_err()
            .to_string();
        assert!(e.contains("id_key_digest"), "{e}");

        let huge = dir.join("huge.json");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_POLICY_FILE + 1)
            .unwrap();
        let e = Policy::from_file(&huge)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
