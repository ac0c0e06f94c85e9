//! Reading RA-TLS evidence that other projects put in certificates, and saying honestly what
//! it binds.
//!
//! Our own certificates carry a CMW evidence bundle in id-pe-cmw (see [`crate::bundle`]). This
//! module reads two other conventions, verifies the TEE evidence inside with this crate's
//! verifiers, checks the binding each format defines against the certificate's own key, and
//! labels the result with what that binding is worth ([`ForeignBinding`]): *key* binding at best,
//! never session binding, never TPM or IMA.
//!
//! # Formats
//!
//! ## Cosmian raw-quote extensions
//!
//! | OID | content of the extnValue OCTET STRING |
//! | --- | --- |
//! | [`COSMIAN_SGX_OID`] `1.2.840.113741.1337.6` | a raw Intel SGX ECDSA quote |
//! | [`COSMIAN_SEV_OID`] `1.2.840.113741.1337.7` | an SEV-SNP report, bare (1184 bytes) or with AMD's certificate table (below) |
//! | [`COSMIAN_TDX_OID`] `1.2.840.113741.1337.8` | a raw Intel TDX quote (v4, from `tdx_att_get_quote`) |
//!
//! The extnValue contents are the quote bytes themselves, with no inner OCTET STRING.
//!
//! **Binding.** `report_data = SHA-256(key) ‖ extra`, where `key` is the certificate's P-256
//! public key as an uncompressed SEC1 point (the subjectPublicKey BIT STRING contents, *not*
//! the DER SubjectPublicKeyInfo) and `extra` is 32 bytes the generator may choose (zeros when
//! none). Cosmian only makes P-256 keys.
//!
//! **SEV-SNP value.** Either the bare 1184-byte report, or bincode 1.x of
//! `sev_quote::Quote { report: sev::AttestationReport, certs: Vec<CertTableEntry> }`: the
//! report's 1184 bytes (its serde form is its raw layout), a u64 LE entry count, then per entry
//! a u32 LE `CertType` index (`Empty, ARK, ASK, VCEK, VLEK, CRL, OTHER(GUID)` = 0..6) and the
//! certificate as a u64 LE length and DER bytes. The table is what `/dev/sev-guest`'s extended
//! report returned, so the VCEK may or may not be there; when it is not, the verifier must be
//! given it ([`Inputs::vcek`], from AMD KDS), else `tee.chain.vcek` fails.
//!
//! Found in `github.com/Cosmian/tee-tools`: `crate/ratls/src/verify.rs` (`forge_report_data`:
//! SHA-256 of `VerifyingKey::to_sec1_bytes()`, then the extra data or 32 zero bytes; the
//! extension OIDs), `crate/ratls/src/generate.rs` (the quote goes into the extension as is; keys
//! are P-256), `crate/sev_quote/src/quote.rs` (the bincode `Quote`, with the bare report as the
//! fallback), `crate/tdx_quote/src/quote.rs` (raw v4 quotes). Checked on that repository's
//! `crate/ratls/data/sev-cert.ratls.pem`: a 5895-byte value holding a version-4 report and a
//! table of ARK, VCEK and ASK, whose report_data is SHA-256 of the uncompressed point followed
//! by 32 zero bytes (SHA-256 of the SPKI DER does not match). Cosmian's own `verify_ratls` only
//! checks report_data when the caller passes a policy; this module always checks it.
//!
//! ## TCG DICE tagged evidence ("Interoperable RA-TLS")
//!
//! OID [`TCG_DICE_TAGGED_EVIDENCE_OID`] `2.23.133.5.4.9` (tcg-dice-tagged-evidence); the
//! extnValue contents are CBOR: `tag([ bstr evidence, bstr claims-buffer ])`, where the tag
//! names the evidence format (60000 Intel TEE quote, 60001 Intel TEE report, 60002 legacy SGX
//! report, all IANA-registered; rats-tls/rats-rs also use private tags, e.g. `0x1a7504` for a
//! raw SEV-SNP report, and `0x1a7501` for Intel quotes before the IANA registration; see
//! [`dice`]). The claims buffer is a CBOR map of text names to byte strings:
//! `"pubkey-hash"` (required) holds the CBOR `hash-entry` `[hash-alg-id, bstr hash]` over the
//! certificate's DER SubjectPublicKeyInfo (hash-alg-id 1 sha-256, 7 sha-384, 8 sha-512);
//! `"nonce"` (optional) a nonce for pre-session freshness; any other entry is a custom claim.
//!
//! **Binding.** `report_data = SHA-256(claims-buffer) ‖ 32 zero bytes`, and the claims
//! buffer's pubkey-hash = H(SPKI DER): two links, `binding.report_data` then `binding.spki`.
//!
//! Found in `github.com/CCC-Attestation/interoperable-ra-tls` (`docs/Interoperable-RA-TLS-cert-
//! edvidence-formats.md`, `docs/Interoperable-RA-TLS-SGX-TDX-evidence-formats.md`),
//! `github.com/inclavare-containers/rats-rs` (`rats-cert/src/cert/dice/cbor.rs`: the tags and
//! the CBOR shapes; `rats-cert/src/cert/verify.rs`: SHA-256 of the claims buffer, zero-padded
//! report_data, pubkey-hash over the SPKI DER) and `inclavare-containers/rats-tls`
//! (`src/core/dice.c`, `src/include/internal/dice.h`), and the IANA CBOR tag registry entries
//! 60000–60002. Checked on interoperable-ra-tls' `interoperability-tests/rats-tls-cert.pem`:
//! tag 60000 over an SGX v3 quote whose report_data is SHA-256 of the claims buffer and 32 zero
//! bytes, and a pubkey-hash `[1, SHA-256(SPKI DER)]`.
//!
//! # What is verified
//!
//! [`verify_with`] records, in order:
//!
//! | step | what |
//! | --- | --- |
//! | `foreign.certificate` | the certificate parses (DER, at most [`MAX_CERT_LEN`] bytes) |
//! | `foreign.validity` | `now` is inside its validity window: the only freshness these formats give |
//! | `foreign.extension` | exactly one foreign evidence extension, **non-critical**, at most [`MAX_EXTENSION_LEN`] bytes |
//! | `foreign.format` | the value parses as its format says |
//! | `tee.*` | the SEV-SNP ([`crate::snp`]) or TDX ([`crate::tdx`]) verifier's own steps; `tee.supported` fails for SGX and for formats no remote verifier can check |
//! | `binding.report_data` | (DICE) report_data = SHA-256(claims buffer) ‖ 32 zero bytes |
//! | `binding.spki` | (Cosmian) report_data\[0..32\] = SHA-256(SEC1 key); (DICE) pubkey-hash = H(SPKI DER) |
//! | `binding.challenge` | (Cosmian) report_data\[32..64\], (DICE) the nonce claim: equal to the challenge the verifier chose ([`Inputs::challenge`]), or zeros / absent when it chose none |
//! | `binding.level` | every binding step passed; presents [`ForeignBinding::label`] |
//!
//! Fail closed: TDX without collateral fails `tee.collateral.parse` (the signatures are still
//! checked), SEV-SNP without a VCEK/VLEK fails `tee.chain.vcek`, SGX fails `tee.supported`.
//! The certificate's own signature is not checked here: the TLS handshake proves possession of
//! its key, which is what the evidence binds.

