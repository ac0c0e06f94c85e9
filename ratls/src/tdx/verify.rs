//! Verifying a TDX quote against Intel PCS collateral.
//!
//! The quote's own cryptography (PCK chain, QE report signature and binding, quote signature) is
//! checked here with ring; the collateral (TCB info, QE identity, CRLs, revocation, FMSPC, TCB
//! evaluation) is checked by dcap-qvl, the reference implementation, run on the same bytes.

use core::fmt;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

use super::chain::{self, INTEL_SGX_ROOT_CA_SHA256};
use super::quote::Quote;
use super::{TdxClaims, TdxPolicy, TCB_STATUSES};
use crate::digest::HashAlg;
use crate::hexfmt::{self, hex};
use crate::time::UnixTime;
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// Intel PCS collateral for one quote, parsed once and reusable across verifications.
///
/// The JSON layout is dcap-qvl's `QuoteCollateralV3`: `tcb_info` and `qe_identity` (the signed
/// JSON text), their hex signatures and PEM issuer chains, `pck_crl_issuer_chain`, and the hex
/// DER `root_ca_crl` and `pck_crl`. A `pck_certificate_chain` member is ignored: the PCK chain
/// is always the one carried in the quote, so that the chain checked in `tee.pck_chain` and the
/// one checked against the CRLs are the same.
#[derive(Clone)]
pub struct Collateral {
    inner: dcap_qvl::QuoteCollateralV3,
}

impl Collateral {
    /// The largest collateral document accepted.
    pub const MAX_JSON_LEN: usize = 4 * 1024 * 1024;

    /// Parse the collateral JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, CollateralError> {
        if json.len() > Self::MAX_JSON_LEN {
            return Err(CollateralError::TooLarge {
                size: json.len(),
                limit: Self::MAX_JSON_LEN,
            });
        }
        let mut inner: dcap_qvl::QuoteCollateralV3 =
            serde_json::from_slice(json).map_err(CollateralError::Json)?;
        inner.pck_certificate_chain = None;
        Ok(Self { inner })
    }

    /// The collateral as dcap-qvl holds it.
    pub fn as_dcap(&self) -> &dcap_qvl::QuoteCollateralV3 {
        &self.inner
    }
}

impl fmt::Debug for Collateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collateral")
            .field("tcb_info_len", &self.inner.tcb_info.len())
            .field("qe_identity_len", &self.inner.qe_identity.len())
            .field("pck_crl_len", &self.inner.pck_crl.len())
            .field("root_ca_crl_len", &self.inner.root_ca_crl.len())
            .finish_non_exhaustive()
    }
}

/// Why a collateral document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    #[error("TDX collateral JSON too large: {size} bytes > limit {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("TDX collateral JSON (QuoteCollateralV3): {0}")]
    Json(serde_json::Error),
}

/// Verify a TDX quote against collateral JSON (see [`Collateral`]) at time `now`.
pub fn verify_bytes(
    quote: &[u8],
    collateral_json: &[u8],
    policy: &TdxPolicy,
    now: UnixTime,
) -> Verdict {
    match Collateral::from_json(collateral_json) {
        Ok(collateral) => run(quote, Ok(&collateral), policy, now),
        Err(e) => run(quote, Err(&e), policy, now),
    }
}

/// Verify a TDX quote against pre-parsed collateral at time `now`.
pub fn verify(quote: &[u8], collateral: &Collateral, policy: &TdxPolicy, now: UnixTime) -> Verdict {
    run(quote, Ok(collateral), policy, now)
}

