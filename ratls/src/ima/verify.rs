//! Verifying a measurement list, optionally against a quoted PCR 10 and quoted boot PCRs.

use std::collections::{BTreeMap, BTreeSet};

use super::{ImaClaims, ImaPolicy, Log, ReplayMode, IMA_PCR};
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::PcrValues;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// The name of the first measurement the kernel records.
const BOOT_AGGREGATE: &[u8] = b"boot_aggregate";

/// Verify an IMA measurement log (binary or ASCII), and anchor it in a quoted PCR 10 when one
/// is given as `(bank, value)`.
///
/// Steps: `ima.parse`, `ima.template_hash` (every non-violation entry's stored template hash is
/// the hash of its template data in the log's bank), `ima.violations` (none unless
/// [`ImaPolicy::allow_violations`]), `ima.boot_aggregate` (the first entry is
/// `boot_aggregate`; not recomputed here, see [`verify_anchored`]), `ima.coverage` (at least one
/// PCR-10 measurement past `boot_aggregate`, unless [`ImaPolicy::allow_empty`]), `ima.replay`
/// (the quoted PCR 10 equals the replay of some non-empty prefix of the PCR-10 entries,
/// per-bank template hashes tried first, then SHA-1 padded; a quote of the all-zero initial
/// value covers nothing and is rejected). Without a quote the replay step passes and says the
/// log is not anchored.
pub fn verify_bytes(log: &[u8], quoted: Option<(HashAlg, Vec<u8>)>, policy: &ImaPolicy) -> Verdict {
    verify_anchored(log, quoted, None, policy)
}

/// [`verify_bytes`], and when `boot_pcrs` (the PCR values of the same quote as PCR 10) cover
/// the bank of the `boot_aggregate` entry, `ima.boot_aggregate` recomputes it: `H(PCR 0 ‖ … ‖
/// PCR 9)` of that bank for SHA-256/384/512 (kernels 5.8 and later), `SHA-1(PCR 0 ‖ … ‖ PCR 7)`
/// for SHA-1 (and the legacy `ima` template), and fails with the recomputed value as expected
/// and the logged one as presented. When they do not cover it the step checks the name only
/// and its detail says the value is not anchored.
pub fn verify_anchored(
    log: &[u8],
    quoted: Option<(HashAlg, Vec<u8>)>,
    boot_pcrs: Option<&PcrValues>,
    policy: &ImaPolicy,
) -> Verdict {
    let mut verdict = Verdict::new(Platform::Ima);
    let log = match Log::parse_preferring(log, policy.bank) {
        Ok(log) => log,
        Err(error) => {
            verdict.push(Check::parse_failure("ima.parse", &error));
            return verdict;
        }
    };
    verdict.push(
        Check::pass(
            "ima.parse",
            "a well-formed IMA measurement log",
            format!("{} log, {} entries", log.format(), log.len()),
        )
        .with_detail(format!(
            "template hashes in {}; templates {}",
            log.template_hash_alg(),
            templates(&log).join(", ")
        )),
    );

    let quote = quoted
        .as_ref()
        .map(|(bank, value)| (*bank, value.as_slice()));
    let pass = Pass::run(&log, quote);
    verdict.push(template_hash_check(&log, &pass));
    verdict.push(violations_check(&log, policy));
    verdict.push(boot_aggregate_check(&log, boot_pcrs));
    verdict.push(coverage_check(&log, policy));
    let (check, matched) = replay_check(&log, quote, &pass);
    verdict.push(check);
    verdict.claims = Claims::Ima(claims(&log, &pass, matched));
    verdict
}

/// The PCR 10 value to anchor an IMA log in, from a quote's PCR values: the sha256 bank, else
/// sha1, else sha384, else sha512.
pub fn quoted_pcr10(pcrs: &PcrValues) -> Option<(HashAlg, Vec<u8>)> {
    let pcr = u8::try_from(IMA_PCR).ok()?;
    [
        HashAlg::Sha256,
        HashAlg::Sha1,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ]
    .into_iter()
    .find_map(|bank| {
        pcrs.value(bank, pcr)
            .map(|v| (bank, v.to_vec()))
    })
}

