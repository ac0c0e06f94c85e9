//! What a firmware event log says: [`EventLogClaims`], a model type that sits below the verdict
//! (a bundle verdict carries it).

use std::collections::BTreeMap;

use serde::Serialize;

/// What an event log says (whether it can be believed is what the replay check decides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventLogClaims {
    /// `crypto-agile` or `legacy-sha1`.
    pub format: String,
    /// Number of events, the Spec ID event included.
    pub events: usize,
    /// The digest algorithms of the log, in Spec ID order (`sha1`, `sha256`, …; `0x….` for an
    /// algorithm without a name here).
    pub banks: Vec<String>,
    /// Number of events per type name (`EV_SEPARATOR` → 8).
    pub event_types: BTreeMap<String, usize>,
    /// Number of measured (non-`EV_NO_ACTION`) events per log index.
    pub events_per_index: BTreeMap<u32, usize>,
    /// The `StartupLocality` of PCR 0, when the log records one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_locality: Option<u8>,
    /// The replayed values per bank name and log index (hex), for every bank we can hash and
    /// replay ([`EventLog::replay`](crate::eventlog::EventLog::replay)).
    pub replayed: BTreeMap<String, BTreeMap<u32, String>>,
    /// Bytes of end-of-log padding (all `0x00` or all `0xff`) after the last event.
    pub padding: usize,
}
