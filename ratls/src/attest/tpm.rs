//! The TPM attester: [`TssTpm`], quotes through tss-esapi (libtss2) on any TCTI.
//!
//! | TCTI string | TPM |
//! | --- | --- |
//! | `device:/dev/tpmrm0` ([`DEFAULT_TCTI`]) | the kernel's resource manager (use it, not `/dev/tpm0`) |
//! | `swtpm:host=127.0.0.1,port=P` | swtpm's TCP socket; its control channel must be on `P + 1` |
//! | `mssim:host=127.0.0.1,port=P` | the Microsoft/IBM simulator protocol |
//!
//! # The attestation key
//!
//! The AK is an ECC NIST P-256 restricted signing key (ECDSA with SHA-256, name algorithm
//! SHA-256, `fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign`,
//! empty password) created under a transient primary made from the TCG ECC SRK template in the
//! storage (owner) hierarchy, then made persistent with `TPM2_EvictControl` at the handle given to
//! [`TssTpm::open`] ([`DEFAULT_AK_HANDLE`] by default). It therefore survives reboots, and every
//! [`TssTpm::open`] reuses it. When the handle is empty the AK is created again (a new key: the
//! verifier learns it through the TEE binding). When the handle holds something that is not a
//! usable AK (a storage key, an EK, a key that needs a policy), `open` fails and leaves it alone:
//! this module never evicts an object it did not create, except through [`TssTpm::remove_ak`].
//!
//! # Blocking
//!
//! Every call talks to the TPM synchronously (a few milliseconds each: a quote is about 4 ms on
//! swtpm, creating the AK about 15 ms). Async callers run them with `tokio::task::spawn_blocking`
//! or on a dedicated thread. One [`TssTpm`] serialises its own calls with a mutex; several
//! processes may share a TPM through the kernel resource manager (`/dev/tpmrm0`).
//!
//! # Consistency of the PCR values
//!
//! A quote carries only the digest of the selected PCRs, so the values travel beside it. They
//! are read right after the quote and their digest is compared with the quote's `pcrDigest`
//! (computed in the order of the quote's own PCR selection); if a PCR was extended in between
//! (another process, the kernel's IMA), the quote is taken again after a short pause (1, 2, 4,
//! 8 ms), at most [`QUOTE_ATTEMPTS`] times, so the values returned always reproduce the signed
//! digest. [`TssTpm::quote_retries`] counts the retakes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle, PersistentTpmHandle,
    TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, EccPoint, EccScheme, HashScheme, PcrSelectionList,
    Public, PublicBuilder, PublicEccParametersBuilder, SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::tss2_esys::{TPML_PCR_SELECTION, TPMS_PCR_SELECTION};
use tss_esapi::Context;

use super::{AttestError, TpmAttester};
use crate::binding::QualifyingData;
use crate::bundle::TpmEvidence;
use crate::digest::HashAlg;
use crate::tpm::structures::{Attest, Public as ParsedPublic};

/// The persistent handle the AK lives at unless told otherwise.
///
/// In the owner's range (`0x81000000`–`0x817FFFFF`). Some platforms provision an ECC EK here;
/// [`TssTpm::open`] then refuses to use it (it is not a signing key) and never evicts it: pass
/// another handle.
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_0002;

/// The `what` of the [`AttestError::Unavailable`] that [`TssTpm::open_existing`] returns when
/// the handle is empty.
pub const AK_MISSING: &str = "TPM attestation key";

/// The kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// Where the TCG EK Credential Profile stores EK certificates, tried in this order: RSA 2048,
/// ECC NIST P-256, ECC NIST P-384 (swtpm's ECC EK).
pub const EK_CERT_NV_INDICES: [u32; 3] = [0x01C0_0002, 0x01C0_000A, 0x01C0_0016];

/// How many times [`TssTpm::quote`] takes the quote again when a PCR changed between the quote
/// and the read of the values.
pub const QUOTE_ATTEMPTS: usize = 5;

/// The highest PCR index a PC-client TPM has.
pub const MAX_PCR: u8 = 23;

/// `TPM2_PCR_Read` returns at most this many digests per call.
const PCRS_PER_READ: usize = 8;

/// An EK certificate larger than this is refused.
const MAX_EK_CERT: usize = 16 * 1024;

/// `TPMA_OBJECT.userWithAuth`: the key can be used with its (empty) password.
const USER_WITH_AUTH: u32 = 1 << 6;

/// PCR values by bank and index.
pub type PcrMap = BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>;

