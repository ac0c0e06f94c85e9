//! The HTTPS API, version 1 (`docs/agent-api.md`): routing, limits, and the handlers.
//!
//! Who may call what, and what it costs (`docs/threat-model.md`, section 6):
//!
//! - anyone: `health`, the IMA log (read under the evidence slots), and `evidence`, whose TEE
//!   report and TPM quote bind only what the agent computed itself (its own key, its own AK,
//!   the exporter of the caller's own TLS session, the caller's challenge inside a
//!   domain-separated hash). There is no endpoint that signs caller-chosen bytes: the raw quote
//!   paths answer `410 Gone`.
//! - the owner (client certificate whose SPKI hash is the owner's): the snapshot job, app
//!   configuration, secrets. The owner check runs before any body byte is read, so strangers
//!   never make the agent buffer more than a small JSON body.
//! - enrolment: a client certificate plus the one-time token (`crate::owner`).

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use ratls::attest::tpm::ReconnectingTpm;
use ratls::attest::{AttestError, Batcher, TeeKind};
use ratls::binding::{Role, NONCE_LEN};
use ratls::bundle::MAX_BUNDLE_LEN;
use ratls::tls::fresh::{self, Answer, Decline, FixedKey, FreshError};
use ratls::UnixTime;
use serde::Deserialize;
use serde_json::json;

use crate::app::{Action, AppControl};
use crate::config::Config;
use crate::fsutil::{write_atomic_owned, SECRET_MODE};
use crate::job::{JobView, SnapshotJob, StartError};
use crate::limits::{BufferSlot, Limiter, Refusal};
use crate::owner::{EnrolError, Owner};
use crate::tls::SharedTls;

/// The largest body of the JSON calls anyone may make (`evidence`, `owner`).
pub const SMALL_BODY: usize = 4096;

/// A request body that sends nothing for this long is cut off (`408`).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    /// The machine's evidence sources (`batcher.attester()`): fresh evidence for every caller
    /// that asks while a report and quote are being made comes from the next one.
    pub batcher: Arc<Batcher>,
    /// The TPM behind `attester.tpm`, for its health.
    pub tpm: Option<Arc<ReconnectingTpm>>,
    pub tee: Option<TeeKind>,
    /// SHA-256 of the served key's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    pub owner: Owner,
    pub job: SnapshotJob,
    pub app: Option<AppControl>,
    pub limiter: Limiter,
}

/// One TLS connection: the stream (for the exporter), the client's address and identity.
#[derive(Debug)]
pub struct Conn {
    pub tls: SharedTls,
    pub peer: IpAddr,
    /// SHA-256 of the client certificate's SPKI, when the client presented one.
    pub client: Option<[u8; 32]>,
}

/// A failed request: status and a message that never holds a secret.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn method(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed (allowed: {allow})"),
            )
        }
    }

    fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    fn attest(e: &AttestError) -> Self {
        match e {
            AttestError::Unavailable { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry(2)
            }
            AttestError::RateLimited { retry_after_ms, .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .retry(retry_after_ms.div_ceil(1000))
            }
            _ => Self::internal(e.to_string()),
        }
    }

    fn refused(why: Refusal) -> Self {
        let (status, message) = match why {
            Refusal::Buffer => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is buffering as many request bytes as it allows; retry later",
            ),
            Refusal::Evidence => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is producing as much evidence as it allows at once; retry later",
            ),
            Refusal::PeerEvidence => (
                StatusCode::TOO_MANY_REQUESTS,
                "one evidence request at a time per client address",
            ),
            Refusal::Connections | Refusal::PeerConnections => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections; retry later",
            ),
        };
        Self::new(status, message).retry(1)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = json_response(self.status, &json!({ "error": self.message }));
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

type Reply = Result<Response<Full<Bytes>>, ApiError>;

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    bytes_response(status, "application/json", value.to_string().into_bytes())
}

fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ok(value: &serde_json::Value) -> Reply {
    Ok(json_response(StatusCode::OK, value))
}

