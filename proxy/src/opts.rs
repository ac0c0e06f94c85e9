//! The command line, the TOML configuration file that mirrors it, and the checks that turn both
//! into [`Settings`]: every conflict is reported at once, one precise line each.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ratls::attest::config::{tcti_of, AttesterConfig, TeeChoice, DEFAULT_TPM_DEVICE};
use ratls::attest::TeeKind;
use ratls::tls::AttestationPolicy;
use serde::Deserialize;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "cosmian_vm_proxy",
    version,
    about = "Sidecar proxy: mutually attested TLS (RA-TLS, fresh attestation) in front of any app"
)]
pub struct Cli {
    /// Only errors on stderr: no warnings, notes or progress (results and exit codes unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Terminate TLS (RA-TLS certificate or a given one), attest this machine to clients, forward
    /// to the target with the verified peer's attestation as metadata.
    Server(Flags),
    /// A local plaintext listener; each connection goes out over TLS to the target, which must
    /// prove itself fresh against the policy.
    Client(Flags),
}

/// Every flag, for both modes (the checks refuse those that do not apply to a mode). The TOML
/// configuration file (`--config`) takes the same names as keys, e.g. `listen = "0.0.0.0:443"`,
/// `require-attested-client = true`; flags given on the command line win.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Flags {
    /// Address to listen on (IP:PORT; port 0 picks one, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where to forward (HOST:PORT). Non-loopback needs --unsafe-target.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Allow a target that is not on the loopback interface.
    #[arg(long)]
    pub unsafe_target: bool,
    /// Client mode: allow a plaintext listener that is not on the loopback interface.
    #[arg(long)]
    pub unsafe_listen: bool,
    /// Server mode: serve this certificate chain (PEM) instead of an RA-TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Server mode: the private key of --cert (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Re-issue the RA-TLS certificate every SECS seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub rotation: Option<u64>,
    /// Fresh exchange: at most N sessions share one TEE report and TPM quote (the sessions that
    /// ask while one is being made wait for the next) [default: 256; 1: one per session].
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// Append every attestation this proxy accepts or rejects (time, peer, platform, chip,
    /// TCB, measurement, evidence and policy digests, verdict, connection id) to the audit log
    /// in DIR, each on disk before its connection proceeds (`docs/audit.md`; query it with
    /// `cosmian_vm audit query`).
    #[arg(long, value_name = "DIR")]
    pub audit_log: Option<PathBuf>,
    /// Give the application a signed attestation result per connection (an EAR: an ES256 JWT,
    /// bound to the connection's two ends; PROXY v2 TLV 0xE2 or X-Attestation-EAR) and write
    /// the public key set applications verify it with to FILE (`docs/ear.md`).
    #[arg(long, value_name = "FILE")]
    pub ear_jwks: Option<PathBuf>,
    /// --ear-jwks: sign with this P-256 key (PKCS#8 PEM) instead of one generated at start.
    #[arg(long, value_name = "FILE")]
    pub ear_key: Option<PathBuf>,
    /// --ear-jwks: how long a result stays valid [default: 60].
    #[arg(long, value_name = "SECS")]
    pub ear_ttl: Option<u64>,
    /// The TEE: auto, sev-snp, tdx, azure-snp, azure-tdx or sim (tests only) [default: auto].
    #[arg(long, value_name = "KIND")]
    pub tee: Option<String>,
    /// --tee sim: the directory holding the simulated CA (ark.pem, ...), created if missing.
    #[arg(long, value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
    /// --tee sim: reports carry the debug bit in the guest policy (negative tests only).
    #[arg(long)]
    pub sim_debug: bool,
    /// --tee sim: each report takes MS milliseconds, as on hardware (tests and benchmarks of
    /// batching; an SEV-SNP report or a TDX quote takes tens of milliseconds).
    #[arg(long, value_name = "MS")]
    pub sim_latency: Option<u64>,
    /// The TPM: a device path or a TCTI string [default: /dev/tpmrm0].
    #[arg(long, value_name = "TCTI|DEVICE")]
    pub tpm: Option<String>,
    /// The IMA measurement log (binary) [default: the securityfs one].
    #[arg(long, value_name = "FILE")]
    pub ima_log: Option<PathBuf>,
    /// Server mode: refuse clients that do not prove themselves against --policy.
    #[arg(long)]
    pub require_attested_client: bool,
    /// The peer must also match this snapshot (`cosmian_vm snapshot`): its pinned policy is
    /// laid over --policy, and every file the peer's IMA log measured (at the exchange and at
    /// each re-attestation) must be one it approved (`ima.unknown_file`, `ima.changed_file`).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Fresh mode: re-attest the verified peer every SECS seconds on the open connection (a
    /// new quote, and only the IMA entries added since the last check); a failure closes the
    /// connection and is logged (and audited). Both proxies must be this version.
    #[arg(long, value_name = "SECS")]
    pub reattest_interval: Option<u64>,
    /// --reattest-interval: how long the peer has to answer before it is cut off [default: 30].
    #[arg(long, value_name = "SECS")]
    pub reattest_timeout: Option<u64>,
    /// The peer's evidence must satisfy this policy (JSON, as `cosmian_vm verify --policy`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// INSECURE, tests only: trust the simulated TEE whose root is this ARK (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub insecure_sim_root: Option<PathBuf>,
    /// Client mode: attest this side too (RA-TLS client certificate + fresh evidence).
    #[arg(long)]
    pub attest_self: bool,
    /// Client mode: how the server proves itself: fresh (a challenge answered with evidence bound
    /// to this session) or certificate (the evidence in its RA-TLS certificate, verdicts cached)
    /// [default: fresh].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Client mode, --mode certificate: the oldest certificate evidence accepted [default: 86400].
    #[arg(long, value_name = "SECS")]
    pub max_age: Option<u64>,
    /// Client mode: the TLS server name [default: the target's host].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// How the verified peer's attestation reaches the backend: proxy-v2, http-headers or none
    /// [default: proxy-v2 in server mode, none in client mode].
    #[arg(long, value_name = "FORMAT")]
    pub metadata: Option<String>,
    /// Server mode: ALPN protocols accepted besides cosmian-attest/1 (comma-separated; "" for
    /// none) [default: http/1.1].
    #[arg(long, value_name = "LIST")]
    pub alpn: Option<String>,
    /// Serve /status (JSON) and /metrics (Prometheus) over plain HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    pub status: Option<String>,
    /// Refuse connections beyond this many open ones [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Server mode: refuse connections from a source address that already has N open
    /// [default: 64].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Server mode: the TLS handshake alone must finish within SECS of the accept; idle or slow
    /// sockets are closed then [default: 5].
    #[arg(long, value_name = "SECS")]
    pub tls_handshake_timeout: Option<u64>,
    /// Client mode: the server's certificate must name NAME among its subject alternative names
    /// (repeatable: any one of them) [default: no name check].
    #[arg(long, value_name = "NAME")]
    pub verify_name: Vec<String>,
    /// Server mode, --require-attested-client: the client's certificate must name NAME among its
    /// subject alternative names (repeatable: any one of them) [default: no name check].
    #[arg(long, value_name = "NAME")]
    pub allow_name: Vec<String>,
    /// Close a connection idle (no byte either way) this long [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// The TLS handshake plus the attestation exchange must finish within SECS [default: 30].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,
    /// On SIGTERM, wait at most SECS for open connections to finish [default: 30].
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// AMD KDS base URL: the VCEKs and CRLs peers' SEV-SNP evidence lacks
    /// [default: `https://kdsintf.amd.com`].
    #[arg(long, value_name = "URL")]
    pub kds_url: Option<String>,
    /// Intel PCS v4 or PCCS base URL: the collateral peers' TDX quotes lack
    /// [default: `https://api.trustedservices.intel.com`].
    #[arg(long, value_name = "URL")]
    pub pcs_url: Option<String>,
    /// Intel's SGX root CA CRL when the PCS does not serve it [default: Intel's CRL
    /// distribution point].
    #[arg(long, value_name = "URL")]
    pub intel_root_crl_url: Option<String>,
    /// Where fetched collateral is cached [default: ~/.cache/cosmian_vm/collateral].
    #[arg(long, value_name = "DIR")]
    pub collateral_dir: Option<PathBuf>,
    /// Fetch no collateral: the cache only.
    #[arg(long)]
    pub offline: bool,
    /// A TOML file with the same keys as the flags; flags win.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl Flags {
    /// Fill what the command line left out from the configuration file.
    fn merge(self, file: Flags) -> Flags {
        Flags {
            listen: self.listen.or(file.listen),
            target: self.target.or(file.target),
            unsafe_target: self.unsafe_target || file.unsafe_target,
            unsafe_listen: self.unsafe_listen || file.unsafe_listen,
            cert: self.cert.or(file.cert),
            key: self.key.or(file.key),
            rotation: self.rotation.or(file.rotation),
            max_batch: self.max_batch.or(file.max_batch),
            audit_log: self.audit_log.or(file.audit_log),
            ear_jwks: self.ear_jwks.or(file.ear_jwks),
            ear_key: self.ear_key.or(file.ear_key),
            ear_ttl: self.ear_ttl.or(file.ear_ttl),
            tee: self.tee.or(file.tee),
            sim_dir: self.sim_dir.or(file.sim_dir),
            sim_debug: self.sim_debug || file.sim_debug,
            sim_latency: self.sim_latency.or(file.sim_latency),
            tpm: self.tpm.or(file.tpm),
            ima_log: self.ima_log.or(file.ima_log),
            require_attested_client: self.require_attested_client || file.require_attested_client,
            snapshot: self.snapshot.or(file.snapshot),
            reattest_interval: self
                .reattest_interval
                .or(file.reattest_interval),
            reattest_timeout: self
                .reattest_timeout
                .or(file.reattest_timeout),
            policy: self.policy.or(file.policy),
            insecure_sim_root: self
                .insecure_sim_root
                .or(file.insecure_sim_root),
            attest_self: self.attest_self || file.attest_self,
            server_name: self.server_name.or(file.server_name),
            mode: self.mode.or(file.mode),
            max_age: self.max_age.or(file.max_age),
            metadata: self.metadata.or(file.metadata),
            alpn: self.alpn.or(file.alpn),
            status: self.status.or(file.status),
            max_connections: self
                .max_connections
                .or(file.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip),
            tls_handshake_timeout: self
                .tls_handshake_timeout
                .or(file.tls_handshake_timeout),
            verify_name: if self.verify_name.is_empty() {
                file.verify_name
            } else {
                self.verify_name
            },
            allow_name: if self.allow_name.is_empty() {
                file.allow_name
            } else {
                self.allow_name
            },
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            handshake_timeout: self
                .handshake_timeout
                .or(file.handshake_timeout),
            drain_timeout: self
                .drain_timeout
                .or(file.drain_timeout),
            kds_url: self.kds_url.or(file.kds_url),
            pcs_url: self.pcs_url.or(file.pcs_url),
            intel_root_crl_url: self
                .intel_root_crl_url
                .or(file.intel_root_crl_url),
            collateral_dir: self
                .collateral_dir
                .or(file.collateral_dir),
            offline: self.offline || file.offline,
            config: self.config,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// How the verified peer's attestation reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    ProxyV2,
    HttpHeaders,
    None,
}

/// A target: what to dial and the host part (server name, loopback check).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub host: String,
}

