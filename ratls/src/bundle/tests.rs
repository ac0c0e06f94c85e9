use serde_bytes::ByteBuf;

use super::*;
use crate::attest::{produce, Sources};
use crate::binding::Role;

fn sample() -> Bundle {
    let mut pcrs = BTreeMap::new();
    pcrs.insert(
        HashAlg::Sha256,
        (0u8..=10)
            .map(|i| (i, ByteBuf::from(vec![i; 32])))
            .collect(),
    );
    Bundle {
        version: VERSION,
        tee: Some(TeeEvidence::SevSnp {
            report: ByteBuf::from(vec![7; 1184]),
            vcek: Some(ByteBuf::from(vec![1, 2, 3])),
            vlek: None,
            chain: None,
            crl: None,
        }),
        tpm: Some(TpmEvidence {
            attest: ByteBuf::from(vec![0xff, 0x54, 0x43, 0x47]),
            signature: ByteBuf::from(vec![0; 8]),
            ak_public: ByteBuf::from(vec![0, 0x23]),
            pcrs,
            ek_cert: None,
        }),
        ima: Some(ImaEvidence::Digest {
            len: 1000,
            sha256: ByteBuf::from(vec![9; 32]),
        }),
        binding: BindingClaims {
            role: Role::agent(),
            spki_sha256: [1; 32],
            ak_sha256: Some([2; 32]),
            issued_at: 1_700_000_000,
            challenge: None,
            exporter: None,
        },
        event_log: None,
        batch: None,
    }
}

#[test]
fn cmw_round_trip() {
    let bundle = sample();
    let cmw = bundle.to_cmw();
    assert_eq!(Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN).unwrap(), bundle);
    // Byte strings stay byte strings (compact): the 1184-byte report costs ~1187 bytes.
    assert!(cmw.len() < 1184 + 11 * 35 + 400, "{}", cmw.len());
    assert_eq!(
        bundle.digest(),
        Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN)
            .unwrap()
            .digest()
    );
}

