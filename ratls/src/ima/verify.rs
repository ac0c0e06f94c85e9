//! Verifying a measurement list, optionally against a quoted PCR 10 and quoted boot PCRs.

use std::collections::{BTreeMap, BTreeSet};

use super::{ImaAnchor, ImaClaims, ImaPolicy, Log, ReplayMode, IMA_PCR};
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::PcrValues;
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// The name of the first measurement the kernel records.
const BOOT_AGGREGATE: &[u8] = b"boot_aggregate";

/// The TPM quote an IMA log is verified against, as its caller has it. The distinction matters
/// for `ima.boot_aggregate` (and `ima.replay`): without any quote they can only say the log is
/// not anchored; with a quote they must anchor it or fail.
#[derive(Debug, Clone, Copy)]
pub enum ImaQuote<'a> {
    /// No quote at all: an offline IMA log, alone or with a PCR 10 value its caller vouches
    /// for (`--pcr10`). `ima.boot_aggregate` checks the entry's name only and its detail says
    /// the value is not anchored.
    Absent,
    /// The PCR values of a quote (bound to it by `tpm.pcr_digest`), all banks.
    /// `ima.boot_aggregate` recomputes `boot_aggregate` from PCRs 0-9 (0-7 for SHA-1) of the
    /// entry's bank and fails when the quote does not cover them; `ima.replay` fails when no
    /// PCR 10 value from it is given.
    Present(&'a PcrValues),
}

/// Verify an IMA measurement log (binary or ASCII) without a TPM quote ([`ImaQuote::Absent`]),
/// and anchor it in a PCR 10 value when one is given as `(bank, value)`.
///
/// Steps: `ima.parse`, `ima.template_hash` (every non-violation entry's stored template hash is
/// the hash of its template data in the log's bank), `ima.violations` (none unless
/// [`ImaPolicy::allow_violations`]), `ima.boot_aggregate` (the first entry is
/// `boot_aggregate`; not recomputed here, see [`verify_anchored`]), `ima.coverage` (at least one
/// PCR-10 measurement past `boot_aggregate` inside the prefix the PCR 10 value covers, or in
/// the whole log when no value is given, unless [`ImaPolicy::allow_empty`]), `ima.replay` (the
/// PCR 10 value equals the replay of some non-empty prefix of the PCR-10 entries, per-bank
/// template hashes tried first, then SHA-1 padded; the all-zero initial value covers nothing
/// and is rejected). Without a PCR 10 value the replay step passes and says the log is not
/// anchored, and the coverage step's detail says its count is not anchored either.
pub fn verify_bytes(log: &[u8], quoted: Option<(HashAlg, Vec<u8>)>, policy: &ImaPolicy) -> Verdict {
    verify_anchored(log, quoted, ImaQuote::Absent, policy)
}