pub(crate) mod claims;
mod cosmian;
pub mod dice;

#[cfg(test)]
mod tests;

pub use self::claims::{
    ForeignBinding, ForeignKind, COSMIAN_SEV_OID, COSMIAN_SGX_OID, COSMIAN_TDX_OID,
    TCG_DICE_TAGGED_EVIDENCE_OID,
};
use self::cosmian::{CertType, SevQuote};
use self::dice::{ClaimsBuffer, DiceClaims, EvidenceFormat, Tagged};
pub use crate::claims::ForeignClaims;
use crate::codec::ParseError;
use crate::hexfmt::hex;
use crate::pki::{Cert, CertError};
use crate::policy::Policy;
use crate::time::UnixTime;
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// Largest certificate read here: rustls refuses handshake messages over 64 KiB.
pub const MAX_CERT_LEN: usize = 64 * 1024;
/// Largest foreign evidence extension accepted (a TDX quote with its PCK chain is ~5 KiB, a
/// Cosmian SEV-SNP value with ARK, ASK and VCEK ~6 KiB).
pub const MAX_EXTENSION_LEN: usize = 48 * 1024;

/// A foreign evidence extension as found in a certificate (not yet parsed or verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignEvidence {
    pub kind: ForeignKind,
    /// The extension OID, dotted.
    pub oid: String,
    pub critical: bool,
    /// The extnValue contents.
    pub value: Vec<u8>,
}

