//! Hand-built logs: both formats, two banks, StartupLocality, caps, padding and malformed input.
//! Expected PCR values are computed here with `ring` directly, not with the replay code.

use super::*;
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::PcrValues;

const SHA1: u16 = 0x0004;
const SHA256: u16 = 0x000B;
const SHA384: u16 = 0x000C;
const SM3: u16 = 0x0012;

fn sha(alg: u16, data: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        SHA1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        SHA256 => &ring::digest::SHA256,
        SHA384 => &ring::digest::SHA384,
        other => panic!("no hash for {other:#x}"),
    };
    ring::digest::digest(algorithm, data)
        .as_ref()
        .to_vec()
}

/// PCR := H(PCR || digest), over `digests`, from `initial`.
fn extend_chain(alg: u16, initial: Vec<u8>, digests: &[Vec<u8>]) -> Vec<u8> {
    digests
        .iter()
        .fold(initial, |pcr, d| sha(alg, &[pcr.as_slice(), d].concat()))
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// A legacy `TCG_PCClientPCREvent`.
fn legacy(pcr: u32, event_type: u32, digest: &[u8; 20], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(le32(pcr));
    out.extend(le32(event_type));
    out.extend(digest);
    out.extend(le32(data.len() as u32));
    out.extend(data);
    out
}

/// The `Spec ID Event03` data.
fn spec_id_data(algs: &[(u16, u16)], vendor: &[u8]) -> Vec<u8> {
    let mut out = b"Spec ID Event03\0".to_vec();
    out.extend(le32(0)); // platformClass
    out.extend([0, 2, 0, 2]); // minor, major, errata, uintnSize
    out.extend(le32(algs.len() as u32));
    for (id, size) in algs {
        out.extend(id.to_le_bytes());
        out.extend(size.to_le_bytes());
    }
    out.push(vendor.len() as u8);
    out.extend(vendor);
    out
}

/// The first event of a crypto-agile log.
fn header(algs: &[(u16, u16)]) -> Vec<u8> {
    legacy(0, 3, &[0; 20], &spec_id_data(algs, b""))
}

/// A `TCG_PCR_EVENT2`.
fn event2(pcr: u32, event_type: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(le32(pcr));
    out.extend(le32(event_type));
    out.extend(le32(digests.len() as u32));
    for (id, digest) in digests {
        out.extend(id.to_le_bytes());
        out.extend(digest);
    }
    out.extend(le32(data.len() as u32));
    out.extend(data);
    out
}

/// An event measuring `data` in every bank of `algs`.
fn measure(pcr: u32, event_type: u32, algs: &[u16], data: &[u8]) -> Vec<u8> {
    let digests: Vec<(u16, Vec<u8>)> = algs
        .iter()
        .map(|&a| (a, sha(a, data)))
        .collect();
    event2(pcr, event_type, &digests, data)
}

const TWO: [(u16, u16); 2] = [(SHA1, 20), (SHA256, 32)];
const EVENTS: [(u32, u32, &[u8]); 5] = [
    (0, 0x8, b"firmware v1"),                     // EV_S_CRTM_VERSION
    (0, 0x1, b"post code"),                       // EV_POST_CODE
    (7, 0x8000_0001, b"SecureBoot=1"),            // EV_EFI_VARIABLE_DRIVER_CONFIG
    (0, 0x3, b"informational, not extended"),     // EV_NO_ACTION
    (4, 0x8000_0007, b"Calling EFI Application"), // EV_EFI_ACTION
];

/// A crypto-agile SHA-1 + SHA-256 log of `EVENTS`.
fn two_bank_log() -> Vec<u8> {
    let mut log = header(&TWO);
    for (pcr, event_type, data) in EVENTS {
        log.extend(measure(pcr, event_type, &[SHA1, SHA256], data));
    }
    log
}

/// The expected value of `pcr` in `alg` for `EVENTS`, computed without the library.
fn expected(alg: u16, pcr: u32, initial: Vec<u8>) -> Vec<u8> {
    let digests: Vec<Vec<u8>> = EVENTS
        .iter()
        .filter(|(p, t, _)| *p == pcr && *t != 3)
        .map(|(_, _, data)| sha(alg, data))
        .collect();
    extend_chain(alg, initial, &digests)
}

fn invalid_field(error: &ParseError) -> &'static str {
    match error {
        ParseError::InvalidValue { field, .. } => field,
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn two_banks_parse_and_replay() {
    let bytes = two_bank_log();
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format(), LogFormat::CryptoAgile);
    assert_eq!(log.len(), 6);
    assert_eq!(log.padding(), 0);
    assert_eq!(log.banks(), [HashAlg::Sha1, HashAlg::Sha256]);
    assert_eq!(
        log.algorithms()
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>(),
        ["sha1", "sha256"]
    );
    let spec = log.spec_id().unwrap();
    assert_eq!((spec.spec_version_major, spec.uintn_size), (2, 2));
    let third = &log.events()[3];
    assert_eq!(third.pcr_index(), 7);
    assert_eq!(third.event_type(), EventType::EFI_VARIABLE_DRIVER_CONFIG);
    assert_eq!(third.data(), b"SecureBoot=1");
    assert_eq!(
        third.digest(HashAlg::Sha256).unwrap(),
        sha(SHA256, b"SecureBoot=1")
    );
    assert_eq!(third.digest(HashAlg::Sha384), None);
    assert_eq!(log.events()[1].offset(), header(&TWO).len());

    for (alg, bank) in [(SHA1, HashAlg::Sha1), (SHA256, HashAlg::Sha256)] {
        let replayed = log.replay(bank).unwrap();
        assert_eq!(
            replayed
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [0, 4, 7]
        );
        for pcr in [0, 4, 7] {
            let zero = vec![0; bank.digest_len()];
            assert_eq!(replayed[&pcr], expected(alg, pcr, zero), "{bank} PCR {pcr}");
        }
        assert_eq!(log.replay_from_zero(bank).unwrap(), replayed);
        let selected = log
            .replay_selected(bank, &[7, 9])
            .unwrap();
        assert_eq!(selected[&7], replayed[&7]);
        assert_eq!(selected[&9], vec![0; bank.digest_len()]);
    }
    assert_eq!(
        log.replay(HashAlg::Sha384),
        Err(ReplayError::BankNotInLog {
            bank: HashAlg::Sha384,
            available: "sha1, sha256".into()
        })
    );

    let summary = log.summary();
    assert_eq!(summary.format, "crypto-agile");
    assert_eq!(summary.events, 6);
    assert_eq!(summary.banks, ["sha1", "sha256"]);
    assert_eq!(summary.event_types["EV_NO_ACTION"], 2);
    assert_eq!(summary.event_types["EV_EFI_ACTION"], 1);
    assert_eq!(
        summary
            .events_per_index
            .into_iter()
            .collect::<Vec<_>>(),
        [(0, 2), (4, 1), (7, 1)]
    );
    assert_eq!(
        summary.replayed["sha256"][&7],
        crate::hexfmt::hex(expected(SHA256, 7, vec![0; 32]))
    );
    let json = serde_json::to_value(log.summary()).unwrap();
    assert_eq!(json["banks"][1], "sha256");
    assert!(json.get("startup_locality").is_none());
}

#[test]
fn digests_in_any_order_and_three_banks() {
    let algs = [(SHA256, 32), (SHA1, 20), (SHA384, 48)];
    let mut bytes = header(&algs);
    bytes.extend(measure(2, 0xF, &[SHA384, SHA1, SHA256], b"option rom"));
    bytes.extend(measure(2, 0xF, &[SHA1, SHA256, SHA384], b"second rom"));
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(
        log.banks(),
        [HashAlg::Sha256, HashAlg::Sha1, HashAlg::Sha384]
    );
    for (alg, bank) in [
        (SHA1, HashAlg::Sha1),
        (SHA256, HashAlg::Sha256),
        (SHA384, HashAlg::Sha384),
    ] {
        let want = extend_chain(
            alg,
            vec![0; bank.digest_len()],
            &[sha(alg, b"option rom"), sha(alg, b"second rom")],
        );
        assert_eq!(log.replay(bank).unwrap()[&2], want);
    }
    assert_eq!(log.events()[1].event_type().name(), Some("EV_NONHOST_CODE"));
}

#[test]
fn legacy_sha1_log_replays_only_sha1() {
    let events: [(u32, u32, &[u8]); 4] = [
        (0, 0x8, b"crtm version"),
        (0, 0x7, b"crtm contents"),
        (4, 0x3, b"no action"),
        (4, 0xD, b"ipl"),
    ];
    let mut bytes = Vec::new();
    for (pcr, event_type, data) in events {
        let digest: [u8; 20] = sha(SHA1, data).try_into().unwrap();
        bytes.extend(legacy(pcr, event_type, &digest, data));
    }
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format(), LogFormat::LegacySha1);
    assert!(log.spec_id().is_none());
    assert_eq!(log.len(), 4);
    assert_eq!(log.banks(), [HashAlg::Sha1]);
    let replayed = log.replay(HashAlg::Sha1).unwrap();
    assert_eq!(
        replayed[&0],
        extend_chain(
            SHA1,
            vec![0; 20],
            &[sha(SHA1, b"crtm version"), sha(SHA1, b"crtm contents")]
        )
    );
    assert_eq!(
        replayed[&4],
        extend_chain(SHA1, vec![0; 20], &[sha(SHA1, b"ipl")])
    );
    assert!(matches!(
        log.replay(HashAlg::Sha256),
        Err(ReplayError::BankNotInLog { .. })
    ));
    assert_eq!(log.summary().format, "legacy-sha1");
    assert_eq!(log.summary().banks, ["sha1"]);
    // A legacy log may end in zero padding too.
    let mut padded = bytes.clone();
    padded.extend([0; 100]);
    let padded = EventLog::parse(&padded).unwrap();
    assert_eq!(padded.len(), 4);
    assert_eq!(padded.padding(), 100);
}

