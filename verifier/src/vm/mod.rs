//! The commands that talk to the agent: `snapshot`, `verify`, `app`, `secret`, `owner enroll`.
//!
//! Every command opens one TLS connection, asks for evidence bound to it (fresh mode: the
//! challenge is ours, the exporter is computed on our side of the session) and verifies it
//! before anything else is sent on that connection.

mod admin;
mod fleet;
mod owner;
mod session;
mod snapshot;
mod verify;

pub use self::admin::{app, secret_put};
pub use self::fleet::fleet;
pub use self::owner::owner_enroll;
pub use self::snapshot::snapshot;
pub use self::verify::verify;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ratls::binding::Role;
use ratls::snapshot::Snapshot;
use ratls::tls::AttestationPolicy;
use ratls::{Claims, Policy, Verdict};

use crate::agent::AgentSession;
use crate::cli::{Global, UsageError, EXIT_REJECTED};
use crate::net::{ConnectError, OwnerIdentity, Target, TlsSettings};
use crate::{evidence, output};

/// How a command ends early: an exit code already reported, or a usage/IO/network error.
#[derive(Debug)]
pub enum Stop {
    Exit(ExitCode),
    Usage(UsageError),
}

impl From<UsageError> for Stop {
    fn from(e: UsageError) -> Self {
        Self::Usage(e)
    }
}

pub type Outcome = Result<ExitCode, Stop>;

/// What every agent command needs.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) target: Target,
    pub(super) tls: TlsSettings,
    pub(super) json: bool,
    /// `--quiet`: no progress display.
    pub(super) quiet: bool,
    pub(super) sim_root: Option<Vec<u8>>,
    pub(super) collateral: Arc<ratls::collateral::CollateralClient>,
}

impl Ctx {
    pub(super) fn new(global: &Global) -> Result<Self, UsageError> {
        let Some(url) = &global.url else {
            return Err(UsageError(
                "this command talks to the agent: give --url https://HOST[:PORT] (or set \
                 COSMIAN_VM_URL)"
                    .into(),
            ));
        };
        Self::for_target(global, Target::from_url(url)?)
    }

    /// The context of a command against `target` (the fleet's VMs, whatever `--url` says).
    pub(super) fn for_target(global: &Global, target: Target) -> Result<Self, UsageError> {
        let tls = TlsSettings::from_global(global)?;
        let sim_root = read_sim_root(global)?;
        Ok(Self {
            target,
            tls,
            json: global.json,
            quiet: global.quiet,
            sim_root,
            collateral: crate::collateral::client(global),
        })
    }

    /// A policy for the agent's evidence on top of `base`, trusting the simulated root when
    /// given and `simulated_ok`.
    pub(super) fn agent_policy(&self, base: Policy, simulated_ok: bool) -> AttestationPolicy {
        self.peer_policy(base, Role::agent(), simulated_ok)
    }

    /// A policy for evidence attested as `role` on top of `base`, with this command's collateral
    /// source, trusting the simulated root when given and `simulated_ok`.
    pub(super) fn peer_policy(
        &self,
        base: Policy,
        role: Role,
        simulated_ok: bool,
    ) -> AttestationPolicy {
        let mut policy =
            AttestationPolicy::new(base, role).with_collateral(self.collateral.clone());
        if let (Some(ark), true) = (&self.sim_root, simulated_ok) {
            ratls::tls::danger::trust_simulated_root(&mut policy, ark);
        }
        policy
    }

    /// Report a verdict that ends the command: as JSON, or the session summary against
    /// `against`.
    pub(super) fn print_rejected(&self, verdict: &Verdict, against: &str) {
        if self.json {
            output::print_verdict(verdict, true);
        } else {
            output::print_text(&output::session_summary(
                false,
                &self.target.url(),
                against,
                verdict,
                &[],
            ));
        }
    }

    /// Open the session, reporting nothing.
    pub(super) async fn connect(
        &self,
        policy: &AttestationPolicy,
        owner: Option<Arc<OwnerIdentity>>,
    ) -> Result<AgentSession, ConnectError> {
        AgentSession::open(&self.target, &self.tls, policy.clone(), owner).await
    }

    /// Open the session; a rejected certificate (WebPKI) is reported and ends the command.
    pub(super) async fn open(
        &self,
        policy: &AttestationPolicy,
        owner: Option<Arc<OwnerIdentity>>,
    ) -> Result<AgentSession, Stop> {
        match self.connect(policy, owner).await {
            Ok(s) => Ok(s),
            Err(ConnectError::Rejected(verdict)) => {
                self.print_rejected(&verdict, "its TLS certificate");
                Err(Stop::Exit(ExitCode::from(EXIT_REJECTED)))
            }
            Err(ConnectError::Other(e)) => Err(Stop::Usage(UsageError(e))),
        }
    }
}

pub fn read_sim_root(global: &Global) -> Result<Option<Vec<u8>>, UsageError> {
    let Some(path) = &global.insecure_sim_root else {
        return Ok(None);
    };
    let ark = evidence::read(path)?;
    evidence::warn_insecure_sim_root();
    Ok(Some(ark))
}

pub(super) fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// The tokio runtime of one command (one connection at a time: a current-thread runtime).
pub fn block_on<F: std::future::Future<Output = Outcome>>(f: F) -> Result<ExitCode, UsageError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
    finish(runtime.block_on(f))
}

/// A runtime with a worker per core, for commands that verify many VMs at once.
pub fn block_on_threads<F: std::future::Future<Output = Outcome>>(
    f: F,
) -> Result<ExitCode, UsageError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(f);
    // Verifications still running on blocking threads (after an interruption) are not waited
    // for: their results are no longer wanted.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    finish(outcome)
}

fn finish(outcome: Outcome) -> Result<ExitCode, UsageError> {
    match outcome {
        Ok(code) | Err(Stop::Exit(code)) => Ok(code),
        Err(Stop::Usage(e)) => Err(e),
    }
}

pub(super) fn read_policy(path: Option<&Path>) -> Result<Policy, UsageError> {
    match path {
        Some(path) => Policy::from_file(path).map_err(|e| UsageError(format!("--policy {e}"))),
        None => Ok(Policy::default()),
    }
}

pub(super) fn load_snapshot(path: &Path) -> Result<Snapshot, UsageError> {
    let bytes = evidence::read(path)?;
    Snapshot::from_json(&bytes)
        .map_err(|e| UsageError(format!("--snapshot {}: {e}", path.display())))
}

pub(super) fn bundle_claims(verdict: &Verdict) -> Option<&ratls::bundle::BundleClaims> {
    match &verdict.claims {
        Claims::Bundle(c) => Some(c),
        _ => None,
    }
}