/// A TPM reached through a TCTI, with its attestation key. See the module documentation.
pub struct TssTpm {
    tcti: String,
    ak_handle: u32,
    ak_public: Vec<u8>,
    ak_created: bool,
    ek_cert: Result<Option<Vec<u8>>, AttestError>,
    retries: AtomicU64,
    state: Mutex<State>,
}

struct State {
    ctx: Context,
    ak: KeyHandle,
}

impl fmt::Debug for TssTpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TssTpm")
            .field("tcti", &self.tcti)
            .field("ak_handle", &format_args!("{:#010x}", self.ak_handle))
            .field("ak_created", &self.ak_created)
            .field(
                "ek_cert",
                &self
                    .ek_cert
                    .as_ref()
                    .map(|c| c.as_ref().map(Vec::len)),
            )
            .finish_non_exhaustive()
    }
}

fn backend(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> AttestError {
    move |error| AttestError::Backend {
        what,
        error: Arc::new(error),
    }
}

fn bad(what: &'static str, why: impl Into<String>) -> AttestError {
    AttestError::BadResponse {
        what,
        why: why.into(),
    }
}

/// Parse a TCTI string (`device:PATH`, `swtpm:host=H,port=P`, `mssim:...`, `tabrmd`).
///
/// Errors: [`AttestError::Unavailable`] (`what` = `"TPM"`) naming the string and the forms
/// expected.
pub fn parse_tcti(tcti: &str) -> Result<TctiNameConf, AttestError> {
    TctiNameConf::from_str(tcti).map_err(|e| AttestError::Unavailable {
        what: "TPM",
        why: format!(
            "invalid TCTI {tcti:?} ({e}); expected device:PATH, swtpm:host=H,port=P or \
             mssim:host=H,port=P"
        ),
    })
}

/// A new ESAPI context on the TPM behind `tcti` ([`parse_tcti`]).
///
/// Nothing else is done: the descriptor libtss2 opened is inherited by child processes until
/// [`close_on_exec_inherited`] runs (which [`TssTpm::open`] does), and nothing is loaded.
///
/// Errors: [`AttestError::Unavailable`] (`what` = `"TPM"`) when the string is invalid or
/// nothing answers on it.
pub fn connect(tcti: &str) -> Result<Context, AttestError> {
    Context::new(parse_tcti(tcti)?).map_err(|e| AttestError::Unavailable {
        what: "TPM",
        why: format!("cannot connect through TCTI {tcti:?}: {e}"),
    })
}

impl TssTpm {
    /// Connect through `tcti` and load the AK persisted at `ak_handle`, creating it when the
    /// handle is empty.
    ///
    /// Errors: [`AttestError::Unavailable`] when the TCTI string is invalid or nothing answers
    /// on it; [`AttestError::BadResponse`] when `ak_handle` is not a persistent handle or holds
    /// something other than a usable AK; [`AttestError::Backend`] for a failing TPM command.
    pub fn open(tcti: &str, ak_handle: u32) -> Result<Self, AttestError> {
        Self::open_with(tcti, ak_handle, true)
    }

    /// Connect through `tcti` and load the AK already persisted at `ak_handle`; never create
    /// one. For a key someone else provisions (Azure's paravisor AK at 0x81000003): an empty
    /// handle is [`AttestError::Unavailable`] with `what` = [`AK_MISSING`], and the TPM is left
    /// as it was.
    pub fn open_existing(tcti: &str, ak_handle: u32) -> Result<Self, AttestError> {
        Self::open_with(tcti, ak_handle, false)
    }

    fn open_with(tcti: &str, ak_handle: u32, create: bool) -> Result<Self, AttestError> {
        let mut ctx = connect(tcti)?;
        close_on_exec_inherited();
        let persistent = PersistentTpmHandle::new(ak_handle).map_err(|_| {
            bad(
                "TPM attestation key",
                format!("{ak_handle:#010x} is not a persistent handle (0x81000000..=0x81ffffff)"),
            )
        })?;
        let (ak, ak_public, ak_created) = if persistent_exists(&mut ctx, ak_handle)? {
            let (ak, public) = load_ak(&mut ctx, persistent)?;
            (ak, public, false)
        } else if !create {
            return Err(AttestError::Unavailable {
                what: AK_MISSING,
                why: format!(
                    "no key at persistent handle {ak_handle:#010x} (TPM on {tcti}); it is \
                     provisioned by the platform and never created here"
                ),
            });
        } else {
            match create_ak(&mut ctx, persistent) {
                Ok((ak, public)) => (ak, public, true),
                // Another process may have created it first: use theirs.
                Err(error) => {
                    if persistent_exists(&mut ctx, ak_handle)? {
                        let (ak, public) = load_ak(&mut ctx, persistent)?;
                        (ak, public, false)
                    } else {
                        return Err(error);
                    }
                }
            }
        };
        let ek_cert = read_ek_cert(&mut ctx);
        Ok(Self {
            tcti: tcti.to_owned(),
            ak_handle,
            ak_public,
            ak_created,
            ek_cert,
            retries: AtomicU64::new(0),
            state: Mutex::new(State { ctx, ak }),
        })
    }

    /// The TCTI string this TPM was opened with.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The persistent handle of the AK.
    pub fn ak_handle(&self) -> u32 {
        self.ak_handle
    }

    /// Whether [`open`](Self::open) created the AK (`false`: it was already persisted).
    pub fn ak_created(&self) -> bool {
        self.ak_created
    }

    /// The EK certificate (DER) read from NV at open, `None` when the TPM has none at the
    /// standard indices ([`EK_CERT_NV_INDICES`]); an error when one is defined but unreadable.
    pub fn ek_certificate(&self) -> Result<Option<&[u8]>, AttestError> {
        match &self.ek_cert {
            Ok(cert) => Ok(cert.as_deref()),
            Err(error) => Err(error.clone()),
        }
    }

    /// How many times a quote was taken again because a PCR changed before its values were
    /// read (since open).
    pub fn quote_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// One cheap command (`TPM2_PCR_Read` of PCR 0, sha256 bank): is the TPM still answering?
    pub fn probe(&self) -> Result<(), AttestError> {
        self.read_pcrs(&[HashAlg::Sha256], &[0])
            .map(|_| ())
    }

    /// Read `pcrs` in each of `banks` (`TPM2_PCR_Read`, eight values per call).
    pub fn read_pcrs(&self, banks: &[HashAlg], pcrs: &[u8]) -> Result<PcrMap, AttestError> {
        check_selection(banks, pcrs)?;
        let mut state = self.lock();
        read_pcrs(&mut state.ctx, banks, pcrs)
    }

    /// Extend PCR `index` with one digest per bank (`TPM2_PCR_Extend`); banks not listed are
    /// left alone. Used by the IMA simulator and tests.
    pub fn extend_pcr(&self, index: u8, digests: &[(HashAlg, &[u8])]) -> Result<(), AttestError> {
        if index > MAX_PCR {
            return Err(bad(
                "TPM PCR extend",
                format!("PCR {index} is out of range (0..={MAX_PCR})"),
            ));
        }
        let mut values = DigestValues::new();
        for (bank, digest) in digests {
            if digest.len() != bank.digest_len() {
                return Err(bad(
                    "TPM PCR extend",
                    format!(
                        "a {bank} digest is {} bytes, not {}",
                        digest.len(),
                        bank.digest_len()
                    ),
                ));
            }
            let digest = Digest::try_from(digest.to_vec()).map_err(backend("TPM PCR extend"))?;
            values.set(hashing_algorithm(*bank)?, digest);
        }
        let pcr = PcrHandle::try_from(u32::from(index)).map_err(backend("TPM PCR extend"))?;
        let mut state = self.lock();
        state
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(pcr, values)
            })
            .map_err(backend("TPM2_PCR_Extend"))
    }

    /// Evict the AK from its persistent handle, consuming this handle to the TPM. The next
    /// [`open`](Self::open) creates a new AK.
    pub fn remove_ak(self) -> Result<(), AttestError> {
        let handle = PersistentTpmHandle::new(self.ak_handle)
            .map_err(backend("TPM attestation key handle"))?;
        let mut state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let ak = ObjectHandle::from(state.ak);
        state
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, ak, Persistent::Persistent(handle))
            })
            .map(|_| ())
            .map_err(backend("TPM2_EvictControl (remove the AK)"))
    }

    /// Run `f` on this connection's context, holding the lock (other NV reads on the same TPM:
    /// the Azure HCL report).
    #[cfg(feature = "azure")]
    pub(crate) fn with_context<R>(
        &self,
        f: impl FnOnce(&mut Context) -> Result<R, AttestError>,
    ) -> Result<R, AttestError> {
        f(&mut self.lock().ctx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-written on our side: the TPM
        // commands are atomic.
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl TpmAttester for TssTpm {
    fn ak_public(&self) -> Result<Vec<u8>, AttestError> {
        Ok(self.ak_public.clone())
    }

    /// `TPM2_Quote` over `pcrs` in each of `banks` (in that order), then the values read with
    /// `TPM2_PCR_Read` and checked against the quote's `pcrDigest` (retaken when a PCR changed
    /// in between; see the module docs). `qualifying_data` is at most 64 bytes. The EK
    /// certificate read at open travels along when there is one.
    fn quote(
        &self,
        qualifying_data: &QualifyingData,
        banks: &[HashAlg],
        pcrs: &[u8],
    ) -> Result<TpmEvidence, AttestError> {
        check_selection(banks, pcrs)?;
        let qualifying = Data::try_from(qualifying_data.as_bytes().to_vec())
            .map_err(backend("TPM quote nonce"))?;
        let mut state = self.lock();
        let State { ctx, ak } = &mut *state;
        let mut last_mismatch = String::new();
        for attempt in 0..QUOTE_ATTEMPTS {
            let selection = selection_list(banks, pcrs)?;
            let (attest, signature) = ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(*ak, qualifying.clone(), SignatureScheme::Null, selection)
                })
                .map_err(backend("TPM2_Quote"))?;
            let attest = attest
                .marshall()
                .map_err(backend("TPMS_ATTEST marshalling"))?;
            let signature = signature
                .marshall()
                .map_err(backend("TPMT_SIGNATURE marshalling"))?;
            let values = read_pcrs(ctx, banks, pcrs)?;
            match digest_matches(&attest, &values) {
                Ok(()) => {
                    return Ok(TpmEvidence {
                        attest: attest.into(),
                        signature: signature.into(),
                        ak_public: self.ak_public.clone().into(),
                        pcrs: values
                            .into_iter()
                            .map(|(bank, values)| {
                                let values = values
                                    .into_iter()
                                    .map(|(i, v)| (i, v.into()))
                                    .collect();
                                (bank, values)
                            })
                            .collect(),
                        ek_cert: self
                            .ek_cert
                            .as_ref()
                            .ok()
                            .and_then(|c| c.clone())
                            .map(Into::into),
                    })
                }
                Err(why) => {
                    self.retries
                        .fetch_add(1, Ordering::Relaxed);
                    last_mismatch = why;
                    // Let a burst of extends (IMA measuring a batch of files) finish.
                    if attempt + 1 < QUOTE_ATTEMPTS {
                        backoff(attempt);
                    }
                }
            }
        }
        Err(bad(
            "TPM quote",
            format!(
                "the PCR values kept changing between the quote and the read \
                 ({QUOTE_ATTEMPTS} attempts): {last_mismatch}"
            ),
        ))
    }
}

