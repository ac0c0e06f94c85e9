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

impl Policy {
    /// Parse a JSON policy document.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