/// Parse and replay a log without anchoring it: the claims [`verify_bytes`] would report
/// without a quote.
pub fn inspect(bytes: &[u8]) -> Result<ImaClaims, ParseError> {
    let log = Log::parse(bytes)?;
    let pass = Pass::run(&log, None);
    Ok(claims(&log, &pass, None))
}

/// Everything one pass over the log computes: the template-hash check, the full PCR-10 replay
/// in every bank (per-bank template hashes), and the prefix matching a quote in that mode.
struct Pass {
    /// Full replay per bank, in `HashAlg::ALL` order.
    pcr10: Vec<(HashAlg, Vec<u8>)>,
    pcr10_entries: usize,
    /// Non-violation entries whose template hash was checked.
    checked: usize,
    bad: usize,
    /// The first bad entry: index and the template hash it should have.
    first_bad: Option<(usize, Vec<u8>)>,
    /// The quote's prefix under `ReplayMode::PerBankTemplateHash`.
    prefix: Option<usize>,
}

impl Pass {
    fn run(log: &Log, quote: Option<(HashAlg, &[u8])>) -> Self {
        let alg = log.template_hash_alg();
        let mut pcr10: Vec<(HashAlg, Vec<u8>)> = HashAlg::ALL
            .iter()
            .map(|&bank| (bank, vec![0; bank.digest_len()]))
            .collect();
        let quote = quote.filter(|(bank, value)| value.len() == bank.digest_len());
        let mut prefix = quote
            .filter(|(_, value)| value.iter().all(|&b| b == 0))
            .map(|_| 0);
        let mut pass = Self {
            pcr10: Vec::new(),
            pcr10_entries: 0,
            checked: 0,
            bad: 0,
            first_bad: None,
            prefix: None,
        };
        for (index, entry) in log.entries().iter().enumerate() {
            let own = (!entry.is_violation()).then(|| entry.template_digest(alg));
            if let Some(digest) = &own {
                pass.checked += 1;
                if digest.as_slice() != entry.template_hash() {
                    pass.bad += 1;
                    if pass.first_bad.is_none() {
                        pass.first_bad = Some((index, digest.clone()));
                    }
                }
            }
            if entry.pcr() != IMA_PCR {
                continue;
            }
            pass.pcr10_entries += 1;
            for (bank, value) in &mut pcr10 {
                let digest = match &own {
                    Some(digest) if *bank == alg => digest.clone(),
                    _ => entry.extend_digest(*bank, ReplayMode::PerBankTemplateHash),
                };
                bank.extend(value, &digest);
                if prefix.is_none()
                    && quote.is_some_and(|(b, v)| b == *bank && v == value.as_slice())
                {
                    prefix = Some(pass.pcr10_entries);
                }
            }
        }
        pass.pcr10 = pcr10;
        pass.prefix = prefix;
        pass
    }

    fn full(&self, bank: HashAlg) -> &[u8] {
        self.pcr10
            .iter()
            .find(|(b, _)| *b == bank)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }
}

fn templates(log: &Log) -> Vec<String> {
    log.entries()
        .iter()
        .map(|e| e.template_name())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(String::from)
        .collect()
}

/// `entry 12 (/usr/bin/kmod)`.
fn describe(log: &Log, index: usize) -> String {
    match log.entries().get(index) {
        Some(entry) => format!("entry {index} ({})", entry.path_display()),
        None => format!("entry {index}"),
    }
}

fn template_hash_check(log: &Log, pass: &Pass) -> Check {
    let alg = log.template_hash_alg();
    let step = "ima.template_hash";
    match &pass.first_bad {
        None => {
            let mut check = Check::pass(
                step,
                format!("stored template hash = {alg}(template data)"),
                format!("{} of {} entries match", pass.checked, pass.checked),
            );
            if log.format() == super::LogFormat::Ascii {
                check = check.with_detail("template data rebuilt from the ASCII fields");
            }
            check
        }
        Some((index, expected)) => {
            let presented = log
                .entries()
                .get(*index)
                .map(|e| hex(e.template_hash()))
                .unwrap_or_default();
            Check::fail(
                step,
                hex(expected),
                presented,
                format!(
                    "{}: the stored template hash is not {alg}(template data); {} of {} entries are bad",
                    describe(log, *index),
                    pass.bad,
                    pass.checked
                ),
            )
        }
    }
}

