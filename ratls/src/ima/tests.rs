use super::*;
use crate::codec::ParseError;
use crate::hexfmt::hex;
use crate::verdict::Claims;

const BOOT_DIGEST: [u8; 32] = [0x11; 32];

/// u32 little-endian length, then the bytes.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

fn dng(algo: &str, digest: &[u8]) -> Vec<u8> {
    let mut v = algo.as_bytes().to_vec();
    v.extend_from_slice(b":\0");
    v.extend_from_slice(digest);
    field(&v)
}

fn nng(path: &[u8]) -> Vec<u8> {
    let mut v = path.to_vec();
    v.push(0);
    field(&v)
}

/// Template data of an ima-ng entry.
fn ng_data(algo: &str, digest: &[u8], path: &[u8]) -> Vec<u8> {
    [dng(algo, digest), nng(path)].concat()
}

/// A binary entry for a non-legacy template.
fn binary_entry(pcr: u32, hash: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = pcr.to_le_bytes().to_vec();
    out.extend_from_slice(hash);
    out.extend(field(name.as_bytes()));
    out.extend(field(data));
    out
}

/// A binary ima-ng entry whose template hash is correct in `alg`.
fn ng_entry(alg: HashAlg, digest: &[u8], path: &[u8]) -> Vec<u8> {
    let data = ng_data("sha256", digest, path);
    binary_entry(10, &alg.digest(&data), "ima-ng", &data)
}

/// A legacy `ima` entry (no template-data length), hashed as the kernel does: digest, then the
/// name zero-padded to 256 bytes.
fn legacy_entry(digest: &[u8; 20], name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut padded = name.to_vec();
    padded.resize(256, 0);
    let hash = HashAlg::Sha1.digest_all([digest.as_slice(), &padded]);
    let mut out = 10u32.to_le_bytes().to_vec();
    out.extend_from_slice(&hash);
    out.extend(field(b"ima"));
    out.extend_from_slice(digest);
    out.extend(field(name));
    (out, hash)
}

fn extend(bank: HashAlg, pcr: &[u8], digest: &[u8]) -> Vec<u8> {
    bank.digest_all([pcr, digest])
}

fn boot_log(alg: HashAlg) -> Vec<u8> {
    ng_entry(alg, &BOOT_DIGEST, b"boot_aggregate")
}

#[test]
fn ima_ng_entry_parses_and_verifies() {
    let mut bytes = boot_log(HashAlg::Sha1);
    bytes.extend(ng_entry(HashAlg::Sha1, &[0x22; 32], b"/usr/bin/ls"));
    let log = Log::parse_binary(&bytes, None).unwrap();
    assert_eq!(log.template_hash_alg(), HashAlg::Sha1);
    assert_eq!(log.format(), LogFormat::Binary);
    assert_eq!(log.len(), 2);
    let e = &log.entries()[1];
    assert_eq!(e.pcr(), 10);
    assert_eq!(e.template(), Template::ImaNg);
    assert_eq!(e.template_name(), "ima-ng");
    assert_eq!(e.file_digest_algo(), "sha256");
    assert!(e.has_algo_prefix());
    assert_eq!(e.file_digest(), &[0x22; 32]);
    assert_eq!(e.path(), b"/usr/bin/ls");
    assert!(e.signature().is_empty() && e.buf().is_empty());
    assert!(!e.is_violation());
    assert!(e.template_hash_matches(HashAlg::Sha1));
    assert_eq!(
        e.template_data(),
        ng_data("sha256", &[0x22; 32], b"/usr/bin/ls").as_slice()
    );
    // Replay: H_bank(template data) per bank.
    for bank in HashAlg::ALL {
        let mut pcr = vec![0; bank.digest_len()];
        for entry in log.entries() {
            pcr = extend(bank, &pcr, &bank.digest(entry.template_data()));
        }
        assert_eq!(log.replay(bank, ReplayMode::PerBankTemplateHash), pcr);
    }
    assert_eq!(log.to_binary(), bytes);
}

#[test]
fn ima_sig_and_ima_buf_entries() {
    let sig = [0x03, 0x02, 0x04, 0xaa, 0xbb];
    let sig_data = [dng("sha512", &[0x33; 64]), nng(b"/etc/x"), field(&sig)].concat();
    let nosig_data = [dng("sha256", &[0x34; 32]), nng(b"/etc/y"), field(&[])].concat();
    let buf_data = [
        dng("sha256", &[0x44; 32]),
        nng(b"kexec-cmdline"),
        field(b"root=/dev/sda1 ro"),
    ]
    .concat();
    let alg = HashAlg::Sha256;
    let mut bytes = boot_log(alg);
    bytes.extend(binary_entry(
        10,
        &alg.digest(&sig_data),
        "ima-sig",
        &sig_data,
    ));
    bytes.extend(binary_entry(
        10,
        &alg.digest(&nosig_data),
        "ima-sig",
        &nosig_data,
    ));
    bytes.extend(binary_entry(
        10,
        &alg.digest(&buf_data),
        "ima-buf",
        &buf_data,
    ));
    let log = Log::parse_binary(&bytes, None).unwrap();
    assert_eq!(log.template_hash_alg(), HashAlg::Sha256);
    let [_, s, n, b] = log.entries() else {
        panic!("4 entries expected")
    };
    assert_eq!(s.template(), Template::ImaSig);
    assert_eq!(s.signature(), &sig);
    assert_eq!(s.file_digest_algo(), "sha512");
    assert_eq!(s.file_digest().len(), 64);
    assert!(n.signature().is_empty());
    assert_eq!(b.template(), Template::ImaBuf);
    assert_eq!(b.buf(), b"root=/dev/sda1 ro");
    assert_eq!(b.path(), b"kexec-cmdline");
    assert!(b.signature().is_empty());
    assert!(log
        .entries()
        .iter()
        .all(|e| e.template_hash_matches(alg)));
    let verdict = verify_bytes(&bytes, None, &ImaPolicy::default());
    assert!(verdict.is_trusted(), "{verdict}");
    assert_eq!(log.to_binary(), bytes);
}