/// Why a foreign extension value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A binary structure (report, quote, certificate table) is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Not (one item of) well-formed CBOR.
    #[error("{what}: not valid CBOR: {reason}")]
    Cbor { what: &'static str, reason: String },
    /// Well-formed, but not the shape the format defines.
    #[error("{what}: expected {expected}, presented {presented}")]
    Shape {
        what: &'static str,
        expected: &'static str,
        presented: String,
    },
    /// More items than this module accepts.
    #[error("{what}: {size} {field} exceed the limit of {limit}")]
    TooLarge {
        what: &'static str,
        field: &'static str,
        size: usize,
        limit: usize,
    },
    /// A DICE tag this module does not know.
    #[error("TCG DICE tagged evidence: unknown CBOR tag {0} ({0:#x})")]
    UnknownTag(u64),
}

/// What the verifier brings besides the certificate.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub now: UnixTime,
    /// The simulated ARK (DER or PEM). When set, SEV-SNP evidence must chain to it instead of
    /// a pinned AMD root and the verdict says SIMULATED. Never set this in production.
    pub insecure_sim_root: Option<&'a [u8]>,
    /// The VCEK (DER or PEM), for SEV-SNP evidence that does not carry it (from AMD KDS).
    pub vcek: Option<&'a [u8]>,
    /// The VLEK (DER or PEM), likewise.
    pub vlek: Option<&'a [u8]>,
    /// ASK (or ASVK) then ARK, PEM; default: carried in the evidence, else built in.
    pub snp_chain: Option<&'a [u8]>,
    /// Intel PCS collateral (dcap-qvl `QuoteCollateralV3` JSON) for TDX quotes.
    pub tdx_collateral: Option<&'a [u8]>,
    /// The challenge the verifier gave the attester, when it gave one: Cosmian's 32 bytes of
    /// extra data, or DICE's nonce claim, must then equal it (and be zeros / absent otherwise).
    pub challenge: Option<&'a [u8]>,
}

impl<'a> Inputs<'a> {
    /// Nothing but the time.
    pub fn new(now: UnixTime) -> Self {
        Self {
            now,
            insecure_sim_root: None,
            vcek: None,
            vlek: None,
            snp_chain: None,
            tdx_collateral: None,
            challenge: None,
        }
    }
}

/// Every foreign evidence extension in a certificate (DER, at most [`MAX_CERT_LEN`] bytes), in
/// [`ForeignKind::ALL`] order; empty when there is none.
pub fn find(cert_der: &[u8]) -> Result<Vec<ForeignEvidence>, CertError> {
    let cert = Cert::from_der_with_limit(cert_der, MAX_CERT_LEN)?;
    Ok(find_in(&cert))
}

fn find_in(cert: &Cert) -> Vec<ForeignEvidence> {
    ForeignKind::ALL
        .iter()
        .filter_map(|&kind| {
            cert.extension(kind.oid())
                .map(|(critical, value)| ForeignEvidence {
                    kind,
                    oid: kind.oid().to_owned(),
                    critical,
                    value: value.to_vec(),
                })
        })
        .collect()
}