/// `--ear-jwks`, `--ear-key`, `--ear-ttl`.
#[derive(Debug, Clone)]
pub struct EarSettings {
    pub jwks: PathBuf,
    pub key: Option<PathBuf>,
    pub ttl: Duration,
}

/// Everything checked and loaded.
#[derive(Debug)]
pub struct Settings {
    pub side: Side,
    pub listen: SocketAddr,
    pub target: Target,
    pub cert: Option<(PathBuf, PathBuf)>,
    pub rotation: Duration,
    /// At most this many sessions per batch of fresh evidence.
    pub max_batch: usize,
    /// The audit log's directory (`--audit-log`).
    pub audit_log: Option<PathBuf>,
    /// Signed attestation results: where the JWKS goes, the key (generated when `None`), their
    /// lifetime.
    pub ear: Option<EarSettings>,
    /// How this side attests itself. `tee` [`TeeChoice::None`] means no attesters at all: a
    /// plain TLS proxy serving `--cert/--key` that declines attestation requests (the baseline
    /// of the benchmarks, or a machine without a TPM).
    pub attester: Option<AttesterConfig>,
    /// The peer's policy: the server's (client mode) or the client's (mutual server mode).
    pub policy: Option<AttestationPolicy>,
    /// `--reattest-interval` and `--reattest-timeout`: re-attest the verified peer on live
    /// connections this often, giving it this long to answer.
    pub reattest: Option<(Duration, Duration)>,
    pub server_name: String,
    /// Client mode: verify the server's certificate evidence instead of running the fresh
    /// exchange.
    pub certificate_mode: bool,
    pub metadata: Metadata,
    pub alpn: Vec<Vec<u8>>,
    pub status: Option<SocketAddr>,
    pub max_connections: usize,
    /// Server mode: open connections per source address.
    pub max_connections_per_ip: usize,
    /// Server mode: the TLS handshake alone (from the accept).
    pub tls_handshake_timeout: Duration,
    /// The names the peer's certificate must carry one of (client mode: `--verify-name`; server
    /// mode: `--allow-name`); empty: no name check.
    pub peer_names: Vec<String>,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Read the configuration file (if any), merge, and check everything. On failure: every
/// problem found, one line each.
pub fn settings(side: Side, flags: Flags) -> Result<Settings, Vec<String>> {
    let flags = match &flags.config {
        Some(path) => {
            let file = read_config(path).map_err(|e| vec![e])?;
            flags.merge(file)
        }
        None => flags,
    };
    check(side, &flags)
}

fn read_config(path: &Path) -> Result<Flags, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    toml::from_str::<Flags>(&text).map_err(|e| {
        // toml's message names the key (`unknown field `x`, expected one of ...`).
        format!("--config {}: {}", path.display(), e.message().trim())
    })
}