#[test]
fn legacy_ima_template_hashes_padded_name() {
    let (boot, _) = legacy_entry(&[0x55; 20], b"boot_aggregate");
    let (entry, hash) = legacy_entry(&[0x66; 20], b"/sbin/init");
    let bytes = [boot, entry].concat();
    let log = Log::parse_binary(&bytes, None).unwrap();
    assert_eq!(log.template_hash_alg(), HashAlg::Sha1);
    let e = &log.entries()[1];
    assert_eq!(e.template(), Template::Ima);
    assert_eq!(e.file_digest(), &[0x66; 20]);
    assert_eq!(e.file_digest_algo(), "sha1");
    assert!(!e.has_algo_prefix());
    assert_eq!(e.path(), b"/sbin/init");
    assert_eq!(e.template_hash(), hash.as_slice());
    assert_eq!(e.template_digest(HashAlg::Sha1), hash);
    // Other banks hash the same padded input.
    let mut padded = b"/sbin/init".to_vec();
    padded.resize(256, 0);
    assert_eq!(
        e.template_digest(HashAlg::Sha256),
        HashAlg::Sha256.digest_all([[0x66u8; 20].as_slice(), &padded])
    );
    // A 255-byte name pads with a single NUL; 256 bytes is too long.
    let (long, _) = legacy_entry(&[0x77; 20], &[b'a'; 255]);
    let log = Log::parse_binary(&long, None).unwrap();
    assert!(log.entries()[0].template_hash_matches(HashAlg::Sha1));
    let mut too_long = long.clone();
    let len_at = 4 + 20 + 4 + 3 + 20;
    too_long[len_at..len_at + 4].copy_from_slice(&256u32.to_le_bytes());
    too_long.push(b'a');
    assert!(matches!(
        Log::parse_binary(&too_long, Some(HashAlg::Sha1)),
        Err(ParseError::TooLarge { limit: 255, .. })
    ));
    // Binary and ASCII round trips.
    assert_eq!(log.to_binary(), long);
    let ascii = Log::parse_ascii(&log.to_ascii()).unwrap();
    assert_eq!(ascii.entries(), log.entries());
    let legacy = Log::parse_binary(&bytes, None).unwrap();
    let text = String::from_utf8(legacy.to_ascii()).unwrap();
    assert!(text.contains(&format!(" ima {} /sbin/init\n", hex([0x66; 20]))));
}

#[test]
fn violation_extends_all_ff() {
    let alg = HashAlg::Sha256;
    let boot = boot_log(alg);
    let data = ng_data("sha256", &[0; 32], b"/var/log/x");
    let violation = binary_entry(10, &[0; 32], "ima-ng", &data);
    let bytes = [boot.clone(), violation].concat();
    let log = Log::parse_binary(&bytes, None).unwrap();
    assert_eq!(log.template_hash_alg(), HashAlg::Sha256);
    assert_eq!(log.violations(), 1);
    assert!(log.entries()[1].is_violation());
    assert!(!log.entries()[1].template_hash_matches(alg));
    let boot_data = ng_data("sha256", &BOOT_DIGEST, b"boot_aggregate");
    for bank in HashAlg::ALL {
        let len = bank.digest_len();
        let zero = vec![0; len];
        let per_bank = extend(
            bank,
            &extend(bank, &zero, &bank.digest(&boot_data)),
            &vec![0xff; len],
        );
        assert_eq!(log.replay(bank, ReplayMode::PerBankTemplateHash), per_bank);
        let mut sha1 = HashAlg::Sha1.digest(&boot_data);
        sha1.resize(len, 0);
        let mut ff = vec![0xff; 20];
        ff.resize(len, 0);
        let padded = extend(bank, &extend(bank, &zero, &sha1), &ff);
        assert_eq!(log.replay(bank, ReplayMode::Sha1Padded), padded);
    }
    let pcr10 = log.replay(alg, ReplayMode::PerBankTemplateHash);
    let verdict = verify_bytes(&bytes, Some((alg, pcr10.clone())), &ImaPolicy::default());
    assert!(!verdict.is_trusted());
    assert_eq!(verdict.first_failure().unwrap().step, "ima.violations");
    assert!(verdict.passed("ima.template_hash"));
    assert!(verdict.passed("ima.replay"));
    let lenient = ImaPolicy {
        allow_violations: true,
        ..ImaPolicy::default()
    };
    let verdict = verify_bytes(&bytes, Some((alg, pcr10)), &lenient);
    assert!(verdict.is_trusted(), "{verdict}");
    let Claims::Ima(claims) = &verdict.claims else {
        panic!("ima claims expected")
    };
    assert_eq!(claims.violations, 1);
    // Builder: the same log.
    let mut built = Log::new(alg);
    built
        .push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &BOOT_DIGEST,
            b"boot_aggregate",
            &[],
        )
        .unwrap();
    built
        .push_violation(10, Template::ImaNg, Some("sha256"), &[0; 32], b"/var/log/x")
        .unwrap();
    assert_eq!(built.to_binary(), bytes);
}

#[test]
fn path_with_newline_in_binary_log() {
    let alg = HashAlg::Sha1;
    let bytes = [
        boot_log(alg),
        ng_entry(
            alg,
            &[0x99; 32],
            b"/tmp/evil\n10 0000 ima-ng sha256:00 /bin/sh",
        ),
    ]
    .concat();
    let log = Log::parse(&bytes).unwrap();
    let e = &log.entries()[1];
    assert_eq!(e.path(), b"/tmp/evil\n10 0000 ima-ng sha256:00 /bin/sh");
    assert_eq!(
        e.path_display().to_string(),
        "/tmp/evil\\n10 0000 ima-ng sha256:00 /bin/sh"
    );
    assert!(e.template_hash_matches(alg));
    assert!(verify_bytes(&bytes, None, &ImaPolicy::default()).is_trusted());
    // The ASCII rendering cannot carry it: the second half of the line does not parse.
    assert!(Log::parse_ascii(&log.to_ascii()).is_err());
    assert_eq!(
        Escaped(b"a\\b\t\xff\x01").to_string(),
        "a\\\\b\\t\\xff\\x01"
    );
}

