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
}
