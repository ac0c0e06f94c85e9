//! `cosmian_vm_agent`: the daemon inside a confidential VM. It serves, over HTTPS on its RA-TLS
//! certificate, the evidence a verifier needs (IMA log, TEE and TPM quotes, fresh evidence bound
//! to the TLS session), runs the snapshot job (file hashes from IMA and a filesystem walk), and
//! lets the enrolled owner push app configuration and secrets into the encrypted storage and
//! (re)start the app. API: `docs/agent-api.md`.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod config;
pub mod fsutil;
pub mod job;
pub mod limits;
pub mod machine;
pub mod owner;
pub mod server;
pub mod tls;
pub mod walk;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::api::AppState;
use crate::app::{Action, AppControl};
use crate::config::{Config, ServiceType};
use crate::job::SnapshotJob;
use crate::machine::StartError;
use crate::owner::Owner;

/// Run the agent with `config` until SIGTERM or SIGINT. `preinit` is false when
/// `COSMIAN_VM_PREINIT=0`.
pub async fn run(config: Config, preinit: bool) -> Result<(), StartError> {
    // The stop signals are watched from the first moment, long before the port is bound: a
    // SIGTERM sent while the agent starts, or as soon as its port accepts connections, must
    // stop it. (A process inherits an ignored SIGTERM from a shell that ignores it, until a
    // handler is set: the signal was then lost and the agent never stopped.)
    let stop = StopSignal::watch();
    let cfg = config.clone();
    let (machine, served, owner_cfg) = tokio::task::spawn_blocking(move || {
        let a = &cfg.agent;
        crate::fsutil::create_dir(&a.data_dir, 0o700)
            .map_err(|e| StartError(format!("{}: {e}", a.data_dir.display())))?;
        let machine = crate::machine::open_attesters(a)?;
        crate::machine::first_start(a, preinit)?;
        let served =
            crate::machine::served_cert(a, &machine.attester, &ratls::attest::config::hostname())?;
        let owner = match &a.owner_certificate {
            Some(path) => Some(owner_from_cert(path)?),
            None => a.owner_spki_sha256,
        };
        Ok::<_, StartError>((machine, served, owner))
    })
    .await
    .map_err(|e| StartError(format!("startup task: {e}")))??;

    let a = &config.agent;
    let owner =
        Owner::load_with(owner_cfg, a.secure_dir(), a.unmeasured_uid).map_err(StartError)?;
    let mut walk = crate::job::WalkOptions::new(a.snapshot_roots.clone());
    walk.excludes
        .extend(a.snapshot_excludes.iter().cloned());
    // The agent's own data (keys, secrets, app configuration) never goes into a snapshot.
    walk.excludes.push(a.data_dir.clone());
    if let Some(app) = &config.app {
        walk.excludes
            .push(app.app_storage.clone());
    }
    let job = SnapshotJob::new(walk, machine.attester.ima.clone());
    let app = config.app.clone().map(AppControl::new);
    if let Some(app) = &app {
        if app.config.service_type == ServiceType::Standalone {
            app.run(Action::Start)
                .await
                .map_err(StartError)?;
        }
    }
    let spki_sha256 = ratls::digest::sha256(&served.spki_der);
    let state = Arc::new(AppState {
        config: config.clone(),
        batcher: Arc::new(ratls::attest::Batcher::new(machine.attester.clone())),
        tpm: Some(machine.tpm.clone()),
        tee: machine.tee,
        spki_sha256,
        owner,
        job,
        app,
        limiter: crate::limits::Limiter::new(a.limits.clone()),
    });

    let tls = ratls::tls::server_config(
        served.resolver.clone(),
        Some(ratls::tls::danger::AnyClientCert::new()),
        vec![b"http/1.1".to_vec()],
    )
    .map_err(|e| StartError(format!("TLS configuration: {e}")))?;
    let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
        .await
        .map_err(|e| StartError(format!("listening on {}:{}: {e}", a.host, a.port)))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError(format!("listening socket: {e}")))?;
    let spki = hex::encode(spki_sha256);
    tracing::info!(addr = %local, spki = %spki, "listening on {local} (key SPKI SHA-256 {spki})");
    crate::server::serve(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        state.clone(),
        stop.recv(),
    )
    .await;
    state.job.cancel();
    if let Some(app) = &state.app {
        app.shutdown().await;
    }
    drop(served);
    tracing::info!("stopped");
    Ok(())
}

fn owner_from_cert(path: &PathBuf) -> Result<[u8; 32], StartError> {
    let bytes = std::fs::read(path)
        .map_err(|e| StartError(format!("owner_certificate {}: {e}", path.display())))?;
    let cert = ratls::pki::Cert::from_der_or_pem(&bytes)
        .map_err(|e| StartError(format!("owner_certificate {}: {e}", path.display())))?;
    Ok(ratls::digest::sha256(cert.spki_der()))
}

/// SIGTERM or SIGINT, watched from [`StopSignal::watch`] on.
struct StopSignal {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Install the handlers now (must run inside the runtime).
    fn watch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(signal = name, "cannot watch {name} ({e})");
                None
            }
        };
        Self {
            term: watch(SignalKind::terminate(), "SIGTERM"),
            int: watch(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// The first of the two.
    async fn recv(mut self) {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = next(&mut self.term) => {}
            () = next(&mut self.int) => {}
        }
        tracing::info!("stop signal received; finishing in-flight requests");
    }
}
