//! Replaying an event log into PCR banks.

use std::collections::BTreeMap;

use super::{EventLog, EventType};
use crate::digest::HashAlg;

/// Why a log cannot be replayed into a bank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log's events carry no digests in this bank.
    #[error("the event log has no {bank} digests (its algorithms: {available})")]
    BankNotInLog { bank: HashAlg, available: String },
    /// A measured event lacks its digest in this bank (the Spec ID event says every event
    /// carries every algorithm).
    #[error("event {event} ({event_type}, index {index}, offset {offset}) has no {bank} digest")]
    MissingDigest {
        bank: HashAlg,
        /// Position of the event in the log (0 = the first event).
        event: usize,
        index: u32,
        event_type: EventType,
        offset: usize,
    },
}

impl EventLog {
    /// The value a PCR starts from before any event is extended into it, under the TPM PC
    /// Client rules: zeros, except PCRs 17 to 22 (the DRTM PCRs, reset by locality 4), which
    /// start as all `0xFF`, and PCR 0 after a `StartupLocality` event with locality 3 or 4,
    /// which starts as `00…03` or `00…04`.
    pub fn initial_value(&self, bank: HashAlg, index: u32) -> Vec<u8> {
        if (17..=22).contains(&index) {
            return vec![0xFF; bank.digest_len()];
        }
        let mut value = vec![0; bank.digest_len()];
        if let (0, Some(locality @ (3 | 4))) = (index, self.startup_locality()) {
            if let Some(last) = value.last_mut() {
                *last = locality;
            }
        }
        value
    }

    /// Replay every measured event (all but `EV_NO_ACTION`) into `bank`, from the initial
    /// values of [`EventLog::initial_value`]. The map holds every index the log extends (and
    /// PCR 0 when a `StartupLocality` event sets its initial value), keyed by the log's own
    /// index; an index without events keeps its initial value.
    pub fn replay(&self, bank: HashAlg) -> Result<BTreeMap<u32, Vec<u8>>, ReplayError> {
        let mut values = BTreeMap::new();
        if self.startup_locality().is_some() {
            values.insert(0, self.initial_value(bank, 0));
        }
        self.extend_all(bank, values, |index| self.initial_value(bank, index))
    }

    /// Replay every measured event into `bank` with every index starting from zeros and no
    /// `StartupLocality` rule: the generic form for logs whose indices are not TPM PCRs (a TDX
    /// CCEL, whose index is the CC measurement register; mapping it to MRTD/RTMRs is the
    /// caller's job).
    pub fn replay_from_zero(&self, bank: HashAlg) -> Result<BTreeMap<u32, Vec<u8>>, ReplayError> {
        self.extend_all(bank, BTreeMap::new(), |_| vec![0; bank.digest_len()])
    }

    /// The replayed values of exactly `indices` in `bank` (TPM rules, as [`EventLog::replay`]);
    /// an index the log never extends has its initial value.
    pub fn replay_selected(
        &self,
        bank: HashAlg,
        indices: &[u32],
    ) -> Result<BTreeMap<u32, Vec<u8>>, ReplayError> {
        let all = self.replay(bank)?;
        Ok(indices
            .iter()
            .map(|&index| {
                let value = all
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| self.initial_value(bank, index));
                (index, value)
            })
            .collect())
    }

    fn extend_all(
        &self,
        bank: HashAlg,
        mut values: BTreeMap<u32, Vec<u8>>,
        initial: impl Fn(u32) -> Vec<u8>,
    ) -> Result<BTreeMap<u32, Vec<u8>>, ReplayError> {
        if !self.banks().contains(&bank) {
            return Err(ReplayError::BankNotInLog {
                bank,
                available: self
                    .algorithms()
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for (position, event) in self.events().iter().enumerate() {
            if event.event_type().is_no_action() {
                continue;
            }
            let index = event.pcr_index();
            let digest = event
                .digest(bank)
                .ok_or(ReplayError::MissingDigest {
                    bank,
                    event: position,
                    index,
                    event_type: event.event_type(),
                    offset: event.offset(),
                })?;
            let value = values
                .entry(index)
                .or_insert_with(|| initial(index));
            bank.extend(value, digest);
        }
        Ok(values)
    }
}
