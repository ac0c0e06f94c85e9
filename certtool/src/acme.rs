//! `acme` and `renew`: RFC 8555 through `instant-acme` (ring only).
//!
//! Files in `--output` (created with mode 0700):
//! - `account.json` (0600): the ACME account's credentials (its private key) and directory URL,
//!   written when the account is created and reused by every later order and renewal;
//! - `key.pem` (0600): the certificate's ECDSA P-256 key, generated in this process;
//! - `cert.pem` (0644): the full chain, leaf first;
//! - `settings.json` (0600): what `renew` needs (domains, e-mail, directory, challenge, root CA);
//!   private because a `--dns-01-hook` command often carries a DNS provider's API token (a
//!   `renew` finding an older, wider-open one narrows it to 0600 before reading it).
//!
//! `key.pem`, `cert.pem` and `settings.json` are staged and renamed together only once the CA
//! issued a certificate for our key: an order that fails leaves them as they were.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, ChallengeType, Error as AcmeError, Identifier, LetsEncrypt,
    NewAccount, NewOrder, Order, OrderStatus, Problem, RetryPolicy,
};
use rcgen::PublicKeyData;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::cli::{AcmeArgs, ChallengeArgs, RenewArgs};
use crate::http01::Responder;
use crate::{Failure, EXIT_OK};
use ratls::fsutil::{create_dir, write_all_atomic, write_atomic, PUBLIC_MODE, SECRET_MODE};

const ACCOUNT_FILE: &str = "account.json";
const SETTINGS_FILE: &str = "settings.json";
const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";

/// How the challenges are answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Challenge {
    /// HTTP-01, served by us on this address.
    Http01(String),
    /// DNS-01, the user sets the record and presses Enter.
    Dns01Manual,
    /// DNS-01, a command sets the record.
    Dns01Hook(String),
}

impl Challenge {
    fn from_args(args: &ChallengeArgs) -> Option<Self> {
        if let Some(addr) = &args.http_01 {
            Some(Self::Http01(addr.clone()))
        } else if args.dns_01_manual {
            Some(Self::Dns01Manual)
        } else {
            args.dns_01_hook
                .clone()
                .map(Self::Dns01Hook)
        }
    }

    fn kind(&self) -> ChallengeType {
        match self {
            Self::Http01(_) => ChallengeType::Http01,
            Self::Dns01Manual | Self::Dns01Hook(_) => ChallengeType::Dns01,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Http01(_) => "http-01",
            Self::Dns01Manual | Self::Dns01Hook(_) => "dns-01",
        }
    }
}

/// What an order needs; saved as `settings.json` for renewals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    domains: Vec<String>,
    email: String,
    directory: String,
    challenge: Challenge,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_ca: Option<PathBuf>,
}

