//! The `ascii_runtime_measurements` parser.
//!
//! Each line is `PCR template-hash template-name fields...`; the template data the kernel
//! hashed is rebuilt from the fields so the log replays. See [`Log::parse_ascii`](super::Log::parse_ascii)
//! for the limits of this form.

use core::fmt;

use super::log::{
    detection_order, encode_template_data, invalid, is_algo_char, rebase, Entry, Escaped, Log,
    LogFormat, Template, IMA_EVENT_NAME_LEN_MAX, LEGACY_DIGEST_LEN, MAX_ALGO_NAME, MAX_PCR,
    SUPPORTED_TEMPLATES,
};
use super::{MAX_ENTRIES, MAX_PATH, MAX_TEMPLATE_DATA};
use crate::codec::ParseError;
use crate::digest::HashAlg;

const ASCII: &str = "IMA ASCII log";

/// Parse the ASCII export into (template-hash bank, entries).
pub(super) fn parse(text: &[u8]) -> Result<(HashAlg, Vec<Entry>), ParseError> {
    let mut entries = Vec::new();
    let mut alg = None;
    let mut offset = 0usize;
    // Every line, the last included, ends with a newline: a missing one means the log was
    // cut short, and a blank line is never written.
    let body = match text.split_last() {
        None => return Ok((HashAlg::Sha1, Vec::new())),
        Some((b'\n', body)) => body,
        Some(_) => {
            let lines = text
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            return Err(invalid(
                ASCII,
                "line end",
                text.len(),
                "a newline at the end of every line",
                format!("line {} ends without one (truncated log?)", lines + 1),
            ));
        }
    };
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let start = offset;
        offset = offset.saturating_add(line.len() + 1);
        if line.is_empty() {
            return Err(invalid(
                ASCII,
                "line",
                start,
                "an entry",
                format!("line {}: a blank line", index + 1),
            ));
        }
        if entries.len() >= MAX_ENTRIES {
            return Err(ParseError::TooLarge {
                what: ASCII,
                field: "entries",
                size: entries.len() + 1,
                limit: MAX_ENTRIES,
            });
        }
        let line = AsciiLine {
            text: line,
            start,
            number: index + 1,
        };
        entries.push(line.parse(&mut alg)?);
    }
    Ok((alg.unwrap_or(HashAlg::Sha1), entries))
}

/// One line of the ASCII export.
struct AsciiLine<'a> {
    text: &'a [u8],
    /// Offset of the line in the log.
    start: usize,
    /// 1-based line number.
    number: usize,
}

impl AsciiLine<'_> {
    fn error(
        &self,
        field: &'static str,
        at: &[u8],
        expected: impl Into<String>,
        presented: impl fmt::Display,
    ) -> ParseError {
        // `at` is a sub-slice of the line: its offset is the distance between the pointers.
        let column = (at.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        invalid(
            ASCII,
            field,
            self.start.saturating_add(column),
            expected,
            format!("line {}: {presented}", self.number),
        )
    }

    fn parse(&self, alg: &mut Option<HashAlg>) -> Result<Entry, ParseError> {
        let line = self.text;
        let first = line
            .iter()
            .position(|&b| b != b' ')
            .unwrap_or(line.len());
        let rest = line.get(first..).unwrap_or_default();

        let (pcr_text, rest) = split_first_space(rest);
        let pcr = parse_decimal(pcr_text)
            .filter(|&p| p <= MAX_PCR)
            .ok_or_else(|| {
                self.error(
                    "PCR index",
                    pcr_text,
                    "a decimal PCR index 0..=23",
                    Escaped(pcr_text),
                )
            })?;

        let (hash_text, rest) = split_first_space(rest.unwrap_or_default());
        let template_hash = decode_hex(hash_text)
            .filter(|h| HashAlg::from_len(h.len()).is_some())
            .ok_or_else(|| {
                self.error(
                    "template hash",
                    hash_text,
                    "40, 64, 96 or 128 hex digits",
                    Escaped(hash_text),
                )
            })?;
        let this_alg = HashAlg::from_len(template_hash.len()).unwrap_or(HashAlg::Sha1);
        match alg {
            Some(previous) if *previous != this_alg => {
                return Err(self.error(
                    "template hash",
                    hash_text,
                    format!("a {previous} template hash like the lines before"),
                    format!("a {this_alg} template hash"),
                ));
            }
            _ => *alg = Some(this_alg),
        }

        let (name, fields) = split_first_space(rest.unwrap_or_default());
        let template = Template::from_name(name).ok_or_else(|| {
            if !name.is_empty() && name.iter().all(u8::is_ascii_graphic) {
                ParseError::Unsupported {
                    what: ASCII,
                    field: "template name",
                    presented: String::from_utf8_lossy(name).into_owned(),
                    supported: SUPPORTED_TEMPLATES,
                }
            } else {
                self.error("template name", name, "a template name", Escaped(name))
            }
        })?;

        let fields = fields.ok_or_else(|| {
            self.error(
                "template fields",
                line.get(line.len()..)
                    .unwrap_or_default(),
                "a file digest and a name",
                "nothing",
            )
        })?;
        let (digest_text, rest) = split_first_space(fields);
        let Some(rest) = rest else {
            return Err(self.error(
                "template fields",
                digest_text,
                "a file digest and a name",
                Escaped(fields),
            ));
        };
        let (algo, digest) = match template {
            Template::Ima => (None, decode_hex(digest_text)),
            Template::ImaBuf | Template::ImaNg | Template::ImaSig => {
                match digest_text
                    .iter()
                    .position(|&b| b == b':')
                {
                    Some(colon) => {
                        let algo = digest_text
                            .get(..colon)
                            .unwrap_or_default();
                        let hex_text = digest_text
                            .get(colon + 1..)
                            .unwrap_or_default();
                        (Some(algo), decode_hex(hex_text))
                    }
                    None => (None, decode_hex(digest_text)),
                }
            }
        };
        let digest = digest
            .filter(|d| template != Template::Ima || d.len() == LEGACY_DIGEST_LEN)
            .ok_or_else(|| {
                self.error(
                    "file digest",
                    digest_text,
                    "hex digits (40 for the ima template)",
                    Escaped(digest_text),
                )
            })?;
        if let Some(algo) = algo {
            if algo.is_empty()
                || algo.len() > MAX_ALGO_NAME
                || !algo.iter().all(|&b| is_algo_char(b))
            {
                return Err(self.error(
                    "file digest algorithm",
                    algo,
                    "an algorithm name",
                    Escaped(algo),
                ));
            }
        }

        let (path, extra) = if template.has_extra() {
            // "<path> <hex>" with the hex possibly empty; without any space, the kernel's
            // trailing space was stripped and there is no sig/buf.
            match rest.iter().rposition(|&b| b == b' ') {
                Some(space) => {
                    let path = rest.get(..space).unwrap_or_default();
                    let hex_text = rest
                        .get(space + 1..)
                        .unwrap_or_default();
                    match decode_hex(hex_text) {
                        Some(extra) => (path, extra),
                        None => (rest, Vec::new()),
                    }
                }
                None => (rest, Vec::new()),
            }
        } else {
            (rest, Vec::new())
        };
        if extra.len() > MAX_TEMPLATE_DATA {
            return Err(ParseError::TooLarge {
                what: ASCII,
                field: "sig/buf",
                size: extra.len(),
                limit: MAX_TEMPLATE_DATA,
            });
        }
        if template == Template::Ima && path.len() > IMA_EVENT_NAME_LEN_MAX {
            return Err(ParseError::TooLarge {
                what: ASCII,
                field: "n (file name)",
                size: path.len(),
                limit: IMA_EVENT_NAME_LEN_MAX,
            });
        }
        if path.len() > MAX_PATH {
            return Err(ParseError::TooLarge {
                what: ASCII,
                field: "n-ng (file name)",
                size: path.len(),
                limit: MAX_PATH,
            });
        }
        let data = encode_template_data(template, algo, &digest, path, &extra);
        Entry::from_parts(pcr, template_hash, template, data).map_err(|e| rebase(e, self.start))
    }
}

