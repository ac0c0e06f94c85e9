//! The tool's errors and their exit codes. Messages never contain key material.

use std::path::PathBuf;

use ratls::attest::AttestError;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The LUKS header is unsafe to open (exit 3).
    #[error("refusing {location}: {why}")]
    UnsafeHeader { location: PathBuf, why: String },
    /// The TPM did not release the key because the PCRs differ from the sealed policy
    /// (exit 4).
    #[error("{0}")]
    PcrPolicy(Box<PcrPolicy>),
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

    /// A failure of ratls' TPM plumbing, named `what` as this tool names the step; the reason
    /// is the TPM stack's message (or ratls' own for an unusable answer).
    pub fn attest(what: &'static str) -> impl FnOnce(AttestError) -> Self {
        move |e| Self::Tpm {
            what,
            why: match e {
                AttestError::Backend { error, .. } => error.to_string(),
                AttestError::Unavailable { why, .. } | AttestError::BadResponse { why, .. } => why,
                other => other.to_string(),
            },
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::UnsafeHeader { .. } => 3,
            Self::PcrPolicy(_) => 4,
            _ => 1,
        }
    }
}

/// Why the TPM did not release the key: the PCRs moved (exit 4).
#[derive(Debug, thiserror::Error)]
#[error(
    "the TPM did not release the key: the current {bank} PCRs {pcrs} are not those the key was \
     sealed to (policy digest sealed {sealed_digest}, current {current_digest}; changed since \
     sealing: {changed}) — the boot chain changed. {recovery}"
)]
pub struct PcrPolicy {
    pub bank: &'static str,
    pub pcrs: String,
    pub changed: String,
    pub sealed_digest: String,
    pub current_digest: String,
    /// What to do: the recovery and reseal commands, with the location (and name).
    pub recovery: String,
}
