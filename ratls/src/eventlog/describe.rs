//! Short descriptions of events (what a person needs to tell two boots apart), and the boot
//! events a snapshot records.
//!
//! The description is read from the event data, which is *not* authenticated by a replay (only
//! the digests are): it is a label for people, never an input to a decision. Parsing is
//! best-effort and bounded: a structure that does not parse gives an empty description, never
//! an error.

use serde::{Deserialize, Serialize};

use super::{Event, EventLog, EventType};
use crate::codec::Reader;
use crate::digest::HashAlg;
use crate::hexfmt::hex;

/// At most this many characters of description per event.
pub const MAX_DESCRIPTION: usize = 128;

/// The boot PCRs (firmware, boot loader, kernel command line and initrd) whose events a
/// snapshot records.
pub const BOOT_PCRS: [u32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// One measured event of a boot PCR, as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootEvent {
    /// The PCR the event was extended into (0–9).
    pub pcr: u32,
    /// The event type's spec name (`EV_EVENT_TAG`, …) or `0x…` for a type the spec lacks.
    pub event_type: String,
    /// The event's SHA-256 digest (lower-case hex): what was extended into the sha256 bank.
    pub sha256: String,
    /// A short description from the event data when it parses: the `EV_EVENT_TAG` text
    /// (`LOADED_IMAGE::LoadOptions`, `Linux initrd`), the UEFI variable name (`SecureBoot`),
    /// the image's file path, or printable event text; else empty.
    #[serde(default)]
    pub description: String,
}

impl Event {
    /// A short description of the event from its (unauthenticated) data; see the module docs.
    pub fn description(&self) -> String {
        describe(self.event_type(), self.data())
    }
}

impl EventLog {
    /// The measured events (all but `EV_NO_ACTION`) of PCRs 0–9, in log order, with their
    /// SHA-256 digests; `None` when the log carries no SHA-256 digests (a legacy SHA-1 log).
    pub fn boot_events(&self) -> Option<Vec<BootEvent>> {
        if !self.banks().contains(&HashAlg::Sha256) {
            return None;
        }
        Some(
            self.events()
                .iter()
                .filter(|e| !e.event_type().is_no_action() && BOOT_PCRS.contains(&e.pcr_index()))
                .map(|e| BootEvent {
                    pcr: e.pcr_index(),
                    event_type: e.event_type().to_string(),
                    sha256: e
                        .digest(HashAlg::Sha256)
                        .map(hex)
                        .unwrap_or_default(),
                    description: e.description(),
                })
                .collect(),
        )
    }
}

/// A short description of an event of `event_type` with `data`; empty when nothing readable.
pub fn describe(event_type: EventType, data: &[u8]) -> String {
    let structured = match event_type {
        EventType::EVENT_TAG => tagged_event(data),
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY => efi_variable(data),
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => image_load(data),
        EventType::EFI_PLATFORM_FIRMWARE_BLOB2 | EventType::EFI_HANDOFF_TABLES2 => {
            blob_description(data)
        }
        EventType::S_CRTM_VERSION => utf16(data),
        _ => None,
    };
    let text = structured
        .or_else(|| printable(data))
        .unwrap_or_default();
    text.chars()
        .take(MAX_DESCRIPTION)
        .collect()
}

/// `TCG_PCClientTaggedEvent`: u32 taggedEventID, u32 taggedEventDataSize, the data (the Linux
/// EFI stub puts `LOADED_IMAGE::LoadOptions` or `Linux initrd` there).
fn tagged_event(data: &[u8]) -> Option<String> {
    let mut r = Reader::new("tagged event", data);
    let _id = r.u32_le("taggedEventID").ok()?;
    let size = r.u32_le("taggedEventDataSize").ok()?;
    let text = r
        .take(usize::try_from(size).ok()?, "taggedEventData")
        .ok()?;
    printable(text)
}

/// `UEFI_VARIABLE_DATA`: VariableName GUID, u64 UnicodeNameLength (characters), u64
/// VariableDataLength, the UTF-16LE name, the data. The description is the name.
fn efi_variable(data: &[u8]) -> Option<String> {
    let mut r = Reader::new("UEFI_VARIABLE_DATA", data);
    r.skip(16, "VariableName").ok()?;
    let chars = r.u64_le("UnicodeNameLength").ok()?;
    let _len = r.u64_le("VariableDataLength").ok()?;
    let bytes = usize::try_from(chars)
        .ok()?
        .checked_mul(2)?;
    utf16(r.take(bytes, "UnicodeName").ok()?)
}

/// `UEFI_IMAGE_LOAD_EVENT`: location, length, link-time address (u64 each), u64 device path
/// length, the device path. The description is the path of its file-path nodes
/// (`\EFI\BOOT\BOOTX64.EFI`).
fn image_load(data: &[u8]) -> Option<String> {
    let mut r = Reader::new("UEFI_IMAGE_LOAD_EVENT", data);
    r.skip(24, "image location, length, link-time address")
        .ok()?;
    let len = r.u64_le("LengthOfDevicePath").ok()?;
    let mut path = r
        .sub(usize::try_from(len).ok()?, "DevicePath")
        .ok()?;
    let mut parts = Vec::new();
    while !path.is_empty() {
        let kind = path.u8("device path node type").ok()?;
        let subtype = path
            .u8("device path node subtype")
            .ok()?;
        let node_len = usize::from(
            path.u16_le("device path node length")
                .ok()?,
        );
        let body = path
            .take(node_len.checked_sub(4)?, "device path node")
            .ok()?;
        match (kind, subtype) {
            // End of the whole device path.
            (0x7f, 0xff) => break,
            // Media device path, file path: a UTF-16LE path.
            (0x04, 0x04) => parts.extend(utf16(body)),
            _ => {}
        }
    }
    let joined = parts.join("");
    (!joined.is_empty()).then_some(joined)
}

/// `UEFI_PLATFORM_FIRMWARE_BLOB2` / `UEFI_HANDOFF_TABLE_POINTERS2`: a u8-length-prefixed
/// description first.
fn blob_description(data: &[u8]) -> Option<String> {
    let mut r = Reader::new("blob description", data);
    let len = r.u8("BlobDescriptionSize").ok()?;
    printable(
        r.take(usize::from(len), "BlobDescription")
            .ok()?,
    )
}

/// Printable ASCII (trailing NULs dropped), or `None`.
fn printable(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i.saturating_add(1));
    let text = bytes.get(..end)?;
    if text.is_empty()
        || !text
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b))
    {
        return None;
    }
    Some(
        text.iter()
            .map(|&b| char::from(b))
            .collect(),
    )
}

/// UTF-16LE up to the first NUL, printable ASCII characters only, or `None`.
fn utf16(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        })
        .take_while(|&u| u != 0)
        .collect();
    let text: String = char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()?;
    // Names and paths in real logs are ASCII; anything else is more likely bytes that are not
    // UTF-16 at all (an ASCII version string read two bytes at a time).
    if text.is_empty()
        || !text
            .chars()
            .all(|c| (' '..='~').contains(&c))
    {
        return None;
    }
    Some(text)
}
