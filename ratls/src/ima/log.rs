//! The measurement list: entries, the binary and ASCII parsers, and renderers back to both forms.

use core::fmt;
use core::ops::Range;

use serde::Serialize;

use super::{MAX_ENTRIES, MAX_PATH, MAX_TEMPLATE_DATA};
use crate::codec::{ParseError, Reader};
use crate::digest::HashAlg;
use crate::hexfmt::hex;

/// The highest PCR index a TPM 2.0 (PC Client) has; entries naming a higher one are malformed.
pub(super) const MAX_PCR: u32 = 23;
/// Template names are short identifiers (`ima-sig`); the kernel caps them well below this.
const MAX_TEMPLATE_NAME: usize = 255;
/// `IMA_EVENT_NAME_LEN_MAX`: the legacy `ima` template truncates names to this many bytes and
/// hashes them zero-padded to one byte more.
pub(super) const IMA_EVENT_NAME_LEN_MAX: usize = 255;
/// The legacy `d` field: a SHA-1 (or, on ancient kernels, MD5 zero-padded) file digest.
pub(super) const LEGACY_DIGEST_LEN: usize = 20;
/// `CRYPTO_MAX_ALG_NAME`: the longest algorithm name a `d-ng` prefix can carry.
pub(super) const MAX_ALGO_NAME: usize = 128;
/// The longest file digest (SHA-512, SHA3-512, Streebog-512).
const MAX_FILE_DIGEST: usize = 64;
/// A `d-ng` field: `<algo>` `:` `\0` digest.
const MAX_DIGEST_NG: usize = MAX_ALGO_NAME + 2 + MAX_FILE_DIGEST;
/// Zero padding for the legacy `ima` template name.
const NAME_PADDING: [u8; IMA_EVENT_NAME_LEN_MAX + 1] = [0; IMA_EVENT_NAME_LEN_MAX + 1];

const BINARY: &str = "IMA binary log";
const TEMPLATE_DATA: &str = "IMA template data";
pub(super) const SUPPORTED_TEMPLATES: &str = "ima, ima-ng, ima-sig, ima-buf";

/// An IMA template: which fields an entry's template data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[non_exhaustive]
pub enum Template {
    /// `ima`: `d|n` (20-byte SHA-1 file digest, file name of at most 255 bytes).
    #[serde(rename = "ima")]
    Ima,
    /// `ima-buf`: `d-ng|n-ng|buf` (a measured buffer, e.g. `kexec-cmdline`).
    #[serde(rename = "ima-buf")]
    ImaBuf,
    /// `ima-ng`: `d-ng|n-ng`.
    #[serde(rename = "ima-ng")]
    ImaNg,
    /// `ima-sig`: `d-ng|n-ng|sig`.
    #[serde(rename = "ima-sig")]
    ImaSig,
}

impl Template {
    /// The template name as the kernel writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ima => "ima",
            Self::ImaBuf => "ima-buf",
            Self::ImaNg => "ima-ng",
            Self::ImaSig => "ima-sig",
        }
    }

    /// The template with this name, if supported.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"ima" => Some(Self::Ima),
            b"ima-buf" => Some(Self::ImaBuf),
            b"ima-ng" => Some(Self::ImaNg),
            b"ima-sig" => Some(Self::ImaSig),
            _ => None,
        }
    }

    /// Whether the template has a third field (`sig` or `buf`).
    pub(super) const fn has_extra(self) -> bool {
        matches!(self, Self::ImaBuf | Self::ImaSig)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which export a [`Log`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// `ascii_runtime_measurements`.
    Ascii,
    /// `binary_runtime_measurements[_sha<N>]` (or a log built with [`Log::push`]).
    Binary,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ascii => "ASCII",
            Self::Binary => "binary",
        })
    }
}

