//! Attacks on the real `cosmian_vm_proxy` binary (black-box): request smuggling through the
//! `http-headers` rewriter, forged attestation headers, idle sockets that hold connection slots,
//! servers with the wrong name. Each test says what it proves; `docs/attacks-proxy.md` lists them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// A keep-alive backend that records every request it parses

/// One request as a naive keep-alive backend parsed it.
#[derive(Debug, Clone)]
struct Parsed {
    head: String,
    body: Vec<u8>,
}

/// What the backend got on one connection: every raw byte, and the requests it parsed.
#[derive(Debug, Clone, Default)]
struct RawConn {
    raw: Vec<u8>,
    requests: Vec<Parsed>,
}

/// A keep-alive HTTP/1.1 backend that is as exploitable as real ones: it ignores bodies on GET
/// and HEAD (what follows the head is the next request), and honours Content-Length or chunked
/// on other methods (Content-Length first when both are present). It answers each request
/// `200 OK` and records everything.
struct RawBackend {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Mutex<RawConn>>>>>,
}

impl RawBackend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<RawConn>>>>> = Arc::default();
        let all = conns.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let conn = Arc::new(Mutex::new(RawConn::default()));
                all.lock().unwrap().push(conn.clone());
                std::thread::spawn(move || serve_raw(sock, &conn));
            }
        });
        Self { addr, conns }
    }

    fn conns(&self) -> Vec<RawConn> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }

    fn requests(&self) -> Vec<Parsed> {
        self.conns()
            .into_iter()
            .flat_map(|c| c.requests)
            .collect()
    }

    /// Every byte the backend received, on every connection.
    fn raw(&self) -> String {
        self.raw_since(0)
    }

    /// Every byte the backend received on the connections after the first `n`.
    fn raw_since(&self, n: usize) -> String {
        self.conns()
            .iter()
            .skip(n)
            .map(|c| String::from_utf8_lossy(&c.raw).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim())
    })
}

/// Parse one request from `buf`; None when incomplete.
fn parse_one(buf: &[u8]) -> Option<(Parsed, usize)> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
    let method = head
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut at = end + 4;
    let mut body = Vec::new();
    if method != "GET" && method != "HEAD" {
        if let Some(len) = header(&head, "content-length") {
            let len: usize = len.parse().unwrap_or(0);
            if buf.len() < at + len {
                return None;
            }
            body.extend_from_slice(&buf[at..at + len]);
            at += len;
        } else if header(&head, "transfer-encoding").is_some_and(|v| {
            v.to_ascii_lowercase()
                .contains("chunked")
        }) {
            loop {
                let line_end = buf[at..]
                    .windows(2)
                    .position(|w| w == b"\r\n")?;
                let line = String::from_utf8_lossy(&buf[at..at + line_end]).into_owned();
                let size = usize::from_str_radix(
                    line.split(';')
                        .next()
                        .unwrap_or_default()
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                at += line_end + 2;
                if size == 0 {
                    // Trailers up to the blank line.
                    loop {
                        let l = buf[at..]
                            .windows(2)
                            .position(|w| w == b"\r\n")?;
                        at += l + 2;
                        if l == 0 {
                            break;
                        }
                    }
                    break;
                }
                if buf.len() < at + size + 2 {
                    return None;
                }
                body.extend_from_slice(&buf[at..at + size]);
                at += size + 2;
            }
        }
    }
    Some((Parsed { head, body }, at))
}

