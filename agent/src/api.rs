//! The HTTPS API, version 1 (`docs/agent-api.md`): routing, limits, and the handlers.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use ratls::attest::{AttestError, Attester, TeeKind};
use ratls::binding::{BindingClaims, Role, NONCE_LEN};
use ratls::digest::HashAlg;
use ratls::UnixTime;
use serde::Deserialize;
use serde_json::json;

use crate::app::{Action, AppControl};
use crate::config::Config;
use crate::fsutil::{write_atomic, SECRET_MODE};
use crate::job::{JobView, SnapshotJob};
use crate::tls::SharedTls;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub attester: Arc<Attester>,
    pub tee: Option<TeeKind>,
    /// SHA-256 of the served key's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    pub owner: Owner,
    pub job: SnapshotJob,
    pub app: Option<AppControl>,
}

/// One TLS connection: the stream (for the exporter) and the client's identity.
#[derive(Debug)]
pub struct Conn {
    pub tls: SharedTls,
    /// SHA-256 of the client certificate's SPKI, when the client presented one.
    pub client: Option<[u8; 32]>,
}

/// The owner: configured in agent.toml (wins), or enrolled once and kept in `owner.json`.
#[derive(Debug)]
pub struct Owner {
    configured: Option<[u8; 32]>,
    enrolled: Mutex<Option<[u8; 32]>>,
    path: PathBuf,
}

/// `owner.json`.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerFile {
    owner_spki_sha256: String,
}

impl Owner {
    /// The configured owner (if any), and the enrolled one from `path` (if the file exists).
    pub fn load(configured: Option<[u8; 32]>, path: PathBuf) -> Result<Self, String> {
        let enrolled = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: OwnerFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Some(hex32(&file.owner_spki_sha256).ok_or_else(|| {
                    format!(
                        "{}: owner_spki_sha256 is not 32 bytes of hex",
                        path.display()
                    )
                })?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Self {
            configured,
            enrolled: Mutex::new(enrolled),
            path,
        })
    }

    pub fn current(&self) -> Option<[u8; 32]> {
        self.configured.or(*self
            .enrolled
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Enrol `spki` unless an owner exists (`Ok(false)`).
    fn enrol(&self, spki: [u8; 32]) -> Result<bool, String> {
        let mut enrolled = self
            .enrolled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.configured.is_some() || enrolled.is_some() {
            return Ok(false);
        }
        let body = serde_json::to_vec_pretty(&OwnerFile {
            owner_spki_sha256: hex::encode(spki),
        })
        .map_err(|e| e.to_string())?;
        write_atomic(&self.path, &body, SECRET_MODE)
            .map_err(|e| format!("cannot record the owner: {e}"))?;
        *enrolled = Some(spki);
        Ok(true)
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// A failed request: status and a message that never holds a secret.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
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
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method not allowed (allowed: {allow})"),
            allow: Some(allow),
        }
    }

    fn attest(e: &AttestError) -> Self {
        let status = match e {
            AttestError::Unavailable { .. } | AttestError::RateLimited { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = json_response(self.status, &json!({ "error": self.message }));
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
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

/// Serve one request; logs method, path and status (nothing else) to stderr.
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
    eprintln!("{method} {path} {}", response.status().as_u16());
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
    match rest {
        "health" => {
            only(Method::GET, "GET")?;
            health(state)
        }
        "ima/binary" => {
            only(Method::GET, "GET")?;
            let log = ima_log(state).await?;
            Ok(bytes_response(
                StatusCode::OK,
                "application/octet-stream",
                log,
            ))
        }
        "ima/ascii" => {
            only(Method::GET, "GET")?;
            let log = ima_log(state).await?;
            let text = ima_ascii(&log)?;
            Ok(bytes_response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                text.into_bytes(),
            ))
        }
        "quote/tee" => {
            only(Method::POST, "POST")?;
            let body = read_body(req, state.config.agent.max_body_bytes).await?;
            quote_tee(state, &body).await
        }
        "quote/tpm" => {
            only(Method::POST, "POST")?;
            let body = read_body(req, state.config.agent.max_body_bytes).await?;
            quote_tpm(state, &body).await
        }
        "evidence" => {
            only(Method::POST, "POST")?;
            let body = read_body(req, state.config.agent.max_body_bytes).await?;
            evidence(state, conn, &body).await
        }
        "owner" => {
            only(Method::POST, "POST")?;
            enrol(state, conn)
        }
        "snapshot" => snapshot(state, conn, &method),
        "app/init" => {
            only(Method::POST, "POST")?;
            let app = admin_app(state, conn)?;
            let body = read_body(req, state.config.agent.max_body_bytes).await?;
            app_init(app, &body).await
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
        _ => match rest.strip_prefix("secrets/") {
            Some(name) => {
                only(Method::PUT, "PUT")?;
                let app = admin_app(state, conn)?;
                if !valid_secret_name(name) {
                    return Err(ApiError::bad(
                        "a secret name is 1-64 bytes of [A-Za-z0-9._-], not starting with '.'",
                    ));
                }
                let body = read_body(req, state.config.agent.max_body_bytes).await?;
                let target = app
                    .config
                    .app_storage
                    .join("secrets")
                    .join(name);
                write_file(&target, body).await?;
                ok(&json!({ "written": target.display().to_string() }))
            }
            None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such path")),
        },
    }
}

/// The request body, at most `limit` bytes (413 otherwise: by Content-Length before reading,
/// and by the bytes actually streamed).
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the {limit}-byte limit"),
        )
    };
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad("malformed Content-Length"))?;
        if len > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::bad(format!("reading the request body: {e}"))),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))
}