/// `account.json`: the account's credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub async fn run_acme(args: AcmeArgs) -> Result<u8, Failure> {
    let directory = match (&args.directory, args.staging) {
        (Some(url), _) => url.clone(),
        (None, true) => LetsEncrypt::Staging.url().to_owned(),
        (None, false) => LetsEncrypt::Production.url().to_owned(),
    };
    let email = args
        .email
        .strip_prefix("mailto:")
        .unwrap_or(&args.email)
        .to_owned();
    if email.is_empty() || !email.contains('@') || email.contains(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "--email {:?} is not an e-mail address",
            args.email
        )));
    }
    for d in &args.domains {
        check_domain(d)?;
    }
    let root_ca = match &args.root_ca {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .map_err(|e| Failure::usage(format!("--root-ca {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let settings = Settings {
        domains: args.domains.clone(),
        email,
        directory,
        challenge: Challenge::from_args(&args.challenge)
            .unwrap_or_else(|| Challenge::Http01("0.0.0.0:80".to_owned())),
        root_ca,
    };
    order_certificate(&settings, &args.output, args.timeout).await
}

pub async fn run_renew(args: RenewArgs) -> Result<u8, Failure> {
    let path = args.output.join(SETTINGS_FILE);
    narrow_to_secret_mode(&path)?;
    let text = std::fs::read(&path).map_err(|e| {
        Failure::usage(format!(
            "{}: {e} (renew works on a directory written by `cosmian_certtool acme`)",
            path.display()
        ))
    })?;
    let mut settings: Settings = serde_json::from_slice(&text)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    if let Some(c) = Challenge::from_args(&args.challenge) {
        settings.challenge = c;
    }
    let cert_path = args.output.join(CERT_FILE);
    if !args.force {
        match std::fs::read(&cert_path) {
            Ok(pem) => {
                let chain = ratls::pki::Cert::many_from_der_or_pem(&pem)
                    .map_err(|e| Failure::usage(format!("{}: {e}", cert_path.display())))?;
                let leaf = chain.first().ok_or_else(|| {
                    Failure::usage(format!("{}: no certificate", cert_path.display()))
                })?;
                let (not_before, not_after) = leaf.validity();
                let now = ratls::UnixTime::now();
                match renewal_due(not_before.as_secs(), not_after.as_secs(), now.as_secs()) {
                    Due::No { due_at } => {
                        println!(
                            "{}: valid until {not_after}; renewal is due from {} (a third of \
                             the lifetime left): nothing to do (--force renews now)",
                            cert_path.display(),
                            ratls::UnixTime::from_secs(due_at)
                        );
                        return Ok(EXIT_OK);
                    }
                    Due::Yes => tracing::info!(
                        path = %cert_path.display(),
                        "{} expires {not_after}: less than a third of its \
                         lifetime left, renewing",
                        cert_path.display()
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(
                    path = %cert_path.display(),
                    "no {}: ordering a certificate",
                    cert_path.display()
                );
            }
            Err(e) => return Err(Failure::usage(format!("{}: {e}", cert_path.display()))),
        }
    }
    order_certificate(&settings, &args.output, args.timeout).await
}

/// `settings.json` written by an older version was 0644 (world-readable, with the hook's API
/// token in it): narrow it to 0600 before anything else. A missing file is left to the caller.
fn narrow_to_secret_mode(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure::usage(format!("{}: {e}", path.display()))),
    };
    if mode & !SECRET_MODE != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SECRET_MODE)).map_err(
            |e| {
                Failure::usage(format!(
                    "{}: cannot narrow mode {mode:o} to 0600: {e}",
                    path.display()
                ))
            },
        )?;
        tracing::warn!(
            path = %path.display(),
            "{} was mode {mode:o} (it may hold a --dns-01-hook API token): \
             now 0600",
            path.display()
        );
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Due {
    Yes,
    No { due_at: u64 },
}

/// Renew when less than a third of the lifetime `[not_before, not_after]` is left at `now`.
fn renewal_due(not_before: u64, not_after: u64, now: u64) -> Due {
    let lifetime = not_after.saturating_sub(not_before);
    let due_at = not_after.saturating_sub(lifetime / 3);
    if now >= due_at {
        Due::Yes
    } else {
        Due::No { due_at }
    }
}

fn check_domain(d: &str) -> Result<(), Failure> {
    if d.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = d.strip_prefix("*.").unwrap_or(d);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--domain {d:?} is not a DNS name or IP address"
        )))
    }
}

fn acme_failure(what: &str, e: &AcmeError) -> Failure {
    Failure::failed(format!("{what}: {}", describe(e)))
}

fn describe(e: &AcmeError) -> String {
    match e {
        AcmeError::Api(p) => problem_text(p),
        other => other.to_string(),
    }
}

fn problem_text(p: &Problem) -> String {
    let mut s = p
        .detail
        .clone()
        .unwrap_or_else(|| "no detail given".to_owned());
    if let Some(t) = &p.r#type {
        s.push_str(&format!(" ({t})"));
    }
    for sub in &p.subproblems {
        s.push_str(&format!("; {sub}"));
    }
    s
}

fn builder(settings: &Settings) -> Result<instant_acme::AccountBuilder, Failure> {
    match &settings.root_ca {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| Failure::usage(format!("root CA {}: {}", root.display(), describe(&e)))),
        None => Account::builder()
            .map_err(|e| Failure::usage(format!("the HTTPS client: {}", describe(&e)))),
    }
}

