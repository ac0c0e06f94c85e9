use super::*;
use crate::verdict::{Check, Platform, Step};

fn signer() -> EarSigner {
    EarSigner::generate(VerifierId {
        developer: "test".into(),
        build: "0".into(),
    })
    .unwrap()
}

fn conn(app: &str) -> AppConnection {
    AppConnection {
        app: app.into(),
        proxy: "127.0.0.1:40000".into(),
    }
}

fn trusted(simulated: bool) -> Verdict {
    let mut v = Verdict::new(Platform::SevSnp);
    v.push(Check::pass(
        Step::TEE_SIGNATURE,
        "a VCEK signature",
        "valid",
    ));
    v.simulated = simulated;
    assert!(v.is_trusted());
    v
}

fn token(signer: &EarSigner, app: &str, now: UnixTime, ttl: u64) -> String {
    let binding = Binding {
        tls_exporter_sha256: Some("aa".repeat(32)),
        peer_spki_sha256: Some("bb".repeat(32)),
        connection_id: format!("id-{app}"),
        app_connection: conn(app),
    };
    signer
        .sign(appraise(&trusted(false), &[9; 32], binding), now, ttl)
        .unwrap()
}

#[test]
fn a_fresh_result_for_this_connection_verifies() {
    let s = signer();
    let now = UnixTime::now();
    let t = token(&s, "127.0.0.1:1000", now, 60);
    let claims = verify(&t, &s.jwks(), &conn("127.0.0.1:1000"), now).unwrap();
    let a = claims.appraisal().unwrap();
    assert_eq!(a.status, Tier::Affirming);
    assert_eq!(a.policy_id, format!("sha256:{}", "09".repeat(32)));
    assert_eq!(a.binding.connection_id, "id-127.0.0.1:1000");
    assert_eq!(a.platform, "sev-snp");
    assert_eq!(claims.exp, now.as_secs() + 60);
    assert_eq!(claims.eat_profile, EAR_PROFILE);
    // The JWKS round-trips through its JSON file form.
    let jwks = Jwks::from_json(&serde_json::to_string(&s.jwks()).unwrap()).unwrap();
    assert!(verify(&t, &jwks, &conn("127.0.0.1:1000"), now).is_ok());
}

#[test]
fn another_connections_result_is_refused_at_ear_connection() {
    let s = signer();
    let now = UnixTime::now();
    let t = token(&s, "127.0.0.1:1000", now, 60);
    let e = verify(&t, &s.jwks(), &conn("127.0.0.1:1001"), now).unwrap_err();
    assert_eq!(e.step, "ear.connection", "{e}");
    assert!(e.presented.contains("127.0.0.1:1000"), "{e}");
    assert!(e.expected.contains("127.0.0.1:1001"), "{e}");
}

#[test]
fn an_expired_or_future_result_is_refused_at_ear_expiry() {
    let s = signer();
    let now = UnixTime::now();
    let t = token(&s, "a", now, 60);
    let later = UnixTime::from_secs(now.as_secs() + 60);
    assert_eq!(
        verify(&t, &s.jwks(), &conn("a"), later)
            .unwrap_err()
            .step,
        "ear.expiry"
    );
    let earlier = UnixTime::from_secs(now.as_secs() - MAX_SKEW_SECS - 1);
    assert_eq!(
        verify(&t, &s.jwks(), &conn("a"), earlier)
            .unwrap_err()
            .step,
        "ear.expiry"
    );
}

#[test]
fn a_forged_signature_or_key_is_refused() {
    let s = signer();
    let other = signer();
    let now = UnixTime::now();
    let t = token(&s, "a", now, 60);
    // Another key's JWKS: the kid is unknown.
    assert_eq!(
        verify(&t, &other.jwks(), &conn("a"), now)
            .unwrap_err()
            .step,
        "ear.kid"
    );
    // Claims edited after signing.
    let mut parts: Vec<String> = t
        .split('.')
        .map(str::to_owned)
        .collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    claims["submods"][SUBMOD]["cosmian.binding"]["app_connection"]["app"] = "b".into();
    parts[1] = B64.encode(serde_json::to_vec(&claims).unwrap());
    let e = verify(&parts.join("."), &s.jwks(), &conn("b"), now).unwrap_err();
    assert_eq!(e.step, "ear.signature", "{e}");
    // Signed by another key under our kid.
    let forged = other
        .sign(
            verify(&t, &s.jwks(), &conn("a"), now)
                .unwrap()
                .appraisal()
                .unwrap()
                .clone(),
            now,
            60,
        )
        .unwrap();
    let mut f: Vec<String> = forged
        .split('.')
        .map(str::to_owned)
        .collect();
    f[0] = t.split('.').next().unwrap().to_owned();
    assert_eq!(
        verify(&f.join("."), &s.jwks(), &conn("a"), now)
            .unwrap_err()
            .step,
        "ear.signature"
    );
}

