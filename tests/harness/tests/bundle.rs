//! The evidence bundle end to end on real parts: a swtpm with a persistent AK, the simulated TEE,
//! the IMA simulator measuring real files. A bound bundle verifies; changing any single field
//! makes it fail at the named step; a quote from a second TPM (an AK the report does not bind) is
//! rejected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, OnceLock};

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::TpmAttester;
use ratls::attest::{self, Sources, DEFAULT_PCRS};
use ratls::binding::{spki_sha256, BindingClaims, Role};
use ratls::bundle::{
    self, Bundle, BundleClaims, Expectations, Freshness, ImaEvidence, Requirements, TeeEvidence,
};
use ratls::digest::HashAlg;
use ratls::{Claims, Policy, UnixTime, Verdict};
use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm, TssTpm};
use serde_bytes::ByteBuf;

const SPKI: &[u8] = b"stand-in DER SubjectPublicKeyInfo of the endpoint's TLS key";
const CHALLENGE: [u8; 32] = [0xc1; 32];
const EXPORTER: [u8; 32] = [0xe7; 32];
const ISSUED_AT: u64 = 1_800_000_000;

fn sim_ca() -> Arc<SimCa> {
    static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
    CA.get_or_init(|| Arc::new(SimCa::generate().unwrap()))
        .clone()
}

fn binding(challenge: Option<[u8; 32]>, exporter: Option<[u8; 32]>) -> BindingClaims {
    BindingClaims {
        role: Role::agent(),
        spki_sha256: spki_sha256(SPKI),
        ak_sha256: None,
        issued_at: ISSUED_AT,
        challenge,
        exporter,
    }
}

/// `expect`'s requirements changed by `change` (leaked: expectations borrow them for the test).
fn changed(
    expect: &Expectations<'_>,
    change: impl FnOnce(&mut Requirements),
) -> &'static Requirements {
    let mut requirements = expect.requirements.clone();
    change(&mut requirements);
    Box::leak(Box::new(requirements))
}

fn expectations(ark: &[u8]) -> Expectations<'static> {
    let requirements = Box::leak(Box::new(Requirements::new(Role::agent())));
    requirements.insecure_sim_root = Some(ark.to_vec());
    let mut e = Expectations::new(requirements, SPKI, UnixTime::from_secs(ISSUED_AT + 5));
    e.challenge = Some(CHALLENGE);
    e.exporter = Some(EXPORTER);
    e
}

