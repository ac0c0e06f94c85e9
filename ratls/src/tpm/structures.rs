//! TPM 2.0 structures (TCG TPM 2.0 Library, Part 2), parsed from and written to their big-endian
//! wire form: `TPMS_ATTEST`, `TPMT_SIGNATURE` and `TPMT_PUBLIC`.
//!
//! Every length is capped at the size the specification allows (or the largest key `ring` can
//! verify), every parse goes through [`Reader`], and every structure rejects trailing bytes.

use crate::codec::{ParseError, Reader};
use crate::digest::HashAlg;
use crate::hexfmt::hex;

/// `TPM_GENERATED_VALUE`: the magic every `TPMS_ATTEST` made by a TPM starts with.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// `TPM_ALG_RSA`.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_ECC`.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_RSASSA` (PKCS#1 v1.5 signatures).
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAES` (PKCS#1 v1.5 encryption; no hash in its scheme details).
pub const TPM_ALG_RSAES: u16 = 0x0015;
/// `TPM_ALG_RSAPSS`.
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
/// `TPM_ALG_OAEP`.
pub const TPM_ALG_OAEP: u16 = 0x0017;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECDH`.
pub const TPM_ALG_ECDH: u16 = 0x0019;
/// `TPM_ALG_ECDAA` (its scheme details carry a hash and a count).
pub const TPM_ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_SM2`.
pub const TPM_ALG_SM2: u16 = 0x001B;
/// `TPM_ALG_ECSCHNORR`.
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
/// `TPM_ALG_ECMQV`.
pub const TPM_ALG_ECMQV: u16 = 0x001D;

/// `TPM_ECC_NIST_P256`.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;

/// `TPMA_OBJECT.fixedTPM`: the key cannot be duplicated out of this TPM's hierarchy.
pub const TPMA_OBJECT_FIXED_TPM: u32 = 1 << 1;
/// `TPMA_OBJECT.fixedParent`: the key cannot be duplicated to another parent.
pub const TPMA_OBJECT_FIXED_PARENT: u32 = 1 << 4;
/// `TPMA_OBJECT.sensitiveDataOrigin`: the TPM generated the private key itself.
pub const TPMA_OBJECT_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
/// `TPMA_OBJECT.restricted`.
pub const TPMA_OBJECT_RESTRICTED: u32 = 1 << 16;
/// `TPMA_OBJECT.decrypt`.
pub const TPMA_OBJECT_DECRYPT: u32 = 1 << 17;
/// `TPMA_OBJECT.sign` (`sign/encrypt`).
pub const TPMA_OBJECT_SIGN: u32 = 1 << 18;
/// The attributes an attestation key must have set, with their names: restricted signing, and
/// generated inside the TPM and never duplicable (without these a key may have been made or
/// copied outside a TPM, and its signature proves nothing about one).
pub const AK_REQUIRED_ATTRIBUTES: [(u32, &str); 5] = [
    (TPMA_OBJECT_FIXED_TPM, "fixedTPM"),
    (TPMA_OBJECT_FIXED_PARENT, "fixedParent"),
    (TPMA_OBJECT_SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (TPMA_OBJECT_RESTRICTED, "restricted"),
    (TPMA_OBJECT_SIGN, "sign"),
];
/// The attributes of a typical attestation key: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, restricted, sign.
pub const AK_ATTRIBUTES: u32 = 0x0005_0072;

/// The largest `TPMS_ATTEST` accepted (the TPM's own limit is about 1 KiB; NV certify info is the
/// largest body).
pub const MAX_ATTEST_SIZE: usize = 4096;
/// `sizeof(TPMU_NAME)`: a hash algorithm id and a SHA-512 digest.
pub const MAX_NAME_SIZE: usize = 2 + 64;
/// `sizeof(TPMU_HA)`: the largest digest (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;
/// The most PCR banks a `TPML_PCR_SELECTION` may list (`HASH_COUNT` is far smaller in practice).
pub const MAX_PCR_BANKS: u32 = 16;
/// The largest `sizeofSelect` accepted: 8 bytes, 64 PCRs (real TPMs use 3: 24 PCRs).
pub const MAX_PCR_SELECT: usize = 8;
/// The largest RSA modulus or signature: 8192 bits, the largest key `ring` verifies.
pub const MAX_RSA_BYTES: usize = 1024;
/// The largest ECC coordinate or signature half (P-521 is 66 bytes).
pub const MAX_ECC_BYTES: usize = 66;

/// Parsed `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// Always [`TPM_GENERATED_VALUE`] once parsed (anything else is a parse error).
    pub magic: u32,
    /// `TPMI_ST_ATTEST`.
    pub attest_type: u16,
    /// `qualifiedSigner` (`TPM2B_NAME` content).
    pub qualified_signer: Vec<u8>,
    /// `extraData` (`TPM2B_DATA` content): the caller's nonce for a quote.
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub attested: Attested,
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    /// `TPMI_YES_NO`: 1 when the clock value has not gone back since it was last reported.
    pub safe: u8,
}

