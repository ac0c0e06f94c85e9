//! `cosmian_vm snapshot`: verify the agent's evidence, run its snapshot job, record the VM's
//! approved state (the user's `--policy` under the values pinned from the evidence).

use hyper::{Method, StatusCode};
use ratls::bundle::{Bundle, ImaEvidence, MAX_BUNDLE_LEN};
use ratls::ima::Log;
use ratls::snapshot::{FileSet, Snapshot};
use ratls::UnixTime;

use super::admin::require_owner;
use super::{bundle_claims, exit, read_policy, Ctx, Outcome};
use crate::agent::AgentSession;
use crate::cli::{Global, SnapshotArgs, UsageError, EXIT_REJECTED, EXIT_TRUSTED};
use crate::{files, output};

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
    let (verdict, cmw) = session.evidence().await?;
    if !verdict.is_trusted() {
        if !ctx.json {
            tracing::error!(
                path = %args.output.display(),
                "the agent's evidence is not trusted; no snapshot written to {}",
                args.output.display()
            );
        }
        ctx.print_rejected(&verdict, "its evidence (genuineness)");
        return Ok(exit(EXIT_REJECTED));
    }
    let bundle = Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN)
        .map_err(|e| UsageError(format!("the verified evidence no longer decodes: {e}")))?;
    let result = run_snapshot_job(&mut session, args, ctx.json || ctx.quiet).await?;
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
    snapshot.policy = base.overlay(&snapshot.policy);
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
    no_progress: bool,
) -> Result<SnapshotResult, UsageError> {
    let mut progress = output::Progress::new(!no_progress);
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
