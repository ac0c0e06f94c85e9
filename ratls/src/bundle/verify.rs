//! Verifying a bundle: genuineness of each piece, then the binding that ties them together and to
//! what the verifier itself observed.

use std::sync::Arc;

use super::cache::{BatchCacheRef, SharedEvidence, SharedVerdict};
use super::claims::{BatchInfo, BindingLevel, Freshness, ImaDeferred};
use super::{
    BatchProof, Bundle, EventLogEvidence, ImaEvidence, TeeEvidence, TpmEvidence, MAX_BUNDLE_LEN,
};
use crate::binding::{spki_sha256, BatchClaims, BindingClaims, Role};
use crate::claims::BundleClaims;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::ima::files::FileSet;
use crate::ima::{ImaAnchor, ImaPolicy};
use crate::policy::Policy;
use crate::time::UnixTime;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// Fills in what TEE evidence lacks before it is verified: the VCEK and CRL of an SEV-SNP
/// report, the Intel collateral of a TDX quote (`ratls::collateral`, feature `collateral`).
/// Whatever it adds is verified like the rest (signatures, pinned roots, validity windows); the
/// steps it took come back as checks (`collateral.*`) for the verdict.
pub trait CollateralSource: Send + Sync + std::fmt::Debug {
    fn complete(&self, tee: &mut TeeEvidence, now: UnixTime) -> Vec<Check>;
}

/// The oldest certificate-mode evidence accepted by default, in seconds (24 hours).
pub const DEFAULT_MAX_AGE_SECS: u64 = 24 * 3600;

/// How far in the future an issue time may lie by default, in seconds (5 minutes of clock skew).
pub const DEFAULT_MAX_SKEW_SECS: u64 = 300;

/// What the verifier requires of a peer beyond the verification [`Policy`]: the role it attests
/// as, how old its evidence may be, which parts must be present, and where missing collateral
/// comes from. The same for every verification under one policy (the TLS layer's
/// `AttestationPolicy` holds one); [`Expectations`] adds what changes per call.
#[derive(Debug, Clone)]
pub struct Requirements {
    /// The role the peer must have attested as.
    pub role: Role,
    /// The oldest evidence accepted, in seconds (certificate mode).
    pub max_age_secs: u64,
    /// How far in the future an issue time may be (clock skew).
    pub max_skew_secs: u64,
    /// The simulated ARK (DER or PEM) to trust for `sim` evidence. Never set this in production:
    /// it is what `--insecure-sim-root` passes.
    pub insecure_sim_root: Option<Vec<u8>>,
    /// Where missing TEE collateral comes from; `None`: only what the bundle carries.
    pub collateral: Option<Arc<dyn CollateralSource>>,
    /// Which parts must be present.
    pub require_tee: bool,
    pub require_tpm: bool,
    pub require_ima: bool,
    /// The approved files (a snapshot's): every file the IMA log (or delta) measured must be
    /// one of them (`ima.unknown_file`, `ima.changed_file`, `ima.files`). `None`: IMA is
    /// checked for integrity only.
    pub files: Option<Arc<FileSet>>,
}

impl Requirements {
    /// Strict defaults: TEE, TPM and IMA required, [`DEFAULT_MAX_AGE_SECS`] maximum age,
    /// [`DEFAULT_MAX_SKEW_SECS`] skew, no simulated root, no collateral source.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
            insecure_sim_root: None,
            collateral: None,
            require_tee: true,
            require_tpm: true,
            require_ima: true,
            files: None,
        }
    }
}

