//! The IMA simulator on a real swtpm: its log, read back from the file, replays to the quoted
//! PCR 10 exactly as a kernel's would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ratls::attest::ima_sim::BOOT_AGGREGATE_PCRS;
use ratls::attest::{ImaSource, TpmAttester};
use ratls::digest::HashAlg;
use ratls::ima::{self, ImaPolicy, Log, ReplayMode};
use ratls::{Claims, Verdict};
use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm, TssTpm, BOOT_AND_IMA_PCRS};

/// The quote's qualifying data: a domain-separated raw nonce (the attesters sign nothing else).
fn nonce() -> ratls::binding::QualifyingData {
    ratls::binding::QualifyingData::for_raw_nonce(b"harness test nonce").unwrap()
}

/// Quote PCR 10 in `bank` and verify `log` against it; the verdict and the quoted value.
fn verify_against_quote(tpm: &TssTpm, log: &[u8], bank: HashAlg) -> (Verdict, Vec<u8>) {
    let evidence = tpm
        .quote(&nonce(), &[bank], &BOOT_AND_IMA_PCRS)
        .unwrap();
    let pcr10 = evidence.pcrs[&bank][&10].to_vec();
    (
        ima::verify_bytes(log, Some((bank, pcr10.clone())), &ImaPolicy::default()),
        pcr10,
    )
}

fn claims(verdict: &Verdict) -> &ima::ImaClaims {
    match &verdict.claims {
        Claims::Ima(claims) => claims,
        other => panic!("not IMA claims: {other:?}"),
    }
}

/// Real files of this repository, measured by content.
fn files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        "Cargo.toml",
        "src/lib.rs",
        "src/machine.rs",
        "tests/ima_sim.rs",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect()
}

#[test]
fn the_simulated_log_replays_to_the_quoted_pcr10_across_a_reboot() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let log_path = swtpm
        .state_dir()
        .join("binary_runtime_measurements");
    let first_aggregate;
    {
        let tpm = open_tpm(&swtpm).unwrap();
        simulate_boot(&tpm, "boot 1").unwrap();
        let mut sim = ImaSimulator::new(&log_path, &tpm).unwrap();
        first_aggregate = sim.boot_aggregate().to_vec();
        // boot_aggregate = SHA-256 over sha256 PCRs 0-9, as read from the TPM.
        let pcrs = tpm
            .read_pcrs(&[HashAlg::Sha256], &BOOT_AGGREGATE_PCRS)
            .unwrap();
        let expected = HashAlg::Sha256.digest_all(
            pcrs[&HashAlg::Sha256]
                .values()
                .map(Vec::as_slice),
        );
        assert_eq!(first_aggregate, expected);

        for file in files() {
            let digest = sim.measure_file(&file).unwrap();
            assert_eq!(
                digest,
                HashAlg::Sha256.digest(&std::fs::read(&file).unwrap())
            );
        }
        sim.measure(b"/usr/bin/with space\nand newline", &[0xab; 32])
            .unwrap();
        let n = sim.log().len();
        assert_eq!(n, 1 + files().len() + 1);

        // The file holds what the simulator holds, in the kernel's binary format with SHA-1
        // template hashes.
        let bytes = sim.read_log().unwrap();
        assert_eq!(bytes, sim.to_binary());
        let parsed = Log::parse(&bytes).unwrap();
        assert_eq!(parsed.template_hash_alg(), HashAlg::Sha1);
        assert_eq!(parsed.entries()[0].path(), b"boot_aggregate");
        assert_eq!(
            parsed.entries()[0].file_digest(),
            first_aggregate.as_slice()
        );
        assert_eq!(parsed.entries()[0].file_digest_algo(), "sha256");
        assert!(parsed
            .entries()
            .iter()
            .all(|e| e.template_name() == "ima-ng" && e.pcr() == 10));

        // Both banks of PCR 10 are what the kernel would have extended.
        for bank in [HashAlg::Sha1, HashAlg::Sha256] {
            let (verdict, pcr10) = verify_against_quote(&tpm, &bytes, bank);
            assert!(
                verdict.is_trusted(),
                "{bank}: {:?}",
                verdict.first_failure()
            );
            assert_eq!(claims(&verdict).quote_prefix, Some(n));
            assert_eq!(claims(&verdict).entries_after_quote, Some(0));
            assert_eq!(pcr10, parsed.replay(bank, ReplayMode::PerBankTemplateHash));
        }

        // A measurement after the quote: the log is longer than what the quote covers.
        let evidence = tpm
            .quote(&nonce(), &[HashAlg::Sha256], &BOOT_AND_IMA_PCRS)
            .unwrap();
        let quoted = evidence.pcrs[&HashAlg::Sha256][&10].to_vec();
        sim.measure_file(&files()[0]).unwrap();
        let verdict = ima::verify_bytes(
            &sim.read_log().unwrap(),
            Some((HashAlg::Sha256, quoted)),
            &ImaPolicy::default(),
        );
        assert!(verdict.is_trusted(), "{:?}", verdict.first_failure());
        assert_eq!(claims(&verdict).quote_prefix, Some(n));
        assert_eq!(claims(&verdict).entries_after_quote, Some(1));

        // A tampered entry fails.
        let mut tampered = sim.read_log().unwrap();
        let at = tampered.len() - 5;
        tampered[at] ^= 1;
        let (verdict, _) = verify_against_quote(&tpm, &tampered, HashAlg::Sha256);
        assert!(!verdict.is_trusted());
    }

    // A reboot: PCRs reset, new firmware measurements, a new log.
    swtpm.restart();
    let tpm = open_tpm(&swtpm).unwrap();
    let pcr10 = tpm
        .read_pcrs(&[HashAlg::Sha256], &[10])
        .unwrap();
    assert_eq!(
        pcr10[&HashAlg::Sha256][&10],
        vec![0; 32],
        "PCR 10 reset by the reboot"
    );
    simulate_boot(&tpm, "boot 2").unwrap();
    let mut sim = ImaSimulator::new(&log_path, &tpm).unwrap();
    assert_ne!(sim.boot_aggregate(), first_aggregate.as_slice());
    assert_eq!(sim.log().len(), 1);
    sim.measure_file(&files()[1]).unwrap();
    let (verdict, _) = verify_against_quote(&tpm, &sim.read_log().unwrap(), HashAlg::Sha256);
    assert!(verdict.is_trusted(), "{:?}", verdict.first_failure());
    assert_eq!(claims(&verdict).quote_prefix, Some(2));
    assert_eq!(
        claims(&verdict)
            .boot_aggregate
            .as_deref(),
        Some(ratls::hexfmt::hex(sim.boot_aggregate()).as_str())
    );
}

#[test]
fn the_ascii_export_of_the_simulated_log_verifies_too() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    let mut sim = ImaSimulator::new(swtpm.state_dir().join("ima.log"), &tpm).unwrap();
    for file in files() {
        sim.measure_file(&file).unwrap();
    }
    let ascii = sim.log().to_ascii();
    let (verdict, _) = verify_against_quote(&tpm, &ascii, HashAlg::Sha256);
    assert!(verdict.is_trusted(), "{:?}", verdict.first_failure());
    assert!(tpm.ak_public().is_ok());
}