#[test]
fn alg_none_and_malformed_tokens_are_refused_naming_the_step() {
    let s = signer();
    let now = UnixTime::now();
    let t = token(&s, "a", now, 60);
    let payload = t.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", B64.encode(br#"{"alg":"none"}"#));
    assert_eq!(
        verify(&none, &s.jwks(), &conn("a"), now)
            .unwrap_err()
            .step,
        "ear.alg"
    );
    let hs = format!(
        "{}.{payload}.AAAA",
        B64.encode(br#"{"alg":"HS256","kid":"x"}"#)
    );
    assert_eq!(
        verify(&hs, &s.jwks(), &conn("a"), now)
            .unwrap_err()
            .step,
        "ear.alg"
    );
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.b.c",
        &"x".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert_eq!(
            verify(bad, &s.jwks(), &conn("a"), now)
                .unwrap_err()
                .step,
            "ear.format",
            "{bad:.20}"
        );
    }
}

#[test]
fn simulated_evidence_is_warning_and_a_rejected_verdict_never_verifies() {
    let s = signer();
    let now = UnixTime::now();
    let binding = |app: &str| Binding {
        tls_exporter_sha256: None,
        peer_spki_sha256: None,
        connection_id: "c".into(),
        app_connection: conn(app),
    };
    let sim = appraise(&trusted(true), &[0; 32], binding("a"));
    assert_eq!(sim.status, Tier::Warning);
    assert_eq!(sim.trust_vector.hardware, Some(32));
    assert!(sim.simulated);
    let t = s.sign(sim, now, 60).unwrap();
    assert!(verify(&t, &s.jwks(), &conn("a"), now).is_ok());

    let mut rejected = Verdict::new(Platform::SevSnp);
    rejected.push(Check::fail(
        Step::TEE_SIGNATURE,
        "a VCEK signature",
        "invalid",
        "bad",
    ));
    let a = appraise(&rejected, &[0; 32], binding("a"));
    assert_eq!(a.status, Tier::Contraindicated);
    let t = s.sign(a, now, 60).unwrap();
    assert_eq!(
        verify(&t, &s.jwks(), &conn("a"), now)
            .unwrap_err()
            .step,
        "ear.status"
    );
}

#[test]
fn a_pem_key_loads_and_keeps_its_kid() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let id = || VerifierId {
        developer: "t".into(),
        build: "1".into(),
    };
    let a = EarSigner::from_pem(&pem_text, id()).unwrap();
    let b = EarSigner::from_pem(&pem_text, id()).unwrap();
    assert_eq!(a.kid(), b.kid());
    assert_eq!(a.kid().len(), 43, "a base64url SHA-256 thumbprint");
    let e = EarSigner::from_pem(
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        id(),
    )
    .unwrap_err();
    assert_eq!(e.step, "ear.key");
}

#[test]
fn tier_boundaries_follow_ar4si() {
    assert_eq!(Tier::of_claim(0), Tier::None);
    assert_eq!(Tier::of_claim(1), Tier::None);
    assert_eq!(Tier::of_claim(2), Tier::Affirming);
    assert_eq!(Tier::of_claim(31), Tier::Affirming);
    assert_eq!(Tier::of_claim(32), Tier::Warning);
    assert_eq!(Tier::of_claim(95), Tier::Warning);
    assert_eq!(Tier::of_claim(96), Tier::Contraindicated);
    assert_eq!(Tier::of_claim(-1), Tier::Contraindicated);
}

#[test]
fn an_ipv4_mapped_address_is_the_same_end() {
    let s = signer();
    let now = UnixTime::now();
    let t = token(&s, "127.0.0.1:8080", now, 60);
    let mapped = AppConnection {
        app: "[::ffff:127.0.0.1]:8080".into(),
        proxy: "[::ffff:127.0.0.1]:40000".into(),
    };
    assert!(verify(&t, &s.jwks(), &mapped, now).is_ok());
    let other_port = AppConnection {
        app: "[::ffff:127.0.0.1]:8081".into(),
        proxy: "127.0.0.1:40000".into(),
    };
    assert_eq!(
        verify(&t, &s.jwks(), &other_port, now)
            .unwrap_err()
            .step,
        "ear.connection"
    );
}
