//! The collateral plane as the CLI configures it (`--kds-url`, `--pcs-url`, `--collateral-dir`,
//! `--offline`): the verifier fetches what evidence lacks (an SEV-SNP VCEK and AMD's CRL, a TDX
//! quote's Intel collateral) so the VM needs no egress. Everything fetched is verified like the
//! rest; the steps taken appear in the verdict as `collateral.*`.

use std::sync::Arc;
use std::time::Duration;

use ratls::collateral::{CollateralClient, CollateralConfig};
use ratls::{Check, Verdict};

use crate::cli::Global;

/// The client for this command line.
pub fn client(global: &Global) -> Arc<CollateralClient> {
    let defaults = CollateralConfig::default();
    Arc::new(CollateralClient::new(CollateralConfig {
        kds_url: global.kds_url.clone(),
        pcs_url: global.pcs_url.clone(),
        intel_root_crl_url: global.intel_root_crl_url.clone(),
        cache_dir: global
            .collateral_dir
            .clone()
            .or(defaults.cache_dir.clone()),
        offline: global.offline,
        timeout: Duration::from_secs(global.timeout.max(1)),
        ..defaults
    }))
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
