//! Verification of a TPM 2.0 quote, step by step (see the module docs for the steps).

use std::collections::{BTreeMap, BTreeSet};

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use super::structures::{
    strip_leading_zeros, Attest, Attested, EccCurve, KeyScheme, PublicKey, SigScheme, SigValue,
    Signature, AK_REQUIRED_ATTRIBUTES, TPMA_OBJECT_DECRYPT, TPM_ALG_NULL, TPM_ALG_RSASSA,
    TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE,
};
use super::{PcrValues, Public, QuoteInput, TpmClaims, TpmKeyClaims, TpmPolicy};
use crate::codec::{ParseError, Reader};
use crate::digest::HashAlg;
use crate::hexfmt::{self, hex};
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// Detail of a raw (Azure vTPM) signature.
const RAW_SIGNATURE_DETAIL: &str = "raw RSASSA signature (Azure vTPM format)";

/// A signature ready to verify: a parsed `TPMT_SIGNATURE`, or a raw RSASSA signature whose
/// scheme and hash come from the AK.
#[derive(Debug)]
struct SignatureInput {
    sig: Signature,
    raw: bool,
}

/// Verify a TPM quote. Never panics; every step is a [`Check`], and the verdict is trusted only
/// when all of them pass.
pub fn verify(input: &QuoteInput<'_>, policy: &TpmPolicy) -> Verdict {
    let mut verdict = Verdict::new(Platform::Tpm);

    let attest = Attest::parse(input.attest);
    let ak = Public::parse(input.ak_public);
    let sig = read_signature(input.signature, ak.as_ref().ok());
    verdict.push(parse_check(input, &attest, &sig, &ak));

    // The signed bytes are the TPMS_ATTEST (without a TPM2B_ATTEST size, when given one).
    let message = Attest::unwrap_tpm2b(input.attest).unwrap_or(input.attest);

    match &attest {
        Ok(a) => {
            verdict.push(Check::pass(
                Step::TPM_MAGIC,
                format!("{TPM_GENERATED_VALUE:08x}"),
                format!("{:08x}", a.magic),
            ));
            verdict.push(
                Check::expect(
                    Step::TPM_TYPE,
                    a.attest_type == TPM_ST_ATTEST_QUOTE,
                    attest_type_label(TPM_ST_ATTEST_QUOTE),
                    attest_type_label(a.attest_type),
                )
                .with_detail(if a.attest_type == TPM_ST_ATTEST_QUOTE {
                    ""
                } else {
                    "not a quote: only TPM2_Quote output carries PCRs"
                }),
            );
        }
        Err(_) => {
            verdict.push(magic_check(message));
            verdict.push(not_run(
                Step::TPM_TYPE,
                "the quote (TPMS_ATTEST) did not parse",
            ));
        }
    }

    verdict.push(signature_check(message, &sig, &ak));
    verdict.push(ak_check(&ak, policy));

    match &attest {
        Ok(a) => {
            verdict.push(qualifying_data_check(a, input.nonce.as_deref()));
            verdict.push(pcr_selection_check(a, input.pcrs.as_ref(), policy));
            verdict.push(pcr_digest_check(a, input.pcrs.as_ref(), &sig));
            if !policy.pcrs.is_empty() {
                verdict.push(policy_pcrs_check(input.pcrs.as_ref(), policy));
            }
            let c = a.clock_info;
            verdict.push(Check::pass(
                Step::TPM_CLOCK,
                "any (recorded)",
                format!(
                    "clock {}, resetCount {}, restartCount {}, safe {}",
                    c.clock, c.reset_count, c.restart_count, c.safe
                ),
            ));
            verdict.claims = Claims::Tpm(Box::new(claims(
                a,
                ak.as_ref().ok(),
                sig.as_ref().ok(),
                input.pcrs.as_ref(),
            )));
        }
        Err(_) => {
            let why = "the quote (TPMS_ATTEST) did not parse";
            verdict.push(not_run(Step::TPM_QUALIFYING_DATA, why));
            verdict.push(not_run(Step::TPM_PCR_SELECTION, why));
            verdict.push(not_run(Step::TPM_PCR_DIGEST, why));
            if !policy.pcrs.is_empty() {
                verdict.push(not_run(Step::TPM_POLICY_PCRS, why));
            }
            verdict.push(not_run(Step::TPM_CLOCK, why));
        }
    }
    verdict
}

