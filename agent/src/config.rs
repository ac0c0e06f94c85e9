//! `agent.toml`: the seed's `[agent]` and `[app]` sections, plus what the design needs, with safe
//! defaults. Read from `/etc/cosmian_vm/agent.toml` or `$COSMIAN_VM_AGENT_CONF`; unknown keys are
//! an error naming the key; relative paths are resolved under `data_dir`.
//!
//! ```toml
//! [agent]
//! host = "127.0.0.1"
//! port = 5555
//! ssl_certificate = "data/cert.pem"      # relative: under data_dir
//! ssl_private_key = "data/key.pem"
//! tpm_device = "/dev/tpmrm0"             # or a TCTI: "swtpm:host=127.0.0.1,port=2321"
//! data_dir = "/var/lib/cosmian_vm"
//! tee = "auto"                           # auto | sev-snp | tdx | azure-snp | azure-tdx | sim
//! # ak_handle = 0x81010002               # the AK's persistent handle (default; Azure: 0x81000003)
//!
//! [app]
//! service_type = "systemd"               # systemd | supervisor | standalone
//! service_name = "my_app"
//! app_storage = "data/app"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ratls::attest::config::TeeChoice;
use ratls::attest::config::{tcti_of, DEFAULT_TPM_DEVICE};
use serde::Deserialize;

/// The configuration file's default location.
pub const DEFAULT_PATH: &str = "/etc/cosmian_vm/agent.toml";

/// The environment variable naming another configuration file.
pub const ENV_PATH: &str = "COSMIAN_VM_AGENT_CONF";

/// The data directory's default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cosmian_vm";

/// The default request-body limit (16 MiB).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Bounds on what clients can make the agent hold (`docs/agent-api.md`, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in all (over it, new connections are closed at once).
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_peer: usize,
    /// A TLS handshake must finish within this time.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this time (also the keep-alive idle time).
    pub header_timeout: Duration,
    /// A request body must arrive within this time in all, and never stall longer than
    /// [`BODY_IDLE_TIMEOUT`](crate::api::BODY_IDLE_TIMEOUT).
    pub body_timeout: Duration,
    /// Request-body bytes buffered at once, over every connection.
    pub max_buffered_bytes: usize,
    /// Evidence productions (TEE report + TPM quote) running or waiting, over every connection;
    /// one client IP gets one at a time.
    pub max_evidence_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 32,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_buffered_bytes: 64 * 1024 * 1024,
            max_evidence_in_flight: 8,
        }
    }
}

/// The configuration, validated and with every path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub agent: AgentConfig,
    pub app: Option<AppConfig>,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub host: String,
    pub port: u16,
    pub ssl_certificate: PathBuf,
    pub ssl_private_key: PathBuf,
    /// The TCTI string (`tpm_device = "/dev/tpmrm0"` becomes `device:/dev/tpmrm0`).
    pub tpm_tcti: String,
    pub data_dir: PathBuf,
    pub tee: TeeChoice,
    /// The TPM attestation key's persistent handle (`ak_handle`); `None`: the default
    /// (0x81010002), or the paravisor's key (0x81000003) on Azure.
    pub ak_handle: Option<u32>,
    pub ima_log: PathBuf,
    /// The firmware's TCG event log (`event_log`), carried in the evidence when it exists.
    pub event_log: PathBuf,
    pub rotation_period: Duration,
    pub owner_certificate: Option<PathBuf>,
    /// A pre-configured owner by key hash (`owner_spki_sha256 = "hex"`), e.g. from cloud-init.
    pub owner_spki_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    pub limits: Limits,
    pub snapshot_roots: Vec<PathBuf>,
    pub snapshot_excludes: Vec<PathBuf>,
    /// The encrypted container made at first start, when configured.
    pub luks: Option<LuksConfig>,
    /// The uid secret files are given to (pushed secrets, the TLS key, the enrolment token, the
    /// recovery password file): the recommended IMA policy does not measure files this uid
    /// owns (`agent/packaging/ima-policy`), so their digests never reach the public IMA log.
    /// `None` (`unmeasured_uid = -1`): files stay root's.
    pub unmeasured_uid: Option<u32>,
    /// `[collateral] fetch = true`: where the agent fetches its evidence's collateral (the
    /// cache under `data_dir/collateral` unless `cache_dir` says otherwise); `None`: it does not.
    pub collateral: Option<ratls::collateral::CollateralConfig>,
}

/// The default [`AgentConfig::unmeasured_uid`]: the uid of `dont_measure fowner=` in the
/// shipped IMA policy. Outside systemd's `DynamicUser=` range (61184-65519), which could hand
/// it to an unrelated service, and not a uid Debian's base-passwd allocates.
pub const DEFAULT_UNMEASURED_UID: u32 = 60990;

