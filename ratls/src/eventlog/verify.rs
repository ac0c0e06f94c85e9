//! Verifying an event log against quoted PCR values, and the claims it makes.

use std::collections::{BTreeMap, BTreeSet};

use super::{EventLog, EventLogClaims};
use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::PcrValues;
use crate::verdict::Step;
use crate::verdict::{Check, Platform, Verdict};

const PARSE: Step = Step::EVENTLOG_PARSE;

/// The step that anchors a machine's firmware event log in its quoted boot PCRs.
pub const BOOT_EVENTLOG: Step = Step::BOOT_EVENTLOG;
const REPLAY: Step = Step::EVENTLOG_REPLAY;

/// Parse a TCG event log and compare its replay with quoted PCR values.
///
/// Steps: `eventlog.parse`, then the checks of [`check_against_pcrs`]. The verdict's platform
/// is [`Platform::Tpm`] (the log is the firmware's account of a TPM's PCRs) and it carries no
/// claims; [`EventLog::summary`] gives them.
pub fn verify_against_pcrs(log: &[u8], pcrs: &PcrValues, indices: &[u32]) -> Verdict {
    let mut verdict = Verdict::new(Platform::Tpm);
    let log = match EventLog::parse(log) {
        Ok(log) => log,
        Err(error) => {
            verdict.push(Check::parse_failure(PARSE, &error));
            return verdict;
        }
    };
    verdict.push(parse_check(&log));
    verdict.extend(check_against_pcrs(&log, pcrs, indices));
    verdict
}

