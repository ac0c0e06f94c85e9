//! The two modes: accept, handshake, attest, connect, send the metadata, relay. Plus SIGHUP
//! (re-attest, reload) and SIGTERM (stop accepting, drain).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ratls::attest::Batcher;
use ratls::audit::{AuditLog, Record};
use ratls::binding::Role;
use ratls::ima::ImaAnchor;
use ratls::tls::fresh::live::{self, LiveEnd};
use ratls::tls::fresh::{
    client_exchange, server_exchange, FreshError, FreshOptions, KeyHolder, LiveOptions,
    SelfAttestation, Session,
};
use ratls::tls::{
    client_config, server_config, AttestationPolicy, AttestationRejected, AttestedClientVerifier,
    AttestedServerVerifier, CatchRejection, Mode, RejectionSlot, RotatingCert, ALPN_ATTEST,
};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::machine::{self, FileCert};
use crate::meta::{self, RequestRewriter, Summary, TlsInfo};
use crate::metrics::{self, Metrics, StatusSources};
use crate::opts::{Metadata, Settings, Side};
use crate::relay::{self, End};

/// The pause after a failed accept (EMFILE and friends) instead of a spin.
const ACCEPT_BACK_OFF: Duration = Duration::from_millis(50);

/// Open connections per source address (server mode, `--max-connections-per-ip`).
#[derive(Debug, Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    /// A slot for `ip`, or None when it already has `max` open.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

/// One open connection of a source address; released on drop.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self
            .per_ip
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What every connection task shares.
struct Ctx {
    s: Settings,
    metrics: Arc<Metrics>,
    fresh: FreshOptions,
    tls: Tls,
    /// `--audit-log`: every verdict, on disk before its connection proceeds.
    audit: Option<Arc<AuditLog>>,
    /// `--ear-jwks`: the signer of the applications' attestation results, and their lifetime.
    ear: Option<(ratls::ear::EarSigner, u64)>,
    ids: ConnectionIds,
}

/// Connection identifiers, unique across restarts: the start time and process id, then a
/// counter. The audit log and the application (PROXY v2, `X-Attestation-Connection-Id`) see
/// the same one.
struct ConnectionIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl ConnectionIds {
    fn new() -> Self {
        Self {
            prefix: format!(
                "{:x}-{:x}",
                ratls::UnixTime::now().as_secs(),
                std::process::id()
            ),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        let n = self
            .next
            .fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

impl Ctx {
    fn verifier_name(&self) -> &'static str {
        match self.s.side {
            Side::Server => "cosmian_vm_proxy server",
            Side::Client => "cosmian_vm_proxy client",
        }
    }

    /// The digest of the policy peers are verified against (zeros when there is none).
    fn policy_sha256(&self) -> [u8; 32] {
        self.s
            .policy
            .as_ref()
            .map_or([0; 32], AttestationPolicy::digest)
    }

    /// A record of our verdict on the peer.
    fn verdict_record(&self, verdict: &ratls::Verdict, peer: &str, id: &str) -> Record {
        Record::from_verdict(
            verdict,
            &self.policy_sha256(),
            peer,
            id,
            self.verifier_name(),
        )
    }

    /// The signed attestation result of `verdict` for the application (`--ear-jwks`), bound to
    /// the peer's TLS session `conn` and to the application connection's two ends.
    fn ear<D>(
        &self,
        verdict: &ratls::Verdict,
        conn: &rustls::ConnectionCommon<D>,
        app: SocketAddr,
        proxy: SocketAddr,
        id: &str,
    ) -> Result<Option<String>, Fail> {
        let Some((signer, ttl)) = &self.ear else {
            return Ok(None);
        };
        let tls_exporter_sha256 = conn
            .export_keying_material([0u8; 32], ratls::ear::EXPORTER_LABEL, None)
            .ok()
            .map(|out| hex::encode(ratls::digest::sha256(&out)));
        // A trusted verdict's binding claims name the very key the peer used in this handshake
        // (`binding.spki`): no need to parse its certificate again.
        let peer_spki_sha256 = match &verdict.claims {
            ratls::Claims::Bundle(b) => Some(b.spki_sha256.clone()),
            _ => None,
        };
        let binding = ratls::ear::Binding {
            tls_exporter_sha256,
            peer_spki_sha256,
            connection_id: id.to_owned(),
            app_connection: ratls::ear::AppConnection {
                app: app.to_string(),
                proxy: proxy.to_string(),
            },
        };
        let appraisal = ratls::ear::appraise(verdict, &self.policy_sha256(), binding);
        signer
            .sign(appraisal, ratls::UnixTime::now(), *ttl)
            .map(Some)
            .map_err(|e| Fail::Ear(e.to_string()))
    }

    /// Put `record` in the audit log, if there is one, and wait until it is on disk.
    async fn audit(&self, record: Record) -> Result<(), String> {
        let Some(log) = self.audit.clone() else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || log.append(record)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("audit log: {e}")),
        }
    }
}

