//! `cosmian_vm verify --fleet FILE`: every VM of an inventory verified concurrently, each
//! exactly as `cosmian_vm verify` does it (its own TLS session, fresh evidence bound to it, its
//! own snapshot, its own TPM-counter state), with a bounded pool and a per-VM deadline. One
//! table (or JSON), Prometheus text-format metrics, and `--watch` to go on verifying.
//!
//! The inventory (TOML, or JSON with the same shape; paths relative to the inventory's folder):
//!
//! ```toml
//! [defaults]            # all optional
//! snapshot = "web.snapshot"
//! concurrency = 16
//! timeout = 60          # seconds per VM, the whole verification
//! state_dir = "fleet.state"
//!
//! [[vm]]
//! name = "web-1"        # 1-64 of A-Z a-z 0-9 . _ -, unique
//! url = "https://10.0.0.5:5555"
//! snapshot = "web-1.snapshot"
//! application = ["10.0.0.5:443"]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls::snapshot::Snapshot;
use ratls::{Check, UnixTime};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::verify::{parse_applications, verify_vm, NotVerified, VerifyReport, VmChecks};
use super::{exit, load_snapshot, Ctx, Outcome};
use crate::cli::{AgentVerifyArgs, Global, UsageError, EXIT_REJECTED, EXIT_TRUSTED};
use crate::net::Target;
use crate::output;

const DEFAULT_CONCURRENCY: usize = 16;
/// Each verification in flight holds a thread of the blocking pool (its evidence check and
/// collateral fetch are synchronous): at most this many.
const MAX_CONCURRENCY: usize = 256;
const DEFAULT_VM_TIMEOUT_SECS: u64 = 60;
/// One day: a longer deadline is a mistake, not a wish.
const MAX_SECS: u64 = 86_400;
const MAX_INVENTORY_LEN: u64 = 16 << 20;
const MAX_VMS: usize = 100_000;
/// How much of a failure's detail the table shows (`--json` has all of it).
const TABLE_DETAIL: usize = 160;

/// The step a VM fails at when its verification did not finish within the per-VM timeout.
pub const STEP_TIMEOUT: &str = "fleet.timeout";
/// The step of a VM whose snapshot could not be read.
pub const STEP_SNAPSHOT: &str = "fleet.snapshot";
/// The step of a VM that could not be reached (network, TLS, an agent refusing the request).
pub const STEP_NETWORK: &str = "network";
/// The step of a VM whose session verified but one of whose applications' keys did not.
pub const STEP_APPLICATION: &str = "application";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    vm: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    snapshot: Option<PathBuf>,
    concurrency: Option<usize>,
    timeout: Option<u64>,
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    url: String,
    snapshot: Option<PathBuf>,
    #[serde(default)]
    application: Vec<String>,
}

/// One VM of the fleet, its inventory entry resolved.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    target: Target,
    snapshot: PathBuf,
    applications: Vec<Target>,
}

/// The inventory with the command line's overrides.
#[derive(Debug)]
struct Fleet {
    source: PathBuf,
    members: Vec<Member>,
    concurrency: usize,
    vm_timeout: Duration,
    /// Per-VM TPM-counter state; `None` with `--no-state`.
    state_dir: Option<PathBuf>,
}

/// A VM's result in one round.
#[derive(Debug, Serialize)]
struct VmResult {
    name: String,
    url: String,
    snapshot: String,
    /// `verified`, `failed` (a check failed), `unreachable`, `timeout` or `error` (its
    /// snapshot could not be read).
    result: &'static str,
    simulated: bool,
    /// The step that failed first (`ima.files`, `tee.signature`, `network`, `fleet.timeout`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    /// That step's expected and presented values, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// Every failed check (evidence, snapshot, files), with their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<Check>,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tpm_state: Option<String>,
}

impl VmResult {
    fn ok(&self) -> bool {
        self.result == "verified"
    }

