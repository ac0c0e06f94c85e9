//! What the backend learns about the verified peer: the attestation summary, the PROXY protocol
//! v2 header with our TLVs, and the HTTP request-head rewriter (`docs/proxy.md` has the layouts).

use std::net::{IpAddr, SocketAddr};

use ratls::bundle::{BindingLevel, Freshness};
use ratls::tls::AttestationPolicy;
use ratls::{Claims, Verdict};
use serde::Serialize;

/// PROXY v2 TLV: the negotiated ALPN (spec type).
pub const PP2_TYPE_ALPN: u8 = 0x01;
/// PROXY v2 TLV: TLS information (spec type), with sub-TLVs.
pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_CLIENT_SSL: u8 = 0x01;
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// Ours: the verified peer's attestation, a JSON [`Summary`].
pub const PP2_TYPE_COSMIAN_ATTESTATION: u8 = 0xE0;
/// Ours: the signed attestation result (EAR, a JWT in ASCII), with `--ear-jwks`.
pub const PP2_TYPE_COSMIAN_EAR: u8 = 0xE2;
/// Ours: the verdict in one ASCII word: `trusted` (the peer proved itself against the policy) or
/// `none` (it was not asked to).
pub const PP2_TYPE_COSMIAN_VERDICT: u8 = 0xE1;

/// The PROXY protocol v2 signature.
pub const PP2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The verified peer's attestation, as the backend sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `trusted` (always: untrusted peers are refused before any byte is forwarded).
    pub verdict: String,
    pub platform: String,
    /// The launch measurement (SEV-SNP MEASUREMENT, TDX MRTD), lower-case hex.
    pub measurement: Option<String>,
    /// `session` (fresh mode) or `key` (certificate mode).
    pub binding: Option<String>,
    /// `challenge` (fresh mode) or `time-window`.
    pub freshness: Option<String>,
    /// SHA-256 of the policy the evidence satisfied.
    pub policy_sha256: String,
    /// SHA-256 of the evidence (CMW bytes).
    pub evidence_sha256: Option<String>,
    /// The role the peer attested as (`client`, `server`).
    pub role: Option<String>,
    /// True when the evidence came from the simulated TEE (never production trust).
    pub simulated: bool,
    /// Batched fresh evidence: how many sessions shared the TEE report and TPM quote
    /// (absent when the evidence was made for this session or certificate alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    /// This proxy's identifier of the connection, as its audit log records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The signed attestation result (`--ear-jwks`): its own TLV and header, not in the JSON.
    #[serde(skip)]
    pub ear: Option<String>,
}

impl Summary {
    pub fn new(verdict: &Verdict, policy: &AttestationPolicy) -> Self {
        let bundle = match &verdict.claims {
            Claims::Bundle(b) => Some(b),
            _ => None,
        };
        Self {
            verdict: verdict.outcome().to_string(),
            platform: verdict.platform.to_string(),
            measurement: bundle
                .and_then(|b| b.tee.as_ref())
                .and_then(measurement),
            binding: bundle
                .and_then(|b| b.binding)
                .map(|b| match b {
                    BindingLevel::Key => "key".to_owned(),
                    BindingLevel::Session => "session".to_owned(),
                    #[allow(unreachable_patterns)]
                    other => format!("{other:?}").to_lowercase(),
                }),
            freshness: bundle
                .and_then(|b| b.freshness)
                .map(|f| match f {
                    Freshness::Challenge => "challenge".to_owned(),
                    Freshness::TimeWindow { .. } => "time-window".to_owned(),
                    #[allow(unreachable_patterns)]
                    other => format!("{other:?}").to_lowercase(),
                }),
            policy_sha256: hex::encode(policy.digest()),
            evidence_sha256: bundle.map(|b| b.evidence_sha256.clone()),
            role: bundle.map(|b| b.role.clone()),
            simulated: verdict.simulated,
            batch_size: bundle
                .and_then(|b| b.batch.as_ref())
                .map(|b| b.size),
            connection_id: None,
            ear: None,
        }
    }

    /// The same, naming the connection (`--audit-log` records it under this id).
    pub fn with_connection_id(mut self, id: &str) -> Self {
        self.connection_id = Some(id.to_owned());
        self
    }

