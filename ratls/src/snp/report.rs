//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP ABI, table "ATTESTATION_REPORT").
//!
//! The report is 1184 (0x4A0) bytes in every version we accept (2, 3, 4, 5); versions 3+ carry
//! the CPUID family/model/stepping, version 5 the mitigation vectors. All integers are
//! little-endian. The signature (ECDSA P-384 with SHA-384) covers bytes 0x000..0x2A0.

use crate::codec::{ParseError, Reader};

/// Size of a report in bytes.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 0x2A0;

const WHAT: &str = "SEV-SNP report";

/// A parsed attestation report. Field names follow the ABI specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: GuestPolicy,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: RawTcb,
    pub platform_info: u64,
    /// Bits 0 AUTHOR_KEY_EN, 1 MASK_CHIP_KEY, 4:2 SIGNING_KEY.
    pub flags: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: RawTcb,
    /// CPUID family, model and stepping (version 3 and later).
    pub cpuid: Option<Cpuid>,
    pub chip_id: [u8; 64],
    pub committed_tcb: RawTcb,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub launch_tcb: RawTcb,
    /// Version 5 and later.
    pub launch_mit_vector: Option<u64>,
    /// Version 5 and later.
    pub current_mit_vector: Option<u64>,
    /// ECDSA P-384 signature components, big-endian (converted from the report's little-endian
    /// 72-byte fields; the top 24 bytes must be zero).
    pub signature_r: [u8; 48],
    pub signature_s: [u8; 48],
    raw: Vec<u8>,
}

/// The guest policy bits (ABI "GUEST_POLICY").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    pub fn abi_minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }

    pub fn abi_major(self) -> u8 {
        ((self.0 >> 8) & 0xff) as u8
    }

    pub fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }

    pub fn migrate_ma_allowed(self) -> bool {
        self.0 & (1 << 18) != 0
    }

    pub fn debug_allowed(self) -> bool {
        self.0 & (1 << 19) != 0
    }

    pub fn single_socket_required(self) -> bool {
        self.0 & (1 << 20) != 0
    }

    /// Bit 24 (CIPHERTEXT_HIDING_DRAM, ABI 1.57+): the guest requires ciphertext hiding.
    pub fn ciphertext_hiding_required(self) -> bool {
        self.0 & (1 << 24) != 0
    }
}

/// A TCB_VERSION as the report carries it; its layout depends on the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTcb(pub u64);

/// TCB components, decoded for a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcbVersion {
    /// Turin and later only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl RawTcb {
    /// Decode for Milan/Genoa (`turin == false`) or Turin layouts.
    pub fn decode(self, turin: bool) -> TcbVersion {
        let b = self.0.to_le_bytes();
        if turin {
            TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }
        } else {
            TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            }
        }
    }
}

impl TcbVersion {
    /// Whether every component is at least `min`'s.
    pub fn at_least(&self, min: &TcbVersion) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }
}

impl core::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc {fmc}, ")?;
        }
        write!(
            f,
            "bootloader {}, tee {}, snp {}, microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// CPUID family, model and stepping as reported (version 3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// Firmware version (major.minor, build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl core::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{} build {}", self.major, self.minor, self.build)
    }
}

/// Which key signed the report (SIGNING_KEY field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningKey {
    Vcek,
    Vlek,
    None,
    Reserved(u8),
}

impl SigningKey {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
            Self::None => "none",
            Self::Reserved(_) => "reserved",
        }
    }
}

