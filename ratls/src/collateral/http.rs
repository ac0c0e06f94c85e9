//! The one HTTP GET the collateral plane makes: a timeout over the whole exchange, a size cap on
//! the body, and `429`/`503` answered by waiting out `Retry-After` (bounded) before trying again.

use std::time::Duration;

use super::{CollateralConfig, CollateralError};

/// A response the plane accepted: status 200, the body within the cap, the headers we keep.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub body: Vec<u8>,
    /// The issuer-chain headers Intel PCS/PCCS send (lower-case name, raw value).
    pub headers: Vec<(String, String)>,
}

/// The headers worth keeping from a collateral response.
const KEPT_HEADERS: [&str; 5] = [
    "sgx-pck-crl-issuer-chain",
    "tcb-info-issuer-chain",
    "sgx-tcb-info-issuer-chain",
    "sgx-enclave-identity-issuer-chain",
    "content-type",
];

/// The HTTP client: ureq (blocking, rustls on ring, Mozilla's roots compiled in).
pub(crate) struct Http {
    agent: ureq::Agent,
    max_response: usize,
    max_retry_wait: Duration,
    max_attempts: u32,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("max_response", &self.max_response)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl Http {
    pub fn new(cfg: &CollateralConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .max_redirects(3)
            .max_response_header_size(64 * 1024)
            .user_agent(concat!("cosmian-vm-ratls/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            max_response: cfg.max_response,
            max_retry_wait: cfg.max_retry_wait,
            max_attempts: cfg.max_attempts.max(1),
        }
    }

    /// GET `url` (with `extra` request headers): `Ok(Some)` on 200, `Ok(None)` on 404, an error
    /// otherwise. 429 and 503 are retried after `Retry-After` (or a short backoff) while the
    /// wait stays within the configured bound.
    pub fn get(
        &self,
        url: &str,
        extra: &[(&str, &str)],
    ) -> Result<Option<Response>, CollateralError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut request = self.agent.get(url);
            for (name, value) in extra {
                request = request.header(*name, *value);
            }
            let mut response = request
                .call()
                .map_err(|e| CollateralError::Http {
                    url: url.to_owned(),
                    why: e.to_string(),
                })?;
            let status = response.status().as_u16();
            match status {
                200 => {
                    let headers = response
                        .headers()
                        .iter()
                        .filter(|(n, _)| KEPT_HEADERS.contains(&n.as_str()))
                        .filter_map(|(n, v)| {
                            Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                        })
                        .collect();
                    let limit = u64::try_from(self.max_response).unwrap_or(u64::MAX);
                    let body = response
                        .body_mut()
                        .with_config()
                        .limit(limit)
                        .read_to_vec()
                        .map_err(|e| match e {
                            ureq::Error::BodyExceedsLimit(_) => CollateralError::TooLarge {
                                url: url.to_owned(),
                                limit: self.max_response,
                            },
                            other => CollateralError::Http {
                                url: url.to_owned(),
                                why: format!("reading the body: {other}"),
                            },
                        })?;
                    return Ok(Some(Response { body, headers }));
                }
                404 => return Ok(None),
                429 | 503 => {
                    let asked = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    // Without Retry-After: 1 s, 2 s, 4 s ...
                    let wait = asked.unwrap_or_else(|| {
                        Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5))
                    });
                    if wait > self.max_retry_wait {
                        return Err(CollateralError::RateLimited {
                            url: url.to_owned(),
                            status,
                            why: format!(
                                "the server asks to retry after {} s, longer than the {} s this \
                                 verifier waits",
                                wait.as_secs(),
                                self.max_retry_wait.as_secs()
                            ),
                        });
                    }
                    if attempt >= self.max_attempts {
                        return Err(CollateralError::RateLimited {
                            url: url.to_owned(),
                            status,
                            why: format!("still {status} after {attempt} attempts"),
                        });
                    }
                    std::thread::sleep(wait);
                }
                other => {
                    return Err(CollateralError::Status {
                        url: url.to_owned(),
                        status: other,
                    })
                }
            }
        }
    }
}

impl Http {
    /// POST a JSON body to `url` and read the JSON answer (status 200 only; no retries: the
    /// caller is an attester that retries on its own schedule).
    pub fn post_json(&self, url: &str, body: &[u8]) -> Result<Vec<u8>, CollateralError> {
        let mut response = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| CollateralError::Http {
                url: url.to_owned(),
                why: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(CollateralError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let limit = u64::try_from(self.max_response).unwrap_or(u64::MAX);
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| CollateralError::Http {
                url: url.to_owned(),
                why: format!("reading the body: {e}"),
            })
    }
}

/// `Retry-After`: delta-seconds, or an HTTP-date (RFC 9110), turned into a wait from now.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let secs = (when - now).whole_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// Decode a percent-encoded header value (Intel's issuer chains are URL-encoded PEM).
pub(crate) fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0AMII").unwrap(),
            "-----BEGIN CERTIFICATE-----\nMII"
        );
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }
}
