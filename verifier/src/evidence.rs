//! `cosmian_vm evidence verify|inspect`: offline checks of evidence files.

use std::path::Path;
use std::process::ExitCode;

use ratls::digest::HashAlg;
use ratls::{Check, Policy, UnixTime, Verdict};
use serde::Serialize;

use crate::cli::{Global, InspectArgs, UsageError, VerifyArgs, EXIT_REJECTED, EXIT_TRUSTED};
use crate::output;

/// Largest evidence file we read (IMA logs of long-running machines are the largest inputs).
const MAX_INPUT: u64 = 256 * 1024 * 1024;

pub fn verify(args: &VerifyArgs, global: &Global) -> Result<ExitCode, UsageError> {
    if global.insecure_sim_root.is_some() && args.bundle.is_none() {
        return Err(UsageError(
            "--insecure-sim-root applies to --bundle (simulated TEE evidence comes in bundles)"
                .into(),
        ));
    }
    let now = match &args.at {
        Some(text) => {
            UnixTime::parse_rfc3339(text).map_err(|e| UsageError(format!("--at: {e}")))?
        }
        None => UnixTime::now(),
    };
    let policy = match &args.policy {
        Some(path) => Policy::from_file(path).map_err(|e| UsageError(format!("--policy {e}")))?,
        None => Policy::default(),
    };
    let collateral = crate::collateral::client(global);
    let verdict = if let Some(hcl) = &args.azure_hcl {
        verify_azure(args, &collateral, hcl, &policy, now)?
    } else if let Some(report) = &args.snp_report {
        verify_snp(args, &collateral, report, &policy, now)?
    } else if let (Some(_), Some(_)) = (&args.tdx_quote, &args.tpm_quote) {
        return Err(UsageError(
            "--tdx-quote and --tpm-quote go together only with --azure-hcl (an Azure TDX VM); \
             otherwise verify one piece of evidence at a time"
                .into(),
        ));
    } else if let Some(quote) = &args.tdx_quote {
        let mut tee = ratls::bundle::TeeEvidence::Tdx {
            quote: read(quote)?.into(),
            collateral: args
                .collateral
                .as_deref()
                .map(read)
                .transpose()?
                .map(Into::into),
        };
        let steps = collateral.complete(&mut tee, now);
        let ratls::bundle::TeeEvidence::Tdx {
            quote,
            collateral: found,
        } = &tee
        else {
            return Err(UsageError("internal: TDX evidence changed kind".into()));
        };
        let verdict = match found {
            Some(c) => ratls::tdx::verify_bytes(quote, c, &policy.tdx, now),
            None => Verdict::new(ratls::verdict::Platform::Tdx),
        };
        crate::collateral::prepend(steps, verdict)
    } else if let Some(quote) = &args.tpm_quote {
        let mut verdict = verify_tpm(args, quote, &policy)?;
        anchor_logs(args, &policy, &mut verdict)?;
        verdict
    } else if let Some(bundle) = &args.bundle {
        verify_bundle(args, global, collateral, bundle, &policy, now)?
    } else if let Some(log) = &args.ima_log {
        let quoted = quoted_pcr10(args)?;
        ratls::ima::verify_bytes(&read(log)?, quoted, &policy.ima)
    } else {
        return Err(UsageError(
            "give one of --snp-report, --tdx-quote, --tpm-quote, --ima-log, --azure-hcl".into(),
        ));
    };
    let mut verdict = verdict;
    if let Some(check) = freshness(args)? {
        verdict.push(check);
    }
    output::print_verdict(&verdict, global.json);
    Ok(exit_for(&verdict))
}