/// What the verifier knows on its own, independently of the attester: the [`Requirements`] of
/// its policy and what it observed for this one verification.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// Role, age, skew, required parts, simulated root, collateral source.
    pub requirements: &'a Requirements,
    /// The DER SubjectPublicKeyInfo of the TLS key the verifier is talking to.
    pub spki_der: &'a [u8],
    /// The challenge the verifier sent (fresh mode), or `None` (certificate mode).
    pub challenge: Option<[u8; 32]>,
    /// The verifier's own TLS exporter value for the session (fresh mode).
    pub exporter: Option<[u8; 32]>,
    pub now: UnixTime,
    /// The IMA log, when the bundle carries only its digest (fetched separately).
    pub ima_log: Option<&'a [u8]>,
    /// When the bundle carries only the IMA log's digest and no log is given: record the digest
    /// in the claims (`ima_deferred`) and leave the IMA steps to a later verification with the
    /// fetched log, instead of failing `ima.log_digest`. This is what a TLS handshake in
    /// certificate mode does: the log does not travel in certificates. The verdict then proves
    /// TEE, boot PCRs and key binding, and says in its claims that IMA was not checked.
    pub defer_ima_log: bool,
    /// The firmware event log, when the bundle carries only its digest (fetched separately).
    /// Without it such a bundle's event log is recorded in the claims (`event_log_deferred`)
    /// and not replayed: the boot PCRs themselves are still quoted and checked by the policy.
    pub event_log: Option<&'a [u8]>,
    /// Where the verdict on a batch's shared evidence is kept for its other sessions (the TLS
    /// layer's policy object holds one); `None`: every batched bundle is checked in full.
    pub batch_cache: Option<BatchCacheRef<'a>>,
    /// How far this verifier checked the peer's IMA log before (a live connection's earlier
    /// verdict): a bundle carrying a delta ([`ImaEvidence::Delta`]) is replayed from here.
    pub ima_anchor: Option<&'a ImaAnchor>,
}

impl<'a> Expectations<'a> {
    /// Expectations under `requirements` for a peer presenting `spki_der`, at `now`: certificate
    /// mode (no challenge, no exporter), no separate logs.
    pub fn new(requirements: &'a Requirements, spki_der: &'a [u8], now: UnixTime) -> Self {
        Self {
            requirements,
            spki_der,
            challenge: None,
            exporter: None,
            now,
            ima_log: None,
            defer_ima_log: false,
            event_log: None,
            batch_cache: None,
            ima_anchor: None,
        }
    }
}

/// Verify a CMW-encoded bundle against `policy` and what the verifier observed.
pub fn verify(cmw: &[u8], policy: &Policy, expect: &Expectations<'_>) -> Verdict {
    let bundle = match Bundle::from_cmw(cmw, MAX_BUNDLE_LEN) {
        Ok(bundle) => bundle,
        Err(e) => {
            let mut v = Verdict::new(Platform::Unknown);
            v.push(Check::fail(
                Step::BUNDLE_PARSE,
                "a CMW-wrapped evidence bundle v1",
                "malformed",
                e.to_string(),
            ));
            return v;
        }
    };
    verify_decoded(&bundle, crate::digest::sha256(cmw), policy, expect)
}

/// Verify a decoded bundle.
pub fn verify_bundle(bundle: &Bundle, policy: &Policy, expect: &Expectations<'_>) -> Verdict {
    verify_decoded(bundle, bundle.digest(), policy, expect)
}

/// What the TEE report and the TPM quote must sign: the binding digests of one session, or
/// those of the batch the session's proof leads to.
struct Signed {
    report_data: [u8; 64],
    qualifying_data: [u8; 32],
    batch: Option<BatchClaims>,
}