/// The `attested` union of a `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// `TPMS_QUOTE_INFO`.
    Quote(QuoteInfo),
    /// Any other attestation type, kept raw so a verifier can refuse it by name.
    Other(Vec<u8>),
}

/// `TPMS_QUOTE_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `TPML_PCR_SELECTION`, in the order the quote lists it.
    pub pcr_select: Vec<PcrSelection>,
    /// `pcrDigest`: the hash of the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

/// `TPMS_PCR_SELECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's `TPMI_ALG_HASH`, as presented (it may be a bank this crate does not know).
    pub hash_alg: u16,
    /// The `pcrSelect` bitmap: bit `j` of byte `i` selects PCR `8 i + j`.
    pub select: Vec<u8>,
}

impl PcrSelection {
    /// The bank, when it is one of the hash algorithms this crate computes.
    pub fn bank(&self) -> Option<HashAlg> {
        HashAlg::from_tpm_alg_id(self.hash_alg)
    }

    /// The selected PCR indices, ascending.
    pub fn indices(&self) -> Vec<u8> {
        // Parsed selections have at most 8 bytes; a longer hand-built one stops at PCR 255.
        self.select
            .iter()
            .enumerate()
            .flat_map(|(byte_index, byte)| {
                (0..8usize)
                    .filter(move |bit| byte & (1 << bit) != 0)
                    .map(move |bit| {
                        byte_index
                            .saturating_mul(8)
                            .saturating_add(bit)
                    })
            })
            .map_while(|index| u8::try_from(index).ok())
            .collect()
    }

    /// The bank's name (`sha256`), or its algorithm id for a bank this crate does not know.
    pub fn bank_name(&self) -> String {
        match self.bank() {
            Some(bank) => bank.name().to_owned(),
            None => format!("0x{:04x}", self.hash_alg),
        }
    }
}