    fn new(member: &Member, result: &'static str, seconds: f64) -> Self {
        Self {
            name: member.name.clone(),
            url: member.target.url(),
            snapshot: member.snapshot.display().to_string(),
            result,
            simulated: false,
            step: None,
            detail: None,
            failures: Vec::new(),
            seconds,
            tpm_state: None,
        }
    }

    fn failed_at(mut self, step: &str, detail: String) -> Self {
        self.step = Some(step.to_owned());
        self.detail = Some(detail);
        self
    }

    fn of_report(member: &Member, report: VerifyReport, seconds: f64) -> Self {
        let mut out = Self::new(member, "verified", seconds);
        out.simulated = report.simulated;
        out.tpm_state = report.tpm_state;
        out.failures = report
            .session
            .evidence
            .checks
            .iter()
            .chain(&report.session.snapshot_checks)
            .chain(&report.session.files)
            .filter(|c| !c.ok)
            .cloned()
            .collect();
        if report.code == EXIT_TRUSTED {
            return out;
        }
        out.result = "failed";
        if let Some(c) = &report.first_failure {
            return out.failed_at(&c.step.to_string(), check_detail(c));
        }
        match report
            .applications
            .iter()
            .find(|a| !a.ok)
        {
            Some(app) => {
                if app.unreachable {
                    out.result = "unreachable";
                }
                out.failed_at(
                    STEP_APPLICATION,
                    format!("{}: {}", app.application, app.how),
                )
            }
            None => out.failed_at("verify", "not verified".into()),
        }
    }
}

fn check_detail(c: &Check) -> String {
    let values = format!("expected {}, presented {}", c.expected, c.presented);
    if c.detail.is_empty() {
        values
    } else {
        format!("{values} ({})", c.detail)
    }
}

/// One round over the whole fleet.
#[derive(Debug, Serialize)]
struct Round {
    fleet: String,
    /// When the round started (RFC 3339).
    at: String,
    #[serde(skip)]
    at_secs: u64,
    verified: usize,
    failed: usize,
    seconds: f64,
    concurrency: usize,
    vms: Vec<VmResult>,
}

impl Round {
    fn code(&self) -> u8 {
        if self.failed == 0 {
            EXIT_TRUSTED
        } else {
            EXIT_REJECTED
        }
    }
}

/// What `--watch` accumulates across rounds for the metrics.
#[derive(Debug, Default)]
struct Totals {
    rounds: u64,
    /// Failed verifications per VM since the command started.
    failures: BTreeMap<String, u64>,
}