/// Wait a little longer after each failed attempt (1, 2, 4, 8 ms).
fn backoff(attempt: usize) {
    let ms = 1u64 << attempt.min(3);
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Banks known to the TPM code, PCR indices in range, no duplicates, something selected.
fn check_selection(banks: &[HashAlg], pcrs: &[u8]) -> Result<(), AttestError> {
    let what = "TPM PCR selection";
    if banks.is_empty() || pcrs.is_empty() {
        return Err(bad(what, "no bank or no PCR selected"));
    }
    if let Some(pcr) = pcrs.iter().find(|p| **p > MAX_PCR) {
        return Err(bad(
            what,
            format!("PCR {pcr} is out of range (0..={MAX_PCR})"),
        ));
    }
    for (i, bank) in banks.iter().enumerate() {
        if banks
            .iter()
            .skip(i + 1)
            .any(|b| b == bank)
        {
            return Err(bad(what, format!("bank {bank} is listed twice")));
        }
    }
    Ok(())
}

fn hashing_algorithm(bank: HashAlg) -> Result<HashingAlgorithm, AttestError> {
    HashingAlgorithm::try_from(bank.tpm_alg_id()).map_err(backend("TPM hash algorithm"))
}

/// `pcrs` in `banks`, banks in the given order (tss-esapi's builder keeps them in a hash map,
/// whose order changes from run to run); `sizeofSelect` is 3 (PCRs 0–23). Indices are not
/// checked here: [`MAX_PCR`] bounds what a PC-client TPM has.
pub fn selection_list(banks: &[HashAlg], pcrs: &[u8]) -> Result<PcrSelectionList, AttestError> {
    let mut list = TPML_PCR_SELECTION::default();
    let mut slots = list.pcrSelections.iter_mut();
    for bank in banks {
        let Some(slot) = slots.next() else {
            return Err(bad("TPM PCR selection", "too many banks"));
        };
        let mut select = [0u8; 4];
        for pcr in pcrs {
            if let Some(byte) = select.get_mut(usize::from(pcr / 8)) {
                *byte |= 1 << (pcr % 8);
            }
        }
        *slot = TPMS_PCR_SELECTION {
            hash: bank.tpm_alg_id(),
            sizeofSelect: 3,
            pcrSelect: select,
        };
        list.count += 1;
    }
    PcrSelectionList::try_from(list).map_err(backend("TPM PCR selection"))
}

/// The values of `pcrs` (sorted, duplicates dropped) in each of `banks`: `TPM2_PCR_Read`, at
/// most eight PCRs per call, each answer checked to be exactly the PCRs asked for, with values
/// of the bank's digest size.
///
/// Errors: [`AttestError::Backend`] for a failing command, [`AttestError::BadResponse`] when
/// the TPM returns other PCRs than those asked for (a bank that is not active).
pub fn read_pcrs(ctx: &mut Context, banks: &[HashAlg], pcrs: &[u8]) -> Result<PcrMap, AttestError> {
    let mut wanted = pcrs.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = PcrMap::new();
    for &bank in banks {
        let values = out.entry(bank).or_default();
        for chunk in wanted.chunks(PCRS_PER_READ) {
            let selection = selection_list(&[bank], chunk)?;
            let (_, read, digests) = ctx
                .execute_without_session(|ctx| ctx.pcr_read(selection))
                .map_err(backend("TPM2_PCR_Read"))?;
            // The TPM says which values it returned: PCRs ascending within the bank.
            let mut returned = Vec::new();
            for sel in read.get_selections() {
                if u16::from(sel.hashing_algorithm()) != bank.tpm_alg_id() {
                    return Err(bad("TPM2_PCR_Read", "a value from another bank"));
                }
                for slot in sel.selected() {
                    let bit = u32::from(slot);
                    let index = u8::try_from(bit.trailing_zeros())
                        .map_err(|_| bad("TPM2_PCR_Read", "bad PCR slot"))?;
                    returned.push(index);
                }
            }
            returned.sort_unstable();
            if returned != chunk || digests.len() != chunk.len() {
                return Err(bad(
                    "TPM2_PCR_Read",
                    format!(
                        "asked for {bank} PCRs {chunk:?}, got {returned:?} ({} values); is the \
                         {bank} bank active?",
                        digests.len()
                    ),
                ));
            }
            for (index, digest) in returned.iter().zip(digests.value()) {
                let value = digest.value().to_vec();
                if value.len() != bank.digest_len() {
                    return Err(bad(
                        "TPM2_PCR_Read",
                        format!("{bank} PCR {index} is {} bytes", value.len()),
                    ));
                }
                values.insert(*index, value);
            }
        }
    }
    Ok(out)
}

/// The quote's `pcrDigest` equals the hash of `values` in the quote's selection order.
fn digest_matches(attest: &[u8], values: &PcrMap) -> Result<(), String> {
    let parsed = Attest::parse(attest).map_err(|e| format!("the TPM's quote: {e}"))?;
    let quote = parsed
        .quote()
        .ok_or("the TPM returned another attestation type")?;
    let alg = HashAlg::from_len(quote.pcr_digest.len()).ok_or("unexpected pcrDigest size")?;
    let mut hasher = alg.hasher();
    for sel in &quote.pcr_select {
        let bank = sel
            .bank()
            .ok_or("unknown bank in the quote")?;
        for index in sel.indices() {
            let value = values
                .get(&bank)
                .and_then(|b| b.get(&index))
                .ok_or_else(|| format!("the quote selects {bank} PCR {index}, not read"))?;
            hasher.update(value);
        }
    }
    if hasher.finish() == quote.pcr_digest {
        Ok(())
    } else {
        Err("pcrDigest differs from the values read after the quote".to_owned())
    }
}

/// The persistent handles the TPM lists, starting at `first`.
fn persistent_exists(ctx: &mut Context, handle: u32) -> Result<bool, AttestError> {
    Ok(list_handles(ctx, handle, 1)?.contains(&handle))
}

/// Up to `count` handles from `first` on (`TPM2_GetCapability(TPM_CAP_HANDLES)`).
fn list_handles(ctx: &mut Context, first: u32, count: u32) -> Result<Vec<u32>, AttestError> {
    let (data, _) = ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, first, count))
        .map_err(backend("TPM2_GetCapability(handles)"))?;
    match data {
        CapabilityData::Handles(list) => Ok(list
            .into_inner()
            .into_iter()
            .map(u32::from)
            .collect()),
        _ => Err(bad(
            "TPM2_GetCapability(handles)",
            "the TPM answered another capability",
        )),
    }
}

