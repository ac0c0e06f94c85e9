use super::*;

/// `luksDump --dump-json-metadata` of a container made by `cryptsetup luksFormat --type luks2`
/// (2.6.1), trimmed to what the check reads.
const GOOD: &str = r#"{
  "keyslots": {
    "0": {"type": "luks2", "key_size": 64,
          "area": {"type": "raw", "offset": "32768", "size": "258048",
                   "encryption": "aes-xts-plain64", "key_size": 64},
          "kdf": {"type": "pbkdf2", "hash": "sha256", "iterations": 1000}},
    "1": {"type": "luks2", "key_size": 64,
          "area": {"type": "raw", "offset": "290816", "size": "258048",
                   "encryption": "aes-xts-plain64", "key_size": 64},
          "kdf": {"type": "pbkdf2", "hash": "sha512", "iterations": 1000}}
  },
  "tokens": {},
  "segments": {"0": {"type": "crypt", "offset": "16777216", "size": "dynamic",
                     "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 4096}},
  "digests": {},
  "config": {"json_size": "12288", "keyslots_size": "16744448"}
}"#;

fn with(from: &str, to: &str, nth: usize) -> String {
    let mut out = String::new();
    let mut rest = GOOD;
    let mut seen = 0;
    while let Some(at) = rest.find(from) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        out.push_str(if seen == nth { to } else { from });
        seen += 1;
        rest = tail
            .get(from.len()..)
            .unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[test]
fn good_header_passes() {
    let m = Metadata::parse(GOOD).unwrap();
    assert!(m.unsafe_reasons().is_empty(), "{:?}", m.unsafe_reasons());
    assert_eq!(m.keyslot_ids(), vec![0, 1]);
    assert_eq!(m.free_keyslot(), Some(2));
}

#[test]
fn null_keyslot_refused() {
    for nth in [0, 1] {
        let json = with("\"aes-xts-plain64\"", "\"cipher_null-ecb\"", nth);
        let m = Metadata::parse(&json).unwrap();
        let err = m
            .check_safe(std::path::Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cipher_null"), "{err}");
        assert!(err.contains(&format!("keyslot {nth}")), "{err}");
    }
}

#[test]
fn null_segment_refused() {
    let json = with("\"aes-xts-plain64\"", "\"cipher_null\"", 2);
    let m = Metadata::parse(&json).unwrap();
    let reasons = m.unsafe_reasons();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("segment 0"), "{reasons:?}");
}

#[test]
fn other_null_spellings_and_missing_parts_refused() {
    let upper = with("\"aes-xts-plain64\"", "\"CIPHER_NULL-ECB\"", 1);
    assert!(!Metadata::parse(&upper)
        .unwrap()
        .unsafe_reasons()
        .is_empty());
    let linear = with("\"type\": \"crypt\"", "\"type\": \"linear\"", 0);
    assert!(!Metadata::parse(&linear)
        .unwrap()
        .unsafe_reasons()
        .is_empty());
    let none = Metadata::parse(r#"{"keyslots": {}, "segments": {}}"#).unwrap();
    assert!(!none.unsafe_reasons().is_empty());
    assert!(Metadata::parse("not json").is_err());
}

fn reasons_of(json: &str) -> Vec<String> {
    Metadata::parse(json)
        .unwrap()
        .unsafe_reasons()
}

#[test]
fn only_the_exact_segment_cipher_is_accepted() {
    // Spellings that a prefix check on "cipher_null" lets through, and plain other ciphers.
    for cipher in [
        "capi:ecb(cipher_null)-plain",
        "aes-xts-null",
        "aes-cbc-plain",
        "aes-xts-plain",
        "AES-XTS-PLAIN64",
        "aes-xts-plain64 ",
        "capi:xts(aes)-plain64",
        "serpent-xts-plain64",
    ] {
        let json = with("\"aes-xts-plain64\"", &format!("{cipher:?}"), 2);
        let reasons = reasons_of(&json);
        assert_eq!(reasons.len(), 1, "{cipher}: {reasons:?}");
        assert!(
            reasons[0].starts_with("segment 0: expected cipher \"aes-xts-plain64\", presented")
                && reasons[0].contains(&format!("{cipher:?}")),
            "{reasons:?}"
        );
    }
}

#[test]
fn keyslot_area_cipher_and_key_sizes_are_checked() {
    let capi_slot = with("\"aes-xts-plain64\"", "\"capi:ecb(cipher_null)-plain\"", 1);
    let r = reasons_of(&capi_slot);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("keyslot 1: expected area cipher"), "{r:?}");
    // A 256-bit volume key (AES-128-XTS) in keyslot 0.
    let short = with(
        "\"key_size\": 64,\n          \"area\"",
        "\"key_size\": 32,\n          \"area\"",
        0,
    );
    let r = reasons_of(&short);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].contains("keyslot 0: expected volume key_size 64") && r[0].contains("presented 32"),
        "{r:?}"
    );
    let area_key = with(
        "\"encryption\": \"aes-xts-plain64\", \"key_size\": 64",
        "\"encryption\": \"aes-xts-plain64\", \"key_size\": 32",
        1,
    );
    let r = reasons_of(&area_key);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].contains("keyslot 1: expected area key_size 64, presented 32"),
        "{r:?}"
    );
}

