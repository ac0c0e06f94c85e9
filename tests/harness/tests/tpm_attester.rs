//! `TssTpm` against a real swtpm (one per test): the AK's life cycle, quotes verified by
//! `ratls::tpm::verify`, and the failures a verifier must see.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratls::attest::tpm::{TssTpm, DEFAULT_AK_HANDLE};
use ratls::attest::{AttestError, TpmAttester};
use ratls::bundle::TpmEvidence;
use ratls::digest::HashAlg;
use ratls::tpm::{self, QuoteInput, TpmPolicy};
use ratls::Verdict;
use ratls_harness::{open_tpm, simulate_boot, Swtpm, BOOT_AND_IMA_PCRS};

/// The quote's qualifying data: a domain-separated raw nonce (the attesters sign nothing else).
fn nonce() -> ratls::binding::QualifyingData {
    ratls::binding::QualifyingData::for_raw_nonce(b"harness test nonce").unwrap()
}

fn verify(evidence: &TpmEvidence, nonce: &[u8]) -> Verdict {
    let input = QuoteInput {
        attest: &evidence.attest,
        signature: &evidence.signature,
        ak_public: &evidence.ak_public,
        nonce: Some(nonce.to_vec()),
        pcrs: Some(evidence.pcr_values()),
    };
    tpm::verify(&input, &TpmPolicy::default())
}

fn failed_steps(verdict: &Verdict) -> Vec<String> {
    verdict
        .failures()
        .map(|c| c.step.as_str().to_owned())
        .collect()
}

#[test]
fn ak_is_created_once_persisted_and_reused() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let first = open_tpm(&swtpm).unwrap();
    assert!(first.ak_created(), "a fresh TPM has no AK yet");
    assert_eq!(first.ak_handle(), DEFAULT_AK_HANDLE);
    let ak = first.ak_public().unwrap();
    let parsed = tpm::Public::parse(&ak).unwrap();
    assert!(parsed.is_restricted_signing());
    assert_eq!(parsed.type_name(), "ecc-p256");
    drop(first);

    // Another open on the running TPM reuses it.
    let second = open_tpm(&swtpm).unwrap();
    assert!(!second.ak_created());
    assert_eq!(second.ak_public().unwrap(), ak);
    drop(second);

    // A reboot keeps the persistent AK.
    swtpm.restart();
    let after_reboot = open_tpm(&swtpm).unwrap();
    assert!(!after_reboot.ak_created());
    assert_eq!(after_reboot.ak_public().unwrap(), ak);
    let evidence = after_reboot
        .quote(&nonce(), &[HashAlg::Sha256], &BOOT_AND_IMA_PCRS)
        .unwrap();
    assert!(verify(&evidence, nonce().as_bytes()).is_trusted());

    // Evicting it makes the next open create a new one, cleanly, at the same handle.
    after_reboot.remove_ak().unwrap();
    let recreated = open_tpm(&swtpm).unwrap();
    assert!(recreated.ak_created());
    let new_ak = recreated.ak_public().unwrap();
    assert_ne!(new_ak, ak, "a new key");
    let evidence = recreated
        .quote(&nonce(), &[HashAlg::Sha256], &BOOT_AND_IMA_PCRS)
        .unwrap();
    assert!(verify(&evidence, nonce().as_bytes()).is_trusted());
    drop(recreated);
    let again = open_tpm(&swtpm).unwrap();
    assert!(!again.ak_created());
    assert_eq!(again.ak_public().unwrap(), new_ak);
}