/// [`verify_bytes`] against a quote. `quoted` is the PCR 10 value to replay the log to (the
/// caller picks the bank, see [`quoted_pcr10`]); with [`ImaQuote::Present`] it must come from
/// that quote, and `None` fails `ima.replay`. With [`ImaQuote::Present`], `ima.boot_aggregate`
/// recomputes the entry: `H(PCR 0 ‖ … ‖ PCR 9)` of its bank for SHA-256/384/512 (kernels 5.8
/// and later), `SHA-1(PCR 0 ‖ … ‖ PCR 7)` for SHA-1 (and the legacy `ima` template), and fails
/// with the recomputed value as expected and the logged one as presented, or, when the quote
/// does not cover those PCRs, with the PCRs it needs as expected and the quoted ones as
/// presented. With [`ImaQuote::Absent`] the step checks the name only and its detail says the
/// value is not anchored.
pub fn verify_anchored(
    log: &[u8],
    quoted: Option<(HashAlg, Vec<u8>)>,
    quote: ImaQuote<'_>,
    policy: &ImaPolicy,
) -> Verdict {
    let mut verdict = Verdict::new(Platform::Ima);
    let log = match Log::parse_preferring(log, policy.bank) {
        Ok(log) => log,
        Err(error) => {
            verdict.push(Check::parse_failure(Step::IMA_PARSE, &error));
            return verdict;
        }
    };
    verdict.push(
        Check::pass(
            Step::IMA_PARSE,
            "a well-formed IMA measurement log",
            format!("{} log, {} entries", log.format(), log.len()),
        )
        .with_detail(format!(
            "template hashes in {}; templates {}",
            log.template_hash_alg(),
            templates(&log).join(", ")
        )),
    );

    let pcr10 = quoted
        .as_ref()
        .map(|(bank, value)| (*bank, value.as_slice()));
    let pass = Pass::run(&log, pcr10);
    verdict.push(template_hash_check(&log, &pass));
    verdict.push(violations_check(&log, policy));
    verdict.push(boot_aggregate_check(&log, quote));
    let (replay, matched) = match (pcr10, quote) {
        (None, ImaQuote::Present(pcrs)) => (
            Check::fail(
                Step::IMA_REPLAY,
                "a quoted PCR 10 to anchor the log",
                format!("quoted: {}", describe_pcrs(pcrs)),
                "the quote gives no PCR 10 value to replay the log to, so the log is not \
                 anchored in it",
            ),
            None,
        ),
        _ => replay_check(&log, pcr10, &pass),
    };
    let anchor = match matched {
        Some((n, _)) if replay.ok => Ok(n),
        _ if pcr10.is_none() && matches!(quote, ImaQuote::Absent) => {
            Err("no quoted PCR 10 (an offline log)")
        }
        _ => Err("the quoted PCR 10 does not anchor the log (ima.replay fails)"),
    };
    verdict.push(coverage_check(&log, policy, anchor));
    let anchored = match (pcr10, quote, matched) {
        (Some((bank, value)), ImaQuote::Present(pcrs), Some((n, mode))) if replay.ok && n > 0 => {
            anchor_of(&log, n, bank, value, mode, pcrs, 0)
        }
        _ => None,
    };
    verdict.push(replay);
    let mut claims = claims(&log, &pass, matched);
    claims.anchor = anchored.map(Box::new);
    verdict.claims = Claims::Ima(claims);
    verdict
}

/// What a passing replay anchored: the first `covered` PCR-10 entries of `log` (a delta whose
/// first entry is entry `from` of the whole log) replay to `value`.
fn anchor_of(
    log: &Log,
    covered: usize,
    bank: HashAlg,
    value: &[u8],
    mode: ReplayMode,
    pcrs: &PcrValues,
    from: u64,
) -> Option<ImaAnchor> {
    let entries = match covered.checked_sub(1) {
        None => 0,
        Some(last) => log
            .entries_for(IMA_PCR)
            .nth(last)
            .map(|(index, _)| index.saturating_add(1))?,
    };
    let (_, _, boot_aggregate) = recompute_boot_aggregate(bank.name(), pcrs).ok()?;
    Some(ImaAnchor {
        entries: from.checked_add(u64::try_from(entries).ok()?)?,
        bank,
        pcr10: hex(value),
        mode,
        boot_aggregate: hex(boot_aggregate),
    })
}

