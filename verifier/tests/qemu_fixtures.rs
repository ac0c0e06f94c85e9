//! The evidence a real Linux guest produced (`testdata/qemu/`, written by
//! `scripts/e2e-qemu.sh`): the kernel's IMA log, OVMF's event log and a quote from the vTPM
//! device, verified offline with the real binary, and each tampered variant rejected at its
//! step. A laptop without QEMU still checks real kernel output this way.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ratls::ima::Log;
use ratls::snapshot::Snapshot;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/qemu")
}

fn file(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// `evidence verify --json` on the fixtures, with `replace` swapping one file for another.
fn verify(replace: &[(&str, &Path)]) -> (Output, Value) {
    let pick = |name: &str| {
        replace
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| file(name), |(_, p)| p.to_path_buf())
    };
    let nonce = std::fs::read_to_string(pick("tpm-nonce.hex")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cosmian_vm"))
        .args(["--json", "evidence", "verify"])
        .args(["--tpm-quote", &arg(&pick("tpm-quote.bin"))])
        .args(["--tpm-signature", &arg(&pick("tpm-signature.bin"))])
        .args(["--ak-public", &arg(&pick("ak-public.bin"))])
        .args(["--pcrs", &arg(&pick("pcrs.json"))])
        .args(["--nonce", nonce.trim()])
        .args(["--ima-log", &arg(&pick("ima-log.bin"))])
        .args(["--event-log", &arg(&pick("event-log.bin"))])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn steps(v: &Value, ok: bool) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == ok)
        .map(|c| c["step"].as_str().unwrap().to_owned())
        .collect()
}