#[test]
fn decoding_refuses_bad_input_with_typed_errors() {
    let cmw = sample().to_cmw();
    assert!(matches!(
        Bundle::from_cmw(&cmw, 100),
        Err(BundleError::TooLarge { .. })
    ));
    let mut trailing = cmw.clone();
    trailing.push(0);
    assert!(matches!(
        Bundle::from_cmw(&trailing, MAX_BUNDLE_LEN),
        Err(BundleError::NotCmw(_))
    ));
    for cut in [0, 1, 10, cmw.len() / 2, cmw.len() - 1] {
        assert!(
            Bundle::from_cmw(&cmw[..cut], MAX_BUNDLE_LEN).is_err(),
            "{cut}"
        );
    }
    // Another media type.
    let mut other = Vec::new();
    ciborium::into_writer(
        &Cmw("application/cbor".into(), ByteBuf::from(sample().to_cbor())),
        &mut other,
    )
    .unwrap();
    assert!(matches!(
        Bundle::from_cmw(&other, MAX_BUNDLE_LEN),
        Err(BundleError::WrongType { .. })
    ));
    // Another version.
    let mut future = sample();
    future.version = 2;
    assert!(matches!(
        Bundle::from_cmw(&future.to_cmw(), MAX_BUNDLE_LEN),
        Err(BundleError::UnsupportedVersion { presented: 2, .. })
    ));
    // A byte string declaring an absurd length must not allocate it.
    let mut huge = Vec::new();
    ciborium::into_writer(
        &Cmw(
            MEDIA_TYPE.into(),
            ByteBuf::from(vec![0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0]),
        ),
        &mut huge,
    )
    .unwrap();
    assert!(matches!(
        Bundle::from_cmw(&huge, MAX_BUNDLE_LEN),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn mutated_bundles_never_panic() {
    let cmw = sample().to_cmw();
    let mut rng = 0x1234_5678_u64;
    for i in 0..3000 {
        let mut m = cmw.clone();
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let at = (rng >> 33) as usize % m.len();
        m[at] ^= 1 << (i % 8);
        let _ = Bundle::from_cmw(&m, MAX_BUNDLE_LEN);
    }
}

/// A crypto-agile sha256 log of PCRs 0-9 (one event each; PCR 9 the kernel command line as the
/// Linux EFI stub tags it) and the PCR values it replays to.
fn boot_log(cmdline: &str) -> (Vec<u8>, BTreeMap<u8, ByteBuf>) {
    use crate::eventlog::{tagged_event, EventType, LogBuilder};
    let mut log = LogBuilder::new(&[HashAlg::Sha256]);
    let mut pcrs = BTreeMap::new();
    for pcr in 0u8..10 {
        let digests = if pcr == 9 {
            let digest = HashAlg::Sha256.digest(cmdline.as_bytes());
            let digests = vec![(HashAlg::Sha256, digest)];
            log.event(
                9,
                EventType::EVENT_TAG,
                &digests,
                &tagged_event(0x8F3B_22ED, "LOADED_IMAGE::LoadOptions"),
            );
            digests
        } else {
            log.measure(
                u32::from(pcr),
                EventType::EFI_ACTION,
                format!("firmware {pcr}").as_bytes(),
            )
        };
        let mut value = vec![0; 32];
        HashAlg::Sha256.extend(&mut value, &digests[0].1);
        pcrs.insert(pcr, ByteBuf::from(value));
    }
    pcrs.insert(10, ByteBuf::from(vec![10; 32]));
    (log.into_bytes(), pcrs)
}

fn with_event_log(log: Vec<u8>, pcrs: BTreeMap<u8, ByteBuf>) -> Bundle {
    let mut bundle = sample();
    bundle.ima = None;
    if let Some(tpm) = &mut bundle.tpm {
        tpm.pcrs = BTreeMap::from([(HashAlg::Sha256, pcrs)]);
    }
    bundle.event_log = Some(EventLogEvidence::Log(ByteBuf::from(log)));
    bundle
}

fn boot_checks(bundle: &Bundle, event_log: Option<&[u8]>) -> (Vec<crate::Check>, BundleClaims) {
    let spki = b"spki";
    let requirements = super::Requirements::new(Role::agent());
    let mut expect = Expectations::new(
        &requirements,
        spki,
        crate::UnixTime::from_secs(1_700_000_000),
    );
    expect.event_log = event_log;
    let verdict = verify_bundle(bundle, &crate::Policy::default(), &expect);
    let crate::Claims::Bundle(claims) = verdict.claims.clone() else {
        panic!("bundle claims")
    };
    (
        verdict
            .checks
            .into_iter()
            .filter(|c| c.step == "boot.eventlog")
            .collect(),
        *claims,
    )
}

#[test]
fn the_event_log_is_optional_on_the_wire() {
    // Without one, the encoding has no such key: older verifiers and older bundles agree.
    let cmw = sample().to_cmw();
    assert!(!cmw
        .windows(b"event_log".len())
        .any(|w| w == b"event_log"));
    assert_eq!(
        Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN)
            .unwrap()
            .event_log,
        None
    );
    // With one (either form), it round-trips.
    let (log, pcrs) = boot_log("console=ttyS0");
    let bundle = with_event_log(log.clone(), pcrs);
    assert_eq!(
        Bundle::from_cmw(&bundle.to_cmw(), MAX_BUNDLE_LEN).unwrap(),
        bundle
    );
    let mut digest = bundle.clone();
    digest.event_log = Some(EventLogEvidence::digest_of(&log));
    assert_eq!(
        Bundle::from_cmw(&digest.to_cmw(), MAX_BUNDLE_LEN).unwrap(),
        digest
    );
}

#[test]
fn boot_eventlog_replays_to_the_quoted_pcrs_and_names_the_first_difference() {
    let (log, pcrs) = boot_log("console=ttyS0");
    // Matching: one passing check for the one quoted bank.
    let (checks, claims) = boot_checks(&with_event_log(log.clone(), pcrs.clone()), None);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(checks[0].ok, "{:?}", checks[0]);
    assert_eq!(claims.event_log.unwrap().events, 11);

    // The kernel command line changed: the log says one thing, the quote another.
    let (other_log, other_pcrs) = boot_log("console=ttyS0 init=/bin/sh");
    let (checks, _) = boot_checks(&with_event_log(other_log.clone(), pcrs.clone()), None);
    assert!(!checks[0].ok);
    assert!(checks[0].detail.contains("PCR 9:"), "{:?}", checks[0]);
    assert!(checks[0]
        .expected
        .contains(&crate::hexfmt::hex(&pcrs[&9])));
    assert!(checks[0]
        .presented
        .contains(&crate::hexfmt::hex(&other_pcrs[&9])));

    // Another quoted PCR differs: named too.
    let mut extra = pcrs.clone();
    extra.insert(8, ByteBuf::from(vec![0x88; 32]));
    let (checks, _) = boot_checks(&with_event_log(log.clone(), extra), None);
    assert!(!checks[0].ok);
    assert!(checks[0].detail.contains("PCR 8:"), "{:?}", checks[0]);

    // No event log: no step at all.
    let mut none = with_event_log(log.clone(), pcrs.clone());
    none.event_log = None;
    assert!(boot_checks(&none, None).0.is_empty());

    // An event log and no quote, or a quote without a bank the log has: failed.
    let mut no_tpm = with_event_log(log.clone(), pcrs.clone());
    no_tpm.tpm = None;
    let (checks, _) = boot_checks(&no_tpm, None);
    assert!(!checks[0].ok && checks[0].presented == "no TPM quote");
    let mut sha1 = with_event_log(log.clone(), pcrs.clone());
    if let Some(tpm) = &mut sha1.tpm {
        tpm.pcrs = BTreeMap::from([(
            HashAlg::Sha1,
            (0u8..10)
                .map(|i| (i, ByteBuf::from(vec![0; 20])))
                .collect(),
        )]);
    }
    let (checks, _) = boot_checks(&sha1, None);
    assert!(!checks[0].ok);
    assert!(checks[0].presented.contains("sha1"), "{:?}", checks[0]);

    // Malformed.
    let (checks, _) = boot_checks(&with_event_log(vec![1, 2, 3], pcrs.clone()), None);
    assert!(!checks[0].ok && checks[0].presented == "malformed");

    // Digest form: deferred without the log, checked with it.
    let mut digest = with_event_log(log.clone(), pcrs.clone());
    digest.event_log = Some(EventLogEvidence::digest_of(&log));
    let (checks, claims) = boot_checks(&digest, None);
    assert!(checks.is_empty());
    assert_eq!(
        claims
            .event_log_deferred
            .unwrap()
            .sha256,
        crate::hexfmt::hex(HashAlg::Sha256.digest(&log))
    );
    let (checks, _) = boot_checks(&digest, Some(&log));
    assert!(checks.len() == 1 && checks[0].ok, "{checks:?}");
    let (checks, _) = boot_checks(&digest, Some(&other_log));
    assert!(!checks[0].ok);
    assert!(checks[0].detail.contains("not the one"), "{:?}", checks[0]);
}

#[derive(Debug)]
struct FixedLog(Vec<u8>);

impl crate::attest::EventLogSource for FixedLog {
    fn read_event_log(&self) -> Result<Vec<u8>, crate::attest::AttestError> {
        Ok(self.0.clone())
    }
}

#[test]
fn certificates_carry_the_event_log_inline_only_when_it_fits() {
    let binding = sample().binding;
    let produce_with = |log: &FixedLog, ima_inline: bool| {
        let sources = Sources {
            tee: None,
            tpm: None,
            ima: None,
            event_log: Some(log),
            banks: &[],
            pcrs: &[],
            ima_inline,
        };
        produce(&sources, binding.clone())
            .unwrap()
            .event_log
    };
    let small = FixedLog(boot_log("console=ttyS0").0);
    let big = FixedLog(vec![0xab; MAX_CERT_BUNDLE_LEN]);
    for (log, ima_inline) in [(&small, false), (&small, true), (&big, true)] {
        assert_eq!(
            produce_with(log, ima_inline),
            Some(EventLogEvidence::Log(ByteBuf::from(log.0.clone())))
        );
    }
    assert_eq!(
        produce_with(&big, false),
        Some(EventLogEvidence::digest_of(&big.0))
    );
}