#[test]
fn algorithm_not_in_the_spec_id_table_is_an_error() {
    let mut bytes = header(&TWO);
    bytes.extend(event2(
        0,
        0x8,
        &[(SHA1, vec![1; 20]), (SHA384, vec![2; 48])],
        b"x",
    ));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(invalid_field(&error), "TCG_PCR_EVENT2 digests.hashAlg");
    let text = error.to_string();
    assert!(text.contains("sha1, sha256"), "{text}");
    assert!(text.contains("0x000c"), "{text}");
}

#[test]
fn unknown_algorithm_in_the_table_is_kept_but_not_replayed() {
    let algs = [(SHA256, 32), (SM3, 32), (0x00AB, 40)];
    let mut bytes = header(&algs);
    bytes.extend(event2(
        3,
        0x4,
        &[
            (SHA256, sha(SHA256, b"sep")),
            (SM3, vec![0x33; 32]),
            (0x00AB, vec![0xab; 40]),
        ],
        b"sep",
    ));
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.banks(), [HashAlg::Sha256]);
    assert_eq!(log.summary().banks, ["sha256", "sm3_256", "0x00ab"]);
    let event = &log.events()[1];
    assert_eq!(event.digest_by_id(SM3).unwrap(), [0x33; 32]);
    assert_eq!(event.digest_by_id(0x00AB).unwrap(), [0xab; 40]);
    assert_eq!(event.digests().len(), 3);
    assert_eq!(
        log.replay(HashAlg::Sha256).unwrap()[&3],
        extend_chain(SHA256, vec![0; 32], &[sha(SHA256, b"sep")])
    );
    // The summary replays only what it can.
    assert_eq!(
        log.summary()
            .replayed
            .keys()
            .collect::<Vec<_>>(),
        ["sha256"]
    );
}

