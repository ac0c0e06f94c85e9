//! One verified agent session: fresh evidence checked against a snapshot (TEE, TPM, IMA file by
//! file, the agent's key).

use ratls::bundle::{Bundle, EventLogEvidence, ImaEvidence, MAX_BUNDLE_LEN};
use ratls::ima::Log;
use ratls::snapshot::Snapshot;
use ratls::tls::AttestationPolicy;
use ratls::{Check, Verdict};
use serde::Serialize;

use super::{bundle_claims, Ctx};
use crate::agent::AgentSession;
use crate::cli::UsageError;

/// The verified state of a session against a snapshot.
#[derive(Debug, Serialize)]
pub(super) struct SessionCheck {
    /// The fresh evidence's verdict (TEE, TPM, IMA replay, binding to this session).
    pub(super) evidence: Verdict,
    /// The snapshot itself (`snapshot.pins`) and the agent's key (`snapshot.agent_key`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) snapshot_checks: Vec<Check>,
    /// Every file IMA measured since boot, compared with the snapshot.
    pub(super) files: Vec<Check>,
    pub(super) agent_spki_sha256: String,
    /// The evidence bundle as received (CMW).
    #[serde(skip)]
    pub(super) cmw: Vec<u8>,
}

impl SessionCheck {
    pub(super) fn ok(&self) -> bool {
        self.evidence.is_trusted()
            && self
                .snapshot_checks
                .iter()
                .chain(&self.files)
                .all(|c| c.ok)
    }

    /// The snapshot checks then the file checks, as the text summary lists them.
    pub(super) fn listed(&self) -> Vec<Check> {
        self.snapshot_checks
            .iter()
            .chain(&self.files)
            .cloned()
            .collect()
    }

    /// The first failed step: the evidence's, then the snapshot's, then the files'.
    pub(super) fn first_failure(&self) -> Option<&Check> {
        self.evidence
            .first_failure()
            .or_else(|| {
                self.snapshot_checks
                    .iter()
                    .chain(&self.files)
                    .find(|c| !c.ok)
            })
    }

    pub(super) fn agent_ak_sha256(&self) -> Option<&str> {
        bundle_claims(&self.evidence).and_then(|c| c.ak_sha256.as_deref())
    }
}

/// Fresh evidence verified with the snapshot's policy, then the IMA log checked file by file.
pub(super) async fn check_session(
    session: &mut AgentSession,
    snapshot: &Snapshot,
) -> Result<SessionCheck, UsageError> {
    let (evidence, cmw) = session.evidence().await?;
    let bundle = Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN).ok();
    let files = match &bundle {
        Some(bundle) => match &bundle.ima {
            Some(ImaEvidence::Log(bytes)) => match Log::parse(bytes) {
                Ok(log) => snapshot.check_ima(&log),
                Err(e) => vec![Check::fail(
                    ratls::Step::IMA_LOG,
                    "a parsable IMA log",
                    "malformed",
                    e.to_string(),
                )],
            },
            _ => vec![Check::fail(
                ratls::Step::IMA_LOG,
                "the IMA log inline in the fresh evidence",
                "absent",
                "",
            )],
        },
        // The evidence verdict already names the parse failure.
        None => Vec::new(),
    };
    let agent_spki_sha256 = session.spki_sha256_hex();
    let mut snapshot_checks = vec![
        snapshot.check_pins(),
        snapshot.check_agent_key(&agent_spki_sha256),
    ];
    if let Some(bundle) = &bundle {
        let event_log = match &bundle.event_log {
            Some(EventLogEvidence::Log(bytes)) => Some(bytes.as_slice()),
            _ => None,
        };
        snapshot_checks.extend(snapshot.check_boot_events(event_log));
    }
    Ok(SessionCheck {
        evidence,
        snapshot_checks,
        files,
        agent_spki_sha256,
        cmw,
    })
}

pub(super) fn snapshot_policy(ctx: &Ctx, snapshot: &Snapshot) -> AttestationPolicy {
    if snapshot.simulated && ctx.sim_root.is_none() {
        tracing::warn!(
            "the snapshot was taken on a simulated TEE; its evidence verifies only with \
             --insecure-sim-root ARK"
        );
    }
    ctx.agent_policy(snapshot.policy.clone(), snapshot.simulated)
}
