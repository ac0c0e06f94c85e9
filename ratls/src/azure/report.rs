//! The HCL report: the bytes Azure's paravisor (HCL) writes to vTPM NV index 0x01400001.
//!
//! Layout (all integers little-endian; Microsoft's `ATTESTATION_REPORT`, as OpenHCL and
//! `az-cvm-vtpm` define it):
//!
//! ```text
//! 0x000  header (32, not measured)
//!          signature u32 = "HCLA", version u32 (2), report_size u32, request_type u32
//!          (2 = AK certificate request), status u32 (0), reserved u32 × 3 (zero)
//! 0x020  hardware report (1184): an SEV-SNP report (1184), or a TDX TDREPORT (1024) + 160 zero
//! 0x4C0  runtime-data header (20, not measured)
//!          data_size u32 (= 20 + var_data_size), version u32 (1 or 2), report_type u32
//!          (2 = SNP, 4 = TDX), hash_type u32 (1 = SHA-256, 2 = SHA-384, 3 = SHA-512),
//!          var_data_size u32
//! 0x4D4  var_data (var_data_size bytes): the runtime data, JSON
//! then   zero padding up to the size of the NV index
//! ```
//!
//! `report_size` counts everything up to the end of `var_data`. The hardware report's
//! `report_data` holds `H(var_data)` (H given by `hash_type`) followed by zeros: that, and not the
//! unmeasured headers, is what makes the runtime data (and the vTPM AK it carries) trustworthy.
//!
//! The parser accepts exactly one encoding of each report: the header fields have the one value
//! this crate understands, reserved fields and padding are zero, and the sizes agree. So a report
//! that differs in any byte from a genuine one (beyond the amount of zero padding) never parses as
//! the same report.

use crate::azure::runtime::RuntimeData;
use crate::codec::{ParseError, Reader};
use crate::digest::HashAlg;
use crate::snp::report::AttestationReport;

/// `"HCLA"`: the first four bytes of every HCL report.
pub const SIGNATURE: [u8; 4] = *b"HCLA";
/// The header version this crate reads.
pub const HEADER_VERSION: u32 = 2;
/// The request type of the report in NV index 0x01400001 (an AK certificate request).
pub const REQUEST_TYPE_AK_CERT: u32 = 2;
/// Size of the header.
pub const HEADER_LEN: usize = 32;
/// Size of the hardware-report area (the size of an SEV-SNP report, the larger of the two).
pub const HW_REPORT_LEN: usize = 1184;
/// Size of a TDX `TDREPORT_STRUCT`.
pub const TD_REPORT_LEN: usize = 1024;
/// Offset of the runtime-data header.
pub const RUNTIME_HEADER_OFFSET: usize = HEADER_LEN + HW_REPORT_LEN;
/// Size of the runtime-data header.
pub const RUNTIME_HEADER_LEN: usize = 20;
/// Offset of the runtime data (`var_data`).
pub const VAR_DATA_OFFSET: usize = RUNTIME_HEADER_OFFSET + RUNTIME_HEADER_LEN;
/// `report_type` of an SEV-SNP report.
pub const REPORT_TYPE_SNP: u32 = 2;
/// `report_type` of a TDX TD report.
pub const REPORT_TYPE_TDX: u32 = 4;
/// The largest HCL report (padding included) this crate reads. Azure's NV index is a few KiB.
pub const MAX_HCL_LEN: usize = 32 * 1024;
/// The largest runtime data this crate reads.
pub const MAX_VAR_DATA_LEN: usize = MAX_HCL_LEN - VAR_DATA_OFFSET;

const WHAT: &str = "HCL report";
const WHAT_TD: &str = "TDX TDREPORT";

/// The unmeasured header in front of the hardware report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HclHeader {
    pub version: u32,
    /// Bytes from the start of the report to the end of the runtime data.
    pub report_size: u32,
    pub request_type: u32,
    pub status: u32,
}

/// The unmeasured header in front of the runtime data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeDataHeader {
    /// 20 + `var_data_size`.
    pub data_size: u32,
    pub version: u32,
    pub report_type: ReportType,
    /// The hash of the runtime data that `report_data` holds.
    pub hash: HashAlg,
    pub var_data_size: u32,
}

