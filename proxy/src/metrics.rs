//! Counters, the `/status` JSON and the `/metrics` Prometheus text, served over plain HTTP on
//! `--status ADDR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ratls::tls::RotatingCert;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the attestation-latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused_cap: AtomicU64,
    /// Connections refused because their source address had `--max-connections-per-ip` open.
    pub connections_refused_per_ip: AtomicU64,
    /// Client → target (server mode: TLS client → backend; client mode: app → TLS server).
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub reloads_failed: AtomicU64,
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    failed_steps: Mutex<BTreeMap<String, u64>>,
    http_rejections: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Metrics {
    pub fn handshake(&self, outcome: &'static str) {
        *lock(&self.handshakes)
            .entry(outcome)
            .or_insert(0) += 1;
    }

    pub fn failed_step(&self, step: &str) {
        *lock(&self.failed_steps)
            .entry(step.to_owned())
            .or_insert(0) += 1;
    }

    /// A request the `http-headers` rewriter refused (400 and close), by step.
    pub fn http_rejected(&self, step: &'static str) {
        *lock(&self.http_rejections)
            .entry(step)
            .or_insert(0) += 1;
    }

    pub fn attestation_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, counter) in BUCKETS
            .iter()
            .zip(&self.latency_buckets)
        {
            if secs <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count
            .fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn set_error(&self, e: Option<String>) {
        *lock(&self.last_error) = e;
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            "cosmian_proxy_connections_total",
            "Connections accepted.",
            "counter",
            g(&self.connections_total),
        );
        counter(
            "cosmian_proxy_connections_open",
            "Connections open now.",
            "gauge",
            g(&self.connections_open),
        );
        counter(
            "cosmian_proxy_connections_refused_total",
            "Connections refused because --max-connections were open.",
            "counter",
            g(&self.connections_refused_cap),
        );
        counter(
            "cosmian_proxy_connections_refused_per_ip_total",
            "Connections refused because their source address had --max-connections-per-ip open.",
            "counter",
            g(&self.connections_refused_per_ip),
        );
        counter(
            "cosmian_proxy_idle_timeouts_total",
            "Connections closed by --idle-timeout.",
            "counter",
            g(&self.idle_timeouts),
        );
        counter(
            "cosmian_proxy_reload_failures_total",
            "Failed certificate reloads (the old certificate stayed).",
            "counter",
            g(&self.reloads_failed),
        );
        let _ = writeln!(
            out,
            "# HELP cosmian_proxy_bytes_total Bytes forwarded, by direction (up: client to \
             target).\n# TYPE cosmian_proxy_bytes_total counter\n\
             cosmian_proxy_bytes_total{{direction=\"up\"}} {}\n\
             cosmian_proxy_bytes_total{{direction=\"down\"}} {}",
            g(&self.bytes_up),
            g(&self.bytes_down)
        );
        let _ = writeln!(
            out,
            "# HELP cosmian_proxy_handshakes_total TLS handshakes and attestation exchanges, by \
             outcome.\n# TYPE cosmian_proxy_handshakes_total counter"
        );
        for (outcome, n) in lock(&self.handshakes).iter() {
            let _ = writeln!(
                out,
                "cosmian_proxy_handshakes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cosmian_proxy_rejections_total Peer evidence rejected, by the first failed \
             verification step.\n# TYPE cosmian_proxy_rejections_total counter"
        );
        for (step, n) in lock(&self.failed_steps).iter() {
            let step = step.replace(['"', '\\', '\n'], "_");
            let _ = writeln!(out, "cosmian_proxy_rejections_total{{step=\"{step}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP cosmian_proxy_http_rejections_total Requests refused by the http-headers \
             rewriter (400 and close), by step.\n# TYPE cosmian_proxy_http_rejections_total counter"
        );
        for (step, n) in lock(&self.http_rejections).iter() {
            let _ = writeln!(
                out,
                "cosmian_proxy_http_rejections_total{{step=\"{step}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cosmian_proxy_attestation_seconds Duration of the fresh attestation exchange.\n\
             # TYPE cosmian_proxy_attestation_seconds histogram"
        );
        for (bound, c) in BUCKETS
            .iter()
            .zip(&self.latency_buckets)
        {
            let _ = writeln!(
                out,
                "cosmian_proxy_attestation_seconds_bucket{{le=\"{bound}\"}} {}",
                g(c)
            );
        }
        let count = g(&self.latency_count);
        let sum = Duration::from_micros(g(&self.latency_sum_micros)).as_secs_f64();
        let _ = writeln!(
            out,
            "cosmian_proxy_attestation_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             cosmian_proxy_attestation_seconds_sum {sum}\n\
             cosmian_proxy_attestation_seconds_count {count}"
        );
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain counters: a poisoned lock still holds consistent data.
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// What `/status` reports besides the counters.
#[derive(Debug, Clone)]
pub struct StatusSources {
    pub metrics: Arc<Metrics>,
    /// The RA-TLS certificate this side presents, if any.
    pub rotating: Option<RotatingCert>,
}

impl StatusSources {
    pub fn status_json(&self) -> serde_json::Value {
        let now = ratls::UnixTime::now().as_secs();
        let rotation = self
            .rotating
            .as_ref()
            .map(RotatingCert::status);
        let rotation_error = rotation
            .as_ref()
            .and_then(|s| s.last_error.clone());
        let last_error = rotation_error
            .clone()
            .or_else(|| self.metrics.last_error());
        serde_json::json!({
            "ok": last_error.is_none(),
            "evidence_age_secs": rotation.as_ref().map(|s| now.saturating_sub(s.issued_at.as_secs())),
            "last_rotation": rotation.as_ref().map(|s| s.issued_at.to_string()),
            "rotations": rotation.as_ref().map(|s| s.rotations),
            "rotation_failures": rotation.as_ref().map(|s| s.failures),
            "evidence_sha256": rotation.as_ref().map(|s| s.evidence_sha256.clone()),
            "last_error": last_error,
            "connections_open": self.metrics.connections_open.load(Ordering::Relaxed),
            "connections_total": self.metrics.connections_total.load(Ordering::Relaxed),
        })
    }
}

/// Serve `/status` and `/metrics` (HTTP/1.0-style: one request per connection).
pub async fn serve(listener: TcpListener, sources: StatusSources) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut len = 0;
            let read = async {
                while len < buf.len() {
                    let Some(free) = buf.get_mut(len..) else {
                        break;
                    };
                    match sock.read(free).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf
                        .get(..len)
                        .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                    {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(buf.get(..len).unwrap_or_default());
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("");
            let (code, ctype, body) = match path {
                "/status" => (
                    "200 OK",
                    "application/json",
                    sources.status_json().to_string(),
                ),
                "/metrics" => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    sources.metrics.render(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain",
                    "try /status or /metrics\n".to_owned(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: \
                 close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
