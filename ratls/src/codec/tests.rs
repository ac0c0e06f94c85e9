use super::*;

#[test]
fn reads_in_bounds_and_reports_truncation() {
    let mut r = Reader::new("thing", &[1, 2, 3, 4, 5]);
    assert_eq!(r.u16_le("a").unwrap(), 0x0201);
    assert_eq!(r.u16_be("b").unwrap(), 0x0304);
    let err = r.u32_le("c").unwrap_err();
    assert_eq!(
        err,
        ParseError::Truncated {
            what: "thing",
            field: "c",
            offset: 4,
            needed: 4,
            available: 1
        }
    );
    // A failed read consumes nothing.
    assert_eq!(r.remaining(), 1);
    assert!(r.clone().finish().is_err());
    assert_eq!(r.u8("d").unwrap(), 5);
    assert!(r.finish().is_ok());
}

#[test]
fn huge_lengths_do_not_overflow() {
    let mut r = Reader::new("thing", &[0xff, 0xff, 0xff, 0xff, 0]);
    assert!(matches!(
        r.u32_le_prefixed("len", 1 << 20),
        Err(ParseError::TooLarge { .. })
    ));
    let mut r = Reader::new("thing", &[0, 0]);
    assert!(r.take(usize::MAX, "x").is_err());
    let mut r = Reader::new("thing", &[0x00, 0x05, 1, 2]);
    assert!(matches!(
        r.tpm2b("b", 64),
        Err(ParseError::Truncated { needed: 5, .. })
    ));
}
