//! TCG PC Client event logs on arbitrary bytes: parse, replay every bank, summarize, verify
//! against quoted PCRs, describe events (tags, UEFI variables, image paths); typed errors, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::digest::HashAlg;
use ratls::eventlog::{self, EventLog};
use ratls::tpm::PcrValues;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        for bank in HashAlg::ALL {
            if let Ok(values) = log.replay(bank) {
                assert!(values
                    .values()
                    .all(|v| v.len() == bank.digest_len()));
            }
            let _ = log.replay_from_zero(bank);
        }
        let _ = log.summary();
        // Descriptions are parsed from the (unauthenticated) event data: bounded, never a panic.
        for event in log.events() {
            assert!(event.description().chars().count() <= eventlog::MAX_DESCRIPTION);
        }
        if let Some(events) = log.boot_events() {
            assert!(events
                .iter()
                .all(|e| e.pcr <= 9 && matches!(e.sha256.len(), 0 | 64)));
        }
    }
    for event_type in [0x6, 0x8, 0x8000_0001, 0x8000_0003, 0x8000_000A] {
        let _ = eventlog::describe(eventlog::EventType(event_type), data);
    }
    let _ = eventlog::inspect(data);
    let mut pcrs = PcrValues::default();
    pcrs.insert(HashAlg::Sha256, 0, vec![0xab; 32]);
    pcrs.insert(HashAlg::Sha1, 0, vec![0xcd; 20]);
    let _ = eventlog::verify_against_pcrs(data, &pcrs, &[0, 7]);
});
