//! TPM 2.0 structures (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC) and quote verification on
//! arbitrary bytes: the input is split in three so every parser sees fuzzed data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::tpm::{self, Attest, Public, QuoteInput, Signature};

fuzz_target!(|data: &[u8]| {
    let _ = Attest::parse(data);
    let _ = Signature::parse(data);
    let _ = Public::parse(data);
    let _ = tpm::inspect_attest(data);
    let third = data.len() / 3;
    let (a, rest) = data.split_at(third);
    let (s, k) = rest.split_at(third);
    let verdict = tpm::verify(
        &QuoteInput {
            attest: a,
            signature: s,
            ak_public: k,
            nonce: None,
            pcrs: None,
        },
        &Default::default(),
    );
    // Without PCR values the pcrDigest cannot be checked, so nothing may pass.
    assert!(!verdict.is_trusted());
});