fn check(side: Side, f: &Flags) -> Result<Settings, Vec<String>> {
    let mut errs: Vec<String> = Vec::new();
    check_mode_flags(side, f, &mut errs);
    let (listen, target, status) = check_addresses(side, f, &mut errs);
    let (cert, rotation) = check_certificate(f, &mut errs);
    if f.ear_jwks.is_none() && (f.ear_key.is_some() || f.ear_ttl.is_some()) {
        errs.push("--ear-key and --ear-ttl apply to signed results: add --ear-jwks FILE".into());
    }
    if f.ear_ttl == Some(0) {
        errs.push("--ear-ttl must be at least 1 second".into());
    }
    if f.max_batch == Some(0) {
        errs.push(
            "--max-batch must be at least 1 (1: one TEE report and TPM quote per session)".into(),
        );
    }
    let (policy, certificate_mode) = check_peer_policy(side, f, &mut errs);
    if f.snapshot.is_some() && certificate_mode {
        errs.push(
            "--snapshot needs --mode fresh (certificate mode defers the IMA log, so no file \
             would be checked)"
                .into(),
        );
    }
    let policy = check_snapshot(f, policy, &mut errs);
    let reattest = check_reattest(f, policy.is_some(), certificate_mode, &mut errs);
    let attester = check_attester(side, f, &mut errs);
    let (metadata, alpn) = check_metadata(side, f, &mut errs);
    let limits = check_limits(side, f, &mut errs);

    match (errs.is_empty(), listen, target) {
        (true, Some(listen), Some(target)) => Ok(Settings {
            side,
            listen,
            server_name: f
                .server_name
                .clone()
                .unwrap_or_else(|| target.host.clone()),
            target,
            certificate_mode,
            cert,
            rotation: Duration::from_secs(rotation),
            max_batch: f
                .max_batch
                .unwrap_or(ratls::attest::DEFAULT_MAX_BATCH),
            audit_log: f.audit_log.clone(),
            ear: f
                .ear_jwks
                .clone()
                .map(|jwks| EarSettings {
                    jwks,
                    key: f.ear_key.clone(),
                    ttl: Duration::from_secs(f.ear_ttl.unwrap_or(60)),
                }),
            attester,
            policy,
            reattest,
            metadata,
            alpn,
            status,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            tls_handshake_timeout: limits.tls_handshake_timeout,
            peer_names: limits.peer_names,
            idle_timeout: limits.idle_timeout,
            handshake_timeout: limits.handshake_timeout,
            drain_timeout: limits.drain_timeout,
        }),
        _ => Err(errs),
    }
}

