//! The TCG event-log parser and replayer against a real crypto-agile log: the firmware log of a
//! Google Compute Engine Shielded VM (go-tpm-tools test attestation), replayed into the PCRs its
//! three quotes carry; and that attestation's AK certificate against its AK.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use ratls::digest::HashAlg;
use ratls::eventlog::{self, EventLog, EventType, LogFormat};
use ratls::hexfmt::{decode, hex};
use ratls::tpm::structures::PublicKey;
use ratls::tpm::{PcrValues, Public};
use ratls::Verdict;
use ratls_test::{read_real, real_testdata, Mutations};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as X509PublicKey;

const GCE: &str = "tpm/gce-shielded-vm-go-tpm-tools";
const LOG: &str = "derived-eventlog.bin";
/// The PCRs the firmware log covers (PCR 10 is IMA, 17-22 are DRTM).
const FIRMWARE_PCRS: [u32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// SHA-256 values from the README.
const README_SHA256: [(u32, &str); 3] = [
    (
        0,
        "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf",
    ),
    (
        4,
        "d690bdac2aa8b73a1d718cb91990df07d0747b07ea57b3b2d0f0d511f0d90491",
    ),
    (
        7,
        "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793",
    ),
];

/// The quoted PCR values of the three quotes in `derived-quotes.json`, all banks together.
fn quoted(dir: &Path) -> PcrValues {
    let json: serde_json::Value =
        serde_json::from_slice(&read_real(dir, "derived-quotes.json")).unwrap();
    let mut pcrs = PcrValues::default();
    for quote in json["quotes"].as_array().unwrap() {
        let bank: HashAlg = quote["pcr_bank"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        for (index, value) in quote["pcrs"].as_object().unwrap() {
            pcrs.insert(
                bank,
                index.parse().unwrap(),
                decode(value.as_str().unwrap()).unwrap(),
            );
        }
    }
    pcrs
}

/// Replay written independently of the library: PCR := H(PCR || digest) over the events the
/// parser returned, skipping EV_NO_ACTION (type 3), every PCR from zeros.
fn independent_replay(log: &EventLog, bank: HashAlg, pcr: u32) -> Vec<u8> {
    let mut value = vec![0u8; bank.digest_len()];
    for event in log.events() {
        if event.pcr_index() != pcr || event.event_type().0 == 3 {
            continue;
        }
        let digest = event.digest(bank).unwrap();
        value = bank.digest(&[value.as_slice(), digest].concat());
    }
    value
}

/// The measured events as (index, digest per bank): what a matching replay authenticates.
fn measured(log: &EventLog) -> Vec<(u32, Vec<Option<Vec<u8>>>)> {
    log.events()
        .iter()
        .filter(|e| !e.event_type().is_no_action())
        .map(|e| {
            let digests = HashAlg::ALL
                .iter()
                .map(|&bank| e.digest(bank).map(<[u8]>::to_vec))
                .collect();
            (e.pcr_index(), digests)
        })
        .collect()
}

fn replay_checks(verdict: &Verdict) -> Vec<&ratls::Check> {
    verdict
        .checks
        .iter()
        .filter(|c| c.step == "eventlog.replay")
        .collect()
}

#[test]
fn gce_log_parses() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let bytes = read_real(&dir, LOG);
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format(), LogFormat::CryptoAgile);
    // The README's "44 events" are the TCG_PCR_EVENT2 events after the Spec ID event.
    assert_eq!(log.len(), 45);
    assert_eq!(log.events()[1..].len(), 44);
    assert_eq!(log.padding(), 0);
    assert_eq!(
        log.banks(),
        [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384]
    );
    let spec = log.spec_id().unwrap();
    assert_eq!(spec.platform_class, 0);
    assert_eq!(
        (
            spec.spec_version_major,
            spec.spec_version_minor,
            spec.spec_errata
        ),
        (2, 0, 0)
    );
    assert_eq!(spec.uintn_size, 2);
    assert!(spec.vendor_info.is_empty());
    let first = &log.events()[0];
    assert_eq!(first.event_type(), EventType::NO_ACTION);
    assert_eq!(first.pcr_index(), 0);
    assert!(first
        .data()
        .starts_with(b"Spec ID Event03\0"));
    assert_eq!(log.startup_locality(), None);
    // Every later event carries all three digests.
    for event in &log.events()[1..] {
        assert_eq!(event.digests().len(), 3, "event at {}", event.offset());
        for bank in log.banks() {
            assert_eq!(event.digest(bank).unwrap().len(), bank.digest_len());
        }
    }
    // The last event is the ExitBootServices EV_EFI_ACTION in PCR 5.
    let last = log.events().last().unwrap();
    assert_eq!(last.event_type(), EventType::EFI_ACTION);
    assert_eq!(last.pcr_index(), 5);
    assert_eq!(last.data(), b"Exit Boot Services Returned with Success");

    let summary = log.summary();
    assert_eq!(eventlog::inspect(&bytes).unwrap(), summary);
    assert_eq!(summary.format, "crypto-agile");
    assert_eq!(summary.events, 45);
    assert_eq!(summary.banks, ["sha1", "sha256", "sha384"]);
    assert_eq!(
        summary
            .event_types
            .values()
            .sum::<usize>(),
        45
    );
    assert_eq!(summary.event_types["EV_NO_ACTION"], 1);
    assert_eq!(summary.event_types["EV_IPL"], 16);
    assert_eq!(
        summary
            .events_per_index
            .values()
            .sum::<usize>(),
        44
    );
    assert_eq!(summary.event_types["EV_SEPARATOR"], 8, "{summary:?}");
    assert_eq!(
        summary
            .events_per_index
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        FIRMWARE_PCRS
    );
    assert_eq!(summary.replayed["sha256"][&0], README_SHA256[0].1);
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["format"], "crypto-agile");
    assert_eq!(json["replayed"]["sha256"]["4"], README_SHA256[1].1);
}

