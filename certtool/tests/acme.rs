//! `cosmian_certtool acme|renew` against a real ACME server on loopback: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS (every name resolves to 127.0.0.1), real HTTP-01 validation
//! of the tool's own responder and real DNS-01 validation of records set through
//! challtestsrv's management API. Outside CI the tests skip (loudly) when pebble is missing;
//! under CI=true they fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod pebble;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use pebble::*;

#[test]
fn http01_order_then_renewals_reuse_the_account() {
    let Some(p) = Pebble::start("http01") else {
        return;
    };
    // A directory the tool creates (mode 0700).
    let out = scratch("http01-out").join("tls");
    let out_s = out.display().to_string();
    let listen = format!("127.0.0.1:{}", p.http_port);
    let o = run(&acme_args(
        &p,
        &out_s,
        "vm.example.com",
        &["--http-01", &listen],
    ));
    assert_eq!(o.status.code(), Some(0));
    let root = p.issuing_root();
    let first = check_issued(&out, "vm.example.com", &root);
    let account = std::fs::read(out.join("account.json")).unwrap();
    assert_eq!(
        std::fs::metadata(out.join("account.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let dir_mode = std::fs::metadata(&out)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        dir_mode & 0o077,
        0,
        "output directory is private: {dir_mode:o}"
    );
    let key1 = std::fs::read(out.join("key.pem")).unwrap();

    // Pebble's certificates live for years: `renew` has nothing to do.
    let o = certtool(&["renew", "--output", &out_s]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to do"));
    assert_eq!(
        std::fs::read(out.join("key.pem")).unwrap(),
        key1,
        "untouched"
    );

    // --force: a new certificate and key, the same account.
    let o = certtool(&["renew", "--output", &out_s, "--force"]);
    assert_eq!(o.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("from "),
        "the saved account is reused: {stderr}"
    );
    assert!(!stderr.contains("created ACME account"), "{stderr}");
    let second = check_issued(&out, "vm.example.com", &root);
    assert_ne!(first, second, "a new certificate");
    assert_ne!(
        std::fs::read(out.join("key.pem")).unwrap(),
        key1,
        "a new key"
    );
    assert_eq!(std::fs::read(out.join("account.json")).unwrap(), account);
}

#[test]
fn failed_validation_writes_no_key_or_certificate() {
    let Some(p) = Pebble::start("fail") else {
        return;
    };
    let out = scratch("fail-out");
    let out_s = out.display().to_string();
    // The tool answers on a port pebble does not check: the VA's connection is refused.
    let wrong = format!("127.0.0.1:{}", free_port());
    let o = run(&acme_args(
        &p,
        &out_s,
        "wrong.example.com",
        &["--http-01", &wrong],
    ));
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("failed validation")
            && stderr.contains("http-01 challenge for wrong.example.com"),
        "{stderr}"
    );
    assert!(
        stderr.contains("urn:ietf:params:acme:error:"),
        "the ACME error: {stderr}"
    );
    for f in ["key.pem", "cert.pem", "settings.json"] {
        assert!(!out.join(f).exists(), "{f} must not be written");
    }
    // No stray temporary files either.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, vec!["account.json".to_owned()], "{names:?}");
}

#[test]
fn dns01_through_the_hook() {
    let Some(p) = Pebble::start("dns-hook") else {
        return;
    };
    let out = scratch("dns-hook-out");
    let out_s = out.display().to_string();
    // The hook sets the record through challtestsrv's management API (bash's /dev/tcp: no curl).
    let hook = format!(
        r#"bash -c 'body="{{\"host\":\"$CERTTOOL_DNS_NAME\",\"value\":\"$CERTTOOL_DNS_VALUE\"}}"; exec 3<>/dev/tcp/127.0.0.1/{port}; printf "POST /set-txt HTTP/1.0\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" "${{#body}}" "$body" >&3; head -1 <&3 | grep -q " 200"'"#,
        port = p.chall_mgmt_port
    );
    let o = run(&acme_args(
        &p,
        &out_s,
        "dns.example.com",
        &["--dns-01-hook", &hook],
    ));
    assert_eq!(o.status.code(), Some(0));
    check_issued(&out, "dns.example.com", &p.issuing_root());
}

#[test]
fn dns01_manual_reads_the_record_and_waits_for_enter() {
    let Some(p) = Pebble::start("dns-manual") else {
        return;
    };
    let out = scratch("dns-manual-out");
    let out_s = out.display().to_string();
    let args = acme_args(&p, &out_s, "manual.example.com", &["--dns-01-manual"]);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let record = loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "no TXT record printed"
        );
        if line.contains(" IN TXT ") {
            break line;
        }
    };
    let fields: Vec<&str> = record.split_whitespace().collect();
    assert_eq!(fields[0], "_acme-challenge.manual.example.com.");
    let value = fields.last().unwrap().trim_matches('"');
    chall_post(
        p.chall_mgmt_port,
        "/set-txt",
        &serde_json::json!({"host": fields[0], "value": value}).to_string(),
    );
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"\n")
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "{rest}\n{err}");
    check_issued(&out, "manual.example.com", &p.issuing_root());
}

#[test]
fn bad_input_is_refused_before_any_order() {
    let out = scratch("bad");
    let out_s = out.display().to_string();
    let o = certtool(&[
        "acme",
        "--domain",
        "bad domain",
        "--email",
        "a@b.c",
        "--output",
        &out_s,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a DNS name"));
    let o = certtool(&["renew", "--output", &out_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("settings.json"));
    assert!(
        std::fs::read_dir(&out)
            .unwrap()
            .next()
            .is_none(),
        "nothing written"
    );
}
