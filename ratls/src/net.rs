//! What every TCP server of the workspace does the same way (feature `tokio`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Accept the next connection. An accept error (out of file descriptors and the like) is logged
/// and answered by a pause of `back_off` instead of a spin; the caller gets `None` and loops.
/// Cancel-safe: use it as a `tokio::select!` branch next to the stop signal.
pub async fn accept(listener: &TcpListener, back_off: Duration) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(e) => {
            tracing::warn!(error = %e, "accept: {e}");
            tokio::time::sleep(back_off).await;
            None
        }
    }
}

/// Run a daemon's `serve` future on a multi-threaded runtime, then give blocking tasks up to
/// `grace` to finish (not forever): `SUCCESS`, or `FAILURE` with the error logged. What the
/// agent's and the proxy's `run()` share.
pub fn run_daemon<E: core::fmt::Display>(
    grace: Duration,
    serve: impl core::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve);
    runtime.shutdown_timeout(grace);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
