//! The agent client: one TLS connection per command, HTTP/1.1 on it (`docs/agent-api.md`).
//!
//! [`AgentSession::open`] runs the handshake (fresh mode: only the TLS signature and, unless
//! `--allow-insecure-tls`, WebPKI are checked during it), then starts the fresh exchange's
//! verifier side ([`Inquiry`]: the agent's key, a new challenge and this session's exporter,
//! computed *on our side of the session*) before any HTTP byte flows.
//! [`AgentSession::evidence`] asks for evidence bound to it; admin calls then use the same
//! connection, so they reach the very endpoint whose evidence was verified.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ratls::tls::fresh::Inquiry;
use ratls::tls::{AttestationPolicy, Mode};
use ratls::{UnixTime, Verdict};

use crate::cli::UsageError;
use crate::net::{self, ConnectError, OwnerIdentity, Target, TlsSettings};

/// How many times a `429`/`503` answer to the evidence request is retried, and the pause.
const EVIDENCE_RETRIES: usize = 10;
const EVIDENCE_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Largest response body read (a snapshot's file list of a big distribution included).
const MAX_RESPONSE: usize = ratls::snapshot::MAX_SNAPSHOT_LEN;

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Response {
    /// The `{"error": "..."}` message of an error response, or the body as text.
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(e) => e.error,
            Err(_) => {
                let text = String::from_utf8_lossy(&self.body);
                let text: String = text.chars().take(200).collect();
                if text.is_empty() {
                    "(empty body)".into()
                } else {
                    text
                }
            }
        }
    }

    /// The body as JSON, or a clear error naming `what`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, UsageError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            UsageError(format!(
                "{what}: the agent's answer is not the expected JSON: {e}"
            ))
        })
    }
}

/// A TLS session with the agent.
#[derive(Debug)]
pub struct AgentSession {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    /// What we ask of the agent on this session and check its evidence against.
    inquiry: Inquiry,
    timeout: Duration,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl AgentSession {
    /// Connect to the agent at `target`, presenting `owner` when given; its evidence will be
    /// verified against `policy`.
    pub async fn open(
        target: &Target,
        tls: &TlsSettings,
        policy: AttestationPolicy,
        owner: Option<std::sync::Arc<OwnerIdentity>>,
    ) -> Result<Self, ConnectError> {
        let verifier = tls.server_verifier(policy.clone(), Mode::Fresh);
        let config = net::client_config(verifier, owner, vec![b"http/1.1".to_vec()])
            .map_err(|e| ConnectError::Other(e.0))?;
        let stream = net::connect(target, config, tls.timeout).await?;
        let inquiry =
            Inquiry::without_alpn(stream.get_ref().1, policy).map_err(ConnectError::other)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| ConnectError::Other(format!("HTTP with {target}: {e}")))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            target: target.clone(),
            sender,
            inquiry,
            timeout: tls.timeout,
            connection,
        })
    }

    /// SHA-256 of the served key (hex).
    pub fn spki_sha256_hex(&self) -> String {
        ratls::hexfmt::hex(ratls::binding::spki_sha256(self.inquiry.peer_spki_der()))
    }

    /// One request on this session.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Response, UsageError> {
        let what = format!("{method} {path}");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.target.authority())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(
                hyper::header::USER_AGENT,
                concat!("cosmian_vm/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| UsageError(format!("{what}: {e}")))?;
        let timeout = self.timeout;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("the connection closed: {e}"))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok::<_, String>(Response { status, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(UsageError(format!("{what} on {}: {e}", self.target))),
            Err(_) => Err(UsageError(format!(
                "{what} on {}: no answer within {timeout:?}",
                self.target
            ))),
        }
    }

    /// A JSON request.
    pub async fn request_json(
        &mut self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Response, UsageError> {
        self.request(
            method,
            path,
            body.to_string().into_bytes(),
            "application/json",
        )
        .await
    }

    /// `POST /api/v1/evidence` with this session's challenge: the CMW bundle bound to this
    /// session, and its verdict under the policy the session was opened with (the exporter
    /// computed on our side).
    pub async fn evidence(&mut self) -> Result<(Verdict, Vec<u8>), UsageError> {
        let body = serde_json::json!({
            "challenge": ratls::hexfmt::hex(self.inquiry.challenge().as_bytes())
        });
        // The agent produces evidence for one request per client address at a time and a few
        // in all (429 / 503 otherwise): another verifier behind the same address, or a busy
        // TEE, means "wait a moment", not "failed". Same session, same challenge.
        let mut response = self
            .request_json(Method::POST, "/api/v1/evidence", &body)
            .await?;
        for _ in 0..EVIDENCE_RETRIES {
            if response.status != StatusCode::TOO_MANY_REQUESTS
                && response.status != StatusCode::SERVICE_UNAVAILABLE
            {
                break;
            }
            tokio::time::sleep(EVIDENCE_RETRY_PAUSE).await;
            response = self
                .request_json(Method::POST, "/api/v1/evidence", &body)
                .await?;
        }
        if response.status != StatusCode::OK {
            return Err(UsageError(format!(
                "POST /api/v1/evidence: the agent answered {}: {}",
                response.status,
                response.error_message()
            )));
        }
        let verdict = self
            .inquiry
            .verify(&response.body, UnixTime::now());
        Ok((verdict, response.body))
    }
}
