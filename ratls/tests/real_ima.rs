//! The IMA verifier against real measurement logs: the IBM TSS vTPM log exported in each of the
//! four banks, and the one-entry log that reproduces PCR 10 of a GCE Shielded VM quote.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ratls::digest::HashAlg;
use ratls::hexfmt::{decode, hex};
use ratls::ima::{self, ImaClaims, ImaPolicy, Log, LogFormat, ReplayMode, Template};
use ratls::{Claims, Verdict};
use ratls_test::{read_real, real_testdata, Mutations};

const IBM: &str = "ima/ibmtss-vtpm-binary";
const GCE: &str = "tpm/gce-shielded-vm-go-tpm-tools";

const FILES: [(&str, HashAlg); 4] = [
    ("sha1.log", HashAlg::Sha1),
    ("sha256.log", HashAlg::Sha256),
    ("sha384.log", HashAlg::Sha384),
    ("sha512.log", HashAlg::Sha512),
];

/// PCR 10 per bank, from the README.
const EXPECTED: [(HashAlg, &str); 4] = [
    (HashAlg::Sha1, "9be6bac02bf18d09d17e726c2df00bca4e8831ea"),
    (
        HashAlg::Sha256,
        "7fac48c81837d6d29046008aef0cdad8c2745cc98c3340cbba9bfdf39b4124b8",
    ),
    (
        HashAlg::Sha384,
        "e8923687b18847064ff3af89fd7ed088fa03c8b2467f7f8648bab264684575beb92e707d813ed561189492bb4b6e5c8b",
    ),
    (
        HashAlg::Sha512,
        "698dab0fbb7c4ae0ec4ecae0d3890e9635cc2ba97b9dec459f9ef867b96d858843697c701e580931d6f2cf1e18acb2b3192eb660e871a37cf5b45392086ce807",
    ),
];

const BOOT_AGGREGATE: &str = "8c84a9518e30ce8b12c9c54f54d805808551efccb15728c9453343a802ef5257";

fn expected(bank: HashAlg) -> Vec<u8> {
    let (_, value) = EXPECTED
        .iter()
        .find(|(b, _)| *b == bank)
        .unwrap();
    decode(value).unwrap()
}

/// `imakvtpcr10.txt`: four lines ` PCR 10: 9b e6 …`, SHA-1 to SHA-512; the bank is the length.
fn known_good(dir: &std::path::Path) -> Vec<(HashAlg, Vec<u8>)> {
    let text = String::from_utf8(read_real(dir, "imakvtpcr10.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let hexes = line
                .trim()
                .strip_prefix("PCR 10:")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            let value = decode(hexes).unwrap();
            (HashAlg::from_len(value.len()).unwrap(), value)
        })
        .collect()
}

fn ima_claims(verdict: &Verdict) -> &ImaClaims {
    match &verdict.claims {
        Claims::Ima(claims) => claims,
        other => panic!("expected IMA claims, got {other:?}"),
    }
}

/// Replay written independently of the library: PCR := H(PCR || H(template data)), over the
/// first `count` entries (all `ima-sig`, so the template data is what the kernel hashed).
fn independent_replay(log: &Log, bank: HashAlg, count: usize) -> Vec<u8> {
    let mut pcr = vec![0u8; bank.digest_len()];
    for entry in &log.entries()[..count] {
        let digest = bank.digest(entry.template_data());
        pcr = bank.digest(&[pcr.as_slice(), &digest].concat());
    }
    pcr
}

#[test]
fn every_export_parses() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    for (file, bank) in FILES {
        let bytes = read_real(&dir, file);
        let log = Log::parse(&bytes).unwrap();
        assert_eq!(log.format(), LogFormat::Binary, "{file}");
        assert_eq!(log.template_hash_alg(), bank, "{file}");
        assert_eq!(log.len(), 362, "{file}");
        assert_eq!(log.pcr10_entries(), 362, "{file}");
        assert_eq!(log.violations(), 0, "{file}");
        assert!(log
            .entries()
            .iter()
            .all(|e| e.template() == Template::ImaSig && e.pcr() == 10));
        let signed = log
            .entries()
            .iter()
            .filter(|e| !e.signature().is_empty())
            .count();
        assert_eq!(signed, 21, "{file}");
        let first = &log.entries()[0];
        assert_eq!(first.path(), b"boot_aggregate");
        assert_eq!(first.file_digest_algo(), "sha256");
        assert_eq!(hex(first.file_digest()), BOOT_AGGREGATE);
        assert_eq!(log.entries()[361].path(), b"/etc/ima/ima-policy");
        // Every template hash verifies in the export's bank.
        for (i, entry) in log.entries().iter().enumerate() {
            assert!(entry.template_hash_matches(bank), "{file} entry {i}");
        }
        // Forcing the right size gives the same log; the binary re-encodes byte for byte.
        assert_eq!(Log::parse_binary(&bytes, Some(bank)).unwrap(), log);
        assert_eq!(log.to_binary(), bytes);
        // inspect gives the same claims.
        let claims = ima::inspect(&bytes).unwrap();
        assert_eq!(claims.entries, 362);
        assert_eq!(claims.templates, vec!["ima-sig".to_string()]);
        assert_eq!(claims.boot_aggregate.as_deref(), Some(BOOT_AGGREGATE));
        assert_eq!(claims.template_hash_alg, bank);
    }
}

