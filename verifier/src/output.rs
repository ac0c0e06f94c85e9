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
    let status = if verdict.is_trusted() {
        "TRUSTED"
    } else {
        "REJECTED"
    };
    let sim = if verdict.simulated {
        " (SIMULATED TEE: not production evidence)"
    } else {
        ""
    };
    let mut text = format!("{} evidence: {status}{sim}\n", verdict.platform);
    for check in &verdict.checks {
        let _ = writeln!(text, "  {check}");
    }
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
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
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