enum Tls {
    Server {
        acceptor: TlsAcceptor,
        require_attested: bool,
    },
    Client {
        connector: TlsConnector,
        server_name: ServerName<'static>,
        verifier: Arc<AttestedServerVerifier>,
    },
}

/// Decrements the open-connection gauge when the connection ends, however it ends.
struct Open(Arc<Metrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn run(s: Settings) -> Result<(), String> {
    // Signals are watched from the first moment, before the attesters, the certificate and the
    // listener: a SIGTERM sent while the proxy starts must stop it (a parent that ignores
    // SIGTERM passes the ignore on until a handler is set, and the signal was then lost).
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    if let Some(p) = &s.policy {
        let pinned = crate::opts::pins(p.policy());
        if pinned.is_empty() && s.peer_names.is_empty() {
            tracing::warn!(
                "WARNING: the --policy pins nothing: no SEV-SNP measurement, host data or \
                 key digest, no TDX MRTD or RTMR, no TPM PCR or AK, no Azure VM id, and no {}: \
                 ANY genuine {} on a supported platform passes. Pin at least a measurement.",
                if s.side == Side::Client {
                    "--verify-name"
                } else {
                    "--allow-name"
                },
                if s.side == Side::Client {
                    "server"
                } else {
                    "client"
                }
            );
        }
    }
    let attester = match &s.attester {
        Some(a) if a.tee == ratls::attest::config::TeeChoice::None => {
            tracing::info!(
                "--tee none: no attesters; serving the given certificate and declining \
                 every attestation request"
            );
            None
        }
        Some(a) => {
            let a = a.clone();
            Some(
                tokio::task::spawn_blocking(move || machine::open_attester(&a))
                    .await
                    .map_err(|e| e.to_string())??,
            )
        }
        None => None,
    };
    let mut rotating: Option<RotatingCert> = None;
    let mut file_cert: Option<Arc<FileCert>> = None;
    let mut fresh = FreshOptions::new();
    fresh.timeout = s.handshake_timeout;
    // Every proxy offers live sessions (it answers re-attestation requests); one with
    // --reattest-interval also asks for them.
    fresh.live = Some(match s.reattest {
        Some((interval, answer_timeout)) => LiveOptions {
            answer_timeout,
            ..LiveOptions::every(interval)
        },
        None => LiveOptions::answering(),
    });
    let tls = match s.side {
        Side::Server => {
            let (resolver, keys): (Arc<dyn ResolvesServerCert>, Arc<dyn KeyHolder>) = match &s.cert
            {
                Some((cert, key)) => {
                    let fc = Arc::new(FileCert::load(cert, key)?);
                    tracing::info!(
                        path = %cert.display(),
                        "serving {} (fresh evidence binds its key); SIGHUP reloads it",
                        cert.display()
                    );
                    file_cert = Some(fc.clone());
                    (fc.clone(), fc)
                }
                None => {
                    let attester = attester
                        .clone()
                        .ok_or("an RA-TLS certificate needs this machine's attesters")?;
                    let period = s.rotation;
                    let r = tokio::task::spawn_blocking(move || {
                        machine::rotating(&attester, Role::server(), period)
                    })
                    .await
                    .map_err(|e| e.to_string())??;
                    tracing::info!(
                        "serving an RA-TLS certificate (role server), re-issued every \
                             {} s and on SIGHUP",
                        s.rotation.as_secs()
                    );
                    rotating = Some(r.clone());
                    (Arc::new(r.clone()), Arc::new(r))
                }
            };
            fresh.attest_self =
                attester.map(|attester| attest_self(attester, Role::server(), keys, s.max_batch));
            let client_verifier: Option<Arc<dyn ClientCertVerifier>> = match &s.policy {
                Some(p) => {
                    fresh.verify_peer = Some(p.clone());
                    Some(Arc::new(AttestedClientVerifier::new(
                        p.clone(),
                        Mode::Fresh,
                    )))
                }
                None => None,
            };
            let config = server_config(resolver, client_verifier, s.alpn.clone())
                .map_err(|e| format!("TLS configuration: {e}"))?;
            Tls::Server {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                require_attested: s.policy.is_some(),
            }
        }
        Side::Client => {
            let policy: AttestationPolicy = s
                .policy
                .clone()
                .ok_or("client mode needs --policy")?;
            let resolver: Option<Arc<dyn ResolvesClientCert>> = match attester {
                Some(attester) => {
                    let period = s.rotation;
                    let a = attester.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        machine::rotating(&a, Role::client(), period)
                    })
                    .await
                    .map_err(|e| e.to_string())??;
                    rotating = Some(r.clone());
                    fresh.attest_self = Some(attest_self(
                        attester,
                        Role::client(),
                        Arc::new(r.clone()),
                        s.max_batch,
                    ));
                    Some(Arc::new(r))
                }
                None => None,
            };
            fresh.verify_peer = Some(policy.clone());
            let (mode, alpn) = if s.certificate_mode {
                (Mode::Certificate, Vec::new())
            } else {
                (Mode::Fresh, vec![ALPN_ATTEST.to_vec()])
            };
            let verifier = Arc::new(AttestedServerVerifier::new(policy, mode));
            let config = client_config(verifier.clone(), resolver, alpn)
                .map_err(|e| format!("TLS configuration: {e}"))?;
            let server_name = ServerName::try_from(s.server_name.as_str())
                .map(|n| n.to_owned())
                .map_err(|e| format!("--server-name {}: {e}", s.server_name))?;
            Tls::Client {
                connector: TlsConnector::from(Arc::new(config)),
                server_name,
                verifier,
            }
        }
    };

    let audit = match &s.audit_log {
        Some(dir) => {
            let log = AuditLog::open(dir, ratls::audit::DEFAULT_SEGMENT_BYTES)
                .map_err(|e| format!("--audit-log: {e}"))?;
            tracing::info!(
                dir = %dir.display(),
                "audit log in {}: every verdict on disk before its connection proceeds",
                dir.display()
            );
            Some(Arc::new(log))
        }
        None => None,
    };
    let ear = match &s.ear {
        Some(settings) => Some(ear_signer(settings)?),
        None => None,
    };
    let listener = TcpListener::bind(s.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", s.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| e.to_string())?;
    if let Some(addr) = s.status {
        let status = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--status {addr}: {e}"))?;
        let status_addr = status
            .local_addr()
            .map_err(|e| e.to_string())?;
        tracing::info!(addr = %status_addr, "status on http://{status_addr}/status and /metrics");
        tokio::spawn(metrics::serve(
            status,
            StatusSources {
                metrics: metrics.clone(),
                rotating: rotating.clone(),
            },
        ));
    }
    {
        let metrics = metrics.clone();
        let rotating = rotating.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                on_hangup(&metrics, rotating.as_ref(), file_cert.as_deref()).await;
            }
        });
    }
    tracing::info!(
        side = s.side.name(),
        addr = %bound,
        upstream = %s.target.addr,
        "{} mode listening on {bound}, forwarding to {}",
        s.side.name(),
        s.target.addr
    );
    let drain = s.drain_timeout;
    let per_ip = Arc::new(PerIp::default());
    let ctx = Arc::new(Ctx {
        s,
        metrics: metrics.clone(),
        fresh,
        tls,
        audit,
        ear,
        ids: ConnectionIds::new(),
    });
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = ratls::net::accept(&listener, ACCEPT_BACK_OFF) => {
                let Some((sock, peer)) = accepted else {
                    continue;
                };
                let open = metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                let guard = Open(metrics.clone());
                metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                if open >= ctx.s.max_connections as u64 {
                    metrics.connections_refused_cap.fetch_add(1, Ordering::Relaxed);
                    drop(sock);
                    drop(guard);
                    continue;
                }
                let slot = if ctx.s.side == Side::Server {
                    match per_ip.take(peer.ip(), ctx.s.max_connections_per_ip) {
                        Some(slot) => Some(slot),
                        None => {
                            metrics.connections_refused_per_ip.fetch_add(1, Ordering::Relaxed);
                            drop(sock);
                            drop(guard);
                            continue;
                        }
                    }
                } else {
                    None
                };
                let _ = sock.set_nodelay(true);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let _slot = slot;
                    let id = ctx.ids.next();
                    match &ctx.tls {
                        Tls::Server { .. } => server_conn(&ctx, sock, peer, &id).await,
                        Tls::Client { .. } => client_conn(&ctx, sock, peer, &id).await,
                    }
                });
            }
        }
    }
    drop(listener);
    let open = metrics
        .connections_open
        .load(Ordering::Relaxed);
    tracing::info!(
        "stopping: no new connections; draining {open} (at most {} s)",
        drain.as_secs()
    );
    let deadline = Instant::now() + drain;
    while metrics
        .connections_open
        .load(Ordering::Relaxed)
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = metrics
        .connections_open
        .load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!("drain timeout: closing {left} connection(s)");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn on_hangup(
    metrics: &Metrics,
    rotating: Option<&RotatingCert>,
    file_cert: Option<&FileCert>,
) {
    tracing::info!("SIGHUP: re-attesting and reloading");
    if let Some(r) = rotating {
        r.rotate_now();
    }
    if let Some(fc) = file_cert {
        match fc.reload() {
            Ok(()) => {
                metrics.set_error(None);
                tracing::info!("certificate reloaded");
            }
            Err(e) => {
                metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                metrics.set_error(Some(format!("certificate reload: {e}")));
                tracing::warn!(
                    "WARNING: certificate reload failed, still serving the previous one: {e}"
                );
            }
        }
    }
}