/// Verify the delta of a re-attestation: `fragment` holds the log entries from index `from`
/// on, `base` is how far this verifier checked the same boot's log before, and `pcrs` are the
/// new quote's PCR values (bound to it by `tpm.pcr_digest`), whose PCR 10 in `base.bank` the
/// fragment must replay to, starting from `base.pcr10`.
///
/// Steps: `ima.delta` (`from` is `base.entries`: the delta continues exactly where the
/// verified log stopped), `ima.boot_aggregate` (the quoted PCRs 0–9 still hash to the anchored
/// `boot_aggregate`: the same boot, no boot PCR extended since), `ima.parse`,
/// `ima.template_hash`, `ima.violations`, `ima.replay` (some prefix of the fragment's PCR-10
/// entries, possibly none, replays from `base.pcr10` to the quoted value). The claims carry the
/// new anchor. The cost is that of the fragment: the entries before `from` are not sent.
pub fn verify_delta(
    fragment: &[u8],
    from: u64,
    base: &ImaAnchor,
    pcrs: &PcrValues,
    policy: &ImaPolicy,
) -> Verdict {
    let mut verdict = Verdict::new(Platform::Ima);
    verdict.push(Check::expect(
        Step::IMA_DELTA,
        from == base.entries,
        format!(
            "entries from {} on (what this verifier checked before)",
            base.entries
        ),
        format!("entries from {from} on"),
    ));
    let boot = recompute_boot_aggregate(base.bank.name(), pcrs)
        .map(|(_, _, value)| hex(value))
        .unwrap_or_else(|_| format!("quoted: {}", describe_pcrs(pcrs)));
    let same_boot = boot == base.boot_aggregate;
    let check = Check::expect(
        Step::IMA_BOOT_AGGREGATE,
        same_boot,
        format!("{}:{} (the anchored boot)", base.bank, base.boot_aggregate),
        format!("{}:{boot}", base.bank),
    );
    verdict.push(if same_boot {
        check.with_detail("the new quote's PCRs 0-9 are those the anchored log was checked against")
    } else {
        check.with_detail(
            "the boot PCRs changed since the last verified quote (a reboot, or a boot PCR              extended at run time): the delta does not continue the verified log",
        )
    });
    let log = if fragment.is_empty() {
        Ok(Log::new(HashAlg::Sha1))
    } else {
        Log::parse_preferring(fragment, policy.bank)
    };
    let log = match log {
        Ok(log) => log,
        Err(error) => {
            verdict.push(Check::parse_failure(Step::IMA_PARSE, &error));
            return verdict;
        }
    };
    verdict.push(Check::pass(
        Step::IMA_PARSE,
        "a well-formed IMA measurement log fragment",
        format!("{} entries from entry {from}", log.len()),
    ));
    let pass = Pass::run(&log, None);
    verdict.push(template_hash_check(&log, &pass));
    verdict.push(violations_check(&log, policy));

    let bank = base.bank;
    let start = crate::hexfmt::decode(&base.pcr10).unwrap_or_default();
    let quoted = pcrs
        .value(bank, u8::try_from(IMA_PCR).unwrap_or(10))
        .map(<[u8]>::to_vec);
    let mut value = start.clone();
    let mut matched = (quoted.as_deref() == Some(start.as_slice())).then_some(0usize);
    let mut count = 0usize;
    for (_, entry) in log.entries_for(IMA_PCR) {
        bank.extend(&mut value, &entry.extend_digest(bank, base.mode));
        count += 1;
        if matched.is_none() && quoted.as_deref() == Some(value.as_slice()) {
            matched = Some(count);
        }
    }
    let step = Step::IMA_REPLAY;
    let replay = match (&quoted, matched) {
        (None, _) => Check::fail(
            step,
            format!("a quoted {bank} PCR 10"),
            format!("quoted: {}", describe_pcrs(pcrs)),
            "the new quote gives no PCR 10 value in the anchored bank",
        ),
        (Some(q), Some(n)) => Check::pass(step, hex(q), hex(q)).with_detail(format!(
            "{n} of the {count} new PCR 10 entries are covered by the quote, replayed from the              anchored PCR 10 after entry {from} ({} replay, {bank} bank)",
            base.mode
        )),
        (Some(q), None) => Check::fail(
            step,
            hex(q),
            hex(&value),
            format!(
                "the quoted PCR 10 matches no prefix of the {count} new PCR 10 entries replayed                  from the anchored value after entry {from}: entries before {from} changed, or                  the fragment is not the log's continuation; presented is the replay of the                  whole fragment"
            ),
        ),
    };
    let anchored = match (&quoted, matched) {
        (Some(q), Some(n)) if replay.ok && verdict.failures().next().is_none() => {
            anchor_of(&log, n, bank, q, base.mode, pcrs, from)
        }
        _ => None,
    };
    verdict.push(replay);
    let mut claims = claims(&log, &pass, matched.map(|n| (n, base.mode)));
    claims.pcr10 = BTreeMap::from([(bank.name().to_string(), hex(&value))]);
    claims.boot_aggregate = None;
    claims.anchor = anchored.map(Box::new);
    claims.delta_from = Some(from);
    verdict.claims = Claims::Ima(claims);
    verdict
}