#[test]
fn spec_id_table_is_checked() {
    // A known algorithm with the wrong size.
    let error = EventLog::parse(&header(&[(SHA256, 20)])).unwrap_err();
    assert_eq!(invalid_field(&error), "digestSizes.digestSize");
    // Zero-size and oversized unknown algorithms.
    let error = EventLog::parse(&header(&[(0x00AB, 0)])).unwrap_err();
    assert_eq!(invalid_field(&error), "digestSizes.digestSize");
    assert!(matches!(
        EventLog::parse(&header(&[(0x00AB, 129)])),
        Err(ParseError::TooLarge {
            field: "digestSizes.digestSize",
            ..
        })
    ));
    // The same algorithm twice.
    let error = EventLog::parse(&header(&[(SHA1, 20), (SHA1, 20)])).unwrap_err();
    assert_eq!(invalid_field(&error), "digestSizes.algorithmId");
    // No algorithms.
    let error = EventLog::parse(&header(&[])).unwrap_err();
    assert_eq!(invalid_field(&error), "numberOfAlgorithms");
    // Bytes after vendorInfo.
    let mut data = spec_id_data(&TWO, b"vendor");
    data.push(0);
    assert!(matches!(
        EventLog::parse(&legacy(0, 3, &[0; 20], &data)),
        Err(ParseError::TrailingBytes {
            what: "TCG_EfiSpecIDEvent",
            ..
        })
    ));
    // The Spec ID event must be EV_NO_ACTION in PCR 0 with a zero digest.
    let data = spec_id_data(&TWO, b"");
    for bad in [
        legacy(1, 3, &[0; 20], &data),
        legacy(0, 4, &[0; 20], &data),
        legacy(0, 3, &[1; 20], &data),
    ] {
        let error = EventLog::parse(&bad).unwrap_err();
        assert_eq!(invalid_field(&error), "header");
    }
    // Vendor info is kept.
    let log = EventLog::parse(&legacy(0, 3, &[0; 20], &spec_id_data(&TWO, b"GCE"))).unwrap();
    assert_eq!(log.spec_id().unwrap().vendor_info, b"GCE");
    assert_eq!(log.len(), 1);
}

