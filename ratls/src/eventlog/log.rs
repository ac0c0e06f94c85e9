//! The event log: events, the Spec ID event, and the parser for both formats.

use core::fmt;

use serde::Serialize;

use super::{EventType, MAX_ALGORITHMS, MAX_DIGEST_SIZE, MAX_EVENTS, MAX_EVENT_DATA};
use crate::codec::{ParseError, Reader};
use crate::digest::HashAlg;

const LOG: &str = "TCG event log";
const SPEC_ID: &str = "TCG_EfiSpecIDEvent";
/// `TCG_EfiSpecIDEventStruct.signature` of a crypto-agile (TPM 2.0) log.
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// `TCG_EfiStartupLocalityEvent.signature`.
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
/// The size of a `TCG_EfiStartupLocalityEvent`: signature and one locality byte.
const STARTUP_LOCALITY_LEN: usize = 17;
/// A legacy event's SHA-1 digest.
const SHA1_LEN: usize = 20;

/// Which of the two log formats a log is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LogFormat {
    /// A `Spec ID Event03` header, then `TCG_PCR_EVENT2` events (TPM 2.0 firmware).
    CryptoAgile,
    /// Only `TCG_PCClientPCREvent` events, each with one SHA-1 digest (TPM 1.2 style).
    LegacySha1,
}

impl LogFormat {
    /// `crypto-agile` or `legacy-sha1`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::CryptoAgile => "crypto-agile",
            Self::LegacySha1 => "legacy-sha1",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest algorithm of the log and its digest size, as the Spec ID event lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestAlgorithm {
    /// `TPM_ALG_ID`.
    pub id: u16,
    /// Digest size in bytes.
    pub size: u16,
}

impl DigestAlgorithm {
    /// The algorithm, when it is one we can hash (and so replay).
    pub const fn hash_alg(self) -> Option<HashAlg> {
        HashAlg::from_tpm_alg_id(self.id)
    }

    /// `sha256`, `sm3_256`, …, or the id as `0x….` for an algorithm without a name here.
    pub fn name(self) -> String {
        match known_algorithm(self.id) {
            Some((name, _)) => name.to_owned(),
            None => format!("{:#06x}", self.id),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Names and digest sizes of the hash algorithms of the TCG Algorithm Registry that logs use.
const fn known_algorithm(id: u16) -> Option<(&'static str, usize)> {
    Some(match id {
        0x0004 => ("sha1", 20),
        0x000B => ("sha256", 32),
        0x000C => ("sha384", 48),
        0x000D => ("sha512", 64),
        0x0012 => ("sm3_256", 32),
        0x0027 => ("sha3_256", 32),
        0x0028 => ("sha3_384", 48),
        0x0029 => ("sha3_512", 64),
        _ => return None,
    })
}

/// The `Spec ID Event03` structure (`TCG_EfiSpecIDEventStruct`) of a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecId {
    /// The platform class (0 = client, 1 = server; TCG ACPI Specification).
    pub platform_class: u32,
    pub spec_version_minor: u8,
    pub spec_version_major: u8,
    pub spec_errata: u8,
    /// The size of UEFI `UINTN` fields in event data: 1 = 32-bit, 2 = 64-bit.
    pub uintn_size: u8,
    /// The digest algorithms every `TCG_PCR_EVENT2` carries, in the order listed.
    pub algorithms: Vec<DigestAlgorithm>,
    pub vendor_info: Vec<u8>,
}

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    /// The algorithm (from the Spec ID table, so its size is known).
    pub algorithm: DigestAlgorithm,
    pub digest: Vec<u8>,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    offset: usize,
    index: u32,
    event_type: EventType,
    digests: Vec<EventDigest>,
    data: Vec<u8>,
}

impl Event {
    /// Where the event starts in the log bytes.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// `pcrIndex`: the PCR the event was extended into (for a CCEL, the measurement-register
    /// index).
    pub fn pcr_index(&self) -> u32 {
        self.index
    }