/// Parse a `TPMS_ATTEST` and report what it says, without verifying anything.
pub fn inspect_attest(bytes: &[u8]) -> Result<TpmClaims, ParseError> {
    Attest::parse(bytes).map(|a| claims(&a, None, None, None))
}

fn claims(
    attest: &Attest,
    ak: Option<&Public>,
    sig: Option<&SignatureInput>,
    pcrs: Option<&PcrValues>,
) -> TpmClaims {
    let (pcr_selection, pcr_digest) = match &attest.attested {
        Attested::Quote(q) => {
            let mut selection: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for sel in &q.pcr_select {
                selection
                    .entry(sel.bank_name())
                    .or_default()
                    .extend(sel.indices());
            }
            for indices in selection.values_mut() {
                indices.sort_unstable();
                indices.dedup();
            }
            (selection, hex(&q.pcr_digest))
        }
        Attested::Other(_) => (BTreeMap::new(), String::new()),
    };
    TpmClaims {
        attest_type: attest_type_name(attest.attest_type),
        qualified_signer: hex(&attest.qualified_signer),
        extra_data: hex(&attest.extra_data),
        clock: attest.clock_info.clock,
        reset_count: attest.clock_info.reset_count,
        restart_count: attest.clock_info.restart_count,
        safe: attest.clock_info.safe != 0,
        firmware_version: format!("{:016x}", attest.firmware_version),
        pcr_selection,
        pcr_digest,
        key: (ak.is_some() || sig.is_some()).then(|| {
            Box::new(TpmKeyClaims {
                ak_name: ak.map(|k| hex(k.name())),
                ak_type: ak.map(Public::type_name),
                signature_scheme: sig.map(|s| s.sig.scheme_name()),
            })
        }),
        pcrs: pcrs.map(PcrValues::to_hex_map),
    }
}

fn attest_type_name(t: u16) -> String {
    match t {
        0x8014 => "nv".into(),
        0x8015 => "command_audit".into(),
        0x8016 => "session_audit".into(),
        0x8017 => "certify".into(),
        TPM_ST_ATTEST_QUOTE => "quote".into(),
        0x8019 => "time".into(),
        0x801A => "creation".into(),
        0x801C => "nv_digest".into(),
        other => format!("0x{other:04x}"),
    }
}

fn attest_type_label(t: u16) -> String {
    format!("{} ({t:04x})", attest_type_name(t))
}

fn not_run(step: Step, why: &str) -> Check {
    Check::fail(step, "", "", format!("not run: {why}"))
}

/// The signature as a `TPMT_SIGNATURE`, or as a raw RSASSA signature when it is exactly the
/// size of an RSA AK's modulus and the AK's scheme allows RSASSA.
fn read_signature(bytes: &[u8], ak: Option<&Public>) -> Result<SignatureInput, ParseError> {
    let modulus_len = ak.and_then(Public::rsa_modulus_len);
    let Some(ak) = ak.filter(|_| modulus_len == Some(bytes.len())) else {
        return Signature::parse(bytes).map(|sig| SignatureInput { sig, raw: false });
    };
    let raw_error = |presented: String| ParseError::Unsupported {
        what: "raw RSA signature",
        field: "AK scheme",
        presented,
        supported: "RSASSA or NULL (a raw signature is accepted only under such an AK)",
    };
    let hash = match ak.scheme {
        None => HashAlg::Sha256,
        Some(KeyScheme {
            alg: TPM_ALG_RSASSA,
            hash: Some(h),
            ..
        }) => HashAlg::from_tpm_alg_id(h)
            .ok_or_else(|| raw_error(format!("RSASSA with hash 0x{h:04x}")))?,
        Some(other) => {
            // A TPMT_SIGNATURE can never be modulus-sized, but say what was tried.
            return Signature::parse(bytes)
                .map(|sig| SignatureInput { sig, raw: false })
                .map_err(|_| raw_error(format!("0x{:04x}", other.alg)));
        }
    };
    Ok(SignatureInput {
        sig: Signature {
            scheme: SigScheme::RsaSsa,
            hash,
            value: SigValue::Rsa(bytes.to_vec()),
        },
        raw: true,
    })
}