/// `evidence_sha256` is SHA-256 of the CMW encoding (the received bytes, or the bundle
/// re-encoded).
fn verify_decoded(
    bundle: &Bundle,
    evidence_sha256: [u8; 32],
    policy: &Policy,
    expect: &Expectations<'_>,
) -> Verdict {
    let platform = match bundle
        .tee
        .as_ref()
        .map(TeeEvidence::kind)
    {
        // The simulated TEE imitates SEV-SNP: its verdict says sev-snp, and SIMULATED.
        Some(Platform::Simulated) => Platform::SevSnp,
        Some(platform) => platform,
        None => Platform::Tpm,
    };
    let mut v = Verdict::new(platform);
    v.push(Check::pass(
        Step::BUNDLE_PARSE,
        "a CMW-wrapped evidence bundle v1",
        format!(
            "tee {}, tpm {}, ima {}{}",
            bundle
                .tee
                .as_ref()
                .map_or("none".into(), |t| t.kind().to_string()),
            if bundle.tpm.is_some() { "yes" } else { "no" },
            match &bundle.ima {
                Some(ImaEvidence::Log(_)) => "log",
                Some(ImaEvidence::Digest { .. }) => "digest",
                Some(ImaEvidence::Delta { .. }) => "delta",
                None => "no",
            },
            match &bundle.event_log {
                Some(EventLogEvidence::Log(_)) => ", event log",
                Some(EventLogEvidence::Digest { .. }) => ", event log digest",
                None => "",
            }
        ),
    ));

    // The binding claims, each against what the verifier knows itself.
    let expected = check_binding(&mut v, &bundle.binding, bundle.tpm.as_ref(), expect);
    // What the report and the quote must sign: these claims, or the batch they belong to.
    let signed = match &bundle.batch {
        None => Signed {
            report_data: *expected.report_data().as_bytes(),
            qualifying_data: *expected.qualifying_data().as_bytes(),
            batch: None,
        },
        Some(proof) => {
            let batch = check_batch(&mut v, proof, &expected);
            Signed {
                report_data: *batch.report_data().as_bytes(),
                qualifying_data: *batch.qualifying_data().as_bytes(),
                batch: Some(batch),
            }
        }
    };

    // Presence.
    for (step, required, present) in [
        (
            Step::BUNDLE_TEE,
            expect.requirements.require_tee,
            bundle.tee.is_some(),
        ),
        (
            Step::BUNDLE_TPM,
            expect.requirements.require_tpm,
            bundle.tpm.is_some(),
        ),
        (
            Step::BUNDLE_IMA,
            expect.requirements.require_ima,
            bundle.ima.is_some(),
        ),
    ] {
        if required {
            v.push(Check::expect(
                step,
                present,
                "present",
                if present { "present" } else { "missing" },
            ));
        }
    }

    // The shared evidence (TEE, TPM, logs): verified here, or, for a batch another session of
    // which this verifier already checked, its cached verdict. An IMA delta is not shared: it
    // continues this verifier's own anchor, so it is checked per session (below) and the
    // shared part is the rest (cached apart from the verdicts that include a whole log).
    let delta = matches!(bundle.ima, Some(ImaEvidence::Delta { .. }));
    let without_ima;
    let full = bundle;
    let bundle = if delta {
        without_ima = Bundle {
            ima: None,
            ..bundle.clone()
        };
        &without_ima
    } else {
        bundle
    };
    let presented = || SharedEvidence {
        tee: bundle.tee.clone(),
        tpm: bundle.tpm.clone(),
        ima: bundle.ima.clone(),
        event_log: bundle.event_log.clone(),
    };
    let same = |cached: &SharedEvidence| {
        cached.tee == bundle.tee
            && cached.tpm == bundle.tpm
            && cached.ima == bundle.ima
            && cached.event_log == bundle.event_log
    };
    let (shared, cached) = match (&signed.batch, expect.batch_cache) {
        (Some(batch), Some(cache)) if expect.ima_log.is_none() && expect.event_log.is_none() => {
            let key = if delta {
                cache.key_without_ima(batch)
            } else {
                cache.key(batch)
            };
            cache
                .cache
                .get_or_verify(key, expect.now, same, || {
                    (presented(), verify_shared(bundle, &signed, policy, expect))
                })
        }
        _ => (
            Arc::new((
                SharedEvidence {
                    tee: None,
                    tpm: None,
                    ima: None,
                    event_log: None,
                },
                verify_shared(bundle, &signed, policy, expect),
            )),
            false,
        ),
    };
    let shared = &shared.1;
    v.simulated |= shared.simulated;
    v.extend(shared.checks.iter().cloned());
    let bundle = full;
    let delta_claims = match &bundle.ima {
        Some(ImaEvidence::Delta { from, log }) => {
            let (checks, claims) = check_delta(bundle, *from, log, policy, expect);
            v.extend(checks);
            claims
        }
        _ => None,
    };
    let mut claims = BundleClaims {
        tee_kind: bundle
            .tee
            .as_ref()
            .map(|t| t.kind().to_string()),
        tee: shared.tee.clone(),
        tpm: shared.tpm.clone(),
        ima: delta_claims.or_else(|| shared.ima.clone()),
        role: bundle.binding.role.to_string(),
        spki_sha256: hex(bundle.binding.spki_sha256),
        ak_sha256: bundle.binding.ak_sha256.map(hex),
        issued_at: bundle.binding.issued_at,
        binding: None,
        freshness: None,
        evidence_sha256: hex(evidence_sha256),
        ima_deferred: shared.ima_deferred.clone(),
        event_log: shared.event_log.clone(),
        event_log_deferred: shared.event_log_deferred.clone(),
        batch: match (&bundle.batch, &signed.batch) {
            (Some(proof), Some(batch)) => Some(BatchInfo {
                size: batch.tree_size,
                index: proof.index,
                root: hex(batch.root),
                shared_verdict_cached: cached,
            }),
            _ => None,
        },
    };

    if v.is_trusted() {
        claims.binding = Some(if expect.exporter.is_some() {
            BindingLevel::Session
        } else {
            BindingLevel::Key
        });
        claims.freshness = Some(if expect.challenge.is_some() {
            Freshness::Challenge
        } else {
            Freshness::TimeWindow {
                age_secs: expect
                    .now
                    .as_secs()
                    .saturating_sub(bundle.binding.issued_at),
                max_age_secs: expect.requirements.max_age_secs,
            }
        });
    }
    v.claims = Claims::Bundle(Box::new(claims));
    v
}