/// `luks_size`, `luks_recovery_password_file`, `luks_container`, `luks_mountpoint`, `fstool`:
/// the LUKS2 container the first start creates with `cosmian_fstool` (key sealed in the TPM,
/// the operator's password as the recovery path) and mounts before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksConfig {
    /// `cosmian_fstool` size syntax (`500M`, `2G`), or `device`: the container is the whole
    /// block device `container` (e.g. a dedicated virtual disk).
    pub size: String,
    /// A file holding the recovery password (the operator's; never generated or printed here).
    pub recovery_password_file: PathBuf,
    pub container: PathBuf,
    pub mountpoint: PathBuf,
    /// The `cosmian_fstool` program (found on PATH by default).
    pub fstool: PathBuf,
}

/// `[app]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub service_type: ServiceType,
    pub service_name: String,
    pub app_storage: PathBuf,
    /// `standalone` only: the program and its arguments, which the agent runs itself.
    pub command: Vec<String>,
}

/// How the app is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    Standalone,
    Supervisor,
    Systemd,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    app: Option<RawApp>,
    collateral: Option<RawCollateral>,
}

/// `[collateral]`: the agent fetches the collateral of its own evidence and serves it inside
/// the evidence (off by default: verifiers fetch it themselves).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollateral {
    #[serde(default)]
    fetch: bool,
    kds_url: Option<String>,
    pcs_url: Option<String>,
    intel_root_crl_url: Option<String>,
    thim_url: Option<String>,
    azure_tdquote_url: Option<String>,
    cache_dir: Option<PathBuf>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    host: Option<String>,
    port: Option<u16>,
    ssl_certificate: Option<PathBuf>,
    ssl_private_key: Option<PathBuf>,
    tpm_device: Option<String>,
    data_dir: Option<PathBuf>,
    tee: Option<String>,
    ak_handle: Option<u32>,
    ima_log: Option<PathBuf>,
    event_log: Option<PathBuf>,
    rotation_period_secs: Option<u64>,
    owner_certificate: Option<PathBuf>,
    owner_spki_sha256: Option<String>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    handshake_timeout_secs: Option<u64>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_buffered_bytes: Option<usize>,
    max_evidence_in_flight: Option<usize>,
    snapshot_roots: Option<Vec<PathBuf>>,
    snapshot_excludes: Option<Vec<PathBuf>>,
    luks_size: Option<String>,
    luks_recovery_password_file: Option<PathBuf>,
    luks_container: Option<PathBuf>,
    luks_mountpoint: Option<PathBuf>,
    fstool: Option<PathBuf>,
    unmeasured_uid: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    service_type: ServiceType,
    service_name: Option<String>,
    app_storage: Option<PathBuf>,
    command: Option<Vec<String>>,
}