#[test]
fn digest_list_is_checked() {
    // More digests than algorithms.
    let mut bytes = header(&TWO);
    bytes.extend(event2(
        0,
        0x8,
        &[
            (SHA1, vec![0; 20]),
            (SHA256, vec![0; 32]),
            (SHA1, vec![0; 20]),
        ],
        b"",
    ));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(invalid_field(&error), "TCG_PCR_EVENT2 digests.count");
    // The same algorithm twice.
    let mut bytes = header(&TWO);
    bytes.extend(event2(
        0,
        0x8,
        &[(SHA1, vec![0; 20]), (SHA1, vec![0; 20])],
        b"",
    ));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(invalid_field(&error), "TCG_PCR_EVENT2 digests.hashAlg");
    assert!(error
        .to_string()
        .contains("a second sha1 digest"));
    // A measured event without a SHA-256 digest parses, but cannot be replayed into SHA-256.
    let mut bytes = header(&TWO);
    bytes.extend(event2(5, 0x3, &[], b"no action, no digests"));
    bytes.extend(event2(5, 0x4, &[(SHA1, sha(SHA1, b"x"))], b"x"));
    let log = EventLog::parse(&bytes).unwrap();
    assert!(log.replay(HashAlg::Sha1).is_ok());
    assert_eq!(
        log.replay(HashAlg::Sha256),
        Err(ReplayError::MissingDigest {
            bank: HashAlg::Sha256,
            event: 2,
            index: 5,
            event_type: EventType::SEPARATOR,
            offset: log.events()[2].offset(),
        })
    );
    // The summary leaves the bank out rather than guess.
    assert!(!log
        .summary()
        .replayed
        .contains_key("sha256"));
}

#[test]
fn truncations_are_errors_or_shorter_logs() {
    let bytes = two_bank_log();
    let full = EventLog::parse(&bytes).unwrap();
    let boundaries: Vec<usize> = full
        .events()
        .iter()
        .map(Event::offset)
        .skip(1)
        .chain([bytes.len()])
        .collect();
    for cut in 0..bytes.len() {
        match EventLog::parse(&bytes[..cut]) {
            Ok(log) => {
                // A prefix of whole events, then at most an all-zero (or all-0xff) tail.
                let consumed = cut - log.padding();
                assert!(boundaries.contains(&consumed), "cut {cut}");
                assert_eq!(log.events(), &full.events()[..log.len()], "cut {cut}");
                assert!(bytes[consumed..cut]
                    .iter()
                    .all(|&b| b == 0));
            }
            Err(ParseError::Truncated { .. }) => {}
            // The first bytes of the header are zeros: nothing but padding.
            Err(ParseError::InvalidValue {
                field: "first event",
                ..
            }) if bytes[..cut].iter().all(|&b| b == 0) => {}
            Err(other) => panic!("cut {cut}: {other}"),
        }
    }
    // Specific fields name themselves.
    assert!(matches!(
        EventLog::parse(&bytes[..10]),
        Err(ParseError::Truncated {
            field: "TCG_PCClientPCREvent digest",
            ..
        })
    ));
    assert!(matches!(
        EventLog::parse(&bytes[..50]),
        Err(ParseError::Truncated {
            field: "TCG_PCClientPCREvent event",
            ..
        })
    ));
    let second = full.events()[2].offset();
    assert!(matches!(
        EventLog::parse(&bytes[..second - 3]),
        Err(ParseError::Truncated {
            field: "TCG_PCR_EVENT2 event",
            ..
        })
    ));
    assert!(matches!(
        EventLog::parse(&[]),
        Err(ParseError::Truncated { .. })
    ));
}

