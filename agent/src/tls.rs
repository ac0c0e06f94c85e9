//! The agent's TLS plumbing: the resolver for a configured (non-RA-TLS) certificate, and a
//! shareable TLS stream so handlers can compute this session's exporter. (The client-certificate
//! verifier, which offers client authentication without requiring it, is
//! `ratls::tls::danger::AnyClientCert`.)

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Serves one fixed certificate chain and key (a configured certificate, e.g. Let's Encrypt).
#[derive(Debug)]
pub struct StaticCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for StaticCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server TLS stream shared between hyper (which reads and writes it) and the handlers (which
/// lock it briefly for the exporter). Each poll locks it; nobody holds the lock across an await.
#[derive(Debug, Clone)]
pub struct SharedTls(pub Arc<Mutex<TlsStream<TcpStream>>>);

impl SharedTls {
    pub fn new(stream: TlsStream<TcpStream>) -> Self {
        Self(Arc::new(Mutex::new(stream)))
    }

    /// The stream, locked. Hold the guard only for synchronous work.
    pub fn lock(&self) -> MutexGuard<'_, TlsStream<TcpStream>> {
        // Every holder either polls the stream or reads connection state: a poisoned lock still
        // holds a usable stream (at worst the connection fails).
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl AsyncRead for SharedTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut guard = self.lock();
        Pin::new(&mut *guard).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut guard = self.lock();
        Pin::new(&mut *guard).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut guard = self.lock();
        Pin::new(&mut *guard).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut guard = self.lock();
        Pin::new(&mut *guard).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut guard = self.lock();
        Pin::new(&mut *guard).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }
}