/// Which hardware report the HCL report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReportType {
    /// An AMD SEV-SNP attestation report (`report_type` 2).
    Snp,
    /// An Intel TDX TD report (`report_type` 4).
    Tdx,
}

impl ReportType {
    /// `snp` or `tdx`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        }
    }

    /// The `report_type` value.
    pub const fn id(self) -> u32 {
        match self {
            Self::Snp => REPORT_TYPE_SNP,
            Self::Tdx => REPORT_TYPE_TDX,
        }
    }
}

impl core::fmt::Display for ReportType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The hardware report inside an HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HwReport {
    Snp(Box<AttestationReport>),
    Tdx(Box<TdReport>),
}

impl HwReport {
    /// The 64-byte report data (`REPORT_DATA` / `REPORTDATA`).
    pub fn report_data(&self) -> [u8; 64] {
        match self {
            Self::Snp(r) => r.report_data,
            Self::Tdx(r) => r.report_data,
        }
    }
}

/// A TDX `TDREPORT_STRUCT` (Intel TDX module ABI): what the paravisor got from `TDG.MR.REPORT`.
///
/// It is MACed with a key only the CPU holds, so a verifier cannot check it: it becomes
/// trustworthy only through a TDX quote over it (made by the host's quoting enclave), whose TD
/// report body must carry the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// REPORTTYPE: type (0x81 = TDX), subtype, version, reserved.
    pub report_type: [u8; 4],
    pub cpu_svn: [u8; 16],
    pub tee_tcb_info_hash: [u8; 48],
    pub tee_info_hash: [u8; 48],
    pub report_data: [u8; 64],
    pub mac: [u8; 32],
    /// TEE_TCB_INFO.VALID.
    pub tee_tcb_valid: [u8; 8],
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    /// TEE_TCB_INFO.ATTRIBUTES (the quote's `seam_attributes`).
    pub seam_attributes: [u8; 8],
    /// TDX 1.5 (zero on TDX 1.0).
    pub tee_tcb_svn2: [u8; 16],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    /// TDX 1.5 (zero on TDX 1.0): the quote's `mr_service_td`.
    pub servtd_hash: [u8; 48],
}

impl TdReport {
    /// The TDX TEE type in `report_type[0]`.
    pub const TEE_TYPE_TDX: u8 = 0x81;

    /// Parse a 1024-byte `TDREPORT_STRUCT`; reserved fields must be zero.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(WHAT_TD, bytes);
        // REPORTMACSTRUCT (256).
        let report_type: [u8; 4] = r.array("report_type")?;
        if report_type[0] != Self::TEE_TYPE_TDX {
            return Err(r.unsupported(
                "report_type",
                format!("{:#04x}", report_type[0]),
                "0x81 (TDX)",
            ));
        }
        zero(&mut r, 12, "reserved1")?;
        let cpu_svn = r.array("cpu_svn")?;
        let tee_tcb_info_hash = r.array("tee_tcb_info_hash")?;
        let tee_info_hash = r.array("tee_info_hash")?;
        let report_data = r.array("report_data")?;
        zero(&mut r, 32, "reserved2")?;
        let mac = r.array("mac")?;
        // TEE_TCB_INFO (239) and 17 reserved bytes.
        let tee_tcb_valid = r.array("tee_tcb_info.valid")?;
        let tee_tcb_svn = r.array("tee_tcb_info.tee_tcb_svn")?;
        let mr_seam = r.array("tee_tcb_info.mr_seam")?;
        let mr_signer_seam = r.array("tee_tcb_info.mr_signer_seam")?;
        let seam_attributes = r.array("tee_tcb_info.attributes")?;
        let tee_tcb_svn2 = r.array("tee_tcb_info.tee_tcb_svn2")?;
        zero(&mut r, 95, "tee_tcb_info.reserved")?;
        zero(&mut r, 17, "reserved3")?;
        // TDINFO (512).
        let td_attributes = r.array("td_info.attributes")?;
        let xfam = r.array("td_info.xfam")?;
        let mr_td = r.array("td_info.mr_td")?;
        let mr_config_id = r.array("td_info.mr_config_id")?;
        let mr_owner = r.array("td_info.mr_owner")?;
        let mr_owner_config = r.array("td_info.mr_owner_config")?;
        let rtmr = [
            r.array("td_info.rtmr0")?,
            r.array("td_info.rtmr1")?,
            r.array("td_info.rtmr2")?,
            r.array("td_info.rtmr3")?,
        ];
        let servtd_hash = r.array("td_info.servtd_hash")?;
        zero(&mut r, 64, "td_info.reserved")?;
        r.finish()?;
        Ok(Self {
            report_type,
            cpu_svn,
            tee_tcb_info_hash,
            tee_info_hash,
            report_data,
            mac,
            tee_tcb_valid,
            tee_tcb_svn,
            mr_seam,
            mr_signer_seam,
            seam_attributes,
            tee_tcb_svn2,
            td_attributes,
            xfam,
            mr_td,
            mr_config_id,
            mr_owner,
            mr_owner_config,
            rtmr,
            servtd_hash,
        })
    }
}

