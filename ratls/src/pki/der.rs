//! Strict DER framing and PEM helpers the certificate parser uses.

use crate::codec::Reader;
use crate::hexfmt::hex;

use super::CertError;

pub(super) const TAG_INTEGER: u8 = 0x02;
pub(super) const TAG_BIT_STRING: u8 = 0x03;
pub(super) const TAG_VERSION: u8 = 0xa0;
pub(super) const TAG_NULL: u8 = 0x05;
pub(super) const TAG_OID: u8 = 0x06;
pub(super) const TAG_SEQUENCE: u8 = 0x30;

/// The contents of `bytes` when they are exactly one TLV with this tag.
pub(super) fn der_only(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new("DER value", bytes);
    let contents = der_tlv(&mut r, tag)?;
    r.finish().ok()?;
    Some(contents)
}

/// The contents of one DER TLV with the given tag.
pub(super) fn der_tlv<'a>(r: &mut Reader<'a>, tag: u8) -> Option<&'a [u8]> {
    der_tlv_raw(r, tag).map(|(_, contents)| contents)
}

/// One DER TLV with the given tag and a minimally encoded definite length below 64 KiB
/// (certificates are capped at [`MAX_CERT_LEN`]): the whole TLV and its contents.
pub(super) fn der_tlv_raw<'a>(r: &mut Reader<'a>, tag: u8) -> Option<(&'a [u8], &'a [u8])> {
    let mut header = r.clone();
    if header.u8("tag").ok()? != tag {
        return None;
    }
    let len = match header.u8("length").ok()? {
        n if n < 0x80 => usize::from(n),
        0x81 => match header.u8("length").ok()? {
            n if n >= 0x80 => usize::from(n),
            _ => return None,
        },
        0x82 => match header.u16_be("length").ok()? {
            n if n >= 0x100 => usize::from(n),
            _ => return None,
        },
        _ => return None,
    };
    let header_len = header
        .offset()
        .checked_sub(r.offset())?;
    let tlv = r
        .take(header_len.checked_add(len)?, "value")
        .ok()?;
    Some((tlv, tlv.get(header_len..)?))
}

/// The DER contents of a dotted OID (`1.2.840.10045.4.3.2`), or `None` if it is not one.
pub(super) fn oid_der(dotted: &str) -> Option<Vec<u8>> {
    let mut arcs = dotted
        .split('.')
        .map(|a| a.parse::<u64>().ok());
    let (first, second) = (arcs.next()??, arcs.next()??);
    if first > 2 || (first < 2 && second > 39) {
        return None;
    }
    let mut out = Vec::with_capacity(dotted.len());
    for arc in core::iter::once(
        first
            .checked_mul(40)?
            .checked_add(second),
    )
    .chain(arcs)
    {
        let arc = arc?;
        let groups = (1..10)
            .take_while(|i| arc >> (7 * i) != 0)
            .count();
        for i in (0..=groups).rev() {
            let byte = u8::try_from((arc >> (7 * i)) & 0x7f).ok()?;
            out.push(if i == 0 { byte } else { byte | 0x80 });
        }
    }
    Some(out)
}

/// How many `-----BEGIN ` and `-----END ` markers `text` holds.
pub(super) fn pem_markers(text: &[u8]) -> (usize, usize) {
    let (mut begins, mut ends) = (0, 0);
    let mut rest = text;
    // Look at dashes only: PEM text is mostly base64.
    while let Some(at) = rest.iter().position(|&b| b == b'-') {
        let tail = rest.get(at..).unwrap_or_default();
        if tail.starts_with(b"-----BEGIN ") {
            begins += 1;
        } else if tail.starts_with(b"-----END ") {
            ends += 1;
        }
        rest = tail.get(1..).unwrap_or_default();
    }
    (begins, ends)
}

/// The PEM blocks of `text`, refusing any `-----BEGIN`/`-----END` line that does not belong to
/// a complete block (the `pem` crate silently drops an unterminated block) and blocks with
/// RFC 1421 headers (never valid for certificates, RFC 7468 2).
pub(super) fn pem_blocks(text: &[u8]) -> Result<Vec<pem::Pem>, CertError> {
    let blocks = pem::parse_many(text).map_err(|e| CertError::Pem {
        reason: e.to_string(),
    })?;
    let (begins, ends) = pem_markers(text);
    if begins != blocks.len() || ends != blocks.len() {
        return Err(CertError::Pem {
            reason: format!(
                "{begins} BEGIN and {ends} END lines but {} complete blocks",
                blocks.len()
            ),
        });
    }
    if let Some(block) = blocks
        .iter()
        .find(|b| b.headers().iter().next().is_some())
    {
        return Err(CertError::Pem {
            reason: format!("{} block with headers", block.tag()),
        });
    }
    Ok(blocks)
}

/// A DER INTEGER's content as a magnitude: leading zero bytes removed (0 becomes empty).
pub(super) fn serial_magnitude(raw: &[u8]) -> Vec<u8> {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len());
    raw.get(start..)
        .unwrap_or_default()
        .to_vec()
}

/// A serial magnitude as lower-case hex (`0` when empty).
pub(super) fn serial_text(magnitude: &[u8]) -> String {
    if magnitude.is_empty() {
        "0".into()
    } else {
        hex(magnitude)
    }
}
