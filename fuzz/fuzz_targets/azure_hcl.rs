//! Azure HCL reports: the binary layout, the runtime-data JSON and the AK it carries, and the
//! whole verification (with and without a vTPM quote cut from the same input), on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::azure::{self, HclReport, RuntimeData, TdQuote, VtpmQuote};
use ratls::snp::CertInput;
use ratls::{Policy, UnixTime};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = HclReport::parse(data) {
        let _ = report.runtime_data_bound();
        let _ = report.expected_report_data();
        if let Ok(runtime) = report.runtime_data() {
            let _ = runtime.ak_public();
        }
    }
    if let Ok(runtime) = RuntimeData::parse(data) {
        let _ = runtime.ak_public();
    }
    let _ = azure::inspect(data);
    let now = UnixTime::from_secs(1_767_225_600);
    let policy = Policy::default();
    // No certificates and no TD quote: nothing may pass.
    let v = azure::verify_snp(data, &CertInput::default(), None, &policy, now, None);
    assert!(!v.is_trusted());
    let v = azure::verify_tdx(data, None, None, &policy, now, None);
    assert!(!v.is_trusted());
    // The tail as a quote and signature under whatever AK the head vouches for.
    let cut = data.len().saturating_sub(512);
    let (head, tail) = data.split_at(cut);
    let (attest, signature) = tail.split_at(tail.len() / 2);
    let quote = VtpmQuote {
        attest,
        signature,
        pcrs: None,
    };
    let td = TdQuote {
        quote: tail,
        collateral: None,
    };
    let v = azure::verify_snp(
        head,
        &CertInput::default(),
        Some(&quote),
        &policy,
        now,
        Some(b"n"),
    );
    assert!(!v.is_trusted());
    let v = azure::verify_tdx(head, Some(&td), Some(&quote), &policy, now, Some(b"n"));
    assert!(!v.is_trusted());
});