/// One measurement.
///
/// The template data is kept exactly as the binary export carries it; the parsed fields are
/// views into it, so an entry cannot disagree with the bytes that were hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pcr: u32,
    template_hash: Vec<u8>,
    template: Template,
    data: Vec<u8>,
    /// The `d-ng` algorithm prefix (empty for `d` and a bare `d-ng`).
    algo: Range<usize>,
    digest: Range<usize>,
    /// The file path / event name, without its NUL terminator.
    path: Range<usize>,
    /// `sig` or `buf` (empty for templates without one).
    extra: Range<usize>,
    violation: bool,
}

impl Entry {
    /// Build an entry from its parts, parsing `data` (the template data as the binary export
    /// carries it) into fields.
    pub(super) fn from_parts(
        pcr: u32,
        template_hash: Vec<u8>,
        template: Template,
        data: Vec<u8>,
    ) -> Result<Self, ParseError> {
        let fields = Fields::parse(template, &data)?;
        let violation = template_hash.iter().all(|&b| b == 0);
        Ok(Self {
            pcr,
            template_hash,
            template,
            data,
            algo: fields.algo,
            digest: fields.digest,
            path: fields.path,
            extra: fields.extra,
            violation,
        })
    }

    fn slice(&self, range: &Range<usize>) -> &[u8] {
        self.data
            .get(range.clone())
            .unwrap_or_default()
    }

    /// The PCR the entry was extended into (10 unless the policy said otherwise).
    pub fn pcr(&self) -> u32 {
        self.pcr
    }

    /// The template hash as the log presents it (all zeros for a violation).
    pub fn template_hash(&self) -> &[u8] {
        &self.template_hash
    }

    /// The entry's template.
    pub fn template(&self) -> Template {
        self.template
    }