fn serve_raw(mut sock: TcpStream, conn: &Mutex<RawConn>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some((req, used)) = parse_one(&buf) {
            buf.drain(..used);
            conn.lock().unwrap().requests.push(req);
            if sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                conn.lock()
                    .unwrap()
                    .raw
                    .extend_from_slice(&chunk[..n]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A rustls client that sends raw bytes

/// A plain TLS 1.3 client (ALPN http/1.1, any certificate: an unattested stranger) that sends
/// `request` as is, then close_notify, and returns everything the proxy answered until it
/// closed.
fn tls_send(addr: SocketAddr, request: &[u8]) -> String {
    let mut config = rustls::ClientConfig::builder_with_provider(ratls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ratls::tls::danger::RecordAnyServerCert::new()))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn headers_proxy(machine: &Machine, backend: SocketAddr) -> Proxy {
    Proxy::start(
        "server",
        &cat(&[
            listen_args(backend),
            machine.attester_args(),
            vec!["--metadata".into(), "http-headers".into()],
        ]),
    )
}

/// The request an attacker hides: it claims the attestation verdict.
fn smuggled(marker: &str) -> String {
    format!("GET /{marker} HTTP/1.1\r\nHost: x\r\nX-Attestation-Verdict: trusted\r\n\r\n")
}

/// After a refused request: the client got a 400 naming the step, the backend got no byte of
/// the forged verdict (on the connections opened since `conns_before`) and never parsed the
/// hidden request.
fn assert_refused(
    answer: &str,
    step: &str,
    backend: &RawBackend,
    marker: &str,
    conns_before: usize,
) {
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{marker}: {answer}"
    );
    assert!(
        answer.contains(&format!("request refused at {step}: expected ")),
        "{marker}: {answer}"
    );
    assert!(answer.contains(", presented "), "{marker}: {answer}");
    assert!(
        !backend
            .requests()
            .iter()
            .any(|r| r.head.contains(marker)),
        "{marker}: the backend parsed the hidden request: {:?}",
        backend.requests()
    );
    let raw = backend.raw_since(conns_before);
    assert!(
        !raw.to_ascii_lowercase()
            .contains("trusted"),
        "{marker}: the forged verdict reached the backend: {raw}"
    );
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and forged headers (http-headers mode)

/// A GET whose Content-Length body is a second request carrying `X-Attestation-Verdict:
/// trusted`: before the fix the body went through and a keep-alive backend that ignores GET
/// bodies parsed it as a request from an attested client. Now: 400 at `http.body`, nothing
/// reaches the backend. The same bytes as the body of a POST (which has a body) pass as a body,
/// which shows the backend would have parsed a smuggled request as one.
#[test]
fn attack_proxy_smuggles_a_request_in_a_get_body() {
    let machine = Machine::new("smuggle-get");
    let backend = RawBackend::start();
    let server = headers_proxy(&machine, backend.addr);

    // Control: a POST carries the same bytes as its body; the backend sees one request.
    let body = smuggled("in-a-body");
    let post = format!(
        "POST /carrier HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = tls_send(server.addr, post.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0]
            .head
            .starts_with("POST /carrier"),
        "{reqs:?}"
    );
    assert!(
        reqs[0]
            .head
            .contains("X-Attestation-Verdict: none\r\n"),
        "{reqs:?}"
    );
    assert_eq!(reqs[0].body, body.as_bytes());

    // The attack: the same bytes after a GET head.
    let hidden = smuggled("smuggled-after-get");
    for (method, step) in [("GET", "http.body"), ("HEAD", "http.body")] {
        let before = backend.requests().len();
        let conns_before = backend.conns().len();
        let attack = format!(
            "{method} /carrier-{method} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{hidden}",
            hidden.len()
        );
        let answer = tls_send(server.addr, attack.as_bytes());
        assert!(
            answer.contains(&format!(
                "expected no body on {method} (no Transfer-Encoding, no Content-Length but 0), \
                 presented Content-Length: {}",
                hidden.len()
            )),
            "{answer}"
        );
        assert_refused(&answer, step, &backend, "smuggled-after-get", conns_before);
        assert_eq!(backend.requests().len(), before, "{:?}", backend.requests());
    }
    assert!(
        server.wait_log("request refused at http.body"),
        "{}",
        server.log()
    );
    assert_eq!(
        server.metric("cosmian_proxy_http_rejections_total{step=\"http.body\"}"),
        2
    );
}

/// Framing that a backend may read differently from the proxy (TE+CL, repeated or conflicting
/// lengths, transfer codings other than chunked, obfuscated or underscore framing headers,
/// whitespace before the colon, obsolete folding, bare LF): each is refused with a 400 naming
/// the step, and the hidden request with the forged verdict never reaches the backend.
#[test]
fn attack_proxy_smuggles_with_ambiguous_framing() {
    let machine = Machine::new("smuggle-framing");
    let backend = RawBackend::start();
    let server = headers_proxy(&machine, backend.addr);
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "te-cl",
            "http.framing",
            "POST /te-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "cl-te",
            "http.framing",
            "POST /cl-te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "cl-cl",
            "http.content_length",
            "POST /cl-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 60\r\n\r\n".into(),
        ),
        (
            "cl-same-twice",
            "http.content_length",
            "POST /cl-same-twice HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "te-xchunked",
            "http.transfer_encoding",
            "POST /te-xchunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n".into(),
        ),
        (
            "te-list",
            "http.transfer_encoding",
            "POST /te-list HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n".into(),
        ),
        (
            "te-twice",
            "http.transfer_encoding",
            "POST /te-twice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        ),
        (
            "te-underscore",
            "http.header",
            "POST /te-underscore HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "te-space-colon",
            "http.header",
            "POST /te-space-colon HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n".into(),
        ),
        (
            "obs-fold",
            "http.header",
            "POST /obs-fold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n Transfer-Encoding: chunked\r\n\r\n".into(),
        ),
        (
            "bare-lf",
            "http.head",
            "POST /bare-lf HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "get-chunked",
            "http.body",
            "GET /get-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "te-http10",
            "http.transfer_encoding",
            "POST /te-http10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
    ];
    for (marker, step, prefix) in &cases {
        let before = backend.requests().len();
        let conns_before = backend.conns().len();
        let attack = format!("{prefix}{}", smuggled(&format!("hidden-{marker}")));
        let answer = tls_send(server.addr, attack.as_bytes());
        assert_refused(
            &answer,
            step,
            &backend,
            &format!("hidden-{marker}"),
            conns_before,
        );
        assert_eq!(
            backend.requests().len(),
            before,
            "{marker}: {:?}",
            backend.requests()
        );
        assert!(
            !backend
                .requests()
                .iter()
                .any(|r| r.head.contains(&format!("/{marker} "))),
            "{marker}: the refused request itself reached the backend"
        );
    }
}

/// Chunked bodies: chunk data longer than its size (the excess would be a request), a chunk
/// size a backend may read differently, and forged verdicts in trailers or in a pipelined
/// request after a well-framed chunked body. The malformed ones are cut at the error (the
/// backend gets no byte of the hidden request); the well-framed pipeline reaches the backend as
/// exactly two requests, each with `X-Attestation-Verdict: none`.
#[test]
fn attack_proxy_smuggles_through_chunked_bodies() {
    let machine = Machine::new("smuggle-chunked");
    let backend = RawBackend::start();
    let server = headers_proxy(&machine, backend.addr);

    // Chunk data overruns its size: the excess is a request.
    let hidden = smuggled("hidden-overrun");
    let attack = format!(
        "POST /overrun HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello{hidden}\r\n0\r\n\r\n"
    );
    let answer = tls_send(server.addr, attack.as_bytes());
    assert_refused(&answer, "http.chunk", &backend, "hidden-overrun", 0);

    // Chunk sizes a backend may parse differently ("0x" prefix, trailing space, overflow).
    for (marker, size) in [
        ("hidden-0x", "0x5"),
        ("hidden-space", "5 "),
        ("hidden-overflow", "10000000000000005"),
    ] {
        let attack = format!(
            "POST /{marker}-carrier HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n{}",
            smuggled(marker)
        );
        let answer = tls_send(server.addr, attack.as_bytes());
        assert_refused(&answer, "http.chunk", &backend, marker, 0);
    }

    // Well-framed: a chunked body with a forged trailer, then a pipelined request with a forged
    // header. Both are requests of this (unattested) client: verdict none, forgeries dropped.
    let before = backend.requests().len();
    let pipeline = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\nX_Attestation_Verdict: trusted\r\n\r\n\
                    GET /next HTTP/1.1\r\nHost: x\r\nx-attestation-verdict: trusted\r\n\r\n";
    let answer = tls_send(server.addr, pipeline.as_bytes());
    assert_eq!(
        answer
            .matches("HTTP/1.1 200 OK")
            .count(),
        2,
        "{answer}"
    );
    let reqs = backend.requests();
    let new = &reqs[before..];
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new[0].head.starts_with("POST /chunked"), "{new:?}");
    assert_eq!(new[0].body, b"hello");
    assert!(new[1].head.starts_with("GET /next"), "{new:?}");
    for r in new {
        assert!(
            r.head
                .contains("X-Attestation-Verdict: none\r\n"),
            "{r:?}"
        );
    }
    assert!(
        !backend
            .raw()
            .to_ascii_lowercase()
            .contains("trusted"),
        "{}",
        backend.raw()
    );
}

/// Forged verdicts spelt so that a WSGI/CGI backend folds them onto ours (`X_Attestation_*`,
/// mixed `_`/`-`, any case), sent by curl: stripped, and the backend sees `none`. A name with
/// whitespace before the colon (`x-attestation-verdict :`) is refused with a 400.
#[test]
fn attack_proxy_forges_verdict_headers_with_underscores_and_case() {
    let machine = Machine::new("forge-underscore");
    let backend = RawBackend::start();
    let server = headers_proxy(&machine, backend.addr);
    let url = format!("https://127.0.0.1:{}/underscores", server.addr.port());
    let out = curl(&[
        "-k",
        "-H",
        "X_Attestation_Verdict: trusted",
        "-H",
        "x-attestation_verdict: trusted",
        "-H",
        "X-ATTESTATION-VERDICT: trusted",
        "-H",
        "X_ATTESTATION_MEASUREMENT: forged",
        "-H",
        "x_attestation_simulated: false",
        &url,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let head = &reqs[0].head;
    assert!(head.contains("X-Attestation-Verdict: none\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("trusted") && !lower.contains("forged"),
        "{head}"
    );
    assert_eq!(lower.matches("attestation").count(), 1, "{head}");

    // Whitespace before the colon: refused, not passed on for a lenient backend to trim.
    let answer = tls_send(
        server.addr,
        b"GET /space HTTP/1.1\r\nHost: x\r\nx-attestation-verdict : trusted\r\n\r\n",
    );
    assert_refused(&answer, "http.header", &backend, "/space", 0);
    assert_eq!(backend.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Connection slots

/// A TCP connection from `source` (a loopback address) to `to`, opened and left idle.
fn idle_from(source: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{source}:0").parse().unwrap())
            .unwrap();
        sock.connect(to)
            .await
            .unwrap()
            .into_std()
            .unwrap()
    })
}

/// How long until the proxy closes `sock` (EOF or reset), at most `limit`.
fn closed_after(mut sock: TcpStream, limit: Duration) -> Option<Duration> {
    sock.set_nonblocking(false).unwrap();
    let start = Instant::now();
    sock.set_read_timeout(Some(limit))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// Twelve idle sockets from one source (127.0.0.2) against `--max-connections 8`: only
/// `--max-connections-per-ip 3` of them are held, the rest are closed at once, and a legitimate
/// client (127.0.0.1) gets through at once, without waiting for any timeout. The held ones are
/// closed by `--tls-handshake-timeout 2`.
#[test]
fn attack_proxy_idle_sockets_from_one_source_do_not_block_others() {
    let machine = Machine::new("per-ip");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            machine.attester_args(),
            vec![
                "--max-connections".into(),
                "8".into(),
                "--max-connections-per-ip".into(),
                "3".into(),
                "--tls-handshake-timeout".into(),
                "2".into(),
            ],
        ]),
    );
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..12)
        .map(|_| idle_from("127.0.0.2", server.addr))
        .collect();
    // Let the proxy accept them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("cosmian_proxy_connections_total") < 12 {
        assert!(Instant::now() < deadline, "{}", server.get("/metrics"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.metric("cosmian_proxy_connections_refused_per_ip_total"),
        9
    );
    let out = curl(&[
        "-k",
        "--max-time",
        "10",
        &format!("https://127.0.0.1:{}/legit", server.addr.port()),
    ]);
    assert!(out.status.success(), "{out:?}\n{}", server.log());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("GET /legit"));
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "the legitimate client waited for the timeout: {:?}",
        opened.elapsed()
    );

    // All twelve are closed: nine at once, three by the TLS handshake timeout.
    let handles: Vec<_> = idle
        .into_iter()
        .map(|s| std::thread::spawn(move || closed_after(s, Duration::from_secs(10))))
        .collect();
    let mut times: Vec<Duration> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("an idle socket was still open after 10 s")
        })
        .collect();
    times.sort();
    let since_open = opened.elapsed();
    assert!(
        since_open < Duration::from_secs(6),
        "the held sockets outlived the 2 s TLS handshake timeout: {since_open:?} {times:?}"
    );
    assert!(
        server.wait_log("the TLS handshake did not finish within 2 s"),
        "{}",
        server.log()
    );
    assert_eq!(
        server.metric("cosmian_proxy_handshakes_total{outcome=\"tls_timeout\"}"),
        3
    );
}