fn tampered(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(file(name)).unwrap();
    edit(&mut bytes);
    let dir = std::env::temp_dir().join(format!("qemu_fixtures_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", bytes.len()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_real_guest_evidence_verifies_offline() {
    let (out, v) = verify(&[]);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let passed = steps(&v, true);
    for step in [
        "tpm.signature",
        "tpm.pcr_digest",
        "boot.eventlog",
        "ima.template_hash",
        "ima.violations",
        "ima.boot_aggregate",
        "ima.coverage",
        "ima.replay",
        "freshness",
    ] {
        assert!(
            passed.iter().any(|s| s == step),
            "{step} did not pass: {v:#}"
        );
    }
}

#[test]
fn the_sha256_replay_of_the_kernel_log_is_the_quoted_pcr_10() {
    let pcrs: Value = serde_json::from_slice(&std::fs::read(file("pcrs.json")).unwrap()).unwrap();
    let quoted = pcrs["sha256"]["10"].as_str().unwrap();
    let log = std::fs::read(file("ima-log.bin")).unwrap();
    let claims = ratls::ima::inspect(&log).unwrap();
    assert_eq!(claims.pcr10["sha256"], quoted);
    // The first entry is the kernel's boot_aggregate: sha256 over the quoted PCRs 0-9.
    let mut concat = Vec::new();
    for i in 0..10 {
        concat.extend(
            hex::decode(
                pcrs["sha256"][i.to_string()]
                    .as_str()
                    .unwrap(),
            )
            .unwrap(),
        );
    }
    let expected = hex::encode(ratls::digest::sha256(&concat));
    assert_eq!(claims.boot_aggregate.as_deref(), Some(expected.as_str()));
}

#[test]
fn the_snapshot_of_that_boot_approves_its_log_and_its_boot_events() {
    let snapshot = Snapshot::from_json(&std::fs::read(file("snapshot.json")).unwrap()).unwrap();
    let log = Log::parse(&std::fs::read(file("ima-log.bin")).unwrap()).unwrap();
    let checks = snapshot.check_ima(&log);
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    let events = std::fs::read(file("event-log.bin")).unwrap();
    let check = snapshot
        .check_boot_events(Some(&events))
        .expect("the snapshot recorded boot events");
    assert!(check.ok, "{check:?}");
    // A changed kernel command line changes PCR 9's LoadOptions event: named.
    let mut other = events.clone();
    let tag = b"LOADED_IMAGE::LoadOptions";
    let at = other
        .windows(tag.len())
        .position(|w| w == tag)
        .expect("the EFI stub's LoadOptions tag");
    // TCG_PCR_EVENT2: ... digests, eventSize (4), then the tagged event: id (4), size (4),
    // the tag text. The byte before those 12 is the last byte of the event's sha256 digest.
    let digest_end = at - 12;
    other[digest_end - 1] ^= 0x01;
    let check = snapshot
        .check_boot_events(Some(&other))
        .unwrap();
    assert!(!check.ok);
    let text = format!("{check:?}");
    assert!(
        text.contains("PCR 9") && text.contains("LOADED_IMAGE::LoadOptions"),
        "{text}"
    );
}

#[test]
fn a_tampered_kernel_log_quote_or_event_log_is_rejected_at_its_step() {
    // One file digest in the IMA log: the template hash no longer matches.
    let ima = tampered("ima-log.bin", |b| {
        let at = b.len() - 40;
        b[at] ^= 0x01;
    });
    let (out, v) = verify(&[("ima-log.bin", &ima)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        steps(&v, false)
            .iter()
            .any(|s| s.starts_with("ima.")),
        "{v:#}"
    );

    // A PCR the quote covers: its digest no longer matches.
    let pcrs = tampered("pcrs.json", |b| {
        let text = String::from_utf8(b.clone()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let nine = v["sha256"]["9"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = format!(
            "{}{}",
            if nine.starts_with('0') { "1" } else { "0" },
            &nine[1..]
        );
        *b = text
            .replace(&nine, &flipped)
            .into_bytes();
    });
    let (out, v) = verify(&[("pcrs.json", &pcrs)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        steps(&v, false).contains(&"tpm.pcr_digest".to_owned()),
        "{v:#}"
    );

    // The event log: one byte of the last event's digest.
    let events = tampered("event-log.bin", |b| {
        let at = b.len() - 60;
        b[at] ^= 0x01;
    });
    let (out, v) = verify(&[("event-log.bin", &events)]);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert!(
        steps(&v, false)
            .iter()
            .any(|s| s.starts_with("boot.eventlog") || s.starts_with("eventlog")),
        "{v:#}"
    );

    // Another session's nonce.
    let nonce = tampered("tpm-nonce.hex", |b| {
        b[0] = if b[0] == b'0' { b'1' } else { b'0' };
    });
    let (out, v) = verify(&[("tpm-nonce.hex", &nonce)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        steps(&v, false).contains(&"tpm.qualifying_data".to_owned()),
        "{v:#}"
    );
}

#[test]
fn the_vtpm_ek_certificate_chains_to_its_local_ca() {
    use ratls::pki::Cert;
    let ek = Cert::from_der_or_pem(&std::fs::read(file("ek-cert.der")).unwrap()).unwrap();
    let issuer = Cert::from_der_or_pem(&std::fs::read(file("ek-issuer-ca.pem")).unwrap()).unwrap();
    let root = Cert::from_der_or_pem(&std::fs::read(file("ek-root-ca.pem")).unwrap()).unwrap();
    // The signatures of the chain (TPM EK certificates carry a critical, TCG directory-name
    // subjectAltName that the RA-TLS chain checks do not handle; EK chains are not part of the
    // verification path yet).
    ek.verify_signed_by(&issuer).unwrap();
    issuer.verify_signed_by(&root).unwrap();
    root.verify_signed_by(&root).unwrap();
    assert!(ek.verify_signed_by(&root).is_err());
    // Valid a day into the EK certificate's validity (the fixtures do not expire with time).
    let (not_before, _) = ek.validity();
    let at = ratls::time::UnixTime::from_secs(not_before.as_secs() + 86_400);
    for cert in [&ek, &issuer, &root] {
        cert.check_validity(at).unwrap();
    }
}
