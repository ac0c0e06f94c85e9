//! Verification of an HCL report and, optionally, a vTPM quote under the AK it vouches for (see
//! the module docs for the steps).

use super::report::{HclReport, HwReport, ReportType, TdReport};
use super::{AzureClaims, RuntimeData};
use crate::hexfmt::hex;
use crate::policy::Policy;
use crate::snp::CertInput;
use crate::time::UnixTime;
use crate::tpm::structures::{strip_leading_zeros, PublicKey};
use crate::tpm::{PcrValues, Public, QuoteInput};
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// A vTPM quote, to verify with the AK the HCL report vouches for.
#[derive(Debug, Clone)]
pub struct VtpmQuote<'a> {
    /// `TPMS_ATTEST` (or `TPM2B_ATTEST`).
    pub attest: &'a [u8],
    /// The raw RSASSA signature the Azure vTPM returns (or a `TPMT_SIGNATURE`).
    pub signature: &'a [u8],
    /// The PCR values the quote covers; `None` fails `tpm.pcr_digest`.
    pub pcrs: Option<PcrValues>,
}

/// A TDX quote over the HCL's TD report, with the Intel PCS collateral to verify it.
#[derive(Debug, Clone, Copy)]
pub struct TdQuote<'a> {
    pub quote: &'a [u8],
    /// Collateral JSON; `None` fails `tee.collateral.parse`.
    pub collateral: Option<&'a [u8]>,
}

/// Verify an HCL report carrying an SEV-SNP report, with the SNP certificates (`certs`: the
/// VCEK, and optionally the ASK/ARK chain), and a vTPM quote when given.
///
/// `expected_qualifying_data` is the nonce the quote's `extraData` must equal (`None`: recorded,
/// freshness not established). A nonce without a quote fails `tpm.qualifying_data`: the caller
/// expected freshness that the evidence cannot give.
pub fn verify_snp(
    hcl: &[u8],
    certs: &CertInput,
    quote: Option<&VtpmQuote<'_>>,
    policy: &Policy,
    now: UnixTime,
    expected_qualifying_data: Option<&[u8]>,
) -> Verdict {
    verify_snp_with_ak(hcl, certs, quote, policy, now, expected_qualifying_data).0
}

/// Verify an HCL report carrying a TDX TD report. The TD report is MACed for the local CPU only:
/// it is trusted through `td_quote`, a TDX quote over it from the host's quoting enclave; without
/// one the verdict fails at `azure.td_quote`. The vTPM quote and nonce are as in [`verify_snp`].
pub fn verify_tdx(
    hcl: &[u8],
    td_quote: Option<&TdQuote<'_>>,
    quote: Option<&VtpmQuote<'_>>,
    policy: &Policy,
    now: UnixTime,
    expected_qualifying_data: Option<&[u8]>,
) -> Verdict {
    verify_tdx_with_ak(hcl, td_quote, quote, policy, now, expected_qualifying_data).0
}