/// Load the persisted AK and check it is one we can quote with.
fn load_ak(
    ctx: &mut Context,
    handle: PersistentTpmHandle,
) -> Result<(KeyHandle, Vec<u8>), AttestError> {
    let object = ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(handle)))
        .map_err(backend("TPM attestation key (TR_FromTPMPublic)"))?;
    check_ak(ctx, object, handle)
}

/// Read the AK's public area and check it is a restricted signing key usable with its password.
fn check_ak(
    ctx: &mut Context,
    object: ObjectHandle,
    handle: PersistentTpmHandle,
) -> Result<(KeyHandle, Vec<u8>), AttestError> {
    let ak = KeyHandle::from(object);
    let (public, _, _) = ctx
        .execute_without_session(|ctx| ctx.read_public(ak))
        .map_err(backend("TPM2_ReadPublic (attestation key)"))?;
    let bytes = public
        .marshall()
        .map_err(backend("TPMT_PUBLIC marshalling"))?;
    let parsed = ParsedPublic::parse(&bytes)
        .map_err(|e| bad("TPM attestation key", format!("its public area: {e}")))?;
    let raw = u32::from(handle);
    if !parsed.is_restricted_signing() {
        return Err(bad(
            "TPM attestation key",
            format!(
                "the key at {raw:#010x} is not a restricted signing key (an EK or a storage key?); \
                 it was left alone: choose another AK handle"
            ),
        ));
    }
    let problems = parsed.ak_attribute_problems();
    if !problems.is_empty() {
        return Err(bad(
            "TPM attestation key",
            format!(
                "the key at {raw:#010x} was not generated in this TPM or can be duplicated \
                 ({} clear; attributes {:#010x}), so verifiers refuse its quotes; it was left \
                 alone: choose another AK handle",
                problems.join(", "),
                parsed.object_attributes
            ),
        ));
    }
    if parsed.object_attributes & USER_WITH_AUTH == 0 {
        return Err(bad(
            "TPM attestation key",
            format!(
                "the key at {raw:#010x} needs a policy session (userWithAuth is clear); it was \
                 left alone: choose another AK handle"
            ),
        ));
    }
    Ok((ak, bytes))
}