#[test]
fn every_export_replays_into_every_bank() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    let known = known_good(&dir);
    assert_eq!(known.len(), 4);
    for (bank, value) in &known {
        assert_eq!(
            *value,
            expected(*bank),
            "imakvtpcr10.txt disagrees with the README"
        );
    }
    for (file, _) in FILES {
        let log = Log::parse(&read_real(&dir, file)).unwrap();
        let claims = ima::inspect(&read_real(&dir, file)).unwrap();
        for (bank, value) in &known {
            let replayed = log.replay(*bank, ReplayMode::PerBankTemplateHash);
            assert_eq!(hex(&replayed), hex(value), "{file} into {bank}");
            assert_eq!(independent_replay(&log, *bank, 362), *value);
            assert_eq!(claims.pcr10[bank.name()], hex(value));
            assert_eq!(
                log.match_prefix(*bank, ReplayMode::PerBankTemplateHash, value),
                Some(362)
            );
        }
    }
}

#[test]
fn verify_with_the_quoted_pcr10() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    for (file, _) in FILES {
        let bytes = read_real(&dir, file);
        for (bank, _) in EXPECTED {
            let verdict =
                ima::verify_bytes(&bytes, Some((bank, expected(bank))), &ImaPolicy::default());
            assert!(verdict.is_trusted(), "{file} {bank}: {verdict}");
            let replay = verdict.check("ima.replay").unwrap();
            assert_eq!(replay.expected, hex(expected(bank)));
            assert!(
                replay
                    .detail
                    .contains("362 of 362 entries are covered by the quote; 0 entries follow it"),
                "{}",
                replay.detail
            );
            assert!(replay
                .detail
                .contains("per-bank-template-hash"));
            let claims = ima_claims(&verdict);
            assert_eq!(claims.quote_prefix, Some(362));
            assert_eq!(claims.entries_after_quote, Some(0));
            assert_eq!(claims.quote_mode, Some(ReplayMode::PerBankTemplateHash));
            // No quote of PCRs 0-9 here: the name is checked and the value is reported,
            // said to be unanchored.
            let detail = &verdict
                .check("ima.boot_aggregate")
                .unwrap()
                .detail;
            assert!(
                detail.starts_with(&format!("sha256:{BOOT_AGGREGATE}; not anchored")),
                "{detail}"
            );
        }
    }
}

#[test]
fn quote_covering_the_first_100_entries() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    for (file, _) in FILES {
        let bytes = read_real(&dir, file);
        let log = Log::parse(&bytes).unwrap();
        for bank in HashAlg::ALL {
            let pcr10 = independent_replay(&log, bank, 100);
            assert_eq!(
                log.match_prefix(bank, ReplayMode::PerBankTemplateHash, &pcr10),
                Some(100)
            );
            let verdict =
                ima::verify_bytes(&bytes, Some((bank, pcr10.clone())), &ImaPolicy::default());
            assert!(verdict.is_trusted(), "{file} {bank}: {verdict}");
            let replay = verdict.check("ima.replay").unwrap();
            assert_eq!(replay.presented, hex(&pcr10));
            assert!(replay
                .detail
                .contains("100 of 362 entries are covered by the quote; 262 entries follow it"));
            let claims = ima_claims(&verdict);
            assert_eq!(claims.quote_prefix, Some(100));
            assert_eq!(claims.entries_after_quote, Some(262));
        }
    }
}

