//! RA-TLS certificates and evidence bundles on arbitrary bytes: the certificate reader (DER,
//! extension, OCTET STRING, size caps), the handshake verifier's certificate check, and the bundle
//! decoder and verifier on the same input taken as a CMW.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::binding::Role;
use ratls::bundle::{self, Expectations, Requirements};
use ratls::tls::{cert, AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{Policy, UnixTime};

fuzz_target!(|data: &[u8]| {
    let now = UnixTime::from_secs(1_800_000_000);
    let _ = cert::read_evidence(data);
    let verifier = AttestedServerVerifier::new(
        AttestationPolicy::new(Policy::default(), Role::server()),
        Mode::Certificate,
    );
    // Nothing random is genuine evidence bound to its own key.
    assert!(verifier
        .verify_certificate(data, now)
        .is_err());
    let verdict = bundle::verify(
        data,
        &Policy::default(),
        &Expectations::new(&Requirements::new(Role::server()), b"spki", now),
    );
    assert!(!verdict.is_trusted());
});
