//! Intel TDX quotes (v4 and v5, TD report 1.0 and 1.5), verified against Intel PCS collateral.
//!
//! - [`Quote::parse`] reads a quote with bounds-checked code (see [`quote`] for the layout);
//!   [`inspect`] turns it into [`TdxClaims`] without verifying anything.
//! - [`verify_bytes`] (or [`Collateral::from_json`] once, then [`verify`] per quote) checks,
//!   each as a named step of the [`Verdict`](crate::Verdict):
//!
//! | step | what |
//! |------|------|
//! | `tee.parse` | the quote parses |
//! | `tee.collateral.parse` | the collateral JSON parses (dcap-qvl's `QuoteCollateralV3`) |
//! | `tee.pck_chain` | PCK leaf ← PCK CA ← Intel SGX Root CA (pinned by SHA-256), validity at `now` |
//! | `tee.qe_report.signature` | the QE report is signed by the PCK leaf key |
//! | `tee.qe_report.binding` | QE report_data = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes |
//! | `tee.signature` | the attestation key signed header ‖ body |
//! | `tee.collateral` | TCB info, QE identity, their chains, the CRLs, revocation, FMSPC (dcap-qvl) |
//! | `tee.tcb` | the TCB status dcap-qvl evaluated is one the policy allows (`UpToDate` by default) |
//! | `tee.policy.debug` | the TD is not a debug TD, unless the policy allows it |
//! | `tee.policy.mr_td`, `.rtmr0`..`.rtmr3`, `.report_data` | equal to the policy, when set |
//!
//! When dcap-qvl refuses the collateral, its error becomes one failed check whose name is the
//! most specific we can tell from it (`tee.collateral.tcb_info`, `tee.collateral.qe_identity`,
//! `tee.collateral.crl`, `tee.td_attributes`, `tee.tcb`, else `tee.collateral`); the message only
//! picks the name, the decision is always "failed".

pub(crate) mod chain;
pub(crate) mod claims;
pub mod quote;
mod verify;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use self::chain::{ChainError, INTEL_SGX_ROOT_CA_SHA256};
pub use self::claims::TdxClaims;
pub use self::quote::{BodyType, Header, QeReport, Quote, SignatureData, Td15Fields, TdReport};
pub use self::verify::{verify, verify_bytes, Collateral, CollateralError};
use crate::codec::ParseError;
use crate::hexfmt::hex;

/// The TCB statuses Intel defines (TCB info v3 and QE identity v2), as the policy names them.
pub const TCB_STATUSES: [&str; 9] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
    "Revoked",
];

/// Policy for TDX evidence. The default is strict: only `UpToDate`, no debug TD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TdxPolicy {
    /// TCB statuses accepted (names as in [`TCB_STATUSES`]); default `["UpToDate"]`.
    pub allowed_tcb_statuses: Vec<String>,
    /// Accept a TD whose DEBUG attribute is set.
    pub allow_debug: bool,
    /// Expected MRTD (48 bytes, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_td: Option<String>,
    /// Expected RTMR0..RTMR3 (48 bytes each, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmr1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmr2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmr3: Option<String>,
    /// Expected report_data (64 bytes, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        Self {
            allowed_tcb_statuses: vec!["UpToDate".to_owned()],
            allow_debug: false,
            mr_td: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            report_data: None,
        }
    }
}

/// The claims of a quote from the parse alone: nothing is verified and `tcb_status` is `None`.
/// The FMSPC is read from the (unverified) PCK leaf when it parses.
pub fn inspect(quote: &[u8]) -> Result<TdxClaims, ParseError> {
    let parsed = Quote::parse(quote)?;
    let mut claims = TdxClaims::from_quote(&parsed);
    claims.fmspc = chain::leaf_fmspc(parsed.signature_data.pck_chain_pem).map(hex);
    Ok(claims)
}
