//! Time as the verifiers see it.
//!
//! Every verifier takes the current time as an argument, so old real samples can be checked "as
//! of" a moment inside their collateral windows (`cosmian_vm evidence verify --at`).

use core::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The current system time (the epoch if the clock is before it).
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(secs)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// Parse an RFC 3339 timestamp such as `2025-06-20T00:00:00Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let parsed =
            ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("invalid RFC 3339 time {text:?}: {e}"))?;
        u64::try_from(parsed.unix_timestamp())
            .map(Self)
            .map_err(|_| format!("time {text:?} is before 1970"))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = i64::try_from(self.0)
            .ok()
            .and_then(|secs| ::time::OffsetDateTime::from_unix_timestamp(secs).ok())
            .and_then(|t| {
                t.format(&::time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match formatted {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}", self.0),
        }
    }
}

/// Serialised as RFC 3339 text (status documents, JSON verdicts).
impl serde::Serialize for UnixTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
