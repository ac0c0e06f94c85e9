//! The collateral plane (feature `collateral`): what a verifier needs from AMD and Intel besides
//! the evidence itself, fetched, cached and handed to the verifiers.
//!
//! | item | source | cache key (what it certifies) | valid until |
//! | --- | --- | --- | --- |
//! | VCEK | AMD KDS `GET /vcek/v1/{product}/{hwid}?blSPL=..` | product, chip id, reported TCB | `notAfter` |
//! | SEV-SNP CRL | AMD KDS `GET /{vcek,vlek}/v1/{product}/crl` | product, key kind | `nextUpdate` |
//! | VCEK on Azure | Azure THIM (`thim_url`, inside the VM only) | the host's current VCEK | `notAfter` |
//! | TDX TCB info | Intel PCS v4 / PCCS `GET /tdx/certification/v4/tcb?fmspc=` + `TCB-Info-Issuer-Chain` | FMSPC | `nextUpdate` |
//! | TDX QE identity | `GET /tdx/certification/v4/qe/identity` + `SGX-Enclave-Identity-Issuer-Chain` | TD_QE | `nextUpdate` |
//! | PCK CRL | `GET /sgx/certification/v4/pckcrl?ca=..&encoding=der` + `SGX-PCK-CRL-Issuer-Chain` | CA (platform, processor) | `nextUpdate` |
//! | Intel root CA CRL | PCCS `GET /sgx/certification/v4/rootcacrl`, else Intel's `IntelSGXRootCA.der` | the root CA | `nextUpdate` |
//!
//! Rules:
//! - Nothing fetched is trusted for being fetched: the verifiers check every signature, chain to
//!   the pinned AMD/Intel roots, and every validity window, exactly as for collateral that came
//!   with the evidence or from a file. The plane only fills in what the evidence lacks.
//! - An item is served from the cache while it is valid and further than
//!   [`CollateralConfig::refresh_ahead`] from its expiry; inside that margin it is refetched,
//!   and if that fails the cached copy is used until it expires.
//! - HTTP 429/503 are retried after `Retry-After` when the wait is within
//!   [`CollateralConfig::max_retry_wait`]; every response has a timeout and a size cap.
//! - [`CollateralConfig::offline`]: the cache and the files given on the command line only.
//!   Missing items then fail at a named step (`collateral.vcek`, `collateral.tdx`).
//! - Time is the verification time ("as of"), so old evidence is checked against what was
//!   valid then.
//!
//! [`CollateralClient::complete`] fills a bundle's [`TeeEvidence`] in place and returns the
//! steps it took as [`Check`]s, for the verdict. Blocking: async callers use `spawn_blocking`.

mod amd;
mod cache;
mod http;
mod intel;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use self::cache::{Cache, Entry};
use crate::attest::{AttestError, TeeAttester, TeeKind};
use crate::binding::ReportData;
use crate::bundle::TeeEvidence;
use crate::time::UnixTime;
use crate::verdict::Check;

/// AMD's Key Distribution Service.
pub const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";
/// Intel's Provisioning Certification Service (API v4); a PCCS has the same API.
pub const DEFAULT_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX root CA's CRL (the root certificate's CRL distribution point).
pub const DEFAULT_INTEL_ROOT_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// Azure's Trusted Hardware Identity Management endpoint (reachable from inside an Azure VM).
pub const DEFAULT_THIM_URL: &str = "http://169.254.169.254/metadata/THIM/amd/certification";
/// Azure's TD quote endpoint: a TD report in, the host's quote over it out (inside the VM).
pub const DEFAULT_AZURE_TDQUOTE_URL: &str = "http://169.254.169.254/acc/tdquote";

