//! The Azure confidential-VM attester (feature `azure`): [`AzureTee`] reads the HCL report from
//! the vTPM.
//!
//! On an Azure CVM (SEV-SNP or TDX) the paravisor (HCL) emulates the vTPM and keeps, in NV
//! index [`HCL_REPORT_NV_INDEX`] (0x01400001), its latest attestation report: an SEV-SNP report
//! (or a TDX TD report) whose `report_data` hashes runtime data that carries the vTPM's
//! attestation key. The index is read with the owner's (empty) authorization, with
//! `TPM2_NV_ReadPublic` for its size and `TPM2_NV_Read` in chunks no larger than the TPM's
//! `TPM_PT_NV_BUFFER_MAX`.
//!
//! # User data (NV index 0x01400002)
//!
//! Writing 64 bytes to [`USER_DATA_NV_INDEX`] (0x01400002) makes the paravisor request a fresh
//! hardware report and rewrite 0x01400001, with those bytes (hex) as the runtime data's
//! `user-data`. [`AzureTee::with_user_data`] turns that on: [`attest`](TeeAttester::attest)
//! then writes its `report_data` there first (defining the index, owner-authorized, when it is
//! missing) and waits until the report carries it. It is off by default: the paravisor owns the
//! hardware report's `report_data` either way ([`binds_report_data`](TeeAttester::binds_report_data)
//! is `false`), and the binding this project relies on goes through the vTPM quote's
//! qualifying data, signed by the AK the report vouches for.
//!
//! # The attestation key
//!
//! Azure provisions the vTPM AK (RSA-2048, restricted signing) at persistent handle
//! [`AK_HANDLE`] (0x81000003); it is the key the runtime data lists as `HCLAkPub`. Quote with it
//! through [`TssTpm::open`](super::tpm::TssTpm::open)`(tcti, AK_HANDLE)` (it exists on Azure, so
//! `open` loads it and never creates one); [`AzureTee::ak_public`] reads its public area.
//!
//! The VCEK (SEV-SNP) is not read here: the verifier needs it from AMD KDS or Azure's
//! certificate cache (`--vcek`).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::{CapabilityType, NvIndexType, PropertyTag};
use tss_esapi::handles::{
    NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{CapabilityData, MaxNvBuffer, NvPublicBuilder};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use super::tpm::ReconnectingTpm;
use super::{AttestError, TeeAttester, TeeKind};
use crate::azure::{HclReport, ReportType, MAX_HCL_LEN};
use crate::binding::ReportData;
use crate::bundle::TeeEvidence;
use crate::hexfmt::hex;

/// The NV index holding the HCL report.
pub const HCL_REPORT_NV_INDEX: u32 = 0x0140_0001;
/// The NV index whose write makes the paravisor refresh the HCL report with that user data.
pub const USER_DATA_NV_INDEX: u32 = 0x0140_0002;
/// The persistent handle of Azure's vTPM attestation key (`HCLAkPub`).
pub const AK_HANDLE: u32 = 0x8100_0003;
/// Size of the user data.
pub const USER_DATA_LEN: usize = 64;
/// How long [`AzureTee::attest`] waits, by default, for the report to carry the user data.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

const WHAT: &str = "Azure vTPM HCL report";

/// The HCL report from the vTPM. See the module documentation.
pub struct AzureTee {
    tcti: String,
    kind: TeeKind,
    user_data: bool,
    refresh_timeout: Duration,
    conn: Conn,
}

/// How the vTPM is reached: a connection of our own, or the TPM attester's (one connection for
/// both, which a single-connection TPM such as swtpm needs, and which keeps the quote and the
/// report on the same vTPM).
enum Conn {
    Own(Mutex<Context>),
    Shared(Arc<ReconnectingTpm>),
}

impl fmt::Debug for AzureTee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureTee")
            .field("tcti", &self.tcti)
            .field("kind", &self.kind)
            .field("user_data", &self.user_data)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("shared", &matches!(self.conn, Conn::Shared(_)))
            .finish_non_exhaustive()
    }
}