/// Whether two TPM public areas hold the same RSA key (modulus and exponent; attributes,
/// scheme and name algorithm aside). ECC keys never match: the Azure AK is RSA.
pub fn same_rsa_key(a: &Public, b: &Public) -> bool {
    fn parts(key: &Public) -> Option<(&[u8], u32)> {
        match &key.key {
            PublicKey::Rsa {
                modulus, exponent, ..
            } => Some((
                strip_leading_zeros(modulus),
                if *exponent == 0 { 65_537 } else { *exponent },
            )),
            PublicKey::Ecc { .. } => None,
        }
    }
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// [`verify_snp`], also returning the AK when `azure.runtime_data` and `azure.ak` passed: the
/// key the hardware report's `report_data` vouches for. Whether that report is genuine is what
/// the verdict's other steps say; callers use the AK only within a verdict that must be trusted.
pub(crate) fn verify_snp_with_ak(
    hcl: &[u8],
    certs: &CertInput,
    quote: Option<&VtpmQuote<'_>>,
    policy: &Policy,
    now: UnixTime,
    expected_qualifying_data: Option<&[u8]>,
) -> (Verdict, Option<Public>) {
    let mut v = Verdict::new(Platform::AzureSnp);
    let Some(report) = parse_step(&mut v, hcl, ReportType::Snp) else {
        not_run_tpm(&mut v, quote, expected_qualifying_data);
        return (v, None);
    };
    let mut claims = AzureClaims::from_report(&report);
    if let HwReport::Snp(snp) = &report.hw_report {
        let snp_verdict = crate::snp::verify(snp, certs, &policy.snp, now);
        v.extend(snp_verdict.checks);
        claims.tee = Some(snp_verdict.claims);
    }
    let ak = finish(
        &mut v,
        &report,
        &mut claims,
        quote,
        policy,
        expected_qualifying_data,
    );
    v.claims = Claims::Azure(Box::new(claims));
    (v, ak)
}

/// [`verify_tdx`], also returning the AK as [`verify_snp_with_ak`] does (the TD report is
/// genuine only if `azure.td_quote`, the TDX steps and `azure.td_report` passed).
pub(crate) fn verify_tdx_with_ak(
    hcl: &[u8],
    td_quote: Option<&TdQuote<'_>>,
    quote: Option<&VtpmQuote<'_>>,
    policy: &Policy,
    now: UnixTime,
    expected_qualifying_data: Option<&[u8]>,
) -> (Verdict, Option<Public>) {
    let mut v = Verdict::new(Platform::AzureTdx);
    let Some(report) = parse_step(&mut v, hcl, ReportType::Tdx) else {
        not_run_tpm(&mut v, quote, expected_qualifying_data);
        return (v, None);
    };
    let mut claims = AzureClaims::from_report(&report);
    if let HwReport::Tdx(td) = &report.hw_report {
        match td_quote {
            None => v.push(Check::fail(
                Step::AZURE_TD_QUOTE,
                "a TDX quote over the TD report (from the host's quoting enclave)",
                "none given",
                "the TD report is MACed for the local CPU only: a verifier can trust it only \
                 through a quote signed by the quoting enclave",
            )),
            Some(tq) => {
                v.push(Check::pass(
                    Step::AZURE_TD_QUOTE,
                    "a TDX quote over the TD report",
                    format!("{} bytes", tq.quote.len()),
                ));
                let tdx_verdict = match tq.collateral {
                    Some(collateral) => {
                        crate::tdx::verify_bytes(tq.quote, collateral, &policy.tdx, now)
                    }
                    None => {
                        let mut t = Verdict::new(Platform::Tdx);
                        t.push(Check::fail(
                            Step::TEE_COLLATERAL_PARSE,
                            "Intel PCS collateral for the quote",
                            "none given",
                            "the quote cannot be verified without its collateral",
                        ));
                        t
                    }
                };
                v.extend(tdx_verdict.checks);
                claims.tee = match tdx_verdict.claims {
                    Claims::None {} => crate::tdx::inspect(tq.quote)
                        .ok()
                        .map(|c| Claims::Tdx(Box::new(c))),
                    other => Some(other),
                };
                v.push(td_report_check(td, tq.quote));
            }
        }
    }
    let ak = finish(
        &mut v,
        &report,
        &mut claims,
        quote,
        policy,
        expected_qualifying_data,
    );
    v.claims = Claims::Azure(Box::new(claims));
    (v, ak)
}

/// `azure.parse`: the report parses and carries the hardware report the caller expects.
fn parse_step<'a>(v: &mut Verdict, hcl: &'a [u8], want: ReportType) -> Option<HclReport<'a>> {
    let expected = format!("an HCL report (HCLA v2) over a {} report", name(want));
    match HclReport::parse(hcl) {
        Err(e) => {
            v.push(Check::parse_failure(Step::AZURE_PARSE, &e));
            None
        }
        Ok(report) if report.report_type() != want => {
            v.push(Check::fail(
                Step::AZURE_PARSE,
                expected,
                format!("a {} report", name(report.report_type())),
                format!(
                    "verify it as {} evidence",
                    match report.report_type() {
                        ReportType::Snp => "azure-snp",
                        ReportType::Tdx => "azure-tdx",
                    }
                ),
            ));
            None
        }
        Ok(report) => {
            v.push(Check::pass(
                Step::AZURE_PARSE,
                expected,
                format!(
                    "HCL v{}, runtime data v{} ({} bytes, {}), {} bytes of zero padding",
                    report.header.version,
                    report.runtime_header.version,
                    report.var_data.len(),
                    report.runtime_header.hash,
                    report.padding
                ),
            ));
            Some(report)
        }
    }
}

fn name(t: ReportType) -> &'static str {
    match t {
        ReportType::Snp => "SEV-SNP",
        ReportType::Tdx => "TDX",
    }
}

