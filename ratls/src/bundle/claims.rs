//! What a bundle verdict reports beyond the per-platform claims: how the evidence is bound and
//! why it is fresh, and which logs were deferred. Model types that sit below the verdict; the
//! [`BundleClaims`](crate::bundle::BundleClaims) that hold them live with
//! [`Claims`](crate::Claims).

use serde::Serialize;

/// How tightly the evidence is bound to the channel the verifier talks over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BindingLevel {
    /// Bound to the TLS key (certificate mode): whoever holds the key inside the VM.
    Key,
    /// Bound to this TLS session through its exporter (fresh mode).
    Session,
}

/// Why the verifier believes the evidence is recent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Freshness {
    /// Issued `age_secs` ago, within the verifier's maximum age.
    TimeWindow { age_secs: u64, max_age_secs: u64 },
    /// Answers a challenge the verifier chose.
    Challenge,
}

/// The IMA log a verdict still has to see (certificate mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaDeferred {
    pub len: u64,
    pub sha256: String,
}

/// How batched fresh evidence answered this session (`docs/wire-format.md`, "Batches").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchInfo {
    /// How many sessions shared the TEE report and the TPM quote.
    pub size: u64,
    /// This session's leaf.
    pub index: u64,
    /// The tree's root (lower-case hex).
    pub root: String,
    /// Whether the verdict on the shared evidence came from this verifier's cache (verified
    /// once per batch, for an earlier session of it) rather than from checking it again.
    pub shared_verdict_cached: bool,
}
