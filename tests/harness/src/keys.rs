//! The AK's `TPMT_PUBLIC` as a DER SubjectPublicKeyInfo (and PEM), for tools that take a public
//! key file (`tpm2_checkquote -u`). Built by hand: two fixed shapes.

use ratls::tpm::structures::{EccCurve, PublicKey};
use ratls::tpm::Public;

/// DER of a SubjectPublicKeyInfo for the AK (ECC P-256/P-384 or RSA).
///
/// # Errors
/// When the public area does not parse or holds a key of another shape.
pub fn ak_spki_der(ak_public: &[u8]) -> Result<Vec<u8>, String> {
    let public = Public::parse(ak_public).map_err(|e| format!("AK public area: {e}"))?;
    match &public.key {
        PublicKey::Ecc { curve, x, y, .. } => {
            // AlgorithmIdentifier { id-ecPublicKey 1.2.840.10045.2.1, namedCurve }.
            let curve_oid: &[u8] = match curve {
                EccCurve::P256 => &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                EccCurve::P384 => &[0x2b, 0x81, 0x04, 0x00, 0x22],
                other => return Err(format!("unsupported curve {other:?}")),
            };
            let size = curve.coordinate_len();
            let mut point = vec![0x04];
            point.extend(left_pad(x, size)?);
            point.extend(left_pad(y, size)?);
            let algorithm = der(
                0x30,
                &[
                    der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                    der(0x06, curve_oid),
                ]
                .concat(),
            );
            Ok(spki(&algorithm, &point))
        }
        PublicKey::Rsa {
            exponent, modulus, ..
        } => {
            // AlgorithmIdentifier { rsaEncryption 1.2.840.113549.1.1.1, NULL }.
            let algorithm = der(
                0x30,
                &[
                    der(
                        0x06,
                        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                    ),
                    vec![0x05, 0x00],
                ]
                .concat(),
            );
            let e = if *exponent == 0 { 65_537 } else { *exponent };
            let key = der(
                0x30,
                &[integer(modulus), integer(&e.to_be_bytes())].concat(),
            );
            Ok(spki(&algorithm, &key))
        }
    }
}

/// [`ak_spki_der`] as a `PUBLIC KEY` PEM.
///
/// # Errors
/// As [`ak_spki_der`].
pub fn ak_pem(ak_public: &[u8]) -> Result<String, String> {
    Ok(pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        ak_spki_der(ak_public)?,
    )))
}

/// SubjectPublicKeyInfo { algorithm, BIT STRING (no unused bits) key }.
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let bits = der(0x03, &[&[0x00], key].concat());
    der(0x30, &[algorithm, bits.as_slice()].concat())
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER from big-endian magnitude bytes.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed
        .first()
        .is_none_or(|b| b & 0x80 != 0)
    {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

fn left_pad(bytes: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let significant: Vec<u8> = bytes
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let pad = size
        .checked_sub(significant.len())
        .ok_or("coordinate longer than the curve")?;
    Ok([vec![0; pad], significant].concat())
}
