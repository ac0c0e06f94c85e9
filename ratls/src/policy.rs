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
