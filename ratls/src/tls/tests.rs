use std::sync::Arc;
use std::time::Duration;

use super::cache::{cache_key, VerdictCache};
use super::cert::{der_octet_string, der_octet_string_encode, read_evidence, CertEvidenceError};
use super::{danger, AttestationPolicy};
use crate::binding::Role;
use crate::verdict::{Check, Platform, Verdict};
use crate::{Policy, UnixTime};

#[test]
fn octet_strings_round_trip_at_every_length_form() {
    for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 70_000] {
        let body = vec![0x5au8; len];
        let der = der_octet_string_encode(&body);
        assert_eq!(
            der_octet_string(&der).unwrap(),
            body.as_slice(),
            "len {len}"
        );
    }
}

#[test]
fn malformed_octet_strings_are_typed_errors() {
    for (bad, why) in [
        (&[][..], "Truncated"),
        (&[0x0c, 0x01, 0x41][..], "OCTET STRING (tag 0x04)"),
        (&[0x04, 0x05, 1, 2][..], "Truncated"),
        (&[0x04, 0x01, 1, 2][..], "Trailing"),
        (&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5][..], "non-minimal"),
        (&[0x04, 0x80][..], "indefinite"),
        (&[0x04, 0x84, 0, 0, 0, 1, 0][..], "indefinite"),
    ] {
        let e = der_octet_string(bad).unwrap_err();
        assert!(
            e.to_lowercase()
                .contains(&why.to_lowercase()),
            "{bad:02x?}: {e}"
        );
    }
}

#[test]
fn read_evidence_refuses_non_certificates_with_the_parse_step() {
    let e = read_evidence(b"definitely not DER").unwrap_err();
    assert!(matches!(e, CertEvidenceError::Parse(_)));
    assert_eq!(e.step(), "cert.parse");
    let check = e.to_check();
    assert!(!check.ok && check.step == "cert.parse");
    let huge = vec![0x30u8; crate::pki::MAX_RATLS_CERT_LEN + 1];
    assert!(read_evidence(&huge)
        .unwrap_err()
        .to_string()
        .contains("exceeds"));
}

fn trusted() -> Arc<Verdict> {
    let mut v = Verdict::new(Platform::SevSnp);
    v.push(Check::pass(crate::Step::TEE_SIGNATURE, "y", "y"));
    Arc::new(v)
}

#[test]
fn the_cache_serves_only_fresh_trusted_verdicts_for_the_same_certificate_and_policy() {
    let cache = VerdictCache::new(2);
    let p = AttestationPolicy::new(Policy::default(), Role::server());
    let k1 = cache_key(b"cert one", &p.digest());
    let now = 1_000_000u64;
    cache.insert(k1, trusted(), now, (now - 10, now + 100));
    let at = |s| UnixTime::from_secs(s);
    assert!(cache
        .get(&k1, at(now + 5), 60, 0)
        .is_some());
    // Too old for the policy, past the certificate's notAfter, before its notBefore.
    assert!(cache
        .get(&k1, at(now + 61), 60, 0)
        .is_none());
    assert!(cache
        .get(&k1, at(now + 101), 1000, 0)
        .is_none());
    assert!(cache
        .get(&k1, at(now - 11), 1000, 100)
        .is_none());
    // Another certificate or another policy is another key.
    assert!(cache
        .get(&cache_key(b"cert two", &p.digest()), at(now), 60, 0)
        .is_none());
    let other = p
        .clone()
        .with_max_age(Duration::from_secs(5));
    assert_ne!(other.digest(), p.digest());
    assert!(cache
        .get(&cache_key(b"cert one", &other.digest()), at(now), 60, 0)
        .is_none());
    // Rejections are not cached; capacity evicts the oldest.
    let k2 = cache_key(b"cert two", &p.digest());
    cache.insert(
        k2,
        Arc::new(Verdict::new(Platform::SevSnp)),
        now,
        (0, u64::MAX),
    );
    assert_eq!(cache.len(), 1);
    cache.insert(k2, trusted(), now, (0, u64::MAX));
    cache.insert(
        cache_key(b"three", &p.digest()),
        trusted(),
        now,
        (0, u64::MAX),
    );
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&k1, at(now), 60, 0).is_none());
}

#[test]
fn the_policy_digest_covers_the_sim_root_and_requirements() {
    let base = AttestationPolicy::new(Policy::default(), Role::server());
    let mut sim = base.clone();
    danger::trust_simulated_root(&mut sim, b"ark");
    assert!(sim.trusts_simulation() && !base.trusts_simulation());
    assert_ne!(sim.digest(), base.digest());
    let relaxed = base
        .clone()
        .with_requirements(true, true, false);
    assert_ne!(relaxed.digest(), base.digest());
    let client = AttestationPolicy::new(Policy::default(), Role::client());
    assert_ne!(client.digest(), base.digest());
    assert_eq!(base.clone().digest(), base.digest());
}
