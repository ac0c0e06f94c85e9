//! Human and JSON rendering of verdicts and claims.

use std::fmt::Write as _;
use std::io::Write as _;

use ratls::Verdict;
use serde::Serialize;

/// Write to stdout; a closed pipe (`cosmian_vm … | head`) is not an error worth a panic.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush());
}

/// Print a verdict: JSON (one object) or a human summary.
pub fn print_verdict(verdict: &Verdict, json: bool) {
    if json {
        print_json(verdict);
        return;
    }
    let mut text = ratls::summary::verdict_head(verdict);
    if let Some(failed) = verdict.first_failure() {
        let _ = writeln!(
            text,
            "rejected at {}: {}",
            failed.step,
            failed.detail_or_values()
        );
    }
    text.push_str(&claims_text(&verdict.claims));
    emit(&text);
}

/// Print claims as indented `key: value` lines.
pub fn print_claims(claims: &impl Serialize) {
    emit(&claims_text(claims));
}

fn claims_text(claims: &impl Serialize) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(claims) else {
        return String::new();
    };
    if map.is_empty() {
        return String::new();
    }
    let mut text = String::from("claims:\n");
    for (key, value) in &map {
        let _ = writeln!(text, "  {key}: {}", flat(value));
    }
    text
}

/// Print any serialisable value as pretty JSON.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => emit(&format!("{text}\n")),
        Err(e) => tracing::error!("cannot render JSON: {e}"),
    }
}

/// Print a line of text.
pub fn print_line(line: &str) {
    emit(&format!("{line}\n"));
}

fn flat(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

trait DetailOrValues {
    fn detail_or_values(&self) -> String;
}

impl DetailOrValues for ratls::Check {
    fn detail_or_values(&self) -> String {
        let values = format!("expected {}, presented {}", self.expected, self.presented);
        if self.detail.is_empty() {
            values
        } else {
            format!("{values} ({})", self.detail)
        }
    }
}

/// Print text as is.
pub fn print_text(text: &str) {
    emit(text);
}

/// How many failures of one group the human summary shows (`--json` has them all).
const SHOWN_FAILURES: usize = 10;

/// The human summary of a session verified against a snapshot: a headline, then one line per
/// group of checks (`binding`, `tee`, `tpm`, `ima`, …, then `files`), with the first failures
/// of each group and their expected / presented values.
pub fn session_summary(
    verified: bool,
    url: &str,
    against: &str,
    evidence: &Verdict,
    files: &[ratls::Check],
) -> String {
    let sim = if evidence.simulated {
        "  [SIMULATED TEE: not production evidence]"
    } else {
        ""
    };
    let head = if verified { "VERIFIED" } else { "FAILED" };
    let mut text = format!("{head}: {url} against {against}{sim}\n");
    let mut groups: Vec<(String, Vec<&ratls::Check>)> = Vec::new();
    for check in &evidence.checks {
        let group = check.step.prefix().to_owned();
        match groups
            .iter_mut()
            .find(|(g, _)| *g == group)
        {
            Some((_, list)) => list.push(check),
            None => groups.push((group, vec![check])),
        }
    }
    if evidence.checks.is_empty() {
        groups.push(("evidence".into(), Vec::new()));
    }
    // The snapshot's own checks (`snapshot.*`) in their group, the file checks in `files`.
    let (snapshot, files): (Vec<&ratls::Check>, Vec<&ratls::Check>) = files
        .iter()
        .partition(|c| c.step.layer() == ratls::verdict::StepLayer::Snapshot);
    if !snapshot.is_empty() {
        groups.push(("snapshot".into(), snapshot));
    }
    if !files.is_empty() {
        groups.push(("files".into(), files));
    }
    for (group, checks) in &groups {
        text.push_str(&group_line(group, checks));
    }
    let first = evidence.first_failure().or_else(|| {
        groups
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .find(|c| !c.ok)
    });
    if let (false, Some(failed)) = (verified, first) {
        let _ = writeln!(
            text,
            "rejected at {}: {}",
            failed.step,
            failed.detail_or_values()
        );
    }
    text
}

fn group_line(group: &str, checks: &[&ratls::Check]) -> String {
    let failed: Vec<&&ratls::Check> = checks
        .iter()
        .filter(|c| !c.ok)
        .collect();
    if checks.is_empty() {
        return format!("  {group:<12} FAILED: no check ran\n");
    }
    if failed.is_empty() {
        let what = if checks.len() == 1 {
            checks
                .first()
                .map_or_else(String::new, |c| format!(": {}", c.presented))
        } else {
            format!(" ({} checks)", checks.len())
        };
        return format!("  {group:<12} ok{what}\n");
    }
    let mut text = format!(
        "  {group:<12} FAILED ({} of {} checks)\n",
        failed.len(),
        checks.len()
    );
    for check in failed.iter().take(SHOWN_FAILURES) {
        let _ = writeln!(
            text,
            "      {}: expected {}, presented {}",
            check.step, check.expected, check.presented
        );
        if !check.detail.is_empty() {
            let _ = writeln!(text, "        ({})", check.detail);
        }
    }
    if failed.len() > SHOWN_FAILURES {
        let _ = writeln!(
            text,
            "      … and {} more (--json lists them all)",
            failed.len() - SHOWN_FAILURES
        );
    }
    text
}

/// One `--application` line.
pub fn application_line(application: &str, ok: bool, how: &str) -> String {
    let status = if ok { "ok" } else { "FAILED" };
    format!("  application  {application} {status}: {how}\n")
}

/// The snapshot job's progress bar on stderr (indicatif: drawn only on a terminal, never with
/// `--json` or `--quiet`).
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(wanted: bool) -> Self {
        let bar = wanted.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            // The template is a constant; should it not parse, the default style stays.
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "snapshot: [{elapsed_precise}] {wide_bar} {pos}/{len} files hashed, {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self { bar }
    }

    /// Show `{"files_done", "files_total", "bytes_done"}` from the agent.
    pub fn show(&mut self, progress: &serde_json::Value) {
        let Some(bar) = &self.bar else { return };
        let n = |key: &str| {
            progress
                .get(key)
                .and_then(serde_json::Value::as_u64)
        };
        let total = n("files_total").unwrap_or(0);
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(n("files_done").unwrap_or(0));
        bar.set_message(format!(
            "{} MiB",
            n("bytes_done").unwrap_or(0) / (1024 * 1024)
        ));
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
