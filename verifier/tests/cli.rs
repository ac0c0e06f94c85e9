//! Black-box tests of `cosmian_vm evidence`: the real binary on real hardware evidence, checking
//! exit codes (0 trusted, 1 rejected, 2 usage), the JSON shape others script against, and the
//! claim names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ratls_test::real_testdata;
use serde_json::Value;

/// The CLI, offline (these tests give every file; nothing is fetched from AMD or Intel).
fn cosmian_vm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmian_vm"))
        .env("COSMIAN_VM_OFFLINE", "true")
        .env(
            "COSMIAN_VM_COLLATERAL_DIR",
            std::env::temp_dir().join("cosmian-vm-cli-tests-empty-cache"),
        )
        .args(args)
        .output()
        .expect("run cosmian_vm")
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The steps that failed, in order.
fn failed_steps(v: &Value) -> Vec<&str> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["step"].as_str().unwrap())
        .collect()
}

fn tmp(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cosmian_vm_cli_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Every verdict object has exactly the documented top-level keys and check fields.
fn assert_shape(v: &Value, platform: &str) {
    let keys: Vec<&str> = v
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["verdict", "platform", "simulated", "checks", "claims"]
    );
    assert_eq!(v["platform"], platform);
    assert_eq!(v["simulated"], false);
    for check in v["checks"].as_array().unwrap() {
        for field in ["step", "ok", "expected", "presented", "detail"] {
            assert!(check.get(field).is_some(), "check lacks {field}: {check}");
        }
    }
}

