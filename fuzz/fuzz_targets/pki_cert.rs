//! The X.509 helpers every verifier builds on (ratls::pki): DER or PEM, one certificate or a
//! bundle, every accessor, the extension and critical-extension checks, validity, signature
//! checks against itself and chain verification to a pinned root. Typed errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::pki::{self, Cert};
use ratls::UnixTime;

fn exercise(cert: &Cert, now: UnixTime) {
    let _ = (
        cert.der().len(),
        cert.spki_der().len(),
        cert.sha256(),
        cert.fingerprint(),
    );
    let _ = (
        cert.subject_cn(),
        cert.issuer_cn(),
        cert.subject_name(),
        cert.issuer_name(),
    );
    let _ = (
        cert.is_self_issued(),
        cert.is_ca(),
        cert.path_len_constraint(),
    );
    let _ = cert.signature_algorithm();
    let _ = cert.key_algorithm();
    let _ = cert.subject_public_key();
    let _ = cert.extension("2.5.29.19");
    let _ = cert.extension_value("1.3.6.1.4.1.3704.1.3.3");
    let _ = cert.unhandled_critical_extensions(&["2.5.29.19", "2.5.29.15"]);
    let _ = cert.validity();
    let _ = cert.check_validity(now);
    let _ = cert.check_key_usage_digital_signature();
    let _ = cert.check_critical_extensions();
    let _ = cert.verify_signed_by(cert);
    let _ = cert.check_chains_to(cert);
}

fuzz_target!(|data: &[u8]| {
    let now = UnixTime::from_secs(1_800_000_000);
    if let Ok(cert) = Cert::from_der(data) {
        exercise(&cert, now);
        // Parsing is deterministic and keeps the exact bytes.
        assert_eq!(cert.der(), data);
    }
    let _ = Cert::from_der_or_pem(data);
    if let Ok(certs) = Cert::many_from_der_or_pem(data) {
        for cert in &certs {
            exercise(cert, now);
        }
        if let Some((leaf, issuers)) = certs.split_first() {
            // Pinning the presented root's own hash lets the chain walk reach every link; a
            // pin it does not have must refuse.
            let pins: Vec<[u8; 32]> = issuers
                .last()
                .map(Cert::sha256)
                .into_iter()
                .collect();
            let _ = pki::verify_chain(leaf, issuers, &pins, now);
            assert!(pki::verify_chain(leaf, issuers, &[[0; 32]], now).is_err());
        }
    }
});
