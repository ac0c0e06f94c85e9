//! The accept loop: connection slots (in all and per IP address, `crate::limits`), TLS
//! handshakes and request headers bounded in time, HTTP/1.1 per connection, and a graceful stop
//! (stop accepting, let in-flight requests finish within a bounded wait).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::{handle, AppState, Conn};
use crate::tls::SharedTls;

/// The largest request head (request line and headers).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refusals are logged at most this often (a flood must not flood the journal too).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The pause after a failed accept (out of file descriptors and the like) instead of a spin.
const ACCEPT_BACK_OFF: Duration = Duration::from_millis(100);

/// How long in-flight requests get to finish after the stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve until `stop` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    stop: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns None once all are gone.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::pin!(stop);
    let limits = state.limiter.limits.clone();
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = ratls::net::accept(&listener, ACCEPT_BACK_OFF) => accepted,
        };
        let Some((tcp, peer)) = accepted else {
            continue;
        };
        let slot = match state.limiter.connection(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                // Closed at once: no handshake, no memory held for it.
                drop(tcp);
                if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
                    last_refusal_log = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        peer = %peer,
                        limit = why.name(),
                        "connection from {peer} refused: limit {} reached \
                         (max_connections {}, max_connections_per_peer {})",
                        why.name(),
                        limits.max_connections,
                        limits.max_connections_per_peer
                    );
                }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let limits = limits.clone();
        let mut stop_rx = stop_rx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let _done = done;
            let _slot = slot;
            let Ok(Ok(tls)) =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| ratls::pki::Cert::from_der(c).ok())
                .map(|c| ratls::digest::sha256(c.spki_der()));
            let shared = SharedTls::new(tls);
            let conn = Arc::new(Conn {
                tls: shared.clone(),
                peer: peer.ip(),
                client,
            });
            let service = service_fn(move |req| handle(state.clone(), conn.clone(), req));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(MAX_HEADER_BYTES)
                .max_headers(64);
            let http = builder.serve_connection(TokioIo::new(shared), service);
            tokio::pin!(http);
            let finished = tokio::select! {
                _ = http.as_mut() => true,
                _ = stop_rx.wait_for(|stopped| *stopped) => false,
            };
            if !finished {
                // Finish the request in flight, then close (serve() bounds the wait).
                http.as_mut().graceful_shutdown();
                let _ = http.await;
            }
        });
    }
    drop(listener);
    drop(done_tx);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections did not finish within {} s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
    }
}