/// `cosmian_vm verify --fleet FILE [--watch SECS] [--metrics FILE]`.
pub async fn fleet(global: &Global, args: &AgentVerifyArgs) -> Outcome {
    let Some(path) = &args.fleet else {
        return Err(UsageError("--fleet FILE is missing".into()).into());
    };
    if args.snapshot.is_some() {
        return Err(UsageError(
            "--fleet takes each VM's snapshot from the inventory: drop --snapshot".into(),
        )
        .into());
    }
    let fleet = load(path, args)?;
    let Some(first) = fleet.members.first() else {
        return Err(UsageError(format!("{}: no [[vm]] in the inventory", path.display())).into());
    };
    // One context for all: the WebPKI roots, the simulated root and the collateral cache are
    // shared; each VM gets its own target.
    let base = Ctx::for_target(global, first.target.clone())?;
    let interval = match args.watch {
        Some(0) => return Err(UsageError("--watch needs at least 1 second".into()).into()),
        Some(s) if s > MAX_SECS => {
            return Err(UsageError(format!("--watch {s}: at most {MAX_SECS} seconds")).into())
        }
        Some(s) => Some(Duration::from_secs(s)),
        None => None,
    };
    let mut stop = Box::pin(stop_signal()?);
    let mut totals = Totals::default();
    let mut last: HashMap<String, (&'static str, Option<String>)> = HashMap::new();
    let mut code = None;
    loop {
        let started = Instant::now();
        let round = tokio::select! {
            round = run_round(&base, &fleet, args.save_evidence.as_deref()) => round,
            () = &mut stop => break,
        };
        totals.rounds += 1;
        for vm in round.vms.iter().filter(|v| !v.ok()) {
            *totals
                .failures
                .entry(vm.name.clone())
                .or_insert(0) += 1;
        }
        if interval.is_some() {
            log_changes(&round, &mut last);
        }
        print_round(&round, base.json, interval.is_some());
        if let Some(metrics) = &args.metrics {
            let text = metrics_text(&round, &totals);
            if let Err(e) =
                ratls::fsutil::write_atomic(metrics, text.as_bytes(), ratls::fsutil::PUBLIC_MODE)
            {
                let e = format!("--metrics {}: {e}", metrics.display());
                if interval.is_none() {
                    return Err(UsageError(e).into());
                }
                tracing::error!("{e}");
            }
        }
        code = Some(round.code());
        let Some(interval) = interval else { break };
        tokio::select! {
            () = tokio::time::sleep(interval.saturating_sub(started.elapsed())) => {}
            () = &mut stop => break,
        }
    }
    match code {
        Some(code) => Ok(exit(code)),
        // Interrupted before the first round finished: nothing verified.
        None => Ok(exit(EXIT_REJECTED)),
    }
}

/// Resolves at SIGINT or SIGTERM.
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, UsageError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| UsageError(format!("cannot watch for SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| UsageError(format!("cannot watch for SIGINT: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Resolves at Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, UsageError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Read and check the inventory; the command line overrides its defaults.
fn load(path: &Path, args: &AgentVerifyArgs) -> Result<Fleet, UsageError> {
    let bytes = read_bounded(path)?;
    let inventory = parse_inventory(path, &bytes)?;
    let base = path
        .parent()
        .unwrap_or_else(|| Path::new("."));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let at = |what: String| UsageError(format!("{}: {what}", path.display()));
    if inventory.vm.is_empty() {
        return Err(at("no [[vm]] in the inventory".into()));
    }
    if inventory.vm.len() > MAX_VMS {
        return Err(at(format!(
            "{} VMs, more than {MAX_VMS}",
            inventory.vm.len()
        )));
    }
    let mut seen = HashMap::new();
    let mut members = Vec::with_capacity(inventory.vm.len());
    for (i, entry) in inventory.vm.iter().enumerate() {
        check_name(&entry.name).map_err(|e| at(format!("vm #{}: name {e}", i + 1)))?;
        // Case-insensitively: the name is a file name, and some file systems ignore case.
        if let Some(j) = seen.insert(entry.name.to_ascii_lowercase(), i) {
            return Err(at(format!(
                "vm #{} and vm #{} are both named {:?} (ignoring case): names must be unique \
                 (they name the VM's state file and metrics)",
                j + 1,
                i + 1,
                entry.name
            )));
        }
        let target = Target::from_url(&entry.url)
            .map_err(|e| at(format!("vm {:?}: url {}", entry.name, e.0)))?;
        let snapshot = entry
            .snapshot
            .as_ref()
            .or(inventory.defaults.snapshot.as_ref())
            .ok_or_else(|| {
                at(format!(
                    "vm {:?}: no snapshot (give snapshot = \"FILE\" in the entry or in \
                     [defaults])",
                    entry.name
                ))
            })?;
        let applications = parse_applications(&entry.application)
            .map_err(|e| at(format!("vm {:?}: {}", entry.name, e.0)))?;
        members.push(Member {
            name: entry.name.clone(),
            target,
            snapshot: resolve(snapshot),
            applications,
        });
    }
    let concurrency = args
        .concurrency
        .or(inventory.defaults.concurrency)
        .unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(UsageError(format!(
            "concurrency {concurrency}: give 1 to {MAX_CONCURRENCY}"
        )));
    }
    let timeout = args
        .vm_timeout
        .or(inventory.defaults.timeout)
        .unwrap_or(DEFAULT_VM_TIMEOUT_SECS);
    if !(1..=MAX_SECS).contains(&timeout) {
        return Err(UsageError(format!(
            "per-VM timeout {timeout} s: give 1 to {MAX_SECS}"
        )));
    }
    let state_dir = if args.no_state {
        None
    } else {
        Some(match &inventory.defaults.state_dir {
            Some(dir) => resolve(dir),
            None => {
                let mut name = path
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                name.push(".state");
                path.with_file_name(name)
            }
        })
    };
    Ok(Fleet {
        source: path.to_owned(),
        members,
        concurrency,
        vm_timeout: Duration::from_secs(timeout),
        state_dir,
    })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, UsageError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("--fleet {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_INVENTORY_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError(format!("--fleet {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_INVENTORY_LEN {
        return Err(UsageError(format!(
            "--fleet {}: larger than {MAX_INVENTORY_LEN} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// JSON when the file says so (`.json`, or it starts with `{`), TOML otherwise.
fn parse_inventory(path: &Path, bytes: &[u8]) -> Result<Inventory, UsageError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| UsageError(format!("--fleet {}: not UTF-8: {e}", path.display())))?;
    let json = path
        .extension()
        .is_some_and(|e| e == "json")
        || text.trim_start().starts_with('{');
    if json {
        serde_json::from_str(text)
            .map_err(|e| UsageError(format!("--fleet {} (JSON): {e}", path.display())))
    } else {
        toml::from_str(text)
            .map_err(|e| UsageError(format!("--fleet {} (TOML): {e}", path.display())))
    }
}

/// A VM name: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with `.` (it names a file).
fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?}: give 1 to 64 characters"));
    }
    if name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(format!(
            "{name:?}: only A-Z a-z 0-9 . _ - are allowed, not starting with '.'"
        ));
    }
    Ok(())
}

/// Verify every member, at most `concurrency` at once, each within the per-VM timeout.
async fn run_round(base: &Ctx, fleet: &Fleet, save_evidence: Option<&Path>) -> Round {
    let at = UnixTime::now();
    let started = Instant::now();
    // Each snapshot read once per round (many VMs of one image may share it).
    let mut snapshots: HashMap<&Path, Result<Arc<Snapshot>, String>> = HashMap::new();
    for m in &fleet.members {
        snapshots
            .entry(&m.snapshot)
            .or_insert_with(|| {
                load_snapshot(&m.snapshot)
                    .map(Arc::new)
                    .map_err(|e| e.0)
            });
    }
    // Without its state directory no VM's TPM counters could be compared (a rollback would
    // go unseen): every VM fails at tpm.counters instead.
    let state_error = fleet
        .state_dir
        .as_ref()
        .and_then(|dir| {
            std::fs::create_dir_all(dir)
                .err()
                .map(|e| {
                    format!(
                        "the state directory {}: {e} (or pass --no-state)",
                        dir.display()
                    )
                })
        });
    let permits = Arc::new(Semaphore::new(fleet.concurrency));
    let mut tasks = JoinSet::new();
    let mut results: Vec<Option<VmResult>> = fleet
        .members
        .iter()
        .map(|_| None)
        .collect();
    for (index, member) in fleet.members.iter().enumerate() {
        if let Some(e) = &state_error {
            let r = VmResult::new(member, "error", 0.0)
                .failed_at(&ratls::Step::TPM_COUNTERS.to_string(), e.clone());
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(r);
            }
            continue;
        }
        let snapshot = match snapshots.get(member.snapshot.as_path()) {
            Some(Ok(s)) => s.clone(),
            Some(Err(e)) => {
                let r = VmResult::new(member, "error", 0.0).failed_at(STEP_SNAPSHOT, e.clone());
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(r);
                }
                continue;
            }
            None => continue,
        };
        let mut ctx = base.clone();
        ctx.target = member.target.clone();
        let member = member.clone();
        let permits = permits.clone();
        let timeout = fleet.vm_timeout;
        let state = fleet
            .state_dir
            .as_ref()
            .map(|d| d.join(format!("{}.last-verify.json", member.name)));
        let save = save_evidence.map(|d| d.join(&member.name));
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits for a free slot.
            let permit = permits.acquire_owned().await;
            let start = Instant::now();
            // The evidence check (and a collateral fetch) is synchronous: each verification
            // runs on its own thread of the blocking pool, with its own small runtime for its
            // network I/O, so a slow VM never stalls the others or their deadlines. The slot
            // is held until that thread is done, even when the VM is reported timed out.
            let vm = member.clone();
            let work = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| NotVerified::Error(format!("cannot start a runtime: {e}")))?;
                let checks = VmChecks {
                    snapshot_name: vm.snapshot.display().to_string(),
                    snapshot: &snapshot,
                    applications: &vm.applications,
                    state,
                    save_evidence: save.as_deref(),
                };
                runtime.block_on(async {
                    match tokio::time::timeout(timeout, verify_vm(&ctx, &checks)).await {
                        Ok(outcome) => outcome.map(Some),
                        Err(_) => Ok(None),
                    }
                })
            });
            let outcome = tokio::time::timeout(timeout, work).await;
            let seconds = start.elapsed().as_secs_f64();
            let timed_out = || {
                VmResult::new(&member, "timeout", seconds).failed_at(
                    STEP_TIMEOUT,
                    format!("not verified within {} s", timeout.as_secs()),
                )
            };
            let result = match outcome {
                Err(_) | Ok(Ok(Ok(None))) => timed_out(),
                Ok(Err(e)) => VmResult::new(&member, "error", seconds)
                    .failed_at("fleet", format!("the verification thread failed: {e}")),
                Ok(Ok(Ok(Some(report)))) => VmResult::of_report(&member, report, seconds),
                Ok(Ok(Err(NotVerified::Rejected(verdict)))) => {
                    let mut r = VmResult::new(&member, "failed", seconds);
                    r.simulated = verdict.simulated;
                    r.failures = verdict
                        .checks
                        .iter()
                        .filter(|c| !c.ok)
                        .cloned()
                        .collect();
                    match verdict.first_failure() {
                        Some(c) => r.failed_at(&c.step.to_string(), check_detail(c)),
                        None => r.failed_at("tls", "certificate rejected".into()),
                    }
                }
                Ok(Ok(Err(NotVerified::Error(e)))) => {
                    VmResult::new(&member, "unreachable", seconds).failed_at(STEP_NETWORK, e)
                }
            };
            (index, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
            Err(e) => tracing::error!("a fleet verification task ended abnormally: {e}"),
        }
    }
    let vms: Vec<VmResult> = results
        .into_iter()
        .zip(&fleet.members)
        .map(|(r, m)| {
            r.unwrap_or_else(|| {
                VmResult::new(m, "error", 0.0)
                    .failed_at("fleet", "its verification task ended abnormally".into())
            })
        })
        .collect();
    let verified = vms.iter().filter(|v| v.ok()).count();
    Round {
        fleet: fleet.source.display().to_string(),
        at: at.to_string(),
        at_secs: at.as_secs(),
        verified,
        failed: vms.len() - verified,
        seconds: started.elapsed().as_secs_f64(),
        concurrency: fleet.concurrency,
        vms,
    }
}