#[test]
fn caps() {
    // numberOfAlgorithms.
    let algs: Vec<(u16, u16)> = (0..17u16)
        .map(|i| (0x100 + i, 32))
        .collect();
    assert!(matches!(
        EventLog::parse(&header(&algs)),
        Err(ParseError::TooLarge {
            field: "numberOfAlgorithms",
            size: 17,
            limit: MAX_ALGORITHMS,
            ..
        })
    ));
    let algs: Vec<(u16, u16)> = (0..16u16)
        .map(|i| (0x100 + i, 32))
        .collect();
    assert!(EventLog::parse(&header(&algs)).is_ok());
    // numberOfAlgorithms claiming 4 billion entries in a small event.
    let mut data = spec_id_data(&TWO, b"");
    data[24..28].copy_from_slice(&le32(u32::MAX));
    assert!(matches!(
        EventLog::parse(&legacy(0, 3, &[0; 20], &data)),
        Err(ParseError::TooLarge { .. })
    ));
    // Event data: 1 MiB is fine, one byte more is not (checked before reading it).
    let mut bytes = header(&TWO);
    bytes.extend(measure(8, 0xD, &[SHA1, SHA256], &vec![7; MAX_EVENT_DATA]));
    assert_eq!(EventLog::parse(&bytes).unwrap().len(), 2);
    let mut bytes = header(&TWO);
    bytes.extend(le32(8));
    bytes.extend(le32(0xD));
    bytes.extend(le32(0));
    bytes.extend(le32(MAX_EVENT_DATA as u32 + 1));
    assert!(matches!(
        EventLog::parse(&bytes),
        Err(ParseError::TooLarge {
            field: "TCG_PCR_EVENT2 event",
            ..
        })
    ));
    let mut bytes = legacy(0, 8, &[1; 20], b"");
    bytes.extend(le32(0));
    bytes.extend(le32(8));
    bytes.extend([1; 20]);
    bytes.extend(le32(u32::MAX));
    assert!(matches!(
        EventLog::parse(&bytes),
        Err(ParseError::TooLarge {
            field: "TCG_PCClientPCREvent event",
            ..
        })
    ));
    // Events: the Spec ID event plus 99,999 more is the limit.
    let tiny = event2(1, 0x3, &[], b"");
    let mut bytes = header(&TWO);
    for _ in 1..MAX_EVENTS {
        bytes.extend(&tiny);
    }
    assert_eq!(EventLog::parse(&bytes).unwrap().len(), MAX_EVENTS);
    bytes.extend(&tiny);
    assert!(matches!(
        EventLog::parse(&bytes),
        Err(ParseError::TooLarge {
            field: "events",
            limit: MAX_EVENTS,
            ..
        })
    ));
}

#[test]
fn trailing_padding_is_tolerated() {
    let bytes = two_bank_log();
    let full = EventLog::parse(&bytes).unwrap();
    for (fill, len) in [(0x00u8, 1usize), (0x00, 4096), (0xff, 8), (0xff, 65_536)] {
        let mut padded = bytes.clone();
        padded.extend(vec![fill; len]);
        let log = EventLog::parse(&padded).unwrap();
        assert_eq!(log.events(), full.events(), "{fill:#x} x {len}");
        assert_eq!(log.padding(), len);
        assert_eq!(log.summary().padding, len);
        assert_eq!(log.replay(HashAlg::Sha256), full.replay(HashAlg::Sha256));
    }
    // The last event's data may itself end in zeros: it is still read whole.
    let mut bytes = header(&TWO);
    bytes.extend(measure(4, 0x4, &[SHA1, SHA256], &[0, 0, 0, 0]));
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log.events()[1].data(), [0, 0, 0, 0]);
    assert_eq!(log.padding(), 0);
    // Nothing but padding is not a log.
    for only in [vec![0u8; 64], vec![0xff; 64]] {
        let error = EventLog::parse(&only).unwrap_err();
        assert_eq!(invalid_field(&error), "first event");
    }
}

#[test]
fn trailing_junk_is_rejected() {
    let bytes = two_bank_log();
    for junk in [
        b"junk".to_vec(),
        vec![0, 0, 0, 0, 1],
        vec![0xff; 8]
            .into_iter()
            .chain([0])
            .collect(),
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0x00; 8]
            .into_iter()
            .chain([0xff; 8])
            .collect(),
    ] {
        let mut bad = bytes.clone();
        bad.extend(&junk);
        assert!(EventLog::parse(&bad).is_err(), "{junk:?}");
    }
}

fn startup_locality(locality: u8) -> Vec<u8> {
    let mut data = b"StartupLocality\0".to_vec();
    data.push(locality);
    event2(0, 0x3, &[(SHA1, vec![0; 20]), (SHA256, vec![0; 32])], &data)
}

#[test]
fn startup_locality_sets_the_initial_pcr0() {
    for locality in [0u8, 3, 4] {
        let mut bytes = header(&TWO);
        bytes.extend(startup_locality(locality));
        for (pcr, event_type, data) in EVENTS {
            bytes.extend(measure(pcr, event_type, &[SHA1, SHA256], data));
        }
        let log = EventLog::parse(&bytes).unwrap();
        assert_eq!(log.startup_locality(), Some(locality));
        assert_eq!(log.events()[1].startup_locality(), Some(locality));
        for (alg, bank) in [(SHA1, HashAlg::Sha1), (SHA256, HashAlg::Sha256)] {
            let mut initial = vec![0; bank.digest_len()];
            if locality != 0 {
                *initial.last_mut().unwrap() = locality;
            }
            assert_eq!(log.initial_value(bank, 0), initial);
            assert_eq!(log.initial_value(bank, 1), vec![0; bank.digest_len()]);
            let replayed = log.replay(bank).unwrap();
            assert_eq!(replayed[&0], expected(alg, 0, initial.clone()));
            assert_eq!(replayed[&7], expected(alg, 7, vec![0; bank.digest_len()]));
            // The generic replay knows nothing of localities.
            assert_eq!(
                log.replay_from_zero(bank).unwrap()[&0],
                expected(alg, 0, vec![0; bank.digest_len()])
            );
        }
        assert_eq!(log.summary().startup_locality, Some(locality));
    }
    // With no PCR 0 event at all, PCR 0 is still reported at its initial value.
    let mut bytes = header(&TWO);
    bytes.extend(startup_locality(3));
    let log = EventLog::parse(&bytes).unwrap();
    let mut initial = vec![0; 32];
    initial[31] = 3;
    assert_eq!(log.replay(HashAlg::Sha256).unwrap()[&0], initial);
    assert_eq!(
        log.replay_selected(HashAlg::Sha256, &[0])
            .unwrap()[&0],
        initial
    );
}