    /// The template name (`ima-sig` …).
    pub fn template_name(&self) -> &'static str {
        self.template.name()
    }

    /// The template data exactly as the binary export carries it.
    ///
    /// For `ima-ng`, `ima-sig` and `ima-buf` these are the bytes the kernel hashes: each field
    /// as a little-endian u32 length and its data. For the legacy `ima` template the export
    /// holds the 20-byte digest, a u32 name length and the name without NUL, while the kernel
    /// hashes the digest followed by the name zero-padded to 256 bytes; use
    /// [`Entry::template_digest`] rather than hashing these bytes yourself.
    pub fn template_data(&self) -> &[u8] {
        &self.data
    }

    /// Whether this is a violation record (all-zero template hash).
    pub fn is_violation(&self) -> bool {
        self.violation
    }

    /// The file digest (the `d` or `d-ng` field, without its algorithm prefix).
    pub fn file_digest(&self) -> &[u8] {
        self.slice(&self.digest)
    }

    /// The file digest's algorithm: the `d-ng` prefix (`sha256` …), or `sha1` for the legacy
    /// `d` field and a bare 20-byte `d-ng`, `md5` for a bare 16-byte one.
    pub fn file_digest_algo(&self) -> &str {
        let prefix = self.slice(&self.algo);
        if prefix.is_empty() {
            return match self.digest.len() {
                16 => "md5",
                _ => "sha1",
            };
        }
        // The prefix was checked to be ASCII when parsed.
        core::str::from_utf8(prefix).unwrap_or("")
    }

    /// Whether the `d-ng` field carries an explicit `<algo>:` prefix.
    pub fn has_algo_prefix(&self) -> bool {
        !self.algo.is_empty()
    }

    /// The file path (for `ima-buf`, the buffer's event name) as raw bytes, without its NUL. It
    /// may contain any byte but NUL, newlines included; use [`Entry::path_display`] to print.
    pub fn path(&self) -> &[u8] {
        self.slice(&self.path)
    }

    /// The path with control characters, backslashes and non-ASCII bytes escaped.
    pub fn path_display(&self) -> Escaped<'_> {
        Escaped(self.path())
    }

    /// The `sig` field of `ima-sig` (empty when the file had no signature, or for other
    /// templates).
    pub fn signature(&self) -> &[u8] {
        match self.template {
            Template::ImaSig => self.slice(&self.extra),
            _ => &[],
        }
    }

    /// The `buf` field of `ima-buf` (empty for other templates).
    pub fn buf(&self) -> &[u8] {
        match self.template {
            Template::ImaBuf => self.slice(&self.extra),
            _ => &[],
        }
    }

    /// `H_alg` of the template data as the kernel hashes it: the stored template data for
    /// `ima-ng`/`ima-sig`/`ima-buf`; the 20-byte digest followed by the name zero-padded to
    /// 256 bytes (no length fields) for the legacy `ima` template.
    pub fn template_digest(&self, alg: HashAlg) -> Vec<u8> {
        let mut hasher = alg.hasher();
        match self.template {
            Template::Ima => {
                let name = self.path();
                let padding = (IMA_EVENT_NAME_LEN_MAX + 1).saturating_sub(name.len());
                hasher.update(self.file_digest());
                hasher.update(name);
                hasher.update(
                    NAME_PADDING
                        .get(..padding)
                        .unwrap_or_default(),
                );
            }
            Template::ImaBuf | Template::ImaNg | Template::ImaSig => hasher.update(&self.data),
        }
        hasher.finish()
    }

    /// Whether the stored template hash is `H_alg(template data)` (always false for a
    /// violation, whose stored hash is all zeros).
    pub fn template_hash_matches(&self, alg: HashAlg) -> bool {
        !self.violation && self.template_digest(alg) == self.template_hash
    }

    /// Append the entry in `binary_runtime_measurements` form.
    fn write_binary(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pcr.to_le_bytes());
        out.extend_from_slice(&self.template_hash);
        let name = self.template.name();
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        if self.template != Template::Ima {
            out.extend_from_slice(&len_u32(self.data.len()).to_le_bytes());
        }
        out.extend_from_slice(&self.data);
    }

    /// Append the entry in `ascii_runtime_measurements` form (with its newline).
    fn write_ascii(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{:2} ", self.pcr).as_bytes());
        out.extend_from_slice(hex(&self.template_hash).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.template.name().as_bytes());
        // The kernel writes " " before every field and nothing for an empty one.
        out.push(b' ');
        if self.has_algo_prefix() {
            out.extend_from_slice(self.slice(&self.algo));
            out.push(b':');
        }
        out.extend_from_slice(hex(self.file_digest()).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path());
        if self.template.has_extra() {
            out.push(b' ');
            out.extend_from_slice(hex(self.slice(&self.extra)).as_bytes());
        }
        out.push(b'\n');
    }
}

/// Byte ranges of an entry's fields inside its template data.
struct Fields {
    algo: Range<usize>,
    digest: Range<usize>,
    path: Range<usize>,
    extra: Range<usize>,
}