/// Flags that belong to one mode only.
fn check_mode_flags(side: Side, f: &Flags, errs: &mut Vec<String>) {
    let server_only: [(&str, bool); 8] = [
        (
            "--max-connections-per-ip",
            f.max_connections_per_ip.is_some(),
        ),
        ("--tls-handshake-timeout", f.tls_handshake_timeout.is_some()),
        ("--allow-name", !f.allow_name.is_empty()),
        ("--cert", f.cert.is_some()),
        ("--key", f.key.is_some()),
        ("--rotation", f.rotation.is_some()),
        ("--require-attested-client", f.require_attested_client),
        ("--alpn", f.alpn.is_some()),
    ];
    let client_only: [(&str, bool); 6] = [
        ("--verify-name", !f.verify_name.is_empty()),
        ("--mode", f.mode.is_some()),
        ("--max-age", f.max_age.is_some()),
        ("--attest-self", f.attest_self),
        ("--server-name", f.server_name.is_some()),
        ("--unsafe-listen", f.unsafe_listen),
    ];
    match side {
        Side::Client => {
            for (name, given) in server_only {
                if given {
                    errs.push(format!("{name} applies to server mode only"));
                }
            }
        }
        Side::Server => {
            for (name, given) in client_only {
                if given {
                    let why = match name {
                        "--attest-self" => {
                            " (a server always attests itself; the attester flags say how)"
                        }
                        _ => "",
                    };
                    errs.push(format!("{name} applies to client mode only{why}"));
                }
            }
        }
    }
}

/// The listener, the target and the status address.
fn check_addresses(
    side: Side,
    f: &Flags,
    errs: &mut Vec<String>,
) -> (Option<SocketAddr>, Option<Target>, Option<SocketAddr>) {
    let mode = side.name();
    let listen = match &f.listen {
        None => {
            errs.push(format!("{mode} mode needs --listen ADDR"));
            None
        }
        Some(text) => match resolve(text) {
            Ok(addr) => {
                if side == Side::Client && !addr.ip().is_loopback() && !f.unsafe_listen {
                    errs.push(format!(
                        "--listen {text}: the client mode's plaintext listener is not on the \
                         loopback interface (anyone who can reach it uses the attested channel); \
                         add --unsafe-listen if that is intended"
                    ));
                }
                Some(addr)
            }
            Err(e) => {
                errs.push(format!("--listen {text}: {e}"));
                None
            }
        },
    };
    let target = match &f.target {
        None => {
            errs.push(format!("{mode} mode needs --target HOST:PORT"));
            None
        }
        Some(text) => match split_host_port(text) {
            Ok(host) => {
                if !is_loopback_host(&host) && !f.unsafe_target {
                    errs.push(format!(
                        "--target {text}: {host} is not a loopback address; add --unsafe-target \
                         to forward {} off this machine",
                        if side == Side::Server {
                            "plaintext"
                        } else {
                            "over TLS"
                        }
                    ));
                }
                Some(Target {
                    addr: text.clone(),
                    host,
                })
            }
            Err(e) => {
                errs.push(format!("--target {text}: {e}"));
                None
            }
        },
    };
    let status = match &f.status {
        None => None,
        Some(text) => match resolve(text) {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(format!("--status {text}: {e}"));
                None
            }
        },
    };
    (listen, target, status)
}

