//! The LUKS2 metadata (`cryptsetup luksDump --dump-json-metadata`) and the allow-list check.
//!
//! A LUKS header is neither encrypted nor authenticated: whoever controls the disk (the host of
//! a confidential VM) can replace it, keep the real keyslots and change only what the volume key
//! is used for. A segment cipher such as `capi:ecb(cipher_null)-plain`, `cipher_null-ecb` or
//! `aes-xts-null` (one IV for every sector) makes dm-crypt store the data in clear or in a form
//! the host can read and pre-seed; a keyslot whose area cipher is `cipher_null` stores the volume
//! key in clear, so any passphrase "opens" it. A deny-list of bad names cannot be complete (the
//! kernel crypto API has many spellings), so the check is an **allow-list of exactly what
//! `create` makes** (see [`crate::cryptsetup::format`], which passes every one of these values
//! explicitly) and every other value is refused, naming what was expected and what was
//! presented:
//!
//! - exactly one data segment, `"0"`, of type `crypt`, encryption `aes-xts-plain64`, sector size
//!   4096, IV tweak 0, offset 16 MiB, size `dynamic`, and no other field (no `integrity`, no
//!   `flags`);
//! - every keyslot of type `luks2` for a 512-bit volume key (AES-256 in XTS mode), its area
//!   `raw`, encrypted with `aes-xts-plain64` under a 512-bit key;
//! - no persistent activation flags and no requirements in `config`;
//! - at most one token, of type `cosmian-tpm2` (the TPM seal, see [`crate::seal`]): no other
//!   token type (`systemd-tpm2`, `luks2-keyring`, ...) whose plugin or keyring lookup another
//!   tool might act on. What our token holds is not checked here: a host that edits it can only
//!   make the TPM refuse (the PCR policy is in the sealed object, which the TPM checks).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The data-segment cipher `create` uses: AES in XTS mode, 64-bit little-endian sector IVs.
pub const SEGMENT_CIPHER: &str = "aes-xts-plain64";
/// The volume key `create` makes: 512 bits (AES-256-XTS: two 256-bit keys).
pub const VOLUME_KEY_BYTES: u64 = 64;
/// The encryption sector size `create` uses.
pub const SECTOR_SIZE: u64 = 4096;
/// Where `create`'s data segment starts: after LUKS2's default 16 MiB of metadata and keyslots.
pub const DATA_OFFSET: u64 = 16 << 20;
/// The keyslot area cipher `create` (and `reseal`) use.
pub const KEYSLOT_CIPHER: &str = "aes-xts-plain64";
/// The keyslot area key size `create` (and `reseal`) use.
pub const KEYSLOT_KEY_BYTES: u64 = 64;

/// The fields a segment made by `create` has, and nothing else.
const SEGMENT_FIELDS: [&str; 6] = [
    "type",
    "offset",
    "size",
    "iv_tweak",
    "encryption",
    "sector_size",
];

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub keyslots: BTreeMap<String, Keyslot>,
    #[serde(default)]
    pub segments: BTreeMap<String, Segment>,
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Token id → the token JSON (`type`, `keyslots`, the rest).
    #[serde(default)]
    pub tokens: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct Keyslot {
    #[serde(rename = "type")]
    pub kind: String,
    /// The size of the volume key this keyslot stores (bytes).
    #[serde(default)]
    pub key_size: Option<Value>,
    #[serde(default)]
    pub area: Option<Area>,
    #[serde(default)]
    pub kdf: Option<Kdf>,
}

