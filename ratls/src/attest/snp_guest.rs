//! SEV-SNP on the guest side: the host's certificate table, the checks every SNP attester runs on
//! the report the firmware returned, and [`SevGuest`] (feature `sev-guest`), the attester on
//! `/dev/sev-guest`.
//!
//! # The certificate table
//!
//! When the host supplies certificates with an extended guest request (GHCB specification
//! 56421, section 4.1.8.1 "MSG_REPORT_REQ"), it lays them out as a table of 24-byte entries
//! followed by the certificate bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 16 | GUID naming the certificate |
//! | 16 | 4 | offset of the certificate from the start of the table (little-endian) |
//! | 20 | 4 | length of the certificate (little-endian) |
//!
//! terminated by an all-zero entry. The GUIDs are written on the wire in the order their text
//! form is written (RFC 4122 byte order, as `uuid_parse` produces):
//!
//! | GUID | certificate |
//! | --- | --- |
//! | `63da758d-e664-4564-adc5-f4b93be8accd` | VCEK |
//! | `a8074bc2-a25a-483e-aae6-39c045a0b8a1` | VLEK |
//! | `4ab7b379-bbac-4fe4-a02f-05aef327c782` | ASK (ASVK when the report is VLEK-signed) |
//! | `c0b406a4-a803-4952-9743-3fb6014cd0ae` | ARK |
//!
//! Other GUIDs (a CRL, vendor data) may appear and are kept as [`CertKind::Other`]. The kernel
//! hands this table over unchanged: as configfs-tsm's `auxblob` (provider `sev_guest`), or in
//! the buffer of the `SNP_GET_EXT_REPORT` ioctl. It comes from the host, so [`CertTable::parse`]
//! treats it as hostile: every offset and length is checked against the blob, counts and sizes
//! are capped, and each of the four known GUIDs may appear once.
//!
//! # `/dev/sev-guest`
//!
//! [`SevGuest`] asks for a plain report (`SNP_GET_REPORT`) through the `sev` crate. It does not
//! use the crate's extended report: `sev` 8 walks the host's table through raw pointers without
//! checking offsets or lengths against the buffer, so a hostile host could make the agent read
//! (and ship in its evidence) memory outside it. Where the kernel has configfs-tsm (Linux 6.7 and
//! later), [`SnpTsm`](super::tsm::SnpTsm) gets the same certificates safely from `auxblob`;
//! otherwise the VCEK comes from AMD's KDS.

use std::path::Path;
use std::sync::Arc;

use serde_bytes::ByteBuf;

use super::AttestError;
use crate::bundle::TeeEvidence;
use crate::codec::{ParseError, Reader};
use crate::hexfmt::hex;
use crate::pki::Cert;
use crate::snp::AttestationReport;

const WHAT: &str = "SEV-SNP certificate table";

/// `63da758d-e664-4564-adc5-f4b93be8accd`: the VCEK.
pub const GUID_VCEK: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
/// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`: the VLEK.
pub const GUID_VLEK: [u8; 16] = [
    0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1,
];
/// `4ab7b379-bbac-4fe4-a02f-05aef327c782`: the ASK (or ASVK).
pub const GUID_ASK: [u8; 16] = [
    0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82,
];
/// `c0b406a4-a803-4952-9743-3fb6014cd0ae`: the ARK.
pub const GUID_ARK: [u8; 16] = [
    0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae,
];

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;
/// Largest table (entries and certificates) we accept: the kernel caps `auxblob` at 32 KiB and
/// the ioctl buffer at 16 KiB; a VCEK and its chain take about 5 KiB.
pub const MAX_TABLE_LEN: usize = 64 * 1024;
/// Most entries we accept before the terminator.
pub const MAX_ENTRIES: usize = 16;
/// Largest single certificate (AMD's are 1.3–1.7 KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// The firmware reports throttling (the host rate-limits guest requests; the kernel itself waits
/// 2 s between retries): ask the caller to wait this long.
pub const RETRY_AFTER_MS: u64 = 2_000;

/// What a table entry holds, by GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    Vcek,
    Vlek,
    Ask,
    Ark,
    /// A GUID this crate does not interpret (a CRL, vendor data).
    Other,
}

impl CertKind {
    pub fn from_guid(guid: &[u8; 16]) -> Self {
        match *guid {
            GUID_VCEK => Self::Vcek,
            GUID_VLEK => Self::Vlek,
            GUID_ASK => Self::Ask,
            GUID_ARK => Self::Ark,
            _ => Self::Other,
        }
    }