/// Why a connection did not get to the relay.
enum Fail {
    /// Our verifier refused the peer's certificate during the handshake.
    Rejected(Arc<AttestationRejected>),
    Tls(std::io::Error),
    Fresh(FreshError),
    Unattested,
    Timeout,
    TlsTimeout(Duration),
    Name(String),
    Target(String),
    /// The audit log could not take the verdict: the connection does not proceed.
    Audit(String),
    /// The attestation result for the application could not be signed.
    Ear(String),
}

impl Fail {
    /// A failed handshake: our verifier's refusal when `slot` (opened around the handshake)
    /// holds the one behind `e`, a TLS error otherwise.
    fn handshake(e: std::io::Error, slot: &RejectionSlot) -> Self {
        match AttestationRejected::from_io(&e, slot) {
            Some(rejected) => Self::Rejected(rejected),
            None => Self::Tls(e),
        }
    }

    fn record(&self, metrics: &Metrics, peer: &str) {
        match self {
            Self::Rejected(rejected) => {
                metrics.handshake("rejected");
                metrics.failed_step(rejected.step().as_str());
                tracing::warn!(
                    peer,
                    step = %rejected.step(),
                    "rejected {peer}: {rejected}"
                );
            }
            Self::Tls(e) => {
                let no_cert = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::NoCertificatesPresented));
                if no_cert {
                    metrics.handshake("refused_unattested");
                    tracing::warn!(
                        peer,
                        "refused {peer}: --require-attested-client: the client presented no \
                         certificate"
                    );
                } else {
                    metrics.handshake("tls_error");
                    tracing::info!(peer, "TLS handshake with {peer} failed: {e}");
                }
            }
            Self::Fresh(e) => match e.rejected_step() {
                Some(step) => {
                    metrics.handshake("rejected");
                    metrics.failed_step(step);
                    tracing::warn!(peer, step = %step, "rejected {peer}: {e}");
                }
                None => {
                    metrics.handshake("attestation_error");
                    tracing::warn!(peer, "attestation exchange with {peer} failed: {e}");
                }
            },
            Self::Unattested => {
                metrics.handshake("refused_unattested");
                tracing::warn!(
                    peer,
                    "refused {peer}: --require-attested-client: the client did not \
                     negotiate the ALPN cosmian-attest/1"
                );
            }
            Self::Timeout => {
                metrics.handshake("timeout");
                tracing::info!(
                    peer,
                    "{peer}: handshake and attestation did not finish in time"
                );
            }
            Self::TlsTimeout(d) => {
                metrics.handshake("tls_timeout");
                tracing::info!(
                    peer,
                    "closed {peer}: the TLS handshake did not finish within {} s \
                     (--tls-handshake-timeout)",
                    d.as_secs()
                );
            }
            Self::Name(e) => {
                metrics.handshake("rejected");
                metrics.failed_step("tls.name");
                tracing::warn!(peer, step = "tls.name", "rejected {peer}: {e}");
            }
            Self::Target(e) => {
                metrics.handshake("target_unreachable");
                tracing::warn!(peer, "{e}");
            }
            Self::Audit(e) => {
                metrics.handshake("audit_failed");
                tracing::error!(peer, "refused {peer}: its verdict could not be logged: {e}");
            }
            Self::Ear(e) => {
                metrics.handshake("ear_failed");
                tracing::error!(
                    peer,
                    "refused {peer}: no attestation result for the app: {e}"
                );
            }
        }
    }

    /// What the audit log keeps of this refusal: our verdicts and the refusals of peers that
    /// did not attest; not TLS errors, timeouts or a target we could not reach (no attestation
    /// took place), nor the peer's refusal of our own evidence.
    fn audit_record(&self, ctx: &Ctx, peer: &str, id: &str) -> Option<Record> {
        let refusal = |step: Option<&str>, reason: &str| {
            Record::refusal(
                step,
                reason,
                &ctx.policy_sha256(),
                peer,
                id,
                ctx.verifier_name(),
            )
        };
        match self {
            Self::Rejected(rejected) => Some(ctx.verdict_record(&rejected.verdict, peer, id)),
            Self::Fresh(e) => match (e.verdict(), e) {
                (Some(verdict), _) => Some(ctx.verdict_record(verdict, peer, id)),
                (None, FreshError::PeerDeclined(_)) => Some(refusal(None, &e.to_string())),
                _ => None,
            },
            Self::Unattested => Some(refusal(
                None,
                "--require-attested-client: the client did not attest",
            )),
            Self::Name(e) => Some(refusal(Some("tls.name"), e)),
            Self::Tls(_)
            | Self::Timeout
            | Self::TlsTimeout(_)
            | Self::Target(_)
            | Self::Audit(_)
            | Self::Ear(_) => None,
        }
    }
}

