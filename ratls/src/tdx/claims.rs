//! What a TDX quote says: [`TdxClaims`], a model type read from the parsed quote. It sits
//! below the verdict (which carries it) and names only the quote's own types.

use serde::Serialize;

use crate::hexfmt::hex;
use crate::tdx::quote::Quote;

/// Claims read from a TDX quote (hex in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TdxClaims {
    /// Quote version (4 or 5).
    pub version: u16,
    /// `td1.0` or `td1.5`.
    pub body_type: String,
    pub mr_td: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    pub report_data: String,
    /// TD attributes as a little-endian u64, e.g. `0x10000000` (SEPT_VE_DISABLE).
    pub td_attributes: String,
    /// TD attributes DEBUG bit.
    pub debug: bool,
    pub tee_tcb_svn: String,
    pub mr_seam: String,
    pub mr_signer_seam: String,
    /// XFAM as a little-endian u64, e.g. `0x602e7`.
    pub xfam: String,
    pub mr_config_id: String,
    pub mr_owner: String,
    pub mr_owner_config: String,
    /// TD 1.5 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<String>,
    /// TD 1.5 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_service_td: Option<String>,
    /// The TCB status evaluated against the collateral; `None` until verified.
    pub tcb_status: Option<String>,
    /// Intel security advisories of the matched TCB level.
    pub advisory_ids: Vec<String>,
    /// FMSPC from the PCK certificate's SGX extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmspc: Option<String>,
    /// Bytes after the signature data (tolerated, not interpreted).
    pub trailing_bytes: usize,
}

impl TdxClaims {
    /// The claims a parsed quote makes (no TCB status).
    pub fn from_quote(quote: &Quote<'_>) -> Self {
        let r = &quote.report;
        let [rtmr0, rtmr1, rtmr2, rtmr3] = &r.rtmr;
        Self {
            version: quote.header.version,
            body_type: quote.body_type.name().to_owned(),
            mr_td: hex(r.mr_td),
            rtmr0: hex(rtmr0),
            rtmr1: hex(rtmr1),
            rtmr2: hex(rtmr2),
            rtmr3: hex(rtmr3),
            report_data: hex(r.report_data),
            td_attributes: format!("{:#x}", u64::from_le_bytes(r.td_attributes)),
            debug: r.debug(),
            tee_tcb_svn: hex(r.tee_tcb_svn),
            mr_seam: hex(r.mr_seam),
            mr_signer_seam: hex(r.mr_signer_seam),
            xfam: format!("{:#x}", u64::from_le_bytes(r.xfam)),
            mr_config_id: hex(r.mr_config_id),
            mr_owner: hex(r.mr_owner),
            mr_owner_config: hex(r.mr_owner_config),
            tee_tcb_svn2: r
                .td15
                .as_ref()
                .map(|t| hex(t.tee_tcb_svn2)),
            mr_service_td: r
                .td15
                .as_ref()
                .map(|t| hex(t.mr_service_td)),
            tcb_status: None,
            advisory_ids: Vec::new(),
            fmspc: None,
            trailing_bytes: quote.trailing_bytes,
        }
    }
}
