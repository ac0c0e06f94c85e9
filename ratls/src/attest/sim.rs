//! The simulated TEE (feature `sim`): SEV-SNP-format reports, in the real report layout
//! (version 3, Genoa), signed with ECDSA P-384 by a simulated VCEK whose chain mirrors AMD's:
//!
//! | certificate | key | signed by | subject CN |
//! | --- | --- | --- | --- |
//! | ARK | RSA-4096 | itself, RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 | `ARK-Genoa` |
//! | ASK | RSA-4096 | the ARK, same PSS parameters | `SEV-Genoa` |
//! | VCEK | ECDSA P-384 | the ASK, same PSS parameters | `SEV-VCEK` |
//!
//! Every name carries `O = SIMULATED — not Advanced Micro Devices`, so the chain is recognisably
//! fake wherever it is shown, and its ARK is never one of the pinned AMD roots: the verifier
//! trusts it only when explicitly given that ARK (`snp::verify_simulated`, `--insecure-sim-root`)
//! and marks such verdicts SIMULATED. The VCEK carries the extensions AMD's KDS puts in real
//! VCEKs (structVersion, productName, the bootloader/TEE/SNP/microcode SPLs, hwID), so the same
//! verification code runs on simulated and real evidence.
//!
//! [`SimCa`] is the chain with its private keys: generated once ([`SimCa::load_or_generate`]) and
//! kept with the agent's data. [`SimTee`] is the attester.

mod ca;
mod report;

pub use self::ca::{SimCa, SimTcb};
pub use self::report::SimTee;

use std::sync::Arc;

use super::AttestError;

/// A failure inside the simulated TEE's own crypto or encoding, carried as
/// [`AttestError::Backend`].
#[derive(Debug)]
struct SimError(String);

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

fn backend(what: &'static str, why: impl core::fmt::Display) -> AttestError {
    AttestError::Backend {
        what,
        error: Arc::new(SimError(why.to_string())),
    }
}

#[cfg(test)]
mod tests;
