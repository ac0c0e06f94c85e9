//! The TDX quote, parsed from untrusted bytes.
//!
//! Layout (Intel TDX DCAP Quote Generation Library and Quote Verification Library, "Quote
//! Format"; all integers little endian):
//!
//! ```text
//! header            48  version u16 (4|5), att. key type u16 (2), TEE type u32 (0x81),
//!                       reserved 4, QE vendor id 16, user data 20
//! v5 only:           6  body type u16 (2 = TD report 1.0, 3 = TD report 1.5), body size u32
//! body         584|648  TD report 1.0, or TD report 1.5 = 1.0 + tee_tcb_svn2 16 + mr_service_td 48
//! sig. data len      4
//! signature data        ECDSA signature 64 (r||s), attestation key 64 (x||y),
//!                       certification data: type u16 (6), size u32, then
//!                         QE report 384, QE report signature 64, QE auth data (u16 len + bytes),
//!                         certification data: type u16 (5 = PCK chain, PEM), size u32, bytes
//! trailing              tolerated (some quote generators pad their buffers with zeros)
//! ```
//!
//! The header and the body (with the v5 body descriptor) are what the attestation key signs.

use core::fmt;

use crate::codec::{ParseError, Reader};

/// Quote version 4 (TD report 1.0 body).
pub const VERSION_4: u16 = 4;
/// Quote version 5 (body descriptor, TD report 1.0 or 1.5).
pub const VERSION_5: u16 = 5;
/// Attestation key type ECDSA-256 with P-256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type of TDX.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Certification data type: QE report certification data.
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type: PCK certificate chain (PEM).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Size of a TD report 1.0 body.
pub const TD10_LEN: usize = 584;
/// Size of a TD report 1.5 body.
pub const TD15_LEN: usize = 648;
/// Size of an SGX enclave report (the QE report).
pub const ENCLAVE_REPORT_LEN: usize = 384;

/// The largest quote this crate accepts, trailing bytes included.
pub const MAX_QUOTE_LEN: usize = 128 * 1024;
/// The largest signature data this crate accepts.
pub const MAX_SIGNATURE_DATA_LEN: usize = 64 * 1024;

const WHAT: &str = "TDX quote";
const WHAT_SIG: &str = "TDX quote signature data";
const WHAT_QE_CERT: &str = "TDX QE report certification data";

/// The 48-byte quote header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    /// Reserved in TDX (QE SVN and PCE SVN in SGX quotes).
    pub reserved: [u8; 4],
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// Which TD report the body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyType {
    /// TD report 1.0 (584 bytes): v4 quotes, or v5 body type 2.
    Td10,
    /// TD report 1.5 (648 bytes): v5 body type 3.
    Td15,
}

impl BodyType {
    /// `td1.0` or `td1.5`, as the claims print it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Td10 => "td1.0",
            Self::Td15 => "td1.5",
        }
    }

    /// The body length in bytes.
    pub const fn body_len(self) -> usize {
        match self {
            Self::Td10 => TD10_LEN,
            Self::Td15 => TD15_LEN,
        }
    }
}

impl fmt::Display for BodyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TD report carried in the quote body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// The TD 1.5 additions, present for body type [`BodyType::Td15`].
    pub td15: Option<Td15Fields>,
}

/// The fields a TD report 1.5 adds to 1.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Td15Fields {
    pub tee_tcb_svn2: [u8; 16],
    pub mr_service_td: [u8; 48],
}

impl TdReport {
    /// Whether the TD runs in debug mode (TD attributes byte 0, bit 0: `DEBUG`).
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 0x01 != 0
    }

    fn parse(r: &mut Reader<'_>, body_type: BodyType) -> Result<Self, ParseError> {
        let mut report = Self {
            tee_tcb_svn: r.array("tee_tcb_svn")?,
            mr_seam: r.array("mr_seam")?,
            mr_signer_seam: r.array("mr_signer_seam")?,
            seam_attributes: r.array("seam_attributes")?,
            td_attributes: r.array("td_attributes")?,
            xfam: r.array("xfam")?,
            mr_td: r.array("mr_td")?,
            mr_config_id: r.array("mr_config_id")?,
            mr_owner: r.array("mr_owner")?,
            mr_owner_config: r.array("mr_owner_config")?,
            rtmr: [
                r.array("rtmr0")?,
                r.array("rtmr1")?,
                r.array("rtmr2")?,
                r.array("rtmr3")?,
            ],
            report_data: r.array("report_data")?,
            td15: None,
        };
        if body_type == BodyType::Td15 {
            report.td15 = Some(Td15Fields {
                tee_tcb_svn2: r.array("tee_tcb_svn2")?,
                mr_service_td: r.array("mr_service_td")?,
            });
        }
        Ok(report)
    }
}

/// The Quoting Enclave's SGX report (384 bytes), signed by the PCK key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport<'a> {
    /// The whole report: what the PCK key signs.
    pub raw: &'a [u8],
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