/// Serve one request; logs method, path and status (nothing else) at `info`.
pub async fn handle(
    state: Arc<AppState>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = route(&state, &conn, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    let status = response.status().as_u16();
    tracing::info!(method = %method, path = %path, status, "{method} {path} {status}");
    Ok(response)
}

async fn route(state: &AppState, conn: &Conn, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such path"));
    };
    let only = |m: Method, allow: &'static str| {
        if method == m {
            Ok(())
        } else {
            Err(ApiError::method(allow))
        }
    };
    let max_body = state.config.agent.max_body_bytes;
    match rest {
        "health" => {
            only(Method::GET, "GET")?;
            health(state).await
        }
        "ima/binary" => {
            only(Method::GET, "GET")?;
            let log = ima_log(state, conn).await?;
            Ok(bytes_response(
                StatusCode::OK,
                "application/octet-stream",
                log,
            ))
        }
        "ima/ascii" => {
            only(Method::GET, "GET")?;
            let log = ima_log(state, conn).await?;
            let text = ima_ascii(&log)?;
            Ok(bytes_response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                text.into_bytes(),
            ))
        }
        "quote/tee" | "quote/tpm" => Err(ApiError::new(
            StatusCode::GONE,
            "removed: the agent never signs caller-chosen bytes with the TEE or the TPM; ask for \
             evidence bound to your TLS session with POST /api/v1/evidence {\"challenge\": \
             \"<32 random bytes, hex>\"}",
        )),
        "evidence" => {
            only(Method::POST, "POST")?;
            let (body, _held) = read_body(state, req, SMALL_BODY).await?;
            evidence(state, conn, &body).await
        }
        "owner" => {
            only(Method::POST, "POST")?;
            // The certificate first: a stranger without one never gets a byte read.
            let spki = client_certificate(conn, "enrolling needs a TLS client certificate")?;
            let (body, _held) = read_body(state, req, SMALL_BODY).await?;
            enrol(state, spki, &body)
        }
        "snapshot" => {
            admin(state, conn)?;
            match method {
                Method::POST => start_snapshot(state),
                Method::DELETE => {
                    state.job.forget();
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    Ok(r)
                }
                _ => Err(ApiError::method("POST, DELETE")),
            }
        }
        "app/init" => {
            only(Method::POST, "POST")?;
            let app = admin_app(state, conn)?;
            let (body, _held) = read_body(state, req, max_body).await?;
            app_init(app, body).await
        }
        "app/start" | "app/stop" | "app/restart" => {
            only(Method::POST, "POST")?;
            let app = admin_app(state, conn)?;
            let action = rest
                .strip_prefix("app/")
                .and_then(Action::from_name)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such path"))?;
            app.run(action)
                .await
                .map_err(ApiError::internal)?;
            ok(&json!({ "service": app.config.service_name, "action": action.name() }))
        }
        _ => {
            if let Some(id) = rest.strip_prefix("snapshot/") {
                only(Method::GET, "GET")?;
                admin(state, conn)?;
                return snapshot_job(state, id);
            }
            let Some(name) = rest.strip_prefix("secrets/") else {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "no such path"));
            };
            only(Method::PUT, "PUT")?;
            let app = admin_app(state, conn)?;
            if !valid_secret_name(name) {
                return Err(ApiError::bad(
                    "a secret name is 1-64 bytes of [A-Za-z0-9._-], not starting with '.'",
                ));
            }
            let (body, _held) = read_body(state, req, max_body).await?;
            let target = app
                .config
                .app_storage
                .join("secrets")
                .join(name);
            // Secrets go to the unmeasured uid: IMA must not log their digests.
            write_file(&target, body, state.config.agent.unmeasured_uid).await?;
            ok(&json!({ "written": target.display().to_string() }))
        }
    }
}

/// The request body: at most `cap` bytes (413 otherwise, by Content-Length before reading and
/// by the bytes actually streamed), within the global buffered-bytes budget (503 otherwise),
/// arriving within the body timeout and never stalling longer than [`BODY_IDLE_TIMEOUT`] (408).
/// The budget stays reserved until the returned slot is dropped.
async fn read_body(
    state: &AppState,
    req: Request<Incoming>,
    cap: usize,
) -> Result<(Bytes, BufferSlot), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the {cap}-byte limit"),
        )
    };
    let declared = match req.headers().get(CONTENT_LENGTH) {
        Some(len) => {
            let len = len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad("malformed Content-Length"))?;
            let len = usize::try_from(len).map_err(|_| too_large())?;
            if len > cap {
                return Err(too_large());
            }
            Some(len)
        }
        None => None,
    };
    let limiter = &state.limiter;
    let mut slot = limiter
        .buffer(declared.unwrap_or(0))
        .map_err(ApiError::refused)?;
    let mut reserved = declared.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + limiter.limits.body_timeout;
    let mut body = req.into_body();
    let mut out = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(BODY_IDLE_TIMEOUT);
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad(format!("reading the request body: {e}")))
            }
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive in time (at most {} s in all, {} s \
                         without a byte)",
                        limiter.limits.body_timeout.as_secs(),
                        BODY_IDLE_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = out.len().saturating_add(data.len());
        if total > cap {
            return Err(too_large());
        }
        if total > reserved {
            limiter
                .grow(&mut slot, total - reserved)
                .map_err(ApiError::refused)?;
            reserved = total;
        }
        out.extend_from_slice(&data);
    }
    Ok((Bytes::from(out), slot))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task: {e}")))?
}