/// `--cert/--key` (served as is) or the RA-TLS certificate's rotation period (seconds).
fn check_certificate(f: &Flags, errs: &mut Vec<String>) -> (Option<(PathBuf, PathBuf)>, u64) {
    let cert = match (&f.cert, &f.key) {
        (Some(c), Some(k)) => {
            if f.rotation.is_some() {
                errs.push(
                    "--rotation applies to the RA-TLS certificate; --cert is served as is \
                     (reloaded on SIGHUP)"
                        .into(),
                );
            }
            Some((c.clone(), k.clone()))
        }
        (Some(_), None) => {
            errs.push("--cert needs --key (the certificate's private key)".into());
            None
        }
        (None, Some(_)) => {
            errs.push("--key needs --cert (the certificate it goes with)".into());
            None
        }
        (None, None) => None,
    };
    let rotation = f.rotation.unwrap_or(3600);
    if rotation == 0 {
        errs.push("--rotation must be at least 1 second".into());
    }
    (cert, rotation)
}

/// The attestation side: the policy the peer must satisfy (when this mode verifies one) and
/// whether the server proves itself by certificate instead of the fresh exchange.
fn check_peer_policy(
    side: Side,
    f: &Flags,
    errs: &mut Vec<String>,
) -> (Option<AttestationPolicy>, bool) {
    let wants_policy = match side {
        Side::Client => {
            if f.policy.is_none() {
                errs.push("client mode needs --policy FILE (what the server must prove)".into());
            }
            true
        }
        Side::Server => {
            if f.require_attested_client && f.policy.is_none() {
                errs.push(
                    "--require-attested-client needs --policy FILE (what clients must prove)"
                        .into(),
                );
            }
            if !f.require_attested_client && f.policy.is_some() {
                errs.push(
                    "--policy in server mode needs --require-attested-client (the policy is \
                     what clients must prove)"
                        .into(),
                );
            }
            f.require_attested_client
        }
    };
    if f.insecure_sim_root.is_some() && f.policy.is_none() {
        errs.push("--insecure-sim-root needs --policy (it changes what the policy trusts)".into());
    }
    let policy = match (&f.policy, wants_policy) {
        (Some(path), true) => match load_policy(side, path, f.insecure_sim_root.as_deref())
            .map(|p| p.with_collateral(collateral(f)))
        {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(e);
                None
            }
        },
        _ => None,
    };

    let certificate_mode = match f.mode.as_deref() {
        None | Some("fresh") => {
            if f.max_age.is_some() && side == Side::Client {
                errs.push(
                    "--max-age needs --mode certificate (fresh evidence answers a challenge; it \
                     has no age)"
                        .into(),
                );
            }
            false
        }
        Some("certificate") => {
            if f.attest_self {
                errs.push(
                    "--attest-self needs --mode fresh (this side answers a challenge only in \
                     the fresh exchange)"
                        .into(),
                );
            }
            true
        }
        Some(other) => {
            errs.push(format!("--mode {other}: expected fresh or certificate"));
            false
        }
    };
    if f.max_age == Some(0) {
        errs.push("--max-age must be at least 1 second".into());
    }
    let policy = policy.map(|p| match f.max_age {
        Some(secs) => p.with_max_age(Duration::from_secs(secs)),
        None => p,
    });
    (policy, certificate_mode)
}

/// `--snapshot`: its pinned policy over the peer policy, and its approved files.
fn check_snapshot(
    f: &Flags,
    policy: Option<AttestationPolicy>,
    errs: &mut Vec<String>,
) -> Option<AttestationPolicy> {
    let Some(path) = &f.snapshot else {
        return policy;
    };
    let snapshot = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| ratls::snapshot::Snapshot::from_json(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            errs.push(format!("--snapshot {}: {e}", path.display()));
            return policy;
        }
    };
    let Some(policy) = policy else {
        errs.push("--snapshot needs --policy (the peer policy it refines; `{}` for none)".into());
        return None;
    };
    if snapshot.simulated && f.insecure_sim_root.is_none() {
        errs.push(format!(
            "--snapshot {}: taken on a simulated TEE; it verifies only with --insecure-sim-root",
            path.display()
        ));
    }
    let pinned = policy
        .policy()
        .overlay(&snapshot.policy);
    Some(
        policy
            .with_policy(pinned)
            .with_files(std::sync::Arc::new(snapshot.files)),
    )
}