fn run(
    bytes: &[u8],
    collateral: Result<&Collateral, &CollateralError>,
    policy: &TdxPolicy,
    now: UnixTime,
) -> Verdict {
    let mut verdict = Verdict::new(Platform::Tdx);
    let quote = match Quote::parse(bytes) {
        Ok(quote) => quote,
        Err(e) => {
            verdict.push(Check::parse_failure(Step::TEE_PARSE, &e));
            return verdict;
        }
    };
    verdict.push(Check::pass(
        Step::TEE_PARSE,
        "TDX quote v4 or v5, ECDSA P-256",
        format!(
            "v{} {} ({} trailing bytes)",
            quote.header.version, quote.body_type, quote.trailing_bytes
        ),
    ));
    let mut claims = TdxClaims::from_quote(&quote);

    verdict.push(match collateral {
        Ok(_) => Check::pass(
            Step::TEE_COLLATERAL_PARSE,
            "QuoteCollateralV3 JSON",
            "parsed",
        ),
        Err(e) => Check::fail(
            Step::TEE_COLLATERAL_PARSE,
            "QuoteCollateralV3 JSON",
            "malformed collateral",
            e.to_string(),
        ),
    });

    let sig = &quote.signature_data;
    let chain = chain::check_pck_chain(sig.pck_chain_pem, now);
    claims.fmspc = chain.fmspc.map(hex);
    let chain_expected = format!(
        "PCK leaf <- PCK CA <- Intel SGX Root CA {}, valid at {now}",
        hex(INTEL_SGX_ROOT_CA_SHA256)
    );
    verdict.push(match &chain.result {
        Ok(root) => Check::pass(
            Step::TEE_PCK_CHAIN,
            chain_expected,
            format!("valid, root {root}"),
        ),
        Err(e) => Check::fail(
            Step::TEE_PCK_CHAIN,
            chain_expected,
            "invalid",
            e.to_string(),
        ),
    });

    verdict.push(check_qe_report_signature(&quote, chain.leaf_key.as_deref()));
    verdict.push(check_qe_report_binding(&quote));
    verdict.push(check_quote_signature(&quote));

    match collateral {
        Ok(collateral) => {
            check_collateral(&mut verdict, &mut claims, bytes, collateral, policy, now)
        }
        Err(_) => {
            verdict.push(Check::fail(
                Step::TEE_COLLATERAL,
                "collateral valid",
                "not evaluated",
                "the collateral JSON did not parse",
            ));
            verdict.push(Check::fail(
                Step::TEE_TCB,
                allowed_statuses(policy),
                "not evaluated",
                "the collateral JSON did not parse",
            ));
        }
    }

    verdict.push(check_debug(&quote, policy));
    let r = &quote.report;
    // In this order: MRTD, RTMR0-3, report_data.
    let (mr_td, report_data) = (Step::TEE_POLICY_MR_TD, Step::TEE_POLICY_REPORT_DATA);
    verdict.extend(policy_value(
        mr_td,
        "mr_td",
        policy.mr_td.as_deref(),
        &r.mr_td,
    ));
    let rtmr_steps = [
        (Step::TEE_POLICY_RTMR0, "rtmr0", &policy.rtmr0),
        (Step::TEE_POLICY_RTMR1, "rtmr1", &policy.rtmr1),
        (Step::TEE_POLICY_RTMR2, "rtmr2", &policy.rtmr2),
        (Step::TEE_POLICY_RTMR3, "rtmr3", &policy.rtmr3),
    ];
    verdict.extend(
        rtmr_steps
            .into_iter()
            .zip(&r.rtmr)
            .filter_map(|((step, name, pin), value)| {
                policy_value(step, name, pin.as_deref(), value)
            }),
    );
    verdict.extend(policy_value(
        report_data,
        "report_data",
        policy.report_data.as_deref(),
        &r.report_data,
    ));

    verdict.claims = Claims::Tdx(Box::new(claims));
    verdict
}

fn check_qe_report_signature(quote: &Quote<'_>, leaf_key: Option<&[u8]>) -> Check {
    const STEP: Step = Step::TEE_QE_REPORT_SIGNATURE;
    const EXPECTED: &str = "ECDSA P-256 signature by the PCK leaf key";
    let Some(key) = leaf_key else {
        return Check::fail(
            STEP,
            EXPECTED,
            "not evaluated",
            "no PCK leaf key could be read from the chain",
        );
    };
    let sig = &quote.signature_data;
    let ok = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(sig.qe_report.raw, &sig.qe_report_signature)
        .is_ok();
    Check::expect(STEP, ok, EXPECTED, if ok { "valid" } else { "invalid" })
}

fn check_qe_report_binding(quote: &Quote<'_>) -> Check {
    let sig = &quote.signature_data;
    let mut expected =
        HashAlg::Sha256.digest_all([sig.attestation_key.as_slice(), sig.qe_auth_data]);
    expected.resize(64, 0);
    let presented = &sig.qe_report.report_data;
    Check::expect(
        Step::TEE_QE_REPORT_BINDING,
        expected.as_slice() == presented.as_slice(),
        hex(&expected),
        hex(presented),
    )
    .with_detail("QE report_data = SHA-256(attestation key || QE auth data) || 32 zero bytes")
}

fn check_quote_signature(quote: &Quote<'_>) -> Check {
    let sig = &quote.signature_data;
    let mut key = [0x04u8; 65];
    for (dst, src) in key
        .iter_mut()
        .skip(1)
        .zip(sig.attestation_key)
    {
        *dst = src;
    }
    let ok = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(quote.signed, &sig.signature)
        .is_ok();
    Check::expect(
        Step::TEE_SIGNATURE,
        ok,
        format!(
            "ECDSA P-256 signature over header || body by attestation key {}",
            hex(sig.attestation_key)
        ),
        if ok { "valid" } else { "invalid" },
    )
}

