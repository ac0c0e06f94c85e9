//! The collateral plane as the CLI configures it (`--kds-url`, `--pcs-url`, `--collateral-dir`,
//! `--offline`): the verifier fetches what evidence lacks (an SEV-SNP VCEK and AMD's CRL, a TDX
//! quote's Intel collateral) so the VM needs no egress. Everything fetched is verified like the
//! rest; the steps taken appear in the verdict as `collateral.*`.

use ratls::collateral::CollateralClient;
use ratls::{Check, Verdict};
use std::sync::Arc;

use crate::cli::Global;

/// The client for this command line.
pub fn client(global: &Global) -> Arc<CollateralClient> {
    ratls::collateral::CollateralSettings {
        kds_url: Some(global.kds_url.clone()),
        pcs_url: Some(global.pcs_url.clone()),
        intel_root_crl_url: Some(global.intel_root_crl_url.clone()),
        collateral_dir: global.collateral_dir.clone(),
        offline: global.offline,
        timeout: Some(global.timeout),
        ..Default::default()
    }
    .client(None)
}

/// `verdict` with the collateral steps first (they happened first).
pub fn prepend(steps: Vec<Check>, verdict: Verdict) -> Verdict {
    if steps.is_empty() {
        return verdict;
    }
    let mut out = Verdict::new(verdict.platform);
    out.simulated = verdict.simulated;
    out.extend(steps);
    out.extend(verdict.checks);
    out.claims = verdict.claims;
    out
}