/// The steps after the hardware report: runtime data, AK, policy, vTPM quote. Returns the AK
/// when every step up to `azure.ak` passed.
fn finish(
    v: &mut Verdict,
    report: &HclReport<'_>,
    claims: &mut AzureClaims,
    quote: Option<&VtpmQuote<'_>>,
    policy: &Policy,
    expected_qualifying_data: Option<&[u8]>,
) -> Option<Public> {
    // The runtime data: bound by report_data, and well-formed.
    let expected = report.expected_report_data();
    let presented = report.hw_report.report_data();
    let hash = report.runtime_header.hash;
    let bound = expected == presented;
    let parsed = report.runtime_data();
    let data = match (&parsed, bound) {
        (Ok(data), true) => {
            v.push(
                Check::pass(Step::AZURE_RUNTIME_DATA, hex(expected), hex(presented)).with_detail(
                    format!("report_data = {hash}(runtime data) followed by zeros"),
                ),
            );
            Some(data)
        }
        (_, false) => {
            v.push(Check::fail(
                Step::AZURE_RUNTIME_DATA,
                hex(expected),
                hex(presented),
                format!(
                    "report_data is not {hash}(runtime data) followed by zeros: the runtime data \
                     (and the AK in it) is not the one the hardware report vouches for"
                ),
            ));
            None
        }
        (Err(e), true) => {
            v.push(Check::fail(
                Step::AZURE_RUNTIME_DATA,
                "runtime data JSON with keys[] and vm-configuration",
                "malformed runtime data",
                e.to_string(),
            ));
            None
        }
    };
    // Only what the hardware report vouches for becomes a claim.
    if data.is_none() {
        claims.runtime_data = None;
    }

    let ak = match data {
        None => {
            v.push(not_run(
                Step::AZURE_AK,
                "the runtime data is not vouched for by the hardware report",
            ));
            None
        }
        Some(data) => match data.ak_public() {
            Ok(ak) => {
                let mut check = Check::pass(
                    Step::AZURE_AK,
                    "one HCLAkPub RSA key in the runtime data",
                    format!(
                        "{} AK, modulus sha256 {}",
                        ak.type_name(),
                        super::ak_fingerprint(&ak).unwrap_or_default()
                    ),
                );
                if quote.is_none() {
                    check = check.with_detail(
                        "no vTPM quote given: this verdict vouches for the AK, not for a quote",
                    );
                }
                v.push(check);
                Some(ak)
            }
            Err(e) => {
                v.push(Check::fail(
                    Step::AZURE_AK,
                    "one HCLAkPub RSA key in the runtime data",
                    "no usable key",
                    e.to_string(),
                ));
                None
            }
        },
    };
    policy_checks(v, data, policy);

    match (quote, &ak) {
        (Some(q), Some(ak)) => {
            let tpm_verdict = crate::tpm::verify(
                &QuoteInput {
                    attest: q.attest,
                    signature: q.signature,
                    ak_public: ak.as_bytes(),
                    nonce: expected_qualifying_data.map(<[u8]>::to_vec),
                    pcrs: q.pcrs.clone(),
                },
                &policy.tpm,
            );
            // An unpinned AK passes `tpm.ak` with a warning; here the HCL report vouches for it.
            let ak_unpinned = !policy.tpm.pins_ak();
            let checks = tpm_verdict.checks.into_iter().map(|c| {
                if c.step == Step::TPM_AK && c.ok && ak_unpinned {
                    c.with_detail("the AK is HCLAkPub, vouched for by the hardware report")
                } else {
                    c
                }
            });
            v.extend(checks);
            claims.tpm = Some(tpm_verdict.claims);
        }
        (Some(_), None) => v.push(not_run(
            Step::TPM_SIGNATURE,
            "no AK vouched for by the hardware report to verify the quote with",
        )),
        (None, _) => {
            if let Some(nonce) = expected_qualifying_data {
                v.push(Check::fail(
                    Step::TPM_QUALIFYING_DATA,
                    hex(nonce),
                    "no vTPM quote",
                    "a nonce was given but no quote to carry it: freshness cannot be established",
                ));
            }
        }
    }
    ak
}