/// Verify the evidence a batch shares (or a single session's, the same way): the TEE report
/// and its report_data, the TPM quote and its qualifying data, the event log and IMA.
fn verify_shared(
    bundle: &Bundle,
    signed: &Signed,
    policy: &Policy,
    expect: &Expectations<'_>,
) -> SharedVerdict {
    let mut v = Verdict::new(Platform::Unknown);
    let mut claims = SharedVerdict {
        checks: Vec::new(),
        simulated: false,
        tee: None,
        tpm: None,
        ima: None,
        event_log: None,
        ima_deferred: None,
        event_log_deferred: None,
    };

    // TEE evidence (completed by the collateral plane when the verifier has one), and its
    // report_data against the expected binding.
    let completed = match (
        &bundle.tee,
        expect
            .requirements
            .collateral
            .as_deref(),
    ) {
        (Some(tee), Some(source)) => {
            let mut tee = tee.clone();
            let steps = source.complete(&mut tee, expect.now);
            v.extend(steps);
            Some(tee)
        }
        _ => None,
    };
    if let Some(tee) = completed
        .as_ref()
        .or(bundle.tee.as_ref())
    {
        let (tee_verdict, report_data) = verify_tee(tee, bundle.tpm.as_ref(), policy, expect);
        v.simulated |= tee_verdict.simulated;
        v.extend(tee_verdict.checks);
        claims.tee = Some(tee_verdict.claims);
        match (report_data, tee.kind()) {
            (Some(presented), _) => {
                let want = signed.report_data;
                v.push(Check::expect(
                    Step::BINDING_REPORT_DATA,
                    presented == want,
                    hex(want),
                    hex(presented),
                ));
            }
            (None, Platform::AzureSnp | Platform::AzureTdx) => {
                // The paravisor owns report_data: the binding goes through the TPM quote, whose
                // AK `verify_tee` checked (`binding.ak_tee`) is the one the HCL report vouches for.
            }
            (None, _) => v.push(Check::fail(
                Step::BINDING_REPORT_DATA,
                hex(signed.report_data),
                "unreadable",
                "the TEE evidence did not parse",
            )),
        }
    }

    // TPM quote, with the qualifying data the verifier computes itself.
    let mut quoted_pcr10 = None;
    if let Some(tpm) = &bundle.tpm {
        let pcrs = tpm.pcr_values();
        quoted_pcr10 = pcrs
            .value(HashAlg::Sha256, 10)
            .map(|p| (HashAlg::Sha256, p.to_vec()));
        let tpm_verdict = crate::tpm::verify(
            &crate::tpm::QuoteInput {
                attest: &tpm.attest,
                signature: &tpm.signature,
                ak_public: &tpm.ak_public,
                nonce: Some(signed.qualifying_data.to_vec()),
                pcrs: Some(pcrs),
            },
            &policy.tpm,
        );
        v.extend(tpm_verdict.checks);
        claims.tpm = Some(tpm_verdict.claims);
    }

    // The firmware event log replays to the quoted boot PCRs.
    if let Some(event_log) = &bundle.event_log {
        v.extend(check_event_log(
            event_log,
            bundle.tpm.as_ref(),
            expect,
            &mut claims,
        ));
    }

    // IMA: the log replays to the quoted PCR 10, and boot_aggregate to the quoted PCRs 0-9.
    if let Some(ima) = &bundle.ima {
        let log = match ima {
            ImaEvidence::Delta { .. } => None,
            ImaEvidence::Log(log) => Some(log.as_slice()),
            ImaEvidence::Digest { len, sha256 } => match expect.ima_log {
                Some(log) => {
                    let covered = usize::try_from(*len)
                        .ok()
                        .and_then(|len| log.get(..len));
                    let digest = covered.map(|c| HashAlg::Sha256.digest(c));
                    let ok = digest.as_deref() == Some(sha256.as_slice());
                    v.push(Check::expect(
                        Step::IMA_LOG_DIGEST,
                        ok,
                        format!("first {len} bytes hash to {}", hex(sha256)),
                        digest.map_or_else(
                            || format!("a log of {} bytes", log.len()),
                            |d| format!("they hash to {}", hex(d)),
                        ),
                    ));
                    Some(log)
                }
                None if expect.defer_ima_log => {
                    claims.ima_deferred = Some(ImaDeferred {
                        len: *len,
                        sha256: hex(sha256),
                    });
                    None
                }
                None => {
                    v.push(Check::fail(
                        Step::IMA_LOG_DIGEST,
                        "the IMA log whose digest the bundle carries",
                        "no log fetched",
                        "fetch the IMA log from the agent to check it",
                    ));
                    None
                }
            },
        };
        if let Some(log) = log {
            // With a quote, `verify_anchored` fails `ima.replay` itself when it lacks sha256
            // PCR 10 and `ima.boot_aggregate` when it lacks the boot PCRs; without one, the
            // log cannot be anchored at all, which a bundle does not accept.
            let quoted_pcrs = bundle
                .tpm
                .as_ref()
                .map(TpmEvidence::pcr_values);
            let quote = match &quoted_pcrs {
                Some(pcrs) => crate::ima::ImaQuote::Present(pcrs),
                None => {
                    v.push(Check::fail(
                        Step::IMA_REPLAY,
                        "a TPM quote of sha256 PCR 10 to anchor the log",
                        "no TPM quote",
                        "the bundle carries an IMA log but no TPM quote to anchor it in",
                    ));
                    crate::ima::ImaQuote::Absent
                }
            };
            let ima_verdict =
                crate::ima::verify_anchored(log, quoted_pcr10.clone(), quote, &policy.ima);
            v.extend(ima_verdict.checks);
            claims.ima = Some(ima_verdict.claims);
            v.extend(check_files(log, expect, &policy.ima));
        }
    }

    claims.simulated = v.simulated;
    claims.checks = v.checks;
    claims
}