#[test]
fn ascii_parse_of_each_template() {
    let alg = HashAlg::Sha1;
    let boot = ng_data("sha256", &BOOT_DIGEST, b"boot_aggregate");
    let sig = [
        dng("sha256", &[0x12; 32]),
        nng(b"/usr/lib/libc.so"),
        field(&[3, 2, 1]),
    ]
    .concat();
    let nosig = [dng("sha256", &[0x13; 32]), nng(b"/etc/hosts"), field(&[])].concat();
    let buf = [
        dng("sha256", &[0x14; 32]),
        nng(b"kexec-cmdline"),
        field(b"ro quiet"),
    ]
    .concat();
    let mut padded = b"/init".to_vec();
    padded.resize(256, 0);
    let legacy_hash = HashAlg::Sha1.digest_all([[0x15u8; 20].as_slice(), &padded]);
    let text = format!(
        "10 {} ima-ng sha256:{} boot_aggregate\n\
         10 {} ima-sig sha256:{} /usr/lib/libc.so 030201\n\
         10 {} ima-sig sha256:{} /etc/hosts \n\
         10 {} ima-buf sha256:{} kexec-cmdline {}\n\
         10 {} ima {} /init\n",
        hex(alg.digest(&boot)),
        hex(BOOT_DIGEST),
        hex(alg.digest(&sig)),
        hex([0x12; 32]),
        hex(alg.digest(&nosig)),
        hex([0x13; 32]),
        hex(alg.digest(&buf)),
        hex([0x14; 32]),
        hex(b"ro quiet"),
        hex(&legacy_hash),
        hex([0x15; 20]),
    );
    let log = Log::parse(text.as_bytes()).unwrap();
    assert_eq!(log.format(), LogFormat::Ascii);
    assert_eq!(log.template_hash_alg(), HashAlg::Sha1);
    assert_eq!(log.len(), 5);
    let e = log.entries();
    assert_eq!(e[0].template_data(), boot.as_slice());
    assert_eq!(e[1].template_data(), sig.as_slice());
    assert_eq!(e[1].signature(), &[3, 2, 1]);
    assert_eq!(e[2].template_data(), nosig.as_slice());
    assert_eq!(e[2].path(), b"/etc/hosts");
    assert_eq!(e[3].buf(), b"ro quiet");
    assert_eq!(e[4].template(), Template::Ima);
    assert_eq!(e[4].path(), b"/init");
    assert!(e
        .iter()
        .all(|e| e.template_hash_matches(alg)));
    // The renderer writes exactly what we parsed.
    assert_eq!(log.to_ascii(), text.as_bytes());
    let verdict = verify_bytes(text.as_bytes(), None, &ImaPolicy::default());
    assert!(verdict.is_trusted(), "{verdict}");
    assert!(verdict
        .check("ima.template_hash")
        .unwrap()
        .detail
        .contains("ASCII"));
    // Tolerated: stripped trailing space (no sig), PCR right-aligned.
    let stripped = format!(
        " 9 {} ima-sig sha256:{} /etc/hosts\n",
        hex(alg.digest(&nosig)),
        hex([0x13; 32])
    );
    let log = Log::parse_ascii(stripped.as_bytes()).unwrap();
    assert_eq!(log.entries()[0].pcr(), 9);
    assert!(log.entries()[0].template_hash_matches(alg));
    // Not tolerated: a missing final newline (a cut log), blank lines, upper-case hex.
    assert!(matches!(
        Log::parse_ascii(stripped.trim_end().as_bytes()),
        Err(ParseError::InvalidValue {
            field: "line end",
            ..
        })
    ));
    assert!(Log::parse_ascii(format!("{text}\n").as_bytes()).is_err());
    assert!(Log::parse_ascii(b"\n").is_err());
    assert!(Log::parse_ascii(b"")
        .unwrap()
        .is_empty());
    assert!(Log::parse_ascii(
        text.to_uppercase()
            .replace("IMA", "ima")
            .as_bytes()
    )
    .is_err());
    // Mixed template-hash sizes are rejected.
    let mixed = format!(
        "{text}10 {} ima-ng sha256:{} /x\n",
        hex([1u8; 32]),
        hex([2u8; 32])
    );
    assert!(matches!(
        Log::parse_ascii(mixed.as_bytes()),
        Err(ParseError::InvalidValue {
            field: "template hash",
            ..
        })
    ));
}

