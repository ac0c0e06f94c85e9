//! The hash algorithms evidence uses (TPM banks, IMA templates), all computed with `ring`.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// A hash algorithm as TPM PCR banks and IMA logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Every algorithm, in TPM_ALG_ID order.
    pub const ALL: [Self; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// Digest length in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The TPM_ALG_ID (TCG Algorithm Registry).
    pub const fn tpm_alg_id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000B,
            Self::Sha384 => 0x000C,
            Self::Sha512 => 0x000D,
        }
    }

    /// The algorithm for a TPM_ALG_ID, if it is one of ours.
    pub const fn from_tpm_alg_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(Self::Sha1),
            0x000B => Some(Self::Sha256),
            0x000C => Some(Self::Sha384),
            0x000D => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The algorithm whose digests are `len` bytes long.
    pub const fn from_len(len: usize) -> Option<Self> {
        match len {
            20 => Some(Self::Sha1),
            32 => Some(Self::Sha256),
            48 => Some(Self::Sha384),
            64 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The lower-case name used in IMA logs and on the command line (`sha256`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }

    /// Hash one buffer.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        ring::digest::digest(self.ring(), data)
            .as_ref()
            .to_vec()
    }

    /// Hash the concatenation of several buffers.
    pub fn digest_all<'a>(self, parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut ctx = self.hasher();
        for part in parts {
            ctx.update(part);
        }
        ctx.finish()
    }

    /// An incremental hasher.
    pub fn hasher(self) -> Hasher {
        Hasher(ring::digest::Context::new(self.ring()))
    }

    /// `PCR := H(PCR || digest)`: one TPM extend.
    pub fn extend(self, pcr: &mut Vec<u8>, digest: &[u8]) {
        let next = self.digest_all([pcr.as_slice(), digest]);
        *pcr = next;
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .to_ascii_lowercase()
            .replace('-', "")
            .as_str()
        {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!(
                "unknown hash algorithm {s:?} (expected sha1, sha256, sha384 or sha512)"
            )),
        }
    }
}

/// SHA-256 of `data` as a fixed-size array (evidence digests, key hashes in binding claims).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// An incremental hash computation.
pub struct Hasher(ring::digest::Context);

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hasher")
            .finish_non_exhaustive()
    }
}