/// The TCG ECC NIST P-256 storage root key template (Provisioning Guidance), with empty unique:
/// `fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | restricted | decrypt`,
/// name algorithm SHA-256, AES-128-CFB for its children, curve NIST P-256.
///
/// The primary key a template makes is a function of the template's bytes and the hierarchy's
/// seed: keys sealed under it (cosmian_fstool's sealed blobs on disk) load only while this
/// template stays byte for byte the same.
pub fn srk_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The storage root key ([`srk_template`]) as a transient primary of the owner hierarchy
/// (`TPM2_CreatePrimary`, empty owner password). The caller flushes it.
///
/// Errors: [`AttestError::Backend`] for the template or the TPM command.
pub fn create_srk(ctx: &mut Context) -> Result<KeyHandle, AttestError> {
    let srk = srk_template().map_err(backend("TPM SRK template"))?;
    Ok(ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, srk, None, None, None, None)
        })
        .map_err(backend("TPM2_CreatePrimary (SRK)"))?
        .key_handle)
}

/// The AK template: ECC NIST P-256, ECDSA-SHA256, restricted signing.
fn ak_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::Null)
                .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(
                    tss_esapi::structures::KeyDerivationFunctionScheme::Null,
                )
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(true)
                .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// Create the AK under a transient SRK and persist it at `handle`.