fn parse_check(
    input: &QuoteInput<'_>,
    attest: &Result<Attest, ParseError>,
    sig: &Result<SignatureInput, ParseError>,
    ak: &Result<Public, ParseError>,
) -> Check {
    let mut errors = Vec::new();
    if let Err(e) = attest {
        errors.push(format!("quote (TPMS_ATTEST): {e}"));
    }
    if let Err(e) = sig {
        errors.push(format!("signature (TPMT_SIGNATURE): {e}"));
    }
    if let Err(e) = ak {
        errors.push(format!("AK (TPMT_PUBLIC): {e}"));
    }
    let presented = format!(
        "TPMS_ATTEST {} bytes, signature {} bytes, TPMT_PUBLIC {} bytes",
        input.attest.len(),
        input.signature.len(),
        input.ak_public.len()
    );
    if errors.is_empty() {
        let check = Check::pass(
            Step::TPM_PARSE,
            "well-formed quote, signature and AK",
            presented,
        );
        match sig {
            Ok(s) if s.raw => check.with_detail(RAW_SIGNATURE_DETAIL),
            _ => check,
        }
    } else {
        Check::fail(
            Step::TPM_PARSE,
            "well-formed quote, signature and AK",
            "malformed evidence",
            errors.join("; "),
        )
    }
}

/// `tpm.magic` when the quote did not parse: fail, with the magic presented if there is one.
fn magic_check(message: &[u8]) -> Check {
    let presented = Reader::new("TPMS_ATTEST", message)
        .u32_be("magic")
        .map(|m| format!("{m:08x}"))
        .unwrap_or_else(|_| "none (truncated)".into());
    let detail = if presented == format!("{TPM_GENERATED_VALUE:08x}") {
        "not run: the quote (TPMS_ATTEST) did not parse"
    } else {
        "not TPM_GENERATED_VALUE: the TPM did not produce this structure"
    };
    Check::fail(
        Step::TPM_MAGIC,
        format!("{TPM_GENERATED_VALUE:08x}"),
        presented,
        detail,
    )
}

fn signature_check(
    message: &[u8],
    sig: &Result<SignatureInput, ParseError>,
    ak: &Result<Public, ParseError>,
) -> Check {
    const STEP: Step = Step::TPM_SIGNATURE;
    let (sig, ak) = match (sig, ak) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(_), _) => return not_run(STEP, "the signature did not parse"),
        (_, Err(_)) => return not_run(STEP, "the AK (TPMT_PUBLIC) did not parse"),
    };
    let expected = format!("valid signature under AK {}", hex(ak.name()));
    let scheme = sig.sig.scheme_name();
    let fail = |why: String| {
        Check::fail(
            STEP,
            expected.clone(),
            format!("{scheme}: not verified"),
            why,
        )
    };
    if let Err(why) = scheme_consistent(&sig.sig, ak) {
        return fail(why);
    }
    let result = match (&ak.key, &sig.sig.value) {
        (
            PublicKey::Rsa {
                modulus, exponent, ..
            },
            SigValue::Rsa(s),
        ) => verify_rsa(modulus, *exponent, sig.sig.scheme, sig.sig.hash, message, s),
        (PublicKey::Ecc { curve, x, y, .. }, SigValue::Ecc { r, s }) => {
            verify_ecdsa(*curve, x, y, sig.sig.hash, message, r, s)
        }
        _ => Err("the signature's form does not match the AK's key type".into()),
    };
    let detail_prefix = if sig.raw {
        format!("{RAW_SIGNATURE_DETAIL}; ")
    } else {
        String::new()
    };
    match result {
        Ok(()) => Check::pass(STEP, expected.clone(), format!("{scheme}: valid"))
            .with_detail(if sig.raw { RAW_SIGNATURE_DETAIL } else { "" }),
        Err(why) => fail(format!("{detail_prefix}{why}")),
    }
}