/// Where collateral comes from and how hard the plane tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralConfig {
    /// AMD KDS base URL.
    pub kds_url: String,
    /// Intel PCS v4 or PCCS base URL (without `/sgx/certification/v4`).
    pub pcs_url: String,
    /// The Intel root CA CRL, when the PCS does not serve it (Intel's PCS does not; a PCCS does).
    pub intel_root_crl_url: String,
    /// Azure THIM (used by [`CollateralClient::thim_vcek`], inside an Azure VM).
    pub thim_url: String,
    /// Azure's TD quote endpoint ([`CollateralClient::azure_td_quote`], inside an Azure VM).
    pub azure_tdquote_url: String,
    /// The on-disk cache; `None`: no cache (every item is downloaded).
    pub cache_dir: Option<PathBuf>,
    /// Use the cache and given files only: no network.
    pub offline: bool,
    /// The whole exchange of one request (connect, headers, body).
    pub timeout: Duration,
    /// The largest response body accepted.
    pub max_response: usize,
    /// Refetch items this close to their expiry.
    pub refresh_ahead: Duration,
    /// The longest `Retry-After` waited out.
    pub max_retry_wait: Duration,
    /// Attempts per request when the server answers 429/503.
    pub max_attempts: u32,
    /// Downloads allowed per minute (a token bucket of this size, refilled continuously). A
    /// verifier facing unauthenticated peers (the proxy with attested clients) completes
    /// evidence those peers chose: without a budget, reports with made-up chip ids would make
    /// it ask KDS again and again.
    pub max_fetches_per_minute: u32,
}

impl Default for CollateralConfig {
    fn default() -> Self {
        Self {
            kds_url: DEFAULT_KDS_URL.to_owned(),
            pcs_url: DEFAULT_PCS_URL.to_owned(),
            intel_root_crl_url: DEFAULT_INTEL_ROOT_CRL_URL.to_owned(),
            thim_url: DEFAULT_THIM_URL.to_owned(),
            azure_tdquote_url: DEFAULT_AZURE_TDQUOTE_URL.to_owned(),
            cache_dir: default_cache_dir(),
            offline: false,
            timeout: Duration::from_secs(20),
            max_response: 2 * 1024 * 1024,
            refresh_ahead: Duration::from_secs(24 * 3600),
            max_retry_wait: Duration::from_secs(60),
            max_attempts: 4,
            max_fetches_per_minute: 60,
        }
    }
}

/// The collateral plane as a configuration file or flags give it: every field optional (the
/// defaults of [`CollateralConfig`] apply). The agent's `[collateral]` table, the proxy's flags
/// and TOML keys, certtool's and the CLI's flags all map into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollateralSettings {
    pub kds_url: Option<String>,
    pub pcs_url: Option<String>,
    pub intel_root_crl_url: Option<String>,
    pub thim_url: Option<String>,
    pub azure_tdquote_url: Option<String>,
    /// The cache directory (`--collateral-dir`).
    #[serde(alias = "cache-dir")]
    pub collateral_dir: Option<PathBuf>,
    pub offline: bool,
    /// Per-request timeout in seconds.
    pub timeout: Option<u64>,
}

impl CollateralSettings {
    /// The configuration: these settings over the defaults, the cache in `default_cache` when
    /// none is set (`None`: the per-user default, [`default_cache_dir`]).
    pub fn config(&self, default_cache: Option<PathBuf>) -> CollateralConfig {
        let d = CollateralConfig::default();
        CollateralConfig {
            kds_url: self
                .kds_url
                .clone()
                .unwrap_or(d.kds_url),
            pcs_url: self
                .pcs_url
                .clone()
                .unwrap_or(d.pcs_url),
            intel_root_crl_url: self
                .intel_root_crl_url
                .clone()
                .unwrap_or(d.intel_root_crl_url),
            thim_url: self
                .thim_url
                .clone()
                .unwrap_or(d.thim_url),
            azure_tdquote_url: self
                .azure_tdquote_url
                .clone()
                .unwrap_or(d.azure_tdquote_url),
            cache_dir: self
                .collateral_dir
                .clone()
                .or(default_cache)
                .or(d.cache_dir),
            offline: self.offline,
            timeout: self
                .timeout
                .map_or(d.timeout, |s| Duration::from_secs(s.max(1))),
            ..d
        }
    }

