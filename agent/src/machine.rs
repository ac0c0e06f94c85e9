//! Startup: the machine's attesters (TPM, IMA, TEE) from the configuration, first-start
//! initialisation, and the certificate the agent serves.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ratls::attest::config::{AttesterConfig, ConfigError};
use ratls::attest::tpm::ReconnectingTpm;
use ratls::attest::{Attester, TeeKind};
use ratls::binding::Role;
use ratls::tls::cert::{issue_with_key, CertParams, IssueError, IssuedCert};
use ratls::tls::{CertSource, RotatingCert};
use ratls::UnixTime;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

use crate::config::AgentConfig;
use crate::fsutil::{write_atomic_owned, PUBLIC_MODE, SECRET_MODE};
use crate::tls::StaticCert;

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn err(what: impl fmt::Display) -> StartError {
    StartError(what.to_string())
}

/// The machine's evidence sources.
#[derive(Debug)]
pub struct Machine {
    pub attester: Arc<Attester>,
    /// The TPM (also in `attester`), for its health.
    pub tpm: Arc<ReconnectingTpm>,
    pub tee: Option<TeeKind>,
}

/// What `agent.toml` says about the attesters, as the library's set-up takes it.
pub fn attester_config(cfg: &AgentConfig) -> AttesterConfig {
    let mut a = AttesterConfig::new(cfg.tee);
    a.tpm_tcti = Some(cfg.tpm_tcti.clone());
    a.ak_handle = cfg.ak_handle;
    a.ima_log = Some(cfg.ima_log.clone());
    a.event_log = Some(cfg.event_log.clone());
    a.sim.dir = Some(cfg.data_dir.join("sim"));
    a
}

/// Open the TPM (creating the AK on first use, except on Azure where the paravisor's is used),
/// the IMA log, the event log and the TEE named by the configuration.
pub fn open_attesters(cfg: &AgentConfig) -> Result<Machine, StartError> {
    let opened = attester_config(cfg)
        .open()
        .map_err(|e| match e {
            ConfigError::NoTeeDetected { .. } => err(format!(
                "tee = \"auto\": {e}; set tee in agent.toml (sev-snp, tdx, azure-snp, azure-tdx; \
                 \"sim\" for tests only)"
            )),
            ConfigError::SimNotBuilt => err(format!("agent.tee: {e}")),
            e => err(e),
        })?;
    opened.log_notes();
    let tee = opened.tee_kind();
    let tpm = opened
        .tpm
        .ok_or_else(|| err("the agent needs a TPM (tpm_device)"))?;
    let attester = match (&cfg.collateral, &opened.attester.tee) {
        (Some(collateral), Some(inner)) => {
            tracing::info!(
                "collateral: fetched for our own evidence and served with it (KDS {}, PCS {}, \
                 cache {})",
                collateral.kds_url,
                collateral.pcs_url,
                collateral
                    .cache_dir
                    .as_deref()
                    .map_or_else(|| "none".to_owned(), |d| d.display().to_string())
            );
            let client = Arc::new(ratls::collateral::CollateralClient::new(collateral.clone()));
            let mut attester = (*opened.attester).clone();
            attester.tee = Some(Arc::new(ratls::collateral::WithCollateral::new(
                inner.clone(),
                client,
            )));
            Arc::new(attester)
        }
        _ => opened.attester,
    };
    Ok(Machine { attester, tpm, tee })
}

/// What the agent serves: the resolver, the served key's DER SPKI, and the rotating certificate
/// (kept alive: its background thread stops when the last clone goes).
pub struct Served {
    pub resolver: Arc<dyn ResolvesServerCert>,
    pub spki_der: Vec<u8>,
    pub rotating: Option<RotatingCert>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field(
                "spki_sha256",
                &hex::encode(ratls::digest::sha256(&self.spki_der)),
            )
            .field("rotating", &self.rotating.is_some())
            .finish()
    }
}

