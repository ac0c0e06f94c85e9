//! Linux IMA measurement logs: parsing, replay into PCR banks, and verification against a
//! quoted PCR 10.
//!
//! The kernel exports the same measurement list in two forms:
//!
//! - `binary_runtime_measurements` (and `binary_runtime_measurements_sha<N>` on kernels that
//!   export one list per PCR bank): little-endian records of PCR index, template hash, template
//!   name and template data. **This is the source of truth.** It carries every byte the kernel
//!   hashed, including file names that contain spaces or newlines.
//! - `ascii_runtime_measurements`: one line per entry. It cannot represent a file name with a
//!   newline (the line splits in two), and on older kernels a name with spaces is ambiguous with
//!   the optional fields that follow it. [`Log::parse_ascii`] rebuilds the template data the
//!   kernel hashed so ASCII logs replay too, but prefer the binary log whenever you have it.
//!
//! Supported templates: `ima` (fields `d|n`), `ima-ng` (`d-ng|n-ng`), `ima-sig`
//! (`d-ng|n-ng|sig`) and `ima-buf` (`d-ng|n-ng|buf`). Any other template is a clear
//! [`ParseError::Unsupported`](crate::codec::ParseError::Unsupported) naming it.
//!
//! Replay ([`Log::replay`]) extends each PCR-10 entry into a bank: per bank, the digest
//! extended is `H_bank(template data)` on current kernels ([`ReplayMode::PerBankTemplateHash`])
//! or the SHA-1 template hash zero-padded to the bank size on older ones
//! ([`ReplayMode::Sha1Padded`]). A violation (an all-zero template hash) extends all `0xff`.
//! Entries recorded in PCRs other than 10 are kept in the log, counted, and left out of the
//! PCR-10 replay; [`Log::replay_pcr`] replays any other PCR the same way.
//!
//! [`verify_bytes`] runs the checks `ima.parse`, `ima.template_hash`, `ima.violations`,
//! `ima.boot_aggregate`, `ima.coverage` and `ima.replay`; [`verify_anchored`] does the same
//! and also recomputes `boot_aggregate` from quoted PCRs 0–9; [`inspect`] only parses and
//! replays.

use serde::{Deserialize, Serialize};

use crate::digest::HashAlg;

mod ascii;
pub(crate) mod claims;
pub mod files;
mod log;
mod replay;
mod verify;

pub use self::claims::{ImaAnchor, ImaClaims, ReplayMode};
pub use self::log::{Entry, Escaped, Log, LogFormat, Template};
pub use self::verify::{
    inspect, quoted_pcr10, verify_anchored, verify_bytes, verify_delta, ImaQuote,
};

/// The PCR the kernel extends IMA measurements into (`CONFIG_IMA_MEASURE_PCR_IDX`).
pub const IMA_PCR: u32 = 10;

/// At most this many entries are parsed from one log.
pub const MAX_ENTRIES: usize = 4_000_000;

/// At most this many bytes of template data per entry.
pub const MAX_TEMPLATE_DATA: usize = 1 << 20;

/// At most this many bytes in a file path (or `ima-buf` event name), without its NUL.
pub const MAX_PATH: usize = 4096;

/// Policy for IMA measurement logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImaPolicy {
    /// Accept logs with violation entries (all-zero template hashes, recorded when a file was
    /// measured while open for writing, or opened for writing while measured). Default: false.
    pub allow_violations: bool,
    /// Accept a log with no PCR-10 measurement past `boot_aggregate` (`ima.coverage`): a
    /// kernel with no IMA policy loaded, or one that measured nothing. Such a log vouches for
    /// no file at all, so by default it fails. Default: false.
    pub allow_empty: bool,
    /// The bank the binary log's template hashes are expected in (which
    /// `binary_runtime_measurements_sha<N>` file was exported). It is tried first when the
    /// template-hash size is auto-detected; `None` auto-detects in the order SHA-1, SHA-256,
    /// SHA-384, SHA-512.
    pub bank: Option<HashAlg>,
}

#[cfg(test)]
mod tests;