    /// The HTTP headers (`X-Attestation-*`) for this summary.
    pub fn headers(this: Option<&Self>) -> Vec<(&'static str, String)> {
        let Some(s) = this else {
            return vec![("X-Attestation-Verdict", "none".into())];
        };
        let mut h = vec![
            ("X-Attestation-Verdict", s.verdict.clone()),
            ("X-Attestation-Platform", s.platform.clone()),
        ];
        let mut opt = |name, v: &Option<String>| {
            if let Some(v) = v {
                h.push((name, v.clone()));
            }
        };
        opt("X-Attestation-Measurement", &s.measurement);
        opt("X-Attestation-Binding", &s.binding);
        opt("X-Attestation-Freshness", &s.freshness);
        opt("X-Attestation-Evidence-Sha256", &s.evidence_sha256);
        opt("X-Attestation-Role", &s.role);
        opt(
            "X-Attestation-Batch-Size",
            &s.batch_size.map(|n| n.to_string()),
        );
        opt("X-Attestation-Connection-Id", &s.connection_id);
        opt("X-Attestation-EAR", &s.ear);
        h.push(("X-Attestation-Policy-Sha256", s.policy_sha256.clone()));
        h.push((
            "X-Attestation-Simulated",
            if s.simulated { "true" } else { "false" }.into(),
        ));
        h
    }
}

fn measurement(tee: &Claims) -> Option<String> {
    match tee {
        Claims::Snp(s) => Some(s.measurement.clone()),
        Claims::Tdx(t) => Some(t.mr_td.clone()),
        Claims::Azure(a) => a.tee.as_ref().and_then(measurement),
        _ => None,
    }
}

/// What the PROXY v2 header says about the TLS side.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub alpn: Option<Vec<u8>>,
    /// The peer presented a certificate (mutual TLS).
    pub peer_cert: bool,
}

