//! Writing crypto-agile event logs: what the boot simulator records on machines without
//! firmware of their own (swtpm), and what tests build their logs with.

use super::EventType;
use crate::digest::HashAlg;

/// A crypto-agile TCG event log being written: the `Spec ID Event03` header for `banks`, then
/// `TCG_PCR_EVENT2` events. [`EventLog::parse`](super::EventLog::parse) reads the result.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    banks: Vec<HashAlg>,
    bytes: Vec<u8>,
}

impl LogBuilder {
    /// A log whose events carry a digest in each of `banks`, in that order.
    pub fn new(banks: &[HashAlg]) -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend(0u32.to_le_bytes()); // platformClass: client
        spec.extend([0, 2, 0, 2]); // specVersionMinor, Major, errata, uintnSize
        spec.extend(len32(banks.len()).to_le_bytes());
        for bank in banks {
            spec.extend(bank.tpm_alg_id().to_le_bytes());
            spec.extend(
                u16::try_from(bank.digest_len())
                    .unwrap_or(0)
                    .to_le_bytes(),
            );
        }
        spec.push(0); // vendorInfoSize
        let mut bytes = Vec::new();
        bytes.extend(0u32.to_le_bytes()); // PCR 0
        bytes.extend(EventType::NO_ACTION.0.to_le_bytes());
        bytes.extend([0u8; 20]);
        bytes.extend(len32(spec.len()).to_le_bytes());
        bytes.extend(spec);
        Self {
            banks: banks.to_vec(),
            bytes,
        }
    }

    /// Append an event measuring `data` itself: its digest in each bank is the bank's hash of
    /// `data` (what an `EV_EFI_ACTION` or `EV_SEPARATOR` records). Returns the digests, in
    /// bank order, for extending a TPM the same way.
    pub fn measure(
        &mut self,
        pcr: u32,
        event_type: EventType,
        data: &[u8],
    ) -> Vec<(HashAlg, Vec<u8>)> {
        let digests: Vec<(HashAlg, Vec<u8>)> = self
            .banks
            .iter()
            .map(|&bank| (bank, bank.digest(data)))
            .collect();
        self.event(pcr, event_type, &digests, data);
        digests
    }

    /// Append an event with the given digests (one per bank, as the header declares) and data.
    pub fn event(
        &mut self,
        pcr: u32,
        event_type: EventType,
        digests: &[(HashAlg, Vec<u8>)],
        data: &[u8],
    ) {
        self.bytes.extend(pcr.to_le_bytes());
        self.bytes
            .extend(event_type.0.to_le_bytes());
        self.bytes
            .extend(len32(digests.len()).to_le_bytes());
        for (bank, digest) in digests {
            self.bytes
                .extend(bank.tpm_alg_id().to_le_bytes());
            self.bytes.extend(digest);
        }
        self.bytes
            .extend(len32(data.len()).to_le_bytes());
        self.bytes.extend(data);
    }

    /// The log so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The data of an `EV_EVENT_TAG` event (`TCG_PCClientTaggedEvent`) as the Linux EFI stub writes
/// it: the tag id, then `text` and a NUL.
pub fn tagged_event(id: u32, text: &str) -> Vec<u8> {
    let mut out = id.to_le_bytes().to_vec();
    out.extend(len32(text.len().saturating_add(1)).to_le_bytes());
    out.extend(text.as_bytes());
    out.push(0);
    out
}