/// Idle sockets from many sources fill `--max-connections 4`: a new client is refused at
/// accept (the slots are really held), the idle ones and a slow-loris that sent half a
/// ClientHello are closed within `--tls-handshake-timeout 2` (not the 30 s of
/// `--handshake-timeout`), and then a legitimate client gets through.
#[test]
fn attack_proxy_idle_sockets_are_closed_within_the_tls_handshake_timeout() {
    let machine = Machine::new("pre-handshake");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            machine.attester_args(),
            vec![
                "--max-connections".into(),
                "4".into(),
                "--tls-handshake-timeout".into(),
                "2".into(),
            ],
        ]),
    );
    let opened = Instant::now();
    let mut held: Vec<TcpStream> = (2..5)
        .map(|i| idle_from(&format!("127.0.0.{i}"), server.addr))
        .collect();
    // A slow loris: the first bytes of a TLS record, then nothing.
    let mut loris = idle_from("127.0.0.5", server.addr);
    loris
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    held.push(loris);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("cosmian_proxy_connections_open") < 4 {
        assert!(Instant::now() < deadline, "{}", server.get("/metrics"));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The cap is held: a fifth client is closed at accept.
    let out = curl(&[
        "-k",
        "--max-time",
        "10",
        &format!("https://127.0.0.1:{}/refused", server.addr.port()),
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(server.metric("cosmian_proxy_connections_refused_total") >= 1);

    let handles: Vec<_> = held
        .into_iter()
        .map(|s| std::thread::spawn(move || closed_after(s, Duration::from_secs(10))))
        .collect();
    for h in handles {
        h.join()
            .unwrap()
            .expect("an idle socket was still open after 10 s");
    }
    let closed = opened.elapsed();
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_secs(6),
        "closed after {closed:?}, expected about 2 s"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("cosmian_proxy_connections_open") > 0 {
        assert!(Instant::now() < deadline, "{}", server.get("/metrics"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = curl(&[
        "-k",
        &format!("https://127.0.0.1:{}/after", server.addr.port()),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("GET /after"));
    assert_eq!(
        server.metric("cosmian_proxy_handshakes_total{outcome=\"tls_timeout\"}"),
        4
    );
}

// ---------------------------------------------------------------------------------------------
// Names and empty policies

/// A genuine server that satisfies the policy but does not carry the pinned name is refused
/// before the attestation exchange (step `tls.name`, expected and presented SANs named); the
/// same server passes when the pin is one of its names. A policy that pins nothing is loudly
/// flagged at start, and a pinned one is not.
#[test]
fn attack_proxy_client_reaches_a_genuine_server_with_another_name() {
    let server_machine = Machine::new("name-server");
    let client_machine = Machine::new("name-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[listen_args(backend.addr), server_machine.attester_args()]),
    );
    let pinned_client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            vec!["--verify-name".into(), "bank.example".into()],
            policy_args(&client_machine.dir, "p1.json", "{}"),
        ]),
    );
    let out = curl(&[&format!(
        "http://127.0.0.1:{}/wrong-name",
        pinned_client.addr.port()
    )]);
    assert!(out.stdout.is_empty(), "{out:?}");
    let needle = format!(
        "rejected {}: name check failed at tls.name: expected a subject alternative name one of \
         [bank.example] (--verify-name), presented [",
        server.addr
    );
    assert!(pinned_client.wait_log(&needle), "{}", pinned_client.log());
    assert!(
        pinned_client
            .log()
            .contains("localhost, 127.0.0.1, ::1]"),
        "{}",
        pinned_client.log()
    );
    assert_eq!(
        pinned_client.metric("cosmian_proxy_rejections_total{step=\"tls.name\"}"),
        1
    );
    assert!(!backend.seen().iter().any(|s| s
        .heads
        .iter()
        .any(|h| h.contains("/wrong-name"))));
    // The empty policy with a name pin is not flagged as pinning nothing.
    assert!(
        !pinned_client
            .log()
            .contains("pins nothing"),
        "{}",
        pinned_client.log()
    );

    // The same server under a name it carries: accepted.
    let named_client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            vec![
                "--verify-name".into(),
                "bank.example".into(),
                "--verify-name".into(),
                "LOCALHOST".into(),
            ],
            policy_args(&client_machine.dir, "p2.json", "{}"),
        ]),
    );
    let out = curl(&[&format!(
        "http://127.0.0.1:{}/right-name",
        named_client.addr.port()
    )]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("GET /right-name"),
        "{out:?}\n{}",
        named_client.log()
    );

    // An empty policy without a name: warned at start; a measurement pin: no warning.
    let open_client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "p3.json", "{}"),
        ]),
    );
    assert!(
        open_client.wait_log("WARNING: the --policy pins nothing"),
        "{}",
        open_client.log()
    );
    assert!(open_client
        .log()
        .contains("ANY genuine server"));
    let pinned = format!(r#"{{"snp": {{"measurement": "{}"}}}}"#, "ab".repeat(48));
    let strict_client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            policy_args(&client_machine.dir, "p4.json", &pinned),
        ]),
    );
    assert!(
        !strict_client
            .log()
            .contains("pins nothing"),
        "{}",
        strict_client.log()
    );
}