impl Attest {
    /// Parse a `TPMS_ATTEST` (or a `TPM2B_ATTEST` wrapping one).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let bytes = Self::unwrap_tpm2b(bytes)?;
        let mut r = Reader::new("TPMS_ATTEST", bytes);
        let magic = r.u32_be("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(ParseError::InvalidValue {
                what: "TPMS_ATTEST",
                field: "magic",
                offset: 0,
                expected: format!("{TPM_GENERATED_VALUE:08x} (TPM_GENERATED_VALUE)"),
                presented: format!("{magic:08x}"),
            });
        }
        let attest_type = r.u16_be("type")?;
        let qualified_signer = r
            .tpm2b("qualifiedSigner", MAX_NAME_SIZE)?
            .to_vec();
        let extra_data = r
            .tpm2b("extraData", MAX_DIGEST_SIZE)?
            .to_vec();
        let clock_info = ClockInfo {
            clock: r.u64_be("clockInfo.clock")?,
            reset_count: r.u32_be("clockInfo.resetCount")?,
            restart_count: r.u32_be("clockInfo.restartCount")?,
            safe: r.u8("clockInfo.safe")?,
        };
        let firmware_version = r.u64_be("firmwareVersion")?;
        let attested = if attest_type == TPM_ST_ATTEST_QUOTE {
            Attested::Quote(QuoteInfo::parse(&mut r)?)
        } else {
            Attested::Other(r.rest().to_vec())
        };
        r.finish()?;
        Ok(Self {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }

    /// The bytes of the `TPMS_ATTEST` inside `bytes`: `bytes` itself, or the content of a
    /// `TPM2B_ATTEST` (a u16 size equal to the rest, followed by the magic).
    pub fn unwrap_tpm2b(bytes: &[u8]) -> Result<&[u8], ParseError> {
        let declared = bytes
            .first_chunk::<2>()
            .map(|size| usize::from(u16::from_be_bytes(*size)));
        let body = bytes
            .get(2..)
            .filter(|inner| {
                declared == Some(inner.len())
                    && inner.starts_with(&TPM_GENERATED_VALUE.to_be_bytes())
            })
            .unwrap_or(bytes);
        if body.len() > MAX_ATTEST_SIZE {
            return Err(ParseError::TooLarge {
                what: "TPMS_ATTEST",
                field: "size",
                size: body.len(),
                limit: MAX_ATTEST_SIZE,
            });
        }
        Ok(body)
    }

    /// The quote body, when this is a quote.
    pub fn quote(&self) -> Option<&QuoteInfo> {
        match &self.attested {
            Attested::Quote(q) => Some(q),
            Attested::Other(_) => None,
        }
    }

    /// The wire form (a `TPMS_ATTEST`, unwrapped).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.attest_type.to_be_bytes());
        put_tpm2b(&mut out, &self.qualified_signer);
        put_tpm2b(&mut out, &self.extra_data);
        out.extend_from_slice(&self.clock_info.clock.to_be_bytes());
        out.extend_from_slice(
            &self
                .clock_info
                .reset_count
                .to_be_bytes(),
        );
        out.extend_from_slice(
            &self
                .clock_info
                .restart_count
                .to_be_bytes(),
        );
        out.push(self.clock_info.safe);
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        match &self.attested {
            Attested::Quote(q) => {
                let count = u32::try_from(q.pcr_select.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for sel in &q.pcr_select {
                    out.extend_from_slice(&sel.hash_alg.to_be_bytes());
                    out.push(u8::try_from(sel.select.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(&sel.select);
                }
                put_tpm2b(&mut out, &q.pcr_digest);
            }
            Attested::Other(raw) => out.extend_from_slice(raw),
        }
        out
    }
}

impl QuoteInfo {
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let count = r.u32_be("pcrSelect.count")?;
        if count > MAX_PCR_BANKS {
            return Err(r.too_large(
                "pcrSelect.count",
                usize::try_from(count).unwrap_or(usize::MAX),
                MAX_PCR_BANKS as usize,
            ));
        }
        let mut pcr_select = Vec::new();
        for _ in 0..count {
            let hash_alg = r.u16_be("pcrSelections.hash")?;
            let size = usize::from(r.u8("pcrSelections.sizeofSelect")?);
            if size > MAX_PCR_SELECT {
                return Err(r.too_large("pcrSelections.sizeofSelect", size, MAX_PCR_SELECT));
            }
            let select = r
                .take(size, "pcrSelections.pcrSelect")?
                .to_vec();
            pcr_select.push(PcrSelection { hash_alg, select });
        }
        let pcr_digest = r
            .tpm2b("pcrDigest", MAX_DIGEST_SIZE)?
            .to_vec();
        Ok(Self {
            pcr_select,
            pcr_digest,
        })
    }
}

/// The signature scheme of a `TPMT_SIGNATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigScheme {
    /// `TPM_ALG_ECDSA`.
    Ecdsa,
    /// `TPM_ALG_RSAPSS`.
    RsaPss,
    /// `TPM_ALG_RSASSA` (PKCS#1 v1.5).
    RsaSsa,
}

