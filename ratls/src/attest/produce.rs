//! Producing an evidence bundle from the attesters: the attestation layer sits above the bundle
//! (the wire format and its verification), so the producer lives here, not in `bundle`.

use serde_bytes::ByteBuf;

use super::{AttestError, EventLogSource, ImaSource, TeeAttester, TpmAttester};
use crate::binding::BindingClaims;
use crate::bundle::{
    Bundle, EventLogEvidence, ImaEvidence, MAX_BUNDLE_LEN, MAX_CERT_BUNDLE_LEN, VERSION,
};
use crate::digest::HashAlg;

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
    let ak_public = sources
        .tpm
        .map(|tpm| tpm.ak_public())
        .transpose()?;
    binding.ak_sha256 = ak_public
        .as_deref()
        .map(crate::digest::sha256);
    let tee = sources
        .tee
        .map(|tee| tee.attest(&binding.report_data()))
        .transpose()?;
    let tpm = sources
        .tpm
        .map(|tpm| tpm.quote(&binding.qualifying_data(), sources.banks, sources.pcrs))
        .transpose()?;
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
    let mut bundle = Bundle {
        version: VERSION,
        tee,
        tpm,
        ima,
        binding,
        event_log: event_log
            .as_ref()
            .map(|log| EventLogEvidence::Log(ByteBuf::from(log.clone()))),
    };
    if let (false, Some(log)) = (sources.ima_inline, &event_log) {
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