/// `ok` is false and `status` is `degraded` while the TPM does not answer.
async fn health(state: &AppState) -> Reply {
    let tpm = match state.tpm.clone() {
        Some(tpm) => blocking(move || Ok(tpm.health())).await?,
        None => Err("no TPM configured".to_owned()),
    };
    let healthy = tpm.is_ok();
    ok(&json!({
        "ok": healthy,
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "tee": state.tee.map_or("none", TeeKind::name),
        "spki_sha256": hex::encode(state.spki_sha256),
        "tpm": match &tpm {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        },
        "owner": if state.owner.current().is_some() {
            "enrolled"
        } else {
            "awaiting enrolment"
        },
        "connections": state.limiter.open_connections(),
        "refused": state.limiter.refusals(),
    }))
}

/// The IMA log (megabytes on a long-running machine): read under the same slots as evidence
/// (one per client address, `max_evidence_in_flight` in all), so a crowd of readers cannot
/// make the agent hold hundreds of copies.
async fn ima_log(state: &AppState, conn: &Conn) -> Result<Vec<u8>, ApiError> {
    let slot = state
        .limiter
        .evidence(conn.peer)
        .map_err(ApiError::refused)?;
    let ima = state
        .batcher
        .attester()
        .ima
        .clone()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this machine has no IMA log",
            )
        })?;
    blocking(move || {
        let _slot = slot;
        ima.read_log()
            .map_err(|e| ApiError::attest(&e))
    })
    .await
}

/// `ascii_runtime_measurements` lines, paths escaped (`\\`, `\n`, `\t`, `\r`, `\xNN`).
fn ima_ascii(log: &[u8]) -> Result<String, ApiError> {
    use std::fmt::Write;
    let log = ratls::ima::Log::parse(log)
        .map_err(|e| ApiError::internal(format!("the IMA log does not parse: {e}")))?;
    let mut out = String::new();
    for e in log.entries() {
        let algo = if e.has_algo_prefix() {
            format!("{}:", e.file_digest_algo())
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "{:2} {} {} {algo}{} {}",
            e.pcr(),
            hex::encode(e.template_hash()),
            e.template_name(),
            hex::encode(e.file_digest()),
            ratls::ima::Escaped(e.path()),
        );
        if e.template_name() == "ima-sig" {
            let _ = write!(out, " {}", hex::encode(e.signature()));
        }
        out.push('\n');
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceBody {
    challenge: String,
}

/// Evidence bound to this connection: the agent's own key, its own AK, the exporter of the
/// caller's TLS session for the caller's challenge ([`fresh::Answer`], as in the fresh exchange;
/// at most [`MAX_BUNDLE_LEN`] bytes), batched with every other caller's that asks meanwhile
/// (one TEE report and one TPM quote per batch). One request per client address at a time,
/// [`max_evidence_in_flight`](crate::config::Limits::max_evidence_in_flight) in all.
async fn evidence(state: &AppState, conn: &Conn, body: &[u8]) -> Reply {
    let req: EvidenceBody = parse_json(body)?;
    // The agent binds its own key: an HTTP caller names no key, so none but ours is asked about.
    let ours = FixedKey {
        spki_sha256: state.spki_sha256,
    };
    let request = fresh::EvidenceRequest {
        challenge: parse_challenge(&req.challenge)?,
        spki_sha256: ours.spki_sha256,
    };
    let answer = Answer::new(request, Role::agent(), &ours).map_err(|reason| match reason {
        Decline::WeakChallenge { .. } => ApiError::bad(format!(
            "challenge: {} does not look random (all zero, or too few distinct bytes): a \
             verifier must send 32 bytes from a secure random generator, or the evidence proves \
             no freshness",
            req.challenge
        )),
        other => ApiError::internal(other.to_string()),
    })?;
    let slot = state
        .limiter
        .evidence(conn.peer)
        .map_err(ApiError::refused)?;
    let bound = {
        // Held only for this synchronous call.
        let guard = conn.tls.lock();
        let common: &rustls::ConnectionCommon<rustls::server::ServerConnectionData> =
            guard.get_ref().1;
        answer
            .bind(common, UnixTime::now())
            .map_err(|e| match e {
                FreshError::Exporter(_) => ApiError::internal(e.to_string()),
                _ => ApiError::bad(e.to_string()),
            })?
    };
    let batcher = state.batcher.clone();
    let cmw = blocking(move || {
        let _slot = slot;
        bound
            .produce(&batcher, MAX_BUNDLE_LEN)
            .map_err(|e| ApiError::attest(&e))
    })
    .await?;
    Ok(bytes_response(StatusCode::OK, "application/cbor", cmw))
}

/// 32 bytes of hex (whether they look random is [`fresh::Answer`]'s check).
fn parse_challenge(text: &str) -> Result<[u8; NONCE_LEN], ApiError> {
    let bytes = hex::decode(text).map_err(|e| ApiError::bad(format!("challenge: not hex: {e}")))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| {
            ApiError::bad(format!(
                "challenge: {} bytes, expected {NONCE_LEN}",
                bytes.len()
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    token: Option<String>,
}

fn enrol(state: &AppState, spki: [u8; 32], body: &[u8]) -> Reply {
    let req: EnrolRequest = if body.is_empty() {
        EnrolRequest { token: None }
    } else {
        parse_json(body)?
    };
    match state
        .owner
        .enrol(spki, req.token.as_deref())
    {
        Ok(()) => {
            let spki = hex::encode(spki);
            tracing::info!(spki = %spki, "owner enrolled: SPKI SHA-256 {spki}");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "owner_spki_sha256": spki }),
            ))
        }
        Err(EnrolError::AlreadyEnrolled) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "an owner is already enrolled",
        )),
        Err(EnrolError::MissingToken) => Err(ApiError::bad(
            "enrolling needs {\"token\": \"<the one-time token the agent printed at start>\"}",
        )),
        Err(EnrolError::BadToken) => {
            let spki = hex::encode(spki);
            tracing::warn!(
                client_spki = %spki,
                "WARNING: enrolment with a wrong token (client SPKI SHA-256 {spki})"
            );
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong enrolment token",
            ))
        }
        Err(EnrolError::TooManyFailures { retry_after }) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong enrolment tokens lately",
        )
        .retry(retry_after.as_secs())),
        Err(EnrolError::Internal(e)) => Err(ApiError::internal(e)),
    }
}