    /// A client for these settings.
    pub fn client(&self, default_cache: Option<PathBuf>) -> Arc<CollateralClient> {
        Arc::new(CollateralClient::new(self.config(default_cache)))
    }
}

/// `$XDG_CACHE_HOME/cosmian_vm/collateral`, else `~/.cache/cosmian_vm/collateral`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(
        base.join("cosmian_vm")
            .join("collateral"),
    )
}

/// Why an item could not be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: HTTP {status}: {why}")]
    RateLimited {
        url: String,
        status: u16,
        why: String,
    },
    #[error("{url}: response larger than {limit} bytes, cut off")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: unusable response: {why}")]
    Malformed { url: String, why: String },
    #[error("offline: {what} is not in the cache ({cache}) and was not given")]
    Offline { what: String, cache: String },
    #[error(
        "{url}: not asked: this verifier's download budget ({per_minute} per minute) is spent"
    )]
    Budget { url: String, per_minute: u32 },
    #[error("{0}")]
    Unsupported(String),
}

/// Where an item came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Downloaded now.
    Fetched,
    /// From the cache.
    Cache,
    /// From the cache because the refresh failed (the copy is still valid).
    CacheAfterFailedRefresh(String),
}

/// Requests made and cache hits, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct Stats {
    pub fetched: AtomicU64,
    pub cache_hits: AtomicU64,
}

/// The collateral plane's client. Cheap to share (`Arc`); blocking.
#[derive(Debug)]
pub struct CollateralClient {
    cfg: CollateralConfig,
    cache: Option<Cache>,
    http: Option<http::Http>,
    stats: Stats,
    /// Entries already read or fetched by this client (the disk cache's hot copy).
    memo: Mutex<HashMap<String, Entry>>,
    /// Items that could not be obtained, and until when (wall clock) not to ask again.
    failed: Mutex<HashMap<String, (u64, CollateralError)>>,
    /// Assembled TDX collateral by (FMSPC, CA), with the earliest expiry of its parts.
    pub(crate) tdx_memo: Mutex<HashMap<(String, String), AssembledTdx>>,
    /// (FMSPC, CA) by SHA-256 of a quote's PCK chain, so a warm verification parses no X.509.
    pub(crate) pck_ids: Mutex<HashMap<[u8; 32], (String, &'static str)>>,
    /// The download budget: tokens left and when they were last counted.
    budget: Mutex<(f64, std::time::Instant)>,
}

/// The most entries each in-memory map holds; past it the map starts over (the disk cache
/// stays), so peers choosing what is looked up cannot grow the verifier's memory.
pub const MAX_MEMO_ENTRIES: usize = 4096;

/// Insert into a bounded in-memory map ([`MAX_MEMO_ENTRIES`]): past the bound the map starts
/// over. Public for the tests.
pub fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, key: K, value: V) {
    let mut map = map
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_MEMO_ENTRIES && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

/// Assembled TDX collateral JSON and the earliest `nextUpdate` of its parts.
pub(crate) type AssembledTdx = (Vec<u8>, Option<u64>);

/// How long a failed item is not asked for again by the same client (a proxy or agent verifying
/// many peers must not hammer KDS/PCS for a CRL it does not serve).
pub const FAILURE_TTL: Duration = Duration::from_secs(300);

/// Checks a response (body, kept headers) and says when it expires (seconds since the epoch).
pub(crate) type Validate<'a> =
    &'a dyn Fn(&[u8], &[(String, String)]) -> Result<Option<u64>, String>;

/// One item to obtain.
pub(crate) struct Item<'a> {
    /// Human name ("VCEK for Milan chip 0a1b…").
    pub what: String,
    /// Cache key.
    pub key: String,
    pub url: String,
    pub request_headers: &'a [(&'a str, &'a str)],
    /// Checks the response and says when it expires (seconds since the epoch).
    pub validate: Validate<'a>,
}