#[test]
fn unsupported_template_is_named() {
    let data = ng_data("sha256", &[1; 32], b"/x");
    let mut bytes = boot_log(HashAlg::Sha256);
    bytes.extend(binary_entry(10, &[7; 32], "ima-modsig", &data));
    for result in [
        Log::parse_binary(&bytes, None),
        Log::parse_binary(&bytes, Some(HashAlg::Sha256)),
        Log::parse(&bytes),
    ] {
        match result {
            Err(ParseError::Unsupported {
                field, presented, ..
            }) => {
                assert_eq!(field, "template name");
                assert_eq!(presented, "ima-modsig");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    let err = Log::parse_ascii(
        format!(
            "10 {} ima-ngv2 ima:sha256:{} /x\n",
            hex([1; 20]),
            hex([2; 32])
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ima-ngv2"));
    let verdict = verify_bytes(&bytes, None, &ImaPolicy::default());
    assert!(!verdict.is_trusted());
    assert_eq!(verdict.first_failure().unwrap().step, "ima.parse");
    assert!(verdict
        .first_failure()
        .unwrap()
        .detail
        .contains("ima-modsig"));
}

#[test]
fn truncated_entries_are_errors() {
    let first = boot_log(HashAlg::Sha256);
    let bytes = [
        first.clone(),
        ng_entry(HashAlg::Sha256, &[3; 32], b"/bin/true"),
    ]
    .concat();
    for cut in 0..bytes.len() {
        let result = Log::parse_binary(&bytes[..cut], Some(HashAlg::Sha256));
        if cut == 0 || cut == first.len() {
            assert!(result.is_ok(), "cut {cut}");
        } else {
            assert!(result.is_err(), "cut {cut} parsed");
        }
        // Auto-detection never panics either.
        let _ = Log::parse(&bytes[..cut]);
    }
    let (legacy, _) = legacy_entry(&[1; 20], b"/x");
    for cut in 1..legacy.len() {
        assert!(Log::parse_binary(&legacy[..cut], Some(HashAlg::Sha1)).is_err());
    }
}

#[test]
fn caps_and_invalid_values() {
    let alg = HashAlg::Sha1;
    // PCR out of range.
    let mut bad_pcr = boot_log(alg);
    bad_pcr[0] = 24;
    assert!(matches!(
        Log::parse_binary(&bad_pcr, Some(alg)),
        Err(ParseError::InvalidValue {
            field: "PCR index",
            ..
        })
    ));
    // Template-name length.
    let mut long_name = 10u32.to_le_bytes().to_vec();
    long_name.extend_from_slice(&[0; 20]);
    long_name.extend_from_slice(&256u32.to_le_bytes());
    long_name.extend(vec![b'a'; 256]);
    assert!(matches!(
        Log::parse_binary(&long_name, Some(alg)),
        Err(ParseError::TooLarge {
            field: "template name",
            ..
        })
    ));
    // Template-data length over 1 MiB.
    let mut huge = 10u32.to_le_bytes().to_vec();
    huge.extend_from_slice(&[1; 20]);
    huge.extend(field(b"ima-ng"));
    huge.extend_from_slice(&((1u32 << 20) + 1).to_le_bytes());
    assert!(matches!(
        Log::parse_binary(&huge, Some(alg)),
        Err(ParseError::TooLarge {
            field: "template data",
            ..
        })
    ));
    // A path over 4096 bytes.
    let data = ng_data("sha256", &[1; 32], &vec![b'p'; 4097]);
    let long_path = binary_entry(10, &alg.digest(&data), "ima-ng", &data);
    assert!(matches!(
        Log::parse_binary(&long_path, Some(alg)),
        Err(ParseError::TooLarge { field: "n-ng", .. })
    ));
    // n-ng without NUL terminator, and trailing bytes in template data.
    let data = [dng("sha256", &[1; 32]), field(b"/x")].concat();
    let unterminated = binary_entry(10, &alg.digest(&data), "ima-ng", &data);
    assert!(matches!(
        Log::parse_binary(&unterminated, Some(alg)),
        Err(ParseError::InvalidValue { field: "n-ng", .. })
    ));
    let data = [ng_data("sha256", &[1; 32], b"/x"), vec![0]].concat();
    let trailing = binary_entry(10, &alg.digest(&data), "ima-ng", &data);
    assert!(matches!(
        Log::parse_binary(&trailing, Some(alg)),
        Err(ParseError::TrailingBytes { .. })
    ));
    // A non-printable template name is invalid, not "unsupported".
    let mut garbage = 10u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[1; 20]);
    garbage.extend(field(b"\x01\x02"));
    assert!(matches!(
        Log::parse_binary(&garbage, Some(alg)),
        Err(ParseError::InvalidValue {
            field: "template name",
            ..
        })
    ));
    // Builder checks.
    let mut log = Log::new(alg);
    assert!(log
        .push(10, Template::Ima, None, &[0; 32], b"/x", &[])
        .is_err());
    assert!(log
        .push(10, Template::Ima, Some("sha1"), &[0; 20], b"/x", &[])
        .is_err());
    assert!(log
        .push(24, Template::ImaNg, Some("sha256"), &[0; 32], b"/x", &[])
        .is_err());
    assert!(log
        .push(10, Template::ImaNg, Some("sha256"), &[0; 32], b"/x\0y", &[])
        .is_err());
    assert!(log.is_empty());
}

#[test]
fn bare_dng_digest_is_sha1() {
    let alg = HashAlg::Sha1;
    let data = [field(&[0xab; 20]), nng(b"boot_aggregate")].concat();
    let bytes = binary_entry(10, &alg.digest(&data), "ima-ng", &data);
    let log = Log::parse(&bytes).unwrap();
    let e = &log.entries()[0];
    assert!(!e.has_algo_prefix());
    assert_eq!(e.file_digest_algo(), "sha1");
    assert_eq!(e.file_digest(), &[0xab; 20]);
    let again = Log::parse_ascii(&log.to_ascii()).unwrap();
    assert_eq!(again.entries(), log.entries());
    // A bare digest of another size is invalid.
    let data = [field(&[0xab; 32]), nng(b"x")].concat();
    let bytes = binary_entry(10, &alg.digest(&data), "ima-ng", &data);
    assert!(matches!(
        Log::parse_binary(&bytes, Some(alg)),
        Err(ParseError::InvalidValue { field: "d-ng", .. })
    ));
}

#[test]
fn detection_prefers_sizes_that_parse_and_verify() {
    for alg in HashAlg::ALL {
        let bytes = [boot_log(alg), ng_entry(alg, &[5; 32], b"/bin/x")].concat();
        let log = Log::parse(&bytes).unwrap();
        assert_eq!(log.template_hash_alg(), alg);
        // Forcing another size fails.
        for other in HashAlg::ALL {
            if other != alg {
                assert!(Log::parse_binary(&bytes, Some(other)).is_err());
            }
        }
    }
    // An empty log parses (and is then rejected by verification).
    let empty = Log::parse(&[]).unwrap();
    assert!(empty.is_empty());
    let verdict = verify_bytes(&[], None, &ImaPolicy::default());
    assert!(!verdict.is_trusted());
    assert_eq!(verdict.first_failure().unwrap().step, "ima.boot_aggregate");
}

#[test]
fn match_prefix_counts_pcr10_entries_only() {
    let alg = HashAlg::Sha256;
    let mut log = Log::new(alg);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &BOOT_DIGEST,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    log.push(
        11,
        Template::ImaNg,
        Some("sha256"),
        &[1; 32],
        b"/other-pcr",
        &[],
    )
    .unwrap();
    for i in 0..5u8 {
        log.push(10, Template::ImaNg, Some("sha256"), &[i; 32], b"/f", &[])
            .unwrap();
    }
    assert_eq!(log.pcr10_entries(), 6);
    for mode in ReplayMode::ALL {
        for bank in HashAlg::ALL {
            for n in 0..=6 {
                let value = log.replay_prefix(bank, mode, n);
                assert_eq!(log.match_prefix(bank, mode, &value), Some(n));
            }
            assert_eq!(log.replay_prefix(bank, mode, 6), log.replay(bank, mode));
            assert_eq!(
                log.match_prefix(bank, mode, &vec![0x42; bank.digest_len()]),
                None
            );
            assert_eq!(log.match_prefix(bank, mode, &[0; 3]), None);
        }
    }
    // PCR 11 replays on its own.
    let e = &log.entries()[1];
    assert_eq!(
        log.replay_pcr(11, alg, ReplayMode::PerBankTemplateHash),
        extend(alg, &[0; 32], &alg.digest(e.template_data()))
    );
    let bytes = log.to_binary();
    let quote = log.replay_prefix(alg, ReplayMode::PerBankTemplateHash, 4);
    let verdict = verify_bytes(&bytes, Some((alg, quote)), &ImaPolicy::default());
    assert!(verdict.is_trusted(), "{verdict}");
    let replay = verdict.check("ima.replay").unwrap();
    assert!(replay
        .detail
        .contains("4 of 6 entries are covered by the quote; 2 entries follow it"));
    assert!(replay
        .detail
        .contains("1 entries for other PCRs"));
    let Claims::Ima(claims) = &verdict.claims else {
        panic!()
    };
    assert_eq!(claims.entries, 7);
    assert_eq!(claims.other_pcr_entries, 1);
    assert_eq!(claims.quote_prefix, Some(4));
    assert_eq!(claims.entries_after_quote, Some(2));
    assert_eq!(claims.quote_mode, Some(ReplayMode::PerBankTemplateHash));
    assert_eq!(claims.templates, vec!["ima-ng".to_string()]);
    assert_eq!(claims.boot_aggregate, Some(hex(BOOT_DIGEST)));
    assert_eq!(
        claims.pcr10["sha384"],
        hex(log.replay(HashAlg::Sha384, ReplayMode::PerBankTemplateHash))
    );
}

#[test]
fn verify_replay_outcomes() {
    let alg = HashAlg::Sha1;
    let mut log = Log::new(alg);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &BOOT_DIGEST,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    log.push(
        10,
        Template::ImaSig,
        Some("sha256"),
        &[9; 32],
        b"/bin/y",
        &[3, 1],
    )
    .unwrap();
    let bytes = log.to_binary();
    let policy = ImaPolicy::default();

    // No quote: passes, says it is not anchored.
    let verdict = verify_bytes(&bytes, None, &policy);
    assert!(verdict.is_trusted());
    assert!(verdict
        .check("ima.replay")
        .unwrap()
        .detail
        .contains("not anchored"));
    let names: Vec<_> = verdict
        .checks
        .iter()
        .map(|c| c.step.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ima.parse",
            "ima.template_hash",
            "ima.violations",
            "ima.boot_aggregate",
            "ima.coverage",
            "ima.replay"
        ]
    );

    // Sha1Padded quotes into SHA-256 and SHA-384 banks.
    for bank in [HashAlg::Sha256, HashAlg::Sha384] {
        let value = log.replay(bank, ReplayMode::Sha1Padded);
        let verdict = verify_bytes(&bytes, Some((bank, value)), &policy);
        assert!(verdict.is_trusted(), "{verdict}");
        assert!(verdict
            .check("ima.replay")
            .unwrap()
            .detail
            .contains("sha1-padded"));
    }

    // The all-zero initial value covers nothing.
    let verdict = verify_bytes(&bytes, Some((HashAlg::Sha256, vec![0; 32])), &policy);
    assert_eq!(verdict.first_failure().unwrap().step, "ima.replay");
    // Wrong length.
    let verdict = verify_bytes(&bytes, Some((HashAlg::Sha256, vec![1; 20])), &policy);
    assert_eq!(verdict.first_failure().unwrap().step, "ima.replay");
    // Wrong value: presented is the full-log replay.
    let verdict = verify_bytes(&bytes, Some((HashAlg::Sha256, vec![1; 32])), &policy);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.replay");
    assert_eq!(check.expected, hex([1; 32]));
    assert_eq!(
        check.presented,
        hex(log.replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash))
    );

    // First entry not boot_aggregate.
    let mut other = Log::new(alg);
    other
        .push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &[1; 32],
            b"/bin/sh",
            &[],
        )
        .unwrap();
    let verdict = verify_bytes(&other.to_binary(), None, &policy);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.boot_aggregate");
    assert_eq!(check.presented, "/bin/sh");

    // Claims from inspect.
    let claims = inspect(&bytes).unwrap();
    assert_eq!(claims.entries, 2);
    assert_eq!(
        claims.templates,
        vec!["ima-ng".to_string(), "ima-sig".to_string()]
    );
    assert_eq!(claims.quote_prefix, None);
    assert_eq!(claims.template_hash_alg, HashAlg::Sha1);
    assert_eq!(claims.pcr10.len(), 4);
    let json = serde_json::to_value(&claims).unwrap();
    assert_eq!(json["template_hash_alg"], "sha1");
}

#[test]
fn template_hash_mismatch_names_the_entry() {
    let alg = HashAlg::Sha256;
    let mut log = Log::new(alg);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &BOOT_DIGEST,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &[4; 32],
        b"/usr/bin/bad",
        &[],
    )
    .unwrap();
    let mut bytes = log.to_binary();
    let last = bytes.len() - 20; // inside the second entry's file digest
    bytes[last] ^= 1;
    let verdict = verify_bytes(&bytes, None, &ImaPolicy::default());
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.template_hash");
    assert!(
        check
            .detail
            .contains("entry 1 (/usr/bin/bad)"),
        "{}",
        check.detail
    );
    assert!(check
        .detail
        .contains("1 of 2 entries are bad"));
    assert_eq!(check.presented, hex(log.entries()[1].template_hash()));
}