impl Fields {
    /// Parse template data (binary-export form) for `template`. Offsets in errors are relative
    /// to the template data.
    fn parse(template: Template, data: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(TEMPLATE_DATA, data);
        let fields = match template {
            Template::Ima => {
                let start = r.offset();
                r.skip(LEGACY_DIGEST_LEN, "d (file digest)")?;
                let digest = start..r.offset();
                let at = r.clone();
                let len = usize::try_from(r.u32_le("n length")?).unwrap_or(usize::MAX);
                if len > IMA_EVENT_NAME_LEN_MAX {
                    return Err(at.too_large("n (file name)", len, IMA_EVENT_NAME_LEN_MAX));
                }
                let name = r.take(len, "n (file name)")?;
                if name.contains(&0) {
                    return Err(at.invalid(
                        "n (file name)",
                        "a name without NUL bytes",
                        format!("{:?}", Escaped(name).to_string()),
                    ));
                }
                Self {
                    algo: 0..0,
                    digest,
                    path: (r.offset() - len)..r.offset(),
                    extra: 0..0,
                }
            }
            Template::ImaBuf | Template::ImaNg | Template::ImaSig => {
                let at = r.clone();
                let dng = r.u32_le_prefixed("d-ng", MAX_DIGEST_NG)?;
                let dng_start = r.offset() - dng.len();
                let (algo, digest) = split_digest_ng(dng).ok_or_else(|| {
                    at.invalid(
                        "d-ng",
                        "<algo>:\\0<digest> (or a bare 20-byte SHA-1 digest)",
                        hex(dng),
                    )
                })?;
                let at = r.clone();
                let nng = r.u32_le_prefixed("n-ng", MAX_PATH + 1)?;
                let nng_start = r.offset() - nng.len();
                let Some((&0, name)) = nng.split_last() else {
                    return Err(at.invalid(
                        "n-ng",
                        "a NUL-terminated name",
                        format!("{:?}", Escaped(nng).to_string()),
                    ));
                };
                if name.contains(&0) {
                    return Err(at.invalid(
                        "n-ng",
                        "a name without NUL bytes before its terminator",
                        format!("{:?}", Escaped(name).to_string()),
                    ));
                }
                let extra = if template.has_extra() {
                    let field = if template == Template::ImaSig {
                        "sig"
                    } else {
                        "buf"
                    };
                    let bytes = r.u32_le_prefixed(field, MAX_TEMPLATE_DATA)?;
                    (r.offset() - bytes.len())..r.offset()
                } else {
                    0..0
                };
                Self {
                    algo: dng_start..dng_start + algo,
                    digest: dng_start + digest.start..dng_start + digest.end,
                    path: nng_start..nng_start + name.len(),
                    extra,
                }
            }
        };
        r.finish()?;
        Ok(fields)
    }
}

/// Split a `d-ng` field into (algorithm-prefix length, digest range). The prefix form is
/// `<algo>:\0<digest>`; a field without it is a bare SHA-1 (20 bytes) or MD5 (16 bytes) digest.
fn split_digest_ng(dng: &[u8]) -> Option<(usize, Range<usize>)> {
    let prefixed = dng
        .windows(2)
        .position(|w| w == b":\0")
        .filter(|&colon| {
            colon > 0
                && colon <= MAX_ALGO_NAME
                && dng
                    .get(..colon)
                    .is_some_and(|name| name.iter().all(|&b| is_algo_char(b)))
        });
    match prefixed {
        Some(colon) => {
            let digest = (colon + 2)..dng.len();
            (digest.len() <= MAX_FILE_DIGEST).then_some((colon, digest))
        }
        None => matches!(dng.len(), 16 | 20).then_some((0, 0..dng.len())),
    }
}

pub(super) fn is_algo_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A length known to fit in a u32 (every length in an entry is capped far below `u32::MAX`).
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Move a template-data parse error to absolute offsets within the log.
pub(super) fn rebase(error: ParseError, base: usize) -> ParseError {
    match error {
        ParseError::Truncated {
            what,
            field,
            offset,
            needed,
            available,
        } => ParseError::Truncated {
            what,
            field,
            offset: offset.saturating_add(base),
            needed,
            available,
        },
        ParseError::TrailingBytes {
            what,
            offset,
            count,
        } => ParseError::TrailingBytes {
            what,
            offset: offset.saturating_add(base),
            count,
        },
        ParseError::InvalidValue {
            what,
            field,
            offset,
            expected,
            presented,
        } => ParseError::InvalidValue {
            what,
            field,
            offset: offset.saturating_add(base),
            expected,
            presented,
        },
        other => other,
    }
}