#[test]
fn wrong_pcr10_is_rejected_at_replay() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    let bytes = read_real(&dir, "sha256.log");
    let mut wrong = expected(HashAlg::Sha256);
    wrong[0] ^= 1;
    let verdict = ima::verify_bytes(
        &bytes,
        Some((HashAlg::Sha256, wrong.clone())),
        &ImaPolicy::default(),
    );
    assert!(!verdict.is_trusted());
    let failures: Vec<_> = verdict
        .failures()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(failures, ["ima.replay"]);
    let check = verdict.check("ima.replay").unwrap();
    assert_eq!(check.expected, hex(&wrong));
    assert_eq!(check.presented, hex(expected(HashAlg::Sha256)));
    assert_eq!(ima_claims(&verdict).quote_prefix, None);
    // A SHA-1 value quoted as SHA-256 (wrong length) is rejected too.
    let verdict = ima::verify_bytes(
        &bytes,
        Some((HashAlg::Sha256, expected(HashAlg::Sha1))),
        &ImaPolicy::default(),
    );
    assert_eq!(verdict.first_failure().unwrap().step, "ima.replay");
}

#[test]
fn changed_file_digest_is_rejected_at_template_hash() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    for (file, bank) in FILES {
        let bytes = read_real(&dir, file);
        let log = Log::parse(&bytes).unwrap();
        let target = 200;
        // Offset of entry 200's file digest: the entries before it, then its header (PCR,
        // template hash, name length, "ima-sig", data length), the d-ng length and "sha256:\0".
        let before: usize = log.entries()[..target]
            .iter()
            .map(|e| 4 + bank.digest_len() + 4 + 7 + 4 + e.template_data().len())
            .sum();
        let at = before + 4 + bank.digest_len() + 4 + 7 + 4 + 4 + 8;
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x80;
        let parsed = Log::parse(&tampered).unwrap();
        assert_ne!(
            parsed.entries()[target].file_digest(),
            log.entries()[target].file_digest()
        );
        let verdict = ima::verify_bytes(
            &tampered,
            Some((bank, expected(bank))),
            &ImaPolicy::default(),
        );
        assert!(!verdict.is_trusted());
        let check = verdict.first_failure().unwrap();
        assert_eq!(check.step, "ima.template_hash", "{file}");
        let path = log.entries()[target]
            .path_display()
            .to_string();
        assert!(
            check
                .detail
                .contains(&format!("entry {target} ({path})")),
            "{}",
            check.detail
        );
        assert!(check
            .detail
            .contains("1 of 362 entries are bad"));
        assert_eq!(check.presented, hex(log.entries()[target].template_hash()));
        assert_eq!(
            check.expected,
            hex(parsed.entries()[target].template_digest(bank))
        );
        // The replay no longer reaches the quoted value either.
        assert!(!verdict.passed("ima.replay"));
    }
}

#[test]
fn ascii_rendering_round_trips_and_replays() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    for (file, bank) in FILES {
        let bytes = read_real(&dir, file);
        let log = Log::parse(&bytes).unwrap();
        let ascii = log.to_ascii();
        let text = String::from_utf8(ascii.clone()).unwrap();
        assert_eq!(text.lines().count(), 362);
        assert!(text.starts_with(&format!(
            "10 {} ima-sig sha256:{BOOT_AGGREGATE} boot_aggregate \n",
            hex(log.entries()[0].template_hash())
        )));
        let back = Log::parse(&ascii).unwrap();
        assert_eq!(back.format(), LogFormat::Ascii);
        assert_eq!(back.template_hash_alg(), bank);
        assert_eq!(back.entries(), log.entries(), "{file}");
        assert_eq!(back.to_binary(), bytes);
        for (b, _) in EXPECTED {
            assert_eq!(back.replay(b, ReplayMode::PerBankTemplateHash), expected(b));
        }
        let verdict =
            ima::verify_bytes(&ascii, Some((bank, expected(bank))), &ImaPolicy::default());
        assert!(verdict.is_trusted(), "{file}: {verdict}");
        assert_eq!(ima_claims(&verdict).quote_prefix, Some(362));
    }
}

