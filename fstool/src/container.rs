//! The container: a LUKS2 image file, or a whole block device (`/dev/vdb`, or a symbolic link
//! to one such as `/dev/disk/by-id/...`). What `create` checks before formatting a device, its
//! size, the ext4 probe of the opened mapping, and whether an open mapping is this container's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::header;

/// What the container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (`cryptsetup` attaches it to a loop device to open it).
    File,
    /// A block device (symbolic links to it are followed).
    BlockDevice,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::File => "regular file",
            Self::BlockDevice => "block device",
        }
    }
}

/// How much of a block device must be zero for `create` to format it.
pub const BLANK_BYTES: usize = 16 * 1024 * 1024;
/// The LUKS1/LUKS2 primary header magic (byte 0).
const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Where the ext2/3/4 superblock magic is: superblock at 1024, `s_magic` at +56.
const EXT_MAGIC_OFFSET: u64 = 1024 + 56;
/// `0xEF53`, little-endian.
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];

/// The container must exist and be a regular file or a block device (symbolic links followed).
/// A missing one is an error, never a reason to create one or to go on without it: the host can
/// delete the image (or detach the disk), and whatever runs next would write to the unencrypted
/// directory under the mount point.
pub fn require(location: &Path) -> Result<Kind> {
    match std::fs::metadata(location) {
        Ok(meta) if meta.is_file() => Ok(Kind::File),
        Ok(meta) if meta.file_type().is_block_device() => Ok(Kind::BlockDevice),
        Ok(meta) => Err(Error::Usage(format!(
            "the container {} is a {}: expected the LUKS2 image file or the block device \
             cosmian_fstool created",
            location.display(),
            describe_other(&meta.file_type())
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "the container {} does not exist: refusing to go on without it (it is never \
             created here: a missing container may have been deleted, and the data would then \
             be written unencrypted); restore it, or create it with `cosmian_fstool create`",
            location.display()
        ))),
        Err(e) => Err(Error::io(
            format!("stat the container {}", location.display()),
            e,
        )),
    }
}

fn describe_other(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// The size in bytes: the end of the file or device (`metadata().len()` is 0 for a device).
pub fn size(location: &Path) -> Result<u64> {
    File::open(location)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|e| Error::io(format!("read the size of {}", location.display()), e))
}

/// `create` on a block device: refuse unless its size is usable (at least 32 MiB, a whole
/// number of 4096-byte sectors) and the device is blank: its first [`BLANK_BYTES`] (16 MiB,
/// the LUKS2 header area) are zero: no LUKS header (a host that wipes only the primary header
/// still leaves the secondary one and the keyslots there), no ext2/3/4 superblock, no partition
/// table, nothing. A new virtual disk reads as zeros.
pub fn check_blank_device(location: &Path) -> Result<u64> {
    let size = size(location)?;
    let sector = header::SECTOR_SIZE;
    if size < crate::size::MIN_SIZE || size % sector != 0 {
        return Err(Error::Usage(format!(
            "refusing to format {}: expected a device of at least {} bytes (32 MiB, the LUKS2 \
             header alone takes 16 MiB) and a multiple of {sector} bytes, found {size} bytes",
            location.display(),
            crate::size::MIN_SIZE
        )));
    }
    let mut file =
        File::open(location).map_err(|e| Error::io(format!("open {}", location.display()), e))?;
    let mut head = vec![0u8; BLANK_BYTES];
    file.read_exact(&mut head)
        .map_err(|e| {
            Error::io(
                format!(
                    "read the first {BLANK_BYTES} bytes of {} (expected a blank disk)",
                    location.display()
                ),
                e,
            )
        })?;
    if let Some(found) = signature(&head) {
        return Err(Error::Usage(format!(
            "refusing to format {}: expected a blank device (its first 16 MiB, the LUKS2 header \
             area, all zero), found {found}. It is not overwritten; if its content is to be destroyed, \
             wipe it deliberately first (e.g. `dd if=/dev/zero of={} bs=1M count=16`)",
            location.display(),
            location.display()
        )));
    }
    Ok(size)
}