/// The account in `dir/account.json`, or a new one (saved there at once).
async fn account(settings: &Settings, dir: &Path) -> Result<Account, Failure> {
    let path = dir.join(ACCOUNT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let saved: SavedAccount = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            if saved.directory != settings.directory {
                return Err(Failure::usage(format!(
                    "{} holds an account of {}, not of {}: use another --output",
                    path.display(),
                    saved.directory,
                    settings.directory
                )));
            }
            let account = builder(settings)?
                .from_credentials(saved.credentials)
                .await
                .map_err(|e| {
                    acme_failure(&format!("restoring the account of {}", path.display()), &e)
                })?;
            tracing::info!(
                path = %path.display(),
                "ACME account {} (from {})",
                account.id(),
                path.display()
            );
            Ok(account)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let contact = format!("mailto:{}", settings.email);
            let (account, credentials) = builder(settings)?
                .create(
                    &NewAccount {
                        contact: &[&contact],
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    settings.directory.clone(),
                    None,
                )
                .await
                .map_err(|e| {
                    acme_failure(
                        &format!("creating an account on {}", settings.directory),
                        &e,
                    )
                })?;
            let json = serde_json::to_vec_pretty(&SavedAccount {
                directory: settings.directory.clone(),
                credentials,
            })
            .map_err(|e| Failure::usage(format!("serialising the account: {e}")))?;
            write_atomic(&path, &json, SECRET_MODE)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            tracing::info!(
                path = %path.display(),
                "created ACME account {} on {} (terms of service agreed), \
                 saved in {}",
                account.id(),
                settings.directory,
                path.display()
            );
            Ok(account)
        }
        Err(e) => Err(Failure::usage(format!("{}: {e}", path.display()))),
    }
}

