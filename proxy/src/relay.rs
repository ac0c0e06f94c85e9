//! Moving bytes: both directions at once, half-close kept (when one side stops sending, the
//! other side's write half is shut down and the opposite direction goes on), an idle timeout,
//! and byte counts.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::meta::{HttpError, RequestRewriter};
use crate::metrics::Metrics;

/// Buffer size per direction.
const BUF: usize = 64 * 1024;

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A stream that records when it last read something, and how much.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    read: u64,
}

impl<S> Tracked<S> {
    fn new(inner: S, last: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            last,
            read: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf
            .filled()
            .len()
            .saturating_sub(before);
        if n > 0 {
            self.read += n as u64;
            self.last
                .store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    Done,
    Idle,
    Error(String),
}

/// Relay between `client` (the accepted side) and `target` until both directions end, an error,
/// or `idle` without a byte either way. With a rewriter, client → target bytes go through it.
pub async fn relay<A, B>(
    client: A,
    target: B,
    idle: Duration,
    rewriter: Option<RequestRewriter>,
    metrics: &Metrics,
) -> End
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Arc::new(AtomicU64::new(now_ms()));
    let mut a = Tracked::new(client, last.clone());
    let mut b = Tracked::new(target, last.clone());
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let end = {
        let copy = async {
            match rewriter {
                None => tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUF, BUF)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Some(rw) => http_relay(&mut a, &mut b, rw, metrics).await,
            }
        };
        tokio::pin!(copy);
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = &mut copy => break match r {
                    Ok(()) => End::Done,
                    Err(e) => End::Error(e),
                },
                _ = ticker.tick() => {
                    if now_ms().saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                        break End::Idle;
                    }
                }
            }
        }
    };
    metrics
        .bytes_up
        .fetch_add(a.read, Ordering::Relaxed);
    metrics
        .bytes_down
        .fetch_add(b.read, Ordering::Relaxed);
    if matches!(end, End::Idle) {
        metrics
            .idle_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }
    end
}

/// HTTP mode: client → target through the rewriter, target → client raw; half-close kept. A
/// request the rewriter refuses is answered `400 Bad Request` (unless a backend response is
/// being relayed at that moment: then the connection is only closed) and the connection ends.
async fn http_relay<A, B>(
    a: &mut A,
    b: &mut B,
    mut rw: RequestRewriter,
    metrics: &Metrics,
) -> Result<(), String>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    enum Stop {
        Refused(HttpError),
        Io(String),
    }
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    // True while a backend response chunk is being written to the client.
    let relaying = AtomicBool::new(false);
    let joined = {
        let up = async {
            let mut buf = vec![0u8; BUF];
            let mut out = Vec::with_capacity(BUF);
            loop {
                let n = ar
                    .read(&mut buf)
                    .await
                    .map_err(|e| Stop::Io(e.to_string()))?;
                if n == 0 {
                    // Half-close: the client is done sending (a truncated request reaches the
                    // backend as the same EOF the client produced).
                    return bw
                        .shutdown()
                        .await
                        .map_err(|e| Stop::Io(e.to_string()));
                }
                out.clear();
                let fed = rw.feed(buf.get(..n).unwrap_or_default(), &mut out);
                // What was framed before the refusal still goes (complete requests only).
                if !out.is_empty() {
                    bw.write_all(&out)
                        .await
                        .map_err(|e| Stop::Io(e.to_string()))?;
                }
                fed.map_err(Stop::Refused)?;
            }
        };
        let down = async {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = br
                    .read(&mut buf)
                    .await
                    .map_err(|e| Stop::Io(e.to_string()))?;
                if n == 0 {
                    break;
                }
                relaying.store(true, Ordering::Relaxed);
                aw.write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .map_err(|e| Stop::Io(e.to_string()))?;
                relaying.store(false, Ordering::Relaxed);
            }
            aw.shutdown()
                .await
                .map_err(|e| Stop::Io(e.to_string()))
        };
        tokio::try_join!(up, down)
    };
    match joined {
        Ok(_) => Ok(()),
        Err(Stop::Io(e)) => Err(e),
        Err(Stop::Refused(e)) => {
            metrics.http_rejected(e.step);
            // The backend's write side closes with the connection; tell the client why, unless
            // a response is half written (a 400 in its middle would be read as its bytes).
            if !relaying.load(Ordering::Relaxed) {
                let _ = aw
                    .write_all(&crate::meta::bad_request(&e))
                    .await;
            }
            let _ = aw.shutdown().await;
            let _ = bw.shutdown().await;
            Err(e.to_string())
        }
    }
}