fn create_ak(
    ctx: &mut Context,
    handle: PersistentTpmHandle,
) -> Result<(KeyHandle, Vec<u8>), AttestError> {
    let ak = ak_template().map_err(backend("TPM AK template"))?;
    let primary = create_srk(ctx)?;
    let result = create_under(ctx, primary, ak, handle);
    // Best effort: a transient object left behind is flushed when the connection closes.
    let _ = ctx.flush_context(primary.into());
    let persisted = result?;
    check_ak(ctx, persisted, handle)
}

fn create_under(
    ctx: &mut Context,
    parent: KeyHandle,
    template: Public,
    handle: PersistentTpmHandle,
) -> Result<ObjectHandle, AttestError> {
    let created = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create(parent, template, None, None, None, None)
        })
        .map_err(backend("TPM2_Create (AK)"))?;
    let transient = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.load(parent, created.out_private, created.out_public)
        })
        .map_err(backend("TPM2_Load (AK)"))?;
    let persisted = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.evict_control(
                Provision::Owner,
                transient.into(),
                Persistent::Persistent(handle),
            )
        })
        .map_err(backend("TPM2_EvictControl (persist the AK)"));
    let _ = ctx.flush_context(transient.into());
    persisted
}

/// The first EK certificate found at [`EK_CERT_NV_INDICES`].
fn read_ek_cert(ctx: &mut Context) -> Result<Option<Vec<u8>>, AttestError> {
    let defined = list_handles(ctx, 0x01C0_0000, 64)?;
    for index in EK_CERT_NV_INDICES {
        if !defined.contains(&index) {
            continue;
        }
        let nv = NvIndexTpmHandle::new(index).map_err(backend("EK certificate NV index"))?;
        // The index's own (empty) password first (`authRead`), then the owner's (`ownerRead`).
        let object = ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(nv)))
            .map_err(backend("EK certificate NV index"))?;
        let own = ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            tss_esapi::abstraction::nv::read_full(
                ctx,
                NvAuth::NvIndex(NvIndexHandle::from(object)),
                nv,
            )
        });
        let cert = match own {
            Ok(cert) => cert,
            Err(_) => ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    tss_esapi::abstraction::nv::read_full(ctx, NvAuth::Owner, nv)
                })
                .map_err(backend("TPM2_NV_Read (EK certificate)"))?,
        };
        if cert.len() > MAX_EK_CERT {
            return Err(bad(
                "EK certificate",
                format!("{} bytes at {index:#010x}", cert.len()),
            ));
        }
        return Ok(Some(trim_der(cert)));
    }
    Ok(None)
}

