//! Admin calls (`app`, `secret put`) on a session whose evidence matched the snapshot, and the
//! owner identity they are sent with.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use ratls::Policy;

use super::session::{check_session, snapshot_policy, SessionCheck};
use super::{exit, load_snapshot, Ctx, Outcome, Stop};
use crate::agent::AgentSession;
use crate::cli::{
    AppCommand, Global, SecretPutArgs, SessionArgs, UsageError, EXIT_REJECTED, EXIT_TRUSTED,
};
use crate::net::OwnerIdentity;
use crate::{evidence, files, output};

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
pub(super) async fn admin_session(
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
        tracing::warn!(
            peer = %ctx.target,
            "--skip-verification: `{what}` goes to {} WITHOUT checking what runs there; \
             anyone holding that TLS endpoint receives it",
            ctx.target
        );
        return Ok((session, None));
    }
    let check = match &snapshot {
        Some(s) => check_session(&mut session, s).await?,
        None => {
            // Genuineness only (owner enrolment before any snapshot): chain, signatures,
            // binding to this session.
            let (evidence, cmw) = session.evidence().await?;
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
        tracing::info!(
            url = %ctx.target.url(),
            "verified {} against {against}{sim}",
            ctx.target.url()
        );
    }
    Ok((session, Some(check)))
}

pub(super) fn require_owner(global: &Global, what: &str) -> Result<Arc<OwnerIdentity>, UsageError> {
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

pub(super) fn report_admin(
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
}
