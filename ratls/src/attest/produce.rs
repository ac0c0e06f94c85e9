//! Producing an evidence bundle from the attesters: the attestation layer sits above the bundle
//! (the wire format and its verification), so the producer lives here, not in `bundle`.

use serde_bytes::ByteBuf;

use super::{AttestError, EventLogSource, ImaSource, TeeAttester, TpmAttester};
use crate::binding::{batch_leaf, BatchClaims, BindingClaims, QualifyingData, ReportData};
use crate::bundle::{
    BatchProof, Bundle, EventLogEvidence, ImaEvidence, TeeEvidence, TpmEvidence, MAX_BUNDLE_LEN,
    MAX_CERT_BUNDLE_LEN, VERSION,
};
use crate::digest::HashAlg;
use crate::merkle::Tree;

/// What to put in a bundle.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub tee: Option<&'a dyn TeeAttester>,
    pub tpm: Option<&'a dyn TpmAttester>,
    pub ima: Option<&'a dyn ImaSource>,
    /// The firmware event log (`binary_bios_measurements`).
    pub event_log: Option<&'a dyn EventLogSource>,
    /// PCR banks to quote (sha256 always makes sense; sha1 when the policy asks).
    pub banks: &'a [HashAlg],
    /// PCRs to quote: boot PCRs 0–9 and PCR 10 (IMA) by default.
    pub pcrs: &'a [u8],
    /// Carry the IMA log itself (fresh mode), or only its length and digest (certificates).
    /// The event log is inline in fresh mode; in certificate mode it is inline when the bundle
    /// still fits [`MAX_CERT_BUNDLE_LEN`] with it, and a digest otherwise.
    pub ima_inline: bool,
}

/// The PCRs quoted by default: boot chain 0–9 and IMA's PCR 10.
pub const DEFAULT_PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// Produce a bundle bound to `binding` (whose `ak_sha256` is filled in from the TPM's AK).
///
/// The IMA log and the firmware event log are read *after* the quote: the log only grows, so it holds every entry the quoted
/// PCR 10 covers, and the verifier matches the quote against a prefix of it (entries measured in
/// between simply follow the quoted prefix).
pub fn produce(sources: &Sources<'_>, mut binding: BindingClaims) -> Result<Bundle, AttestError> {
    let ak_sha256 = ak_sha256(sources)?;
    binding.ak_sha256 = ak_sha256;
    let shared = evidence(sources, &binding.report_data(), &binding.qualifying_data())?;
    let mut bundle = Bundle {
        version: VERSION,
        tee: shared.tee,
        tpm: shared.tpm,
        ima: shared.ima,
        binding,
        event_log: shared
            .event_log
            .as_ref()
            .map(|log| EventLogEvidence::Log(ByteBuf::from(log.clone()))),
        batch: None,
    };
    if let (false, Some(log)) = (sources.ima_inline, &shared.event_log) {
        if bundle.to_cmw().len() > MAX_CERT_BUNDLE_LEN {
            bundle.event_log = Some(EventLogEvidence::digest_of(log));
        }
    }
    let size = bundle.to_cmw().len();
    if size > MAX_BUNDLE_LEN {
        return Err(AttestError::TooLarge {
            size,
            limit: MAX_BUNDLE_LEN,
        });
    }
    Ok(bundle)
}

