//! Hex helpers shared by the verdicts, the policy files and the CLI.
//!
//! Verdicts print hex in lower case. Inputs accept either case and ignore ASCII whitespace, so
//! files such as `report.hex` can be read as they were captured.

/// Lower-case hex of `bytes`.
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    ::hex::encode(bytes)
}

/// Decode hex text, ignoring ASCII whitespace and an optional `0x` prefix.
pub fn decode(text: &str) -> Result<Vec<u8>, ::hex::FromHexError> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("0x")
        .unwrap_or(trimmed);
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    ::hex::decode(compact)
}

/// If `bytes` is entirely ASCII hex (with optional whitespace), decode it; otherwise `None`.
///
/// Used by readers that accept evidence files either raw or hex-encoded.
pub fn decode_if_hex_text(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = core::str::from_utf8(bytes).ok()?;
    let has_digit = text
        .bytes()
        .any(|b| b.is_ascii_hexdigit());
    let all_hex = text
        .trim()
        .trim_start_matches("0x")
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    if !(has_digit && all_hex) {
        return None;
    }
    decode(text).ok()
}

/// Decode hex into exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = decode(text).map_err(|e| format!("invalid hex: {e}"))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("expected {N} bytes of hex, got {}", bytes.len()))
}
