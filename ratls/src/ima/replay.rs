//! Replaying a measurement list into PCR banks.

use super::claims::ReplayMode;
use super::{Entry, Log, IMA_PCR};
use crate::digest::HashAlg;

impl Entry {
    /// The digest this entry extends into `bank` under `mode`.
    pub fn extend_digest(&self, bank: HashAlg, mode: ReplayMode) -> Vec<u8> {
        let len = bank.digest_len();
        match (self.is_violation(), mode) {
            (true, ReplayMode::PerBankTemplateHash) => vec![0xff; len],
            (true, ReplayMode::Sha1Padded) => {
                let mut digest = vec![0xff; HashAlg::Sha1.digest_len()];
                digest.resize(len, 0);
                digest
            }
            (false, ReplayMode::PerBankTemplateHash) => self.template_digest(bank),
            (false, ReplayMode::Sha1Padded) => {
                let mut digest = self.template_digest(HashAlg::Sha1);
                digest.resize(len, 0);
                digest
            }
        }
    }
}

impl Log {
    /// PCR 10 after extending every PCR-10 entry into `bank`, starting from all zeros. Entries
    /// recorded in other PCRs are skipped (see [`Log::replay_pcr`]).
    pub fn replay(&self, bank: HashAlg, mode: ReplayMode) -> Vec<u8> {
        self.replay_pcr(IMA_PCR, bank, mode)
    }

    /// `pcr` after extending every entry recorded in it into `bank`, starting from all zeros.
    pub fn replay_pcr(&self, pcr: u32, bank: HashAlg, mode: ReplayMode) -> Vec<u8> {
        let mut value = vec![0; bank.digest_len()];
        for (_, entry) in self.entries_for(pcr) {
            bank.extend(&mut value, &entry.extend_digest(bank, mode));
        }
        value
    }

    /// PCR 10 after the first `count` PCR-10 entries (all of them if there are fewer).
    pub fn replay_prefix(&self, bank: HashAlg, mode: ReplayMode, count: usize) -> Vec<u8> {
        let mut value = vec![0; bank.digest_len()];
        for (_, entry) in self.entries_for(IMA_PCR).take(count) {
            bank.extend(&mut value, &entry.extend_digest(bank, mode));
        }
        value
    }

    /// The number `N` of leading PCR-10 entries whose replay into `bank` equals `pcr10`, or
    /// `None` when no prefix does. `N = 0` means `pcr10` is the all-zero initial value. The log
    /// may run ahead of a quote, so any prefix counts; replay is incremental (one pass).
    pub fn match_prefix(&self, bank: HashAlg, mode: ReplayMode, pcr10: &[u8]) -> Option<usize> {
        if pcr10.len() != bank.digest_len() {
            return None;
        }
        let mut value = vec![0; bank.digest_len()];
        if value == pcr10 {
            return Some(0);
        }
        for (n, (_, entry)) in self.entries_for(IMA_PCR).enumerate() {
            bank.extend(&mut value, &entry.extend_digest(bank, mode));
            if value == pcr10 {
                return Some(n + 1);
            }
        }
        None
    }

    /// Number of entries recorded in PCR 10.
    pub fn pcr10_entries(&self) -> usize {
        self.entries_for(IMA_PCR).count()
    }
}
