//! TDX quote parsing, inspection and verification on arbitrary bytes: typed errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ratls::tdx::Quote::parse(data);
    let _ = ratls::tdx::inspect(data);
    // The collateral parser sees the same bytes; verification must reject whatever comes.
    let _ = ratls::tdx::Collateral::from_json(data);
    let verdict = ratls::tdx::verify_bytes(
        data,
        b"{}",
        &Default::default(),
        ratls::UnixTime::from_secs(1_751_328_000),
    );
    assert!(!verdict.is_trusted());
});