/// A re-attestation's IMA delta (`from`, `log`), replayed from this verifier's anchor to the
/// quoted PCR 10 (`ima::verify_delta`), and its files checked. The quote's signature and
/// nonce are the shared part's (`tpm.*`); its PCR values are read here.
fn check_delta(
    bundle: &Bundle,
    from: u64,
    log: &[u8],
    policy: &Policy,
    expect: &Expectations<'_>,
) -> (Vec<Check>, Option<Claims>) {
    let pcrs = bundle
        .tpm
        .as_ref()
        .map(TpmEvidence::pcr_values);
    match (expect.ima_anchor, &pcrs) {
        (None, _) => (
            vec![Check::fail(
                Step::IMA_DELTA,
                "a whole IMA log (this verifier holds no earlier verdict to continue)",
                format!("a delta from entry {from}"),
                "a delta is accepted only on a connection whose earlier evidence this verifier \
                 checked",
            )],
            None,
        ),
        (Some(_), None) => (
            vec![Check::fail(
                Step::IMA_REPLAY,
                "a TPM quote of PCR 10 to anchor the delta",
                "no TPM quote",
                "the bundle carries an IMA delta but no TPM quote",
            )],
            None,
        ),
        (Some(anchor), Some(pcrs)) => {
            let verdict = crate::ima::verify_delta(log, from, anchor, pcrs, &policy.ima);
            let mut checks = verdict.checks;
            checks.extend(check_files(log, expect, &policy.ima));
            (checks, Some(verdict.claims))
        }
    }
}