/// Verify the foreign evidence in a certificate against `policy` at `now` (see the module docs
/// for the steps). `insecure_sim_root`: see [`Inputs::insecure_sim_root`].
pub fn verify(
    cert_der: &[u8],
    policy: &Policy,
    now: UnixTime,
    insecure_sim_root: Option<&[u8]>,
) -> Verdict {
    let mut inputs = Inputs::new(now);
    inputs.insecure_sim_root = insecure_sim_root;
    verify_with(cert_der, policy, &inputs)
}

/// [`verify`] with what the certificate does not carry: a VCEK, TDX collateral, a challenge.
pub fn verify_with(cert_der: &[u8], policy: &Policy, inputs: &Inputs<'_>) -> Verdict {
    let mut v = Verdict::new(Platform::Unknown);
    let cert = match Cert::from_der_with_limit(cert_der, MAX_CERT_LEN) {
        Ok(cert) => cert,
        Err(e) => {
            v.push(Check::fail(
                Step::FOREIGN_CERTIFICATE,
                format!("a DER X.509 certificate of at most {MAX_CERT_LEN} bytes"),
                format!("{} bytes, unparseable", cert_der.len()),
                e.to_string(),
            ));
            v.claims = claims(None);
            return v;
        }
    };
    v.push(Check::pass(
        Step::FOREIGN_CERTIFICATE,
        format!("a DER X.509 certificate of at most {MAX_CERT_LEN} bytes"),
        format!(
            "{} bytes, subject {}, {} key",
            cert_der.len(),
            cert.subject_cn(),
            cert.key_algorithm()
        ),
    ));
    v.push(match cert.check_validity(inputs.now) {
        Ok(()) => Check::pass(
            Step::FOREIGN_VALIDITY,
            format!("valid at {}", inputs.now),
            "inside its validity window",
        ),
        Err(e) => Check::fail(
            Step::FOREIGN_VALIDITY,
            format!("valid at {}", inputs.now),
            "outside its validity window",
            format!("{e}; the certificate's validity is the only freshness these formats give"),
        ),
    });
    let found = find_in(&cert);
    let [evidence] = found.as_slice() else {
        v.push(Check::fail(
            Step::FOREIGN_EXTENSION,
            extension_expected(),
            if found.is_empty() {
                "none".to_owned()
            } else {
                found
                    .iter()
                    .map(|e| e.oid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if found.is_empty() {
                "no Cosmian (1.2.840.113741.1337.{6,7,8}) or TCG DICE (2.23.133.5.4.9) evidence \
                 extension"
            } else {
                "several evidence extensions: which one binds the key is ambiguous"
            },
        ));
        v.claims = claims(None);
        return v;
    };
    verify_found(evidence, &cert, policy, inputs, v)
}

/// Verify one foreign evidence extension (as [`find`] returns it) against `cert`'s own key,
/// without the certificate steps. A critical or oversized extension is a failed
/// `foreign.extension` step, a malformed one a failed `foreign.format` step.
pub fn verify_evidence(
    evidence: &ForeignEvidence,
    cert: &Cert,
    policy: &Policy,
    inputs: &Inputs<'_>,
) -> Verdict {
    verify_found(
        evidence,
        cert,
        policy,
        inputs,
        Verdict::new(Platform::Unknown),
    )
}

fn verify_found(
    evidence: &ForeignEvidence,
    cert: &Cert,
    policy: &Policy,
    inputs: &Inputs<'_>,
    mut v: Verdict,
) -> Verdict {
    let presented = format!(
        "{} ({}), {}, {} bytes",
        evidence.oid,
        evidence.kind,
        if evidence.critical {
            "critical"
        } else {
            "non-critical"
        },
        evidence.value.len()
    );
    let problem = if evidence.critical {
        Some(
            "a critical evidence extension is refused: RA-TLS evidence rides in a non-critical \
             extension so that plain TLS clients still accept the certificate",
        )
    } else if evidence.value.len() > MAX_EXTENSION_LEN {
        Some("the extension exceeds the size cap")
    } else {
        None
    };
    match problem {
        Some(why) => {
            v.push(Check::fail(
                Step::FOREIGN_EXTENSION,
                extension_expected(),
                presented,
                why,
            ));
            v.claims = claims(Some(evidence));
            return v;
        }
        None => v.push(Check::pass(
            Step::FOREIGN_EXTENSION,
            extension_expected(),
            presented,
        )),
    }

    let mut state = State::default();
    match evidence.kind {
        ForeignKind::CosmianSevSnp => {
            cosmian_sev(&mut v, &mut state, &evidence.value, inputs, policy)
        }
        ForeignKind::CosmianTdx => {
            v.push(Check::pass(
                Step::FOREIGN_FORMAT,
                "a raw TDX quote",
                format!("{} bytes", evidence.value.len()),
            ));
            state.format = Some("raw TDX quote".into());
            tdx(&mut v, &mut state, &evidence.value, inputs, policy);
        }
        ForeignKind::CosmianSgx => {
            sgx(&mut v, &mut state, &evidence.value);
        }
        ForeignKind::TcgDiceTagged => {
            dice_evidence(&mut v, &mut state, &evidence.value, inputs, policy);
        }
    }
    if let Some(report_data) = state.report_data {
        match evidence.kind {
            ForeignKind::TcgDiceTagged => bind_dice(&mut v, &state, &report_data, cert, inputs),
            _ => bind_cosmian(&mut v, &report_data, cert, inputs),
        }
    }
    // The binding is worth something only if the evidence it rests on was verified too.
    let first_failure = v.first_failure().map(|c| c.step);
    let bound = state.report_data.is_some() && first_failure.is_none();
    let binding = if bound {
        evidence.kind.binding()
    } else {
        ForeignBinding::None
    };
    let level = Check::expect(
        Step::BINDING_LEVEL,
        bound,
        format!("the format's binding: {}", evidence.kind.binding().label()),
        binding.label(),
    );
    v.push(match first_failure {
        Some(step) => level.with_detail(format!("not reached: {step} failed")),
        None if !bound => level.with_detail("no report_data to bind"),
        None => level,
    });
    v.claims = Claims::Foreign(Box::new(ForeignClaims {
        kind: Some(evidence.kind),
        oid: Some(evidence.oid.clone()),
        format: state.format,
        binding,
        binding_label: binding.label(),
        challenge_checked: bound && inputs.challenge.is_some(),
        report_data: state.report_data.map(hex),
        dice: state.dice,
        tee: state.tee,
    }));
    v
}

fn extension_expected() -> String {
    format!("one non-critical foreign evidence extension of at most {MAX_EXTENSION_LEN} bytes")
}

/// What the format-specific steps leave for the binding steps and the claims.
#[derive(Default)]
struct State {
    format: Option<String>,
    report_data: Option<[u8; 64]>,
    /// DICE: the claims buffer (raw, for its hash) and what it says.
    claims_buffer: Option<(Vec<u8>, ClaimsBuffer)>,
    dice: Option<DiceClaims>,
    tee: Option<Claims>,
}

fn claims(evidence: Option<&ForeignEvidence>) -> Claims {
    Claims::Foreign(Box::new(ForeignClaims {
        kind: evidence.map(|e| e.kind),
        oid: evidence.map(|e| e.oid.clone()),
        format: None,
        binding: ForeignBinding::None,
        binding_label: ForeignBinding::None.label(),
        challenge_checked: false,
        report_data: None,
        dice: None,
        tee: None,
    }))
}

/// Merge a TEE verifier's verdict into ours.
fn absorb(v: &mut Verdict, state: &mut State, tee: Verdict) {
    v.platform = tee.platform;
    v.simulated |= tee.simulated;
    v.extend(tee.checks);
    state.tee = Some(tee.claims);
}

fn cosmian_sev(
    v: &mut Verdict,
    state: &mut State,
    value: &[u8],
    inputs: &Inputs<'_>,
    policy: &Policy,
) {
    const EXPECTED: &str = "an SEV-SNP report, bare or as bincode sev_quote::Quote with its \
                            certificate table";
    v.platform = Platform::SevSnp;
    let quote = match SevQuote::parse(value) {
        Ok(quote) => quote,
        Err(e) => {
            v.push(
                Check::parse_failure(Step::FOREIGN_FORMAT, &e)
                    .with_detail(format!("{e} (expected {EXPECTED})")),
            );
            return;
        }
    };
    let format = if quote.with_table {
        format!(
            "sev_quote::Quote with certificates [{}]",
            quote
                .certs
                .iter()
                .map(|(k, _)| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "bare SEV-SNP report (no certificates)".to_owned()
    };
    v.push(Check::pass(Step::FOREIGN_FORMAT, EXPECTED, format.clone()));
    state.format = Some(format);
    snp(v, state, quote.report, &quote, inputs, policy);
}

/// Verify an SEV-SNP report with whatever certificates the evidence and the inputs give.
fn snp(
    v: &mut Verdict,
    state: &mut State,
    report: &[u8],
    carried: &SevQuote<'_>,
    inputs: &Inputs<'_>,
    policy: &Policy,
) {
    // Raw bytes only (the SNP verifier would also take hex text).
    let parsed = match crate::snp::AttestationReport::parse_raw(report) {
        Ok(parsed) => parsed,
        Err(e) => {
            v.push(Check::parse_failure(Step::TEE_PARSE, &e));
            return;
        }
    };
    let vcek = carried
        .cert(CertType::Vcek)
        .or(inputs.vcek);
    let vlek = carried
        .cert(CertType::Vlek)
        .or(inputs.vlek);
    // The carried ASK/ASVK and ARK, as the PEM chain the SNP verifier takes (the ARK must
    // still be a pinned one); else the caller's, else the built-in chain.
    let carried_chain = match (carried.cert(CertType::Ask), carried.cert(CertType::Ark)) {
        (Some(ask), Some(ark)) => Some(pem::encode_many(&[
            pem::Pem::new("CERTIFICATE", ask.to_vec()),
            pem::Pem::new("CERTIFICATE", ark.to_vec()),
        ])),
        _ => None,
    };
    let certs = crate::snp::CertInput {
        vcek: vcek.map(<[u8]>::to_vec),
        vlek: vlek.map(<[u8]>::to_vec),
        chain: carried_chain
            .map(String::into_bytes)
            .or_else(|| inputs.snp_chain.map(<[u8]>::to_vec)),
        crl: None,
    };
    let mut tee = match inputs.insecure_sim_root {
        Some(root) => {
            crate::snp::verify_simulated(report, &certs, &policy.snp, inputs.now, Some(root))
        }
        None => crate::snp::verify_bytes(report, &certs, &policy.snp, inputs.now),
    };
    if vcek.is_none() && vlek.is_none() {
        for check in tee
            .checks
            .iter_mut()
            .filter(|c| c.step == Step::TEE_CHAIN_VCEK && !c.ok)
        {
            check.presented = "none carried, none given".into();
            check.detail = "the evidence carries the bare report without AMD's certificate \
                            table: fetch the VCEK from AMD KDS for the report's chip_id and \
                            reported TCB and give it to the verifier"
                .into();
        }
    }
    state.report_data = Some(parsed.report_data);
    absorb(v, state, tee);
}

fn tdx(v: &mut Verdict, state: &mut State, quote: &[u8], inputs: &Inputs<'_>, policy: &Policy) {
    v.platform = Platform::Tdx;
    let mut tee = crate::tdx::verify_bytes(
        quote,
        inputs
            .tdx_collateral
            .unwrap_or_default(),
        &policy.tdx,
        inputs.now,
    );
    if inputs.tdx_collateral.is_none() {
        for check in tee.checks.iter_mut().filter(|c| {
            !c.ok
                && matches!(
                    c.step,
                    Step::TEE_COLLATERAL_PARSE | Step::TEE_COLLATERAL | Step::TEE_TCB
                )
        }) {
            check.presented = "no collateral given".into();
            check.detail = "the evidence carries only the quote: Intel PCS collateral (TCB info, \
                            QE identity, CRLs) must be given to evaluate the TCB"
                .into();
        }
    }
    state.report_data = crate::tdx::Quote::parse(quote)
        .ok()
        .map(|q| q.report.report_data);
    absorb(v, state, tee);
}

fn sgx(v: &mut Verdict, state: &mut State, quote: &[u8]) {
    v.platform = Platform::Sgx;
    match cosmian::sgx_report_data(quote) {
        Ok(report_data) => {
            v.push(Check::pass(
                Step::FOREIGN_FORMAT,
                "an SGX ECDSA quote (v3, or v4 for SGX)",
                format!("{} bytes", quote.len()),
            ));
            state.format = Some("SGX ECDSA quote".into());
            // Read so the binding steps can say whether it was made for this key; it is not
            // authenticated, and the verdict is rejected at `tee.supported` anyway.
            state.report_data = Some(report_data);
        }
        Err(e) => v.push(Check::parse_failure(Step::FOREIGN_FORMAT, &e)),
    }
    v.push(Check::fail(
        Step::TEE_SUPPORTED,
        "SEV-SNP or TDX evidence",
        "an Intel SGX quote",
        "this verifier has no SGX quote verifier: it attests confidential VMs (SEV-SNP, TDX), \
         not enclaves",
    ));
}

fn dice_evidence(
    v: &mut Verdict,
    state: &mut State,
    value: &[u8],
    inputs: &Inputs<'_>,
    policy: &Policy,
) {
    const EXPECTED: &str = "CBOR tag([bstr evidence, bstr claims-buffer]) with a pubkey-hash claim";
    let parsed = Tagged::parse(value).and_then(|tagged| {
        let (name, format) =
            dice::tag_format(tagged.tag).ok_or(FormatError::UnknownTag(tagged.tag))?;
        let claims = ClaimsBuffer::parse(&tagged.claims_buffer)?;
        Ok((tagged, name, format, claims))
    });
    let (tagged, name, format, claims) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            v.push(Check::fail(
                Step::FOREIGN_FORMAT,
                EXPECTED,
                "malformed evidence",
                e.to_string(),
            ));
            if let Ok(tagged) = Tagged::parse(value) {
                state.dice = Some(DiceClaims::new(&tagged, None));
            }
            return;
        }
    };
    v.push(Check::pass(
        Step::FOREIGN_FORMAT,
        EXPECTED,
        format!(
            "tag {} ({name}), {} evidence bytes, claims [{}]",
            tagged.tag,
            tagged.evidence.len(),
            core::iter::once(dice::CLAIM_PUBKEY_HASH)
                .chain(
                    claims
                        .nonce
                        .as_ref()
                        .map(|_| dice::CLAIM_NONCE)
                )
                .chain(claims.custom.keys().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    state.format = Some(name.to_owned());
    state.dice = Some(DiceClaims::new(&tagged, Some(&claims)));
    match format {
        EvidenceFormat::SevSnpReport => {
            v.platform = Platform::SevSnp;
            let bare = SevQuote {
                report: &tagged.evidence,
                certs: Vec::new(),
                with_table: false,
            };
            snp(v, state, &tagged.evidence, &bare, inputs, policy);
        }
        EvidenceFormat::IntelQuote => {
            // The quote header tells SGX from TDX (v4/v5 with TEE type 0x81).
            let is_tdx = crate::tdx::Quote::parse(&tagged.evidence).is_ok()
                || tagged.evidence.get(4..8) == Some(&[0x81, 0, 0, 0][..]);
            if is_tdx {
                tdx(v, state, &tagged.evidence, inputs, policy);
            } else {
                sgx_unsupported(v, state, &tagged.evidence);
            }
        }
        EvidenceFormat::Unsupported(why) => {
            v.push(Check::fail(
                Step::TEE_SUPPORTED,
                "SEV-SNP report or Intel TEE quote",
                name,
                why,
            ));
        }
    }
    state.claims_buffer = Some((tagged.claims_buffer, claims));
}

/// An SGX quote inside DICE evidence: read its report_data, refuse it at `tee.supported`.
fn sgx_unsupported(v: &mut Verdict, state: &mut State, quote: &[u8]) {
    v.platform = Platform::Sgx;
    match cosmian::sgx_report_data(quote) {
        Ok(report_data) => state.report_data = Some(report_data),
        Err(e) => v.push(Check::parse_failure(Step::TEE_PARSE, &e)),
    }
    v.push(Check::fail(
        Step::TEE_SUPPORTED,
        "SEV-SNP or TDX evidence",
        "an Intel SGX quote",
        "this verifier has no SGX quote verifier: it attests confidential VMs (SEV-SNP, TDX), \
         not enclaves",
    ));
}

/// Cosmian: report_data = SHA-256(SEC1 key) ‖ extra.
fn bind_cosmian(v: &mut Verdict, report_data: &[u8; 64], cert: &Cert, inputs: &Inputs<'_>) {
    let (head, tail) = report_data.split_at(32);
    match cosmian::key_bytes(cert) {
        Ok(key) => {
            let want = crate::digest::sha256(key);
            v.push(Check::expect(
                Step::BINDING_SPKI,
                head == want,
                format!(
                    "report_data[0..32] = SHA-256 of the certificate's SEC1 public key {}",
                    hex(want)
                ),
                hex(head),
            ));
        }
        Err(why) => v.push(Check::fail(
            Step::BINDING_SPKI,
            "report_data[0..32] = SHA-256 of the certificate's SEC1 P-256 public key",
            hex(head),
            why,
        )),
    }
    let (want, what) = match inputs.challenge {
        Some(challenge) => (challenge.to_vec(), "the challenge the verifier chose"),
        None => (
            vec![0u8; 32],
            "32 zero bytes (the verifier chose no challenge)",
        ),
    };
    let check = Check::expect(
        Step::BINDING_CHALLENGE,
        tail == want.as_slice(),
        format!("report_data[32..64] = {what} {}", hex(&want)),
        hex(tail),
    );
    v.push(if check.ok || inputs.challenge.is_some() {
        check
    } else {
        check.with_detail("extra data the verifier did not choose")
    });
}

/// DICE: report_data = SHA-256(claims buffer) ‖ 0³²; pubkey-hash = H(SPKI DER); nonce.
fn bind_dice(
    v: &mut Verdict,
    state: &State,
    report_data: &[u8; 64],
    cert: &Cert,
    inputs: &Inputs<'_>,
) {
    let Some((buffer, claims)) = state.claims_buffer.as_ref() else {
        return;
    };
    let mut want = [0u8; 64];
    for (dst, src) in want
        .iter_mut()
        .zip(crate::digest::sha256(buffer))
    {
        *dst = src;
    }
    v.push(Check::expect(
        Step::BINDING_REPORT_DATA,
        *report_data == want,
        format!(
            "SHA-256 of the claims buffer, then 32 zero bytes {}",
            hex(want)
        ),
        hex(report_data),
    ));
    let spki_hash = claims
        .pubkey_hash_alg
        .digest(cert.spki_der());
    v.push(Check::expect(
        Step::BINDING_SPKI,
        claims.pubkey_hash == spki_hash,
        format!(
            "pubkey-hash = {} of the certificate's SubjectPublicKeyInfo {}",
            claims.pubkey_hash_alg.name(),
            hex(&spki_hash)
        ),
        hex(&claims.pubkey_hash),
    ));
    let show = |n: Option<&[u8]>| n.map_or_else(|| "no nonce".to_owned(), hex);
    let check = Check::expect(
        Step::BINDING_CHALLENGE,
        claims.nonce.as_deref() == inputs.challenge,
        show(inputs.challenge),
        show(claims.nonce.as_deref()),
    );
    v.push(if check.ok || inputs.challenge.is_some() {
        check
    } else {
        check.with_detail("a nonce the verifier did not choose")
    });
}
