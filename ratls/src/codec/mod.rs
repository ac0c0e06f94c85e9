//! A bounds-checked cursor over untrusted bytes.
//!
//! Every parser in this crate reads through a [`Reader`]: each read names the structure and the
//! field it is reading, so a truncated or malformed input turns into a [`ParseError`] that says
//! where it broke, never into a panic. Parsers call [`Reader::finish`] to reject trailing bytes
//! unless the format explicitly tolerates them.

use core::fmt;

/// Why untrusted bytes could not be parsed.
///
/// `what` names the structure being parsed (`"SEV-SNP report"`, `"TPMS_ATTEST"` …) and `field`
/// the field inside it; offsets are relative to the start of that structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input ended before a field could be read.
    #[error("{what}: truncated at {field} (offset {offset}): need {needed} bytes, {available} available")]
    Truncated {
        what: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// Bytes were left over after the structure ended.
    #[error("{what}: {count} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        what: &'static str,
        offset: usize,
        count: usize,
    },
    /// A field holds a value the format does not allow.
    #[error(
        "{what}: invalid {field} at offset {offset}: expected {expected}, presented {presented}"
    )]
    InvalidValue {
        what: &'static str,
        field: &'static str,
        offset: usize,
        expected: String,
        presented: String,
    },
    /// A field holds a value that is valid in the format but not supported here.
    #[error("{what}: unsupported {field}: {presented} (supported: {supported})")]
    Unsupported {
        what: &'static str,
        field: &'static str,
        presented: String,
        supported: &'static str,
    },
    /// A length or count exceeds the cap this crate puts on it.
    #[error("{what}: {field} too large: {size} > limit {limit}")]
    TooLarge {
        what: &'static str,
        field: &'static str,
        size: usize,
        limit: usize,
    },
}

/// A cursor over a byte slice that never reads out of bounds.
#[derive(Clone)]
pub struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self {
            what,
            buf,
            offset: 0,
        }
    }

    /// The name of the structure this reader parses.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf
            .len()
            .saturating_sub(self.offset)
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let available = self.remaining();
        let end = self
            .offset
            .checked_add(n)
            .filter(|_| n <= available);
        match end.and_then(|end| self.buf.get(self.offset..end)) {
            Some(bytes) => {
                self.offset += n;
                Ok(bytes)
            }
            None => Err(ParseError::Truncated {
                what: self.what,
                field,
                offset: self.offset,
                needed: n,
                available,
            }),
        }
    }

    /// Look at the next `n` bytes without consuming them.
    pub fn peek(&self, n: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        self.clone().take(n, field)
    }

    /// Skip `n` bytes.
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), ParseError> {
        self.take(n, field).map(|_| ())
    }

    /// Take a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ParseError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A sub-reader over the next `n` bytes (same structure name).
    pub fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, ParseError> {
        let what = self.what;
        self.take(n, field)
            .map(|buf| Reader::new(what, buf))
    }

    /// A sub-reader over the next `n` bytes that names a nested structure.
    pub fn sub_named(
        &mut self,
        what: &'static str,
        n: usize,
        field: &'static str,
    ) -> Result<Reader<'a>, ParseError> {
        self.take(n, field)
            .map(|buf| Reader::new(what, buf))
    }

    /// Everything not yet consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self
            .buf
            .get(self.offset..)
            .unwrap_or_default();
        self.offset = self.buf.len();
        rest
    }

    /// Succeed only if every byte was consumed.
    pub fn finish(self) -> Result<(), ParseError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ParseError::TrailingBytes {
                what: self.what,
                offset: self.offset,
                count,
            }),
        }
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        self.array::<1>(field).map(|b| b[0])
    }

    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        self.array(field)
            .map(u16::from_le_bytes)
    }

    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        self.array(field)
            .map(u32::from_le_bytes)
    }

    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        self.array(field)
            .map(u64::from_le_bytes)
    }

    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        self.array(field)
            .map(u16::from_be_bytes)
    }

    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        self.array(field)
            .map(u32::from_be_bytes)
    }

    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        self.array(field)
            .map(u64::from_be_bytes)
    }

    /// A big-endian u16 length followed by that many bytes (the TPM2B shape), capped at `limit`.
    pub fn tpm2b(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], ParseError> {
        let at = self.offset;
        let len = usize::from(self.u16_be(field)?);
        if len > limit {
            self.offset = at;
            return Err(self.too_large(field, len, limit));
        }
        self.take(len, field)
    }

    /// A little-endian u32 length followed by that many bytes, capped at `limit`.
    pub fn u32_le_prefixed(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<&'a [u8], ParseError> {
        let len = self.u32_le(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limit {
            return Err(self.too_large(field, len, limit));
        }
        self.take(len, field)
    }

    /// An [`ParseError::InvalidValue`] at the current offset.
    pub fn invalid(
        &self,
        field: &'static str,
        expected: impl Into<String>,
        presented: impl Into<String>,
    ) -> ParseError {
        ParseError::InvalidValue {
            what: self.what,
            field,
            offset: self.offset,
            expected: expected.into(),
            presented: presented.into(),
        }
    }

    /// A [`ParseError::TooLarge`] for this structure.
    pub fn too_large(&self, field: &'static str, size: usize, limit: usize) -> ParseError {
        ParseError::TooLarge {
            what: self.what,
            field,
            size,
            limit,
        }
    }

    /// A [`ParseError::Unsupported`] for this structure.
    pub fn unsupported(
        &self,
        field: &'static str,
        presented: impl Into<String>,
        supported: &'static str,
    ) -> ParseError {
        ParseError::Unsupported {
            what: self.what,
            field,
            presented: presented.into(),
            supported,
        }
    }
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("what", &self.what)
            .field("len", &self.buf.len())
            .field("offset", &self.offset)
            .finish()
    }
}

#[cfg(test)]
mod tests;
