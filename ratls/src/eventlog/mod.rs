//! TCG PC Client firmware event logs: parsing, replay into PCR banks, and verification against
//! quoted PCR values.
//!
//! The firmware records every measurement it extends into a TPM PCR in an event log (TCG PC
//! Client Platform Firmware Profile, section 10). Linux exports it as
//! `/sys/kernel/security/tpm0/binary_bios_measurements`; TDX firmware publishes the same format
//! in the ACPI CCEL table, with RTMR/MRTD indices instead of PCR indices.
//!
//! # Formats
//!
//! - **Crypto agile** (TPM 2.0): the first event is a legacy SHA-1 `TCG_PCClientPCREvent`
//!   (`EV_NO_ACTION`, PCR 0, zero digest) whose data is the `Spec ID Event03` structure listing
//!   the digest algorithms and their sizes. Every following event is a `TCG_PCR_EVENT2`:
//!   pcrIndex, eventType, a `TPML_DIGEST_VALUES` (one digest per algorithm, sized by the Spec ID
//!   table) and the event data. A digest whose algorithm is not in the table is a typed error;
//!   algorithms we cannot hash (SM3, SHA-3 …) are parsed and kept but cannot be replayed.
//! - **Legacy SHA-1** (TPM 1.2 style): no `Spec ID Event03`; every event is a
//!   `TCG_PCClientPCREvent` with one SHA-1 digest. Only the SHA-1 bank can be replayed.
//!
//! Everything is little-endian. [`EventLog::parse`] caps the log at [`MAX_EVENTS`] events, each
//! event's data at [`MAX_EVENT_DATA`] bytes and the Spec ID table at [`MAX_ALGORITHMS`] entries.
//!
//! **End of log.** Logs are often read from a fixed-size area larger than the log: the kernel's
//! securityfs export and some CCEL readers pad with zeros, and EDK2 fills the unused log area
//! with `0xff` (so the next "event" reads pcrIndex = eventType = `0xffffffff`). The parser
//! therefore treats a remainder made *entirely* of `0x00` bytes, or *entirely* of `0xff` bytes,
//! as the end of the log ([`EventLog::padding`] counts it). Anything else after the last event
//! must parse as events, so trailing junk is rejected.
//!
//! # Replay
//!
//! [`EventLog::replay`] extends every event except `EV_NO_ACTION` into its PCR, per bank,
//! starting from zeros, with the TPM rule for PCR 0: when the log carries a `StartupLocality`
//! `EV_NO_ACTION` event for PCR 0 with locality 3 (`TPM2_Startup` at locality 3) or 4 (an
//! H-CRTM sequence), PCR 0 starts as `00…03` or `00…04`. [`EventLog::replay_from_zero`] applies
//! no such rule: every index starts from zeros, which is what a TDX CCEL needs. Both return the
//! values keyed by the log's own index; for a CCEL that is the CC measurement-register index
//! (0 = MRTD, 1–4 = RTMR0–3 on TDX), and mapping it to the TD report's registers is the
//! caller's job.
//!
//! Only the digests are authenticated by a matching replay. The event data (and every
//! `EV_NO_ACTION` event) is what the firmware *says* it measured; nothing here checks that the
//! data hashes to the digest.
//!
//! # Verification
//!
//! | step | what |
//! | --- | --- |
//! | `eventlog.parse` | the log parses ([`verify_against_pcrs`] only; a failure carries the typed error) |
//! | `eventlog.replay` | one check per quoted bank: the replay of the requested PCRs equals the quoted values; a failure names the bank and the first differing PCR |
//! | `boot.eventlog` | [`check_boot_log`]: the same replay of a machine's log against its quoted PCRs 0–9, as bundles and `evidence verify --event-log` run it |
//!
//! [`check_against_pcrs`] runs the replay checks on a parsed log (so a TPM verifier can append
//! them to its own verdict); [`verify_against_pcrs`] parses the bytes first. A replay that
//! matches authenticates the digests of the events in the compared PCRs, and nothing else:
//! events in PCRs that were not compared stay unauthenticated (the passing check says how
//! many there are). [`EventLog::summary`] and [`inspect`] give the [`EventLogClaims`].
//!
//! [`EventLog::boot_events`] lists the measured events of PCRs 0–9 with their SHA-256 digests
//! and a short [`describe`]d label (the `EV_EVENT_TAG` text, the UEFI variable name, the image
//! path): what a snapshot records so that a later boot's difference can be named event by
//! event.

use core::fmt;

use serde::{Serialize, Serializer};

mod build;
pub(crate) mod claims;
mod describe;
mod log;
mod replay;
mod verify;

pub use self::build::{tagged_event, LogBuilder};
pub use self::claims::EventLogClaims;
pub use self::describe::{describe, BootEvent, BOOT_PCRS, MAX_DESCRIPTION};
pub use self::log::{DigestAlgorithm, Event, EventDigest, EventLog, LogFormat, SpecId};
pub use self::replay::ReplayError;
pub use self::verify::{
    check_against_pcrs, check_boot_log, inspect, verify_against_pcrs, BOOT_EVENTLOG,
};