/// What the first bytes of a device hold, when they are not all zero.
fn signature(head: &[u8]) -> Option<String> {
    if head.starts_with(LUKS_MAGIC) {
        return Some("a LUKS header (magic \"LUKS\\xba\\xbe\" at byte 0)".to_owned());
    }
    let at = usize::try_from(EXT_MAGIC_OFFSET).ok()?;
    if head.get(at..at + 2) == Some(&EXT_MAGIC[..]) {
        return Some(format!(
            "an ext2/3/4 file system (magic 0xEF53 at byte {EXT_MAGIC_OFFSET})"
        ));
    }
    head.iter()
        .position(|b| *b != 0)
        .map(|at| format!("data (the first non-zero byte is at offset {at})"))
}

/// Zero the LUKS2 header area (the first 16 MiB) of a device `create` formatted and then
/// failed to finish, so that it is blank again (the data area is not touched).
pub fn wipe_header_area(location: &Path) -> Result<()> {
    let what = |e| Error::io(format!("wipe the header area of {}", location.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(location)
        .map_err(what)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = header::DATA_OFFSET;
    while left > 0 {
        let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
        file.write_all(chunk.get(..n).unwrap_or(&chunk))
            .map_err(what)?;
        left = left.saturating_sub(n as u64);
    }
    file.sync_all().map_err(what)
}

/// Whether `device` (the opened mapping) holds an ext2/3/4 file system: the superblock magic
/// 0xEF53 (little-endian) at byte 1080. `mount-at-boot --new` makes the file system when it is
/// absent (a container just created); without `--new` an absent one is refused.
pub fn has_ext_magic(device: &Path) -> Result<bool> {
    let mut file =
        File::open(device).map_err(|e| Error::io(format!("open {}", device.display()), e))?;
    let mut magic = [0u8; 2];
    file.seek(SeekFrom::Start(EXT_MAGIC_OFFSET))
        .and_then(|_| file.read_exact(&mut magic))
        .map_err(|e| {
            Error::io(
                format!(
                    "read the ext4 superblock magic of {} (byte {EXT_MAGIC_OFFSET})",
                    device.display()
                ),
                e,
            )
        })?;
    Ok(magic == EXT_MAGIC)
}

/// `cryptsetup status NAME`, as `key: value` pairs (keys trimmed, e.g. `device`, `loop`,
/// `cipher`, `sector size`).
pub fn parse_status(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Why the open mapping `/dev/mapper/NAME` (its `cryptsetup status`) is not this container
/// with the encryption `create` makes; `None` when it is.
pub fn mapping_mismatch(
    status: &[(String, String)],
    location: &Path,
    kind: Kind,
    name: &str,
) -> Result<Option<String>> {
    let get = |key: &str| {
        status
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    // A file container is open through a loop device: `loop:` names the file.
    let backing_key = match kind {
        Kind::File => "loop",
        Kind::BlockDevice => "device",
    };
    let wanted = std::fs::metadata(location)
        .map_err(|e| Error::io(format!("stat {}", location.display()), e))?;
    let Some(backing) = get(backing_key) else {
        return Ok(Some(format!(
            "/dev/mapper/{name} is open but `cryptsetup status {name}` shows no {backing_key:?} \
             (expected {}, the {})",
            location.display(),
            kind.describe()
        )));
    };
    let same = std::fs::metadata(backing).is_ok_and(|found| match kind {
        Kind::File => found.is_file() && found.dev() == wanted.dev() && found.ino() == wanted.ino(),
        Kind::BlockDevice => found.file_type().is_block_device() && found.rdev() == wanted.rdev(),
    });
    if !same {
        return Ok(Some(format!(
            "/dev/mapper/{name} is already open on {backing}, not on the container {}: \
             refusing to mount another device (close it with `cosmian_fstool close --name \
             {name}`, or choose another --name)",
            location.display()
        )));
    }
    let offset = format!("{} sectors", header::DATA_OFFSET / 512);
    let key_bits = format!("{} bits", header::VOLUME_KEY_BYTES * 8);
    let sector = header::SECTOR_SIZE.to_string();
    let expected = [
        ("type", "LUKS2"),
        ("cipher", header::SEGMENT_CIPHER),
        ("keysize", key_bits.as_str()),
        ("sector size", sector.as_str()),
        ("offset", offset.as_str()),
    ];
    let mut wrong = Vec::new();
    for (key, value) in expected {
        if get(key) != Some(value) {
            wrong.push(format!(
                "expected {key} {value:?}, presented {}",
                get(key).map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
            ));
        }
    }
    if let Some(integrity) = get("integrity") {
        wrong.push(format!("expected no integrity, presented {integrity:?}"));
    }
    if wrong.is_empty() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "the open mapping /dev/mapper/{name} on {} is not the encryption cosmian_fstool \
             creates: {}",
            location.display(),
            wrong.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let mut head = vec![0u8; BLANK_BYTES];
        assert_eq!(signature(&head), None);
        head[1080] = 0x53;
        head[1081] = 0xef;
        assert!(signature(&head).is_some_and(|s| s.contains("0xEF53 at byte 1080")));
        let mut luks = vec![0u8; BLANK_BYTES];
        luks[..6].copy_from_slice(LUKS_MAGIC);
        assert!(signature(&luks).is_some_and(|s| s.contains("a LUKS header")));
        let mut other = vec![0u8; BLANK_BYTES];
        other[510] = 0x55;
        assert!(signature(&other).is_some_and(|s| s.contains("offset 510")));
    }

    #[test]
    fn status_parsing() {
        let text = "/dev/mapper/x is active and is in use.\n  type:    LUKS2\n  cipher:  \
                    aes-xts-plain64\n  keysize: 512 bits\n  key location: keyring\n  device:  \
                    /dev/loop0\n  loop:    /tmp/img\n  sector size:  4096\n  offset:  32768 \
                    sectors\n  size:    8192 sectors\n  mode:    read/write\n";
        let parsed = parse_status(text);
        assert!(parsed.contains(&("sector size".to_owned(), "4096".to_owned())));
        assert!(parsed.contains(&("loop".to_owned(), "/tmp/img".to_owned())));
        assert!(parsed.contains(&("offset".to_owned(), "32768 sectors".to_owned())));
    }

    #[test]
    fn open_mapping_must_be_this_container() {
        let dir = crate::files::PrivateDir::new().unwrap();
        let ours = dir.path_for("ours");
        let other = dir.path_for("other");
        std::fs::write(&ours, b"x").unwrap();
        std::fs::write(&other, b"y").unwrap();
        let status = |backing: &Path, cipher: &str| {
            parse_status(&format!(
                "/dev/mapper/n is active.\n  type:    LUKS2\n  cipher:  {cipher}\n  keysize: \
                 512 bits\n  device:  /dev/loop7\n  loop:    {}\n  sector size:  4096\n  \
                 offset:  32768 sectors\n",
                backing.display()
            ))
        };
        let good = status(&ours, "aes-xts-plain64");
        assert_eq!(
            mapping_mismatch(&good, &ours, Kind::File, "n").unwrap(),
            None
        );
        let why = mapping_mismatch(&status(&other, "aes-xts-plain64"), &ours, Kind::File, "n")
            .unwrap()
            .unwrap();
        assert!(
            why.contains(&format!("is already open on {}", other.display()))
                && why.contains(&format!("not on the container {}", ours.display())),
            "{why}"
        );
        let why = mapping_mismatch(&status(&ours, "cipher_null-ecb"), &ours, Kind::File, "n")
            .unwrap()
            .unwrap();
        assert!(
            why.contains("not the encryption")
                && why
                    .contains("expected cipher \"aes-xts-plain64\", presented \"cipher_null-ecb\""),
            "{why}"
        );
    }
}