#[derive(Debug, Deserialize)]
pub struct Area {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub encryption: Option<String>,
    #[serde(default)]
    pub key_size: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Kdf {
    #[serde(rename = "type")]
    pub kind: String,
}

/// A segment: every field kept, so that an unexpected one (`integrity`, `flags`) is seen.
#[derive(Debug, Deserialize)]
pub struct Segment {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub encryption: Option<String>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// `expected X, presented Y` for one field of one object.
fn mismatch(what: &str, field: &str, expected: &str, presented: Option<&Value>) -> String {
    let presented = presented.map_or_else(|| "nothing".to_owned(), Value::to_string);
    format!("{what}: expected {field} {expected}, presented {presented}")
}

/// Whether `value` is the unsigned number `n`, written as a JSON number or a decimal string
/// (LUKS2 writes offsets and sizes as strings, key and sector sizes as numbers).
fn is_number(value: Option<&Value>, n: u64) -> bool {
    match value {
        Some(Value::Number(v)) => v.as_u64() == Some(n),
        Some(Value::String(s)) => s == &n.to_string(),
        _ => false,
    }
}

fn is_string(value: Option<&Value>, s: &str) -> bool {
    matches!(value, Some(Value::String(v)) if v == s)
}

impl Metadata {
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::Other(format!("cannot parse the LUKS2 JSON metadata: {e}")))
    }

    /// The token holding the seal (its id and JSON), when there is one of our type.
    pub fn seal_token(&self) -> Option<(&str, &Value)> {
        self.tokens
            .iter()
            .find(|(_, token)| token_type(token) == Some(crate::seal::TOKEN_TYPE))
            .map(|(id, token)| (id.as_str(), token))
    }

    /// Keyslot numbers in use, ascending.
    pub fn keyslot_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .keyslots
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The lowest free keyslot number (LUKS2 has 32).
    pub fn free_keyslot(&self) -> Option<u32> {
        let used = self.keyslot_ids();
        (0..32).find(|id| !used.contains(id))
    }

    /// Every way this header differs from what `create` makes (empty: accepted).
    pub fn unsafe_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for (id, slot) in &self.keyslots {
            reasons.extend(keyslot_reasons(id, slot));
        }
        if self.segments.is_empty() {
            reasons.push(format!(
                "segments: expected one crypt segment \"0\" ({SEGMENT_CIPHER}), presented none"
            ));
        }
        for (id, seg) in &self.segments {
            if id != "0" {
                reasons.push(format!(
                    "segment {id}: expected only segment \"0\", presented a segment {id:?} \
                     (type {:?}, encryption {})",
                    seg.kind,
                    seg.encryption
                        .as_deref()
                        .map_or_else(|| "none".to_owned(), |c| format!("{c:?}"))
                ));
            }
            reasons.extend(segment_reasons(id, seg));
        }
        reasons.extend(token_reasons(&self.tokens));
        for key in ["flags", "requirements"] {
            match self.config.get(key) {
                None => {}
                Some(Value::Array(items)) if items.is_empty() => {}
                Some(Value::Object(items)) if items.is_empty() => {}
                Some(other) => {
                    reasons.push(format!("config: expected no {key}, presented {other}"))
                }
            }
        }
        reasons
    }

    /// `Err(UnsafeHeader)` naming every reason when [`unsafe_reasons`](Self::unsafe_reasons)
    /// is not empty.
    pub fn check_safe(&self, location: &std::path::Path) -> Result<()> {
        let reasons = self.unsafe_reasons();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Error::UnsafeHeader {
                location: location.to_path_buf(),
                why: format!(
                    "the LUKS2 header is not the encryption cosmian_fstool creates (only \
                     {SEGMENT_CIPHER}, 512-bit key, {SECTOR_SIZE}-byte sectors, no integrity is \
                     accepted; a host-written header could leave the data in clear): {}",
                    reasons.join("; ")
                ),
            })
        }
    }
}

fn token_type(token: &Value) -> Option<&str> {
    token
        .get("type")
        .and_then(Value::as_str)
}