    /// `eventType`.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The digests, in the order the event lists them.
    pub fn digests(&self) -> &[EventDigest] {
        &self.digests
    }

    /// The digest in `bank`, if the event carries one.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digest_by_id(bank.tpm_alg_id())
    }

    /// The digest for a `TPM_ALG_ID`, if the event carries one.
    pub fn digest_by_id(&self, alg_id: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.algorithm.id == alg_id)
            .map(|d| d.digest.as_slice())
    }

    /// The event data, exactly as logged. It is not covered by the digests' replay: the
    /// firmware says what it measured, nothing checks it hashes to the digest.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The locality of a `StartupLocality` `EV_NO_ACTION` event (any PCR), if this is one and
    /// it is well-formed.
    pub fn startup_locality(&self) -> Option<u8> {
        if !self.event_type.is_no_action() || self.data.len() != STARTUP_LOCALITY_LEN {
            return None;
        }
        let (signature, locality) = self
            .data
            .split_at_checked(STARTUP_LOCALITY_SIGNATURE.len())?;
        (signature == STARTUP_LOCALITY_SIGNATURE)
            .then(|| locality.first().copied())
            .flatten()
    }
}

/// A parsed TCG PC Client event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    format: LogFormat,
    spec_id: Option<SpecId>,
    algorithms: Vec<DigestAlgorithm>,
    events: Vec<Event>,
    startup_locality: Option<u8>,
    padding: usize,
}

impl EventLog {
    /// Parse a crypto-agile or legacy SHA-1 log (see the [module docs](super) for the formats,
    /// the caps and the end-of-log rule).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let end = padding_start(bytes);
        let mut r = Reader::new(LOG, bytes);
        if end == 0 && !bytes.is_empty() {
            return Err(r.invalid(
                "first event",
                "an event log",
                format!("{} bytes of padding (all 0x00 or all 0xff)", bytes.len()),
            ));
        }
        let first = legacy_event(&mut r)?;
        let spec_id = spec_id_event(bytes, &first)?;
        let (format, algorithms) = match &spec_id {
            Some(spec) => (LogFormat::CryptoAgile, spec.algorithms.clone()),
            None => (
                LogFormat::LegacySha1,
                vec![DigestAlgorithm {
                    id: HashAlg::Sha1.tpm_alg_id(),
                    size: 20,
                }],
            ),
        };
        let mut log = Self {
            format,
            spec_id,
            algorithms,
            events: Vec::new(),
            startup_locality: None,
            padding: 0,
        };
        log.push(&r, first)?;
        while r.offset() < end {
            if log.events.len() >= MAX_EVENTS {
                return Err(r.too_large("events", log.events.len() + 1, MAX_EVENTS));
            }
            let event = match log.format {
                LogFormat::CryptoAgile => event2(&mut r, &log.algorithms)?,
                LogFormat::LegacySha1 => legacy_event(&mut r)?,
            };
            log.push(&r, event)?;
        }
        // Past `end` only padding remains (the last event may have ended inside the run).
        log.padding = r.rest().len();
        Ok(log)
    }

    /// Record an event, applying the `StartupLocality` rules.
    fn push(&mut self, r: &Reader<'_>, event: Event) -> Result<(), ParseError> {
        let field = "StartupLocality event";
        if event.index == 0
            && event.event_type.is_no_action()
            && event
                .data
                .starts_with(STARTUP_LOCALITY_SIGNATURE)
        {
            let Some(locality) = event.startup_locality() else {
                return Err(r.invalid(
                    field,
                    format!("{STARTUP_LOCALITY_LEN} bytes (signature, locality)"),
                    format!("{} bytes at offset {}", event.data.len(), event.offset),
                ));
            };
            if !matches!(locality, 0 | 3 | 4) {
                return Err(r.invalid(field, "locality 0, 3 or 4 (H-CRTM)", locality.to_string()));
            }
            if self.startup_locality.is_some() {
                return Err(r.invalid(
                    field,
                    "at most one StartupLocality event for PCR 0",
                    format!("a second one at offset {}", event.offset),
                ));
            }
            if self
                .events
                .iter()
                .any(|e| e.index == 0 && !e.event_type.is_no_action())
            {
                return Err(r.invalid(
                    field,
                    "the StartupLocality event before any PCR 0 measurement",
                    format!(
                        "a StartupLocality event after one, at offset {}",
                        event.offset
                    ),
                ));
            }
            self.startup_locality = Some(locality);
        }
        self.events.push(event);
        Ok(())
    }

    /// The log's format.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// The `Spec ID Event03` structure of a crypto-agile log.
    pub fn spec_id(&self) -> Option<&SpecId> {
        self.spec_id.as_ref()
    }

    /// The digest algorithms of the log's events (`[sha1]` for a legacy log).
    pub fn algorithms(&self) -> &[DigestAlgorithm] {
        &self.algorithms
    }

    /// The banks the log can be replayed into: its algorithms that we can hash, in log order.
    pub fn banks(&self) -> Vec<HashAlg> {
        self.algorithms
            .iter()
            .filter_map(|a| a.hash_alg())
            .collect()
    }

    /// Every event, the first (Spec ID) event included.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Number of events, the Spec ID event included.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Always false for a parsed log (it has at least its first event).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The locality of PCR 0's `StartupLocality` event, when the log carries one.
    pub fn startup_locality(&self) -> Option<u8> {
        self.startup_locality
    }

    /// Bytes of end-of-log padding (all `0x00` or all `0xff`) after the last event.
    pub fn padding(&self) -> usize {
        self.padding
    }
}

