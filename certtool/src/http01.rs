//! The HTTP-01 responder: plain HTTP/1.1 on the given address, answering
//! `GET /.well-known/acme-challenge/<token>` with the key authorization of a token we were told
//! about, and 404 for everything else. It runs only while an order is being validated.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PREFIX: &str = "/.well-known/acme-challenge/";

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A running responder; stops when dropped.
#[derive(Debug)]
pub struct Responder {
    tokens: Tokens,
    task: JoinHandle<()>,
    pub local_addr: std::net::SocketAddr,
}

impl Responder {
    /// Bind `addr` and start answering.
    pub async fn start(addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let tokens: Tokens = Arc::default();
        let served = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors or similar: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let tokens = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let tokens = tokens.clone();
                        async move { Ok::<_, Infallible>(answer(&tokens, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            tokens,
            task,
            local_addr,
        })
    }

    /// Answer `token` with `key_authorization` from now on.
    pub fn add(&self, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.tokens.lock() {
            map.insert(token.to_owned(), key_authorization.to_owned());
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(tokens: &Tokens, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let found = (req.method() == Method::GET || req.method() == Method::HEAD)
        .then(|| req.uri().path().strip_prefix(PREFIX))
        .flatten()
        .and_then(|token| tokens.lock().ok()?.get(token).cloned());
    let (status, body) = match found {
        Some(key_auth) => (StatusCode::OK, key_auth),
        None => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    rsp
}