#[test]
fn gce_replay_reproduces_the_quoted_pcrs_in_all_banks() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let log = EventLog::parse(&read_real(&dir, LOG)).unwrap();
    let pcrs = quoted(&dir);
    assert_eq!(
        pcrs.banks
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384]
    );
    for (index, value) in README_SHA256 {
        assert_eq!(
            hex(pcrs
                .value(HashAlg::Sha256, index as u8)
                .unwrap()),
            value
        );
    }
    for bank in log.banks() {
        let replayed = log.replay(bank).unwrap();
        assert_eq!(
            replayed
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            FIRMWARE_PCRS,
            "{bank}"
        );
        for index in FIRMWARE_PCRS {
            let quote = pcrs.value(bank, index as u8).unwrap();
            assert_eq!(hex(&replayed[&index]), hex(quote), "{bank} PCR {index}");
            assert_eq!(independent_replay(&log, bank, index), quote);
        }
        // Without a StartupLocality event both replays agree.
        assert_eq!(log.replay_from_zero(bank).unwrap(), replayed);
        // PCRs 11-16 and 23 are untouched by the log and zero in the quote.
        let zero_pcrs: Vec<u32> = (11..=16).chain([23]).collect();
        let selected = log
            .replay_selected(bank, &zero_pcrs)
            .unwrap();
        for index in zero_pcrs {
            assert_eq!(selected[&index], vec![0; bank.digest_len()]);
            assert_eq!(
                pcrs.value(bank, index as u8).unwrap(),
                selected[&index].as_slice()
            );
        }
    }
    for (index, value) in README_SHA256 {
        assert_eq!(hex(&log.replay(HashAlg::Sha256).unwrap()[&index]), value);
    }

    // The verifier: one passing check per bank, PCR 0-9 and the zero PCRs together.
    let indices: Vec<u32> = FIRMWARE_PCRS
        .into_iter()
        .chain(11..=16)
        .chain([23])
        .collect();
    let verdict = eventlog::verify_against_pcrs(&read_real(&dir, LOG), &pcrs, &indices);
    assert!(verdict.is_trusted(), "{verdict}");
    assert!(verdict.passed("eventlog.parse"));
    assert_eq!(
        verdict
            .check("eventlog.parse")
            .unwrap()
            .presented,
        "crypto-agile log, 45 events"
    );
    let checks = replay_checks(&verdict);
    assert_eq!(checks.len(), 3);
    for (check, bank) in checks
        .iter()
        .zip(["sha1", "sha256", "sha384"])
    {
        assert!(check.expected.starts_with(bank), "{check}");
        assert_eq!(check.expected, check.presented);
        assert!(
            check
                .detail
                .contains("reproduced by 44 measured events"),
            "{check}"
        );
    }
    assert!(checks[1]
        .expected
        .contains(&format!("0={}", README_SHA256[0].1)));
    eprintln!("{verdict}");
}

