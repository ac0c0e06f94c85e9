//! In-memory TLS handshakes: a rustls client and server connected without sockets.
//!
//! - [`handshake`] (and its parts [`drive`], [`send`]): `ClientConnection` and
//!   `ServerConnection` exchanging bytes through `write_tls` / `read_tls` /
//!   `process_new_packets` on one thread. Errors are returned, not raised, so tests can assert
//!   which side refused and why; [`Outcome::server_time`] is the time spent in the server's
//!   calls (the benchmarks' server-side cost).
//! - [`duplex`]: `tokio-rustls` streams over a `tokio::io::duplex` pipe, for code that runs on
//!   async streams (the fresh attestation exchange).
//!
//! Only rustls here, not `ratls` (which dev-depends on this crate): the configurations come
//! from the caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};
use tokio::io::DuplexStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What driving a handshake met: each side's first error, and the time spent in the server.
#[derive(Debug, Default)]
pub struct Outcome {
    pub client_error: Option<rustls::Error>,
    pub server_error: Option<rustls::Error>,
    /// Time spent inside the server's calls (reading and processing the client's flights,
    /// writing its own).
    pub server_time: Duration,
}

impl Outcome {
    /// Neither side met an error.
    pub fn is_ok(&self) -> bool {
        self.client_error.is_none() && self.server_error.is_none()
    }
}

/// Both connections after an in-memory handshake, and what it met.
#[derive(Debug)]
pub struct Handshake {
    pub client: ClientConnection,
    pub server: ServerConnection,
    pub outcome: Outcome,
}

/// New connections for `client` (to `server_name`) and `server`, driven to completion
/// ([`drive`]).
///
/// # Panics
/// When a connection cannot be created (a bad name or configuration: the test's own error).
pub fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_name: &str,
) -> Handshake {
    let name = match ServerName::try_from(server_name.to_owned()) {
        Ok(n) => n,
        Err(e) => panic!("server name {server_name:?}: {e}"),
    };
    let mut c = match ClientConnection::new(client, name) {
        Ok(c) => c,
        Err(e) => panic!("client connection: {e}"),
    };
    let mut s = match ServerConnection::new(server) {
        Ok(s) => s,
        Err(e) => panic!("server connection: {e}"),
    };
    let outcome = drive(&mut c, &mut s, &mut Vec::new());
    Handshake {
        client: c,
        server: s,
        outcome,
    }
}

/// Exchange flights between `client` and `server` until neither has anything to send: the
/// handshake and what follows it (tickets, alerts). A side stops reading after its first error;
/// its alert still reaches the peer. `buf` carries the bytes (reused across calls, so a
/// benchmark measures no allocation).
pub fn drive(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    buf: &mut Vec<u8>,
) -> Outcome {
    let mut out = Outcome::default();
    loop {
        write_out(client, buf);
        let to_server = buf.len();
        let t = Instant::now();
        if out.server_error.is_none() {
            out.server_error = read_in(server, buf).err();
        }
        write_out(server, buf);
        out.server_time += t.elapsed();
        let to_client = buf.len();
        if out.client_error.is_none() {
            out.client_error = read_in(client, buf).err();
        }
        if to_server == 0 && to_client == 0 {
            return out;
        }
    }
}

/// Move everything `from` has to send to `to`, processing it there: the number of bytes moved,
/// or `to`'s error.
pub fn send<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
    buf: &mut Vec<u8>,
) -> Result<usize, rustls::Error> {
    write_out(from, buf);
    read_in(to, buf)?;
    Ok(buf.len())
}

/// Everything `from` has to send, into `buf` (cleared first).
fn write_out<D>(from: &mut ConnectionCommon<D>, buf: &mut Vec<u8>) {
    buf.clear();
    while from.wants_write() {
        if let Err(e) = from.write_tls(buf) {
            panic!("write_tls to a Vec: {e}");
        }
    }
}

/// Feed `bytes` to `to`, processing as it goes; stops at the first error.
fn read_in<D>(to: &mut ConnectionCommon<D>, mut bytes: &[u8]) -> Result<(), rustls::Error> {
    while !bytes.is_empty() {
        if let Err(e) = to.read_tls(&mut bytes) {
            panic!("read_tls from a slice: {e}");
        }
        to.process_new_packets()?;
    }
    Ok(())
}

/// A TLS client and server stream over an in-memory `tokio::io::duplex` pipe, handshaken
/// concurrently; each side's result as `tokio-rustls` returns it.
pub async fn duplex(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_name: &str,
) -> (
    std::io::Result<tokio_rustls::client::TlsStream<DuplexStream>>,
    std::io::Result<tokio_rustls::server::TlsStream<DuplexStream>>,
) {
    let name = match ServerName::try_from(server_name.to_owned()) {
        Ok(n) => n,
        Err(e) => panic!("server name {server_name:?}: {e}"),
    };
    let (c, s) = tokio::io::duplex(64 * 1024);
    tokio::join!(
        TlsConnector::from(client).connect(name, c),
        TlsAcceptor::from(server).accept(s)
    )
}