fn violations_check(log: &Log, policy: &ImaPolicy) -> Check {
    let step = "ima.violations";
    let count = log.violations();
    let first = log
        .entries()
        .iter()
        .position(|e| e.is_violation());
    match first {
        None => Check::pass(step, "0", "0"),
        Some(index) if policy.allow_violations => {
            Check::pass(step, "any number (allow_violations)", count.to_string()).with_detail(
                format!(
                    "first violation: {}; violations extend 0xff",
                    describe(log, index)
                ),
            )
        }
        Some(index) => Check::fail(
            step,
            "0",
            count.to_string(),
            format!(
                "{} is a violation (all-zero template hash: a file was measured while open for \
                 writing); set allow_violations to accept",
                describe(log, index)
            ),
        ),
    }
}

fn boot_aggregate_check(log: &Log, boot_pcrs: Option<&PcrValues>) -> Check {
    let step = "ima.boot_aggregate";
    let name = String::from_utf8_lossy(BOOT_AGGREGATE).into_owned();
    let entry = match log.entries().first() {
        Some(entry) if entry.path() == BOOT_AGGREGATE => entry,
        Some(entry) => {
            return Check::fail(
                step,
                name,
                entry.path_display().to_string(),
                "the first entry is not boot_aggregate: the log does not start at boot",
            )
        }
        None => return Check::fail(step, name, "no entries", "the log is empty"),
    };
    let algo = entry.file_digest_algo();
    let logged = format!("{algo}:{}", hex(entry.file_digest()));
    let unanchored = |why: String| {
        Check::pass(step, name.clone(), name.clone()).with_detail(format!(
            "{logged}; not anchored: {why}, so only the entry's name was checked"
        ))
    };
    let Some(pcrs) = boot_pcrs else {
        return unanchored("no quoted PCRs 0-9 to recompute it from".into());
    };
    match recompute_boot_aggregate(algo, pcrs) {
        Err(why) => unanchored(why),
        Ok((bank, count, value)) => {
            let ok = value.as_slice() == entry.file_digest();
            let last = count.saturating_sub(1);
            let check = Check::expect(step, ok, format!("{algo}:{}", hex(&value)), logged);
            if ok {
                check.with_detail(format!(
                    "recomputed as {bank}(PCR 0 || ... || PCR {last}) of the quoted {bank} bank"
                ))
            } else {
                check.with_detail(format!(
                    "boot_aggregate is not {bank}(PCR 0 || ... || PCR {last}) of the quoted \
                     {bank} bank: the log was not started by the boot the quote measured (a \
                     forged or replayed log, or boot PCRs extended after IMA started)"
                ))
            }
        }
    }
}

/// `boot_aggregate` from quoted PCRs: the bank named by the entry's algorithm, PCRs 0–7 for
/// SHA-1 and 0–9 for the others (`ima_calc_boot_aggregate`, kernel 5.8 and later). Returns the
/// bank, the number of PCRs hashed and the value, or why it cannot be computed.
fn recompute_boot_aggregate(
    algo: &str,
    pcrs: &PcrValues,
) -> Result<(HashAlg, usize, Vec<u8>), String> {
    let bank: HashAlg = algo
        .parse()
        .map_err(|_| format!("its algorithm {algo:?} is not a TPM bank"))?;
    let last: u8 = if bank == HashAlg::Sha1 { 7 } else { 9 };
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for index in 0..=last {
        match pcrs.value(bank, index) {
            Some(value) => values.push(value),
            None => missing.push(index.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the quote does not cover {bank} PCR {}",
            missing.join(", ")
        ));
    }
    Ok((bank, values.len(), bank.digest_all(values)))
}