impl CollateralClient {
    pub fn new(cfg: CollateralConfig) -> Self {
        let cfg_budget = cfg.max_fetches_per_minute;
        let cache = cfg.cache_dir.clone().map(Cache::new);
        let http = (!cfg.offline).then(|| http::Http::new(&cfg));
        Self {
            cfg,
            cache,
            http,
            stats: Stats::default(),
            memo: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            tdx_memo: Mutex::new(HashMap::new()),
            pck_ids: Mutex::new(HashMap::new()),
            budget: Mutex::new((f64::from(cfg_budget), std::time::Instant::now())),
        }
    }

    pub fn config(&self) -> &CollateralConfig {
        &self.cfg
    }

    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats
                .fetched
                .load(Ordering::Relaxed),
            self.stats
                .cache_hits
                .load(Ordering::Relaxed),
        )
    }

    /// Obtain one item: cache, network, or the cached copy when the refresh fails.
    pub(crate) fn obtain(
        &self,
        item: &Item<'_>,
        now: UnixTime,
    ) -> Result<(Entry, Origin), CollateralError> {
        let now = now.as_secs();
        let remembered = self
            .memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&item.key)
            .cloned();
        let cached = match remembered {
            Some(entry) => Some(entry),
            None => {
                let from_disk = self
                    .cache
                    .as_ref()
                    .and_then(|c| c.get(&item.key));
                if let Some(entry) = &from_disk {
                    self.remember(&item.key, entry);
                }
                from_disk
            }
        };
        let ahead = self.cfg.refresh_ahead.as_secs();
        let still_valid = |e: &Entry| e.expires_at.is_none_or(|exp| now < exp);
        if let Some(entry) = &cached {
            let fresh = entry
                .expires_at
                .is_none_or(|exp| now.saturating_add(ahead) < exp);
            if fresh || self.cfg.offline {
                self.stats
                    .cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Ok((entry.clone(), Origin::Cache));
            }
        }
        let Some(http) = &self.http else {
            return Err(CollateralError::Offline {
                what: item.what.clone(),
                cache: self.cache_name(),
            });
        };
        let wall = UnixTime::now().as_secs();
        if cached.is_none() {
            let failed = self
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((until, error)) = failed.get(&item.url) {
                if wall < *until {
                    return Err(error.clone());
                }
            }
        }
        let fetched = self
            .spend_budget(&item.url)
            .and_then(|()| http.get(&item.url, item.request_headers))
            .and_then(|r| {
                r.ok_or_else(|| CollateralError::NotFound {
                    url: item.url.clone(),
                })
            })
            .and_then(|r| {
                let expires = (item.validate)(&r.body, &r.headers).map_err(|why| {
                    CollateralError::Malformed {
                        url: item.url.clone(),
                        why,
                    }
                })?;
                Ok((r, expires))
            });
        match fetched {
            Ok((response, expires_at)) => {
                self.stats
                    .fetched
                    .fetch_add(1, Ordering::Relaxed);
                let mut entry = Entry::new(&item.url, wall, expires_at, response.body);
                entry.headers = response.headers;
                if let Some(cache) = &self.cache {
                    // A cache that cannot be written costs a download next time, nothing more.
                    if let Err(e) = cache.put(&item.key, &entry) {
                        tracing::debug!(url = %item.url, "collateral cache not written: {e}");
                    }
                }
                self.remember(&item.key, &entry);
                Ok((entry, Origin::Fetched))
            }
            Err(e) => match cached {
                Some(entry) if still_valid(&entry) => {
                    self.stats
                        .cache_hits
                        .fetch_add(1, Ordering::Relaxed);
                    Ok((entry, Origin::CacheAfterFailedRefresh(e.to_string())))
                }
                _ => {
                    // A spent budget is not the item's fault: ask again when there is budget.
                    if !matches!(e, CollateralError::Budget { .. }) {
                        bounded_insert(
                            &self.failed,
                            item.url.clone(),
                            (wall.saturating_add(FAILURE_TTL.as_secs()), e.clone()),
                        );
                    }
                    Err(e)
                }
            },
        }
    }

    fn remember(&self, key: &str, entry: &Entry) {
        bounded_insert(&self.memo, key.to_owned(), entry.clone());
    }

    /// Take one download from the budget, or say it is spent.
    fn spend_budget(&self, url: &str) -> Result<(), CollateralError> {
        let per_minute = self.cfg.max_fetches_per_minute;
        let mut budget = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = &mut *budget;
        let now = std::time::Instant::now();
        let refill = now.duration_since(*last).as_secs_f64() * f64::from(per_minute) / 60.0;
        *tokens = (*tokens + refill).min(f64::from(per_minute));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(CollateralError::Budget {
                url: url.to_owned(),
                per_minute,
            })
        }
    }

    fn cache_name(&self) -> String {
        self.cache.as_ref().map_or_else(
            || "no cache directory".to_owned(),
            |c| c.dir().display().to_string(),
        )
    }

    /// Fill in what `tee` lacks (the VCEK and CRL of an SEV-SNP report, the PCS collateral of a
    /// TDX quote) and return the steps taken, as checks for the verdict: a failed one when an
    /// item the verification cannot do without could not be obtained.
    pub fn complete(&self, tee: &mut TeeEvidence, now: UnixTime) -> Vec<Check> {
        match tee {
            TeeEvidence::SevSnp {
                report,
                vcek,
                vlek,
                crl,
                ..
            } => amd::complete(self, report, vcek, vlek.is_some(), crl, now),
            TeeEvidence::AzureSnp {
                hcl_report,
                vcek,
                crl,
                ..
            } => match crate::azure::HclReport::parse(hcl_report) {
                Ok(hcl) => match &hcl.hw_report {
                    crate::azure::HwReport::Snp(report) => {
                        amd::complete(self, report.as_bytes(), vcek, false, crl, now)
                    }
                    crate::azure::HwReport::Tdx(_) => Vec::new(),
                },
                // The verifier reports the parse error at its own step.
                Err(_) => Vec::new(),
            },
            TeeEvidence::Tdx { quote, collateral } => intel::complete(self, quote, collateral, now),
            TeeEvidence::AzureTdx {
                quote: Some(quote),
                collateral,
                ..
            } => intel::complete(self, quote, collateral, now),
            _ => Vec::new(),
        }
    }

    /// The host's TDX quote over `td_report` (the HCL report's 1024-byte TD report), from
    /// Azure's quote endpoint (inside an Azure TDX VM only): `POST {"report": base64url}` →
    /// `{"quote": base64url}`.
    pub fn azure_td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, CollateralError> {
        use base64::Engine as _;
        let url = self.cfg.azure_tdquote_url.clone();
        let Some(http) = &self.http else {
            return Err(CollateralError::Offline {
                what: "the TD quote (Azure)".to_owned(),
                cache: "never cached: a quote is made per report".to_owned(),
            });
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = serde_json::to_vec(&serde_json::json!({ "report": b64.encode(td_report) }))
            .map_err(|e| CollateralError::Malformed {
                url: url.clone(),
                why: e.to_string(),
            })?;
        let answer = http.post_json(&url, &body)?;
        #[derive(serde::Deserialize)]
        struct Answer {
            quote: String,
        }
        let malformed = |why: String| CollateralError::Malformed {
            url: url.clone(),
            why,
        };
        let answer: Answer =
            serde_json::from_slice(&answer).map_err(|e| malformed(format!("JSON: {e}")))?;
        let text = answer.quote.trim_end_matches('=');
        b64.decode(text)
            .map_err(|e| malformed(format!("quote is not base64url: {e}")))
    }

    /// The VCEK, its chain and TCB from Azure THIM (inside an Azure VM only).
    pub fn thim_vcek(&self, now: UnixTime) -> Result<amd::ThimCerts, CollateralError> {
        amd::thim(self, now)
    }
}

