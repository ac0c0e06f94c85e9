//! `ratls generate|verify|fetch`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ratls::attest::detect::{detect_interface, DetectPaths, TeeInterface};
use ratls::attest::tpm::{TssTpm, DEFAULT_AK_HANDLE};
use ratls::attest::tsm::{ConfigfsTsm, SnpTsm, TdxTsm, DEFAULT_REPORT_DIR};
use ratls::attest::{Attester, ImaFile, ImaSource, TeeAttester, TeeKind, TpmAttester};
use ratls::binding::Role;
use ratls::tls::cert::{issue, CertParams};
use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
use ratls::{UnixTime, Verdict};

use crate::cli::{FetchArgs, GenerateArgs, VerifyArgs};
use crate::danger::RecordAnyChain;
use crate::fsutil::{create_dir, write_all_atomic, write_atomic, PUBLIC_MODE, SECRET_MODE};
use crate::{Failure, EXIT_FAILED, EXIT_OK};

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
    let tcti = match args.tpm.as_str() {
        "none" => None,
        dev => Some(tcti_of(dev).ok_or_else(|| {
            Failure::usage(format!(
                "--tpm {dev:?}: expected a device path, a TCTI (device:, swtpm:, mssim:, tabrmd) \
                 or none"
            ))
        })?),
    };
    let tee = open_tee(&args.tee, tcti.as_deref(), &args.sim_dir)?;
    let tpm = match &tcti {
        Some(tcti) => {
            let tpm = TssTpm::open(tcti, DEFAULT_AK_HANDLE)
                .map_err(|e| Failure::usage(format!("TPM on {tcti}: {e}")))?;
            Some(Arc::new(tpm) as Arc<dyn TpmAttester>)
        }
        None => None,
    };
    let ima: Option<Arc<dyn ImaSource>> = if args.ima_log.as_os_str() == "none" {
        None
    } else if args.ima_log.exists() {
        Some(Arc::new(ImaFile(args.ima_log.clone())))
    } else {
        eprintln!(
            "cosmian_certtool: WARNING: no IMA log at {}: the evidence carries none, and \
             verifiers that require IMA will refuse it",
            args.ima_log.display()
        );
        None
    };
    if tee.is_none() && tpm.is_none() {
        return Err(Failure::usage(
            "no attester: --tee none and --tpm none leave nothing to put in the certificate",
        ));
    }
    let attester = Attester::new(tee, tpm, ima);
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

/// The agent's `tpm_device` convention: a path becomes `device:PATH`, TCTIs pass through.
fn tcti_of(device: &str) -> Option<String> {
    if device.starts_with('/') {
        Some(format!("device:{device}"))
    } else if ["device:", "swtpm:", "mssim:", "tabrmd"]
        .iter()
        .any(|p| device.starts_with(p))
    {
        Some(device.to_owned())
    } else {
        None
    }
}

/// The TEE attester named by `--tee` (as the agent opens it).
fn open_tee(
    choice: &str,
    tcti: Option<&str>,
    sim_dir: &std::path::Path,
) -> Result<Option<Arc<dyn TeeAttester>>, Failure> {
    let kind = match choice {
        "none" => return Ok(None),
        "auto" => {
            let tcti = tcti.map(str::to_owned);
            let paths = DetectPaths::default().with_azure_probe(move || {
                let tcti = tcti.as_deref()?;
                ratls::attest::azure::AzureTee::open(tcti)
                    .ok()
                    .map(|t| t.kind())
            });
            let found = detect_interface(&paths).map_err(|e| {
                Failure::usage(format!(
                    "--tee auto: {e} (name the TEE with --tee; --tee none for a TPM-only \
                     certificate)"
                ))
            })?;
            eprintln!("cosmian_certtool: TEE detected: {}", found.why);
            if found.interface == TeeInterface::SevGuestDevice {
                return Err(Failure::usage(
                    "the SEV-SNP guest is only reachable through /dev/sev-guest, which this \
                     build does not speak; enable configfs-tsm (Linux 6.7+)",
                ));
            }
            found.kind
        }
        name => name
            .parse::<TeeKind>()
            .map_err(|e| Failure::usage(format!("--tee: {e} (or auto, none)")))?,
    };
    let tee: Arc<dyn TeeAttester> = match kind {
        TeeKind::Sim => {
            let ca = ratls::attest::sim::SimCa::load_or_generate(sim_dir).map_err(|e| {
                Failure::usage(format!("simulated TEE CA in {}: {e}", sim_dir.display()))
            })?;
            let tee = ratls::attest::sim::SimTee::new(Arc::new(ca))
                .map_err(|e| Failure::usage(format!("simulated TEE: {e}")))?;
            eprintln!(
                "cosmian_certtool: !!! SIMULATED TEE !!! its reports are signed by a key \
                 generated on this machine ({}/ark.pem) and prove NOTHING about the hardware. \
                 For tests only.",
                sim_dir.display()
            );
            Arc::new(tee)
        }
        TeeKind::SevSnp => Arc::new(SnpTsm::new(ConfigfsTsm::new(PathBuf::from(
            DEFAULT_REPORT_DIR,
        )))),
        TeeKind::Tdx => Arc::new(TdxTsm::new(ConfigfsTsm::new(PathBuf::from(
            DEFAULT_REPORT_DIR,
        )))),
        TeeKind::AzureSnp | TeeKind::AzureTdx => {
            let tcti = tcti.ok_or_else(|| {
                Failure::usage(format!("--tee {kind} reads the vTPM: it needs --tpm"))
            })?;
            let tee = ratls::attest::azure::AzureTee::open(tcti)
                .map_err(|e| Failure::usage(format!("--tee {kind}: {e}")))?;
            if tee.kind() != kind {
                return Err(Failure::usage(format!(
                    "--tee {kind} but the vTPM's HCL report says {}",
                    tee.kind()
                )));
            }
            Arc::new(tee)
        }
        other => return Err(Failure::usage(format!("--tee {other} is not supported"))),
    };
    Ok(Some(tee))
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
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("--policy {}: {e}", path.display())))?;
            ratls::Policy::from_json(&text)
                .map_err(|e| Failure::usage(format!("--policy {}: {e}", path.display())))?
        }
        None => ratls::Policy::default(),
    };
    let mut policy =
        AttestationPolicy::new(base, role).with_max_age(Duration::from_secs(args.max_age));
    if let Some(path) = &args.insecure_sim_root {
        let ark = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("--insecure-sim-root {}: {e}", path.display())))?;
        eprintln!(
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
    let status = if verdict.is_trusted() {
        "TRUSTED"
    } else {
        "REJECTED"
    };
    let sim = if verdict.simulated {
        " (SIMULATED TEE: not production evidence)"
    } else {
        ""
    };
    let mut text = format!("{} evidence: {status}{sim}\n", verdict.platform);
    for check in &verdict.checks {
        text.push_str(&format!("  {check}\n"));
    }
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

/// `ratls fetch`: the chain a TLS server presents, as PEM. Not verified (see [`crate::danger`]).
pub async fn fetch(args: &FetchArgs) -> Result<u8, Failure> {
    let (host, port) = split_target(&args.target)?;
    let sni = args
        .sni
        .clone()
        .unwrap_or_else(|| host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(sni.clone())
        .map_err(|e| Failure::usage(format!("{sni:?} is not a server name: {e}")))?;
    let provider = ratls::tls::provider();
    let recorder = Arc::new(RecordAnyChain::new(provider.clone()));
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
            eprintln!(
                "cosmian_certtool: {} certificate(s) from {target} (NOT verified) written to {}",
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
