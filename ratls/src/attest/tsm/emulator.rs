//! [`EmulatedTsm`]: configfs-tsm's kernel side on a plain directory.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::ConfigfsKernel;

/// Produces an `outblob` from the entry's `inblob` and `privlevel`.
pub type OutblobFn = dyn Fn(&[u8], Option<u32>) -> Vec<u8> + Send + Sync;

/// An emulated TSM provider: what the kernel does for configfs-tsm, done on a plain directory
/// (for tests and demos; it makes no evidence trustworthy, the verifier decides that).
///
/// - `mkdir` of an entry creates `provider`, `generation` (`0`), an empty `inblob`, empty
///   `outblob`, and, when enabled, `privlevel`, `privlevel_floor` and `auxblob`;
/// - each write to `inblob` or `privlevel` bumps `generation` (a `privlevel` above 3 fails with
///   `EINVAL`, as in the kernel);
/// - reading `outblob` or `auxblob` with an empty `inblob` fails with `EINVAL`; otherwise, if
///   the blobs are older than the last write, the outblob function runs on the current
///   `inblob` and `privlevel` and both blobs are rewritten;
/// - `rmdir` takes the attributes away with the entry.
pub struct EmulatedTsm {
    provider: String,
    outblob: Box<OutblobFn>,
    auxblob: Option<Vec<u8>>,
    privlevel: bool,
    /// Per entry: the generation the blobs were produced at.
    produced: Mutex<HashMap<PathBuf, u64>>,
    reports: AtomicU64,
}

impl fmt::Debug for EmulatedTsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedTsm")
            .field("provider", &self.provider)
            .field("auxblob", &self.auxblob.as_ref().map(Vec::len))
            .field("privlevel", &self.privlevel)
            .field("reports", &self.reports())
            .finish_non_exhaustive()
    }
}

impl EmulatedTsm {
    /// A provider named `provider` whose reports `outblob` produces.
    pub fn new(
        provider: &str,
        outblob: impl Fn(&[u8], Option<u32>) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            outblob: Box::new(outblob),
            auxblob: None,
            privlevel: false,
            produced: Mutex::new(HashMap::new()),
            reports: AtomicU64::new(0),
        }
    }

    /// Give entries an `auxblob` holding `auxblob` (SEV-SNP: the host's certificate table).
    pub fn with_auxblob(mut self, auxblob: Vec<u8>) -> Self {
        self.auxblob = Some(auxblob);
        self
    }

    /// Give entries `privlevel` and `privlevel_floor` (`0`), as `sev_guest` does.
    pub fn with_privlevel(mut self) -> Self {
        self.privlevel = true;
        self
    }

    /// How many reports the outblob function produced.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    fn generation(entry: &Path) -> io::Result<u64> {
        fs::read_to_string(entry.join("generation"))?
            .trim_end()
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    }
}

fn einval() -> io::Error {
    // Linux EINVAL (asm-generic).
    io::Error::from_raw_os_error(22)
}

impl ConfigfsKernel for EmulatedTsm {
    fn created(&self, entry: &Path) -> io::Result<()> {
        fs::write(entry.join("provider"), format!("{}\n", self.provider))?;
        fs::write(entry.join("generation"), "0\n")?;
        fs::write(entry.join("inblob"), [])?;
        fs::write(entry.join("outblob"), [])?;
        if self.auxblob.is_some() {
            fs::write(entry.join("auxblob"), [])?;
        }
        if self.privlevel {
            fs::write(entry.join("privlevel"), [])?;
            fs::write(entry.join("privlevel_floor"), "0\n")?;
        }
        Ok(())
    }

    fn written(&self, entry: &Path, attr: &str) -> io::Result<()> {
        match attr {
            "inblob" => {
                if fs::metadata(entry.join("inblob"))?.len() > 64 {
                    return Err(einval());
                }
            }
            "privlevel" => {
                let level: u32 = fs::read_to_string(entry.join("privlevel"))?
                    .trim_end()
                    .parse()
                    .map_err(|_| einval())?;
                if level > 3 {
                    return Err(einval());
                }
            }
            _ => return Ok(()),
        }
        let next = Self::generation(entry)?.saturating_add(1);
        fs::write(entry.join("generation"), format!("{next}\n"))
    }

    fn reading(&self, entry: &Path, attr: &str) -> io::Result<()> {
        if attr != "outblob" && attr != "auxblob" {
            return Ok(());
        }
        let inblob = fs::read(entry.join("inblob"))?;
        if inblob.is_empty() {
            return Err(einval());
        }
        let generation = Self::generation(entry)?;
        let mut produced = self
            .produced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if produced.get(entry) == Some(&generation) {
            return Ok(());
        }
        let privlevel = if self.privlevel {
            fs::read_to_string(entry.join("privlevel"))?
                .trim_end()
                .parse()
                .ok()
        } else {
            None
        };
        fs::write(entry.join("outblob"), (self.outblob)(&inblob, privlevel))?;
        if let Some(auxblob) = &self.auxblob {
            fs::write(entry.join("auxblob"), auxblob)?;
        }
        self.reports
            .fetch_add(1, Ordering::Relaxed);
        produced.insert(entry.to_path_buf(), generation);
        Ok(())
    }

    fn removing(&self, entry: &Path) -> io::Result<()> {
        self.produced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(entry);
        for attr in [
            "provider",
            "generation",
            "inblob",
            "outblob",
            "auxblob",
            "privlevel",
            "privlevel_floor",
        ] {
            match fs::remove_file(entry.join(attr)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
