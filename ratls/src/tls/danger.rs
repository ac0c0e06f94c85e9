//! Options that weaken verification. Each one is here, and only here, so that a reviewer can
//! find every use with one search.

use super::policy::AttestationPolicy;

/// Trust evidence from the simulated TEE whose chain ends at `ark` (DER or PEM): what the CLI's
/// `--insecure-sim-root FILE` does.
///
/// **Never in production.** Simulated reports are signed by a key generated on the machine
/// being "attested"; they prove nothing about the hardware. Every verdict reached this way says
/// SIMULATED.
pub fn trust_simulated_root(policy: &mut AttestationPolicy, ark: &[u8]) {
    policy.insecure_sim_root = Some(ark.to_vec());
    policy.refresh_digest();
}