#[test]
fn snp_trusted_then_rejected_after_expiry() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    // The 2023 sample's TCB (3/0/8/115) is below AMD's default floor for Milan: accepted here
    // through an explicit policy minimum.
    let milan_2023 = tmp(
        "milan-2023.json",
        br#"{"snp": {"min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}}"#,
    );
    let args = [
        "evidence",
        "verify",
        "--no-freshness",
        "--json",
        "--at",
        "2026-01-01T00:00:00Z",
        "--snp-report",
        &p(&dir, "report_milan.hex"),
        "--vcek",
        &p(&dir, "vcek_milan.der"),
        "--cert-chain",
        &p(&dir, "cert_chain_milan"),
        "--policy",
        milan_2023.to_str().unwrap(),
    ];
    let out = cosmian_vm(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "sev-snp");
    assert_eq!(v["verdict"], "trusted");
    let c = &v["claims"];
    assert_eq!(
        c["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(c["policy"], "0x30000");
    assert_eq!(c["debug_allowed"], false);
    assert_eq!(c["vmpl"], 0);
    assert_eq!(c["signing_key"], "vcek");
    assert_eq!(c["reported_tcb"]["bootloader"], 3);
    assert_eq!(c["reported_tcb"]["tee"], 0);
    assert_eq!(c["reported_tcb"]["snp"], 8);
    assert_eq!(c["reported_tcb"]["microcode"], 115);
    assert!(c["chip_id"]
        .as_str()
        .unwrap()
        .starts_with("d49554ec"));
    assert!(c["report_data"]
        .as_str()
        .unwrap()
        .starts_with("d447b55d"));

    // Without it, the default floor rejects the sample at tee.tcb and names its source.
    let out = cosmian_vm(&args[..args.len() - 2]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(failed_steps(&v), ["tee.tcb"]);
    let tcb = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "tee.tcb")
        .unwrap();
    assert!(tcb["expected"]
        .as_str()
        .unwrap()
        .contains("AMD floor for Milan from AMD-SB-3019"));

    let mut late = args;
    late[5] = "2031-01-01T00:00:00Z";
    let out = cosmian_vm(&late);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["verdict"], "rejected");
    assert_eq!(failed_steps(&v)[0], "tee.chain.validity");

    // Human output names the step too.
    let out = cosmian_vm(
        &late[..3]
            .iter()
            .chain(&late[4..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("REJECTED"), "{text}");
    assert!(text.contains("rejected at tee.chain.validity"), "{text}");
}

#[test]
fn snp_policy_file_and_malformed_report() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(dir.join("evidence-genoa.json")).unwrap()).unwrap();
    let vcek = tmp(
        "vcek-genoa.pem",
        evidence["vcek"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let policy = tmp("policy.json", br#"{"snp": {"measurement": "00"}}"#);
    let base = [
        "evidence",
        "verify",
        "--no-freshness",
        "--json",
        "--at",
        "2026-01-01T00:00:00Z",
        "--snp-report",
        &p(&dir, "derived-snp-report.bin"),
        "--vcek",
        vcek.to_str().unwrap(),
    ];
    let out = cosmian_vm(&base);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["claims"]["policy"], "0x3001f");

    let mut with_policy = base.to_vec();
    with_policy.extend(["--policy", policy.to_str().unwrap()]);
    let out = cosmian_vm(&with_policy);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let m = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "tee.policy.measurement")
        .unwrap();
    assert_eq!(m["ok"], false);
    assert!(m["presented"]
        .as_str()
        .unwrap()
        .starts_with("f57dc09a"));

    // A typo in the policy is a usage error, not a silent pass.
    let typo = tmp("typo.json", br#"{"snp": {"allow_debugg": true}}"#);
    let mut with_typo = base.to_vec();
    with_typo.extend(["--policy", typo.to_str().unwrap()]);
    let out = cosmian_vm(&with_typo);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_debugg"));

    // Malformed evidence is a rejection (exit 1) at tee.parse.
    let short = tmp("short.bin", &[2, 0, 0, 0, 1, 2, 3]);
    let mut malformed = base.to_vec();
    malformed[7] = short.to_str().unwrap();
    let out = cosmian_vm(&malformed);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["checks"][0]["step"], "tee.parse");
}

#[test]
fn tdx_v4_trusted_and_v5_rejected_at_tcb() {
    let Some(v4) = real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--no-freshness",
        "--json",
        "--at",
        "2025-07-01T00:00:00Z",
        "--tdx-quote",
        &p(&v4, "tdx_quote.bin"),
        "--collateral",
        &p(&v4, "collateral.json"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "tdx");
    let c = &v["claims"];
    assert_eq!(
        c["mr_td"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(c["rtmr3"], "0".repeat(96));
    assert_eq!(c["td_attributes"], "0x10000000");
    assert_eq!(c["debug"], false);
    assert_eq!(c["tcb_status"], "UpToDate");
    assert_eq!(c["advisory_ids"], serde_json::json!([]));
    for key in ["rtmr0", "rtmr1", "rtmr2", "report_data"] {
        assert!(c[key].is_string(), "{key}");
    }

    let Some(v5) = real_testdata("tdx/v5-td15-phala-collateral") else {
        return;
    };
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--no-freshness",
        "--json",
        "--at",
        "2026-03-01T00:00:00Z",
        "--tdx-quote",
        &p(&v5, "tdx_quote_v5.bin"),
        "--collateral",
        &p(&v5, "collateral.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let failed = failed_steps(&v);
    assert_eq!(failed, ["tee.tcb"]);
    assert_eq!(v["claims"]["body_type"], "td1.5");
}

#[test]
fn tpm_quote_verifies_with_nonce_and_pcrs() {
    let Some(dir) = real_testdata("tpm/gce-shielded-vm-go-tpm-tools") else {
        return;
    };
    let quotes: Value =
        serde_json::from_slice(&std::fs::read(dir.join("derived-quotes.json")).unwrap()).unwrap();
    let q = quotes["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["pcr_bank"] == "sha256")
        .unwrap();
    let attest = tmp(
        "attest.hex",
        q["tpms_attest_hex"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let sig = tmp(
        "sig.bin",
        &hex::decode(
            q["tpmt_signature_hex"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    );
    let pcrs = tmp(
        "pcrs.json",
        serde_json::json!({ "sha256": q["pcrs"] })
            .to_string()
            .as_bytes(),
    );
    let run = |nonce: &str| {
        cosmian_vm(&[
            "evidence",
            "verify",
            "--json",
            "--tpm-quote",
            attest.to_str().unwrap(),
            "--tpm-signature",
            sig.to_str().unwrap(),
            "--ak-public",
            &p(&dir, "derived-ak_pub.tpmt"),
            "--nonce",
            nonce,
            "--pcrs",
            pcrs.to_str().unwrap(),
        ])
    };
    let out = run("9009");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "tpm");
    assert_eq!(v["claims"]["reset_count"], 10);
    let out = run("9010");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(failed_steps(&v).contains(&"tpm.qualifying_data"));
}

#[test]
fn inspect_detects_each_kind() {
    let Some(root) = real_testdata("") else {
        return;
    };
    let cases = [
        ("sev-snp/milan-vcek-virtee/report_milan.hex", "sev-snp"),
        (
            "sev-snp/genoa-azure-vtpm-trustee/derived-snp-report.bin",
            "sev-snp",
        ),
        (
            "sev-snp/genoa-azure-vtpm-trustee/derived-tpms_attest.bin",
            "tpm",
        ),
        (
            "sev-snp/genoa-azure-vtpm-trustee/derived-hcl-report.bin",
            "azure-snp",
        ),
        ("tdx/v4-emr-phala-collateral/tdx_quote.bin", "tdx"),
        ("tdx/v5-td15-phala-collateral/tdx_quote_v5.bin", "tdx"),
    ];
    for (file, kind) in cases {
        let out = cosmian_vm(&["evidence", "inspect", "--json", &p(&root, file)]);
        assert_eq!(out.status.code(), Some(0), "{file}");
        let v = json(&out);
        assert_eq!(v["kind"], kind, "{file}");
        assert!(v["claims"].is_object());
    }
    // Not evidence: exit 1, with what each parser said.
    let junk = tmp("junk.txt", b"hello, world\n");
    let out = cosmian_vm(&["evidence", "inspect", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a recognised evidence file"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["evidence", "verify"],
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--snp-report",
            "/nonexistent/report.bin",
        ],
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--tdx-quote",
            "q.bin",
        ],
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--snp-report",
            "r",
            "--tdx-quote",
            "q",
            "--collateral",
            "c",
        ],
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--snp-report",
            "r",
            "--at",
            "yesterday",
        ],
        vec!["evidence", "inspect", "/nonexistent"],
        // The Azure AK comes from the HCL report.
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--azure-hcl",
            "h",
            "--tpm-quote",
            "q",
            "--tpm-signature",
            "s",
            "--ak-public",
            "a",
        ],
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--azure-hcl",
            "h",
            "--snp-report",
            "r",
        ],
        // A TDX quote and a TPM quote together only describe an Azure TDX VM.
        vec![
            "evidence",
            "verify",
            "--no-freshness",
            "--tdx-quote",
            "q",
            "--collateral",
            "c",
            "--tpm-quote",
            "t",
            "--tpm-signature",
            "s",
        ],
    ] {
        let out = cosmian_vm(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn ima_log_replays_to_the_quoted_pcr10() {
    let Some(dir) = real_testdata("ima/ibmtss-vtpm-binary") else {
        return;
    };
    let sha256_pcr10 = "7fac48c81837d6d29046008aef0cdad8c2745cc98c3340cbba9bfdf39b4124b8";
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--json",
        "--ima-log",
        &p(&dir, "sha384.log"),
        "--pcr10",
        sha256_pcr10,
        "--bank",
        "sha256",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "ima");
    let c = &v["claims"];
    assert_eq!(c["entries"], 362);
    assert_eq!(c["violations"], 0);
    assert_eq!(c["templates"], serde_json::json!(["ima-sig"]));
    assert_eq!(c["pcr10"]["sha256"], sha256_pcr10);
    assert_eq!(
        c["pcr10"]["sha1"],
        "9be6bac02bf18d09d17e726c2df00bca4e8831ea"
    );
    assert_eq!(c["quote_prefix"], 362);

    // Wrong value: rejected at ima.replay. Bank implied by length (sha1).
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--json",
        "--ima-log",
        &p(&dir, "sha1.log"),
        "--pcr10",
        "9be6bac02bf18d09d17e726c2df00bca4e8831eb",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let failed = failed_steps(&v);
    assert_eq!(failed, ["ima.replay"]);

    // A value whose length contradicts --bank is a usage error.
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--ima-log",
        &p(&dir, "sha1.log"),
        "--pcr10",
        sha256_pcr10,
        "--bank",
        "sha1",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let out = cosmian_vm(&["evidence", "inspect", "--json", &p(&dir, "sha512.log")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["kind"], "ima");
}

#[test]
fn azure_hcl_report_verifies_end_to_end() {
    let Some(dir) = real_testdata("sev-snp/genoa-azure-vtpm-trustee") else {
        return;
    };
    // The inputs as evidence-genoa.json gives them (byte arrays), written out as files.
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(dir.join("evidence-genoa.json")).unwrap()).unwrap();
    let bytes = |v: &Value| -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
            .collect()
    };
    let hcl = tmp("azure-hcl.bin", &bytes(&evidence["report"]));
    let vcek = tmp(
        "azure-vcek.pem",
        evidence["vcek"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let attest = tmp("azure-attest.bin", &bytes(&evidence["quote"]["message"]));
    let signature = tmp("azure-sig.bin", &bytes(&evidence["quote"]["signature"]));
    let pcrs: serde_json::Map<String, Value> = evidence["quote"]["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), Value::String(hex::encode(bytes(v)))))
        .collect();
    let pcrs = tmp(
        "azure-pcrs.json",
        serde_json::json!({ "sha256": pcrs })
            .to_string()
            .as_bytes(),
    );
    let nonce = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";
    let chain = p(&dir, "ask_ark_genoa.pem");
    let run = |nonce: &str| {
        cosmian_vm(&[
            "evidence",
            "verify",
            "--json",
            "--at",
            "2026-01-01T00:00:00Z",
            "--azure-hcl",
            hcl.to_str().unwrap(),
            "--vcek",
            vcek.to_str().unwrap(),
            "--cert-chain",
            &chain,
            "--tpm-quote",
            attest.to_str().unwrap(),
            "--tpm-signature",
            signature.to_str().unwrap(),
            "--pcrs",
            pcrs.to_str().unwrap(),
            "--nonce",
            nonce,
        ])
    };
    let out = run(nonce);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "azure-snp");
    assert_eq!(v["verdict"], "trusted");
    let steps: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    for step in [
        "azure.parse",
        "tee.signature",
        "azure.runtime_data",
        "azure.ak",
        "tpm.signature",
        "tpm.qualifying_data",
        "tpm.pcr_digest",
    ] {
        assert!(steps.contains(&step), "{step}");
    }
    let c = &v["claims"];
    assert_eq!(c["report_type"], "snp");
    assert_eq!(
        c["runtime_data"]["vm_unique_id"],
        "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC"
    );
    assert_eq!(c["runtime_data"]["secure_boot"], true);
    assert_eq!(c["tee"]["vmpl"], 0);
    assert_eq!(c["tpm"]["extra_data"], nonce);

    // Another nonce: rejected at the quote's qualifying data, and nothing else.
    let out = run(&format!("ff{}", &nonce[2..]));
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let failed = failed_steps(&v);
    assert_eq!(failed, ["tpm.qualifying_data"]);

    // The HCL report alone (no quote): trusted for the report and its AK; human output.
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--no-freshness",
        "--at",
        "2026-01-01T00:00:00Z",
        "--azure-hcl",
        hcl.to_str().unwrap(),
        "--vcek",
        vcek.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("azure-snp evidence: TRUSTED"), "{text}");
    assert!(text.contains("ok   azure.ak"), "{text}");

    // One flipped runtime-data byte.
    let mut changed = bytes(&evidence["report"]);
    changed[0x4D4 + 10] ^= 1;
    let changed = tmp("azure-hcl-changed.bin", &changed);
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--no-freshness",
        "--json",
        "--at",
        "2026-01-01T00:00:00Z",
        "--azure-hcl",
        changed.to_str().unwrap(),
        "--vcek",
        vcek.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let first = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ok"] == false)
        .unwrap();
    assert_eq!(first["step"], "azure.runtime_data");
}

#[test]
fn bundle_from_swtpm_and_sim_tee_verifies_only_with_the_sim_root() {
    use std::sync::Arc;

    use ratls::attest::sim::{SimCa, SimTee};
    use ratls::attest::{self, Sources, DEFAULT_PCRS};
    use ratls::binding::{spki_sha256, BindingClaims, Role};
    use ratls::digest::HashAlg;
    use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm};

    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "cli").unwrap();
    let mut ima = ImaSimulator::new(swtpm.state_dir().join("ima.log"), &tpm).unwrap();
    ima.measure_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .as_path(),
    )
    .unwrap();
    let ca = Arc::new(SimCa::generate().unwrap());
    let tee = SimTee::new(ca.clone()).unwrap();
    let spki = b"DER SubjectPublicKeyInfo stand-in".to_vec();
    let challenge = [0x11u8; 32];
    let b = attest::produce(
        &Sources {
            tee: Some(&tee),
            tpm: Some(&tpm),
            ima: Some(&ima),
            event_log: None,
            banks: &[HashAlg::Sha256],
            pcrs: &DEFAULT_PCRS,
            ima_inline: true,
        },
        BindingClaims {
            role: Role::agent(),
            spki_sha256: spki_sha256(&spki),
            ak_sha256: None,
            issued_at: ratls::UnixTime::now().as_secs(),
            challenge: Some(challenge),
            exporter: None,
        },
    )
    .unwrap();
    let bundle_file = tmp("bundle.cmw", &b.to_cmw());
    let spki_file = tmp("spki.der", &spki);
    let ark_file = tmp("sim-ark.der", ca.ark_der());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "evidence",
            "verify",
            "--json",
            "--bundle",
            bundle_file.to_str().unwrap(),
            "--spki",
            spki_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cosmian_vm(&args)
    };
    let challenge_hex = hex::encode(challenge);
    let sim = ["--insecure-sim-root", ark_file.to_str().unwrap()];

    let out = run(&[&["--challenge", challenge_hex.as_str()][..], &sim[..]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["verdict"], "trusted");
    assert_eq!(v["simulated"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));

    // Human output says SIMULATED in capitals.
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--bundle",
        bundle_file.to_str().unwrap(),
        "--spki",
        spki_file.to_str().unwrap(),
        "--challenge",
        &challenge_hex,
        "--insecure-sim-root",
        ark_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SIMULATED"));

    // Without the sim root: rejected at tee.chain.ark.
    let out = run(&["--challenge", &challenge_hex]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(failed_steps(&v).contains(&"tee.chain.ark"));

    // Without the challenge it was made for: rejected at binding.challenge.
    let out = run(&sim);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(failed_steps(&v).contains(&"binding.challenge"));

    // --bundle without --spki is a usage error.
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--bundle",
        bundle_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn raw_evidence_without_a_nonce_is_not_fresh_unless_waived() {
    let Some(dir) = real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let milan_2023 = tmp(
        "milan-2023-fresh.json",
        br#"{"snp": {"min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}}"#,
    );
    let base = [
        "evidence",
        "verify",
        "--json",
        "--at",
        "2026-01-01T00:00:00Z",
        "--snp-report",
        &p(&dir, "report_milan.hex"),
        "--vcek",
        &p(&dir, "vcek_milan.der"),
        "--cert-chain",
        &p(&dir, "cert_chain_milan"),
        "--policy",
        milan_2023.to_str().unwrap(),
    ];
    // No --report-data: genuine, but not fresh: rejected at `freshness`.
    let out = cosmian_vm(&base);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(failed_steps(&v), ["freshness"]);
    // Waived out loud: trusted, and the step says WAIVED.
    let mut waived = base.to_vec();
    waived.push("--no-freshness");
    let out = cosmian_vm(&waived);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let step = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "freshness")
        .unwrap()
        .clone();
    assert_eq!(step["presented"], "WAIVED (--no-freshness)");
    // The report data the verifier chose: fresh when it matches, rejected when not.
    let report_data = v["claims"]["report_data"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut chosen = base.to_vec();
    chosen.extend(["--report-data", &report_data]);
    let out = cosmian_vm(&chosen);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let other = "00".repeat(64);
    let mut wrong = base.to_vec();
    wrong.extend(["--report-data", &other]);
    let out = cosmian_vm(&wrong);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(failed_steps(&json(&out)), ["freshness"]);
}

#[test]
fn tpm_quote_anchors_the_event_log_and_the_ima_log() {
    use ratls::digest::HashAlg;
    use ratls::ima::{Log, Template};

    let Some(dir) = real_testdata("tpm/gce-shielded-vm-go-tpm-tools") else {
        return;
    };
    let quotes: Value =
        serde_json::from_slice(&std::fs::read(dir.join("derived-quotes.json")).unwrap()).unwrap();
    let q = quotes["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["pcr_bank"] == "sha256")
        .unwrap();
    let attest = tmp(
        "anchor-attest.hex",
        q["tpms_attest_hex"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let sig = tmp(
        "anchor-sig.bin",
        &hex::decode(
            q["tpmt_signature_hex"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    );
    let pcrs = tmp(
        "anchor-pcrs.json",
        serde_json::json!({ "sha256": q["pcrs"] })
            .to_string()
            .as_bytes(),
    );
    // The README's one-entry IMA log: boot_aggregate = SHA-256(sha256 PCR 0..9), which is all
    // PCR 10 holds (no IMA policy was loaded): `allow_empty` is needed to accept it.
    let ima = |aggregate: &[u8], name: &str| {
        let mut log = Log::new(HashAlg::Sha1);
        log.push(
            10,
            Template::ImaNg,
            Some("sha256"),
            aggregate,
            b"boot_aggregate",
            &[],
        )
        .unwrap();
        tmp(name, &log.to_binary())
    };
    let aggregate =
        hex::decode("b804fd412b3bafcecb5b7a7ec094706f660d12c0496d0e991d2cdbbcc2505aef").unwrap();
    let good_ima = ima(&aggregate, "anchor-ima.bin");
    let forged_ima = ima(&[0x42; 32], "anchor-ima-forged.bin");
    let allow_empty = tmp("anchor-policy.json", br#"{"ima": {"allow_empty": true}}"#);
    let event_log = p(&dir, "derived-eventlog.bin");
    let mut flipped = std::fs::read(&event_log).unwrap();
    // The last event (PCR 5, "Exit Boot Services Returned with Success"): flip its sha256.
    let digest =
        hex::decode("b54f7542cbd872a81a9d9dea839b2b8d747c7ebd5ea6615c40f42f44a6dbeba0").unwrap();
    let at = flipped
        .windows(32)
        .position(|w| w == digest.as_slice())
        .unwrap();
    flipped[at] ^= 1;
    let flipped = tmp("anchor-eventlog-flipped.bin", &flipped);
    let run = |ima_log: &Path, event_log: &str, policy: Option<&Path>| {
        let mut args = vec![
            "evidence",
            "verify",
            "--json",
            "--tpm-quote",
            attest.to_str().unwrap(),
            "--tpm-signature",
            sig.to_str().unwrap(),
            "--ak-public",
            dir.join("derived-ak_pub.tpmt")
                .to_str()
                .unwrap(),
            "--nonce",
            "9009",
            "--pcrs",
            pcrs.to_str().unwrap(),
            "--ima-log",
            ima_log.to_str().unwrap(),
            "--event-log",
            event_log,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        if let Some(policy) = policy {
            args.extend(["--policy".to_owned(), policy.to_str().unwrap().to_owned()]);
        }
        let args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .collect();
        cosmian_vm(&args)
    };

    let out = run(&good_ima, &event_log, Some(&allow_empty));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_shape(&v, "tpm");
    let check = |v: &Value, step: &str| -> Value {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["step"] == step)
            .cloned()
            .unwrap_or_else(|| panic!("no {step} in {v}"))
    };
    for step in [
        "tpm.signature",
        "tpm.pcr_digest",
        "freshness",
        "boot.eventlog",
        "ima.boot_aggregate",
        "ima.coverage",
        "ima.replay",
    ] {
        assert_eq!(check(&v, step)["ok"], true, "{step}");
    }
    assert!(check(&v, "ima.boot_aggregate")["detail"]
        .as_str()
        .unwrap()
        .contains("recomputed"));

    // Without allow_empty: nothing past boot_aggregate, no IMA policy loaded.
    let out = run(&good_ima, &event_log, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(failed_steps(&json(&out)), ["ima.coverage"]);

    // A forged boot_aggregate: the recomputed value is expected, the logged one presented.
    let out = run(&forged_ima, &event_log, Some(&allow_empty));
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(failed_steps(&v)[0], "ima.boot_aggregate");
    let c = check(&v, "ima.boot_aggregate");
    assert_eq!(c["expected"], format!("sha256:{}", hex::encode(&aggregate)));
    assert_eq!(
        c["presented"],
        format!("sha256:{}", hex::encode([0x42; 32]))
    );

    // An event log that does not match the quote: boot.eventlog names the PCR.
    let out = run(&good_ima, flipped.to_str().unwrap(), Some(&allow_empty));
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(failed_steps(&v), ["boot.eventlog"]);
    let detail = check(&v, "boot.eventlog")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.starts_with("sha256 PCR 5:"), "{detail}");

    // Human output names the first failing step.
    let out = cosmian_vm(&[
        "evidence",
        "verify",
        "--tpm-quote",
        attest.to_str().unwrap(),
        "--tpm-signature",
        sig.to_str().unwrap(),
        "--ak-public",
        &p(&dir, "derived-ak_pub.tpmt"),
        "--nonce",
        "9009",
        "--pcrs",
        pcrs.to_str().unwrap(),
        "--event-log",
        flipped.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rejected at boot.eventlog: "), "{text}");
    assert!(text.contains("PCR 5"), "{text}");
}
