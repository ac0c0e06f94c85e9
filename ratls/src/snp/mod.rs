//! AMD SEV-SNP: attestation reports, the AMD certificate chain, and policy.
//!
//! Verification ([`verify`]) runs these steps, in order, each recorded in the verdict:
//!
//! | step | what it checks |
//! | --- | --- |
//! | `tee.parse` | the report parses (1184 bytes, version 2–5) |
//! | `tee.chain.ark` | the ARK is one of the pinned AMD roots (Milan, Genoa, Turin) and self-signed |
//! | `tee.chain.ask` / `tee.chain.asvk` | the intermediate is signed by that ARK |
//! | `tee.chain.vcek` / `tee.chain.vlek` | the endorsement key certificate is signed by the intermediate |
//! | `tee.chain.validity` | every certificate is inside its validity window at the given time |
//! | `tee.crl` | AMD's CRL (when given, or required by the policy): signed by the chain's ARK, issued under its name, current (`thisUpdate <= now < nextUpdate`), listing neither the ASK/ASVK nor the VCEK/VLEK |
//! | `tee.signing_key` | the report's SIGNING_KEY names the kind of key that was given |
//! | `tee.signature` | ECDSA P-384/SHA-384 over bytes 0..0x2A0 under the VCEK/VLEK |
//! | `tee.tcb` | the certificate's TCB extensions equal the report's `reported_tcb` |
//! | `tee.chip_id` | the VCEK's hwID equals the report's `chip_id` (unless masked, or VLEK) |
//! | `tee.product` | the report's CPUID (v3+) belongs to the chain's product |
//! | `tee.policy.debug` | the guest policy forbids debugging, unless allowed |
//! | `tee.policy.migrate_ma` | no migration agent, unless allowed |
//! | `tee.policy.vmpl` | the report was requested at the expected VMPL (0 by default) |
//! | `tee.policy.*` | optional: minimum TCB, minimum guest SVN, measurement, host data, … |

mod anchors;
mod report;
mod verify;

use serde::{Deserialize, Serialize};

use crate::hexfmt::hex;

pub use self::anchors::Product;
pub use self::report::{
    AttestationReport, Cpuid, FirmwareVersion, GuestPolicy, RawTcb, SigningKey, TcbVersion,
    REPORT_LEN, SIGNED_LEN,
};
pub use self::verify::{verify, verify_bytes, verify_simulated};

/// The certificates that come with a report. Each field is DER or PEM.
#[derive(Debug, Clone, Default)]
pub struct CertInput {
    /// The VCEK certificate (from AMD KDS or the extended report).
    pub vcek: Option<Vec<u8>>,
    /// The VLEK certificate, for reports signed by a cloud provider's loaded key.
    pub vlek: Option<Vec<u8>>,
    /// The ASK (or ASVK) then the ARK, as AMD KDS serves `cert_chain`. When absent, the built-in
    /// chain for the product named by the VCEK/VLEK issuer is used.
    pub chain: Option<Vec<u8>>,
    /// AMD's certificate revocation list for the product (KDS `crl`, signed by the ARK), when
    /// known: checked by `tee.crl`.
    pub crl: Option<Vec<u8>>,
}

/// A minimum TCB, component by component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinTcb {
    #[serde(default)]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

/// What an SEV-SNP report must satisfy beyond being genuine. The default is strict: no debug, no
/// migration agent, VMPL 0 (every `bool` false, every pin unset); the optional fields pin values
/// when set (hex, any case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnpPolicy {
    pub allow_debug: bool,
    pub allow_migration_agent: bool,
    /// The VMPL the report must have been requested at.
    pub vmpl: u32,
    pub min_tcb: Option<MinTcb>,
    pub min_guest_svn: Option<u32>,
    pub measurement: Option<String>,
    pub host_data: Option<String>,
    pub id_key_digest: Option<String>,
    pub author_key_digest: Option<String>,
    pub report_data: Option<String>,
    pub family_id: Option<String>,
    pub image_id: Option<String>,
    /// Restrict to these products (`Milan`, `Genoa`, `Turin`); empty = any pinned product.
    pub products: Vec<Product>,
    /// Fail `tee.crl` when no CRL is given. Without it a missing CRL only shows in the claims
    /// (`revocation: "not checked: no CRL"`); a CRL that is given is always checked.
    pub require_crl: bool,
}

impl SnpPolicy {
    /// The ID-block pins (`family_id`, `image_id`, `min_guest_svn`) this policy sets without
    /// pinning the key that signed the ID block (`id_key_digest` or `author_key_digest`); empty
    /// when there are none or the key is pinned. The host chooses the ID block at launch, so
    /// without the key pinned these values prove nothing: [`crate::Policy::validate`] refuses
    /// such a policy and the SNP verification fails `tee.policy.id_block`.
    pub fn unauthenticated_id_block_pins(&self) -> Vec<&'static str> {
        if self.id_key_digest.is_some() || self.author_key_digest.is_some() {
            return Vec::new();
        }
        [
            ("family_id", self.family_id.is_some()),
            ("image_id", self.image_id.is_some()),
            ("min_guest_svn", self.min_guest_svn.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
    }
}

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

/// Parse a report and return its claims without verifying anything.
pub fn inspect(bytes: &[u8]) -> Result<SnpClaims, crate::ParseError> {
    AttestationReport::parse(bytes).map(|r| SnpClaims::from_report(&r, None))
}

#[cfg(test)]
mod tests;