/// The one-entry `ima-ng` log that reproduces PCR 10 of the GCE Shielded VM quotes (an older
/// kernel: the SHA-1 template hash is extended into every bank, zero-padded).
#[test]
fn gce_legacy_boot_aggregate_log() {
    let Some(dir) = real_testdata(GCE) else {
        return;
    };
    let quotes: serde_json::Value =
        serde_json::from_slice(&read_real(&dir, "derived-quotes.json")).unwrap();
    let pcrs = |bank: &str| -> serde_json::Value {
        quotes["quotes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["pcr_bank"] == bank)
            .unwrap()["pcrs"]
            .clone()
    };
    let sha256 = pcrs("sha256");
    // boot_aggregate = SHA-256(SHA-256 PCR0 || ... || PCR9), from the quoted values.
    let concat: Vec<u8> = (0..10)
        .flat_map(|i| decode(sha256[i.to_string()].as_str().unwrap()).unwrap())
        .collect();
    let boot_aggregate = HashAlg::Sha256.digest(&concat);
    assert_eq!(
        hex(&boot_aggregate),
        "b804fd412b3bafcecb5b7a7ec094706f660d12c0496d0e991d2cdbbcc2505aef"
    );

    let mut log = Log::new(HashAlg::Sha1);
    let entry = log
        .push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &boot_aggregate,
            b"boot_aggregate",
            &[],
        )
        .unwrap();
    assert_eq!(
        hex(entry.template_hash()),
        "b7a5b41ff7cadc0f7834dc5f35667957879648a4"
    );
    let readme_sha1 = "e655831ad17eb698f57048a6bfdefdef3b62cc98";
    let readme_sha256 = "63b093fd26fd34dc09ec621ff349f1053145d559422f11dbce734b3b00b5d673";
    assert_eq!(
        hex(log.replay(HashAlg::Sha1, ReplayMode::Sha1Padded)),
        readme_sha1
    );
    assert_eq!(
        hex(log.replay(HashAlg::Sha256, ReplayMode::Sha1Padded)),
        readme_sha256
    );
    // The quoted PCR 10 of every bank (SHA-1, SHA-256, SHA-384) is reproduced, and verifies.
    // The log holds nothing past boot_aggregate (no IMA policy was loaded on that VM), which
    // `ima.coverage` refuses by default: `allow_empty` accepts it.
    let bytes = log.to_binary();
    let verdict = ima::verify_bytes(&bytes, None, &ImaPolicy::default());
    assert_eq!(verdict.first_failure().unwrap().step, "ima.coverage");
    let allow_empty = ImaPolicy {
        allow_empty: true,
        ..ImaPolicy::default()
    };
    for (name, bank) in [
        ("sha1", HashAlg::Sha1),
        ("sha256", HashAlg::Sha256),
        ("sha384", HashAlg::Sha384),
    ] {
        let quoted = decode(pcrs(name)["10"].as_str().unwrap()).unwrap();
        assert_eq!(log.replay(bank, ReplayMode::Sha1Padded), quoted, "{name}");
        let verdict = ima::verify_bytes(&bytes, Some((bank, quoted)), &allow_empty);
        assert!(verdict.is_trusted(), "{name}: {verdict}");
        let claims = ima_claims(&verdict);
        assert_eq!(claims.quote_prefix, Some(1));
        let mode = if bank == HashAlg::Sha1 {
            ReplayMode::PerBankTemplateHash
        } else {
            ReplayMode::Sha1Padded
        };
        assert_eq!(claims.quote_mode, Some(mode));
    }
    assert_eq!(pcrs("sha1")["10"], readme_sha1);
    assert_eq!(pcrs("sha256")["10"], readme_sha256);
}

/// Every mutation of a real log is a typed parse error or a rejected verdict; a trusted verdict
/// is only possible when the quoted prefix (the original log) is intact.
#[test]
fn mutations_never_panic_and_never_pass() {
    let Some(dir) = real_testdata(IBM) else {
        return;
    };
    let bytes = read_real(&dir, "sha256.log");
    let log = Log::parse(&bytes).unwrap();
    // The ASCII sample is the first 100 entries (to keep the debug-build run short), quoted at
    // entry 100.
    let ascii_head = {
        let text = log.to_ascii();
        let end = text
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(99)
            .unwrap()
            .0;
        text[..=end].to_vec()
    };
    let head = Log::parse(&ascii_head).unwrap();
    assert_eq!(head.len(), 100);
    let samples = [
        (bytes.clone(), expected(HashAlg::Sha256), 0x1a2b_3c4d),
        (
            ascii_head,
            head.replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash),
            0x5e6f_7081,
        ),
    ];
    let policy = ImaPolicy::default();
    for (sample, pcr10, seed) in samples {
        let quote = Some((HashAlg::Sha256, pcr10));
        let mut trusted = 0;
        for (description, variant) in Mutations::of(&sample, seed, 2000).iter() {
            let _ = Log::parse(variant);
            let _ = Log::parse_binary(variant, Some(HashAlg::Sha256));
            let _ = Log::parse_ascii(variant);
            let verdict = ima::verify_bytes(variant, quote.clone(), &policy);
            if verdict.is_trusted() {
                // The log may run ahead of the quote: accept only an intact covered prefix.
                assert!(
                    variant.starts_with(&sample),
                    "{description}: trusted although the covered entries changed"
                );
                if variant != sample.as_slice() {
                    trusted += 1;
                }
            } else if verdict.checks.is_empty() {
                panic!("{description}: rejected without a check");
            }
        }
        // Besides overwrites that left the bytes unchanged, only "sample repeated" keeps the
        // original log as a prefix.
        assert!(trusted <= 1, "{trusted} changed variants trusted");
    }
}