pub use self::amd::ThimCerts;

/// A DER (or PEM, or hex text) CRL's `nextUpdate`.
/// Parsed by the same CRL parser the verifiers use (`pki::Crl`).
pub(crate) fn crl_next_update(body: &[u8]) -> Result<Option<u64>, String> {
    let crl = crate::pki::Crl::from_der(&crl_der(body)?).map_err(|e| format!("CRL: {e}"))?;
    Ok(crl.next_update().map(UnixTime::as_secs))
}

/// A CRL as DER, from DER, PEM (`X509 CRL`) or hex text (what a PCCS serves).
pub(crate) fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| "neither DER, PEM nor hex".to_owned())?;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        let pem = pem::parse(text).map_err(|e| format!("PEM: {e}"))?;
        return Ok(pem.into_contents());
    }
    hex::decode(text).map_err(|_| "neither DER, PEM nor hex".to_owned())
}

impl crate::bundle::CollateralSource for CollateralClient {
    fn complete(&self, tee: &mut TeeEvidence, now: UnixTime) -> Vec<Check> {
        CollateralClient::complete(self, tee, now)
    }
}

/// A [`TeeAttester`] whose evidence leaves with the collateral it needs (the agent's optional
/// fetching: the VM then serves the VCEK, the CRL or the PCS collateral with its evidence, and
/// the verifier needs no network; it still checks every signature and pins the roots).
/// When an item cannot be obtained the evidence goes out without it and the verifier fetches it.
#[derive(Debug)]
pub struct WithCollateral {
    inner: Arc<dyn TeeAttester>,
    client: Arc<CollateralClient>,
    /// Use Azure THIM for the VCEK (Azure SEV-SNP VMs).
    thim: bool,
}

