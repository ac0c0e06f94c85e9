//! The LUKS2 metadata (`cryptsetup luksDump --dump-json-metadata`): keyslots and segments, and
//! the `cipher_null` check.
//!
//! A LUKS header is not authenticated: whoever controls the disk (the host of a confidential
//! VM) can replace it. A keyslot whose area cipher is `cipher_null` stores the volume key in
//! clear, so *any* passphrase "opens" it: the VM would unlock and write its secrets to a
//! volume whose key the attacker chose. A `cipher_null` segment stores the data in clear. So
//! every unlock path refuses such a header before a key is ever tried.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub keyslots: BTreeMap<String, Keyslot>,
    #[serde(default)]
    pub segments: BTreeMap<String, Segment>,
}

#[derive(Debug, Deserialize)]
pub struct Keyslot {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub area: Option<Area>,
    #[serde(default)]
    pub kdf: Option<Kdf>,
}

#[derive(Debug, Deserialize)]
pub struct Area {
    #[serde(default)]
    pub encryption: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Kdf {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct Segment {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub encryption: Option<String>,
}

impl Metadata {
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::Other(format!("cannot parse the LUKS2 JSON metadata: {e}")))
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

    /// Why this header must not be opened: a `cipher_null` keyslot or segment, or no
    /// encrypted segment at all.
    pub fn unsafe_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for (id, slot) in &self.keyslots {
            let cipher = slot
                .area
                .as_ref()
                .and_then(|a| a.encryption.as_deref());
            match cipher {
                Some(c) if is_null_cipher(c) => reasons.push(format!(
                    "keyslot {id} uses cipher {c:?}: it would accept any passphrase"
                )),
                Some(_) => {}
                None => reasons.push(format!("keyslot {id} names no cipher")),
            }
        }
        for (id, seg) in &self.segments {
            match seg.encryption.as_deref() {
                Some(c) if is_null_cipher(c) => reasons.push(format!(
                    "segment {id} uses cipher {c:?}: the data would not be encrypted"
                )),
                Some(_) if seg.kind == "crypt" => {}
                _ => reasons.push(format!(
                    "segment {id} is of type {:?}, not an encrypted (crypt) segment",
                    seg.kind
                )),
            }
        }
        if self.segments.is_empty() {
            reasons.push("the header has no data segment".into());
        }
        reasons
    }

    /// `Err(UnsafeHeader)` when [`unsafe_reasons`](Self::unsafe_reasons) is not empty.
    pub fn check_safe(&self, location: &std::path::Path) -> Result<()> {
        let reasons = self.unsafe_reasons();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Error::UnsafeHeader {
                location: location.to_path_buf(),
                why: format!(
                    "unsafe LUKS2 header (cipher_null attack): {}",
                    reasons.join("; ")
                ),
            })
        }
    }
}

/// `cipher_null`, `cipher_null-ecb`, `null`, … in any case.
fn is_null_cipher(cipher: &str) -> bool {
    let lower = cipher.to_ascii_lowercase();
    lower.starts_with("cipher_null") || lower == "null" || lower.starts_with("null-")
}

#[cfg(test)]
mod tests;