/// Every file `log` (a whole log or a delta) measured, against the approved files when the
/// requirements name some (`ima.unknown_file`, `ima.changed_file`, `ima.files`); nothing
/// otherwise. An unparsable log adds nothing here: `ima.parse` already failed.
fn check_files(log: &[u8], expect: &Expectations<'_>, policy: &ImaPolicy) -> Vec<Check> {
    let Some(files) = &expect.requirements.files else {
        return Vec::new();
    };
    if log.is_empty() {
        return files.check(&crate::ima::Log::new(HashAlg::Sha1));
    }
    match crate::ima::Log::parse_preferring(log, policy.bank) {
        Ok(log) => files.check(&log),
        Err(_) => Vec::new(),
    }
}

/// `binding.batch_proof` and `binding.batch_inclusion`: the proof has the shape of a path to leaf
/// `index` of a `size`-leaf tree, and leads from the leaf the verifier computes from its own
/// values to the root the bundle names. The batch claims returned carry that root: the report
/// and the quote must sign them (`binding.report_data`, the TPM nonce), so a root not signed
/// fails there.
fn check_batch(v: &mut Verdict, proof: &BatchProof, expected: &BindingClaims) -> BatchClaims {
    let root: Option<[u8; 32]> = proof.root.as_slice().try_into().ok();
    let path: Option<Vec<[u8; 32]>> = (proof.path.len() <= BatchProof::MAX_PATH)
        .then(|| {
            proof
                .path
                .iter()
                .map(|h| h.as_slice().try_into().ok())
                .collect()
        })
        .flatten();
    let leaf = crate::binding::batch_leaf(expected);
    let shape = match (&root, &path) {
        (Some(_), Some(path)) => {
            crate::merkle::root_from_path(&leaf, proof.index, proof.size, path)
                .map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "a root of {} bytes and {} path hashes of {:?} bytes (32 each, at most {})",
            proof.root.len(),
            proof.path.len(),
            proof
                .path
                .iter()
                .map(|h| h.len())
                .collect::<std::collections::BTreeSet<_>>(),
            BatchProof::MAX_PATH
        )),
    };
    let presented_root = root.unwrap_or([0u8; 32]);
    const SHAPE: &str = "an inclusion proof shaped for its leaf index and tree size (RFC 9162)";
    let presented = format!(
        "leaf {} of a {}-leaf tree, {} path hashes",
        proof.index,
        proof.size,
        proof.path.len()
    );
    match shape {
        Err(why) => v.push(Check::fail(
            Step::BINDING_BATCH_PROOF,
            SHAPE,
            presented,
            why,
        )),
        Ok(computed) => {
            v.push(Check::pass(Step::BINDING_BATCH_PROOF, SHAPE, presented));
            let check = Check::expect(
                Step::BINDING_BATCH_INCLUSION,
                computed == presented_root,
                format!("the batch root {}", hex(presented_root)),
                format!(
                    "this session's leaf {} leads to {}",
                    hex(leaf),
                    hex(computed)
                ),
            );
            v.push(if computed == presented_root {
                check
            } else {
                check.with_detail(
                    "the proof is not for this session (another session's leaf, another index, or another tree)",
                )
            });
        }
    }
    BatchClaims {
        ak_sha256: expected.ak_sha256,
        issued_at: expected.issued_at,
        tree_size: proof.size,
        root: presented_root,
    }
}

use crate::eventlog::BOOT_EVENTLOG;
use crate::verdict::Step;