/// `--reattest-interval` / `--reattest-timeout`: fresh mode, on the side that verifies a peer.
fn check_reattest(
    f: &Flags,
    verifies: bool,
    certificate_mode: bool,
    errs: &mut Vec<String>,
) -> Option<(Duration, Duration)> {
    let Some(interval) = f.reattest_interval else {
        if f.reattest_timeout.is_some() {
            errs.push("--reattest-timeout applies to --reattest-interval: add it".into());
        }
        return None;
    };
    const YEAR: u64 = 365 * 24 * 3600;
    let timeout = f.reattest_timeout.unwrap_or(30);
    if interval == 0 || timeout == 0 || interval > YEAR || timeout > YEAR {
        errs.push(
            "--reattest-interval and --reattest-timeout must be at least 1 second and at most a \
             year"
                .into(),
        );
    }
    if certificate_mode {
        errs.push(
            "--reattest-interval needs --mode fresh (a certificate cannot be asked again)".into(),
        );
    }
    if !verifies {
        errs.push(
            "--reattest-interval needs a peer to verify (client mode, or --require-attested-client)"
                .into(),
        );
    }
    Some((Duration::from_secs(interval), Duration::from_secs(timeout)))
}

/// How this side attests itself: always in server mode, with --attest-self in client mode.
fn check_attester(side: Side, f: &Flags, errs: &mut Vec<String>) -> Option<AttesterConfig> {
    let attests = side == Side::Server || f.attest_self;
    let attester_flags: [(&str, bool); 6] = [
        ("--tee", f.tee.is_some()),
        ("--sim-dir", f.sim_dir.is_some()),
        ("--sim-debug", f.sim_debug),
        ("--sim-latency", f.sim_latency.is_some()),
        ("--tpm", f.tpm.is_some()),
        ("--ima-log", f.ima_log.is_some()),
    ];
    if !attests {
        for (name, given) in attester_flags {
            if given {
                errs.push(format!(
                    "{name} needs --attest-self in client mode (the attester flags say how this \
                     side attests itself)"
                ));
            }
        }
    }
    let tee = match f
        .tee
        .as_deref()
        .unwrap_or("auto")
        .parse::<TeeChoice>()
    {
        Ok(tee) => Some(tee),
        Err(e) => {
            errs.push(format!("--tee: {e}"));
            None
        }
    };
    let is_sim = tee == Some(TeeChoice::Kind(TeeKind::Simulated));
    if tee == Some(TeeChoice::None) && (side == Side::Client || f.cert.is_none()) {
        errs.push(
            "--tee none is for server mode with --cert/--key: without attesters there is no RA-TLS certificate and nothing to attest with"
                .into(),
        );
    }
    if attests && is_sim && !cfg!(feature = "sim") {
        errs.push(format!(
            "--tee sim: {}",
            ratls::attest::config::ConfigError::SimNotBuilt
        ));
    }
    if attests && is_sim && f.sim_dir.is_none() {
        errs.push("--tee sim needs --sim-dir DIR (where the simulated CA lives)".into());
    }
    if attests && !is_sim && f.sim_dir.is_some() {
        errs.push("--sim-dir applies to --tee sim only".into());
    }
    if attests && !is_sim && f.sim_debug {
        errs.push("--sim-debug applies to --tee sim only".into());
    }
    if attests && !is_sim && f.sim_latency.is_some() {
        errs.push("--sim-latency applies to --tee sim only".into());
    }
    let tpm_text = f
        .tpm
        .clone()
        .unwrap_or_else(|| DEFAULT_TPM_DEVICE.into());
    let tpm_tcti = match tcti_of(&tpm_text) {
        Ok(tcti) => Some(tcti),
        Err(e) => {
            if attests {
                errs.push(format!("--tpm: {e}"));
            }
            None
        }
    };
    match (attests, tee, tpm_tcti) {
        (true, Some(tee), Some(tpm_tcti)) => {
            let mut a = AttesterConfig::new(tee);
            a.tpm_tcti = Some(tpm_tcti);
            a.sim.dir = f.sim_dir.clone();
            a.sim.debug = f.sim_debug;
            a.sim.latency = f
                .sim_latency
                .map(std::time::Duration::from_millis);
            if let Some(ima_log) = &f.ima_log {
                a.ima_log = Some(ima_log.clone());
            }
            Some(a)
        }
        _ => None,
    }
}

/// How the peer's attestation reaches the backend, and the ALPN protocols offered.
fn check_metadata(side: Side, f: &Flags, errs: &mut Vec<String>) -> (Metadata, Vec<Vec<u8>>) {
    let metadata = match f.metadata.as_deref() {
        None if side == Side::Server => Metadata::ProxyV2,
        None => Metadata::None,
        Some("proxy-v2") => Metadata::ProxyV2,
        Some("http-headers") if side == Side::Server => Metadata::HttpHeaders,
        Some("http-headers") => {
            errs.push(
                "--metadata http-headers applies to server mode only (in client mode the app \
                 sends the requests; use proxy-v2 or none)"
                    .into(),
            );
            Metadata::None
        }
        Some("none") => Metadata::None,
        Some(other) => {
            errs.push(format!(
                "--metadata {other}: expected proxy-v2, http-headers or none"
            ));
            Metadata::None
        }
    };
    if f.ear_jwks.is_some() && metadata == Metadata::None {
        errs.push(
            "--ear-jwks: the attestation result reaches the app through --metadata proxy-v2 \
             (or http-headers in server mode); with none it would never be delivered"
                .into(),
        );
    }
    let mut alpn = vec![ratls::tls::ALPN_ATTEST.to_vec()];
    for p in f
        .alpn
        .as_deref()
        .unwrap_or("http/1.1")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if p.len() > 255 {
            errs.push(format!("--alpn: {p:?} is longer than 255 bytes"));
        } else if p.as_bytes() == ratls::tls::ALPN_ATTEST {
            // Always offered.
        } else {
            alpn.push(p.as_bytes().to_vec());
        }
    }
    (metadata, alpn)
}