#[test]
fn gce_pcrs_the_log_does_not_cover_fail() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let bytes = read_real(&dir, LOG);
    let pcrs = quoted(&dir);
    // PCR 10 is IMA, not firmware.
    let verdict = eventlog::verify_against_pcrs(&bytes, &pcrs, &[0, 10]);
    assert!(!verdict.is_trusted());
    for check in replay_checks(&verdict) {
        assert!(!check.ok);
        assert!(check.detail.contains("PCR 10: "), "{check}");
        assert!(
            check
                .detail
                .contains("1 of 2 PCRs differ"),
            "{check}"
        );
    }
    // PCR 17 resets to all ones (PC Client DRTM PCRs 17-22); the log does not touch it, and
    // replay starts it from all ones too, so the real quote's value agrees.
    assert_eq!(pcrs.value(HashAlg::Sha256, 17), Some(&[0xFF; 32][..]));
    let verdict = eventlog::verify_against_pcrs(&bytes, &pcrs, &[17]);
    assert!(verdict.is_trusted(), "{verdict}");
    // A bank the quote does not have: the quote lacks the values.
    let mut sha512 = PcrValues::default();
    sha512.insert(HashAlg::Sha512, 0, vec![0; 64]);
    let verdict = eventlog::verify_against_pcrs(&bytes, &sha512, &[0]);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "eventlog.replay");
    assert!(
        check
            .detail
            .contains("no sha512 digests"),
        "{check}"
    );
    // Nothing to compare.
    assert!(!eventlog::verify_against_pcrs(&bytes, &pcrs, &[]).is_trusted());
    assert!(!eventlog::verify_against_pcrs(&bytes, &PcrValues::default(), &[0]).is_trusted());
}

#[test]
fn gce_flipped_digest_fails_naming_the_pcr() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let bytes = read_real(&dir, LOG);
    let log = EventLog::parse(&bytes).unwrap();
    let pcrs = quoted(&dir);
    // The first measured PCR 4 event (the boot loader); flip one bit of its SHA-256 digest.
    let event = log
        .events()
        .iter()
        .find(|e| e.pcr_index() == 4 && e.event_type() == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    let digest = event.digest(HashAlg::Sha256).unwrap();
    let at = event.offset()
        + bytes[event.offset()..]
            .windows(32)
            .position(|w| w == digest)
            .unwrap();
    let mut tampered = bytes.clone();
    tampered[at + 7] ^= 0x10;

    let verdict = eventlog::verify_against_pcrs(&tampered, &pcrs, &FIRMWARE_PCRS);
    assert!(!verdict.is_trusted());
    assert!(verdict.passed("eventlog.parse"));
    let checks = replay_checks(&verdict);
    assert_eq!(checks.len(), 3);
    assert!(checks[0].ok, "sha1 is untouched: {}", checks[0]);
    assert!(checks[2].ok, "sha384 is untouched: {}", checks[2]);
    let failed = checks[1];
    assert!(!failed.ok);
    assert!(
        failed
            .detail
            .starts_with("sha256 PCR 4: the replayed event log gives"),
        "{failed}"
    );
    assert!(failed
        .detail
        .contains(&format!("the quote has {}", README_SHA256[1].1)));
    assert!(failed
        .detail
        .contains("1 of 10 PCRs differ (4)"));
    assert_ne!(failed.expected, failed.presented);
}

/// The AK certificate's RSA key is the AK: same modulus, same exponent.
#[test]
fn gce_ak_certificate_public_key_equals_the_ak() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let der = read_real(&dir, "derived-ak_cert.der");
    let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    let X509PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
        panic!("the AK certificate's key is not RSA");
    };
    let strip = |bytes: &[u8]| -> Vec<u8> {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len());
        bytes[start..].to_vec()
    };

    let ak = Public::parse(&read_real(&dir, "derived-ak_pub.tpmt")).unwrap();
    let PublicKey::Rsa {
        key_bits,
        exponent,
        modulus,
    } = &ak.key
    else {
        panic!("the AK is not RSA");
    };
    assert_eq!(*key_bits, 2048);
    assert_eq!(modulus.len(), 256);
    assert_eq!(strip(rsa.modulus), strip(modulus));
    // A TPM stores the default exponent 65537 as 0.
    let ak_exponent = if *exponent == 0 { 65_537 } else { *exponent };
    assert_eq!(strip(rsa.exponent), strip(&ak_exponent.to_be_bytes()));
    assert_eq!(strip(rsa.exponent), [0x01, 0x00, 0x01]);
    assert_eq!(
        hex(ak.name()),
        "000bf175bdb57297b2b289973f819863d6c9d09c236725676914f4248c9a2404c2a4"
    );
}

