//! The runtime data (`var_data`) of an HCL report: JSON the paravisor writes and hashes into the
//! hardware report's `report_data`.
//!
//! ```json
//! {"keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": "AQAB", "n": "v5q3…"},
//!           {"kid": "HCLEkPub", "key_ops": ["encrypt"], "kty": "RSA", "e": "AQAB", "n": "1S7M…"}],
//!  "vm-configuration": {"console-enabled": true, "root-cert-thumbprint": "6nZZ…",
//!                       "secure-boot": true, "tpm-enabled": true, "tpm-persisted": true,
//!                       "vmUniqueId": "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC"},
//!  "user-data": "0000…"}
//! ```
//!
//! Microsoft adds members over time, so unknown members are tolerated (and kept as claims); the
//! members this crate relies on are required: `keys` with exactly one `HCLAkPub` RSA key,
//! `vm-configuration` with `secure-boot`, `tpm-enabled` and `vmUniqueId`. A member given twice is
//! refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::ParseError;
use crate::digest::HashAlg;
use crate::hexfmt::hex;
use crate::tpm::structures::{strip_leading_zeros, Public, PublicKey};

/// The `kid` of the vTPM attestation key.
pub const AK_KID: &str = "HCLAkPub";
/// The `kid` of the vTPM endorsement key.
pub const EK_KID: &str = "HCLEkPub";

const WHAT: &str = "HCL runtime data";

/// The runtime data, as JSON gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeData {
    pub keys: Vec<Jwk>,
    #[serde(rename = "vm-configuration")]
    pub vm_configuration: VmConfiguration,
    /// The 64 bytes last written to NV index 0x01400002, as hex (when present).
    #[serde(rename = "user-data", default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Every `vm-configuration` member as given, known or not (for the claims).
    #[serde(skip)]
    pub vm_configuration_members: BTreeMap<String, serde_json::Value>,
}

/// A JSON Web Key (RFC 7517) as the runtime data lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    /// RSA modulus, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ops: Vec<String>,
}

/// The `vm-configuration` members this crate reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfiguration {
    #[serde(rename = "secure-boot")]
    pub secure_boot: bool,
    #[serde(rename = "tpm-enabled")]
    pub tpm_enabled: bool,
    #[serde(rename = "vmUniqueId")]
    pub vm_unique_id: String,
    #[serde(
        rename = "tpm-persisted",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tpm_persisted: Option<bool>,
    #[serde(
        rename = "console-enabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub console_enabled: Option<bool>,
}

impl RuntimeData {
    /// Parse the runtime data (UTF-8 JSON, nothing after the object but whitespace).
    pub fn parse(var_data: &[u8]) -> Result<Self, ParseError> {
        let json_error = |field: &'static str, e: serde_json::Error| ParseError::InvalidValue {
            what: WHAT,
            field,
            offset: 0,
            expected: "JSON with keys[] (HCLAkPub) and vm-configuration {secure-boot, \
                       tpm-enabled, vmUniqueId}"
                .into(),
            presented: e.to_string(),
        };
        // Objects only: serde would also read a struct from a JSON array of its fields.
        let value: serde_json::Value =
            serde_json::from_slice(var_data).map_err(|e| json_error("var_data", e))?;
        let not_object = |field: &'static str, presented: &str| ParseError::InvalidValue {
            what: WHAT,
            field,
            offset: 0,
            expected: "a JSON object".into(),
            presented: presented.into(),
        };
        let top = value
            .as_object()
            .ok_or_else(|| not_object("var_data", "another JSON value"))?;
        let members = top
            .get("vm-configuration")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| not_object("vm-configuration", "missing or another JSON value"))?;
        let keys_are_objects = top
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .all(serde_json::Value::is_object)
            });
        if !keys_are_objects {
            return Err(ParseError::InvalidValue {
                what: WHAT,
                field: "keys",
                offset: 0,
                expected: "an array of JSON objects (JWKs)".into(),
                presented: "missing or another JSON value".into(),
            });
        }
        // Typed, from the bytes again: a member given twice is an error here.
        let mut data: Self =
            serde_json::from_slice(var_data).map_err(|e| json_error("var_data", e))?;
        data.vm_configuration_members = members
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(data)
    }

    /// The key whose `kid` is `kid`, when exactly one has it.
    pub fn key(&self, kid: &str) -> Result<&Jwk, ParseError> {
        let mut found = self
            .keys
            .iter()
            .filter(|k| k.kid == kid);
        match (found.next(), found.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(ParseError::InvalidValue {
                what: WHAT,
                field: "keys",
                offset: 0,
                expected: format!("a key with kid {kid:?}"),
                presented: format!("kids {:?}", self.kids()),
            }),
            (Some(_), Some(_)) => Err(ParseError::InvalidValue {
                what: WHAT,
                field: "keys",
                offset: 0,
                expected: format!("exactly one key with kid {kid:?}"),
                presented: "several".into(),
            }),
        }
    }

    /// The `kid` of every key, in order.
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// The vTPM attestation key (`HCLAkPub`) as a TPM public area (see
    /// [`Public::from_rsa_components`]: restricted signing, nameAlg SHA-256, NULL scheme).
    pub fn ak_public(&self) -> Result<Public, ParseError> {
        self.key(AK_KID)?.rsa_public()
    }
}

impl Jwk {
    /// The RSA key as a TPM public area built from `n` and `e`.
    pub fn rsa_public(&self) -> Result<Public, ParseError> {
        if self.kty != "RSA" {
            return Err(ParseError::Unsupported {
                what: WHAT,
                field: "keys[].kty",
                presented: self.kty.clone(),
                supported: "RSA",
            });
        }
        let missing = |field: &'static str| ParseError::InvalidValue {
            what: WHAT,
            field,
            offset: 0,
            expected: "a base64url string".into(),
            presented: "missing".into(),
        };
        let n = base64url_decode(
            self.n
                .as_deref()
                .ok_or_else(|| missing("keys[].n"))?,
            "keys[].n",
        )?;
        let e = base64url_decode(
            self.e
                .as_deref()
                .ok_or_else(|| missing("keys[].e"))?,
            "keys[].e",
        )?;
        Public::from_rsa_components(&n, &e)
    }
}

/// Decode unpadded base64url (RFC 4648 §5, as JWKs use it), refusing padding, other alphabets,
/// an impossible length and non-zero unused bits (so every value has one encoding).
pub fn base64url_decode(text: &str, field: &'static str) -> Result<Vec<u8>, ParseError> {
    let invalid = |why: String| ParseError::InvalidValue {
        what: WHAT,
        field,
        offset: 0,
        expected: "unpadded base64url".into(),
        presented: why,
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return Err(invalid(format!("{} characters", bytes.len())));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for (i, c) in bytes.iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(invalid(format!("character {:?} at {i}", char::from(*c)))),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err(invalid("non-zero unused bits in the last character".into()));
    }
    Ok(out)
}

/// SHA-256 of an RSA key's modulus without leading zeros (hex); `None` for an ECC key.
pub fn ak_fingerprint(key: &Public) -> Option<String> {
    match &key.key {
        PublicKey::Rsa { modulus, .. } => {
            let n = strip_leading_zeros(modulus);
            Some(hex(HashAlg::Sha256.digest(n)))
        }
        PublicKey::Ecc { .. } => None,
    }
}
