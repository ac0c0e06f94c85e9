//! `ratls generate|verify|fetch`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ratls::attest::config::{tcti_of, AttesterConfig, ConfigError, TeeChoice};
use ratls::attest::Attester;
use ratls::binding::Role;
use ratls::tls::cert::{issue, CertParams};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{UnixTime, Verdict};

use crate::cli::{FetchArgs, GenerateArgs, VerifyArgs};
use crate::{Failure, EXIT_FAILED, EXIT_OK};
use ratls::fsutil::{create_dir, write_all_atomic, write_atomic, PUBLIC_MODE, SECRET_MODE};
use ratls::tls::danger::RecordAnyServerCert;

/// `ratls generate`: an RA-TLS certificate and key from this machine's attesters.
pub fn generate(args: &GenerateArgs) -> Result<u8, Failure> {
    let role = Role::new(&args.role).map_err(|e| Failure::usage(format!("--role: {e}")))?;
    if args.days == 0 || args.days > 3650 {
        return Err(Failure::usage("--days must be between 1 and 3650"));
    }
    let cn = args
        .cn
        .clone()
        .or_else(|| args.sans.first().cloned())
        .unwrap_or_default();
    let attester = open_attester(args)?;
    let mut params = CertParams::new(role, cn, args.sans.clone());
    params.validity = Duration::from_secs(args.days.saturating_mul(86_400));
    let issued = issue(&attester, &params, UnixTime::now())
        .map_err(|e| Failure::failed(format!("issuing the RA-TLS certificate: {e}")))?;
    create_dir(&args.out, 0o700)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.out.display())))?;
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    let cert_pem = issued.cert_pem();
    let key_pem = issued.key_pem();
    write_all_atomic(&[
        (&key_path, key_pem.as_bytes(), SECRET_MODE),
        (&cert_path, cert_pem.as_bytes(), PUBLIC_MODE),
    ])
    .map_err(|e| Failure::usage(format!("writing into {}: {e}", args.out.display())))?;
    let b = &issued.bundle;
    println!(
        "RA-TLS certificate (role {}, CN {}, SAN {}, {} days; evidence: TEE {}, TPM {}, IMA {}): \
         {} (key: {}, mode 0600)",
        args.role,
        params.common_name,
        args.sans.join(", "),
        args.days,
        if b.tee.is_some() { "yes" } else { "no" },
        if b.tpm.is_some() { "yes" } else { "no" },
        if b.ima.is_some() { "yes" } else { "no" },
        cert_path.display(),
        key_path.display()
    );
    Ok(EXIT_OK)
}

/// What `--tee`, `--tpm`, `--ima-log` and `--sim-dir` say, as the library's set-up takes it.
fn attester_config(args: &GenerateArgs) -> Result<AttesterConfig, Failure> {
    let tee = args
        .tee
        .parse::<TeeChoice>()
        .map_err(|e| Failure::usage(format!("--tee: {e}")))?;
    let mut a = AttesterConfig::new(tee);
    a.tpm_tcti = match args.tpm.as_str() {
        "none" => None,
        dev => Some(tcti_of(dev).map_err(|e| Failure::usage(format!("--tpm: {e}, or none")))?),
    };
    a.ima_log = if args.ima_log.as_os_str() == "none" {
        None
    } else {
        Some(args.ima_log.clone())
    };
    a.sim.dir = Some(args.sim_dir.clone());
    Ok(a)
}

/// This machine's attesters; what was opened and the warnings go to stderr.
fn open_attester(args: &GenerateArgs) -> Result<Arc<Attester>, Failure> {
    let config = attester_config(args)?;
    let opened = config.open().map_err(|e| {
        Failure::usage(match e {
            ConfigError::NoTeeDetected { .. } => format!(
                "--tee auto: {e}; name the TEE with --tee (--tee none for a TPM-only certificate)"
            ),
            ConfigError::NoAttester => {
                "no attester: --tee none and --tpm none leave nothing to put in the certificate"
                    .to_owned()
            }
            ConfigError::Tpm { .. } => format!("--tpm: {e}"),
            ConfigError::AzureNeedsTpm { tee } => {
                format!("--tee {tee} reads the vTPM: it needs --tpm")
            }
            e => format!("--tee {}: {e}", config.tee),
        })
    })?;
    opened.log_notes();
    Ok(opened.attester)
}