    /// The GUID of a known kind.
    pub fn guid(self) -> Option<[u8; 16]> {
        match self {
            Self::Vcek => Some(GUID_VCEK),
            Self::Vlek => Some(GUID_VLEK),
            Self::Ask => Some(GUID_ASK),
            Self::Ark => Some(GUID_ARK),
            Self::Other => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
            Self::Ask => "ASK",
            Self::Ark => "ARK",
            Self::Other => "other",
        }
    }
}

/// A GUID in its text form (`8-4-4-4-12` lower-case hex digits, bytes in wire order).
pub fn guid_text(guid: &[u8; 16]) -> String {
    let (a, rest) = guid.split_at(4);
    let (b, rest) = rest.split_at(2);
    let (c, rest) = rest.split_at(2);
    let (d, e) = rest.split_at(2);
    format!("{}-{}-{}-{}-{}", hex(a), hex(b), hex(c), hex(d), hex(e))
}

/// One certificate from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    pub guid: [u8; 16],
    pub data: Vec<u8>,
}

impl CertEntry {
    pub fn kind(&self) -> CertKind {
        CertKind::from_guid(&self.guid)
    }
}

/// The host's certificate table, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertTable {
    /// In table order.
    pub entries: Vec<CertEntry>,
}

impl CertTable {
    /// The table a host lays out for a VCEK-signed report: VCEK, ASK, ARK in that order.
    pub fn vcek_chain(vcek: Vec<u8>, ask: Vec<u8>, ark: Vec<u8>) -> Self {
        let entry = |guid, data| CertEntry { guid, data };
        Self {
            entries: vec![
                entry(GUID_VCEK, vcek),
                entry(GUID_ASK, ask),
                entry(GUID_ARK, ark),
            ],
        }
    }

    /// Parse a table as the host laid it out. Bytes after the certificates (page padding) are
    /// allowed; certificate data must lie after the terminator and inside the blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(WHAT, bytes);
        if bytes.len() > MAX_TABLE_LEN {
            return Err(r.too_large("table", bytes.len(), MAX_TABLE_LEN));
        }
        let mut index: Vec<([u8; 16], u32, u32)> = Vec::new();
        loop {
            let guid: [u8; 16] = r.array("entry.guid")?;
            let offset = r.u32_le("entry.offset")?;
            let length = r.u32_le("entry.length")?;
            if guid == [0; 16] {
                if offset != 0 || length != 0 {
                    return Err(r.invalid(
                        "terminator",
                        "an all-zero entry",
                        format!("zero GUID with offset {offset} and length {length}"),
                    ));
                }
                break;
            }
            if index.len() == MAX_ENTRIES {
                return Err(r.too_large("entries", index.len() + 1, MAX_ENTRIES));
            }
            index.push((guid, offset, length));
        }
        let table_end = r.offset();

        let mut entries = Vec::with_capacity(index.len());
        for (guid, offset, length) in index {
            let kind = CertKind::from_guid(&guid);
            let offset = usize::try_from(offset).unwrap_or(usize::MAX);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if offset < table_end {
                return Err(ParseError::InvalidValue {
                    what: WHAT,
                    field: "entry.offset",
                    offset: table_end,
                    expected: format!("at least {table_end} (after the terminator)"),
                    presented: format!("{offset} for {} {}", kind.name(), guid_text(&guid)),
                });
            }
            if length == 0 {
                return Err(ParseError::InvalidValue {
                    what: WHAT,
                    field: "entry.length",
                    offset: table_end,
                    expected: "a non-empty certificate".into(),
                    presented: format!("0 for {} {}", kind.name(), guid_text(&guid)),
                });
            }
            if length > MAX_CERT_LEN {
                return Err(r.too_large("certificate", length, MAX_CERT_LEN));
            }
            if kind != CertKind::Other
                && entries
                    .iter()
                    .any(|e: &CertEntry| e.guid == guid)
            {
                return Err(ParseError::InvalidValue {
                    what: WHAT,
                    field: "entry.guid",
                    offset: table_end,
                    expected: "each of VCEK, VLEK, ASK and ARK at most once".into(),
                    presented: format!("a second {}", kind.name()),
                });
            }
            let mut data = Reader::new(WHAT, bytes);
            data.skip(offset, "certificate")?;
            let data = data.take(length, "certificate")?;
            entries.push(CertEntry {
                guid,
                data: data.to_vec(),
            });
        }
        Ok(Self { entries })
    }

    /// Lay the table out as a host does: the entries, the all-zero terminator, then each
    /// certificate in entry order. For fixtures and tests.
    pub fn encode(&self) -> Vec<u8> {
        let mut offset = (self.entries.len() + 1) * ENTRY_LEN;
        let mut out = Vec::new();
        for entry in &self.entries {
            out.extend_from_slice(&entry.guid);
            out.extend_from_slice(
                &u32::try_from(offset)
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            out.extend_from_slice(
                &u32::try_from(entry.data.len())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            offset += entry.data.len();
        }
        out.extend_from_slice(&[0; ENTRY_LEN]);
        for entry in &self.entries {
            out.extend_from_slice(&entry.data);
        }
        out
    }

    /// The first certificate of a kind.
    pub fn get(&self, kind: CertKind) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.kind() == kind)
            .map(|e| e.data.as_slice())
    }
}

