//! Regenerates the checked-in seed corpora under `fuzz/seeds/` from the repository's own
//! fixtures: the simulated TEE (feature `sim`: an SEV-SNP-format report signed by a generated
//! VCEK -> ASK -> ARK chain), an RA-TLS certificate issued over it (feature `issue`), the pinned
//! AMD anchors in `ratls/src/snp/anchors/`, and the table, bundle, policy and snapshot shapes the
//! unit tests build. Nothing here comes from captured real evidence.
//!
//! `cd fuzz && cargo run --example gen_seeds` (a normal build, not a fuzz build). The sim CA is
//! generated anew each time, so every file changes; `seeds/fixtures/` holds the sim ARK, report
//! and SPKI that the `bundle_cmw` and `snp_cert_table` targets compile in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::snp_guest::{CertEntry, CertTable, GUID_VCEK};
use ratls::attest::{Attester, TeeAttester};
use ratls::binding::Role;
use ratls::bundle::{self, Expectations, Requirements};
use ratls::digest::HashAlg;
use ratls::tls::cert::{self, CertParams};
use ratls::{Policy, UnixTime};

/// The time every stateful target verifies at (2027-01-15); keep in step with the targets.
const NOW: u64 = 1_800_000_000;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("seeds");
    let anchors = root.join("../ratls/src/snp/anchors");
    let now = UnixTime::from_secs(NOW);

    let ca = Arc::new(SimCa::generate().unwrap());
    let tee = SimTee::new(ca.clone()).unwrap();
    let report = tee
        .report(&ratls::binding::ReportData::for_raw_nonce(b"fuzz seed").unwrap())
        .unwrap();

    // RA-TLS certificate over the sim TEE; its bundle is bound to the certificate's key.
    let attester = Attester::new(Some(Arc::new(tee) as Arc<dyn TeeAttester>), None, None);
    let issued = cert::issue(
        &attester,
        &CertParams::new(Role::server(), "fuzz.example", vec!["localhost".into()]),
        UnixTime::from_secs(NOW - 60),
    )
    .unwrap();
    let cmw = issued.bundle.to_cmw();
    let mut requirements = Requirements::new(Role::server());
    requirements.insecure_sim_root = Some(ca.ark_der().to_vec());
    requirements.require_tpm = false;
    requirements.require_ima = false;
    let expect = Expectations::new(&requirements, &issued.spki_der, now);
    let verdict = bundle::verify(&cmw, &Policy::default(), &expect);
    assert!(
        verdict.is_trusted(),
        "the seed bundle must verify at NOW:\n{verdict}"
    );

    let fixtures = seeds.join("fixtures");
    write(&fixtures, "sim_ark.der", ca.ark_der());
    write(&fixtures, "sim_spki.der", &issued.spki_der);
    write(&fixtures, "sim_report.bin", &report);
    // A two-entry ASCII IMA log (ima/tests.rs shapes) that json_docs checks snapshots against.
    let ima = format!(
        "10 {z} ima-ng sha256:{z}{z} boot_aggregate\n10 {t} ima-ng sha256:{d} /usr/bin/true\n",
        z = "00".repeat(20),
        t = "22".repeat(20),
        d = "11".repeat(32),
    );
    assert!(
        ratls::ima::Log::parse_ascii(ima.as_bytes()).is_ok(),
        "fixture IMA log must parse"
    );
    write(&fixtures, "ima.ascii", ima.as_bytes());

    // snp_report: the sim report and blank reports of each version (snp/tests.rs).
    let dir = seeds.join("snp_report");
    write(&dir, "sim-report.bin", &report);
    for version in [2u32, 3, 5] {
        let mut blank = vec![0u8; 1184];
        blank[..4].copy_from_slice(&version.to_le_bytes());
        write(&dir, &format!("blank-v{version}.bin"), &blank);
    }

    // snp_cert_table: the host's table as the sev-guest tests lay it out.
    let dir = seeds.join("snp_cert_table");
    let mut full = CertTable::vcek_chain(
        ca.vcek_der().to_vec(),
        ca.ask_der().to_vec(),
        ca.ark_pem().into_bytes(),
    );
    full.entries.push(CertEntry {
        guid: [0x42; 16],
        data: b"vendor data".to_vec(),
    });
    write(&dir, "sim-vcek-ask-ark-other.bin", &full.encode());
    let vcek_only = CertTable {
        entries: vec![CertEntry {
            guid: GUID_VCEK,
            data: ca.vcek_der().to_vec(),
        }],
    };
    let mut padded = vcek_only.encode();
    padded.resize(padded.len().next_multiple_of(4096), 0);
    write(&dir, "sim-vcek-page-padded.bin", &padded);
    write(&dir, "empty.bin", &CertTable::default().encode());

    // pki_cert: DER and PEM certificates and chains.
    let dir = seeds.join("pki_cert");
    write(&dir, "sim-vcek.der", ca.vcek_der());
    write(&dir, "sim-ask.der", ca.ask_der());
    write(&dir, "sim-chain.pem", ca.chain_pem().as_bytes());
    write(&dir, "ratls-cert.der", &issued.cert_der);
    write(
        &dir,
        "milan-ark.pem",
        &fs::read(anchors.join("milan_ark.pem")).unwrap(),
    );
    write(
        &dir,
        "genoa-ask.pem",
        &fs::read(anchors.join("genoa_ask.pem")).unwrap(),
    );

    // bundle_cmw and ratls_cert.
    write(&seeds.join("bundle_cmw"), "sim-server.cmw", &cmw);
    write(
        &seeds.join("ratls_cert"),
        "sim-server.der",
        &issued.cert_der,
    );

    // json_docs: policy, snapshot and PCR-value documents.
    let dir = seeds.join("json_docs");
    write(
        &dir,
        "policy-default.json",
        serde_json::to_string(&Policy::default())
            .unwrap()
            .as_bytes(),
    );
    let mut policy = Policy::default();
    policy.snp.measurement = Some("ab".repeat(48));
    policy.snp.vmpl = 0;
    policy.tpm.ak_sha256 = Some("cd".repeat(32));
    policy
        .tpm
        .pcrs
        .entry(HashAlg::Sha256)
        .or_default()
        .insert(7, "00".repeat(32));
    let policy_json = serde_json::to_string_pretty(&policy).unwrap();
    write(&dir, "policy-pinned.json", policy_json.as_bytes());
    let snapshot = format!(
        r#"{{"version":1,"created_at":"2027-01-15T08:00:00Z","platform":"sim","simulated":true,
"policy":{policy_json},
"files":{{"hash_alg":"sha256","files":{{"/usr/bin/true":["{d}"]}},"excludes":["/proc"]}},
"metadata":{{"host":"fuzz"}}}}"#,
        d = "11".repeat(32)
    );
    write(&dir, "snapshot.json", snapshot.as_bytes());
    write(
        &dir,
        "pcrs.json",
        format!(
            r#"{{"sha256":{{"0":"{}","10":"{}"}},"sha1":{{"7":"{}"}}}}"#,
            "00".repeat(32),
            "ff".repeat(32),
            "aa".repeat(20)
        )
        .as_bytes(),
    );
}