impl<'a> QeReport<'a> {
    fn parse(raw: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new("QE report", raw);
        let cpu_svn = r.array("cpu_svn")?;
        let misc_select = r.u32_le("misc_select")?;
        r.skip(28, "reserved1")?;
        let attributes = r.array("attributes")?;
        let mr_enclave = r.array("mr_enclave")?;
        r.skip(32, "reserved2")?;
        let mr_signer = r.array("mr_signer")?;
        r.skip(96, "reserved3")?;
        let isv_prod_id = r.u16_le("isv_prod_id")?;
        let isv_svn = r.u16_le("isv_svn")?;
        r.skip(60, "reserved4")?;
        let report_data = r.array("report_data")?;
        r.finish()?;
        Ok(Self {
            raw,
            cpu_svn,
            misc_select,
            attributes,
            mr_enclave,
            mr_signer,
            isv_prod_id,
            isv_svn,
            report_data,
        })
    }
}

/// The quote's signature data (ECDSA-256 with QE report certification data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData<'a> {
    /// Signature over header || body by the attestation key: r || s, big endian.
    pub signature: [u8; 64],
    /// The attestation key: x || y, big endian (P-256).
    pub attestation_key: [u8; 64],
    pub qe_report: QeReport<'a>,
    /// The QE report signature by the PCK key: r || s.
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: &'a [u8],
    /// The PCK certificate chain as carried (PEM; may end with a NUL).
    pub pck_chain_pem: &'a [u8],
}

impl<'a> SignatureData<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(WHAT_SIG, buf);
        let signature = r.array("ecdsa_signature")?;
        let attestation_key = r.array("attestation_key")?;
        let cert_type = r.u16_le("certification_data_type")?;
        if cert_type != CERT_TYPE_QE_REPORT {
            return Err(r.unsupported(
                "certification_data_type",
                cert_type.to_string(),
                "6 (QE report certification data)",
            ));
        }
        let cert_data = r.u32_le_prefixed("certification_data", MAX_SIGNATURE_DATA_LEN)?;
        r.finish()?;

        let mut c = Reader::new(WHAT_QE_CERT, cert_data);
        let qe_report = QeReport::parse(c.take(ENCLAVE_REPORT_LEN, "qe_report")?)?;
        let qe_report_signature = c.array("qe_report_signature")?;
        let auth_len = usize::from(c.u16_le("qe_auth_data_size")?);
        let qe_auth_data = c.take(auth_len, "qe_auth_data")?;
        let inner_type = c.u16_le("pck_certification_data_type")?;
        if inner_type != CERT_TYPE_PCK_CHAIN {
            return Err(c.unsupported(
                "pck_certification_data_type",
                inner_type.to_string(),
                "5 (PCK certificate chain)",
            ));
        }
        let pck_chain_pem = c.u32_le_prefixed("pck_certification_data", MAX_SIGNATURE_DATA_LEN)?;
        c.finish()?;
        Ok(Self {
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
        })
    }
}

/// A parsed TDX quote (v4 or v5), borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    pub header: Header,
    pub body_type: BodyType,
    pub report: TdReport,
    /// Header || [body descriptor] || body: what the attestation key signs.
    pub signed: &'a [u8],
    pub signature_data: SignatureData<'a>,
    /// Bytes after the signature data, tolerated and not interpreted.
    pub trailing_bytes: usize,
}

impl<'a> Quote<'a> {
    /// Parse a TDX quote v4 or v5 (ECDSA P-256 attestation key, QE report certification data
    /// with a PCK certificate chain).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(ParseError::TooLarge {
                what: WHAT,
                field: "quote",
                size: bytes.len(),
                limit: MAX_QUOTE_LEN,
            });
        }
        let mut r = Reader::new(WHAT, bytes);
        let header = Header {
            version: r.u16_le("version")?,
            att_key_type: r.u16_le("att_key_type")?,
            tee_type: r.u32_le("tee_type")?,
            reserved: r.array("reserved")?,
            qe_vendor_id: r.array("qe_vendor_id")?,
            user_data: r.array("user_data")?,
        };
        if header.version != VERSION_4 && header.version != VERSION_5 {
            return Err(r.unsupported("version", header.version.to_string(), "4, 5"));
        }
        if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(r.unsupported(
                "att_key_type",
                header.att_key_type.to_string(),
                "2 (ECDSA-256 with P-256)",
            ));
        }
        if header.tee_type != TEE_TYPE_TDX {
            return Err(r.unsupported("tee_type", format!("{:#x}", header.tee_type), "0x81 (TDX)"));
        }

        let body_type = if header.version == VERSION_5 {
            let raw_type = r.u16_le("body_type")?;
            let body_type = match raw_type {
                2 => BodyType::Td10,
                3 => BodyType::Td15,
                other => {
                    return Err(r.unsupported(
                        "body_type",
                        other.to_string(),
                        "2 (TD report 1.0), 3 (TD report 1.5)",
                    ))
                }
            };
            let size = r.u32_le("body_size")?;
            if usize::try_from(size).ok() != Some(body_type.body_len()) {
                return Err(r.invalid(
                    "body_size",
                    format!("{} for {body_type}", body_type.body_len()),
                    size.to_string(),
                ));
            }
            body_type
        } else {
            BodyType::Td10
        };

        let mut body = r.sub(body_type.body_len(), "body")?;
        let report = TdReport::parse(&mut body, body_type)?;
        body.finish()?;
        let signed = bytes
            .get(..r.offset())
            .unwrap_or_default();

        let sig_data = r.u32_le_prefixed("signature_data", MAX_SIGNATURE_DATA_LEN)?;
        let signature_data = SignatureData::parse(sig_data)?;
        let trailing_bytes = r.remaining();
        Ok(Self {
            header,
            body_type,
            report,
            signed,
            signature_data,
            trailing_bytes,
        })
    }
}