fn client_certificate(conn: &Conn, why: &'static str) -> Result<[u8; 32], ApiError> {
    conn.client
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, why))
}

/// 401 without a client certificate, 403 when it is not the owner's.
fn admin(state: &AppState, conn: &Conn) -> Result<(), ApiError> {
    let client = client_certificate(conn, "this call needs the owner's TLS client certificate")?;
    match state.owner.current() {
        Some(owner) if owner == client => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the client certificate is not the owner's",
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no owner is enrolled (cosmian_vm owner enroll --token TOKEN first)",
        )),
    }
}

fn admin_app<'a>(state: &'a AppState, conn: &Conn) -> Result<&'a AppControl, ApiError> {
    admin(state, conn)?;
    state
        .app
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "agent.toml has no [app] section"))
}

fn start_snapshot(state: &AppState) -> Reply {
    match state.job.start() {
        Ok((_, progress)) => Ok(json_response(StatusCode::ACCEPTED, &progress)),
        Err(StartError::Busy(progress)) => Ok(json_response(
            StatusCode::CONFLICT,
            &json!({
                "error": "a snapshot job is running (DELETE /api/v1/snapshot cancels it)",
                "running": progress,
            }),
        )),
        Err(StartError::Internal(e)) => Err(ApiError::internal(e)),
    }
}

fn snapshot_job(state: &AppState, id: &str) -> Reply {
    match state.job.take(id) {
        JobView::Running(progress) => Ok(json_response(StatusCode::ACCEPTED, &progress)),
        JobView::Done(body) => Ok(bytes_response(StatusCode::OK, "application/json", body)),
        JobView::Failed(e) => Err(ApiError::internal(e)),
        JobView::None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such snapshot job (results are served once, to the job's id, within 10 minutes)",
        )),
    }
}

/// Write a request body to `target` (mode 0600), owned by `owner` when given.
async fn write_file(target: &Path, body: Bytes, owner: Option<u32>) -> Result<(), ApiError> {
    let path = target.to_path_buf();
    blocking(move || {
        write_atomic_owned(&path, &body, SECRET_MODE, owner)
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))
    })
    .await
}

async fn app_init(app: &AppControl, body: Bytes) -> Reply {
    let target = app.config.app_storage.join("app.conf");
    // The configuration stays root's: IMA measures it when the app reads it, which is how
    // `verify` sees a changed configuration.
    write_file(&target, body, None).await?;
    app.run(Action::Restart)
        .await
        .map_err(|e| {
            ApiError::internal(format!(
                "wrote {}, but restarting the service failed: {e}",
                target.display()
            ))
        })?;
    ok(&json!({ "written": target.display().to_string(), "restarted": true }))
}

/// 1-64 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