#[test]
fn startup_locality_rules() {
    // A locality other than 0, 3, 4.
    let mut bytes = header(&TWO);
    bytes.extend(startup_locality(2));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(invalid_field(&error), "StartupLocality event");
    // Twice.
    let mut bytes = header(&TWO);
    bytes.extend(startup_locality(3));
    bytes.extend(startup_locality(3));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("at most one"),
        "{error}"
    );
    // After a PCR 0 measurement.
    let mut bytes = header(&TWO);
    bytes.extend(measure(0, 0x8, &[SHA1, SHA256], b"crtm"));
    bytes.extend(startup_locality(3));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("before any PCR 0"),
        "{error}"
    );
    // Wrong size.
    let mut bytes = header(&TWO);
    bytes.extend(event2(0, 0x3, &[], b"StartupLocality\0\x03\x00"));
    let error = EventLog::parse(&bytes).unwrap_err();
    assert_eq!(invalid_field(&error), "StartupLocality event");
    // In another PCR it does not apply.
    let mut data = b"StartupLocality\0".to_vec();
    data.push(3);
    let mut bytes = header(&TWO);
    bytes.extend(event2(1, 0x3, &[], &data));
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.startup_locality(), None);
    assert_eq!(log.initial_value(HashAlg::Sha1, 0), vec![0; 20]);
}

#[test]
fn event_type_names() {
    assert_eq!(EventType::SEPARATOR.name(), Some("EV_SEPARATOR"));
    assert_eq!(
        EventType(0x8000_00E0).name(),
        Some("EV_EFI_VARIABLE_AUTHORITY")
    );
    assert_eq!(EventType(0x12).to_string(), "EV_OMIT_BOOT_DEVICE_EVENTS");
    assert_eq!(EventType(0xabcd).name(), None);
    assert_eq!(EventType(0xabcd).to_string(), "0x0000abcd");
    assert_eq!(
        serde_json::to_value(EventType::EFI_GPT_EVENT).unwrap(),
        "EV_EFI_GPT_EVENT"
    );
    assert!(EventType::NO_ACTION.is_no_action());
    assert!(!EventType::ACTION.is_no_action());
}

fn quoted_for(log: &EventLog, indices: &[u32]) -> PcrValues {
    let mut pcrs = PcrValues::default();
    for bank in log.banks() {
        for (index, value) in log
            .replay_selected(bank, indices)
            .unwrap()
        {
            pcrs.insert(bank, index as u8, value);
        }
    }
    pcrs
}