fn backend(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> AttestError {
    move |error| AttestError::Backend {
        what,
        error: Arc::new(error),
    }
}

fn bad(why: impl Into<String>) -> AttestError {
    AttestError::BadResponse {
        what: WHAT,
        why: why.into(),
    }
}

impl AzureTee {
    /// Connect to the vTPM through `tcti` (`device:/dev/tpmrm0` on Azure) and read the HCL report
    /// once, to learn whether the VM is SEV-SNP or TDX.
    ///
    /// Errors: [`AttestError::Unavailable`] when the TCTI does not answer or NV index 0x01400001
    /// is not defined (not an Azure CVM); [`AttestError::BadResponse`] when it does not hold an
    /// HCL report this crate reads.
    pub fn open(tcti: &str) -> Result<Self, AttestError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|e| AttestError::Unavailable {
            what: "TPM",
            why: format!("invalid TCTI {tcti:?} ({e})"),
        })?;
        let ctx = Context::new(conf).map_err(|e| AttestError::Unavailable {
            what: "TPM",
            why: format!("cannot connect through TCTI {tcti:?}: {e}"),
        })?;
        Self::with_conn(tcti, Conn::Own(Mutex::new(ctx)))
    }

    /// The same, through the connection of `tpm` (the attester quoting with the paravisor's AK
    /// at [`AK_HANDLE`]) instead of a connection of its own.
    pub fn open_shared(tpm: Arc<ReconnectingTpm>) -> Result<Self, AttestError> {
        let tcti = tpm.tcti().to_owned();
        Self::with_conn(&tcti, Conn::Shared(tpm))
    }

    fn with_conn(tcti: &str, conn: Conn) -> Result<Self, AttestError> {
        let mut tee = Self {
            tcti: tcti.to_owned(),
            kind: TeeKind::AzureSnp,
            user_data: false,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            conn,
        };
        let report = tee.read_report()?;
        tee.kind = kind_of(&report)?;
        Ok(tee)
    }

    /// Write the report data to NV index 0x01400002 before each read, so the paravisor refreshes
    /// the report with it as `user-data` (see the module documentation).
    pub fn with_user_data(mut self, on: bool) -> Self {
        self.user_data = on;
        self
    }

    /// How long to wait for a refreshed report after writing the user data.
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// The TCTI string this vTPM was opened with.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The HCL report as NV index 0x01400001 holds it (padding included), unparsed.
    pub fn read_report(&self) -> Result<Vec<u8>, AttestError> {
        self.with_ctx(|ctx| read_nv(ctx, HCL_REPORT_NV_INDEX, MAX_HCL_LEN))
    }

    /// Write `data` to NV index 0x01400002, defining it (64 bytes, owner read/write) when it is
    /// missing. On Azure this makes the paravisor refresh the HCL report.
    pub fn write_user_data(&self, data: &[u8; USER_DATA_LEN]) -> Result<(), AttestError> {
        self.with_ctx(|ctx| write_user_data(ctx, data))
    }

    /// The public area (`TPMT_PUBLIC`) of the vTPM AK at [`AK_HANDLE`].
    pub fn ak_public(&self) -> Result<Vec<u8>, AttestError> {
        self.with_ctx(ak_public)
    }

    /// Run `f` on the vTPM connection.
    fn with_ctx<R>(
        &self,
        f: impl FnOnce(&mut Context) -> Result<R, AttestError>,
    ) -> Result<R, AttestError> {
        match &self.conn {
            // TPM commands are atomic: a panic while holding the lock leaves nothing half-done.
            Conn::Own(ctx) => f(&mut ctx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)),
            Conn::Shared(tpm) => tpm.with_context(f),
        }
    }

    /// Write the user data, then read until the report carries it (or the timeout passes).
    fn refreshed_report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        self.write_user_data(report_data)?;
        let want = hex(report_data);
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let report = self.read_report()?;
            let carried = HclReport::parse(&report)
                .ok()
                .and_then(|r| r.runtime_data().ok())
                .and_then(|d| d.user_data)
                .is_some_and(|u| u.eq_ignore_ascii_case(&want));
            if carried {
                return Ok(report);
            }
            if started.elapsed() >= self.refresh_timeout {
                return Err(bad(format!(
                    "the HCL report does not carry the user data written to 0x01400002 after \
                     {:?}: the paravisor did not refresh it",
                    self.refresh_timeout
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

impl TeeAttester for AzureTee {
    fn kind(&self) -> TeeKind {
        self.kind
    }

    /// The HCL report, exactly as NV index 0x01400001 holds it. `report_data` goes into the
    /// report (as runtime-data `user-data`) only with [`AzureTee::with_user_data`].
    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        let report_data = report_data.as_bytes();
        let report = if self.user_data {
            self.refreshed_report(report_data)?
        } else {
            self.read_report()?
        };
        let hcl_report = report.clone().into();
        Ok(match kind_of(&report)? {
            TeeKind::AzureTdx => TeeEvidence::AzureTdx {
                hcl_report,
                quote: None,
                collateral: None,
            },
            _ => TeeEvidence::AzureSnp {
                hcl_report,
                vcek: None,
                chain: None,
                crl: None,
            },
        })
    }

    fn binds_report_data(&self) -> bool {
        false
    }
}

/// Write `data` to NV index 0x01400002, defining it when missing ([`AzureTee::write_user_data`]).
fn write_user_data(ctx: &mut Context, data: &[u8; USER_DATA_LEN]) -> Result<(), AttestError> {
    let nv = NvIndexTpmHandle::new(USER_DATA_NV_INDEX).map_err(backend("NV index 0x01400002"))?;
    if !nv_defined(ctx, USER_DATA_NV_INDEX)? {
        let attributes = NvIndexAttributesBuilder::new()
            .with_owner_write(true)
            .with_owner_read(true)
            .with_auth_write(true)
            .with_auth_read(true)
            .with_nv_index_type(NvIndexType::Ordinary)
            .build()
            .map_err(backend("NV index 0x01400002 attributes"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(nv)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(USER_DATA_LEN)
            .build()
            .map_err(backend("NV index 0x01400002 public area"))?;
        let defined = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_define_space(Provision::Owner, None, public)
            })
            .map_err(backend("TPM2_NV_DefineSpace (0x01400002)"))?;
        let _ = ctx.tr_close(&mut ObjectHandle::from(defined));
    }
    let mut object = ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(nv)))
        .map_err(backend("NV index 0x01400002"))?;
    let buffer = MaxNvBuffer::try_from(data.to_vec()).map_err(backend("NV user data"))?;
    let result = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_write(NvAuth::Owner, NvIndexHandle::from(object), buffer, 0)
        })
        .map_err(backend("TPM2_NV_Write (0x01400002)"));
    let _ = ctx.tr_close(&mut object);
    result
}

