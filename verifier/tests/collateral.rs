//! `cosmian_vm evidence verify` fetching what the evidence lacks: a TDX quote with nothing but
//! `--pcs-url` (then from the cache, then `--offline`), an SEV-SNP report with nothing but
//! `--kds-url`, against a local KDS/PCS serving the real captured responses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ratls_test::collateral_server::{milan_vcek_path, serve_milan, serve_tdx, Server, TCB_PATH};
use ratls_test::real_testdata;
use serde_json::Value;

fn cosmian_vm(server: &Server, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmian_vm"))
        .env_remove("COSMIAN_VM_OFFLINE")
        .args([
            "--json",
            "--kds-url",
            &server.url(),
            "--pcs-url",
            &server.url(),
        ])
        .args([
            "--intel-root-crl-url",
            &format!("{}/IntelSGXRootCA.der", server.url()),
        ])
        .arg("--collateral-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("run cosmian_vm")
}

fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cosmian-vm-collateral-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn verdict(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {v}"))
}

#[test]
fn a_tdx_quote_verifies_with_only_the_pcs_url() {
    let Some(dir) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let server = Server::start();
    serve_tdx(&server, &dir);
    let cache = cache_dir("tdx");
    let quote = dir.join("tdx_quote.bin");
    let args = [
        "evidence",
        "verify",
        "--tdx-quote",
        quote.to_str().unwrap(),
        "--at",
        "2025-07-01T00:00:00Z",
        "--no-freshness",
    ];
    let out = cosmian_vm(&server, &cache, &args);
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(step(&v, "collateral.tdx")["ok"], true);
    assert_eq!(step(&v, "tee.collateral")["ok"], true, "{v}");
    let fetched = server.total_hits();
    assert!(fetched >= 4);

    // Again: the cache answers, the server sees nothing.
    let out = cosmian_vm(&server, &cache, &args);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.total_hits(), fetched);
    assert_eq!(server.hits(TCB_PATH), 1);

    // Offline with an empty cache: fails at collateral.tdx, exit 1, nothing asked.
    let empty = cache_dir("tdx-empty");
    let mut offline = args.to_vec();
    offline.push("--offline");
    let out = cosmian_vm(&server, &empty, &offline);
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(1), "{v}");
    let check = step(&v, "collateral.tdx");
    assert_eq!(check["ok"], false);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("offline"),
        "{check}"
    );
    assert_eq!(server.total_hits(), fetched);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn an_snp_report_gets_its_vcek_with_only_the_kds_url() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let server = Server::start();
    let report = serve_milan(&server, &dir);
    let path = milan_vcek_path(&report);
    let cache = cache_dir("snp");
    let out = cosmian_vm(
        &server,
        &cache,
        &[
            "evidence",
            "verify",
            "--snp-report",
            dir.join("report_milan.hex")
                .to_str()
                .unwrap(),
            "--no-freshness",
        ],
    );
    let v = verdict(&out);
    assert_eq!(step(&v, "collateral.vcek")["ok"], true, "{v}");
    assert_eq!(step(&v, "tee.signature")["ok"], true, "{v}");
    assert_eq!(step(&v, "tee.chain.vcek")["ok"], true, "{v}");
    assert_eq!(server.hits(&path), 1);
    std::fs::remove_dir_all(&cache).unwrap();
}