#[test]
fn segment_layout_integrity_and_extra_segments_are_checked() {
    let sector = with("\"sector_size\": 4096", "\"sector_size\": 512", 0);
    let r = reasons_of(&sector);
    assert_eq!(r, ["segment 0: expected sector_size 4096, presented 512"]);
    let integrity = with(
        "\"sector_size\": 4096",
        "\"sector_size\": 4096, \"integrity\": {\"type\": \"hmac(sha256)\"}",
        0,
    );
    let r = reasons_of(&integrity);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].contains("expected no \"integrity\" field"), "{r:?}");
    let tweak = with("\"iv_tweak\": \"0\"", "\"iv_tweak\": \"8\"", 0);
    assert_eq!(
        reasons_of(&tweak),
        ["segment 0: expected iv_tweak \"0\", presented \"8\""]
    );
    // A second segment after a good first one.
    let second = with(
        "\"sector_size\": 4096}}",
        "\"sector_size\": 4096}, \"1\": {\"type\": \"crypt\", \"offset\": \"33554432\", \
         \"size\": \"dynamic\", \"iv_tweak\": \"0\", \"encryption\": \"cipher_null-ecb\", \
         \"sector_size\": 4096}}",
        0,
    );
    let r = reasons_of(&second);
    assert!(
        r.iter()
            .any(|x| x.starts_with("segment 1: expected only segment \"0\""))
            && r.iter()
                .any(|x| x.contains("presented \"cipher_null-ecb\"")),
        "{r:?}"
    );
    let flags = with(
        "\"json_size\": \"12288\"",
        "\"json_size\": \"12288\", \"flags\": [\"allow-discards\"]",
        0,
    );
    assert_eq!(
        reasons_of(&flags),
        ["config: expected no flags, presented [\"allow-discards\"]"]
    );
}

#[test]
fn only_our_token_type_is_accepted() {
    let ours = r#""tokens": {"0": {"type": "cosmian-tpm2", "keyslots": ["1"], "keyslot": 1}}"#;
    let m = Metadata::parse(&GOOD.replace(r#""tokens": {}"#, ours)).unwrap();
    assert!(m.unsafe_reasons().is_empty(), "{:?}", m.unsafe_reasons());
    assert_eq!(m.seal_token().map(|(id, _)| id), Some("0"));
    assert!(Metadata::parse(GOOD)
        .unwrap()
        .seal_token()
        .is_none());

    for (kind, shown) in [
        (r#""systemd-tpm2""#, r#"presented "systemd-tpm2""#),
        (r#""luks2-keyring""#, r#"presented "luks2-keyring""#),
        (r#""Cosmian-TPM2""#, r#"presented "Cosmian-TPM2""#),
        ("7", "presented 7"),
    ] {
        let other = format!(r#""tokens": {{"3": {{"type": {kind}, "keyslots": ["1"]}}}}"#);
        let r = reasons_of(&GOOD.replace(r#""tokens": {}"#, &other));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with(r#"token 3: expected type "cosmian-tpm2""#) && r[0].contains(shown),
            "{r:?}"
        );
    }
    let untyped = r#""tokens": {"0": {"keyslots": []}}"#;
    let r = reasons_of(&GOOD.replace(r#""tokens": {}"#, untyped));
    assert!(r.len() == 1 && r[0].contains("presented no type"), "{r:?}");

    let two = r#""tokens": {"0": {"type": "cosmian-tpm2", "keyslots": ["1"]},
                            "1": {"type": "cosmian-tpm2", "keyslots": ["0"]}}"#;
    let r = reasons_of(&GOOD.replace(r#""tokens": {}"#, two));
    assert!(
        r.len() == 1 && r[0].contains("expected at most one") && r[0].contains("ids 0, 1"),
        "{r:?}"
    );
}