/// The EAR signer of `--ear-jwks` (`--ear-key`, or a key generated now), its JWKS written out
/// atomically for the applications.
fn ear_signer(settings: &crate::opts::EarSettings) -> Result<(ratls::ear::EarSigner, u64), String> {
    let id = ratls::ear::VerifierId {
        developer: "cosmian_vm_proxy".into(),
        build: env!("CARGO_PKG_VERSION").into(),
    };
    let signer = match &settings.key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("--ear-key {}: {e}", path.display()))?;
            ratls::ear::EarSigner::from_pem(&pem, id)
                .map_err(|e| format!("--ear-key {}: {e}", path.display()))?
        }
        None => ratls::ear::EarSigner::generate(id).map_err(|e| format!("--ear-jwks: {e}"))?,
    };
    let jwks = serde_json::to_vec_pretty(&signer.jwks()).map_err(|e| e.to_string())?;
    ratls::fsutil::write_atomic(&settings.jwks, &jwks, ratls::fsutil::PUBLIC_MODE)
        .map_err(|e| format!("--ear-jwks {}: {e}", settings.jwks.display()))?;
    tracing::info!(
        kid = signer.kid(),
        "attestation results (EAR) signed with key {}; JWKS in {}",
        signer.kid(),
        settings.jwks.display()
    );
    Ok((signer, settings.ttl.as_secs()))
}