/// Where the trailing run of `0x00` or `0xff` bytes starts (`bytes.len()` when there is none).
fn padding_start(bytes: &[u8]) -> usize {
    let run = |fill: u8| {
        bytes
            .iter()
            .rposition(|&b| b != fill)
            .map_or(0, |last| last + 1)
    };
    run(0x00).min(run(0xff))
}

/// A `TCG_PCClientPCREvent`: the first event of every log, and every event of a legacy log.
fn legacy_event(r: &mut Reader<'_>) -> Result<Event, ParseError> {
    let offset = r.offset();
    let index = r.u32_le("TCG_PCClientPCREvent pcrIndex")?;
    let event_type = EventType(r.u32_le("TCG_PCClientPCREvent eventType")?);
    let digest = r.take(SHA1_LEN, "TCG_PCClientPCREvent digest")?;
    let data = r.u32_le_prefixed("TCG_PCClientPCREvent event", MAX_EVENT_DATA)?;
    Ok(Event {
        offset,
        index,
        event_type,
        digests: vec![EventDigest {
            algorithm: DigestAlgorithm {
                id: HashAlg::Sha1.tpm_alg_id(),
                size: 20,
            },
            digest: digest.to_vec(),
        }],
        data: data.to_vec(),
    })
}

/// A `TCG_PCR_EVENT2`, whose digests are sized by the Spec ID table.
fn event2(r: &mut Reader<'_>, algorithms: &[DigestAlgorithm]) -> Result<Event, ParseError> {
    let offset = r.offset();
    let index = r.u32_le("TCG_PCR_EVENT2 pcrIndex")?;
    let event_type = EventType(r.u32_le("TCG_PCR_EVENT2 eventType")?);
    let at = r.clone();
    let count = r.u32_le("TCG_PCR_EVENT2 digests.count")?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > algorithms.len() {
        return Err(at.invalid(
            "TCG_PCR_EVENT2 digests.count",
            format!(
                "at most {} (the Spec ID event's algorithms)",
                algorithms.len()
            ),
            count.to_string(),
        ));
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.clone();
        let id = r.u16_le("TCG_PCR_EVENT2 digests.hashAlg")?;
        let Some(&algorithm) = algorithms.iter().find(|a| a.id == id) else {
            return Err(at.invalid(
                "TCG_PCR_EVENT2 digests.hashAlg",
                format!("an algorithm of the Spec ID event ({})", names(algorithms)),
                format!("{:#06x}", id),
            ));
        };
        if digests
            .iter()
            .any(|d| d.algorithm.id == id)
        {
            return Err(at.invalid(
                "TCG_PCR_EVENT2 digests.hashAlg",
                "one digest per algorithm",
                format!("a second {algorithm} digest"),
            ));
        }
        let digest = r.take(usize::from(algorithm.size), "TCG_PCR_EVENT2 digests.digest")?;
        digests.push(EventDigest {
            algorithm,
            digest: digest.to_vec(),
        });
    }
    let data = r.u32_le_prefixed("TCG_PCR_EVENT2 event", MAX_EVENT_DATA)?;
    Ok(Event {
        offset,
        index,
        event_type,
        digests,
        data: data.to_vec(),
    })
}