impl WithCollateral {
    pub fn new(inner: Arc<dyn TeeAttester>, client: Arc<CollateralClient>) -> Self {
        let thim = inner.kind() == TeeKind::AzureSnp;
        Self {
            inner,
            client,
            thim,
        }
    }
}

impl TeeAttester for WithCollateral {
    fn kind(&self) -> TeeKind {
        self.inner.kind()
    }

    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        let mut evidence = self.inner.attest(report_data)?;
        let now = UnixTime::now();
        if let TeeEvidence::AzureTdx {
            hcl_report,
            quote: quote @ None,
            ..
        } = &mut evidence
        {
            // The paravisor's TD report sits right after the HCL header; the host quotes it.
            let td_report = crate::azure::HclReport::parse(hcl_report)
                .ok()
                .filter(|h| matches!(h.hw_report, crate::azure::HwReport::Tdx(_)))
                .and_then(|_| {
                    hcl_report.get(
                        crate::azure::report::HEADER_LEN
                            ..crate::azure::report::HEADER_LEN
                                + crate::azure::report::TD_REPORT_LEN,
                    )
                });
            if let Some(td_report) = td_report {
                if let Ok(q) = self.client.azure_td_quote(td_report) {
                    *quote = Some(q.into());
                }
            }
        }
        if self.thim {
            if let TeeEvidence::AzureSnp { vcek, chain, .. } = &mut evidence {
                if vcek.is_none() {
                    if let Ok(certs) = self.client.thim_vcek(now) {
                        *vcek = Some(certs.vcek.into());
                        *chain = Some(certs.chain.into());
                    }
                }
            }
        }
        // Best effort: the checks only matter to a verifier, which redoes what is missing.
        for check in self.client.complete(&mut evidence, now) {
            if !check.ok {
                tracing::debug!("collateral not attached to our evidence: {check}");
            }
        }
        Ok(evidence)
    }

    fn binds_report_data(&self) -> bool {
        self.inner.binds_report_data()
    }
}