/// The certificates of a table in the form [`TeeEvidence::SevSnp`] carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCerts {
    /// DER.
    pub vcek: Option<Vec<u8>>,
    /// DER.
    pub vlek: Option<Vec<u8>>,
    /// The ASK (or ASVK) then the ARK, PEM, as AMD's KDS serves `cert_chain`; only when the host
    /// supplied both (otherwise the verifier uses its built-in chain).
    pub chain: Option<Vec<u8>>,
}

impl HostCerts {
    /// Each known certificate must be one X.509 certificate (DER or PEM); it is not verified
    /// here (that is the verifier's job), only normalised.
    pub fn from_table(table: &CertTable) -> Result<Self, AttestError> {
        let der = |kind: CertKind| -> Result<Option<Vec<u8>>, AttestError> {
            table
                .get(kind)
                .map(|bytes| {
                    Cert::from_der_or_pem(bytes)
                        .map(|c| c.der().to_vec())
                        .map_err(|e| AttestError::BadResponse {
                            what: "host certificate table",
                            why: format!("the {} entry is not a certificate: {e}", kind.name()),
                        })
                })
                .transpose()
        };
        let vcek = der(CertKind::Vcek)?;
        let vlek = der(CertKind::Vlek)?;
        let ask = der(CertKind::Ask)?;
        let ark = der(CertKind::Ark)?;
        let chain = match (ask, ark) {
            (Some(ask), Some(ark)) => {
                let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
                let mut chain = pem::encode_config(&pem::Pem::new("CERTIFICATE", ask), config);
                chain.push_str(&pem::encode_config(
                    &pem::Pem::new("CERTIFICATE", ark),
                    config,
                ));
                Some(chain.into_bytes())
            }
            _ => None,
        };
        Ok(Self { vcek, vlek, chain })
    }
}

/// Check a report the firmware returned for `report_data` and wrap it as evidence.
///
/// The report must parse (raw, 1184 bytes), carry `report_data`, and — when a VMPL was asked
/// for — say it was made at that VMPL. `cert_table` is the host's certificate table when there
/// is one (an empty table means none). Nothing is verified here: a report that passes these
/// checks can still fail verification (signature, chain, TCB); the attester never pretends.
pub fn evidence(
    report_data: &[u8; 64],
    report: Vec<u8>,
    vmpl: Option<u32>,
    cert_table: Option<&[u8]>,
) -> Result<TeeEvidence, AttestError> {
    let parsed = AttestationReport::parse_raw(&report).map_err(|e| AttestError::BadResponse {
        what: "SEV-SNP report",
        why: e.to_string(),
    })?;
    if parsed.report_data != *report_data {
        return Err(AttestError::BadResponse {
            what: "SEV-SNP report",
            why: format!(
                "report_data {} is not the requested {}",
                hex(parsed.report_data),
                hex(report_data)
            ),
        });
    }
    if let Some(vmpl) = vmpl {
        if parsed.vmpl != vmpl {
            return Err(AttestError::BadResponse {
                what: "SEV-SNP report",
                why: format!("made at VMPL {}, not the requested {vmpl}", parsed.vmpl),
            });
        }
    }
    let certs = match cert_table {
        Some(bytes) if !bytes.is_empty() => {
            let table = CertTable::parse(bytes).map_err(|e| AttestError::BadResponse {
                what: "host certificate table",
                why: e.to_string(),
            })?;
            HostCerts::from_table(&table)?
        }
        _ => HostCerts::default(),
    };
    Ok(TeeEvidence::SevSnp {
        report: ByteBuf::from(report),
        vcek: certs.vcek.map(ByteBuf::from),
        vlek: certs.vlek.map(ByteBuf::from),
        chain: certs.chain.map(ByteBuf::from),
        crl: None,
    })
}