impl SigScheme {
    /// The `TPM_ALG_ID`.
    pub const fn alg_id(self) -> u16 {
        match self {
            Self::Ecdsa => TPM_ALG_ECDSA,
            Self::RsaPss => TPM_ALG_RSAPSS,
            Self::RsaSsa => TPM_ALG_RSASSA,
        }
    }

    /// The scheme for a `TPM_ALG_ID`, if it is a signature scheme this crate verifies.
    pub const fn from_alg_id(id: u16) -> Option<Self> {
        match id {
            TPM_ALG_ECDSA => Some(Self::Ecdsa),
            TPM_ALG_RSAPSS => Some(Self::RsaPss),
            TPM_ALG_RSASSA => Some(Self::RsaSsa),
            _ => None,
        }
    }

    /// Lower-case name (`rsassa`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::RsaPss => "rsapss",
            Self::RsaSsa => "rsassa",
        }
    }
}

/// The signature bytes of a `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigValue {
    /// `TPMS_SIGNATURE_ECC`: `signatureR` and `signatureS`, as presented (possibly shorter than
    /// the curve size).
    Ecc { r: Vec<u8>, s: Vec<u8> },
    /// `TPMS_SIGNATURE_RSA`: the signature, the size of the modulus.
    Rsa(Vec<u8>),
}

/// Parsed `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub scheme: SigScheme,
    pub hash: HashAlg,
    pub value: SigValue,
}

impl Signature {
    /// Parse a `TPMT_SIGNATURE` (RSASSA, RSAPSS or ECDSA).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new("TPMT_SIGNATURE", bytes);
        let alg = r.u16_be("sigAlg")?;
        let scheme = SigScheme::from_alg_id(alg).ok_or_else(|| {
            r.unsupported(
                "sigAlg",
                format!("0x{alg:04x}"),
                "RSASSA (0x0014), RSAPSS (0x0016), ECDSA (0x0018)",
            )
        })?;
        let hash_id = r.u16_be("hash")?;
        let hash = HashAlg::from_tpm_alg_id(hash_id).ok_or_else(|| {
            r.unsupported(
                "hash",
                format!("0x{hash_id:04x}"),
                "SHA-1, SHA-256, SHA-384, SHA-512",
            )
        })?;
        let value = match scheme {
            SigScheme::RsaSsa | SigScheme::RsaPss => {
                SigValue::Rsa(r.tpm2b("sig", MAX_RSA_BYTES)?.to_vec())
            }
            SigScheme::Ecdsa => SigValue::Ecc {
                r: r.tpm2b("signatureR", MAX_ECC_BYTES)?
                    .to_vec(),
                s: r.tpm2b("signatureS", MAX_ECC_BYTES)?
                    .to_vec(),
            },
        };
        r.finish()?;
        Ok(Self {
            scheme,
            hash,
            value,
        })
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.scheme.alg_id().to_be_bytes());
        out.extend_from_slice(&self.hash.tpm_alg_id().to_be_bytes());
        match &self.value {
            SigValue::Rsa(sig) => put_tpm2b(&mut out, sig),
            SigValue::Ecc { r, s } => {
                put_tpm2b(&mut out, r);
                put_tpm2b(&mut out, s);
            }
        }
        out
    }

    /// `rsassa-sha256`, `ecdsa-sha384`, …
    pub fn scheme_name(&self) -> String {
        format!("{}-{}", self.scheme.name(), self.hash.name())
    }
}

/// A supported elliptic curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EccCurve {
    P256,
    P384,
}