/// The template data (binary-export form) for the given fields.
pub(super) fn encode_template_data(
    template: Template,
    algo: Option<&[u8]>,
    digest: &[u8],
    path: &[u8],
    extra: &[u8],
) -> Vec<u8> {
    let mut data = Vec::with_capacity(
        digest
            .len()
            .saturating_add(path.len())
            .saturating_add(extra.len())
            .saturating_add(32),
    );
    match template {
        Template::Ima => {
            data.extend_from_slice(digest);
            data.extend_from_slice(&len_u32(path.len()).to_le_bytes());
            data.extend_from_slice(path);
        }
        Template::ImaBuf | Template::ImaNg | Template::ImaSig => {
            let prefix_len = algo.map_or(0, |a| a.len() + 2);
            data.extend_from_slice(&len_u32(prefix_len + digest.len()).to_le_bytes());
            if let Some(algo) = algo {
                data.extend_from_slice(algo);
                data.extend_from_slice(b":\0");
            }
            data.extend_from_slice(digest);
            data.extend_from_slice(&len_u32(path.len() + 1).to_le_bytes());
            data.extend_from_slice(path);
            data.push(0);
            if template.has_extra() {
                data.extend_from_slice(&len_u32(extra.len()).to_le_bytes());
                data.extend_from_slice(extra);
            }
        }
    }
    data
}

/// The template for a name read from the log: unsupported when it looks like a template name,
/// invalid when it does not.
fn template_from_name(at: &Reader<'_>, name: &[u8]) -> Result<Template, ParseError> {
    if let Some(template) = Template::from_name(name) {
        return Ok(template);
    }
    if !name.is_empty() && name.iter().all(u8::is_ascii_graphic) {
        Err(at.unsupported(
            "template name",
            String::from_utf8_lossy(name),
            SUPPORTED_TEMPLATES,
        ))
    } else {
        Err(at.invalid(
            "template name",
            "a printable template name",
            format!("{:?}", Escaped(name).to_string()),
        ))
    }
}

/// A measurement list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub(super) format: LogFormat,
    pub(super) template_hash_alg: HashAlg,
    pub(super) entries: Vec<Entry>,
}

impl Log {
    /// An empty log whose template hashes are in `template_hash_alg`; fill it with
    /// [`Log::push`] (simulated attesters, tests, benchmarks).
    pub fn new(template_hash_alg: HashAlg) -> Self {
        Self {
            format: LogFormat::Binary,
            template_hash_alg,
            entries: Vec::new(),
        }
    }

    /// Parse `binary_runtime_measurements` (or `binary_runtime_measurements_sha<N>`).
    ///
    /// `template_hash_alg` is the bank the export's template hashes are in. With `None` the size
    /// is detected: each of SHA-1, SHA-256, SHA-384 and SHA-512 is tried, and the one under
    /// which the whole log parses is chosen; if several do, the first under which every
    /// template hash verifies (else the first that parses). If none parses, the error is the one
    /// from the size that got furthest.
    pub fn parse_binary(
        bytes: &[u8],
        template_hash_alg: Option<HashAlg>,
    ) -> Result<Self, ParseError> {
        match template_hash_alg {
            Some(alg) => Self::parse_binary_as(bytes, alg).map_err(|(e, _)| e),
            None => Self::detect_binary(bytes, &HashAlg::ALL),
        }
    }

    pub(super) fn detect_binary(bytes: &[u8], order: &[HashAlg]) -> Result<Self, ParseError> {
        let mut parsed = Vec::new();
        let mut best: Option<(ParseError, usize)> = None;
        for &alg in order {
            match Self::parse_binary_as(bytes, alg) {
                Ok(log) => parsed.push(log),
                Err((error, reached)) => {
                    let better = match &best {
                        None => true,
                        Some((old, old_reached)) => {
                            reached > *old_reached
                                || (reached == *old_reached
                                    && matches!(error, ParseError::Unsupported { .. })
                                    && !matches!(old, ParseError::Unsupported { .. }))
                        }
                    };
                    if better {
                        best = Some((error, reached));
                    }
                }
            }
        }
        if parsed.len() > 1 {
            if let Some(at) = parsed
                .iter()
                .position(Self::all_template_hashes_match)
            {
                return Ok(parsed.swap_remove(at));
            }
        }
        if !parsed.is_empty() {
            return Ok(parsed.swap_remove(0));
        }
        Err(match best {
            Some((error, _)) => error,
            // `order` was empty; cannot happen with the callers above.
            None => ParseError::Unsupported {
                what: BINARY,
                field: "template hash algorithm",
                presented: "none".into(),
                supported: "sha1, sha256, sha384, sha512",
            },
        })
    }