/// Count, log and audit a refused connection.
async fn refuse(ctx: &Ctx, fail: Fail, peer: &str, id: &str) {
    fail.record(&ctx.metrics, peer);
    if let Some(record) = fail.audit_record(ctx, peer, id) {
        if let Err(e) = ctx.audit(record).await {
            tracing::error!(peer, "the refusal of {peer} could not be logged: {e}");
        }
    }
}

async fn connect_target(ctx: &Ctx) -> Result<TcpStream, Fail> {
    let addr = &ctx.s.target.addr;
    let sock = tokio::time::timeout(ctx.s.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Fail::Target(format!("target {addr}: connect timed out")))?
        .map_err(|e| Fail::Target(format!("target {addr}: {e}")))?;
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

async fn server_conn(ctx: &Ctx, tcp: TcpStream, peer: SocketAddr, id: &str) {
    let Tls::Server {
        acceptor,
        require_attested,
    } = &ctx.tls
    else {
        return;
    };
    let local = tcp.local_addr().unwrap_or(ctx.s.listen);
    let handshake = async {
        let tls_timeout = ctx.s.tls_handshake_timeout;
        let (accepted, slot) =
            tokio::time::timeout(tls_timeout, CatchRejection::new(acceptor.accept(tcp)))
                .await
                .map_err(|_| Fail::TlsTimeout(tls_timeout))?;
        let mut tls = accepted.map_err(|e| Fail::handshake(e, &slot))?;
        if !ctx.s.peer_names.is_empty() {
            check_names(
                tls.get_ref().1.peer_certificates(),
                &ctx.s.peer_names,
                "--allow-name",
            )
            .map_err(Fail::Name)?;
        }
        let (alpn, peer_cert) = {
            let conn = tls.get_ref().1;
            (
                conn.alpn_protocol().map(<[u8]>::to_vec),
                conn.peer_certificates()
                    .is_some_and(|c| !c.is_empty()),
            )
        };
        let mut summary = None;
        let mut verdict = None;
        let mut live = None;
        if alpn.as_deref() == Some(ALPN_ATTEST) {
            let start = Instant::now();
            let out = server_exchange(&mut tls, &ctx.fresh).await;
            ctx.metrics
                .attestation_latency(start.elapsed());
            let out = out.map_err(Fail::Fresh)?;
            if let (Some(v), Some(p)) = (&out.peer_verdict, &ctx.fresh.verify_peer) {
                ctx.audit(ctx.verdict_record(v, &peer.to_string(), id))
                    .await
                    .map_err(Fail::Audit)?;
                summary = Some(Summary::new(v, p).with_connection_id(id));
                verdict = Some(v.clone());
            }
            if out.live {
                live = Some(
                    out.peer_verdict
                        .as_ref()
                        .and_then(live::ima_anchor),
                );
            }
            if *require_attested && summary.is_none() {
                return Err(Fail::Unattested);
            }
            ctx.metrics.handshake("attested");
        } else if *require_attested {
            return Err(Fail::Unattested);
        } else {
            ctx.metrics.handshake("plain");
        }
        let target = connect_target(ctx).await?;
        if let (Some(v), Some(summary)) = (&verdict, summary.as_mut()) {
            let ends = target
                .peer_addr()
                .and_then(|app| Ok((app, target.local_addr()?)));
            let (app, proxy) = ends.map_err(|e| Fail::Target(format!("target: {e}")))?;
            summary.ear = ctx.ear(v, tls.get_ref().1, app, proxy, id)?;
        }
        Ok((tls, target, TlsInfo { alpn, peer_cert }, summary, live))
    };
    let (tls, target, info, summary, live) =
        match tokio::time::timeout(ctx.s.handshake_timeout, handshake).await {
            Ok(Ok(x)) => x,
            Ok(Err(f)) => return refuse(ctx, f, &peer.to_string(), id).await,
            Err(_) => return refuse(ctx, Fail::Timeout, &peer.to_string(), id).await,
        };
    match live {
        None => forward(ctx, tls, target, peer, local, &info, summary.as_ref()).await,
        Some(anchor) => {
            let (near, far) = tokio::io::duplex(LIVE_BUFFER);
            let peer_name = peer.to_string();
            live_and_relay(
                live_session(ctx, tls, far, anchor, &peer_name, id),
                forward(ctx, near, target, peer, local, &info, summary.as_ref()),
            )
            .await;
        }
    }
}

/// The in-memory pipe between a live session and the relay, per direction.
const LIVE_BUFFER: usize = 256 * 1024;

/// How long a live session may take to send what the relay left in the pipe once the
/// application's connection is gone.
const LIVE_DRAIN: Duration = Duration::from_secs(5);

/// Run a live session and the relay over it. When the session ends cleanly (both directions
/// ended), the relay finishes; when it fails, the relay and the application's connection are
/// dropped at once; when the relay ends
/// (the application's connection is over, or idle), the session gets [`LIVE_DRAIN`] to pass on
/// what is left and close, and is dropped then: it does not outlive the connection it carries.
async fn live_and_relay(
    session: impl core::future::Future<Output = bool>,
    relay: impl core::future::Future<Output = ()>,
) {
    tokio::pin!(session);
    tokio::pin!(relay);
    tokio::select! {
        clean = &mut session => {
            // A session that failed (a rejected re-attestation, a timeout, a broken peer)
            // takes the application's connection with it at once: the relay is dropped.
            if clean {
                relay.await;
            }
        }
        () = &mut relay => {
            let _ = tokio::time::timeout(LIVE_DRAIN, session).await;
        }
    }
}

/// Run a live session (`--reattest-interval` on either side): re-attestation verdicts are
/// logged and audited as they come. True when it ended cleanly (both directions done).
async fn live_session<S: Session>(
    ctx: &Ctx,
    tls: S,
    far: tokio::io::DuplexStream,
    anchor: Option<ImaAnchor>,
    peer: &str,
    id: &str,
) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<live::Recheck>();
    let session = live::run(tls, far, &ctx.fresh, anchor, Some(tx));
    let audit = async {
        while let Some(check) = rx.recv().await {
            let (from, entries) = check.ima_entries.unwrap_or_default();
            if check.verdict.is_trusted() {
                tracing::info!(
                    peer,
                    connection = id,
                    "re-attestation {} of {peer} (connection {id}): trusted; {entries} IMA \
                     entries from entry {from}, {} bytes of evidence",
                    check.number,
                    check.evidence_len
                );
            } else {
                let failed = check.verdict.first_failure();
                tracing::warn!(
                    peer,
                    connection = id,
                    "re-attestation {} of {peer} (connection {id}) failed at {}: expected {}, \
                     presented {}; closing the connection",
                    check.number,
                    failed.map_or("?", |c| c.step.as_str()),
                    failed.map_or("", |c| c.expected.as_str()),
                    failed.map_or("", |c| c.presented.as_str()),
                );
            }
            let mut record = ctx.verdict_record(&check.verdict, peer, id);
            record.reattestation = Some(check.number);
            if let Err(e) = ctx.audit(record).await {
                tracing::error!(peer, connection = id, "audit log: {e}");
            }
        }
    };
    let (end, ()) = tokio::join!(session, audit);
    let reason = match end {
        LiveEnd::Closed => return true,
        LiveEnd::Rejected(_) => return false,
        LiveEnd::Timeout(after) => format!(
            "reattest.timeout: the peer did not answer a re-attestation request within {after:?}"
        ),
        LiveEnd::Failed(e) => e.to_string(),
        _ => "the live session ended".to_owned(),
    };
    tracing::warn!(
        peer,
        connection = id,
        "live session with {peer} (connection {id}) ended: {reason}"
    );
    let step = reason
        .split(':')
        .next()
        .filter(|s| s.contains('.'));
    let record = Record::refusal(
        step,
        &reason,
        &ctx.policy_sha256(),
        peer,
        id,
        ctx.verifier_name(),
    );
    if let Err(e) = ctx.audit(record).await {
        tracing::error!(peer, connection = id, "audit log: {e}");
    }
    false
}

