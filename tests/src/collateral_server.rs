//! A local stand-in for AMD KDS and Intel PCS v4 (hyper on a private tokio runtime), for the
//! collateral-plane tests: it serves what the tests route to it (the real captured responses,
//! at the real paths, with the real headers), counts requests, and can answer 429 with
//! `Retry-After`, stall, or send too much.
//!
//! [`serve_tdx`] rebuilds the PCS v4 bodies (`{"tcbInfo":…,"signature":…}`,
//! `{"enclaveIdentity":…}`) and the URL-encoded issuer-chain headers byte for byte from the
//! signed objects of a TDX sample's `collateral.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};

use crate::read_real;

pub type Headers = Vec<(String, String)>;

#[derive(Default)]
struct State {
    /// path?query → (headers, body)
    routes: HashMap<String, (Headers, Vec<u8>)>,
    /// path?query → requests seen
    hits: HashMap<String, u32>,
    /// path?query → how many 429s to answer first (with Retry-After: 1)
    throttle: HashMap<String, u32>,
    /// path?query → seconds to stall before answering
    stall: HashMap<String, u64>,
}

pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(answer(&state, &req).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn route(&self, path: &str, headers: Vec<(String, String)>, body: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), (headers, body));
    }

    pub fn hits(&self, path: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> u32 {
        self.state
            .lock()
            .unwrap()
            .hits
            .values()
            .sum()
    }

    /// The route at `path`: headers and body.
    pub fn get(&self, path: &str) -> Option<(Headers, Vec<u8>)> {
        self.state
            .lock()
            .unwrap()
            .routes
            .get(path)
            .cloned()
    }

    /// Answer 404 at `path` from now on.
    pub fn remove(&self, path: &str) {
        self.state
            .lock()
            .unwrap()
            .routes
            .remove(path);
    }

    /// Answer the next `count` requests to `path` with 429 and `Retry-After: 1`.
    pub fn throttle(&self, path: &str, count: u32) {
        self.state
            .lock()
            .unwrap()
            .throttle
            .insert(path.to_owned(), count);
    }

    /// Wait `secs` before answering requests to `path`.
    pub fn stall(&self, path: &str, secs: u64) {
        self.state
            .lock()
            .unwrap()
            .stall
            .insert(path.to_owned(), secs);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn answer(
    state: &Mutex<State>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let key = match req.uri().query() {
        Some(q) => format!("{}?{q}", req.uri().path()),
        None => req.uri().path().to_owned(),
    };
    let (throttled, stall, found) = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(key.clone()).or_default() += 1;
        let throttled = match s.throttle.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        (
            throttled,
            s.stall.get(&key).copied(),
            s.routes.get(&key).cloned(),
        )
    };
    if throttled {
        return Response::builder()
            .status(429)
            .header("Retry-After", "1")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if let Some(secs) = stall {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    match found {
        Some((headers, body)) => {
            let mut response = Response::builder().status(200);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
        None => Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

/// Intel's header encoding: every byte outside the URL-unreserved set as %XX.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug)]
pub struct Tdx {
    pub quote: Vec<u8>,
    pub collateral: serde_json::Value,
}

pub const TCB_PATH: &str = "/tdx/certification/v4/tcb?fmspc=B0C06F000000";
pub const QE_PATH: &str = "/tdx/certification/v4/qe/identity";
pub const PCK_CRL_PATH: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
pub const ROOT_CRL_PATH: &str = "/IntelSGXRootCA.der";

/// Serve the v4 sample's collateral the way Intel PCS v4 does.
pub fn serve_tdx(server: &Server, dir: &Path) -> Tdx {
    let c: serde_json::Value = serde_json::from_slice(&read_real(dir, "collateral.json")).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    server.route(
        TCB_PATH,
        vec![
            (
                "TCB-Info-Issuer-Chain".into(),
                percent_encode(&s("tcb_info_issuer_chain")),
            ),
            ("Content-Type".into(), "application/json".into()),
        ],
        format!(
            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
            s("tcb_info"),
            s("tcb_info_signature")
        )
        .into_bytes(),
    );
    server.route(
        QE_PATH,
        vec![(
            "SGX-Enclave-Identity-Issuer-Chain".into(),
            percent_encode(&s("qe_identity_issuer_chain")),
        )],
        format!(
            "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
            s("qe_identity"),
            s("qe_identity_signature")
        )
        .into_bytes(),
    );
    server.route(
        PCK_CRL_PATH,
        vec![(
            "SGX-PCK-CRL-Issuer-Chain".into(),
            percent_encode(&s("pck_crl_issuer_chain")),
        )],
        hex::decode(s("pck_crl")).unwrap(),
    );
    server.route(
        ROOT_CRL_PATH,
        vec![],
        hex::decode(s("root_ca_crl")).unwrap(),
    );
    Tdx {
        quote: read_real(dir, "tdx_quote.bin"),
        collateral: c,
    }
}

/// Where a report's chip id sits (AMD SEV-SNP ABI, ATTESTATION_REPORT).
const CHIP_ID: std::ops::Range<usize> = 0x1A0..0x1E0;

/// KDS's path for the Milan sample's VCEK: its chip id and, from its README, reported TCB
/// bootloader 3, TEE 0, SNP 8, microcode 115.
pub fn milan_vcek_path(report: &[u8]) -> String {
    format!(
        "/vcek/v1/Milan/{}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115",
        hex::encode(&report[CHIP_ID])
    )
}

/// Serve the Milan sample's VCEK where KDS does; returns the raw report.
pub fn serve_milan(server: &Server, dir: &Path) -> Vec<u8> {
    let text = String::from_utf8(read_real(dir, "report_milan.hex")).unwrap();
    let report = hex::decode(text.trim()).unwrap();
    server.route(
        &milan_vcek_path(&report),
        vec![],
        read_real(dir, "vcek_milan.der"),
    );
    report
}