/// `--watch`: log each VM whose result or failed step changed since the last round.
fn log_changes(round: &Round, last: &mut HashMap<String, (&'static str, Option<String>)>) {
    for vm in &round.vms {
        let now = (vm.result, vm.step.clone());
        match last.insert(vm.name.clone(), now.clone()) {
            Some(before) if before != now => tracing::warn!(
                vm = %vm.name,
                "{}: {} -> {}",
                vm.name,
                describe(&before),
                describe(&now)
            ),
            _ => {}
        }
    }
}

fn describe((result, step): &(&'static str, Option<String>)) -> String {
    match step {
        Some(step) => format!("{result} at {step}"),
        None => (*result).to_owned(),
    }
}

fn print_round(round: &Round, json: bool, watching: bool) {
    if json {
        if watching {
            // One line per round (JSON Lines) so a consumer can read the stream.
            match serde_json::to_string(round) {
                Ok(line) => output::print_line(&line),
                Err(e) => tracing::error!("cannot render JSON: {e}"),
            }
        } else {
            output::print_json(round);
        }
    } else {
        output::print_text(&table(round));
    }
}

/// The human summary: a headline, then one row per VM, failures with their step.
fn table(round: &Round) -> String {
    let simulated = round
        .vms
        .iter()
        .filter(|v| v.simulated)
        .count();
    let mut out = format!(
        "fleet {}: {} of {} VMs verified, {} failed, in {:.2} s (concurrency {})\n",
        round.fleet,
        round.verified,
        round.vms.len(),
        round.failed,
        round.seconds,
        round.concurrency
    );
    if simulated > 0 {
        let _ = writeln!(
            out,
            "  [SIMULATED TEE on {simulated} VMs: not production evidence]"
        );
    }
    let rows: Vec<[String; 5]> = round
        .vms
        .iter()
        .map(|v| {
            // The detail may be a VM's own words (an agent's error): no control character
            // reaches the terminal (a forged row, an escape sequence).
            let full: String = v
                .detail
                .as_deref()
                .unwrap_or("")
                .chars()
                .flat_map(|c| -> Vec<char> {
                    if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            let mut detail: String = full
                .chars()
                .take(TABLE_DETAIL)
                .collect();
            if full.chars().count() > TABLE_DETAIL {
                detail.push('…');
            }
            [
                v.name.clone(),
                if v.ok() {
                    v.result.to_owned()
                } else {
                    v.result.to_uppercase()
                },
                format!("{:.2}", v.seconds),
                v.step
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                detail,
            ]
        })
        .collect();
    let header = ["VM", "RESULT", "SECS", "STEP", "DETAIL"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut l = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(&format!(" {cell}"));
            } else {
                l.push_str(&format!(" {cell:<w$}"));
            }
        }
        format!("{}\n", l.trim_end())
    };
    out.push_str(&line(header));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    let failed: Vec<String> = round
        .vms
        .iter()
        .filter(|v| !v.ok())
        .map(|v| format!("{} ({})", v.name, v.step.as_deref().unwrap_or("-")))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "failed: {}", failed.join(", "));
    }
    out
}