/// NV indices are often larger than the certificate: keep the DER SEQUENCE only.
fn trim_der(mut bytes: Vec<u8>) -> Vec<u8> {
    let len = match bytes.as_slice() {
        [0x30, 0x82, hi, lo, ..] => Some(4 + (usize::from(*hi) << 8 | usize::from(*lo))),
        [0x30, 0x81, n, ..] => Some(3 + usize::from(*n)),
        [0x30, n, ..] if *n < 0x80 => Some(2 + usize::from(*n)),
        _ => None,
    };
    if let Some(len) = len.filter(|l| *l <= bytes.len()) {
        bytes.truncate(len);
    }
    bytes
}

#[cfg(test)]
mod tests;

/// How often [`ReconnectingTpm`] tries to reconnect, and how long a health probe stays valid.
pub const RECONNECT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// A [`TssTpm`] that survives the TPM going away (a restarted swtpm or vTPM service, a reset
/// resource manager): a command that fails with a transport or backend error drops the
/// connection, and the next call (or [`health`](Self::health)) opens it again through the same
/// TCTI, at most once per [`RECONNECT_INTERVAL`]. Meanwhile every call fails with
/// [`AttestError::Unavailable`] naming the last error, and `health` reports it.
///
/// The AK is loaded again from its persistent handle; if the TPM lost it (a TPM reset to
/// factory state) a new AK is created, which verifiers pinning the old one then refuse (with
/// [`open_existing`](Self::open_existing) nothing is created: the calls keep failing).
pub struct ReconnectingTpm {
    tcti: String,
    ak_handle: u32,
    ak_created: bool,
    /// Whether a missing AK is created (on open and on reconnection).
    create: bool,
    current: Mutex<Connection>,
}

struct Connection {
    tpm: Option<Arc<TssTpm>>,
    last_error: Option<String>,
    last_attempt: std::time::Instant,
    last_probe: Option<std::time::Instant>,
    reconnects: u64,
}

impl fmt::Debug for ReconnectingTpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingTpm")
            .field("tcti", &self.tcti)
            .field("ak_handle", &format_args!("{:#010x}", self.ak_handle))
            .finish_non_exhaustive()
    }
}

impl ReconnectingTpm {
    /// Open the TPM now (it must answer at start); later failures reconnect.
    pub fn open(tcti: &str, ak_handle: u32) -> Result<Self, AttestError> {
        Self::open_with(tcti, ak_handle, true)
    }

    /// [`open`](Self::open) with an AK that must already exist, on open and on every
    /// reconnection ([`TssTpm::open_existing`]): Azure's paravisor AK.
    pub fn open_existing(tcti: &str, ak_handle: u32) -> Result<Self, AttestError> {
        Self::open_with(tcti, ak_handle, false)
    }

    fn open_with(tcti: &str, ak_handle: u32, create: bool) -> Result<Self, AttestError> {
        let tpm = TssTpm::open_with(tcti, ak_handle, create)?;
        Ok(Self {
            tcti: tcti.to_owned(),
            ak_handle,
            create,
            ak_created: tpm.ak_created(),
            current: Mutex::new(Connection {
                tpm: Some(Arc::new(tpm)),
                last_error: None,
                last_attempt: std::time::Instant::now(),
                last_probe: None,
                reconnects: 0,
            }),
        })
    }

