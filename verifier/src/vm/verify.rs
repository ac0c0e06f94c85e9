//! `cosmian_vm verify`: the session against a snapshot, the TPM counters against the last
//! verification, and each `--application`'s TLS key against the VM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ratls::binding::Role;
use ratls::snapshot::Snapshot;
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{Check, Claims, Policy, UnixTime, Verdict};
use serde::Serialize;

use super::session::{check_session, snapshot_policy, SessionCheck};
use super::{bundle_claims, exit, load_snapshot, Ctx, Outcome, Stop};
use crate::cli::{AgentVerifyArgs, Global, UsageError, EXIT_REJECTED, EXIT_TRUSTED, EXIT_USAGE};
use crate::net::{self, ConnectError, Target};
use crate::output;

/// One `--application` result.
#[derive(Debug, Serialize)]
pub(super) struct AppResult {
    pub(super) application: String,
    pub(super) ok: bool,
    /// Could not connect (a network problem rather than a verification failure).
    pub(super) unreachable: bool,
    pub(super) how: String,
    app_spki_sha256: Option<String>,
    agent_spki_sha256: String,
    /// The certificate-mode verdict of the application's RA-TLS certificate, when it has one.
    verdict: Option<Verdict>,
}

#[derive(Debug, Serialize)]
pub(super) struct VerifyReport {
    pub(super) result: &'static str,
    pub(super) url: String,
    pub(super) snapshot: String,
    pub(super) simulated: bool,
    /// The first failed step (evidence, snapshot, files), with its expected and presented
    /// values and detail; absent when the session verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) first_failure: Option<Check>,
    #[serde(flatten)]
    pub(super) session: SessionCheck,
    pub(super) applications: Vec<AppResult>,
    /// The reboots since the last verification of this VM (resetCount grew), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reboot: Option<crate::state::Reboot>,
    /// What the comparison with `<snapshot>.last-verify.json` found, or why none was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tpm_state: Option<String>,
    /// The exit code this verification alone ends with.
    #[serde(skip)]
    pub(super) code: u8,
}

/// What one VM's verification checks besides its agent's evidence.
pub(super) struct VmChecks<'a> {
    /// Shown in reports (the path given on the command line or in the inventory).
    pub(super) snapshot_name: String,
    pub(super) snapshot: &'a Snapshot,
    pub(super) applications: &'a [Target],
    /// `<snapshot>.last-verify.json` or the fleet's per-VM file; `None` keeps no state.
    pub(super) state: Option<PathBuf>,
    pub(super) save_evidence: Option<&'a Path>,
}

/// Why a VM could not be verified at all.
#[derive(Debug)]
pub(super) enum NotVerified {
    /// Its TLS certificate was rejected (WebPKI, or the evidence in certificate mode).
    Rejected(Box<Verdict>),
    /// A network or TLS error, an agent that refused the request, or a local I/O error.
    Error(String),
}

/// `cosmian_vm verify --snapshot FILE [--application HOST[:PORT]]...`.
pub async fn verify(global: &Global, args: &AgentVerifyArgs) -> Outcome {
    let Some(snapshot_path) = &args.snapshot else {
        return Err(UsageError("verify needs --snapshot FILE (or --fleet FILE)".into()).into());
    };
    let ctx = Ctx::new(global)?;
    let snapshot = load_snapshot(snapshot_path)?;
    let apps = parse_applications(&args.application)?;
    let checks = VmChecks {
        snapshot_name: snapshot_path.display().to_string(),
        snapshot: &snapshot,
        applications: &apps,
        state: (!args.no_state).then(|| crate::state::path_for(snapshot_path)),
        save_evidence: args.save_evidence.as_deref(),
    };
    let report = match verify_vm(&ctx, &checks).await {
        Ok(report) => report,
        Err(NotVerified::Rejected(verdict)) => {
            ctx.print_rejected(&verdict, "its TLS certificate");
            return Err(Stop::Exit(exit(EXIT_REJECTED)));
        }
        Err(NotVerified::Error(e)) => return Err(UsageError(e).into()),
    };
    if ctx.json {
        output::print_json(&report);
    } else {
        output::print_text(&report_text(&report));
    }
    Ok(exit(report.code))
}

/// `--application` values as targets (port 443 by default).
pub(super) fn parse_applications(apps: &[String]) -> Result<Vec<Target>, UsageError> {
    apps.iter()
        .map(|a| Target::parse(a, 443).map_err(|e| UsageError(format!("--application {a}: {e}"))))
        .collect()
}