/// `ratls verify`: the certificate's evidence under the policy, offline.
pub fn verify(args: &VerifyArgs) -> Result<u8, Failure> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.file.display())))?;
    let chain = ratls::pki::Cert::many_from_der_or_pem(&bytes)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.file.display())))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Failure::usage(format!("{}: no certificate", args.file.display())))?;
    let role = Role::new(&args.role).map_err(|e| Failure::usage(format!("--role: {e}")))?;
    let base = match &args.policy {
        Some(path) => {
            ratls::Policy::from_file(path).map_err(|e| Failure::usage(format!("--policy {e}")))?
        }
        None => ratls::Policy::default(),
    };
    let collateral = ratls::collateral::CollateralSettings {
        kds_url: args.kds_url.clone(),
        pcs_url: args.pcs_url.clone(),
        intel_root_crl_url: args.intel_root_crl_url.clone(),
        collateral_dir: args.collateral_dir.clone(),
        offline: args.offline,
        ..Default::default()
    };
    let mut policy = AttestationPolicy::new(base, role)
        .with_max_age(Duration::from_secs(args.max_age))
        .with_collateral(collateral.client(None));
    if let Some(path) = &args.insecure_sim_root {
        let ark = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("--insecure-sim-root {}: {e}", path.display())))?;
        tracing::warn!(
            "WARNING: --insecure-sim-root: evidence from the simulated TEE will be accepted; it \
             proves nothing about hardware"
        );
        ratls::tls::danger::trust_simulated_root(&mut policy, &ark);
    }
    let verifier = AttestedServerVerifier::new(policy, Mode::Certificate);
    let verdict = match verifier.verify_certificate(leaf.der(), UnixTime::now()) {
        Ok(v) => v,
        Err(rejected) => rejected.verdict,
    };
    print_verdict(&verdict, args.json);
    Ok(if verdict.is_trusted() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush());
}

fn print_verdict(verdict: &Verdict, json: bool) {
    if json {
        let mut text = serde_json::to_string_pretty(verdict).unwrap_or_default();
        text.push('\n');
        emit(&text);
        return;
    }
    let mut text = ratls::summary::verdict_head(verdict);
    if let Some(failed) = verdict.first_failure() {
        let why = if failed.detail.is_empty() {
            format!(
                "expected {}, presented {}",
                failed.expected, failed.presented
            )
        } else {
            failed.detail.clone()
        };
        text.push_str(&format!("rejected at {}: {why}\n", failed.step));
    }
    emit(&text);
}

/// `ratls fetch`: the chain a TLS server presents, as PEM. Not verified (see [`ratls::tls::danger::RecordAnyServerCert`]).
pub async fn fetch(args: &FetchArgs) -> Result<u8, Failure> {
    let (host, port) = split_target(&args.target)?;
    let sni = args
        .sni
        .clone()
        .unwrap_or_else(|| host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(sni.clone())
        .map_err(|e| Failure::usage(format!("{sni:?} is not a server name: {e}")))?;
    let provider = ratls::tls::provider();
    let recorder = Arc::new(RecordAnyServerCert::new());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::usage(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let target = format!("{host}:{port}");
    let timeout = Duration::from_secs(args.timeout);
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(&target)
            .await
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {target}: {e}"))
    };
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Failure::failed(format!("{target}: no handshake within {timeout:?}")))?
        .map_err(Failure::failed)?;
    drop(stream);
    let chain = recorder
        .chain()
        .ok_or_else(|| Failure::failed(format!("{target}: the server sent no certificate")))?;
    let pem: String = chain
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec())))
        .collect();
    match &args.out {
        Some(path) => {
            write_atomic(path, pem.as_bytes(), PUBLIC_MODE)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            tracing::info!(
                "{} certificate(s) from {target} (NOT verified) written to {}",
                chain.len(),
                path.display()
            );
        }
        None => emit(&pem),
    }
    Ok(EXIT_OK)
}

/// `HOST:PORT`, `[v6]:PORT`, or `HOST` (port 443).
fn split_target(target: &str) -> Result<(String, u16), Failure> {
    let bad = || Failure::usage(format!("{target:?}: expected HOST:PORT"));
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
        }
        None if !target.is_empty() => Ok((target.to_owned(), 443)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            split_target("a.b:8443").ok(),
            Some(("a.b".to_owned(), 8443))
        );
        assert_eq!(split_target("a.b").ok(), Some(("a.b".to_owned(), 443)));
        assert_eq!(split_target("[::1]:9").ok(), Some(("::1".to_owned(), 9)));
        assert!(split_target("a:b").is_err());
        assert!(split_target("").is_err());
    }
}