async fn client_conn(ctx: &Ctx, app: TcpStream, app_peer: SocketAddr, id: &str) {
    let Tls::Client {
        connector,
        server_name,
        verifier,
    } = &ctx.tls
    else {
        return;
    };
    let local = app.local_addr().unwrap_or(ctx.s.listen);
    let target_name = ctx.s.target.addr.clone();
    let handshake = async {
        let tcp = connect_target(ctx).await?;
        let start = Instant::now();
        let (connected, slot) =
            CatchRejection::new(connector.connect(server_name.clone(), tcp)).await;
        if !ctx.s.peer_names.is_empty() {
            if let Ok(tls) = &connected {
                check_names(
                    tls.get_ref().1.peer_certificates(),
                    &ctx.s.peer_names,
                    "--verify-name",
                )
                .map_err(Fail::Name)?;
            }
        }
        if ctx.s.certificate_mode {
            // The evidence was verified (or taken from the verdict cache) during the handshake.
            ctx.metrics
                .attestation_latency(start.elapsed());
            let tls = connected.map_err(|e| Fail::handshake(e, &slot))?;
            let verdict = ratls::tls::peer_verdict(tls.get_ref().1, verifier).ok_or_else(|| {
                Fail::Fresh(FreshError::PeerDeclined("no verdict on the server".into()))
            })?;
            ctx.audit(ctx.verdict_record(&verdict, &target_name, id))
                .await
                .map_err(Fail::Audit)?;
            ctx.metrics.handshake("attested");
            let mut summary = Summary::new(&verdict, verifier.policy()).with_connection_id(id);
            summary.ear = ctx.ear(&verdict, tls.get_ref().1, app_peer, local, id)?;
            return Ok((tls, summary, None));
        }
        let mut tls = connected.map_err(|e| Fail::handshake(e, &slot))?;
        let start = Instant::now();
        let out = client_exchange(&mut tls, &ctx.fresh).await;
        ctx.metrics
            .attestation_latency(start.elapsed());
        let out = out.map_err(Fail::Fresh)?;
        let live = out.live.then(|| {
            out.peer_verdict
                .as_ref()
                .and_then(live::ima_anchor)
        });
        let summary = match (&out.peer_verdict, &ctx.fresh.verify_peer) {
            (Some(v), Some(p)) if v.is_trusted() => {
                ctx.audit(ctx.verdict_record(v, &target_name, id))
                    .await
                    .map_err(Fail::Audit)?;
                let mut summary = Summary::new(v, p).with_connection_id(id);
                summary.ear = ctx.ear(v, tls.get_ref().1, app_peer, local, id)?;
                summary
            }
            _ => {
                return Err(Fail::Fresh(FreshError::PeerDeclined(
                    "no verdict on the server".into(),
                )))
            }
        };
        ctx.metrics.handshake("attested");
        Ok((tls, summary, live))
    };
    let (tls, summary, live) = match tokio::time::timeout(ctx.s.handshake_timeout, handshake).await
    {
        Ok(Ok(x)) => x,
        Ok(Err(f)) => return refuse(ctx, f, &target_name, id).await,
        Err(_) => return refuse(ctx, Fail::Timeout, &target_name, id).await,
    };
    let info = TlsInfo {
        alpn: Some(ALPN_ATTEST.to_vec()),
        peer_cert: true,
    };
    match live {
        None => forward(ctx, app, tls, app_peer, local, &info, Some(&summary)).await,
        Some(anchor) => {
            let (near, far) = tokio::io::duplex(LIVE_BUFFER);
            live_and_relay(
                live_session(ctx, tls, far, anchor, &target_name, id),
                forward(ctx, app, near, app_peer, local, &info, Some(&summary)),
            )
            .await;
        }
    }
}

