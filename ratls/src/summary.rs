//! The human-readable head of a verdict, as the command-line tools print it (`cosmian_vm
//! evidence verify`, `cosmian_vm connect`, `cosmian_certtool ratls verify`).

use std::fmt::Write as _;

use crate::verdict::Verdict;

/// `<platform> evidence: TRUSTED` (or `REJECTED`, with ` (SIMULATED TEE: not production
/// evidence)` for simulated evidence), for batched evidence a `batched: session I of N` line,
/// then one indented line per check.
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
    if let crate::claims::Claims::Bundle(claims) = &verdict.claims {
        if let Some(batch) = &claims.batch {
            let _ = writeln!(
                text,
                "  batched: session {} of {} sharing one TEE report and one TPM quote{}",
                batch.index.saturating_add(1),
                batch.size,
                if batch.shared_verdict_cached {
                    " (their verdict reused from an earlier session of the batch)"
                } else {
                    ""
                }
            );
        }
    }
    for check in &verdict.checks {
        let _ = writeln!(text, "  {check}");
    }
    text
}