impl EccCurve {
    /// Coordinate size in bytes.
    pub const fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    /// The `TPM_ECC_CURVE` id.
    pub const fn curve_id(self) -> u16 {
        match self {
            Self::P256 => TPM_ECC_NIST_P256,
            Self::P384 => TPM_ECC_NIST_P384,
        }
    }

    /// `p256`, `p384`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
        }
    }
}

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A key's scheme (`TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME`) when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyScheme {
    /// The scheme's `TPM_ALG_ID` (RSASSA, RSAPSS, ECDSA, … or an encryption scheme).
    pub alg: u16,
    /// The scheme's hash (`None` for RSAES, whose details are empty).
    pub hash: Option<u16>,
    /// ECDAA's `count`.
    pub count: Option<u16>,
}

/// The key-specific part of a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `TPM_ALG_ECC`.
    Ecc {
        curve: EccCurve,
        /// `TPMT_KDF_SCHEME`: (scheme, hash) when not `TPM_ALG_NULL`.
        kdf: Option<(u16, u16)>,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// `TPM_ALG_RSA`.
    Rsa {
        key_bits: u16,
        /// As stored: 0 means the default 65537.
        exponent: u32,
        modulus: Vec<u8>,
    },
}

/// Parsed `TPMT_PUBLIC`, with its exact bytes (which its name is computed over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    raw: Vec<u8>,
    pub name_alg: HashAlg,
    pub object_attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    pub scheme: Option<KeyScheme>,
    pub key: PublicKey,
}