#[test]
fn policy_json() {
    let policy: ImaPolicy =
        serde_json::from_str(r#"{"allow_violations": true, "bank": "sha256"}"#).unwrap();
    assert!(policy.allow_violations);
    assert_eq!(policy.bank, Some(HashAlg::Sha256));
    assert_eq!(
        serde_json::from_str::<ImaPolicy>("{}").unwrap(),
        ImaPolicy::default()
    );
    assert!(serde_json::from_str::<ImaPolicy>(r#"{"allow_violation": true}"#).is_err());
}

#[test]
fn ascii_garbage_is_a_typed_error() {
    for text in [
        "10\n",
        "10 zz ima-ng sha256:00 /x\n",
        "x0 0000000000000000000000000000000000000000 ima-ng sha256:00 /x\n",
        "10 0000000000000000000000000000000000000000 ima-ng\n",
        "10 0000000000000000000000000000000000000000 ima-ng sha256:0g /x\n",
        "10 0000000000000000000000000000000000000000 ima-ng sha256:00\n",
        "10 0000000000000000000000000000000000000000 ima-ng sha:256:00 /x\n",
        "10 0000000000000000000000000000000000000000 ima 00 /x\n",
        "99 0000000000000000000000000000000000000000 ima-ng sha256:00 /x\n",
    ] {
        assert!(
            Log::parse_ascii(text.as_bytes()).is_err(),
            "{text:?} parsed"
        );
    }
}

/// Quoted PCR values 0..=last in `bank`, each `[index + 1; len]`.
fn boot_pcrs(bank: HashAlg, last: u8) -> crate::tpm::PcrValues {
    let mut pcrs = crate::tpm::PcrValues::default();
    for index in 0..=last {
        pcrs.insert(bank, index, vec![index + 1; bank.digest_len()]);
    }
    pcrs
}

/// `H(PCR 0 || ... || PCR last)` of [`boot_pcrs`], computed with `ring` directly.
fn aggregate(bank: HashAlg, last: u8) -> Vec<u8> {
    let algorithm = match bank {
        HashAlg::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &ring::digest::SHA256,
        HashAlg::Sha384 => &ring::digest::SHA384,
        HashAlg::Sha512 => &ring::digest::SHA512,
    };
    let mut ctx = ring::digest::Context::new(algorithm);
    for index in 0..=last {
        ctx.update(&vec![index + 1; bank.digest_len()]);
    }
    ctx.finish().as_ref().to_vec()
}

/// A log whose boot_aggregate is `algo:digest`, then one measured file.
fn log_with_aggregate(algo: &str, digest: &[u8]) -> Vec<u8> {
    let mut log = Log::new(HashAlg::Sha1);
    log.push(
        10,
        Template::ImaNg,
        Some(algo),
        digest,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &[7; 32],
        b"/usr/bin/app",
        &[],
    )
    .unwrap();
    log.to_binary()
}

/// [`verify_anchored`] against a quote of `pcrs` plus sha256 PCR 10 (the log's full replay).
fn verify_quoted(bytes: &[u8], pcrs: &crate::tpm::PcrValues) -> crate::verdict::Verdict {
    let log = Log::parse(bytes).unwrap();
    let mut pcrs = pcrs.clone();
    pcrs.insert(
        HashAlg::Sha256,
        10,
        log.replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash),
    );
    verify_anchored(
        bytes,
        quoted_pcr10(&pcrs),
        ImaQuote::Present(&pcrs),
        &ImaPolicy::default(),
    )
}

#[test]
fn boot_aggregate_is_recomputed_from_the_quoted_boot_pcrs() {
    let policy = ImaPolicy::default();
    // sha256: PCRs 0-9 (kernel 5.8+).
    let good = aggregate(HashAlg::Sha256, 9);
    let pcrs = boot_pcrs(HashAlg::Sha256, 9);
    let verdict = verify_quoted(&log_with_aggregate("sha256", &good), &pcrs);
    assert!(verdict.is_trusted(), "{verdict}");
    let check = verdict
        .check("ima.boot_aggregate")
        .unwrap();
    assert_eq!(check.expected, format!("sha256:{}", hex(&good)));
    assert!(check.detail.contains("recomputed"), "{check}");

    // A forged boot_aggregate (here: PCRs 0-7 only, the pre-5.8 value) is refused, naming both.
    let forged = aggregate(HashAlg::Sha256, 7);
    let verdict = verify_quoted(&log_with_aggregate("sha256", &forged), &pcrs);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.boot_aggregate");
    assert_eq!(check.expected, format!("sha256:{}", hex(&good)));
    assert_eq!(check.presented, format!("sha256:{}", hex(&forged)));
    assert!(check.detail.contains("PCR 9"), "{check}");

    // sha1: PCRs 0-7 of the sha1 bank; PCRs 8 and 9 do not count.
    let mut pcrs1 = boot_pcrs(HashAlg::Sha1, 9);
    let good1 = aggregate(HashAlg::Sha1, 7);
    let verdict = verify_quoted(&log_with_aggregate("sha1", &good1), &pcrs1);
    assert!(verdict.is_trusted(), "{verdict}");
    pcrs1.insert(HashAlg::Sha1, 9, vec![0xee; 20]);
    let verdict = verify_quoted(&log_with_aggregate("sha1", &good1), &pcrs1);
    assert!(verdict.is_trusted(), "{verdict}");
    pcrs1.insert(HashAlg::Sha1, 3, vec![0xee; 20]);
    let verdict = verify_quoted(&log_with_aggregate("sha1", &good1), &pcrs1);
    assert_eq!(verdict.first_failure().unwrap().step, "ima.boot_aggregate");

    // A quote that does not cover the entry's bank's PCRs 0-9 (another bank, PCR 9 missing,
    // PCR 10 alone) fails closed, naming the PCRs it needs and the ones it has.
    let mut sha1_bank = boot_pcrs(HashAlg::Sha1, 9);
    sha1_bank.insert(HashAlg::Sha1, 10, vec![0xaa; 20]);
    for (pcrs, presented) in [
        (sha1_bank, "quoted: sha1 PCRs 0-10; sha256 PCRs 10"),
        (boot_pcrs(HashAlg::Sha256, 8), "quoted: sha256 PCRs 0-8, 10"),
        (crate::tpm::PcrValues::default(), "quoted: sha256 PCRs 10"),
    ] {
        let verdict = verify_quoted(&log_with_aggregate("sha256", &good), &pcrs);
        assert!(!verdict.is_trusted(), "{verdict}");
        let check = verdict.first_failure().unwrap();
        assert_eq!(check.step, "ima.boot_aggregate", "{verdict}");
        assert_eq!(
            check.expected,
            "the quote to cover sha256 PCRs 0-9 to recompute boot_aggregate"
        );
        assert_eq!(check.presented, presented);
        assert!(
            check
                .detail
                .contains("the quote lacks sha256 PCR"),
            "{check}"
        );
        // Every other step passes: this is the only reason for the refusal.
        assert_eq!(
            verdict
                .checks
                .iter()
                .filter(|c| !c.ok)
                .count(),
            1,
            "{verdict}"
        );
    }
    // The sha1 bank needs PCRs 0-7.
    let verdict = verify_quoted(
        &log_with_aggregate("sha1", &good1),
        &boot_pcrs(HashAlg::Sha256, 9),
    );
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.boot_aggregate");
    assert_eq!(
        check.expected,
        "the quote to cover sha1 PCRs 0-7 to recompute boot_aggregate"
    );
    // A boot_aggregate in no TPM bank cannot be recomputed: refused with a quote.
    let verdict = verify_quoted(&log_with_aggregate("md5", &[1; 16]), &pcrs);
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.boot_aggregate");
    assert_eq!(check.presented, format!("md5:{}", hex([1; 16])));

    // No quote at all (an offline log): the name check only, said so, and it passes.
    let verdict = verify_bytes(&log_with_aggregate("sha256", &forged), None, &policy);
    assert!(verdict.is_trusted(), "{verdict}");
    assert!(verdict
        .check("ima.boot_aggregate")
        .unwrap()
        .detail
        .contains("not anchored: no quote"));
    // The same with a PCR 10 value given on its own (`--pcr10`): still no quote.
    let bytes = log_with_aggregate("sha256", &forged);
    let pcr10 = Log::parse(&bytes)
        .unwrap()
        .replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash);
    let verdict = verify_bytes(&bytes, Some((HashAlg::Sha256, pcr10)), &policy);
    assert!(verdict.is_trusted(), "{verdict}");
    assert!(verdict
        .check("ima.boot_aggregate")
        .unwrap()
        .detail
        .contains("not anchored"));

    // A quote without PCR 10: ima.replay fails, naming the PCRs the quote has.
    let verdict = verify_anchored(
        &log_with_aggregate("sha256", &good),
        None,
        ImaQuote::Present(&pcrs),
        &policy,
    );
    assert!(verdict.passed("ima.boot_aggregate"), "{verdict}");
    let replay = verdict.first_failure().unwrap();
    assert_eq!(replay.step, "ima.replay", "{verdict}");
    assert_eq!(replay.expected, "a quoted PCR 10 to anchor the log");
    assert_eq!(replay.presented, "quoted: sha256 PCRs 0-9");
}

#[test]
fn a_log_with_nothing_past_boot_aggregate_fails_coverage_unless_allowed() {
    let mut log = Log::new(HashAlg::Sha1);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &BOOT_DIGEST,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    // An entry in another PCR does not count either.
    log.push(
        11,
        Template::ImaNg,
        Some("sha256"),
        &[5; 32],
        b"/other",
        &[],
    )
    .unwrap();
    let bytes = log.to_binary();
    let verdict = verify_bytes(&bytes, None, &ImaPolicy::default());
    let check = verdict.first_failure().unwrap();
    assert_eq!(check.step, "ima.coverage");
    assert!(
        check
            .detail
            .contains("no IMA policy appears to be loaded"),
        "{check}"
    );
    assert_eq!(check.presented, "0 measurements");
    let allow: ImaPolicy = serde_json::from_str(r#"{"allow_empty": true}"#).unwrap();
    let verdict = verify_bytes(&bytes, None, &allow);
    assert!(verdict.is_trusted(), "{verdict}");
    assert!(verdict.passed("ima.coverage"));
    // A violation past boot_aggregate is a measurement (judged by ima.violations).
    log.push_violation(
        10,
        Template::ImaNg,
        Some("sha256"),
        &[0; 32],
        b"/var/log/busy",
    )
    .unwrap();
    let verdict = verify_bytes(&log.to_binary(), None, &ImaPolicy::default());
    assert!(verdict.passed("ima.coverage"));
    assert_eq!(verdict.first_failure().unwrap().step, "ima.violations");
}

#[test]
fn coverage_counts_only_measurements_inside_the_quoted_prefix() {
    // A VM with no IMA policy: the quote covers boot_aggregate alone. Root then appends entries
    // copied from another machine's log: ima.replay still matches the prefix, and the appended
    // entries must not count as coverage.
    let alg = HashAlg::Sha256;
    let mut log = Log::new(alg);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &BOOT_DIGEST,
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    let only_boot = log.replay(alg, ReplayMode::PerBankTemplateHash);
    for i in 1..=3u8 {
        log.push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &[i; 32],
            b"/usr/bin/app",
            &[],
        )
        .unwrap();
    }
    log.push(
        11,
        Template::ImaNg,
        Some("sha256"),
        &[9; 32],
        b"/other-pcr",
        &[],
    )
    .unwrap();
    let bytes = log.to_binary();
    let policy = ImaPolicy::default();

    let mut quote = boot_pcrs(alg, 9);
    quote.insert(alg, 10, only_boot.clone());
    for verdict in [
        verify_bytes(&bytes, Some((alg, only_boot.clone())), &policy),
        verify_anchored(
            &bytes,
            quoted_pcr10(&quote),
            ImaQuote::Present(&quote),
            &ImaPolicy::default(),
        ),
    ] {
        assert!(verdict.passed("ima.replay"), "{verdict}");
        let failed: Vec<_> = verdict
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.step.as_str())
            .collect();
        // (verify_anchored also fails boot_aggregate: BOOT_DIGEST is not the recomputed value.)
        assert!(failed.contains(&"ima.coverage"), "{verdict}");
        let check = verdict.check("ima.coverage").unwrap();
        assert_eq!(
            check.expected,
            "at least one measurement past boot_aggregate covered by the quote"
        );
        assert_eq!(
            check.presented,
            "0 covered by the quote, 3 present in the log"
        );
        assert!(
            check.detail.contains(
                "the quote covers no measurement past boot_aggregate: 0 covered, 3 present"
            ),
            "{check}"
        );
    }
    // allow_empty accepts it, still saying so.
    let allow = ImaPolicy {
        allow_empty: true,
        ..ImaPolicy::default()
    };
    let verdict = verify_bytes(&bytes, Some((alg, only_boot)), &allow);
    assert!(verdict.is_trusted(), "{verdict}");
    let check = verdict.check("ima.coverage").unwrap();
    assert_eq!(
        check.presented,
        "0 covered by the quote, 3 present in the log"
    );
    assert!(check.detail.contains("allow_empty"), "{check}");

    // A quote covering boot_aggregate and one file: one measurement counts, two are past it.
    let two = log.replay_prefix(alg, ReplayMode::PerBankTemplateHash, 2);
    let verdict = verify_bytes(&bytes, Some((alg, two)), &policy);
    assert!(verdict.is_trusted(), "{verdict}");
    let check = verdict.check("ima.coverage").unwrap();
    assert_eq!(
        check.presented,
        "1 covered by the quote, 3 present in the log"
    );
    assert!(
        check
            .detail
            .contains("2 measurements past the quoted prefix"),
        "{check}"
    );

    // A PCR 10 value that matches no prefix anchors nothing: ima.replay refuses it, and the
    // coverage count says it is not anchored.
    let verdict = verify_bytes(&bytes, Some((alg, vec![0x42; 32])), &policy);
    assert_eq!(verdict.first_failure().unwrap().step, "ima.replay");
    assert!(verdict
        .check("ima.coverage")
        .unwrap()
        .detail
        .contains("not anchored: the quoted PCR 10 does not anchor the log"));

    // No quote (an offline log): the whole log counts, and the detail says it is not anchored.
    let verdict = verify_bytes(&bytes, None, &policy);
    assert!(verdict.is_trusted(), "{verdict}");
    let check = verdict.check("ima.coverage").unwrap();
    assert_eq!(check.presented, "3 measurements");
    assert!(check.detail.contains("not anchored"), "{check}");
}

