//! What a TLS peer's evidence must satisfy: the verification [`Policy`] plus the channel-level
//! expectations (role, maximum age, what must be present).

use std::time::Duration;

use serde::Serialize;

use crate::binding::Role;
use crate::bundle::Expectations;
use crate::policy::Policy;
use crate::time::UnixTime;

/// The requirements a peer's evidence is checked against, on either side of a connection.
///
/// The defaults are strict: TEE, TPM and IMA evidence required, certificates at most 24 hours
/// old, five minutes of clock skew. The simulated TEE is never trusted unless
/// [`danger::trust_simulated_root`](super::danger::trust_simulated_root) says so.
#[derive(Debug, Clone)]
pub struct AttestationPolicy {
    /// TEE, TPM and IMA requirements (measurements, TCB, PCRs, IMA reference set).
    pub policy: Policy,
    /// The role the peer must have attested as (`server` for a TLS server, `client` for a TLS
    /// client, `agent` for the VM agent).
    pub peer_role: Role,
    /// The oldest certificate-mode evidence accepted.
    pub max_age: Duration,
    /// How far in the future an issue time may lie.
    pub max_skew: Duration,
    pub require_tee: bool,
    pub require_tpm: bool,
    /// Require IMA evidence. In certificate mode the log does not travel in the certificate:
    /// the bundle carries its length and digest, and the verdict records the IMA check as
    /// deferred until the log is fetched (fresh mode carries it inline and checks it).
    pub require_ima: bool,
    pub(crate) insecure_sim_root: Option<Vec<u8>>,
    /// Where missing TEE collateral comes from (see [`with_collateral`](Self::with_collateral)).
    pub(crate) collateral: Option<std::sync::Arc<dyn crate::bundle::CollateralSource>>,
    digest: [u8; 32],
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
}

impl AttestationPolicy {
    /// Strict defaults for a peer attesting as `peer_role`.
    pub fn new(policy: Policy, peer_role: Role) -> Self {
        let mut p = Self {
            policy,
            peer_role,
            max_age: Duration::from_secs(24 * 3600),
            max_skew: Duration::from_secs(300),
            require_tee: true,
            require_tpm: true,
            require_ima: true,
            insecure_sim_root: None,
            collateral: None,
            digest: [0; 32],
        };
        p.refresh_digest();
        p
    }

    /// A policy for verifying a TLS server (`peer_role` = `server`).
    pub fn for_server(policy: Policy) -> Self {
        Self::new(policy, Role::server())
    }

    /// A policy for verifying a TLS client (`peer_role` = `client`).
    pub fn for_client(policy: Policy) -> Self {
        Self::new(policy, Role::client())
    }

    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self.refresh_digest();
        self
    }

    pub fn with_requirements(mut self, tee: bool, tpm: bool, ima: bool) -> Self {
        self.require_tee = tee;
        self.require_tpm = tpm;
        self.require_ima = ima;
        self.refresh_digest();
        self
    }

    /// Complete peers' TEE evidence from `source` (the collateral plane: VCEKs and CRLs from
    /// AMD KDS, TDX collateral from Intel PCS/PCCS) before verifying it.
    pub fn with_collateral(
        mut self,
        source: std::sync::Arc<dyn crate::bundle::CollateralSource>,
    ) -> Self {
        self.collateral = Some(source);
        self.refresh_digest();
        self
    }

    /// Whether simulated evidence can be trusted under this policy.
    pub fn trusts_simulation(&self) -> bool {
        self.insecure_sim_root.is_some()
    }

    /// SHA-256 of everything in this policy: half of the verdict-cache key. Call
    /// [`refresh_digest`](Self::refresh_digest) after changing public fields directly.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Recompute [`digest`](Self::digest) after the public fields changed.
    pub fn refresh_digest(&mut self) {
        let input = DigestInput {
            version: 1,
            policy: &self.policy,
            peer_role: &self.peer_role,
            max_age_secs: self.max_age.as_secs(),
            max_skew_secs: self.max_skew.as_secs(),
            require: [self.require_tee, self.require_tpm, self.require_ima],
            insecure_sim_root: self
                .insecure_sim_root
                .as_deref()
                .map(|r| crate::hexfmt::hex(crate::digest::sha256(r))),
            collateral: self.collateral.is_some(),
        };
        // Invariant: serialising plain data to JSON cannot fail; a failure would only make every
        // lookup miss (the digest of the empty string), never make two policies collide usefully.
        let json = serde_json::to_vec(&input).unwrap_or_default();
        self.digest = crate::digest::sha256(&json);
    }

    /// The bundle verifier's expectations for a peer presenting `spki_der`, at `now`.
    pub fn expectations<'a>(&'a self, spki_der: &'a [u8], now: UnixTime) -> Expectations<'a> {
        let mut e = Expectations::new(self.peer_role.clone(), spki_der, now);
        e.max_age_secs = self.max_age.as_secs();
        e.max_skew_secs = self.max_skew.as_secs();
        e.insecure_sim_root = self.insecure_sim_root.as_deref();
        e.collateral = self.collateral.as_deref();
        e.require_tee = self.require_tee;
        e.require_tpm = self.require_tpm;
        e.require_ima = self.require_ima;
        e
    }
}
