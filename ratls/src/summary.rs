//! The human-readable head of a verdict, as the command-line tools print it (`cosmian_vm
//! evidence verify`, `cosmian_vm connect`, `cosmian_certtool ratls verify`).

use std::fmt::Write as _;

use crate::verdict::Verdict;

/// `<platform> evidence: TRUSTED` (or `REJECTED`, with ` (SIMULATED TEE: not production
/// evidence)` for simulated evidence), then one indented line per check.
pub fn verdict_head(verdict: &Verdict) -> String {
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
    text
}