/// `freshness` for raw TEE and TPM evidence (bundles bind their own challenge and time): the
/// value the verifier chose must be in the evidence (`--report-data` for an SEV-SNP report or a
/// TDX quote, `--nonce` for a TPM quote), or the step fails, unless `--no-freshness` waives it
/// out loud.
fn freshness(args: &VerifyArgs) -> Result<Option<Check>, UsageError> {
    const STEP: ratls::Step = ratls::Step::FRESHNESS;
    if args.bundle.is_some() || (args.ima_log.is_some() && args.tpm_quote.is_none()) {
        if args.report_data.is_some() || args.no_freshness {
            return Err(UsageError(
                "--report-data and --no-freshness apply to --snp-report, --tdx-quote, \
                 --tpm-quote and --azure-hcl (bundles carry their own challenge and time)"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let tee_file = args
        .snp_report
        .as_deref()
        .or(if args.azure_hcl.is_none() {
            args.tdx_quote.as_deref()
        } else {
            None
        });
    let expected = match (&args.report_data, tee_file, &args.nonce, &args.tpm_quote) {
        (Some(_), None, _, _) => {
            return Err(UsageError(
                "--report-data needs --snp-report or --tdx-quote (for a TPM quote: --nonce)".into(),
            ))
        }
        (Some(rd), Some(file), _, _) => {
            let want = ratls::hexfmt::decode(rd)
                .map_err(|e| UsageError(format!("--report-data: invalid hex: {e}")))?;
            if want.len() != 64 {
                return Err(UsageError(format!(
                    "--report-data: {} bytes, expected 64",
                    want.len()
                )));
            }
            let bytes = read_maybe_hex(file)?;
            let presented = if args.snp_report.is_some() {
                ratls::snp::AttestationReport::parse(&bytes)
                    .ok()
                    .map(|r| r.report_data)
            } else {
                ratls::tdx::Quote::parse(&bytes)
                    .ok()
                    .map(|q| q.report.report_data)
            };
            let ok = presented.as_ref().map(|p| &p[..]) == Some(&want[..]);
            return Ok(Some(Check::expect(
                STEP,
                ok,
                format!("report data {} (--report-data)", ratls::hexfmt::hex(&want)),
                presented.map_or_else(|| "unreadable".to_owned(), ratls::hexfmt::hex),
            )));
        }
        (None, _, Some(nonce), Some(_)) => {
            // The TPM verifier compared the quote's qualifying data with it
            // (`tpm.qualifying_data`); freshness holds exactly when that passed.
            return Ok(Some(Check::pass(
                STEP,
                "the quote's qualifying data is --nonce",
                format!("--nonce {nonce} (see tpm.qualifying_data)"),
            )));
        }
        _ => {
            if tee_file.is_some() {
                "--report-data HEX: the report data you asked the TEE for"
            } else {
                "--nonce HEX: the qualifying data you asked the TPM for"
            }
        }
    };
    Ok(Some(if args.no_freshness {
        Check::pass(STEP, expected, "WAIVED (--no-freshness)")
            .with_detail("freshness not established: this evidence may be a replay of an old one")
    } else {
        Check::fail(
            STEP,
            expected,
            "none given",
            "without a value you chose, this evidence may be a replay of an old one; give it, \
             or pass --no-freshness to waive this step explicitly",
        )
    }))
}

fn verify_snp(
    args: &VerifyArgs,
    collateral: &ratls::collateral::CollateralClient,
    report: &Path,
    policy: &Policy,
    now: UnixTime,
) -> Result<Verdict, UsageError> {
    let opt = |p: &Option<std::path::PathBuf>| p.as_deref().map(read).transpose();
    let mut tee = ratls::bundle::TeeEvidence::SevSnp {
        report: read_maybe_hex(report)?.into(),
        vcek: opt(&args.vcek)?.map(Into::into),
        vlek: opt(&args.vlek)?.map(Into::into),
        chain: opt(&args.cert_chain)?.map(Into::into),
        crl: opt(&args.crl)?.map(Into::into),
    };
    let steps = collateral.complete(&mut tee, now);
    let (ratls::bundle::TeeEvidence::SevSnp { report, .. }, Some(certs)) = (&tee, tee.snp_certs())
    else {
        return Err(UsageError("internal: SEV-SNP evidence changed kind".into()));
    };
    Ok(crate::collateral::prepend(
        steps,
        ratls::snp::verify_bytes(report, &certs, &policy.snp, now),
    ))
}

/// `--azure-hcl FILE`: the HCL report, its SEV-SNP certificates or TDX quote, and the vTPM quote
/// verified with the AK the report vouches for.
fn verify_azure(
    args: &VerifyArgs,
    collateral: &ratls::collateral::CollateralClient,
    hcl_path: &Path,
    policy: &Policy,
    now: UnixTime,
) -> Result<Verdict, UsageError> {
    let hcl = read(hcl_path)?;
    let nonce = nonce_arg(args)?;
    let vtpm = match &args.tpm_quote {
        Some(quote) => {
            let Some(signature) = &args.tpm_signature else {
                return Err(UsageError("--tpm-quote needs --tpm-signature".into()));
            };
            Some((
                read_maybe_hex(quote)?,
                read_maybe_hex(signature)?,
                pcrs_arg(args)?,
            ))
        }
        None => None,
    };
    let quote = vtpm
        .as_ref()
        .map(|(attest, signature, pcrs)| ratls::azure::VtpmQuote {
            attest,
            signature,
            pcrs: pcrs.clone(),
        });
    // The report type decides which hardware evidence goes with it; a report that does not
    // parse is verified (and rejected at azure.parse) as SEV-SNP.
    let tdx = matches!(
        ratls::azure::HclReport::parse(&hcl).map(|r| r.report_type()),
        Ok(ratls::azure::ReportType::Tdx)
    );
    if tdx {
        if args.vcek.is_some() || args.cert_chain.is_some() {
            return Err(UsageError(
                "--vcek and --cert-chain are for SEV-SNP; this HCL report carries a TDX report \
                 (give --tdx-quote and --collateral)"
                    .into(),
            ));
        }
        let quote_bytes = args
            .tdx_quote
            .as_deref()
            .map(read)
            .transpose()?;
        let mut found = args
            .collateral
            .as_deref()
            .map(read)
            .transpose()?
            .map(Into::into);
        let mut steps = Vec::new();
        if let Some(q) = &quote_bytes {
            let mut tee = ratls::bundle::TeeEvidence::Tdx {
                quote: q.clone().into(),
                collateral: found.take(),
            };
            steps = collateral.complete(&mut tee, now);
            if let ratls::bundle::TeeEvidence::Tdx { collateral: c, .. } = tee {
                found = c;
            }
        }
        let td_quote = quote_bytes
            .as_deref()
            .map(|q| ratls::azure::TdQuote {
                quote: q,
                collateral: found.as_deref().map(|c| c.as_slice()),
            });
        return Ok(crate::collateral::prepend(
            steps,
            ratls::azure::verify_tdx(
                &hcl,
                td_quote.as_ref(),
                quote.as_ref(),
                policy,
                now,
                nonce.as_deref(),
            ),
        ));
    }
    if args.tdx_quote.is_some() {
        return Err(UsageError(
            "--tdx-quote is for an HCL report that carries a TDX report; this one does not".into(),
        ));
    }
    let opt = |p: &Option<std::path::PathBuf>| p.as_deref().map(read).transpose();
    let mut tee = ratls::bundle::TeeEvidence::AzureSnp {
        hcl_report: hcl.clone().into(),
        vcek: opt(&args.vcek)?.map(Into::into),
        chain: opt(&args.cert_chain)?.map(Into::into),
        crl: opt(&args.crl)?.map(Into::into),
    };
    let steps = collateral.complete(&mut tee, now);
    let Some(certs) = tee.snp_certs() else {
        return Err(UsageError("internal: Azure evidence changed kind".into()));
    };
    Ok(crate::collateral::prepend(
        steps,
        ratls::azure::verify_snp(&hcl, &certs, quote.as_ref(), policy, now, nonce.as_deref()),
    ))
}

/// `--nonce HEX`.
fn nonce_arg(args: &VerifyArgs) -> Result<Option<Vec<u8>>, UsageError> {
    args.nonce
        .as_deref()
        .map(|n| {
            ratls::hexfmt::decode(n).map_err(|e| UsageError(format!("--nonce: invalid hex: {e}")))
        })
        .transpose()
}

/// `--pcrs JSON`.
fn pcrs_arg(args: &VerifyArgs) -> Result<Option<ratls::tpm::PcrValues>, UsageError> {
    args.pcrs
        .as_deref()
        .map(|path| {
            let text = read_text(path)?;
            ratls::tpm::PcrValues::from_json(&text)
                .map_err(|e| UsageError(format!("--pcrs {}: {e}", path.display())))
        })
        .transpose()
}

fn verify_tpm(args: &VerifyArgs, quote: &Path, policy: &Policy) -> Result<Verdict, UsageError> {
    let (Some(signature), Some(ak_public)) = (&args.tpm_signature, &args.ak_public) else {
        return Err(UsageError(
            "--tpm-quote needs --tpm-signature and --ak-public".into(),
        ));
    };
    let nonce = nonce_arg(args)?;
    let pcrs = pcrs_arg(args)?;
    let attest = read_maybe_hex(quote)?;
    let signature = read_maybe_hex(signature)?;
    let ak_public = read_maybe_hex(ak_public)?;
    Ok(ratls::tpm::verify(
        &ratls::tpm::QuoteInput {
            attest: &attest,
            signature: &signature,
            ak_public: &ak_public,
            nonce,
            pcrs,
        },
        &policy.tpm,
    ))
}

/// `--tpm-quote` with `--event-log` and/or `--ima-log`: the logs are anchored in the quote's PCR
/// values (`--pcrs`, which `tpm.pcr_digest` ties to the signed quote): the event log replays to
/// PCRs 0-9 (`boot.eventlog`), the IMA log to PCR 10 (sha256 bank, else sha1: `ima.replay`)
/// and its boot_aggregate to PCRs 0-9 (`ima.boot_aggregate`); both fail when the quote's PCR
/// values lack those PCRs, and `ima.coverage` counts only what the quoted PCR 10 covers.
fn anchor_logs(
    args: &VerifyArgs,
    policy: &Policy,
    verdict: &mut Verdict,
) -> Result<(), UsageError> {
    if args.event_log.is_none() && args.ima_log.is_none() {
        return Ok(());
    }
    let pcrs = pcrs_arg(args)?;
    if let Some(path) = &args.event_log {
        let (checks, _) = ratls::eventlog::check_boot_log(&read(path)?, pcrs.as_ref());
        verdict.extend(checks);
    }
    if let Some(path) = &args.ima_log {
        // A quote is present (`--tpm-quote`): its PCR values are `--pcrs`, none when absent,
        // and `verify_anchored` fails `ima.replay` without PCR 10 and `ima.boot_aggregate`
        // without the boot PCRs of the entry's bank.
        let quoted_pcrs = pcrs.unwrap_or_default();
        let quoted = ratls::ima::quoted_pcr10(&quoted_pcrs);
        let ima = ratls::ima::verify_anchored(
            &read(path)?,
            quoted,
            ratls::ima::ImaQuote::Present(&quoted_pcrs),
            &policy.ima,
        );
        verdict.extend(ima.checks);
    }
    Ok(())
}

fn verify_bundle(
    args: &VerifyArgs,
    global: &Global,
    collateral: std::sync::Arc<ratls::collateral::CollateralClient>,
    bundle: &Path,
    policy: &Policy,
    now: UnixTime,
) -> Result<Verdict, UsageError> {
    let Some(spki_path) = &args.spki else {
        return Err(UsageError("--bundle needs --spki".into()));
    };
    let spki_bytes = read(spki_path)?;
    // A certificate (PEM or DER) gives its SubjectPublicKeyInfo; anything else is taken as one.
    let spki = match ratls::pki::Cert::from_der_or_pem(&spki_bytes) {
        Ok(cert) => cert.spki_der().to_vec(),
        Err(_) => spki_bytes,
    };
    let role =
        ratls::binding::Role::new(&args.role).map_err(|e| UsageError(format!("--role: {e}")))?;
    let nonce = |flag: &str, value: &Option<String>| -> Result<Option<[u8; 32]>, UsageError> {
        value
            .as_deref()
            .map(|v| {
                ratls::hexfmt::decode_array::<32>(v).map_err(|e| UsageError(format!("{flag}: {e}")))
            })
            .transpose()
    };
    let sim_root = global
        .insecure_sim_root
        .as_deref()
        .map(read)
        .transpose()?;
    let ima_log = args
        .separate_ima_log
        .as_deref()
        .map(read)
        .transpose()?;
    let mut requirements = ratls::bundle::Requirements::new(role);
    requirements.max_age_secs = args.max_age;
    requirements.insecure_sim_root = sim_root;
    requirements.collateral = Some(collateral);
    let mut expect = ratls::bundle::Expectations::new(&requirements, &spki, now);
    expect.challenge = nonce("--challenge", &args.challenge)?;
    expect.exporter = nonce("--exporter", &args.exporter)?;
    expect.ima_log = ima_log.as_deref();
    if requirements.insecure_sim_root.is_some() {
        warn_insecure_sim_root();
    }
    Ok(ratls::bundle::verify(&read(bundle)?, policy, &expect))
}

/// `--pcr10 HEX [--bank NAME]`: the bank defaults to the one the value's length implies.
fn quoted_pcr10(args: &VerifyArgs) -> Result<Option<(HashAlg, Vec<u8>)>, UsageError> {
    let Some(text) = &args.pcr10 else {
        return Ok(None);
    };
    let value = ratls::hexfmt::decode(text)
        .map_err(|e| UsageError(format!("--pcr10: invalid hex: {e}")))?;
    let bank = match &args.bank {
        Some(name) => name
            .parse::<HashAlg>()
            .map_err(|e| UsageError(format!("--bank: {e}")))?,
        None => HashAlg::from_len(value.len()).ok_or_else(|| {
            UsageError(format!(
                "--pcr10 has {} bytes: not a sha1/sha256/sha384/sha512 value",
                value.len()
            ))
        })?,
    };
    if value.len() != bank.digest_len() {
        return Err(UsageError(format!(
            "--pcr10 has {} bytes but --bank {bank} values have {}",
            value.len(),
            bank.digest_len()
        )));
    }
    Ok(Some((bank, value)))
}

/// What `inspect` found.
#[derive(Debug, Serialize)]
struct Inspection<C: Serialize> {
    kind: &'static str,
    claims: C,
}

pub fn inspect(args: &InspectArgs, json: bool) -> Result<ExitCode, UsageError> {
    let bytes = read(&args.file)?;
    let mut attempts = Vec::new();
    if ratls::azure::looks_like_hcl(&bytes) {
        match ratls::azure::inspect(&bytes) {
            Ok(claims) => {
                let kind = match claims.report_type {
                    ratls::azure::ReportType::Tdx => "azure-tdx",
                    _ => "azure-snp",
                };
                return Ok(show(kind, claims, json));
            }
            Err(e) => attempts.push(format!("azure hcl report: {e}")),
        }
    }
    match ratls::snp::inspect(&bytes) {
        Ok(claims) => return Ok(show("sev-snp", claims, json)),
        Err(e) => attempts.push(format!("sev-snp: {e}")),
    }
    match ratls::tdx::inspect(&bytes) {
        Ok(claims) => return Ok(show("tdx", claims, json)),
        Err(e) => attempts.push(format!("tdx quote: {e}")),
    }
    // IMA before the hex-text TPM fallback: an ASCII log is text too.
    match ratls::ima::inspect(&bytes) {
        Ok(claims) => return Ok(show("ima", claims, json)),
        Err(e) => attempts.push(format!("ima log: {e}")),
    }
    let tpm_bytes = ratls::hexfmt::decode_if_hex_text(&bytes).unwrap_or_else(|| bytes.clone());
    match ratls::tpm::inspect_attest(&tpm_bytes) {
        Ok(claims) => return Ok(show("tpm", claims, json)),
        Err(e) => attempts.push(format!("tpm quote: {e}")),
    }
    tracing::error!(
        path = %args.file.display(),
        "{} is not a recognised evidence file:\n  {}",
        args.file.display(),
        attempts.join("\n  ")
    );
    Ok(ExitCode::from(EXIT_REJECTED))
}

fn show<C: Serialize>(kind: &'static str, claims: C, json: bool) -> ExitCode {
    if json {
        output::print_json(&Inspection { kind, claims });
    } else {
        output::print_line(&format!("{kind} evidence (parsed, not verified)"));
        output::print_claims(&claims);
    }
    ExitCode::from(EXIT_TRUSTED)
}

fn exit_for(verdict: &Verdict) -> ExitCode {
    ExitCode::from(if verdict.is_trusted() {
        EXIT_TRUSTED
    } else {
        EXIT_REJECTED
    })
}

/// `--insecure-sim-root` was given: say, loudly, that simulated evidence will pass (offline and
/// agent commands alike), as `cosmian_vm: WARNING: …`.
pub fn warn_insecure_sim_root() {
    tracing::warn!(
        flag = "--insecure-sim-root",
        "--insecure-sim-root: evidence from the simulated TEE will be accepted; it \
         proves nothing about hardware"
    );
}

/// Read a whole input file, refusing absurd sizes.
pub fn read(path: &Path) -> Result<Vec<u8>, UsageError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_INPUT {
        return Err(UsageError(format!(
            "{} is {} bytes, over the {MAX_INPUT}-byte limit",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))
}

/// Read a binary structure that may also be stored as hex text.
fn read_maybe_hex(path: &Path) -> Result<Vec<u8>, UsageError> {
    let bytes = read(path)?;
    Ok(ratls::hexfmt::decode_if_hex_text(&bytes).unwrap_or(bytes))
}

pub fn read_text(path: &Path) -> Result<String, UsageError> {
    String::from_utf8(read(path)?)
        .map_err(|_| UsageError(format!("{} is not UTF-8 text", path.display())))
}