/// The SEV-SNP guest device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// `Ok` when `path` exists; [`AttestError::Unavailable`] when it does not.
pub fn check_device(path: &Path) -> Result<(), AttestError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AttestError::Unavailable {
            what: "SEV-SNP guest device",
            why: format!(
                "{} does not exist (not an SEV-SNP guest, or the sev-guest driver is not loaded)",
                path.display()
            ),
        }),
        Err(e) => Err(AttestError::Io {
            what: "SEV-SNP guest device",
            path: path.display().to_string(),
            error: Arc::new(e),
        }),
    }
}

#[cfg(all(feature = "sev-guest", target_os = "linux"))]
pub use self::device::{map_firmware_error, SevGuest};

#[cfg(all(feature = "sev-guest", target_os = "linux"))]
mod device {
    use std::path::Path;
    use std::sync::{Arc, Mutex, PoisonError};

    use sev::error::{FirmwareError, UserApiError, VmmError};
    use sev::firmware::guest::Firmware;

    use super::{check_device, evidence, RETRY_AFTER_MS, SEV_GUEST_DEVICE};
    use crate::attest::{AttestError, TeeAttester, TeeKind};
    use crate::binding::ReportData;
    use crate::bundle::TeeEvidence;

    const WHAT: &str = "SEV-SNP guest request (/dev/sev-guest)";

    /// SEV-SNP reports through `/dev/sev-guest` (`SNP_GET_REPORT`).
    ///
    /// The evidence carries the report only; see the [module documentation](super) for why the
    /// extended report is not requested.
    #[derive(Debug)]
    pub struct SevGuest {
        firmware: Mutex<Firmware>,
        vmpl: u32,
    }

    impl SevGuest {
        /// Open `/dev/sev-guest`; [`AttestError::Unavailable`] when the machine has none.
        pub fn open() -> Result<Self, AttestError> {
            check_device(Path::new(SEV_GUEST_DEVICE))?;
            let firmware = Firmware::open().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => AttestError::Unavailable {
                    what: "SEV-SNP guest device",
                    why: format!("{SEV_GUEST_DEVICE}: {e}"),
                },
                _ => AttestError::Io {
                    what: "SEV-SNP guest device",
                    path: SEV_GUEST_DEVICE.to_owned(),
                    error: Arc::new(e),
                },
            })?;
            Ok(Self {
                firmware: Mutex::new(firmware),
                vmpl: 0,
            })
        }

        /// Ask for reports at this VMPL (0–3, at least the guest's own). The default is 0, the
        /// VMPL the verifier's default policy expects (the `sev` crate alone would ask for 1).
        pub fn with_vmpl(mut self, vmpl: u32) -> Self {
            self.vmpl = vmpl;
            self
        }
    }

    impl TeeAttester for SevGuest {
        fn kind(&self) -> TeeKind {
            TeeKind::SevSnp
        }

        fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
            let report_data = report_data.as_bytes();
            let report = {
                let mut firmware = self
                    .firmware
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                firmware
                    .get_report(None, Some(*report_data), Some(self.vmpl))
                    .map_err(map_firmware_error)?
            };
            evidence(report_data, report, Some(self.vmpl), None)
        }
    }

    fn busy(e: &std::io::Error) -> bool {
        matches!(
            e.kind(),
            std::io::ErrorKind::ResourceBusy | std::io::ErrorKind::WouldBlock
        )
    }

    /// The host's throttling (`SW_EXITINFO2` upper half 2, or `EBUSY`/`EAGAIN` from the driver)
    /// becomes [`AttestError::RateLimited`]; every other failure is an opaque backend error.
    pub fn map_firmware_error(e: UserApiError) -> AttestError {
        let rate_limited = match &e {
            UserApiError::VmmError(VmmError::RateLimitRetryRequest) => true,
            UserApiError::IOError(io) | UserApiError::FirmwareError(FirmwareError::IoError(io)) => {
                busy(io)
            }
            _ => false,
        };
        if rate_limited {
            AttestError::RateLimited {
                what: WHAT,
                retry_after_ms: RETRY_AFTER_MS,
            }
        } else {
            AttestError::Backend {
                what: WHAT,
                error: Arc::new(e),
            }
        }
    }
}

#[cfg(test)]
mod tests;