/// A parsed HCL report, borrowing the runtime data from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    pub header: HclHeader,
    pub hw_report: HwReport,
    pub runtime_header: RuntimeDataHeader,
    /// The runtime data (JSON), exactly as hashed into `report_data`.
    pub var_data: &'a [u8],
    /// Zero bytes after `report_size` (the rest of the NV index).
    pub padding: usize,
}

impl<'a> HclReport<'a> {
    /// Parse an HCL report (see the module docs for the layout and what is refused).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_HCL_LEN {
            return Err(ParseError::TooLarge {
                what: WHAT,
                field: "report",
                size: bytes.len(),
                limit: MAX_HCL_LEN,
            });
        }
        let mut r = Reader::new(WHAT, bytes);
        let signature: [u8; 4] = r.array("signature")?;
        if signature != SIGNATURE {
            return Err(r.invalid(
                "signature",
                "48434c41 (\"HCLA\")",
                crate::hexfmt::hex(signature),
            ));
        }
        let version = r.u32_le("version")?;
        if version != HEADER_VERSION {
            return Err(r.unsupported("version", version.to_string(), "2"));
        }
        let report_size = r.u32_le("report_size")?;
        let request_type = r.u32_le("request_type")?;
        if request_type != REQUEST_TYPE_AK_CERT {
            return Err(r.unsupported(
                "request_type",
                request_type.to_string(),
                "2 (AK certificate request: the report in vTPM NV index 0x01400001)",
            ));
        }
        let status = r.u32_le("status")?;
        if status != 0 {
            return Err(r.invalid("status", "0 (success)", status.to_string()));
        }
        zero(&mut r, 12, "reserved")?;
        let hw = r.take(HW_REPORT_LEN, "hw_report")?;

        let data_size = r.u32_le("runtime_data.data_size")?;
        let rd_version = r.u32_le("runtime_data.version")?;
        if !(1..=2).contains(&rd_version) {
            return Err(r.unsupported("runtime_data.version", rd_version.to_string(), "1, 2"));
        }
        let report_type = match r.u32_le("runtime_data.report_type")? {
            REPORT_TYPE_SNP => ReportType::Snp,
            REPORT_TYPE_TDX => ReportType::Tdx,
            other => {
                return Err(r.unsupported(
                    "runtime_data.report_type",
                    other.to_string(),
                    "2 (SEV-SNP), 4 (TDX)",
                ))
            }
        };
        let hash = match r.u32_le("runtime_data.hash_type")? {
            1 => HashAlg::Sha256,
            2 => HashAlg::Sha384,
            3 => HashAlg::Sha512,
            other => {
                return Err(r.unsupported(
                    "runtime_data.hash_type",
                    other.to_string(),
                    "1 (SHA-256), 2 (SHA-384), 3 (SHA-512)",
                ))
            }
        };
        let var_data_size = r.u32_le("runtime_data.var_data_size")?;
        let var_len = usize::try_from(var_data_size).unwrap_or(usize::MAX);
        if var_len > MAX_VAR_DATA_LEN {
            return Err(r.too_large("runtime_data.var_data_size", var_len, MAX_VAR_DATA_LEN));
        }
        // Both sizes are u32 and var_len ≤ 32 KiB, so these sums cannot overflow.
        let want_data_size = RUNTIME_HEADER_LEN + var_len;
        if usize::try_from(data_size).ok() != Some(want_data_size) {
            return Err(r.invalid(
                "runtime_data.data_size",
                format!("{want_data_size} (20 + var_data_size)"),
                data_size.to_string(),
            ));
        }
        let want_report_size = VAR_DATA_OFFSET + var_len;
        if usize::try_from(report_size).ok() != Some(want_report_size) {
            return Err(r.invalid(
                "report_size",
                format!("{want_report_size} (0x4d4 + var_data_size)"),
                report_size.to_string(),
            ));
        }
        let var_data = r.take(var_len, "var_data")?;
        let padding = r.rest();
        if let Some(at) = padding.iter().position(|b| *b != 0) {
            return Err(ParseError::InvalidValue {
                what: WHAT,
                field: "padding",
                offset: want_report_size + at,
                expected: "zero bytes after report_size".into(),
                presented: "a non-zero byte".into(),
            });
        }

        let hw_report = match report_type {
            ReportType::Snp => HwReport::Snp(Box::new(AttestationReport::parse_raw(hw)?)),
            ReportType::Tdx => {
                let mut hr = Reader::new(WHAT, hw);
                let td = TdReport::parse(hr.take(TD_REPORT_LEN, "hw_report.td_report")?)?;
                if hr.rest().iter().any(|b| *b != 0) {
                    return Err(ParseError::InvalidValue {
                        what: WHAT,
                        field: "hw_report.padding",
                        offset: HEADER_LEN + TD_REPORT_LEN,
                        expected: "zero bytes after the 1024-byte TD report".into(),
                        presented: "a non-zero byte".into(),
                    });
                }
                HwReport::Tdx(Box::new(td))
            }
        };
        Ok(Self {
            header: HclHeader {
                version,
                report_size,
                request_type,
                status,
            },
            hw_report,
            runtime_header: RuntimeDataHeader {
                data_size,
                version: rd_version,
                report_type,
                hash,
                var_data_size,
            },
            var_data,
            padding: padding.len(),
        })
    }

    /// SNP or TDX.
    pub fn report_type(&self) -> ReportType {
        self.runtime_header.report_type
    }

    /// `H(var_data)` with the hash the runtime-data header names.
    pub fn var_data_digest(&self) -> Vec<u8> {
        self.runtime_header
            .hash
            .digest(self.var_data)
    }

    /// The `report_data` a genuine report carries: `H(var_data)` then zeros up to 64 bytes.
    pub fn expected_report_data(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (dst, src) in out
            .iter_mut()
            .zip(self.var_data_digest())
        {
            *dst = src;
        }
        out
    }

    /// Whether the hardware report's `report_data` vouches for the runtime data.
    pub fn runtime_data_bound(&self) -> bool {
        self.hw_report.report_data() == self.expected_report_data()
    }

    /// Parse the runtime data (JSON).
    pub fn runtime_data(&self) -> Result<RuntimeData, ParseError> {
        RuntimeData::parse(self.var_data)
    }
}

/// Whether `bytes` start like an HCL report (`"HCLA"`).
pub fn looks_like_hcl(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// `n` bytes that must all be zero.
fn zero(r: &mut Reader<'_>, n: usize, field: &'static str) -> Result<(), ParseError> {
    let at = r.offset();
    let bytes = r.take(n, field)?;
    match bytes.iter().position(|b| *b != 0) {
        None => Ok(()),
        Some(i) => Err(ParseError::InvalidValue {
            what: r.what(),
            field,
            offset: at + i,
            expected: "zero (reserved)".into(),
            presented: "a non-zero byte".into(),
        }),
    }
}