/// `boot.eventlog`: the event log (inline, or fetched and matching the bundle's digest) replays
/// to the quoted PCRs 0–9, in every quoted bank the log carries (one check per bank; a failure
/// names the first differing PCR). Every quoted PCR among 0–9 is compared, so a PCR the log
/// never extends must still hold its initial value. No check when the bundle carries only a
/// digest and no log was given (recorded as `event_log_deferred`).
fn check_event_log(
    evidence: &EventLogEvidence,
    tpm: Option<&TpmEvidence>,
    expect: &Expectations<'_>,
    claims: &mut SharedVerdict,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let bytes: &[u8] = match evidence {
        EventLogEvidence::Log(log) => log,
        EventLogEvidence::Digest { len, sha256 } => {
            let Some(log) = expect.event_log else {
                claims.event_log_deferred = Some(ImaDeferred {
                    len: *len,
                    sha256: hex(sha256),
                });
                return checks;
            };
            let digest = HashAlg::Sha256.digest(log);
            let same = u64::try_from(log.len()).ok() == Some(*len) && digest == sha256.as_slice();
            if !same {
                checks.push(Check::fail(
                    BOOT_EVENTLOG,
                    format!("an event log of {len} bytes hashing to {}", hex(sha256)),
                    format!("{} bytes hashing to {}", log.len(), hex(&digest)),
                    "the event log given is not the one the bundle's digest names",
                ));
                return checks;
            }
            log
        }
    };
    let (boot, summary) = crate::eventlog::check_boot_log(
        bytes,
        tpm.map(TpmEvidence::pcr_values)
            .as_ref(),
    );
    claims.event_log = summary;
    checks.extend(boot);
    checks
}

/// Check each binding claim against the verifier's own knowledge; return the claims the
/// verifier expects the evidence to be bound to (built from its own values).
fn check_binding(
    v: &mut Verdict,
    presented: &BindingClaims,
    tpm: Option<&TpmEvidence>,
    expect: &Expectations<'_>,
) -> BindingClaims {
    v.push(Check::equal(
        Step::BINDING_ROLE,
        &expect.requirements.role,
        &presented.role,
    ));
    let spki = spki_sha256(expect.spki_der);
    v.push(Check::expect(
        Step::BINDING_SPKI,
        presented.spki_sha256 == spki,
        format!("SHA-256 of the TLS key in use {}", hex(spki)),
        hex(presented.spki_sha256),
    ));
    let opt = |o: Option<[u8; 32]>| o.map_or("none".to_owned(), hex);
    v.push(Check::expect(
        Step::BINDING_CHALLENGE,
        presented.challenge == expect.challenge,
        opt(expect.challenge),
        opt(presented.challenge),
    ));
    v.push(Check::expect(
        Step::BINDING_EXPORTER,
        presented.exporter == expect.exporter,
        opt(expect.exporter),
        opt(presented.exporter),
    ));
    let now = expect.now.as_secs();
    let issued = presented.issued_at;
    let too_old = now.saturating_sub(issued) > expect.requirements.max_age_secs;
    let in_future = issued > now.saturating_add(expect.requirements.max_skew_secs);
    v.push(Check::expect(
        Step::BINDING_FRESHNESS,
        !too_old && !in_future,
        format!(
            "issued within {} s before {} (skew {} s)",
            expect.requirements.max_age_secs, expect.now, expect.requirements.max_skew_secs
        ),
        format!("issued at {}", UnixTime::from_secs(issued)),
    ));
    let ak = tpm.map(|t| crate::digest::sha256(&t.ak_public));
    v.push(Check::expect(
        Step::BINDING_AK,
        presented.ak_sha256 == ak,
        format!("SHA-256 of the quoting AK {}", opt(ak)),
        opt(presented.ak_sha256),
    ));
    BindingClaims {
        role: expect.requirements.role.clone(),
        spki_sha256: spki,
        ak_sha256: ak,
        issued_at: issued,
        challenge: expect.challenge,
        exporter: expect.exporter,
    }
}