    /// Parse with a known template-hash size; on error, also say how many entries parsed.
    fn parse_binary_as(bytes: &[u8], alg: HashAlg) -> Result<Self, (ParseError, usize)> {
        let mut r = Reader::new(BINARY, bytes);
        let mut entries = Vec::new();
        while !r.is_empty() {
            if entries.len() >= MAX_ENTRIES {
                let error = r.too_large("entries", entries.len() + 1, MAX_ENTRIES);
                return Err((error, entries.len()));
            }
            match read_binary_entry(&mut r, alg) {
                Ok(entry) => entries.push(entry),
                Err(error) => return Err((error, entries.len())),
            }
        }
        Ok(Self {
            format: LogFormat::Binary,
            template_hash_alg: alg,
            entries,
        })
    }

    /// The bytes of the binary log `bytes` from entry `from` on (all PCRs; empty past the
    /// end), found by stepping over the records' headers only: no template data is parsed or
    /// hashed, so a re-attestation's delta costs the attester a walk of the log, not a parse of
    /// it. `None` when `bytes` is not a binary log that walks to its end under exactly one
    /// template-hash size (an ASCII log, a malformed or an ambiguous one): parse it instead.
    pub fn binary_tail(bytes: &[u8], from: usize) -> Option<&[u8]> {
        let mut found = None;
        for alg in HashAlg::ALL {
            let mut r = Reader::new(BINARY, bytes);
            let mut at = None;
            let mut count = 0usize;
            let walked = loop {
                if count == from {
                    at = Some(r.offset());
                }
                if r.is_empty() {
                    break true;
                }
                if count >= MAX_ENTRIES || skip_binary_entry(&mut r, alg).is_err() {
                    break false;
                }
                count += 1;
            };
            if walked {
                if found.is_some() {
                    return None;
                }
                found = Some(at.unwrap_or(bytes.len()));
            }
        }
        found.and_then(|offset| bytes.get(offset..))
    }

    /// Append a measurement; its template hash is computed in the log's bank.
    ///
    /// `digest_algo` is the `d-ng` prefix (`Some("sha256")`); `None` writes a bare digest (and
    /// must be `None` for the legacy `ima` template, whose digest is 20 bytes). `extra` is the
    /// `sig` of `ima-sig` or the `buf` of `ima-buf`, ignored for other templates.
    pub fn push(
        &mut self,
        pcr: u32,
        template: Template,
        digest_algo: Option<&str>,
        digest: &[u8],
        path: &[u8],
        extra: &[u8],
    ) -> Result<&Entry, ParseError> {
        self.push_entry(pcr, template, digest_algo, digest, path, extra, false)
    }

