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
//! | `tee.tcb` | the certificate's TCB extensions equal the report's `reported_tcb`, which is at least AMD's floor for the product ([`floors`], `tcb_floors.json`) unless the policy sets `min_tcb` or `tcb_floor: "none"` |
//! | `tee.chip_id` | the VCEK's hwID equals the report's `chip_id` (unless masked, or VLEK) |
//! | `tee.product` | the report's CPUID (v3+) belongs to the chain's product |
//! | `tee.policy.debug` | the guest policy forbids debugging, unless allowed |
//! | `tee.policy.migrate_ma` | no migration agent, unless allowed |
//! | `tee.policy.vmpl` | the report was requested at the expected VMPL (0 by default) |
//! | `tee.policy.launch_tcb`, `.smt`, `.single_socket`, `.ciphertext_hiding`, `.platform_info` | optional platform requirements |
//! | `tee.policy.*` | optional: minimum TCB, minimum guest SVN, measurement, host data, … |

mod anchors;
pub(crate) mod claims;
pub mod floors;
pub(crate) mod report;
mod verify;

use serde::{Deserialize, Serialize};

pub use self::anchors::Product;
pub use self::claims::SnpClaims;
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

/// The default minimum TCB when the policy sets no `min_tcb`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcbFloor {
    /// AMD's floor for the product (`tcb_floors.json`).
    #[default]
    Default,
    /// No default minimum (any TCB the chain certifies is accepted unless `min_tcb` is set).
    None,
}

/// A PLATFORM_INFO flag (SEV-SNP firmware ABI, attestation report offset 0x40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum PlatformFlag {
    /// Bit 0: SMT enabled on the platform.
    SMT_EN,
    /// Bit 1: transparent SME enabled.
    TSME_EN,
    /// Bit 2: ECC memory in use.
    ECC_EN,
    /// Bit 3: RAPL disabled.
    RAPL_DIS,
    /// Bit 4: ciphertext hiding enabled (for DRAM).
    CIPHERTEXT_HIDING_EN,
    /// Bit 5: the memory alias check completed (firmware 1.55.x+ on affected platforms).
    ALIAS_CHECK_COMPLETE,
}

impl PlatformFlag {
    pub const ALL: [Self; 6] = [
        Self::SMT_EN,
        Self::TSME_EN,
        Self::ECC_EN,
        Self::RAPL_DIS,
        Self::CIPHERTEXT_HIDING_EN,
        Self::ALIAS_CHECK_COMPLETE,
    ];

    /// The bit in PLATFORM_INFO.
    pub fn bit(self) -> u32 {
        match self {
            Self::SMT_EN => 0,
            Self::TSME_EN => 1,
            Self::ECC_EN => 2,
            Self::RAPL_DIS => 3,
            Self::CIPHERTEXT_HIDING_EN => 4,
            Self::ALIAS_CHECK_COMPLETE => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SMT_EN => "SMT_EN",
            Self::TSME_EN => "TSME_EN",
            Self::ECC_EN => "ECC_EN",
            Self::RAPL_DIS => "RAPL_DIS",
            Self::CIPHERTEXT_HIDING_EN => "CIPHERTEXT_HIDING_EN",
            Self::ALIAS_CHECK_COMPLETE => "ALIAS_CHECK_COMPLETE",
        }
    }

    /// Whether `platform_info` has this flag set.
    pub fn is_set(self, platform_info: u64) -> bool {
        platform_info & (1u64 << self.bit()) != 0
    }

    /// The names of the flags set in `platform_info`, e.g. `SMT_EN|TSME_EN` (or `none`).
    pub fn describe(platform_info: u64) -> String {
        let set: Vec<&str> = Self::ALL
            .iter()
            .filter(|f| f.is_set(platform_info))
            .map(|f| f.name())
            .collect();
        if set.is_empty() {
            "none".into()
        } else {
            set.join("|")
        }
    }
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
    /// Which default minimum TCB applies when `min_tcb` is not set: `"default"` (AMD's floor
    /// for the product, [`floors`]) or `"none"`. An explicit `min_tcb` always replaces it.
    pub tcb_floor: TcbFloor,
    /// Also require the report's `launch_tcb` to be at least the minimum that applies to
    /// `reported_tcb` (`tee.policy.launch_tcb`): the guest was not launched on an older TCB.
    pub check_launch_tcb: bool,
    /// Require SMT to be off (`tee.policy.smt`): the platform reports SMT_EN clear, or the
    /// guest policy forbids SMT (bit 16 clear: the firmware refuses to launch with SMT on).
    pub require_smt_off: bool,
    /// Require the guest policy's SINGLE_SOCKET bit (20) (`tee.policy.single_socket`).
    pub require_single_socket: bool,
    /// Require ciphertext hiding (`tee.policy.ciphertext_hiding`): PLATFORM_INFO
    /// CIPHERTEXT_HIDING_EN (bit 4), or the guest policy's CIPHERTEXT_HIDING bit (24).
    pub require_ciphertext_hiding: bool,
    /// PLATFORM_INFO flags that must be set (`tee.policy.platform_info`).
    pub platform_info_required: Vec<PlatformFlag>,
    /// PLATFORM_INFO flags that must be clear (`tee.policy.platform_info`).
    pub platform_info_forbidden: Vec<PlatformFlag>,
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

/// Parse a report and return its claims without verifying anything.
pub fn inspect(bytes: &[u8]) -> Result<SnpClaims, crate::ParseError> {
    AttestationReport::parse(bytes).map(|r| SnpClaims::from_report(&r, None))
}

#[cfg(test)]
mod tests;