/// `sha1 PCRs 0-7, 10; sha256 PCRs 10`, or `no PCRs`.
fn describe_pcrs(pcrs: &PcrValues) -> String {
    let banks: Vec<String> = pcrs
        .banks
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(bank, values)| {
            let mut ranges: Vec<(u8, u8)> = Vec::new();
            for &index in values.keys() {
                match ranges.last_mut() {
                    Some((_, last)) if last.checked_add(1) == Some(index) => *last = index,
                    _ => ranges.push((index, index)),
                }
            }
            let ranges: Vec<String> = ranges
                .into_iter()
                .map(|(first, last)| {
                    if first == last {
                        first.to_string()
                    } else {
                        format!("{first}-{last}")
                    }
                })
                .collect();
            format!("{bank} PCRs {}", ranges.join(", "))
        })
        .collect();
    if banks.is_empty() {
        "no PCRs".to_owned()
    } else {
        banks.join("; ")
    }
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
    let step = Step::IMA_TEMPLATE_HASH;
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
    let step = Step::IMA_VIOLATIONS;
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

fn boot_aggregate_check(log: &Log, quote: ImaQuote<'_>) -> Check {
    let step = Step::IMA_BOOT_AGGREGATE;
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
    let ImaQuote::Present(pcrs) = quote else {
        return Check::pass(step, name.clone(), name).with_detail(format!(
            "{logged}; not anchored: no quote to recompute it from (an offline log), so only \
             the entry's name was checked"
        ));
    };
    match recompute_boot_aggregate(algo, pcrs) {
        Err(Uncomputable::NotABank) => Check::fail(
            step,
            "a boot_aggregate in a TPM bank (sha1, sha256, sha384, sha512)",
            logged,
            format!(
                "its algorithm {algo:?} is not a TPM bank, so it cannot be recomputed from the \
                 quote and the log is not tied to the boot the quote measured"
            ),
        ),
        Err(Uncomputable::Missing {
            bank,
            last,
            missing,
        }) => Check::fail(
            step,
            format!("the quote to cover {bank} PCRs 0-{last} to recompute boot_aggregate"),
            format!("quoted: {}", describe_pcrs(pcrs)),
            format!(
                "the quote lacks {bank} PCR {}: boot_aggregate ({logged}) cannot be recomputed, \
                 so the log is not tied to the boot the quote measured; quote {bank} PCRs \
                 0-{last} with PCR 10",
                missing.join(", ")
            ),
        ),
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

/// Why `boot_aggregate` cannot be recomputed from a quote.
enum Uncomputable {
    /// The entry's algorithm names no TPM bank.
    NotABank,
    /// The quote lacks these PCRs (of `0..=last`) in `bank`.
    Missing {
        bank: HashAlg,
        last: u8,
        missing: Vec<String>,
    },
}

/// `boot_aggregate` from quoted PCRs: the bank named by the entry's algorithm, PCRs 0–7 for
/// SHA-1 and 0–9 for the others (`ima_calc_boot_aggregate`, kernel 5.8 and later). Returns the
/// bank, the number of PCRs hashed and the value, or why it cannot be computed.
fn recompute_boot_aggregate(
    algo: &str,
    pcrs: &PcrValues,
) -> Result<(HashAlg, usize, Vec<u8>), Uncomputable> {
    let bank: HashAlg = algo
        .parse()
        .map_err(|_| Uncomputable::NotABank)?;
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
        return Err(Uncomputable::Missing {
            bank,
            last,
            missing,
        });
    }
    Ok((bank, values.len(), bank.digest_all(values)))
}

/// `ima.coverage`: at least one PCR-10 measurement past `boot_aggregate`. A log without one
/// comes from a kernel with no IMA policy loaded (or one that measured nothing): it vouches for
/// no file, and "every measured file is approved" would be vacuously true.
///
/// `anchor` is the number of leading PCR-10 entries the quoted PCR 10 covers when `ima.replay`
/// passes: only measurements inside that prefix count, since entries past it are not covered
/// by the quote (anyone with root can append some) and are no evidence that a policy measures
/// files. Otherwise (no quote, an offline log; or a quote that anchors nothing, which
/// `ima.replay` fails) it says why, the whole log is counted and the detail says the count is
/// not anchored.
fn coverage_check(log: &Log, policy: &ImaPolicy, anchor: Result<usize, &str>) -> Check {
    let step = Step::IMA_COVERAGE;
    let is_measurement =
        |(index, e): &(usize, &super::Entry)| !(*index == 0 && e.path() == BOOT_AGGREGATE);
    let present = log
        .entries_for(IMA_PCR)
        .filter(is_measurement)
        .count();
    let prefix = match anchor {
        Ok(prefix) => prefix,
        Err(why) => {
            let expected = "at least one measurement past boot_aggregate";
            let unanchored =
                format!("not anchored: {why}, so the count is of the whole log, unverified");
            if present > 0 {
                return Check::pass(step, expected, format!("{present} measurements"))
                    .with_detail(unanchored);
            }
            if policy.allow_empty {
                return Check::pass(step, "any number (allow_empty)", "0 measurements")
                    .with_detail(format!(
                        "no measurement past boot_aggregate: no IMA policy appears to be \
                         loaded; accepted because allow_empty is set; {unanchored}"
                    ));
            }
            return Check::fail(
                step,
                expected,
                "0 measurements",
                "no PCR-10 measurement past boot_aggregate: no IMA policy appears to be loaded \
                 (or it measured nothing), so the log vouches for no file; set allow_empty to \
                 accept",
            );
        }
    };
    let covered = log
        .entries_for(IMA_PCR)
        .take(prefix)
        .filter(is_measurement)
        .count();
    let expected = "at least one measurement past boot_aggregate covered by the quote";
    let presented = format!("{covered} covered by the quote, {present} present in the log");
    let outside = present.saturating_sub(covered);
    if covered > 0 {
        let check = Check::pass(step, expected, presented);
        return if outside > 0 {
            check.with_detail(format!(
                "{outside} measurements past the quoted prefix are not covered by the quote and \
                 not counted"
            ))
        } else {
            check
        };
    }
    let why = if present == 0 {
        "the quote covers no measurement past boot_aggregate and the log holds none: no IMA \
         policy appears to be loaded (or it measured nothing)"
            .to_owned()
    } else {
        format!(
            "the quote covers no measurement past boot_aggregate: {covered} covered, {present} \
             present in the log past the quoted prefix, unverified (measured after the quote, or \
             appended by anyone with root)"
        )
    };
    if policy.allow_empty {
        return Check::pass(step, "any number (allow_empty)", presented)
            .with_detail(format!("{why}; accepted because allow_empty is set"));
    }
    Check::fail(
        step,
        expected,
        presented,
        format!("{why}, so the log vouches for no file; set allow_empty to accept"),
    )
}

fn replay_check(
    log: &Log,
    quote: Option<(HashAlg, &[u8])>,
    pass: &Pass,
) -> (Check, Option<(usize, ReplayMode)>) {
    let step = Step::IMA_REPLAY;
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
        anchor: None,
        delta_from: None,
    }
}