fn ima_of(verdict: &crate::verdict::Verdict) -> &ImaClaims {
    match &verdict.claims {
        Claims::Ima(c) => c,
        other => panic!("{other:?}"),
    }
}

/// A boot's log: `boot_aggregate` of [`boot_pcrs`] (sha256, PCRs 0–9), then `files` entries.
fn long_log(files: usize) -> Log {
    let mut log = Log::new(HashAlg::Sha1);
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &aggregate(HashAlg::Sha256, 9),
        b"boot_aggregate",
        &[],
    )
    .unwrap();
    for i in 0..files {
        let path = format!("/usr/lib/file-{i}");
        log.push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &HashAlg::Sha256.digest(path.as_bytes()),
            path.as_bytes(),
            &[],
        )
        .unwrap();
    }
    log
}

fn quote_of(log: &Log) -> crate::tpm::PcrValues {
    let mut pcrs = boot_pcrs(HashAlg::Sha256, 9);
    pcrs.insert(
        HashAlg::Sha256,
        10,
        log.replay(HashAlg::Sha256, ReplayMode::PerBankTemplateHash),
    );
    pcrs
}

#[test]
fn a_delta_of_ten_entries_after_a_hundred_thousand_sends_and_replays_only_ten() {
    let mut log = long_log(100_000);
    let pcrs = quote_of(&log);
    let full = log.to_binary();
    let first = verify_anchored(
        &full,
        quoted_pcr10(&pcrs),
        ImaQuote::Present(&pcrs),
        &ImaPolicy::default(),
    );
    assert!(first.is_trusted(), "{first:?}");
    let anchor = ima_of(&first)
        .anchor
        .as_deref()
        .cloned()
        .expect("a passing replay anchors the log");
    assert_eq!(anchor.entries, 100_001);
    assert_eq!(anchor.boot_aggregate, hex(aggregate(HashAlg::Sha256, 9)));

    // Ten more files are measured; the attester sends the tail past the anchor.
    for i in 0..10 {
        let path = format!("/opt/new-{i}");
        log.push(
            10,
            Template::ImaNg,
            Some("sha256"),
            &HashAlg::Sha256.digest(path.as_bytes()),
            path.as_bytes(),
            &[],
        )
        .unwrap();
    }
    let pcrs = quote_of(&log);
    let delta = log.tail(100_001).to_binary();
    assert_eq!(Log::parse(&delta).unwrap().len(), 10);
    eprintln!(
        "whole log {} bytes, delta of 10 entries {} bytes",
        log.to_binary().len(),
        delta.len()
    );
    assert!(delta.len() * 5_000 < full.len(), "O(10) entries, not 100k");
    let next = verify_delta(&delta, 100_001, &anchor, &pcrs, &ImaPolicy::default());
    assert!(next.is_trusted(), "{next:?}");
    let claims = ima_of(&next);
    assert_eq!(claims.entries, 10);
    assert_eq!(claims.delta_from, Some(100_001));
    let anchor2 = claims
        .anchor
        .as_deref()
        .cloned()
        .unwrap();
    assert_eq!(anchor2.entries, 100_011);

    // Nothing new: an empty delta with an unchanged quote passes and keeps the anchor.
    let same = verify_delta(&[], 100_011, &anchor2, &pcrs, &ImaPolicy::default());
    assert!(same.is_trusted(), "{same:?}");
    assert_eq!(ima_of(&same).anchor.as_deref(), Some(&anchor2));
}