/// The public area of the key at [`AK_HANDLE`] ([`AzureTee::ak_public`]).
fn ak_public(ctx: &mut Context) -> Result<Vec<u8>, AttestError> {
    let handle = PersistentTpmHandle::new(AK_HANDLE).map_err(backend("AK handle"))?;
    let mut object = ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(handle)))
        .map_err(|e| AttestError::Unavailable {
            what: "Azure vTPM attestation key",
            why: format!("nothing usable at {AK_HANDLE:#010x}: {e}"),
        })?;
    let read = ctx
        .execute_without_session(|ctx| ctx.read_public(object.into()))
        .map_err(backend("TPM2_ReadPublic (vTPM AK)"));
    let _ = ctx.tr_close(&mut object);
    let (public, _, _) = read?;
    public
        .marshall()
        .map_err(backend("TPMT_PUBLIC marshalling"))
}

/// AzureSnp or AzureTdx, from a report that must parse.
fn kind_of(report: &[u8]) -> Result<TeeKind, AttestError> {
    let parsed = HclReport::parse(report).map_err(|e| bad(e.to_string()))?;
    Ok(match parsed.report_type() {
        ReportType::Tdx => TeeKind::AzureTdx,
        _ => TeeKind::AzureSnp,
    })
}

/// Whether NV index `index` is defined.
fn nv_defined(ctx: &mut Context, index: u32) -> Result<bool, AttestError> {
    let (data, _) = ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, index, 1))
        .map_err(backend("TPM2_GetCapability(handles)"))?;
    match data {
        CapabilityData::Handles(list) => Ok(list
            .into_inner()
            .into_iter()
            .any(|h| u32::from(h) == index)),
        _ => Err(bad(
            "TPM2_GetCapability(handles) answered another capability",
        )),
    }
}

/// Read a whole NV index with owner authorization: its size from `TPM2_NV_ReadPublic`, then
/// `TPM2_NV_Read` in chunks of at most `TPM_PT_NV_BUFFER_MAX` bytes. Refuses indices over `cap`.
fn read_nv(ctx: &mut Context, index: u32, cap: usize) -> Result<Vec<u8>, AttestError> {
    let nv = NvIndexTpmHandle::new(index).map_err(backend("NV index"))?;
    if !nv_defined(ctx, index)? {
        return Err(AttestError::Unavailable {
            what: WHAT,
            why: format!("NV index {index:#010x} is not defined: not an Azure confidential VM"),
        });
    }
    let mut object = ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(nv)))
        .map_err(backend("NV index (TR_FromTPMPublic)"))?;
    let result = read_nv_object(ctx, NvIndexHandle::from(object), cap);
    let _ = ctx.tr_close(&mut object);
    result
}

fn read_nv_object(
    ctx: &mut Context,
    handle: NvIndexHandle,
    cap: usize,
) -> Result<Vec<u8>, AttestError> {
    let (public, _) = ctx
        .execute_without_session(|ctx| ctx.nv_read_public(handle))
        .map_err(backend("TPM2_NV_ReadPublic"))?;
    let size = public.data_size();
    if size > cap {
        return Err(bad(format!(
            "the NV index holds {size} bytes, over the {cap}-byte cap"
        )));
    }
    let chunk = ctx
        .get_tpm_property(PropertyTag::NvBufferMax)
        .map_err(backend("TPM2_GetCapability(NV_BUFFER_MAX)"))?
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(MaxNvBuffer::MAX_SIZE)
        .clamp(1, MaxNvBuffer::MAX_SIZE);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let want = chunk.min(size - out.len());
        // Both fit in u16: size ≤ cap ≤ 32 KiB and chunk ≤ MaxNvBuffer::MAX_SIZE.
        let (len, offset) = match (u16::try_from(want), u16::try_from(out.len())) {
            (Ok(len), Ok(offset)) => (len, offset),
            _ => return Err(bad("NV offset out of range")),
        };
        let data = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_read(NvAuth::Owner, handle, len, offset)
            })
            .map_err(backend("TPM2_NV_Read"))?;
        if data.is_empty() || data.len() > want {
            return Err(bad(format!(
                "TPM2_NV_Read returned {} bytes for {want}",
                data.len()
            )));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}