fn names(algorithms: &[DigestAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Spec ID structure when the first event carries `Spec ID Event03`, `None` for a legacy
/// log. `bytes` is the whole log, so that errors carry offsets within it.
fn spec_id_event(bytes: &[u8], first: &Event) -> Result<Option<SpecId>, ParseError> {
    if !first
        .data
        .starts_with(SPEC_ID_SIGNATURE)
    {
        return Ok(None);
    }
    // The event data sits at the end of the first event: header (32 bytes) then the data.
    let start = first.offset + 32;
    let end = start + first.data.len();
    let mut r = Reader::new(SPEC_ID, bytes.get(..end).unwrap_or_default());
    r.skip(start, "header")?;
    let zero_digest = first
        .digests
        .iter()
        .all(|d| d.digest.iter().all(|&b| b == 0));
    if first.index != 0 || !first.event_type.is_no_action() || !zero_digest {
        return Err(r.invalid(
            "header",
            "PCR 0, EV_NO_ACTION, an all-zero digest",
            format!("PCR {}, {}", first.index, first.event_type),
        ));
    }
    r.skip(SPEC_ID_SIGNATURE.len(), "signature")?;
    let platform_class = r.u32_le("platformClass")?;
    let spec_version_minor = r.u8("specVersionMinor")?;
    let spec_version_major = r.u8("specVersionMajor")?;
    let spec_errata = r.u8("specErrata")?;
    let uintn_size = r.u8("uintnSize")?;
    let at = r.clone();
    let count = r.u32_le("numberOfAlgorithms")?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > MAX_ALGORITHMS {
        return Err(at.too_large("numberOfAlgorithms", count, MAX_ALGORITHMS));
    }
    if count == 0 {
        return Err(at.invalid("numberOfAlgorithms", "at least 1", "0"));
    }
    let mut algorithms: Vec<DigestAlgorithm> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.clone();
        let id = r.u16_le("digestSizes.algorithmId")?;
        let size = r.u16_le("digestSizes.digestSize")?;
        let algorithm = DigestAlgorithm { id, size };
        if algorithms.iter().any(|a| a.id == id) {
            return Err(at.invalid(
                "digestSizes.algorithmId",
                "each algorithm once",
                format!("{algorithm} twice"),
            ));
        }
        match known_algorithm(id) {
            Some((name, len)) if len != usize::from(size) => {
                return Err(at.invalid(
                    "digestSizes.digestSize",
                    format!("{len} for {name}"),
                    size.to_string(),
                ));
            }
            _ if size == 0 => {
                return Err(at.invalid("digestSizes.digestSize", "at least 1", "0"));
            }
            _ if usize::from(size) > MAX_DIGEST_SIZE => {
                return Err(at.too_large(
                    "digestSizes.digestSize",
                    usize::from(size),
                    MAX_DIGEST_SIZE,
                ));
            }
            _ => {}
        }
        algorithms.push(algorithm);
    }
    let vendor_len = usize::from(r.u8("vendorInfoSize")?);
    let vendor_info = r
        .take(vendor_len, "vendorInfo")?
        .to_vec();
    r.finish()?;
    Ok(Some(SpecId {
        platform_class,
        spec_version_minor,
        spec_version_major,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    }))
}