#[test]
fn a_delta_that_does_not_continue_the_anchored_log_fails_at_a_named_step() {
    let mut log = long_log(3);
    let pcrs = quote_of(&log);
    let first = verify_quoted(&log.to_binary(), &boot_pcrs(HashAlg::Sha256, 9));
    let anchor = ima_of(&first)
        .anchor
        .as_deref()
        .cloned()
        .unwrap();
    log.push(
        10,
        Template::ImaNg,
        Some("sha256"),
        &[9; 32],
        b"/tmp/new",
        &[],
    )
    .unwrap();
    let later = quote_of(&log);
    let delta = log.tail(4).to_binary();
    let failed = |v: &crate::verdict::Verdict| {
        v.first_failure()
            .map(|c| c.step.to_string())
    };
    // Another starting point than the anchor.
    let v = verify_delta(&delta, 3, &anchor, &later, &ImaPolicy::default());
    assert_eq!(failed(&v).as_deref(), Some("ima.delta"), "{v:?}");
    // The boot PCRs changed (a reboot, or a boot PCR extended at run time).
    let mut rebooted = later.clone();
    rebooted.insert(HashAlg::Sha256, 4, vec![0xee; 32]);
    let v = verify_delta(&delta, 4, &anchor, &rebooted, &ImaPolicy::default());
    assert_eq!(failed(&v).as_deref(), Some("ima.boot_aggregate"), "{v:?}");
    // An entry left out of the delta (the quote covers it): no prefix replays to the quote.
    let v = verify_delta(&[], 4, &anchor, &later, &ImaPolicy::default());
    assert_eq!(failed(&v).as_deref(), Some("ima.replay"), "{v:?}");
    // A quote taken before the new entry covers none of it: trusted, and the anchor stays
    // where it was, so the entry is sent (and checked) again next time.
    let v = verify_delta(&delta, 4, &anchor, &pcrs, &ImaPolicy::default());
    assert!(v.is_trusted(), "{v:?}");
    assert_eq!(
        ima_of(&v)
            .anchor
            .as_ref()
            .map(|a| a.entries),
        Some(4)
    );
    let garbage = verify_delta(
        b"\x0a\x00\x00\x00garbage",
        4,
        &anchor,
        &later,
        &ImaPolicy::default(),
    );
    assert_eq!(
        failed(&garbage).as_deref(),
        Some("ima.parse"),
        "{garbage:?}"
    );
}

