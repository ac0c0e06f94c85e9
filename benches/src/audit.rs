//! Group `audit`: what the audit log (`ratls::audit`, `cosmian_vm_proxy --audit-log`) costs per
//! verdict, on the disk holding the target directory (not tmpfs: a sync must reach the disk).
//!
//! - one writer appending back to back: every record waits for its own `fdatasync`;
//! - 64 writers at once (a proxy under load): the writer thread's group commit shares a sync
//!   among the records that arrived during the previous one;
//! - the reference: a hand-written `write` + `fdatasync` per line of the same size on the same
//!   file system (what a naive durable logger does), no group commit.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use ratls::audit::{AuditLog, Decision, Record, Tcb, DEFAULT_SEGMENT_BYTES};

use crate::Measurement;

fn record(i: u64) -> Record {
    let mut r = Record::refusal(
        None,
        "",
        &[7; 32],
        "203.0.113.9:51234",
        &format!("674f1c2a-1f3e-{i}"),
        "cosmian_vm_proxy server",
    );
    r.reason = None;
    r.decision = Decision::Accepted;
    r.platform = "sev-snp".into();
    r.role = Some("client".into());
    r.chip_id = Some("ab".repeat(64));
    r.reported_tcb = Some(Tcb {
        fmc: None,
        bootloader: 10,
        tee: 0,
        snp: 23,
        microcode: 84,
    });
    r.measurement = Some("5f".repeat(48));
    r.evidence_sha256 = Some("e3".repeat(32));
    r
}

fn row(name: String, n: u64, elapsed: std::time::Duration) -> Measurement {
    Measurement {
        name,
        iterations: n,
        elapsed,
        units_per_iter: 1,
        unit: "records",
        memory_bytes: None,
    }
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    let base = std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .map(|d| d.join(format!("bench-audit-{}", std::process::id())))
        })
        .expect("a directory beside the bench binary");
    let _ = std::fs::remove_dir_all(&base);
    let mut rows = Vec::new();
    let line_len;

    // One writer.
    let n = scale(400).max(10);
    {
        let log = AuditLog::open(&base.join("one"), DEFAULT_SEGMENT_BYTES).expect("audit log");
        let start = Instant::now();
        for i in 0..n {
            log.append(record(i)).expect("append");
        }
        rows.push(row(
            "audit: one writer, each record appended and fdatasync'd before the next (AuditLog::append)".into(),
            n,
            start.elapsed(),
        ));
        let bytes = std::fs::metadata(
            ratls::audit::segments(&base.join("one"))
                .expect("segments")
                .first()
                .expect("a segment"),
        )
        .map(|m| m.len())
        .unwrap_or(0);
        line_len = bytes / n;
    }

    // 64 writers.
    let writers = 64u64;
    let per = scale(100).max(4);
    {
        let log =
            Arc::new(AuditLog::open(&base.join("many"), DEFAULT_SEGMENT_BYTES).expect("audit log"));
        let start = Instant::now();
        let threads: Vec<_> = (0..writers)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        log.append(record(t * 1_000_000 + i))
                            .expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        let elapsed = start.elapsed();
        let mut count = 0u64;
        let report = ratls::audit::scan(&base.join("many"), |_| count += 1).expect("scan");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(count, writers * per, "every record is in the log");
        rows.push(row(
            format!("audit: {writers} writers at once, group commit (one write + one fdatasync per group)"),
            writers * per,
            elapsed,
        ));
    }

    // The reference: write + fdatasync per line, by hand.
    {
        std::fs::create_dir_all(&base).expect("directory");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("naive.jsonl"))
            .expect("file");
        let line = vec![b'x'; usize::try_from(line_len.max(1)).unwrap_or(600)];
        let start = Instant::now();
        for _ in 0..n {
            file.write_all(&line).expect("write");
            file.sync_data().expect("fdatasync");
        }
        rows.push(row(
            format!("audit: reference, a {line_len}-byte line written and fdatasync'd by hand (no JSON, no chain)"),
            n,
            start.elapsed(),
        ));
    }
    let _ = std::fs::remove_dir_all(&base);
    rows
}
