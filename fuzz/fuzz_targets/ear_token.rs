//! Signed attestation results on arbitrary input: `ratls::ear::verify` (what an application runs
//! on a header anyone can send), the JWKS parser, and the audit log's record parser. No input
//! may verify: it would be a forged ES256 signature.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ratls::ear::{self, AppConnection, EarSigner, Jwks, VerifierId};
use ratls::UnixTime;

fn keys() -> &'static Jwks {
    static KEYS: OnceLock<Jwks> = OnceLock::new();
    KEYS.get_or_init(|| {
        EarSigner::generate(VerifierId {
            developer: "fuzz".into(),
            build: "0".into(),
        })
        .map(|s| s.jwks())
        .unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let here = AppConnection {
        app: "127.0.0.1:8080".into(),
        proxy: "127.0.0.1:40000".into(),
    };
    let now = UnixTime::from_secs(1_796_284_800);
    assert!(ear::verify(&text, keys(), &here, now).is_err());
    if let Ok(jwks) = Jwks::from_json(&text) {
        // Whatever keys the input declares, a token made of the same bytes cannot verify.
        assert!(ear::verify(&text, &jwks, &here, now).is_err());
    }
    let _ = serde_json::from_slice::<ratls::audit::Record>(data);
});