/// At most this many events (the Spec ID event included) are parsed from one log.
pub const MAX_EVENTS: usize = 100_000;

/// At most this many bytes of event data per event.
pub const MAX_EVENT_DATA: usize = 1 << 20;

/// At most this many digest algorithms in the Spec ID event.
pub const MAX_ALGORITHMS: usize = 16;

/// The largest digest size the Spec ID event may declare for an algorithm we do not know.
pub const MAX_DIGEST_SIZE: usize = 128;

/// An event type (`EV_*`, TCG PC Client Platform Firmware Profile, section 10.4.1). Unknown
/// values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(pub u32);

impl EventType {
    pub const PREBOOT_CERT: Self = Self(0x0000_0000);
    pub const POST_CODE: Self = Self(0x0000_0001);
    pub const UNUSED: Self = Self(0x0000_0002);
    pub const NO_ACTION: Self = Self(0x0000_0003);
    pub const SEPARATOR: Self = Self(0x0000_0004);
    pub const ACTION: Self = Self(0x0000_0005);
    pub const EVENT_TAG: Self = Self(0x0000_0006);
    pub const S_CRTM_CONTENTS: Self = Self(0x0000_0007);
    pub const S_CRTM_VERSION: Self = Self(0x0000_0008);
    pub const CPU_MICROCODE: Self = Self(0x0000_0009);
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0x0000_000A);
    pub const TABLE_OF_DEVICES: Self = Self(0x0000_000B);
    pub const COMPACT_HASH: Self = Self(0x0000_000C);
    pub const IPL: Self = Self(0x0000_000D);
    pub const IPL_PARTITION_DATA: Self = Self(0x0000_000E);
    pub const NONHOST_CODE: Self = Self(0x0000_000F);
    pub const NONHOST_CONFIG: Self = Self(0x0000_0010);
    pub const NONHOST_INFO: Self = Self(0x0000_0011);
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x0000_0012);
    pub const POST_CODE2: Self = Self(0x0000_0013);
    pub const EFI_EVENT_BASE: Self = Self(0x8000_0000);
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    pub const EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    pub const EFI_GPT_EVENT: Self = Self(0x8000_0006);
    pub const EFI_ACTION: Self = Self(0x8000_0007);
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    pub const EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000A);
    pub const EFI_HANDOFF_TABLES2: Self = Self(0x8000_000B);
    pub const EFI_VARIABLE_BOOT2: Self = Self(0x8000_000C);
    pub const EFI_GPT_EVENT2: Self = Self(0x8000_000D);
    pub const EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00E0);
    pub const EFI_SPDM_FIRMWARE_BLOB: Self = Self(0x8000_00E1);
    pub const EFI_SPDM_FIRMWARE_CONFIG: Self = Self(0x8000_00E2);
    pub const EFI_SPDM_DEVICE_POLICY: Self = Self(0x8000_00E3);
    pub const EFI_SPDM_DEVICE_AUTHORITY: Self = Self(0x8000_00E4);

    /// The spec's name (`EV_SEPARATOR` …), for the types it defines.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0000_0000 => "EV_PREBOOT_CERT",
            0x0000_0001 => "EV_POST_CODE",
            0x0000_0002 => "EV_UNUSED",
            0x0000_0003 => "EV_NO_ACTION",
            0x0000_0004 => "EV_SEPARATOR",
            0x0000_0005 => "EV_ACTION",
            0x0000_0006 => "EV_EVENT_TAG",
            0x0000_0007 => "EV_S_CRTM_CONTENTS",
            0x0000_0008 => "EV_S_CRTM_VERSION",
            0x0000_0009 => "EV_CPU_MICROCODE",
            0x0000_000A => "EV_PLATFORM_CONFIG_FLAGS",
            0x0000_000B => "EV_TABLE_OF_DEVICES",
            0x0000_000C => "EV_COMPACT_HASH",
            0x0000_000D => "EV_IPL",
            0x0000_000E => "EV_IPL_PARTITION_DATA",
            0x0000_000F => "EV_NONHOST_CODE",
            0x0000_0010 => "EV_NONHOST_CONFIG",
            0x0000_0011 => "EV_NONHOST_INFO",
            0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
            0x0000_0013 => "EV_POST_CODE2",
            0x8000_0000 => "EV_EFI_EVENT_BASE",
            0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
            0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
            0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
            0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            0x8000_0006 => "EV_EFI_GPT_EVENT",
            0x8000_0007 => "EV_EFI_ACTION",
            0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
            0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
            0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
            0x8000_000D => "EV_EFI_GPT_EVENT2",
            0x8000_0010 => "EV_EFI_HCRTM_EVENT",
            0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
            0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
            0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            0x8000_00E3 => "EV_EFI_SPDM_DEVICE_POLICY",
            0x8000_00E4 => "EV_EFI_SPDM_DEVICE_AUTHORITY",
            _ => return None,
        })
    }

    /// Whether replay skips this event (`EV_NO_ACTION`: informational, never extended).
    pub const fn is_no_action(self) -> bool {
        self.0 == Self::NO_ACTION.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}

impl Serialize for EventType {
    /// The spec name, or `0x…` for a type it does not define.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests;