/// First start (unless `preinit` is false): the TLS key at `ssl_private_key` when missing, and
/// the message about the LUKS container. The AK is created by [`open_attesters`].
pub fn first_start(cfg: &AgentConfig, preinit: bool) -> Result<(), StartError> {
    if !preinit {
        tracing::info!("COSMIAN_VM_PREINIT=0: first-start initialisation skipped");
        return Ok(());
    }
    // The container first: the default key and certificate paths live inside its mount point.
    match &cfg.luks {
        Some(luks) => luks_first_start(cfg, luks)?,
        None => tracing::info!(
            "LUKS container: not configured (set luks_size and \
             luks_recovery_password_file in agent.toml, or run cosmian_fstool yourself: \
             docs/fstool.md)"
        ),
    }
    if !cfg.ssl_private_key.exists() && !cfg.ssl_certificate.exists() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| err(format!("generating the TLS key: {e}")))?;
        write_atomic_owned(
            &cfg.ssl_private_key,
            key.serialize_pem().as_bytes(),
            SECRET_MODE,
            cfg.unmeasured_uid,
        )
        .map_err(|e| err(format!("writing {}: {e}", cfg.ssl_private_key.display())))?;
        tracing::info!(
            path = %cfg.ssl_private_key.display(),
            "first start: TLS key (ECDSA P-256) written to {}",
            cfg.ssl_private_key.display()
        );
    } else if let (Some(uid), true) = (cfg.unmeasured_uid, cfg.ssl_private_key.exists()) {
        // A key from before unmeasured_uid (or copied in as root): hand it over before this
        // start reads it, so IMA does not log its digest.
        give_to(&cfg.ssl_private_key, uid)?;
    }
    Ok(())
}

/// [`crate::fsutil::give_to`], as a start error.
fn give_to(path: &Path, uid: u32) -> Result<(), StartError> {
    crate::fsutil::give_to(path, uid).map_err(err)
}

/// The first bytes of every LUKS header (v1 and v2).
const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// The first bytes of a LUKS2 secondary header.
const LUKS2_SECONDARY_MAGIC: &[u8; 6] = b"SKUL\xba\xbe";

/// Where a LUKS2 secondary header may start (the size of the primary: 16 KiB to 4 MiB).
const LUKS2_SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

