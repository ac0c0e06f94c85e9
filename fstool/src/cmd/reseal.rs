//! `reseal`: a fresh key sealed under the current PCRs, replacing the TPM keyslot, all on a
//! checked private copy of the header written back at the end.

use super::{checked_header, load_seal, seal_path, write_back, SEAL_TOKEN_ID, TPM_KEY_LEN};
use crate::cli::ResealArgs;
use crate::container::Kind;
use crate::cryptsetup::{self, Kdf};
use crate::error::{Error, Result};
use crate::files::PrivateDir;
use crate::seal;
use crate::secret::{read_password, Secret};

/// Time of check and time of use: the host can rewrite the container's header at any moment.
/// If `reseal` checked the container's header and then ran `luksAddKey` on the container, the
/// host could swap in, between the two, a header whose keyslot hands out a volume key of its
/// choosing (a `cipher_null` keyslot opens with any passphrase); `luksAddKey` would then wrap
/// *that* key under the fresh TPM key, and the host, putting back a clean-looking header with
/// this new keyslot, would get a container the VM unlocks at boot with a key the host knows.
/// So the header is read once (`luksHeaderBackup` into a private 0700 directory, the copy
/// 0600), checked, and every step after that (the password check, `luksAddKey`, the token,
/// `luksKillSlot`) works on that private copy, which only this process can change. The copy
/// is checked again and then written back over the container's header (`luksHeaderRestore`),
/// and read back to confirm it landed. Whatever the host wrote to the container's header in
/// the meantime is overwritten by the checked copy.
///
/// The write-back is in place, not temp + rename: the container may be open (a loop device
/// holds its inode, and a rename would leave the mounted file system writing to an unlinked
/// file), and a copy of the whole image would double its size on disk. It replaces only the
/// header area, and it is crash-safe for recovery: the password keyslot's bytes and JSON are
/// the same before and after, and LUKS2 keeps two checksummed header copies, so whatever a
/// torn write leaves, the password still opens the container. The new keyslot and the token
/// that points at it land in one write-back; the previous TPM keyslot is removed in a second
/// write-back only after that, so the TPM path also survives a crash at any point (the old
/// seal and slot, or the new ones). A legacy seal file is removed once the token is on disk.
pub fn reseal(args: ResealArgs) -> Result<()> {
    let location = &args.location;
    let dir = PrivateDir::new()?;
    let (header, meta, kind) = checked_header(location, &dir)?;
    let password = read_password(args.password.as_deref(), false)?;
    cryptsetup::test_key(&header, None, &password, None).map_err(|e| {
        Error::Usage(format!(
            "the password does not open {}: {e}",
            location.display()
        ))
    })?;
    // A broken seal is what reseal repairs: it is replaced, not fatal.
    let old = match load_seal(location, kind, &meta) {
        Ok(old) => old,
        Err(e) => {
            tracing::warn!(
                path = %location.display(),
                "the current seal is unusable and is replaced: {e}"
            );
            None
        }
    };
    let pcrs = match (&args.pcrs, &old) {
        (Some(text), _) => seal::parse_pcrs(text)?,
        (None, Some((old, _))) => old.pcrs.clone(),
        (None, None) => seal::DEFAULT_PCRS.to_vec(),
    };
    let slot = meta.free_keyslot().ok_or_else(|| {
        Error::Other(format!(
            "{} has no free keyslot (expected at most 31 in use, found 32)",
            location.display()
        ))
    })?;
    let (token_id, replace) = match meta.seal_token() {
        Some((id, _)) => (
            id.parse::<u32>().map_err(|_| {
                Error::Other(format!(
                    "the seal token id {id:?} of {} is not a number",
                    location.display()
                ))
            })?,
            true,
        ),
        None => (SEAL_TOKEN_ID, false),
    };
    let key = Secret::random(TPM_KEY_LEN)?;
    let sealed = seal::seal(&args.tpm.tcti, &pcrs, &key, slot)?;
    cryptsetup::add_key(&header, &password, &key, slot, Kdf::Minimal)?;
    drop(key);
    cryptsetup::token_import(&header, token_id, &sealed.to_token()?, replace)?;
    write_back(location, &header)?;
    println!(
        "resealed: a fresh key in keyslot {slot} under sha256 PCRs {}; the seal is in LUKS2 \
         token {token_id} (type {}) of the header",
        seal::pcr_list(&pcrs),
        seal::TOKEN_TYPE
    );
    if kind == Kind::File {
        let legacy = seal_path(location);
        if legacy.symlink_metadata().is_ok() {
            std::fs::remove_file(&legacy).map_err(|e| {
                Error::io(
                    format!("remove the legacy seal file {}", legacy.display()),
                    e,
                )
            })?;
            println!(
                "removed the legacy seal file {} (the seal is now in the header)",
                legacy.display()
            );
        }
    }
    if let Some((old, _)) = old {
        let old_slot = old.keyslot;
        // Never remove the slot the password itself opens.
        let is_password_slot =
            cryptsetup::test_key(&header, None, &password, Some(old_slot)).is_ok();
        if old_slot != slot && meta.keyslot_ids().contains(&old_slot) && !is_password_slot {
            cryptsetup::kill_slot(&header, &password, old_slot)?;
            write_back(location, &header)?;
            println!("removed the previous TPM keyslot {old_slot}");
        }
    }
    Ok(())
}