impl AttestationReport {
    /// Parse a report given raw (1184 bytes) or as hex text (2368 hex digits, any case,
    /// whitespace ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() != REPORT_LEN {
            if let Some(decoded) = crate::hexfmt::decode_if_hex_text(bytes) {
                return Self::parse_raw(&decoded);
            }
        }
        Self::parse_raw(bytes)
    }

    /// Parse exactly 1184 raw bytes.
    pub fn parse_raw(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > REPORT_LEN {
            return Err(ParseError::TrailingBytes {
                what: WHAT,
                offset: REPORT_LEN,
                count: bytes.len() - REPORT_LEN,
            });
        }
        let mut r = Reader::new(WHAT, bytes);
        let version = r.u32_le("version")?;
        if !(2..=5).contains(&version) {
            return Err(r.unsupported("version", version.to_string(), "2, 3, 4, 5"));
        }
        let guest_svn = r.u32_le("guest_svn")?;
        let policy = GuestPolicy(r.u64_le("policy")?);
        let family_id = r.array("family_id")?;
        let image_id = r.array("image_id")?;
        let vmpl = r.u32_le("vmpl")?;
        let signature_algo = r.u32_le("signature_algo")?;
        let current_tcb = RawTcb(r.u64_le("current_tcb")?);
        let platform_info = r.u64_le("platform_info")?;
        let flags = r.u32_le("flags")?;
        r.skip(4, "reserved0")?;
        let report_data = r.array("report_data")?;
        let measurement = r.array("measurement")?;
        let host_data = r.array("host_data")?;
        let id_key_digest = r.array("id_key_digest")?;
        let author_key_digest = r.array("author_key_digest")?;
        let report_id = r.array("report_id")?;
        let report_id_ma = r.array("report_id_ma")?;
        let reported_tcb = RawTcb(r.u64_le("reported_tcb")?);
        let cpuid_bytes: [u8; 3] = r.array("cpuid")?;
        let cpuid = (version >= 3).then_some(Cpuid {
            family: cpuid_bytes[0],
            model: cpuid_bytes[1],
            stepping: cpuid_bytes[2],
        });
        r.skip(0x1A0 - 0x18B, "reserved1")?;
        let chip_id = r.array("chip_id")?;
        let committed_tcb = RawTcb(r.u64_le("committed_tcb")?);
        let current_version = firmware_version(&mut r, "current_version")?;
        let committed_version = firmware_version(&mut r, "committed_version")?;
        let launch_tcb = RawTcb(r.u64_le("launch_tcb")?);
        let launch_mit = r.u64_le("launch_mit_vector")?;
        let current_mit = r.u64_le("current_mit_vector")?;
        let (launch_mit_vector, current_mit_vector) = if version >= 5 {
            (Some(launch_mit), Some(current_mit))
        } else {
            (None, None)
        };
        r.skip(SIGNED_LEN - 0x208, "reserved2")?;
        let signature_r = ecdsa_component(&mut r, "signature.r")?;
        let signature_s = ecdsa_component(&mut r, "signature.s")?;
        // The bytes after the signature are not signed: require zeros so a report has exactly
        // one encoding (the evidence digest keys verdict caches).
        let tail_at = r.offset();
        let tail = r.take(REPORT_LEN - 0x330, "signature.reserved")?;
        if let Some(pos) = tail.iter().position(|&b| b != 0) {
            return Err(ParseError::InvalidValue {
                what: WHAT,
                field: "signature.reserved",
                offset: tail_at + pos,
                expected: "zero (unsigned reserved bytes)".into(),
                presented: format!("{:#04x}", tail.get(pos).copied().unwrap_or(0)),
            });
        }
        r.finish()?;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            flags,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            launch_mit_vector,
            current_mit_vector,
            signature_r,
            signature_s,
            raw: bytes.to_vec(),
        })
    }

    /// The signing key the report names.
    pub fn signing_key(&self) -> SigningKey {
        match (self.flags >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => SigningKey::Reserved(other as u8),
        }
    }

    /// Whether the host masked the chip id (it then reads as zeros).
    pub fn chip_id_masked(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw
            .get(..SIGNED_LEN)
            .unwrap_or_default()
    }

    /// The raw 1184 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The signature as r || s big-endian, the form ring's `ECDSA_P384_SHA384_FIXED` takes.
    pub fn signature_fixed(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        let (r, s) = out.split_at_mut(48);
        r.copy_from_slice(&self.signature_r);
        s.copy_from_slice(&self.signature_s);
        out
    }
}

fn firmware_version(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<FirmwareVersion, ParseError> {
    let [build, minor, major, _reserved]: [u8; 4] = r.array(field)?;
    Ok(FirmwareVersion {
        major,
        minor,
        build,
    })
}

/// Read a 72-byte little-endian ECDSA component and return it as 48 big-endian bytes.
fn ecdsa_component(r: &mut Reader<'_>, field: &'static str) -> Result<[u8; 48], ParseError> {
    let at = r.offset();
    let le: [u8; 72] = r.array(field)?;
    let (low, high) = le.split_at(48);
    if high.iter().any(|&b| b != 0) {
        return Err(ParseError::InvalidValue {
            what: WHAT,
            field,
            offset: at + 48,
            expected: "zero padding above 384 bits".into(),
            presented: crate::hexfmt::hex(high),
        });
    }
    let mut be = [0u8; 48];
    for (dst, src) in be.iter_mut().zip(low.iter().rev()) {
        *dst = *src;
    }
    Ok(be)
}