/// Prometheus text format (version 0.0.4): the last round per VM and for the fleet, and the
/// counts since the command started.
fn metrics_text(round: &Round, totals: &Totals) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let vm_labels =
        |v: &VmResult| format!("{{vm=\"{}\",url=\"{}\"}}", escape(&v.name), escape(&v.url));
    family(
        "cosmian_vm_fleet_vm_verified",
        "gauge",
        "1 when the VM's last verification passed, 0 otherwise.",
        round
            .vms
            .iter()
            .map(|v| (vm_labels(v), u8::from(v.ok()).to_string()))
            .collect(),
    );
    family(
        "cosmian_vm_fleet_vm_failed_step",
        "gauge",
        "1 for the step at which the VM's last verification failed (absent when it passed).",
        round
            .vms
            .iter()
            .filter(|v| !v.ok())
            .map(|v| {
                (
                    format!(
                        "{{vm=\"{}\",result=\"{}\",step=\"{}\"}}",
                        escape(&v.name),
                        v.result,
                        escape(v.step.as_deref().unwrap_or("-"))
                    ),
                    "1".to_owned(),
                )
            })
            .collect(),
    );
    family(
        "cosmian_vm_fleet_vm_simulated",
        "gauge",
        "1 when the VM's evidence came from the simulated TEE (never production evidence).",
        round
            .vms
            .iter()
            .map(|v| (vm_labels(v), u8::from(v.simulated).to_string()))
            .collect(),
    );
    family(
        "cosmian_vm_fleet_vm_verify_duration_seconds",
        "gauge",
        "How long the VM's last verification took.",
        round
            .vms
            .iter()
            .map(|v| (vm_labels(v), format!("{:.6}", v.seconds)))
            .collect(),
    );
    family(
        "cosmian_vm_fleet_vm_failures_total",
        "counter",
        "Failed verifications of the VM since the command started.",
        round
            .vms
            .iter()
            .map(|v| {
                (
                    vm_labels(v),
                    totals
                        .failures
                        .get(&v.name)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                )
            })
            .collect(),
    );
    family(
        "cosmian_vm_fleet_vms",
        "gauge",
        "VMs by the result of their last verification.",
        vec![
            ("{result=\"verified\"}".into(), round.verified.to_string()),
            ("{result=\"failed\"}".into(), round.failed.to_string()),
        ],
    );
    family(
        "cosmian_vm_fleet_round_duration_seconds",
        "gauge",
        "How long the last round over the whole fleet took.",
        vec![(String::new(), format!("{:.6}", round.seconds))],
    );
    family(
        "cosmian_vm_fleet_last_round_timestamp_seconds",
        "gauge",
        "When the last round started (Unix time).",
        vec![(String::new(), round.at_secs.to_string())],
    );
    family(
        "cosmian_vm_fleet_rounds_total",
        "counter",
        "Rounds over the fleet since the command started.",
        vec![(String::new(), totals.rounds.to_string())],
    );
    out
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(fleet: &Path) -> AgentVerifyArgs {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "cosmian_vm",
            "verify",
            "--fleet",
            fleet.to_str().unwrap_or_default(),
        ])
        .map_err(|e| e.to_string());
        match cli.map(|c| c.command) {
            Ok(crate::cli::Command::Verify(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn inventory(text: &str, ext: &str) -> (PathBuf, Result<Fleet, UsageError>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cosmian-fleet-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("fleet.{ext}"));
        std::fs::write(&path, text).unwrap();
        let fleet = load(&path, &args(&path));
        (dir, fleet)
    }

    #[test]
    fn a_toml_inventory_resolves_paths_and_defaults() {
        let (dir, fleet) = inventory(
            r#"
[defaults]
snapshot = "all.snapshot"
concurrency = 3
[[vm]]
name = "a"
url = "https://127.0.0.1:5555"
[[vm]]
name = "b-2.x_y"
url = "https://10.0.0.2"
snapshot = "/abs/b.snapshot"
application = ["10.0.0.2:8443"]
"#,
            "toml",
        );
        let fleet = fleet.unwrap();
        assert_eq!(fleet.members.len(), 2);
        assert_eq!(fleet.concurrency, 3);
        assert_eq!(fleet.vm_timeout, Duration::from_secs(60));
        assert_eq!(fleet.members[0].snapshot, dir.join("all.snapshot"));
        assert_eq!(fleet.members[1].snapshot, PathBuf::from("/abs/b.snapshot"));
        assert_eq!(fleet.members[1].target.url(), "https://10.0.0.2:5555");
        assert_eq!(fleet.members[1].applications.len(), 1);
        assert_eq!(fleet.state_dir, Some(dir.join("fleet.toml.state")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_json_inventory_has_the_same_shape() {
        let (dir, fleet) = inventory(
            r#"{"vm": [{"name": "a", "url": "https://h:1", "snapshot": "s"}]}"#,
            "json",
        );
        let fleet = fleet.unwrap();
        assert_eq!(fleet.members[0].snapshot, dir.join("s"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_inventories_are_refused_with_the_reason() {
        for (text, wanted) in [
            ("", "no [[vm]]"),
            ("[[vm]]\nname = \"a\"\nurl = \"https://h\"\n", "no snapshot"),
            (
                "[[vm]]\nname = \"a\"\nurl = \"https://h\"\nsnapshot = \"s\"\n[[vm]]\nname = \
                 \"a\"\nurl = \"https://g\"\nsnapshot = \"s\"\n",
                "both named",
            ),
            (
                "[[vm]]\nname = \"Web\"\nurl = \"https://h\"\nsnapshot = \"s\"\n[[vm]]\nname = \
                 \"web\"\nurl = \"https://g\"\nsnapshot = \"s\"\n",
                "ignoring case",
            ),
            (
                "[[vm]]\nname = \"../x\"\nurl = \"https://h\"\nsnapshot = \"s\"\n",
                "only A-Z",
            ),
            (
                "[[vm]]\nname = \".x\"\nurl = \"https://h\"\nsnapshot = \"s\"\n",
                "not starting with '.'",
            ),
            (
                "[[vm]]\nname = \"a\"\nurl = \"http://h\"\nsnapshot = \"s\"\n",
                "url",
            ),
            (
                "[[vm]]\nname = \"a\"\nurl = \"https://h\"\nsnapshot = \"s\"\nport = 1\n",
                "unknown field",
            ),
            (
                "[defaults]\nconcurrency = 0\n[[vm]]\nname = \"a\"\nurl = \"https://h\"\nsnapshot \
                 = \"s\"\n",
                "concurrency 0",
            ),
            (
                "[defaults]\ntimeout = 0\n[[vm]]\nname = \"a\"\nurl = \"https://h\"\nsnapshot = \
                 \"s\"\n",
                "timeout 0",
            ),
            ("[[vm]\n", "TOML"),
        ] {
            let (dir, fleet) = inventory(text, "toml");
            let e = fleet.unwrap_err().0;
            assert!(e.contains(wanted), "{text:?}: {e}");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn result(name: &str, result: &'static str, step: Option<&str>) -> VmResult {
        VmResult {
            name: name.into(),
            url: "https://127.0.0.1:1".into(),
            snapshot: "s".into(),
            result,
            simulated: true,
            step: step.map(str::to_owned),
            detail: step.map(|_| "expected \"a\", presented b\nc".to_owned()),
            failures: Vec::new(),
            seconds: 0.25,
            tpm_state: None,
        }
    }

    #[test]
    fn metrics_name_each_vm_and_the_failed_step_with_escaped_labels() {
        let round = Round {
            fleet: "f".into(),
            at: "now".into(),
            at_secs: 1,
            verified: 1,
            failed: 1,
            seconds: 1.5,
            concurrency: 2,
            vms: vec![
                result("ok-1", "verified", None),
                result("bad\"\\\n", "failed", Some("ima.files")),
            ],
        };
        let mut totals = Totals {
            rounds: 3,
            ..Totals::default()
        };
        totals
            .failures
            .insert("bad\"\\\n".into(), 2);
        let text = metrics_text(&round, &totals);
        assert!(text
            .contains("cosmian_vm_fleet_vm_verified{vm=\"ok-1\",url=\"https://127.0.0.1:1\"} 1\n"));
        assert!(text.contains(
            "cosmian_vm_fleet_vm_failed_step{vm=\"bad\\\"\\\\\\n\",result=\"failed\",step=\"ima.files\"} 1\n"
        ));
        assert!(text.contains("cosmian_vm_fleet_rounds_total 3\n"));
        assert!(text.contains("cosmian_vm_fleet_vms{result=\"failed\"} 1\n"));
        // Every sample line belongs to the family declared above it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_owned();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
        let table = table(&round);
        assert!(table.contains("1 of 2 VMs verified, 1 failed"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
        assert!(table.contains("failed: bad"), "{table}");
        // A VM's words cannot forge rows: control characters are shown escaped.
        assert!(table.contains("presented b\\nc"), "{table}");
        assert!(!table.contains("b\nc"), "{table}");
    }
}