fn check_collateral(
    verdict: &mut Verdict,
    claims: &mut TdxClaims,
    bytes: &[u8],
    collateral: &Collateral,
    policy: &TdxPolicy,
    now: UnixTime,
) {
    // Debug TDs are decided by `tee.policy.debug`, so dcap-qvl is told to let them through.
    let result = dcap_qvl::verify::QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify(bytes, collateral.as_dcap(), now.as_secs());
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let detail = format!("dcap-qvl: {e:#}");
            let step = dcap_error_step(&detail);
            if step == Step::TEE_TCB {
                verdict.push(Check::fail(
                    step,
                    allowed_statuses(policy),
                    e.root_cause().to_string(),
                    detail,
                ));
            } else {
                verdict.push(Check::fail(
                    step,
                    format!("collateral valid at {now}"),
                    "invalid",
                    detail,
                ));
                verdict.push(Check::fail(
                    Step::TEE_TCB,
                    allowed_statuses(policy),
                    "not evaluated",
                    "the collateral did not verify",
                ));
            }
            return;
        }
    };
    verdict.push(Check::pass(
        Step::TEE_COLLATERAL,
        format!("TCB info, QE identity, CRLs and their chains valid at {now}"),
        "valid",
    ));
    claims.tcb_status = Some(report.status.clone());
    claims
        .advisory_ids
        .clone_from(&report.advisory_ids);
    verdict.push(check_tcb_status(
        policy,
        &report.status,
        &report.advisory_ids,
    ));
}

fn allowed_statuses(policy: &TdxPolicy) -> String {
    format!("one of [{}]", policy.allowed_tcb_statuses.join(", "))
}

pub(super) fn check_tcb_status(policy: &TdxPolicy, status: &str, advisory_ids: &[String]) -> Check {
    let expected = allowed_statuses(policy);
    if let Some(unknown) = policy
        .allowed_tcb_statuses
        .iter()
        .find(|s| !TCB_STATUSES.contains(&s.as_str()))
    {
        return Check::fail(
            Step::TEE_TCB,
            expected,
            status,
            format!(
                "policy allowed_tcb_statuses: unknown TCB status {unknown:?} (known: {})",
                TCB_STATUSES.join(", ")
            ),
        );
    }
    let ok = policy
        .allowed_tcb_statuses
        .iter()
        .any(|s| s == status);
    let check = Check::expect(Step::TEE_TCB, ok, expected, status);
    if advisory_ids.is_empty() {
        check
    } else {
        check.with_detail(format!("advisories: {}", advisory_ids.join(", ")))
    }
}

/// The TD is refused when any TUD ("TD under debug", TD attributes byte 0) bit is set: bit 0
/// is DEBUG, and Intel defines every TUD bit as making the TD untrusted. dcap-qvl is run with
/// debug allowed, so this step is where the decision is made.
fn check_debug(quote: &Quote<'_>, policy: &TdxPolicy) -> Check {
    let tud = quote.report.td_attributes[0];
    let expected = if policy.allow_debug {
        "debug allowed"
    } else {
        "debug off"
    };
    let presented = if quote.report.debug() {
        "debug on".to_owned()
    } else if tud != 0 {
        format!("TD under debug (TUD bits {tud:#04x})")
    } else {
        "debug off".to_owned()
    };
    Check::expect(
        Step::TEE_POLICY_DEBUG,
        tud == 0 || policy.allow_debug,
        expected,
        presented,
    )
    .with_detail(format!("td_attributes {}", hex(quote.report.td_attributes)))
}

pub(super) fn policy_value<const N: usize>(
    step: Step,
    field: &'static str,
    wanted: Option<&str>,
    actual: &[u8; N],
) -> Option<Check> {
    let text = wanted?;
    Some(match hexfmt::decode_array::<N>(text) {
        Ok(expected) => Check::expect(step, expected == *actual, hex(expected), hex(actual)),
        Err(e) => Check::fail(step, text, hex(actual), format!("policy {field}: {e}")),
    })
}

/// The step a dcap-qvl error is reported under. The text only chooses the name; whatever it
/// says, the step has failed.
pub(super) fn dcap_error_step(message: &str) -> Step {
    let has = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| message.contains(n))
    };
    let lower = message.to_ascii_lowercase();
    if has(&[
        "No matching TCB level found",
        "from TDX module TCB levels",
        "TCB status is invalid",
        "current TDX TCB",
    ]) {
        Step::TEE_TCB
    } else if has(&[
        "QE Identity",
        "QeIdentity",
        "qe_identity",
        "QE MRSIGNER",
        "QE ISVPRODID",
        "QE MISCSELECT",
        "QE ATTRIBUTES",
        "QE ISVSVN",
        "QE report validation",
    ]) {
        Step::TEE_COLLATERAL_QE_IDENTITY
    } else if has(&[
        "TCBInfo",
        "TcbInfo",
        "TCB Info",
        "TCB info",
        "tcb_info",
        "Fmspc",
        "TDX module",
        "SGX component count",
        "TDX component count",
    ]) {
        Step::TEE_COLLATERAL_TCB_INFO
    } else if lower.contains("crl") || lower.contains("revoked") || lower.contains("revocation") {
        Step::TEE_COLLATERAL_CRL
    } else if has(&[
        "Debug mode is enabled",
        "TD profiling",
        "TD attributes",
        "TD migration",
        "SERVTD_EXT",
        "SEPT_VE_DISABLE",
        "MR service TD",
    ]) {
        Step::TEE_TD_ATTRIBUTES
    } else {
        Step::TEE_COLLATERAL
    }
}