/// Server side mirror: with `--require-attested-client --allow-name`, a genuine attested client
/// whose certificate does not carry the name is refused at `tls.name` before the exchange; a
/// server started with an empty client policy and no name is warned about at start.
#[test]
fn attack_proxy_server_admits_a_genuine_client_with_another_name() {
    let server_machine = Machine::new("allow-server");
    let client_machine = Machine::new("allow-client");
    let backend = Backend::start();
    let server = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            server_machine.attester_args(),
            vec![
                "--require-attested-client".into(),
                "--allow-name".into(),
                "payments.internal".into(),
            ],
            policy_args(&server_machine.dir, "clients.json", "{}"),
        ]),
    );
    assert!(!server.log().contains("pins nothing"), "{}", server.log());
    let client = Proxy::start(
        "client",
        &cat(&[
            listen_args(server.addr),
            vec!["--attest-self".into()],
            client_machine.attester_args(),
            policy_args(&client_machine.dir, "server.json", "{}"),
        ]),
    );
    let out = curl(&[&format!("http://127.0.0.1:{}/other", client.addr.port())]);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        server.wait_log(
            "name check failed at tls.name: expected a subject alternative name one of \
             [payments.internal] (--allow-name), presented ["
        ),
        "{}",
        server.log()
    );
    assert!(!backend.seen().iter().any(|s| s
        .heads
        .iter()
        .any(|h| h.contains("/other"))));

    let open_machine = Machine::new("allow-open");
    let open = Proxy::start(
        "server",
        &cat(&[
            listen_args(backend.addr),
            open_machine.attester_args(),
            vec!["--require-attested-client".into()],
            policy_args(&server_machine.dir, "clients2.json", "{}"),
        ]),
    );
    assert!(
        open.wait_log("WARNING: the --policy pins nothing"),
        "{}",
        open.log()
    );
}
