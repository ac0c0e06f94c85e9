//! Verification step identifiers: one constant per step, grouped by the layer (prefix) of
//! evidence it is about. A [`Step`] prints and serializes as its dotted name (`tee.signature`),
//! the name every output and test uses; comparing it with a string compares that name.

use core::fmt;

use serde::{Serialize, Serializer};

/// What a step is about: the part of its name before the first dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StepLayer {
    Azure,
    Binding,
    Boot,
    Bundle,
    Cert,
    Collateral,
    Eventlog,
    Foreign,
    Freshness,
    Ima,
    Snapshot,
    Tee,
    Tpm,
    Verdict,
}

impl StepLayer {
    /// The prefix of the steps about it (`tee`, `tpm`, `snapshot`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::Binding => "binding",
            Self::Boot => "boot",
            Self::Bundle => "bundle",
            Self::Cert => "cert",
            Self::Collateral => "collateral",
            Self::Eventlog => "eventlog",
            Self::Foreign => "foreign",
            Self::Freshness => "freshness",
            Self::Ima => "ima",
            Self::Snapshot => "snapshot",
            Self::Tee => "tee",
            Self::Tpm => "tpm",
            Self::Verdict => "verdict",
        }
    }
}

/// One named verification step (see the constants for the full list).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Step {
    name: &'static str,
    layer: StepLayer,
}

impl Step {
    const fn new(name: &'static str, layer: StepLayer) -> Self {
        Self { name, layer }
    }

    /// The dotted name, as printed and serialized.
    pub const fn as_str(self) -> &'static str {
        self.name
    }

    /// What the step is about (its prefix).
    pub const fn layer(self) -> StepLayer {
        self.layer
    }

    /// The prefix of the name (`tee` for `tee.signature`): how outputs group steps.
    pub const fn prefix(self) -> &'static str {
        self.layer.as_str()
    }
}

/// Declares the step constants, layer by layer, and [`Step::ALL`] listing every one of them (so
/// a table over all steps, such as the TLS alert mapping's test, cannot miss one).
macro_rules! steps {
    ($($layer:ident { $($id:ident = $name:literal,)* })*) => {
        impl Step {
            $($(pub const $id: Self = Self::new($name, StepLayer::$layer);)*)*

            /// Every step, layer by layer in name order.
            pub const ALL: &'static [Self] = &[$($(Self::$id,)*)*];
        }
    };
}