    /// Append a violation record: the same fields (the kernel records a zero digest), an
    /// all-zero template hash.
    pub fn push_violation(
        &mut self,
        pcr: u32,
        template: Template,
        digest_algo: Option<&str>,
        digest: &[u8],
        path: &[u8],
    ) -> Result<&Entry, ParseError> {
        self.push_entry(pcr, template, digest_algo, digest, path, &[], true)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_entry(
        &mut self,
        pcr: u32,
        template: Template,
        digest_algo: Option<&str>,
        digest: &[u8],
        path: &[u8],
        extra: &[u8],
        violation: bool,
    ) -> Result<&Entry, ParseError> {
        let what = "IMA entry";
        if self.entries.len() >= MAX_ENTRIES {
            return Err(ParseError::TooLarge {
                what,
                field: "entries",
                size: self.entries.len() + 1,
                limit: MAX_ENTRIES,
            });
        }
        if pcr > MAX_PCR {
            return Err(invalid(what, "PCR index", 0, "0..=23", pcr.to_string()));
        }
        if let Some(algo) = digest_algo {
            let valid = template != Template::Ima
                && !algo.is_empty()
                && algo.len() <= MAX_ALGO_NAME
                && algo.bytes().all(is_algo_char);
            if !valid {
                return Err(invalid(
                    what,
                    "digest algorithm",
                    0,
                    "an algorithm name, and none for the ima template",
                    algo,
                ));
            }
        }
        if template == Template::Ima && digest.len() != LEGACY_DIGEST_LEN {
            return Err(invalid(
                what,
                "d (file digest)",
                0,
                "20 bytes",
                format!("{} bytes", digest.len()),
            ));
        }
        let extra = if template.has_extra() { extra } else { &[] };
        if extra.len() > MAX_TEMPLATE_DATA {
            return Err(ParseError::TooLarge {
                what,
                field: "sig/buf",
                size: extra.len(),
                limit: MAX_TEMPLATE_DATA,
            });
        }
        let data = encode_template_data(
            template,
            digest_algo.map(str::as_bytes),
            digest,
            path,
            extra,
        );
        let mut entry = Entry::from_parts(pcr, Vec::new(), template, data)?;
        entry.template_hash = if violation {
            vec![0; self.template_hash_alg.digest_len()]
        } else {
            entry.template_digest(self.template_hash_alg)
        };
        entry.violation = violation;
        self.entries.push(entry);
        match self.entries.last() {
            Some(entry) => Ok(entry),
            // Just pushed; unreachable.
            None => Err(invalid(what, "entries", 0, "an entry", "none")),
        }
    }

    /// Which export the log was read from.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// The bank the template hashes are in.
    pub fn template_hash_alg(&self) -> HashAlg {
        self.template_hash_alg
    }

    /// All entries, in log order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries (all PCRs).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries recorded in `pcr`.
    pub fn entries_for(&self, pcr: u32) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.pcr == pcr)
    }

    /// Number of violation entries.
    pub fn violations(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.violation)
            .count()
    }

    fn all_template_hashes_match(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.violation || e.template_hash_matches(self.template_hash_alg))
    }

    /// The entries from index `from` on (all PCRs), as a log of their own: the delta a
    /// re-attestation sends when the verifier already checked the first `from`. Empty when the
    /// log has no more entries.
    pub fn tail(&self, from: usize) -> Log {
        Log {
            format: self.format,
            template_hash_alg: self.template_hash_alg,
            entries: self
                .entries
                .get(from..)
                .unwrap_or_default()
                .to_vec(),
        }
    }

    /// The log in `binary_runtime_measurements` form (byte-identical to a parsed binary log).
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.entries {
            entry.write_binary(&mut out);
        }
        out
    }

    /// The log in `ascii_runtime_measurements` form, as the kernel writes it (including the
    /// trailing space of an `ima-sig` line without signature). Paths are written raw, as the
    /// kernel does, so a path containing a newline yields a log that cannot be parsed back.
    pub fn to_ascii(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.entries {
            entry.write_ascii(&mut out);
        }
        out
    }
}

/// Read one binary entry.
/// Step over one binary record without reading its template data (see [`Log::binary_tail`]).
fn skip_binary_entry(r: &mut Reader<'_>, alg: HashAlg) -> Result<(), ParseError> {
    let (_, _, template) = read_binary_header(r, alg)?;
    match template {
        Template::Ima => {
            r.skip(LEGACY_DIGEST_LEN, "d (file digest)")?;
            let at = r.clone();
            let len = usize::try_from(r.u32_le("n length")?).unwrap_or(usize::MAX);
            if len > IMA_EVENT_NAME_LEN_MAX {
                return Err(at.too_large("n (file name)", len, IMA_EVENT_NAME_LEN_MAX));
            }
            r.skip(len, "n (file name)")?;
        }
        Template::ImaBuf | Template::ImaNg | Template::ImaSig => {
            r.u32_le_prefixed("template data", MAX_TEMPLATE_DATA)?;
        }
    }
    Ok(())
}