#[test]
fn checks_against_quoted_pcrs() {
    let bytes = two_bank_log();
    let log = EventLog::parse(&bytes).unwrap();
    // Quoted values computed independently.
    let mut pcrs = PcrValues::default();
    for (alg, bank) in [(SHA1, HashAlg::Sha1), (SHA256, HashAlg::Sha256)] {
        for pcr in [0u32, 4, 7, 9] {
            pcrs.insert(
                bank,
                pcr as u8,
                expected(alg, pcr, vec![0; bank.digest_len()]),
            );
        }
    }
    assert_eq!(pcrs, quoted_for(&log, &[0, 4, 7, 9]));
    let checks = check_against_pcrs(&log, &pcrs, &[9, 0, 4, 7, 0]);
    assert_eq!(checks.len(), 2);
    for check in &checks {
        assert!(check.ok, "{check}");
        assert_eq!(check.step, "eventlog.replay");
        assert_eq!(check.expected, check.presented);
        assert!(check
            .detail
            .contains("PCR 0, 4, 7, 9 reproduced by 4 measured events"));
    }
    assert!(checks[0]
        .expected
        .starts_with("sha1 0="));
    assert!(checks[1]
        .expected
        .starts_with("sha256 0="));
    let verdict = verify_against_pcrs(&bytes, &pcrs, &[0, 4, 7, 9]);
    assert!(verdict.is_trusted(), "{verdict}");
    assert_eq!(verdict.checks.len(), 3);

    // Comparing fewer PCRs than the log extends says what is left out.
    let checks = check_against_pcrs(&log, &pcrs, &[0]);
    assert!(checks[0].ok);
    assert!(
        checks[0]
            .detail
            .contains("2 measured events in PCR 4, 7 were not compared"),
        "{}",
        checks[0]
    );

    // One quoted value changed: that bank fails and names the PCR.
    let mut changed = pcrs.clone();
    changed.insert(HashAlg::Sha256, 7, vec![0x77; 32]);
    let checks = check_against_pcrs(&log, &changed, &[0, 4, 7, 9]);
    assert!(checks[0].ok);
    assert!(!checks[1].ok);
    assert!(
        checks[1]
            .detail
            .starts_with("sha256 PCR 7: "),
        "{}",
        checks[1]
    );
    assert!(checks[1]
        .detail
        .contains(&"77".repeat(32)));
    assert!(checks[1]
        .detail
        .contains("1 of 4 PCRs differ (7)"));

    // A quote lacking a requested PCR, no indices, no values: failed checks.
    let checks = check_against_pcrs(&log, &pcrs, &[0, 12]);
    assert!(checks.iter().all(|c| !c.ok));
    assert!(checks[0].detail.contains("lack PCR 12"), "{}", checks[0]);
    let checks = check_against_pcrs(&log, &pcrs, &[]);
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);
    let checks = check_against_pcrs(&log, &PcrValues::default(), &[0]);
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);
    // An index no u8 PCR can have.
    let checks = check_against_pcrs(&log, &pcrs, &[0, 300]);
    assert!(checks.iter().all(|c| !c.ok));

    // A log that does not parse.
    let verdict = verify_against_pcrs(&bytes[..40], &pcrs, &[0]);
    assert!(!verdict.is_trusted());
    assert_eq!(verdict.checks.len(), 1);
    assert_eq!(verdict.first_failure().unwrap().step, "eventlog.parse");
}

/// UTF-16LE of `text`.
fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// `TCG_PCClientTaggedEvent` as the Linux EFI stub writes it.
fn tagged(id: u32, text: &[u8]) -> Vec<u8> {
    let mut out = le32(id).to_vec();
    out.extend(le32(text.len() as u32));
    out.extend(text);
    out
}

/// `UEFI_VARIABLE_DATA` for `name` with `data`.
fn efi_variable(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x61; 16];
    out.extend((name.encode_utf16().count() as u64).to_le_bytes());
    out.extend((data.len() as u64).to_le_bytes());
    out.extend(utf16le(name));
    out.extend(data);
    out
}

/// `UEFI_IMAGE_LOAD_EVENT` with a device path of a hard-drive node, two file-path nodes and
/// the end node.
fn image_load(parts: &[&str]) -> Vec<u8> {
    let node = |kind: u8, subtype: u8, body: &[u8]| {
        let mut n = vec![kind, subtype];
        n.extend(((body.len() + 4) as u16).to_le_bytes());
        n.extend(body);
        n
    };
    let mut path = node(4, 1, &[0; 38]);
    for part in parts {
        let mut body = utf16le(part);
        body.extend([0, 0]);
        path.extend(node(4, 4, &body));
    }
    path.extend(node(0x7f, 0xff, &[]));
    let mut out = vec![0; 24];
    out.extend((path.len() as u64).to_le_bytes());
    out.extend(path);
    out
}

#[test]
fn descriptions_name_tags_variables_images_and_text() {
    let cases: Vec<(EventType, Vec<u8>, &str)> = vec![
        (
            EventType::EVENT_TAG,
            tagged(0x8F3B_22ED, b"LOADED_IMAGE::LoadOptions\0"),
            "LOADED_IMAGE::LoadOptions",
        ),
        (
            EventType::EVENT_TAG,
            tagged(0x8F3B_22EC, b"Linux initrd\0"),
            "Linux initrd",
        ),
        (
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            efi_variable("SecureBoot", &[1]),
            "SecureBoot",
        ),
        (
            EventType::EFI_VARIABLE_BOOT,
            efi_variable("BootOrder", &[0, 0]),
            "BootOrder",
        ),
        (
            EventType::EFI_BOOT_SERVICES_APPLICATION,
            image_load(&["\\EFI\\BOOT", "\\BOOTX64.EFI"]),
            "\\EFI\\BOOT\\BOOTX64.EFI",
        ),
        (
            EventType::EFI_ACTION,
            b"Calling EFI Application from Boot Option".to_vec(),
            "Calling EFI Application from Boot Option",
        ),
        (
            EventType::S_CRTM_VERSION,
            [utf16le("1.0"), vec![0, 0]].concat(),
            "1.0",
        ),
        (
            EventType::EFI_PLATFORM_FIRMWARE_BLOB2,
            [vec![9], b"DXEFV\0\0\0\0".to_vec(), vec![0; 16]].concat(),
            "DXEFV",
        ),
        // Binary data: no description.
        (EventType::SEPARATOR, vec![0; 4], ""),
        (
            EventType::EFI_GPT_EVENT,
            vec![0x45, 0x46, 0x49, 0x00, 0xff],
            "",
        ),
        // Truncated structures: no description, no error.
        (EventType::EVENT_TAG, tagged(1, b"abc")[..9].to_vec(), ""),
        (
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            efi_variable("SecureBoot", &[1])[..40].to_vec(),
            "",
        ),
        (
            EventType::EFI_BOOT_SERVICES_APPLICATION,
            image_load(&["\\x"])[..30].to_vec(),
            "",
        ),
    ];
    for (event_type, data, want) in cases {
        assert_eq!(describe(event_type, &data), want, "{event_type}");
    }
    // Long text is cut.
    let long = vec![b'a'; 1000];
    assert_eq!(describe(EventType::IPL, &long).len(), MAX_DESCRIPTION);
    // A huge UnicodeNameLength does not overflow.
    let mut huge = vec![0; 16];
    huge.extend(u64::MAX.to_le_bytes());
    huge.extend(0u64.to_le_bytes());
    assert_eq!(describe(EventType::EFI_VARIABLE_BOOT, &huge), "");
}

