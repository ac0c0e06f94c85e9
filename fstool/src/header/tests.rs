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