impl Config {
    /// The file named by `explicit`, else `$COSMIAN_VM_AGENT_CONF`, else [`DEFAULT_PATH`].
    pub fn path(explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(ENV_PATH)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from),
        }
    }

    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate `text` (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let a = raw.agent;
        let data_dir = a
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if !data_dir.is_absolute() {
            return Err(invalid(
                "agent.data_dir",
                format!("{} must be an absolute path", data_dir.display()),
            ));
        }
        let under = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                data_dir.join(p)
            }
        };
        let tpm_device = a
            .tpm_device
            .unwrap_or_else(|| DEFAULT_TPM_DEVICE.to_owned());
        let tpm_tcti =
            tcti_of(&tpm_device).map_err(|e| invalid("agent.tpm_device", e.to_string()))?;
        let tee = match a.tee.as_deref() {
            None => TeeChoice::Auto,
            Some(name) => match name.parse() {
                Ok(TeeChoice::None) => {
                    return Err(invalid(
                        "agent.tee",
                        "\"none\": the agent always attests with a TEE (auto, sev-snp, tdx, \
                         azure-snp, azure-tdx, or sim for tests)"
                            .into(),
                    ))
                }
                Ok(choice) => choice,
                Err(e) => return Err(invalid("agent.tee", e.to_string())),
            },
        };
        if let Some(handle) = a.ak_handle {
            if !(0x8100_0000..=0x81FF_FFFF).contains(&handle) {
                return Err(invalid(
                    "agent.ak_handle",
                    format!("{handle:#x} is not a persistent handle (0x81000000..=0x81ffffff)"),
                ));
            }
        }
        let rotation = a.rotation_period_secs.unwrap_or(3600);
        if rotation == 0 {
            return Err(invalid(
                "agent.rotation_period_secs",
                "must be at least 1".into(),
            ));
        }
        let max_body_bytes = a
            .max_body_bytes
            .unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes == 0 {
            return Err(invalid("agent.max_body_bytes", "must be at least 1".into()));
        }
        let defaults = Limits::default();
        let positive = |key: &'static str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(invalid(key, "must be at least 1".into())),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let secs = |key: &'static str, v: Option<u64>, default: Duration| match v {
            Some(0) => Err(invalid(key, "must be at least 1".into())),
            Some(n) => Ok(Duration::from_secs(n)),
            None => Ok(default),
        };
        let limits = Limits {
            max_connections: positive(
                "agent.max_connections",
                a.max_connections,
                defaults.max_connections,
            )?,
            max_connections_per_peer: positive(
                "agent.max_connections_per_peer",
                a.max_connections_per_peer,
                defaults.max_connections_per_peer,
            )?,
            handshake_timeout: secs(
                "agent.handshake_timeout_secs",
                a.handshake_timeout_secs,
                defaults.handshake_timeout,
            )?,
            header_timeout: secs(
                "agent.header_timeout_secs",
                a.header_timeout_secs,
                defaults.header_timeout,
            )?,
            body_timeout: secs(
                "agent.body_timeout_secs",
                a.body_timeout_secs,
                defaults.body_timeout,
            )?,
            max_buffered_bytes: positive(
                "agent.max_buffered_bytes",
                a.max_buffered_bytes,
                defaults.max_buffered_bytes,
            )?,
            max_evidence_in_flight: positive(
                "agent.max_evidence_in_flight",
                a.max_evidence_in_flight,
                defaults.max_evidence_in_flight,
            )?,
        };
        if u32::try_from(limits.max_buffered_bytes).is_err() {
            return Err(invalid(
                "agent.max_buffered_bytes",
                format!("{} is over the 4 GiB limit", limits.max_buffered_bytes),
            ));
        }
        if limits.max_buffered_bytes < max_body_bytes {
            return Err(invalid(
                "agent.max_buffered_bytes",
                format!(
                    "{} is below max_body_bytes ({max_body_bytes}): one upload could never fit",
                    limits.max_buffered_bytes
                ),
            ));
        }
        let owner_spki_sha256 = match &a.owner_spki_sha256 {
            None => None,
            Some(text) => Some(
                hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        invalid(
                            "agent.owner_spki_sha256",
                            format!("{text:?} is not 64 hex digits (SHA-256 of the owner's SPKI)"),
                        )
                    })?,
            ),
        };
        if owner_spki_sha256.is_some() && a.owner_certificate.is_some() {
            return Err(invalid(
                "agent.owner_spki_sha256",
                "give owner_certificate or owner_spki_sha256, not both".into(),
            ));
        }
        let snapshot_roots = a
            .snapshot_roots
            .unwrap_or_else(|| vec![PathBuf::from("/")]);
        if snapshot_roots.is_empty() {
            return Err(invalid(
                "agent.snapshot_roots",
                "must name at least one directory".into(),
            ));
        }
        for (key, list) in [
            ("agent.snapshot_roots", &snapshot_roots),
            (
                "agent.snapshot_excludes",
                a.snapshot_excludes
                    .as_ref()
                    .unwrap_or(&Vec::new()),
            ),
        ] {
            if let Some(p) = list.iter().find(|p| !p.is_absolute()) {
                return Err(invalid(
                    key,
                    format!("{} must be an absolute path", p.display()),
                ));
            }
        }
        let host = a
            .host
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        if host.is_empty() {
            return Err(invalid("agent.host", "must not be empty".into()));
        }
        let luks = match (a.luks_size, a.luks_recovery_password_file) {
            (None, None) => {
                if a.luks_container.is_some() || a.luks_mountpoint.is_some() {
                    return Err(invalid(
                        "agent.luks_size",
                        "luks_container / luks_mountpoint need luks_size and \
                         luks_recovery_password_file"
                            .into(),
                    ));
                }
                None
            }
            (Some(_), None) => {
                return Err(invalid(
                    "agent.luks_recovery_password_file",
                    "luks_size needs a file with the recovery password (the container's key \
                     is sealed in the TPM; the password is how you recover it after an \
                     unplanned change of the boot measurements)"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "agent.luks_size",
                    "luks_recovery_password_file without luks_size".into(),
                ))
            }
            (Some(size), Some(_))
                if size == LuksConfig::WHOLE_DEVICE
                    && !a
                        .luks_container
                        .as_deref()
                        .is_some_and(Path::is_absolute) =>
            {
                return Err(invalid(
                    "agent.luks_container",
                    "luks_size = \"device\" needs luks_container = the absolute path of the \
                     block device (e.g. \"/dev/vdb\")"
                        .into(),
                ))
            }
            (Some(size), Some(password)) => Some(LuksConfig {
                size,
                recovery_password_file: under(password),
                container: under(
                    a.luks_container
                        .unwrap_or_else(|| PathBuf::from("container")),
                ),
                mountpoint: under(
                    a.luks_mountpoint
                        .unwrap_or_else(|| PathBuf::from("data")),
                ),
                fstool: a
                    .fstool
                    .unwrap_or_else(|| PathBuf::from("cosmian_fstool")),
            }),
        };
        let unmeasured_uid = match a.unmeasured_uid {
            None => Some(DEFAULT_UNMEASURED_UID),
            Some(-1) => None,
            Some(uid) => Some(u32::try_from(uid).map_err(|_| {
                invalid(
                    "agent.unmeasured_uid",
                    format!("{uid} is not a uid (0..=4294967295, or -1 for none)"),
                )
            })?),
        };
        let collateral = raw
            .collateral
            .filter(|c| c.fetch)
            .map(|c| {
                ratls::collateral::CollateralSettings {
                    kds_url: c.kds_url,
                    pcs_url: c.pcs_url,
                    intel_root_crl_url: c.intel_root_crl_url,
                    thim_url: c.thim_url,
                    azure_tdquote_url: c.azure_tdquote_url,
                    collateral_dir: Some(under(
                        c.cache_dir
                            .unwrap_or_else(|| PathBuf::from("collateral")),
                    )),
                    offline: false,
                    timeout: c.timeout_secs,
                }
                .config(None)
            });
        let agent = AgentConfig {
            luks,
            unmeasured_uid,
            collateral,
            host,
            port: a.port.unwrap_or(5555),
            ssl_certificate: under(
                a.ssl_certificate
                    .unwrap_or_else(|| PathBuf::from("data/cert.pem")),
            ),
            ssl_private_key: under(
                a.ssl_private_key
                    .unwrap_or_else(|| PathBuf::from("data/key.pem")),
            ),
            tpm_tcti,
            tee,
            ak_handle: a.ak_handle,
            ima_log: under(
                a.ima_log
                    .unwrap_or_else(|| PathBuf::from(ratls::attest::ImaFile::SECURITYFS)),
            ),
            event_log: under(
                a.event_log
                    .unwrap_or_else(|| PathBuf::from(ratls::attest::EventLogFile::SECURITYFS)),
            ),
            rotation_period: Duration::from_secs(rotation),
            owner_certificate: a.owner_certificate.map(under),
            owner_spki_sha256,
            max_body_bytes,
            limits,
            snapshot_roots,
            snapshot_excludes: a.snapshot_excludes.unwrap_or_default(),
            data_dir: data_dir.clone(),
        };
        let app = match raw.app {
            None => None,
            Some(app) => {
                let command = app.command.unwrap_or_default();
                match app.service_type {
                    ServiceType::Standalone if command.is_empty() => {
                        return Err(invalid(
                            "app.command",
                            "service_type = \"standalone\" needs command = [\"program\", \
                             \"arg\", ...]"
                                .into(),
                        ))
                    }
                    ServiceType::Systemd | ServiceType::Supervisor if !command.is_empty() => {
                        return Err(invalid(
                            "app.command",
                            "only for service_type = \"standalone\" (systemd and supervisor \
                             run the service themselves)"
                                .into(),
                        ))
                    }
                    _ => {}
                }
                let service_name = match (app.service_name, app.service_type) {
                    (Some(name), _) => name,
                    (None, ServiceType::Standalone) => "app".to_owned(),
                    (None, _) => {
                        return Err(invalid(
                            "app.service_name",
                            "required for systemd and supervisor services".into(),
                        ))
                    }
                };
                if !valid_service_name(&service_name) {
                    return Err(invalid(
                        "app.service_name",
                        format!(
                            "{service_name:?}: use 1-128 characters of [A-Za-z0-9@._:-], not \
                             starting with '-'"
                        ),
                    ));
                }
                Some(AppConfig {
                    service_type: app.service_type,
                    service_name,
                    app_storage: under(
                        app.app_storage
                            .unwrap_or_else(|| PathBuf::from("data/app")),
                    ),
                    command,
                })
            }
        };
        Ok(Self { agent, app })
    }
}

/// A unit or program name that `systemctl`/`supervisorctl` cannot take for an option.
fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-".contains(&b))
}

impl LuksConfig {
    /// `luks_size = "device"`: the container is a whole block device.
    pub const WHOLE_DEVICE: &'static str = "device";

    /// The container is a whole block device.
    pub fn is_device(&self) -> bool {
        self.size == Self::WHOLE_DEVICE
    }
}

impl AgentConfig {
    /// Where the agent keeps what the host must not read or change (the owner record, the
    /// enrolment token): inside the encrypted container when one is configured, else `data_dir`.
    pub fn secure_dir(&self) -> &Path {
        self.luks
            .as_ref()
            .map_or(&self.data_dir, |l| &l.mountpoint)
    }
}

#[cfg(test)]
mod tests;
