//! The AMD roots of trust we pin, and the intermediates AMD KDS serves for them.
//!
//! The certificates are AMD's public KDS `cert_chain` / `vlek cert_chain` responses, one
//! certificate per file. An ARK is accepted only if its SHA-256 fingerprint equals the constant
//! below, so a modified anchor file cannot widen trust.

use core::fmt;

use serde::{Deserialize, Serialize};

/// An AMD EPYC generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Product {
    Genoa,
    Milan,
    Turin,
}

impl Product {
    pub const ALL: [Self; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    pub fn name(self) -> &'static str {
        match self {
            Self::Genoa => "Genoa",
            Self::Milan => "Milan",
            Self::Turin => "Turin",
        }
    }

    /// SHA-256 fingerprint of the ARK certificate (DER).
    pub fn ark_fingerprint(self) -> &'static str {
        match self {
            Self::Milan => "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
            Self::Genoa => "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
            Self::Turin => "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        }
    }

    pub(crate) fn ark_pem(self) -> &'static [u8] {
        match self {
            Self::Milan => include_bytes!("anchors/milan_ark.pem"),
            Self::Genoa => include_bytes!("anchors/genoa_ark.pem"),
            Self::Turin => include_bytes!("anchors/turin_ark.pem"),
        }
    }

    /// The intermediate for VCEKs (ASK) or VLEKs (ASVK).
    pub(crate) fn intermediate_pem(self, vlek: bool) -> &'static [u8] {
        match (self, vlek) {
            (Self::Milan, false) => include_bytes!("anchors/milan_ask.pem"),
            (Self::Milan, true) => include_bytes!("anchors/milan_asvk.pem"),
            (Self::Genoa, false) => include_bytes!("anchors/genoa_ask.pem"),
            (Self::Genoa, true) => include_bytes!("anchors/genoa_asvk.pem"),
            (Self::Turin, false) => include_bytes!("anchors/turin_ask.pem"),
            (Self::Turin, true) => include_bytes!("anchors/turin_asvk.pem"),
        }
    }

    /// The product whose ARK has this fingerprint.
    pub fn from_ark_fingerprint(fingerprint: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.ark_fingerprint() == fingerprint)
    }

    /// The product an AMD CA common name names: `ARK-Milan`, `SEV-Genoa`, `SEV-VLEK-Turin`.
    pub fn from_common_name(cn: &str) -> Option<Self> {
        let name = cn
            .strip_prefix("ARK-")
            .or_else(|| cn.strip_prefix("SEV-VLEK-"))
            .or_else(|| cn.strip_prefix("SEV-"))?;
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// The product a report's CPUID family/model belongs to.
    pub fn from_cpuid(cpuid: crate::snp::report::Cpuid) -> Option<Self> {
        match (cpuid.family, cpuid.model >> 4) {
            (0x19, 0x0) => Some(Self::Milan),
            (0x19, 0x1 | 0xA) => Some(Self::Genoa),
            (0x1A, _) => Some(Self::Turin),
            _ => None,
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The built-in ARK and intermediate of a product, parsed and verified (ARK self-signature,
/// intermediate signed by ARK, ARK fingerprint pinned) once per process. `None` if they do not
/// verify, which the unit tests rule out.
pub(crate) struct BuiltIn {
    pub ark: crate::pki::Cert,
    pub intermediate: crate::pki::Cert,
}

pub(crate) fn built_in(product: Product, vlek: bool) -> Option<&'static BuiltIn> {
    use std::sync::OnceLock;
    static CACHE: [OnceLock<Option<BuiltIn>>; 6] = [const { OnceLock::new() }; 6];
    let index = Product::ALL
        .iter()
        .position(|p| *p == product)?
        * 2
        + usize::from(vlek);
    CACHE
        .get(index)?
        .get_or_init(|| {
            let ark = crate::pki::Cert::from_der_or_pem(product.ark_pem()).ok()?;
            let intermediate =
                crate::pki::Cert::from_der_or_pem(product.intermediate_pem(vlek)).ok()?;
            let pinned = ark.fingerprint() == product.ark_fingerprint();
            let signed = ark.verify_signed_by(&ark).is_ok()
                && intermediate
                    .verify_signed_by(&ark)
                    .is_ok();
            (pinned && signed).then_some(BuiltIn { ark, intermediate })
        })
        .as_ref()
}
