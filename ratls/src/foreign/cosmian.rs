//! Cosmian's raw-quote extensions: the value layouts and the report_data they bind.

use crate::codec::{ParseError, Reader};
use crate::pki::{Cert, KeyAlgorithm};
use crate::snp::REPORT_LEN;

/// Most entries a `sev_quote::Quote` certificate table may hold (AMD defines ARK, ASK, VCEK,
/// VLEK and CRL; one spare).
const MAX_CERT_ENTRIES: u64 = 8;
/// Largest certificate (or CRL) accepted in the table.
const MAX_CERT_ENTRY_LEN: u64 = 16 * 1024;

const WHAT: &str = "Cosmian SEV-SNP quote";

/// The `sev::firmware::host::CertType` variants, by their bincode index (declaration order in
/// virtee/sev: `Empty, ARK, ASK, VCEK, VLEK, CRL, OTHER(Uuid)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CertType {
    Ark,
    Ask,
    Crl,
    Empty,
    Other,
    Vcek,
    Vlek,
}

impl CertType {
    fn from_index(index: u32) -> Option<Self> {
        Some(match index {
            0 => Self::Empty,
            1 => Self::Ark,
            2 => Self::Ask,
            3 => Self::Vcek,
            4 => Self::Vlek,
            5 => Self::Crl,
            6 => Self::Other,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Ark => "ARK",
            Self::Ask => "ASK",
            Self::Crl => "CRL",
            Self::Empty => "empty",
            Self::Other => "other (GUID)",
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }
}

/// The value of a Cosmian SEV-SNP extension (1.2.840.113741.1337.7).
#[derive(Debug)]
pub(super) struct SevQuote<'a> {
    /// The 1184-byte attestation report.
    pub report: &'a [u8],
    /// The certificate table, when the value is the bincode `Quote` (empty for a bare report).
    pub certs: Vec<(CertType, &'a [u8])>,
    /// Whether the value was the bincode `Quote` rather than the bare report.
    pub with_table: bool,
}

impl<'a> SevQuote<'a> {
    /// Either the bare report (exactly 1184 bytes), or bincode 1.x of
    /// `Quote { report: AttestationReport, certs: Vec<CertTableEntry> }`: the report's 1184
    /// bytes, a u64 LE entry count, then per entry a u32 LE `CertType` index (index 6, `OTHER`,
    /// is followed by its GUID as a u64 LE length 16 and 16 bytes) and the data as a u64 LE
    /// length and the bytes. Nothing may follow.
    pub(super) fn parse(value: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(WHAT, value);
        let report = r.take(REPORT_LEN, "report")?;
        if r.is_empty() {
            return Ok(Self {
                report,
                certs: Vec::new(),
                with_table: false,
            });
        }
        let count = r.u64_le("certificate count")?;
        if count > MAX_CERT_ENTRIES {
            return Err(r.too_large(
                "certificate count",
                usize::try_from(count).unwrap_or(usize::MAX),
                usize::try_from(MAX_CERT_ENTRIES).unwrap_or(usize::MAX),
            ));
        }
        let mut certs = Vec::new();
        for _ in 0..count {
            let at = r.offset();
            let index = r.u32_le("cert_type")?;
            let Some(kind) = CertType::from_index(index) else {
                return Err(ParseError::InvalidValue {
                    what: WHAT,
                    field: "cert_type",
                    offset: at,
                    expected: "0..=6 (Empty, ARK, ASK, VCEK, VLEK, CRL, OTHER)".into(),
                    presented: index.to_string(),
                });
            };
            if kind == CertType::Other {
                let at = r.offset();
                let len = r.u64_le("GUID length")?;
                if len != 16 {
                    return Err(ParseError::InvalidValue {
                        what: WHAT,
                        field: "GUID length",
                        offset: at,
                        expected: "16".into(),
                        presented: len.to_string(),
                    });
                }
                r.skip(16, "GUID")?;
            }
            let len = r.u64_le("certificate length")?;
            if len > MAX_CERT_ENTRY_LEN {
                return Err(r.too_large(
                    "certificate",
                    usize::try_from(len).unwrap_or(usize::MAX),
                    usize::try_from(MAX_CERT_ENTRY_LEN).unwrap_or(usize::MAX),
                ));
            }
            let data = r.take(usize::try_from(len).unwrap_or(usize::MAX), "certificate")?;
            certs.push((kind, data));
        }
        r.finish()?;
        Ok(Self {
            report,
            certs,
            with_table: true,
        })
    }

    /// The first entry of a kind.
    pub(super) fn cert(&self, kind: CertType) -> Option<&'a [u8]> {
        self.certs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, data)| *data)
    }
}

/// The key bytes Cosmian hashes: `p256::ecdsa::VerifyingKey::to_sec1_bytes()`, the uncompressed
/// SEC1 point (P-256 does not compress by default), which is the subjectPublicKey BIT STRING of
/// the certificate's P-256 SPKI. Cosmian only makes (and its verifier only reads) P-256 keys.
pub(super) fn key_bytes(cert: &Cert) -> Result<&[u8], String> {
    if cert.key_algorithm() != &KeyAlgorithm::EcP256 {
        return Err(format!(
            "Cosmian's layout is defined for EC P-256 keys only; the certificate key is {}",
            cert.key_algorithm()
        ));
    }
    let point = cert
        .subject_public_key()
        .map_err(|e| e.to_string())?;
    if point.len() != 65 || point.first() != Some(&0x04) {
        return Err(
            "the P-256 key is not an uncompressed SEC1 point (Cosmian hashes the uncompressed \
             form)"
                .into(),
        );
    }
    Ok(point)
}

/// The report_data of an SGX quote (v3, or v4 with TEE type SGX), unverified: header 48 bytes,
/// then the 384-byte ISV enclave report body whose last 64 bytes are report_data.
pub(super) fn sgx_report_data(quote: &[u8]) -> Result<[u8; 64], ParseError> {
    const WHAT: &str = "SGX quote";
    let mut r = Reader::new(WHAT, quote);
    let version = r.u16_le("version")?;
    let att_key_type = r.u16_le("att_key_type")?;
    let tee_type = r.u32_le("tee_type")?;
    match (version, tee_type) {
        (3, _) if att_key_type == 2 || att_key_type == 3 => {}
        (4, 0) => {}
        _ => {
            return Err(r.unsupported(
                "version/att_key_type/tee_type",
                format!("v{version}, att_key_type {att_key_type}, tee_type {tee_type:#x}"),
                "v3 ECDSA (att_key_type 2 or 3), v4 with tee_type 0 (SGX)",
            ))
        }
    }
    r.skip(48 - 8, "header")?;
    r.skip(320, "report body")?;
    r.array("report_data")
}