#[test]
fn the_binary_tail_is_the_tail_of_the_parsed_log_without_parsing_it() {
    for alg in [HashAlg::Sha1, HashAlg::Sha256] {
        let mut log = Log::new(alg);
        for i in 0..50 {
            let template = [Template::ImaNg, Template::ImaSig, Template::ImaBuf][i % 3];
            log.push(
                10,
                template,
                Some("sha256"),
                &[u8::try_from(i).unwrap(); 32],
                format!("/bin/tool-{i}").as_bytes(),
                b"extra",
            )
            .unwrap();
        }
        let mut bytes = log.to_binary();
        if alg == HashAlg::Sha1 {
            bytes.extend(legacy_entry(&[3; 20], b"/legacy").0);
        }
        let parsed = Log::parse(&bytes).unwrap();
        for from in [0, 1, 17, 49, parsed.len(), parsed.len() + 5] {
            assert_eq!(
                Log::binary_tail(&bytes, from).map(<[u8]>::to_vec),
                Some(parsed.tail(from).to_binary()),
                "{alg} from {from}"
            );
        }
    }
    // ASCII, or bytes that are no log: parse instead.
    assert_eq!(Log::binary_tail(&long_log(2).to_ascii(), 1), None);
    assert_eq!(Log::binary_tail(b"\x0a\x00\x00\x00garbage", 0), None);
}
