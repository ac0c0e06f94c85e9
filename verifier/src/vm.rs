//! The commands that talk to the agent: `snapshot`, `verify`, `app`, `secret`, `owner enroll`.
//!
//! Every command opens one TLS connection, asks for evidence bound to it (fresh mode: the
//! challenge is ours, the exporter is computed on our side of the session) and verifies it
//! before anything else is sent on that connection.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use ratls::binding::Role;
use ratls::bundle::{Bundle, EventLogEvidence, ImaEvidence, MAX_BUNDLE_LEN};
use ratls::ima::Log;
use ratls::snapshot::{FileSet, Snapshot};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{Check, Claims, Policy, UnixTime, Verdict};
use serde::Serialize;

use crate::agent::AgentSession;
use crate::cli::{
    AgentVerifyArgs, AppCommand, Global, OwnerEnrollArgs, SecretPutArgs, SessionArgs, SnapshotArgs,
    UsageError, EXIT_REJECTED, EXIT_TRUSTED, EXIT_USAGE,
};
use crate::net::{self, ConnectError, OwnerIdentity, Target, TlsSettings};
use crate::{evidence, files, output};

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
struct Ctx {
    target: Target,
    tls: TlsSettings,
    json: bool,
    sim_root: Option<Vec<u8>>,
    collateral: Arc<ratls::collateral::CollateralClient>,
}

impl Ctx {
    fn new(global: &Global) -> Result<Self, UsageError> {
        let Some(url) = &global.url else {
            return Err(UsageError(
                "this command talks to the agent: give --url https://HOST[:PORT] (or set \
                 COSMIAN_VM_URL)"
                    .into(),
            ));
        };
        let target = Target::from_url(url)?;
        let tls = TlsSettings::from_global(global)?;
        let sim_root = read_sim_root(global)?;
        Ok(Self {
            target,
            tls,
            json: global.json,
            sim_root,
            collateral: crate::collateral::client(global),
        })
    }

    /// A policy for the agent's evidence on top of `base`, trusting the simulated root when
    /// given and `simulated_ok`.
    fn agent_policy(&self, base: Policy, simulated_ok: bool) -> AttestationPolicy {
        let mut policy =
            AttestationPolicy::new(base, Role::agent()).with_collateral(self.collateral.clone());
        if let (Some(ark), true) = (&self.sim_root, simulated_ok) {
            ratls::tls::danger::trust_simulated_root(&mut policy, ark);
        }
        policy
    }

