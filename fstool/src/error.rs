//! The tool's errors and their exit codes. Messages never contain key material.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The LUKS header is unsafe to open (exit 3).
    #[error("refusing {location}: {why}")]
    UnsafeHeader { location: PathBuf, why: String },
    /// The TPM refused to unseal because the PCRs differ from the sealed policy (exit 4).
    #[error(
        "the TPM refused to unseal the key: the PCR policy ({bank} PCRs {pcrs}) does not match \
         this machine's current state; changed since sealing: {changed}. If this change was \
         intended (an update), use the password (the recovery keyslot) and run \
         `cosmian_fstool reseal`"
    )]
    PcrPolicy {
        bank: &'static str,
        pcrs: String,
        changed: String,
    },
    /// A `cryptsetup` command failed (exit 1).
    #[error("cryptsetup {what} failed ({status}): {stderr}")]
    Cryptsetup {
        what: &'static str,
        status: String,
        stderr: String,
    },
    /// A TPM command failed (exit 1).
    #[error("TPM: {what}: {why}")]
    Tpm { what: &'static str, why: String },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub fn tpm(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> Self {
        move |e| Self::Tpm {
            what,
            why: e.to_string(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::UnsafeHeader { .. } => 3,
            Self::PcrPolicy { .. } => 4,
            _ => 1,
        }
    }
}