/// The human summary of one VM's verification.
pub(super) fn report_text(report: &VerifyReport) -> String {
    let verified = report.code == EXIT_TRUSTED;
    let mut text = output::session_summary(
        verified,
        &report.url,
        &report.snapshot,
        &report.session.evidence,
        &report.session.listed(),
    );
    if let Some(note) = &report.tpm_state {
        text.push_str(&format!("  tpm state: {note}\n"));
    }
    for app in &report.applications {
        text.push_str(&output::application_line(
            &app.application,
            app.ok,
            &app.how,
        ));
    }
    text
}

/// Verify the agent at `ctx.target` against `checks`: fresh evidence bound to the session, the
/// snapshot, the TPM counters, each application's key. Prints nothing.
pub(super) async fn verify_vm(
    ctx: &Ctx,
    checks: &VmChecks<'_>,
) -> Result<VerifyReport, NotVerified> {
    let policy = snapshot_policy(ctx, checks.snapshot);
    let mut session = ctx
        .connect(&policy, None)
        .await
        .map_err(|e| match e {
            ConnectError::Rejected(v) => NotVerified::Rejected(Box::new((*v).clone())),
            ConnectError::Other(e) => NotVerified::Error(e),
        })?;
    let mut check = check_session(&mut session, checks.snapshot)
        .await
        .map_err(|e| NotVerified::Error(e.0))?;
    drop(session);
    let counters = compare_counters(checks.state.as_deref(), &mut check);
    if let Some(dir) = checks.save_evidence {
        match crate::save::save(dir, &check.cmw) {
            Ok(names) => tracing::info!(
                path = %dir.display(),
                "evidence saved in {}: {}",
                dir.display(),
                names.join(", ")
            ),
            Err(e) => return Err(NotVerified::Error(e)),
        }
    }
    let mut results = Vec::new();
    for app in checks.applications {
        results.push(check_application(ctx, app, &check, checks.snapshot).await);
    }
    let verified = check.ok() && results.iter().all(|r| r.ok);
    let tpm_state = counters.record(verified);
    let unreachable_only = check.ok()
        && results
            .iter()
            .all(|r| r.ok || r.unreachable);
    Ok(VerifyReport {
        result: if verified { "verified" } else { "failed" },
        url: ctx.target.url(),
        snapshot: checks.snapshot_name.clone(),
        simulated: check.evidence.simulated,
        first_failure: check.first_failure().cloned(),
        applications: results,
        reboot: counters
            .comparison
            .as_ref()
            .and_then(crate::state::Comparison::reboot),
        tpm_state,
        code: if verified {
            EXIT_TRUSTED
        } else if unreachable_only {
            EXIT_USAGE
        } else {
            EXIT_REJECTED
        },
        session: check,
    })
}

/// The comparison of the quote's TPM counters with the last verification of the same VM, and
/// what to record once the verdict is known.
struct CounterState {
    path: Option<PathBuf>,
    comparison: Option<crate::state::Comparison>,
    /// The state to write when the whole verification passes.
    next: Option<crate::state::LastVerify>,
    /// Why no comparison was made (`--no-state`, no TPM quote, unreadable state).
    note: Option<String>,
}

impl CounterState {
    /// Write the new state when everything verified; return the note for the report.
    fn record(&self, verified: bool) -> Option<String> {
        let mut note = self
            .comparison
            .as_ref()
            .map(crate::state::Comparison::note)
            .or_else(|| self.note.clone());
        if let (true, Some(path), Some(next)) = (verified, &self.path, &self.next) {
            if let Err(e) = crate::state::store(path, next) {
                let warning = format!("state not saved: {e}");
                tracing::warn!(path = %path.display(), "{warning}");
                note = Some(note.map_or(warning.clone(), |n| format!("{n}; {warning}")));
            }
        }
        note
    }
}

/// `tpm.counters`: compare the quote's resetCount / restartCount / clock with
/// `<snapshot>.last-verify.json` (unless `--no-state`), adding the check to the session's.
fn compare_counters(state_path: Option<&Path>, check: &mut SessionCheck) -> CounterState {
    use crate::state;
    let mut out = CounterState {
        path: None,
        comparison: None,
        next: None,
        note: None,
    };
    let Some(path) = state_path else {
        out.note = Some("not kept (--no-state)".into());
        return out;
    };
    let claims = bundle_claims(&check.evidence);
    let tpm = claims
        .and_then(|c| c.tpm.as_ref())
        .and_then(|t| match t {
            Claims::Tpm(t) => Some(t),
            _ => None,
        });
    let (Some(tpm), Some(ak)) = (
        tpm,
        check
            .agent_ak_sha256()
            .map(str::to_owned),
    ) else {
        out.note = Some("no TPM quote: reboots and counters not tracked".into());
        return out;
    };
    let counters = state::Counters::of(tpm);
    let last = match state::load(path) {
        Ok(last) => last,
        Err(e) => {
            check.snapshot_checks.push(Check::fail(
                state::STEP,
                "a readable state file of the last verification",
                counters.to_string(),
                format!("{e}: remove it (the counters then start over) or pass --no-state"),
            ));
            out.note = Some(format!("state file unreadable: {e}"));
            return out;
        }
    };
    let comparison = state::compare(last.as_ref(), &ak, &counters);
    check
        .snapshot_checks
        .push(comparison.check(last.as_ref(), &counters));
    out.next = Some(state::LastVerify::new(&ak, counters, UnixTime::now()));
    out.path = Some(path.to_owned());
    out.comparison = Some(comparison);
    out
}