/// `ima.coverage`: at least one PCR-10 measurement past `boot_aggregate`. A log without one
/// comes from a kernel with no IMA policy loaded (or one that measured nothing): it vouches for
/// no file, and "every measured file is approved" would be vacuously true.
fn coverage_check(log: &Log, policy: &ImaPolicy) -> Check {
    let step = "ima.coverage";
    let expected = "at least one measurement past boot_aggregate";
    let measured = log
        .entries_for(IMA_PCR)
        .filter(|(index, e)| !(*index == 0 && e.path() == BOOT_AGGREGATE))
        .count();
    if measured > 0 {
        return Check::pass(step, expected, format!("{measured} measurements"));
    }
    if policy.allow_empty {
        return Check::pass(step, "any number (allow_empty)", "0 measurements").with_detail(
            "no measurement past boot_aggregate: no IMA policy appears to be loaded; accepted \
             because allow_empty is set",
        );
    }
    Check::fail(
        step,
        expected,
        "0 measurements",
        "no PCR-10 measurement past boot_aggregate: no IMA policy appears to be loaded (or it \
         measured nothing), so the log vouches for no file; set allow_empty to accept",
    )
}

fn replay_check(
    log: &Log,
    quote: Option<(HashAlg, &[u8])>,
    pass: &Pass,
) -> (Check, Option<(usize, ReplayMode)>) {
    let step = "ima.replay";
    let Some((bank, value)) = quote else {
        return (
            Check::pass(step, "", "")
                .with_detail("no PCR 10 value given: the log was replayed but not anchored"),
            None,
        );
    };
    if value.len() != bank.digest_len() {
        return (
            Check::fail(
                step,
                format!("a {}-byte {bank} PCR 10 value", bank.digest_len()),
                hex(value),
                format!("the quoted value is {} bytes", value.len()),
            ),
            None,
        );
    }
    let total = pass.pcr10_entries;
    let other = log.len().saturating_sub(total);
    let matched = match pass.prefix {
        Some(n) => Some((n, ReplayMode::PerBankTemplateHash)),
        None if bank != HashAlg::Sha1 => log
            .match_prefix(bank, ReplayMode::Sha1Padded, value)
            .map(|n| (n, ReplayMode::Sha1Padded)),
        None => None,
    };
    let other_note = if other > 0 {
        format!("; {other} entries for other PCRs are not covered by PCR 10")
    } else {
        String::new()
    };
    match matched {
        Some((0, _)) if !log.is_empty() => (
            Check::fail(
                step,
                hex(value),
                hex(value),
                format!(
                    "the quoted PCR 10 is the all-zero initial value: it covers none of the \
                     {} entries (IMA had measured nothing when it was quoted)",
                    log.len()
                ),
            ),
            Some((0, ReplayMode::PerBankTemplateHash)),
        ),
        Some((n, mode)) => (
            Check::pass(step, hex(value), hex(value)).with_detail(format!(
                "{n} of {total} entries are covered by the quote; {} entries follow it \
                 ({mode} replay, {bank} bank){other_note}",
                total - n
            )),
            Some((n, mode)),
        ),
        None => (
            Check::fail(
                step,
                hex(value),
                hex(pass.full(bank)),
                format!(
                    "the quoted PCR 10 matches no prefix of the {total} PCR 10 entries \
                     ({bank} bank, per-bank-template-hash and sha1-padded replay); presented is \
                     the full-log per-bank replay{other_note}"
                ),
            ),
            None,
        ),
    }
}

fn claims(log: &Log, pass: &Pass, matched: Option<(usize, ReplayMode)>) -> ImaClaims {
    let pcr10: BTreeMap<String, String> = pass
        .pcr10
        .iter()
        .map(|(bank, value)| (bank.name().to_string(), hex(value)))
        .collect();
    let boot_aggregate = log
        .entries()
        .first()
        .filter(|e| e.path() == BOOT_AGGREGATE)
        .map(|e| hex(e.file_digest()));
    ImaClaims {
        entries: log.len(),
        violations: log.violations(),
        other_pcr_entries: log
            .len()
            .saturating_sub(pass.pcr10_entries),
        templates: templates(log),
        pcr10,
        template_hash_alg: log.template_hash_alg(),
        boot_aggregate,
        quote_prefix: matched.map(|(n, _)| n),
        entries_after_quote: matched.map(|(n, _)| pass.pcr10_entries.saturating_sub(n)),
        quote_mode: matched.map(|(_, mode)| mode),
    }
}