/// One TEE report and one TPM quote for many sessions: the Merkle tree of their binding claims
/// ([`batch_leaf`]) is signed through [`BatchClaims`] (AK, `issued_at`, tree size, root), and
/// each session gets a bundle with the shared evidence, its own claims (the AK and `issued_at`
/// set to the batch's) and its inclusion proof, in the order given. IMA and event logs inline
/// (fresh mode). Size caps are the caller's (the fresh exchange checks each bundle).
pub fn produce_batch(
    sources: &Sources<'_>,
    sessions: Vec<BindingClaims>,
    issued_at: u64,
) -> Result<Vec<Bundle>, AttestError> {
    let leaves: Vec<_> = sessions
        .iter()
        .map(batch_leaf)
        .collect();
    let tree = Tree::new(&leaves).ok_or_else(|| AttestError::BadResponse {
        what: "batch",
        why: format!(
            "{} sessions: a batch holds 1 to {} sessions",
            leaves.len(),
            crate::merkle::MAX_TREE_SIZE
        ),
    })?;
    let ak_sha256 = ak_sha256(sources)?;
    let claims = BatchClaims {
        ak_sha256,
        issued_at,
        tree_size: tree.size(),
        root: *tree.root(),
    };
    let shared = evidence(sources, &claims.report_data(), &claims.qualifying_data())?;
    let event_log = shared
        .event_log
        .map(|log| EventLogEvidence::Log(ByteBuf::from(log)));
    let bundles = sessions
        .into_iter()
        .enumerate()
        .map(|(index, mut binding)| {
            binding.ak_sha256 = ak_sha256;
            binding.issued_at = issued_at;
            Bundle {
                version: VERSION,
                tee: shared.tee.clone(),
                tpm: shared.tpm.clone(),
                ima: shared.ima.clone(),
                binding,
                event_log: event_log.clone(),
                batch: Some(BatchProof {
                    size: tree.size(),
                    index: index as u64,
                    root: ByteBuf::from(tree.root().to_vec()),
                    path: tree
                        .path(index)
                        .unwrap_or_default()
                        .iter()
                        .map(|h| ByteBuf::from(h.to_vec()))
                        .collect(),
                }),
            }
        })
        .collect();
    Ok(bundles)
}

/// SHA-256 of the TPM AK's public area, when there is a TPM.
fn ak_sha256(sources: &Sources<'_>) -> Result<Option<[u8; 32]>, AttestError> {
    Ok(sources
        .tpm
        .map(|tpm| tpm.ak_public())
        .transpose()?
        .as_deref()
        .map(crate::digest::sha256))
}

/// What one report and one quote produce, before it is wrapped for a session or a certificate.
struct Shared {
    tee: Option<TeeEvidence>,
    tpm: Option<TpmEvidence>,
    ima: Option<ImaEvidence>,
    event_log: Option<Vec<u8>>,
}

/// The TEE report over `report_data` and the quote over `qualifying_data`, then the logs.
///
/// The TEE and the TPM are two devices and sign the same digests: the report is requested on
/// another thread while the quote runs, so the pair takes the longer of the two instead of
/// their sum (on hardware, tens of milliseconds each). Not on Azure, whose report is read
/// through the TPM itself (`binds_report_data() == false`).
fn evidence(
    sources: &Sources<'_>,
    report_data: &ReportData,
    qualifying_data: &QualifyingData,
) -> Result<Shared, AttestError> {
    let quote = |tpm: &dyn TpmAttester| tpm.quote(qualifying_data, sources.banks, sources.pcrs);
    let (tee, tpm) = match (sources.tee, sources.tpm) {
        (Some(tee), Some(tpm)) if tee.binds_report_data() => std::thread::scope(|scope| {
            let report = scope.spawn(|| tee.attest(report_data));
            let quoted = quote(tpm);
            let report = report.join().unwrap_or_else(|_| {
                Err(AttestError::BadResponse {
                    what: "TEE report",
                    why: "the report thread panicked".into(),
                })
            });
            (report.map(Some), quoted.map(Some))
        }),
        (tee, tpm) => (
            tee.map(|tee| tee.attest(report_data))
                .transpose(),
            tpm.map(quote).transpose(),
        ),
    };
    let (tee, tpm) = (tee?, tpm?);
    let ima = sources
        .ima
        .map(|ima| ima.read_log())
        .transpose()?
        .map(|log| {
            if sources.ima_inline {
                ImaEvidence::Log(ByteBuf::from(log))
            } else {
                ImaEvidence::Digest {
                    len: u64::try_from(log.len()).unwrap_or(u64::MAX),
                    sha256: ByteBuf::from(HashAlg::Sha256.digest(&log)),
                }
            }
        });
    let event_log = sources
        .event_log
        .map(|source| source.read_event_log())
        .transpose()?;
    Ok(Shared {
        tee,
        tpm,
        ima,
        event_log,
    })
}