    /// Whether the first open created the AK.
    pub fn ak_created(&self) -> bool {
        self.ak_created
    }

    /// The TCTI string this TPM is reached through.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The persistent handle of the AK.
    pub fn ak_handle(&self) -> u32 {
        self.ak_handle
    }

    /// How many times the connection was opened again.
    pub fn reconnects(&self) -> u64 {
        self.lock().reconnects
    }

    /// `Ok` when the TPM answers (probed at most once per [`RECONNECT_INTERVAL`]), else why not.
    pub fn health(&self) -> Result<(), String> {
        let tpm = self
            .connection()
            .map_err(|e| e.to_string())?;
        let due = self
            .lock()
            .last_probe
            .is_none_or(|t| t.elapsed() >= RECONNECT_INTERVAL);
        if due {
            let result = tpm.probe();
            let mut c = self.lock();
            c.last_probe = Some(std::time::Instant::now());
            if let Err(e) = result {
                drop(c);
                self.failed(&tpm, &e);
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every critical section only swaps plain fields.
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the live connection's context ([`TssTpm::with_context`]); a transport or
    /// backend failure drops the connection, as a failed quote does.
    #[cfg(feature = "azure")]
    pub(crate) fn with_context<R>(
        &self,
        f: impl FnOnce(&mut Context) -> Result<R, AttestError>,
    ) -> Result<R, AttestError> {
        let tpm = self.connection()?;
        tpm.with_context(f)
            .inspect_err(|e| self.failed(&tpm, e))
    }

    /// The live connection, reconnecting when it is gone and an attempt is due.
    fn connection(&self) -> Result<Arc<TssTpm>, AttestError> {
        let mut c = self.lock();
        if let Some(tpm) = &c.tpm {
            return Ok(tpm.clone());
        }
        let why = c
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected".to_owned());
        if c.last_attempt.elapsed() < RECONNECT_INTERVAL {
            return Err(AttestError::Unavailable {
                what: "TPM",
                why: format!("{why}; next reconnection attempt within {RECONNECT_INTERVAL:?}"),
            });
        }
        c.last_attempt = std::time::Instant::now();
        // Opening blocks for a few milliseconds; callers are on blocking threads already.
        match TssTpm::open_with(&self.tcti, self.ak_handle, self.create) {
            Ok(tpm) => {
                let tpm = Arc::new(tpm);
                c.tpm = Some(tpm.clone());
                c.last_error = None;
                c.last_probe = None;
                c.reconnects += 1;
                Ok(tpm)
            }
            Err(e) => {
                c.last_error = Some(format!("reconnecting through {}: {e}", self.tcti));
                Err(AttestError::Unavailable {
                    what: "TPM",
                    why: format!("reconnecting through {}: {e}", self.tcti),
                })
            }
        }
    }

    /// Drop `tpm` after `error` unless it was a refusal of our own input.
    fn failed(&self, tpm: &Arc<TssTpm>, error: &AttestError) {
        if !matches!(
            error,
            AttestError::Backend { .. } | AttestError::Unavailable { .. } | AttestError::Io { .. }
        ) {
            return;
        }
        let mut c = self.lock();
        if c.tpm
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, tpm))
        {
            c.tpm = None;
            c.last_error = Some(error.to_string());
            c.last_attempt = std::time::Instant::now();
        }
    }
}

impl TpmAttester for ReconnectingTpm {
    fn ak_public(&self) -> Result<Vec<u8>, AttestError> {
        self.connection()?.ak_public()
    }

    fn quote(
        &self,
        qualifying_data: &QualifyingData,
        banks: &[HashAlg],
        pcrs: &[u8],
    ) -> Result<TpmEvidence, AttestError> {
        let tpm = self.connection()?;
        tpm.quote(qualifying_data, banks, pcrs)
            .inspect_err(|e| self.failed(&tpm, e))
    }
}

/// Mark every descriptor above stderr close-on-exec. libtss2 opens the TPM (the device, or the
/// swtpm/mssim socket) without `O_CLOEXEC`, so every program this process starts would
/// inherit the connection: an application the agent runs could send TPM commands in the
/// agent's session, and a child that outlives the connection keeps a single-connection TPM
/// simulator busy forever (a test hung that way). Everything Rust opens already has the flag;
/// marking a descriptor twice is harmless, and one that closed in between fails with `EBADF`,
/// which is ignored.
pub fn close_on_exec_inherited() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok());
        if let Some(fd) = fd.filter(|fd| *fd > 2) {
            let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }
}