/// A binary record's PCR index, template hash and template: what comes before its data.
fn read_binary_header<'a>(
    r: &mut Reader<'a>,
    alg: HashAlg,
) -> Result<(u32, &'a [u8], Template), ParseError> {
    let at = r.clone();
    let pcr = r.u32_le("PCR index")?;
    if pcr > MAX_PCR {
        return Err(at.invalid("PCR index", "0..=23", pcr.to_string()));
    }
    let template_hash = r.take(alg.digest_len(), "template hash")?;
    let at = r.clone();
    let name_len = usize::try_from(r.u32_le("template name length")?).unwrap_or(usize::MAX);
    if name_len > MAX_TEMPLATE_NAME {
        return Err(at.too_large("template name", name_len, MAX_TEMPLATE_NAME));
    }
    let at = r.clone();
    let name = r.take(name_len, "template name")?;
    Ok((pcr, template_hash, template_from_name(&at, name)?))
}

fn read_binary_entry(r: &mut Reader<'_>, alg: HashAlg) -> Result<Entry, ParseError> {
    let (pcr, template_hash, template) = read_binary_header(r, alg)?;
    let template_hash = template_hash.to_vec();
    let (base, data) = match template {
        Template::Ima => {
            // The legacy template has no template-data length: d (20 bytes), then n as a u32
            // length and the name without NUL.
            let base = r.offset();
            let digest = r.take(LEGACY_DIGEST_LEN, "d (file digest)")?;
            let at = r.clone();
            let len = usize::try_from(r.u32_le("n length")?).unwrap_or(usize::MAX);
            if len > IMA_EVENT_NAME_LEN_MAX {
                return Err(at.too_large("n (file name)", len, IMA_EVENT_NAME_LEN_MAX));
            }
            let name = r.take(len, "n (file name)")?;
            let mut data = Vec::with_capacity(LEGACY_DIGEST_LEN + 4 + len);
            data.extend_from_slice(digest);
            data.extend_from_slice(&len_u32(len).to_le_bytes());
            data.extend_from_slice(name);
            (base, data)
        }
        Template::ImaBuf | Template::ImaNg | Template::ImaSig => {
            let data = r.u32_le_prefixed("template data", MAX_TEMPLATE_DATA)?;
            (r.offset() - data.len(), data.to_vec())
        }
    };
    Entry::from_parts(pcr, template_hash, template, data).map_err(|e| rebase(e, base))
}

/// The template-hash sizes to try, `preferred` first.
pub(super) fn detection_order(preferred: Option<HashAlg>) -> Vec<HashAlg> {
    let mut order = Vec::with_capacity(HashAlg::ALL.len());
    order.extend(preferred);
    order.extend(
        HashAlg::ALL
            .iter()
            .copied()
            .filter(|&a| Some(a) != preferred),
    );
    order
}

pub(super) fn invalid(
    what: &'static str,
    field: &'static str,
    offset: usize,
    expected: impl Into<String>,
    presented: impl Into<String>,
) -> ParseError {
    ParseError::InvalidValue {
        what,
        field,
        offset,
        expected: expected.into(),
        presented: presented.into(),
    }
}

/// Bytes displayed with printable ASCII as is, `\\`, `\n`, `\t`, `\r` escaped and every other
/// byte as `\xNN`. Paths in IMA logs are bytes: they may hold newlines and non-UTF-8 data.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                b'\r' => f.write_str("\\r")?,
                b' '..=b'~' => fmt::Write::write_char(f, char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}
