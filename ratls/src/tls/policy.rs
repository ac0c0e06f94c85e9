//! What a TLS peer's evidence must satisfy: the verification [`Policy`] plus the channel-level
//! [`Requirements`] (role, maximum age, what must be present), in one object whose digest is
//! computed whenever it changes.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::binding::Role;
use crate::bundle::{BatchCache, BatchCacheRef, CollateralSource, Expectations, Requirements};
use crate::policy::Policy;
use crate::time::UnixTime;

/// The requirements a peer's evidence is checked against, on either side of a connection.
///
/// The defaults are strict ([`Requirements::new`]): TEE, TPM and IMA evidence required,
/// certificates at most [`DEFAULT_MAX_AGE_SECS`](crate::bundle::DEFAULT_MAX_AGE_SECS) old,
/// [`DEFAULT_MAX_SKEW_SECS`](crate::bundle::DEFAULT_MAX_SKEW_SECS) of clock skew. The simulated
/// TEE is never trusted unless [`danger::trust_simulated_root`](super::danger::trust_simulated_root)
/// says so.
///
/// The fields are private and every `with_*` method recomputes [`digest`](Self::digest), so the
/// digest (half of the verdict-cache key) always describes the policy it belongs to.
#[derive(Debug, Clone)]
pub struct AttestationPolicy {
    /// TEE, TPM and IMA requirements (measurements, TCB, PCRs, IMA reference set).
    policy: Policy,
    /// Role, age, skew, required parts, simulated root, collateral source.
    requirements: Requirements,
    digest: [u8; 32],
    /// Verdicts on batched evidence's shared part, shared by every clone of this policy (keyed
    /// by the policy digest too, so a changed clone never reads another policy's verdicts).
    batch_cache: Arc<BatchCache>,
}

/// The policy digest covers everything that changes a verdict.
#[derive(Serialize)]
struct DigestInput<'a> {
    version: u32,
    policy: &'a Policy,
    peer_role: &'a Role,
    max_age_secs: u64,
    max_skew_secs: u64,
    require: [bool; 3],
    insecure_sim_root: Option<String>,
    collateral: bool,
    /// SHA-256 of the approved files' JSON, when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<String>,
}

impl AttestationPolicy {
    /// Strict defaults ([`Requirements::new`]) for a peer attesting as `peer_role`.
    pub fn new(policy: Policy, peer_role: Role) -> Self {
        Self::from_parts(policy, Requirements::new(peer_role))
    }

    /// A policy from its two halves.
    pub fn from_parts(policy: Policy, requirements: Requirements) -> Self {
        let digest = digest_of(&policy, &requirements);
        Self {
            policy,
            requirements,
            digest,
            batch_cache: Arc::new(BatchCache::default()),
        }
    }

    /// A policy for verifying a TLS server (`peer_role` = `server`).
    pub fn for_server(policy: Policy) -> Self {
        Self::new(policy, Role::server())
    }

    /// A policy for verifying a TLS client (`peer_role` = `client`).
    pub fn for_client(policy: Policy) -> Self {
        Self::new(policy, Role::client())
    }

    /// Require every file the peer's IMA log measured to be one of `files` (a snapshot's
    /// approved files); a re-attestation's delta is checked the same way.
    pub fn with_files(self, files: Arc<crate::ima::files::FileSet>) -> Self {
        self.with(|r| r.files = Some(files))
    }

    /// Change the requirements, then recompute the digest: the one way every setter goes.
    fn with(mut self, change: impl FnOnce(&mut Requirements)) -> Self {
        change(&mut self.requirements);
        self.digest = digest_of(&self.policy, &self.requirements);
        self
    }

    /// Replace the verification policy (measurements, TCB, PCRs ...).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self.digest = digest_of(&self.policy, &self.requirements);
        self
    }

    /// The oldest certificate-mode evidence accepted (whole seconds).
    pub fn with_max_age(self, max_age: Duration) -> Self {
        self.with(|r| r.max_age_secs = max_age.as_secs())
    }

    /// How far in the future an issue time may lie (whole seconds).
    pub fn with_max_skew(self, max_skew: Duration) -> Self {
        self.with(|r| r.max_skew_secs = max_skew.as_secs())
    }

    /// Which parts of the evidence must be present: TEE, TPM, IMA.
    pub fn with_requirements(self, tee: bool, tpm: bool, ima: bool) -> Self {
        self.with(|r| {
            r.require_tee = tee;
            r.require_tpm = tpm;
            r.require_ima = ima;
        })
    }

    /// Complete peers' TEE evidence from `source` (the collateral plane: VCEKs and CRLs from
    /// AMD KDS, TDX collateral from Intel PCS/PCCS) before verifying it.
    pub fn with_collateral(self, source: Arc<dyn CollateralSource>) -> Self {
        self.with(|r| r.collateral = Some(source))
    }

    /// Trust the simulated ARK `ark`: only through [`super::danger::trust_simulated_root`].
    pub(crate) fn with_insecure_sim_root(self, ark: &[u8]) -> Self {
        self.with(|r| r.insecure_sim_root = Some(ark.to_vec()))
    }

    /// The verification policy (measurements, TCB, PCRs, IMA).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Role, age, skew, required parts, simulated root and collateral source.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// The role the peer must have attested as (`server` for a TLS server, `client` for a TLS
    /// client, `agent` for the VM agent).
    pub fn peer_role(&self) -> &Role {
        &self.requirements.role
    }

    /// The oldest certificate-mode evidence accepted.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.requirements.max_age_secs)
    }

    /// How far in the future an issue time may lie.
    pub fn max_skew(&self) -> Duration {
        Duration::from_secs(self.requirements.max_skew_secs)
    }

    /// Whether simulated evidence can be trusted under this policy.
    pub fn trusts_simulation(&self) -> bool {
        self.requirements
            .insecure_sim_root
            .is_some()
    }

    /// SHA-256 of everything in this policy: half of the verdict-cache key.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The bundle verifier's expectations for a peer presenting `spki_der`, at `now`.
    pub fn expectations<'a>(&'a self, spki_der: &'a [u8], now: UnixTime) -> Expectations<'a> {
        let mut expect = Expectations::new(&self.requirements, spki_der, now);
        expect.batch_cache = Some(BatchCacheRef {
            cache: &self.batch_cache,
            policy_digest: self.digest,
        });
        expect
    }

    /// The cache of batched evidence's shared verdicts (its hit count, for measurements).
    pub fn batch_cache(&self) -> &BatchCache {
        &self.batch_cache
    }
}

/// SHA-256 of the canonical JSON of everything that changes a verdict.
fn digest_of(policy: &Policy, r: &Requirements) -> [u8; 32] {
    let input = DigestInput {
        version: 1,
        policy,
        peer_role: &r.role,
        max_age_secs: r.max_age_secs,
        max_skew_secs: r.max_skew_secs,
        require: [r.require_tee, r.require_tpm, r.require_ima],
        insecure_sim_root: r
            .insecure_sim_root
            .as_deref()
            .map(|root| crate::hexfmt::hex(crate::digest::sha256(root))),
        collateral: r.collateral.is_some(),
        files: r.files.as_ref().map(|files| {
            // Invariant: as below, plain data serialises.
            crate::hexfmt::hex(crate::digest::sha256(
                &serde_json::to_vec(files.as_ref()).unwrap_or_default(),
            ))
        }),
    };
    // Invariant: serialising plain data to JSON cannot fail; a failure would only make every
    // lookup miss (the digest of the empty string), never make two policies collide usefully.
    let json = serde_json::to_vec(&input).unwrap_or_default();
    crate::digest::sha256(&json)
}