#[test]
fn boot_events_list_pcrs_0_to_9_with_sha256_digests() {
    let mut bytes = header(&TWO);
    for (pcr, event_type, data) in EVENTS {
        bytes.extend(measure(pcr, event_type, &[SHA1, SHA256], data));
    }
    let load_options = tagged(0x8F3B_22ED, b"LOADED_IMAGE::LoadOptions\0");
    bytes.extend(event2(
        9,
        6,
        &[
            (SHA1, sha(SHA1, b"cmdline")),
            (SHA256, sha(SHA256, b"cmdline")),
        ],
        &load_options,
    ));
    bytes.extend(measure(14, 0xD, &[SHA1, SHA256], b"MokList"));
    let log = EventLog::parse(&bytes).unwrap();
    let events = log.boot_events().unwrap();
    // EV_NO_ACTION and PCR 14 are left out.
    assert_eq!(events.len(), 5);
    assert_eq!(
        events
            .iter()
            .map(|e| e.pcr)
            .collect::<Vec<_>>(),
        [0, 0, 7, 4, 9]
    );
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "EV_EVENT_TAG");
    assert_eq!(last.description, "LOADED_IMAGE::LoadOptions");
    assert_eq!(last.sha256, hex(sha(SHA256, b"cmdline")));
    assert_eq!(events[0].description, "firmware v1");
    // JSON shape.
    let json = serde_json::to_value(last).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "pcr": 9,
            "event_type": "EV_EVENT_TAG",
            "sha256": hex(sha(SHA256, b"cmdline")),
            "description": "LOADED_IMAGE::LoadOptions",
        })
    );

    // A legacy SHA-1 log has no SHA-256 digests to record.
    let legacy_log = legacy(0, 8, &[1; 20], b"v");
    assert_eq!(
        EventLog::parse(&legacy_log)
            .unwrap()
            .boot_events(),
        None
    );
}

#[test]
fn drtm_pcrs_start_from_all_ff() {
    let mut bytes = header(&TWO);
    for pcr in [16, 17, 22, 23] {
        bytes.extend(measure(pcr, 0x8000_0007, &[SHA1, SHA256], b"drtm"));
    }
    let log = EventLog::parse(&bytes).unwrap();
    for (alg, bank) in [(SHA1, HashAlg::Sha1), (SHA256, HashAlg::Sha256)] {
        let len = bank.digest_len();
        let digest = [sha(alg, b"drtm")];
        let replayed = log.replay(bank).unwrap();
        for pcr in 17..=22 {
            assert_eq!(log.initial_value(bank, pcr), vec![0xFF; len], "PCR {pcr}");
        }
        for pcr in [0, 16, 23] {
            assert_eq!(log.initial_value(bank, pcr), vec![0; len], "PCR {pcr}");
        }
        for pcr in [17, 22] {
            assert_eq!(replayed[&pcr], extend_chain(alg, vec![0xFF; len], &digest));
        }
        for pcr in [16, 23] {
            assert_eq!(replayed[&pcr], extend_chain(alg, vec![0; len], &digest));
        }
        // An index the log never extends keeps its initial value.
        assert_eq!(
            log.replay_selected(bank, &[18])
                .unwrap()[&18],
            vec![0xFF; len]
        );
        // The generic replay starts every index from zeros.
        assert_eq!(
            log.replay_from_zero(bank).unwrap()[&17],
            extend_chain(alg, vec![0; len], &digest)
        );
    }
}
