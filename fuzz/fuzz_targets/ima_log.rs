//! IMA measurement logs (binary and ASCII) on arbitrary bytes: parse, replay, verify; typed
//! errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::digest::HashAlg;
use ratls::ima::{self, Log, ReplayMode};

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = Log::parse(data) {
        for bank in HashAlg::ALL {
            let pcr = log.replay(bank, ReplayMode::PerBankTemplateHash);
            assert!(log
                .match_prefix(bank, ReplayMode::PerBankTemplateHash, &pcr)
                .is_some());
        }
        let _ = log.to_ascii();
    }
    let _ = ima::inspect(data);
    let _ = Log::parse_ascii(data);
    let _ = Log::parse_binary(data, Some(HashAlg::Sha256));
    let _ = ima::verify_bytes(
        data,
        Some((HashAlg::Sha256, vec![0xab; 32])),
        &Default::default(),
    );
});