/// Whether the container is there: for a file, that it exists; for a whole block device, that
/// the device exists (else it is not attached: an error) and starts with a LUKS header.
fn container_present(luks: &crate::config::LuksConfig) -> Result<bool, StartError> {
    if !luks.is_device() {
        return Ok(luks.container.exists());
    }
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let path = &luks.container;
    let meta = std::fs::metadata(path).map_err(|e| {
        err(format!(
            "LUKS container: the block device {} (luks_size = \"device\") is not there: {e}; \
             refusing to start (the container holds this VM's keys and secrets: attach the disk)",
            path.display()
        ))
    })?;
    if !meta.file_type().is_block_device() {
        return Err(err(format!(
            "LUKS container: {} is not a block device (luks_size = \"device\")",
            path.display()
        )));
    }
    // Either header copy counts: a host that wipes only the primary must not make the agent
    // take the device for blank (and format it over the VM's data when a recovery password
    // file is there). One open, its size read once.
    use std::io::{Seek as _, SeekFrom};
    let fail = |e: std::io::Error| err(format!("LUKS container: reading {}: {e}", path.display()));
    let mut device = std::fs::File::open(path).map_err(fail)?;
    let len = device
        .seek(SeekFrom::End(0))
        .map_err(fail)?;
    let mut magic_at = |offset: u64| -> Result<[u8; 6], StartError> {
        let mut magic = [0u8; 6];
        device
            .seek(SeekFrom::Start(offset))
            .and_then(|_| device.read_exact(&mut magic))
            .map_err(fail)?;
        Ok(magic)
    };
    if &magic_at(0)? == LUKS_MAGIC {
        return Ok(true);
    }
    for offset in LUKS2_SECONDARY_OFFSETS {
        if len < offset + 6 {
            break;
        }
        if &magic_at(offset)? == LUKS2_SECONDARY_MAGIC {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Create the container when it does not exist yet (`cosmian_fstool create --tpm-seal`, the
/// recovery password fed on stdin), then open and mount it (`cosmian_fstool mount-at-boot`,
/// which refuses any header but the exact encryption fstool creates). Any failure stops the
/// agent: it must not write keys and secrets to the unencrypted directory under the mount point.
///
/// The recovery password file is what asks for a *new* container: it is read, the container is
/// created, and the file is then wiped (overwritten with zeros, synced) and deleted, so the
/// password does not stay on the root disk the host can read. A later start that finds the
/// container missing and no password file refuses to start rather than silently making a new,
/// empty container over lost data. (A host that deletes the container *and* plants a password
/// file gets a new container with a new TLS key: `cosmian_vm verify` then fails at
/// `snapshot.agent_key`, because the snapshot pins the agent's key.)
fn luks_first_start(cfg: &AgentConfig, luks: &crate::config::LuksConfig) -> Result<(), StartError> {
    let fstool = |args: &[&std::ffi::OsStr], stdin: Option<&[u8]>| -> Result<(), StartError> {
        let mut cmd = std::process::Command::new(&luks.fstool);
        cmd.args(args)
            .env("COSMIAN_FSTOOL_TPM", &cfg.tpm_tcti);
        if let Some(uid) = cfg.unmeasured_uid {
            cmd.env("COSMIAN_FSTOOL_SECRET_UID", uid.to_string());
        }
        cmd.stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let what = format!(
            "{} {}",
            luks.fstool.display(),
            args.first()
                .map_or(String::new(), |a| a.to_string_lossy().into_owned())
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("LUKS container: cannot run {what}: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write as _;
            pipe.write_all(input)
                .map_err(|e| err(format!("LUKS container: {what}: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("LUKS container: {what}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            // fstool never prints secrets; its message says what failed.
            Err(err(format!(
                "LUKS container: {what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    let created = !container_present(luks)?;
    if created {
        if let (Some(uid), true) = (cfg.unmeasured_uid, luks.recovery_password_file.exists()) {
            // Before reading it: IMA would otherwise log the password's digest.
            give_to(&luks.recovery_password_file, uid)?;
        }
        let password = match std::fs::read(&luks.recovery_password_file) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(format!(
                    "LUKS container {} is missing (or holds no LUKS header), and there is no \
                     recovery password file {} asking for a new one: refusing to start (the container holds this VM's \
                     keys and secrets; it was deleted or not attached). Restore the container, \
                     or provide a recovery password file to create a NEW, EMPTY one.",
                    luks.container.display(),
                    luks.recovery_password_file.display()
                )))
            }
            Err(e) => {
                return Err(err(format!(
                    "LUKS container: recovery password file {}: {e}",
                    luks.recovery_password_file.display()
                )))
            }
        };
        tracing::info!(
            path = %luks.container.display(),
            "first start: creating the LUKS container {} ({}; key sealed in \
             the TPM, the recovery password as the second way in)",
            luks.container.display(),
            luks.size
        );
        use std::ffi::OsStr;
        let mut args: Vec<&OsStr> = vec![OsStr::new("create")];
        if !luks.is_device() {
            args.extend([OsStr::new("--size"), OsStr::new(&luks.size)]);
        }
        args.extend([
            OsStr::new("--location"),
            luks.container.as_os_str(),
            OsStr::new("--tpm-seal"),
            OsStr::new("--password"),
            OsStr::new("-"),
        ]);
        fstool(&args, Some(&password))?;
        consume(&luks.recovery_password_file)?;
        tracing::info!(
            path = %luks.recovery_password_file.display(),
            "first start: the recovery password file {} was wiped and \
             deleted (keep your own copy of the password)",
            luks.recovery_password_file.display()
        );
    }
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "mount-at-boot".as_ref(),
        "--location".as_ref(),
        luks.container.as_os_str(),
        "--mountpoint".as_ref(),
        luks.mountpoint.as_os_str(),
    ];
    if created {
        // Only a container made by this start gets a file system; an existing one without
        // one is refused by fstool, never formatted.
        args.push("--new".as_ref());
    }
    fstool(&args, None)?;
    tracing::info!(
        path = %luks.container.display(),
        mountpoint = %luks.mountpoint.display(),
        "LUKS container {} mounted at {}",
        luks.container.display(),
        luks.mountpoint.display()
    );
    Ok(())
}

/// Overwrite `path` with zeros, sync it, and delete it. (On copy-on-write or flash storage the
/// old blocks may survive the overwrite; the deletion still takes the password off the file
/// system the host can read through.)
fn consume(path: &Path) -> Result<(), StartError> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| err(format!("wiping {}: {e}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(fail)?
        .len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(fail)?;
    std::io::copy(&mut std::io::repeat(0).take(len), &mut file).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::remove_file(path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The certificate to serve: a configured certificate that is not one of ours as is (the fresh
/// evidence binds its key), otherwise an RA-TLS certificate for the persistent key, re-issued
/// every rotation period.
pub fn served_cert(
    cfg: &AgentConfig,
    attester: &Arc<Attester>,
    hostname: &str,
) -> Result<Served, StartError> {
    let provider = ratls::tls::provider();
    if cfg.ssl_certificate.exists() {
        let pem_bytes = read(&cfg.ssl_certificate)?;
        let chain = ratls::pki::Cert::many_from_der_or_pem(&pem_bytes)
            .map_err(|e| err(format!("{}: {e}", cfg.ssl_certificate.display())))?;
        let leaf = chain
            .first()
            .ok_or_else(|| err(format!("{}: no certificate", cfg.ssl_certificate.display())))?;
        let ours = leaf
            .extension(ratls::tls::cert::CMW_EXTENSION_OID)
            .is_some();
        if !ours {
            let key_pem = read(&cfg.ssl_private_key)?;
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                err(format!(
                    "{}: not a PEM private key: {e}",
                    cfg.ssl_private_key.display()
                ))
            })?;
            let chain_der = chain
                .iter()
                .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                .collect();
            let certified = CertifiedKey::from_der(chain_der, key, &provider).map_err(|e| {
                err(format!(
                    "{} and {} do not go together: {e}",
                    cfg.ssl_certificate.display(),
                    cfg.ssl_private_key.display()
                ))
            })?;
            tracing::info!(
                path = %cfg.ssl_certificate.display(),
                "serving the configured certificate {} (CN {}); fresh evidence \
                 binds its key",
                cfg.ssl_certificate.display(),
                leaf.subject_cn()
            );
            return Ok(Served {
                resolver: Arc::new(StaticCert(Arc::new(certified))),
                spki_der: leaf.spki_der().to_vec(),
                rotating: None,
            });
        }
    }
    let key_pem = String::from_utf8(read(&cfg.ssl_private_key)?)
        .map_err(|_| err(format!("{}: not PEM text", cfg.ssl_private_key.display())))?;
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| {
        err(format!(
            "{}: not a usable private key: {e}",
            cfg.ssl_private_key.display()
        ))
    })?;
    let spki_der = rcgen::PublicKeyData::subject_public_key_info(&key);
    let mut sans = vec![hostname.to_owned()];
    if !["0.0.0.0", "::", "[::]"].contains(&cfg.host.as_str()) && !sans.contains(&cfg.host) {
        sans.push(cfg.host.clone());
    }
    let params = CertParams::new(Role::agent(), hostname, sans);
    let source = PersistentKeySource {
        attester: attester.clone(),
        params,
        key_pem,
        cert_path: cfg.ssl_certificate.clone(),
        cert_owner: cfg.unmeasured_uid,
    };
    let rotating = RotatingCert::start(Box::new(source), cfg.rotation_period)
        .map_err(|e| err(format!("issuing the RA-TLS certificate: {e}")))?;
    tracing::info!(
        path = %cfg.ssl_certificate.display(),
        "serving an RA-TLS certificate (role agent, CN {hostname}), re-issued \
         every {} s, written to {}",
        cfg.rotation_period.as_secs(),
        cfg.ssl_certificate.display()
    );
    Ok(Served {
        resolver: Arc::new(rotating.clone()),
        spki_der,
        rotating: Some(rotating),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Issues RA-TLS certificates for the agent's persistent key and writes each one to
/// `ssl_certificate`.
struct PersistentKeySource {
    attester: Arc<Attester>,
    params: CertParams,
    key_pem: String,
    cert_path: PathBuf,
    /// The certificate is agent state re-issued every rotation (and at every start): given to
    /// the uid IMA does not measure, or every boot would log a new "changed file".
    cert_owner: Option<u32>,
}

impl fmt::Debug for PersistentKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("PersistentKeySource")
            .field("params", &self.params)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl CertSource for PersistentKeySource {
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem)?;
        let issued = issue_with_key(&self.attester, &self.params, key, now)?;
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", issued.cert_der.to_vec()));
        if let Err(e) = write_atomic_owned(
            &self.cert_path,
            pem.as_bytes(),
            PUBLIC_MODE,
            self.cert_owner,
        ) {
            // The served certificate is in memory; the file is a copy for people and tools.
            tracing::warn!(
                path = %self.cert_path.display(),
                "WARNING: could not write {}: {e}",
                self.cert_path.display()
            );
        }
        Ok(issued)
    }
}