async fn order_certificate(settings: &Settings, dir: &Path, timeout: u64) -> Result<u8, Failure> {
    create_dir(dir, 0o700).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    // Bind the responder first: a busy port is a local error, found before talking to the CA.
    let responder = match &settings.challenge {
        Challenge::Http01(addr) => Some(
            Responder::start(addr)
                .await
                .map_err(|e| Failure::usage(format!("--http-01 {addr}: cannot listen: {e}")))?,
        ),
        _ => None,
    };
    if let Some(r) = &responder {
        tracing::info!(
            addr = %r.local_addr,
            "answering HTTP-01 challenges on {}",
            r.local_addr
        );
    }
    let account = account(settings, dir).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| acme_failure("creating the order", &e))?;
    answer_challenges(&mut order, settings, responder.as_ref()).await?;

    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(timeout));
    let name = settings.challenge.name();
    match order.poll_ready(&retry).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            let why = validation_failure(&mut order).await;
            return Err(Failure::failed(format!(
                "the order failed validation ({name}; order {status:?}): {why}"
            )));
        }
        Err(AcmeError::Api(p)) => {
            let why = validation_failure(&mut order).await;
            let why = if why.is_empty() {
                problem_text(&p)
            } else {
                why
            };
            return Err(Failure::failed(format!(
                "the order failed validation ({name}): {why}"
            )));
        }
        Err(AcmeError::Timeout(_)) => {
            return Err(Failure::failed(format!(
                "the CA did not validate the {name} challenges within {timeout} s"
            )))
        }
        Err(e) => return Err(acme_failure("waiting for validation", &e)),
    }
    drop(responder);

    // The certificate's key: generated here, written only into `dir`.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Failure::usage(format!("generating the key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(settings.domains.clone())
        .map_err(|e| Failure::usage(format!("the certificate request: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Failure::usage(format!("the certificate request: {e}")))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| acme_failure("finalizing the order", &e))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| acme_failure("downloading the certificate", &e))?;

    let chain = ratls::pki::Cert::many_from_der_or_pem(chain_pem.as_bytes())
        .map_err(|e| Failure::failed(format!("the CA sent an unreadable chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Failure::failed("the CA sent no certificate"))?;
    if leaf.spki_der() != key.subject_public_key_info().as_slice() {
        return Err(Failure::failed(
            "the CA's certificate is not for the key we generated",
        ));
    }
    let settings_json = serde_json::to_vec_pretty(settings)
        .map_err(|e| Failure::usage(format!("serialising the settings: {e}")))?;
    let key_pem = key.serialize_pem();
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    let settings_path = dir.join(SETTINGS_FILE);
    write_all_atomic(&[
        (&key_path, key_pem.as_bytes(), SECRET_MODE),
        (&cert_path, chain_pem.as_bytes(), PUBLIC_MODE),
        // The --dns-01-hook command may carry an API token.
        (&settings_path, &settings_json, SECRET_MODE),
    ])
    .map_err(|e| Failure::usage(format!("writing into {}: {e}", dir.display())))?;
    let (_, not_after) = leaf.validity();
    println!(
        "certificate for {} issued by {} (valid until {not_after}, {} certificate(s) in the \
         chain): {} (key: {}, mode 0600)",
        settings.domains.join(", "),
        leaf.issuer_cn(),
        chain.len(),
        cert_path.display(),
        key_path.display()
    );
    Ok(EXIT_OK)
}

/// Set up each pending authorization's challenge and tell the CA it is ready.
async fn answer_challenges(
    order: &mut Order,
    settings: &Settings,
    responder: Option<&Responder>,
) -> Result<(), Failure> {
    let kind = settings.challenge.kind();
    let name = settings.challenge.name();
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(|e| acme_failure("fetching an authorization", &e))?;
        let ident = authz.identifier().to_string();
        match authz.status {
            instant_acme::AuthorizationStatus::Pending => {}
            instant_acme::AuthorizationStatus::Valid => continue,
            other => {
                return Err(Failure::failed(format!(
                    "the authorization for {ident} is {other:?}"
                )))
            }
        }
        let base = match authz.identifier().identifier {
            Identifier::Dns(d) => d.clone(),
            other => format!("{}", other.authorized(false)),
        };
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| {
                Failure::failed(format!("the CA offers no {name} challenge for {ident}"))
            })?;
        let key_auth = challenge.key_authorization();
        match &settings.challenge {
            Challenge::Http01(_) => {
                if let Some(r) = responder {
                    r.add(&challenge.token, key_auth.as_str());
                }
            }
            Challenge::Dns01Manual => {
                let record = format!("_acme-challenge.{base}.");
                println!("Set this DNS record for {ident}, then press Enter:");
                println!("{record} 300 IN TXT \"{}\"", key_auth.dns_value());
                wait_for_enter().await?;
            }
            Challenge::Dns01Hook(cmd) => {
                let record = format!("_acme-challenge.{base}.");
                run_hook(cmd, &record, &key_auth.dns_value(), &ident).await?;
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| acme_failure(&format!("{name} challenge for {ident}"), &e))?;
    }
    Ok(())
}

async fn wait_for_enter() -> Result<(), Failure> {
    let mut line = String::new();
    let n = tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    if n == 0 {
        return Err(Failure::usage(
            "stdin closed before the DNS record was confirmed (press Enter once it is set)",
        ));
    }
    Ok(())
}

async fn run_hook(cmd: &str, record: &str, value: &str, ident: &str) -> Result<(), Failure> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CERTTOOL_DNS_NAME", record)
        .env("CERTTOOL_DNS_VALUE", value)
        .env("CERTTOOL_DOMAIN", ident)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| Failure::usage(format!("--dns-01-hook: cannot run sh: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "--dns-01-hook failed for {record} ({status})"
        )))
    }
}

/// Why the challenges failed, from the authorizations' challenge errors.
async fn validation_failure(order: &mut Order) -> String {
    let mut lines = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        let ident = state.identifier().to_string();
        for ch in &state.challenges {
            if let Some(problem) = &ch.error {
                lines.push(format!(
                    "{} challenge for {ident}: {}",
                    challenge_name(&ch.r#type),
                    problem_text(problem)
                ));
            }
        }
    }
    lines.join("; ")
}

fn challenge_name(t: &ChallengeType) -> String {
    match t {
        ChallengeType::Http01 => "http-01".to_owned(),
        ChallengeType::Dns01 => "dns-01".to_owned(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_in_the_last_third() {
        // 90 days: due from day 60.
        let day = 86_400;
        assert_eq!(
            renewal_due(0, 90 * day, 59 * day),
            Due::No { due_at: 60 * day }
        );
        assert_eq!(renewal_due(0, 90 * day, 60 * day), Due::Yes);
        assert_eq!(renewal_due(0, 90 * day, 100 * day), Due::Yes);
    }

    #[test]
    fn domains_are_checked() {
        assert!(check_domain("example.com").is_ok());
        assert!(check_domain("*.example.com").is_ok());
        assert!(check_domain("127.0.0.1").is_ok());
        assert!(check_domain("bad domain").is_err());
        assert!(check_domain("-x.com").is_err());
        assert!(check_domain("").is_err());
    }
}