#[test]
fn an_occupied_handle_is_refused_and_left_alone() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    // swtpm_setup --createek persists the RSA EK (a restricted decryption key) at 0x81010001.
    let ek_handle = 0x8101_0001;
    for _ in 0..2 {
        match TssTpm::open(&swtpm.tcti(), ek_handle) {
            Err(AttestError::BadResponse { why, .. }) => {
                assert!(why.contains("not a restricted signing key"), "{why}");
                assert!(why.contains("left alone"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Not a persistent handle at all.
    assert!(matches!(
        TssTpm::open(&swtpm.tcti(), 0x8000_0000),
        Err(AttestError::BadResponse { .. })
    ));
    // Other handles still work next to it.
    let tpm = TssTpm::open(&swtpm.tcti(), 0x8101_0042).unwrap();
    assert!(tpm.ak_created());
}

#[test]
fn no_tpm_is_unavailable() {
    ratls_test::swtpm::quiet_tss();
    for tcti in [
        "nonsense:foo",
        "swtpm:host=127.0.0.1,port=1",
        "device:/dev/no-such-tpm",
    ] {
        match TssTpm::open(tcti, DEFAULT_AK_HANDLE) {
            Err(AttestError::Unavailable { why, .. }) => assert!(why.contains("TCTI"), "{why}"),
            other => panic!("{tcti}: expected Unavailable, got {other:?}"),
        }
    }
}

#[test]
fn quotes_verify_in_one_and_two_banks() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "quotes").unwrap();
    for banks in [vec![HashAlg::Sha256], vec![HashAlg::Sha1, HashAlg::Sha256]] {
        let evidence = tpm
            .quote(&nonce(), &banks, &BOOT_AND_IMA_PCRS)
            .unwrap();
        let verdict = verify(&evidence, nonce().as_bytes());
        assert!(
            verdict.is_trusted(),
            "{banks:?}: {:?}",
            failed_steps(&verdict)
        );
        assert_eq!(evidence.ak_public.as_ref(), tpm.ak_public().unwrap());
        assert_eq!(
            evidence
                .pcrs
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            banks,
            "one map per bank (BTreeMap order sha1 < sha256)"
        );
        for (bank, values) in &evidence.pcrs {
            assert_eq!(
                values
                    .keys()
                    .copied()
                    .collect::<Vec<_>>(),
                BOOT_AND_IMA_PCRS
            );
            assert!(values
                .values()
                .all(|v| v.len() == bank.digest_len()));
            // PCR 0 carries the simulated firmware measurement.
            assert_ne!(values[&0].as_ref(), vec![0u8; bank.digest_len()]);
        }
        // The values travel as read: the same as a separate read.
        assert_eq!(
            tpm.read_pcrs(&banks, &BOOT_AND_IMA_PCRS)
                .unwrap(),
            evidence
                .pcrs
                .iter()
                .map(|(b, v)| (
                    *b,
                    v.iter()
                        .map(|(i, d)| (*i, d.to_vec()))
                        .collect()
                ))
                .collect()
        );
        // swtpm_setup --create-ek-cert wrote an RSA EK certificate at 0x01c00002.
        let ek = evidence
            .ek_cert
            .as_ref()
            .expect("EK certificate");
        let cert = ratls::pki::Cert::from_der_or_pem(ek).unwrap();
        drop(cert);
    }
}

#[test]
fn a_wrong_nonce_fails_qualifying_data() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    let evidence = tpm
        .quote(&nonce(), &[HashAlg::Sha256], &BOOT_AND_IMA_PCRS)
        .unwrap();
    let verdict = verify(&evidence, &[0xa5; 32]);
    assert_eq!(failed_steps(&verdict), ["tpm.qualifying_data"]);
}

#[test]
fn a_changed_pcr_value_fails_pcr_digest() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "changed").unwrap();
    let mut evidence = tpm
        .quote(
            &nonce(),
            &[HashAlg::Sha1, HashAlg::Sha256],
            &BOOT_AND_IMA_PCRS,
        )
        .unwrap();
    assert!(verify(&evidence, nonce().as_bytes()).is_trusted());
    let value = evidence
        .pcrs
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .get_mut(&7)
        .unwrap();
    value[0] ^= 1;
    assert_eq!(
        failed_steps(&verify(&evidence, nonce().as_bytes())),
        ["tpm.pcr_digest"]
    );
}

#[test]
fn a_quote_from_another_tpm_fails_the_signature() {
    let (Some(one), Some(two)) = (Swtpm::start(), Swtpm::start()) else {
        return;
    };
    let first = open_tpm(&one).unwrap();
    let second = open_tpm(&two).unwrap();
    assert_ne!(first.ak_public().unwrap(), second.ak_public().unwrap());
    let mut evidence = second
        .quote(&nonce(), &[HashAlg::Sha256], &BOOT_AND_IMA_PCRS)
        .unwrap();
    assert!(verify(&evidence, nonce().as_bytes()).is_trusted());
    evidence.ak_public = first.ak_public().unwrap().into();
    assert_eq!(
        failed_steps(&verify(&evidence, nonce().as_bytes())),
        ["tpm.signature"]
    );
}

#[test]
fn pcr_values_match_the_quote_while_pcr10_is_being_extended() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    // A second connection, as another process (the kernel's IMA) would have: its extends
    // interleave with the quote and the read of the values.
    let other = open_tpm(&swtpm).unwrap();
    let stop = AtomicBool::new(false);
    let verdicts = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let d1 = HashAlg::Sha1.digest(&n.to_le_bytes());
                let d256 = HashAlg::Sha256.digest(&n.to_le_bytes());
                let _ = other.extend_pcr(10, &[(HashAlg::Sha1, &d1), (HashAlg::Sha256, &d256)]);
                n += 1;
                std::thread::sleep(Duration::from_millis(if n.is_multiple_of(5) {
                    50
                } else {
                    1
                }));
            }
        });
        let verdicts: Vec<_> = (0..20)
            .map(|_| {
                tpm.quote(
                    &nonce(),
                    &[HashAlg::Sha1, HashAlg::Sha256],
                    &BOOT_AND_IMA_PCRS,
                )
                .map(|evidence| verify(&evidence, nonce().as_bytes()))
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        verdicts
    });
    for verdict in verdicts {
        let verdict = verdict.unwrap();
        assert!(verdict.is_trusted(), "{:?}", failed_steps(&verdict));
    }
    eprintln!("quotes taken again: {}", tpm.quote_retries());
}

#[test]
fn bad_selections_and_digests_are_refused() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    for (banks, pcrs) in [
        (vec![], vec![0u8]),
        (vec![HashAlg::Sha256], vec![]),
        (vec![HashAlg::Sha256], vec![24]),
        (vec![HashAlg::Sha256, HashAlg::Sha256], vec![0]),
    ] {
        assert!(matches!(
            tpm.quote(&nonce(), &banks, &pcrs),
            Err(AttestError::BadResponse { .. })
        ));
    }
    // A bank swtpm_setup did not activate.
    assert!(tpm
        .quote(&nonce(), &[HashAlg::Sha384], &BOOT_AND_IMA_PCRS)
        .is_err());
    // (Qualifying data is a 32-byte `QualifyingData` by type: nothing longer can be asked.)
    assert!(tpm
        .extend_pcr(10, &[(HashAlg::Sha256, &[0; 20])])
        .is_err());
    assert!(tpm
        .extend_pcr(24, &[(HashAlg::Sha256, &[0; 32])])
        .is_err());
}
