//! `cosmian_vm audit query|verify`: the audit log of `cosmian_vm_proxy --audit-log`
//! (`ratls::audit`, `docs/audit.md`).

use std::process::ExitCode;

use ratls::audit::{self, Decision, Query, Record, ScanReport};
use ratls::UnixTime;
use serde::Serialize;

use crate::cli::{
    AuditLogArg, AuditQueryArgs, AuditVerifyArgs, UsageError, EXIT_REJECTED, EXIT_TRUSTED,
};
use crate::output;

#[derive(Serialize)]
struct QueryOutput<'a> {
    matched: usize,
    scanned: u64,
    segments: usize,
    chain_intact: bool,
    problems: &'a [String],
    torn_tail: bool,
    records: &'a [Record],
}

pub fn query(args: &AuditQueryArgs, json: bool) -> Result<ExitCode, UsageError> {
    let when = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(audit::parse_time)
            .transpose()
            .map_err(|e| UsageError(format!("{flag}: {e}")))
    };
    let query = Query {
        since: when("--since", &args.since)?,
        until: when("--until", &args.until)?,
        tcb_below: args
            .tcb_below
            .as_deref()
            .map(audit::parse_tcb_below)
            .transpose()
            .map_err(|e| UsageError(format!("--tcb-below: {e}")))?
            .unwrap_or_default(),
        measurement: args.measurement.clone(),
        chip_id: args.chip_id.clone(),
        advisory: args.advisory.clone(),
        decision: args
            .decision
            .as_deref()
            .map(|d| match d {
                "accepted" => Decision::Accepted,
                _ => Decision::Rejected,
            }),
        connection_id: args.connection_id.clone(),
    };
    let mut records = Vec::new();
    let report = scan(&args.log, |r| {
        if query.matches(r) {
            records.push(r.clone());
        }
    })?;
    if json {
        output::print_json(&QueryOutput {
            matched: records.len(),
            scanned: report.records,
            segments: report.segments,
            chain_intact: report.problems.is_empty(),
            problems: &report.problems,
            torn_tail: report.torn_tail,
            records: &records,
        });
    } else {
        for r in &records {
            output::print_line(&line(r));
        }
        output::print_line(&format!(
            "{} of {} record(s) match ({} segment(s) in {}; chain {})",
            records.len(),
            report.records,
            report.segments,
            args.log.log.display(),
            if report.problems.is_empty() {
                "intact"
            } else {
                "BROKEN: run `cosmian_vm audit verify`"
            }
        ));
    }
    warn(&report);
    Ok(ExitCode::from(if records.is_empty() {
        EXIT_REJECTED
    } else {
        EXIT_TRUSTED
    }))
}

pub fn verify(args: &AuditVerifyArgs, json: bool) -> Result<ExitCode, UsageError> {
    let head = args
        .head
        .as_deref()
        .map(audit::Head::parse)
        .transpose()
        .map_err(|e| UsageError(format!("--head: {e}")))?;
    let report = scan_expecting(&args.log, head.as_ref(), |_| {})?;
    if json {
        output::print_json(&report);
    } else {
        for p in &report.problems {
            output::print_line(&format!("BROKEN: {p}"));
        }
        if report.torn_tail {
            output::print_line(
                "note: the last record was cut short by a crash (never acknowledged; the next \
                 start removes it)",
            );
        }
        output::print_line(&format!(
            "{}: {} record(s) in {} segment(s): {}; head {}",
            args.log.log.display(),
            report.records,
            report.segments,
            if report.problems.is_empty() {
                "hash chain and sequence intact"
            } else {
                "the log was altered or damaged"
            },
            report
                .head
                .as_ref()
                .map_or("none".to_owned(), |h| format!("{}:{}", h.seq, h.sha256)),
        ));
        if head.is_none() {
            output::print_line(
                "(records removed from the end leave an intact chain: pass --head SEQ:SHA256 \
                 from a copy kept elsewhere to rule that out)",
            );
        }
    }
    Ok(ExitCode::from(if report.problems.is_empty() {
        EXIT_TRUSTED
    } else {
        EXIT_REJECTED
    }))
}

fn scan(log: &AuditLogArg, each: impl FnMut(&Record)) -> Result<ScanReport, UsageError> {
    scan_expecting(log, None, each)
}

fn scan_expecting(
    log: &AuditLogArg,
    head: Option<&audit::Head>,
    each: impl FnMut(&Record),
) -> Result<ScanReport, UsageError> {
    if !log.log.is_dir() {
        return Err(UsageError(format!(
            "--log {}: not a directory (the proxy's --audit-log)",
            log.log.display()
        )));
    }
    audit::scan_expecting(&log.log, head, each).map_err(|e| UsageError(e.to_string()))
}

fn warn(report: &ScanReport) {
    if let Some(first) = report.problems.first() {
        eprintln!(
            "cosmian_vm: WARNING: the audit log's hash chain is broken in {} place(s); first: {first}",
            report.problems.len(),
        );
    }
}

/// One record on one line: seq, time, decision, peer, connection, platform, TCB, measurement,
/// failed step.
fn line(r: &Record) -> String {
    let tcb = r.reported_tcb.map_or_else(
        || {
            r.tee_tcb_svn
                .as_deref()
                .map_or("-".to_owned(), |s| format!("tdx-svn={s}"))
        },
        |t| {
            format!(
                "bl={},tee={},snp={},ucode={}{}",
                t.bootloader,
                t.tee,
                t.snp,
                t.microcode,
                t.fmc
                    .map_or(String::new(), |f| format!(",fmc={f}"))
            )
        },
    );
    let mut text = format!(
        "#{} {} {} {} conn={} {}{} tcb={} measurement={}",
        r.seq,
        UnixTime::from_secs(r.time),
        r.decision,
        r.peer,
        r.connection_id,
        r.platform,
        if r.simulated { " SIMULATED" } else { "" },
        tcb,
        r.measurement.as_deref().unwrap_or("-"),
    );
    if let Some(step) = &r.step {
        text.push_str(&format!(" step={step}"));
    }
    text
}
