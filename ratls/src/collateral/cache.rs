//! The on-disk cache: one JSON file per item, named by what the item certifies (a product's CRL,
//! a chip's VCEK at one TCB, an FMSPC's TCB info ...), written atomically. The cache is an
//! optimisation and an offline source, never a trust anchor: whatever it returns is verified
//! exactly like a fresh download (signatures, chains to the pinned roots, validity windows).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest cache file read back.
const MAX_ENTRY_FILE: u64 = 8 * 1024 * 1024;

/// Layout version of the entries.
const ENTRY_VERSION: u32 = 1;

/// One cached response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub version: u32,
    /// Where it came from.
    pub url: String,
    /// When it was downloaded (seconds since the epoch, the verifier's clock).
    pub fetched_at: u64,
    /// When it stops being valid, from its own content (`nextUpdate` of a CRL, TCB info or QE
    /// identity; `notAfter` of a certificate); `None` when it says nothing.
    pub expires_at: Option<u64>,
    /// The response headers that are part of the item (Intel's issuer chains).
    pub headers: Vec<(String, String)>,
    /// The body, hex.
    #[serde(with = "hex::serde")]
    pub body: Vec<u8>,
}

impl Entry {
    pub fn new(url: &str, fetched_at: u64, expires_at: Option<u64>, body: Vec<u8>) -> Self {
        Self {
            version: ENTRY_VERSION,
            url: url.to_owned(),
            fetched_at,
            expires_at,
            headers: Vec::new(),
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key` (keys are made of `[A-Za-z0-9._-]` only; anything else is replaced).
    pub fn path(&self, key: &str) -> PathBuf {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The entry under `key`, or `None` when there is none or it does not read back (a damaged
    /// entry is refetched, never trusted: see the module documentation).
    pub fn get(&self, key: &str) -> Option<Entry> {
        let path = self.path(key);
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > MAX_ENTRY_FILE {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.version == ENTRY_VERSION).then_some(entry)
    }

    /// Store `entry` under `key`, atomically (mode 0644: collateral is public).
    pub fn put(&self, key: &str, entry: &Entry) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        crate::fsutil::create_dir(&self.dir, 0o755)?;
        crate::fsutil::write_atomic(&self.path(key), &json, crate::fsutil::PUBLIC_MODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("ratls-cache-{}", std::process::id()));
        let cache = Cache::new(&dir);
        assert!(cache.get("a").is_none());
        let mut e = Entry::new("http://x/a", 10, Some(20), vec![1, 2, 3]);
        e.headers
            .push(("TCB-Info-Issuer-Chain".into(), "pem".into()));
        cache.put("a", &e).unwrap();
        assert_eq!(cache.get("a"), Some(e.clone()));
        assert_eq!(
            cache
                .get("a")
                .unwrap()
                .header("tcb-info-issuer-chain"),
            Some("pem")
        );
        // Keys cannot escape the directory.
        assert_eq!(
            cache.path("../../etc/passwd"),
            dir.join(".._.._etc_passwd.json")
        );
        // A damaged entry is a miss.
        std::fs::write(cache.path("a"), b"{not json").unwrap();
        assert!(cache.get("a").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