steps! {
    Azure {
        AZURE_AK = "azure.ak",
        AZURE_PARSE = "azure.parse",
        AZURE_POLICY_SECURE_BOOT = "azure.policy.secure_boot",
        AZURE_POLICY_VM_UNIQUE_ID = "azure.policy.vm_unique_id",
        AZURE_RUNTIME_DATA = "azure.runtime_data",
        AZURE_TD_QUOTE = "azure.td_quote",
        AZURE_TD_REPORT = "azure.td_report",
    }
    Binding {
        BINDING_AK = "binding.ak",
        BINDING_AK_TEE = "binding.ak_tee",
        BINDING_BATCH_INCLUSION = "binding.batch_inclusion",
        BINDING_BATCH_PROOF = "binding.batch_proof",
        BINDING_CHALLENGE = "binding.challenge",
        BINDING_EXPORTER = "binding.exporter",
        BINDING_FRESHNESS = "binding.freshness",
        BINDING_LEVEL = "binding.level",
        BINDING_REPORT_DATA = "binding.report_data",
        BINDING_ROLE = "binding.role",
        BINDING_SPKI = "binding.spki",
    }
    Boot {
        BOOT_EVENTLOG = "boot.eventlog",
    }
    Bundle {
        BUNDLE_IMA = "bundle.ima",
        BUNDLE_PARSE = "bundle.parse",
        BUNDLE_TEE = "bundle.tee",
        BUNDLE_TPM = "bundle.tpm",
    }
    Cert {
        CERT_CRITICAL = "cert.critical",
        CERT_EVIDENCE = "cert.evidence",
        CERT_EXTENSION_CRITICAL = "cert.extension.critical",
        CERT_EXTENSION_FORMAT = "cert.extension.format",
        CERT_EXTENSION_SIZE = "cert.extension.size",
        CERT_PARSE = "cert.parse",
        CERT_VALIDITY = "cert.validity",
        CERT_WEBPKI = "cert.webpki",
    }
    Collateral {
        COLLATERAL_CRL = "collateral.crl",
        COLLATERAL_TDX = "collateral.tdx",
        COLLATERAL_VCEK = "collateral.vcek",
    }
    Eventlog {
        EVENTLOG_PARSE = "eventlog.parse",
        EVENTLOG_REPLAY = "eventlog.replay",
    }
    Foreign {
        FOREIGN_CERTIFICATE = "foreign.certificate",
        FOREIGN_EXTENSION = "foreign.extension",
        FOREIGN_FORMAT = "foreign.format",
        FOREIGN_VALIDITY = "foreign.validity",
    }
    Freshness {
        FRESHNESS = "freshness",
    }
    Ima {
        IMA_BOOT_AGGREGATE = "ima.boot_aggregate",
        IMA_CHANGED_FILE = "ima.changed_file",
        IMA_COVERAGE = "ima.coverage",
        IMA_DELTA = "ima.delta",
        IMA_FILE_HASH_ALG = "ima.file_hash_alg",
        IMA_FILES = "ima.files",
        IMA_LOG = "ima.log",
        IMA_LOG_DIGEST = "ima.log_digest",
        IMA_PARSE = "ima.parse",
        IMA_REPLAY = "ima.replay",
        IMA_TEMPLATE_HASH = "ima.template_hash",
        IMA_UNKNOWN_FILE = "ima.unknown_file",
        IMA_VIOLATIONS = "ima.violations",
    }
    Snapshot {
        SNAPSHOT_AGENT_KEY = "snapshot.agent_key",
        SNAPSHOT_BOOT_EVENTS = "snapshot.boot_events",
        SNAPSHOT_PINS = "snapshot.pins",
    }
    Tee {
        TEE_CHAIN_ARK = "tee.chain.ark",
        TEE_CHAIN_ASK = "tee.chain.ask",
        TEE_CHAIN_ASVK = "tee.chain.asvk",
        TEE_CHAIN_VALIDITY = "tee.chain.validity",
        TEE_CHAIN_VCEK = "tee.chain.vcek",
        TEE_CHAIN_VLEK = "tee.chain.vlek",
        TEE_CHIP_ID = "tee.chip_id",
        TEE_COLLATERAL = "tee.collateral",
        TEE_COLLATERAL_CRL = "tee.collateral.crl",
        TEE_COLLATERAL_PARSE = "tee.collateral.parse",
        TEE_COLLATERAL_QE_IDENTITY = "tee.collateral.qe_identity",
        TEE_COLLATERAL_TCB_INFO = "tee.collateral.tcb_info",
        TEE_CRL = "tee.crl",
        TEE_PARSE = "tee.parse",
        TEE_PCK_CHAIN = "tee.pck_chain",
        TEE_POLICY_AUTHOR_KEY_DIGEST = "tee.policy.author_key_digest",
        TEE_POLICY_CIPHERTEXT_HIDING = "tee.policy.ciphertext_hiding",
        TEE_POLICY_DEBUG = "tee.policy.debug",
        TEE_POLICY_FAMILY_ID = "tee.policy.family_id",
        TEE_POLICY_HOST_DATA = "tee.policy.host_data",
        TEE_POLICY_ID_BLOCK = "tee.policy.id_block",
        TEE_POLICY_ID_KEY_DIGEST = "tee.policy.id_key_digest",
        TEE_POLICY_IMAGE_ID = "tee.policy.image_id",
        TEE_POLICY_LAUNCH_TCB = "tee.policy.launch_tcb",
        TEE_POLICY_MEASUREMENT = "tee.policy.measurement",
        TEE_POLICY_MIGRATE_MA = "tee.policy.migrate_ma",
        TEE_POLICY_MIN_GUEST_SVN = "tee.policy.min_guest_svn",
        TEE_POLICY_MIN_TCB = "tee.policy.min_tcb",
        TEE_POLICY_MR_TD = "tee.policy.mr_td",
        TEE_POLICY_PLATFORM_INFO = "tee.policy.platform_info",
        TEE_POLICY_PRODUCT = "tee.policy.product",
        TEE_POLICY_REPORT_DATA = "tee.policy.report_data",
        TEE_POLICY_RTMR0 = "tee.policy.rtmr0",
        TEE_POLICY_RTMR1 = "tee.policy.rtmr1",
        TEE_POLICY_RTMR2 = "tee.policy.rtmr2",
        TEE_POLICY_RTMR3 = "tee.policy.rtmr3",
        TEE_POLICY_SINGLE_SOCKET = "tee.policy.single_socket",
        TEE_POLICY_SMT = "tee.policy.smt",
        TEE_POLICY_VMPL = "tee.policy.vmpl",
        TEE_PRODUCT = "tee.product",
        TEE_QE_REPORT_BINDING = "tee.qe_report.binding",
        TEE_QE_REPORT_SIGNATURE = "tee.qe_report.signature",
        TEE_SIGNATURE = "tee.signature",
        TEE_SIGNING_KEY = "tee.signing_key",
        TEE_SUPPORTED = "tee.supported",
        TEE_TCB = "tee.tcb",
        TEE_TD_ATTRIBUTES = "tee.td_attributes",
    }
    Tpm {
        TPM_AK = "tpm.ak",
        TPM_CLOCK = "tpm.clock",
        TPM_COUNTERS = "tpm.counters",
        TPM_MAGIC = "tpm.magic",
        TPM_PARSE = "tpm.parse",
        TPM_PCR_DIGEST = "tpm.pcr_digest",
        TPM_PCR_SELECTION = "tpm.pcr_selection",
        TPM_POLICY_PCRS = "tpm.policy.pcrs",
        TPM_QUALIFYING_DATA = "tpm.qualifying_data",
        TPM_SIGNATURE = "tpm.signature",
        TPM_TYPE = "tpm.type",
    }
    Verdict {
        VERDICT_EMPTY = "verdict.empty",
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.name, f)
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl PartialEq<str> for Step {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl PartialEq<&str> for Step {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

impl PartialEq<Step> for &str {
    fn eq(&self, other: &Step) -> bool {
        *self == other.name
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_step_is_listed_once_under_its_prefix() {
        let names: BTreeSet<&str> = Step::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names.len(), Step::ALL.len(), "a name is declared twice");
        for step in Step::ALL {
            let prefix = step.as_str().split('.').next().unwrap();
            assert_eq!(prefix, step.prefix(), "{step}");
        }
        assert!(Step::ALL.contains(&Step::TEE_SIGNATURE));
        assert!(Step::ALL.contains(&Step::VERDICT_EMPTY));
    }
}