fn token_reasons(tokens: &BTreeMap<String, Value>) -> Vec<String> {
    let mut reasons = Vec::new();
    let ours = crate::seal::TOKEN_TYPE;
    for (id, token) in tokens {
        if token_type(token) != Some(ours) {
            reasons.push(format!(
                "token {id}: expected type {ours:?} (the only token cosmian_fstool writes), \
                 presented {}",
                token
                    .get("type")
                    .map_or_else(|| "no type".to_owned(), Value::to_string)
            ));
        }
    }
    if tokens.len() > 1 {
        reasons.push(format!(
            "tokens: expected at most one ({ours:?}), presented {} (ids {})",
            tokens.len(),
            tokens
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    reasons
}

fn keyslot_reasons(id: &str, slot: &Keyslot) -> Vec<String> {
    let what = format!("keyslot {id}");
    let mut reasons = Vec::new();
    if slot.kind != "luks2" {
        reasons.push(format!(
            "{what}: expected type \"luks2\", presented {:?}",
            slot.kind
        ));
    }
    if !is_number(slot.key_size.as_ref(), VOLUME_KEY_BYTES) {
        reasons.push(mismatch(
            &what,
            "volume key_size",
            &format!("{VOLUME_KEY_BYTES} (bytes, 512 bits)"),
            slot.key_size.as_ref(),
        ));
    }
    let Some(area) = &slot.area else {
        reasons.push(format!(
            "{what}: expected an area encrypted with {KEYSLOT_CIPHER:?}, presented none"
        ));
        return reasons;
    };
    if area.kind.as_deref() != Some("raw") {
        reasons.push(format!(
            "{what}: expected area type \"raw\", presented {:?}",
            area.kind
                .as_deref()
                .unwrap_or("nothing")
        ));
    }
    if area.encryption.as_deref() != Some(KEYSLOT_CIPHER) {
        reasons.push(format!(
            "{what}: expected area cipher {KEYSLOT_CIPHER:?}, presented {}",
            area.encryption
                .as_deref()
                .map_or_else(|| "nothing".to_owned(), |c| format!("{c:?}"))
        ));
    }
    if !is_number(area.key_size.as_ref(), KEYSLOT_KEY_BYTES) {
        reasons.push(mismatch(
            &what,
            "area key_size",
            &KEYSLOT_KEY_BYTES.to_string(),
            area.key_size.as_ref(),
        ));
    }
    reasons
}

fn segment_reasons(id: &str, seg: &Segment) -> Vec<String> {
    let what = format!("segment {id}");
    let mut reasons = Vec::new();
    if seg.kind != "crypt" {
        reasons.push(format!(
            "{what}: expected type \"crypt\", presented {:?}",
            seg.kind
        ));
    }
    if seg.encryption.as_deref() != Some(SEGMENT_CIPHER) {
        reasons.push(format!(
            "{what}: expected cipher {SEGMENT_CIPHER:?}, presented {}",
            seg.encryption
                .as_deref()
                .map_or_else(|| "nothing".to_owned(), |c| format!("{c:?}"))
        ));
    }
    let field = |name: &str| seg.rest.get(name);
    if !is_number(field("sector_size"), SECTOR_SIZE) {
        reasons.push(mismatch(
            &what,
            "sector_size",
            &SECTOR_SIZE.to_string(),
            field("sector_size"),
        ));
    }
    if !is_number(field("iv_tweak"), 0) {
        reasons.push(mismatch(&what, "iv_tweak", "\"0\"", field("iv_tweak")));
    }
    if !is_number(field("offset"), DATA_OFFSET) {
        reasons.push(mismatch(
            &what,
            "offset",
            &format!("\"{DATA_OFFSET}\""),
            field("offset"),
        ));
    }
    if !is_string(field("size"), "dynamic") {
        reasons.push(mismatch(&what, "size", "\"dynamic\"", field("size")));
    }
    for (key, value) in &seg.rest {
        if !SEGMENT_FIELDS.contains(&key.as_str()) {
            reasons.push(format!(
                "{what}: expected no {key:?} field, presented {key:?}: {value}"
            ));
        }
    }
    reasons
}

#[cfg(test)]
mod tests;