impl Public {
    /// Parse a `TPMT_PUBLIC`, or a `TPM2B_PUBLIC` wrapping one (a u16 size equal to the rest).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut outer = Reader::new("TPM2B_PUBLIC", bytes);
        let wrapped = outer
            .peek(2, "size")
            .ok()
            .and_then(|b| b.first_chunk::<2>())
            .map(|b| usize::from(u16::from_be_bytes(*b)))
            .is_some_and(|size| size + 2 == bytes.len());
        let body = if wrapped {
            outer.skip(2, "size")?;
            outer.rest()
        } else {
            bytes
        };
        Self::parse_tpmt(body)
    }

    fn parse_tpmt(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new("TPMT_PUBLIC", bytes);
        let key_type = r.u16_be("type")?;
        if key_type != TPM_ALG_RSA && key_type != TPM_ALG_ECC {
            return Err(r.unsupported(
                "type",
                format!("0x{key_type:04x}"),
                "RSA (0x0001), ECC (0x0023)",
            ));
        }
        let name_alg_id = r.u16_be("nameAlg")?;
        let name_alg = HashAlg::from_tpm_alg_id(name_alg_id).ok_or_else(|| {
            r.unsupported(
                "nameAlg",
                format!("0x{name_alg_id:04x}"),
                "SHA-1, SHA-256, SHA-384, SHA-512",
            )
        })?;
        let object_attributes = r.u32_be("objectAttributes")?;
        let auth_policy = r
            .tpm2b("authPolicy", MAX_DIGEST_SIZE)?
            .to_vec();
        let sym_alg = r.u16_be("parameters.symmetric.algorithm")?;
        let symmetric = if sym_alg == TPM_ALG_NULL {
            None
        } else {
            Some(SymDef {
                alg: sym_alg,
                key_bits: r.u16_be("parameters.symmetric.keyBits")?,
                mode: r.u16_be("parameters.symmetric.mode")?,
            })
        };
        let scheme = parse_key_scheme(&mut r)?;
        let key = if key_type == TPM_ALG_RSA {
            let key_bits = r.u16_be("parameters.keyBits")?;
            let exponent = r.u32_be("parameters.exponent")?;
            let modulus = r.tpm2b("unique.rsa", MAX_RSA_BYTES)?;
            if usize::from(key_bits) != modulus.len() * 8 {
                return Err(r.invalid(
                    "unique.rsa",
                    format!("{} bytes (keyBits {key_bits})", usize::from(key_bits) / 8),
                    format!("{} bytes", modulus.len()),
                ));
            }
            PublicKey::Rsa {
                key_bits,
                exponent,
                modulus: modulus.to_vec(),
            }
        } else {
            let curve_id = r.u16_be("parameters.curveID")?;
            let curve = match curve_id {
                TPM_ECC_NIST_P256 => EccCurve::P256,
                TPM_ECC_NIST_P384 => EccCurve::P384,
                _ => {
                    return Err(r.unsupported(
                        "parameters.curveID",
                        format!("0x{curve_id:04x}"),
                        "NIST P-256 (0x0003), NIST P-384 (0x0004)",
                    ))
                }
            };
            let kdf_alg = r.u16_be("parameters.kdf.scheme")?;
            let kdf = if kdf_alg == TPM_ALG_NULL {
                None
            } else {
                Some((kdf_alg, r.u16_be("parameters.kdf.hash")?))
            };
            let x = r
                .tpm2b("unique.ecc.x", MAX_ECC_BYTES)?
                .to_vec();
            let y = r
                .tpm2b("unique.ecc.y", MAX_ECC_BYTES)?
                .to_vec();
            PublicKey::Ecc { curve, kdf, x, y }
        };
        r.finish()?;
        Ok(Self {
            raw: bytes.to_vec(),
            name_alg,
            object_attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
        })
    }

    /// An RSA attestation key from its modulus and public exponent (big-endian, leading zeros
    /// allowed), for evidence that carries the AK outside a `TPMT_PUBLIC` (the Azure vTPM puts it
    /// in the HCL report as a JWK).
    ///
    /// The `TPMT_PUBLIC` built has nameAlg SHA-256, the usual AK attributes ([`AK_ATTRIBUTES`]:
    /// restricted signing), no symmetric algorithm and a NULL scheme. Its name is therefore
    /// this crate's encoding, not necessarily the one the TPM reports for the key.
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, ParseError> {
        let n = strip_leading_zeros(modulus);
        let e = strip_leading_zeros(exponent);
        if n.len() > MAX_RSA_BYTES {
            return Err(ParseError::TooLarge {
                what: "RSA public key",
                field: "modulus",
                size: n.len(),
                limit: MAX_RSA_BYTES,
            });
        }
        let key_bits = u16::try_from(n.len() * 8).map_err(|_| ParseError::TooLarge {
            what: "RSA public key",
            field: "modulus",
            size: n.len(),
            limit: MAX_RSA_BYTES,
        })?;
        if n.is_empty() {
            return Err(ParseError::InvalidValue {
                what: "RSA public key",
                field: "modulus",
                offset: 0,
                expected: "a non-zero modulus".into(),
                presented: "zero".into(),
            });
        }
        let mut e_bytes = [0u8; 4];
        if e.is_empty() || e.len() > 4 {
            return Err(ParseError::InvalidValue {
                what: "RSA public key",
                field: "exponent",
                offset: 0,
                expected: "a non-zero exponent of at most 32 bits".into(),
                presented: hex(exponent),
            });
        }
        for (dst, src) in e_bytes
            .iter_mut()
            .rev()
            .zip(e.iter().rev())
        {
            *dst = *src;
        }
        let mut exponent = u32::from_be_bytes(e_bytes);
        if exponent == 65_537 {
            exponent = 0;
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&TPM_ALG_RSA.to_be_bytes());
        raw.extend_from_slice(
            &HashAlg::Sha256
                .tpm_alg_id()
                .to_be_bytes(),
        );
        raw.extend_from_slice(&AK_ATTRIBUTES.to_be_bytes());
        put_tpm2b(&mut raw, &[]);
        raw.extend_from_slice(&TPM_ALG_NULL.to_be_bytes());
        raw.extend_from_slice(&TPM_ALG_NULL.to_be_bytes());
        raw.extend_from_slice(&key_bits.to_be_bytes());
        raw.extend_from_slice(&exponent.to_be_bytes());
        put_tpm2b(&mut raw, n);
        Self::parse_tpmt(&raw)
    }

    /// The exact `TPMT_PUBLIC` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The object's name: nameAlg (u16, big-endian) ‖ H_nameAlg(`TPMT_PUBLIC`).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self
            .name_alg
            .tpm_alg_id()
            .to_be_bytes()
            .to_vec();
        name.extend(self.name_alg.digest(&self.raw));
        name
    }

    /// `rsa-2048`, `ecc-p256`, …
    pub fn type_name(&self) -> String {
        match &self.key {
            PublicKey::Rsa { key_bits, .. } => format!("rsa-{key_bits}"),
            PublicKey::Ecc { curve, .. } => format!("ecc-{}", curve.name()),
        }
    }

    /// A restricted signing key: sign and restricted set, decrypt clear.
    pub fn is_restricted_signing(&self) -> bool {
        let a = self.object_attributes;
        a & TPMA_OBJECT_SIGN != 0 && a & TPMA_OBJECT_RESTRICTED != 0 && a & TPMA_OBJECT_DECRYPT == 0
    }

    /// What keeps this key from being an attestation key: each attribute of
    /// [`AK_REQUIRED_ATTRIBUTES`] it lacks (`fixedTPM`, …), and `decrypt` when set. Empty for a
    /// valid AK.
    pub fn ak_attribute_problems(&self) -> Vec<&'static str> {
        let a = self.object_attributes;
        let mut problems: Vec<&'static str> = AK_REQUIRED_ATTRIBUTES
            .iter()
            .filter(|(bit, _)| a & bit == 0)
            .map(|(_, name)| *name)
            .collect();
        if a & TPMA_OBJECT_DECRYPT != 0 {
            problems.push("decrypt set");
        }
        problems
    }

    /// The RSA modulus length in bytes, for an RSA key.
    pub fn rsa_modulus_len(&self) -> Option<usize> {
        match &self.key {
            PublicKey::Rsa { modulus, .. } => Some(modulus.len()),
            PublicKey::Ecc { .. } => None,
        }
    }
}

