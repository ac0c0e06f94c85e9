//! IMA measurement logs (binary and ASCII) on arbitrary bytes: parse, replay, verify, the
//! re-attestation delta (cut by walking the headers, verified from an anchor); typed errors,
//! never a panic, and the cut agrees with the parsed log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::digest::HashAlg;
use ratls::ima::{self, ImaAnchor, Log, LogFormat, ReplayMode};

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
    let from = usize::from(data.first().copied().unwrap_or(0) % 8);
    if let (Some(tail), Ok(log)) = (Log::binary_tail(data, from), Log::parse(data)) {
        if log.format() == LogFormat::Binary {
            assert_eq!(tail, log.tail(from).to_binary().as_slice());
        }
    }
    let anchor = ImaAnchor {
        entries: 3,
        bank: HashAlg::Sha256,
        pcr10: "00".repeat(32),
        mode: ReplayMode::PerBankTemplateHash,
        boot_aggregate: "11".repeat(32),
    };
    let mut pcrs = ratls::tpm::PcrValues::default();
    pcrs.insert(HashAlg::Sha256, 10, vec![0xab; 32]);
    let _ = ima::verify_delta(data, 3, &anchor, &pcrs, &Default::default());
    let _ = ima::verify_bytes(
        data,
        Some((HashAlg::Sha256, vec![0xab; 32])),
        &Default::default(),
    );
});
