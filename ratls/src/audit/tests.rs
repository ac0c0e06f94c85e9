use std::sync::Arc;

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "ratls-audit-{tag}-{}-{}",
            std::process::id(),
            UnixTime::now().as_secs()
        ));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(id: &str, tcb: Option<(u8, u8)>, time: u64) -> Record {
    let mut r = Record::refusal(None, "test", &[7; 32], "127.0.0.1:1", id, "test");
    r.decision = Decision::Accepted;
    r.time = time;
    r.platform = "sev-snp".into();
    r.reported_tcb = tcb.map(|(bl, snp)| Tcb {
        fmc: None,
        bootloader: bl,
        tee: 0,
        snp,
        microcode: 200,
    });
    r.measurement = Some(format!("{:096x}", tcb.map_or(0, |(bl, _)| bl)));
    r
}

fn all(dir: &Path) -> (Vec<Record>, ScanReport) {
    let mut records = Vec::new();
    let report = scan(dir, |r| records.push(r.clone())).unwrap();
    (records, report)
}

#[test]
fn appended_records_come_back_in_order_with_an_intact_chain() {
    let dir = Dir::new("order");
    let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
    for i in 0..5 {
        assert_eq!(
            log.append(record(&format!("c{i}"), Some((7, 15)), 100))
                .unwrap(),
            i + 1
        );
    }
    let (records, report) = all(&dir.0);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(!report.torn_tail);
    assert_eq!(report.records, 5);
    let ids: Vec<_> = records
        .iter()
        .map(|r| r.connection_id.as_str())
        .collect();
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(records[0].prev, GENESIS);
    assert_ne!(records[1].prev, GENESIS);
}

#[test]
fn concurrent_appends_share_syncs_and_lose_nothing() {
    let dir = Dir::new("group");
    let log = Arc::new(AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        log.append(record(&format!("t{t}-{i}"), None, 1))
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    let (records, report) = all(&dir.0);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(records.len(), 400);
    // The sequence number each caller got is the record's.
    for r in &records {
        assert!(r.connection_id.starts_with('t'));
    }
}

#[test]
fn a_torn_last_record_is_dropped_on_open_and_the_chain_goes_on() {
    let dir = Dir::new("torn");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        log.append(record("a", None, 1))
            .unwrap();
        log.append(record("b", None, 1))
            .unwrap();
    }
    let segment = segments(&dir.0).unwrap().pop().unwrap();
    let whole = std::fs::read(&segment).unwrap();
    let mut torn = OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    torn.write_all(b"{\"v\":1,\"seq\":3,\"ti")
        .unwrap();
    drop(torn);
    let (_, report) = all(&dir.0);
    assert!(report.torn_tail);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(std::fs::read(&segment).unwrap(), whole);
    assert_eq!(
        log.append(record("c", None, 1))
            .unwrap(),
        3
    );
    let (records, report) = all(&dir.0);
    assert!(!report.torn_tail);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(records.len(), 3);
}

#[test]
fn an_edited_record_breaks_the_chain_at_the_next_line() {
    let dir = Dir::new("tamper");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        for id in ["a", "b", "c"] {
            log.append(record(id, Some((3, 8)), 1))
                .unwrap();
        }
    }
    let segment = segments(&dir.0).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    // An operator hiding a session from a recalled TCB: bootloader 3 becomes 9.
    let edited = text.replacen("\"bootloader\":3", "\"bootloader\":9", 2);
    assert_ne!(edited, text);
    std::fs::write(&segment, edited).unwrap();
    let (_, report) = all(&dir.0);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report.problems[0].contains(":2: chain broken at seq 2"),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_deleted_record_breaks_the_sequence_and_the_chain() {
    let dir = Dir::new("delete");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        for id in ["a", "b", "c"] {
            log.append(record(id, None, 1)).unwrap();
        }
    }
    let segment = segments(&dir.0).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&segment, kept.join("\n") + "\n").unwrap();
    let (_, report) = all(&dir.0);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("sequence broken: expected seq 2, presented 3")),
        "{:?}",
        report.problems
    );
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("chain broken")));
}

#[test]
fn segments_rotate_and_the_chain_spans_them_across_restarts() {
    let dir = Dir::new("rotate");
    {
        let log = AuditLog::open(&dir.0, 4096).unwrap();
        for i in 0..20 {
            log.append(record(&format!("a{i}"), None, 1))
                .unwrap();
        }
    }
    {
        let log = AuditLog::open(&dir.0, 4096).unwrap();
        for i in 0..20 {
            log.append(record(&format!("b{i}"), None, 1))
                .unwrap();
        }
    }
    let files = segments(&dir.0).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let (records, report) = all(&dir.0);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(records.len(), 40);
    assert_eq!(records.last().unwrap().seq, 40);
}

#[test]
fn a_last_record_that_does_not_parse_stops_the_open() {
    let dir = Dir::new("corrupt");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        log.append(record("a", None, 1))
            .unwrap();
    }
    let segment = segments(&dir.0).unwrap().pop().unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    f.write_all(b"not json\n").unwrap();
    drop(f);
    let e = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
    let (_, report) = all(&dir.0);
    assert!(
        report.problems[0].contains(":2: not a record"),
        "{report:?}"
    );
}