    /// Open the session; a rejected certificate (WebPKI) is reported and ends the command.
    async fn open(
        &self,
        policy: &AttestationPolicy,
        owner: Option<Arc<OwnerIdentity>>,
    ) -> Result<AgentSession, Stop> {
        match AgentSession::open(&self.target, &self.tls, policy.clone(), owner).await {
            Ok(s) => Ok(s),
            Err(ConnectError::Rejected(verdict)) => {
                if self.json {
                    output::print_verdict(&verdict, true);
                } else {
                    output::print_text(&output::session_summary(
                        false,
                        &self.target.url(),
                        "its TLS certificate",
                        &verdict,
                        &[],
                    ));
                }
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
    eprintln!(
        "WARNING: --insecure-sim-root: evidence from the simulated TEE will be accepted; it \
         proves nothing about hardware"
    );
    Ok(Some(ark))
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// The tokio runtime of one command (one connection at a time: a current-thread runtime).
pub fn block_on<F: std::future::Future<Output = Outcome>>(f: F) -> Result<ExitCode, UsageError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
    match runtime.block_on(f) {
        Ok(code) | Err(Stop::Exit(code)) => Ok(code),
        Err(Stop::Usage(e)) => Err(e),
    }
}

fn read_policy(path: Option<&Path>) -> Result<Policy, UsageError> {
    match path {
        Some(path) => Policy::from_file(path).map_err(|e| UsageError(format!("--policy {e}"))),
        None => Ok(Policy::default()),
    }
}

fn load_snapshot(path: &Path) -> Result<Snapshot, UsageError> {
    let bytes = evidence::read(path)?;
    Snapshot::from_json(&bytes)
        .map_err(|e| UsageError(format!("--snapshot {}: {e}", path.display())))
}

fn bundle_claims(verdict: &Verdict) -> Option<&ratls::bundle::BundleClaims> {
    match &verdict.claims {
        Claims::Bundle(c) => Some(c),
        _ => None,
    }
}

/// The verified state of a session against a snapshot.
#[derive(Debug, Serialize)]
struct SessionCheck {
    /// The fresh evidence's verdict (TEE, TPM, IMA replay, binding to this session).
    evidence: Verdict,
    /// The snapshot itself (`snapshot.pins`) and the agent's key (`snapshot.agent_key`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    snapshot_checks: Vec<Check>,
    /// Every file IMA measured since boot, compared with the snapshot.
    files: Vec<Check>,
    agent_spki_sha256: String,
    /// The evidence bundle as received (CMW).
    #[serde(skip)]
    cmw: Vec<u8>,
}

impl SessionCheck {
    fn ok(&self) -> bool {
        self.evidence.is_trusted()
            && self
                .snapshot_checks
                .iter()
                .chain(&self.files)
                .all(|c| c.ok)
    }

    /// The snapshot checks then the file checks, as the text summary lists them.
    fn listed(&self) -> Vec<Check> {
        self.snapshot_checks
            .iter()
            .chain(&self.files)
            .cloned()
            .collect()
    }

    /// The first failed step: the evidence's, then the snapshot's, then the files'.
    fn first_failure(&self) -> Option<&Check> {
        self.evidence
            .first_failure()
            .or_else(|| {
                self.snapshot_checks
                    .iter()
                    .chain(&self.files)
                    .find(|c| !c.ok)
            })
    }

    fn agent_ak_sha256(&self) -> Option<&str> {
        bundle_claims(&self.evidence).and_then(|c| c.ak_sha256.as_deref())
    }
}

/// Fresh evidence verified with the snapshot's policy, then the IMA log checked file by file.
async fn check_session(
    session: &mut AgentSession,
    snapshot: &Snapshot,
    policy: &AttestationPolicy,
) -> Result<SessionCheck, UsageError> {
    let (evidence, cmw) = session.evidence(policy).await?;
    let bundle = Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN).ok();
    let files = match &bundle {
        Some(bundle) => match &bundle.ima {
            Some(ImaEvidence::Log(bytes)) => match Log::parse(bytes) {
                Ok(log) => snapshot.check_ima(&log),
                Err(e) => vec![Check::fail(
                    "ima.log",
                    "a parsable IMA log",
                    "malformed",
                    e.to_string(),
                )],
            },
            _ => vec![Check::fail(
                "ima.log",
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

fn snapshot_policy(ctx: &Ctx, snapshot: &Snapshot) -> AttestationPolicy {
    if snapshot.simulated && ctx.sim_root.is_none() {
        eprintln!(
            "note: the snapshot was taken on a simulated TEE; its evidence verifies only with \
             --insecure-sim-root ARK"
        );
    }
    ctx.agent_policy(snapshot.policy.clone(), snapshot.simulated)
}

// ---------------------------------------------------------------------------------------------
// snapshot

#[derive(Debug, serde::Deserialize)]
struct SnapshotResult {
    files: FileSet,
    #[serde(default)]
    walked: Option<serde_json::Value>,
}

/// `cosmian_vm snapshot` (the owner only: the agent serves its snapshot job to the owner).
pub async fn snapshot(global: &Global, args: &SnapshotArgs) -> Outcome {
    let ctx = Ctx::new(global)?;
    let owner = require_owner(global, "snapshot")?;
    let base = read_policy(args.policy.as_deref())?;
    let policy = ctx.agent_policy(base.clone(), true);
    let mut session = ctx.open(&policy, Some(owner)).await?;
    let (verdict, cmw) = session.evidence(&policy).await?;
    if !verdict.is_trusted() {
        if !ctx.json {
            eprintln!(
                "error: the agent's evidence is not trusted; no snapshot written to {}",
                args.output.display()
            );
        }
        if ctx.json {
            output::print_verdict(&verdict, true);
        } else {
            output::print_text(&output::session_summary(
                false,
                &ctx.target.url(),
                "its evidence (genuineness)",
                &verdict,
                &[],
            ));
        }
        return Ok(exit(EXIT_REJECTED));
    }
    let bundle = Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN)
        .map_err(|e| UsageError(format!("the verified evidence no longer decodes: {e}")))?;
    let result = run_snapshot_job(&mut session, args, ctx.json).await?;
    let mut files = result.files;
    if let Some(ImaEvidence::Log(bytes)) = &bundle.ima {
        let log = Log::parse(bytes).map_err(|e| UsageError(format!("the IMA log: {e}")))?;
        // Only what the verified quote covers: entries after its prefix are vouched for by
        // nobody. (The job's result carries the agent's own view of the log and the walk,
        // which the owner trusts at snapshot time, as the snapshot trusts the VM.)
        let covered = bundle_claims(&verdict)
            .and_then(|c| c.ima.as_ref())
            .and_then(|c| match c {
                ratls::verdict::Claims::Ima(ima) => ima.quote_prefix,
                _ => None,
            })
            .unwrap_or(0);
        files.add_ima_log_covered(&log, covered);
    }
    let now = UnixTime::now();
    let mut snapshot = Snapshot::from_evidence(&verdict, &bundle, files, now)
        .map_err(|e| UsageError(e.to_string()))?;
    snapshot.policy = merge_policy(&base, &snapshot.policy)?;
    let meta = &mut snapshot.metadata;
    meta.insert("agent_url".into(), ctx.target.url());
    if let Some(ak) = bundle_claims(&verdict).and_then(|c| c.ak_sha256.clone()) {
        meta.insert("agent_ak_sha256".into(), ak);
    }
    meta.insert(
        "created_by".into(),
        concat!("cosmian_vm ", env!("CARGO_PKG_VERSION")).into(),
    );
    if let Some(walked) = &result.walked {
        meta.insert("walked".into(), walked.to_string());
    }
    files::write_atomic(&args.output, snapshot.to_json().as_bytes(), 0o644)?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "result": "written",
            "snapshot": args.output.display().to_string(),
            "platform": snapshot.platform,
            "simulated": snapshot.simulated,
            "files": snapshot.files.len(),
            "evidence": verdict,
        }));
    } else {
        let sim = if snapshot.simulated {
            " [SIMULATED TEE: not production evidence]"
        } else {
            ""
        };
        output::print_line(&format!(
            "snapshot of {} written to {}: platform {}, {} approved files{sim}",
            ctx.target.url(),
            args.output.display(),
            snapshot.platform,
            snapshot.files.len()
        ));
    }
    Ok(exit(EXIT_TRUSTED))
}

async fn run_snapshot_job(
    session: &mut AgentSession,
    args: &SnapshotArgs,
    json: bool,
) -> Result<SnapshotResult, UsageError> {
    let mut progress = output::Progress::new(!json);
    let mut response = session
        .request(
            Method::POST,
            "/api/v1/snapshot",
            Vec::new(),
            "application/json",
        )
        .await?;
    #[derive(serde::Deserialize)]
    struct Started {
        job: String,
    }
    let job = match response.status {
        StatusCode::ACCEPTED => {
            response
                .json::<Started>("the snapshot job")?
                .job
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(UsageError(format!(
                "the agent refused the snapshot job ({}): {} (the snapshot is the owner's: \
                 `cosmian_vm owner enroll` first, or give --owner-cert/--owner-key)",
                response.status,
                response.error_message()
            )))
        }
        other => {
            return Err(UsageError(format!(
                "the agent did not start a snapshot job ({other}): {}",
                response.error_message()
            )))
        }
    };
    if !job
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        || job.len() != 32
    {
        return Err(UsageError(format!(
            "the agent answered a malformed job id {job:?}"
        )));
    }
    let path = format!("/api/v1/snapshot/{job}");
    loop {
        match response.status {
            StatusCode::OK => {
                progress.finish();
                return response.json("the snapshot result");
            }
            StatusCode::ACCEPTED => {
                if let Ok(p) = serde_json::from_slice::<serde_json::Value>(&response.body) {
                    progress.show(&p);
                }
            }
            StatusCode::NOT_FOUND => {
                progress.finish();
                return Err(UsageError(
                    "the agent no longer has our snapshot job (cancelled or replaced while \
                     running?)"
                        .into(),
                ));
            }
            other => {
                progress.finish();
                return Err(UsageError(format!(
                    "the agent's snapshot job failed ({other}): {}",
                    response.error_message()
                )));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(args.poll_ms.max(10))).await;
        response = session
            .request(Method::GET, &path, Vec::new(), "application/json")
            .await?;
    }
}

/// The user's base policy under the values the snapshot pinned: wherever the pinned policy
/// differs from the default, it wins.
fn merge_policy(base: &Policy, pinned: &Policy) -> Result<Policy, UsageError> {
    fn merge(
        base: &mut serde_json::Value,
        pinned: &serde_json::Value,
        default: &serde_json::Value,
    ) {
        match (base, pinned) {
            (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
                for (key, value) in p {
                    let d = default
                        .get(key)
                        .unwrap_or(&serde_json::Value::Null);
                    match b.get_mut(key) {
                        Some(slot) => merge(slot, value, d),
                        None => {
                            b.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            (slot, value) => {
                if value != default {
                    *slot = value.clone();
                }
            }
        }
    }
    let to_value =
        |p: &Policy| serde_json::to_value(p).map_err(|e| UsageError(format!("policy: {e}")));
    let mut merged = to_value(base)?;
    merge(
        &mut merged,
        &to_value(pinned)?,
        &to_value(&Policy::default())?,
    );
    serde_json::from_value(merged).map_err(|e| UsageError(format!("merging --policy: {e}")))
}

// ---------------------------------------------------------------------------------------------
// verify

/// One `--application` result.
#[derive(Debug, Serialize)]
struct AppResult {
    application: String,
    ok: bool,
    /// Could not connect (a network problem rather than a verification failure).
    unreachable: bool,
    how: String,
    app_spki_sha256: Option<String>,
    agent_spki_sha256: String,
    /// The certificate-mode verdict of the application's RA-TLS certificate, when it has one.
    verdict: Option<Verdict>,
}

#[derive(Debug, Serialize)]
struct VerifyReport<'a> {
    result: &'static str,
    url: String,
    snapshot: String,
    simulated: bool,
    /// The first failed step (evidence, snapshot, files), with its expected and presented
    /// values and detail; absent when the session verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_failure: Option<Check>,
    #[serde(flatten)]
    session: &'a SessionCheck,
    applications: Vec<AppResult>,
    /// The reboots since the last verification of this VM (resetCount grew), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot: Option<crate::state::Reboot>,
    /// What the comparison with `<snapshot>.last-verify.json` found, or why none was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    tpm_state: Option<String>,
}

/// `cosmian_vm verify --snapshot FILE [--application HOST[:PORT]]...`.
pub async fn verify(global: &Global, args: &AgentVerifyArgs) -> Outcome {
    let ctx = Ctx::new(global)?;
    let snapshot = load_snapshot(&args.snapshot)?;
    let apps = args
        .application
        .iter()
        .map(|a| Target::parse(a, 443).map_err(|e| UsageError(format!("--application {a}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = snapshot_policy(&ctx, &snapshot);
    let mut session = ctx.open(&policy, None).await?;
    let mut check = check_session(&mut session, &snapshot, &policy).await?;
    let counters = compare_counters(args, &mut check);
    if let Some(dir) = &args.save_evidence {
        match crate::save::save(dir, &check.cmw) {
            Ok(names) => eprintln!("evidence saved in {}: {}", dir.display(), names.join(", ")),
            Err(e) => return Err(UsageError(e).into()),
        }
    }
    let mut results = Vec::new();
    for app in &apps {
        results.push(check_application(&ctx, app, &check, &snapshot).await);
    }
    let verified = check.ok() && results.iter().all(|r| r.ok);
    let tpm_state = counters.record(verified);
    let unreachable_only = check.ok()
        && results
            .iter()
            .all(|r| r.ok || r.unreachable);
    let report = VerifyReport {
        result: if verified { "verified" } else { "failed" },
        url: ctx.target.url(),
        snapshot: args.snapshot.display().to_string(),
        simulated: check.evidence.simulated,
        first_failure: check.first_failure().cloned(),
        session: &check,
        applications: results,
        reboot: counters
            .comparison
            .as_ref()
            .and_then(crate::state::Comparison::reboot),
        tpm_state,
    };
    if ctx.json {
        output::print_json(&report);
    } else {
        let mut text = output::session_summary(
            verified,
            &ctx.target.url(),
            &args.snapshot.display().to_string(),
            &check.evidence,
            &check.listed(),
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
        output::print_text(&text);
    }
    Ok(exit(if verified {
        EXIT_TRUSTED
    } else if unreachable_only {
        EXIT_USAGE
    } else {
        EXIT_REJECTED
    }))
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
                eprintln!("warning: {warning}");
                note = Some(note.map_or(warning.clone(), |n| format!("{n}; {warning}")));
            }
        }
        note
    }
}

/// `tpm.counters`: compare the quote's resetCount / restartCount / clock with
/// `<snapshot>.last-verify.json` (unless `--no-state`), adding the check to the session's.
fn compare_counters(args: &AgentVerifyArgs, check: &mut SessionCheck) -> CounterState {
    use crate::state;
    let mut out = CounterState {
        path: None,
        comparison: None,
        next: None,
        note: None,
    };
    if args.no_state {
        out.note = Some("not kept (--no-state)".into());
        return out;
    }
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
    let path = state::path_for(&args.snapshot);
    let last = match state::load(&path) {
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
    out.path = Some(path);
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
        let mut policy = AttestationPolicy::new(snapshot.policy.clone(), role.clone())
            .with_collateral(ctx.collateral.clone());
        if let (Some(ark), true) = (&ctx.sim_root, snapshot.simulated) {
            ratls::tls::danger::trust_simulated_root(&mut policy, ark);
        }
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

// ---------------------------------------------------------------------------------------------
// app, secret, owner

/// The owner identity: `--owner-cert/--owner-key`, else the default files when both exist.
fn owner_identity(global: &Global) -> Result<Option<Arc<OwnerIdentity>>, UsageError> {
    if let (Some(cert), Some(key)) = (&global.owner_cert, &global.owner_key) {
        return OwnerIdentity::load(cert, key).map(|o| Some(Arc::new(o)));
    }
    let Some(dir) = files::config_dir() else {
        return Ok(None);
    };
    let (cert, key) = (dir.join("owner.pem"), dir.join("owner.key"));
    if cert.is_file() && key.is_file() {
        return OwnerIdentity::load(&cert, &key).map(|o| Some(Arc::new(o)));
    }
    Ok(None)
}

/// A session whose evidence matched `--snapshot` (or `--skip-verification`, loudly), ready
/// for admin calls.
async fn admin_session(
    ctx: &Ctx,
    session_args: &SessionArgs,
    what: &str,
    owner: Arc<OwnerIdentity>,
    genuineness: Option<Policy>,
) -> Result<(AgentSession, Option<SessionCheck>), Stop> {
    let snapshot = match (&session_args.snapshot, session_args.skip_verification) {
        (Some(path), _) => Some(load_snapshot(path)?),
        (None, true) => None,
        (None, false) if genuineness.is_some() => None,
        (None, false) => {
            return Err(Stop::Usage(UsageError(format!(
                "refusing to send `{what}` to an unverified VM: give --snapshot FILE (from \
                 `cosmian_vm snapshot`) so the agent's evidence is checked first, or \
                 --skip-verification (dangerous)"
            ))))
        }
    };
    let policy = match (&snapshot, &genuineness) {
        (Some(s), _) => snapshot_policy(ctx, s),
        (None, Some(base)) => ctx.agent_policy(base.clone(), true),
        (None, None) => ctx.agent_policy(Policy::default(), false),
    };
    let mut session = ctx.open(&policy, Some(owner)).await?;
    if session_args.skip_verification {
        eprintln!(
            "WARNING: --skip-verification: `{what}` goes to {} WITHOUT checking what runs there; \
             anyone holding that TLS endpoint receives it",
            ctx.target
        );
        return Ok((session, None));
    }
    let check = match &snapshot {
        Some(s) => check_session(&mut session, s, &policy).await?,
        None => {
            // Genuineness only (owner enrolment before any snapshot): chain, signatures,
            // binding to this session.
            let (evidence, cmw) = session.evidence(&policy).await?;
            SessionCheck {
                evidence,
                snapshot_checks: Vec::new(),
                files: Vec::new(),
                agent_spki_sha256: session.spki_sha256_hex(),
                cmw,
            }
        }
    };
    if !check.ok() {
        if ctx.json {
            output::print_json(&serde_json::json!({
                "result": "failed",
                "sent": false,
                "verification": check,
            }));
        } else {
            let against = session_args
                .snapshot
                .as_ref()
                .map_or_else(|| "genuineness".to_owned(), |p| p.display().to_string());
            let mut text = output::session_summary(
                false,
                &ctx.target.url(),
                &against,
                &check.evidence,
                &check.listed(),
            );
            text.push_str(&format!("nothing was sent: `{what}` refused\n"));
            output::print_text(&text);
        }
        return Err(Stop::Exit(exit(EXIT_REJECTED)));
    }
    if !ctx.json {
        let sim = if check.evidence.simulated {
            " [SIMULATED TEE: not production evidence]"
        } else {
            ""
        };
        let against = session_args
            .snapshot
            .as_ref()
            .map_or_else(
                || "its evidence (genuineness)".to_owned(),
                |p| format!("snapshot {}", p.display()),
            );
        eprintln!("verified {} against {against}{sim}", ctx.target.url());
    }
    Ok((session, Some(check)))
}

fn require_owner(global: &Global, what: &str) -> Result<Arc<OwnerIdentity>, UsageError> {
    owner_identity(global)?.ok_or_else(|| {
        UsageError(format!(
            "`{what}` needs the owner's client certificate: run `cosmian_vm owner enroll` first, \
             or give --owner-cert FILE --owner-key FILE"
        ))
    })
}

/// An admin call: method, path and body (sent as `application/octet-stream`).
struct AdminRequest {
    method: Method,
    path: String,
    body: Vec<u8>,
}

/// Send one admin call on a verified session and report the agent's answer.
async fn admin_call(
    ctx: &Ctx,
    session_args: &SessionArgs,
    what: &str,
    owner: Arc<OwnerIdentity>,
    request: AdminRequest,
) -> Outcome {
    let (mut session, check) = admin_session(ctx, session_args, what, owner, None).await?;
    let response = session
        .request(
            request.method,
            &request.path,
            request.body,
            "application/octet-stream",
        )
        .await?;
    report_admin(ctx, what, &response, check.as_ref(), StatusCode::OK)
}

fn report_admin(
    ctx: &Ctx,
    what: &str,
    response: &crate::agent::Response,
    check: Option<&SessionCheck>,
    success: StatusCode,
) -> Outcome {
    if response.status != success {
        let hint = match response.status {
            StatusCode::UNAUTHORIZED => " (no client certificate reached the agent)",
            StatusCode::FORBIDDEN => " (this certificate is not the enrolled owner)",
            _ => "",
        };
        return Err(Stop::Usage(UsageError(format!(
            "`{what}`: the agent answered {}{hint}: {}",
            response.status,
            response.error_message()
        ))));
    }
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    if ctx.json {
        output::print_json(&serde_json::json!({
            "result": "ok",
            "command": what,
            "verification": check,
            "skipped_verification": check.is_none(),
            "response": answer,
        }));
    } else {
        output::print_line(&format!("{what}: done ({answer})"));
    }
    Ok(exit(EXIT_TRUSTED))
}

/// `cosmian_vm app init|start|stop|restart`.
pub async fn app(global: &Global, command: &AppCommand) -> Outcome {
    let (what, session_args, path, body) = match command {
        AppCommand::Init(a) => ("app init", &a.session, "/api/v1/app/init", Some(&a.conf)),
        AppCommand::Start(s) => ("app start", s, "/api/v1/app/start", None),
        AppCommand::Stop(s) => ("app stop", s, "/api/v1/app/stop", None),
        AppCommand::Restart(s) => ("app restart", s, "/api/v1/app/restart", None),
    };
    precheck(session_args, what)?;
    let body = match body {
        Some(p) => evidence::read(p)?,
        None => Vec::new(),
    };
    let owner = require_owner(global, what)?;
    let ctx = Ctx::new(global)?;
    admin_call(
        &ctx,
        session_args,
        what,
        owner,
        AdminRequest {
            method: Method::POST,
            path: path.to_owned(),
            body,
        },
    )
    .await
}

/// Refuse before reading files or connecting when nothing would verify the session.
fn precheck(session_args: &SessionArgs, what: &str) -> Result<(), UsageError> {
    if session_args.snapshot.is_none() && !session_args.skip_verification {
        return Err(UsageError(format!(
            "refusing to send `{what}` to an unverified VM: give --snapshot FILE (from \
             `cosmian_vm snapshot`) so the agent's evidence is checked first, or \
             --skip-verification (dangerous)"
        )));
    }
    Ok(())
}

/// A secret's name as the agent accepts it: 1-64 bytes of `[A-Za-z0-9._-]`, not starting
/// with `.`.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `cosmian_vm secret put NAME FILE`.
pub async fn secret_put(global: &Global, args: &SecretPutArgs) -> Outcome {
    if !valid_secret_name(&args.name) {
        return Err(Stop::Usage(UsageError(format!(
            "secret name {:?}: use 1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.'",
            args.name
        ))));
    }
    let what = "secret put";
    precheck(&args.session, what)?;
    let body = evidence::read(&args.file)?;
    let owner = require_owner(global, what)?;
    let ctx = Ctx::new(global)?;
    let path = format!("/api/v1/secrets/{}", args.name);
    admin_call(
        &ctx,
        &args.session,
        what,
        owner,
        AdminRequest {
            method: Method::PUT,
            path,
            body,
        },
    )
    .await
}

/// `cosmian_vm owner enroll`.
pub async fn owner_enroll(global: &Global, args: &OwnerEnrollArgs) -> Outcome {
    let ctx = Ctx::new(global)?;
    let (owner, where_) = match (&global.owner_cert, &global.owner_key) {
        (Some(cert), Some(key)) => (OwnerIdentity::load(cert, key)?, cert.clone()),
        _ => {
            let dir = match &args.out {
                Some(d) => d.clone(),
                None => files::config_dir()
                    .ok_or_else(|| UsageError("no home directory: give --out DIR".into()))?,
            };
            ensure_owner_files(&dir)?
        }
    };
    let owner = Arc::new(owner);
    let spki = owner.spki_sha256().unwrap_or_default();
    let genuineness = if args.session.snapshot.is_none() {
        Some(read_policy(args.policy.as_deref())?)
    } else {
        None
    };
    let token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (mut session, check) =
        admin_session(&ctx, &args.session, "owner enroll", owner, genuineness).await?;
    // The token travels only now, on the session whose evidence just verified.
    let response = session
        .request_json(
            Method::POST,
            "/api/v1/owner",
            &serde_json::json!({ "token": token }),
        )
        .await?;
    if response.status == StatusCode::BAD_REQUEST && token.is_none() {
        return Err(Stop::Usage(UsageError(format!(
            "the agent needs its one-time enrolment token: give --token TOKEN (printed in the \
             agent's log at its first start, and in <data_dir>/enrolment-token in the VM): {}",
            response.error_message()
        ))));
    }
    if response.status == StatusCode::CONFLICT {
        return Err(Stop::Usage(UsageError(format!(
            "an owner is already enrolled with this agent; the certificate {} (spki sha256 \
             {spki}) was not enrolled",
            where_.display()
        ))));
    }
    report_admin(
        &ctx,
        "owner enroll",
        &response,
        check.as_ref(),
        StatusCode::CREATED,
    )
}

/// The owner key and certificate in `dir`: reused when both exist, else generated (P-256,
/// self-signed) and written atomically, the key with mode 0600.
fn ensure_owner_files(dir: &Path) -> Result<(OwnerIdentity, PathBuf), UsageError> {
    let (cert, key) = (dir.join("owner.pem"), dir.join("owner.key"));
    if cert.is_file() && key.is_file() {
        eprintln!("using the existing owner certificate {}", cert.display());
        return Ok((OwnerIdentity::load(&cert, &key)?, cert));
    }
    if cert.exists() || key.exists() {
        return Err(UsageError(format!(
            "{} holds only half of an owner identity (owner.pem / owner.key): remove it or give \
             --owner-cert and --owner-key",
            dir.display()
        )));
    }
    create_private_dir(dir)?;
    let (cert_pem, key_pem) = generate_owner()?;
    files::write_atomic(&key, key_pem.as_bytes(), 0o600)?;
    files::write_atomic(&cert, cert_pem.as_bytes(), 0o644)?;
    eprintln!(
        "created the owner key {} and certificate {}",
        key.display(),
        cert.display()
    );
    Ok((OwnerIdentity::load(&cert, &key)?, cert))
}

fn create_private_dir(dir: &Path) -> Result<(), UsageError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", dir.display())))
}

/// A P-256 key and a self-signed certificate for it (PEM): the owner's identity.
fn generate_owner() -> Result<(String, String), UsageError> {
    let fail = |e: rcgen::Error| UsageError(format!("generating the owner certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cosmian_vm owner");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_the_api() {
        for ok in ["db.password", "A-b_c.9", &"x".repeat(64)] {
            assert!(valid_secret_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "sp ace", &"x".repeat(65), "é"] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn pinned_values_win_over_the_base_policy_and_defaults_do_not() {
        let base = Policy::from_json(
            r#"{"snp": {"measurement": "aa", "min_guest_svn": 3, "id_key_digest": "cc"}}"#,
        )
        .unwrap();
        let mut pinned = Policy::default();
        pinned.snp.measurement = Some("bb".into());
        let merged = merge_policy(&base, &pinned).unwrap();
        assert_eq!(merged.snp.measurement.as_deref(), Some("bb"));
        assert_eq!(merged.snp.min_guest_svn, base.snp.min_guest_svn);
    }

    #[test]
    fn owner_identity_generates_and_loads() {
        let dir = std::env::temp_dir().join(format!("cosmian_vm_owner_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (id, cert) = ensure_owner_files(&dir).unwrap();
        assert!(cert.ends_with("owner.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("owner.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second call reuses the same key.
        let (again, _) = ensure_owner_files(&dir).unwrap();
        assert_eq!(id.spki_sha256(), again.spki_sha256());
        assert_eq!(id.spki_sha256().unwrap().len(), 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