/// A machine: swtpm + AK + measured boot + IMA log with a few real files.
struct Machine {
    // Field order matters: the TPM client goes before the swtpm process.
    tpm: TssTpm,
    _swtpm: Swtpm,
    log: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file path removed on drop.
    pub struct TempPath(pub std::path::PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn machine(label: &str) -> Option<Machine> {
    let swtpm = Swtpm::start()?;
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, label).unwrap();
    let log = tempfile_path::TempPath(swtpm.state_dir().join("ima.log"));
    Some(Machine {
        tpm,
        _swtpm: swtpm,
        log,
    })
}

fn produce(m: &Machine, tee: &SimTee, binding: BindingClaims) -> Bundle {
    let mut ima = ImaSimulator::new(&m.log.0, &m.tpm).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["Cargo.toml", "src/lib.rs", "tests/bundle.rs"] {
        ima.measure_file(&root.join(file))
            .unwrap();
    }
    attest::produce(
        &Sources {
            tee: Some(tee),
            tpm: Some(&m.tpm),
            ima: Some(&ima),
            event_log: None,
            banks: &[HashAlg::Sha256],
            pcrs: &DEFAULT_PCRS,
            ima_inline: true,
        },
        binding,
    )
    .unwrap()
}

fn verify(b: &Bundle, expect: &Expectations<'_>) -> Verdict {
    bundle::verify(&b.to_cmw(), &Policy::default(), expect)
}

fn bundle_claims(v: &Verdict) -> &BundleClaims {
    match &v.claims {
        Claims::Bundle(c) => c,
        other => panic!("not bundle claims: {other:?}"),
    }
}

#[track_caller]
fn assert_fails_at(v: &Verdict, step: &str) {
    assert!(!v.is_trusted(), "trusted although {step} should fail:\n{v}");
    let check = v
        .check(step)
        .unwrap_or_else(|| panic!("no {step} check:\n{v}"));
    assert!(!check.ok, "{step} passed:\n{v}");
}

#[test]
fn a_bound_bundle_verifies_and_every_single_change_fails_at_its_step() {
    let Some(m) = machine("machine one") else {
        return;
    };
    let ca = sim_ca();
    let ark = ca.ark_der().to_vec();
    let tee = SimTee::new(ca.clone()).unwrap();
    let good = produce(&m, &tee, binding(Some(CHALLENGE), Some(EXPORTER)));
    let expect = expectations(&ark);

    let v = verify(&good, &expect);
    assert!(v.is_trusted(), "{v}");
    assert!(v.simulated, "sim evidence must be marked simulated");
    for step in [
        "bundle.parse",
        "binding.role",
        "binding.spki",
        "binding.challenge",
        "binding.exporter",
        "binding.freshness",
        "binding.ak",
        "tee.signature",
        "tee.chain.ark",
        "binding.report_data",
        "tpm.signature",
        "tpm.qualifying_data",
        "tpm.pcr_digest",
        "ima.template_hash",
        "ima.replay",
    ] {
        assert!(v.passed(step), "{step}:\n{v}");
    }
    let c = bundle_claims(&v);
    assert_eq!(c.binding, Some(bundle::BindingLevel::Session));
    assert_eq!(c.freshness, Some(Freshness::Challenge));
    assert_eq!(c.tee_kind.as_deref(), Some("sim"));

    // Without the simulated root, the same evidence is not trusted.
    let mut no_root = expect.clone();
    no_root.requirements = changed(&expect, |r| r.insecure_sim_root = None);
    assert_fails_at(&verify(&good, &no_root), "tee.chain.ark");

    // One TEE report byte (the measurement).
    let mut b = good.clone();
    if let Some(TeeEvidence::Sim { report, .. }) = &mut b.tee {
        report[0x90] ^= 1;
    }
    assert_fails_at(&verify(&b, &expect), "tee.signature");

    // One quoted PCR value.
    let mut b = good.clone();
    b.tpm
        .as_mut()
        .unwrap()
        .pcrs
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .get_mut(&4)
        .unwrap()[0] ^= 1;
    assert_fails_at(&verify(&b, &expect), "tpm.pcr_digest");

    // The AK public area.
    let mut b = good.clone();
    let tpm = b.tpm.as_mut().unwrap();
    let last = tpm.ak_public.len() - 1;
    tpm.ak_public[last] ^= 1;
    let v = verify(&b, &expect);
    assert_fails_at(&v, "binding.ak");
    assert_fails_at(&v, "tpm.signature");

    // The TLS key the verifier talks to is not the bound one.
    let mut other_key = expect.clone();
    other_key.spki_der = b"another TLS key";
    let v = verify(&good, &other_key);
    assert_fails_at(&v, "binding.spki");
    assert_fails_at(&v, "binding.report_data");

    // A challenge the verifier did not choose.
    let mut other_challenge = expect.clone();
    other_challenge.challenge = Some([0x99; 32]);
    let v = verify(&good, &other_challenge);
    assert_fails_at(&v, "binding.challenge");
    assert_fails_at(&v, "binding.report_data");
    assert_fails_at(&v, "tpm.qualifying_data");

    // A response replayed on another session (another exporter).
    let mut other_session = expect.clone();
    other_session.exporter = Some([0x55; 32]);
    assert_fails_at(&verify(&good, &other_session), "binding.exporter");

    // The attester rewrote its claims to match the verifier: the signed report still disagrees.
    let mut b = good.clone();
    b.binding.challenge = Some([0x99; 32]);
    let v = verify(&b, &other_challenge);
    assert!(v.passed("binding.challenge"), "{v}");
    assert_fails_at(&v, "binding.report_data");
    assert_fails_at(&v, "tpm.qualifying_data");

    // Another role.
    let mut as_server = expect.clone();
    as_server.requirements = changed(&expect, |r| r.role = Role::server());
    assert_fails_at(&verify(&good, &as_server), "binding.role");

    // One IMA entry (a file digest inside the log).
    let mut b = good.clone();
    if let Some(ImaEvidence::Log(log)) = &mut b.ima {
        let log_bytes = log.to_vec();
        let parsed = ratls::ima::Log::parse(&log_bytes).unwrap();
        let entry = &parsed.entries()[2];
        let digest = entry.file_digest().to_vec();
        let at = log_bytes
            .windows(digest.len())
            .position(|w| w == digest)
            .unwrap();
        log[at] ^= 1;
    }
    assert_fails_at(&verify(&b, &expect), "ima.template_hash");

    // A missing binding claim: evidence without a TPM while the verifier requires one.
    let mut b = good.clone();
    b.tpm = None;
    let v = verify(&b, &expect);
    assert_fails_at(&v, "bundle.tpm");
    assert_fails_at(&v, "binding.ak");

    // Garbage and oversized input.
    assert_fails_at(
        &bundle::verify(b"not cbor", &Policy::default(), &expect),
        "bundle.parse",
    );
    assert_fails_at(
        &bundle::verify(
            &vec![0u8; bundle::MAX_BUNDLE_LEN + 1],
            &Policy::default(),
            &expect,
        ),
        "bundle.parse",
    );
}

#[test]
fn certificate_mode_evidence_expires_after_the_maximum_age() {
    let Some(m) = machine("machine two") else {
        return;
    };
    let ca = sim_ca();
    let ark = ca.ark_der().to_vec();
    let tee = SimTee::new(ca.clone()).unwrap();
    let b = produce(&m, &tee, binding(None, None));
    let mut expect = expectations(&ark);
    expect.challenge = None;
    expect.exporter = None;
    expect.requirements = changed(&expect, |r| r.max_age_secs = 3600);

    expect.now = UnixTime::from_secs(ISSUED_AT + 3600);
    let v = verify(&b, &expect);
    assert!(v.is_trusted(), "{v}");
    let c = bundle_claims(&v);
    assert_eq!(c.binding, Some(bundle::BindingLevel::Key));
    assert_eq!(
        c.freshness,
        Some(Freshness::TimeWindow {
            age_secs: 3600,
            max_age_secs: 3600
        })
    );

    expect.now = UnixTime::from_secs(ISSUED_AT + 3601);
    assert_fails_at(&verify(&b, &expect), "binding.freshness");
    // Issued in the future beyond the allowed skew.
    expect.now = UnixTime::from_secs(ISSUED_AT - expect.requirements.max_skew_secs - 1);
    assert_fails_at(&verify(&b, &expect), "binding.freshness");

    // A verifier that sent a challenge does not accept certificate-mode evidence.
    expect.now = UnixTime::from_secs(ISSUED_AT + 5);
    expect.challenge = Some(CHALLENGE);
    assert_fails_at(&verify(&b, &expect), "binding.challenge");
}

#[test]
fn a_quote_from_a_second_tpm_is_rejected() {
    let (Some(one), Some(two)) = (machine("machine one"), machine("machine one")) else {
        return;
    };
    let ca = sim_ca();
    let ark = ca.ark_der().to_vec();
    let tee = SimTee::new(ca.clone()).unwrap();
    let expect = expectations(&ark);
    let good = produce(&one, &tee, binding(Some(CHALLENGE), Some(EXPORTER)));
    assert!(verify(&good, &expect).is_trusted());

    // The second TPM quotes the same qualifying data: a vTPM outside the TEE standing in.
    let qualifying = good.binding.qualifying_data();
    let foreign = two
        .tpm
        .quote(&qualifying, &[HashAlg::Sha256], &DEFAULT_PCRS)
        .unwrap();

    let mut b = good.clone();
    b.tpm = Some(foreign.clone());
    let v = verify(&b, &expect);
    assert_fails_at(&v, "binding.ak");

    // Even with the AK hash rewritten to the second TPM's, the TEE report binds the first AK.
    let mut b = good.clone();
    b.tpm = Some(foreign.clone());
    b.binding.ak_sha256 = Some(spki_sha256(&foreign.ak_public));
    let v = verify(&b, &expect);
    assert!(v.passed("binding.ak"), "{v}");
    assert_fails_at(&v, "binding.report_data");
    assert_fails_at(&v, "tpm.qualifying_data");

    // And the first TPM's signature does not verify under the second AK.
    let mut b = good.clone();
    let mut mixed = good.tpm.clone().unwrap();
    mixed.ak_public = ByteBuf::from(foreign.ak_public.to_vec());
    b.tpm = Some(mixed);
    assert_fails_at(&verify(&b, &expect), "tpm.signature");
}

/// A machine booted with a firmware event log (PCR 9: `cmdline`), its IMA log and a fresh
/// bundle carrying both; also returns the event log's bytes.
fn logged_bundle(label: &str, cmdline: &str, tee: &SimTee) -> Option<(Bundle, Vec<u8>)> {
    let swtpm = Swtpm::start()?;
    let tpm = open_tpm(&swtpm).unwrap();
    let event_log = swtpm
        .state_dir()
        .join("binary_bios_measurements");
    ratls_harness::simulate_boot_with_event_log(&tpm, label, cmdline, &event_log).unwrap();
    let m = Machine {
        tpm,
        log: tempfile_path::TempPath(swtpm.state_dir().join("ima.log")),
        _swtpm: swtpm,
    };
    let mut ima = ImaSimulator::new(&m.log.0, &m.tpm).unwrap();
    ima.measure_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .unwrap();
    let source = ratls::attest::EventLogFile(event_log.clone());
    let bundle = attest::produce(
        &Sources {
            tee: Some(tee),
            tpm: Some(&m.tpm),
            ima: Some(&ima),
            event_log: Some(&source),
            banks: &[HashAlg::Sha256],
            pcrs: &DEFAULT_PCRS,
            ima_inline: true,
        },
        binding(Some(CHALLENGE), Some(EXPORTER)),
    )
    .unwrap();
    Some((bundle, std::fs::read(&event_log).unwrap()))
}

#[test]
fn the_event_log_replays_to_the_quote_and_a_changed_command_line_is_named() {
    let ca = sim_ca();
    let ark = ca.ark_der().to_vec();
    let tee = SimTee::new(ca.clone()).unwrap();
    let Some((good, good_log)) = logged_bundle("logged", "console=ttyS0 initrd=initrd", &tee)
    else {
        return;
    };
    let expect = expectations(&ark);
    let v = verify(&good, &expect);
    assert!(v.is_trusted(), "{v}");
    for step in ["boot.eventlog", "ima.boot_aggregate", "ima.coverage"] {
        assert!(v.passed(step), "{step}:\n{v}");
    }
    assert!(v
        .check("ima.boot_aggregate")
        .unwrap()
        .detail
        .contains("recomputed"));
    assert_eq!(
        bundle_claims(&v)
            .event_log
            .as_ref()
            .unwrap()
            .events_per_index[&9],
        2
    );

    // The snapshot records the boot's events.
    let snapshot = ratls::snapshot::Snapshot::from_evidence(
        &v,
        &good,
        ratls::snapshot::FileSet::new(HashAlg::Sha256),
        UnixTime::from_secs(ISSUED_AT),
    )
    .unwrap();
    assert_eq!(snapshot.boot_events.len(), 11);
    // The derived policy pins the ID key alongside the guest SVN, so it loads back.
    assert!(snapshot.policy.validate().is_ok());
    if snapshot
        .policy
        .snp
        .min_guest_svn
        .is_some()
    {
        assert!(snapshot
            .policy
            .snp
            .id_key_digest
            .is_some());
    }
    assert!(
        snapshot
            .check_boot_events(Some(&good_log))
            .unwrap()
            .ok
    );

    // The same machine booted with another kernel command line: PCR 9 differs, and the
    // snapshot's checks name it (the PCR policy and the event comparison).
    let Some((other, other_log)) =
        logged_bundle("logged", "console=ttyS0 init=/bin/sh initrd=initrd", &tee)
    else {
        return;
    };
    let v = bundle::verify(&other.to_cmw(), &snapshot.policy, &expect);
    let check = v.check("tpm.policy.pcrs").unwrap();
    assert!(!check.ok);
    assert!(check.detail.contains("sha256 PCR 9"), "{check}");
    assert!(!check.detail.contains("PCR 8"), "{check}");
    let check = snapshot
        .check_boot_events(Some(&other_log))
        .unwrap();
    assert!(!check.ok);
    assert!(
        check
            .detail
            .starts_with("PCR 9 event 0 EV_EVENT_TAG 'LOADED_IMAGE::LoadOptions': expected sha256"),
        "{check}"
    );

    // An event log that is not the quoted boot's: boot.eventlog names PCR 9.
    let mut swapped = good.clone();
    swapped.event_log = other.event_log.clone();
    let v = verify(&swapped, &expect);
    assert_fails_at(&v, "boot.eventlog");
    assert!(v
        .check("boot.eventlog")
        .unwrap()
        .detail
        .starts_with("sha256 PCR 9:"));
}
