//! What an IMA measurement log says: [`ImaClaims`] and the [`ReplayMode`] it reports, model
//! types that sit below the verdict (which carries them).

use core::fmt;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::HashAlg;

/// How an entry's digest is extended into a bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReplayMode {
    /// Current kernels (5.10 and later): each bank gets `H_bank(template data)`; a violation
    /// extends `0xff` repeated to the bank's size.
    PerBankTemplateHash,
    /// Older kernels: the SHA-1 template hash is extended into every bank, zero-padded to the
    /// bank's size; a violation extends 20 bytes of `0xff`, zero-padded.
    Sha1Padded,
}

impl ReplayMode {
    /// Both modes, the current one first.
    pub const ALL: [Self; 2] = [Self::PerBankTemplateHash, Self::Sha1Padded];

    /// A short name (`per-bank-template-hash`, `sha1-padded`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::PerBankTemplateHash => "per-bank-template-hash",
            Self::Sha1Padded => "sha1-padded",
        }
    }
}

impl fmt::Display for ReplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Claims read from an IMA measurement log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaClaims {
    /// Number of entries in the log (all PCRs).
    pub entries: usize,
    /// Number of violation entries (all-zero template hash).
    pub violations: usize,
    /// Entries recorded in PCRs other than 10 (not covered by the PCR-10 replay).
    pub other_pcr_entries: usize,
    /// The distinct template names, sorted.
    pub templates: Vec<String>,
    /// The full-log PCR 10 replay, per bank (`sha1`, `sha256`, `sha384`, `sha512` → hex), in
    /// [`ReplayMode::PerBankTemplateHash`] mode.
    pub pcr10: BTreeMap<String, String>,
    /// The bank the log's template hashes are in (the export's bank).
    pub template_hash_alg: HashAlg,
    /// The file digest of the first entry when it is `boot_aggregate` (hex).
    pub boot_aggregate: Option<String>,
    /// The number of leading PCR-10 entries covered by the quoted PCR 10, when one matched.
    pub quote_prefix: Option<usize>,
    /// The number of PCR-10 entries recorded after the quote, when one matched.
    pub entries_after_quote: Option<usize>,
    /// How the quoted PCR 10 was reproduced, when it was.
    pub quote_mode: Option<ReplayMode>,
    /// What the quote anchored, when `ima.replay` passed: a later delta (the entries after
    /// it, with a new quote) continues from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Box<ImaAnchor>>,
    /// For a delta ([`verify_delta`](super::verify_delta)): the index of its first entry in
    /// the whole log (the entries before it were verified earlier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_from: Option<u64>,
}

/// How far a verifier has checked one boot's IMA log: the leading `entries` of the log (all
/// PCRs, from `boot_aggregate`) replay in `mode` to the quoted PCR 10 `pcr10` of `bank`, on a
/// boot whose PCRs 0–9 hash to `boot_aggregate` (as the kernel computes it for that bank). A
/// re-attestation sends only the entries past `entries` and a new quote: the verifier replays
/// them from `pcr10` ([`verify_delta`](super::verify_delta)), so the cost follows the new
/// entries, not the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaAnchor {
    /// Log entries covered, counted from the first (all PCRs).
    pub entries: u64,
    /// The PCR bank of `pcr10` and `boot_aggregate`.
    pub bank: HashAlg,
    /// The quoted PCR 10 they replay to (hex).
    pub pcr10: String,
    /// The replay mode that reproduced it.
    pub mode: ReplayMode,
    /// `bank`(PCR 0 ‖ … ‖ PCR 9) of the quote (hex; PCRs 0–7 for SHA-1): a later quote must
    /// show the same boot.
    pub boot_aggregate: String,
}