/// A PROXY protocol v2 header (command PROXY, TCP) for `src` → `dst`, with the ALPN, SSL and our
/// attestation TLVs.
pub fn proxy_v2(
    src: SocketAddr,
    dst: SocketAddr,
    tls: &TlsInfo,
    summary: Option<&Summary>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (s, d) => {
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
            0x21
        }
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    if let Some(alpn) = &tls.alpn {
        tlv(&mut body, PP2_TYPE_ALPN, alpn);
    }
    // PP2_TYPE_SSL: client flags, verify (0 = the peer's certificate/evidence checked out or none
    // was asked for), then the version sub-TLV.
    let mut ssl = vec![
        PP2_CLIENT_SSL
            | if tls.peer_cert {
                PP2_CLIENT_CERT_CONN
            } else {
                0
            },
    ];
    ssl.extend_from_slice(&0u32.to_be_bytes());
    tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3");
    tlv(&mut body, PP2_TYPE_SSL, &ssl);
    tlv(
        &mut body,
        PP2_TYPE_COSMIAN_VERDICT,
        if summary.is_some() {
            b"trusted"
        } else {
            b"none"
        },
    );
    if let Some(s) = summary {
        // Invariant: plain strings and booleans always serialise.
        let json = serde_json::to_vec(s).unwrap_or_default();
        tlv(&mut body, PP2_TYPE_COSMIAN_ATTESTATION, &json);
        if let Some(ear) = &s.ear {
            tlv(&mut body, PP2_TYPE_COSMIAN_EAR, ear.as_bytes());
        }
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&PP2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    out.push(family);
    // Our TLVs are small (a few hundred bytes); the length always fits.
    out.extend_from_slice(
        &u16::try_from(body.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.extend_from_slice(
        &u16::try_from(value.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(
        value
            .get(..usize::from(u16::MAX))
            .unwrap_or(value),
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 request heads

/// The largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

/// Why a request stream cannot be framed safely: the client gets `400 Bad Request` and the
/// connection is closed. Names the step, what was expected and what the client presented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("http-headers: request refused at {step}: expected {expected}, presented {presented}")]
pub struct HttpError {
    /// `http.head`, `http.request_line`, `http.method`, `http.version`, `http.header`,
    /// `http.content_length`, `http.transfer_encoding`, `http.framing`, `http.body`,
    /// `http.upgrade`, `http.chunk`, `http.trailer`.
    pub step: &'static str,
    pub expected: String,
    pub presented: String,
}

fn herr(
    step: &'static str,
    expected: impl Into<String>,
    presented: impl Into<String>,
) -> HttpError {
    HttpError {
        step,
        expected: expected.into(),
        presented: presented.into(),
    }
}

/// Bytes as the client sent them, escaped and cut, for an error message.
fn shown(bytes: &[u8]) -> String {
    const MAX_SHOWN: usize = 80;
    let cut = bytes.get(..MAX_SHOWN).unwrap_or(bytes);
    let mut text: String = cut
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if cut.len() < bytes.len() {
        text.push('…');
    }
    format!("\"{text}\"")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
}

/// Rewrites every request head on a connection: drops client-sent headers that fold to one of
/// ours (`X-Attestation-*`, any case, `_` or `-`) and adds ours; bodies (Content-Length or
/// chunked) pass through byte for byte. Anything it cannot frame with certainty fails the
/// connection: see [`HttpError`] and `docs/proxy.md`.
#[derive(Debug)]
pub struct RequestRewriter {
    ours: Vec<u8>,
    state: State,
    buf: Vec<u8>,
}

impl RequestRewriter {
    pub fn new(headers: &[(&'static str, String)]) -> Self {
        let mut ours = Vec::new();
        for (name, value) in headers {
            ours.extend_from_slice(name.as_bytes());
            ours.extend_from_slice(b": ");
            // Our values are hex, words and platform names: no CR/LF possible, but be sure.
            ours.extend(
                value
                    .bytes()
                    .filter(|b| *b != b'\r' && *b != b'\n'),
            );
            ours.extend_from_slice(b"\r\n");
        }
        Self {
            ours,
            state: State::Head,
            buf: Vec::new(),
        }
    }

    /// Feed bytes from the client; appends what to send to the backend now. After an error
    /// nothing more may be fed: the connection is to be closed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), HttpError> {
        // Fast path: body bytes with nothing buffered go straight through.
        let mut input = input;
        if self.buf.is_empty() {
            if let State::Fixed(n) | State::ChunkData(n) = self.state {
                let take = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (now, rest) = input
                    .split_at_checked(take)
                    .unwrap_or((input, &[]));
                out.extend_from_slice(now);
                self.advance_body(take as u64);
                input = rest;
            }
        }
        self.buf.extend_from_slice(input);
        loop {
            let progressed = self.step(out)?;
            if !progressed {
                return Ok(());
            }
        }
    }

    fn advance_body(&mut self, n: u64) {
        self.state = match self.state {
            State::Fixed(left) if left <= n => State::Head,
            State::Fixed(left) => State::Fixed(left - n),
            State::ChunkData(left) if left <= n => State::ChunkEnd,
            State::ChunkData(left) => State::ChunkData(left - n),
            other => other,
        };
    }

    /// Consume one unit from the buffer; false when more input is needed.
    fn step(&mut self, out: &mut Vec<u8>) -> Result<bool, HttpError> {
        match self.state {
            State::Fixed(n) | State::ChunkData(n) => {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                let take = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                out.extend(self.buf.drain(..take));
                self.advance_body(take as u64);
                Ok(true)
            }
            State::Head => {
                // Tolerate empty lines before a request (RFC 9112 section 2.2).
                while self.buf.starts_with(b"\r\n") {
                    self.buf.drain(..2);
                }
                let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                    if self.buf.len() > MAX_HEAD {
                        return Err(herr(
                            "http.head",
                            format!("a request head of at most {MAX_HEAD} bytes"),
                            format!("{} bytes without an end", self.buf.len()),
                        ));
                    }
                    return Ok(false);
                };
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                let body = rewrite_head(&head, &self.ours, out)?;
                self.state = match body {
                    Body::None => State::Head,
                    Body::Length(n) => State::Fixed(n),
                    Body::Chunked => State::ChunkSize,
                };
                Ok(true)
            }
            State::ChunkSize => {
                let Some(line) = self.take_line("http.chunk")? else {
                    return Ok(false);
                };
                let (size_text, ext) = match line.iter().position(|b| *b == b';') {
                    Some(i) => line.split_at(i),
                    None => (line.as_slice(), &[][..]),
                };
                let valid = !size_text.is_empty()
                    && size_text.len() <= 16
                    && size_text
                        .iter()
                        .all(u8::is_ascii_hexdigit)
                    && ext
                        .iter()
                        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b));
                let size = std::str::from_utf8(size_text)
                    .ok()
                    .filter(|_| valid)
                    .and_then(|t| u64::from_str_radix(t, 16).ok())
                    .ok_or_else(|| {
                        herr(
                            "http.chunk",
                            "a chunk size in hex (at most 16 digits, no sign or space) and \
                             printable extensions",
                            shown(&line),
                        )
                    })?;
                out.extend_from_slice(&line);
                out.extend_from_slice(b"\r\n");
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
                Ok(true)
            }
            State::ChunkEnd => {
                if self.buf.len() < 2 {
                    return Ok(false);
                }
                if !self.buf.starts_with(b"\r\n") {
                    return Err(herr(
                        "http.chunk",
                        "CRLF after the chunk data",
                        shown(self.buf.get(..2).unwrap_or_default()),
                    ));
                }
                self.buf.drain(..2);
                out.extend_from_slice(b"\r\n");
                self.state = State::ChunkSize;
                Ok(true)
            }
            State::Trailers => {
                let Some(line) = self.take_line("http.trailer")? else {
                    return Ok(false);
                };
                if line.is_empty() {
                    out.extend_from_slice(b"\r\n");
                    self.state = State::Head;
                    return Ok(true);
                }
                let (name, _) = header_line("http.trailer", &line)?;
                if !is_ours(name) {
                    out.extend_from_slice(&line);
                    out.extend_from_slice(b"\r\n");
                }
                Ok(true)
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF), if complete.
    fn take_line(&mut self, step: &'static str) -> Result<Option<Vec<u8>>, HttpError> {
        match find(&self.buf, b"\r\n") {
            Some(end) => {
                let mut line: Vec<u8> = self.buf.drain(..end + 2).collect();
                line.truncate(end);
                if line.contains(&b'\n') || line.contains(&b'\r') {
                    return Err(herr(step, "lines ending with CRLF only", shown(&line)));
                }
                Ok(Some(line))
            }
            None if self.buf.len() > MAX_LINE => Err(herr(
                step,
                format!("a line of at most {MAX_LINE} bytes"),
                format!("{} bytes without CRLF", self.buf.len()),
            )),
            None => Ok(None),
        }
    }
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
}

/// A header name as backends may see it: ASCII lower case, `_` read as `-` (CGI/WSGI turn both
/// into `HTTP_X_ATTESTATION_VERDICT`).
fn folded(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|b| match b {
            b'_' => b'-',
            b => b.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether a header name is one of ours to set (`X-Attestation-*` after folding).
fn is_ours(name: &[u8]) -> bool {
    folded(name).starts_with(b"x-attestation")
}

/// Methods whose requests carry no body here: one framed with a body is refused (a backend
/// that ignores the body would read it as the next request).
const BODYLESS: [&[u8]; 6] = [b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT"];

/// Split a header (or trailer) line into a valid name and its trimmed value: the name is a
/// token with nothing between it and the colon, the value has no control byte but HTAB, and
/// the line does not start with whitespace (obsolete folding).
fn header_line<'a>(step: &'static str, line: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), HttpError> {
    if line
        .first()
        .is_some_and(|b| *b == b' ' || *b == b'\t')
    {
        return Err(herr(
            step,
            "no obsolete line folding (a line starting with whitespace)",
            shown(line),
        ));
    }
    let colon = line
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| herr(step, "NAME: VALUE", shown(line)))?;
    let (name, value) = line.split_at(colon);
    let value = value.get(1..).unwrap_or_default();
    if name.is_empty()
        || !name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
    {
        return Err(herr(
            step,
            "a header name made of token characters, directly followed by the colon",
            shown(name),
        ));
    }
    if value
        .iter()
        .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
    {
        return Err(herr(
            step,
            "a header value without control characters",
            shown(line),
        ));
    }
    Ok((name, trim_ows(value)))
}

/// Rewrite one head (ending with CRLF CRLF) into `sink`; returns how the body is framed. On
/// error nothing is appended: no part of a refused head reaches the backend.
fn rewrite_head(head: &[u8], ours: &[u8], sink: &mut Vec<u8>) -> Result<Body, HttpError> {
    let mut out = Vec::with_capacity(head.len() + ours.len());
    let text = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or_else(|| herr("http.head", "a head ending with CRLF CRLF", shown(head)))?;
    // Every line of `text` must end with CRLF (the last one's CRLF was stripped above).
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = text;
    loop {
        match find(rest, b"\r\n") {
            Some(i) => {
                lines.push(rest.get(..i).unwrap_or_default());
                rest = rest.get(i + 2..).unwrap_or_default();
            }
            None => {
                lines.push(rest);
                break;
            }
        }
    }
    for line in &lines {
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(herr(
                "http.head",
                "lines ending with CRLF only (no bare CR or LF)",
                shown(line),
            ));
        }
    }
    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = request_line
        .split(|b| *b == b' ')
        .collect();
    let &[method, target, version] = parts.as_slice() else {
        return Err(herr(
            "http.request_line",
            "METHOD SP TARGET SP VERSION",
            shown(request_line),
        ));
    };
    if target.is_empty()
        || target
            .iter()
            .any(|b| *b <= b' ' || *b == 0x7f)
    {
        return Err(herr(
            "http.request_line",
            "a request target without spaces or control characters",
            shown(request_line),
        ));
    }
    if !matches!(version, b"HTTP/1.1" | b"HTTP/1.0") {
        return Err(herr("http.version", "HTTP/1.1 or HTTP/1.0", shown(version)));
    }
    if method.eq_ignore_ascii_case(b"CONNECT") {
        return Err(herr(
            "http.method",
            "a method other than CONNECT (tunnels cannot be framed)",
            shown(method),
        ));
    }
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
    {
        return Err(herr(
            "http.method",
            "an upper-case method token",
            shown(method),
        ));
    }
    out.extend_from_slice(request_line);
    out.extend_from_slice(b"\r\n");
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for line in lines {
        let (name, value) = header_line("http.header", line)?;
        let fold = folded(name);
        if fold.starts_with(b"x-attestation") {
            continue;
        }
        if fold == b"content-length" || fold == b"transfer-encoding" {
            let canonical = if fold == b"content-length" {
                &b"content-length"[..]
            } else {
                &b"transfer-encoding"[..]
            };
            if !name.eq_ignore_ascii_case(canonical) {
                return Err(herr(
                    "http.header",
                    format!(
                        "framing headers spelt {} (a backend may read this one as framing)",
                        String::from_utf8_lossy(canonical)
                    ),
                    shown(name),
                ));
            }
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return Err(herr(
                    "http.content_length",
                    "one Content-Length header",
                    format!("a second one: {}", shown(value)),
                ));
            }
            let v = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    herr(
                        "http.content_length",
                        "a decimal number of at most 19 digits",
                        shown(value),
                    )
                })?;
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(herr(
                    "http.transfer_encoding",
                    "one Transfer-Encoding header",
                    format!("a second one: {}", shown(value)),
                ));
            }
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(herr(
                    "http.transfer_encoding",
                    "exactly \"chunked\"",
                    shown(value),
                ));
            }
            transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            return Err(herr(
                "http.upgrade",
                "no Upgrade (the rewriter cannot follow a protocol switch)",
                shown(value),
            ));
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(ours);
    out.extend_from_slice(b"\r\n");
    if transfer_encoding.is_some() && version == b"HTTP/1.0" {
        return Err(herr(
            "http.transfer_encoding",
            "no Transfer-Encoding in an HTTP/1.0 request",
            "Transfer-Encoding: chunked",
        ));
    }
    let bodyless = BODYLESS.contains(&method);
    let body = match (length, transfer_encoding) {
        (Some(n), Some(_)) => {
            return Err(herr(
                "http.framing",
                "Content-Length or Transfer-Encoding, not both",
                format!("Content-Length: {n} and Transfer-Encoding: chunked"),
            ))
        }
        (_, Some(_)) => Body::Chunked,
        (Some(0) | None, None) => Body::None,
        (Some(n), None) => Body::Length(n),
    };
    if bodyless && !matches!(body, Body::None) {
        return Err(herr(
            "http.body",
            format!(
                "no body on {} (no Transfer-Encoding, no Content-Length but 0)",
                String::from_utf8_lossy(method)
            ),
            match (length, transfer_encoding) {
                (_, Some(_)) => "Transfer-Encoding: chunked".to_owned(),
                (n, None) => format!("Content-Length: {}", n.unwrap_or(0)),
            },
        ));
    }
    sink.extend_from_slice(&out);
    Ok(body)
}

/// The answer to a request the rewriter refused, before the connection is closed.
pub fn bad_request(e: &HttpError) -> Vec<u8> {
    let body = format!("{e}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn run(input: &[&[u8]]) -> Result<Vec<u8>, HttpError> {
        let mut r = RequestRewriter::new(&[("X-Attestation-Verdict", "none".into())]);
        let mut out = Vec::new();
        for chunk in input {
            r.feed(chunk, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn strips_and_adds_on_every_request() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nx-attestation-verdict: trusted\r\n\r\n\
                    POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\n\
                    X-Attestation-Platform: fake\r\n\r\n";
        // Byte by byte and all at once give the same result.
        let whole = run(&[req]).unwrap();
        let bytes: Vec<&[u8]> = req.chunks(1).collect();
        assert_eq!(run(&bytes).unwrap(), whole);
        let text = String::from_utf8(whole).unwrap();
        assert_eq!(
            text.matches("X-Attestation-Verdict: none\r\n")
                .count(),
            3
        );
        assert!(
            !text.contains("trusted") && !text.contains("fake"),
            "{text}"
        );
        assert!(text.contains("\r\n\r\nhelloGET /c"), "{text}");
    }

    #[test]
    fn chunked_bodies_are_framed() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nX-Att\r\n0\r\n\
                    X-Attestation-Verdict: trusted\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let text = String::from_utf8(run(&[req]).unwrap()).unwrap();
        assert!(
            text.contains("5\r\nX-Att\r\n0\r\n\r\nGET / HTTP/1.1\r\nX-Attestation-Verdict: none"),
            "{text}"
        );
        assert!(!text.contains("trusted"));
    }

    #[test]
    fn ambiguous_framing_fails_closed() {
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\nX-Attestation-Verdict: trusted\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n X-Attestation-Verdict: trusted\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\n\r\n",
            // A body where the method has none: a backend that ignores it reads the next request.
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"DELETE / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            // Repeated, signed, listed or oversized lengths; framing headers spelt otherwise.
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent_Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // Whitespace before the colon, control bytes, bare CR in the request line.
            b"GET / HTTP/1.1\r\nx-attestation-verdict : trusted\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
            b"GET /\r HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            // Chunk sizes a backend may read differently.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        ] {
            assert!(run(&[bad]).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn our_headers_are_stripped_in_every_spelling() {
        let req = b"POST / HTTP/1.1\r\nX_Attestation_Verdict: trusted\r\nx-ATTESTATION_verdict: \
                    trusted\r\nX-Attestation_Platform: fake\r\nContent-Length: 3\r\n\r\nabc\
                    POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\
                    X_attestation_verdict: trusted\r\n\r\n";
        let text = String::from_utf8(run(&[req]).unwrap()).unwrap();
        assert!(
            !text.contains("trusted") && !text.contains("fake"),
            "{text}"
        );
        assert_eq!(
            text.matches("X-Attestation-Verdict: none")
                .count(),
            2,
            "{text}"
        );
        // Bodies pass byte for byte.
        assert!(text.contains("\r\n\r\nabcPOST"), "{text}");
        assert!(text.contains("3\r\nabc\r\n0\r\n\r\n"), "{text}");
    }

    #[test]
    fn errors_name_step_expected_presented() {
        let err = run(&[b"GET / HTTP/1.1\r\nContent-Length: 59\r\n\r\n"]).unwrap_err();
        assert_eq!(err.step, "http.body");
        assert_eq!(
            err.to_string(),
            "http-headers: request refused at http.body: expected no body on GET (no \
             Transfer-Encoding, no Content-Length but 0), presented Content-Length: 59"
        );
        // Content-Length: 0 on a GET is no body.
        assert!(run(&[b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]).is_ok());
    }

    #[test]
    fn proxy_v2_layout() {
        let h = proxy_v2(
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.2:443".parse().unwrap(),
            &TlsInfo {
                alpn: Some(b"h2".to_vec()),
                peer_cert: false,
            },
            None,
        );
        assert_eq!(&h[..12], &PP2_SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
        assert_eq!(&h[16..20], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 1000);
        assert_eq!(&h[28..33], &[PP2_TYPE_ALPN, 0, 2, b'h', b'2']);
    }
}