fn policy_checks(v: &mut Verdict, data: Option<&RuntimeData>, policy: &Policy) {
    let p = &policy.azure;
    let Some(data) = data else {
        v.push(not_run(
            Step::AZURE_POLICY_SECURE_BOOT,
            "no runtime data vouched for by the hardware report",
        ));
        if p.vm_unique_id.is_some() {
            v.push(not_run(
                Step::AZURE_POLICY_VM_UNIQUE_ID,
                "no runtime data vouched for by the hardware report",
            ));
        }
        return;
    };
    let on = data.vm_configuration.secure_boot;
    v.push(Check::expect(
        Step::AZURE_POLICY_SECURE_BOOT,
        on || p.allow_secure_boot_off,
        if p.allow_secure_boot_off {
            "secure boot on or off"
        } else {
            "secure boot on"
        },
        if on {
            "secure boot on"
        } else {
            "secure boot OFF"
        },
    ));
    if let Some(want) = &p.vm_unique_id {
        let got = &data.vm_configuration.vm_unique_id;
        v.push(Check::expect(
            Step::AZURE_POLICY_VM_UNIQUE_ID,
            want.trim().eq_ignore_ascii_case(got),
            want.trim().to_ascii_lowercase(),
            got.to_ascii_lowercase(),
        ));
    }
}

/// `azure.td_report`: the quote's TD report body is the HCL's TD report.
fn td_report_check(td: &TdReport, quote: &[u8]) -> Check {
    const STEP: Step = Step::AZURE_TD_REPORT;
    let q = match crate::tdx::Quote::parse(quote) {
        Ok(q) => q.report,
        Err(_) => return not_run(STEP, "the TDX quote did not parse"),
    };
    let mut differ: Vec<&str> = Vec::new();
    let mut cmp = |name: &'static str, a: &[u8], b: &[u8]| {
        if a != b {
            differ.push(name);
        }
    };
    cmp("report_data", &td.report_data, &q.report_data);
    cmp("tee_tcb_svn", &td.tee_tcb_svn, &q.tee_tcb_svn);
    cmp("mr_seam", &td.mr_seam, &q.mr_seam);
    cmp("mr_signer_seam", &td.mr_signer_seam, &q.mr_signer_seam);
    cmp("seam_attributes", &td.seam_attributes, &q.seam_attributes);
    cmp("td_attributes", &td.td_attributes, &q.td_attributes);
    cmp("xfam", &td.xfam, &q.xfam);
    cmp("mr_td", &td.mr_td, &q.mr_td);
    cmp("mr_config_id", &td.mr_config_id, &q.mr_config_id);
    cmp("mr_owner", &td.mr_owner, &q.mr_owner);
    cmp("mr_owner_config", &td.mr_owner_config, &q.mr_owner_config);
    let [t0, t1, t2, t3] = &td.rtmr;
    let [q0, q1, q2, q3] = &q.rtmr;
    cmp("rtmr0", t0, q0);
    cmp("rtmr1", t1, q1);
    cmp("rtmr2", t2, q2);
    cmp("rtmr3", t3, q3);
    match &q.td15 {
        Some(t) => {
            cmp("tee_tcb_svn2", &td.tee_tcb_svn2, &t.tee_tcb_svn2);
            cmp("servtd_hash", &td.servtd_hash, &t.mr_service_td);
        }
        // A TD 1.0 quote has neither field: the TD report must not claim them.
        None => {
            cmp("tee_tcb_svn2", &td.tee_tcb_svn2, &[0; 16]);
            cmp("servtd_hash", &td.servtd_hash, &[0; 48]);
        }
    }
    let expected = format!(
        "the quote's TD report: report_data {}, mr_td {}",
        hex(q.report_data),
        hex(q.mr_td)
    );
    let presented = format!(
        "the HCL's TD report: report_data {}, mr_td {}",
        hex(td.report_data),
        hex(td.mr_td)
    );
    if differ.is_empty() {
        Check::pass(STEP, expected, presented)
    } else {
        Check::fail(
            STEP,
            expected,
            presented,
            format!(
                "the quote is not over this TD report: {} differ",
                differ.join(", ")
            ),
        )
    }
}

/// When the report did not parse: the quote cannot be verified (no AK), and a nonce cannot be
/// checked.
fn not_run_tpm(v: &mut Verdict, quote: Option<&VtpmQuote<'_>>, nonce: Option<&[u8]>) {
    if quote.is_some() || nonce.is_some() {
        v.push(not_run(
            Step::TPM_SIGNATURE,
            "the HCL report did not parse: no AK to verify the quote with",
        ));
    }
}

fn not_run(step: Step, why: &str) -> Check {
    Check::fail(step, "", "", format!("not run: {why}"))
}