/// Every mutation of the real log is a typed parse error or a rejected verdict, unless the
/// measured events (index and digests, what the replay authenticates) are unchanged.
#[test]
fn gce_mutations_never_panic_and_never_trust_changed_measurements() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let bytes = read_real(&dir, LOG);
    let original = measured(&EventLog::parse(&bytes).unwrap());
    let pcrs = quoted(&dir);
    let mutations = Mutations::of(&bytes, 0xe7e1_7106, 2000);
    let (mut parsed, mut trusted, mut rejected) = (0usize, 0usize, 0usize);
    for (what, variant) in mutations.iter() {
        let log = EventLog::parse(variant);
        if let Ok(log) = &log {
            parsed += 1;
            for bank in HashAlg::ALL {
                let _ = log.replay(bank);
                let _ = log.replay_from_zero(bank);
                let _ = log.replay_selected(bank, &[0, 7, 23, u32::MAX]);
            }
            let _ = log.summary();
        }
        let verdict = eventlog::verify_against_pcrs(variant, &pcrs, &FIRMWARE_PCRS);
        if verdict.is_trusted() {
            trusted += 1;
            let log = log.unwrap_or_else(|e| panic!("{what}: trusted but does not parse: {e}"));
            assert_eq!(
                measured(&log),
                original,
                "{what}: trusted although the measured events changed"
            );
        } else {
            rejected += 1;
            assert!(verdict.first_failure().is_some(), "{what}");
        }
    }
    eprintln!(
        "{} mutations: {parsed} parsed, {trusted} trusted (measurements intact), {rejected} rejected",
        mutations.count()
    );
    assert!(rejected > mutations.count() / 2);
}

#[test]
fn gce_boot_events_name_variables_and_actions() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let log = EventLog::parse(&read_real(&dir, LOG)).unwrap();
    let events = log.boot_events().unwrap();
    // Every measured event of PCRs 0-9 (the log has none elsewhere), in log order.
    assert_eq!(events.len(), 44);
    assert!(events.iter().all(|e| e.pcr <= 9));
    let find = |pcr: u32, event_type: &str, description: &str| {
        events
            .iter()
            .find(|e| e.pcr == pcr && e.event_type == event_type && e.description == description)
            .unwrap_or_else(|| panic!("no PCR {pcr} {event_type} {description:?}"))
    };
    let crtm = find(0, "EV_S_CRTM_VERSION", "GCE Virtual Firmware v1");
    assert_eq!(
        crtm.sha256,
        "d0fcf11a32a8fbf5a4e1a58cd74dd2357d07e7503b5b6afd5a7989a98e17be7f"
    );
    for variable in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
        find(7, "EV_EFI_VARIABLE_DRIVER_CONFIG", variable);
    }
    find(1, "EV_EFI_VARIABLE_BOOT", "BootOrder");
    find(
        4,
        "EV_EFI_BOOT_SERVICES_APPLICATION",
        "\\EFI\\BOOT\\BOOTX64.EFI",
    );
    find(
        4,
        "EV_EFI_ACTION",
        "Calling EFI Application from Boot Option",
    );
    find(9, "EV_IPL", "/syslinux/vmlinuz.A");
    // Binary data: no description.
    assert!(events
        .iter()
        .filter(|e| e.event_type == "EV_SEPARATOR")
        .all(|e| e.description.is_empty()));
    // The digests are the log's sha256 digests.
    let separator = find(7, "EV_SEPARATOR", "");
    assert_eq!(separator.sha256, hex(HashAlg::Sha256.digest(&[0; 4])));
}

#[test]
fn gce_boot_aggregate_is_recomputed_from_the_quoted_pcrs() {
    // The README: boot_aggregate = SHA-256(sha256 PCR 0 || ... || PCR 9) = b804fd41...
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let pcrs = quoted(&dir);
    let aggregate =
        decode("b804fd412b3bafcecb5b7a7ec094706f660d12c0496d0e991d2cdbbcc2505aef").unwrap();
    let log = |digest: &[u8]| {
        let mut log = ratls::ima::Log::new(HashAlg::Sha1);
        log.push(
            10,
            ratls::ima::Template::ImaNg,
            Some("sha256"),
            digest,
            b"boot_aggregate",
            &[],
        )
        .unwrap();
        log.push(
            10,
            ratls::ima::Template::ImaNg,
            Some("sha256"),
            &[1; 32],
            b"/bin/init",
            &[],
        )
        .unwrap();
        log.to_binary()
    };
    let policy = ratls::ima::ImaPolicy::default();
    // The quote's own PCR 10 is another log's: only boot_aggregate is judged here.
    let quote = ratls::ima::ImaQuote::Present(&pcrs);
    let verdict = ratls::ima::verify_anchored(&log(&aggregate), None, quote, &policy);
    assert!(verdict.passed("ima.boot_aggregate"), "{verdict}");
    let check = verdict
        .check("ima.boot_aggregate")
        .unwrap();
    assert_eq!(check.expected, format!("sha256:{}", hex(&aggregate)));
    assert!(check.detail.contains("recomputed"), "{check}");
    let verdict = ratls::ima::verify_anchored(&log(&[0x42; 32]), None, quote, &policy);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.boot_aggregate");
    assert_eq!(check.expected, format!("sha256:{}", hex(&aggregate)));
    assert_eq!(check.presented, format!("sha256:{}", hex([0x42; 32])));
}
