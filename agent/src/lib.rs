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
    let cfg = config.clone();
    let (machine, served, owner_cfg) = tokio::task::spawn_blocking(move || {
        let a = &cfg.agent;
        crate::fsutil::create_dir(&a.data_dir, 0o700)
            .map_err(|e| StartError(format!("{}: {e}", a.data_dir.display())))?;
        let machine = crate::machine::open_attesters(a)?;
        crate::machine::first_start(a, preinit)?;
        let served =
            crate::machine::served_cert(a, &machine.attester, &crate::machine::hostname())?;
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
        attester: machine.attester.clone(),
        tpm: Some(machine.tpm.clone()),
        tee: machine.tee,
        spki_sha256,
        owner,
        job,
        app,
        limiter: crate::limits::Limiter::new(a.limits.clone()),
    });

    let provider = ratls::tls::provider();
    let tls = ratls::tls::server_config(
        served.resolver.clone(),
        Some(Arc::new(crate::tls::AnyClientCert::new(provider))),
        vec![b"http/1.1".to_vec()],
    )
    .map_err(|e| StartError(format!("TLS configuration: {e}")))?;
    let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
        .await
        .map_err(|e| StartError(format!("listening on {}:{}: {e}", a.host, a.port)))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError(format!("listening socket: {e}")))?;
    eprintln!(
        "cosmian_vm_agent: listening on {local} (key SPKI SHA-256 {})",
        hex::encode(spki_sha256)
    );
    crate::server::serve(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        state.clone(),
        stop_signal(),
    )
    .await;
    state.job.cancel();
    if let Some(app) = &state.app {
        app.shutdown().await;
    }
    drop(served);
    eprintln!("cosmian_vm_agent: stopped");
    Ok(())
}

fn owner_from_cert(path: &PathBuf) -> Result<[u8; 32], StartError> {
    let bytes = std::fs::read(path)
        .map_err(|e| StartError(format!("owner_certificate {}: {e}", path.display())))?;
    let cert = ratls::pki::Cert::from_der_or_pem(&bytes)
        .map_err(|e| StartError(format!("owner_certificate {}: {e}", path.display())))?;
    Ok(ratls::digest::sha256(cert.spki_der()))
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            eprintln!("cosmian_vm_agent: cannot watch SIGTERM ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("cosmian_vm_agent: stop signal received; finishing in-flight requests");
}
