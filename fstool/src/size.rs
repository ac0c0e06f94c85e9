//! `--size`: bytes with an optional binary suffix (`500M`, `2G`, `1.5G` is refused).

use crate::error::{Error, Result};

/// The smallest container: LUKS2's default header (metadata and keyslot areas) takes 16 MiB.
pub const MIN_SIZE: u64 = 32 << 20;

/// `N`, `NK`, `NM`, `NG`, `NT` (powers of 1024; `KiB`/`KB`/`K` all mean 1024).
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "invalid size {text:?}: expected a whole number with an optional K, M, G or T \
             suffix (powers of 1024), e.g. 500M or 2G"
        ))
    };
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    let size = number
        .checked_mul(1u64 << shift)
        .ok_or_else(bad)?;
    if size < MIN_SIZE {
        return Err(Error::Usage(format!(
            "size {text:?} is too small: a LUKS2 container needs at least 32M (its header \
             alone takes 16M)"
        )));
    }
    if size % crate::header::SECTOR_SIZE != 0 {
        return Err(Error::Usage(format!(
            "size {text:?} is not a multiple of {} bytes (the container's encryption sector \
             size): use a K, M, G or T size, e.g. 500M",
            crate::header::SECTOR_SIZE
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_size("500M").ok(), Some(500 << 20));
        assert_eq!(parse_size("2G").ok(), Some(2 << 30));
        assert_eq!(parse_size("2gib").ok(), Some(2 << 30));
        assert_eq!(parse_size("65536K").ok(), Some(64 << 20));
        assert_eq!(parse_size("33554432").ok(), Some(32 << 20));
        assert_eq!(parse_size("1T").ok(), Some(1 << 40));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "M",
            "1.5G",
            "-1G",
            "10X",
            "1M",
            "99999999999999999999T",
            "5 G",
            "33554433",
            "33555456",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