/// `boot.eventlog`: parse the firmware event log of a machine and replay it against the quoted
/// PCRs 0–9 of `quoted` (`None`: no quote, a failure), in every quoted bank the log carries;
/// one check per bank, a failure names the first differing PCR ([`check_against_pcrs`]). Every
/// quoted PCR among 0–9 is compared, so one the log never extends must hold its initial value.
/// Also returns the log's claims when it parsed.
pub fn check_boot_log(
    bytes: &[u8],
    quoted: Option<&PcrValues>,
) -> (Vec<Check>, Option<EventLogClaims>) {
    let fail = |expected: String, presented: &str, detail: String| {
        vec![Check::fail(BOOT_EVENTLOG, expected, presented, detail)]
    };
    let log = match EventLog::parse(bytes) {
        Ok(log) => log,
        Err(error) => {
            return (
                fail(
                    "a well-formed TCG event log".into(),
                    "malformed",
                    error.to_string(),
                ),
                None,
            )
        }
    };
    let summary = Some(log.summary());
    let Some(quoted) = quoted else {
        return (
            fail(
                "a TPM quote of PCRs 0-9 to replay the event log against".into(),
                "no TPM quote",
                "an event log without a quote proves nothing".into(),
            ),
            summary,
        );
    };
    let log_banks = log.banks();
    let mut pcrs = PcrValues::default();
    for (bank, values) in &quoted.banks {
        if log_banks.contains(bank) {
            for (index, value) in values {
                pcrs.insert(*bank, *index, value.clone());
            }
        }
    }
    let names = |banks: &mut dyn Iterator<Item = HashAlg>| {
        banks
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if pcrs.banks.is_empty() {
        return (
            fail(
                format!(
                    "a quoted bank among the log's ({})",
                    names(&mut log_banks.iter().copied())
                ),
                &format!("quoted banks: {}", names(&mut quoted.banks.keys().copied())),
                "the quote has no PCR bank the event log carries digests for".into(),
            ),
            summary,
        );
    }
    let indices: Vec<u32> = super::BOOT_PCRS
        .iter()
        .copied()
        .filter(|&index| {
            let index = u8::try_from(index).unwrap_or(u8::MAX);
            pcrs.banks
                .values()
                .all(|values| values.contains_key(&index))
        })
        .collect();
    if indices.is_empty() {
        return (
            fail(
                "a quote of PCRs 0-9".into(),
                "none of PCRs 0-9 quoted",
                "the event log cannot be anchored".into(),
            ),
            summary,
        );
    }
    let checks = check_against_pcrs(&log, &pcrs, &indices)
        .into_iter()
        .map(|mut check| {
            check.step = BOOT_EVENTLOG.to_owned();
            check
        })
        .collect();
    (checks, summary)
}

/// Parse a log and return what it says, without anchoring it: [`EventLog::summary`].
pub fn inspect(bytes: &[u8]) -> Result<EventLogClaims, ParseError> {
    EventLog::parse(bytes).map(|log| log.summary())
}

/// The `eventlog.parse` check of a log that parsed.
fn parse_check(log: &EventLog) -> Check {
    let banks = log
        .algorithms()
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ");
    let mut detail = format!("digest algorithms {banks}");
    if log.padding() > 0 {
        detail.push_str(&format!("; {} bytes of end-of-log padding", log.padding()));
    }
    Check::pass(
        PARSE,
        "a well-formed TCG event log",
        format!("{} log, {} events", log.format(), log.len()),
    )
    .with_detail(detail)
}

/// Compare the replay of `log` (TPM rules, [`EventLog::replay`]) with the quoted PCR values of
/// `indices`: one `eventlog.replay` check per bank of `pcrs`, with the quoted values as
/// expected and the replayed ones as presented, failing on any difference and naming the first
/// differing PCR. A bank the log does not carry, an index the quote lacks, no bank or no index
/// at all are failed checks. Events the log extends into PCRs outside `indices` are not
/// authenticated; the passing check's detail says how many there are.
pub fn check_against_pcrs(log: &EventLog, pcrs: &PcrValues, indices: &[u32]) -> Vec<Check> {
    let indices: Vec<u32> = indices
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if indices.is_empty() {
        return vec![Check::fail(
            REPLAY,
            "at least one PCR index to compare",
            "none",
            "no PCR indices were given: the log would be anchored to nothing",
        )];
    }
    if pcrs.banks.is_empty() {
        return vec![Check::fail(
            REPLAY,
            "quoted PCR values",
            "none",
            "no quoted PCR values were given: the log cannot be anchored",
        )];
    }
    pcrs.banks
        .keys()
        .map(|&bank| bank_check(log, pcrs, bank, &indices))
        .collect()
}

fn bank_check(log: &EventLog, pcrs: &PcrValues, bank: HashAlg, indices: &[u32]) -> Check {
    let mut quoted = Vec::with_capacity(indices.len());
    let mut missing = Vec::new();
    for &index in indices {
        let value = u8::try_from(index)
            .ok()
            .and_then(|i| pcrs.value(bank, i));
        match value {
            Some(value) => quoted.push((index, value.to_vec())),
            None => missing.push(index),
        }
    }
    let expected = render(bank, &quoted);
    if !missing.is_empty() {
        return Check::fail(
            REPLAY,
            expected,
            "",
            format!("the quoted {bank} PCR values lack PCR {}", list(&missing)),
        );
    }
    let replayed = match log.replay_selected(bank, indices) {
        Ok(values) => values,
        Err(error) => {
            return Check::fail(REPLAY, expected, "no replay", error.to_string());
        }
    };
    let replayed: Vec<(u32, Vec<u8>)> = replayed.into_iter().collect();
    let presented = render(bank, &replayed);
    let differing: Vec<u32> = quoted
        .iter()
        .zip(&replayed)
        .filter(|((_, q), (_, r))| q != r)
        .map(|((index, _), _)| *index)
        .collect();
    let Some(&first) = differing.first() else {
        return Check::pass(REPLAY, expected, presented).with_detail(covered(log, indices, bank));
    };
    let value = |values: &[(u32, Vec<u8>)]| {
        values
            .iter()
            .find(|(i, _)| *i == first)
            .map(|(_, v)| hex(v))
            .unwrap_or_default()
    };
    Check::fail(
        REPLAY,
        expected,
        presented,
        format!(
            "{bank} PCR {first}: the replayed event log gives {}, the quote has {}; {} of {} \
             PCRs differ ({})",
            value(&replayed),
            value(&quoted),
            differing.len(),
            indices.len(),
            list(&differing)
        ),
    )
}

/// The pass detail: how many measured events the comparison covers, and which it does not.
fn covered(log: &EventLog, indices: &[u32], bank: HashAlg) -> String {
    let mut inside = 0usize;
    let mut outside: BTreeMap<u32, usize> = BTreeMap::new();
    for event in log.events() {
        if event.event_type().is_no_action() {
            continue;
        }
        if indices.contains(&event.pcr_index()) {
            inside += 1;
        } else {
            *outside
                .entry(event.pcr_index())
                .or_default() += 1;
        }
    }
    let mut detail = format!(
        "{bank} PCR {} reproduced by {inside} measured events",
        list(indices)
    );
    if !outside.is_empty() {
        let count: usize = outside.values().sum();
        let where_: Vec<u32> = outside.keys().copied().collect();
        detail.push_str(&format!(
            "; {count} measured events in PCR {} were not compared and are not authenticated",
            list(&where_)
        ));
    }
    if let Some(locality) = log.startup_locality() {
        detail.push_str(&format!("; PCR 0 started at locality {locality}"));
    }
    detail
}

/// `sha256 0=ab…, 1=cd…`.
fn render(bank: HashAlg, values: &[(u32, Vec<u8>)]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|(index, value)| format!("{index}={}", hex(value)))
        .collect();
    format!("{bank} {}", values.join(", "))
}

fn list(indices: &[u32]) -> String {
    indices
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl EventLog {
    /// What the log says: its format, banks, event counts and the replayed values of every bank
    /// it can be replayed into (TPM rules). A bank whose replay fails is left out.
    pub fn summary(&self) -> EventLogClaims {
        let mut event_types: BTreeMap<String, usize> = BTreeMap::new();
        let mut events_per_index: BTreeMap<u32, usize> = BTreeMap::new();
        for event in self.events() {
            *event_types
                .entry(event.event_type().to_string())
                .or_default() += 1;
            if !event.event_type().is_no_action() {
                *events_per_index
                    .entry(event.pcr_index())
                    .or_default() += 1;
            }
        }
        let replayed = self
            .banks()
            .into_iter()
            .filter_map(|bank| {
                let values = self.replay(bank).ok()?;
                let values = values
                    .into_iter()
                    .map(|(index, value)| (index, hex(value)))
                    .collect();
                Some((bank.name().to_owned(), values))
            })
            .collect();
        EventLogClaims {
            format: self.format().name().to_owned(),
            events: self.len(),
            banks: self
                .algorithms()
                .iter()
                .map(|a| a.name())
                .collect(),
            event_types,
            events_per_index,
            startup_locality: self.startup_locality(),
            replayed,
            padding: self.padding(),
        }
    }
}