/// Connection limits, timeouts and the names a peer's certificate must carry.
struct Limits {
    max_connections: usize,
    max_connections_per_ip: usize,
    tls_handshake_timeout: Duration,
    idle_timeout: Duration,
    handshake_timeout: Duration,
    drain_timeout: Duration,
    peer_names: Vec<String>,
}

fn check_limits(side: Side, f: &Flags, errs: &mut Vec<String>) -> Limits {
    let max_connections = f.max_connections.unwrap_or(4096);
    if max_connections == 0 {
        errs.push("--max-connections must be at least 1".into());
    }
    let secs = |name: &str, v: Option<u64>, default: u64, errs: &mut Vec<String>| {
        let v = v.unwrap_or(default);
        if v == 0 {
            errs.push(format!("{name} must be at least 1 second"));
        }
        Duration::from_secs(v)
    };
    let idle_timeout = secs("--idle-timeout", f.idle_timeout, 300, errs);
    let handshake_timeout = secs("--handshake-timeout", f.handshake_timeout, 30, errs);
    let drain_timeout = secs("--drain-timeout", f.drain_timeout, 30, errs);
    let tls_handshake_timeout =
        secs("--tls-handshake-timeout", f.tls_handshake_timeout, 5, errs).min(handshake_timeout);
    let max_connections_per_ip = f.max_connections_per_ip.unwrap_or(64);
    if max_connections_per_ip == 0 {
        errs.push("--max-connections-per-ip must be at least 1".into());
    }
    if !f.allow_name.is_empty() && !f.require_attested_client {
        errs.push(
            "--allow-name needs --require-attested-client (it names the attested clients \
             allowed)"
                .into(),
        );
    }
    let peer_names: Vec<String> = match side {
        Side::Client => f.verify_name.clone(),
        Side::Server => f.allow_name.clone(),
    };
    for name in &peer_names {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            errs.push(format!(
                "{} {name:?}: a DNS name or an IP address",
                if side == Side::Client {
                    "--verify-name"
                } else {
                    "--allow-name"
                }
            ));
        }
    }
    Limits {
        max_connections,
        max_connections_per_ip,
        tls_handshake_timeout,
        idle_timeout,
        handshake_timeout,
        drain_timeout,
        peer_names,
    }
}

/// The collateral plane peers' evidence is completed from (VCEKs, CRLs, TDX collateral).
///
/// It runs inside the handshake of the peer whose evidence lacks collateral, so a cold fetch
/// holds that handshake: the timeout is short and a `Retry-After` is waited out only briefly
/// (the next handshake tries again once the failure is forgotten); the download budget keeps
/// peers with made-up chip ids from turning the proxy against KDS.
fn collateral(f: &Flags) -> std::sync::Arc<ratls::collateral::CollateralClient> {
    let cfg = ratls::collateral::CollateralSettings {
        kds_url: f.kds_url.clone(),
        pcs_url: f.pcs_url.clone(),
        intel_root_crl_url: f.intel_root_crl_url.clone(),
        collateral_dir: f.collateral_dir.clone(),
        offline: f.offline,
        timeout: Some(PROXY_COLLATERAL_TIMEOUT_SECS),
        ..Default::default()
    }
    .config(None);
    std::sync::Arc::new(ratls::collateral::CollateralClient::new(
        ratls::collateral::CollateralConfig {
            max_retry_wait: Duration::from_secs(2),
            ..cfg
        },
    ))
}

/// Per-request timeout of the proxy's collateral downloads (they hold a handshake).
const PROXY_COLLATERAL_TIMEOUT_SECS: u64 = 10;

fn load_policy(
    side: Side,
    path: &Path,
    sim_root: Option<&Path>,
) -> Result<AttestationPolicy, String> {
    let base = ratls::Policy::from_file(path).map_err(|e| format!("--policy {e}"))?;
    let mut policy = match side {
        Side::Client => AttestationPolicy::for_server(base),
        Side::Server => AttestationPolicy::for_client(base),
    };
    if let Some(root) = sim_root {
        let ark = std::fs::read(root)
            .map_err(|e| format!("--insecure-sim-root {}: {e}", root.display()))?;
        ratls::tls::danger::trust_simulated_root(&mut policy, &ark);
    }
    Ok(policy)
}

