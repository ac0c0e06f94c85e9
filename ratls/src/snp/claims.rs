//! What an SEV-SNP report says: [`SnpClaims`], a model type read from the parsed report. It
//! sits below the verdict (which carries it) and names only the report's own types.

use serde::Serialize;

use crate::hexfmt::hex;
use crate::snp::anchors::Product;
use crate::snp::report::{AttestationReport, Cpuid, TcbVersion};

/// What a report says. Hex is lower case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    pub version: u32,
    /// `Milan`, `Genoa` or `Turin` when the chain or CPUID tells.
    pub product: Option<Product>,
    pub guest_svn: u32,
    /// The guest policy, e.g. `0x30000`.
    pub policy: String,
    pub debug_allowed: bool,
    pub migrate_ma_allowed: bool,
    pub smt_allowed: bool,
    pub vmpl: u32,
    pub measurement: String,
    pub report_data: String,
    pub host_data: String,
    pub id_key_digest: String,
    pub author_key_digest: String,
    pub family_id: String,
    pub image_id: String,
    pub report_id: String,
    pub chip_id: String,
    pub chip_id_masked: bool,
    pub platform_info: String,
    /// `vcek`, `vlek` or `none`.
    pub signing_key: String,
    pub reported_tcb: TcbVersion,
    pub current_tcb: TcbVersion,
    pub committed_tcb: TcbVersion,
    pub launch_tcb: TcbVersion,
    /// The raw reported TCB, e.g. `0x7308000000000003`.
    pub reported_tcb_raw: String,
    pub cpuid: Option<Cpuid>,
    /// e.g. `1.52 build 4`.
    pub firmware: String,
    pub committed_firmware: String,
    /// Whether AMD's CRL was checked: `checked: CRL of <thisUpdate>`, `not checked: no CRL`, …
    pub revocation: String,
}

impl SnpClaims {
    /// The claims of a parsed report; `product` decides the TCB layout (Turin differs).
    pub fn from_report(report: &AttestationReport, product: Option<Product>) -> Self {
        let product = product.or_else(|| {
            report
                .cpuid
                .and_then(Product::from_cpuid)
        });
        let turin = product == Some(Product::Turin);
        Self {
            version: report.version,
            product,
            guest_svn: report.guest_svn,
            policy: format!("{:#x}", report.policy.0),
            debug_allowed: report.policy.debug_allowed(),
            migrate_ma_allowed: report.policy.migrate_ma_allowed(),
            smt_allowed: report.policy.smt_allowed(),
            vmpl: report.vmpl,
            measurement: hex(report.measurement),
            report_data: hex(report.report_data),
            host_data: hex(report.host_data),
            id_key_digest: hex(report.id_key_digest),
            author_key_digest: hex(report.author_key_digest),
            family_id: hex(report.family_id),
            image_id: hex(report.image_id),
            report_id: hex(report.report_id),
            chip_id: hex(report.chip_id),
            chip_id_masked: report.chip_id_masked(),
            platform_info: format!("{:#x}", report.platform_info),
            signing_key: report.signing_key().name().to_owned(),
            reported_tcb: report.reported_tcb.decode(turin),
            current_tcb: report.current_tcb.decode(turin),
            committed_tcb: report.committed_tcb.decode(turin),
            launch_tcb: report.launch_tcb.decode(turin),
            reported_tcb_raw: format!("{:#018x}", report.reported_tcb.0),
            cpuid: report.cpuid,
            firmware: report.current_version.to_string(),
            committed_firmware: report.committed_version.to_string(),
            revocation: "not checked: report parsed only".to_owned(),
        }
    }
}