/// The peer's end-entity certificate must carry one of `names` among its subject alternative
/// names (DNS names case-insensitively, IP addresses by value). The message names the step,
/// what was expected and what the certificate presented.
fn check_names(
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
    names: &[String],
    flag: &str,
) -> Result<(), String> {
    let expected = format!("one of [{}] ({flag})", names.join(", "));
    let fail = |presented: String| {
        format!("name check failed at tls.name: expected a subject alternative name {expected}, presented {presented}")
    };
    let der = certs
        .and_then(|c| c.first())
        .ok_or_else(|| fail("no certificate".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| fail(format!("an unparsable certificate ({e})")))?;
    let mut presented: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => presented.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(raw) => {
                    let ip = match raw.len() {
                        4 => <[u8; 4]>::try_from(*raw)
                            .ok()
                            .map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*raw)
                            .ok()
                            .map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        presented.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let matches = |want: &str| {
        presented.iter().any(
            |have| match (want.parse::<IpAddr>(), have.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => have.eq_ignore_ascii_case(want.trim_end_matches('.')),
                _ => false,
            },
        )
    };
    if names.iter().any(|n| matches(n)) {
        Ok(())
    } else {
        Err(fail(format!("[{}]", presented.join(", "))))
    }
}

/// Send the metadata (to whichever side is the plaintext app) and relay. `accepted` is the
/// connection we accepted; `dialed` the one we opened.
async fn forward<A, B>(
    ctx: &Ctx,
    accepted: A,
    mut dialed: B,
    src: SocketAddr,
    dst: SocketAddr,
    info: &TlsInfo,
    summary: Option<&Summary>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut rewriter = None;
    match ctx.s.metadata {
        Metadata::None => {}
        Metadata::ProxyV2 => {
            let header = meta::proxy_v2(src, dst, info, summary);
            if ctx.s.side == Side::Server {
                if let Err(e) = dialed.write_all(&header).await {
                    tracing::warn!(
                        upstream = %ctx.s.target.addr,
                        "target {}: {e}",
                        ctx.s.target.addr
                    );
                    return;
                }
            } else {
                // Client mode: the app is on the accepted side; the header goes to it first.
                return relay_with_prefix(ctx, accepted, dialed, header).await;
            }
        }
        Metadata::HttpHeaders => {
            if ctx.s.side == Side::Server {
                rewriter = Some(RequestRewriter::new(&Summary::headers(summary)));
            } else {
                // Client mode: the app sends requests, the attested server answers: there is
                // no request of the peer's to annotate. Documented: use proxy-v2 or none.
            }
        }
    }
    if let End::Error(e) =
        relay::relay(accepted, dialed, ctx.s.idle_timeout, rewriter, &ctx.metrics).await
    {
        if ctx.s.metadata == Metadata::HttpHeaders {
            tracing::info!(peer = %src, "connection from {src} closed: {e}");
        }
    }
}

async fn relay_with_prefix<A, B>(ctx: &Ctx, mut accepted: A, dialed: B, prefix: Vec<u8>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if accepted
        .write_all(&prefix)
        .await
        .is_err()
    {
        return;
    }
    let _ = relay::relay(accepted, dialed, ctx.s.idle_timeout, None, &ctx.metrics).await;
}

/// How this side answers the peer's requests for fresh evidence: as `role`, for the keys `keys`
/// holds, through one batcher of at most `max_batch` sessions per report (`--max-batch`).
fn attest_self(
    attester: Arc<ratls::attest::Attester>,
    role: Role,
    keys: Arc<dyn KeyHolder>,
    max_batch: usize,
) -> SelfAttestation {
    SelfAttestation {
        batcher: Arc::new(Batcher::new(attester).with_max_batch(max_batch)),
        role,
        keys,
    }
}