/// The signature's scheme must fit the AK's type and, when the AK has one, its scheme.
fn scheme_consistent(sig: &Signature, ak: &Public) -> Result<(), String> {
    let type_ok = matches!(
        (&ak.key, sig.scheme),
        (PublicKey::Rsa { .. }, SigScheme::RsaSsa | SigScheme::RsaPss)
            | (PublicKey::Ecc { .. }, SigScheme::Ecdsa)
    );
    if !type_ok {
        return Err(format!(
            "a {} signature cannot come from a {} AK",
            sig.scheme.name(),
            ak.type_name()
        ));
    }
    match ak.scheme {
        None => Ok(()),
        Some(ks) if ks.alg == TPM_ALG_NULL => Ok(()),
        Some(ks) => {
            let hash_ok = ks.hash == Some(sig.hash.tpm_alg_id());
            if ks.alg == sig.scheme.alg_id() && hash_ok {
                Ok(())
            } else {
                Err(format!(
                    "the AK's scheme is 0x{:04x}/hash {}, the signature is {}",
                    ks.alg,
                    ks.hash
                        .map(|h| format!("0x{h:04x}"))
                        .unwrap_or_else(|| "none".into()),
                    sig.scheme_name()
                ))
            }
        }
    }
}

fn verify_rsa(
    modulus: &[u8],
    exponent: u32,
    scheme: SigScheme,
    hash: HashAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let n = strip_leading_zeros(modulus);
    let bits = n
        .first()
        .map(|top| n.len() * 8 - top.leading_zeros() as usize)
        .unwrap_or(0);
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "RSA AK of {bits} bits: only 2048- to 8192-bit RSA keys can be verified (ring)"
        ));
    }
    let e_bytes = if exponent == 0 {
        65_537u32.to_be_bytes()
    } else {
        exponent.to_be_bytes()
    };
    let e = strip_leading_zeros(&e_bytes);
    if sig.len() != modulus.len() {
        return Err(format!(
            "signature is {} bytes, the AK modulus {} bytes",
            sig.len(),
            modulus.len()
        ));
    }
    let params: &signature::RsaParameters = match (scheme, hash) {
        (SigScheme::RsaSsa, HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SigScheme::RsaSsa, HashAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (SigScheme::RsaSsa, HashAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        // Genuine TPMs sign PSS with the largest salt that fits (or, in FIPS mode, the hash
        // length): verified with the salt length the encoded message carries.
        (SigScheme::RsaPss, HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512) => {
            return super::pss::verify(n, e, hash, message, sig)
                .map(|_salt| ())
                .map_err(|e| format!("RSASSA-PSS signature does not verify under the AK: {e}"));
        }
        _ => {
            return Err(format!(
                "{}-{} is not accepted (SHA-256, SHA-384 or SHA-512 only)",
                scheme.name(),
                hash.name()
            ))
        }
    };
    RsaPublicKeyComponents { n, e }
        .verify(params, message, sig)
        .map_err(|_| "signature does not verify under the AK".to_owned())
}

fn verify_ecdsa(
    curve: EccCurve,
    x: &[u8],
    y: &[u8],
    hash: HashAlg,
    message: &[u8],
    r: &[u8],
    s: &[u8],
) -> Result<(), String> {
    let size = curve.coordinate_len();
    let mut point = vec![0x04];
    point.extend(left_pad(x, size).ok_or("AK x coordinate longer than the curve size")?);
    point.extend(left_pad(y, size).ok_or("AK y coordinate longer than the curve size")?);
    let r_fixed = left_pad(r, size).ok_or("signature r longer than the curve size")?;
    let s_fixed = left_pad(s, size).ok_or("signature s longer than the curve size")?;
    let (alg, sig): (&signature::EcdsaVerificationAlgorithm, Vec<u8>) = match (curve, hash) {
        (EccCurve::P256, HashAlg::Sha256) => (
            &signature::ECDSA_P256_SHA256_FIXED,
            [r_fixed, s_fixed].concat(),
        ),
        (EccCurve::P384, HashAlg::Sha384) => (
            &signature::ECDSA_P384_SHA384_FIXED,
            [r_fixed, s_fixed].concat(),
        ),
        // ring has no fixed-size form of the mixed pairs: use its ASN.1 (DER) form.
        (EccCurve::P256, HashAlg::Sha384) => (&signature::ECDSA_P256_SHA384_ASN1, der_ecdsa(r, s)),
        (EccCurve::P384, HashAlg::Sha256) => (&signature::ECDSA_P384_SHA256_ASN1, der_ecdsa(r, s)),
        _ => {
            return Err(format!(
                "ECDSA {} with {} is not accepted",
                curve.name(),
                hash.name()
            ))
        }
    };
    UnparsedPublicKey::new(alg, point)
        .verify(message, &sig)
        .map_err(|_| "signature does not verify under the AK".into())
}

/// `bytes` left-padded with zeros to `size`, or `None` when its significant part is longer.
pub(super) fn left_pad(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let significant = strip_leading_zeros(bytes);
    let pad = size.checked_sub(significant.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(significant);
    Some(out)
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` (both at most 66 bytes, so short-form lengths).
pub(super) fn der_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let v = strip_leading_zeros(v);
        let mut body = Vec::new();
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            body.push(0);
        }
        body.extend_from_slice(v);
        let mut out = vec![0x02, u8::try_from(body.len()).unwrap_or(u8::MAX)];
        out.extend(body);
        out
    }
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap_or(u8::MAX)];
    out.extend(body);
    out
}

fn ak_check(ak: &Result<Public, ParseError>, policy: &TpmPolicy) -> Check {
    const STEP: Step = Step::TPM_AK;
    let ak = match ak {
        Ok(k) => k,
        Err(_) => return not_run(STEP, "the AK (TPMT_PUBLIC) did not parse"),
    };
    let name = hex(ak.name());
    let sha256 = hex(HashAlg::Sha256.digest(ak.as_bytes()));
    let attrs = format!("attributes 0x{:08x}", ak.object_attributes);
    let problems = ak.ak_attribute_problems();
    if !problems.is_empty() {
        let required = AK_REQUIRED_ATTRIBUTES
            .iter()
            .fold(0, |mask, (bit, _)| mask | bit);
        let names: Vec<&str> = AK_REQUIRED_ATTRIBUTES
            .iter()
            .map(|(_, name)| *name)
            .collect();
        return Check::fail(
            STEP,
            format!(
                "attributes with 0x{required:08x} set ({}) and decrypt (0x{TPMA_OBJECT_DECRYPT:08x}) \
                 clear",
                names.join(", ")
            ),
            attrs,
            format!(
                "the AK is not a TPM-resident restricted signing key ({}): a key not restricted \
                 could sign a forged TPMS_ATTEST, and one without fixedTPM, fixedParent or \
                 sensitiveDataOrigin may have been made or copied outside a TPM",
                problems
                    .iter()
                    .map(|p| if p.contains(' ') { (*p).to_owned() } else { format!("{p} clear") })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let mut expected = vec!["restricted signing key generated in the TPM".to_owned()];
    let mut presented = vec![attrs];
    let mut problems = Vec::new();
    if let Some(pin) = &policy.ak_name {
        expected.push(format!("name {}", pin.trim().to_ascii_lowercase()));
        presented.push(format!("name {name}"));
        if !hex_equal(pin, &name) {
            problems.push("AK name differs from the policy's ak_name");
        }
    }
    if let Some(pin) = &policy.ak_sha256 {
        expected.push(format!("sha256 {}", pin.trim().to_ascii_lowercase()));
        presented.push(format!("sha256 {sha256}"));
        if !hex_equal(pin, &sha256) {
            problems.push("SHA-256 of the AK's TPMT_PUBLIC differs from the policy's ak_sha256");
        }
    }
    let (expected, presented) = (expected.join(", "), presented.join(", "));
    if !problems.is_empty() {
        return Check::fail(STEP, expected, presented, problems.join("; "));
    }
    let check = Check::pass(STEP, expected, presented);
    if !policy.pins_ak() {
        check.with_detail(format!(
            "AK {name} not pinned by the policy: the quote is only as trustworthy as the binding of \
             this AK to a TEE report or an AK certificate"
        ))
    } else {
        check
    }
}

/// Whether the hex text `pin` (either case, whitespace ignored) encodes the same bytes as the
/// lower-case hex `actual`.
fn hex_equal(pin: &str, actual: &str) -> bool {
    hexfmt::decode(pin).is_ok_and(|p| hex(p) == actual)
}

fn qualifying_data_check(attest: &Attest, nonce: Option<&[u8]>) -> Check {
    const STEP: Step = Step::TPM_QUALIFYING_DATA;
    let presented = hex(&attest.extra_data);
    match nonce {
        Some(n) => Check::equal(STEP, hex(n).as_str(), presented.as_str()).with_detail(
            if n == attest.extra_data.as_slice() {
                ""
            } else {
                "extraData is not the expected nonce: the quote may be replayed"
            },
        ),
        None => Check::pass(STEP, "any (no nonce given)", presented)
            .with_detail("no nonce given: freshness not established"),
    }
}

/// The quote's selection as bank → PCR set (merging repeated banks, dropping empty ones), or
/// the name of a bank this crate cannot hash.
fn quoted_selection(attest: &Attest) -> Result<BTreeMap<HashAlg, BTreeSet<u8>>, String> {
    let mut out: BTreeMap<HashAlg, BTreeSet<u8>> = BTreeMap::new();
    let Some(q) = attest.quote() else {
        return Err("not a quote".into());
    };
    for sel in &q.pcr_select {
        let indices = sel.indices();
        if indices.is_empty() {
            continue;
        }
        let bank = sel
            .bank()
            .ok_or_else(|| format!("unsupported PCR bank {}", sel.bank_name()))?;
        out.entry(bank)
            .or_default()
            .extend(indices);
    }
    Ok(out)
}

fn selection_text<'a, I>(sel: impl IntoIterator<Item = (&'a HashAlg, I)>) -> String
where
    I: IntoIterator<Item = &'a u8>,
{
    let banks: Vec<String> = sel
        .into_iter()
        .map(|(bank, indices)| {
            let list: Vec<String> = indices
                .into_iter()
                .map(u8::to_string)
                .collect();
            format!("{bank}:{}", list.join(","))
        })
        .collect();
    if banks.is_empty() {
        "none".into()
    } else {
        banks.join(" ")
    }
}

fn pcr_selection_check(attest: &Attest, pcrs: Option<&PcrValues>, policy: &TpmPolicy) -> Check {
    const STEP: Step = Step::TPM_PCR_SELECTION;
    let quoted = match quoted_selection(attest) {
        Ok(s) => s,
        Err(why) => return Check::fail(STEP, "a PCR selection of known banks", "", why),
    };
    let presented = selection_text(&quoted);
    let mut problems = Vec::new();

    let expected = match &policy.pcr_selection {
        None => "any".to_owned(),
        Some(wanted) => {
            let wanted: BTreeMap<HashAlg, BTreeSet<u8>> = wanted
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(b, v)| (*b, v.iter().copied().collect()))
                .collect();
            if wanted != quoted {
                problems.push(
                    "the quote's PCR selection is not the one the policy asks for".to_owned(),
                );
            }
            selection_text(&wanted)
        }
    };

    if let Some(values) = pcrs {
        for (bank, indices) in &quoted {
            let given = values.banks.get(bank);
            let missing: Vec<String> = indices
                .iter()
                .filter(|i| given.is_none_or(|g| !g.contains_key(i)))
                .map(u8::to_string)
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{bank} PCR values missing for {}",
                    missing.join(",")
                ));
            }
        }
        for (bank, given) in &values.banks {
            let selected = quoted.get(bank);
            let extra: Vec<String> = given
                .keys()
                .filter(|i| selected.is_none_or(|s| !s.contains(i)))
                .map(u8::to_string)
                .collect();
            if !extra.is_empty() {
                problems.push(format!(
                    "{bank} PCR values given for {} that the quote did not select",
                    extra.join(",")
                ));
            }
            for (index, value) in given {
                if value.len() != bank.digest_len() {
                    problems.push(format!(
                        "{bank} PCR {index} value is {} bytes, expected {}",
                        value.len(),
                        bank.digest_len()
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Check::pass(STEP, expected, presented)
    } else {
        Check::fail(STEP, expected, presented, problems.join("; "))
    }
}

fn pcr_digest_check(
    attest: &Attest,
    pcrs: Option<&PcrValues>,
    sig: &Result<SignatureInput, ParseError>,
) -> Check {
    const STEP: Step = Step::TPM_PCR_DIGEST;
    let Some(quote) = attest.quote() else {
        return not_run(STEP, "not a quote");
    };
    let presented = hex(&quote.pcr_digest);
    let Some(values) = pcrs else {
        return Check::fail(
            STEP,
            "",
            presented,
            "no PCR values given: the digest cannot be checked (pass the PCR values the quote covers)",
        );
    };
    let Ok(sig) = sig else {
        return Check::fail(
            STEP,
            "",
            presented,
            "the signature did not parse: its hash algorithm (which pcrDigest uses) is unknown",
        );
    };
    let hash = sig.sig.hash;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut missing = Vec::new();
    for sel in &quote.pcr_select {
        let indices = sel.indices();
        if indices.is_empty() {
            continue;
        }
        let Some(bank) = sel.bank() else {
            return Check::fail(
                STEP,
                "",
                presented,
                format!("unsupported PCR bank {}", sel.bank_name()),
            );
        };
        for index in indices {
            match values.value(bank, index) {
                Some(v) => parts.push(v),
                None => missing.push(format!("{bank}:{index}")),
            }
        }
    }
    if !missing.is_empty() {
        return Check::fail(
            STEP,
            "",
            presented,
            format!("PCR values missing for {}", missing.join(",")),
        );
    }
    let computed = hex(hash.digest_all(parts));
    let ok = computed == presented;
    Check::expect(STEP, ok, computed, presented).with_detail(if ok {
        format!("{hash} of the presented PCR values, in the quote's selection order")
    } else {
        format!(
            "{hash} of the presented PCR values differs from the quoted pcrDigest: the PCR values \
             are not the ones the TPM quoted"
        )
    })
}

fn policy_pcrs_check(pcrs: Option<&PcrValues>, policy: &TpmPolicy) -> Check {
    const STEP: Step = Step::TPM_POLICY_PCRS;
    // All entries when they match; only the differing ones when some differ.
    let (mut expected, mut presented) = (Vec::new(), Vec::new());
    let (mut bad_expected, mut bad_presented) = (Vec::new(), Vec::new());
    let mut problems = Vec::new();
    for (bank, wanted) in &policy.pcrs {
        for (index, want) in wanted {
            let want_text = format!("{bank}:{index}={}", want.trim().to_ascii_lowercase());
            let got = pcrs.and_then(|p| p.value(*bank, *index));
            let got_text = format!(
                "{bank}:{index}={}",
                got.map(hex)
                    .unwrap_or_else(|| "none".into())
            );
            let ok = match (hexfmt::decode(want), got) {
                (Ok(w), Some(g)) => w == g,
                _ => false,
            };
            if !ok {
                problems.push(format!("{bank} PCR {index}"));
                bad_expected.push(want_text.clone());
                bad_presented.push(got_text.clone());
            }
            expected.push(want_text);
            presented.push(got_text);
        }
    }
    if problems.is_empty() {
        Check::pass(STEP, expected.join(" "), presented.join(" "))
    } else {
        let (expected, presented) = (bad_expected.join(" "), bad_presented.join(" "));
        let extra = if pcrs.is_none() {
            " (no PCR values given)"
        } else {
            ""
        };
        Check::fail(
            STEP,
            expected,
            presented,
            format!(
                "PCR values differ from the policy: {}{extra}",
                problems.join(", ")
            ),
        )
    }
}
