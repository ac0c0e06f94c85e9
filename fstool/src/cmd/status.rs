//! `status`: the header summary, the header check and where the seal is (no secrets).

use std::path::Path;

use super::load_seal;
use crate::container;
use crate::cryptsetup;
use crate::error::Result;
use crate::files::PrivateDir;
use crate::header::{self, Metadata};
use crate::seal;

/// Prints the summary, then fails (exit 3) when the header is not what `create` makes: a
/// script or a person checking the exit status sees the refusal.
pub fn status(location: &Path) -> Result<()> {
    let kind = container::require(location)?;
    // One read of the header: everything below describes the same copy.
    let dir = PrivateDir::new()?;
    let header = cryptsetup::header_copy(location, &dir)?;
    let meta = Metadata::parse(&cryptsetup::dump_json(&header)?)?;
    let uuid = cryptsetup::uuid(&header)?;
    let size = container::size(location)?;
    // A broken seal is reported, not fatal: status is the diagnostic command.
    let seal_result = load_seal(location, kind, &meta);
    let sealed = seal_result
        .as_ref()
        .ok()
        .and_then(Option::as_ref);
    println!("location: {} ({})", location.display(), kind.describe());
    println!("size: {size} bytes");
    println!("format: LUKS2, UUID {uuid}");
    for (id, seg) in &meta.segments {
        println!(
            "segment {id}: {} {}",
            seg.kind,
            seg.encryption
                .as_deref()
                .unwrap_or("(no cipher)")
        );
    }
    for (id, slot) in &meta.keyslots {
        let role = match sealed {
            Some((s, _)) if id.parse() == Ok(s.keyslot) => " [TPM-sealed key]",
            _ => "",
        };
        println!(
            "keyslot {id}: {} cipher {} kdf {}{role}",
            slot.kind,
            slot.area
                .as_ref()
                .and_then(|a| a.encryption.as_deref())
                .unwrap_or("(none)"),
            slot.kdf
                .as_ref()
                .map_or("(none)", |k| k.kind.as_str()),
        );
    }
    for (id, token) in &meta.tokens {
        println!(
            "token {id}: type {}",
            token
                .get("type")
                .map_or_else(|| "(none)".to_owned(), ToString::to_string)
        );
    }
    let reasons = meta.unsafe_reasons();
    if reasons.is_empty() {
        println!(
            "header check: ok (exactly what cosmian_fstool creates: segment {}, {}-bit key, \
             {}-byte sectors, no integrity; keyslots {}; tokens: {} only)",
            header::SEGMENT_CIPHER,
            header::VOLUME_KEY_BYTES * 8,
            header::SECTOR_SIZE,
            header::KEYSLOT_CIPHER,
            seal::TOKEN_TYPE
        );
    } else {
        println!("header check: UNSAFE, refused: {}", reasons.join("; "));
    }
    match (sealed, &seal_result) {
        (Some((s, source)), _) => {
            let present = meta.keyslot_ids().contains(&s.keyslot);
            println!(
                "tpm: sealed in keyslot {}{}, {} PCRs {}, policy digest {}",
                s.keyslot,
                if present {
                    ""
                } else {
                    " (MISSING from the header)"
                },
                s.pcr_bank,
                seal::pcr_list(&s.pcrs),
                s.policy_digest
            );
            println!("seal: {}", source.describe());
        }
        (None, Err(e)) => println!("tpm: {e}"),
        (None, Ok(_)) => println!("tpm: not sealed (password only)"),
    }
    meta.check_safe(location)
}