/// Verify the TEE part; return its verdict and the report_data it carries (when it parsed and
/// the attester owns it). On Azure, where the paravisor owns report_data, the verdict instead
/// ends with `binding.ak_tee`: the bundle's TPM AK must be the AK the HCL report vouches for.
fn verify_tee(
    tee: &TeeEvidence,
    tpm: Option<&TpmEvidence>,
    policy: &Policy,
    expect: &Expectations<'_>,
) -> (Verdict, Option<[u8; 64]>) {
    match tee {
        TeeEvidence::SevSnp { report, .. } => {
            let certs = tee.snp_certs().unwrap_or_default();
            let verdict = crate::snp::verify_bytes(report, &certs, &policy.snp, expect.now);
            (verdict, snp_report_data(report))
        }
        TeeEvidence::Sim { report, .. } => {
            let certs = tee.snp_certs().unwrap_or_default();
            let verdict = crate::snp::verify_simulated(
                report,
                &certs,
                &policy.snp,
                expect.now,
                expect
                    .requirements
                    .insecure_sim_root
                    .as_deref(),
            );
            (verdict, snp_report_data(report))
        }
        TeeEvidence::Tdx { quote, collateral } => {
            let verdict = match collateral {
                Some(c) => crate::tdx::verify_bytes(quote, c, &policy.tdx, expect.now),
                None => {
                    let mut v = Verdict::new(Platform::Tdx);
                    v.push(Check::fail(
                        Step::TEE_COLLATERAL_PARSE,
                        "Intel PCS collateral for the quote",
                        "none in the bundle",
                        "collateral fetching is not implemented yet",
                    ));
                    v
                }
            };
            let report_data = crate::tdx::Quote::parse(quote)
                .ok()
                .map(|q| q.report.report_data);
            (verdict, report_data)
        }
        TeeEvidence::AzureSnp { hcl_report, .. } => {
            let certs = tee.snp_certs().unwrap_or_default();
            // The quote is verified with the bundle's other TPM evidence: not here.
            let (mut verdict, ak) = crate::azure::verify_snp_with_ak(
                hcl_report, &certs, None, policy, expect.now, None,
            );
            verdict.push(ak_tee_check(ak.as_ref(), tpm));
            (verdict, None)
        }
        TeeEvidence::AzureTdx {
            hcl_report,
            quote,
            collateral,
        } => {
            let td_quote = quote
                .as_ref()
                .map(|q| crate::azure::TdQuote {
                    quote: q,
                    collateral: collateral
                        .as_deref()
                        .map(|c| c.as_slice()),
                });
            let (mut verdict, ak) = crate::azure::verify_tdx_with_ak(
                hcl_report,
                td_quote.as_ref(),
                None,
                policy,
                expect.now,
                None,
            );
            verdict.push(ak_tee_check(ak.as_ref(), tpm));
            (verdict, None)
        }
    }
}

/// `binding.ak_tee`: the TPM AK that signed the bundle's quote is the AK the TEE report vouches
/// for (Azure: `HCLAkPub` in the runtime data hashed into the hardware report).
fn ak_tee_check(hcl_ak: Option<&crate::tpm::Public>, tpm: Option<&TpmEvidence>) -> Check {
    const STEP: Step = Step::BINDING_AK_TEE;
    let Some(hcl_ak) = hcl_ak else {
        return Check::fail(
            STEP,
            "the TPM AK is the AK the TEE report vouches for",
            "no AK vouched for",
            "not run: the HCL report does not vouch for an AK",
        );
    };
    let fingerprint = |k: &crate::tpm::Public| {
        crate::azure::ak_fingerprint(k).unwrap_or_else(|| format!("{} key", k.type_name()))
    };
    let expected = format!(
        "the HCL report's AK: {} modulus sha256 {}",
        hcl_ak.type_name(),
        fingerprint(hcl_ak)
    );
    let Some(tpm) = tpm else {
        return Check::fail(
            STEP,
            expected,
            "no TPM evidence",
            "on Azure the TLS key and the challenge are bound through the vTPM quote: a bundle \
             without one is not bound",
        );
    };
    match crate::tpm::Public::parse(&tpm.ak_public) {
        Err(e) => Check::fail(STEP, expected, "unparseable AK", e.to_string()),
        Ok(ak) => {
            let same = crate::azure::same_rsa_key(hcl_ak, &ak);
            let check = Check::expect(
                STEP,
                same,
                expected,
                format!(
                    "the quoting AK: {} modulus sha256 {}",
                    ak.type_name(),
                    fingerprint(&ak)
                ),
            );
            if same {
                check
            } else {
                check.with_detail(
                    "the quote was signed by another key than the vTPM AK the TEE vouches for",
                )
            }
        }
    }
}

fn snp_report_data(report: &[u8]) -> Option<[u8; 64]> {
    crate::snp::AttestationReport::parse(report)
        .ok()
        .map(|r| r.report_data)
}