/// Is `app`'s TLS key the VM's? The agent's own key, or an RA-TLS certificate whose evidence
/// verifies under the snapshot's policy and comes from the same TPM (AK) as the agent's.
async fn check_application(
    ctx: &Ctx,
    app: &Target,
    check: &SessionCheck,
    snapshot: &Snapshot,
) -> AppResult {
    let mut result = AppResult {
        application: app.to_string(),
        ok: false,
        unreachable: false,
        how: String::new(),
        app_spki_sha256: None,
        agent_spki_sha256: check.agent_spki_sha256.clone(),
        verdict: None,
    };
    // Only the handshake signature is checked here (the server holds the key it shows); the
    // binding of that key is the check below. No WebPKI: "is it in the VM", not "who".
    let verifier = Arc::new(AttestedServerVerifier::new(
        AttestationPolicy::for_server(Policy::default()),
        Mode::Fresh,
    ));
    let config = match net::client_config(verifier, None, Vec::new()) {
        Ok(c) => c,
        Err(e) => {
            result.how = e.0;
            return result;
        }
    };
    let cert_der = match net::connect(app, config, ctx.tls.timeout).await {
        Ok(stream) => stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec()),
        Err(e) => {
            result.unreachable = true;
            result.how = match e {
                ConnectError::Rejected(v) => {
                    format!("TLS handshake rejected: {}", first_failure(&v))
                }
                ConnectError::Other(e) => e,
            };
            return result;
        }
    };
    let Some(cert_der) = cert_der else {
        result.how = "the application presented no certificate".into();
        return result;
    };
    let spki = match ratls::pki::Cert::from_der(&cert_der) {
        Ok(c) => ratls::hexfmt::hex(ratls::binding::spki_sha256(c.spki_der())),
        Err(e) => {
            result.how = format!("the application's certificate does not parse: {e}");
            return result;
        }
    };
    result.app_spki_sha256 = Some(spki.clone());
    if spki == check.agent_spki_sha256 {
        result.ok = true;
        result.how = format!("the agent's own key (spki sha256 {spki})");
        return result;
    }
    let agent_ak = check.agent_ak_sha256();
    let now = UnixTime::now();
    let mut rejections = Vec::new();
    for role in [Role::server(), Role::agent()] {
        let policy = ctx.peer_policy(snapshot.policy.clone(), role.clone(), snapshot.simulated);
        match AttestedServerVerifier::new(policy, Mode::Certificate)
            .verify_certificate(&cert_der, now)
        {
            Ok(verdict) => {
                let app_ak = bundle_claims(&verdict).and_then(|c| c.ak_sha256.clone());
                result.verdict = Some((*verdict).clone());
                match (app_ak.as_deref(), agent_ak) {
                    (Some(a), Some(b)) if a == b => {
                        result.ok = true;
                        result.how = format!(
                            "RA-TLS certificate (role {}) from the same TPM as the agent (AK \
                             sha256 {a}), key spki sha256 {spki}",
                            role.as_str()
                        );
                    }
                    (a, b) => {
                        result.how = format!(
                            "RA-TLS evidence verified but from another TPM: expected AK sha256 \
                             {}, presented {} (app key spki sha256 {spki}, agent key spki sha256 \
                             {})",
                            b.unwrap_or("-"),
                            a.unwrap_or("-"),
                            check.agent_spki_sha256
                        );
                    }
                }
                return result;
            }
            Err(rejected) => {
                if result.verdict.is_none() {
                    result.verdict = Some((*rejected.verdict).clone());
                }
                rejections.push(format!(
                    "role {}: {}",
                    role.as_str(),
                    first_failure(&rejected.verdict)
                ));
            }
        }
    }
    result.how = format!(
        "key not bound to this VM: expected the agent's key spki sha256 {} or an RA-TLS \
         certificate from the same TPM, presented spki sha256 {spki} ({})",
        check.agent_spki_sha256,
        rejections.join("; ")
    );
    result
}

fn first_failure(v: &Verdict) -> String {
    v.first_failure().map_or_else(
        || "no check ran".to_owned(),
        |c| {
            format!(
                "{}: expected {}, presented {}",
                c.step, c.expected, c.presented
            )
        },
    )
}