/// What a policy pins beyond genuineness (launch measurements, registers, keys, identities); an
/// empty list means any genuine machine passes.
pub fn pins(p: &ratls::Policy) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut pin = |name: &'static str, set: bool| {
        if set {
            out.push(name);
        }
    };
    pin("snp.measurement", p.snp.measurement.is_some());
    pin("snp.host_data", p.snp.host_data.is_some());
    pin("snp.id_key_digest", p.snp.id_key_digest.is_some());
    pin("snp.author_key_digest", p.snp.author_key_digest.is_some());
    pin("snp.family_id", p.snp.family_id.is_some());
    pin("snp.image_id", p.snp.image_id.is_some());
    pin("tdx.mr_td", p.tdx.mr_td.is_some());
    pin(
        "tdx.rtmr",
        [&p.tdx.rtmr0, &p.tdx.rtmr1, &p.tdx.rtmr2, &p.tdx.rtmr3]
            .iter()
            .any(|r| r.is_some()),
    );
    pin(
        "tpm.pcrs",
        p.tpm
            .pcrs
            .values()
            .any(|v| !v.is_empty()),
    );
    pin(
        "tpm.ak",
        p.tpm.ak_name.is_some() || p.tpm.ak_sha256.is_some(),
    );
    pin("azure.vm_unique_id", p.azure.vm_unique_id.is_some());
    out
}

/// `IP:PORT`, `[v6]:PORT`, or `localhost:PORT`.
fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("not an address (IP:PORT): {e}"))?
        .next()
        .ok_or_else(|| "resolves to no address".into())
}

/// The host part of `HOST:PORT` (brackets removed), with a valid port.
fn split_host_port(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or("expected HOST:PORT")?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    Ok(host.to_owned())
}

fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn conflicts_are_all_reported() {
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("10.0.0.1:80".into()),
            cert: Some("c.pem".into()),
            policy: Some("p.json".into()),
            ..Flags::default()
        };
        let errs = check(Side::Server, &f).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("--unsafe-target")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("--cert needs --key")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("--policy in server mode needs --require-attested-client")),
            "{errs:?}"
        );
    }

    #[test]
    fn reattestation_needs_fresh_mode_a_peer_to_verify_and_an_interval() {
        let errs_of = |side, f: &Flags| check(side, f).unwrap_err();
        let has = |errs: &[String], text: &str| errs.iter().any(|e| e.contains(text));
        // Server mode without --require-attested-client verifies nobody.
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("127.0.0.1:80".into()),
            reattest_interval: Some(0),
            snapshot: Some("missing.snapshot".into()),
            ..Flags::default()
        };
        let errs = errs_of(Side::Server, &f);
        assert!(
            has(&errs, "--reattest-interval needs a peer to verify"),
            "{errs:?}"
        );
        assert!(has(&errs, "at least 1 second"), "{errs:?}");
        assert!(has(&errs, "--snapshot missing.snapshot"), "{errs:?}");
        // Certificate mode cannot be asked again; a timeout alone means nothing.
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("localhost:443".into()),
            mode: Some("certificate".into()),
            reattest_interval: Some(60),
            ..Flags::default()
        };
        let errs = errs_of(Side::Client, &f);
        assert!(
            has(&errs, "--reattest-interval needs --mode fresh"),
            "{errs:?}"
        );
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("localhost:443".into()),
            mode: Some("certificate".into()),
            snapshot: Some("s.snapshot".into()),
            ..Flags::default()
        };
        let errs = errs_of(Side::Client, &f);
        assert!(has(&errs, "--snapshot needs --mode fresh"), "{errs:?}");
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("localhost:443".into()),
            reattest_timeout: Some(5),
            ..Flags::default()
        };
        let errs = errs_of(Side::Client, &f);
        assert!(
            has(&errs, "--reattest-timeout applies to --reattest-interval"),
            "{errs:?}"
        );
    }

    #[test]
    fn client_needs_policy_and_attester_flags_need_attest_self() {
        let f = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("localhost:443".into()),
            tee: Some("sim".into()),
            ..Flags::default()
        };
        let errs = check(Side::Client, &f).unwrap_err();
        assert!(errs
            .iter()
            .any(|e| e.starts_with("client mode needs --policy")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("--tee needs --attest-self")));
    }

    #[test]
    fn tee_none_is_for_a_given_certificate_in_server_mode() {
        let base = Flags {
            listen: Some("127.0.0.1:0".into()),
            target: Some("127.0.0.1:80".into()),
            tee: Some("none".into()),
            ..Flags::default()
        };
        let errs = check(Side::Server, &base).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("--tee none is for server mode with --cert/--key")),
            "{errs:?}"
        );
        let with_cert = Flags {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            ..base
        };
        let s = check(Side::Server, &with_cert).unwrap();
        assert_eq!(s.attester.map(|a| a.tee), Some(TeeChoice::None));
    }

    #[test]
    fn unknown_config_key_is_named() {
        let err = toml::from_str::<Flags>("listen = \"127.0.0.1:1\"\nbogus-key = 1\n").unwrap_err();
        assert!(err.message().contains("bogus-key"), "{err}");
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("[::1]:80").unwrap(), "::1");
        assert!(is_loopback_host("::1"));
        assert!(!is_loopback_host("example.com"));
        assert!(split_host_port("a:0").is_err());
    }
}