fn parse_key_scheme(r: &mut Reader<'_>) -> Result<Option<KeyScheme>, ParseError> {
    let alg = r.u16_be("parameters.scheme.scheme")?;
    let scheme = match alg {
        TPM_ALG_NULL => None,
        TPM_ALG_RSAES => Some(KeyScheme {
            alg,
            hash: None,
            count: None,
        }),
        TPM_ALG_RSASSA | TPM_ALG_RSAPSS | TPM_ALG_OAEP | TPM_ALG_ECDSA | TPM_ALG_ECDH
        | TPM_ALG_SM2 | TPM_ALG_ECSCHNORR | TPM_ALG_ECMQV => Some(KeyScheme {
            alg,
            hash: Some(r.u16_be("parameters.scheme.details.hashAlg")?),
            count: None,
        }),
        TPM_ALG_ECDAA => Some(KeyScheme {
            alg,
            hash: Some(r.u16_be("parameters.scheme.details.hashAlg")?),
            count: Some(r.u16_be("parameters.scheme.details.count")?),
        }),
        _ => {
            return Err(r.unsupported(
                "parameters.scheme.scheme",
                format!("0x{alg:04x}"),
                "NULL, RSASSA, RSAES, RSAPSS, OAEP, ECDSA, ECDH, ECDAA, SM2, ECSCHNORR, ECMQV",
            ))
        }
    };
    Ok(scheme)
}

/// `bytes` without its leading zero bytes.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Append a TPM2B (u16 big-endian size, then the bytes). Callers only pass buffers that were
/// parsed under a cap far below 64 KiB; a longer one is truncated rather than mis-sized.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend(bytes.iter().take(usize::from(len)));
}