fn parse_hex(field: &str, value: &str, min: usize, max: usize) -> Result<Vec<u8>, ApiError> {
    let bytes = hex::decode(value).map_err(|e| ApiError::bad(format!("{field}: not hex: {e}")))?;
    if bytes.len() < min || bytes.len() > max {
        return Err(ApiError::bad(format!(
            "{field}: {} bytes, expected {}",
            bytes.len(),
            if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            }
        )));
    }
    Ok(bytes)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task: {e}")))?
}

fn health(state: &AppState) -> Reply {
    ok(&json!({
        "ok": true,
        "version": env!("CARGO_PKG_VERSION"),
        "tee": state.tee.map_or("none", TeeKind::name),
        "spki_sha256": hex::encode(state.spki_sha256),
    }))
}

async fn ima_log(state: &AppState) -> Result<Vec<u8>, ApiError> {
    let ima = state
        .attester
        .ima
        .clone()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this machine has no IMA log",
            )
        })?;
    blocking(move || {
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
struct NonceRequest {
    nonce: String,
}

async fn quote_tee(state: &AppState, body: &[u8]) -> Reply {
    let req: NonceRequest = parse_json(body)?;
    let nonce = parse_hex("nonce", &req.nonce, 1, 64)?;
    let tee = state
        .attester
        .tee
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this machine has no TEE"))?;
    let mut report_data = [0u8; 64];
    for (d, s) in report_data.iter_mut().zip(&nonce) {
        *d = *s;
    }
    let evidence = blocking(move || {
        tee.attest(&report_data)
            .map_err(|e| ApiError::attest(&e))
    })
    .await?;
    let mut cbor = Vec::new();
    ciborium::into_writer(&evidence, &mut cbor)
        .map_err(|e| ApiError::internal(format!("encoding the TEE evidence: {e}")))?;
    ok(&json!({ "kind": evidence.kind().name(), "evidence": hex::encode(cbor) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TpmQuoteRequest {
    nonce: String,
    pcrs: Option<Vec<u8>>,
    banks: Option<Vec<String>>,
}

async fn quote_tpm(state: &AppState, body: &[u8]) -> Reply {
    let req: TpmQuoteRequest = parse_json(body)?;
    let nonce = parse_hex("nonce", &req.nonce, 1, 32)?;
    let pcrs = req
        .pcrs
        .unwrap_or_else(|| ratls::bundle::DEFAULT_PCRS.to_vec());
    if pcrs.is_empty() || pcrs.iter().any(|&p| p > 23) {
        return Err(ApiError::bad("pcrs: 1 to 24 indices in 0..=23"));
    }
    let mut sorted = pcrs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != pcrs.len() {
        return Err(ApiError::bad("pcrs: an index is repeated"));
    }
    let banks = req
        .banks
        .unwrap_or_else(|| vec!["sha256".to_owned()])
        .iter()
        .map(|b| {
            b.parse::<HashAlg>()
                .map_err(|_| ApiError::bad(format!("banks: unknown bank {b:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if banks.is_empty() {
        return Err(ApiError::bad("banks: at least one bank"));
    }
    let tpm = state
        .attester
        .tpm
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this machine has no TPM"))?;
    let q = blocking(move || {
        tpm.quote(&nonce, &banks, &pcrs)
            .map_err(|e| ApiError::attest(&e))
    })
    .await?;
    let pcrs: serde_json::Map<String, serde_json::Value> = q
        .pcrs
        .iter()
        .map(|(bank, values)| {
            let values: serde_json::Map<String, serde_json::Value> = values
                .iter()
                .map(|(i, v)| (i.to_string(), json!(hex::encode(v))))
                .collect();
            (bank.name().to_owned(), serde_json::Value::Object(values))
        })
        .collect();
    ok(&json!({
        "attest": hex::encode(&q.attest),
        "signature": hex::encode(&q.signature),
        "ak_public": hex::encode(&q.ak_public),
        "pcrs": pcrs,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceRequest {
    challenge: String,
}

async fn evidence(state: &AppState, conn: &Conn, body: &[u8]) -> Reply {
    let req: EvidenceRequest = parse_json(body)?;
    let challenge: [u8; NONCE_LEN] = parse_hex("challenge", &req.challenge, NONCE_LEN, NONCE_LEN)?
        .try_into()
        .map_err(|_| ApiError::bad("challenge: 32 bytes"))?;
    let role = Role::agent();
    let exporter = {
        // Held only for this synchronous call.
        let guard = conn.tls.lock();
        let common: &rustls::ConnectionCommon<rustls::server::ServerConnectionData> =
            guard.get_ref().1;
        ratls::tls::fresh::exporter(common, &role, &challenge)
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    let binding = BindingClaims {
        role,
        spki_sha256: state.spki_sha256,
        ak_sha256: None,
        issued_at: UnixTime::now().as_secs(),
        challenge: Some(challenge),
        exporter: Some(exporter),
    };
    let attester = state.attester.clone();
    let cmw = blocking(move || {
        attester
            .produce(binding, true)
            .map(|b| b.to_cmw())
            .map_err(|e| ApiError::attest(&e))
    })
    .await?;
    Ok(bytes_response(StatusCode::OK, "application/cbor", cmw))
}

fn enrol(state: &AppState, conn: &Conn) -> Reply {
    let spki = conn.client.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "enrolling needs a TLS client certificate",
        )
    })?;
    if state
        .owner
        .enrol(spki)
        .map_err(ApiError::internal)?
    {
        eprintln!(
            "cosmian_vm_agent: owner enrolled: SPKI SHA-256 {}",
            hex::encode(spki)
        );
        Ok(json_response(
            StatusCode::CREATED,
            &json!({ "owner_spki_sha256": hex::encode(spki) }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "an owner is already enrolled",
        ))
    }
}

/// 401 without a client certificate, 403 when it is not the owner's.
fn admin(state: &AppState, conn: &Conn) -> Result<(), ApiError> {
    let client = conn.client.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the owner's TLS client certificate",
        )
    })?;
    match state.owner.current() {
        Some(owner) if owner == client => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the client certificate is not the owner's",
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no owner is enrolled (POST /api/v1/owner first)",
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

fn snapshot(state: &AppState, conn: &Conn, method: &Method) -> Reply {
    let view = match *method {
        Method::GET => state.job.view(),
        Method::POST => state.job.start(),
        Method::DELETE => {
            admin(state, conn)?;
            state.job.forget();
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            return Ok(r);
        }
        _ => return Err(ApiError::method("GET, POST, DELETE")),
    };
    match view {
        JobView::Running(progress) => Ok(json_response(StatusCode::ACCEPTED, &progress)),
        JobView::Done(body) => Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            body.to_vec(),
        )),
        JobView::Failed(e) => Err(ApiError::internal(e)),
        JobView::None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no snapshot job (POST /api/v1/snapshot starts one)",
        )),
    }
}

async fn write_file(target: &Path, body: Bytes) -> Result<(), ApiError> {
    let path = target.to_path_buf();
    blocking(move || {
        write_atomic(&path, &body, SECRET_MODE)
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))
    })
    .await
}

async fn app_init(app: &AppControl, body: &[u8]) -> Reply {
    let target = app.config.app_storage.join("app.conf");
    write_file(&target, Bytes::copy_from_slice(body)).await?;
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