#[test]
fn hostile_lines_are_reported_not_trusted() {
    let dir = Dir::new("hostile");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut text = vec![b'x'; MAX_LINE + 10];
    text.push(b'\n');
    text.extend_from_slice(b"\xff\xfe\n{\"v\":1}\n");
    std::fs::write(
        dir.0
            .join("audit-0000000000000001.jsonl"),
        &text,
    )
    .unwrap();
    let (records, report) = all(&dir.0);
    assert!(records.is_empty());
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
    assert!(report.problems[0].contains("longer than"));
}

#[test]
fn tcb_below_selects_exactly_the_recalled_sessions() {
    let below = parse_tcb_below("bl=7,snp=15").unwrap();
    let q = Query {
        tcb_below: below,
        ..Query::default()
    };
    assert!(q.matches(&record("old-bl", Some((6, 20)), 1)));
    assert!(q.matches(&record("old-snp", Some((9, 14)), 1)));
    assert!(!q.matches(&record("fixed", Some((7, 15)), 1)));
    assert!(!q.matches(&record("newer", Some((8, 22)), 1)));
    assert!(!q.matches(&record("no-tcb", None, 1)));
}

#[test]
fn time_measurement_and_decision_filters() {
    let since = parse_time("2026-11-01").unwrap();
    assert_eq!(since.as_secs(), 1_793_491_200);
    assert_eq!(parse_time("2026-11-01T00:00:00Z").unwrap(), since);
    assert!(parse_time("yesterday")
        .unwrap_err()
        .contains("2026-11-01"));
    let q = Query {
        since: Some(since),
        measurement: Some(format!("{:096X}", 7)),
        decision: Some(Decision::Accepted),
        ..Query::default()
    };
    assert!(q.matches(&record("in", Some((7, 1)), since.as_secs())));
    assert!(!q.matches(&record("before", Some((7, 1)), since.as_secs() - 1)));
    assert!(!q.matches(&record("other", Some((8, 1)), since.as_secs())));
    let mut rejected = record("rej", Some((7, 1)), since.as_secs());
    rejected.decision = Decision::Rejected;
    assert!(!q.matches(&rejected));
}

#[test]
fn tcb_below_parse_errors_name_the_problem() {
    assert!(parse_tcb_below("bl7")
        .unwrap_err()
        .contains("NAME=VALUE"));
    assert!(parse_tcb_below("foo=1")
        .unwrap_err()
        .contains("not a TCB component"));
    assert!(parse_tcb_below("snp=300")
        .unwrap_err()
        .contains("0 to 255"));
    assert!(parse_tcb_below("")
        .unwrap_err()
        .contains("no TCB component"));
    assert_eq!(
        parse_tcb_below("bootloader=2, ucode=209").unwrap(),
        vec![(TcbPart::Bootloader, 2), (TcbPart::Microcode, 209)]
    );
}

#[test]
fn long_texts_are_cut_on_a_character_boundary() {
    let long = "é".repeat(MAX_TEXT);
    let r = Record::refusal(Some("x.y"), &long, &[0; 32], "p", "c", "v");
    let reason = r.reason.unwrap();
    assert!(reason.len() <= MAX_TEXT + '…'.len_utf8());
    assert!(reason.ends_with('…'));
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused_until_the_first_closes() {
    let dir = Dir::new("lock");
    let first = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
    let e = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap_err();
    assert!(
        e.to_string()
            .contains("another process"),
        "{e}"
    );
    first
        .append(record("a", None, 1))
        .unwrap();
    drop(first);
    let second = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(
        second
            .append(record("b", None, 1))
            .unwrap(),
        2
    );
}

#[test]
fn an_empty_last_segment_continues_the_previous_ones_sequence_and_chain() {
    let dir = Dir::new("empty-seg");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        for id in ["a", "b", "c"] {
            log.append(record(id, None, 1)).unwrap();
        }
    }
    // A crash right after a new segment was created, named for a seq the log never reached.
    std::fs::write(
        dir.0
            .join("audit-0000000000000002.jsonl"),
        b"",
    )
    .unwrap();
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(
            log.append(record("d", None, 1))
                .unwrap(),
            4
        );
    }
    let (records, report) = all(&dir.0);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(records.len(), 4);
}

#[test]
fn records_removed_from_the_end_show_against_a_head_kept_elsewhere() {
    let dir = Dir::new("head");
    {
        let log = AuditLog::open(&dir.0, DEFAULT_SEGMENT_BYTES).unwrap();
        for id in ["a", "b", "c"] {
            log.append(record(id, None, 1)).unwrap();
        }
    }
    let (_, report) = all(&dir.0);
    let head = report.head.clone().unwrap();
    assert_eq!(head.seq, 3);
    let text = format!("{}:{}", head.seq, head.sha256);
    assert_eq!(Head::parse(&text).unwrap(), head);
    assert!(Head::parse("3:abc").is_err());
    assert!(Head::parse("x").is_err());
    let kept = scan_expecting(&dir.0, Some(&head), |_| {}).unwrap();
    assert!(kept.problems.is_empty(), "{:?}", kept.problems);
    // Drop the last record: the chain alone still checks, the head does not.
    let segment = segments(&dir.0).unwrap().pop().unwrap();
    let body = std::fs::read_to_string(&segment).unwrap();
    let cut: Vec<&str> = body.lines().take(2).collect();
    std::fs::write(&segment, cut.join("\n") + "\n").unwrap();
    let (_, plain) = all(&dir.0);
    assert!(plain.problems.is_empty(), "the chain cannot see it");
    let checked = scan_expecting(&dir.0, Some(&head), |_| {}).unwrap();
    assert!(
        checked.problems[0].contains("records were removed from its end"),
        "{:?}",
        checked.problems
    );
}