/// Split at the first space: (before, Some(after)) or (all, None).
fn split_first_space(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    match text.iter().position(|&b| b == b' ') {
        Some(space) => (text.get(..space).unwrap_or_default(), text.get(space + 1..)),
        None => (text, None),
    }
}

fn parse_decimal(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 3 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(text)
        .ok()?
        .parse()
        .ok()
}

/// Strict lower-case hex, as the kernel writes it (no whitespace, no prefix, no upper case, so
/// one log has one spelling); empty text is an empty value.
fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text
        .iter()
        .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    ::hex::decode(text).ok()
}

// The entry points that tell the two exports apart live with the ASCII reader, so the binary
// reader (`log.rs`) does not depend on this module.
impl Log {
    /// Parse a log, binary or ASCII. The binary form starts with a little-endian u32 PCR index
    /// (so its first four bytes hold a NUL); the ASCII form starts with the PCR in decimal. A
    /// binary log's template-hash size is auto-detected.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        Self::parse_preferring(bytes, None)
    }

    /// [`Log::parse`], trying `preferred` first when auto-detecting the template-hash size.
    pub(crate) fn parse_preferring(
        bytes: &[u8],
        preferred: Option<HashAlg>,
    ) -> Result<Self, ParseError> {
        if looks_ascii(bytes) {
            Self::parse_ascii(bytes)
        } else {
            let order = detection_order(preferred);
            Self::detect_binary(bytes, &order)
        }
    }

    /// Parse `ascii_runtime_measurements`: `PCR template-hash template-name fields...` per line.
    ///
    /// The template data the kernel hashed is rebuilt from the fields so the log replays. The
    /// template-hash bank is implied by the hash length and must be the same on every line.
    /// Limits of the ASCII form (use the binary log when you can): a path containing a newline
    /// splits its line and fails to parse; for `ima-sig` and `ima-buf` the last space on the
    /// line separates the path from the signature/buffer hex (the kernel writes that space even
    /// when the field is empty), so a path containing spaces is only read back correctly when
    /// that trailing space was kept or a signature follows. Kernels since 5.x write `_` for
    /// spaces in names, which removes the ambiguity.
    pub fn parse_ascii(text: &[u8]) -> Result<Self, ParseError> {
        let (template_hash_alg, entries) = parse(text)?;
        Ok(Self {
            format: LogFormat::Ascii,
            template_hash_alg,
            entries,
        })
    }
}

/// Whether `bytes` look like the ASCII export rather than the binary one.
fn looks_ascii(bytes: &[u8]) -> bool {
    let head = bytes.get(..4).unwrap_or(bytes);
    !head.is_empty()
        && !head.contains(&0)
        && head
            .first()
            .is_some_and(|&b| b.is_ascii_digit() || b == b' ')
}
